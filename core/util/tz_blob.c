#include "util/tz_blob.h"

#include <stdlib.h>
#include <string.h>

static const char MAGIC[8] = { 'T', 'Y', 'C', 'H', 'O', 'B', 'L', 'B' };
#define HEADER_LEN 24  /* magic, version, kind, payload length */

uint32_t tz_crc32(uint32_t crc, const void *data, size_t n)
{
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

void tz_blob_writer_init(tz_blob_writer *w) { memset(w, 0, sizeof *w); }

void tz_blob_writer_free(tz_blob_writer *w)
{
    free(w->p);
    memset(w, 0, sizeof *w);
}

static unsigned char *reserve(tz_blob_writer *w, size_t n)
{
    if (w->failed) return NULL;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n) cap *= 2;
        unsigned char *p = realloc(w->p, cap);
        if (!p) { w->failed = 1; return NULL; }
        w->p = p;
        w->cap = cap;
    }
    unsigned char *at = w->p + w->len;
    w->len += n;
    return at;
}

static void le_store(unsigned char *at, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) at[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t le_load(const unsigned char *at, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)at[i] << (8 * i);
    return v;
}

void tz_blob_put_u8(tz_blob_writer *w, uint8_t v)
{
    unsigned char *at = reserve(w, 1);
    if (at) *at = v;
}

void tz_blob_put_u32(tz_blob_writer *w, uint32_t v)
{
    unsigned char *at = reserve(w, 4);
    if (at) le_store(at, v, 4);
}

void tz_blob_put_u64(tz_blob_writer *w, uint64_t v)
{
    unsigned char *at = reserve(w, 8);
    if (at) le_store(at, v, 8);
}

void tz_blob_put_f64(tz_blob_writer *w, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, 8);
    tz_blob_put_u64(w, bits);
}

void tz_blob_put_f64s(tz_blob_writer *w, const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++) tz_blob_put_f64(w, v[i]);
}

void tz_blob_put_bytes(tz_blob_writer *w, const void *data, size_t n)
{
    unsigned char *at = reserve(w, n);
    if (at && n) memcpy(at, data, n);
}

void tz_blob_put_str(tz_blob_writer *w, const char *s, size_t n)
{
    tz_blob_put_u32(w, (uint32_t)n);
    tz_blob_put_bytes(w, s, n);
}

int tz_blob_finish(tz_blob_writer *w, uint32_t kind, uint32_t version,
                   unsigned char **out, size_t *out_len, tz_err *err)
{
    if (w->failed) {
        tz_blob_writer_free(w);
        return tz_err_set(err, TZ_ENOMEM, "out of memory while encoding");
    }
    size_t total = HEADER_LEN + w->len + 4;
    unsigned char *buf = malloc(total);
    if (!buf) {
        tz_blob_writer_free(w);
        return tz_err_set(err, TZ_ENOMEM, "out of memory while encoding");
    }
    memcpy(buf, MAGIC, 8);
    le_store(buf + 8, version, 4);
    le_store(buf + 12, kind, 4);
    le_store(buf + 16, w->len, 8);
    if (w->len) memcpy(buf + HEADER_LEN, w->p, w->len);
    le_store(buf + HEADER_LEN + w->len, tz_crc32(0, buf, HEADER_LEN + w->len), 4);
    tz_blob_writer_free(w);
    *out = buf;
    *out_len = total;
    return 0;
}

int tz_blob_open(const void *data, size_t len, uint32_t kind, uint32_t max_version,
                 tz_blob_reader *r, uint32_t *version, tz_err *err)
{
    const unsigned char *p = data;
    if (len < HEADER_LEN + 4 || memcmp(p, MAGIC, 8) != 0)
        return tz_err_set(err, TZ_ECORRUPT, "not a Tycho file (bad magic)");
    uint64_t payload = le_load(p + 16, 8);
    if (payload != len - HEADER_LEN - 4)
        return tz_err_set(err, TZ_ECORRUPT, "truncated or padded file: header says %llu payload bytes, found %zu",
                          (unsigned long long)payload, len - HEADER_LEN - 4);
    uint32_t stored = (uint32_t)le_load(p + len - 4, 4);
    if (tz_crc32(0, p, len - 4) != stored)
        return tz_err_set(err, TZ_ECORRUPT, "checksum mismatch: the file is damaged");
    uint32_t v = (uint32_t)le_load(p + 8, 4), k = (uint32_t)le_load(p + 12, 4);
    if (k != kind) return tz_err_set(err, TZ_EINVAL, "wrong kind of file: holds kind %u, expected %u", k, kind);
    if (v == 0 || v > max_version)
        return tz_err_set(err, TZ_EINVAL, "format version %u is not supported (this tycho reads up to %u)",
                          v, max_version);
    r->p = p + HEADER_LEN;
    r->len = (size_t)payload;
    r->pos = 0;
    r->failed = 0;
    if (version) *version = v;
    return 0;
}

static const unsigned char *take(tz_blob_reader *r, size_t n)
{
    if (r->failed || n > r->len - r->pos) {
        r->failed = 1;
        return NULL;
    }
    const unsigned char *at = r->p + r->pos;
    r->pos += n;
    return at;
}

uint8_t tz_blob_get_u8(tz_blob_reader *r)
{
    const unsigned char *at = take(r, 1);
    return at ? *at : 0;
}

uint32_t tz_blob_get_u32(tz_blob_reader *r)
{
    const unsigned char *at = take(r, 4);
    return at ? (uint32_t)le_load(at, 4) : 0;
}

uint64_t tz_blob_get_u64(tz_blob_reader *r)
{
    const unsigned char *at = take(r, 8);
    return at ? le_load(at, 8) : 0;
}

double tz_blob_get_f64(tz_blob_reader *r)
{
    uint64_t bits = tz_blob_get_u64(r);
    double v;
    memcpy(&v, &bits, 8);
    return v;
}

void tz_blob_get_f64s(tz_blob_reader *r, double *dst, size_t n)
{
    if (n > tz_blob_remaining(r) / 8) {
        r->failed = 1;
        memset(dst, 0, n * sizeof *dst);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = tz_blob_get_f64(r);
}

const void *tz_blob_get_bytes(tz_blob_reader *r, size_t n) { return take(r, n); }

const char *tz_blob_get_str(tz_blob_reader *r, size_t *n)
{
    *n = tz_blob_get_u32(r);
    const char *s = (const char *)take(r, *n);
    if (!s) *n = 0;
    return s;
}

size_t tz_blob_remaining(const tz_blob_reader *r) { return r->failed ? 0 : r->len - r->pos; }

int tz_blob_close(tz_blob_reader *r, tz_err *err)
{
    if (r->failed) return tz_err_set(err, TZ_ECORRUPT, "file ends in the middle of a record");
    if (r->pos != r->len) return tz_err_set(err, TZ_ECORRUPT, "%zu unexpected bytes at the end", r->len - r->pos);
    return 0;
}
