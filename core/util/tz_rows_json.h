/*
 * tz_rows_json — the predict route's body, {"instances": [{name: number,
 * ...}, ...]}, parsed straight into a row-major matrix of doubles, with no
 * Lua table per instance or per value.
 *
 * It is a fast path, not a second JSON parser for the border: it accepts
 * only the one shape a full, numeric instance has (every column present
 * once, every value a finite JSON number, keys without escapes) and answers
 * TZ_ROWS_OTHER for anything else: nulls, strings, entity keys, unknown or
 * missing names, bad JSON. The general path (lua-cjson) then answers that
 * body, errors included, so both paths agree on what a body means.
 */
#ifndef TZ_ROWS_JSON_H
#define TZ_ROWS_JSON_H

#include <stddef.h>

/* Not the fast shape: parse the body the general way. */
#define TZ_ROWS_OTHER (-1)
/* More instances than the caller's capacity. */
#define TZ_ROWS_TOO_MANY (-2)

/* Longest column name the index holds; longer names never match. */
#define TZ_ROWS_MAX_NAME 256
/* Most columns an index holds. */
#define TZ_ROWS_MAX_COLUMNS 4096

typedef struct tz_rows_index tz_rows_index;

/* An index of n column names (names[i] is lens[i] bytes): column i is
 * value i of each parsed row. NULL when n is out of range, a name is too
 * long or repeated, or memory runs out. */
tz_rows_index *tz_rows_index_new(int n, const char *const *names, const size_t *lens);
void tz_rows_index_free(tz_rows_index *ix);

/* Parses body[0..len) into out: row r's column j at out[r * n + j], for at
 * most cap_rows rows. Returns the number of rows (>= 1), TZ_ROWS_OTHER or
 * TZ_ROWS_TOO_MANY. out's contents are unspecified unless rows came back. */
int tz_rows_parse(const tz_rows_index *ix, const char *body, size_t len, double *out, int cap_rows);

/* Smallest number of bytes a row of n columns takes in a body: a caller
 * sizes out for len / tz_rows_min_bytes(n) + 1 rows and never sees
 * TZ_ROWS_TOO_MANY for lack of room. */
size_t tz_rows_min_bytes(int n);

#endif
