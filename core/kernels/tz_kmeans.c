#include "kernels/tz_kmeans.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tz_kutil.h"
#include "util/tz_blob.h"
#include "util/tz_pool.h"

#define SUBMAX 1024  /* rows per BLAS call inside a task */
#define PSUB 256     /* rows per chunk in predict */

struct tz_kmeans_model {
    size_t k, p;
    int n_iter;
    double inertia;
    double *centers;  /* k x p */
};

void tz_kmeans_params_default(tz_kmeans_params *p)
{
    p->k = 8;
    p->n_init = 10;
    p->max_iter = 300;
    p->tol = 1e-4;
    p->seed = 0;
}

void tz_kmeans_free(tz_kmeans_model *m)
{
    if (!m) return;
    free(m->centers);
    free(m);
}

static tz_kmeans_model *model_new(size_t k, size_t p)
{
    tz_kmeans_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->centers = malloc(k * p * sizeof *m->centers);
    if (!m->centers) {
        free(m);
        return NULL;
    }
    m->k = k;
    m->p = p;
    return m;
}

/* ---- shared state of one fit -------------------------------------------- */

enum { MODE_LLOYD, MODE_LABELS, MODE_SEED_FIRST, MODE_SEED_CAND, MODE_INERTIA };

typedef struct km {
    size_t n, p, k, T;     /* T: k-means++ candidates per step */
    const double *X;       /* centred data, column-major n x p */
    const double *xx;      /* squared row norms of X */
    const double *w;       /* weights or NULL */
    size_t rpt, n_tasks, sub;
    double *D;             /* threads x sub x max(k, T) */
    int mode;
    const double *C;       /* centres (or candidates) in use: q x p */
    double *cc;            /* their squared norms */
    int *label;            /* n */
    double *lab_new;       /* n: scratch for the assignment */
    double *mind;          /* n: squared distance to the assigned centre */
    double *closest;       /* n: k-means++ distance to the nearest chosen centre */
    double *dcand;         /* T x n: the same if each candidate were added */
    double *part;          /* n_tasks x k x (p + 1): sums and weights; or seeding pots */
    size_t *changed;       /* n_tasks */
} km;

static double wt(const km *s, size_t i) { return s->w ? s->w[i] : 1.0; }

/* D (m x q, column-major) = -2 x.c for rows r0.. and the q centres in
 * use; the squared distance is that + ||x||^2 + ||c||^2. */
static void block_dot(const km *s, size_t r0, size_t m, size_t q, double *D)
{
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)q, (int)s->p, -2.0,
                s->X + r0, (int)s->n, s->C, (int)s->p, 0.0, D, (int)m);
}

/* Where d[i] + cc < bd[i]: bd[i] = d[i] + cc, bl[i] = c. Masks instead of branches
 * (GCC vector extensions: SSE2 or wider, or plain scalar code elsewhere);
 * the comparisons are the same either way. */
typedef double v2d __attribute__((vector_size(16)));
typedef long long v2l __attribute__((vector_size(16)));

static void argmin_update(const double *restrict d, double *restrict bd, double *restrict bl, double c,
                          double cc, size_t m)
{
    size_t i = 0;
    v2d cv = { c, c }, ccv = { cc, cc };
    for (; i + 2 <= m; i += 2) {
        v2d dv, bv, lv;
        memcpy(&dv, d + i, sizeof dv);
        dv += ccv;
        memcpy(&bv, bd + i, sizeof bv);
        memcpy(&lv, bl + i, sizeof lv);
        v2l lt = dv < bv;
        bv = (v2d)(((v2l)dv & lt) | ((v2l)bv & ~lt));
        lv = (v2d)(((v2l)cv & lt) | ((v2l)lv & ~lt));
        memcpy(bd + i, &bv, sizeof bv);
        memcpy(bl + i, &lv, sizeof lv);
    }
    for (; i < m; i++)
        if (d[i] + cc < bd[i]) {
            bd[i] = d[i] + cc;
            bl[i] = c;
        }
}

static void lloyd_rows(km *s, size_t t, size_t r0, size_t m, double *D)
{
    size_t k = s->k, p = s->p;
    double *bd = s->mind + r0, *bl = s->lab_new + r0;
    block_dot(s, r0, m, k, D);
    /* Column by column (contiguous); ties keep the lower centre. */
    for (size_t i = 0; i < m; i++) {
        bd[i] = D[i] + s->cc[0];
        bl[i] = 0;
    }
    for (size_t c = 1; c < k; c++) argmin_update(D + c * m, bd, bl, (double)c, s->cc[c], m);
    size_t changed = 0;
    for (size_t i = 0; i < m; i++) {
        double v = bd[i] + s->xx[r0 + i];
        bd[i] = v > 0 ? v : 0;
        int c = (int)bl[i];
        changed += s->label[r0 + i] != c;
        s->label[r0 + i] = c;
    }
    s->changed[t] += changed;
    if (s->mode != MODE_LLOYD) return;
    double *ps = s->part + t * k * (p + 1);
    const double *X = s->X + r0;
    size_t n = s->n;
    for (size_t i = 0; i < m; i++) {
        double *dst = ps + (size_t)s->label[r0 + i] * (p + 1), w = wt(s, r0 + i);
        if (s->w)
            for (size_t j = 0; j < p; j++) dst[j] += w * X[j * n + i];
        else
            for (size_t j = 0; j < p; j++) dst[j] += X[j * n + i];
        dst[p] += w;
    }
}

/* Seeding: FIRST sets closest from one centre; CAND keeps, per candidate,
 * min(closest, d) in dcand and sums its potential into part[t * T + c]. */
static void seed_rows(km *s, size_t t, size_t r0, size_t m, double *D)
{
    size_t q = s->mode == MODE_SEED_CAND ? s->T : 1;
    block_dot(s, r0, m, q, D);
    double *pot = s->part + t * s->T;
    for (size_t c = 0; c < q; c++) {
        const double *d = D + c * m;
        double *dst = s->mode == MODE_SEED_CAND ? s->dcand + c * s->n + r0 : s->closest + r0;
        double acc = 0, cc = s->cc[c];
        for (size_t i = 0; i < m; i++) {
            double v = d[i] + cc + s->xx[r0 + i];
            v = v > 0 ? v : 0;
            if (s->mode == MODE_SEED_CAND && s->closest[r0 + i] < v) v = s->closest[r0 + i];
            dst[i] = v;
            acc += wt(s, r0 + i) * v;
        }
        pot[c] += acc;
    }
}

/* Exact inertia of the current labels (no expansion, no cancellation). */
static void inertia_rows(km *s, size_t t, size_t r0, size_t m, double *D)
{
    size_t p = s->p;
    for (size_t i = 0; i < m; i++) D[i] = 0;
    for (size_t j = 0; j < p; j++) {
        const double *x = s->X + j * s->n + r0;
        for (size_t i = 0; i < m; i++) {
            double d = x[i] - s->C[(size_t)s->label[r0 + i] * p + j];
            D[i] += d * d;
        }
    }
    double acc = 0;
    for (size_t i = 0; i < m; i++) acc += wt(s, r0 + i) * D[i];
    s->part[t] += acc;
}

static void km_task(void *ctx, size_t t, int worker)
{
    km *s = ctx;
    size_t lo = t * s->rpt, hi = lo + s->rpt < s->n ? lo + s->rpt : s->n;
    double *D = s->D + (size_t)worker * s->sub * (s->k > s->T ? s->k : s->T);
    size_t k = s->k, p = s->p;
    if (s->mode == MODE_LLOYD) memset(s->part + t * k * (p + 1), 0, k * (p + 1) * sizeof *s->part);
    else if (s->mode == MODE_INERTIA) s->part[t] = 0;
    else if (s->mode != MODE_LABELS) memset(s->part + t * s->T, 0, s->T * sizeof *s->part);
    s->changed[t] = 0;
    for (size_t r0 = lo; r0 < hi; r0 += s->sub) {
        size_t m = hi - r0 < s->sub ? hi - r0 : s->sub;
        if (s->mode == MODE_LLOYD || s->mode == MODE_LABELS) lloyd_rows(s, t, r0, m, D);
        else if (s->mode == MODE_INERTIA) inertia_rows(s, t, r0, m, D);
        else seed_rows(s, t, r0, m, D);
    }
}

static void run_mode(km *s, int mode, const double *C, double *cc, size_t q)
{
    s->mode = mode;
    s->C = C;
    s->cc = cc;
    for (size_t c = 0; c < q && mode != MODE_INERTIA; c++) {
        double v = 0;
        for (size_t j = 0; j < s->p; j++) v += C[c * s->p + j] * C[c * s->p + j];
        cc[c] = v;
    }
    tz_pool_run(s->n_tasks, km_task, s);
}

/* Pot of candidate c summed over tasks in task order. */
static double pot_of(const km *s, size_t c)
{
    double v = 0;
    for (size_t t = 0; t < s->n_tasks; t++) v += s->part[t * s->T + c];
    return v;
}

static void copy_row(const km *s, size_t i, double *dst)
{
    for (size_t j = 0; j < s->p; j++) dst[j] = s->X[j * s->n + i];
}

/* Smallest i with cum[i] >= v (numpy's searchsorted, side "left"), at most n - 1. */
static size_t search(const double *cum, size_t n, double v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cum[mid] < v) lo = mid + 1; else hi = mid;
    }
    return lo < n ? lo : n - 1;
}

/* Greedy k-means++ into C (k x p); cum is n doubles of scratch, cand T x p. */
static void seed(km *s, tz_rng *rng, double *C, double *cc, double *cum, double *cand)
{
    size_t n = s->n, p = s->p, T = s->T;
    size_t first;
    if (s->w) {
        double acc = 0;
        for (size_t i = 0; i < n; i++) cum[i] = acc += s->w[i];
        first = search(cum, n, tz_rng_uniform(rng) * acc);
    } else {
        first = (size_t)tz_rng_below(rng, n);
    }
    copy_row(s, first, C);
    run_mode(s, MODE_SEED_FIRST, C, cc, 1);
    double pot = pot_of(s, 0);
    size_t ids[64];
    for (size_t c = 1; c < s->k; c++) {
        double acc = 0;
        for (size_t i = 0; i < n; i++) cum[i] = acc += wt(s, i) * s->closest[i];
        for (size_t t = 0; t < T; t++) {
            ids[t] = search(cum, n, tz_rng_uniform(rng) * pot);
            copy_row(s, ids[t], cand + t * p);
        }
        run_mode(s, MODE_SEED_CAND, cand, cc, T);
        size_t best = 0;
        double best_pot = pot_of(s, 0);
        for (size_t t = 1; t < T; t++) {
            double v = pot_of(s, t);
            if (v < best_pot) {
                best_pot = v;
                best = t;
            }
        }
        pot = best_pot;
        memcpy(C + c * p, cand + best * p, p * sizeof *C);
        memcpy(s->closest, s->dcand + best * n, n * sizeof *s->closest);
    }
}

/* A centre left without points takes the point farthest from its own
 * centre (the farthest first; ties to the lower row), as scikit-learn. */
static void relocate_empty(km *s, double *sums)
{
    size_t k = s->k, p = s->p, P1 = p + 1;
    for (size_t c = 0; c < k; c++) {
        if (sums[c * P1 + p] > 0) continue;
        size_t far = 0;
        double fd = -1;
        for (size_t i = 0; i < s->n; i++)
            if (s->mind[i] > fd) {
                fd = s->mind[i];
                far = i;
            }
        if (fd < 0) return;  /* every point already moved */
        s->mind[far] = -1;   /* not chosen twice in this iteration */
        double w = wt(s, far);
        size_t old = (size_t)s->label[far];
        for (size_t j = 0; j < p; j++) {
            double x = s->X[j * s->n + far];
            sums[old * P1 + j] -= w * x;
            sums[c * P1 + j] = w * x;
        }
        sums[old * P1 + p] -= w;
        sums[c * P1 + p] = w;
    }
}

typedef struct run_buf {
    double *C, *Cn, *cc, *sums, *cum, *cand;
} run_buf;

/* One seeding + Lloyd run; centres (centred space) end in b->C. */
static void run_once(km *s, tz_rng *rng, int max_iter, double tol, run_buf *b, double *inertia, int *n_iter)
{
    size_t n = s->n, k = s->k, p = s->p, P1 = p + 1;
    seed(s, rng, b->C, b->cc, b->cum, b->cand);
    for (size_t i = 0; i < n; i++) s->label[i] = -1;
    int strict = 0, it;
    for (it = 0; it < max_iter; it++) {
        run_mode(s, MODE_LLOYD, b->C, b->cc, k);
        memset(b->sums, 0, k * P1 * sizeof *b->sums);
        size_t changed = 0;
        for (size_t t = 0; t < s->n_tasks; t++) {
            const double *pt = s->part + t * k * P1;
            for (size_t v = 0; v < k * P1; v++) b->sums[v] += pt[v];
            changed += s->changed[t];
        }
        relocate_empty(s, b->sums);
        double shift = 0;
        for (size_t c = 0; c < k; c++) {
            double cw = b->sums[c * P1 + p];
            for (size_t j = 0; j < p; j++) {
                double v = cw > 0 ? b->sums[c * P1 + j] / cw : b->C[c * p + j];
                double d = v - b->C[c * p + j];
                shift += d * d;
                b->Cn[c * p + j] = v;
            }
        }
        double *tmp = b->C;
        b->C = b->Cn;
        b->Cn = tmp;
        if (changed == 0) {
            strict = 1;
            break;
        }
        if (shift <= tol) break;
    }
    *n_iter = it < max_iter ? it + 1 : max_iter;
    if (!strict) run_mode(s, MODE_LABELS, b->C, b->cc, k);  /* labels of the final centres */
    run_mode(s, MODE_INERTIA, b->C, b->cc, k);
    double v = 0;
    for (size_t t = 0; t < s->n_tasks; t++) v += s->part[t];
    *inertia = v;
}

/* Centres each column into X (column-major), its mean into mean[j], its
 * variance into var[j]. */
typedef struct prep_ctx {
    const tz_data *d;
    double *X, *mean, *var;
} prep_ctx;

static void prep_task(void *ctx, size_t j, int worker)
{
    prep_ctx *c = ctx;
    size_t n = c->d->n_rows;
    const double *x = c->d->cols[j], *w = c->d->weight;
    double sw = 0, sx = 0, ss = 0, su = 0;
    for (size_t i = 0; i < n; i++) {
        double wi = w ? w[i] : 1.0;
        sw += wi;
        sx += wi * x[i];
        su += x[i];
    }
    double mean = sx / sw, umean = su / (double)n;
    double *z = c->X + j * n;
    for (size_t i = 0; i < n; i++) {
        z[i] = x[i] - mean;
        ss += (x[i] - umean) * (x[i] - umean);
    }
    c->mean[j] = mean;
    c->var[j] = ss / (double)n;  /* unweighted, as scikit-learn's tolerance */
}

typedef struct norm_ctx {
    size_t n, p;
    const double *X;
    double *xx;
} norm_ctx;

static void norm_task(void *ctx, size_t t, int worker)
{
    norm_ctx *c = ctx;
    size_t lo, hi;
    tz_kblock_range(c->n, t, &lo, &hi);
    for (size_t i = lo; i < hi; i++) c->xx[i] = 0;
    for (size_t j = 0; j < c->p; j++) {
        const double *x = c->X + j * c->n;
        for (size_t i = lo; i < hi; i++) c->xx[i] += x[i] * x[i];
    }
}

int tz_kmeans_fit(const tz_kmeans_params *params, const tz_data *data,
                  tz_kmeans_model **out, tz_err *err)
{
    tz_kmeans_params prm;
    if (params) prm = *params; else tz_kmeans_params_default(&prm);
    if (!out) return tz_err_set(err, TZ_EINVAL, "kmeans: no output model");
    if (prm.k < 1 || prm.n_init < 1 || prm.max_iter < 1 || !(prm.tol >= 0) || !isfinite(prm.tol))
        return tz_err_set(err, TZ_EINVAL, "kmeans: need k >= 1, n_init >= 1, max_iter >= 1, tol >= 0");
    int rc = tz_kcheck_x("kmeans", data, 0, err);
    if (rc) return rc;
    size_t n = data->n_rows, p = data->n_cols, k = (size_t)prm.k;
    if (n < k) return tz_err_set(err, TZ_EINVAL, "kmeans: k = %zu exceeds the %zu rows", k, n);
    if ((rc = tz_kcheck_weight("kmeans", data, err))) return rc;
    if (n > INT_MAX || p > ((size_t)-1 / sizeof(double)) / n ||  /* BLAS takes int sizes */
        k > ((size_t)-1 / sizeof(double)) / (p + 1) / 64)
        return tz_err_set(err, TZ_ETOOBIG, "kmeans: data too large (%zu x %zu, k = %zu)", n, p, k);

    km s = { .n = n, .p = p, .k = k, .w = data->weight };
    s.T = 2 + (size_t)log((double)k);
    if (s.T > 64) s.T = 64;
    /* Fixed by (n, k, p) alone: 256-row multiples, at most 64 tasks, and
     * per-task centre sums within 256 MiB. */
    size_t rpt = (n + 63) / 64;
    rpt = rpt < 256 ? 256 : (rpt + 255) / 256 * 256;
    while (((n + rpt - 1) / rpt) * k * (p + 1) > ((size_t)32 << 20) && rpt < n) rpt *= 2;
    s.rpt = rpt;
    s.n_tasks = (n + rpt - 1) / rpt;
    size_t q = k > s.T ? k : s.T;
    /* OpenBLAS threads a gemm above m n k = 2^18: stay below. */
    s.sub = 250000 / (q * p);
    s.sub = s.sub < 16 ? 16 : s.sub > SUBMAX ? SUBMAX : s.sub;

    double *X = malloc(n * p * sizeof *X), *xx = malloc(n * sizeof *xx);
    double *mean = malloc(p * sizeof *mean), *var = malloc(p * sizeof *var);
    s.D = malloc((size_t)tz_pool_threads() * s.sub * q * sizeof *s.D);
    s.label = malloc(n * sizeof *s.label);
    s.mind = malloc(n * sizeof *s.mind);
    s.closest = malloc(n * sizeof *s.closest);
    s.dcand = malloc(s.T * n * sizeof *s.dcand);
    s.lab_new = malloc(n * sizeof *s.lab_new);
    s.part = malloc(s.n_tasks * (k * (p + 1) > s.T ? k * (p + 1) : s.T) * sizeof *s.part);
    s.changed = malloc(s.n_tasks * sizeof *s.changed);
    run_buf b = { malloc(k * p * sizeof(double)), malloc(k * p * sizeof(double)), malloc(q * sizeof(double)),
                  malloc(k * (p + 1) * sizeof(double)), malloc(n * sizeof(double)), malloc(s.T * p * sizeof(double)) };
    double *best = malloc(k * p * sizeof *best);
    tz_kmeans_model *m = model_new(k, p);
    if (!X || !xx || !mean || !var || !s.D || !s.label || !s.mind || !s.closest || !s.dcand || !s.lab_new || !s.part || !s.changed ||
        !b.C || !b.Cn || !b.cc || !b.sums || !b.cum || !b.cand || !best || !m) {
        rc = tz_err_set(err, TZ_ENOMEM, "kmeans: out of memory for %zu x %zu values", n, p);
        goto done;
    }
    prep_ctx pc = { data, X, mean, var };
    tz_pool_run(p, prep_task, &pc);
    norm_ctx nc = { n, p, X, xx };
    tz_pool_run(tz_kblocks(n), norm_task, &nc);
    s.X = X;
    s.xx = xx;
    double mvar = 0;
    for (size_t j = 0; j < p; j++) mvar += var[j];
    double tol = prm.tol * mvar / (double)p;

    tz_rng rng;
    tz_rng_seed(&rng, prm.seed);
    double best_inertia = INFINITY;
    for (int r = 0; r < prm.n_init; r++) {
        double inertia;
        int n_iter;
        run_once(&s, &rng, prm.max_iter, tol, &b, &inertia, &n_iter);
        if (inertia < best_inertia) {
            best_inertia = inertia;
            memcpy(best, b.C, k * p * sizeof *best);
            m->n_iter = n_iter;
        }
    }
    m->inertia = best_inertia;
    for (size_t c = 0; c < k; c++)
        for (size_t j = 0; j < p; j++) m->centers[c * p + j] = best[c * p + j] + mean[j];

done:
    free(X);
    free(xx);
    free(mean);
    free(var);
    free(s.D);
    free(s.label);
    free(s.mind);
    free(s.closest);
    free(s.dcand);
    free(s.lab_new);
    free(s.part);
    free(s.changed);
    free(b.C);
    free(b.Cn);
    free(b.cc);
    free(b.sums);
    free(b.cum);
    free(b.cand);
    free(best);
    if (rc) tz_kmeans_free(m);
    else *out = m;
    return rc;
}

/* ---- predict / transform: exact distances ----------------------------------- */

typedef struct pred_ctx {
    const tz_kmeans_model *m;
    const tz_data *x;
    double *out;
    int transform;
} pred_ctx;

static void predict_task(void *ctx, size_t task, int worker)
{
    pred_ctx *c = ctx;
    const tz_kmeans_model *m = c->m;
    size_t lo, hi, p = m->p;
    tz_kblock_range(c->x->n_rows, task, &lo, &hi);
    double d[PSUB], bd[PSUB];
    size_t bc[PSUB];
    for (size_t r0 = lo; r0 < hi; r0 += PSUB) {
        size_t n = hi - r0 < PSUB ? hi - r0 : PSUB;
        for (size_t k = 0; k < m->k; k++) {
            const double *ctr = m->centers + k * p;
            for (size_t i = 0; i < n; i++) d[i] = 0;
            for (size_t j = 0; j < p; j++) {
                const double *x = c->x->cols[j] + r0;
                for (size_t i = 0; i < n; i++) {
                    double v = x[i] - ctr[j];
                    d[i] += v * v;
                }
            }
            if (c->transform) {
                for (size_t i = 0; i < n; i++) c->out[(r0 + i) * m->k + k] = sqrt(d[i]);
                continue;
            }
            for (size_t i = 0; i < n; i++)
                if (k == 0 || d[i] < bd[i]) {
                    bd[i] = d[i];
                    bc[i] = k;
                }
        }
        if (!c->transform)
            for (size_t i = 0; i < n; i++) c->out[r0 + i] = (double)bc[i];
    }
}

static int predict(const tz_kmeans_model *m, const tz_data *x, double *out, int transform, tz_err *err)
{
    if (!m) return tz_err_set(err, TZ_EINVAL, "kmeans: no model");
    int rc = tz_kcheck_x(transform ? "kmeans transform" : "kmeans predict", x, m->p, err);
    if (rc) return rc;
    if (x->n_rows && !out) return tz_err_set(err, TZ_EINVAL, "kmeans predict: no output array");
    pred_ctx c = { m, x, out, transform };
    tz_pool_run(tz_kblocks(x->n_rows), predict_task, &c);
    return 0;
}

int tz_kmeans_predict(const tz_kmeans_model *m, const tz_data *x, double *out, tz_err *err)
{
    return predict(m, x, out, 0, err);
}

int tz_kmeans_transform(const tz_kmeans_model *m, const tz_data *x, double *out, tz_err *err)
{
    return predict(m, x, out, 1, err);
}

size_t tz_kmeans_k(const tz_kmeans_model *m) { return m->k; }
size_t tz_kmeans_n_features(const tz_kmeans_model *m) { return m->p; }
const double *tz_kmeans_centroids(const tz_kmeans_model *m) { return m->centers; }
double tz_kmeans_inertia(const tz_kmeans_model *m) { return m->inertia; }
int tz_kmeans_n_iter(const tz_kmeans_model *m) { return m->n_iter; }

/* ---- model file: blob kind 5, version 1 ---------------------------------------
 * u64 n_features | u32 k | u32 n_iter | f64 inertia | f64 centers[k x p] */

int tz_kmeans_save(const tz_kmeans_model *m, unsigned char **out, size_t *out_len, tz_err *err)
{
    if (!m || !out || !out_len) return tz_err_set(err, TZ_EINVAL, "kmeans save: bad arguments");
    tz_blob_writer w;
    tz_blob_writer_init(&w);
    tz_blob_put_u64(&w, m->p);
    tz_blob_put_u32(&w, (uint32_t)m->k);
    tz_blob_put_u32(&w, (uint32_t)m->n_iter);
    tz_blob_put_f64(&w, m->inertia);
    tz_blob_put_f64s(&w, m->centers, m->k * m->p);
    return tz_blob_finish(&w, TZ_KMEANS_BLOB_KIND, TZ_KMEANS_BLOB_VERSION, out, out_len, err);
}

int tz_kmeans_load(const void *data, size_t len, tz_kmeans_model **out, tz_err *err)
{
    if (!out) return tz_err_set(err, TZ_EINVAL, "kmeans load: no output model");
    tz_blob_reader r;
    int rc = tz_blob_open(data, len, TZ_KMEANS_BLOB_KIND, TZ_KMEANS_BLOB_VERSION, &r, NULL, err);
    if (rc) return rc;
    uint64_t p = tz_blob_get_u64(&r);
    uint32_t k = tz_blob_get_u32(&r), n_iter = tz_blob_get_u32(&r);
    double inertia = tz_blob_get_f64(&r);
    if (r.failed || k < 1 || n_iter > INT32_MAX || !(inertia >= 0) || !isfinite(inertia))
        return tz_err_set(err, TZ_ECORRUPT, "kmeans load: bad model header");
    uint64_t left = tz_blob_remaining(&r) / 8;
    if (p == 0 || p > left || k > left / p || (uint64_t)k * p != left)
        return tz_err_set(err, TZ_ECORRUPT, "kmeans load: cluster or feature count does not match the file size");
    tz_kmeans_model *m = model_new(k, (size_t)p);
    if (!m) return tz_err_set(err, TZ_ENOMEM, "kmeans load: out of memory");
    m->n_iter = (int)n_iter;
    m->inertia = inertia;
    tz_blob_get_f64s(&r, m->centers, m->k * m->p);
    for (size_t v = 0; v < m->k * m->p && !rc; v++)
        if (!isfinite(m->centers[v])) rc = tz_err_set(err, TZ_ECORRUPT, "kmeans load: centre value %zu is not finite", v);
    if (!rc) rc = tz_blob_close(&r, err);
    if (rc) {
        tz_kmeans_free(m);
        return rc;
    }
    *out = m;
    return 0;
}
