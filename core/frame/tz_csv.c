/* CSV reader for tz_frame (the writer is tz_csv_write.c).
 *
 * The reader streams the file through a buffer (the whole file is never held
 * in memory; a large one is read a window at a time and parsed in parts on
 * the pool's threads, see below) and parses records straight into typed
 * columns. Column types
 * come from the first infer_rows records (or the schema); a later value that
 * does not fit rejects its row, except int64 meeting a decimal, which widens
 * the column to float64 in place. Columns are preallocated from the file
 * size and the sample's bytes per record, so memory stays near the frame's
 * own size, and ask for huge pages (tz_advise_huge). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frame/tz_csv_internal.h"
#include "frame/tz_frame.h"
#include "util/tz_fmt.h"
#include "util/tz_pool.h"

#define CHUNK (1 << 20)
#define UNQUOTE_LATER ((size_t)1 << 62)

typedef struct span {
    char *p;
    size_t len;
} span;

typedef struct reader {
    int fd;
    const char *path;
    char *buf;
    size_t len, cap, pos;
    size_t off;             /* the file offset of buf[0] */
    int peek;               /* records are read to be read again: quoted
                               fields are left quoted (unquoting rewrites
                               the buffer in place) */
    int eof;
    size_t line;            /* line number at pos */
    size_t record_line;     /* where the last record started */
    size_t record_at;       /* and its file offset */
    char delim;
    size_t until;           /* no record starts at or past this offset (opts->to) */
    char *window;           /* read_parts' text, kept for the next window */
    char *text;             /* or the caller's copy of the file from text_from */
    size_t text_from, text_len;
    size_t window_cap;
    span *fields;
    size_t n_fields, cap_fields;
} reader;

/* ---- records ------------------------------------------------------------ */

static int fill(reader *r, tz_err *err)
{
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->off += r->pos;
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->cap - r->len < 1024) {
        char *b = realloc(r->buf, r->cap * 2);
        if (!b) return tz_err_set(err, TZ_ENOMEM, "out of memory reading %s", r->path);
        r->buf = b;
        r->cap *= 2;
    }
    ssize_t n;
    do n = read(r->fd, r->buf + r->len, r->cap - r->len - 1);
    while (n < 0 && errno == EINTR);
    if (n < 0) return tz_err_set(err, TZ_EIO, "cannot read %s: %s", r->path, strerror(errno));
    if (n == 0) r->eof = 1;
    r->len += (size_t)n;
    return 0;
}

static int grow_fields(reader *r)
{
    size_t cap = r->cap_fields ? r->cap_fields * 2 : 64;
    span *f = realloc(r->fields, cap * sizeof *f);
    if (!f) return -1;
    r->fields = f;
    r->cap_fields = cap;
    return 0;
}

static inline int push_field(reader *r, char *p, size_t len)
{
    if (__builtin_expect(r->n_fields == r->cap_fields, 0) && grow_fields(r)) return -1;
    r->fields[r->n_fields++] = (span){ p, len };
    return 0;
}

/* Removes the quotes and doubled quotes of a quoted field, in place. */
static size_t unquote(char *p, size_t len)
{
    size_t out = 0;
    for (size_t i = 1; i + 1 < len; i++) {
        p[out++] = p[i];
        if (p[i] == '"') i++;
    }
    return out;
}

/* Scans one record from pos. Returns 1 with fields set, 0 when the buffer
 * holds no complete record (need more input), -1 on an unterminated quote at
 * end of file. Blank lines are skipped. */
static int scan_record(reader *r, size_t *end_out, size_t *lines_out)
{
    char *b = r->buf;
    size_t i = r->pos, n = r->len, lines = 0;
    r->n_fields = 0;
    for (;;) {
        size_t start = i;
        int quoted = 0, escaped = 0;
        if (i < n && b[i] == '"') {
            quoted = 1;
            i++;
            for (;;) {
                char *q = memchr(b + i, '"', n - i);
                if (!q) {
                    if (!r->eof) return 0;
                    return -1;
                }
                for (char *c = b + i; c < q; c++) lines += *c == '\n';
                i = (size_t)(q - b) + 1;
                if (i < n && b[i] == '"') { i++; escaped = 1; continue; }
                if (i == n && !r->eof) return 0;
                break;
            }
        }
        while (i < n && b[i] != r->delim && b[i] != '\n') i++;
        if (i == n && !r->eof) return 0;
        size_t flen = i - start;
        if (i == n || b[i] == '\n') {
            if (flen && b[start + flen - 1] == '\r') flen--;
        }
        if (quoted && escaped) {
            /* Unquote only once the record is known to be complete (a
             * partial record is scanned again after the next read): the
             * length carries a mark until then. */
            if (push_field(r, b + start, flen | UNQUOTE_LATER)) return -2;
        } else if (quoted && flen >= 2 && b[start + flen - 1] == '"') {
            if (push_field(r, b + start + 1, flen - 2)) return -2;
        } else {
            if (push_field(r, b + start, flen)) return -2;
        }
        if (i < n && b[i] == r->delim) { i++; continue; }
        /* End of record: newline or end of file. */
        if (i < n) { i++; lines++; }
        *end_out = i;
        *lines_out = lines;
        return 1;
    }
}

/* Next record into r->fields: 1, 0 at end of input, or a TZ_E* code. */
static int next_record(reader *r, tz_err *err)
{
    for (;;) {
        if ((r->pos >= r->len && r->eof) || r->off + r->pos >= r->until) return 0;
        size_t end, lines;
        int rc = scan_record(r, &end, &lines);
        if (rc == -2) return tz_err_set(err, TZ_ENOMEM, "out of memory reading %s", r->path);
        if (rc == -1)
            return tz_err_set(err, TZ_EINVAL, "%s:%zu: unterminated quoted field (the file ends inside quotes)",
                              r->path, r->line);
        if (rc == 0) {
            int frc = fill(r, err);
            if (frc) return frc;
            continue;
        }
        r->record_line = r->line;
        r->record_at = r->off + r->pos;
        r->line += lines;
        r->pos = end;
        for (size_t k = 0; k < r->n_fields && !r->peek; k++) {
            span *f = &r->fields[k];
            if (f->len & UNQUOTE_LATER) f->len = unquote(f->p, f->len & ~UNQUOTE_LATER);
        }
        /* A blank line is one empty field: skip it. */
        if (r->n_fields == 1 && r->fields[0].len == 0) continue;
        return 1;
    }
}

/* ---- values ------------------------------------------------------------- */

static inline void trim(const char **s, size_t *n)
{
    if (*n == 0 || ((*s)[0] > ' ' && (*s)[*n - 1] > ' ')) return;  /* the usual field: nothing to trim */
    while (*n && (**s == ' ' || **s == '\t')) { (*s)++; (*n)--; }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

static int parse_i64(const char *s, size_t n, int64_t *out)
{
    trim(&s, &n);
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i == n || n - i > 18) return 0;
    int64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 1;
}

static const double POW10[] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };

/* parse_f64 and parse_f64_slow: 1 for a finite number, 0 for text that is
 * no number, NOT_FINITE for one that is but has no finite value ("inf",
 * "1e999"): a float column refuses it by name, and inference still sees a
 * number there. */
#define NOT_FINITE (-1)

/* Out of line: inlined, its buffer would give parse_f64 a stack frame on
 * every call, fast case included. */
static __attribute__((noinline)) int parse_f64_slow(const char *s, size_t n, double *out)
{
    char tmp[128];
    if (n >= sizeof tmp) return 0;
    /* strtod also reads hexadecimal ("0x10", "0x1p4"): not a decimal number
     * in a data file, and never one the writer meant. */
    if (memchr(s, 'x', n) || memchr(s, 'X', n)) return 0;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *end;
    double v = strtod(tmp, &end);
    if (end != tmp + n || n == 0) return 0;
    if (!isfinite(v)) return NOT_FINITE;
    *out = v;
    return 1;
}

/* A decimal's digits: the significant ones (leading zeros are not) in one
 * mantissa, which is exact while there are at most 15 of them. */
typedef struct decimal {
    uint64_t m;
    size_t digits;          /* significant digits */
    size_t frac;            /* digits after the point */
    int any;                /* a digit was seen */
    int neg;
} decimal;

/* A sign, digits and a fraction from s up to end into d; the byte after
 * them. Leading zeros are skipped first, so the digit loops only add up
 * and where they stop counts the significant digits. Past 15 of them m is
 * no longer exact (it may wrap), and decimal_exact leaves the number to
 * strtod. */
static inline const char *read_decimal(const char *s, const char *end, decimal *d)
{
    uint64_t m = 0;
    int neg = 0;
    if (s < end && (*s == '-' || *s == '+')) neg = *s++ == '-';
    const char *at = s, *sig;
    while (s < end && *s == '0') s++;
    for (sig = s; s < end && (unsigned)(*s - '0') < 10; s++) m = m * 10 + (uint64_t)(*s - '0');
    size_t digits = (size_t)(s - sig), frac = 0;
    int any = s != at;
    if (s < end && *s == '.') {
        at = ++s;
        if (!digits)  /* no significant digit yet: the zeros after the point lead too */
            while (s < end && *s == '0') s++;
        for (sig = s; s < end && (unsigned)(*s - '0') < 10; s++) m = m * 10 + (uint64_t)(*s - '0');
        digits += (size_t)(s - sig);
        frac = (size_t)(s - at);
        any |= frac != 0;
    }
    *d = (decimal){ .m = m, .digits = digits, .frac = frac, .any = any, .neg = neg };
    return s;
}

/* d times 10^exp when that is exact (Clinger): a mantissa below 10^15 and
 * a power of ten that are both exact doubles, so one rounding. 1, or 0 to
 * leave the number to strtod. */
static inline int decimal_exact(const decimal *d, int exp, double *out)
{
    ptrdiff_t e = exp - (ptrdiff_t)d->frac;
    if (d->digits > 15 || e < -22 || e > 22) return 0;
    double v = (double)d->m;
    v = e < 0 ? v / POW10[-e] : v * POW10[e];
    *out = d->neg ? -v : v;
    return 1;
}

/* The fast case, a decimal with an optional exponent that decimal_exact
 * takes; the rest goes to strtod. */
static int parse_f64(const char *s, size_t n, double *out)
{
    trim(&s, &n);
    const char *end = s + n;
    decimal d;
    const char *p = read_decimal(s, end, &d);
    int exp = 0;
    if (d.digits <= 15 && d.any && p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0;
        if (++p < end && (*p == '-' || *p == '+')) eneg = *p++ == '-';
        if (p == end) return 0;
        for (; p < end && (unsigned)(*p - '0') < 10; p++) if (exp < 10000) exp = exp * 10 + (*p - '0');
        if (eneg) exp = -exp;
    }
    if (p != end || !d.any || !decimal_exact(&d, exp, out)) return parse_f64_slow(s, n, out);
    return 1;
}

static int parse_bool(const char *s, size_t n, uint8_t *out)
{
    trim(&s, &n);
    if (n == 4 && !strncasecmp(s, "true", 4)) { *out = 1; return 1; }
    if (n == 5 && !strncasecmp(s, "false", 5)) { *out = 0; return 1; }
    return 0;
}

static const char *const DEFAULT_NA[] = { "", "NA", "N/A", "NaN", "nan", "null", "NULL", "None" };

#define MAX_NA 32

/* Null markers with their lengths: most fields are longer than every
 * marker, or differ in the first byte, and are rejected at once. */
typedef struct na_set {
    const char *v[MAX_NA];
    size_t len[MAX_NA];
    size_t n, max_len;
    int empty;              /* "" is a marker */
    uint8_t first[256];     /* bytes some marker starts with */
} na_set;

static void na_init(na_set *na, const char *const *v, size_t n)
{
    memset(na, 0, sizeof *na);
    for (size_t k = 0; k < n && na->n < MAX_NA; k++) {
        size_t len = strlen(v[k]);
        if (len == 0) { na->empty = 1; continue; }
        na->v[na->n] = v[k];
        na->len[na->n++] = len;
        na->first[(uint8_t)v[k][0]] = 1;
        if (len > na->max_len) na->max_len = len;
    }
}

static inline int is_na(const na_set *na, const char *s, size_t n)
{
    if (n == 0) return na->empty;
    if (n > na->max_len || !na->first[(uint8_t)s[0]]) return 0;
    for (size_t k = 0; k < na->n; k++)
        if (na->len[k] == n && na->v[k][0] == s[0] && !memcmp(na->v[k], s, n)) return 1;
    return 0;
}

/* ---- inference ------------------------------------------------------------ */

typedef struct guess {
    int seen, not_int, not_float, not_bool;
} guess;

static void observe(guess *g, const char *s, size_t n)
{
    int64_t i;
    double d;
    uint8_t b;
    g->seen = 1;
    if (!g->not_int && !parse_i64(s, n, &i)) g->not_int = 1;
    if (!g->not_float && !parse_f64(s, n, &d)) g->not_float = 1;
    if (!g->not_bool && !parse_bool(s, n, &b)) g->not_bool = 1;
}

static int decide(const guess *g)
{
    if (!g->seen) return TZ_COL_F64;  /* all missing in the sample: numeric, like pandas */
    if (!g->not_int) return TZ_COL_I64;
    if (!g->not_float) return TZ_COL_F64;
    if (!g->not_bool) return TZ_COL_BOOL;
    return TZ_COL_STR;
}

/* ---- building columns ----------------------------------------------------- */

typedef struct builder {
    tz_frame *frame;
    tz_column **cols;
    size_t n_cols;             /* fields per record */
    tz_column *lines;          /* optional line-number column (not a field) */
    size_t rows, cap;
    na_set na;
    char why[160];
    size_t bad_field;
} builder;

static size_t width(int type) { return type == TZ_COL_BOOL ? 1 : type == TZ_COL_STR ? 4 : 8; }

static int grow_rows(builder *b, size_t want)
{
    size_t cap = b->cap + b->cap / 2;
    if (cap < want) cap = want;
    for (size_t j = 0; j < b->n_cols + (b->lines != NULL); j++) {
        tz_column *c = j < b->n_cols ? b->cols[j] : b->lines;
        void *d = realloc(c->data, cap * width(c->type));
        uint8_t *v = realloc(c->valid, (cap + 7) / 8);
        if (d) c->data = d;
        if (v) c->valid = v;
        if (!d || !v) return -1;
        memset(c->valid + (c->cap + 7) / 8, 0, (cap + 7) / 8 - (c->cap + 7) / 8);
        tz_advise_huge(d, cap * width(c->type));
        c->cap = cap;
    }
    b->cap = cap;
    return 0;
}

static inline int reserve_rows(builder *b, size_t want) { return want <= b->cap ? 0 : grow_rows(b, want); }

static void widen_to_f64(tz_column *c, size_t rows)
{
    int64_t *src = c->data;
    double *dst = c->data;  /* same width: convert in place */
    for (size_t i = 0; i < rows; i++)
        dst[i] = tz_column_is_valid(c, i) ? (double)src[i] : NAN;
    c->type = TZ_COL_F64;
}

static void set_bit(tz_column *c, size_t i, int on)
{
    uint8_t bit = (uint8_t)(1u << (i & 7));
    if (on) c->valid[i >> 3] |= bit; else c->valid[i >> 3] &= (uint8_t)~bit;
}

/* Why a value of column `name` (of `type`) was refused, into b->why. */
static void why_not(builder *b, const char *name, int type, const char *s, size_t len)
{
    static const char *const names[] = { "a finite number", "an integer", "true or false", "text" };
    snprintf(b->why, sizeof b->why, "column '%.40s': \"%.*s\" is not %s", name, (int)(len > 40 ? 40 : len), s,
             names[type]);
}

/* Stores field values into row b->rows; 0, or -1 with b->why set (the row
 * is then simply not counted, and the next row overwrites it). */
static int store_row(builder *b, const span *f, size_t n, size_t line)
{
    size_t r = b->rows;
    if (b->lines) {
        ((int64_t *)b->lines->data)[r] = (int64_t)line;
        set_bit(b->lines, r, 1);
    }
    for (size_t j = 0; j < n; j++) {
        tz_column *c = b->cols[j];
        const char *s = f[j].p;
        size_t len = f[j].len;
        if (is_na(&b->na, s, len)) {
            set_bit(c, r, 0);
            if (c->type == TZ_COL_F64) ((double *)c->data)[r] = NAN;
            continue;
        }
        int ok = 1;
        switch (c->type) {
        case TZ_COL_I64:
            if (parse_i64(s, len, &((int64_t *)c->data)[r])) break;
            double d;
            if (parse_f64(s, len, &d) == 1) {
                widen_to_f64(c, r);
                ((double *)c->data)[r] = d;
                break;
            }
            ok = 0;
            break;
        case TZ_COL_F64: ok = parse_f64(s, len, &((double *)c->data)[r]) == 1; break;
        case TZ_COL_BOOL: ok = parse_bool(s, len, &((uint8_t *)c->data)[r]); break;
        default: {
            int32_t code = tz_dict_intern(c->dict, s, len);
            if (code < 0) return -2;
            ((int32_t *)c->data)[r] = code;
        }
        }
        if (!ok) {
            why_not(b, c->name, c->type, s, len);
            b->bad_field = j + 1;
            return -1;
        }
        set_bit(c, r, 1);
    }
    b->rows++;
    return 0;
}

/* ---- the fast path ---------------------------------------------------------
 * Most records of a data file are plain numbers and unquoted text between
 * delimiters: read where they lie, with no field list and no second pass
 * over the bytes. A record with anything else (quotes, spaces around
 * numbers, null markers, exponents, more than 15 significant digits,
 * booleans) takes the general path, which gives the same values. */

/* A decimal from s up to end: sign, digits, fraction, read exactly as in
 * parse_f64's fast case (no exponent). The byte after it, or NULL. */
static inline const char *fast_f64(const char *s, const char *end, double *out)
{
    decimal d;
    s = read_decimal(s, end, &d);
    return d.any && decimal_exact(&d, 0, out) ? s : NULL;
}

/* An integer from s up to end: sign and at most 18 digits. */
static inline const char *fast_i64(const char *s, const char *end, int64_t *out)
{
    int neg = 0;
    if (s < end && (*s == '-' || *s == '+')) neg = *s++ == '-';
    const char *first = s;
    int64_t v = 0;
    /* Digits past the 18th are only counted: the number is refused, and
     * adding them could overflow. */
    for (; s < end && (unsigned)(*s - '0') < 10; s++)
        if (s - first < 18) v = v * 10 + (*s - '0');
    /* A negative zero is left to the general path: an integer column
     * keeps it as 0, but read in parts it may be read before the column
     * is widened to doubles, where -0 stays -0 (part_line stops there). */
    if (s == first || s - first > 18 || (neg && v == 0)) return NULL;
    *out = neg ? -v : v;
    return s;
}

/* A text field from s up to the delimiter or end, unquoted and not a null
 * marker, interned in c's dictionary. The byte after it, or NULL. */
static inline const char *fast_str(const builder *b, tz_column *c, const char *s, const char *end, char delim,
                                   int32_t *code)
{
    if (s < end && *s == '"') return NULL;
    const char *e = s;
    while (e < end && *e != delim) e++;
    if (is_na(&b->na, s, (size_t)(e - s))) return NULL;
    *code = tz_dict_intern(c->dict, s, (size_t)(e - s));
    return *code < 0 ? NULL : e;
}

/* The line at p (ending before end) stored as row b->rows, which the
 * caller has room for, when every field is a plain number of its column's
 * type or unquoted text: the byte after its newline. NULL leaves the
 * record to the general path (the row is then rewritten). */
static const char *fast_line(builder *b, const char *p, const char *end, char delim, size_t line)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return NULL;
    const char *stop = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
    size_t row = b->rows;
    for (size_t j = 0; j < b->n_cols; j++) {
        tz_column *c = b->cols[j];
        const char *q = c->type == TZ_COL_F64   ? fast_f64(p, stop, &((double *)c->data)[row])
                        : c->type == TZ_COL_I64 ? fast_i64(p, stop, &((int64_t *)c->data)[row])
                        : c->type == TZ_COL_STR ? fast_str(b, c, p, stop, delim, &((int32_t *)c->data)[row])
                                                : NULL;
        if (!q) return NULL;
        if (j + 1 == b->n_cols) {
            if (q != stop) return NULL;
        } else {
            if (q == stop || *q != delim) return NULL;
            p = q + 1;
        }
    }
    for (size_t j = 0; j < b->n_cols; j++) set_bit(b->cols[j], row, 1);
    if (b->lines) {
        ((int64_t *)b->lines->data)[row] = (int64_t)line;
        set_bit(b->lines, row, 1);
    }
    b->rows++;
    return nl + 1;
}

/* The record at r->pos by fast_line, when its line is whole in the
 * buffer: 1, else 0. */
static int fast_record(reader *r, builder *b)
{
    if (reserve_rows(b, b->rows + 1)) return 0;
    const char *next = fast_line(b, r->buf + r->pos, r->buf + r->len, r->delim, r->line);
    if (!next) return 0;
    r->record_line = r->line++;
    r->pos = (size_t)(next - r->buf);
    return 1;
}

static void finish_columns(builder *b)
{
    for (size_t j = 0; j < b->n_cols + (b->lines != NULL); j++) {
        tz_column *c = j < b->n_cols ? b->cols[j] : b->lines;
        size_t cap = b->rows ? b->rows : 1;
        void *d = realloc(c->data, cap * width(c->type));
        uint8_t *v = realloc(c->valid, (cap + 7) / 8);
        if (d) c->data = d;
        if (v) c->valid = v;
        c->n = b->rows;
        c->cap = d && v ? cap : c->cap;
        if (b->rows % 8) c->valid[b->rows / 8] &= (uint8_t)((1u << (b->rows % 8)) - 1);
        size_t valid = 0;
        for (size_t i = 0; i < (b->rows + 7) / 8; i++) valid += (size_t)__builtin_popcount(c->valid[i]);
        c->null_count = b->rows - valid;
    }
    b->frame->n_rows = b->rows;
}

/* ---- the reader ------------------------------------------------------------ */

/* The line of a rejected row past the described ones. Out of memory, the
 * row is still counted in rows_bad (the caller sees the shortfall). */
static void add_more_line(tz_csv_report *rep, size_t line)
{
    size_t n = rep->n_more;
    if ((n & (n - 1)) == 0 && n >= 64) {  /* full at 64, 128, 256, ... */
        size_t *grown = realloc(rep->more_lines, 2 * n * sizeof *grown);
        if (!grown) return;
        rep->more_lines = grown;
    } else if (!rep->more_lines) {
        rep->more_lines = malloc(64 * sizeof *rep->more_lines);
        if (!rep->more_lines) return;
    }
    rep->more_lines[rep->n_more++] = line;
}

static void add_issue(tz_csv_report *rep, size_t line, size_t column, const char *msg)
{
    rep->rows_bad++;
    if (rep->n_issues >= TZ_CSV_MAX_ISSUES) {
        add_more_line(rep, line);
        return;
    }
    if (!rep->issues) {
        rep->issues = malloc(TZ_CSV_MAX_ISSUES * sizeof *rep->issues);
        if (!rep->issues) return;
    }
    tz_csv_issue *is = &rep->issues[rep->n_issues++];
    is->line = line;
    is->column = column;
    snprintf(is->message, sizeof is->message, "%.159s", msg);
}

static char *column_name(const span *f, size_t j, int no_header, tz_frame *frame)
{
    char buf[256];
    if (no_header || f[j].len == 0) snprintf(buf, sizeof buf, "column_%zu", j + 1);
    else snprintf(buf, sizeof buf, "%.*s", (int)(f[j].len > 200 ? 200 : f[j].len), f[j].p);
    /* Duplicate names get a suffix, so every column stays addressable. */
    char unique[256];
    snprintf(unique, sizeof unique, "%s", buf);
    for (int k = 2; tz_frame_find(frame, unique) >= 0; k++) snprintf(unique, sizeof unique, "%.240s_%d", buf, k);
    return strdup(unique);
}

/* The first records, kept as text while column types are decided: one
 * arena for every field, so a wide sample costs one allocation, not one per
 * field. */
#define NO_FIELD ((size_t)-1)

typedef struct sample {
    char *arena;
    size_t arena_len, arena_cap;
    size_t *offs, *lens;   /* n_rows * n_cols; lens NO_FIELD when the record is short */
    size_t *lines, *n_fields;
    size_t n_rows;
    size_t bytes;
} sample;

static void sample_free(sample *s)
{
    free(s->arena);
    free(s->offs);
    free(s->lens);
    free(s->lines);
    free(s->n_fields);
}

static const char *sample_value(const sample *s, size_t i, size_t j, size_t n_cols, size_t *len)
{
    *len = s->lens[i * n_cols + j];
    if (*len == NO_FIELD) return NULL;
    /* A sample of empty fields only has no arena: each is "" all the same. */
    return s->arena ? s->arena + s->offs[i * n_cols + j] : "";
}

static int read_sample(reader *r, size_t n_cols, size_t want, size_t until, sample *s, tz_err *err)
{
    memset(s, 0, sizeof *s);
    s->offs = calloc(want * n_cols + 1, sizeof *s->offs);
    s->lens = malloc((want * n_cols + 1) * sizeof *s->lens);
    s->lines = calloc(want, sizeof *s->lines);
    s->n_fields = calloc(want, sizeof *s->n_fields);
    if (!s->offs || !s->lens || !s->lines || !s->n_fields)
        return tz_err_set(err, TZ_ENOMEM, "out of memory");
    for (size_t k = 0; k < want * n_cols; k++) s->lens[k] = NO_FIELD;
    while (s->n_rows < want && r->off + r->pos < until) {
        size_t before = r->pos;
        int rc = next_record(r, err);
        if (rc < 0) return rc;
        if (rc == 0) break;
        s->bytes += r->pos > before ? r->pos - before : 0;
        size_t i = s->n_rows++;
        s->lines[i] = r->record_line;
        s->n_fields[i] = r->n_fields;
        for (size_t j = 0; j < n_cols && j < r->n_fields; j++) {
            size_t len = r->fields[j].len;
            if (s->arena_len + len > s->arena_cap) {
                size_t cap = s->arena_cap ? s->arena_cap * 2 : 4096;
                while (cap < s->arena_len + len) cap *= 2;
                char *a = realloc(s->arena, cap);
                if (!a) return tz_err_set(err, TZ_ENOMEM, "out of memory");
                s->arena = a;
                s->arena_cap = cap;
            }
            if (len) memcpy(s->arena + s->arena_len, r->fields[j].p, len);
            s->offs[i * n_cols + j] = s->arena_len;
            s->lens[i * n_cols + j] = len;
            s->arena_len += len;
        }
    }
    return 0;
}

static int schema_type(const tz_csv_opts *o, const char *name)
{
    for (size_t k = 0; k < o->n_schema; k++)
        if (!strcmp(o->schema_names[k], name)) return o->schema_types[k];
    return -1;
}

static int row_issue(builder *b, tz_csv_report *rep, const tz_csv_opts *o, reader *r, size_t line,
                     size_t got, tz_err *err)
{
    char msg[200];
    size_t column = 0;
    if (got != b->n_cols) {
        snprintf(msg, sizeof msg, "expected %zu fields, found %zu", b->n_cols, got);
    } else {
        snprintf(msg, sizeof msg, "%s", b->why);
        column = b->bad_field;
    }
    if (o->strict) {
        if (column) return tz_err_set(err, TZ_EINVAL, "%s:%zu: field %zu, %s", r->path, line, column, msg);
        return tz_err_set(err, TZ_EINVAL, "%s:%zu: %s", r->path, line, msg);
    }
    add_issue(rep, line, column, msg);
    return 0;
}

static int add_record(builder *b, tz_csv_report *rep, const tz_csv_opts *o, reader *r,
                      const span *f, size_t nf, size_t line, tz_err *err)
{
    rep->rows_read++;
    if (nf == b->n_cols) {
        if (reserve_rows(b, b->rows + 1)) return tz_err_set(err, TZ_ENOMEM, "out of memory reading %s", r->path);
        int rc = store_row(b, f, nf, line);
        if (rc == 0) return 0;
        if (rc == -2) return tz_err_set(err, TZ_ENOMEM, "out of memory reading %s", r->path);
    }
    return row_issue(b, rep, o, r, line, nf, err);
}

/* Records from the reader's position until the file offset `until` (or
 * the end of the file): the fast path where it can, else the general one. */
static int read_records(reader *r, builder *b, const tz_csv_opts *o, tz_csv_report *rep, size_t until,
                        tz_err *err)
{
    int rc = 0;
    while (rc == 0 && r->off + r->pos < until) {
        if (fast_record(r, b)) {
            rep->rows_read++;
            continue;
        }
        int more = next_record(r, err);
        if (more < 0) return more;
        if (more == 0) break;
        rc = add_record(b, rep, o, r, r->fields, r->n_fields, r->record_line, err);
    }
    return rc;
}

static int reader_seek(reader *r, size_t off, tz_err *err)
{
    if (lseek(r->fd, (off_t)off, SEEK_SET) < 0)
        return tz_err_set(err, TZ_EIO, "cannot read %s: %s", r->path, strerror(errno));
    r->off = off;
    r->pos = r->len = 0;
    r->eof = 0;
    return 0;
}

/* ---- the rest of a large file, in parts --------------------------------------
 * Past the sample, a large file is mapped and cut at line feeds into parts
 * that the pool reads at once, straight into the rows the builder will hold
 * them in (the parts' line feeds counted first): by fast_line(), else, for
 * a record on one line without quotes, as the general path takes it (its
 * own dictionaries, an integer column widened in the part, refusals kept
 * with their lines). A part stops at anything else (quotes, a last line
 * without a line feed). Then, in order, each part joins the frame (moved
 * down over rows that earlier records did not fill, widened to the frame's
 * types, its refusals reported) and the reader goes on with the serial
 * path from where the part stopped to its end: so frames, reports and
 * errors are the serial reader's. A record that runs past a part's end (a
 * quoted line feed) leaves the later parts unused: the reader reads on
 * from there.
 *
 * The file is read (pread), not mapped, a window of WINDOW_PARTS parts at
 * a time: a mapped file cut short while it is read kills the process with
 * SIGBUS at the first page past its new end, where a read just ends early
 * (the window then ends where the file does now). The window also bounds
 * the memory the text takes, whatever the file's size. */

#define PART_BYTES ((size_t)1 << 20)
#define WINDOW_PARTS 64

/* A record of a part refused as the serial reader refuses it: its line
 * (from the part's first), its width and the refused value with its
 * column's type then (the message is written when the part joins: a column
 * the part still read as integers may be a float column by then). */
typedef struct part_issue {
    size_t line, got, column, len;
    int type;
    char text[40];
} part_issue;

typedef struct csv_part {
    const char *start, *end, *stop;
    size_t lines, first_row, lines_done;
    builder b;            /* views of the frame's columns from first_row */
    tz_column *views;     /* n_cols (+ 1 for the line column) */
    tz_column **cols;
    tz_column **dicts;    /* a string column's own dictionary, in a scratch column */
    span *fields;
    size_t cap_fields;
    part_issue *issues;   /* the first TZ_CSV_MAX_ISSUES; the report has no */
    size_t n_issues;      /* room for later ones but their lines */
    size_t *more_lines, n_more, cap_more;
} csv_part;

typedef struct {
    csv_part *parts;
    char delim;
} parts_job;

static void count_task(void *ctx, size_t k, int worker)
{
    (void)worker;
    csv_part *pt = &((parts_job *)ctx)->parts[k];
    size_t n = 0;
    for (const char *p = pt->start; (p = memchr(p, '\n', (size_t)(pt->end - p))) != NULL; p++) n++;
    pt->lines = n;
}

static int part_issue_add(csv_part *pt, size_t line, size_t got)
{
    if (pt->n_issues == TZ_CSV_MAX_ISSUES) {
        if (pt->n_more == pt->cap_more) {
            size_t cap = pt->cap_more ? 2 * pt->cap_more : 64;
            size_t *grown = realloc(pt->more_lines, cap * sizeof *grown);
            if (!grown) return -1;
            pt->more_lines = grown;
            pt->cap_more = cap;
        }
        pt->more_lines[pt->n_more++] = line;
        return 0;
    }
    if (!pt->issues && !(pt->issues = malloc(TZ_CSV_MAX_ISSUES * sizeof *pt->issues))) return -1;
    part_issue *is = &pt->issues[pt->n_issues++];
    *is = (part_issue){ .line = line, .got = got };
    if (got == pt->b.n_cols) {
        const span *f = &pt->fields[pt->b.bad_field - 1];
        is->column = pt->b.bad_field;
        is->type = pt->b.cols[is->column - 1]->type;
        is->len = f->len < sizeof is->text ? f->len : sizeof is->text;
        memcpy(is->text, f->p, is->len);
    }
    return 0;
}

/* Whether a field is a negative zero integer ("-0", " -00 "), trimmed as
 * parse_i64 trims it. */
static int negative_zero(const span *f)
{
    const char *p = f->p;
    size_t n = f->len;
    trim(&p, &n);
    if (n < 2 || *p != '-') return 0;
    for (size_t i = 1; i < n; i++)
        if (p[i] != '0') return 0;
    return 1;
}

/* A record fast_line refused, when it is one line without quotes: split at
 * the delimiter and taken as the general path takes it — a row (nulls,
 * spaces, exponents, an integer column widened), nothing (a blank line) or
 * an issue. The byte after its line feed, or NULL (quotes, no line feed,
 * out of memory): the part stops there. */
static const char *part_line(csv_part *pt, const char *p, char delim, size_t line)
{
    const char *nl = memchr(p, '\n', (size_t)(pt->end - p));
    if (!nl) return NULL;
    const char *stop = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
    if (memchr(p, '"', (size_t)(stop - p))) return NULL;
    size_t nf = 0;
    for (const char *q = p;;) {
        const char *e = memchr(q, delim, (size_t)(stop - q));
        if (!e) e = stop;
        if (nf == pt->cap_fields) {
            size_t cap = pt->cap_fields ? 2 * pt->cap_fields : 64;
            span *grown = realloc(pt->fields, cap * sizeof *grown);
            if (!grown) return NULL;
            pt->fields = grown;
            pt->cap_fields = cap;
        }
        pt->fields[nf++] = (span){ (char *)q, (size_t)(e - q) };
        if (e == stop) break;
        q = e + 1;
    }
    if (nf == 1 && pt->fields[0].len == 0) return nl + 1;
    if (nf == pt->b.n_cols) {
        /* A negative zero in an integer column: what it becomes depends on
         * whether earlier parts widen the column, so the serial reader
         * reads it, once they have joined. */
        for (size_t j = 0; j < nf; j++)
            if (pt->b.cols[j]->type == TZ_COL_I64 && negative_zero(&pt->fields[j])) return NULL;
        int rc = store_row(&pt->b, pt->fields, nf, line);
        if (rc == 0) return nl + 1;
        if (rc == -2) return NULL;
    }
    return part_issue_add(pt, line, nf) ? NULL : nl + 1;
}

static void parse_task(void *ctx, size_t k, int worker)
{
    (void)worker;
    parts_job *job = ctx;
    csv_part *pt = &job->parts[k];
    const char *p = pt->start;
    size_t line = 0;
    while (p < pt->end && pt->b.rows < pt->b.cap) {
        const char *next = fast_line(&pt->b, p, pt->end, job->delim, line);
        if (!next) next = part_line(pt, p, job->delim, line);
        if (!next) break;
        p = next;
        line++;
    }
    pt->stop = p;
    pt->lines_done = line;
}

static void part_free(csv_part *pt, size_t n_cols)
{
    for (size_t j = 0; pt->views && j < n_cols + 1; j++) free(pt->views[j].valid);
    for (size_t j = 0; pt->dicts && j < n_cols; j++) tz_column_unref(pt->dicts[j]);
    free(pt->views);
    free(pt->cols);
    free(pt->dicts);
    free(pt->fields);
    free(pt->issues);
    free(pt->more_lines);
}

/* Views of b's columns from row `first` for a part: its own validity bits
 * and, for strings, its own dictionary. -1 when out of memory. */
static int part_views(csv_part *pt, const builder *b)
{
    size_t n = b->n_cols + 1, bits = pt->lines / 8 + 1;
    pt->views = calloc(n, sizeof *pt->views);
    pt->cols = calloc(n, sizeof *pt->cols);
    pt->dicts = calloc(n, sizeof *pt->dicts);
    if (!pt->views || !pt->cols || !pt->dicts) return -1;
    for (size_t j = 0; j < n; j++) {
        tz_column *src = j < b->n_cols ? b->cols[j] : b->lines;
        if (!src) continue;
        tz_column *v = &pt->views[j];
        *v = *src;
        v->data = (char *)src->data + pt->first_row * width(src->type);
        v->cap = pt->lines;
        v->valid = calloc(bits, 1);
        if (!v->valid) return -1;
        if (src->type == TZ_COL_STR) {
            pt->dicts[j] = tz_column_new(src->name, TZ_COL_STR, 0);
            if (!pt->dicts[j]) return -1;
            v->dict = pt->dicts[j]->dict;
        }
        pt->cols[j] = v;
    }
    pt->b = *b;
    pt->b.cols = pt->cols;
    pt->b.lines = b->lines ? pt->cols[b->n_cols] : NULL;
    pt->b.rows = 0;
    pt->b.cap = pt->lines;
    return 0;
}

/* Bits [0, n) of src become bits [at, at + n) of dst: a byte at a time
 * where dst's bytes are whole. */
static void copy_bits(tz_column *dst, size_t at, const tz_column *src, size_t n)
{
    size_t i = 0;
    for (; i < n && (at + i) % 8; i++) set_bit(dst, at + i, tz_column_is_valid(src, i));
    size_t s = i % 8;
    for (; i + 8 <= n; i += 8) {
        const uint8_t *from = src->valid + i / 8;
        dst->valid[(at + i) / 8] = (uint8_t)(s ? (from[0] >> s) | (from[1] << (8 - s)) : from[0]);
    }
    for (; i < n; i++) set_bit(dst, at + i, tz_column_is_valid(src, i));
}

/* Part pt's rows, read into rows first_row.. of b, become rows b->rows..:
 * moved down when earlier records gave fewer rows than lines, the column
 * and the part widened to the wider of their types, their strings coded in
 * the column's dictionary, their line numbers counted from the reader's.
 * -1 when out of memory. */
static int join_part(builder *b, csv_part *pt, size_t line)
{
    size_t at = b->rows, n = pt->b.rows;
    for (size_t j = 0; j < b->n_cols + (b->lines != NULL); j++) {
        tz_column *c = j < b->n_cols ? b->cols[j] : b->lines;
        const tz_column *v = &pt->views[j];
        if (c->type == TZ_COL_I64 && v->type == TZ_COL_F64) widen_to_f64(c, at);
        size_t w = width(c->type);
        if (at != pt->first_row) memmove((char *)c->data + at * w, (char *)c->data + pt->first_row * w, n * w);
        if (c->type == TZ_COL_F64 && v->type == TZ_COL_I64) {
            int64_t *from = (int64_t *)c->data + at;
            double *to = (double *)c->data + at;
            for (size_t i = 0; i < n; i++) to[i] = tz_column_is_valid(v, i) ? (double)from[i] : NAN;
        } else if (c->type == TZ_COL_STR) {
            size_t m = tz_dict_size(pt->views[j].dict);
            int32_t *code = malloc((m ? m : 1) * sizeof *code), *codes = (int32_t *)c->data + at;
            if (!code) return -1;
            for (size_t k = 0; k < m; k++) {
                size_t len;
                const char *str = tz_dict_get(v->dict, (int32_t)k, &len);
                code[k] = tz_dict_intern(c->dict, str, len);
                if (code[k] < 0) { free(code); return -1; }
            }
            for (size_t i = 0; i < n; i++)
                if (tz_column_is_valid(v, i)) codes[i] = code[codes[i]];
            free(code);
        } else if (c == b->lines) {
            int64_t *lines = (int64_t *)c->data + at;
            for (size_t i = 0; i < n; i++) lines[i] += (int64_t)line;
        }
        copy_bits(c, at, v, n);
    }
    b->rows += n;
    return 0;
}

ssize_t tz_csv_pread(int fd, char *buf, size_t n, size_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, buf + got, n - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

/* Up to want bytes of the file from offset from, into *text and how many
 * there were into *got (fewer at the file's end): the caller's copy of the
 * range when it holds them (tz_csv_blocks' block, read once), else the
 * reader's window. 0, or a TZ_E* code. */
static int window_text(reader *r, size_t from, size_t want, char **text, size_t *got, tz_err *err)
{
    if (r->text && from >= r->text_from && from - r->text_from <= r->text_len) {
        size_t held = r->text_len - (from - r->text_from);
        *text = r->text + (from - r->text_from);
        *got = held < want ? held : want;
        return 0;
    }
    if (r->window_cap < want + 1) {
        /* One buffer for every window: a fresh one's pages would be
         * faulted in and zeroed again for each. */
        free(r->window);
        r->window_cap = 0;
        if (!(r->window = malloc(want + 1))) return tz_err_set(err, TZ_ENOMEM, "out of memory reading %s", r->path);
        r->window_cap = want + 1;
        tz_advise_huge(r->window, want + 1);
    }
    *text = r->window;
    ssize_t n = tz_csv_pread(r->fd, r->window, want, from);
    if (n < 0) return tz_err_set(err, TZ_EIO, "cannot read %s: %s", r->path, strerror(errno));
    *got = (size_t)n;
    return 0;
}

/* One window of the file from the reader's position (see above), read in
 * parts, leaving the reader where the serial reader should go on: at the
 * window's end (*again set when the file goes on past it), at the end, or
 * where a record ran past a part. 0, or a TZ_E* code. */
static int read_parts(reader *r, builder *b, const tz_csv_opts *o, size_t size, tz_csv_report *rep, int *again,
                      tz_err *err)
{
    size_t from = r->off + r->pos, part = o->part_bytes ? o->part_bytes : PART_BYTES;
    int threads = tz_pool_threads();
    *again = 0;
    if ((!o->part_bytes && threads < 2) || size < from || (size - from) / 4 < part) return 0;
    for (size_t j = 0; j < b->n_cols; j++)
        if (b->cols[j]->type == TZ_COL_BOOL) return 0;
    size_t want = size - from, window = part <= SIZE_MAX / WINDOW_PARTS ? part * WINDOW_PARTS : SIZE_MAX;
    if (want > window) want = window;
    char *text = NULL;
    size_t len = 0;
    int wrc = window_text(r, from, want, &text, &len, err);
    if (wrc) return wrc;
    /* A window short of the file ends after its last line feed; a file
     * that ended early ends the window where it ends now. */
    int last = len < want || from + len == size;
    while (!last && len > 0 && text[len - 1] != '\n') len--;
    if (len / 4 < part) return 0;  /* what is left is the serial reader's */
    size_t n_parts = len / part;
    if (n_parts > (size_t)threads * 4) n_parts = (size_t)threads * 4;
    size_t step = len / n_parts;
    csv_part *parts = calloc(n_parts, sizeof *parts);
    int *was = malloc((b->n_cols ? b->n_cols : 1) * sizeof *was);  /* column types before a part joins */
    parts_job job = { .parts = parts, .delim = r->delim };
    int rc = parts && was ? 0 : tz_err_set(err, TZ_ENOMEM, "out of memory reading %s", r->path);
    /* Cut after line feeds: part k ends where part k + 1 starts. */
    const char *at = text, *end = text + len;
    for (size_t k = 0; !rc && k < n_parts; k++) {
        const char *cut = k + 1 == n_parts ? end : text + (k + 1) * step;
        if (cut < at) cut = at;
        const char *nl = cut < end && k + 1 < n_parts ? memchr(cut, '\n', (size_t)(end - cut)) : NULL;
        parts[k].start = at;
        parts[k].end = k + 1 == n_parts ? end : nl ? nl + 1 : end;
        at = parts[k].end;
    }
    if (!rc) tz_pool_run(n_parts, count_task, &job);
    size_t rows = b->rows;
    for (size_t k = 0; !rc && k < n_parts; k++) {
        parts[k].first_row = rows;
        rows += parts[k].lines;
    }
    if (!rc && reserve_rows(b, rows + 1)) rc = tz_err_set(err, TZ_ENOMEM, "out of memory reading %s", r->path);
    for (size_t k = 0; !rc && k < n_parts; k++)
        if (part_views(&parts[k], b)) rc = tz_err_set(err, TZ_ENOMEM, "out of memory reading %s", r->path);
    if (!rc) tz_pool_run(n_parts, parse_task, &job);
    for (size_t k = 0; !rc && k < n_parts; k++) {
        csv_part *pt = &parts[k];
        size_t line = r->line;
        for (size_t j = 0; j < b->n_cols; j++) was[j] = b->cols[j]->type;
        if (join_part(b, pt, line)) {
            rc = tz_err_set(err, TZ_ENOMEM, "out of memory reading %s", r->path);
            break;
        }
        rep->rows_read += pt->b.rows + pt->n_issues + pt->n_more;
        for (size_t i = 0; !rc && i < pt->n_issues; i++) {
            const part_issue *is = &pt->issues[i];
            if (is->column) {
                int type = was[is->column - 1] == TZ_COL_F64 ? TZ_COL_F64 : is->type;
                why_not(b, b->cols[is->column - 1]->name, type, is->text, is->len);
            }
            b->bad_field = is->column;
            rc = row_issue(b, rep, o, r, line + is->line, is->got, err);
        }
        for (size_t i = 0; !rc && i < pt->n_more; i++) rc = row_issue(b, rep, o, r, line + pt->more_lines[i], 0, err);
        if (rc) break;
        r->line += pt->lines_done;
        size_t stop = from + (size_t)(pt->stop - text), part_end = from + (size_t)(pt->end - text);
        rc = reader_seek(r, stop, err);
        if (!rc && stop < part_end) rc = read_records(r, b, o, rep, part_end, err);
        if (!rc && r->off + r->pos != part_end) break;  /* a record ran on into the next part */
        if (k + 1 == n_parts) *again = !last;
    }
    for (size_t k = 0; parts && k < n_parts; k++) part_free(&parts[k], b->n_cols);
    free(parts);
    free(was);
    return rc;
}

/* The arrays of recycle's columns (a frame read as b reads, nobody else
 * holding its columns) become b's empty columns' memory: a stream of
 * blocks (tz_csv_blocks) then faults and zeroes no fresh pages for each. */
static void take_memory(builder *b, tz_frame *recycle)
{
    size_t n = b->n_cols + (b->lines != NULL);
    if (recycle->n_cols != n) return;
    size_t cap = SIZE_MAX;
    for (size_t j = 0; j < n; j++) {
        const tz_column *from = recycle->cols[j], *to = j < b->n_cols ? b->cols[j] : b->lines;
        if (from->refs != 1 || from->type != to->type || strcmp(from->name, to->name)) return;
        if (from->cap < cap) cap = from->cap;
    }
    for (size_t j = 0; j < n; j++) {
        tz_column *from = recycle->cols[j], *to = j < b->n_cols ? b->cols[j] : b->lines;
        to->data = from->data;
        to->valid = from->valid;
        to->cap = cap;
        memset(to->valid, 0, (cap + 7) / 8);
        from->data = NULL;
        from->valid = NULL;
        from->cap = from->n = 0;
    }
    b->cap = cap;
}

/* The records from the reader's position up to byte `end` of the file
 * (its size, or opts->to). */
static int read_body(reader *r, builder *b, const tz_csv_opts *o, size_t infer, size_t end, int regular,
                     tz_frame *recycle, tz_csv_report *rep, tz_err *err)
{
    sample s;
    int rc = read_sample(r, b->n_cols, infer, end, &s, err);
    if (rc) { sample_free(&s); return rc; }
    for (size_t j = 0; j < b->n_cols; j++) {
        int forced = schema_type(o, b->cols[j]->name);
        guess g = {0};
        for (size_t i = 0; forced < 0 && i < s.n_rows; i++) {
            size_t len;
            const char *v = sample_value(&s, i, j, b->n_cols, &len);
            if (v && s.n_fields[i] == b->n_cols && !is_na(&b->na, v, len)) observe(&g, v, len);
        }
        /* The header made placeholder columns: replace each by one of its
         * type, empty until reserve_rows() below. */
        tz_column *c = tz_column_new(b->cols[j]->name, forced >= 0 ? forced : decide(&g), 0);
        if (!c) {
            sample_free(&s);
            return tz_err_set(err, TZ_ENOMEM, "out of memory");
        }
        free(c->data);
        free(c->valid);
        c->data = NULL;
        c->valid = NULL;
        c->cap = 0;
        tz_column_unref(b->cols[j]);
        b->cols[j] = c;
    }
    if (o->line_column) {
        b->lines = tz_column_new(o->line_column, TZ_COL_I64, 0);
        if (!b->lines || tz_frame_find(b->frame, o->line_column) >= 0) {
            sample_free(&s);
            return tz_err_set(err, TZ_EINVAL, "line column '%s' clashes with a column of the file", o->line_column);
        }
        free(b->lines->data);
        free(b->lines->valid);
        b->lines->data = NULL;
        b->lines->valid = NULL;
        b->lines->cap = 0;
    }
    /* Rows expected = file size / bytes per sampled record, plus a margin. */
    size_t per = s.n_rows ? (s.bytes + s.n_rows - 1) / s.n_rows : 64;
    size_t from = r->off + r->pos, est = (end > from ? end - from : 0) / (per ? per : 1);
    b->cap = 0;
    if (recycle) take_memory(b, recycle);
    if (reserve_rows(b, est + est / 20 + 16)) {
        sample_free(&s);
        return tz_err_set(err, TZ_ENOMEM, "out of memory");
    }
    span *tmp = malloc((b->n_cols ? b->n_cols : 1) * sizeof *tmp);
    for (size_t i = 0; rc == 0 && tmp && i < s.n_rows; i++) {
        for (size_t j = 0; j < b->n_cols; j++) {
            size_t len;
            const char *v = sample_value(&s, i, j, b->n_cols, &len);
            tmp[j] = (span){ (char *)(v ? v : ""), v ? len : 0 };
        }
        rc = add_record(b, rep, o, r, tmp, s.n_fields[i], s.lines[i], err);
    }
    free(tmp);
    sample_free(&s);
    for (int again = regular; rc == 0 && again;) rc = read_parts(r, b, o, end, rep, &again, err);
    return rc ? rc : read_records(r, b, o, rep, o->to ? end : SIZE_MAX, err);
}

/* A file whose first buffer holds carriage returns and no line feed has
 * classic Mac OS line endings: read as one endless line it would give no
 * rows and no complaint, so it is refused by name. */
static int check_line_endings(const reader *r, tz_err *err)
{
    if (r->len > r->pos && !memchr(r->buf + r->pos, '\n', r->len - r->pos) && memchr(r->buf + r->pos, '\r', r->len - r->pos))
        return tz_err_set(err, TZ_EINVAL, "%s has CR-only line endings (classic Mac OS): convert them to LF or CRLF",
                          r->path);
    return 0;
}

/* With unique_header: a name twice in the header is refused, since which
 * of the two columns holds the values is anybody's guess. */
static int check_unique_header(const reader *r, tz_err *err)
{
    for (size_t j = 1; j < r->n_fields; j++)
        for (size_t k = 0; k < j; k++)
            if (r->fields[j].len == r->fields[k].len && !memcmp(r->fields[j].p, r->fields[k].p, r->fields[j].len))
                return tz_err_set(err, TZ_EINVAL, "%s: column '%.*s' appears twice in the header (columns %zu and %zu)",
                                  r->path, (int)(r->fields[j].len > 200 ? 200 : r->fields[j].len), r->fields[j].p,
                                  k + 1, j + 1);
    return 0;
}

/* With opts->from: on to the range's first record, past the header. */
static int start_at(reader *r, const tz_csv_opts *o, tz_err *err)
{
    if (o->from < r->off + r->pos || (o->to && o->to < o->from))
        return tz_err_set(err, TZ_EINVAL, "%s: the range %zu..%zu does not follow the header", r->path, o->from, o->to);
    int rc = reader_seek(r, o->from, err);
    if (!rc && o->from_line) r->line = o->from_line;
    return rc;
}

/* tz_csv_read, and tz_csv_read_into's extras (into: NULL for none). */
static int read_file(const char *path, const tz_csv_opts *opts, const tz_csv_into *into, tz_frame **out,
                     tz_csv_report *report, tz_err *err)
{
    static const tz_csv_into none;
    if (!into) into = &none;
    tz_csv_opts o = opts ? *opts : (tz_csv_opts){0};
    tz_csv_report scratch;
    tz_csv_report *rep = report ? report : &scratch;
    memset(rep, 0, sizeof *rep);
    reader r = { .fd = open(path, O_RDONLY | O_CLOEXEC), .path = path, .line = 1,
                 .delim = o.delimiter ? o.delimiter : ',', .until = o.to ? o.to : SIZE_MAX,
                 .text = into->text, .text_from = o.from, .text_len = o.to > o.from ? o.to - o.from : 0 };
    if (r.fd < 0) return tz_err_set(err, TZ_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    fstat(r.fd, &sb);
    if (S_ISDIR(sb.st_mode)) {
        close(r.fd);
        return tz_err_set(err, TZ_EIO, "cannot read %s: is a directory", path);
    }
    /* A small file gets a buffer of its own size, a large one CHUNK; a
     * range less, since its header is read and dropped for each range (the
     * buffer grows for a longer record). */
    size_t chunk = o.from ? CHUNK / 16 : CHUNK;
    r.cap = (size_t)sb.st_size + 2048 < chunk ? (size_t)sb.st_size + 2048 : chunk;
    r.buf = malloc(r.cap);
    builder b = { .frame = tz_frame_new() };
    na_init(&b.na, o.na_values ? o.na_values : DEFAULT_NA,
            o.na_values ? o.n_na : sizeof DEFAULT_NA / sizeof *DEFAULT_NA);
    int rc = (!r.buf || !b.frame) ? tz_err_set(err, TZ_ENOMEM, "out of memory") : 0;
    if (!rc) rc = fill(&r, err);
    if (!rc && r.len >= 3 && !memcmp(r.buf, "\xEF\xBB\xBF", 3)) r.pos = 3;  /* UTF-8 byte order mark */
    if (!rc) rc = check_line_endings(&r, err);
    /* Without a header the first record is read twice: for its width, then
     * as data, from where it starts (after a byte order mark and blank
     * lines; a fill while it is read keeps it, from its start). */
    r.peek = o.no_header;
    int has = rc ? rc : next_record(&r, err);
    r.peek = 0;
    if (has == 0) rc = tz_err_set(err, TZ_EINVAL, "%s is empty: no header and no rows", path);
    else if (has < 0) rc = has;
    if (!rc && o.unique_header && !o.no_header) rc = check_unique_header(&r, err);
    if (!rc) {
        /* The header (or, without one, the first record's width). */
        size_t n = r.n_fields;
        for (size_t j = 0; j < n && !rc; j++) {
            char *name = column_name(r.fields, j, o.no_header, b.frame);
            tz_column *c = name ? tz_column_new(name, TZ_COL_F64, 0) : NULL;
            free(name);
            rc = c ? tz_frame_add(b.frame, c, err) : tz_err_set(err, TZ_ENOMEM, "out of memory");
            tz_column_unref(c);
        }
        b.cols = b.frame->cols;
        b.n_cols = b.frame->n_cols;
        if (o.no_header && !rc) r.pos = r.record_at - r.off, r.line = r.record_line;  /* data: read it again */
    }
    if (!rc && into->header_at)
        *into->header_at = (tz_csv_header_at){ .start = r.record_at, .end = r.off + r.pos, .line = r.line };
    if (!rc && o.from) rc = start_at(&r, &o, err);
    if (!rc && !into->header_at) {
        size_t end = o.to ? o.to : (size_t)sb.st_size;
        rc = read_body(&r, &b, &o, o.infer_rows ? o.infer_rows : 1000, end, S_ISREG(sb.st_mode), into->recycle, rep,
                       err);
    }
    close(r.fd);
    free(r.buf);
    free(r.window);
    free(r.fields);
    if (b.frame && !rc) {
        finish_columns(&b);
        if (b.lines) rc = tz_frame_add(b.frame, b.lines, err);
    }
    tz_column_unref(b.lines);
    if (rc) {
        tz_frame_free(b.frame);
        tz_csv_report_free(rep);
        return rc;
    }
    if (!report) tz_csv_report_free(rep);
    *out = b.frame;
    return 0;
}

int tz_csv_read(const char *path, const tz_csv_opts *opts, tz_frame **out, tz_csv_report *report,
                tz_err *err)
{
    return read_file(path, opts, NULL, out, report, err);
}

int tz_csv_read_into(const char *path, const tz_csv_opts *opts, const tz_csv_into *into, tz_frame **out,
                     tz_csv_report *report, tz_err *err)
{
    int rc = read_file(path, opts, into, out, report, err);
    tz_frame_free(into->recycle);
    return rc;
}

void tz_csv_report_free(tz_csv_report *r)
{
    free(r->issues);
    free(r->more_lines);
    r->issues = NULL;
    r->more_lines = NULL;
    r->n_issues = r->n_more = 0;
}
