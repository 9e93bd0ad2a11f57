/* tz_ingest.c — feature rows landed from columns (tz_ingest.h). */
#include "store/tz_ingest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/tz_hash.h"
#include "util/tz_hll.h"

/* ---- event times, as lua/tycho/util/timeutil.lua parses them ------------------ */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int from_number(double v, int64_t *out)
{
    if (!isfinite(v)) return -1;
    double a = fabs(v), us = a < 1e11 ? floor(v * 1e6 + 0.5) : a < 1e14 ? floor(v * 1e3 + 0.5) : floor(v + 0.5);
    if (fabs(us) >= 9007199254740992.0) return -1; /* past a double's exact integers */
    *out = (int64_t)us;
    return 0;
}

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y = m <= 2 ? y - 1 : y;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t mp = (m + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static const int DAYS_IN[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

int tz_ingest_parse_time(const char *s, size_t len, int64_t *out)
{
    while (len && is_space(*s)) s++, len--;
    while (len && is_space(s[len - 1])) len--;
    /* ^-?%d+%.?%d*$ : an epoch number */
    size_t i = len && s[0] == '-';
    size_t int_digits = 0;
    while (i < len && is_digit(s[i])) i++, int_digits++;
    if (int_digits) {
        size_t j = i;
        if (j < len && s[j] == '.') j++;
        while (j < len && is_digit(s[j])) j++;
        if (j == len) {
            char buf[64];
            if (len >= sizeof buf) return -1;
            memcpy(buf, s, len);
            buf[len] = '\0';
            return from_number(strtod(buf, NULL), out);
        }
    }
    /* ISO-8601: YYYY-MM-DD[(T|t| )HH:MM[:SS][(.|,)F...][Z|z|(+|-)HH[[:]MM]]] */
    int y, mo, d, h = 0, mi = 0, sec = 0;
    if (len < 10 || s[4] != '-' || s[7] != '-' || digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > DAYS_IN[mo - 1]) return -1;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) return -1;
    size_t p = 10;
    double micros = 0;
    int64_t offset = 0;
    if (p < len) {
        if (!(s[p] == 'T' || s[p] == 't' || s[p] == ' ') || len - p < 6 || s[p + 3] != ':' ||
            digits(s + p + 1, 2, &h) || digits(s + p + 4, 2, &mi))
            return -1;
        p += 6;
        if (p + 3 <= len && s[p] == ':' && is_digit(s[p + 1]) && is_digit(s[p + 2])) {
            digits(s + p + 1, 2, &sec);
            p += 3;
        }
        if (p + 1 < len && (s[p] == '.' || s[p] == ',') && is_digit(s[p + 1])) {
            char buf[64] = "0.";
            size_t q = p + 1, n = 2;
            while (q < len && is_digit(s[q])) {
                if (n < sizeof buf - 1) buf[n++] = s[q];
                q++;
            }
            buf[n] = '\0';
            micros = floor(strtod(buf, NULL) * 1e6 + 0.5);
            p = q;
        }
        if (h > 23 || mi > 59 || sec > 60) return -1;
        size_t zl = len - p;
        const char *z = s + p;
        if (zl == 1 && (z[0] == 'Z' || z[0] == 'z')) zl = 0;
        if (zl) {
            int oh, om = 0;
            if (z[0] != '+' && z[0] != '-') return -1;
            if (zl == 6 && z[3] == ':') {
                if (digits(z + 1, 2, &oh) || digits(z + 4, 2, &om)) return -1;
            } else if (zl == 5) {
                if (digits(z + 1, 2, &oh) || digits(z + 3, 2, &om)) return -1;
            } else if (zl == 3) {
                if (digits(z + 1, 2, &oh)) return -1;
            } else {
                return -1;
            }
            offset = ((int64_t)oh * 60 + om) * 60 * (z[0] == '+' ? 1 : -1);
        }
    }
    int64_t seconds = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + mi * 60 + sec - offset;
    *out = seconds * 1000000 + (int64_t)micros;
    return 0;
}

int tz_ingest_column_times(const tz_column *c, int64_t *out, size_t *bad)
{
    for (size_t i = 0; i < c->n; i++) {
        int failed = !tz_column_is_valid(c, i);
        if (!failed) {
            if (c->type == TZ_COL_STR) {
                size_t len;
                const char *s = tz_dict_get(c->dict, ((const int32_t *)c->data)[i], &len);
                failed = !s || tz_ingest_parse_time(s, len, &out[i]);
            } else if (c->type == TZ_COL_I64) {
                failed = from_number((double)((const int64_t *)c->data)[i], &out[i]);
            } else if (c->type == TZ_COL_F64) {
                failed = from_number(((const double *)c->data)[i], &out[i]);
            } else {
                failed = 1;
            }
        }
        if (failed) {
            *bad = i;
            return -1;
        }
    }
    return 0;
}

/* ---- duplicates: an open-addressing set of (entity, time) ---------------------- */

/* Entities are compared by their dictionary codes: the column interns each
 * text once, so equal codes are equal texts. A slot holds its key, so a
 * probe reads one place in memory, not the row's time and code as well. */
typedef struct seen_entry {
    int64_t t;
    uint32_t code;
    uint32_t row; /* row index + 1, 0 = empty */
} seen_entry;

typedef struct seen_set {
    size_t cap;  /* power of two */
    seen_entry *slot;
} seen_set;

static inline size_t seen_slot(const seen_set *s, int32_t code, int64_t t)
{
    /* MurmurHash3's finaliser over both: sequential times and codes must
     * not fall into runs of neighbouring slots. */
    uint64_t h = (uint64_t)(uint32_t)code * 0x9E3779B97F4A7C15ull + (uint64_t)t;
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return (size_t)h & (s->cap - 1);
}

/* The set's slots, zeroed (s->slot is NULL when out of memory). A large
 * set asks for huge pages, since every probe lands on a random page of it
 * (with 4 KiB pages each one faulted on first touch, which a prefetch
 * cannot do, and missed the TLB: at 10M rows most of the duplicate check's
 * time). */
static void seen_open(seen_set *s, size_t rows)
{
    s->cap = 16;
    while (s->cap < rows + rows / 2) s->cap <<= 1;  /* at most 2/3 full */
    s->slot = calloc(s->cap, sizeof *s->slot);
    tz_advise_huge(s->slot, s->cap * sizeof *s->slot);
}

static void seen_close(seen_set *s)
{
    free(s->slot);
    s->slot = NULL;
}

/* The first good row with the same entity and time, or -1 after adding row. */
static int64_t seen_add(seen_set *s, const tz_ingest_batch *b, size_t row)
{
    uint32_t code = (uint32_t)((const int32_t *)b->entity->data)[row];
    int64_t t = b->times[row];
    for (size_t i = seen_slot(s, (int32_t)code, t);; i = (i + 1) & (s->cap - 1)) {
        seen_entry *e = &s->slot[i];
        if (!e->row) {
            e->t = t, e->code = code, e->row = (uint32_t)(row + 1);
            return -1;
        }
        if (e->t == t && e->code == code) return (int64_t)e->row - 1;
    }
}

/* Rows ahead of the one being added: their slots are fetched from memory
 * while the rows before them are checked (the set is larger than the
 * caches, and each row's slot is a random place in it). The rows' times
 * are known by then: the rules run over the whole batch first. */
#define SEEN_AHEAD 32

/* Where row's probe starts. The caller prefetches it: GCC 12 takes a
 * function whose only effect is a prefetch for one without effects, and
 * drops the call. */
static const seen_entry *seen_start(const seen_set *s, const tz_ingest_batch *b, size_t row)
{
    return &s->slot[seen_slot(s, ((const int32_t *)b->entity->data)[row], b->times[row])];
}

/* ---- rows ------------------------------------------------------------------------ */

typedef struct buf {
    unsigned char *p;
    size_t len, cap;
} buf;

static int reserve(buf *b, size_t more)
{
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p, b->cap = cap;
    return 0;
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A feature's value at row i: 0 null, 1 present (as *num or *str). */
static int value_at(const tz_ingest_feature *f, size_t i, double *num, int64_t *ival, const char **str,
                    size_t *slen)
{
    const tz_column *c = f->col;
    if (!tz_column_is_valid(c, i)) return 0;
    switch (c->type) {
    case TZ_COL_F64: *num = ((const double *)c->data)[i]; *ival = (int64_t)*num; break;
    case TZ_COL_I64: *ival = ((const int64_t *)c->data)[i]; *num = (double)*ival; break;
    case TZ_COL_BOOL: *num = ((const uint8_t *)c->data)[i] ? 1 : 0; break;
    default: *str = tz_dict_get(c->dict, ((const int32_t *)c->data)[i], slen); break;
    }
    return 1;
}

static int allowed_number(const tz_ingest_feature *f, double x)
{
    size_t lo = 0, hi = f->n_allowed;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (f->allowed[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo < f->n_allowed && f->allowed[lo] == x;
}

/* The feature's rules on row i: 1 passes. */
static int valid_value(const tz_ingest_feature *f, size_t i)
{
    double x = 0;
    int64_t iv = 0;
    const char *s = NULL;
    size_t sl = 0;
    if (!value_at(f, i, &x, &iv, &s, &sl)) return !f->required;
    if (f->type == TZ_COL_F64 && !isfinite(x)) return 0;
    if (f->type == TZ_COL_I64) {
        if (!isfinite(x) || x != floor(x) || fabs(x) > 9007199254740992.0) return 0;
    }
    if (f->type == TZ_COL_STR) {
        if (f->allowed_code) {
            int32_t code = ((const int32_t *)f->col->data)[i];
            if (code < 0 || (size_t)code >= f->n_codes || !f->allowed_code[code]) return 0;
        }
        return 1;
    }
    if (f->has_min && x < f->min) return 0;
    if (f->has_max && x > f->max) return 0;
    if (f->allowed && !allowed_number(f, x)) return 0;
    return 1;
}

/* Encodes row i (rowcodec.lua's layout) into out. */
static int encode_row(const tz_ingest_batch *b, size_t i, buf *out)
{
    int n = b->n_features;
    size_t bitmap = ((size_t)n + 7) / 8;
    out->len = 0;
    if (reserve(out, 2 + bitmap)) return -1;
    put_le(out->p, b->version, 2);
    memset(out->p + 2, 0, bitmap);
    out->len = 2 + bitmap;
    for (int j = 0; j < n; j++) {
        const tz_ingest_feature *f = &b->features[j];
        double x = 0;
        int64_t iv = 0;
        const char *s = NULL;
        size_t sl = 0;
        if (!value_at(f, i, &x, &iv, &s, &sl)) continue;
        out->p[2 + j / 8] |= (unsigned char)(1u << (j % 8));
        if (reserve(out, 8 + sl)) return -1;
        unsigned char *p = out->p + out->len;
        switch (f->type) {
        case TZ_COL_F64: {
            uint64_t u;
            memcpy(&u, &x, 8);
            put_le(p, u, 8);
            out->len += 8;
            break;
        }
        case TZ_COL_I64: put_le(p, (uint64_t)(f->col->type == TZ_COL_I64 ? iv : (int64_t)x), 8), out->len += 8; break;
        case TZ_COL_BOOL: p[0] = x != 0, out->len += 1; break;
        default:
            put_le(p, (uint64_t)sl, 4);
            memcpy(p + 4, s, sl);
            out->len += 4 + sl;
            break;
        }
    }
    return 0;
}

/* Where row i's cell of a feature lies. The offline writer goes in key
 * order, a random place in each column, and prefetches the cells of the
 * row a few ahead (at 10M rows a column is 80 MB, and every cell was a
 * cache and TLB miss). The caller prefetches: see seen_start. */
static const void *cell_at(const tz_ingest_feature *f, size_t i)
{
    const tz_column *c = f->col;
    switch (c->type) {
    case TZ_COL_F64: return (const double *)c->data + i;
    case TZ_COL_I64: return (const int64_t *)c->data + i;
    case TZ_COL_BOOL: return (const uint8_t *)c->data + i;
    default: return (const int32_t *)c->data + i;
    }
}

#define ROW_AHEAD 8

/* (view id u32 BE, entity as keys.lua's "s", time i64 BE sign-flipped). */
static size_t offline_key(uint32_t view, const char *e, size_t el, int64_t t, unsigned char *k)
{
    size_t o = 0;
    for (int i = 3; i >= 0; i--) k[o++] = (unsigned char)(view >> (8 * i));
    for (size_t i = 0; i < el; i++) {
        k[o++] = (unsigned char)e[i];
        if (e[i] == 0) k[o++] = 0xff;
    }
    k[o++] = 0, k[o++] = 0;
    uint64_t u = (uint64_t)t ^ 0x8000000000000000ull;
    for (int i = 7; i >= 0; i--) k[o++] = (unsigned char)(u >> (8 * i));
    return o;
}

/* ---- statistics (quality.lua's record) ------------------------------------------ */

static void hll_value(const tz_ingest_feature *f, int p, double x, const char *s, size_t sl)
{
    if (f->type == TZ_COL_STR) {
        tz_hll_add(f->hll, p, s, sl);
    } else if (f->type == TZ_COL_BOOL) {
        tz_hll_add(f->hll, p, x != 0 ? "true" : "false", x != 0 ? 4 : 5);
    } else {
        tz_hll_add_f64(f->hll, p, x);
    }
}

/* The two passes over one numeric column's written rows, with the value of
 * row i given by VALUE (a double) for the column's type: counts, sum, min,
 * max and HLL, then squared deviations from the batch's mean and the
 * histogram (quality.lua's record, for the rows that changed the store). */
#define NUMERIC_STATS(VALUE)                                                               \
    do {                                                                                   \
        for (size_t i = 0; i < b->n; i++) {                                                \
            if (b->status[i] > TZ_INGEST_REPLACED) continue;                               \
            if (!tz_column_is_valid(c, i)) {                                               \
                f->nulls++;                                                                \
                continue;                                                                  \
            }                                                                              \
            double x = (VALUE);                                                            \
            if (f->hll) hll_value(f, b->hll_p, x, NULL, 0);                                \
            f->numbers++;                                                                  \
            f->sum += x;                                                                   \
            if (x < lo) lo = x;                                                            \
            if (x > hi) hi = x;                                                            \
        }                                                                                  \
        f->lo = lo, f->hi = hi;                                                            \
        if (!f->numbers) break;                                                            \
        if (!f->has_hist) {                                                                \
            f->hist_lo = lo, f->hist_hi = hi > lo ? hi : lo + 1;                           \
            f->has_hist = 1;                                                               \
        }                                                                                  \
        double mean = f->sum / (double)f->numbers, width = (f->hist_hi - f->hist_lo) / TZ_INGEST_BINS; \
        for (size_t i = 0; i < b->n; i++) {                                                \
            if (b->status[i] > TZ_INGEST_REPLACED || !tz_column_is_valid(c, i)) continue;  \
            double x = (VALUE);                                                            \
            f->m2 += (x - mean) * (x - mean);                                              \
            if (x < f->hist_lo) f->under++;                                                \
            else if (x > f->hist_hi) f->over++;                                            \
            else {                                                                         \
                double bin = floor((x - f->hist_lo) / width);                              \
                f->hist[bin >= TZ_INGEST_BINS - 1 ? TZ_INGEST_BINS - 1 : (int)bin]++;      \
            }                                                                              \
        }                                                                                  \
    } while (0)

static void feature_stats(tz_ingest_batch *b, tz_ingest_feature *f)
{
    const tz_column *c = f->col;
    f->nulls = f->numbers = f->others = 0;
    f->sum = f->m2 = 0;
    f->under = f->over = 0;
    memset(f->hist, 0, sizeof f->hist);
    double lo = INFINITY, hi = -INFINITY;
    f->lo = lo, f->hi = hi;
    if (c->type == TZ_COL_STR) {
        for (size_t i = 0; i < b->n; i++) {
            if (b->status[i] > TZ_INGEST_REPLACED) continue;
            if (!tz_column_is_valid(c, i)) {
                f->nulls++;
                continue;
            }
            size_t sl;
            const char *s = tz_dict_get(c->dict, ((const int32_t *)c->data)[i], &sl);
            if (f->hll) hll_value(f, b->hll_p, 0, s, sl);
            f->others++;
        }
        return;
    }
    const double *d = c->data;
    const int64_t *iv = c->data;
    const uint8_t *bv = c->data;
    switch (c->type) {
    case TZ_COL_F64: NUMERIC_STATS(d[i]); break;
    case TZ_COL_I64: NUMERIC_STATS((double)iv[i]); break;
    default: NUMERIC_STATS(bv[i] ? 1.0 : 0.0); break;
    }
}

/* ---- the batch ------------------------------------------------------------------- */

static int good_row_at(tz_ingest_batch *b, size_t i, const char **e, size_t *el)
{
    const tz_column *ec = b->entity, *tc = b->time;
    if (!tz_column_is_valid(ec, i) || !tz_column_is_valid(tc, i)) return 0;
    *e = tz_dict_get(ec->dict, ((const int32_t *)ec->data)[i], el);
    if (!*e || *el == 0 || *el > TZ_INGEST_MAX_ENTITY) return 0;
    int64_t t;
    if (tc->type == TZ_COL_STR) {
        size_t tl;
        const char *ts = tz_dict_get(tc->dict, ((const int32_t *)tc->data)[i], &tl);
        if (!ts || tz_ingest_parse_time(ts, tl, &t)) return 0;
    } else if (tc->type == TZ_COL_I64) {
        if (from_number((double)((const int64_t *)tc->data)[i], &t)) return 0;
    } else if (tc->type == TZ_COL_F64) {
        if (from_number(((const double *)tc->data)[i], &t)) return 0;
    } else {
        return 0;
    }
    b->times[i] = t;
    for (int j = 0; j < b->n_features; j++)
        if (!valid_value(&b->features[j], i)) return 0;
    return 1;
}

static int keep_old(tz_ingest_batch *b, size_t i, const tz_store_val *old, size_t *cap_at, buf *olds)
{
    if (reserve(olds, old->size)) return -1;
    memcpy(olds->p + olds->len, old->data, old->size);
    if ((b->replaced + 1) * 3 > *cap_at) {
        size_t cap = *cap_at ? *cap_at * 2 : 48;
        size_t *p = realloc(b->old_at, cap * sizeof *p);
        if (!p) return -1;
        b->old_at = p, *cap_at = cap;
    }
    b->old_at[b->replaced * 3] = i;
    b->old_at[b->replaced * 3 + 1] = olds->len;
    b->old_at[b->replaced * 3 + 2] = old->size;
    olds->len += old->size;
    b->replaced++;
    return 0;
}

/* The good rows grouped by entity: rows[start[g] .. start[g + 1]) are
 * entity g's, in the batch's order, and groups go in the entities' byte
 * order (that of their offline keys). Entities are the entity column's
 * dictionary codes, ranked once by their text. */
typedef struct groups {
    size_t n_groups;
    size_t *start;  /* n_groups + 1 */
    size_t *rows;
} groups;

static void groups_free(groups *g)
{
    free(g->start);
    free(g->rows);
}

static int group_rows(const tz_ingest_batch *b, const size_t *good, size_t n_good, groups *out)
{
    const int32_t *code = b->entity->data;
    size_t nd = tz_dict_size(b->entity->dict);
    size_t *rank = malloc((nd ? nd : 1) * sizeof *rank);
    size_t *next = malloc((nd ? nd : 1) * sizeof *next);
    out->start = calloc(nd + 1, sizeof *out->start);
    out->rows = malloc((n_good ? n_good : 1) * sizeof *out->rows);
    out->n_groups = nd;
    int ok = rank && next && out->start && out->rows && tz_dict_rank(b->entity->dict, rank) == 0;
    if (ok) {
        /* A stable counting sort by rank: each group keeps the batch's order. */
        for (size_t k = 0; k < n_good; k++) out->start[rank[code[good[k]]] + 1]++;
        for (size_t r = 0; r < nd; r++) out->start[r + 1] += out->start[r];
        memcpy(next, out->start, nd * sizeof *next);
        for (size_t k = 0; k < n_good; k++) out->rows[next[rank[code[good[k]]]]++] = good[k];
    }
    free(rank), free(next);
    if (!ok) groups_free(out);
    return ok ? 0 : -1;
}

static const int64_t *sort_times;

static int cmp_time(const void *a, const void *b)
{
    int64_t x = sort_times[*(const size_t *)a], y = sort_times[*(const size_t *)b];
    return x < y ? -1 : x > y;
}

#define KEY_MAX (4 + 2 * TZ_INGEST_MAX_ENTITY + 2 + 8)

/* Whether key comes after the database's last one (a new view's first
 * batch, or one later in time for every entity): then every key of the
 * batch, in order, is appended, with no search and whole pages. */
static int after_last(tz_store_txn *txn, unsigned dbi, const unsigned char *first, size_t first_len, tz_err *err)
{
    tz_store_cursor *cur;
    tz_store_val k, v;
    if (tz_store_cursor_open(txn, dbi, &cur, err)) return -1;
    int rc = tz_store_cursor_move(cur, TZ_STORE_LAST, NULL, 0, &k, &v, err);
    int after = 0;
    if (rc == TZ_ENOTFOUND) after = 1;
    else if (rc == 0) {
        int c = memcmp(first, k.data, first_len < k.size ? first_len : k.size);
        after = c > 0 || (c == 0 && first_len > k.size);
    }
    tz_store_cursor_close(cur);
    return rc && rc != TZ_ENOTFOUND ? -1 : after;
}

static const char *entity_of(const tz_ingest_batch *b, size_t i, size_t *el)
{
    return tz_dict_get(b->entity->dict, ((const int32_t *)b->entity->data)[i], el);
}

/* The offline rows, in key order (entity, then time): appended when the
 * batch comes after what is stored, else each one compared and put (a
 * correction keeps the old bytes for the statistics). changed[row] = 1. */
static int write_offline(tz_store_txn *txn, tz_ingest_batch *b, const groups *g, uint8_t *changed, buf *row,
                         size_t *cap_at, buf *olds, tz_err *err)
{
    unsigned char key[KEY_MAX];
    size_t n = g->start[g->n_groups];
    if (!n) return 0;
    /* Each group by time (usually already so). */
    sort_times = b->times;
    for (size_t k = 0; k < g->n_groups; k++) {
        size_t *rows = g->rows + g->start[k], m = g->start[k + 1] - g->start[k];
        for (size_t j = 1; j < m; j++)
            if (b->times[rows[j]] < b->times[rows[j - 1]]) {
                qsort(rows, m, sizeof *rows, cmp_time);
                break;
            }
    }
    size_t el;
    const char *e = entity_of(b, g->rows[0], &el);
    size_t kl = offline_key(b->view_id, e, el, b->times[g->rows[0]], key);
    int append = after_last(txn, b->dbi_offline, key, kl, err);
    if (append < 0) return err->code ? err->code : TZ_EIO;
    for (size_t k = 0; k < n; k++) {
        size_t i = g->rows[k];
        int rc;
        if (k + ROW_AHEAD < n)
            for (int j = 0; j < b->n_features; j++) __builtin_prefetch(cell_at(&b->features[j], g->rows[k + ROW_AHEAD]));
        if (encode_row(b, i, row)) return tz_err_set(err, TZ_ENOMEM, "out of memory encoding a row");
        e = entity_of(b, i, &el);
        kl = offline_key(b->view_id, e, el, b->times[i], key);
        if (append) {
            if ((rc = tz_store_append(txn, b->dbi_offline, key, kl, row->p, row->len, err))) return rc;
            changed[i] = 1;
            continue;
        }
        tz_store_val old;
        rc = tz_store_get(txn, b->dbi_offline, key, kl, &old, err);
        if (rc && rc != TZ_ENOTFOUND) return rc;
        if (rc == 0 && old.size == row->len && memcmp(old.data, row->p, row->len) == 0) continue;
        if (rc == 0 && keep_old(b, i, &old, cap_at, olds)) return tz_err_set(err, TZ_ENOMEM, "out of memory");
        if ((rc = tz_store_put(txn, b->dbi_offline, key, kl, row->p, row->len, 0, err))) return rc;
        changed[i] = 1;
    }
    return 0;
}

/* The online row of each entity: its rows meet the stored one in the
 * batch's order, each replacing the current one unless that is newer (or
 * the same value), as the row path writes them one by one, so the counts
 * agree; only the last winner is written, once. */
static int write_online(tz_store_txn *txn, tz_ingest_batch *b, const groups *g, uint8_t *changed, buf *row,
                        buf *online, tz_err *err)
{
    unsigned char key[KEY_MAX];
    for (size_t k = 0; k < g->n_groups; k++) {
        size_t first = g->start[k], last = g->start[k + 1];
        if (first == last) continue;
        size_t el;
        const char *e = entity_of(b, g->rows[first], &el);
        size_t kl = offline_key(b->view_id, e, el, 0, key) - 8; /* the (view, entity) prefix */
        tz_store_val old;
        int rc = tz_store_get(txn, b->dbi_online, key, kl, &old, err);
        if (rc && rc != TZ_ENOTFOUND) return rc;
        int has_cur = rc == 0 && old.size >= 8;
        int64_t cur_t = 0;
        if (has_cur) memcpy(&cur_t, old.data, 8);
        int64_t winner = -1; /* the batch's row holding the entity now; -1: the stored one */
        for (size_t j = first; j < last; j++) {
            size_t i = g->rows[j];
            int64_t t = b->times[i];
            if (has_cur && cur_t > t) continue;
            if (has_cur && winner < 0 && cur_t == t) {
                /* Same time as the stored row: the same value changes nothing. */
                if (encode_row(b, i, row)) return tz_err_set(err, TZ_ENOMEM, "out of memory encoding a row");
                if (old.size == 8 + row->len && memcmp((const char *)old.data + 8, row->p, row->len) == 0) continue;
            }
            has_cur = 1, cur_t = t, winner = (int64_t)i;
            changed[i] = 1;
            b->online_updates++;
        }
        if (winner < 0) continue;
        if (encode_row(b, (size_t)winner, row)) return tz_err_set(err, TZ_ENOMEM, "out of memory encoding a row");
        online->len = 0;
        if (reserve(online, 8 + row->len)) return tz_err_set(err, TZ_ENOMEM, "out of memory");
        memcpy(online->p, &cur_t, 8); /* native order, as layout.lua's pack_time */
        memcpy(online->p + 8, row->p, row->len);
        online->len = 8 + row->len;
        if ((rc = tz_store_put(txn, b->dbi_online, key, kl, online->p, online->len, 0, err))) return rc;
    }
    return 0;
}

int tz_ingest_run(tz_store_txn *txn, tz_ingest_batch *b, tz_err *err)
{
    b->landed = b->unchanged = b->rejected = b->duplicates = b->online_updates = b->replaced = 0;
    b->min_time = INT64_MAX, b->max_time = INT64_MIN, b->last_event = INT64_MIN;
    b->old_rows = NULL, b->old_len = 0, b->old_at = NULL;
    seen_set seen = {0, NULL};
    if (b->n >= UINT32_MAX) return tz_err_set(err, TZ_EINVAL, "%zu rows in one batch, more than 2^32 - 1", b->n);
    seen_open(&seen, b->n);
    size_t *good = malloc((b->n ? b->n : 1) * sizeof *good);
    groups g = {0, NULL, NULL};
    uint8_t *changed = calloc(b->n ? b->n : 1, 1);
    buf row = {0}, online = {0}, olds = {0};
    size_t cap_at = 0, n_good = 0;
    int rc = 0;
    if (!seen.slot || !good || !changed) {
        rc = tz_err_set(err, TZ_ENOMEM, "out of memory for %zu rows", b->n);
        goto done;
    }
    /* The rules, then duplicates among the rows that pass, in the batch's
     * order (good[] shrinks in place to the rows that are not). */
    size_t n_passed = 0;
    for (size_t i = 0; i < b->n; i++) {
        const char *e;
        size_t el;
        b->detail[i] = -1;
        if (!good_row_at(b, i, &e, &el)) {
            b->status[i] = TZ_INGEST_REJECTED;
            b->rejected++;
            continue;
        }
        good[n_passed++] = i;
    }
    for (size_t k = 0; k < n_passed; k++) {
        size_t i = good[k];
        if (k + SEEN_AHEAD < n_passed) __builtin_prefetch(seen_start(&seen, b, good[k + SEEN_AHEAD]));
        int64_t first = seen_add(&seen, b, i);
        if (first >= 0) {
            b->status[i] = TZ_INGEST_DUPLICATE;
            b->detail[i] = first;
            b->duplicates++;
            b->rejected++;
            continue;
        }
        if (b->times[i] < b->min_time) b->min_time = b->times[i];
        if (b->times[i] > b->max_time) b->max_time = b->times[i];
        good[n_good++] = i;
    }
    if (group_rows(b, good, n_good, &g)) {
        rc = tz_err_set(err, TZ_ENOMEM, "out of memory grouping %zu rows", n_good);
        goto done;
    }
    if (b->write_online) rc = write_online(txn, b, &g, changed, &row, &online, err);
    if (!rc && b->write_offline) rc = write_offline(txn, b, &g, changed, &row, &cap_at, &olds, err);
    if (rc) goto done;
    /* Which rows changed the store; the statistics of those. */
    for (size_t i = 0; i < b->n; i++) {
        if (b->status[i] == TZ_INGEST_REJECTED || b->status[i] == TZ_INGEST_DUPLICATE) continue;
        if (!changed[i]) {
            b->status[i] = TZ_INGEST_UNCHANGED;
            b->unchanged++;
            continue;
        }
        b->status[i] = TZ_INGEST_LANDED;
        b->landed++;
        if (b->times[i] > b->last_event) b->last_event = b->times[i];
        if (b->entity_hll) {
            size_t el;
            const char *e = tz_dict_get(b->entity->dict, ((const int32_t *)b->entity->data)[i], &el);
            tz_hll_add(b->entity_hll, b->hll_p, e, el);
        }
    }
    for (size_t r = 0; r < b->replaced; r++) b->status[b->old_at[3 * r]] = TZ_INGEST_REPLACED;
    for (int j = 0; j < b->n_features; j++) feature_stats(b, &b->features[j]);
done:
    groups_free(&g);
    seen_close(&seen);
    free(good);
    free(changed);
    free(row.p);
    free(online.p);
    if (rc) {
        free(olds.p);
        free(b->old_at);
        b->old_at = NULL;
        return rc;
    }
    b->old_rows = olds.p, b->old_len = olds.len;
    return 0;
}
