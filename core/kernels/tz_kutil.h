/*
 * tz_kutil — internal helpers shared by the kernel sources (input checks,
 * the fixed row blocking used with tz_pool, LAPACK prototypes). Not a
 * public API: nothing outside core/kernels includes it.
 *
 * Determinism rule used by every kernel: rows are cut into blocks of
 * TZ_KBLOCK (a function of n only, never of the thread count), each pool
 * task writes its own partial result, and partials are combined in task
 * order on the calling thread.
 */
#ifndef TZ_KUTIL_H
#define TZ_KUTIL_H

#include <math.h>
#include <stddef.h>

#include "kernels/tz_data.h"
#include "util/tz_err.h"

#define TZ_KBLOCK 4096

static inline size_t tz_kblocks(size_t n) { return (n + TZ_KBLOCK - 1) / TZ_KBLOCK; }

/* Rows [*lo, *hi) of block `task`. */
static inline void tz_kblock_range(size_t n, size_t task, size_t *lo, size_t *hi)
{
    *lo = task * TZ_KBLOCK;
    *hi = *lo + TZ_KBLOCK < n ? *lo + TZ_KBLOCK : n;
}

/* Checks the shape of the feature columns: want_cols (0 = any, but at least
 * one), no NULL column. Trees stop here: they route NaN themselves. */
static inline int tz_kcheck_shape(const char *who, const tz_data *x, size_t want_cols, tz_err *err)
{
    if (!x || (x->n_cols && !x->cols)) return tz_err_set(err, TZ_EINVAL, "%s: no data", who);
    if (want_cols && x->n_cols != want_cols)
        return tz_err_set(err, TZ_EINVAL, "%s: model has %zu features, data has %zu columns",
                          who, want_cols, x->n_cols);
    if (x->n_cols == 0) return tz_err_set(err, TZ_EINVAL, "%s: no feature columns", who);
    for (size_t j = 0; j < x->n_cols; j++)
        if (!x->cols[j] && x->n_rows) return tz_err_set(err, TZ_EINVAL, "%s: column %zu is NULL", who, j);
    return 0;
}

/* Checks shape and values of the feature columns: as tz_kcheck_shape, and
 * every value finite. TZ_EINVAL names the column and row. */
static inline int tz_kcheck_x(const char *who, const tz_data *x, size_t want_cols, tz_err *err)
{
    int rc = tz_kcheck_shape(who, x, want_cols, err);
    if (rc) return rc;
    for (size_t j = 0; j < x->n_cols; j++) {
        const double *c = x->cols[j];
        for (size_t i = 0; i < x->n_rows; i++)
            if (!isfinite(c[i]))
                return tz_err_set(err, TZ_EINVAL, "%s: column %zu has a %s value at row %zu", who, j,
                                  isnan(c[i]) ? "missing (NaN)" : "infinite", i);
    }
    return 0;
}

/* Checks the optional weights (finite, >= 0, positive total). */
static inline int tz_kcheck_weight(const char *who, const tz_data *d, tz_err *err)
{
    if (!d->weight) return 0;
    double total = 0;
    for (size_t i = 0; i < d->n_rows; i++) {
        double w = d->weight[i];
        if (!isfinite(w) || w < 0)
            return tz_err_set(err, TZ_EINVAL, "%s: weight at row %zu is negative or not finite", who, i);
        total += w;
    }
    if (!(total > 0)) return tz_err_set(err, TZ_EINVAL, "%s: weights sum to zero", who);
    return 0;
}

/* LAPACK (Fortran, LP64 as shipped by Debian's OpenBLAS); the trailing
 * size_t arguments are gfortran's hidden character lengths. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t);
extern void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *lda,
                    double *b, const int *ldb, int *info, size_t);
extern void dpocon_(const char *uplo, const int *n, const double *a, const int *lda, const double *anorm,
                    double *rcond, double *work, int *iwork, int *info, size_t);
extern double dlansy_(const char *norm, const char *uplo, const int *n, const double *a, const int *lda,
                      double *work, size_t, size_t);
extern void dgelsd_(const int *m, const int *n, const int *nrhs, double *a, const int *lda, double *b,
                    const int *ldb, double *s, const double *rcond, int *rank, double *work,
                    const int *lwork, int *iwork, int *info);

#endif
