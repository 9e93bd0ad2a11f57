/*
 * tz_linear — ordinary least squares and ridge regression.
 *
 * Minimises sum_i w_i (y_i - b - x_i.coef)^2 + alpha ||coef||^2 (the
 * intercept b is never penalised; alpha = 0 is OLS; w = tz_data.weight or
 * 1). The fit centres the data, builds X'X and X'y over fixed row blocks
 * (BLAS dsyrk/dgemv, partials added in block order, so the result does not
 * depend on TYCHO_THREADS), scales the system to unit diagonal and solves it
 * by Cholesky (LAPACK dpotrf). When that system is singular or too badly
 * conditioned, it falls back to the minimum-norm least-squares solution of
 * the centred data (dgelsd), as scikit-learn's LinearRegression gives.
 *
 * Ownership: data is borrowed for the duration of a call. tz_linear_fit
 * and tz_linear_load hand back a model the caller frees with
 * tz_linear_free (NULL is fine). Accessors return pointers into the model,
 * valid until it is freed. tz_linear_save hands back a malloc'd buffer the
 * caller free()s. A model is read-only after fit, so concurrent predicts
 * are safe.
 *
 * Errors (return 0 or a negative TZ_E* code, tz_err filled):
 * TZ_EINVAL — bad params, no rows, a NaN/infinite feature ("column J ...
 * row I"), target or weight, a column count that differs from the model's,
 * or a system that cannot be solved ("features are collinear");
 * TZ_ENOMEM; TZ_ECORRUPT / TZ_EINVAL from tz_linear_load for a damaged,
 * truncated or foreign file (blob kind 3, version 1).
 */
#ifndef TZ_LINEAR_H
#define TZ_LINEAR_H

#include <stddef.h>

#include "kernels/tz_data.h"
#include "util/tz_err.h"

#define TZ_LINEAR_BLOB_KIND 3
#define TZ_LINEAR_BLOB_VERSION 1

typedef struct tz_linear_params {
    double alpha;       /* L2 strength, >= 0 (0 = ordinary least squares) */
    int fit_intercept;  /* 1: learn an unpenalised intercept; 0: it is 0 */
} tz_linear_params;

typedef struct tz_linear_model tz_linear_model;

/* alpha = 0, fit_intercept = 1. */
void tz_linear_params_default(tz_linear_params *p);

/* Fits on data->cols / data->y (data->weight optional); params NULL means
 * the defaults. *out is set only on success. */
int tz_linear_fit(const tz_linear_params *params, const tz_data *data,
                  tz_linear_model **out, tz_err *err);

/* out[i] = intercept + x_i.coef for the x->n_rows rows of x (x->y unused). */
int tz_linear_predict(const tz_linear_model *m, const tz_data *x, double *out, tz_err *err);

size_t tz_linear_n_features(const tz_linear_model *m);
const double *tz_linear_coef(const tz_linear_model *m);  /* n_features values */
double tz_linear_intercept(const tz_linear_model *m);
double tz_linear_alpha(const tz_linear_model *m);
/* Rank of the centred design: n_features unless the dgelsd fallback found
 * collinear columns. */
size_t tz_linear_rank(const tz_linear_model *m);

int tz_linear_save(const tz_linear_model *m, unsigned char **out, size_t *out_len, tz_err *err);
int tz_linear_load(const void *data, size_t len, tz_linear_model **out, tz_err *err);
void tz_linear_free(tz_linear_model *m);

#endif
