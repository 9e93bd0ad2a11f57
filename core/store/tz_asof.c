#include "store/tz_asof.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/tz_pool.h"

typedef struct spine_row {
    const char *key;     /* entity as bytes */
    size_t key_len;
    int64_t t;
    size_t row;
} spine_row;

static int cmp_spine(const void *a, const void *b)
{
    const spine_row *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    if (x->key_len != y->key_len) return x->key_len < y->key_len ? -1 : 1;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->row < y->row ? -1 : (x->row > y->row);
}

static int cmp_time_row(const void *a, const void *b)
{
    const spine_row *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->row < y->row ? -1 : (x->row > y->row);
}

/* Sorts spine rows of a string entity column as cmp_spine would, without
 * comparing strings per row: the dictionary's strings are ranked once, the
 * rows counted into their entity's place by rank, and each entity's rows
 * sorted by time. 0, or -1 out of memory. */
static int sort_by_dictionary(spine_row *rows, size_t m, const tz_column *entity)
{
    const int32_t *code = entity->data;
    size_t nd = tz_dict_size(entity->dict);
    size_t *rank = malloc((nd ? nd : 1) * sizeof *rank), *start = calloc(nd + 1, sizeof *start);
    spine_row *out = malloc((m ? m : 1) * sizeof *out);
    tz_advise_huge(out, m * sizeof *out);
    int ok = rank && start && out && tz_dict_rank(entity->dict, rank) == 0;
    if (ok) {
        for (size_t k = 0; k < m; k++) start[rank[code[rows[k].row]] + 1]++;
        for (size_t r = 0; r < nd; r++) start[r + 1] += start[r];
        for (size_t k = 0; k < m; k++) out[start[rank[code[rows[k].row]]]++] = rows[k];
        /* start[r] is now group r's end, the next group's start. */
        for (size_t r = 0, a = 0; r < nd; a = start[r++]) {
            size_t len = start[r] - a;
            if (len < 2) continue;
            if (len <= 16) { /* insertion sort: most entities have a few rows */
                for (size_t i = a + 1; i < start[r]; i++) {
                    spine_row x = out[i];
                    size_t j = i;
                    while (j > a && cmp_time_row(&out[j - 1], &x) > 0) out[j] = out[j - 1], j--;
                    out[j] = x;
                }
            } else {
                qsort(out + a, len, sizeof *out, cmp_time_row);
            }
        }
        memcpy(rows, out, m * sizeof *rows);
    }
    free(rank), free(start), free(out);
    return ok ? 0 : -1;
}

/* The prefix (view id, entity) of offline keys, as tycho.keys packs "u32 s". */
static size_t encode_prefix(uint32_t view, const char *key, size_t len, char *buf)
{
    size_t o = 0;
    buf[o++] = (char)(view >> 24);
    buf[o++] = (char)(view >> 16);
    buf[o++] = (char)(view >> 8);
    buf[o++] = (char)view;
    for (size_t i = 0; i < len; i++) {
        buf[o++] = key[i];
        if (key[i] == 0) buf[o++] = (char)0xff;
    }
    buf[o++] = 0;
    buf[o++] = 0;
    return o;
}

static int64_t key_time(const unsigned char *k)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = (u << 8) | k[i];
    return (int64_t)(u ^ 0x8000000000000000ull);
}

static uint64_t load_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- the join: each view's spine sorted, then walked in parts ------------ */

/* Spine rows a part holds at least (more, to end at an entity's last row):
 * parts are pool tasks, each walking its entities with a cursor of its own. */
#define PART_ROWS 4096

/* One view's spine, sorted by (entity, time), and what its walk found:
 * present[k * n + row] is 1 when wanted feature k of spine row `row` was
 * written (by feature, so that each merge task reads its own run). Parts write values straight into the output columns (each
 * spine row belongs to one part), but validity bits share bytes across
 * rows, so they are set afterwards, one task per column. */
typedef struct view_spine {
    spine_row *rows;
    size_t m;
    char *digits;        /* an integer entity's keys as text */
    uint8_t *present;
    int serial;          /* a wanted string feature: its dictionary takes one writer */
} view_spine;

typedef struct join_part {
    size_t view, a, b;   /* rows[a..b) of the view's sorted spine */
} join_part;

typedef struct join_ctx {
    unsigned dbi;
    const tz_asof_view *views;
    const tz_column *const *entities;
    const int64_t *t;
    size_t n;
    tz_column *const *const *outs;
    view_spine *spines;
    join_part *parts;
    int *rc;             /* per view */
    tz_err *errs;        /* per view */
    size_t *first_col;   /* merge tasks: view i's columns are first_col[i].. */
    tz_store_txn **txns; /* one per pool thread, all on one snapshot */
} join_ctx;

static void fail_view(join_ctx *c, size_t view, int rc, const tz_err *err)
{
    /* Parts of one view may fail at once: one code and message stay. */
    if (__atomic_exchange_n(&c->rc[view], rc, __ATOMIC_ACQ_REL) == 0 && err) c->errs[view] = *err;
}

/* Writes the wanted values of an encoded row into row i of the outputs (n
 * rows) and marks them in present. */
static int decode_into(const tz_asof_view *v, const unsigned char *p, size_t len, size_t i,
                       tz_column *const *out, uint8_t *present, size_t n, tz_err *err)
{
    if (len < 2) return tz_err_set(err, TZ_EINVAL, "offline row too short");
    unsigned version = (unsigned)load_le(p, 2);
    if (version < 1 || version > v->n_versions)
        return tz_err_set(err, TZ_EINVAL, "offline row of unknown schema version %u", version);
    const tz_asof_layout *L = &v->layouts[version - 1];
    size_t bitmap = ((size_t)L->n_features + 7) / 8, pos = 2 + bitmap;
    if (len < pos) return tz_err_set(err, TZ_EINVAL, "offline row too short");
    /* Offsets of every present value in this version's order. */
    for (int f = 0; f < L->n_features; f++) {
        int here = (p[2 + f / 8] >> (f % 8)) & 1;
        size_t width = L->types[f] == TZ_COL_BOOL ? 1 : L->types[f] == TZ_COL_STR ? 4 : 8;
        size_t at = pos;
        if (here) {
            if (pos + width > len) return tz_err_set(err, TZ_EINVAL, "offline row truncated");
            if (L->types[f] == TZ_COL_STR) width += (size_t)load_le(p + pos, 4);
            if (pos + width > len) return tz_err_set(err, TZ_EINVAL, "offline row truncated");
            pos += width;
        }
        for (size_t k = 0; k < v->n_wanted; k++) {
            if (L->wanted[k] != f || !here) continue;
            tz_column *c = out[k];
            const unsigned char *q = p + at;
            switch (c->type) {
            case TZ_COL_F64: {
                uint64_t bits = load_le(q, 8);
                double d;
                if (L->types[f] == TZ_COL_I64) d = (double)(int64_t)bits;
                else memcpy(&d, &bits, 8);
                ((double *)c->data)[i] = d;
                break;
            }
            case TZ_COL_I64: ((int64_t *)c->data)[i] = (int64_t)load_le(q, 8); break;
            case TZ_COL_BOOL: ((uint8_t *)c->data)[i] = *q; break;
            default: {
                int32_t code = tz_dict_intern(c->dict, (const char *)q + 4, (size_t)load_le(q, 4));
                if (code < 0) return tz_err_set(err, TZ_ENOMEM, "out of memory");
                ((int32_t *)c->data)[i] = code;
            }
            }
            present[k * n + i] = 1;
        }
    }
    return 0;
}

/* View i's spine rows with a key, sorted by (entity, time, row). */
static void sort_task(void *vctx, size_t i, int worker)
{
    (void)worker;
    join_ctx *c = vctx;
    const tz_column *entity = c->entities[i];
    view_spine *vs = &c->spines[i];
    size_t n = c->n;
    tz_err err = { 0 };
    if (entity->type != TZ_COL_STR && entity->type != TZ_COL_I64) {
        fail_view(c, i, tz_err_set(&err, TZ_EINVAL, "entity keys must be a string or integer column"), &err);
        return;
    }
    vs->rows = malloc((n ? n : 1) * sizeof *vs->rows);
    tz_advise_huge(vs->rows, n * sizeof *vs->rows);
    vs->present = calloc(n ? n : 1, c->views[i].n_wanted ? c->views[i].n_wanted : 1);
    vs->digits = entity->type == TZ_COL_I64 ? malloc((n ? n : 1) * 24) : NULL;
    if (!vs->rows || !vs->present || (entity->type == TZ_COL_I64 && !vs->digits)) {
        fail_view(c, i, tz_err_set(&err, TZ_ENOMEM, "out of memory"), &err);
        return;
    }
    size_t m = 0;
    for (size_t r = 0; r < n; r++) {
        if (!tz_column_is_valid(entity, r)) continue;
        spine_row *row = &vs->rows[m++];
        if (entity->type == TZ_COL_STR) {
            row->key = tz_dict_get(entity->dict, ((const int32_t *)entity->data)[r], &row->key_len);
        } else {
            row->key = vs->digits + r * 24;
            row->key_len = (size_t)snprintf(vs->digits + r * 24, 24, "%lld", (long long)((const int64_t *)entity->data)[r]);
        }
        row->t = c->t[r];
        row->row = r;
    }
    vs->m = m;
    if (entity->type != TZ_COL_STR) qsort(vs->rows, m, sizeof *vs->rows, cmp_spine);
    else if (sort_by_dictionary(vs->rows, m, entity)) fail_view(c, i, tz_err_set(&err, TZ_ENOMEM, "out of memory"), &err);
    for (size_t k = 0; k < c->views[i].n_wanted; k++) vs->serial |= c->outs[i][k]->type == TZ_COL_STR;
}

static int same_entity(const spine_row *x, const spine_row *y)
{
    /* A string column's equal keys are one dictionary string: the same pointer. */
    return x->key == y->key || (x->key_len == y->key_len && !memcmp(x->key, y->key, x->key_len));
}

/* Walks rows[a..b) of one view: each entity's history once, with one cursor,
 * keeping the latest row at or before each spine time. */
static int walk(tz_store_cursor *cur, const tz_asof_view *v, const spine_row *rows, size_t a, size_t end,
                tz_column *const *out, uint8_t *present, size_t n, tz_err *err)
{
    char *prefix = NULL;
    size_t prefix_cap = 0;
    int rc = 0;
    while (!rc && a < end) {
        size_t b = a + 1;  /* rows[a..b) share one entity */
        while (b < end && same_entity(&rows[b], &rows[a])) b++;
        if (prefix_cap < 2 * rows[a].key_len + 8) {
            prefix_cap = 2 * rows[a].key_len + 64;
            char *p = realloc(prefix, prefix_cap);
            if (!p) { rc = tz_err_set(err, TZ_ENOMEM, "out of memory"); break; }
            prefix = p;
        }
        size_t plen = encode_prefix(v->view_id, rows[a].key, rows[a].key_len, prefix);
        tz_store_val k, val, best = { 0, NULL };
        int64_t best_t = 0;
        int have = 0;
        int mv = tz_store_cursor_move(cur, TZ_STORE_SEEK, prefix, plen, &k, &val, err);
        for (size_t s = a; s < b; s++) {
            /* Advance through history rows at or before this spine time. */
            while (mv == 0 && k.size == plen + 8 && !memcmp(k.data, prefix, plen)) {
                int64_t ht = key_time((const unsigned char *)k.data + plen);
                if (ht > rows[s].t) break;
                best = val;
                best_t = ht;
                have = 1;
                mv = tz_store_cursor_move(cur, TZ_STORE_NEXT, NULL, 0, &k, &val, err);
            }
            if (mv != 0 && mv != TZ_ENOTFOUND) { rc = mv; break; }
            if (have && (v->ttl_us <= 0 || rows[s].t - best_t <= v->ttl_us)) {
                rc = decode_into(v, best.data, best.size, rows[s].row, out, present, n, err);
                if (rc) break;
            }
        }
        a = b;
    }
    free(prefix);
    return rc;
}

/* One part, in its thread's read transaction. */
static void walk_task(void *vctx, size_t task, int worker)
{
    join_ctx *c = vctx;
    const join_part *p = &c->parts[task];
    view_spine *vs = &c->spines[p->view];
    tz_err err = { 0 };
    tz_store_cursor *cur = NULL;
    int rc = tz_store_cursor_open(c->txns[worker], c->dbi, &cur, &err);
    if (!rc) rc = walk(cur, &c->views[p->view], vs->rows, p->a, p->b, c->outs[p->view], vs->present, c->n, &err);
    if (cur) tz_store_cursor_close(cur);
    if (rc) fail_view(c, p->view, rc, &err);
}

/* Tries at a common snapshot before giving up: each fails only when a
 * commit lands between two transactions' beginnings, microseconds apart. */
#define SNAPSHOT_TRIES 100

/* Begins n read transactions on one commit, so that every part of the join
 * reads the same state of the store (a transaction belongs to one thread at
 * a time; the store is opened MDB_NOTLS, so it need not be the thread that
 * began it). Begun again when a commit slipped in between. */
static int begin_snapshot(tz_store *st, tz_store_txn **txns, int n, tz_err *err)
{
    for (int attempt = 0; attempt < SNAPSHOT_TRIES; attempt++) {
        int began = 0, rc = 0, same = 1;
        while (began < n && !(rc = tz_store_txn_begin(st, 0, &txns[began], err))) began++;
        for (int j = 1; j < began; j++) same &= tz_store_txn_id(txns[j]) == tz_store_txn_id(txns[0]);
        if (!rc && same) return 0;
        for (int j = 0; j < began; j++) tz_store_txn_abort(txns[j]);
        if (rc) return rc;
    }
    return tz_err_set(err, TZ_EBUSY, "the store changed between every try at one snapshot for the join");
}

/* Merge task j: one output column's validity from its view's present marks. */
static void valid_task(void *vctx, size_t j, int worker)
{
    (void)worker;
    join_ctx *c = vctx;
    size_t i = 0;
    while (c->first_col[i + 1] <= j) i++;
    size_t k = j - c->first_col[i];
    if (c->rc[i]) return;
    const uint8_t *present = c->spines[i].present + k * c->n;
    tz_column *col = c->outs[i][k];
    for (size_t r = 0; r < c->n; r++)
        if (present[r]) tz_column_set_valid(col, r, 1);
}

/* Cuts each view's sorted spine into parts at entity boundaries (one part
 * for a serial view). Returns the count, writing parts when not NULL. */
static size_t cut_parts(const join_ctx *c, size_t n_views, join_part *parts)
{
    size_t count = 0;
    for (size_t i = 0; i < n_views; i++) {
        const view_spine *vs = &c->spines[i];
        if (c->rc[i] || vs->m == 0) continue;
        for (size_t a = 0; a < vs->m;) {
            size_t b = vs->serial ? vs->m : a + PART_ROWS;
            if (b >= vs->m) b = vs->m;
            else while (b < vs->m && same_entity(&vs->rows[b], &vs->rows[b - 1])) b++;
            if (parts) parts[count] = (join_part){ i, a, b };
            count++;
            a = b;
        }
    }
    return count;
}

int tz_asof_join_views(tz_store *st, const char *db, size_t n_views, const tz_asof_view *views,
                       const tz_column *const *entities, const int64_t *t, size_t n,
                       tz_column *const *const *outs, tz_err *err)
{
    if (n_views == 0) return 0;
    unsigned dbi;  /* tz_store_db's handle outlives its transaction: every part's sees it */
    int found = tz_store_db(st, db, 0, &dbi, err);
    if (found == TZ_ENOTFOUND) return 0;  /* no history at all: every row stays null */
    if (found) return found;
    join_ctx c = { dbi, views, entities, t, n, outs, NULL, NULL, NULL, NULL, NULL, NULL };
    c.spines = calloc(n_views, sizeof *c.spines);
    c.rc = calloc(n_views, sizeof *c.rc);
    c.errs = calloc(n_views, sizeof *c.errs);
    c.first_col = calloc(n_views + 1, sizeof *c.first_col);
    int rc = 0;
    if (!c.spines || !c.rc || !c.errs || !c.first_col) {
        rc = tz_err_set(err, TZ_ENOMEM, "out of memory for %zu views' joins", n_views);
        goto done;
    }
    tz_pool_run(n_views, sort_task, &c);
    size_t n_parts = cut_parts(&c, n_views, NULL);
    c.parts = malloc((n_parts ? n_parts : 1) * sizeof *c.parts);
    if (!c.parts) {
        rc = tz_err_set(err, TZ_ENOMEM, "out of memory for %zu views' joins", n_views);
        goto done;
    }
    cut_parts(&c, n_views, c.parts);
    int threads = tz_pool_threads();
    c.txns = calloc((size_t)threads, sizeof *c.txns);
    if (!c.txns) {
        rc = tz_err_set(err, TZ_ENOMEM, "out of memory for %zu views' joins", n_views);
        goto done;
    }
    rc = begin_snapshot(st, c.txns, threads, err);
    if (rc) goto done;
    tz_pool_run(n_parts, walk_task, &c);
    for (int w = 0; w < threads; w++) tz_store_txn_abort(c.txns[w]);
    for (size_t i = 0; i < n_views; i++) c.first_col[i + 1] = c.first_col[i] + views[i].n_wanted;
    tz_pool_run(c.first_col[n_views], valid_task, &c);
    for (size_t i = 0; i < n_views && !rc; i++) {
        if (c.rc[i]) {
            rc = c.rc[i];
            if (err) *err = c.errs[i];
        }
    }
done:
    for (size_t i = 0; c.spines && i < n_views; i++) {
        free(c.spines[i].rows);
        free(c.spines[i].digits);
        free(c.spines[i].present);
    }
    free(c.spines);
    free(c.parts);
    free(c.rc);
    free(c.errs);
    free(c.first_col);
    free(c.txns);
    return rc;
}
