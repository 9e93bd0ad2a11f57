/* tz_metrics against scikit-learn 1.2.1 (accuracy_score, precision/recall/
 * f1_score, confusion_matrix, roc_auc_score, log_loss, mean_squared_error,
 * mean_absolute_error, r2_score, silhouette_score) on fixed arrays and on
 * the digits train rows. The arrays and numbers come from
 * tests/c/kernels_reference.py. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "kernel_test.h"
#include "kernels/tz_metrics.h"

static const double YB[40] = { 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0 };
static const double SCORE[40] = { 0.4, 0.5, 0.2, 0.2, 0.3, 0.9, 0.1, 0.3, 0.4, 0.4, 0.4, 0.1, 0.0, 0.6, 1.0, 0.5, 0.6, 0.5, 0.8, 0.3, 0.5, 0.3, 0.4, 0.9, 0.6, 0.8, 0.6, 0.7, 0.7, 0.5, 0.6, 0.5, 1.0, 0.9, 0.8, 0.6, 0.5, 0.1, 0.0, 0.2 };
static const double P1[40] = { 0.0, 0.67, 0.035, 0.414, 0.236, 0.409, 0.231, 0.054, 0.0, 1.0, 0.408, 0.383, 0.0, 0.073, 0.933, 0.394, 0.73, 0.804, 0.573, 0.0, 1.0, 0.489, 0.832, 1.0, 0.94, 0.689, 0.94, 1.0, 0.841, 1.0, 0.0, 0.355, 0.872, 0.775, 0.873, 0.0, 0.795, 0.239, 0.519, 0.02 };
static const double PREDB[40] = { 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0 };
static const double YM[30] = { 3.0, 0.0, 3.0, 2.0, 2.0, 2.0, 1.0, 3.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 3.0, 3.0, 3.0, 3.0, 3.0, 1.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 0.0, 2.0, 1.0 };
static const double PM[30] = { 3.0, 1.0, 3.0, 2.0, 2.0, 3.0, 1.0, 3.0, 1.0, 3.0, 2.0, 1.0, 3.0, 0.0, 1.0, 3.0, 3.0, 3.0, 2.0, 3.0, 2.0, 3.0, 2.0, 3.0, 1.0, 0.0, 2.0, 0.0, 1.0, 3.0 };
static const double PROB[120] = { 0.048, 0.44, 0.029, 0.483, 0.681, 0.002, 0.089, 0.228, 0.411, 0.023, 0.007, 0.559, 0.0, 1.0, 0.0, 0.0, 0.039, 0.087, 0.681, 0.193, 0.283, 0.007, 0.47, 0.24, 0.007, 0.315, 0.591, 0.086, 0.25, 0.25, 0.25, 0.25, 0.441, 0.325, 0.014, 0.22, 0.243, 0.451, 0.026, 0.28, 0.411, 0.301, 0.178, 0.11, 0.078, 0.221, 0.332, 0.369, 0.692, 0.038, 0.151, 0.119, 0.922, 0.003, 0.0, 0.075, 0.004, 0.409, 0.307, 0.279, 0.027, 0.148, 0.122, 0.703, 0.009, 0.116, 0.529, 0.347, 0.454, 0.05, 0.026, 0.469, 0.189, 0.408, 0.008, 0.395, 0.088, 0.214, 0.0, 0.698, 0.06, 0.301, 0.398, 0.241, 0.492, 0.305, 0.096, 0.107, 0.637, 0.0, 0.358, 0.005, 0.026, 0.153, 0.069, 0.752, 0.314, 0.681, 0.0, 0.005, 0.339, 0.052, 0.58, 0.029, 0.022, 0.407, 0.002, 0.569, 0.851, 0.033, 0.094, 0.021, 0.234, 0.001, 0.512, 0.253, 0.013, 0.877, 0.11, 0.0 };
static const double YR[40] = { 5.318, 16.001, 6.4, 13.604, 10.45, 10.423, 11.063, 4.359, 12.899, 8.467, 13.631, 9.546, 8.876, 6.126, 7.703, 11.267, 6.076, 4.028, 7.427, 12.52, 15.344, 7.968, 5.354, 8.971, 10.552, 11.734, 16.404, 10.681, 14.966, 8.611, 10.26, 8.221, 7.96, 9.21, 9.158, 8.188, 8.352, 13.29, 16.339, 8.505 };
static const double PR[40] = { 4.994, 16.526, 9.587, 13.688, 11.423, 11.967, 11.407, 5.285, 13.507, 9.5, 12.597, 9.75, 9.357, 6.593, 8.84, 11.714, 4.931, 4.619, 6.544, 11.821, 14.925, 7.857, 3.81, 10.088, 9.396, 13.304, 15.279, 11.963, 14.938, 6.895, 9.217, 9.547, 8.409, 9.131, 6.941, 9.578, 10.222, 14.978, 15.724, 8.888 };
static const double SX[90] = { 0.492, -1.527, 0.18, 1.071, 0.764, -1.111, -0.863, 0.791, 0.633, -2.254, -2.457, -0.077, -0.59, -0.298, -0.411, 0.984, 0.104, 0.268, -1.342, -3.364, 1.124, 2.143, -0.343, 0.249, 0.325, 1.675, 0.889, 0.496, 0.056, 0.06, 2.561, -0.383, 1.886, 3.766, 0.044, -0.176, 4.446, -1.462, 1.29, 3.813, -1.743, 2.069, 3.836, 1.861, 2.478, 3.121, -0.792, -0.172, 2.414, -0.422, 2.444, 2.085, 0.852, 1.768, 4.555, 0.733, -0.104, 4.762, -0.549, -1.459, 0.057, 4.156, 3.359, -0.286, 5.046, 2.389, -0.267, 4.896, 2.844, -1.066, 4.298, 1.033, 1.437, 4.298, 1.857, -0.601, 4.692, 1.263, 0.463, 3.959, 0.648, -0.558, 4.202, 0.662, -0.323, 3.34, 3.728, -1.493, 4.354, 1.596 };
static const double SLAB[30] = { 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0 };
/* scikit-learn 1.2.1 on the arrays above (log_loss with eps=1e-15: 1.2 defaults
 * to eps="auto", the float64 epsilon; Tycho clips at 1e-15) */
#define REF_ACC_B 0.75
#define REF_ACC_M 0.6
#define REF_PREC_B 0.8125
#define REF_REC_B 0.65
#define REF_F1_B 0.7222222222222223
#define REF_PREC_B0 0.7083333333333334
#define REF_F1_B0 0.7727272727272727
#define REF_PREC_M 0.6062271062271063
#define REF_REC_M 0.5638888888888889
#define REF_F1_M 0.5705476588628762
#define REF_AUC 0.9062499999999999
#define REF_AUC_P1 0.9924999999999999
#define REF_LL_B 0.22350971798455915
#define REF_LL_M 1.8394643323817919
#define REF_RMSE 1.1458282812009832
#define REF_MAE 0.9440999999999999
#define REF_R2 0.8758085467668
#define REF_SIL 0.31673860805878723

/* silhouette_score(digits train rows, their labels) */
#define REF_SIL_DIGITS 0.1623435122498656

static const uint64_t REF_CONFUSION[16] = { 2, 1, 1, 1, 0, 5, 1, 3, 1, 1, 3, 1, 0, 0, 2, 8 };

#define EXACT 1e-9

static test_dataset digits;

static unsigned char *silhouette_bytes(void *ctx, size_t *len)
{
    double *v = malloc(2 * sizeof *v);
    if (tz_metrics_silhouette(&digits.train.data, digits.train.y, 0, 0, &v[0], NULL) ||
        tz_metrics_silhouette(&digits.train.data, digits.train.y, 500, 3, &v[1], NULL)) {
        free(v);
        return NULL;
    }
    *len = 2 * sizeof *v;
    return (unsigned char *)v;
}

int main(void)
{
    int have_digits = test_dataset_load("digits", 0, &digits) == 0;
    unsigned char *child = NULL;
    size_t child_len = 0;
    int child_rc = have_digits ? kt_run_with_threads("1", silhouette_bytes, NULL, &child, &child_len) : -1;
    setenv("TYCHO_THREADS", "2", 1);

    tz_err err;
    double v = -1;
    tz_metrics_prf_result r;
    is_int(tz_metrics_accuracy(YB, PREDB, 40, &v, &err), 0, "accuracy runs");
    is_close(v, REF_ACC_B, 0, EXACT, "binary accuracy");
    tz_metrics_accuracy(YM, PM, 30, &v, &err);
    is_close(v, REF_ACC_M, 0, EXACT, "multiclass accuracy");

    is_int(tz_metrics_prf(YB, PREDB, 40, 1, &r, &err), 0, "prf runs");
    is_close(r.precision, REF_PREC_B, 0, EXACT, "binary precision");
    is_close(r.recall, REF_REC_B, 0, EXACT, "binary recall");
    is_close(r.f1, REF_F1_B, 0, EXACT, "binary F1");
    tz_metrics_precision(YB, PREDB, 40, 0, &v, &err);
    is_close(v, REF_PREC_B0, 0, EXACT, "precision, pos_label 0");
    tz_metrics_f1(YB, PREDB, 40, 0, &v, &err);
    is_close(v, REF_F1_B0, 0, EXACT, "F1, pos_label 0");
    tz_metrics_precision(YM, PM, 30, TZ_METRICS_MACRO, &v, &err);
    is_close(v, REF_PREC_M, 0, EXACT, "macro precision");
    tz_metrics_recall(YM, PM, 30, TZ_METRICS_MACRO, &v, &err);
    is_close(v, REF_REC_M, 0, EXACT, "macro recall");
    tz_metrics_f1(YM, PM, 30, TZ_METRICS_MACRO, &v, &err);
    is_close(v, REF_F1_M, 0, EXACT, "macro F1");
    double none[4] = { 0, 0, 1, 1 }, zeros[4] = { 0, 0, 0, 0 };
    tz_metrics_prf(none, zeros, 4, 1, &r, &err);
    ok(r.precision == 0 && r.recall == 0 && r.f1 == 0, "no predicted positives: 0, as zero_division");

    uint64_t cm[16];
    is_int(tz_metrics_confusion(YM, PM, 30, 4, cm, &err), 0, "confusion runs");
    ok(!memcmp(cm, REF_CONFUSION, sizeof cm), "confusion matrix matches");
    is_int(tz_metrics_confusion(YM, PM, 30, 3, cm, &err), TZ_EINVAL, "label 3 with k = 3 refused: %s", err.msg);

    is_int(tz_metrics_auc(YB, SCORE, 40, &v, &err), 0, "auc runs");
    is_close(v, REF_AUC, 0, EXACT, "ROC AUC with tied scores");
    tz_metrics_auc(YB, P1, 40, &v, &err);
    is_close(v, REF_AUC_P1, 0, EXACT, "ROC AUC of probabilities");
    double neg[40], flat[40];
    for (int i = 0; i < 40; i++) {
        neg[i] = -SCORE[i];
        flat[i] = 0.5;
    }
    tz_metrics_auc(YB, neg, 40, &v, &err);
    is_close(v, 1 - REF_AUC, 0, EXACT, "reversed scores: 1 - AUC");
    tz_metrics_auc(YB, flat, 40, &v, &err);
    is_close(v, 0.5, 0, EXACT, "constant scores: 0.5");
    is_int(tz_metrics_auc(zeros, SCORE, 4, &v, &err), TZ_EINVAL, "single class refused: %s", err.msg);
    is_int(tz_metrics_auc(YM, SCORE, 30, &v, &err), TZ_EINVAL, "labels beyond 0/1 refused: %s", err.msg);

    is_int(tz_metrics_log_loss(YB, P1, 40, &v, &err), 0, "log loss runs");
    is_close(v, REF_LL_B, 0, EXACT, "binary log loss (with 0 and 1 probabilities clipped)");
    tz_metrics_log_loss_multi(YM, PROB, 30, 4, &v, &err);
    is_close(v, REF_LL_M, 0, EXACT, "multiclass log loss (clipped, rows renormalised)");
    is_int(tz_metrics_log_loss_multi(YM, PROB, 30, 3, &v, &err), TZ_EINVAL, "label beyond k refused: %s", err.msg);

    tz_metrics_rmse(YR, PR, 40, &v, &err);
    is_close(v, REF_RMSE, 0, EXACT, "RMSE");
    tz_metrics_mae(YR, PR, 40, &v, &err);
    is_close(v, REF_MAE, 0, EXACT, "MAE");
    tz_metrics_r2(YR, PR, 40, &v, &err);
    is_close(v, REF_R2, 0, EXACT, "R^2");
    double c3[3] = { 2, 2, 2 }, c3b[3] = { 2, 2, 3 };
    tz_metrics_r2(c3, c3, 3, &v, &err);
    ok(v == 1.0, "R^2 of a constant target predicted exactly: 1");
    tz_metrics_r2(c3, c3b, 3, &v, &err);
    ok(v == 0.0, "R^2 of a constant target missed: 0");
    double bad[3] = { 1, NAN, 2 };
    is_int(tz_metrics_rmse(c3, bad, 3, &v, &err), TZ_EINVAL, "NaN prediction refused: %s", err.msg);
    ok(strstr(err.msg, "row 1") != NULL, "message names row 1");
    is_int(tz_metrics_mae(c3, c3, 0, &v, &err), TZ_EINVAL, "no rows refused");

    /* Clustering metrics on the fixed 30 x 3 points. */
    double cx[3][30];
    const double *ccols[3] = { cx[0], cx[1], cx[2] };
    for (int i = 0; i < 30; i++)
        for (int j = 0; j < 3; j++) cx[j][i] = SX[i * 3 + j];
    tz_data pts = { 30, 3, ccols, NULL, NULL };
    is_int(tz_metrics_silhouette(&pts, SLAB, 0, 0, &v, &err), 0, "silhouette runs");
    is_close(v, REF_SIL, 0, EXACT, "silhouette");
    double centers[9] = { 0 }, cnt[3] = { 0 }, want = 0;
    for (int i = 0; i < 30; i++) {
        for (int j = 0; j < 3; j++) centers[(int)SLAB[i] * 3 + j] += SX[i * 3 + j];
        cnt[(int)SLAB[i]]++;
    }
    for (int c = 0; c < 9; c++) centers[c] /= cnt[c / 3];
    for (int i = 0; i < 30; i++)
        for (int j = 0; j < 3; j++) want += pow(SX[i * 3 + j] - centers[(int)SLAB[i] * 3 + j], 2);
    is_int(tz_metrics_inertia(&pts, SLAB, centers, 3, &v, &err), 0, "inertia runs");
    is_close(v, want, 1e-12, 0, "inertia");
    is_int(tz_metrics_inertia(&pts, SLAB, centers, 2, &v, &err), TZ_EINVAL, "label beyond k refused: %s", err.msg);
    double one[30];
    for (int i = 0; i < 30; i++) one[i] = 0;
    is_int(tz_metrics_silhouette(&pts, one, 0, 0, &v, &err), TZ_EINVAL, "one cluster refused: %s", err.msg);
    cx[1][7] = NAN;
    is_int(tz_metrics_silhouette(&pts, SLAB, 0, 0, &v, &err), TZ_EINVAL, "NaN refused: %s", err.msg);
    ok(strstr(err.msg, "column 1") != NULL, "message names column 1");

    if (have_digits) {
        double full = -1, s1 = -1, s2 = -2;
        is_int(tz_metrics_silhouette(&digits.train.data, digits.train.y, 0, 0, &full, &err), 0, "digits silhouette runs");
        is_close(full, REF_SIL_DIGITS, 0, EXACT, "digits silhouette (1437 rows, exact)");
        tz_metrics_silhouette(&digits.train.data, digits.train.y, 500, 3, &s1, &err);
        tz_metrics_silhouette(&digits.train.data, digits.train.y, 500, 3, &s2, &err);
        ok(s1 == s2 && fabs(s1 - full) < 0.03, "sampled silhouette: reproducible, near the full value (%.4f)", s1);
        double both[2] = { full, s1 };
        ok(child_rc == 0 && child_len == sizeof both && !memcmp(child, both, sizeof both),
           "silhouette identical with TYCHO_THREADS=1 and 2");
        free(child);
        test_dataset_free(&digits);
    }
    return tap_done();
}
