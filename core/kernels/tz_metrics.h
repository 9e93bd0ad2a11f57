/*
 * tz_metrics — evaluation metrics over plain arrays, with scikit-learn's
 * definitions (1.2): classification (accuracy, precision / recall / F1,
 * confusion matrix, ROC AUC, log loss), regression (RMSE, MAE, R^2) and
 * clustering (inertia, silhouette).
 *
 * Class labels are class indices 0..K-1 stored as doubles (as in tz_data),
 * K at most TZ_METRICS_MAX_CLASSES. Every function returns 0 and writes its
 * result through the out-parameter, or returns TZ_EINVAL (n == 0, a NaN or
 * infinite value, a label that is not a class index, AUC with one class,
 * silhouette with fewer than 2 or more than n - 1 clusters; the message
 * names the offending index) or TZ_ENOMEM, fills tz_err and leaves *out
 * alone. Inputs are borrowed and never modified; nothing is kept after a
 * call returns. Results do not depend on TYCHO_THREADS (the silhouette's
 * parallel loop reduces in row order).
 */
#ifndef TZ_METRICS_H
#define TZ_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/tz_data.h"
#include "util/tz_err.h"

#define TZ_METRICS_MAX_CLASSES 65536
/* pos_label value asking for the macro average over the classes present in
 * y_true or y_pred. */
#define TZ_METRICS_MACRO (-1)

typedef struct tz_metrics_prf {
    double precision, recall, f1;
} tz_metrics_prf_result;

/* Fraction of rows with y_pred == y_true (any values, compared exactly). */
int tz_metrics_accuracy(const double *y_true, const double *y_pred, size_t n, double *out, tz_err *err);

/* Precision, recall and F1. pos_label >= 0: that class against all others
 * (sklearn's average="binary" when there are two classes); TZ_METRICS_MACRO:
 * unweighted mean of the per-class scores. An undefined ratio (no predicted
 * or no true positives) counts as 0, as sklearn's zero_division default. */
int tz_metrics_prf(const double *y_true, const double *y_pred, size_t n, int pos_label,
                   tz_metrics_prf_result *out, tz_err *err);
int tz_metrics_precision(const double *y_true, const double *y_pred, size_t n, int pos_label,
                         double *out, tz_err *err);
int tz_metrics_recall(const double *y_true, const double *y_pred, size_t n, int pos_label,
                      double *out, tz_err *err);
int tz_metrics_f1(const double *y_true, const double *y_pred, size_t n, int pos_label,
                  double *out, tz_err *err);

/* k x k counts, row-major: out[t * k + p] = rows with true class t and
 * predicted class p. Labels must be below k. */
int tz_metrics_confusion(const double *y_true, const double *y_pred, size_t n, size_t k,
                         uint64_t *out, tz_err *err);

/* Binary ROC AUC: y_true in {0, 1}, higher score = more positive; tied
 * scores get their average rank. O(n log n). */
int tz_metrics_auc(const double *y_true, const double *score, size_t n, double *out, tz_err *err);

/* Mean log loss, probabilities clipped to [1e-15, 1 - 1e-15] and each row
 * renormalised (sklearn's log_loss(eps=1e-15); from 1.2 its default eps is
 * the float64 epsilon, which differs only for probabilities below 1e-15). Binary: p1[i] = P(class 1), y_true in {0, 1}.
 * Multiclass: prob is n x k row-major, y_true in 0..k-1. */
int tz_metrics_log_loss(const double *y_true, const double *p1, size_t n, double *out, tz_err *err);
int tz_metrics_log_loss_multi(const double *y_true, const double *prob, size_t n, size_t k,
                              double *out, tz_err *err);

int tz_metrics_rmse(const double *y_true, const double *y_pred, size_t n, double *out, tz_err *err);
int tz_metrics_mae(const double *y_true, const double *y_pred, size_t n, double *out, tz_err *err);
/* 1 - SS_res / SS_tot; a constant y_true gives 1 if predicted exactly, else
 * 0 (sklearn's force_finite). */
int tz_metrics_r2(const double *y_true, const double *y_pred, size_t n, double *out, tz_err *err);

/* Sum over rows of the squared distance to centers[labels[i]] (centers is
 * k x x->n_cols, row-major). */
int tz_metrics_inertia(const tz_data *x, const double *labels, const double *centers, size_t k,
                       double *out, tz_err *err);

/* Mean silhouette coefficient with Euclidean distances, exact O(n^2 p) on
 * the pool. sample_size 0 uses every row; otherwise a seeded random subset
 * of that many rows (without replacement) is scored, as sklearn's
 * sample_size (not its random stream). */
int tz_metrics_silhouette(const tz_data *x, const double *labels, size_t sample_size, uint64_t seed,
                          double *out, tz_err *err);

#endif
