/* libFuzzer target: the model loaders of core/kernels (tz_gbt_load,
 * tz_forest_load, tz_linear_load, tz_logistic_load, tz_kmeans_load).
 *
 * Every loader gets three views of the input:
 *  1. the bytes as they are (the container checks: magic, length, CRC-32);
 *  2. the same with the container's payload length and CRC-32 recomputed,
 *     so mutations reach the loaders' own checks of counts and indices
 *     (a fuzzer never guesses a CRC);
 *  3. as 2, with the kind field set to each other loader's kind, so one
 *     kind's payload is also parsed as every other kind.
 * A load must give 0 or TZ_ECORRUPT / TZ_EINVAL / TZ_ENOMEM and no model.
 * An accepted model must save back to exactly the bytes it was loaded from,
 * and predicts on a few rows (zeros, large values, infinities, NaN) and on
 * a frame of the wrong width, which must fail cleanly. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tz_forest.h"
#include "kernels/tz_gbt.h"
#include "kernels/tz_kmeans.h"
#include "kernels/tz_linear.h"
#include "kernels/tz_logistic.h"
#include "util/tz_blob.h"

#define HEADER 24        /* magic, version, kind, payload length */
#define MAX_PREDICT_FEATURES 4096
#define ROWS 5

static volatile double sink;  /* keeps the accessor reads */

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "model_fuzz: %s: %s\n", what, detail);
    abort();
}

/* ---- one interface over the five model kinds ---------------------------- */

typedef struct kind_ops {
    const char *name;
    uint32_t kind;
    int (*load)(const void *buf, size_t len, void **out, tz_err *err);
    int (*save)(const void *m, unsigned char **buf, size_t *len, tz_err *err);
    int (*predict)(const void *m, const tz_data *x, double *out, tz_err *err);
    size_t (*n_features)(const void *m);
    size_t (*n_outputs)(const void *m);
    void (*extra)(const void *m, const tz_data *x);  /* other read-only calls */
    void (*free)(void *m);
} kind_ops;

static int gbt_load(const void *b, size_t n, void **o, tz_err *e) { return tz_gbt_load(b, n, (tz_gbt_model **)o, e); }
static int gbt_save(const void *m, unsigned char **b, size_t *n, tz_err *e) { return tz_gbt_save(m, b, n, e); }
static int gbt_predict(const void *m, const tz_data *x, double *o, tz_err *e) { return tz_gbt_predict(m, x, o, e); }
static size_t gbt_nf(const void *m) { return (size_t)tz_gbt_n_features(m); }
static size_t gbt_no(const void *m) { return (size_t)tz_gbt_n_outputs(m); }
static void gbt_extra(const void *m, const tz_data *x)
{
    double *imp = malloc(gbt_nf(m) * sizeof *imp);
    if (imp) tz_gbt_importance(m, imp);
    free(imp);
    (void)tz_gbt_rounds(m);
    (void)tz_gbt_objective(m);
}
static void gbt_free(void *m) { tz_gbt_free(m); }

static int rf_load(const void *b, size_t n, void **o, tz_err *e) { return tz_forest_load(b, n, (tz_forest_model **)o, e); }
static int rf_save(const void *m, unsigned char **b, size_t *n, tz_err *e) { return tz_forest_save(m, b, n, e); }
static int rf_predict(const void *m, const tz_data *x, double *o, tz_err *e) { return tz_forest_predict(m, x, o, e); }
static size_t rf_nf(const void *m) { return (size_t)tz_forest_n_features(m); }
static size_t rf_no(const void *m) { return (size_t)tz_forest_n_outputs(m); }
static void rf_extra(const void *m, const tz_data *x)
{
    double *imp = malloc(rf_nf(m) * sizeof *imp);
    if (imp) tz_forest_importance(m, imp);
    free(imp);
    (void)tz_forest_n_trees(m);
    (void)tz_forest_task(m);
    (void)tz_forest_oob_score(m);
}
static void rf_free(void *m) { tz_forest_free(m); }

static int lin_load(const void *b, size_t n, void **o, tz_err *e) { return tz_linear_load(b, n, (tz_linear_model **)o, e); }
static int lin_save(const void *m, unsigned char **b, size_t *n, tz_err *e) { return tz_linear_save(m, b, n, e); }
static int lin_predict(const void *m, const tz_data *x, double *o, tz_err *e) { return tz_linear_predict(m, x, o, e); }
static size_t lin_nf(const void *m) { return tz_linear_n_features(m); }
static size_t lin_no(const void *m) { return 1; }
static void lin_extra(const void *m, const tz_data *x)
{
    const double *c = tz_linear_coef(m);
    sink = tz_linear_intercept(m) + tz_linear_alpha(m) + (double)tz_linear_rank(m) + c[0] +
           c[tz_linear_n_features(m) - 1];
}
static void lin_free(void *m) { tz_linear_free(m); }

static int log_load(const void *b, size_t n, void **o, tz_err *e) { return tz_logistic_load(b, n, (tz_logistic_model **)o, e); }
static int log_save(const void *m, unsigned char **b, size_t *n, tz_err *e) { return tz_logistic_save(m, b, n, e); }
static int log_predict(const void *m, const tz_data *x, double *o, tz_err *e) { return tz_logistic_predict(m, x, o, e); }
static size_t log_nf(const void *m) { return tz_logistic_n_features(m); }
static size_t log_no(const void *m) { return tz_logistic_n_outputs(m); }
static void log_extra(const void *m, const tz_data *x)
{
    size_t p = tz_logistic_n_features(m), k = tz_logistic_n_outputs(m);
    sink = tz_logistic_coef(m)[k * p - 1] + tz_logistic_intercept(m)[k - 1] + tz_logistic_means(m)[p - 1] +
           tz_logistic_scales(m)[p - 1] + (double)tz_logistic_n_classes(m) + tz_logistic_n_iter(m) +
           tz_logistic_converged(m);
    if (x) {
        double *out = malloc(x->n_rows * sizeof *out);
        tz_err err;
        if (out) tz_logistic_predict_class(m, x, out, &err);
        free(out);
    }
}
static void log_free(void *m) { tz_logistic_free(m); }

static int km_load(const void *b, size_t n, void **o, tz_err *e) { return tz_kmeans_load(b, n, (tz_kmeans_model **)o, e); }
static int km_save(const void *m, unsigned char **b, size_t *n, tz_err *e) { return tz_kmeans_save(m, b, n, e); }
static int km_predict(const void *m, const tz_data *x, double *o, tz_err *e) { return tz_kmeans_predict(m, x, o, e); }
static size_t km_nf(const void *m) { return tz_kmeans_n_features(m); }
static size_t km_no(const void *m) { return 1; }
static void km_extra(const void *m, const tz_data *x)
{
    size_t k = tz_kmeans_k(m), p = tz_kmeans_n_features(m);
    sink = tz_kmeans_centroids(m)[k * p - 1] + tz_kmeans_inertia(m) + tz_kmeans_n_iter(m);
    if (x && k <= 1u << 16) {
        double *out = malloc(x->n_rows * k * sizeof *out);
        tz_err err;
        if (out) tz_kmeans_transform(m, x, out, &err);
        free(out);
    }
}
static void km_free(void *m) { tz_kmeans_free(m); }

static const kind_ops KINDS[] = {
    { "gbt", 1, gbt_load, gbt_save, gbt_predict, gbt_nf, gbt_no, gbt_extra, gbt_free },
    { "forest", 2, rf_load, rf_save, rf_predict, rf_nf, rf_no, rf_extra, rf_free },
    { "linear", TZ_LINEAR_BLOB_KIND, lin_load, lin_save, lin_predict, lin_nf, lin_no, lin_extra, lin_free },
    { "logistic", TZ_LOGISTIC_BLOB_KIND, log_load, log_save, log_predict, log_nf, log_no, log_extra, log_free },
    { "kmeans", TZ_KMEANS_BLOB_KIND, km_load, km_save, km_predict, km_nf, km_no, km_extra, km_free },
};
#define N_KINDS (sizeof KINDS / sizeof KINDS[0])

/* ---- exercising a loaded model ------------------------------------------- */

/* Predicts on ROWS rows of nf columns (only finite values when finite_only:
 * linear models refuse NaN), writing exactly rows x n_outputs doubles into
 * a buffer of that size so ASan sees any overrun. */
static void predict_rows(const kind_ops *k, const void *m, size_t nf, int finite_only)
{
    static const double row_values[ROWS] = { 0.0, 1.0, -1e300, 1e300, NAN };
    size_t rows = finite_only ? ROWS - 1 : ROWS, nout = k->n_outputs(m);
    double *cells = malloc(nf * rows * sizeof *cells);
    const double **cols = malloc(nf * sizeof *cols);
    double *out = malloc(rows * nout * sizeof *out);
    if (!cells || !cols || !out) goto done;
    for (size_t j = 0; j < nf; j++) {
        double *c = cells + j * rows;
        for (size_t i = 0; i < rows; i++) c[i] = row_values[i];
        if (j % 3 == 1 && !finite_only) c[0] = INFINITY;  /* a few +inf among zeros */
        cols[j] = c;
    }
    tz_data x = { rows, nf, cols, NULL, NULL };
    tz_err err;
    k->predict(m, &x, out, &err);  /* may refuse, must not crash */
    k->extra(m, &x);
done:
    free(cells);
    free(cols);
    free(out);
}

/* One column too many: every kernel must refuse, not read a column the
 * model thinks is there (or ignore a width mismatch silently). */
static void predict_wrong_width(const kind_ops *k, const void *m, size_t nf)
{
    size_t w = nf + 1, nout = k->n_outputs(m);
    double *cells = calloc(w, sizeof *cells);
    const double **cols = malloc(w * sizeof *cols);
    double *out = malloc(nout * sizeof *out);
    if (cells && cols && out) {
        for (size_t j = 0; j < w; j++) cols[j] = cells + j;
        tz_data x = { 1, w, cols, NULL, NULL };
        tz_err err;
        int rc = k->predict(m, &x, out, &err);
        if (rc == 0) fail(k->name, "predict accepted a frame with one column more than the model has");
    }
    free(cells);
    free(cols);
    free(out);
}

static void try_load(const kind_ops *k, const unsigned char *buf, size_t len)
{
    void *m = NULL;
    tz_err err;
    memset(&err, 0, sizeof err);
    int rc = k->load(buf, len, &m, &err);
    if (rc != 0) {
        if (m) fail(k->name, "a failed load handed out a model");
        if (rc != TZ_ECORRUPT && rc != TZ_EINVAL && rc != TZ_ENOMEM) fail(k->name, "unexpected error code");
        return;
    }
    if (!m) fail(k->name, "load returned 0 without a model");

    /* What loads must save back to the same bytes. */
    unsigned char *again = NULL;
    size_t again_len = 0;
    if (k->save(m, &again, &again_len, &err) != 0) fail(k->name, err.msg);
    if (again_len != len || memcmp(again, buf, len) != 0) fail(k->name, "save(load(bytes)) differs from bytes");
    free(again);

    size_t nf = k->n_features(m), nout = k->n_outputs(m);
    if (nf == 0 || nout == 0) fail(k->name, "a loaded model has no features or no outputs");
    if (nf <= MAX_PREDICT_FEATURES && nout <= 4096) {
        predict_rows(k, m, nf, 1);
        predict_rows(k, m, nf, 0);
        predict_wrong_width(k, m, nf);
    } else {
        k->extra(m, NULL);
    }
    k->free(m);
}

/* ---- the entry points ----------------------------------------------------- */

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* Kernels run their tasks inline: deterministic coverage, no threads. */
    setenv("TYCHO_THREADS", "1", 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* 1. As is; an exact-size copy so ASan sees any over-read. */
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    for (size_t i = 0; i < N_KINDS; i++) try_load(&KINDS[i], copy, size);
    if (size < HEADER + 4) {
        free(copy);
        return 0;
    }

    /* 2. and 3. A consistent container around the payload, under each kind
     * (the input's own kind first). */
    uint32_t own = (uint32_t)copy[12] | (uint32_t)copy[13] << 8 | (uint32_t)copy[14] << 16 |
                   (uint32_t)copy[15] << 24;
    put_le(copy + 16, size - HEADER - 4, 8);
    for (size_t pass = 0; pass <= N_KINDS; pass++) {
        uint32_t kind = pass == 0 ? own : KINDS[pass - 1].kind;
        if (pass > 0 && kind == own) continue;
        put_le(copy + 12, kind, 4);
        put_le(copy + size - 4, tz_crc32(0, copy, size - 4), 4);
        for (size_t i = 0; i < N_KINDS; i++)
            if (KINDS[i].kind == kind || pass == 0) try_load(&KINDS[i], copy, size);
    }
    free(copy);
    return 0;
}
