/*
 * tz_logistic — L2-regularised logistic regression, binary and multinomial
 * (softmax), fitted by L-BFGS (tz_lbfgs).
 *
 * Minimises, like scikit-learn's LogisticRegression(solver="lbfgs"),
 *     sum_i w_i logloss_i + 1/(2C) ||W||^2
 * (intercepts not penalised; w = tz_data.weight or 1). Features are
 * standardised internally (weighted mean and population standard deviation,
 * stored in the model; a constant column gets scale 1), so the fit equals
 * StandardScaler + LogisticRegression and callers pass raw columns. Labels
 * are class indices 0..K-1 stored as doubles. K = 2 gives one weight vector
 * and predict writes P(class 1); K > 2 gives K vectors (softmax) and predict
 * writes K probabilities per row (row-major, n x K). The loss and gradient
 * are summed over fixed row blocks in parallel (tz_pool) and reduced in
 * block order: a fit is bit-identical for any TYCHO_THREADS.
 *
 * Ownership: data is borrowed for the call. tz_logistic_fit and
 * tz_logistic_load hand back a model the caller frees with
 * tz_logistic_free (NULL is fine); accessors return pointers into it, valid
 * until it is freed. tz_logistic_save hands back a malloc'd buffer the
 * caller free()s. A fitted model is read-only: concurrent predicts are safe.
 *
 * Errors (0 or a negative TZ_E* code, tz_err filled): TZ_EINVAL — bad
 * params, no rows, a NaN/infinite feature ("column J ... row I"), a label
 * that is not an integer in 0..K-1, a label with a single class ("label has
 * a single class"), bad weights, a column count that differs from the
 * model's; TZ_ENOMEM; TZ_ECORRUPT / TZ_EINVAL from tz_logistic_load for a
 * damaged, truncated or foreign file (blob kind 4, version 1). Stopping at
 * max_iter is not an error: tz_logistic_converged() says whether the
 * gradient or objective tolerance was met.
 */
#ifndef TZ_LOGISTIC_H
#define TZ_LOGISTIC_H

#include <stddef.h>

#include "kernels/tz_data.h"
#include "util/tz_err.h"

#define TZ_LOGISTIC_BLOB_KIND 4
#define TZ_LOGISTIC_BLOB_VERSION 1
#define TZ_LOGISTIC_MAX_CLASSES 65536

typedef struct tz_logistic_params {
    double C;           /* inverse L2 strength, > 0 (default 1.0) */
    int max_iter;       /* L-BFGS iterations, >= 0 (default 100) */
    double tol;         /* stop when max |gradient| <= tol (default 1e-4) */
    int fit_intercept;  /* 1 (default) or 0 */
    int n_classes;      /* 0 (default): max label + 1; else labels < n_classes */
} tz_logistic_params;

typedef struct tz_logistic_model tz_logistic_model;

void tz_logistic_params_default(tz_logistic_params *p);

/* Fits on data->cols / data->y (data->weight optional); params NULL means
 * the defaults. *out is set only on success. */
int tz_logistic_fit(const tz_logistic_params *params, const tz_data *data,
                    tz_logistic_model **out, tz_err *err);

/* Probabilities: n values of P(class 1) when n_classes == 2, else n x K
 * row-major. out must hold x->n_rows * tz_logistic_n_outputs(m) doubles. */
int tz_logistic_predict(const tz_logistic_model *m, const tz_data *x, double *out, tz_err *err);

/* Most probable class index per row (as a double), n values. */
int tz_logistic_predict_class(const tz_logistic_model *m, const tz_data *x, double *out, tz_err *err);

size_t tz_logistic_n_features(const tz_logistic_model *m);
size_t tz_logistic_n_classes(const tz_logistic_model *m);
/* 1 for binary models, n_classes otherwise. */
size_t tz_logistic_n_outputs(const tz_logistic_model *m);
/* Coefficients on the raw (unstandardised) features: n_outputs x
 * n_features row-major, and n_outputs intercepts. */
const double *tz_logistic_coef(const tz_logistic_model *m);
const double *tz_logistic_intercept(const tz_logistic_model *m);
/* The standardisation learnt at fit: n_features means and scales. */
const double *tz_logistic_means(const tz_logistic_model *m);
const double *tz_logistic_scales(const tz_logistic_model *m);
int tz_logistic_n_iter(const tz_logistic_model *m);
int tz_logistic_converged(const tz_logistic_model *m);

int tz_logistic_save(const tz_logistic_model *m, unsigned char **out, size_t *out_len, tz_err *err);
int tz_logistic_load(const void *data, size_t len, tz_logistic_model **out, tz_err *err);
void tz_logistic_free(tz_logistic_model *m);

#endif
