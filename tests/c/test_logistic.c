/* tz_logistic (and the tz_lbfgs minimiser under it) against scikit-learn
 * 1.2.1: StandardScaler + LogisticRegression(C=1) on the shared splits
 * (reference numbers from tests/c/kernels_reference.py), plus determinism
 * across thread counts, model files, and bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "kernel_test.h"
#include "kernels/tz_lbfgs.h"
#include "kernels/tz_logistic.h"

/* Test accuracy and log loss of the converged sklearn fits. */
static const struct { const char *name; double acc, logloss; } REF[] = {
    { "breast_cancer", 0.9736842105263158, 0.06014109569918733 },
    { "digits", 0.9722222222222222, 0.10865685671033075 },
    { "spam", 0.9196525515743756, 0.22232189217002998 },
    { "letter", 0.78225, 0.8379031830836406 },
};
/* breast_cancer: sklearn coef_[0][:5] on standardised features, intercept_. */
static const double BC_COEF5[5] = { -0.42789615386484353, -0.3939134277206181, -0.3895502519639336,
    -0.464316178250158, -0.06675416301240909 };
static const double BC_ICPT = 0.44359695254424886;

static test_dataset sets[4];

static void scores(const tz_logistic_model *m, const test_split *te, double *acc, double *ll)
{
    size_t n = te->n_rows, K = tz_logistic_n_outputs(m);
    double *P = malloc(n * K * sizeof *P), *cls = malloc(n * sizeof *cls);
    tz_logistic_predict(m, &te->data, P, NULL);
    tz_logistic_predict_class(m, &te->data, cls, NULL);
    size_t hit = 0;
    double loss = 0;
    for (size_t i = 0; i < n; i++) {
        int y = (int)te->y[i];
        hit += cls[i] == y;
        double q = K == 1 ? (y ? P[i] : 1 - P[i]) : P[i * K + y];
        loss -= log(fmin(fmax(q, 1e-15), 1 - 1e-15));
    }
    *acc = (double)hit / (double)n;
    *ll = loss / (double)n;
    free(P);
    free(cls);
}

/* Child side of the determinism check: both model files, then predictions. */
static unsigned char *fit_bytes(void *ctx, size_t *len)
{
    size_t total = 0;
    unsigned char *all = NULL;
    for (int d = 1; d <= 2; d++) {  /* digits (softmax), spam (binary) */
        tz_logistic_model *m = NULL;
        unsigned char *blob = NULL;
        size_t blen = 0;
        if (tz_logistic_fit(NULL, &sets[d].train.data, &m, NULL) || tz_logistic_save(m, &blob, &blen, NULL))
            return NULL;
        size_t np = sets[d].test.n_rows * tz_logistic_n_outputs(m) * sizeof(double);
        all = realloc(all, total + blen + np);
        memcpy(all + total, blob, blen);
        double *pred = malloc(np);  /* all + total + blen is not aligned */
        tz_logistic_predict(m, &sets[d].test.data, pred, NULL);
        memcpy(all + total + blen, pred, np);
        free(pred);
        total += blen + np;
        free(blob);
        tz_logistic_free(m);
    }
    *len = total;
    return all;
}

static int load_use(void *ctx, const unsigned char *buf, size_t len, tz_err *err)
{
    const test_split *te = ctx;
    tz_logistic_model *m = NULL;
    int rc = tz_logistic_load(buf, len, &m, err);
    if (rc) return rc;
    double out[8 * 64];
    tz_data few = te->data;
    few.n_rows = 8;
    if (tz_logistic_n_features(m) == few.n_cols && tz_logistic_n_outputs(m) <= 64)
        tz_logistic_predict(m, &few, out, err);
    tz_logistic_free(m);
    return 0;
}

static double rosenbrock(void *ud, const double *x, double *g)
{
    (*(int *)ud)++;
    double a = 1 - x[0], b = x[1] - x[0] * x[0];
    g[0] = -2 * a - 400 * x[0] * b;
    g[1] = 200 * b;
    return a * a + 100 * b * b;
}

static double quadratic(void *ud, const double *x, double *g)
{
    double f = 0;
    for (int i = 0; i < 100; i++) {
        double d = (i + 1) * (x[i] - 1.0 / (i + 1));
        f += 0.5 * d * (x[i] - 1.0 / (i + 1));
        g[i] = d;
    }
    return f;
}

static void test_lbfgs(void)
{
    double x[100] = { -1.2, 1.0 };
    int calls = 0;
    tz_lbfgs_params p;
    tz_lbfgs_params_default(&p);
    p.gtol = 1e-9;
    p.ftol = 0;
    p.max_iter = 500;
    tz_lbfgs_result r;
    tz_err err;
    is_int(tz_lbfgs_minimize(2, x, rosenbrock, &calls, &p, &r, &err), 0, "lbfgs: Rosenbrock runs");
    ok(fabs(x[0] - 1) < 1e-6 && fabs(x[1] - 1) < 1e-6 && r.status == TZ_LBFGS_GTOL,
       "lbfgs: Rosenbrock minimum (1, 1) in %d iterations, %d evaluations", r.n_iter, r.n_eval);
    is_int(calls, r.n_eval, "lbfgs: evaluation count is exact");
    memset(x, 0, sizeof x);
    tz_lbfgs_minimize(100, x, quadratic, NULL, &p, &r, &err);
    double worst = 0;
    for (int i = 0; i < 100; i++) worst = fmax(worst, fabs(x[i] - 1.0 / (i + 1)));
    ok(worst < 1e-9, "lbfgs: 100-d ill-conditioned quadratic solved (%.2g) in %d iterations", worst, r.n_iter);
    p.m = 0;
    is_int(tz_lbfgs_minimize(100, x, quadratic, NULL, &p, &r, &err), TZ_EINVAL, "lbfgs: m = 0 refused");
}

int main(void)
{
    for (int d = 0; d < 4; d++)
        if (test_dataset_load(REF[d].name, 0, &sets[d]) != 0) {
            printf("1..0 # SKIP %s data not found\n", REF[d].name);
            return 0;
        }
    unsigned char *child = NULL;
    size_t child_len = 0;
    int child_rc = kt_run_with_threads("1", fit_bytes, NULL, &child, &child_len);
    setenv("TYCHO_THREADS", "2", 1);

    test_lbfgs();

    tz_err err;
    tz_logistic_model *models[4] = { 0 };
    for (int d = 0; d < 4; d++) {
        int rc = tz_logistic_fit(NULL, &sets[d].train.data, &models[d], &err);
        if (!ok(rc == 0, "%s fits", REF[d].name)) {
            printf("#   %s\n", err.msg);
            continue;
        }
        double acc, ll;
        scores(models[d], &sets[d].test, &acc, &ll);
        ok(fabs(acc - REF[d].acc) <= 0.003, "%s test accuracy %.4f (sklearn %.4f, %d iterations%s)", REF[d].name,
           acc, REF[d].acc, tz_logistic_n_iter(models[d]), tz_logistic_converged(models[d]) ? "" : ", max_iter");
        is_close(ll, REF[d].logloss, 2e-3, 0, "%s test log loss", REF[d].name);
    }
    tz_logistic_model *bc = models[0];
    if (bc) {
        is_int(tz_logistic_n_outputs(bc), 1, "binary: one output");
        is_int(tz_logistic_n_classes(bc), 2, "binary: two classes");
        ok(tz_logistic_converged(bc), "breast_cancer converged");
        double worst = 0;
        const double *c = tz_logistic_coef(bc), *sc = tz_logistic_scales(bc), *mu = tz_logistic_means(bc);
        for (int j = 0; j < 5; j++) worst = fmax(worst, fabs(c[j] * sc[j] - BC_COEF5[j]));
        ok(worst < 2e-3, "breast_cancer standardised coefficients match sklearn (worst %.2g)", worst);
        double icpt = tz_logistic_intercept(bc)[0];
        for (int j = 0; j < 30; j++) icpt += c[j] * mu[j];
        is_close(icpt, BC_ICPT, 0, 2e-3, "breast_cancer standardised intercept");
    }
    if (models[1]) {
        tz_logistic_model *m = models[1];
        is_int(tz_logistic_n_outputs(m), 10, "digits: ten outputs");
        size_t n = sets[1].test.n_rows;
        double *P = malloc(n * 10 * sizeof *P), *cls = malloc(n * sizeof *cls);
        tz_logistic_predict(m, &sets[1].test.data, P, &err);
        tz_logistic_predict_class(m, &sets[1].test.data, cls, &err);
        int sums = 1, argmax = 1;
        for (size_t i = 0; i < n; i++) {
            double s = 0;
            size_t best = 0;
            for (size_t k = 0; k < 10; k++) {
                s += P[i * 10 + k];
                if (P[i * 10 + k] > P[i * 10 + best]) best = k;
            }
            sums &= fabs(s - 1) < 1e-12;
            argmax &= cls[i] == (double)best;
        }
        ok(sums, "digits: probabilities sum to 1");
        ok(argmax, "digits: predict_class is the argmax");
        free(P);
        free(cls);
    }

    /* Thread count does not change a bit. */
    size_t len = 0;
    unsigned char *mine = fit_bytes(NULL, &len);
    ok(child_rc == 0 && mine && child_len == len && !memcmp(child, mine, len),
       "digits and spam: model bytes and predictions identical with TYCHO_THREADS=1 and 2");
    free(child);
    free(mine);

    /* Round trip and damage, on a binary and a softmax model. */
    for (int d = 0; d < 2; d++) {
        tz_logistic_model *m = models[d], *back = NULL;
        if (!m) continue;
        unsigned char *blob = NULL;
        size_t blen = 0;
        const test_split *te = &sets[d].test;
        is_int(tz_logistic_save(m, &blob, &blen, &err), 0, "%s saves (%zu bytes)", REF[d].name, blen);
        is_int(tz_logistic_load(blob, blen, &back, &err), 0, "%s loads", REF[d].name);
        size_t no = te->n_rows * tz_logistic_n_outputs(m);
        double *a = malloc(no * sizeof *a), *b = malloc(no * sizeof *b);
        tz_logistic_predict(m, &te->data, a, &err);
        tz_logistic_predict(back, &te->data, b, &err);
        ok(!memcmp(a, b, no * sizeof *a), "%s: loaded model predicts identically", REF[d].name);
        is_int(tz_logistic_n_iter(back), tz_logistic_n_iter(m), "%s: n_iter kept", REF[d].name);
        tz_logistic_free(back);
        free(a);
        free(b);
        size_t refused = 0, loaded = 0;
        int fails = kt_fuzz_model(blob, blen, load_use, (void *)te, &refused, &loaded);
        is_int(fails, 0, "%s: damaged files refused (%zu refusals, %zu re-signed mutants loaded safely)",
               REF[d].name, refused, loaded);
        unsigned char *bad = malloc(blen);
        memcpy(bad, blob, blen);
        kt_poke_u64(bad, blen, 0, (uint64_t)1 << 60);
        is_int(tz_logistic_load(bad, blen, &back, &err), TZ_ECORRUPT, "%s: huge feature count refused: %s",
               REF[d].name, err.msg);
        memcpy(bad, blob, blen);
        kt_poke_u32(bad, blen, 8, 1);
        is_int(tz_logistic_load(bad, blen, &back, &err), TZ_ECORRUPT, "%s: one class refused: %s", REF[d].name, err.msg);
        memcpy(bad, blob, blen);
        kt_poke_u32(bad, blen, 8, 4000000000u);
        is_int(tz_logistic_load(bad, blen, &back, &err), TZ_ECORRUPT, "%s: huge class count refused: %s",
               REF[d].name, err.msg);
        memcpy(bad, blob, blen);
        kt_poke_u32(bad, blen, 8, 3);  /* 2 or 10 classes read as 3 */
        is_int(tz_logistic_load(bad, blen, &back, &err), TZ_ECORRUPT, "%s: class count vs size refused: %s",
               REF[d].name, err.msg);
        memcpy(bad, blob, blen);
        size_t scale0 = 8 + 4 + 1 + 1 + 4 + 8 + 8 * tz_logistic_n_features(m);
        memset(bad + 24 + scale0, 0, 8);  /* scale[0] = 0 */
        kt_set_crc(bad, blen);
        is_int(tz_logistic_load(bad, blen, &back, &err), TZ_ECORRUPT, "%s: zero scale refused: %s", REF[d].name, err.msg);
        free(bad);
        free(blob);
    }

    /* Bad input. */
    test_split *tr = &sets[0].train;
    tz_logistic_model *none = NULL;
    double keep = tr->cols[7][20];
    tr->cols[7][20] = NAN;
    is_int(tz_logistic_fit(NULL, &tr->data, &none, &err), TZ_EINVAL, "NaN feature refused: %s", err.msg);
    ok(strstr(err.msg, "column 7") != NULL && !none, "message names column 7");
    tr->cols[7][20] = keep;
    double *y = malloc(tr->n_rows * sizeof *y);
    for (size_t i = 0; i < tr->n_rows; i++) y[i] = 1;
    tz_data one = tr->data;
    one.y = y;
    is_int(tz_logistic_fit(NULL, &one, &none, &err), TZ_EINVAL, "single class refused: %s", err.msg);
    ok(strstr(err.msg, "label has a single class") != NULL, "message says so");
    y[3] = 0.5;
    is_int(tz_logistic_fit(NULL, &one, &none, &err), TZ_EINVAL, "fractional label refused: %s", err.msg);
    y[3] = -1;
    is_int(tz_logistic_fit(NULL, &one, &none, &err), TZ_EINVAL, "negative label refused");
    y[3] = 0;
    y[4] = 2;
    tz_logistic_params prm;
    tz_logistic_params_default(&prm);
    prm.n_classes = 2;
    is_int(tz_logistic_fit(&prm, &one, &none, &err), TZ_EINVAL, "label 2 with n_classes = 2 refused: %s", err.msg);
    prm.n_classes = 0;
    prm.C = 0;
    is_int(tz_logistic_fit(&prm, &tr->data, &none, &err), TZ_EINVAL, "C = 0 refused");
    free(y);
    if (bc) {
        tz_data few = sets[0].test.data;
        few.n_cols = 29;
        double out[200];
        is_int(tz_logistic_predict(bc, &few, out, &err), TZ_EINVAL, "wrong column count refused: %s", err.msg);
    }

    /* Labels 0 and 2: three classes, one never seen; it gets ~0 probability. */
    double *y02 = malloc(tr->n_rows * sizeof *y02);
    for (size_t i = 0; i < tr->n_rows; i++) y02[i] = tr->y[i] * 2;
    tz_data d02 = tr->data;
    d02.y = y02;
    tz_logistic_model *m02 = NULL;
    is_int(tz_logistic_fit(NULL, &d02, &m02, &err), 0, "labels {0, 2}: fits as 3 classes");
    if (m02 && bc) {
        size_t n = sets[0].test.n_rows;
        double *P3 = malloc(n * 3 * sizeof *P3), *cls = malloc(n * sizeof *cls), *cb = malloc(n * sizeof *cb);
        tz_logistic_predict(m02, &sets[0].test.data, P3, &err);
        tz_logistic_predict_class(m02, &sets[0].test.data, cls, &err);
        tz_logistic_predict_class(bc, &sets[0].test.data, cb, &err);
        double pmax = 0;
        size_t agree = 0;
        for (size_t i = 0; i < n; i++) {
            pmax = fmax(pmax, P3[i * 3 + 1]);
            agree += cls[i] == 2 * cb[i];
        }
        ok(tz_logistic_n_outputs(m02) == 3 && pmax < 1e-3, "unseen class: P <= %.2g", pmax);
        ok(agree >= n - 2, "same decisions as the binary fit (%zu of %zu)", agree, n);
        free(P3);
        free(cls);
        free(cb);
    }
    tz_logistic_free(m02);
    free(y02);

    /* Weights: all 1 is the unweighted fit to the bit; all 2 is C doubled. */
    double *w = malloc(tr->n_rows * sizeof *w);
    for (size_t i = 0; i < tr->n_rows; i++) w[i] = 1.0;
    tz_data wd = tr->data;
    wd.weight = w;
    tz_logistic_model *mw = NULL, *mc = NULL;
    tz_logistic_fit(NULL, &wd, &mw, &err);
    ok(bc && mw && !memcmp(tz_logistic_coef(mw), tz_logistic_coef(bc), 30 * sizeof(double)),
       "unit weights: identical to the unweighted fit");
    tz_logistic_free(mw);
    for (size_t i = 0; i < tr->n_rows; i++) w[i] = 2.0;
    tz_logistic_params_default(&prm);
    prm.tol = 1e-8;
    prm.max_iter = 1000;
    mw = NULL;
    tz_logistic_fit(&prm, &wd, &mw, &err);
    prm.C = 2.0;
    tz_logistic_fit(&prm, &tr->data, &mc, &err);
    double worst = 0;
    for (int j = 0; j < 30 && mw && mc; j++)
        worst = fmax(worst, fabs(tz_logistic_coef(mw)[j] - tz_logistic_coef(mc)[j]) * tz_logistic_scales(mc)[j]);
    ok(mw && mc && worst < 1e-5, "weight 2 everywhere equals C doubled (%.2g)", worst);
    tz_logistic_free(mw);
    tz_logistic_free(mc);
    free(w);

    for (int d = 0; d < 4; d++) {
        tz_logistic_free(models[d]);
        test_dataset_free(&sets[d]);
    }
    return tap_done();
}
