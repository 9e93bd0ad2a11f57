/* tz_dense.c — elementwise steps on one row (tz_dense.h). A loop in C, not
 * in Lua: the serving path calls it once per instance, and a Lua loop
 * there was an inner loop to every trace through the predict route. */
#include "kernels/tz_dense.h"

#include <math.h>
#include <stddef.h>

void tz_dense_apply(double *x, int n, const int *op, const int *at, const double *a, const double *b)
{
    for (int i = 0; i < n; i++) {
        double v = x[at[i]];
        switch (op[i]) {
        case TZ_DENSE_FILL:
            if (v != v) v = a[i];
            break;
        case TZ_DENSE_AFFINE:
            v = (v - a[i]) / b[i];
            break;
        case TZ_DENSE_CLIP:
            if (v < a[i]) v = a[i];
            if (v > b[i]) v = b[i];
            break;
        case TZ_DENSE_LOG1P:
            v = v > -1 ? log(1 + v) : NAN;
            break;
        default:
            v = NAN;
            break;
        }
        x[at[i]] = v;
    }
}

void tz_dense_columns(const double *rows, int n_rows, int width, int p, double *scratch, double *cols,
                      int n, const int *op, const int *at, const double *a, const double *b)
{
    for (int r = 0; r < n_rows; r++) {
        const double *row = rows + (size_t)r * (size_t)width;
        for (int j = 0; j < p; j++) scratch[j] = row[j];
        tz_dense_apply(scratch, n, op, at, a, b);
        for (int j = 0; j < p; j++) cols[(size_t)j * (size_t)n_rows + (size_t)r] = scratch[j];
    }
}
