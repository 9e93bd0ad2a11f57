#include "kernels/tz_forest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tz_kutil.h"
#include "kernels/tz_tree.h"
#include "util/tz_blob.h"
#include "util/tz_pool.h"

#define FOREST_KIND 2
#define FOREST_VERSION 1
#define BIN_SAMPLE (1u << 18)
#define ROW_BLOCK 256

struct tz_forest_model {
    int task, n_features, n_outputs, n_trees;
    double oob_score;
    tz_tree *trees;          /* leaves hold n_outputs values */
    double *importance;
};

void tz_forest_params_default(tz_forest_params *p)
{
    memset(p, 0, sizeof *p);
    p->task = TZ_FOREST_CLASSIFY;
    p->n_trees = 100;
    p->max_depth = 0;
    p->min_samples_leaf = 1;
    p->max_features = 0;
    p->bootstrap = 1;
    p->max_bins = 256;
}

void tz_forest_free(tz_forest_model *m)
{
    if (!m) return;
    if (m->trees)
        for (int i = 0; i < m->n_trees; i++) tz_tree_free(&m->trees[i]);
    free(m->trees);
    free(m->importance);
    free(m);
}

int tz_forest_n_outputs(const tz_forest_model *m) { return m->n_outputs; }
int tz_forest_n_features(const tz_forest_model *m) { return m->n_features; }
int tz_forest_n_trees(const tz_forest_model *m) { return m->n_trees; }
int tz_forest_task(const tz_forest_model *m) { return m->task; }
double tz_forest_oob_score(const tz_forest_model *m) { return m->oob_score; }

const tz_tree *tz_forest_tree(const tz_forest_model *m, int i)
{
    return i >= 0 && i < m->n_trees ? &m->trees[i] : NULL;
}

void tz_forest_importance(const tz_forest_model *m, double *gain)
{
    memcpy(gain, m->importance, (size_t)m->n_features * sizeof *gain);
}

/* ------------------------------------------------------------- validation */

static int check(const tz_forest_params *p, const tz_data *d, tz_err *err)
{
    if (p->task != TZ_FOREST_CLASSIFY && p->task != TZ_FOREST_REGRESS)
        return tz_err_set(err, TZ_EINVAL, "unknown forest task %d", p->task);
    if (p->task == TZ_FOREST_CLASSIFY && (p->n_classes < 2 || p->n_classes > 4096))
        return tz_err_set(err, TZ_EINVAL, "classification needs n_classes in 2..4096, got %d", p->n_classes);
    if (p->n_trees < 1 || p->n_trees > 100000)
        return tz_err_set(err, TZ_EINVAL, "n_trees must be in 1..100000, got %d", p->n_trees);
    if (p->max_depth < 0 || p->max_depth > TZ_TREE_MAX_DEPTH)
        return tz_err_set(err, TZ_EINVAL, "max_depth must be 0 (unlimited) or 1..%d, got %d",
                          TZ_TREE_MAX_DEPTH, p->max_depth);
    if (p->min_samples_leaf < 1)
        return tz_err_set(err, TZ_EINVAL, "min_samples_leaf must be >= 1, got %d", p->min_samples_leaf);
    if (!(p->max_features >= 0 && p->max_features <= 1))
        return tz_err_set(err, TZ_EINVAL, "max_features must be in (0, 1] (or 0 for the default), got %g",
                          p->max_features);
    if (p->max_bins < 2 || p->max_bins > 256)
        return tz_err_set(err, TZ_EINVAL, "max_bins must be in 2..256, got %d", p->max_bins);
    if (!d || !d->cols || !d->y || d->n_rows == 0 || d->n_cols == 0)
        return tz_err_set(err, TZ_EINVAL, "training set is empty or lacks labels");
    if (d->n_rows > UINT32_MAX || d->n_cols > INT32_MAX)
        return tz_err_set(err, TZ_ETOOBIG, "training set of %zu × %zu is too large", d->n_rows, d->n_cols);
    for (size_t j = 0; j < d->n_cols; j++)
        if (!d->cols[j]) return tz_err_set(err, TZ_EINVAL, "column %zu is NULL", j);
    int varied = 0;
    for (size_t i = 0; i < d->n_rows; i++) {
        double y = d->y[i];
        if (!isfinite(y)) return tz_err_set(err, TZ_EINVAL, "label at row %zu is not finite", i);
        if (p->task == TZ_FOREST_CLASSIFY && (y < 0 || y > p->n_classes - 1 || y != floor(y)))
            return tz_err_set(err, TZ_EINVAL, "class labels must be integers in 0..%d; row %zu has %g",
                              p->n_classes - 1, i, y);
        if (y != d->y[0]) varied = 1;
    }
    if (p->task == TZ_FOREST_CLASSIFY && !varied) return tz_err_set(err, TZ_EINVAL, "label has a single class");
    if (d->weight) {
        double sw = 0;
        for (size_t i = 0; i < d->n_rows; i++) {
            double w = d->weight[i];
            if (!(w >= 0) || !isfinite(w))
                return tz_err_set(err, TZ_EINVAL, "weight at row %zu must be finite and >= 0", i);
            sw += w;
        }
        if (!(sw > 0)) return tz_err_set(err, TZ_EINVAL, "weights sum to zero");
    }
    return 0;
}

/* ------------------------------------------------------------------- fit */

typedef struct worker_buf {
    tz_tree_work *work;
    uint32_t *rows, *count;
    float *w, *gh;
} worker_buf;

typedef struct fit_ctx {
    const tz_forest_params *p;
    const tz_data *d;
    const tz_tree_bins *bins;
    int K, n_out, mtry, max_depth;
    double ymean;
    const uint16_t *cls;
    tz_tree *trees;
    uint8_t *inbag;          /* n_trees × stride bytes, one bit per row */
    size_t stride;
    worker_buf *wb;
    int *rc;
    tz_err *errs;
    /* out of bag */
    double *oob_pred;        /* per row: predicted class or value; NaN: none */
    double *oob_acc;         /* per worker: ROW_BLOCK × n_out sums */
} fit_ctx;

static void tree_task(void *vctx, size_t t, int worker)
{
    fit_ctx *c = vctx;
    const tz_forest_params *p = c->p;
    const tz_data *d = c->d;
    worker_buf *b = &c->wb[worker];
    size_t n = d->n_rows;
    uint64_t seed = tz_rng_splitmix(&(uint64_t){ p->seed ^ (0xD1B54A32D192ED03ull * (t + 1)) });
    tz_rng rng;
    tz_rng_seed(&rng, seed);
    if (p->bootstrap) {
        memset(b->count, 0, n * sizeof *b->count);
        for (size_t i = 0; i < n; i++) b->count[tz_rng_below(&rng, n)]++;
    } else {
        for (size_t i = 0; i < n; i++) b->count[i] = 1;
    }
    uint8_t *bag = c->inbag + t * c->stride;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        double w = (double)b->count[i] * (d->weight ? d->weight[i] : 1.0);
        if (b->count[i]) bag[i >> 3] |= (uint8_t)(1u << (i & 7));
        if (!(w > 0)) continue;
        b->rows[m++] = (uint32_t)i;
        if (c->K) {
            b->w[i] = (float)w;
        } else {
            b->gh[2 * i] = (float)(w * (d->y[i] - c->ymean));
            b->gh[2 * i + 1] = (float)w;
        }
    }
    if (!m) {  /* the sample fell on zero weights only: take every weighted row */
        for (size_t i = 0; i < n; i++) {
            double w = d->weight ? d->weight[i] : 1.0;
            if (!(w > 0)) continue;
            b->rows[m++] = (uint32_t)i;
            if (c->K) {
                b->w[i] = (float)w;
            } else {
                b->gh[2 * i] = (float)(w * (d->y[i] - c->ymean));
                b->gh[2 * i + 1] = (float)w;
            }
        }
    }
    tz_tree_grow_params gp = { .max_depth = c->max_depth, .min_child_weight = p->min_samples_leaf,
                               .n_classes = c->K, .split_features = c->mtry, .seed = seed, .serial = 1 };
    tz_tree_target tt = { .rows = b->rows, .n_rows = m, .gh = b->gh, .cls = c->cls, .w = b->w };
    tz_tree *tr = &c->trees[t];
    c->rc[t] = tz_tree_grow(c->bins, &gp, &tt, b->work, tr, &c->errs[t]);
    if (c->rc[t]) return;
    /* Leaf sums → probabilities (K + 1 → K values) or means, in place. */
    int nc = tr->n_values;
    for (int32_t l = 0; l < tr->n_leaves; l++) {
        const double *s = tr->values + (size_t)l * nc;
        double W = s[nc - 1];
        if (c->K) {
            for (int k = 0; k < c->K; k++) tr->values[(size_t)l * c->K + k] = W > 0 ? s[k] / W : 0;
        } else {
            tr->values[l] = c->ymean + (W > 0 ? s[0] / W : 0);
        }
    }
    tr->n_values = c->n_out;
    double *v = realloc(tr->values, (size_t)tr->n_leaves * c->n_out * sizeof *v);  /* shrink */
    if (v) tr->values = v;
}

/* Out-of-bag predictions for a block of rows: trees in order (the outer
 * loop, so a tree's upper nodes stay in cache over the block), summed per
 * row over the trees that did not see it. */
static void oob_task(void *vctx, size_t task, int worker)
{
    fit_ctx *c = vctx;
    size_t n = c->d->n_rows, lo = task * ROW_BLOCK, hi = lo + ROW_BLOCK < n ? lo + ROW_BLOCK : n;
    int no = c->n_out;
    double *acc = c->oob_acc + (size_t)worker * ROW_BLOCK * no;
    int used[ROW_BLOCK];
    memset(acc, 0, (size_t)ROW_BLOCK * no * sizeof *acc);
    memset(used, 0, sizeof used);
    for (int t = 0; t < c->p->n_trees; t++) {
        const tz_tree *tr = &c->trees[t];
        const uint8_t *bag = c->inbag + (size_t)t * c->stride;
        for (size_t i = lo; i < hi; i++) {
            if (bag[i >> 3] & (1u << (i & 7))) continue;
            const double *v = tr->values + (size_t)tz_tree_leaf(tr, c->d->cols, i) * no;
            double *a = acc + (i - lo) * no;
            for (int k = 0; k < no; k++) a[k] += v[k];
            used[i - lo]++;
        }
    }
    for (size_t i = lo; i < hi; i++) {
        const double *a = acc + (i - lo) * no;
        if (!used[i - lo]) {
            c->oob_pred[i] = NAN;
        } else if (c->K) {
            int best = 0;
            for (int k = 1; k < no; k++) if (a[k] > a[best]) best = k;
            c->oob_pred[i] = best;
        } else {
            c->oob_pred[i] = a[0] / used[i - lo];
        }
    }
}

static double oob_score(const fit_ctx *c)
{
    const tz_data *d = c->d;
    size_t used = 0, right = 0;
    double sy = 0;
    for (size_t i = 0; i < d->n_rows; i++) {
        if (isnan(c->oob_pred[i])) continue;
        used++;
        right += c->oob_pred[i] == d->y[i];
        sy += d->y[i];
    }
    if (!used) return NAN;
    if (c->K) return (double)right / (double)used;
    double mean = sy / (double)used, sse = 0, sst = 0;
    for (size_t i = 0; i < d->n_rows; i++) {
        if (isnan(c->oob_pred[i])) continue;
        sse += (d->y[i] - c->oob_pred[i]) * (d->y[i] - c->oob_pred[i]);
        sst += (d->y[i] - mean) * (d->y[i] - mean);
    }
    return sst > 0 ? 1 - sse / sst : NAN;
}

int tz_forest_fit(const tz_forest_params *p, const tz_data *train, tz_forest_model **out, tz_err *err)
{
    int rc;
    if (!p || !out) return tz_err_set(err, TZ_EINVAL, "tz_forest_fit needs params and an output");
    if ((rc = check(p, train, err))) return rc;
    size_t n = train->n_rows, ncol = train->n_cols;
    int workers = tz_pool_threads();
    fit_ctx c = { .p = p, .d = train, .K = p->task == TZ_FOREST_CLASSIFY ? p->n_classes : 0 };
    c.n_out = c.K ? c.K : 1;
    c.max_depth = p->max_depth ? p->max_depth : TZ_TREE_MAX_DEPTH;
    double frac = p->max_features > 0 ? p->max_features
                : c.K ? sqrt((double)ncol) / (double)ncol : 1.0 / 3.0;
    c.mtry = (int)(frac * (double)ncol + 1e-9);
    if (c.mtry < 1) c.mtry = 1;
    if ((size_t)c.mtry > ncol) c.mtry = (int)ncol;
    c.stride = (n + 7) / 8;

    tz_tree_bins bins;
    tz_forest_model *m = calloc(1, sizeof *m);
    uint16_t *cls = c.K ? malloc(n * sizeof *cls) : NULL;
    c.inbag = calloc((size_t)p->n_trees, c.stride);
    c.rc = calloc((size_t)p->n_trees, sizeof *c.rc);
    c.errs = calloc((size_t)p->n_trees, sizeof *c.errs);
    c.wb = calloc((size_t)workers, sizeof *c.wb);
    c.oob_pred = malloc(n * sizeof *c.oob_pred);
    c.oob_acc = malloc((size_t)workers * ROW_BLOCK * c.n_out * sizeof *c.oob_acc);
    memset(&bins, 0, sizeof bins);
    int ok = m && (!c.K || cls) && c.inbag && c.rc && c.errs && c.wb && c.oob_pred && c.oob_acc;
    if (ok) {
        m->trees = calloc((size_t)p->n_trees, sizeof *m->trees);
        m->importance = calloc(ncol, sizeof *m->importance);
        ok = m->trees && m->importance;
        m->n_trees = p->n_trees;
    }
    for (int w = 0; ok && w < workers; w++) {
        worker_buf *b = &c.wb[w];
        b->work = tz_tree_work_new();
        b->rows = malloc(n * sizeof *b->rows);
        b->count = malloc(n * sizeof *b->count);
        b->w = c.K ? malloc(n * sizeof *b->w) : NULL;
        b->gh = c.K ? NULL : malloc(2 * n * sizeof *b->gh);
        ok = b->work && b->rows && b->count && (c.K ? !!b->w : !!b->gh);
    }
    if (!ok) {
        rc = tz_err_set(err, TZ_ENOMEM, "out of memory training a forest on %zu rows", n);
        goto done;
    }
    int max_bins = p->max_bins > TZ_TREE_MAX_BINS ? TZ_TREE_MAX_BINS : p->max_bins;
    if ((rc = tz_tree_bins_build(train, max_bins, BIN_SAMPLE, p->seed, &bins, err))) goto done;
    c.bins = &bins;
    if (c.K) {
        for (size_t i = 0; i < n; i++) cls[i] = (uint16_t)train->y[i];
        c.cls = cls;
    } else {
        double sy = 0, sw = 0;
        for (size_t i = 0; i < n; i++) {
            double w = train->weight ? train->weight[i] : 1.0;
            sy += w * train->y[i];
            sw += w;
        }
        c.ymean = sy / sw;
    }
    c.trees = m->trees;
    tz_pool_run((size_t)p->n_trees, tree_task, &c);
    for (int t = 0; t < p->n_trees; t++)
        if (c.rc[t]) {
            rc = c.rc[t];
            if (err) *err = c.errs[t];
            goto done;
        }
    m->task = p->task;
    m->n_features = (int)ncol;
    m->n_outputs = c.n_out;
    m->oob_score = NAN;
    if (p->bootstrap) {
        tz_pool_run((n + ROW_BLOCK - 1) / ROW_BLOCK, oob_task, &c);
        m->oob_score = oob_score(&c);
    }
    for (int t = 0; t < p->n_trees; t++) {
        const tz_tree *tr = &m->trees[t];
        for (int32_t j = 0; tr->gain && j < tr->n_nodes; j++) m->importance[tr->nodes[j].feature] += tr->gain[j];
    }
    *out = m;
    m = NULL;
done:
    tz_forest_free(m);
    tz_tree_bins_free(&bins);
    free(cls);
    free(c.inbag);
    free(c.rc);
    free(c.errs);
    free(c.oob_pred);
    free(c.oob_acc);
    if (c.wb)
        for (int w = 0; w < workers; w++) {
            tz_tree_work_free(c.wb[w].work);
            free(c.wb[w].rows);
            free(c.wb[w].count);
            free(c.wb[w].w);
            free(c.wb[w].gh);
        }
    free(c.wb);
    return rc;
}

/* --------------------------------------------------------------- predict */

typedef struct pred_ctx {
    const tz_forest_model *m;
    const tz_data *x;
    double *out;
} pred_ctx;

static void predict_task(void *vctx, size_t task, int worker)
{
    pred_ctx *c = vctx;
    const tz_forest_model *m = c->m;
    int no = m->n_outputs;
    size_t n = c->x->n_rows, lo = task * ROW_BLOCK, hi = lo + ROW_BLOCK < n ? lo + ROW_BLOCK : n;
    double *o = c->out;
    tz_tree_chunk chunk;
    int32_t leaf[ROW_BLOCK];
    size_t step = tz_tree_chunk_rows(c->x->n_cols);
    memset(o + lo * no, 0, (hi - lo) * no * sizeof *o);
    for (size_t a = lo; a < hi; a += step) {
        size_t b = a + step < hi ? a + step : hi;
        tz_tree_chunk_fill(&chunk, c->x, a, b);
        for (int t = 0; t < m->n_trees; t++) {
            const tz_tree *tr = &m->trees[t];
            tz_tree_leaves(tr, &chunk, leaf);
            for (size_t i = a; i < b; i++) {
                const double *v = tr->values + (size_t)leaf[i - a] * no;
                for (int k = 0; k < no; k++) o[i * no + k] += v[k];
            }
        }
    }
    double inv = 1.0 / m->n_trees;
    for (size_t i = lo * no; i < hi * no; i++) o[i] *= inv;
}

int tz_forest_predict(const tz_forest_model *m, const tz_data *x, double *out, tz_err *err)
{
    if (!m || !out) return tz_err_set(err, TZ_EINVAL, "tz_forest_predict needs a model, data and output");
    int rc = tz_kcheck_shape("tz_forest_predict", x, (size_t)m->n_features, err);
    if (rc) return rc;
    if (x->n_rows == 0) return 0;
    pred_ctx c = { m, x, out };
    tz_pool_run((x->n_rows + ROW_BLOCK - 1) / ROW_BLOCK, predict_task, &c);
    return 0;
}

/* ------------------------------------------------------------ save / load */

int tz_forest_save(const tz_forest_model *m, unsigned char **buf, size_t *len, tz_err *err)
{
    tz_blob_writer w;
    tz_blob_writer_init(&w);
    tz_blob_put_u32(&w, (uint32_t)m->task);
    tz_blob_put_u32(&w, (uint32_t)m->n_features);
    tz_blob_put_u32(&w, (uint32_t)m->n_outputs);
    tz_blob_put_u32(&w, (uint32_t)m->n_trees);
    tz_blob_put_f64(&w, m->oob_score);
    tz_blob_put_f64s(&w, m->importance, (size_t)m->n_features);
    for (int i = 0; i < m->n_trees; i++) tz_tree_write(&w, &m->trees[i]);
    return tz_blob_finish(&w, FOREST_KIND, FOREST_VERSION, buf, len, err);
}

#define MIN_TREE_BYTES (8 + 8)  /* the counts and one leaf value */

int tz_forest_load(const void *buf, size_t len, tz_forest_model **out, tz_err *err)
{
    tz_blob_reader r;
    int rc;
    if (!buf || !out) return tz_err_set(err, TZ_EINVAL, "tz_forest_load needs bytes and an output");
    if ((rc = tz_blob_open(buf, len, FOREST_KIND, FOREST_VERSION, &r, NULL, err))) return rc;
    uint32_t task = tz_blob_get_u32(&r), nf = tz_blob_get_u32(&r), no = tz_blob_get_u32(&r),
             nt = tz_blob_get_u32(&r);
    double oob = tz_blob_get_f64(&r);
    if (r.failed) return tz_err_set(err, TZ_ECORRUPT, "file ends inside the model header");
    if (task > TZ_FOREST_REGRESS) return tz_err_set(err, TZ_ECORRUPT, "unknown forest task %u", task);
    if (task == TZ_FOREST_CLASSIFY ? (no < 2 || no > 4096) : no != 1)
        return tz_err_set(err, TZ_ECORRUPT, "%u outputs do not fit task %u", no, task);
    if (nf == 0 || nf > INT32_MAX || nf > tz_blob_remaining(&r) / 8)
        return tz_err_set(err, TZ_ECORRUPT, "feature count %u does not fit the file", nf);
    if (nt == 0 || nt > 100000 || nt > (tz_blob_remaining(&r) - (size_t)nf * 8) / MIN_TREE_BYTES)
        return tz_err_set(err, TZ_ECORRUPT, "%u trees do not fit the file", nt);
    tz_forest_model *m = calloc(1, sizeof *m);
    if (!m) return tz_err_set(err, TZ_ENOMEM, "out of memory loading a model");
    m->task = (int)task;
    m->n_features = (int)nf;
    m->n_outputs = (int)no;
    m->n_trees = (int)nt;  /* trees not read yet are zeroed: freeing them is fine */
    m->oob_score = oob;
    m->importance = malloc((size_t)nf * sizeof *m->importance);
    m->trees = calloc(nt, sizeof *m->trees);
    if (!m->importance || !m->trees) {
        tz_forest_free(m);
        return tz_err_set(err, TZ_ENOMEM, "out of memory loading a model");
    }
    tz_blob_get_f64s(&r, m->importance, nf);
    for (uint32_t i = 0; i < nt; i++)
        if ((rc = tz_tree_read(&r, (int32_t)nf, (int32_t)no, &m->trees[i], err))) {
            tz_forest_free(m);
            return rc;
        }
    if ((rc = tz_blob_close(&r, err))) {
        tz_forest_free(m);
        return rc;
    }
    *out = m;
    return 0;
}
