#include "kernels/tz_logistic.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tz_kutil.h"
#include "kernels/tz_lbfgs.h"
#include "util/tz_blob.h"
#include "util/tz_pool.h"

#define SUB 512  /* rows scored together inside a block: scores stay in cache */

struct tz_logistic_model {
    size_t p, K, kout;
    int fit_intercept, n_iter, converged;
    double C;
    double *mean, *scale;  /* p each */
    double *w;             /* kout x (p + 1), standardised space, intercept last */
    double *coef, *icpt;   /* raw-feature form: kout x p, and kout */
};

void tz_logistic_params_default(tz_logistic_params *p)
{
    p->C = 1.0;
    p->max_iter = 100;
    p->tol = 1e-4;
    p->fit_intercept = 1;
    p->n_classes = 0;
}

void tz_logistic_free(tz_logistic_model *m)
{
    if (!m) return;
    free(m->mean);
    free(m->scale);
    free(m->w);
    free(m->coef);
    free(m->icpt);
    free(m);
}

static tz_logistic_model *model_new(size_t p, size_t K)
{
    tz_logistic_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->p = p;
    m->K = K;
    m->kout = K == 2 ? 1 : K;
    m->mean = malloc(p * sizeof *m->mean);
    m->scale = malloc(p * sizeof *m->scale);
    m->w = calloc(m->kout * (p + 1), sizeof *m->w);
    m->coef = malloc(m->kout * p * sizeof *m->coef);
    m->icpt = malloc(m->kout * sizeof *m->icpt);
    if (!m->mean || !m->scale || !m->w || !m->coef || !m->icpt) {
        tz_logistic_free(m);
        return NULL;
    }
    return m;
}

/* Raw-feature coefficients from the standardised ones. */
static void derive_raw(tz_logistic_model *m)
{
    size_t p = m->p;
    for (size_t k = 0; k < m->kout; k++) {
        const double *w = m->w + k * (p + 1);
        double b = m->fit_intercept ? w[p] : 0.0;
        for (size_t j = 0; j < p; j++) {
            double c = w[j] / m->scale[j];
            m->coef[k * p + j] = c;
            b -= c * m->mean[j];
        }
        m->icpt[k] = b;
    }
}

/* ---- small vector kernels: fixed 8-lane order, so results are the same
 * whatever the compiler vectorises ----------------------------------------- */

static void axpy(double *restrict s, const double *restrict z, double a, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) s[i + u] += a * z[i + u];
    for (; i < n; i++) s[i] += a * z[i];
}

static double sum(const double *a, size_t n)
{
    double acc[8] = { 0 };
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) acc[u] += a[i + u];
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += a[i];
    return s;
}

static double sigmoid(double s)
{
    if (s >= 0) return 1.0 / (1.0 + exp(-s));
    double e = exp(s);
    return e / (1.0 + e);
}


/* Softmax over the K score columns (stride SUB) of m rows, column by column
 * so every pass is contiguous: S becomes probabilities, lse[i] gets
 * log(sum_k e^s). tot is scratch of m values. */
static void softmax_block(double *S, size_t K, size_t m, double *lse, double *tot)
{
    for (size_t i = 0; i < m; i++) lse[i] = S[i];
    for (size_t k = 1; k < K; k++) {
        const double *s = S + k * SUB;
        for (size_t i = 0; i < m; i++) lse[i] = s[i] > lse[i] ? s[i] : lse[i];
    }
    for (size_t i = 0; i < m; i++) tot[i] = 0;
    for (size_t k = 0; k < K; k++) {
        double *s = S + k * SUB;
        for (size_t i = 0; i < m; i++) {
            s[i] = exp(s[i] - lse[i]);
            tot[i] += s[i];
        }
    }
    for (size_t k = 0; k < K; k++) {
        double *s = S + k * SUB;
        for (size_t i = 0; i < m; i++) s[i] /= tot[i];
    }
    for (size_t i = 0; i < m; i++) lse[i] += log(tot[i]);
}

/* ---- objective ------------------------------------------------------------ */

typedef struct obj_ctx {
    size_t n, p, kout, n_tasks, rows_per_task, sub;
    int fit_intercept;
    double C;
    const double *Z;       /* p standardised columns of n values (column-major, ld n) */
    const int *label;
    const double *weight;
    const double *W;       /* the point being evaluated: kout x (p + 1) */
    double *part;          /* n_tasks x (1 + kout (p + 1)): loss, gradient */
    double *scratch;       /* threads x (kout + 2) x SUB */
} obj_ctx;

/* Scores, loss and residuals for one task's rows, in sub-blocks small
 * enough that each BLAS call stays single-threaded inside OpenBLAS (the
 * pool already runs one task per core). */
static void obj_task(void *ctx, size_t task, int worker)
{
    obj_ctx *c = ctx;
    size_t p = c->p, K = c->kout, P1 = p + 1, n = c->n;
    size_t lo = task * c->rows_per_task, hi = lo + c->rows_per_task < n ? lo + c->rows_per_task : n;
    double *out = c->part + task * (1 + K * P1), *g = out + 1;
    double *S = c->scratch + (size_t)worker * (K + 2) * SUB, *lse = S + K * SUB, *tot = lse + SUB;
    double loss = 0;
    memset(out, 0, (1 + K * P1) * sizeof *out);
    for (size_t r0 = lo; r0 < hi; r0 += c->sub) {
        size_t m = hi - r0 < c->sub ? hi - r0 : c->sub;
        const double *Zb = c->Z + r0;
        for (size_t k = 0; k < K; k++) {
            double *s = S + k * SUB, b = c->fit_intercept ? c->W[k * P1 + p] : 0.0;
            for (size_t i = 0; i < m; i++) s[i] = b;
        }
        if (K == 1)
            cblas_dgemv(CblasColMajor, CblasNoTrans, (int)m, (int)p, 1.0, Zb, (int)n, c->W, 1, 1.0, S, 1);
        else
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)K, (int)p, 1.0, Zb, (int)n,
                        c->W, (int)P1, 1.0, S, SUB);
        /* Loss, and the residuals w (p - y) in place of the scores. */
        const double *wt = c->weight ? c->weight + r0 : NULL;
        const int *lab = c->label + r0;
        if (K == 1) {
            for (size_t i = 0; i < m; i++) {
                /* One exp serves both: e = e^-|s|, log(1 + e^s) =
                 * max(s, 0) + log1p(e), sigmoid(s) = 1/(1+e) or e/(1+e). */
                double w = wt ? wt[i] : 1.0, s = S[i], e = exp(-fabs(s));
                double sp = (s > 0 ? s : 0.0) + log1p(e), pr = (s >= 0 ? 1.0 : e) / (1.0 + e);
                loss += w * (sp - (lab[i] ? s : 0.0));
                S[i] = w * (pr - lab[i]);
            }
        } else {
            for (size_t i = 0; i < m; i++) tot[i] = S[(size_t)lab[i] * SUB + i];
            for (size_t i = 0; i < m; i++) loss -= (wt ? wt[i] : 1.0) * tot[i];
            softmax_block(S, K, m, lse, tot);
            for (size_t i = 0; i < m; i++) loss += (wt ? wt[i] : 1.0) * lse[i];
            if (wt)
                for (size_t k = 0; k < K; k++)
                    for (size_t i = 0; i < m; i++) S[k * SUB + i] *= wt[i];
            for (size_t i = 0; i < m; i++) S[(size_t)lab[i] * SUB + i] -= wt ? wt[i] : 1.0;
        }
        if (K == 1)
            cblas_dgemv(CblasColMajor, CblasTrans, (int)m, (int)p, 1.0, Zb, (int)n, S, 1, 1.0, g, 1);
        else
            cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)p, (int)K, (int)m, 1.0, Zb, (int)n,
                        S, SUB, 1.0, g, (int)P1);
        if (c->fit_intercept)
            for (size_t k = 0; k < K; k++) g[k * P1 + p] += sum(S + k * SUB, m);
    }
    out[0] = loss;
}

static double objective(void *ud, const double *W, double *g)
{
    obj_ctx *c = ud;
    size_t p = c->p, P1 = p + 1, nv = c->kout * P1;
    c->W = W;
    tz_pool_run(c->n_tasks, obj_task, c);
    double f = 0;
    memset(g, 0, nv * sizeof *g);
    for (size_t t = 0; t < c->n_tasks; t++) {  /* block order: deterministic */
        const double *pt = c->part + t * (1 + nv);
        f += pt[0];
        for (size_t v = 0; v < nv; v++) g[v] += pt[1 + v];
    }
    double pen = 0;
    for (size_t k = 0; k < c->kout; k++)
        for (size_t j = 0; j < p; j++) {
            double w = W[k * P1 + j];
            pen += w * w;
            g[k * P1 + j] += w / c->C;
        }
    return f + 0.5 * pen / c->C;
}

/* ---- fit -------------------------------------------------------------------- */

typedef struct std_ctx {
    const tz_data *d;
    double *Z, *mean, *scale;
} std_ctx;

static void std_task(void *ctx, size_t j, int worker)
{
    std_ctx *c = ctx;
    const tz_data *d = c->d;
    const double *x = d->cols[j], *w = d->weight;
    size_t n = d->n_rows;
    double sw = 0, sx = 0, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double wi = w ? w[i] : 1.0;
        sw += wi;
        sx += wi * x[i];
    }
    double mean = sx / sw;
    for (size_t i = 0; i < n; i++) ss += (w ? w[i] : 1.0) * (x[i] - mean) * (x[i] - mean);
    double sd = sqrt(ss / sw);
    /* As scikit-learn: a (near-)constant column keeps scale 1. */
    if (!(sd >= 10 * 2.220446049250313e-16 * fmax(1.0, fabs(mean)))) sd = 1.0;
    double *z = c->Z + j * n;
    for (size_t i = 0; i < n; i++) z[i] = (x[i] - mean) / sd;
    c->mean[j] = mean;
    c->scale[j] = sd;
}

static int read_labels(const tz_data *d, int n_classes, int *label, size_t *K, tz_err *err)
{
    if (!d->y) return tz_err_set(err, TZ_EINVAL, "logistic: no label");
    double limit = n_classes ? n_classes : TZ_LOGISTIC_MAX_CLASSES;
    int mx = 0;
    for (size_t i = 0; i < d->n_rows; i++) {
        double y = d->y[i];
        if (!(y >= 0 && y < limit && y == floor(y)))
            return tz_err_set(err, TZ_EINVAL, "logistic: label at row %zu is %g, not a class index 0..%d",
                              i, y, (int)limit - 1);
        label[i] = (int)y;
        if (label[i] > mx) mx = label[i];
    }
    *K = n_classes ? (size_t)n_classes : (size_t)mx + 1;
    for (size_t i = 1; i < d->n_rows; i++)
        if (label[i] != label[0]) return 0;
    return tz_err_set(err, TZ_EINVAL, "logistic: label has a single class (%d)", d->n_rows ? label[0] : 0);
}

int tz_logistic_fit(const tz_logistic_params *params, const tz_data *data,
                    tz_logistic_model **out, tz_err *err)
{
    tz_logistic_params prm;
    if (params) prm = *params; else tz_logistic_params_default(&prm);
    if (!out) return tz_err_set(err, TZ_EINVAL, "logistic: no output model");
    if (!(prm.C > 0) || !isfinite(prm.C)) return tz_err_set(err, TZ_EINVAL, "logistic: C must be finite and > 0");
    if (prm.max_iter < 0 || !(prm.tol >= 0) || !isfinite(prm.tol))
        return tz_err_set(err, TZ_EINVAL, "logistic: max_iter and tol must be >= 0");
    if (prm.fit_intercept != 0 && prm.fit_intercept != 1)
        return tz_err_set(err, TZ_EINVAL, "logistic: fit_intercept must be 0 or 1");
    if (prm.n_classes != 0 && (prm.n_classes < 2 || prm.n_classes > TZ_LOGISTIC_MAX_CLASSES))
        return tz_err_set(err, TZ_EINVAL, "logistic: n_classes must be 0 (from the labels) or 2..%d",
                          TZ_LOGISTIC_MAX_CLASSES);
    int rc = tz_kcheck_x("logistic", data, 0, err);
    if (rc) return rc;
    size_t n = data->n_rows, p = data->n_cols, K = 0;
    if (n == 0) return tz_err_set(err, TZ_EINVAL, "logistic: no rows");
    if ((rc = tz_kcheck_weight("logistic", data, err))) return rc;
    if (n > INT_MAX || p > ((size_t)-1 / sizeof(double)) / n)  /* BLAS takes int sizes */
        return tz_err_set(err, TZ_ETOOBIG, "logistic: data too large (%zu x %zu)", n, p);

    int *label = malloc(n * sizeof *label);
    double *Z = malloc(n * p * sizeof *Z);
    tz_logistic_model *m = NULL;
    obj_ctx c = { 0 };
    if (!label || !Z) {
        rc = tz_err_set(err, TZ_ENOMEM, "logistic: out of memory for %zu x %zu values", n, p);
        goto done;
    }
    if ((rc = read_labels(data, prm.n_classes, label, &K, err))) goto done;
    if (!(m = model_new(p, K))) {
        rc = tz_err_set(err, TZ_ENOMEM, "logistic: out of memory");
        goto done;
    }
    m->fit_intercept = prm.fit_intercept;
    m->C = prm.C;
    std_ctx sc = { data, Z, m->mean, m->scale };
    tz_pool_run(p, std_task, &sc);

    /* Fixed by n alone: 256-row multiples, at least 512 rows (a pool
     * round trip costs more than scoring fewer), at most 64 tasks. */
    size_t rpt = (n + 63) / 64;
    rpt = rpt < 512 ? 512 : (rpt + 255) / 256 * 256;
    /* OpenBLAS threads a gemm above m n k = 2^18 and a gemv above
     * m n = 9216; keep each call below (a speed matter only). */
    size_t sub = m->kout == 1 ? 9000 / p : 250000 / (m->kout * p);
    sub = sub < 16 ? 16 : sub > SUB ? SUB : sub;
    c = (obj_ctx){ .n = n, .p = p, .kout = m->kout, .n_tasks = (n + rpt - 1) / rpt,
                   .rows_per_task = rpt, .sub = sub, .fit_intercept = prm.fit_intercept, .C = prm.C, .Z = Z, .label = label,
                   .weight = data->weight };
    size_t nv = m->kout * (p + 1);
    c.part = malloc(c.n_tasks * (1 + nv) * sizeof *c.part);
    c.scratch = malloc((size_t)tz_pool_threads() * (m->kout + 2) * SUB * sizeof *c.scratch);
    if (!c.part || !c.scratch) {
        rc = tz_err_set(err, TZ_ENOMEM, "logistic: out of memory");
        goto done;
    }
    tz_lbfgs_params lp;
    tz_lbfgs_params_default(&lp);
    lp.max_iter = prm.max_iter;
    lp.gtol = prm.tol;
    tz_lbfgs_result res;
    if ((rc = tz_lbfgs_minimize(nv, m->w, objective, &c, &lp, &res, err))) goto done;
    m->n_iter = res.n_iter;
    m->converged = res.status == TZ_LBFGS_GTOL || res.status == TZ_LBFGS_FTOL;
    derive_raw(m);

done:
    free(label);
    free(Z);
    free(c.part);
    free(c.scratch);
    if (rc) tz_logistic_free(m);
    else *out = m;
    return rc;
}

/* ---- predict ----------------------------------------------------------------- */

typedef struct pred_ctx {
    const tz_logistic_model *m;
    const tz_data *x;
    double *out;
    int classes;  /* write the argmax instead of probabilities */
    int nomem;
} pred_ctx;

static void predict_task(void *ctx, size_t task, int worker)
{
    pred_ctx *c = ctx;
    const tz_logistic_model *m = c->m;
    size_t p = m->p, K = m->kout, lo, hi;
    tz_kblock_range(c->x->n_rows, task, &lo, &hi);
    double *S = malloc((K + 2) * SUB * sizeof *S), *lse = S + K * SUB, *tot = lse + SUB;
    if (!S) {
        c->nomem = 1;
        return;
    }
    for (size_t r0 = lo; r0 < hi; r0 += SUB) {
        size_t n = hi - r0 < SUB ? hi - r0 : SUB;
        for (size_t k = 0; k < K; k++) {
            double *s = S + k * SUB;
            for (size_t i = 0; i < n; i++) s[i] = m->icpt[k];
            for (size_t j = 0; j < p; j++) axpy(s, c->x->cols[j] + r0, m->coef[k * p + j], n);
        }
        if (K > 1) softmax_block(S, K, n, lse, tot);
        for (size_t i = 0; i < n; i++) {
            if (K == 1) {
                double pr = sigmoid(S[i]);
                c->out[r0 + i] = c->classes ? (double)(pr > 0.5) : pr;
                continue;
            }
            if (c->classes) {
                size_t best = 0;
                for (size_t k = 1; k < K; k++)
                    if (S[k * SUB + i] > S[best * SUB + i]) best = k;
                c->out[r0 + i] = (double)best;
            } else {
                for (size_t k = 0; k < K; k++) c->out[(r0 + i) * K + k] = S[k * SUB + i];
            }
        }
    }
    free(S);
}

static int predict(const tz_logistic_model *m, const tz_data *x, double *out, int classes, tz_err *err)
{
    if (!m) return tz_err_set(err, TZ_EINVAL, "logistic: no model");
    int rc = tz_kcheck_x("logistic predict", x, m->p, err);
    if (rc) return rc;
    if (x->n_rows && !out) return tz_err_set(err, TZ_EINVAL, "logistic predict: no output array");
    pred_ctx c = { m, x, out, classes, 0 };
    tz_pool_run(tz_kblocks(x->n_rows), predict_task, &c);
    if (c.nomem) return tz_err_set(err, TZ_ENOMEM, "logistic predict: out of memory");
    return 0;
}

int tz_logistic_predict(const tz_logistic_model *m, const tz_data *x, double *out, tz_err *err)
{
    return predict(m, x, out, 0, err);
}

int tz_logistic_predict_class(const tz_logistic_model *m, const tz_data *x, double *out, tz_err *err)
{
    return predict(m, x, out, 1, err);
}

size_t tz_logistic_n_features(const tz_logistic_model *m) { return m->p; }
size_t tz_logistic_n_classes(const tz_logistic_model *m) { return m->K; }
size_t tz_logistic_n_outputs(const tz_logistic_model *m) { return m->kout; }
const double *tz_logistic_coef(const tz_logistic_model *m) { return m->coef; }
const double *tz_logistic_intercept(const tz_logistic_model *m) { return m->icpt; }
const double *tz_logistic_means(const tz_logistic_model *m) { return m->mean; }
const double *tz_logistic_scales(const tz_logistic_model *m) { return m->scale; }
int tz_logistic_n_iter(const tz_logistic_model *m) { return m->n_iter; }
int tz_logistic_converged(const tz_logistic_model *m) { return m->converged; }

/* ---- model file: blob kind 4, version 1 ---------------------------------------
 * u64 n_features | u32 n_classes | u8 fit_intercept | u8 converged |
 * u32 n_iter | f64 C | f64 mean[p] | f64 scale[p] |
 * f64 w[n_outputs x (p + 1)] (standardised space, intercept last) */

int tz_logistic_save(const tz_logistic_model *m, unsigned char **out, size_t *out_len, tz_err *err)
{
    if (!m || !out || !out_len) return tz_err_set(err, TZ_EINVAL, "logistic save: bad arguments");
    tz_blob_writer w;
    tz_blob_writer_init(&w);
    tz_blob_put_u64(&w, m->p);
    tz_blob_put_u32(&w, (uint32_t)m->K);
    tz_blob_put_u8(&w, (uint8_t)m->fit_intercept);
    tz_blob_put_u8(&w, (uint8_t)m->converged);
    tz_blob_put_u32(&w, (uint32_t)m->n_iter);
    tz_blob_put_f64(&w, m->C);
    tz_blob_put_f64s(&w, m->mean, m->p);
    tz_blob_put_f64s(&w, m->scale, m->p);
    tz_blob_put_f64s(&w, m->w, m->kout * (m->p + 1));
    return tz_blob_finish(&w, TZ_LOGISTIC_BLOB_KIND, TZ_LOGISTIC_BLOB_VERSION, out, out_len, err);
}

int tz_logistic_load(const void *data, size_t len, tz_logistic_model **out, tz_err *err)
{
    if (!out) return tz_err_set(err, TZ_EINVAL, "logistic load: no output model");
    tz_blob_reader r;
    int rc = tz_blob_open(data, len, TZ_LOGISTIC_BLOB_KIND, TZ_LOGISTIC_BLOB_VERSION, &r, NULL, err);
    if (rc) return rc;
    uint64_t p = tz_blob_get_u64(&r);
    uint32_t K = tz_blob_get_u32(&r);
    uint8_t fi = tz_blob_get_u8(&r), conv = tz_blob_get_u8(&r);
    uint32_t n_iter = tz_blob_get_u32(&r);
    double C = tz_blob_get_f64(&r);
    if (r.failed || K < 2 || K > TZ_LOGISTIC_MAX_CLASSES || fi > 1 || conv > 1 || n_iter > INT32_MAX ||
        !(C > 0) || !isfinite(C))
        return tz_err_set(err, TZ_ECORRUPT, "logistic load: bad model header");
    /* Counts against the bytes actually present before any allocation:
     * 2p values of standardisation, kout (p + 1) weights. */
    uint64_t left = tz_blob_remaining(&r) / 8, kout = K == 2 ? 1 : K;
    if (p == 0 || p >= left / 2 || kout > (left - 2 * p) / (p + 1) || 2 * p + kout * (p + 1) != left)
        return tz_err_set(err, TZ_ECORRUPT, "logistic load: feature or class count does not match the file size");
    tz_logistic_model *m = model_new((size_t)p, K);
    if (!m) return tz_err_set(err, TZ_ENOMEM, "logistic load: out of memory");
    m->fit_intercept = fi;
    m->converged = conv;
    m->n_iter = (int)n_iter;
    m->C = C;
    tz_blob_get_f64s(&r, m->mean, m->p);
    tz_blob_get_f64s(&r, m->scale, m->p);
    tz_blob_get_f64s(&r, m->w, m->kout * (m->p + 1));
    for (size_t j = 0; j < m->p && !rc; j++)
        if (!isfinite(m->mean[j]) || !(m->scale[j] > 0) || !isfinite(m->scale[j]))
            rc = tz_err_set(err, TZ_ECORRUPT, "logistic load: bad standardisation of feature %zu", j);
    for (size_t v = 0; v < m->kout * (m->p + 1) && !rc; v++)
        if (!isfinite(m->w[v]) || (!fi && v % (m->p + 1) == m->p && m->w[v] != 0))
            rc = tz_err_set(err, TZ_ECORRUPT, "logistic load: bad weight %zu", v);
    if (!rc) rc = tz_blob_close(&r, err);
    if (!rc) {
        derive_raw(m);
        for (size_t v = 0; v < m->kout * m->p && !rc; v++)
            if (!isfinite(m->coef[v]) || !isfinite(m->icpt[v / m->p]))
                rc = tz_err_set(err, TZ_ECORRUPT, "logistic load: weights overflow on raw features");
    }
    if (rc) {
        tz_logistic_free(m);
        return rc;
    }
    *out = m;
    return 0;
}
