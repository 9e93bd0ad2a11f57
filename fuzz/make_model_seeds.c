/* Writes the seed corpus of model_fuzz: one small model file per loader and
 * shape, fitted on a tiny synthetic data set (4 features, 60 rows, some NaN
 * for the tree kernels). Usage: make_model_seeds DIR. The files in
 * fuzz/corpus/model were made with it; rerun it when a format changes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tz_forest.h"
#include "kernels/tz_gbt.h"
#include "kernels/tz_kmeans.h"
#include "kernels/tz_linear.h"
#include "kernels/tz_logistic.h"

#define N 60
#define P 4

static double cols[P][N], cols_nan[P][N], y_reg[N], y_bin[N], y_k3[N];
static const double *colp[P], *colp_nan[P];

static const char *dir;
static int failed;

static void write_seed(const char *name, int rc, unsigned char *buf, size_t len, const tz_err *err)
{
    if (rc) {
        fprintf(stderr, "make_model_seeds: %s: %s\n", name, err->msg);
        failed = 1;
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(buf, 1, len, fp) != len || fclose(fp) != 0) {
        fprintf(stderr, "make_model_seeds: cannot write %s\n", path);
        failed = 1;
    } else {
        printf("%s: %zu bytes\n", path, len);
    }
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_model_seeds DIR\n");
        return 2;
    }
    dir = argv[1];
    tz_rng rng;
    tz_rng_seed(&rng, 7);
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int j = 0; j < P; j++) {
            cols[j][i] = tz_rng_uniform(&rng) * 4 - 2;
            cols_nan[j][i] = (i + j) % 7 == 0 ? NAN : cols[j][i];
            s += (j + 1) * cols[j][i];
        }
        y_reg[i] = s + 0.1 * tz_rng_uniform(&rng);
        y_bin[i] = s > 0;
        y_k3[i] = s < -1 ? 0 : s < 1 ? 1 : 2;
    }
    for (int j = 0; j < P; j++) colp[j] = cols[j], colp_nan[j] = cols_nan[j];
    tz_data reg = { N, P, colp, y_reg, NULL }, bin = { N, P, colp, y_bin, NULL }, k3 = { N, P, colp, y_k3, NULL };
    tz_data reg_nan = { N, P, colp_nan, y_reg, NULL }, bin_nan = { N, P, colp_nan, y_bin, NULL },
            k3_nan = { N, P, colp_nan, y_k3, NULL };
    tz_err err;
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc;

    /* Gradient-boosted trees: each objective, shallow and few rounds. */
    struct { const char *name; int obj, k, rounds, depth; const tz_data *d; } gbts[] = {
        { "gbt_squared.tzb", TZ_GBT_SQUARED, 0, 2, 2, &reg_nan },
        { "gbt_logistic.tzb", TZ_GBT_LOGISTIC, 0, 3, 2, &bin_nan },
        { "gbt_softmax3.tzb", TZ_GBT_SOFTMAX, 3, 2, 2, &k3_nan },
        { "gbt_stump.tzb", TZ_GBT_SQUARED, 0, 1, 1, &reg },
    };
    for (size_t i = 0; i < sizeof gbts / sizeof gbts[0]; i++) {
        tz_gbt_params p;
        tz_gbt_params_default(&p);
        p.objective = gbts[i].obj;
        p.n_classes = gbts[i].k;
        p.rounds = gbts[i].rounds;
        p.max_depth = gbts[i].depth;
        p.max_bins = 16;
        tz_gbt_model *m = NULL;
        rc = tz_gbt_fit(&p, gbts[i].d, NULL, NULL, NULL, &m, &err);
        if (!rc) rc = tz_gbt_save(m, &buf, &len, &err);
        write_seed(gbts[i].name, rc, buf, len, &err);
        tz_gbt_free(m);
    }

    /* Random forests: classifier (2 and 3 classes) and regressor. */
    struct { const char *name; int task, k; const tz_data *d; } rfs[] = {
        { "forest_classify2.tzb", TZ_FOREST_CLASSIFY, 2, &bin_nan },
        { "forest_classify3.tzb", TZ_FOREST_CLASSIFY, 3, &k3 },
        { "forest_regress.tzb", TZ_FOREST_REGRESS, 0, &reg_nan },
    };
    for (size_t i = 0; i < sizeof rfs / sizeof rfs[0]; i++) {
        tz_forest_params p;
        tz_forest_params_default(&p);
        p.task = rfs[i].task;
        p.n_classes = rfs[i].k;
        p.n_trees = 2;
        p.max_depth = 2;
        p.max_bins = 16;
        tz_forest_model *m = NULL;
        rc = tz_forest_fit(&p, rfs[i].d, &m, &err);
        if (!rc) rc = tz_forest_save(m, &buf, &len, &err);
        write_seed(rfs[i].name, rc, buf, len, &err);
        tz_forest_free(m);
    }

    /* Linear regression, with and without an intercept. */
    for (int fi = 0; fi <= 1; fi++) {
        tz_linear_params p;
        tz_linear_params_default(&p);
        p.fit_intercept = fi;
        p.alpha = fi ? 0 : 0.5;
        tz_linear_model *m = NULL;
        rc = tz_linear_fit(&p, &reg, &m, &err);
        if (!rc) rc = tz_linear_save(m, &buf, &len, &err);
        write_seed(fi ? "linear.tzb" : "linear_ridge_nointercept.tzb", rc, buf, len, &err);
        tz_linear_free(m);
    }

    /* Logistic regression: binary, and softmax over 3 classes. */
    for (int k = 2; k <= 3; k++) {
        tz_logistic_params p;
        tz_logistic_params_default(&p);
        p.max_iter = 20;
        p.fit_intercept = k == 2;
        tz_logistic_model *m = NULL;
        rc = tz_logistic_fit(&p, k == 2 ? &bin : &k3, &m, &err);
        if (!rc) rc = tz_logistic_save(m, &buf, &len, &err);
        write_seed(k == 2 ? "logistic_binary.tzb" : "logistic_softmax3_nointercept.tzb", rc, buf, len, &err);
        tz_logistic_free(m);
    }

    /* k-means, k = 1 and 3. */
    for (int k = 1; k <= 3; k += 2) {
        tz_kmeans_params p;
        tz_kmeans_params_default(&p);
        p.k = k;
        p.n_init = 1;
        p.max_iter = 10;
        tz_kmeans_model *m = NULL;
        rc = tz_kmeans_fit(&p, &reg, &m, &err);
        if (!rc) rc = tz_kmeans_save(m, &buf, &len, &err);
        write_seed(k == 1 ? "kmeans1.tzb" : "kmeans3.tzb", rc, buf, len, &err);
        tz_kmeans_free(m);
    }
    return failed;
}
