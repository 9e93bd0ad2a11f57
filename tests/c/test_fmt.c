/* tz_fmt: shortest text that reads back exactly. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/tz_fmt.h"
#include "tap.h"

static const char *fmt(double v)
{
    static char buf[TZ_FMT_DOUBLE_MAX];
    tz_fmt_double(buf, v);
    return buf;
}

/* What tz_fmt_double wrote before short decimals skipped printf. */
static void reference(char *buf, double v)
{
    snprintf(buf, TZ_FMT_DOUBLE_MAX, "%.15g", v);
    for (int p = 16; p <= 17 && strtod(buf, NULL) != v; p++) snprintf(buf, TZ_FMT_DOUBLE_MAX, "%.*g", p, v);
}

/* 300000 doubles spread over 10^lo .. 10^(lo + decades), each third one's
 * neighbour below, each fifth negated (with sigmoids: each seventh a
 * logistic of -25 .. -5), written as printf's shortest form writes them. */
static int like_printf(uint64_t *state, double lo, double decades, int sigmoids)
{
    uint64_t x = *state;
    int same = 1;
    for (int i = 0; i < 300000 && same; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double u = (double)(x >> 11) / 9007199254740992.0, v = pow(10, lo + decades * u);
        if (i % 3 == 1) v = nextafter(v, 0);
        if (sigmoids && i % 7 == 3) v = 1 / (1 + exp(-(-25 + 20.0 * u)));
        if (i % 5 == 2) v = -v;
        char want[TZ_FMT_DOUBLE_MAX];
        reference(want, v);
        if (strcmp(fmt(v), want) != 0) {
            fprintf(stderr, "# %.17g: wrote %s, printf's shortest %s\n", v, fmt(v), want);
            same = 0;
        }
    }
    *state = x;
    return same;
}

int main(void)
{
    is_str(fmt(33.6), "33.6", "33.6 prints as written, not 33.600000000000001");
    is_str(fmt(0.1), "0.1", "0.1");
    is_str(fmt(0.1 + 0.2), "0.30000000000000004", "0.1 + 0.2 keeps the digits that tell it from 0.3");
    is_str(fmt(1e21), "1e+21", "large");
    is_str(fmt(-2.5e-8), "-2.5e-08", "small and negative");
    is_str(fmt(3), "3", "integral");
    is_str(fmt(INFINITY), "inf", "infinity");
    /* Every double of a seeded sweep reads back exactly, in at most 17 digits. */
    uint64_t x = 88172645463325252ull;
    int exact = 1;
    size_t longest = 0;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double v;
        memcpy(&v, &x, sizeof v);
        if (!isfinite(v)) continue;
        char buf[TZ_FMT_DOUBLE_MAX];
        size_t n = tz_fmt_double(buf, v);
        exact &= strtod(buf, NULL) == v && n == strlen(buf);
        if (n > longest) longest = n;
    }
    ok(exact, "200000 random doubles read back exactly");
    ok(longest < TZ_FMT_DOUBLE_MAX, "the longest text fits the buffer (%zu bytes)", longest);
    is_str(fmt(0.0064), "0.0064", "a short decimal below 0.01");
    is_str(fmt(-3.756), "-3.756", "a short negative decimal");
    is_str(fmt(0.0001), "0.0001", "the least fixed-form value");
    is_str(fmt(99999.5), "99999.5", "a half");
    is_str(fmt(-0.0), "-0", "negative zero");
    /* Short decimals of every scale write exactly what printf's shortest
     * form writes, and so do the doubles just beside them. */
    int same = 1;
    for (int i = 0; i < 300000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int k = (int)(x % 18), digits = 1 + (int)((x >> 8) % 16);
        double m = (double)((x >> 16) % (uint64_t)pow(10, digits));
        double v = m / pow(10, k) * ((x >> 60) & 1 ? -1 : 1);
        if (i % 3 == 1) v = nextafter(v, INFINITY);
        char want[TZ_FMT_DOUBLE_MAX];
        reference(want, v);
        if (strcmp(fmt(v), want) != 0) {
            fprintf(stderr, "# %.17g: wrote %s, printf's shortest %s\n", v, fmt(v), want);
            same = 0;
            break;
        }
    }
    ok(same, "300000 short decimals and their neighbours as printf's shortest form");
    /* Doubles of 16 and 17 digits across the fixed range, and each one's
     * neighbours: the same text as printf's shortest form. */
    ok(like_printf(&x, -4, 19, 0), "300000 doubles of 16 and 17 digits from 1e-4 to 1e15 as printf's shortest form");
    /* Small ones in exponent form (a confident model's probabilities), and
     * a little past the range the fast path takes. */
    ok(like_printf(&x, -12, 8, 1),
       "300000 doubles from 1e-12 to 1e-4 (and sigmoids) as printf's shortest form, exponent form included");
    is_str(fmt(1e-5), "1e-05", "a small power of ten");
    is_str(fmt(1.2345e-7), "1.2345e-07", "a small short decimal");

    static const int64_t ints[] = { 0, 7, -7, 10, 99, 100, 1234567890123LL, -1000000000000000000LL,
                                    INT64_MAX, INT64_MIN };
    int ints_same = 1;
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        char got[TZ_FMT_I64_MAX], want[32];
        size_t n = tz_fmt_i64(got, ints[i]);
        snprintf(want, sizeof want, "%lld", (long long)ints[i]);
        if (strcmp(got, want) != 0 || n != strlen(want)) {
            fprintf(stderr, "# %s: wrote %s\n", want, got);
            ints_same = 0;
        }
    }
    ok(ints_same, "integers as %%lld writes them, INT64_MIN and INT64_MAX included");
    return tap_done();
}
