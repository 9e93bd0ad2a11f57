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

/* The operations over whole columns (column j at cols[j], n_rows each):
 * each touches one column, so applying one after the other down the
 * columns gives what tz_dense_apply gives row by row (batch scoring). */
void tz_dense_apply_columns(double *const *cols, size_t n_rows, int n, const int *op, const int *at,
                            const double *a, const double *b);

#endif
