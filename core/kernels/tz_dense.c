/* tz_dense.c — elementwise steps on one row (tz_dense.h). A loop in C, not
 * in Lua: the serving path calls it once per instance, and a Lua loop
 * there was an inner loop to every trace through the predict route. */
#include "kernels/tz_dense.h"

#include <math.h>
#include <stddef.h>

/* Operation op with a, b on one value. */
static inline double apply_one(int op, double v, double a, double b)
{
    switch (op) {
    case TZ_DENSE_FILL: return v != v ? a : v;
    case TZ_DENSE_AFFINE: return (v - a) / b;
    case TZ_DENSE_CLIP:
        if (v < a) v = a;
        if (v > b) v = b;
        return v;
    case TZ_DENSE_LOG1P: return v > -1 ? log(1 + v) : NAN;
    default: return NAN;
    }
}

void tz_dense_apply(double *x, int n, const int *op, const int *at, const double *a, const double *b)
{
    for (int i = 0; i < n; i++) x[at[i]] = apply_one(op[i], x[at[i]], a[i], b[i]);
}

void tz_dense_apply_columns(double *const *cols, size_t n_rows, int n, const int *op, const int *at,
                            const double *a, const double *b)
{
    for (int i = 0; i < n; i++) {
        double *col = cols[at[i]];
        for (size_t r = 0; r < n_rows; r++) col[r] = apply_one(op[i], col[r], a[i], b[i]);
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
