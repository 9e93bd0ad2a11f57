/*
 * tz_forest — random forests (bagged trees with per-split column sampling)
 * for classification and regression, on the histogram builder of tz_tree.
 *
 * Classification trees split on the weighted Gini decrease and their leaves
 * hold class probabilities; regression trees split on variance reduction
 * and hold means. At every split a tree draws columns at random until it
 * has max_features of them that vary within the node (scikit-learn's rule).
 * Trees are grown in parallel (tz_pool_run, one task per tree); tree i
 * draws its bootstrap sample and its columns from a stream seeded by
 * (seed, i) alone, so a seed reproduces a forest to the bit whatever
 * TYCHO_THREADS says. The out-of-bag score (accuracy, or R² for
 * regression) is computed during tz_forest_fit.
 *
 * Ownership: tz_forest_fit and tz_forest_load hand out a model the caller
 * frees with tz_forest_free; a model is immutable and may be shared between
 * threads. Inputs are borrowed for the duration of a call. tz_forest_save
 * gives a malloc'd buffer the caller free()s.
 * Errors: 0 or a negative TZ_E* code with `err` (may be NULL) filled:
 * TZ_EINVAL (bad parameters or data; the message names them), TZ_ENOMEM,
 * and for tz_forest_load TZ_ECORRUPT or TZ_EINVAL (another kind of file, a
 * newer format). Nothing prints, nothing exits.
 */
#ifndef TZ_FOREST_H
#define TZ_FOREST_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/tz_data.h"
#include "util/tz_err.h"

enum {
    TZ_FOREST_CLASSIFY = 0,  /* labels 0..K-1: K outputs, class probabilities */
    TZ_FOREST_REGRESS  = 1,  /* 1 output, the mean of the trees */
};

typedef struct tz_forest_params {
    int task;               /* TZ_FOREST_* */
    int n_classes;          /* classification: K in 2..4096 */
    int n_trees;            /* >= 1 */
    int max_depth;          /* 0 = unlimited (64 levels), else 1..64 */
    int min_samples_leaf;   /* least (bootstrap-weighted) rows in a leaf, >= 1 */
    double max_features;    /* fraction of columns per split, (0, 1]; 0 = the
                               default: sqrt(p)/p classifying, 1/3 regressing */
    int bootstrap;          /* non-zero: each tree sees a bootstrap sample */
    int max_bins;           /* 2..256; 256 means 255 bins + missing */
    uint64_t seed;
} tz_forest_params;

typedef struct tz_forest_model tz_forest_model;

/* Classification, n_classes 0 (must be set), 100 trees, unlimited depth,
 * min_samples_leaf 1, default max_features, bootstrap on, 256 bins, seed 0. */
void tz_forest_params_default(tz_forest_params *p);

/* Trains a forest. Labels (train->y) must be finite; classification wants
 * integers in 0..n_classes-1 with at least two classes present ("label has
 * a single class"). Weights (optional) finite, >= 0, positive sum; they
 * multiply the bootstrap counts. NaN features are missing values.
 * *out is set only on success. */
int tz_forest_fit(const tz_forest_params *p, const tz_data *train, tz_forest_model **out, tz_err *err);

/* out: x->n_rows × tz_forest_n_outputs(m) doubles, row-major: class
 * probabilities averaged over the trees, or the mean prediction. x must
 * have tz_forest_n_features(m) columns (TZ_EINVAL naming both counts). */
int tz_forest_predict(const tz_forest_model *m, const tz_data *x, double *out, tz_err *err);

int tz_forest_n_outputs(const tz_forest_model *m);   /* K, or 1 */
int tz_forest_n_features(const tz_forest_model *m);
int tz_forest_n_trees(const tz_forest_model *m);
int tz_forest_task(const tz_forest_model *m);
/* Tree i of tz_forest_n_trees(m) (leaves hold n_outputs values), or NULL
 * when i is out of range. Owned by the model. */
struct tz_tree;
const struct tz_tree *tz_forest_tree(const tz_forest_model *m, int i);

/* Out-of-bag accuracy (classification) or R² (regression) over the rows
 * that some tree left out; NaN without bootstrap or when no row was left
 * out. */
double tz_forest_oob_score(const tz_forest_model *m);

/* gain_per_feature: tz_forest_n_features(m) doubles, set to the total gain
 * (weighted impurity decrease) of every split on each column. */
void tz_forest_importance(const tz_forest_model *m, double *gain_per_feature);

/* tz_blob kind 2, version 1; *buf is malloc'd, the caller frees it. */
int tz_forest_save(const tz_forest_model *m, unsigned char **buf, size_t *len, tz_err *err);

/* Checks every count and index before use: TZ_ECORRUPT, TZ_EINVAL (wrong
 * kind, newer version), TZ_ENOMEM. */
int tz_forest_load(const void *buf, size_t len, tz_forest_model **out, tz_err *err);

void tz_forest_free(tz_forest_model *m);  /* NULL is fine */

#endif
