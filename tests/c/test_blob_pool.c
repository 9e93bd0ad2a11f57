#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "util/tz_blob.h"
#include "util/tz_pool.h"

static void square(void *ctx, size_t task, int worker)
{
    (void)worker;
    double *out = ctx;
    out[task] = (double)task * (double)task;
}

int main(void)
{
    tz_blob_writer w;
    tz_blob_writer_init(&w);
    tz_blob_put_u32(&w, 7);
    tz_blob_put_f64(&w, -2.5);
    tz_blob_put_str(&w, "abc", 3);
    unsigned char *buf;
    size_t len;
    tz_err err;
    ok(tz_blob_finish(&w, 42, 1, &buf, &len, &err) == 0, "blob encodes");

    tz_blob_reader r;
    uint32_t version;
    ok(tz_blob_open(buf, len, 42, 1, &r, &version, &err) == 0 && version == 1, "blob opens");
    is_int(tz_blob_get_u32(&r), 7, "u32 back");
    ok(tz_blob_get_f64(&r) == -2.5, "f64 back");
    size_t n;
    const char *s = tz_blob_get_str(&r, &n);
    ok(n == 3 && !memcmp(s, "abc", 3), "string back");
    is_int(tz_blob_close(&r, &err), 0, "payload fully read");

    is_int(tz_blob_open(buf, len - 1, 42, 1, &r, NULL, &err), TZ_ECORRUPT, "truncated: %s", err.msg);
    buf[30] ^= 1;
    is_int(tz_blob_open(buf, len, 42, 1, &r, NULL, &err), TZ_ECORRUPT, "flipped bit: %s", err.msg);
    buf[30] ^= 1;
    is_int(tz_blob_open(buf, len, 43, 1, &r, NULL, &err), TZ_EINVAL, "wrong kind: %s", err.msg);
    ok(strstr(err.msg, "kind") != NULL, "message names the kind");
    is_int(tz_blob_open("hello", 5, 42, 1, &r, NULL, &err), TZ_ECORRUPT, "foreign bytes: %s", err.msg);

    tz_blob_open(buf, len, 42, 1, &r, NULL, &err);
    double too_many[4];
    tz_blob_get_f64s(&r, too_many, 4);
    ok(r.failed, "reading past the end fails instead of overrunning");
    is_int(tz_blob_close(&r, &err), TZ_ECORRUPT, "overrun reported");
    free(buf);

    double out[1000];
    memset(out, 0, sizeof out);
    tz_pool_run(1000, square, out);
    int all = 1;
    for (int i = 0; i < 1000; i++) all &= out[i] == (double)i * i;
    ok(all, "pool ran every task once (%d threads)", tz_pool_threads());
    return tap_done();
}
