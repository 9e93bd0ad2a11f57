/* tz_fmt.c — shortest round-trip doubles (tz_fmt.h). Any decimal of at
 * most 15 significant digits survives a trip through a double, so when
 * "%.15g" reads back it is already the shortest text ("%g" drops trailing
 * zeros: 33.6 prints "33.6"); only the rest need 16 or 17 digits. */
#include "util/tz_fmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static size_t print(char *buf, int precision, double v)
{
    int n = snprintf(buf, TZ_FMT_DOUBLE_MAX, "%.*g", precision, v);
    return n < 0 ? 0 : (size_t)n;
}

size_t tz_fmt_double(char *buf, double v)
{
    if (!isfinite(v)) return print(buf, 1, v);
    size_t n = print(buf, 15, v);
    for (int p = 16; p <= 17 && strtod(buf, NULL) != v; p++) n = print(buf, p, v);
    return n;
}
