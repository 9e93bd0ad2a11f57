#include "kernels/tz_linear.h"

#include <cblas.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tz_kutil.h"
#include "util/tz_blob.h"
#include "util/tz_pool.h"

struct tz_linear_model {
    size_t p, rank;
    int fit_intercept;
    double alpha, intercept;
    double *coef;
};

void tz_linear_params_default(tz_linear_params *p)
{
    p->alpha = 0;
    p->fit_intercept = 1;
}

static tz_linear_model *model_new(size_t p)
{
    tz_linear_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->coef = calloc(p, sizeof *m->coef);
    if (!m->coef) {
        free(m);
        return NULL;
    }
    m->p = p;
    return m;
}

void tz_linear_free(tz_linear_model *m)
{
    if (!m) return;
    free(m->coef);
    free(m);
}

/* ---- fit: sums over a fixed partition of the rows ---------------------- */

typedef struct fit_ctx {
    const tz_data *d;
    size_t p, n_tasks, blocks_per_task;
    const double *xmean;  /* p, then ymean; NULL in the first pass */
    double *sums;         /* pass 1: n_tasks x (p + 2): sum w x_j, sum w y, sum w */
    double *gram, *xty;   /* pass 2: n_tasks x p x p and n_tasks x p */
    int nomem;
} fit_ctx;

static void task_rows(const fit_ctx *c, size_t task, size_t *lo, size_t *hi)
{
    size_t n = c->d->n_rows, span = c->blocks_per_task * TZ_KBLOCK;
    *lo = task * span;
    *hi = *lo + span < n ? *lo + span : n;
}

static void sums_task(void *ctx, size_t task, int worker)
{
    fit_ctx *c = ctx;
    const tz_data *d = c->d;
    size_t lo, hi, p = c->p;
    task_rows(c, task, &lo, &hi);
    double *s = c->sums + task * (p + 2);
    for (size_t j = 0; j < p; j++) {
        const double *x = d->cols[j];
        double acc = 0;
        if (d->weight) for (size_t i = lo; i < hi; i++) acc += d->weight[i] * x[i];
        else for (size_t i = lo; i < hi; i++) acc += x[i];
        s[j] = acc;
    }
    double sy = 0, sw = 0;
    for (size_t i = lo; i < hi; i++) {
        double w = d->weight ? d->weight[i] : 1.0;
        sy += w * d->y[i];
        sw += w;
    }
    s[p] = sy;
    s[p + 1] = sw;
}

static void gram_task(void *ctx, size_t task, int worker)
{
    fit_ctx *c = ctx;
    const tz_data *d = c->d;
    size_t lo, hi, p = c->p;
    task_rows(c, task, &lo, &hi);
    double *g = c->gram + task * p * p, *b = c->xty + task * p;
    memset(g, 0, p * p * sizeof *g);
    memset(b, 0, p * sizeof *b);
    double *blk = malloc((TZ_KBLOCK * p + TZ_KBLOCK) * sizeof *blk);
    if (!blk) {
        c->nomem = 1;
        return;
    }
    double *r = blk + TZ_KBLOCK * p;
    for (size_t r0 = lo; r0 < hi; r0 += TZ_KBLOCK) {
        size_t rows = hi - r0 < TZ_KBLOCK ? hi - r0 : TZ_KBLOCK;
        for (size_t i = 0; i < rows; i++) {
            double sw = d->weight ? sqrt(d->weight[r0 + i]) : 1.0;
            r[i] = sw * (d->y[r0 + i] - c->xmean[p]);
        }
        for (size_t j = 0; j < p; j++) {
            const double *x = d->cols[j] + r0;
            double mj = c->xmean[j];
            if (d->weight)
                for (size_t i = 0; i < rows; i++) blk[i * p + j] = sqrt(d->weight[r0 + i]) * (x[i] - mj);
            else
                for (size_t i = 0; i < rows; i++) blk[i * p + j] = x[i] - mj;
        }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)p, (int)rows, 1.0, blk, (int)p, 1.0, g, (int)p);
        cblas_dgemv(CblasRowMajor, CblasTrans, (int)rows, (int)p, 1.0, blk, (int)p, r, 1, 1.0, b, 1);
    }
    free(blk);
}

/* Minimum-norm least squares on the centred, column-scaled data (with
 * sqrt(alpha) rows appended for ridge): u in scaled coordinates. */
static int solve_lstsq(const tz_data *d, size_t p, const double *mean, const double *scale,
                       double alpha, double *u, size_t *rank, tz_err *err)
{
    size_t n = d->n_rows, rows = n + (alpha > 0 ? p : 0);
    if (rows > INT_MAX / (p + 1))
        return tz_err_set(err, TZ_EINVAL, "linear: features are collinear and the data is too large for the least-squares fallback");
    size_t ldb = rows > p ? rows : p;
    double *a = calloc(rows * p + ldb + p, sizeof *a);
    if (!a) return tz_err_set(err, TZ_ENOMEM, "linear: out of memory");
    double *b = a + rows * p, *s = b + ldb;
    for (size_t j = 0; j < p; j++) {
        const double *x = d->cols[j];
        double *col = a + j * rows;
        for (size_t i = 0; i < n; i++)
            col[i] = (d->weight ? sqrt(d->weight[i]) : 1.0) * (x[i] - mean[j]) / scale[j];
        if (alpha > 0) col[n + j] = sqrt(alpha) / scale[j];
    }
    for (size_t i = 0; i < n; i++) b[i] = (d->weight ? sqrt(d->weight[i]) : 1.0) * (d->y[i] - mean[p]);
    int im = (int)rows, in = (int)p, one = 1, ild = (int)rows, ildb = (int)ldb, rk = 0, info = 0, lwork = -1;
    double rcond = DBL_EPSILON * (double)(rows > p ? rows : p), wq = 0;
    int iwq = 0;
    dgelsd_(&im, &in, &one, a, &ild, b, &ildb, s, &rcond, &rk, &wq, &lwork, &iwq, &info);
    lwork = (int)wq + 1;
    double *work = malloc((size_t)lwork * sizeof *work);
    int *iwork = malloc((size_t)(iwq > 1 ? iwq : 1) * sizeof *iwork);
    if (!work || !iwork || info != 0) {
        free(work);
        free(iwork);
        free(a);
        return tz_err_set(err, info ? TZ_EINVAL : TZ_ENOMEM, "linear: least-squares workspace query failed");
    }
    dgelsd_(&im, &in, &one, a, &ild, b, &ildb, s, &rcond, &rk, work, &lwork, iwork, &info);
    free(work);
    free(iwork);
    int ok = info == 0;
    for (size_t j = 0; ok && j < p; j++) ok = isfinite(b[j]);
    if (ok) memcpy(u, b, p * sizeof *u);
    free(a);
    if (!ok) return tz_err_set(err, TZ_EINVAL, "linear: features are collinear (least squares did not converge)");
    *rank = (size_t)rk;
    return 0;
}

int tz_linear_fit(const tz_linear_params *params, const tz_data *data,
                  tz_linear_model **out, tz_err *err)
{
    tz_linear_params prm;
    if (params) prm = *params; else tz_linear_params_default(&prm);
    if (!out) return tz_err_set(err, TZ_EINVAL, "linear: no output model");
    if (!(prm.alpha >= 0) || !isfinite(prm.alpha))
        return tz_err_set(err, TZ_EINVAL, "linear: alpha must be finite and >= 0");
    if (prm.fit_intercept != 0 && prm.fit_intercept != 1)
        return tz_err_set(err, TZ_EINVAL, "linear: fit_intercept must be 0 or 1");
    int rc = tz_kcheck_x("linear", data, 0, err);
    if (rc) return rc;
    if (data->n_rows == 0) return tz_err_set(err, TZ_EINVAL, "linear: no rows");
    if (!data->y) return tz_err_set(err, TZ_EINVAL, "linear: no target");
    for (size_t i = 0; i < data->n_rows; i++)
        if (!isfinite(data->y[i]))
            return tz_err_set(err, TZ_EINVAL, "linear: target has a missing or infinite value at row %zu", i);
    if ((rc = tz_kcheck_weight("linear", data, err))) return rc;
    size_t p = data->n_cols, n = data->n_rows;
    if (p > 46340) return tz_err_set(err, TZ_ETOOBIG, "linear: %zu features is too many", p);

    /* A fixed partition: at most 64 tasks, and their p x p partials within
     * about 128 MiB. */
    size_t nblocks = tz_kblocks(n), cap = ((size_t)1 << 24) / (p * p + p + 2);
    if (cap < 1) cap = 1;
    if (cap > 64) cap = 64;
    fit_ctx c = { .d = data, .p = p };
    c.blocks_per_task = (nblocks + cap - 1) / cap;
    c.n_tasks = (nblocks + c.blocks_per_task - 1) / c.blocks_per_task;

    double *mean = calloc(p + 1, sizeof *mean);
    double *scale = malloc(p * sizeof *scale);
    double *a = malloc(p * p * sizeof *a);
    double *u = malloc(p * sizeof *u);
    double *work = malloc(3 * p * sizeof *work);
    int *iwork = malloc(p * sizeof *iwork);
    c.sums = malloc(c.n_tasks * (p + 2) * sizeof *c.sums);
    c.gram = malloc(c.n_tasks * p * p * sizeof *c.gram);
    c.xty = malloc(c.n_tasks * p * sizeof *c.xty);
    tz_linear_model *m = model_new(p);
    if (!mean || !scale || !a || !u || !work || !iwork || !c.sums || !c.gram || !c.xty || !m) {
        rc = tz_err_set(err, TZ_ENOMEM, "linear: out of memory for %zu features", p);
        goto done;
    }
    if (prm.fit_intercept) {
        tz_pool_run(c.n_tasks, sums_task, &c);
        double sw = 0;
        for (size_t t = 0; t < c.n_tasks; t++) {
            const double *s = c.sums + t * (p + 2);
            for (size_t j = 0; j <= p; j++) mean[j] += s[j];
            sw += s[p + 1];
        }
        for (size_t j = 0; j <= p; j++) mean[j] /= sw;
    }
    c.xmean = mean;
    tz_pool_run(c.n_tasks, gram_task, &c);
    if (c.nomem) {
        rc = tz_err_set(err, TZ_ENOMEM, "linear: out of memory for the row blocks");
        goto done;
    }
    double *g = c.gram, *b = c.xty;  /* task 0's partial collects the sum */
    for (size_t t = 1; t < c.n_tasks; t++) {
        const double *gt = c.gram + t * p * p, *bt = c.xty + t * p;
        for (size_t j = 0; j < p; j++) {
            for (size_t k = j; k < p; k++) g[j * p + k] += gt[j * p + k];
            b[j] += bt[j];
        }
    }
    /* Unit-diagonal scaling: the solution is unchanged, the conditioning
     * is the correlation matrix's rather than the raw features'. */
    for (size_t j = 0; j < p; j++) scale[j] = g[j * p + j] > 0 ? sqrt(g[j * p + j]) : 1.0;
    for (size_t j = 0; j < p; j++) {
        for (size_t k = j; k < p; k++) {
            double v = g[j * p + k] / (scale[j] * scale[k]);
            a[j * p + k] = a[k * p + j] = v;
        }
        a[j * p + j] += prm.alpha / (scale[j] * scale[j]);
        u[j] = b[j] / scale[j];
    }
    int ip = (int)p, one = 1, info = 0;
    double anorm = dlansy_("1", "U", &ip, a, &ip, work, 1, 1), rcond = 0;
    dpotrf_("U", &ip, a, &ip, &info, 1);
    if (info == 0) dpocon_("U", &ip, a, &ip, &anorm, &rcond, work, iwork, &info, 1);
    m->rank = p;
    if (info == 0 && rcond > 1e-10) {
        dpotrs_("U", &ip, &one, a, &ip, u, &ip, &info, 1);
    } else {
        rc = solve_lstsq(data, p, mean, scale, prm.alpha, u, &m->rank, err);
        if (rc) goto done;
    }
    m->fit_intercept = prm.fit_intercept;
    m->alpha = prm.alpha;
    double icpt = mean[p];
    for (size_t j = 0; j < p; j++) {
        m->coef[j] = u[j] / scale[j];
        icpt -= m->coef[j] * mean[j];
    }
    m->intercept = prm.fit_intercept ? icpt : 0.0;
    int finite = isfinite(m->intercept);
    for (size_t j = 0; j < p; j++) finite &= isfinite(m->coef[j]) != 0;
    if (!finite) rc = tz_err_set(err, TZ_EINVAL, "linear: features are collinear (solution is not finite)");

done:
    free(mean);
    free(scale);
    free(a);
    free(u);
    free(work);
    free(iwork);
    free(c.sums);
    free(c.gram);
    free(c.xty);
    if (rc) tz_linear_free(m);
    else *out = m;
    return rc;
}

/* ---- predict ------------------------------------------------------------ */

typedef struct pred_ctx {
    const tz_linear_model *m;
    const tz_data *x;
    double *out;
} pred_ctx;

static void predict_task(void *ctx, size_t task, int worker)
{
    pred_ctx *c = ctx;
    size_t lo, hi;
    tz_kblock_range(c->x->n_rows, task, &lo, &hi);
    double *o = c->out;
    for (size_t i = lo; i < hi; i++) o[i] = c->m->intercept;
    for (size_t j = 0; j < c->m->p; j++) {
        const double *x = c->x->cols[j];
        double w = c->m->coef[j];
        for (size_t i = lo; i < hi; i++) o[i] += w * x[i];
    }
}

int tz_linear_predict(const tz_linear_model *m, const tz_data *x, double *out, tz_err *err)
{
    if (!m) return tz_err_set(err, TZ_EINVAL, "linear: no model");
    int rc = tz_kcheck_x("linear predict", x, m->p, err);
    if (rc) return rc;
    if (x->n_rows && !out) return tz_err_set(err, TZ_EINVAL, "linear predict: no output array");
    pred_ctx c = { m, x, out };
    tz_pool_run(tz_kblocks(x->n_rows), predict_task, &c);
    return 0;
}

size_t tz_linear_n_features(const tz_linear_model *m) { return m->p; }
const double *tz_linear_coef(const tz_linear_model *m) { return m->coef; }
double tz_linear_intercept(const tz_linear_model *m) { return m->intercept; }
double tz_linear_alpha(const tz_linear_model *m) { return m->alpha; }
size_t tz_linear_rank(const tz_linear_model *m) { return m->rank; }

/* ---- model file: blob kind 3, version 1 ----------------------------------
 * u64 n_features | u8 fit_intercept | u64 rank | f64 alpha | f64 intercept |
 * f64 coef[n_features] */

int tz_linear_save(const tz_linear_model *m, unsigned char **out, size_t *out_len, tz_err *err)
{
    if (!m || !out || !out_len) return tz_err_set(err, TZ_EINVAL, "linear save: bad arguments");
    tz_blob_writer w;
    tz_blob_writer_init(&w);
    tz_blob_put_u64(&w, m->p);
    tz_blob_put_u8(&w, (uint8_t)m->fit_intercept);
    tz_blob_put_u64(&w, m->rank);
    tz_blob_put_f64(&w, m->alpha);
    tz_blob_put_f64(&w, m->intercept);
    tz_blob_put_f64s(&w, m->coef, m->p);
    return tz_blob_finish(&w, TZ_LINEAR_BLOB_KIND, TZ_LINEAR_BLOB_VERSION, out, out_len, err);
}

int tz_linear_load(const void *data, size_t len, tz_linear_model **out, tz_err *err)
{
    if (!out) return tz_err_set(err, TZ_EINVAL, "linear load: no output model");
    tz_blob_reader r;
    int rc = tz_blob_open(data, len, TZ_LINEAR_BLOB_KIND, TZ_LINEAR_BLOB_VERSION, &r, NULL, err);
    if (rc) return rc;
    uint64_t p = tz_blob_get_u64(&r);
    uint8_t fi = tz_blob_get_u8(&r);
    uint64_t rank = tz_blob_get_u64(&r);
    double alpha = tz_blob_get_f64(&r), icpt = tz_blob_get_f64(&r);
    if (r.failed || p == 0 || p > tz_blob_remaining(&r) / 8)
        return tz_err_set(err, TZ_ECORRUPT, "linear load: bad feature count");
    if (fi > 1 || rank > p || !(alpha >= 0) || !isfinite(alpha) || !isfinite(icpt) || (!fi && icpt != 0))
        return tz_err_set(err, TZ_ECORRUPT, "linear load: bad model header");
    tz_linear_model *m = model_new((size_t)p);
    if (!m) return tz_err_set(err, TZ_ENOMEM, "linear load: out of memory");
    m->fit_intercept = fi;
    m->rank = (size_t)rank;
    m->alpha = alpha;
    m->intercept = icpt;
    tz_blob_get_f64s(&r, m->coef, m->p);
    for (size_t j = 0; j < m->p && !rc; j++)
        if (!isfinite(m->coef[j])) rc = tz_err_set(err, TZ_ECORRUPT, "linear load: coefficient %zu is not finite", j);
    if (!rc) rc = tz_blob_close(&r, err);
    if (rc) {
        tz_linear_free(m);
        return rc;
    }
    *out = m;
    return 0;
}
