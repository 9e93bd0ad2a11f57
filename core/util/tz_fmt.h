/*
 * tz_fmt — numbers as text that reads back exactly and no longer than it
 * must: 33.6, not 33.600000000000001 (what "%.17g" prints) and not 33.6
 * when the double is really 33.600000000000009 (what "%.15g" loses).
 * Used wherever Tycho writes numbers for people and other programs to read
 * back (CSV files, scored outputs).
 */
#ifndef TZ_FMT_H
#define TZ_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Longest text tz_fmt_double writes, with its terminating NUL. */
#define TZ_FMT_DOUBLE_MAX 32

/* Writes the shortest "%.Ng" form of v (N from 1 to 17) that strtod reads
 * back as v, NUL-terminated, into buf (TZ_FMT_DOUBLE_MAX bytes); returns its
 * length. Non-finite values are written "nan", "inf" and "-inf". */
size_t tz_fmt_double(char *buf, double v);

/* Longest text tz_fmt_i64 writes, with its terminating NUL. */
#define TZ_FMT_I64_MAX 21

/* Writes v in decimal, NUL-terminated, into buf (TZ_FMT_I64_MAX bytes), as
 * "%lld" does; returns its length. */
size_t tz_fmt_i64(char *buf, int64_t v);

#endif
