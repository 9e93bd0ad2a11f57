/* libFuzzer target: the predict body's fast path (tz_rows_parse). Any input
 * is either refused to the general path (TZ_ROWS_OTHER), over capacity, or
 * a count of rows whose every value is finite; a parse never reads past the
 * body (ASan: the input is copied to a buffer of exactly its size) and the
 * output past the rows it reports is never written; extras lie within the
 * body and name a row it reports. The Feast read body's parser
 * (tz_feast_parse) reads the same input: its spans lie within the body, the
 * features span is a bracketed array, and number keys are finite. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/tz_rows_json.h"

#define CAP 8
#define COLS 3
#define EXTRAS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[COLS] = {"a", "bb", "num3d"};
    static const size_t lens[COLS] = {1, 2, 5};
    static tz_rows_index *ix;
    if (!ix) ix = tz_rows_index_new(COLS, names, lens);
    if (!ix) abort();
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    memcpy(body, data, size);
    double out[CAP * COLS + 1];
    const double guard = 12345.5;
    out[CAP * COLS] = guard;
    tz_rows_extra extras[EXTRAS];
    int n_extras = -1;
    int n = tz_rows_parse(ix, body, size, out, CAP, extras, EXTRAS, &n_extras);
    if (n != TZ_ROWS_OTHER && n != TZ_ROWS_TOO_MANY) {
        if (n < 1 || n > CAP || n_extras < 0 || n_extras > EXTRAS) abort();
        for (int i = 0; i < n * COLS; i++)
            if (!isfinite(out[i])) abort();
        for (int i = 0; i < n_extras; i++) {
            const tz_rows_extra *e = &extras[i];
            if (e->row < 0 || e->row >= n || e->kind < TZ_ROWS_STRING || e->kind > TZ_ROWS_NULL ||
                (size_t)e->key_at + e->key_len > size || (size_t)e->value_at + e->value_len > size)
                abort();
        }
    }
    if (out[CAP * COLS] != guard) abort();
    tz_feast_read read;
    tz_feast_key keys[CAP];
    n = tz_feast_parse(body, size, &read, keys, CAP);
    if (n != TZ_ROWS_OTHER && n != TZ_ROWS_TOO_MANY) {
        if (n < 1 || n > CAP || read.features_len < 4 || (size_t)read.features_at + read.features_len > size ||
            body[read.features_at] != '[' || body[read.features_at + read.features_len - 1] != ']' ||
            (size_t)read.join_key_at + read.join_key_len > size || read.full_names < -1 || read.full_names > 1)
            abort();
        for (int i = 0; i < n; i++) {
            if ((size_t)keys[i].at + keys[i].len > size) abort();
            if (keys[i].kind == TZ_ROWS_NUMBER ? !isfinite(keys[i].number) : keys[i].kind != TZ_ROWS_STRING) abort();
        }
    }
    free(body);
    return 0;
}
