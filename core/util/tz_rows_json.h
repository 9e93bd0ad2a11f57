/*
 * tz_rows_json — the predict route's body, {"instances": [{name: number,
 * ...}, ...]}, parsed straight into a row-major matrix of doubles, with no
 * Lua table per instance or per value; and the Feast read body of
 * /get-online-features (below), parsed into offsets.
 *
 * It is a fast path, not a second JSON parser for the border: it accepts
 * only the one shape a full, numeric instance has (every column present
 * once, every value a finite JSON number, keys without escapes), plus, when
 * the caller has room for them, other keys with scalar values (a request id,
 * a user id: "extras", passed on by position in the body), and answers
 * TZ_ROWS_OTHER for anything else: nulls or strings in a column, missing
 * names, nested values, escapes, bad JSON. The general path (lua-cjson) then
 * answers that body, errors included, so both paths agree on what a body
 * means.
 */
#ifndef TZ_ROWS_JSON_H
#define TZ_ROWS_JSON_H

#include <stddef.h>
#include <stdint.h>

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

/* The kinds of an extra's value. */
#define TZ_ROWS_STRING 0 /* a string without escapes: value is its bytes, without quotes */
#define TZ_ROWS_NUMBER 1 /* a JSON number: value is its text */
#define TZ_ROWS_TRUE 2
#define TZ_ROWS_FALSE 3
#define TZ_ROWS_NULL 4

/* A key of an instance that is no column, with its scalar value: offsets
 * into the body. */
typedef struct tz_rows_extra {
    int32_t row;
    int32_t kind;
    uint32_t key_at, key_len;
    uint32_t value_at, value_len;
} tz_rows_extra;

/* Parses body[0..len) into out: row r's column j at out[r * n + j], for at
 * most cap_rows rows; other keys of scalar value into extras (at most
 * cap_extras of them, *n_extras set; cap_extras 0: any other key is
 * TZ_ROWS_OTHER). Returns the number of rows (>= 1), TZ_ROWS_OTHER (also for
 * more extras than cap_extras, or a body of 4 GB or more) or
 * TZ_ROWS_TOO_MANY. out's contents are unspecified unless rows came back. */
int tz_rows_parse(const tz_rows_index *ix, const char *body, size_t len, double *out, int cap_rows,
                  tz_rows_extra *extras, int cap_extras, int *n_extras);

/* Smallest number of bytes a row of n columns takes in a body: a caller
 * sizes out for len / tz_rows_min_bytes(n) + 1 rows and never sees
 * TZ_ROWS_TOO_MANY for lack of room. */
size_t tz_rows_min_bytes(int n);

/* ---- the Feast feature server's read body ----------------------------------------
 * {"features": ["view:feature", ...], "entities": {"join_key": [k, ...]},
 * "full_feature_names": true|false}, keys in any order, the last optional,
 * read the same way: offsets, no Lua table. The features array is handed
 * back as its text (brackets included): a server that has seen the same
 * text before knows its refs, and reads the general path's decoding of it
 * otherwise. Anything else is TZ_ROWS_OTHER: another key or one twice,
 * features that are no strings or have escapes, no features, several join
 * keys or none, no entity keys, a key that is no string without escapes or
 * finite number. */

/* An entity key: TZ_ROWS_STRING (its bytes at `at`, without quotes) or
 * TZ_ROWS_NUMBER (its text at `at`, its value in number). */
typedef struct tz_feast_key {
    int32_t kind;
    uint32_t at, len;
    double number;
} tz_feast_key;

typedef struct tz_feast_read {
    uint32_t features_at, features_len;
    uint32_t join_key_at, join_key_len;
    int32_t full_names; /* full_feature_names: -1 absent, 0 false, 1 true */
} tz_feast_read;

/* Parses body[0..len) into out and at most cap_keys entity keys; returns
 * their number (>= 1), TZ_ROWS_OTHER (also for a body of 4 GB or more) or
 * TZ_ROWS_TOO_MANY. */
int tz_feast_parse(const char *body, size_t len, tz_feast_read *out, tz_feast_key *keys, int cap_keys);

#endif
