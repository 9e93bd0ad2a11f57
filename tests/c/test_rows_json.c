/* tz_rows_json: the predict body's fast shape and the Feast read body's,
 * and everything else refused to the general path. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/tz_rows_json.h"
#include "tap.h"

static tz_rows_index *index_of(int n, const char *const *names)
{
    size_t lens[8];
    for (int i = 0; i < n; i++) lens[i] = strlen(names[i]);
    return tz_rows_index_new(n, names, lens);
}

static int parse(const tz_rows_index *ix, const char *body, double *out, int cap)
{
    return tz_rows_parse(ix, body, strlen(body), out, cap, NULL, 0, NULL);
}

/* The bytes of an extra's key or value. */
static const char *span(const char *body, uint32_t at, uint32_t len)
{
    static char text[64];
    snprintf(text, sizeof text, "%.*s", (int)len, body + at);
    return text;
}

static int feast(const char *body, tz_feast_read *r, tz_feast_key *keys, int cap)
{
    return tz_feast_parse(body, strlen(body), r, keys, cap);
}

/* The Feast read body of /get-online-features. */
static void feast_read_body(void)
{
    tz_feast_read r;
    tz_feast_key k[4];
    const char *one = "{\"features\":[\"o:f1\",\"o:f2\"],\"entities\":{\"driver_id\":[\"k7\"]}}";
    is_int(feast(one, &r, k, 4), 1, "one entity, two features");
    ok(!strcmp(span(one, r.features_at, r.features_len), "[\"o:f1\",\"o:f2\"]"), "the features array's text");
    ok(!strcmp(span(one, r.join_key_at, r.join_key_len), "driver_id") && r.full_names == -1,
       "the join key; full_feature_names absent");
    ok(k[0].kind == TZ_ROWS_STRING && !strcmp(span(one, k[0].at, k[0].len), "k7"), "a string key: its bytes");
    const char *many = " { \"full_feature_names\" : true , \"entities\":{\"id\":[ 1001 ,\"b\", -2.5e1]},"
                       "\"features\":[ \"v:*\" ] } ";
    is_int(feast(many, &r, k, 4), 3, "keys in any order, whitespace, three entities");
    ok(r.full_names == 1 && k[0].kind == TZ_ROWS_NUMBER && k[0].number == 1001 &&
       !strcmp(span(many, k[0].at, k[0].len), "1001") && k[1].kind == TZ_ROWS_STRING && k[2].number == -25,
       "full names; number keys with their text and value");
    is_int(feast(many, &r, k, 2), TZ_ROWS_TOO_MANY, "more keys than room");
    const char *other[] = {
        "{\"features\":[\"o:f1\"],\"entities\":{\"a\":[1],\"b\":[2]}}",  /* two join keys */
        "{\"features\":[\"o:f1\"],\"entities\":{}}",                    /* no join key */
        "{\"features\":[\"o:f1\"],\"entities\":{\"a\":[]}}",              /* no entity */
        "{\"features\":[],\"entities\":{\"a\":[1]}}",                     /* no feature */
        "{\"features\":[\"o:\\u0066\"],\"entities\":{\"a\":[1]}}",         /* an escaped ref */
        "{\"features\":[1],\"entities\":{\"a\":[1]}}",                    /* a ref that is no string */
        "{\"features\":[\"o:f1\"],\"entities\":{\"a\":[null]}}",          /* a null key */
        "{\"features\":[\"o:f1\"],\"entities\":{\"a\":[true]}}",          /* a boolean key */
        "{\"features\":[\"o:f1\"],\"entities\":{\"a\":[1e999]}}",         /* past a double's range */
        "{\"features\":[\"o:f1\"],\"entities\":{\"a\":[\"x\\\"y\"]}}",     /* an escaped key */
        "{\"features\":[\"o:f1\"],\"entities\":{\"a\":[[1]]}}",           /* a nested key */
        "{\"features\":[\"o:f1\"]}",                                    /* no entities */
        "{\"entities\":{\"a\":[1]}}",                                   /* no features */
        "{\"features\":[\"o:f1\"],\"entities\":{\"a\":[1]},\"x\":1}",     /* another key */
        "{\"features\":[\"o:f1\"],\"features\":[\"o:f2\"],\"entities\":{\"a\":[1]}}", /* twice */
        "{\"features\":[\"o:f1\"],\"entities\":{\"a\":[1]},\"full_feature_names\":1}",
        "{\"features\":[\"o:f1\"],\"entities\":{\"a\":[1]}} x",          /* trailing bytes */
        "{\"features\":[\"o:f1\"],\"entities\":{\"a\":[1]}",             /* cut short */
        "",
    };
    int refused = 0;
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        int n = feast(other[i], &r, k, 4);
        if (n != TZ_ROWS_OTHER) printf("# '%s' gave %d\n", other[i], n);
        refused += n == TZ_ROWS_OTHER;
    }
    is_int(refused, (long long)(sizeof other / sizeof *other), "every other Feast body goes to the general path");
}

int main(void)
{
    feast_read_body();
    const char *names[] = {"a", "bb", "c"};
    tz_rows_index *ix = index_of(3, names);
    ok(ix != NULL, "an index of three names");
    double out[12];

    is_int(parse(ix, "{\"instances\":[{\"c\":3,\"a\":1.5,\"bb\":-2e3}]}", out, 4), 1, "one instance, keys in any order");
    ok(out[0] == 1.5 && out[1] == -2000 && out[2] == 3, "values land in index order");
    is_int(parse(ix, " {\n\"instances\" : [ {\"a\":0,\"bb\":0.25,\"c\":1E-2} , {\"a\":-0,\"bb\":7,\"c\":8} ] }\t", out, 4), 2,
           "whitespace anywhere JSON allows it");
    ok(out[2] == 0.01 && out[3] == 0 && signbit(out[3]) && out[5] == 8, "second row; -0 keeps its sign");

    /* Every other shape goes to the general path. */
    const char *other[] = {
        "{\"instances\":[{\"a\":1,\"bb\":2}]}",                    /* a column missing */
        "{\"instances\":[{\"a\":1,\"bb\":2,\"c\":3,\"d\":4}]}",    /* an unknown key */
        "{\"instances\":[{\"a\":1,\"a\":1,\"bb\":2,\"c\":3}]}",    /* a repeated key */
        "{\"instances\":[{\"a\":null,\"bb\":2,\"c\":3}]}",         /* null: a missing value */
        "{\"instances\":[{\"a\":\"x\",\"bb\":2,\"c\":3}]}",        /* a string */
        "{\"instances\":[{\"a\":true,\"bb\":2,\"c\":3}]}",         /* a boolean */
        "{\"instances\":[{\"\\u0061\":1,\"bb\":2,\"c\":3}]}",      /* an escaped key */
        "{\"instances\":[{\"a\":1e999,\"bb\":2,\"c\":3}]}",        /* past a double's range */
        "{\"instances\":[{\"a\":NaN,\"bb\":2,\"c\":3}]}",          /* not JSON */
        "{\"instances\":[{\"a\":01,\"bb\":2,\"c\":3}]}",           /* a leading zero */
        "{\"instances\":[{\"a\":.5,\"bb\":2,\"c\":3}]}",           /* no integer part */
        "{\"instances\":[{\"a\":1.,\"bb\":2,\"c\":3}]}",           /* no fraction digits */
        "{\"instances\":[{\"a\":+1,\"bb\":2,\"c\":3}]}",           /* a plus sign */
        "{\"instances\":[{\"a\":0x10,\"bb\":2,\"c\":3}]}",         /* hex */
        "{\"instances\":[{\"a\":1,\"bb\":2,\"c\":3},]}",           /* a trailing comma */
        "{\"instances\":[]}",                                      /* no instances */
        "{\"instances\":[{\"a\":1,\"bb\":2,\"c\":3}],\"x\":1}",    /* another top-level key */
        "{\"inputs\":{\"a\":[1]}}",                                /* the columnar form */
        "{\"instances\":[{\"a\":1,\"bb\":2,\"c\":3}]} x",          /* trailing bytes */
        "{\"instances\":[{\"a\":1,\"bb\":2,\"c\":3}",              /* cut short */
        "",
    };
    int refused = 0;
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        int r = parse(ix, other[i], out, 4);
        if (r != TZ_ROWS_OTHER) printf("# '%s' gave %d\n", other[i], r);
        refused += r == TZ_ROWS_OTHER;
    }
    is_int(refused, (long long)(sizeof other / sizeof *other), "every other shape goes to the general path");

    is_int(parse(ix, "{\"instances\":[{\"a\":1,\"bb\":2,\"c\":3},{\"a\":1,\"bb\":2,\"c\":3}]}", out, 1), TZ_ROWS_TOO_MANY,
           "more rows than room");

    /* Numbers read exactly as strtod reads them, fast path or not. */
    uint64_t x = 88172645463325252ull;
    int exact = 1;
    char body[256];
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double v;
        char text[40];
        switch (i % 4) {
        case 0: memcpy(&v, &x, sizeof v); if (!isfinite(v)) continue; snprintf(text, sizeof text, "%.17g", v); break;
        case 1: snprintf(text, sizeof text, "%.*g", (int)(x % 17) + 1, (double)(x >> 11) / 9007199254740992.0 * 1e3); break;
        case 2: snprintf(text, sizeof text, "%llu", (unsigned long long)(x >> (x % 40))); break;
        default: snprintf(text, sizeof text, "%.*e", (int)(x % 20), ((double)(x >> 11) - 4e15) * 1e-9); break;
        }
        snprintf(body, sizeof body, "{\"instances\":[{\"a\":%s,\"bb\":0,\"c\":0}]}", text);
        double want = strtod(text, NULL);
        if (parse(ix, body, out, 1) != 1 || memcmp(&out[0], &want, sizeof want) != 0) {
            if (exact) printf("# '%s': got %.17g, want %.17g\n", text, out[0], want);
            exact = 0;
        }
    }
    ok(exact, "100000 numbers read exactly as strtod reads them");

    /* Other keys with scalar values, when there is room for them. */
    tz_rows_extra ex[4];
    int nx = -1;
    const char *with_ids = "{\"instances\":[{\"id\":\"u-1\",\"a\":1,\"bb\":2,\"c\":3,\"n\": 7.5},"
                           "{\"a\":4,\"ok\":true,\"bb\":5,\"no\":false,\"c\":6,\"z\":null}]}";
    is_int(tz_rows_parse(ix, with_ids, strlen(with_ids), out, 4, ex, 4, &nx), TZ_ROWS_OTHER,
           "more extras than room: the general path");
    tz_rows_extra ex6[6];
    is_int(tz_rows_parse(ix, with_ids, strlen(with_ids), out, 4, ex6, 6, &nx), 2, "with room, the rows parse");
    ok(nx == 5 && out[0] == 1 && out[2] == 3 && out[3] == 4 && out[5] == 6, "columns as before, %d extras", nx);
    ok(ex6[0].row == 0 && ex6[0].kind == TZ_ROWS_STRING && !strcmp(span(with_ids, ex6[0].key_at, ex6[0].key_len), "id") &&
       !strcmp(span(with_ids, ex6[0].value_at, ex6[0].value_len), "u-1"), "a string extra: key and bytes");
    ok(ex6[1].kind == TZ_ROWS_NUMBER && !strcmp(span(with_ids, ex6[1].value_at, ex6[1].value_len), "7.5"),
       "a number extra: its text");
    ok(ex6[2].row == 1 && ex6[2].kind == TZ_ROWS_TRUE && ex6[3].kind == TZ_ROWS_FALSE && ex6[4].kind == TZ_ROWS_NULL,
       "true, false and null extras, on the second row");
    const char *still_other[] = {
        "{\"instances\":[{\"id\":\"a\\\"b\",\"a\":1,\"bb\":2,\"c\":3}]}", /* an escaped string */
        "{\"instances\":[{\"id\":[1],\"a\":1,\"bb\":2,\"c\":3}]}",           /* a list */
        "{\"instances\":[{\"id\":{},\"a\":1,\"bb\":2,\"c\":3}]}",            /* an object */
        "{\"instances\":[{\"id\":\"x\",\"a\":1,\"bb\":2}]}",                 /* a column missing */
        "{\"instances\":[{\"id\":tru,\"a\":1,\"bb\":2,\"c\":3}]}",           /* not JSON */
    };
    int still = 0;
    for (size_t i = 0; i < sizeof still_other / sizeof *still_other; i++)
        still += tz_rows_parse(ix, still_other[i], strlen(still_other[i]), out, 4, ex6, 6, &nx) == TZ_ROWS_OTHER;
    is_int(still, (long long)(sizeof still_other / sizeof *still_other),
           "escaped, nested or bad extras and missing columns still go to the general path");

    const char *dup[] = {"a", "a"};
    ok(index_of(2, dup) == NULL, "an index refuses repeated names");
    tz_rows_index_free(ix);
    is_int((long long)tz_rows_min_bytes(3), 16, "a 3-column row takes at least 16 bytes");
    return tap_done();
}
