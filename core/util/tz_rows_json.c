/* tz_rows_json.c — the predict body's fast shape and the Feast read body's
 * (tz_rows_json.h). One pass,
 * no allocation: keys are looked up in an open-addressing table built once
 * per model version, after a cheaper guess (clients send their keys in the
 * same order every time: the column that followed this one in the last
 * row, compared in place, is almost always the next); numbers take Clinger's exact fast path (a mantissa up
 * to 2^53 and a power of ten up to 22, where one multiplication or division
 * rounds correctly, as strtod would) and strtod otherwise. */
#include "util/tz_rows_json.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct tz_rows_index {
    int n;
    unsigned mask;     /* slots - 1; slots is a power of two >= 2n */
    int *slot;         /* column index + 1, 0 = empty */
    const char **name; /* per column */
    size_t *len;
    unsigned char *seen; /* per column, scratch for one row */
    int *next;         /* per column, then one for a row's start: the column that
                          followed in the last row parsed, -1 none; only names
                          that read the same raw and unescaped are guessed */
    unsigned char *plain; /* per column: no '"', '\\' or control character */
};

static uint32_t hash_name(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int lookup(const tz_rows_index *ix, const char *s, size_t n)
{
    for (unsigned i = hash_name(s, n) & ix->mask;; i = (i + 1) & ix->mask) {
        int c = ix->slot[i] - 1;
        if (c < 0) return -1;
        if (ix->len[c] == n && memcmp(ix->name[c], s, n) == 0) return c;
    }
}

void tz_rows_index_free(tz_rows_index *ix)
{
    if (!ix) return;
    if (ix->name)
        for (int i = 0; i < ix->n; i++) free((void *)ix->name[i]);
    free(ix->slot);
    free(ix->name);
    free(ix->len);
    free(ix->seen);
    free(ix->next);
    free(ix->plain);
    free(ix);
}

tz_rows_index *tz_rows_index_new(int n, const char *const *names, const size_t *lens)
{
    if (n < 1 || n > TZ_ROWS_MAX_COLUMNS) return NULL;
    tz_rows_index *ix = calloc(1, sizeof *ix);
    if (!ix) return NULL;
    unsigned slots = 4;
    while (slots < 2u * (unsigned)n) slots <<= 1;
    ix->mask = slots - 1;
    ix->slot = calloc(slots, sizeof *ix->slot);
    ix->name = calloc((size_t)n, sizeof *ix->name);
    ix->len = calloc((size_t)n, sizeof *ix->len);
    ix->seen = calloc((size_t)n, 1);
    ix->next = malloc(((size_t)n + 1) * sizeof *ix->next);
    ix->plain = calloc((size_t)n, 1);
    if (!ix->slot || !ix->name || !ix->len || !ix->seen || !ix->next || !ix->plain) goto fail;
    for (int c = 0; c <= n; c++) ix->next[c] = -1;
    for (int c = 0; c < n; c++) {
        size_t len = lens[c];
        if (len > TZ_ROWS_MAX_NAME) goto fail;
        if (ix->n > 0 && lookup(ix, names[c], len) >= 0) goto fail;
        char *copy = malloc(len + 1);
        if (!copy) goto fail;
        memcpy(copy, names[c], len);
        copy[len] = '\0';
        ix->name[c] = copy;
        ix->len[c] = len;
        ix->plain[c] = 1;
        for (size_t i = 0; i < len; i++)
            if (copy[i] == '"' || copy[i] == '\\' || (unsigned char)copy[i] < 0x20) ix->plain[c] = 0;
        ix->n = c + 1;
        unsigned i = hash_name(copy, len) & ix->mask;
        while (ix->slot[i]) i = (i + 1) & ix->mask;
        ix->slot[i] = c + 1;
    }
    return ix;
fail:
    tz_rows_index_free(ix);
    return NULL;
}

size_t tz_rows_min_bytes(int n) { return 5u * (size_t)(n > 0 ? n : 1) + 1; }

/* ---- the scanner ---------------------------------------------------------------- */

typedef struct {
    const char *p, *end;
} scan;

/* JSON's whitespace: space, tab, line feed, carriage return. */
static const unsigned char WS[256] = { [' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1 };

static inline void skip_ws(scan *s)
{
    const char *p = s->p;
    while (p < s->end && WS[(unsigned char)*p]) p++;
    s->p = p;
}

static inline int take(scan *s, char c)
{
    /* Compact JSON first: the byte itself, with no whitespace to skip. */
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    skip_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

/* A key without escapes or control characters: its bytes, or 0. */
/* The rest of a key whose opening quote was taken. */
static int key_rest(scan *s, const char **start, size_t *len)
{
    const char *b = s->p;
    while (s->p < s->end && *s->p != '"') {
        unsigned char c = (unsigned char)*s->p;
        if (c == '\\' || c < 0x20) return 0;
        s->p++;
    }
    if (s->p == s->end) return 0;
    *start = b;
    *len = (size_t)(s->p - b);
    s->p++;
    return 1;
}

static int key(scan *s, const char **start, size_t *len) { return take(s, '"') && key_rest(s, start, len); }

#define NOT_A_KEY (-2)

/* The column of the key at s (its opening quote taken), guess tried first:
 * the guessed name, then a closing quote, in place. -1: no such column
 * (its bytes in *k, *klen); NOT_A_KEY: escapes or no closing quote. */
static int column_key(const tz_rows_index *ix, scan *s, int guess, const char **k, size_t *klen)
{
    if (guess >= 0) {
        size_t gl = ix->len[guess];
        if ((size_t)(s->end - s->p) > gl && s->p[gl] == '"' && memcmp(s->p, ix->name[guess], gl) == 0) {
            s->p += gl + 1;
            return guess;
        }
    }
    if (!key_rest(s, k, klen)) return NOT_A_KEY;
    return lookup(ix, *k, *klen);
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A JSON number's text from b up to e, to a double by strtod: finite, or 0. */
static int number_slow(const char *b, const char *e, double *out)
{
    char buf[128];
    size_t n = (size_t)(e - b);
    if (n >= sizeof buf) return 0; /* the general path reads it */
    memcpy(buf, b, n);
    buf[n] = '\0';
    double v = strtod(buf, NULL);
    if (!isfinite(v)) return 0;
    *out = v;
    return 1;
}

static inline int is_digit(char c) { return (unsigned)(c - '0') < 10; }

/* A JSON number (RFC 8259 grammar) that is finite as a double, or 0. Up
 * to 19 digits in all are read as one integer mantissa; when it is at most
 * 2^53 and the power of ten at most 22, one multiplication or division
 * rounds exactly (Clinger), else strtod reads the text. Inlined where it
 * is read: the call took an eighth of a 57-column row's parse. */
static inline __attribute__((always_inline)) int number(scan *s, double *out)
{
    skip_ws(s);
    const char *b = s->p, *e = s->end, *p = b;
    int neg = p < e && *p == '-';
    p += neg;
    const char *digits = p;
    uint64_t mant = 0;
    while (p < e && is_digit(*p)) mant = mant * 10 + (uint64_t)(*p++ - '0');
    long n_int = p - digits;
    if (n_int == 0 || (n_int > 1 && *digits == '0')) return 0; /* no digit, or a leading zero */
    long n_frac = 0;
    if (p < e && *p == '.') {
        const char *f = ++p;
        while (p < e && is_digit(*p)) mant = mant * 10 + (uint64_t)(*p++ - '0');
        n_frac = p - f;
        if (n_frac == 0) return 0;
    }
    int exp = 0, has_exp = p < e && (*p == 'e' || *p == 'E');
    if (has_exp) {
        p++;
        int eneg = 0;
        if (p < e && (*p == '+' || *p == '-')) eneg = *p++ == '-';
        if (p == e || !is_digit(*p)) return 0;
        while (p < e && is_digit(*p)) {
            if (exp < 100000) exp = exp * 10 + (*p - '0');
            p++;
        }
        if (eneg) exp = -exp;
    }
    s->p = p;
    long e10 = exp - n_frac;
    if (n_int + n_frac > 19 || mant > (1ull << 53) || e10 < -22 || e10 > 22) return number_slow(b, p, out);
    double v = (double)mant;
    v = e10 < 0 ? v / POW10[-e10] : v * POW10[e10];
    *out = neg ? -v : v;
    return 1;
}

/* Where the caller keeps extras, and how many so far. */
typedef struct extras_out {
    tz_rows_extra *at;
    int cap, n;
    const char *body;
} extras_out;

static int literal(scan *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return 0;
    s->p += n;
    return 1;
}

/* The scalar value of a key that is no column, recorded for the caller:
 * 0 when it is not a scalar the fast path passes on, or there is no room. */
static int extra(extras_out *x, scan *s, int r, const char *k, size_t klen)
{
    if (x->n == x->cap) return 0;
    tz_rows_extra *e = &x->at[x->n];
    skip_ws(s);
    const char *v = s->p;
    double ignored;
    size_t slen;
    if (take(s, '"')) {
        if (!key_rest(s, &v, &slen)) return 0;  /* same rule as keys: no escapes */
        e->kind = TZ_ROWS_STRING, e->value_len = (uint32_t)slen;
    } else if (literal(s, "true", 4)) e->kind = TZ_ROWS_TRUE, e->value_len = 4;
    else if (literal(s, "false", 5)) e->kind = TZ_ROWS_FALSE, e->value_len = 5;
    else if (literal(s, "null", 4)) e->kind = TZ_ROWS_NULL, e->value_len = 4;
    else if (number(s, &ignored)) e->kind = TZ_ROWS_NUMBER, e->value_len = (uint32_t)(s->p - v);
    else return 0;
    e->row = r;
    e->key_at = (uint32_t)(k - x->body);
    e->key_len = (uint32_t)klen;
    e->value_at = (uint32_t)(v - x->body);
    x->n++;
    return 1;
}

/* One instance: every column once, each a number; other keys as extras. */
static int row(const tz_rows_index *ix, scan *s, double *out, extras_out *x, int r)
{
    if (!take(s, '{')) return 0;
    memset(ix->seen, 0, (size_t)ix->n);
    int count = 0, prev = ix->n; /* next[n]: the first column of a row */
    if (!take(s, '}')) {
        do {
            if (!take(s, '"')) return 0;
            const char *k = NULL;
            size_t klen = 0;
            int c = column_key(ix, s, ix->next[prev], &k, &klen);
            if (c == NOT_A_KEY || !take(s, ':')) return 0;
            if (c < 0) {
                if (!extra(x, s, r, k, klen)) return 0;
                continue;
            }
            if (ix->seen[c]) return 0;
            if (ix->next[prev] != c) ix->next[prev] = ix->plain[c] ? c : -1;
            ix->seen[c] = 1;
            count++;
            if (!number(s, &out[c])) return 0;
            prev = c;
        } while (take(s, ','));
        if (!take(s, '}')) return 0;
    }
    return count == ix->n;
}

int tz_rows_parse(const tz_rows_index *ix, const char *body, size_t len, double *out, int cap_rows,
                  tz_rows_extra *extras, int cap_extras, int *n_extras)
{
    scan s = {body, body + len};
    extras_out x = { extras, extras && cap_extras > 0 && len < UINT32_MAX ? cap_extras : 0, 0, body };
    if (n_extras) *n_extras = 0;
    const char *k;
    size_t klen;
    if (!take(&s, '{') || !key(&s, &k, &klen) || klen != 9 || memcmp(k, "instances", 9) != 0 || !take(&s, ':') ||
        !take(&s, '['))
        return TZ_ROWS_OTHER;
    int n = 0;
    do {
        if (n == cap_rows) return TZ_ROWS_TOO_MANY;
        if (!row(ix, &s, out + (size_t)n * (size_t)ix->n, &x, n)) return TZ_ROWS_OTHER;
        n++;
    } while (take(&s, ','));
    if (!take(&s, ']') || !take(&s, '}')) return TZ_ROWS_OTHER;
    skip_ws(&s);
    if (s.p != s.end) return TZ_ROWS_OTHER;
    if (n_extras) *n_extras = x.n;
    return n;
}

/* ---- the Feast read body ------------------------------------------------------- */

/* The features array: '[' then strings without escapes, at least one. */
static int feature_list(scan *s, tz_feast_read *out, const char *body)
{
    skip_ws(s);
    const char *open = s->p;
    if (!take(s, '[')) return 0;
    do {
        const char *ref;
        size_t ref_len;
        if (!key(s, &ref, &ref_len)) return 0;
    } while (take(s, ','));
    if (!take(s, ']')) return 0;
    out->features_at = (uint32_t)(open - body);
    out->features_len = (uint32_t)(s->p - open);
    return 1;
}

/* An entity key: a string without escapes, or a finite number. */
static int entity_key(scan *s, tz_feast_key *k, const char *body)
{
    skip_ws(s);
    const char *v = s->p;
    size_t len;
    if (take(s, '"')) {
        if (!key_rest(s, &v, &len)) return 0;
        k->kind = TZ_ROWS_STRING, k->number = 0;
    } else {
        if (!number(s, &k->number)) return 0;
        k->kind = TZ_ROWS_NUMBER, len = (size_t)(s->p - v);
    }
    k->at = (uint32_t)(v - body);
    k->len = (uint32_t)len;
    return 1;
}

/* {"join_key": [k, ...]}: the number of keys, 0 when not this shape, or
 * TZ_ROWS_TOO_MANY. */
static int entity_list(scan *s, tz_feast_read *out, tz_feast_key *keys, int cap, const char *body)
{
    const char *jk;
    size_t jk_len;
    if (!take(s, '{') || !key(s, &jk, &jk_len) || !take(s, ':') || !take(s, '[')) return 0;
    int n = 0;
    do {
        if (n == cap) return TZ_ROWS_TOO_MANY;
        if (!entity_key(s, &keys[n], body)) return 0;
        n++;
    } while (take(s, ','));
    if (!take(s, ']') || !take(s, '}')) return 0;
    out->join_key_at = (uint32_t)(jk - body);
    out->join_key_len = (uint32_t)jk_len;
    return n;
}

static int named(const char *k, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(k, word, len) == 0;
}

int tz_feast_parse(const char *body, size_t len, tz_feast_read *out, tz_feast_key *keys, int cap_keys)
{
    if (len >= UINT32_MAX || cap_keys < 1) return TZ_ROWS_OTHER;
    scan s = {body, body + len};
    int n = 0, has_features = 0;
    out->full_names = -1;
    if (!take(&s, '{')) return TZ_ROWS_OTHER;
    do {
        const char *k;
        size_t klen;
        if (!key(&s, &k, &klen) || !take(&s, ':')) return TZ_ROWS_OTHER;
        if (named(k, klen, "features") && !has_features) {
            if (!feature_list(&s, out, body)) return TZ_ROWS_OTHER;
            has_features = 1;
        } else if (named(k, klen, "entities") && n == 0) {
            n = entity_list(&s, out, keys, cap_keys, body);
            if (n == TZ_ROWS_TOO_MANY) return n;
            if (n == 0) return TZ_ROWS_OTHER;
        } else if (named(k, klen, "full_feature_names") && out->full_names < 0) {
            skip_ws(&s);
            if (literal(&s, "true", 4)) out->full_names = 1;
            else if (literal(&s, "false", 5)) out->full_names = 0;
            else return TZ_ROWS_OTHER;
        } else {
            return TZ_ROWS_OTHER;
        }
    } while (take(&s, ','));
    if (!take(&s, '}')) return TZ_ROWS_OTHER;
    skip_ws(&s);
    if (s.p != s.end || !has_features || n == 0) return TZ_ROWS_OTHER;
    return n;
}
