/*
 * tz_gbt — gradient-boosted decision trees on histograms (XGBoost's "hist"
 * method): squared error, logistic and softmax objectives, row and column
 * subsampling, early stopping on a validation set.
 *
 * Training data comes as a tz_data (columns of doubles, NaN = missing, an
 * optional weight per row); tz_gbt_fit bins the features (tz_tree), then
 * grows `rounds` trees (softmax: one per class per round). Every number is
 * computed in a fixed order, so a seed reproduces a model to the bit
 * whatever TYCHO_THREADS says.
 *
 * Ownership: tz_gbt_fit and tz_gbt_load hand out a model the caller frees
 * with tz_gbt_free; a model is immutable and may be used by several threads
 * at once. Inputs are borrowed for the duration of a call. tz_gbt_save
 * gives a malloc'd buffer the caller free()s.
 * Errors: every fallible call returns 0 or a negative TZ_E* code and fills
 * `err` (may be NULL): TZ_EINVAL for bad parameters or data (the message
 * names the parameter, column or counts), TZ_ENOMEM, and for tz_gbt_load
 * TZ_ECORRUPT (damaged, truncated or foreign bytes) or TZ_EINVAL (another
 * kind of file, or a newer format). Nothing prints, nothing exits.
 */
#ifndef TZ_GBT_H
#define TZ_GBT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/tz_data.h"
#include "util/tz_err.h"

enum {
    TZ_GBT_SQUARED  = 0,  /* regression: 1 output, the value; loss RMSE */
    TZ_GBT_LOGISTIC = 1,  /* labels 0/1: 1 output, P(class 1); loss log-loss */
    TZ_GBT_SOFTMAX  = 2,  /* labels 0..K-1: K outputs, probabilities; loss
                             multiclass log-loss */
};

typedef struct tz_gbt_params {
    int objective;             /* TZ_GBT_* */
    int n_classes;             /* softmax: K in 2..4096; ignored otherwise */
    int rounds;                /* boosting rounds, >= 1 */
    double learning_rate;      /* eta, > 0 */
    int max_depth;             /* 1..64 */
    int max_leaves;            /* per tree; 0 = no limit (a level's best gains
                                  split first when it binds) */
    double min_child_weight;   /* least hessian sum in a child, >= 0 */
    double lambda;             /* L2 on leaf values, >= 0 */
    double gamma;              /* least gain of a split, >= 0 */
    double subsample;          /* fraction of rows per round, (0, 1] */
    double colsample;          /* fraction of columns per tree, (0, 1] */
    int max_bins;              /* 2..256; 256 means 255 bins + missing */
    uint64_t seed;
    int early_stopping_rounds; /* 0 = off; needs a validation set */
    double base_score;         /* initial prediction: the value (squared) or
                                  a probability (logistic); NaN = from the
                                  labels' mean; ignored by softmax */
} tz_gbt_params;

typedef struct tz_gbt_model tz_gbt_model;

/* Called once per round, from the thread that called tz_gbt_fit, with the
 * round number (1-based) and the losses after it (valid_loss is NaN without
 * a validation set). A non-zero return stops training; the model keeps the
 * rounds done so far (or the best ones under early stopping). */
typedef int (*tz_gbt_progress_fn)(void *ud, int round, double train_loss, double valid_loss);

/* XGBoost-like defaults: squared error, 100 rounds, eta 0.3, depth 6, no
 * leaf limit, min_child_weight 1, lambda 1, gamma 0, no subsampling, 256
 * bins, seed 0, no early stopping, base_score NaN. */
void tz_gbt_params_default(tz_gbt_params *p);

/* Trains a model. Labels (train->y) must be finite; logistic wants 0 or 1,
 * softmax an integer in 0..n_classes-1, and both need at least two classes
 * present ("label has a single class"). Weights, if given, finite and
 * >= 0 with a positive sum. valid (may be NULL) must have the same columns;
 * with early_stopping_rounds > 0, training stops once the validation loss
 * has not improved for that many rounds and the model keeps the best
 * rounds. *out is set only on success. */
int tz_gbt_fit(const tz_gbt_params *p, const tz_data *train, const tz_data *valid,
               tz_gbt_progress_fn progress, void *ud, tz_gbt_model **out, tz_err *err);

/* out: x->n_rows × tz_gbt_n_outputs(m) doubles, row-major. x must have
 * tz_gbt_n_features(m) columns (TZ_EINVAL naming both counts); NaN = missing.
 * x->y and x->weight are ignored. */
int tz_gbt_predict(const tz_gbt_model *m, const tz_data *x, double *out, tz_err *err);

int tz_gbt_n_outputs(const tz_gbt_model *m);   /* 1, or K for softmax */
int tz_gbt_n_features(const tz_gbt_model *m);
int tz_gbt_rounds(const tz_gbt_model *m);      /* rounds kept (trees per class) */
int tz_gbt_objective(const tz_gbt_model *m);

/* The model's parts, read where it is exported (ml/onnx): the base margin
 * every output starts from, and tree i of tz_gbt_rounds(m) ×
 * tz_gbt_n_outputs(m), round-major (output k of round r is r * K + k);
 * NULL when i is out of range. Owned by the model. */
double tz_gbt_base_margin(const tz_gbt_model *m);
struct tz_tree;
const struct tz_tree *tz_gbt_tree(const tz_gbt_model *m, int i);

/* gain_per_feature: tz_gbt_n_features(m) doubles, set to the total gain of
 * every split on each column. */
void tz_gbt_importance(const tz_gbt_model *m, double *gain_per_feature);

/* Model flags, kept in the file (version 2; a model without flags is
 * written as version 1, as before flags existed):
 * TZ_GBT_SUM_F32 — predictions sum the base margin and the leaf values in
 * float32, in tree order, as XGBoost does (models imported from XGBoost,
 * whose base margin and leaf values are float32 numbers): the same margins
 * as XGBoost's to the bit. The link function still runs in double.
 * tz_gbt_fit never sets a flag; a model gets them from its file. */
#define TZ_GBT_SUM_F32 1u

/* Serialises into a tz_blob (kind 1; version 1, or 2 with the flags after
 * the base margin); *buf is malloc'd, the caller frees it. TZ_ENOMEM. */
int tz_gbt_save(const tz_gbt_model *m, unsigned char **buf, size_t *len, tz_err *err);

/* Rebuilds a model from tz_gbt_save's bytes (version 1 or 2), checking every
 * count and index before use; unknown flags are TZ_ECORRUPT. TZ_ECORRUPT,
 * TZ_EINVAL (wrong kind or newer version), TZ_ENOMEM. */
int tz_gbt_load(const void *buf, size_t len, tz_gbt_model **out, tz_err *err);

void tz_gbt_free(tz_gbt_model *m);  /* NULL is fine */

#endif
