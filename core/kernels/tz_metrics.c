#include "kernels/tz_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tz_kutil.h"
#include "util/tz_pool.h"

#define EPS 1e-15  /* log-loss clipping, as sklearn */

static int check_n(const char *who, const void *a, const void *b, size_t n, tz_err *err)
{
    if (n == 0) return tz_err_set(err, TZ_EINVAL, "%s: no rows", who);
    if (!a || !b) return tz_err_set(err, TZ_EINVAL, "%s: missing input array", who);
    return 0;
}

static int check_finite(const char *who, const char *what, const double *v, size_t n, tz_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return tz_err_set(err, TZ_EINVAL, "%s: %s has a missing or infinite value at row %zu", who, what, i);
    return 0;
}

/* Every value a class index below limit; the largest one in *max. */
static int check_labels(const char *who, const char *what, const double *v, size_t n, double limit,
                        size_t *max, tz_err *err)
{
    size_t mx = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(v[i] >= 0 && v[i] < limit && v[i] == floor(v[i])))
            return tz_err_set(err, TZ_EINVAL, "%s: %s at row %zu is %g, not a class index below %.0f",
                              who, what, i, v[i], limit);
        if ((size_t)v[i] > mx) mx = (size_t)v[i];
    }
    if (max) *max = mx;
    return 0;
}

int tz_metrics_accuracy(const double *y_true, const double *y_pred, size_t n, double *out, tz_err *err)
{
    int rc;
    if ((rc = check_n("accuracy", y_true, y_pred, n, err)) || (rc = check_finite("accuracy", "y_true", y_true, n, err)) ||
        (rc = check_finite("accuracy", "y_pred", y_pred, n, err)))
        return rc;
    size_t hit = 0;
    for (size_t i = 0; i < n; i++) hit += y_true[i] == y_pred[i];
    *out = (double)hit / (double)n;
    return 0;
}

/* sklearn's _prf_divide with zero_division = 0, and F = 2PR / (P + R). */
static void prf_from_counts(double tp, double pred, double truth, tz_metrics_prf_result *r)
{
    r->precision = pred > 0 ? tp / pred : 0.0;
    r->recall = truth > 0 ? tp / truth : 0.0;
    double den = r->precision + r->recall;
    r->f1 = den > 0 ? 2 * r->precision * r->recall / den : 0.0;
}

int tz_metrics_prf(const double *y_true, const double *y_pred, size_t n, int pos_label,
                   tz_metrics_prf_result *out, tz_err *err)
{
    size_t mt = 0, mp = 0;  /* check_labels sets both; -O2 cannot see that */
    int rc;
    if ((rc = check_n("prf", y_true, y_pred, n, err)) ||
        (rc = check_labels("prf", "y_true", y_true, n, TZ_METRICS_MAX_CLASSES, &mt, err)) ||
        (rc = check_labels("prf", "y_pred", y_pred, n, TZ_METRICS_MAX_CLASSES, &mp, err)))
        return rc;
    if (pos_label >= 0) {
        size_t tp = 0, pred = 0, truth = 0;
        double pl = pos_label;
        for (size_t i = 0; i < n; i++) {
            tp += y_true[i] == pl && y_pred[i] == pl;
            pred += y_pred[i] == pl;
            truth += y_true[i] == pl;
        }
        prf_from_counts((double)tp, (double)pred, (double)truth, out);
        return 0;
    }
    if (pos_label != TZ_METRICS_MACRO)
        return tz_err_set(err, TZ_EINVAL, "prf: pos_label must be a class index or TZ_METRICS_MACRO");
    size_t K = (mt > mp ? mt : mp) + 1;
    uint64_t *c = calloc(3 * K, sizeof *c);  /* tp, predicted, true per class */
    if (!c) return tz_err_set(err, TZ_ENOMEM, "prf: out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t t = (size_t)y_true[i], p = (size_t)y_pred[i];
        c[t * 3] += t == p;
        c[p * 3 + 1]++;
        c[t * 3 + 2]++;
    }
    tz_metrics_prf_result sum = { 0, 0, 0 };
    size_t present = 0;
    for (size_t k = 0; k < K; k++) {
        if (!c[k * 3 + 1] && !c[k * 3 + 2]) continue;
        tz_metrics_prf_result r;
        prf_from_counts((double)c[k * 3], (double)c[k * 3 + 1], (double)c[k * 3 + 2], &r);
        sum.precision += r.precision;
        sum.recall += r.recall;
        sum.f1 += r.f1;
        present++;
    }
    free(c);
    out->precision = sum.precision / (double)present;
    out->recall = sum.recall / (double)present;
    out->f1 = sum.f1 / (double)present;
    return 0;
}

int tz_metrics_precision(const double *y_true, const double *y_pred, size_t n, int pos_label, double *out, tz_err *err)
{
    tz_metrics_prf_result r;
    int rc = tz_metrics_prf(y_true, y_pred, n, pos_label, &r, err);
    if (!rc) *out = r.precision;
    return rc;
}

int tz_metrics_recall(const double *y_true, const double *y_pred, size_t n, int pos_label, double *out, tz_err *err)
{
    tz_metrics_prf_result r;
    int rc = tz_metrics_prf(y_true, y_pred, n, pos_label, &r, err);
    if (!rc) *out = r.recall;
    return rc;
}

int tz_metrics_f1(const double *y_true, const double *y_pred, size_t n, int pos_label, double *out, tz_err *err)
{
    tz_metrics_prf_result r;
    int rc = tz_metrics_prf(y_true, y_pred, n, pos_label, &r, err);
    if (!rc) *out = r.f1;
    return rc;
}

int tz_metrics_confusion(const double *y_true, const double *y_pred, size_t n, size_t k,
                         uint64_t *out, tz_err *err)
{
    int rc;
    if (k == 0 || k > TZ_METRICS_MAX_CLASSES || !out)
        return tz_err_set(err, TZ_EINVAL, "confusion: k must be 1..%d and out given", TZ_METRICS_MAX_CLASSES);
    if ((rc = check_n("confusion", y_true, y_pred, n, err)) ||
        (rc = check_labels("confusion", "y_true", y_true, n, (double)k, NULL, err)) ||
        (rc = check_labels("confusion", "y_pred", y_pred, n, (double)k, NULL, err)))
        return rc;
    memset(out, 0, k * k * sizeof *out);
    for (size_t i = 0; i < n; i++) out[(size_t)y_true[i] * k + (size_t)y_pred[i]]++;
    return 0;
}

typedef struct scored {
    double s;
    int y;
} scored;

static int by_score(const void *a, const void *b)
{
    double x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x > y) - (x < y);
}

int tz_metrics_auc(const double *y_true, const double *score, size_t n, double *out, tz_err *err)
{
    int rc;
    if ((rc = check_n("auc", y_true, score, n, err)) ||
        (rc = check_labels("auc", "y_true", y_true, n, 2, NULL, err)) ||
        (rc = check_finite("auc", "score", score, n, err)))
        return rc;
    scored *v = malloc(n * sizeof *v);
    if (!v) return tz_err_set(err, TZ_ENOMEM, "auc: out of memory for %zu rows", n);
    double npos = 0;
    for (size_t i = 0; i < n; i++) {
        v[i].s = score[i];
        v[i].y = y_true[i] == 1;
        npos += v[i].y;
    }
    double nneg = (double)n - npos;
    if (npos == 0 || nneg == 0) {
        free(v);
        return tz_err_set(err, TZ_EINVAL, "auc: y_true has a single class; ROC AUC needs both");
    }
    qsort(v, n, sizeof *v, by_score);
    /* Sum of the (1-based, tie-averaged) ranks of the positives: exact in
     * doubles, every term being a half-integer. */
    double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i, pos = 0;
        while (j < n && v[j].s == v[i].s) pos += (size_t)v[j++].y;
        rank_sum += (double)pos * ((double)(i + 1 + j) / 2.0);
        i = j;
    }
    free(v);
    *out = (rank_sum - npos * (npos + 1) / 2) / (npos * nneg);
    return 0;
}

static double clip(double p) { return p < EPS ? EPS : p > 1 - EPS ? 1 - EPS : p; }

int tz_metrics_log_loss(const double *y_true, const double *p1, size_t n, double *out, tz_err *err)
{
    int rc;
    if ((rc = check_n("log_loss", y_true, p1, n, err)) ||
        (rc = check_labels("log_loss", "y_true", y_true, n, 2, NULL, err)) ||
        (rc = check_finite("log_loss", "probability", p1, n, err)))
        return rc;
    double loss = 0;
    for (size_t i = 0; i < n; i++) {
        double q1 = clip(p1[i]), q0 = 1 - q1, s = q0 + q1;
        loss -= log((y_true[i] == 1 ? q1 : q0) / s);
    }
    *out = loss / (double)n;
    return 0;
}

int tz_metrics_log_loss_multi(const double *y_true, const double *prob, size_t n, size_t k,
                              double *out, tz_err *err)
{
    int rc;
    if (k < 2 || k > TZ_METRICS_MAX_CLASSES) return tz_err_set(err, TZ_EINVAL, "log_loss: k must be 2..%d", TZ_METRICS_MAX_CLASSES);
    if ((rc = check_n("log_loss", y_true, prob, n, err)) ||
        (rc = check_labels("log_loss", "y_true", y_true, n, (double)k, NULL, err)) ||
        (rc = check_finite("log_loss", "probability", prob, n * k, err)))
        return rc;
    double loss = 0;
    for (size_t i = 0; i < n; i++) {
        const double *row = prob + i * k;
        double s = 0;
        for (size_t c = 0; c < k; c++) s += clip(row[c]);
        loss -= log(clip(row[(size_t)y_true[i]]) / s);
    }
    *out = loss / (double)n;
    return 0;
}

static int regression_check(const char *who, const double *y_true, const double *y_pred, size_t n, tz_err *err)
{
    int rc;
    if ((rc = check_n(who, y_true, y_pred, n, err)) || (rc = check_finite(who, "y_true", y_true, n, err)) ||
        (rc = check_finite(who, "y_pred", y_pred, n, err)))
        return rc;
    return 0;
}

int tz_metrics_rmse(const double *y_true, const double *y_pred, size_t n, double *out, tz_err *err)
{
    int rc = regression_check("rmse", y_true, y_pred, n, err);
    if (rc) return rc;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (y_true[i] - y_pred[i]) * (y_true[i] - y_pred[i]);
    *out = sqrt(s / (double)n);
    return 0;
}

int tz_metrics_mae(const double *y_true, const double *y_pred, size_t n, double *out, tz_err *err)
{
    int rc = regression_check("mae", y_true, y_pred, n, err);
    if (rc) return rc;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs(y_true[i] - y_pred[i]);
    *out = s / (double)n;
    return 0;
}

int tz_metrics_r2(const double *y_true, const double *y_pred, size_t n, double *out, tz_err *err)
{
    int rc = regression_check("r2", y_true, y_pred, n, err);
    if (rc) return rc;
    double mean = 0, res = 0, tot = 0;
    for (size_t i = 0; i < n; i++) mean += y_true[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) {
        res += (y_true[i] - y_pred[i]) * (y_true[i] - y_pred[i]);
        tot += (y_true[i] - mean) * (y_true[i] - mean);
    }
    *out = tot > 0 ? 1 - res / tot : res == 0 ? 1.0 : 0.0;
    return 0;
}

int tz_metrics_inertia(const tz_data *x, const double *labels, const double *centers, size_t k,
                       double *out, tz_err *err)
{
    int rc = tz_kcheck_x("inertia", x, 0, err);
    if (rc) return rc;
    if (k == 0 || !centers || !labels) return tz_err_set(err, TZ_EINVAL, "inertia: need labels and k >= 1 centres");
    if ((rc = check_n("inertia", labels, centers, x->n_rows, err)) ||
        (rc = check_labels("inertia", "label", labels, x->n_rows, (double)k, NULL, err)) ||
        (rc = check_finite("inertia", "centres", centers, k * x->n_cols, err)))
        return rc;
    size_t p = x->n_cols;
    double tot = 0;
    for (size_t i = 0; i < x->n_rows; i++) {
        const double *c = centers + (size_t)labels[i] * p;
        double d2 = 0;
        for (size_t j = 0; j < p; j++) d2 += (x->cols[j][i] - c[j]) * (x->cols[j][i] - c[j]);
        tot += d2;
    }
    *out = tot;
    return 0;
}

/* ---- silhouette ---------------------------------------------------------------- */

#define SIL_ROWS 64  /* rows per task: fixed, so the result is thread-independent */

typedef struct sil_ctx {
    size_t n, p, K;
    const double *R;       /* n x p row-major (the scored rows) */
    const int *lab;
    const size_t *count;   /* rows per label */
    double *s;             /* per-row coefficient */
    int nomem;
} sil_ctx;

static void sil_task(void *ctx, size_t t, int worker)
{
    sil_ctx *c = ctx;
    size_t lo = t * SIL_ROWS, hi = lo + SIL_ROWS < c->n ? lo + SIL_ROWS : c->n, p = c->p, K = c->K;
    double *sum = malloc(K * sizeof *sum);
    if (!sum) {
        c->nomem = 1;
        return;
    }
    for (size_t i = lo; i < hi; i++) {
        memset(sum, 0, K * sizeof *sum);
        const double *xi = c->R + i * p;
        for (size_t j = 0; j < c->n; j++) {
            const double *xj = c->R + j * p;
            double d2 = 0;
            for (size_t f = 0; f < p; f++) d2 += (xi[f] - xj[f]) * (xi[f] - xj[f]);
            sum[c->lab[j]] += sqrt(d2);
        }
        size_t own = (size_t)c->lab[i];
        if (c->count[own] < 2) {  /* a singleton scores 0 */
            c->s[i] = 0;
            continue;
        }
        double a = sum[own] / (double)(c->count[own] - 1), b = INFINITY;
        for (size_t k = 0; k < K; k++)
            if (k != own && c->count[k] && sum[k] / (double)c->count[k] < b) b = sum[k] / (double)c->count[k];
        double den = a > b ? a : b;
        c->s[i] = den > 0 ? (b - a) / den : 0.0;
    }
    free(sum);
}

int tz_metrics_silhouette(const tz_data *x, const double *labels, size_t sample_size, uint64_t seed,
                          double *out, tz_err *err)
{
    int rc = tz_kcheck_x("silhouette", x, 0, err);
    if (rc) return rc;
    size_t n = x->n_rows, p = x->n_cols, mx = 0;
    if ((rc = check_n("silhouette", labels, out, n, err)) ||
        (rc = check_labels("silhouette", "label", labels, n, TZ_METRICS_MAX_CLASSES, &mx, err)))
        return rc;
    size_t S = sample_size && sample_size < n ? sample_size : n, K = mx + 1;
    if (p > ((size_t)-1 / sizeof(double)) / S) return tz_err_set(err, TZ_ETOOBIG, "silhouette: data too large");
    size_t *idx = malloc(n * sizeof *idx), *count = calloc(K, sizeof *count);
    double *R = malloc(S * p * sizeof *R), *s = malloc(S * sizeof *s);
    int *lab = malloc(S * sizeof *lab);
    if (!idx || !count || !R || !s || !lab) {
        rc = tz_err_set(err, TZ_ENOMEM, "silhouette: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) idx[i] = i;
    if (S < n) {  /* partial Fisher-Yates: the first S of a seeded shuffle */
        tz_rng rng;
        tz_rng_seed(&rng, seed);
        for (size_t i = 0; i < S; i++) {
            size_t j = i + (size_t)tz_rng_below(&rng, n - i), tmp = idx[i];
            idx[i] = idx[j];
            idx[j] = tmp;
        }
    }
    size_t n_labels = 0;
    for (size_t i = 0; i < S; i++) {
        lab[i] = (int)labels[idx[i]];
        n_labels += count[lab[i]]++ == 0;
        for (size_t j = 0; j < p; j++) R[i * p + j] = x->cols[j][idx[i]];
    }
    if (n_labels < 2 || n_labels > S - 1) {
        rc = tz_err_set(err, TZ_EINVAL, "silhouette: %zu clusters among %zu rows; need 2 to n - 1", n_labels, S);
        goto done;
    }
    sil_ctx c = { S, p, K, R, lab, count, s, 0 };
    tz_pool_run((S + SIL_ROWS - 1) / SIL_ROWS, sil_task, &c);
    if (c.nomem) {
        rc = tz_err_set(err, TZ_ENOMEM, "silhouette: out of memory");
        goto done;
    }
    double tot = 0;
    for (size_t i = 0; i < S; i++) tot += s[i];
    *out = tot / (double)S;

done:
    free(idx);
    free(count);
    free(R);
    free(s);
    free(lab);
    return rc;
}
