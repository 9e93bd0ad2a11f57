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

/* The digits of m with a decimal point k places from the right (a leading
 * "0." and zeros when m has k digits or fewer); returns the length. */
static size_t write_decimal(char *buf, int negative, uint64_t m, int k)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    size_t len = 0;
    if (negative) buf[len++] = '-';
    if (n <= k) {
        buf[len++] = '0';
        buf[len++] = '.';
        for (int z = n; z < k; z++) buf[len++] = '0';
    }
    for (int i = n - 1; i >= 0; i--) {
        buf[len++] = digits[i];
        if (i == k && k > 0) buf[len++] = '.';
    }
    buf[len] = '\0';
    return len;
}

/* v written as m / 10^k, or 0 when v is not such a short decimal. */
static size_t short_decimal(char *buf, double v)
{
    double a = fabs(v);
    if (a == 0) return write_decimal(buf, signbit(v) != 0, 0, 0);
    if (!(a >= 1e-4 && a < 1e15)) return 0;
    for (int k = 0; k < 16; k++) {
        double m = nearbyint(a * POW10[k]);
        if (m >= 1e15) return 0;
        if (m / POW10[k] == a) return write_decimal(buf, v < 0, (uint64_t)m, k);
    }
    return 0;
}

size_t tz_fmt_double(char *buf, double v)
{
    if (!isfinite(v)) return print(buf, 1, v);
    size_t fast = short_decimal(buf, v);
    if (fast) return fast;
    size_t n = print(buf, 15, v);
    for (int p = 16; p <= 17 && strtod(buf, NULL) != v; p++) n = print(buf, p, v);
    return n;
}
