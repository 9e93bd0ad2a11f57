#include "kernels/tz_gbt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tz_kutil.h"
#include "kernels/tz_tree.h"
#include "util/tz_blob.h"
#include "util/tz_pool.h"

#define GBT_KIND 1
#define GBT_VERSION 2        /* newest read; 1 is written for models without flags */
#define GBT_KNOWN_FLAGS TZ_GBT_SUM_F32
#define BLOCK 4096           /* rows per task in the row-wise steps */
#define BIN_SAMPLE (1u << 18) /* rows the bin edges are taken from */

struct tz_gbt_model {
    int objective, n_features, n_classes;  /* n_classes: trees per round */
    int rounds;
    uint32_t flags;                        /* TZ_GBT_SUM_F32 */
    double base_margin;
    tz_tree *trees;                        /* rounds × n_classes, round-major */
    double *importance;
};

void tz_gbt_params_default(tz_gbt_params *p)
{
    memset(p, 0, sizeof *p);
    p->objective = TZ_GBT_SQUARED;
    p->n_classes = 0;
    p->rounds = 100;
    p->learning_rate = 0.3;
    p->max_depth = 6;
    p->max_leaves = 0;
    p->min_child_weight = 1;
    p->lambda = 1;
    p->gamma = 0;
    p->subsample = 1;
    p->colsample = 1;
    p->max_bins = 256;
    p->seed = 0;
    p->early_stopping_rounds = 0;
    p->base_score = NAN;
}

void tz_gbt_free(tz_gbt_model *m)
{
    if (!m) return;
    if (m->trees)
        for (size_t i = 0; i < (size_t)m->rounds * m->n_classes; i++) tz_tree_free(&m->trees[i]);
    free(m->trees);
    free(m->importance);
    free(m);
}

int tz_gbt_n_outputs(const tz_gbt_model *m) { return m->n_classes; }
int tz_gbt_n_features(const tz_gbt_model *m) { return m->n_features; }
int tz_gbt_rounds(const tz_gbt_model *m) { return m->rounds; }
int tz_gbt_objective(const tz_gbt_model *m) { return m->objective; }
double tz_gbt_base_margin(const tz_gbt_model *m) { return m->base_margin; }

const tz_tree *tz_gbt_tree(const tz_gbt_model *m, int i)
{
    return i >= 0 && i < m->rounds * m->n_classes ? &m->trees[i] : NULL;
}

void tz_gbt_importance(const tz_gbt_model *m, double *gain)
{
    memcpy(gain, m->importance, (size_t)m->n_features * sizeof *gain);
}

/* ------------------------------------------------------------- validation */

static int check_params(const tz_gbt_params *p, tz_err *err)
{
    if (p->objective < TZ_GBT_SQUARED || p->objective > TZ_GBT_SOFTMAX)
        return tz_err_set(err, TZ_EINVAL, "unknown objective %d", p->objective);
    if (p->objective == TZ_GBT_SOFTMAX && (p->n_classes < 2 || p->n_classes > 4096))
        return tz_err_set(err, TZ_EINVAL, "softmax needs n_classes in 2..4096, got %d", p->n_classes);
    if (p->rounds < 1 || p->rounds > 1000000)
        return tz_err_set(err, TZ_EINVAL, "rounds must be in 1..1000000, got %d", p->rounds);
    if (!(p->learning_rate > 0) || !isfinite(p->learning_rate))
        return tz_err_set(err, TZ_EINVAL, "learning_rate must be > 0, got %g", p->learning_rate);
    if (p->max_depth < 1 || p->max_depth > TZ_TREE_MAX_DEPTH)
        return tz_err_set(err, TZ_EINVAL, "max_depth must be in 1..%d, got %d", TZ_TREE_MAX_DEPTH, p->max_depth);
    if (p->max_leaves < 0 || p->max_leaves == 1)
        return tz_err_set(err, TZ_EINVAL, "max_leaves must be 0 (no limit) or >= 2, got %d", p->max_leaves);
    if (!(p->min_child_weight >= 0) || !isfinite(p->min_child_weight))
        return tz_err_set(err, TZ_EINVAL, "min_child_weight must be >= 0, got %g", p->min_child_weight);
    if (!(p->lambda >= 0) || !isfinite(p->lambda))
        return tz_err_set(err, TZ_EINVAL, "lambda must be >= 0, got %g", p->lambda);
    if (!(p->gamma >= 0) || !isfinite(p->gamma))
        return tz_err_set(err, TZ_EINVAL, "gamma must be >= 0, got %g", p->gamma);
    if (!(p->subsample > 0 && p->subsample <= 1))
        return tz_err_set(err, TZ_EINVAL, "subsample must be in (0, 1], got %g", p->subsample);
    if (!(p->colsample > 0 && p->colsample <= 1))
        return tz_err_set(err, TZ_EINVAL, "colsample must be in (0, 1], got %g", p->colsample);
    if (p->max_bins < 2 || p->max_bins > 256)
        return tz_err_set(err, TZ_EINVAL, "max_bins must be in 2..256, got %d", p->max_bins);
    if (p->early_stopping_rounds < 0)
        return tz_err_set(err, TZ_EINVAL, "early_stopping_rounds must be >= 0, got %d", p->early_stopping_rounds);
    if (!isnan(p->base_score) && !isfinite(p->base_score))
        return tz_err_set(err, TZ_EINVAL, "base_score must be finite or NaN (automatic)");
    if (p->objective == TZ_GBT_LOGISTIC && !isnan(p->base_score) && !(p->base_score > 0 && p->base_score < 1))
        return tz_err_set(err, TZ_EINVAL, "logistic base_score is a probability in (0, 1), got %g", p->base_score);
    return 0;
}

static int check_data(const tz_gbt_params *p, const tz_data *d, const char *what, tz_err *err)
{
    if (!d || !d->cols || !d->y || d->n_rows == 0 || d->n_cols == 0)
        return tz_err_set(err, TZ_EINVAL, "%s set is empty or lacks labels", what);
    for (size_t j = 0; j < d->n_cols; j++)
        if (!d->cols[j]) return tz_err_set(err, TZ_EINVAL, "%s column %zu is NULL", what, j);
    int seen0 = 0, seen_other = 0;
    for (size_t i = 0; i < d->n_rows; i++) {
        double y = d->y[i];
        if (!isfinite(y)) return tz_err_set(err, TZ_EINVAL, "%s label at row %zu is not finite", what, i);
        if (p->objective == TZ_GBT_LOGISTIC && y != 0 && y != 1)
            return tz_err_set(err, TZ_EINVAL, "logistic labels must be 0 or 1; %s row %zu has %g", what, i, y);
        if (p->objective == TZ_GBT_SOFTMAX && (y < 0 || y > p->n_classes - 1 || y != floor(y)))
            return tz_err_set(err, TZ_EINVAL, "softmax labels must be integers in 0..%d; %s row %zu has %g",
                              p->n_classes - 1, what, i, y);
        if (i == 0) seen0 = 1; else if (y != d->y[0]) seen_other = 1;
    }
    if (d->weight) {
        double sw = 0;
        for (size_t i = 0; i < d->n_rows; i++) {
            double w = d->weight[i];
            if (!(w >= 0) || !isfinite(w))
                return tz_err_set(err, TZ_EINVAL, "%s weight at row %zu must be finite and >= 0", what, i);
            sw += w;
        }
        if (!(sw > 0)) return tz_err_set(err, TZ_EINVAL, "%s weights sum to zero", what);
    }
    if (p->objective != TZ_GBT_SQUARED && seen0 && !seen_other && !strcmp(what, "training"))
        return tz_err_set(err, TZ_EINVAL, "label has a single class");
    return 0;
}

/* ---------------------------------------------------- row-wise task steps */

typedef struct fit_ctx {
    const tz_gbt_params *p;
    const tz_data *d;        /* rows being worked on (train or valid) */
    int K;                   /* margins per row */
    double *margin;          /* n × K */
    float *gh;               /* K × 2n */
    double *loss_part;       /* per block: weighted loss, weight */
    /* applying a round's trees */
    const tz_tree *trees;    /* K trees */
    const int32_t *leaf_of;  /* K × n or NULL (valid) */
    const uint8_t *in;       /* rows that leaf_of covers (NULL: all) */
    int want_grad;           /* step_task: also compute the next gradients */
} fit_ctx;

static double wt(const tz_data *d, size_t i) { return d->weight ? d->weight[i] : 1.0; }

/* Log-sum-exp of K margins. */
static double lse(const double *m, int K)
{
    double mx = m[0];
    for (int k = 1; k < K; k++) if (m[k] > mx) mx = m[k];
    double s = 0;
    for (int k = 0; k < K; k++) s += exp(m[k] - mx);
    return mx + log(s);
}

static void grad_task(void *vctx, size_t task, int worker)
{
    fit_ctx *c = vctx;
    size_t n = c->d->n_rows, lo = task * BLOCK, hi = lo + BLOCK < n ? lo + BLOCK : n;
    int K = c->K;
    for (size_t i = lo; i < hi; i++) {
        double w = wt(c->d, i), y = c->d->y[i];
        const double *m = c->margin + i * K;
        if (c->p->objective == TZ_GBT_SQUARED) {
            c->gh[2 * i] = (float)(w * (m[0] - y));
            c->gh[2 * i + 1] = (float)w;
        } else if (c->p->objective == TZ_GBT_LOGISTIC) {
            double pr = 1 / (1 + exp(-m[0])), h = pr * (1 - pr);
            c->gh[2 * i] = (float)(w * (pr - y));
            c->gh[2 * i + 1] = (float)(w * (h > 1e-16 ? h : 1e-16));
        } else {
            double z = lse(m, K);
            for (int k = 0; k < K; k++) {
                double pr = exp(m[k] - z), h = 2 * pr * (1 - pr);
                float *g = c->gh + (size_t)k * 2 * n + 2 * i;
                g[0] = (float)(w * (pr - (y == k)));
                g[1] = (float)(w * (h > 1e-16 ? h : 1e-16));
            }
        }
    }
}

static void loss_task(void *vctx, size_t task, int worker)
{
    fit_ctx *c = vctx;
    size_t n = c->d->n_rows, lo = task * BLOCK, hi = lo + BLOCK < n ? lo + BLOCK : n;
    int K = c->K;
    double sl = 0, sw = 0;
    for (size_t i = lo; i < hi; i++) {
        double w = wt(c->d, i), y = c->d->y[i], l;
        const double *m = c->margin + i * K;
        if (c->p->objective == TZ_GBT_SQUARED) {
            l = (m[0] - y) * (m[0] - y);
        } else if (c->p->objective == TZ_GBT_LOGISTIC) {
            double a = m[0];  /* softplus(a) - y a, stably */
            l = (a > 0 ? a + log1p(exp(-a)) : log1p(exp(a))) - y * a;
        } else {
            l = lse(m, K) - m[(int)y];
        }
        sl += w * l;
        sw += w;
    }
    c->loss_part[2 * task] = sl;
    c->loss_part[2 * task + 1] = sw;
}

/* The loss from the per-block parts loss_task left, summed in block order. */
static double loss_of(fit_ctx *c)
{
    size_t nb = (c->d->n_rows + BLOCK - 1) / BLOCK;
    double sl = 0, sw = 0;
    for (size_t b = 0; b < nb; b++) {
        sl += c->loss_part[2 * b];
        sw += c->loss_part[2 * b + 1];
    }
    double l = sw > 0 ? sl / sw : 0;
    return c->p->objective == TZ_GBT_SQUARED ? sqrt(l) : l;
}

/* Adds a round's trees (leaf values already final) to the margins. */
static void apply_task(void *vctx, size_t task, int worker)
{
    fit_ctx *c = vctx;
    size_t n = c->d->n_rows, lo = task * BLOCK, hi = lo + BLOCK < n ? lo + BLOCK : n;
    int K = c->K;
    for (int k = 0; k < K; k++) {
        const tz_tree *t = &c->trees[k];
        const int32_t *lo_of = c->leaf_of ? c->leaf_of + (size_t)k * n : NULL;
        for (size_t i = lo; i < hi; i++) {
            int32_t leaf = lo_of && (!c->in || c->in[i]) ? lo_of[i] : tz_tree_leaf(t, c->d->cols, i);
            c->margin[i * K + k] += t->values[leaf];
        }
    }
}

/* One pass per block after a round: add its trees, take the loss, and
 * (when another round follows) the next gradients; one pool run instead
 * of three. */
static void step_task(void *vctx, size_t task, int worker)
{
    fit_ctx *c = vctx;
    apply_task(c, task, worker);
    loss_task(c, task, worker);
    if (c->gh && c->want_grad) grad_task(c, task, worker);
}

/* ------------------------------------------------------------------- fit */

static void model_importance(tz_gbt_model *m)
{
    memset(m->importance, 0, (size_t)m->n_features * sizeof *m->importance);
    for (size_t i = 0; i < (size_t)m->rounds * m->n_classes; i++) {
        const tz_tree *t = &m->trees[i];
        for (int32_t j = 0; t->gain && j < t->n_nodes; j++) m->importance[t->nodes[j].feature] += t->gain[j];
    }
}

typedef struct fit_state {
    tz_tree_bins bins;
    double *margin, *vmargin, *loss_part;
    float *gh;
    uint32_t *rows;
    uint8_t *in, *allowed;
    int32_t *leaf_of, *perm;
    tz_tree_work *work;
} fit_state;

static void fit_state_free(fit_state *s)
{
    tz_tree_bins_free(&s->bins);
    free(s->margin);
    free(s->vmargin);
    free(s->loss_part);
    free(s->gh);
    free(s->rows);
    free(s->in);
    free(s->allowed);
    free(s->leaf_of);
    free(s->perm);
    tz_tree_work_free(s->work);
}

int tz_gbt_fit(const tz_gbt_params *p, const tz_data *train, const tz_data *valid,
               tz_gbt_progress_fn progress, void *ud, tz_gbt_model **out, tz_err *err)
{
    int rc;
    if (!p || !out) return tz_err_set(err, TZ_EINVAL, "tz_gbt_fit needs params and an output");
    if ((rc = check_params(p, err)) || (rc = check_data(p, train, "training", err))) return rc;
    if (valid) {
        if (valid->n_cols != train->n_cols)
            return tz_err_set(err, TZ_EINVAL, "validation set has %zu columns, training set %zu",
                              valid->n_cols, train->n_cols);
        if ((rc = check_data(p, valid, "validation", err))) return rc;
    }
    if (p->early_stopping_rounds > 0 && !valid)
        return tz_err_set(err, TZ_EINVAL, "early_stopping_rounds needs a validation set");
    if (train->n_cols > INT32_MAX) return tz_err_set(err, TZ_ETOOBIG, "too many columns");

    size_t n = train->n_rows, nv = valid ? valid->n_rows : 0, ncol = train->n_cols;
    int K = p->objective == TZ_GBT_SOFTMAX ? p->n_classes : 1;
    fit_state s;
    memset(&s, 0, sizeof s);
    tz_gbt_model *m = calloc(1, sizeof *m);
    if (!m) return tz_err_set(err, TZ_ENOMEM, "out of memory");
    m->objective = p->objective;
    m->n_features = (int)ncol;
    m->n_classes = K;
    m->trees = calloc((size_t)p->rounds * K, sizeof *m->trees);
    m->importance = calloc(ncol, sizeof *m->importance);
    size_t nblocks = ((n > nv ? n : nv) + BLOCK - 1) / BLOCK;
    s.margin = malloc(n * K * sizeof *s.margin);
    s.vmargin = nv ? malloc(nv * K * sizeof *s.vmargin) : NULL;
    s.loss_part = malloc(nblocks * 2 * sizeof *s.loss_part);
    s.gh = malloc((size_t)K * 2 * n * sizeof *s.gh);
    s.rows = malloc(n * sizeof *s.rows);
    s.in = p->subsample < 1 ? malloc(n) : NULL;
    s.allowed = malloc(ncol);
    s.perm = malloc(ncol * sizeof *s.perm);
    s.leaf_of = malloc((size_t)K * n * sizeof *s.leaf_of);
    s.work = tz_tree_work_new();
    if (!s.work || !m->trees || !m->importance || !s.margin || (nv && !s.vmargin) || !s.loss_part || !s.gh ||
        !s.rows || (p->subsample < 1 && !s.in) || !s.allowed || !s.perm || !s.leaf_of) {
        rc = tz_err_set(err, TZ_ENOMEM, "out of memory training on %zu rows", n);
        goto fail;
    }
    int max_bins = p->max_bins > TZ_TREE_MAX_BINS ? TZ_TREE_MAX_BINS : p->max_bins;
    if ((rc = tz_tree_bins_build(train, max_bins, BIN_SAMPLE, p->seed, &s.bins, err))) goto fail;

    /* Starting margin. */
    double base = 0;
    if (p->objective != TZ_GBT_SOFTMAX) {
        double b = p->base_score;
        if (isnan(b)) {
            double sy = 0, sw = 0;
            for (size_t i = 0; i < n; i++) {
                sy += wt(train, i) * train->y[i];
                sw += wt(train, i);
            }
            b = sy / sw;
            if (p->objective == TZ_GBT_LOGISTIC) b = b < 1e-6 ? 1e-6 : b > 1 - 1e-6 ? 1 - 1e-6 : b;
        }
        base = p->objective == TZ_GBT_LOGISTIC ? log(b / (1 - b)) : b;
    }
    m->base_margin = base;
    for (size_t i = 0; i < n * K; i++) s.margin[i] = base;
    for (size_t i = 0; i < nv * K; i++) s.vmargin[i] = base;
    for (size_t i = 0; i < n; i++) s.rows[i] = (uint32_t)i;
    for (size_t j = 0; j < ncol; j++) s.perm[j] = (int32_t)j;

    tz_rng rng;
    tz_rng_seed(&rng, p->seed);
    fit_ctx tc = { .p = p, .d = train, .K = K, .margin = s.margin, .gh = s.gh, .loss_part = s.loss_part };
    fit_ctx vc = { .p = p, .d = valid, .K = K, .margin = s.vmargin, .loss_part = s.loss_part };
    size_t ncols_tree = (size_t)(p->colsample * (double)ncol + 0.5);
    if (ncols_tree < 1) ncols_tree = 1;
    if (ncols_tree > ncol) ncols_tree = ncol;
    tz_tree_grow_params gp = { .max_depth = p->max_depth, .max_leaves = p->max_leaves, .lambda = p->lambda,
                               .min_child_weight = p->min_child_weight, .min_split_gain = p->gamma,
                               .allowed = s.allowed };
    double best_loss = INFINITY;
    int best_round = 0, done = 0;
    for (int round = 1; round <= p->rounds; round++) {
        size_t n_rows = n;
        if (p->subsample < 1) {
            n_rows = 0;
            for (size_t i = 0; i < n; i++) {
                s.in[i] = tz_rng_uniform(&rng) < p->subsample;
                if (s.in[i]) s.rows[n_rows++] = (uint32_t)i;
            }
            if (!n_rows) {  /* tiny data, tiny fraction: keep one row */
                s.in[0] = 1;
                s.rows[n_rows++] = 0;
            }
        }
        if (round == 1) tz_pool_run((n + BLOCK - 1) / BLOCK, grad_task, &tc);
        tz_tree *trees = &m->trees[(size_t)(round - 1) * K];
        for (int k = 0; k < K; k++) {
            /* Columns for this tree: a partial Fisher-Yates draw. */
            memset(s.allowed, ncols_tree == ncol, ncol);
            if (ncols_tree < ncol)
                for (size_t j = 0; j < ncols_tree; j++) {
                    size_t r = j + (size_t)tz_rng_below(&rng, ncol - j);
                    int32_t t = s.perm[j];
                    s.perm[j] = s.perm[r];
                    s.perm[r] = t;
                    s.allowed[s.perm[j]] = 1;
                }
            tz_tree_target tt = { .rows = s.rows, .n_rows = n_rows, .gh = s.gh + (size_t)k * 2 * n,
                                  .leaf_of = s.leaf_of + (size_t)k * n };
            if ((rc = tz_tree_grow(&s.bins, &gp, &tt, s.work, &trees[k], err))) goto fail;
            tz_tree *t = &trees[k];
            for (int32_t l = 0; l < t->n_leaves; l++)  /* (G, H) → leaf value, in place */
                t->values[l] = -t->values[2 * l] / (t->values[2 * l + 1] + p->lambda) * p->learning_rate;
            t->n_values = 1;
            double *v = realloc(t->values, (size_t)t->n_leaves * sizeof *v);  /* shrink */
            if (v) t->values = v;
        }
        m->rounds = round;
        tc.trees = trees;
        tc.leaf_of = s.leaf_of;
        tc.in = s.in;
        tc.want_grad = round < p->rounds;
        tz_pool_run((n + BLOCK - 1) / BLOCK, step_task, &tc);
        double tl = loss_of(&tc), vl = NAN;
        if (valid) {
            vc.trees = trees;
            tz_pool_run((nv + BLOCK - 1) / BLOCK, step_task, &vc);
            vl = loss_of(&vc);
            if (vl < best_loss) {
                best_loss = vl;
                best_round = round;
            }
        }
        if (progress && progress(ud, round, tl, vl)) done = 1;
        if (p->early_stopping_rounds > 0 && round - best_round >= p->early_stopping_rounds) done = 1;
        if (done) break;
    }
    if (p->early_stopping_rounds > 0 && best_round > 0 && best_round < m->rounds) {
        for (size_t i = (size_t)best_round * K; i < (size_t)m->rounds * K; i++) tz_tree_free(&m->trees[i]);
        m->rounds = best_round;
    }
    model_importance(m);
    fit_state_free(&s);
    *out = m;
    return 0;
fail:
    fit_state_free(&s);
    m->rounds = p->rounds;  /* every tree slot, built or zeroed */
    tz_gbt_free(m);
    return rc;
}

/* --------------------------------------------------------------- predict */

typedef struct pred_ctx {
    const tz_gbt_model *m;
    const tz_data *x;
    double *out;
} pred_ctx;

#define PRED_BLOCK 256

/* Margins of a chunk of few rows (a single prediction), a row at a time
 * through the trees in lockstep, added in round order as for many rows. */
static void predict_few(const tz_gbt_model *m, const tz_tree_chunk *chunk, double *o, int f32)
{
    enum { TREES = 256 };
    int K = m->n_classes;
    int32_t leaf[TREES];
    for (size_t i = 0; i < chunk->n_rows; i++)
        for (int k = 0; k < K; k++)
            for (int r0 = 0; r0 < m->rounds; r0 += TREES) {
                int n = m->rounds - r0 < TREES ? m->rounds - r0 : TREES;
                tz_tree_row_leaves(&m->trees[(size_t)r0 * K + k], (size_t)n, (size_t)K, chunk->x + i * chunk->n_cols,
                                   chunk->finite, leaf);
                double *mi = &o[i * K + k];
                for (int r = 0; r < n; r++) {
                    double v = m->trees[(size_t)(r0 + r) * K + k].values[leaf[r]];
                    *mi = f32 ? (float)(*mi + (float)v) : *mi + v;
                }
            }
}

static void predict_task(void *vctx, size_t task, int worker)
{
    pred_ctx *c = vctx;
    const tz_gbt_model *m = c->m;
    int K = m->n_classes;
    size_t n = c->x->n_rows, lo = task * PRED_BLOCK, hi = lo + PRED_BLOCK < n ? lo + PRED_BLOCK : n;
    double *o = c->out;
    int f32 = (m->flags & TZ_GBT_SUM_F32) != 0;
    tz_tree_chunk chunk;
    int32_t leaf[PRED_BLOCK];
    size_t step = tz_tree_chunk_rows(c->x->n_cols);
    for (size_t i = lo * K; i < hi * K; i++) o[i] = f32 ? (float)m->base_margin : m->base_margin;
    for (size_t a = lo; a < hi; a += step) {
        size_t b = a + step < hi ? a + step : hi;
        tz_tree_chunk_fill(&chunk, c->x, a, b);
        if (b - a < TZ_TREE_LANES) {
            predict_few(m, &chunk, o + a * K, f32);
            continue;
        }
        for (int r = 0; r < m->rounds; r++)
            for (int k = 0; k < K; k++) {
                const tz_tree *t = &m->trees[(size_t)r * K + k];
                tz_tree_leaves(t, &chunk, leaf);
                if (f32)  /* a float32 sum, as XGBoost's: the double sum of two floats rounds to their float sum */
                    for (size_t i = a; i < b; i++)
                        o[i * K + k] = (float)(o[i * K + k] + (float)t->values[leaf[i - a]]);
                else
                    for (size_t i = a; i < b; i++) o[i * K + k] += t->values[leaf[i - a]];
            }
    }
    for (size_t i = lo; i < hi; i++) {
        double *mi = o + i * K;
        if (m->objective == TZ_GBT_LOGISTIC) {
            mi[0] = 1 / (1 + exp(-mi[0]));
        } else if (m->objective == TZ_GBT_SOFTMAX) {
            double z = lse(mi, K);
            for (int k = 0; k < K; k++) mi[k] = exp(mi[k] - z);
        }
    }
}

int tz_gbt_predict(const tz_gbt_model *m, const tz_data *x, double *out, tz_err *err)
{
    if (!m || !out) return tz_err_set(err, TZ_EINVAL, "tz_gbt_predict needs a model, data and output");
    int rc = tz_kcheck_shape("tz_gbt_predict", x, (size_t)m->n_features, err);
    if (rc) return rc;
    if (x->n_rows == 0) return 0;
    pred_ctx c = { m, x, out };
    tz_pool_run((x->n_rows + PRED_BLOCK - 1) / PRED_BLOCK, predict_task, &c);
    return 0;
}

/* ------------------------------------------------------------ save / load */

int tz_gbt_save(const tz_gbt_model *m, unsigned char **buf, size_t *len, tz_err *err)
{
    tz_blob_writer w;
    tz_blob_writer_init(&w);
    tz_blob_put_u32(&w, (uint32_t)m->objective);
    tz_blob_put_u32(&w, (uint32_t)m->n_features);
    tz_blob_put_u32(&w, (uint32_t)m->n_classes);
    tz_blob_put_u32(&w, (uint32_t)m->rounds);
    tz_blob_put_f64(&w, m->base_margin);
    if (m->flags) tz_blob_put_u32(&w, m->flags);  /* version 2 */
    tz_blob_put_f64s(&w, m->importance, (size_t)m->n_features);
    for (size_t i = 0; i < (size_t)m->rounds * m->n_classes; i++) tz_tree_write(&w, &m->trees[i]);
    return tz_blob_finish(&w, GBT_KIND, m->flags ? 2 : 1, buf, len, err);
}

#define MIN_TREE_BYTES (8 + 8)  /* the counts and one leaf value */

int tz_gbt_load(const void *buf, size_t len, tz_gbt_model **out, tz_err *err)
{
    tz_blob_reader r;
    uint32_t version;
    int rc;
    if (!buf || !out) return tz_err_set(err, TZ_EINVAL, "tz_gbt_load needs bytes and an output");
    if ((rc = tz_blob_open(buf, len, GBT_KIND, GBT_VERSION, &r, &version, err))) return rc;
    uint32_t obj = tz_blob_get_u32(&r), nf = tz_blob_get_u32(&r), K = tz_blob_get_u32(&r),
             rounds = tz_blob_get_u32(&r);
    double base = tz_blob_get_f64(&r);
    uint32_t flags = version >= 2 ? tz_blob_get_u32(&r) : 0;
    if (r.failed) return tz_err_set(err, TZ_ECORRUPT, "file ends inside the model header");
    if (flags & ~(uint32_t)GBT_KNOWN_FLAGS) return tz_err_set(err, TZ_ECORRUPT, "unknown model flags %#x", flags);
    /* Version 2 exists only to carry flags: one model has one encoding. */
    if (version >= 2 && !flags) return tz_err_set(err, TZ_ECORRUPT, "a version 2 model without flags");
    if (obj > TZ_GBT_SOFTMAX) return tz_err_set(err, TZ_ECORRUPT, "unknown objective %u", obj);
    if (obj == TZ_GBT_SOFTMAX ? (K < 2 || K > 4096) : K != 1)
        return tz_err_set(err, TZ_ECORRUPT, "%u outputs do not fit objective %u", K, obj);
    if (nf == 0 || nf > INT32_MAX || nf > tz_blob_remaining(&r) / 8)
        return tz_err_set(err, TZ_ECORRUPT, "feature count %u does not fit the file", nf);
    if (rounds == 0 || rounds > 1000000 ||
        (uint64_t)rounds * K > (tz_blob_remaining(&r) - (size_t)nf * 8) / MIN_TREE_BYTES)
        return tz_err_set(err, TZ_ECORRUPT, "%u rounds do not fit the file", rounds);
    if (!isfinite(base)) return tz_err_set(err, TZ_ECORRUPT, "base margin is not finite");
    tz_gbt_model *m = calloc(1, sizeof *m);
    if (!m) return tz_err_set(err, TZ_ENOMEM, "out of memory loading a model");
    m->objective = (int)obj;
    m->n_features = (int)nf;
    m->n_classes = (int)K;
    m->flags = flags;
    m->base_margin = base;
    m->importance = malloc((size_t)nf * sizeof *m->importance);
    m->trees = calloc((size_t)rounds * K, sizeof *m->trees);
    if (!m->importance || !m->trees) {
        tz_gbt_free(m);
        return tz_err_set(err, TZ_ENOMEM, "out of memory loading a model");
    }
    tz_blob_get_f64s(&r, m->importance, nf);
    m->rounds = (int)rounds;  /* trees not read yet are zeroed: freeing them is fine */
    for (size_t i = 0; i < (size_t)rounds * K; i++) {
        if ((rc = tz_tree_read(&r, (int32_t)nf, 1, &m->trees[i], err))) {
            tz_gbt_free(m);
            return rc;
        }
    }
    if ((rc = tz_blob_close(&r, err))) {
        tz_gbt_free(m);
        return rc;
    }
    *out = m;
    return 0;
}
