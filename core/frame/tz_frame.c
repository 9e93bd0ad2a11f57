#define _GNU_SOURCE /* qsort_r */
#include "frame/tz_frame.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- dictionaries: arena of strings + open-addressing hash of codes ----- */

struct tz_dict {
    char *arena;
    size_t arena_len, arena_cap;
    size_t *offsets;     /* code -> start in arena; offsets[code + 1] - 1 is the end */
    size_t n, cap;       /* codes */
    int32_t *slots;      /* hash slots holding code + 1 (0 = empty) */
    size_t n_slots;
};

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037ull;  /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static tz_dict *dict_new(void)
{
    tz_dict *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->offsets = malloc(sizeof *d->offsets);
    if (!d->offsets) { free(d); return NULL; }
    d->offsets[0] = 0;
    return d;
}

static void dict_free(tz_dict *d)
{
    if (!d) return;
    free(d->arena);
    free(d->offsets);
    free(d->slots);
    free(d);
}

const char *tz_dict_get(const tz_dict *d, int32_t code, size_t *len)
{
    if (code < 0 || (size_t)code >= d->n) return NULL;
    size_t start = d->offsets[code];
    *len = d->offsets[code + 1] - start - 1;
    return d->arena + start;
}

size_t tz_dict_size(const tz_dict *d) { return d->n; }

static int cmp_dict_text(const void *a, const void *b, void *dict)
{
    size_t la, lb;
    const char *x = tz_dict_get(dict, *(const int32_t *)a, &la), *y = tz_dict_get(dict, *(const int32_t *)b, &lb);
    int c = memcmp(x, y, la < lb ? la : lb);
    if (c) return c;
    return la < lb ? -1 : la > lb;
}

int tz_dict_rank(const tz_dict *d, size_t *rank)
{
    size_t n = d->n;
    int32_t *by_text = malloc((n ? n : 1) * sizeof *by_text);
    if (!by_text) return -1;
    for (size_t c = 0; c < n; c++) by_text[c] = (int32_t)c;
    qsort_r(by_text, n, sizeof *by_text, cmp_dict_text, (void *)d);
    for (size_t r = 0; r < n; r++) rank[by_text[r]] = r;
    free(by_text);
    return 0;
}

static int32_t *dict_slot(const tz_dict *d, const char *s, size_t len)
{
    size_t mask = d->n_slots - 1, i = (size_t)hash_bytes(s, len) & mask;
    for (;;) {
        int32_t *slot = &d->slots[i];
        if (*slot == 0) return slot;
        size_t l;
        const char *t = tz_dict_get(d, *slot - 1, &l);
        if (l == len && !memcmp(s, t, len)) return slot;
        i = (i + 1) & mask;
    }
}

int32_t tz_dict_find(const tz_dict *d, const char *s, size_t len)
{
    if (!d->n_slots) return -1;
    int32_t slot = *dict_slot(d, s, len);
    return slot ? slot - 1 : -1;
}

static int dict_grow_slots(tz_dict *d)
{
    size_t n_slots = d->n_slots ? d->n_slots * 2 : 64;
    int32_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots) return -1;
    free(d->slots);
    d->slots = slots;
    d->n_slots = n_slots;
    for (size_t c = 0; c < d->n; c++) {
        size_t len;
        const char *s = tz_dict_get(d, (int32_t)c, &len);
        *dict_slot(d, s, len) = (int32_t)c + 1;
    }
    return 0;
}

int32_t tz_dict_intern(tz_dict *d, const char *s, size_t len)
{
    if ((d->n + 1) * 2 > d->n_slots && dict_grow_slots(d)) return -1;
    int32_t *slot = dict_slot(d, s, len);
    if (*slot) return *slot - 1;
    if (d->n >= INT32_MAX - 1) return -1;
    if (d->arena_len + len + 1 > d->arena_cap) {
        size_t cap = d->arena_cap ? d->arena_cap : 256;
        while (cap < d->arena_len + len + 1) cap *= 2;
        char *a = realloc(d->arena, cap);
        if (!a) return -1;
        d->arena = a;
        d->arena_cap = cap;
    }
    if (d->n + 2 > d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        size_t *o = realloc(d->offsets, cap * sizeof *o);
        if (!o) return -1;
        d->offsets = o;
        d->cap = cap;
    }
    memcpy(d->arena + d->arena_len, s, len);
    d->arena[d->arena_len + len] = 0;  /* so tz_dict_get's strings are C strings too */
    d->arena_len += len + 1;
    d->offsets[d->n + 1] = d->arena_len;
    *slot = (int32_t)d->n + 1;
    return (int32_t)d->n++;
}

/* ---- columns ---------------------------------------------------------- */

static size_t type_width(int type)
{
    switch (type) {
    case TZ_COL_F64: case TZ_COL_I64: return 8;
    case TZ_COL_BOOL: return 1;
    default: return 4;
    }
}

#define HUGE_ADVICE_BYTES ((size_t)4 << 20)  /* two huge pages: smaller arrays gain little */

void tz_advise_huge(void *p, size_t len)
{
    uintptr_t page = 4096, start = (uintptr_t)p & ~(page - 1), end = ((uintptr_t)p + len + page - 1) & ~(page - 1);
    if (p && len >= HUGE_ADVICE_BYTES) madvise((void *)start, end - start, MADV_HUGEPAGE);
}

tz_column *tz_column_new(const char *name, int type, size_t n)
{
    tz_column *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    size_t cap = n ? n : 1;
    c->name = strdup(name ? name : "");
    c->type = type;
    c->n = n;
    c->cap = cap;
    c->data = calloc(cap, type_width(type));
    tz_advise_huge(c->data, cap * type_width(type));
    c->valid = calloc((cap + 7) / 8, 1);
    c->null_count = n;
    c->refs = 1;
    if (type == TZ_COL_STR) c->dict = dict_new();
    if (!c->name || !c->data || !c->valid || (type == TZ_COL_STR && !c->dict)) {
        tz_column_unref(c);
        return NULL;
    }
    if (type == TZ_COL_F64)
        for (size_t i = 0; i < n; i++) ((double *)c->data)[i] = NAN;
    return c;
}

void tz_column_ref(tz_column *c) { c->refs++; }

void tz_column_unref(tz_column *c)
{
    if (!c || --c->refs > 0) return;
    free(c->name);
    free(c->data);
    free(c->valid);
    dict_free(c->dict);
    free(c);
}

int tz_column_rename(tz_column *c, const char *name, tz_err *err)
{
    char *copy = strdup(name);
    if (!copy) return tz_err_set(err, TZ_ENOMEM, "out of memory");
    free(c->name);
    c->name = copy;
    return 0;
}

void tz_column_set_valid(tz_column *c, size_t i, int valid)
{
    uint8_t bit = (uint8_t)(1u << (i & 7));
    int was = (c->valid[i >> 3] & bit) != 0;
    if (valid && !was) { c->valid[i >> 3] |= bit; c->null_count--; }
    if (!valid && was) { c->valid[i >> 3] &= (uint8_t)~bit; c->null_count++; }
}

tz_column *tz_column_to_f64(const tz_column *c)
{
    tz_column *out = tz_column_new(c->name, TZ_COL_F64, c->n);
    if (!out) return NULL;
    double *d = out->data;
    memcpy(out->valid, c->valid, (c->n + 7) / 8);
    out->null_count = c->null_count;
    for (size_t i = 0; i < c->n; i++) {
        if (!tz_column_is_valid(c, i)) continue;
        switch (c->type) {
        case TZ_COL_F64: d[i] = ((const double *)c->data)[i]; break;
        case TZ_COL_I64: d[i] = (double)((const int64_t *)c->data)[i]; break;
        case TZ_COL_BOOL: d[i] = ((const uint8_t *)c->data)[i]; break;
        default: d[i] = ((const int32_t *)c->data)[i]; break;  /* string codes */
        }
    }
    return out;
}

/* ---- frames ----------------------------------------------------------- */

tz_frame *tz_frame_new(void) { return calloc(1, sizeof(tz_frame)); }

void tz_frame_free(tz_frame *f)
{
    if (!f) return;
    for (size_t j = 0; j < f->n_cols; j++) tz_column_unref(f->cols[j]);
    free(f->cols);
    free(f);
}

int tz_frame_find(const tz_frame *f, const char *name)
{
    for (size_t j = 0; j < f->n_cols; j++)
        if (!strcmp(f->cols[j]->name, name)) return (int)j;
    return -1;
}

int tz_frame_add(tz_frame *f, tz_column *c, tz_err *err)
{
    if (f->n_cols && c->n != f->n_rows)
        return tz_err_set(err, TZ_EINVAL, "column '%s' has %zu rows, the frame %zu", c->name, c->n, f->n_rows);
    if (tz_frame_find(f, c->name) >= 0)
        return tz_err_set(err, TZ_EINVAL, "the frame already has a column '%s'", c->name);
    if (f->n_cols == f->cap_cols) {
        size_t cap = f->cap_cols ? f->cap_cols * 2 : 8;
        tz_column **cols = realloc(f->cols, cap * sizeof *cols);
        if (!cols) return tz_err_set(err, TZ_ENOMEM, "out of memory");
        f->cols = cols;
        f->cap_cols = cap;
    }
    tz_column_ref(c);
    f->cols[f->n_cols++] = c;
    f->n_rows = c->n;
    return 0;
}

static tz_column *take_column(const tz_column *c, const int64_t *idx, size_t n)
{
    tz_column *out = tz_column_new(c->name, c->type, n);
    if (!out) return NULL;
    size_t w = type_width(c->type);
    const char *src = c->data;
    char *dst = out->data;
    for (size_t i = 0; i < n; i++) {
        size_t r = (size_t)idx[i];
        memcpy(dst + i * w, src + r * w, w);
        if (tz_column_is_valid(c, r)) tz_column_set_valid(out, i, 1);
    }
    if (c->type == TZ_COL_STR) {
        /* Same codes, so the same dictionary contents. */
        for (size_t code = 0; code < tz_dict_size(c->dict); code++) {
            size_t len;
            const char *s = tz_dict_get(c->dict, (int32_t)code, &len);
            if (tz_dict_intern(out->dict, s, len) < 0) { tz_column_unref(out); return NULL; }
        }
    }
    return out;
}

int tz_frame_take(const tz_frame *f, const int64_t *idx, size_t n, tz_frame **out, tz_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (idx[i] < 0 || (size_t)idx[i] >= f->n_rows)
            return tz_err_set(err, TZ_EINVAL, "row index %lld out of range 0..%zu", (long long)idx[i], f->n_rows);
    tz_frame *res = tz_frame_new();
    if (!res) return tz_err_set(err, TZ_ENOMEM, "out of memory");
    for (size_t j = 0; j < f->n_cols; j++) {
        tz_column *c = take_column(f->cols[j], idx, n);
        int rc = c ? tz_frame_add(res, c, err) : tz_err_set(err, TZ_ENOMEM, "out of memory");
        tz_column_unref(c);
        if (rc) { tz_frame_free(res); return rc; }
    }
    res->n_rows = n;
    *out = res;
    return 0;
}

size_t tz_frame_bytes(const tz_frame *f)
{
    size_t total = 0;
    for (size_t j = 0; j < f->n_cols; j++) {
        const tz_column *c = f->cols[j];
        total += c->cap * type_width(c->type) + (c->cap + 7) / 8;
        if (c->dict) total += c->dict->arena_cap + c->dict->cap * sizeof(size_t) + c->dict->n_slots * 4;
    }
    return total;
}
