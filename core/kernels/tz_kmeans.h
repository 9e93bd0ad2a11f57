/*
 * tz_kmeans — k-means clustering (Lloyd), seeded by greedy k-means++.
 *
 * As scikit-learn's KMeans(algorithm="lloyd"): each of n_init runs seeds k
 * centres by k-means++ with 2 + floor(ln k) candidates per step (the one
 * that lowers the potential most wins), then alternates assignment and
 * centre update until the labels stop changing, the squared centre shift
 * falls to tol x (mean feature variance), or max_iter; a centre that loses
 * all its points moves to the point farthest from its own centre. The run
 * with the lowest inertia (sum of w_i ||x_i - c(x_i)||^2) is kept.
 * Assignment uses BLAS on the mean-centred data over fixed row blocks;
 * partial sums are added in block order, so a seed reproduces the model
 * to the bit for any TYCHO_THREADS. tz_data.y is ignored; tz_data.weight
 * (optional) weights points in seeding, centres and inertia.
 *
 * Ownership: data is borrowed for the call. tz_kmeans_fit and
 * tz_kmeans_load hand back a model the caller frees with tz_kmeans_free
 * (NULL is fine); accessors return pointers into it, valid until it is
 * freed. tz_kmeans_save hands back a malloc'd buffer the caller free()s.
 * A fitted model is read-only: concurrent predicts are safe.
 *
 * Errors (0 or a negative TZ_E* code, tz_err filled): TZ_EINVAL — bad
 * params, k larger than the number of rows, a NaN/infinite feature
 * ("column J ... row I"), bad weights, a column count that differs from
 * the model's; TZ_ENOMEM; TZ_ECORRUPT / TZ_EINVAL from tz_kmeans_load for a
 * damaged, truncated or foreign file (blob kind 5, version 1).
 */
#ifndef TZ_KMEANS_H
#define TZ_KMEANS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/tz_data.h"
#include "util/tz_err.h"

#define TZ_KMEANS_BLOB_KIND 5
#define TZ_KMEANS_BLOB_VERSION 1

typedef struct tz_kmeans_params {
    int k;          /* clusters, >= 1 (default 8) */
    int n_init;     /* runs from different seedings, >= 1 (default 10) */
    int max_iter;   /* Lloyd iterations per run, >= 1 (default 300) */
    double tol;     /* relative to the mean feature variance (default 1e-4) */
    uint64_t seed;  /* default 0 */
} tz_kmeans_params;

typedef struct tz_kmeans_model tz_kmeans_model;

void tz_kmeans_params_default(tz_kmeans_params *p);

/* Clusters data->cols; params NULL means the defaults. *out is set only on
 * success. */
int tz_kmeans_fit(const tz_kmeans_params *params, const tz_data *data,
                  tz_kmeans_model **out, tz_err *err);

/* Index of the nearest centre (as a double; ties go to the lower index),
 * one per row. */
int tz_kmeans_predict(const tz_kmeans_model *m, const tz_data *x, double *out, tz_err *err);

/* Euclidean distance to every centre: n x k, row-major. */
int tz_kmeans_transform(const tz_kmeans_model *m, const tz_data *x, double *out, tz_err *err);

size_t tz_kmeans_k(const tz_kmeans_model *m);
size_t tz_kmeans_n_features(const tz_kmeans_model *m);
/* k x n_features, row-major. */
const double *tz_kmeans_centroids(const tz_kmeans_model *m);
/* Of the kept run, on the training data. */
double tz_kmeans_inertia(const tz_kmeans_model *m);
int tz_kmeans_n_iter(const tz_kmeans_model *m);

int tz_kmeans_save(const tz_kmeans_model *m, unsigned char **out, size_t *out_len, tz_err *err);
int tz_kmeans_load(const void *data, size_t len, tz_kmeans_model **out, tz_err *err);
void tz_kmeans_free(tz_kmeans_model *m);

#endif
