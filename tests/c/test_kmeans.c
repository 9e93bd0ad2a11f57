/* tz_kmeans against scikit-learn 1.2.1 KMeans(n_clusters, n_init=10,
 * random_state) on the digits and letter train rows (reference numbers from
 * tests/c/kernels_reference.py), plus determinism across thread counts,
 * model files, empty clusters and bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "kernel_test.h"
#include "kernels/tz_kmeans.h"

/* sklearn inertia, random_state 0, 1, 2 (digits, k = 10), and 0 (letter, k = 26). */
static const double DIGITS_INERTIA[3] = { 932280.1173718169, 932042.2451295669, 932078.25350709 };
static const double LETTER_INERTIA = 490288.09554575116;

static test_dataset digits, letter;

static tz_kmeans_model *fit(const tz_data *d, int k, uint64_t seed, tz_err *err)
{
    tz_kmeans_params p;
    tz_kmeans_params_default(&p);
    p.k = k;
    p.seed = seed;
    tz_kmeans_model *m = NULL;
    if (tz_kmeans_fit(&p, d, &m, err)) return NULL;
    return m;
}

/* Child side of the determinism check: the model file, then predictions. */
static unsigned char *fit_bytes(void *ctx, size_t *len)
{
    tz_kmeans_model *m = fit(&digits.train.data, 10, 7, NULL);
    unsigned char *blob = NULL;
    size_t blen = 0;
    if (!m || tz_kmeans_save(m, &blob, &blen, NULL)) return NULL;
    size_t n = digits.test.n_rows;
    unsigned char *out = malloc(blen + n * sizeof(double));
    memcpy(out, blob, blen);
    double *pred = malloc(n * sizeof *pred);  /* out + blen is not aligned */
    tz_kmeans_predict(m, &digits.test.data, pred, NULL);
    memcpy(out + blen, pred, n * sizeof *pred);
    free(pred);
    free(blob);
    tz_kmeans_free(m);
    *len = blen + n * sizeof(double);
    return out;
}

static int load_use(void *ctx, const unsigned char *buf, size_t len, tz_err *err)
{
    tz_kmeans_model *m = NULL;
    int rc = tz_kmeans_load(buf, len, &m, err);
    if (rc) return rc;
    double out[8 * 64];
    tz_data few = digits.test.data;
    few.n_rows = 8;
    if (tz_kmeans_n_features(m) == few.n_cols && tz_kmeans_k(m) <= 64) {
        tz_kmeans_predict(m, &few, out, err);
        tz_kmeans_transform(m, &few, out, err);
    }
    tz_kmeans_free(m);
    return 0;
}

/* Sum of squared distances to the predicted centres. */
static double inertia_of(const tz_kmeans_model *m, const test_split *s)
{
    double *lab = malloc(s->n_rows * sizeof *lab), tot = 0;
    tz_kmeans_predict(m, &s->data, lab, NULL);
    const double *C = tz_kmeans_centroids(m);
    size_t p = s->n_cols;
    for (size_t i = 0; i < s->n_rows; i++)
        for (size_t j = 0; j < p; j++) {
            double d = s->cols[j][i] - C[(size_t)lab[i] * p + j];
            tot += d * d;
        }
    free(lab);
    return tot;
}

int main(void)
{
    if (test_dataset_load("digits", 0, &digits) != 0 || test_dataset_load("letter", 0, &letter) != 0) {
        printf("1..0 # SKIP data not found\n");
        return 0;
    }
    unsigned char *child = NULL;
    size_t child_len = 0;
    int child_rc = kt_run_with_threads("1", fit_bytes, NULL, &child, &child_len);
    setenv("TYCHO_THREADS", "2", 1);

    tz_err err;
    tz_kmeans_model *m = NULL;
    for (int seed = 0; seed < 3; seed++) {
        tz_kmeans_model *s = fit(&digits.train.data, 10, (uint64_t)seed, &err);
        if (!ok(s != NULL, "digits k=10 seed %d fits", seed)) {
            printf("#   %s\n", err.msg);
            continue;
        }
        double in = tz_kmeans_inertia(s);
        ok(fabs(in - DIGITS_INERTIA[seed]) <= 0.01 * DIGITS_INERTIA[seed],
           "digits seed %d: inertia %.1f within 1%% of sklearn's %.1f (%+.3f%%, %d iterations)", seed, in,
           DIGITS_INERTIA[seed], 100 * (in / DIGITS_INERTIA[seed] - 1), tz_kmeans_n_iter(s));
        is_close(inertia_of(s, &digits.train), in, 1e-9, 0, "digits seed %d: inertia matches predict", seed);
        if (seed == 0) m = s; else tz_kmeans_free(s);
    }
    tz_kmeans_model *lm = fit(&letter.train.data, 26, 0, &err);
    ok(lm && fabs(tz_kmeans_inertia(lm) - LETTER_INERTIA) <= 0.01 * LETTER_INERTIA,
       "letter k=26: inertia %.1f within 1%% of sklearn's %.1f", lm ? tz_kmeans_inertia(lm) : -1, LETTER_INERTIA);
    tz_kmeans_free(lm);

    /* Same seed, same bytes; thread count does not change a bit. */
    size_t len = 0;
    unsigned char *mine = fit_bytes(NULL, &len), *again = NULL;
    size_t len2 = 0;
    again = fit_bytes(NULL, &len2);
    ok(mine && again && len == len2 && !memcmp(mine, again, len), "same seed: identical model and predictions");
    ok(child_rc == 0 && mine && child_len == len && !memcmp(child, mine, len),
       "model bytes and predictions identical with TYCHO_THREADS=1 and 2");
    free(child);
    free(mine);
    free(again);

    /* predict, transform, accessors. */
    if (m) {
        size_t n = digits.test.n_rows, k = tz_kmeans_k(m);
        is_int(k, 10, "k accessor");
        is_int(tz_kmeans_n_features(m), 64, "n_features accessor");
        double *lab = malloc(n * sizeof *lab), *dist = malloc(n * k * sizeof *dist);
        is_int(tz_kmeans_predict(m, &digits.test.data, lab, &err), 0, "predicts");
        is_int(tz_kmeans_transform(m, &digits.test.data, dist, &err), 0, "transforms");
        int agree = 1;
        for (size_t i = 0; i < n; i++)
            for (size_t c = 0; c < k; c++) agree &= dist[i * k + c] >= dist[i * k + (size_t)lab[i]];
        ok(agree, "predict is the nearest centre of transform");

        unsigned char *blob = NULL;
        size_t blen = 0;
        tz_kmeans_model *back = NULL;
        is_int(tz_kmeans_save(m, &blob, &blen, &err), 0, "saves (%zu bytes)", blen);
        is_int(tz_kmeans_load(blob, blen, &back, &err), 0, "loads");
        double *lab2 = malloc(n * sizeof *lab2);
        tz_kmeans_predict(back, &digits.test.data, lab2, &err);
        ok(!memcmp(lab, lab2, n * sizeof *lab), "loaded model predicts identically");
        ok(tz_kmeans_inertia(back) == tz_kmeans_inertia(m) && tz_kmeans_n_iter(back) == tz_kmeans_n_iter(m),
           "inertia and n_iter kept");
        tz_kmeans_free(back);
        size_t refused = 0, loaded = 0;
        int fails = kt_fuzz_model(blob, blen, load_use, NULL, &refused, &loaded);
        is_int(fails, 0, "damaged files refused (%zu refusals, %zu re-signed mutants loaded safely)", refused, loaded);
        unsigned char *bad = malloc(blen);
        memcpy(bad, blob, blen);
        kt_poke_u64(bad, blen, 0, (uint64_t)1 << 62);
        is_int(tz_kmeans_load(bad, blen, &back, &err), TZ_ECORRUPT, "huge feature count refused: %s", err.msg);
        memcpy(bad, blob, blen);
        kt_poke_u32(bad, blen, 8, 0);
        is_int(tz_kmeans_load(bad, blen, &back, &err), TZ_ECORRUPT, "k = 0 refused: %s", err.msg);
        memcpy(bad, blob, blen);
        kt_poke_u32(bad, blen, 8, 0xffffffffu);
        is_int(tz_kmeans_load(bad, blen, &back, &err), TZ_ECORRUPT, "huge k refused: %s", err.msg);
        memcpy(bad, blob, blen);
        kt_poke_u32(bad, blen, 8, 5);
        is_int(tz_kmeans_load(bad, blen, &back, &err), TZ_ECORRUPT, "k vs file size refused: %s", err.msg);
        memcpy(bad, blob, blen);
        memset(bad + 24 + 16, 0xff, 8);  /* inertia = NaN */
        kt_set_crc(bad, blen);
        is_int(tz_kmeans_load(bad, blen, &back, &err), TZ_ECORRUPT, "NaN inertia refused: %s", err.msg);
        free(bad);
        free(blob);

        tz_data few = digits.test.data;
        few.n_cols = 63;
        is_int(tz_kmeans_predict(m, &few, lab, &err), TZ_EINVAL, "wrong column count refused: %s", err.msg);
        free(lab);
        free(lab2);
        free(dist);
        tz_kmeans_free(m);
    }

    /* Bad input. */
    tz_kmeans_model *none = NULL;
    tz_kmeans_params prm;
    tz_kmeans_params_default(&prm);
    prm.k = 10;
    double keep = digits.train.cols[12][100];
    digits.train.cols[12][100] = NAN;
    is_int(tz_kmeans_fit(&prm, &digits.train.data, &none, &err), TZ_EINVAL, "NaN refused: %s", err.msg);
    ok(strstr(err.msg, "column 12") != NULL && !none, "message names column 12");
    digits.train.cols[12][100] = keep;
    tz_data tiny = digits.train.data;
    tiny.n_rows = 9;
    is_int(tz_kmeans_fit(&prm, &tiny, &none, &err), TZ_EINVAL, "k > rows refused: %s", err.msg);
    prm.k = 0;
    is_int(tz_kmeans_fit(&prm, &digits.train.data, &none, &err), TZ_EINVAL, "k = 0 refused");

    /* Empty clusters: 3 distinct points repeated, k = 5. */
    double a[30], b[30];
    for (int i = 0; i < 30; i++) {
        a[i] = (double)(i % 3);
        b[i] = (double)(i % 3) * 10;
    }
    const double *cols[2] = { a, b };
    tz_data dup = { 30, 2, cols, NULL, NULL };
    prm.k = 5;
    int rc = tz_kmeans_fit(&prm, &dup, &none, &err);
    ok(rc == 0, "fewer distinct points than k: fits (%s)", rc ? err.msg : "ok");
    if (!rc) {
        int finite = 1;
        for (int v = 0; v < 10; v++) finite &= isfinite(tz_kmeans_centroids(none)[v]) != 0;
        ok(finite && tz_kmeans_inertia(none) == 0, "finite centres, inertia 0");
        tz_kmeans_free(none);
    }

    /* Three separated blobs are found; k = 1 is the (weighted) mean. */
    size_t nb = 3000;
    double *x = malloc(nb * sizeof *x), *y = malloc(nb * sizeof *y), *w = malloc(nb * sizeof *w);
    tz_rng rng;
    tz_rng_seed(&rng, 1);
    for (size_t i = 0; i < nb; i++) {
        x[i] = (double)(i % 3) * 100 + tz_rng_uniform(&rng) - 0.5;
        y[i] = (double)(i % 3 == 1) * 50 + tz_rng_uniform(&rng) - 0.5;
        w[i] = i < nb / 2 ? 3.0 : 1.0;
    }
    const double *bc[2] = { x, y };
    tz_data blobs = { nb, 2, bc, NULL, NULL };
    prm.k = 3;
    prm.n_init = 1;
    tz_kmeans_fit(&prm, &blobs, &none, &err);
    int found = 0;
    for (int c = 0; c < 3 && none; c++) {
        const double *ctr = tz_kmeans_centroids(none) + 2 * c;
        for (int t = 0; t < 3; t++) found += fabs(ctr[0] - t * 100) < 0.1 && fabs(ctr[1] - (t == 1) * 50) < 0.1;
    }
    is_int(found, 3, "three blobs found");
    tz_kmeans_free(none);
    prm.k = 1;
    blobs.weight = w;
    tz_kmeans_fit(&prm, &blobs, &none, &err);
    double sx = 0, sw = 0;
    for (size_t i = 0; i < nb; i++) {
        sx += w[i] * x[i];
        sw += w[i];
    }
    is_close(tz_kmeans_centroids(none)[0], sx / sw, 1e-12, 1e-9, "k = 1 with weights: the weighted mean");
    tz_kmeans_free(none);
    w[5] = NAN;
    is_int(tz_kmeans_fit(&prm, &blobs, &none, &err), TZ_EINVAL, "NaN weight refused");
    free(x);
    free(y);
    free(w);

    test_dataset_free(&digits);
    test_dataset_free(&letter);
    return tap_done();
}
