/*
 * tz_blob — Tycho's versioned little-endian binary container, used for model
 * files and artifacts.
 *
 * Layout: "TYCHOBLB" (8 bytes) | u32 format version | u32 kind | u64 payload
 * length | payload | u32 CRC-32 (IEEE) of every byte before it. Integers and
 * doubles are little-endian whatever the host.
 *
 * Writer: tz_blob_writer_init(), tz_blob_put_*() (failures are sticky: check
 * once at the end), tz_blob_finish() hands the caller a malloc'd buffer to
 * free(). Reader: tz_blob_open() validates magic, kind, version range,
 * length and checksum before anything is parsed, so a truncated, damaged or
 * foreign file is refused up front; tz_blob_get_*() never read out of
 * bounds (an overrun sets the reader's `failed` flag and returns zeroes);
 * tz_blob_close() reports overruns or trailing bytes. The reader borrows the
 * caller's buffer.
 */
#ifndef TZ_BLOB_H
#define TZ_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "util/tz_err.h"

typedef struct tz_blob_writer {
    unsigned char *p;
    size_t len, cap;
    int failed;
} tz_blob_writer;

typedef struct tz_blob_reader {
    const unsigned char *p;
    size_t len, pos;
    int failed;
} tz_blob_reader;

void tz_blob_writer_init(tz_blob_writer *w);
void tz_blob_writer_free(tz_blob_writer *w);
void tz_blob_put_u8(tz_blob_writer *w, uint8_t v);
void tz_blob_put_u32(tz_blob_writer *w, uint32_t v);
void tz_blob_put_u64(tz_blob_writer *w, uint64_t v);
void tz_blob_put_f64(tz_blob_writer *w, double v);
void tz_blob_put_f64s(tz_blob_writer *w, const double *v, size_t n);
void tz_blob_put_bytes(tz_blob_writer *w, const void *data, size_t n);
/* u32 length, then the bytes. */
void tz_blob_put_str(tz_blob_writer *w, const char *s, size_t n);

/* Wraps the payload written so far; *out is malloc'd (caller frees) and
 * the writer is emptied. TZ_ENOMEM if any put failed. */
int tz_blob_finish(tz_blob_writer *w, uint32_t kind, uint32_t version,
                   unsigned char **out, size_t *out_len, tz_err *err);

/* Checks the container and positions r at the payload. Fails with
 * TZ_ECORRUPT (bad magic, length or checksum: says which) or TZ_EINVAL
 * (wrong kind, or a version above max_version: "written by a newer tycho"). */
int tz_blob_open(const void *data, size_t len, uint32_t kind, uint32_t max_version,
                 tz_blob_reader *r, uint32_t *version, tz_err *err);

uint8_t  tz_blob_get_u8(tz_blob_reader *r);
uint32_t tz_blob_get_u32(tz_blob_reader *r);
uint64_t tz_blob_get_u64(tz_blob_reader *r);
double   tz_blob_get_f64(tz_blob_reader *r);
void     tz_blob_get_f64s(tz_blob_reader *r, double *dst, size_t n);
/* Pointer into the buffer (not NUL-terminated), length in *n; NULL on overrun. */
const void *tz_blob_get_bytes(tz_blob_reader *r, size_t n);
const char *tz_blob_get_str(tz_blob_reader *r, size_t *n);
/* Bytes left in the payload; a count read from the file should be checked
 * against it before allocating. */
size_t tz_blob_remaining(const tz_blob_reader *r);

/* 0 when the payload was read exactly; TZ_ECORRUPT otherwise. */
int tz_blob_close(tz_blob_reader *r, tz_err *err);

/* CRC-32 (IEEE 802.3), continuing from crc (start with 0). */
uint32_t tz_crc32(uint32_t crc, const void *data, size_t n);

#endif
