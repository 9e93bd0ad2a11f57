/*
 * tz_dense — a pipeline's elementwise steps on one row of doubles, for the
 * serving fast path (lua/tycho/ml/dense.lua): fill_missing, standardize and
 * minmax, clip, log1p, select and drop, compiled to a flat list of
 * operations on the model's input row. Each does what the step's Lua
 * apply() does to a column, with the same arithmetic, so both paths give
 * the same doubles.
 */
#ifndef TZ_DENSE_H
#define TZ_DENSE_H

#include <stddef.h>

enum {
    TZ_DENSE_FILL = 1,    /* a NaN becomes a */
    TZ_DENSE_AFFINE = 2,  /* (v - a) / b */
    TZ_DENSE_CLIP = 3,    /* into [a, b]; NaN stays NaN */
    TZ_DENSE_LOG1P = 4,   /* log(1 + v) above -1, else NaN */
    TZ_DENSE_MISSING = 5, /* NaN: the column was dropped */
};

/* Applies the n operations in order: op[i] to x[at[i]] with a[i], b[i].
 * Every at[i] must index x (the caller built them from x's columns). */
void tz_dense_apply(double *x, int n, const int *op, const int *at, const double *a, const double *b);

/* A batch for one kernel call: row r of the n_rows parsed rows (at rows +
 * r * width) has its first p values copied to scratch (p doubles), the
 * operations applied there, and the result scattered into columns (column
 * j at cols + j * n_rows), the layout tz_data reads. The parsed rows stay
 * as the request gave them (the prediction log keeps those). */
void tz_dense_columns(const double *rows, int n_rows, int width, int p, double *scratch, double *cols,
                      int n, const int *op, const int *at, const double *a, const double *b);

/* Rows lo .. lo+n-1 of p columns (column j at src[j]) as the model's
 * input for batch scoring, on the pool's threads, a column a task: out[j]
 * is src[j] + lo itself where no operation changes the column (a fill of
 * missing values changes it only where it holds a NaN), else scratch[j]
 * holding the block with the column's operations applied in order (each
 * touches one column, so this is what tz_dense_apply gives row by row).
 * scratch[j] is n doubles for each column an operation names (NULL for
 * the others), and may be src[j] + lo itself to apply them in place. */
void tz_dense_block(const double *const *src, size_t lo, size_t n, int p, double *const *scratch,
                    const double **out, int n_ops, const int *op, const int *at, const double *a, const double *b);

#endif
