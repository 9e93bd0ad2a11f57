/* tz_fmt.c — shortest round-trip doubles (tz_fmt.h). Any decimal of at
 * most 15 significant digits survives a trip through a double, so when
 * "%.15g" reads back it is already the shortest text ("%g" drops trailing
 * zeros: 33.6 prints "33.6"); only the rest need 16 or 17 digits.
 *
 * Most numbers a CSV or an answer holds are short decimals (0.64, 278,
 * 3.756), and those are written without printf: v is m / 10^k for an
 * integer m below 10^15 and the least such k when dividing m by 10^k (both
 * exact doubles) gives v back, since division rounds as strtod does. Those
 * digits are what "%.15g" prints, in its fixed form (1e-4 <= |v| < 1e15),
 * and zero ("0", "-0"). */
#include "util/tz_fmt.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static size_t print(char *buf, int precision, double v)
{
    int n = snprintf(buf, TZ_FMT_DOUBLE_MAX, "%.*g", precision, v);
    return n < 0 ? 0 : (size_t)n;
}

static const double POW10[16] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                                  1e11, 1e12, 1e13, 1e14, 1e15 };

/* 10^k as integers, k = 0 .. 19. */
static const uint64_t U10[20] = { 1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
                                  100000000ull, 1000000000ull, 10000000000ull, 100000000000ull,
                                  1000000000000ull, 10000000000000ull, 100000000000000ull,
                                  1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
                                  1000000000000000000ull, 10000000000000000000ull };

/* The digits of m with a decimal point k places from the right (a leading
 * "0." and zeros when m has k digits or fewer); returns the length. The
 * length is known first, so digits go straight to their places. */
static size_t write_decimal(char *buf, int negative, uint64_t m, int k)
{
    int n = 1;
    while (n < 20 && m >= U10[n]) n++;
    char *end = buf + negative + (n > k ? n + (k > 0) : k + 2), *q = end;
    *end = '\0';
    if (negative) buf[0] = '-';
    for (int i = 0; i < k; i++, m /= 10) *--q = (char)('0' + m % 10);
    if (k) *--q = '.';
    do *--q = (char)('0' + m % 10);
    while (m /= 10);
    return (size_t)(end - buf);
}

/* v written as m / 10^k, or 0 when v is not such a short decimal. */
static size_t short_decimal(char *buf, double v)
{
    double a = fabs(v);
    if (a == 0) return write_decimal(buf, signbit(v) != 0, 0, 0);
    if (!(a >= 1e-4 && a < 1e15)) return 0;
    for (int k = 0; k < 16; k++) {
        /* rounded to an integer, ties to even, as nearbyint does but
         * without a library call: below 2^52, adding and taking away 2^52
         * leaves no fraction bits */
        double m = (a * POW10[k] + 0x1p52) - 0x1p52;
        if (m >= 1e15) return 0;
        if (m / POW10[k] == a) return write_decimal(buf, v < 0, (uint64_t)m, k);
    }
    return 0;
}

/* 10^k, exact as a long double for k <= 27 (5^27 < 2^64). */
static const long double LPOW10[28] = { 1e0L, 1e1L, 1e2L, 1e3L, 1e4L, 1e5L, 1e6L, 1e7L, 1e8L, 1e9L, 1e10L,
                                        1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L,
                                        1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L };

/* The digits of d in "%g"'s exponent form, D[.DDD]e-XX (at least two
 * exponent digits); returns the length. */
static size_t write_exponent(char *buf, int negative, uint64_t d, int e10)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + d % 10);
        d /= 10;
    } while (d);
    char *p = buf;
    if (negative) *p++ = '-';
    *p++ = digits[n - 1];
    if (n > 1) *p++ = '.';
    for (int i = n - 2; i >= 0; i--) *p++ = digits[i];
    *p++ = 'e';
    *p++ = e10 < 0 ? '-' : '+';
    int x = e10 < 0 ? -e10 : e10;
    if (x >= 100) *p++ = (char)('0' + x / 100);
    *p++ = (char)('0' + x / 10 % 10);
    *p++ = (char)('0' + x % 10);
    *p = '\0';
    return (size_t)(p - buf);
}
/* Whether the long double q lies so near the midpoint between `to` (q
 * rounded to a double) and its neighbour that the rounding of the exact
 * value it stands for cannot be trusted. */
static int near_midpoint(long double q, double to)
{
    long double diff = q - (long double)to;
    double side = diff < 0 ? to - nextafter(to, -INFINITY) : nextafter(to, INFINITY) - to;
    return fabsl(fabsl(diff) - (long double)side / 2) < (long double)side / 1024;
}

/* v in "%.Pg"'s form for the least P of 15, 16, 17 that reads back (fixed
 * from 1e-4, exponent form below: down to 1e-11, as small probabilities are),
 * from integer digits: the digits are a * 10^k rounded (one long double
 * product: within 2^-64 of exact, so the rounding is exact unless the
 * fraction is within 1/100 of a half), read back as their quotient by 10^k
 * (exact unless within 1/1024 of an ulp of a double midpoint). What cannot
 * be decided this way, or any other range, returns 0 for printf. */
static size_t long_decimal(char *buf, double v)
{
    double a = fabs(v);
    if (LDBL_MANT_DIG < 64 || !(a >= 1e-11 && a < 1e15)) return 0;
    int e10 = (int)floor(log10(a));
    for (int p = 15; p <= 17; p++) {
        int k = p - 1 - e10;
        if (k < 0 || k > 27) return 0;
        long double scaled = (long double)a * LPOW10[k];
        long double frac = scaled - floorl(scaled);
        if (fabsl(frac - 0.5L) < 0.01L) return 0;
        uint64_t d = (uint64_t)(frac < 0.5L ? floorl(scaled) : floorl(scaled) + 1);
        if (d < U10[p - 1] || d >= U10[p]) return 0; /* e10 was off by one, or d rounded up to 10^p */
        long double q = (long double)d / LPOW10[k];
        double back = (double)q;
        if (near_midpoint(q, back)) return 0;
        if (back != a) continue;
        while (d % 10 == 0 && k > 0) d /= 10, k--; /* "%g" drops trailing zeros */
        return e10 < -4 ? write_exponent(buf, v < 0, d, e10) : write_decimal(buf, v < 0, d, k);
    }
    return 0;
}

size_t tz_fmt_i64(char *buf, int64_t v)
{
    return write_decimal(buf, v < 0, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, 0);
}

/* Everything but zero, out of line: zero's path stays a few instructions. */
static __attribute__((noinline)) size_t fmt_nonzero(char *buf, double v)
{
    if (!isfinite(v)) return print(buf, 1, v);
    size_t fast = short_decimal(buf, v);
    if (!fast) fast = long_decimal(buf, v);
    if (fast) return fast;
    size_t n = print(buf, 15, v);
    for (int p = 16; p <= 17 && strtod(buf, NULL) != v; p++) n = print(buf, p, v);
    return n;
}

size_t tz_fmt_double(char *buf, double v)
{
    if (v != 0) return fmt_nonzero(buf, v);
    /* zero, the commonest cell of many files */
    char *p = buf;
    if (signbit(v)) *p++ = '-';
    *p++ = '0';
    *p = '\0';
    return (size_t)(p - buf);
}
