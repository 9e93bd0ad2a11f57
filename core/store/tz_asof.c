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

/* Writes the wanted values of an encoded row into row i of the outputs. */
static int decode_into(const tz_asof_view *v, const unsigned char *p, size_t len, size_t i,
                       tz_column *const *out, tz_err *err)
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
        int present = (p[2 + f / 8] >> (f % 8)) & 1;
        size_t width = L->types[f] == TZ_COL_BOOL ? 1 : L->types[f] == TZ_COL_STR ? 4 : 8;
        size_t at = pos;
        if (present) {
            if (pos + width > len) return tz_err_set(err, TZ_EINVAL, "offline row truncated");
            if (L->types[f] == TZ_COL_STR) width += (size_t)load_le(p + pos, 4);
            if (pos + width > len) return tz_err_set(err, TZ_EINVAL, "offline row truncated");
            pos += width;
        }
        for (size_t k = 0; k < v->n_wanted; k++) {
            if (L->wanted[k] != f || !present) continue;
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
            tz_column_set_valid(c, i, 1);
        }
    }
    return 0;
}

int tz_asof_join(tz_store_txn *txn, unsigned dbi, const tz_asof_view *v,
                 const tz_column *entity, const int64_t *t, size_t n,
                 tz_column *const *out, tz_err *err)
{
    if (entity->type != TZ_COL_STR && entity->type != TZ_COL_I64)
        return tz_err_set(err, TZ_EINVAL, "entity keys must be a string or integer column");
    spine_row *rows = malloc((n ? n : 1) * sizeof *rows);
    tz_advise_huge(rows, n * sizeof *rows);
    char *digits = entity->type == TZ_COL_I64 ? malloc((n ? n : 1) * 24) : NULL;
    char *prefix = NULL;
    size_t prefix_cap = 0;
    tz_store_cursor *cur = NULL;
    int rc = (!rows || (entity->type == TZ_COL_I64 && !digits)) ? tz_err_set(err, TZ_ENOMEM, "out of memory") : 0;
    size_t m = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        if (!tz_column_is_valid(entity, i)) continue;
        spine_row *r = &rows[m++];
        if (entity->type == TZ_COL_STR) {
            r->key = tz_dict_get(entity->dict, ((const int32_t *)entity->data)[i], &r->key_len);
        } else {
            r->key = digits + i * 24;
            r->key_len = (size_t)snprintf(digits + i * 24, 24, "%lld", (long long)((const int64_t *)entity->data)[i]);
        }
        r->t = t[i];
        r->row = i;
    }
    if (!rc) {
        if (entity->type != TZ_COL_STR) qsort(rows, m, sizeof *rows, cmp_spine);
        else if (sort_by_dictionary(rows, m, entity)) rc = tz_err_set(err, TZ_ENOMEM, "out of memory");
    }
    if (!rc) rc = tz_store_cursor_open(txn, dbi, &cur, err);
    for (size_t a = 0; !rc && a < m;) {
        size_t b = a;  /* rows[a..b) share one entity */
        /* A string column's equal keys are one dictionary string: the same pointer. */
        while (b < m && (rows[b].key == rows[a].key ||
                         (rows[b].key_len == rows[a].key_len && !memcmp(rows[b].key, rows[a].key, rows[a].key_len))))
            b++;
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
                rc = decode_into(v, best.data, best.size, rows[s].row, out, err);
                if (rc) break;
            }
        }
        a = b;
    }
    if (cur) tz_store_cursor_close(cur);
    free(prefix);
    free(digits);
    free(rows);
    return rc;
}

/* ---- several views at once ------------------------------------------------ */

typedef struct views_ctx {
    tz_store *st;
    unsigned dbi;
    const tz_asof_view *views;
    const tz_column *const *entities;
    const int64_t *t;
    size_t n;
    tz_column *const *const *outs;
    int *rc;
    tz_err *errs;
} views_ctx;

/* One view's join in a read transaction of its own: a transaction belongs
 * to one thread at a time (the store is opened MDB_NOTLS, so a thread may
 * hold one beside the caller's). */
static void view_task(void *vctx, size_t task, int worker)
{
    (void)worker;
    views_ctx *c = vctx;
    tz_store_txn *txn;
    int rc = tz_store_txn_begin(c->st, 0, &txn, &c->errs[task]);
    if (!rc) {
        rc = tz_asof_join(txn, c->dbi, &c->views[task], c->entities[task], c->t, c->n, c->outs[task],
                          &c->errs[task]);
        tz_store_txn_abort(txn);
    }
    c->rc[task] = rc;
}

int tz_asof_join_views(tz_store *st, const char *db, size_t n_views, const tz_asof_view *views,
                       const tz_column *const *entities, const int64_t *t, size_t n,
                       tz_column *const *const *outs, tz_err *err)
{
    if (n_views == 0) return 0;
    unsigned dbi;  /* tz_store_db's handle outlives its transaction: every view's sees it */
    int found = tz_store_db(st, db, 0, &dbi, err);
    if (found == TZ_ENOTFOUND) return 0;  /* no history at all: every row stays null */
    if (found) return found;
    int *rc = calloc(n_views, sizeof *rc);
    tz_err *errs = calloc(n_views, sizeof *errs);
    if (!rc || !errs) {
        free(rc);
        free(errs);
        return tz_err_set(err, TZ_ENOMEM, "out of memory for %zu views' joins", n_views);
    }
    views_ctx c = { st, dbi, views, entities, t, n, outs, rc, errs };
    tz_pool_run(n_views, view_task, &c);
    int first = 0;
    for (size_t i = 0; i < n_views && !first; i++) {
        if (rc[i]) {
            first = rc[i];
            if (err) *err = errs[i];
        }
    }
    free(rc);
    free(errs);
    return first;
}
