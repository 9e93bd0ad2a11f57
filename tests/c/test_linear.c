/* tz_linear against scikit-learn 1.2.1 on the diamonds split (reference
 * numbers from tests/c/kernels_reference.py), plus determinism across
 * thread counts, model-file round trip and damage, and bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "kernel_test.h"
#include "kernels/tz_linear.h"

/* LinearRegression(), Ridge(alpha=1.0), Ridge(alpha=100, fit_intercept=False)
 * on diamonds train rows; RMSE and R^2 on the test rows. */
static const double OLS_COEF[9] = { 10778.015766251498, 123.86112274378456, -323.8717486724953,
    502.521117244327, -81.0848434885948, -27.078427154277108, -873.291561150222,
    22.896718179702304, -15.706575747125726 };
static const double OLS_ICPT = 5774.065937392203, OLS_RMSE = 1224.5965418579563, OLS_R2 = 0.905664368507351;
static const double RIDGE1_COEF[9] = { 10752.96027224895, 123.8711276905783, -323.6955346289377,
    502.6107230528583, -80.59003040672123, -27.03080437821158, -862.8322579634427,
    22.975761734485566, -16.07843401585104 };
static const double RIDGE1_ICPT = 5700.922800569464, RIDGE1_RMSE = 1224.5644276296591;
static const double RIDGE100_COEF[9] = { 8784.974266584022, 125.1933829819201, -309.53318809345683,
    509.14697383239474, -42.82049699904426, -22.762520139361296, -75.01947719460985,
    43.90687586857829, -16.705289327619752 };
static const double RIDGE100_RMSE = 1237.922673437344;

static test_dataset ds;

static double rmse(const double *y, const double *p, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (y[i] - p[i]) * (y[i] - p[i]);
    return sqrt(s / (double)n);
}

static double r2(const double *y, const double *p, size_t n)
{
    double mean = 0, ss = 0, st = 0;
    for (size_t i = 0; i < n; i++) mean += y[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) {
        ss += (y[i] - p[i]) * (y[i] - p[i]);
        st += (y[i] - mean) * (y[i] - mean);
    }
    return 1 - ss / st;
}

static void check_fit(const char *name, double alpha, int icpt, const double *coef, double want_icpt,
                      double want_rmse, double *pred)
{
    tz_linear_params p = { alpha, icpt };
    tz_linear_model *m = NULL;
    tz_err err;
    int rc = tz_linear_fit(&p, &ds.train.data, &m, &err);
    if (!ok(rc == 0, "%s fits", name)) {
        printf("#   %s\n", err.msg);
        return;
    }
    const double *c = tz_linear_coef(m);
    double worst = 0;
    for (int j = 0; j < 9; j++) worst = fmax(worst, fabs(c[j] - coef[j]) / fabs(coef[j]));
    ok(worst < 1e-6, "%s coefficients match sklearn (worst relative error %.2g)", name, worst);
    is_close(tz_linear_intercept(m), want_icpt, 1e-6, 1e-9, "%s intercept", name);
    is_int(tz_linear_rank(m), 9, "%s rank", name);
    is_int(tz_linear_predict(m, &ds.test.data, pred, &err), 0, "%s predicts", name);
    is_close(rmse(ds.test.y, pred, ds.test.n_rows), want_rmse, 1e-8, 0, "%s test RMSE", name);
    tz_linear_free(m);
}

/* Child side of the determinism check: the model bytes, then predictions. */
static unsigned char *fit_bytes(void *ctx, size_t *len)
{
    tz_linear_params p = { 1.0, 1 };
    tz_linear_model *m = NULL;
    unsigned char *blob = NULL;
    size_t blen = 0;
    if (tz_linear_fit(&p, &ds.train.data, &m, NULL) || tz_linear_save(m, &blob, &blen, NULL)) return NULL;
    size_t n = ds.test.n_rows;
    unsigned char *out = malloc(blen + n * sizeof(double));
    memcpy(out, blob, blen);
    double *pred = malloc(n * sizeof *pred);  /* out + blen is not aligned */
    tz_linear_predict(m, &ds.test.data, pred, NULL);
    memcpy(out + blen, pred, n * sizeof *pred);
    free(pred);
    free(blob);
    tz_linear_free(m);
    *len = blen + n * sizeof(double);
    return out;
}

static int load_use(void *ctx, const unsigned char *buf, size_t len, tz_err *err)
{
    tz_linear_model *m = NULL;
    int rc = tz_linear_load(buf, len, &m, err);
    if (rc) return rc;
    double out[8];
    tz_data few = ds.test.data;
    few.n_rows = 8;
    if (tz_linear_n_features(m) == few.n_cols) tz_linear_predict(m, &few, out, err);
    tz_linear_free(m);
    return 0;
}

int main(void)
{
    if (test_dataset_load("diamonds", 0, &ds) != 0) {
        printf("1..0 # SKIP diamonds data not found\n");
        return 0;
    }
    /* Before this process touches the pool: a one-thread child. */
    unsigned char *child = NULL;
    size_t child_len = 0;
    int child_rc = kt_run_with_threads("1", fit_bytes, NULL, &child, &child_len);
    setenv("TYCHO_THREADS", "2", 1);

    size_t nt = ds.test.n_rows;
    double *pred = malloc(nt * sizeof *pred), *pred2 = malloc(nt * sizeof *pred2);
    check_fit("OLS", 0, 1, OLS_COEF, OLS_ICPT, OLS_RMSE, pred);
    is_close(r2(ds.test.y, pred, nt), OLS_R2, 1e-9, 0, "OLS test R^2");
    check_fit("ridge alpha=1", 1.0, 1, RIDGE1_COEF, RIDGE1_ICPT, RIDGE1_RMSE, pred);
    check_fit("ridge alpha=100 no intercept", 100.0, 0, RIDGE100_COEF, 0.0, RIDGE100_RMSE, pred);

    /* Thread count does not change a bit. */
    size_t len = 0;
    unsigned char *mine = fit_bytes(NULL, &len);
    ok(child_rc == 0 && mine && child_len == len && !memcmp(child, mine, len),
       "model bytes and predictions identical with TYCHO_THREADS=1 and %d", 2);
    free(child);
    free(mine);

    /* Save / load round trip. */
    tz_linear_params prm = { 1.0, 1 };
    tz_linear_model *m = NULL, *back = NULL;
    tz_err err;
    tz_linear_fit(&prm, &ds.train.data, &m, &err);
    unsigned char *blob = NULL;
    size_t blen = 0;
    is_int(tz_linear_save(m, &blob, &blen, &err), 0, "saves (%zu bytes)", blen);
    is_int(tz_linear_load(blob, blen, &back, &err), 0, "loads");
    tz_linear_predict(m, &ds.test.data, pred, &err);
    tz_linear_predict(back, &ds.test.data, pred2, &err);
    ok(!memcmp(pred, pred2, nt * sizeof *pred), "loaded model predicts identically");
    tz_linear_free(back);

    size_t refused = 0, loaded = 0;
    int fails = kt_fuzz_model(blob, blen, load_use, NULL, &refused, &loaded);
    is_int(fails, 0, "damaged files refused (%zu refusals, %zu re-signed mutants loaded safely)", refused, loaded);
    unsigned char *bad = malloc(blen);
    memcpy(bad, blob, blen);
    kt_poke_u64(bad, blen, 0, (uint64_t)1 << 40);
    is_int(tz_linear_load(bad, blen, &back, &err), TZ_ECORRUPT, "huge feature count refused: %s", err.msg);
    memcpy(bad, blob, blen);
    kt_poke_u64(bad, blen, 0, 8);
    is_int(tz_linear_load(bad, blen, &back, &err), TZ_ECORRUPT, "feature count off by one refused: %s", err.msg);
    memcpy(bad, blob, blen);
    bad[24 + 8] = 2;
    kt_set_crc(bad, blen);
    is_int(tz_linear_load(bad, blen, &back, &err), TZ_ECORRUPT, "fit_intercept flag 2 refused: %s", err.msg);
    is_int(tz_linear_load(blob, blen, &back, &err), 0, "the original still loads");
    tz_linear_free(back);
    free(bad);
    free(blob);

    /* Bad input. */
    tz_data few = ds.test.data;
    few.n_cols = 8;
    is_int(tz_linear_predict(m, &few, pred, &err), TZ_EINVAL, "wrong column count refused: %s", err.msg);
    double keep = ds.train.cols[4][10];
    ds.train.cols[4][10] = NAN;
    tz_linear_model *none = NULL;
    is_int(tz_linear_fit(&prm, &ds.train.data, &none, &err), TZ_EINVAL, "NaN feature refused: %s", err.msg);
    ok(strstr(err.msg, "column 4") != NULL && none == NULL, "message names column 4");
    ds.test.cols[4][3] = NAN;
    is_int(tz_linear_predict(m, &ds.test.data, pred, &err), TZ_EINVAL, "NaN at predict refused: %s", err.msg);
    ds.train.cols[4][10] = keep;
    keep = ds.train.y[5];
    ds.train.y[5] = NAN;
    is_int(tz_linear_fit(&prm, &ds.train.data, &none, &err), TZ_EINVAL, "NaN target refused: %s", err.msg);
    ds.train.y[5] = keep;
    prm.alpha = -1;
    is_int(tz_linear_fit(&prm, &ds.train.data, &none, &err), TZ_EINVAL, "negative alpha refused");
    tz_linear_free(m);

    /* Collinear and constant columns: the minimum-norm solution. */
    size_t n = ds.train.n_rows;
    double *zero = calloc(n, sizeof *zero);
    const double *cols[11];
    for (int j = 0; j < 9; j++) cols[j] = ds.train.cols[j];
    cols[9] = ds.train.cols[0];
    cols[10] = zero;
    tz_data dup = { n, 11, cols, ds.train.y, NULL };
    tz_linear_params ols = { 0, 1 };
    int rc = tz_linear_fit(&ols, &dup, &m, &err);
    ok(rc == 0, "duplicate and constant columns still fit: %s", rc ? err.msg : "ok");
    if (rc == 0) {
        const double *c = tz_linear_coef(m);
        is_int(tz_linear_rank(m), 9, "rank 9 of 11");
        is_close(c[0] + c[9], OLS_COEF[0], 1e-6, 0, "duplicates share the coefficient");
        is_close(c[0], c[9], 1e-6, 0, "equally (minimum norm)");
        ok(c[10] == 0, "constant column gets 0");
        is_close(tz_linear_intercept(m), OLS_ICPT, 1e-6, 0, "same intercept as OLS");
        tz_linear_free(m);
    }

    /* Uniform weights change nothing; weight 2 on a row = the row twice. */
    double *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = 2.0;
    tz_data wd = ds.train.data;
    wd.weight = w;
    tz_linear_fit(&ols, &wd, &m, &err);
    double worst = 0;
    for (int j = 0; j < 9; j++) worst = fmax(worst, fabs(tz_linear_coef(m)[j] - OLS_COEF[j]) / fabs(OLS_COEF[j]));
    ok(worst < 1e-6, "uniform weights: same coefficients (%.2g)", worst);
    tz_linear_free(m);
    w[0] = -1;
    is_int(tz_linear_fit(&ols, &wd, &m, &err), TZ_EINVAL, "negative weight refused");

    /* An exact linear relation is recovered exactly. */
    double x1[50], x2[50], y[50];
    for (int i = 0; i < 50; i++) {
        x1[i] = i * 0.5;
        x2[i] = (i * 7 % 13) - 6.0;
        y[i] = 1.0 + 2.0 * x1[i] - 3.0 * x2[i];
    }
    const double *xc[2] = { x1, x2 };
    tz_data exact = { 50, 2, xc, y, NULL };
    tz_linear_fit(&ols, &exact, &m, &err);
    is_close(tz_linear_coef(m)[0], 2.0, 1e-12, 1e-12, "exact slope 1");
    is_close(tz_linear_coef(m)[1], -3.0, 1e-12, 1e-12, "exact slope 2");
    is_close(tz_linear_intercept(m), 1.0, 1e-12, 1e-12, "exact intercept");
    tz_linear_free(m);

    free(zero);
    free(w);
    free(pred);
    free(pred2);
    test_dataset_free(&ds);
    return tap_done();
}
