/* Random forests on the shared data sets: accuracy floors a little under
 * scikit-learn 1.2's RandomForest on the same split, the out-of-bag score,
 * determinism across thread counts (child processes with TYCHO_THREADS
 * set), seeds, missing values, save/load, and bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataset.h"
#include "kernels/tz_forest.h"
#include "tap.h"
#include "util/tz_blob.h"

static double accuracy(const double *out, int K, const test_split *s)
{
    size_t right = 0;
    for (size_t i = 0; i < s->n_rows; i++) {
        int pred = 0;
        for (int k = 1; k < K; k++) if (out[i * K + k] > out[i * K + pred]) pred = k;
        right += pred == (int)s->y[i];
    }
    return (double)right / (double)s->n_rows;
}

static double r2(const double *out, const test_split *s)
{
    double mean = 0, sse = 0, sst = 0;
    for (size_t i = 0; i < s->n_rows; i++) mean += s->y[i];
    mean /= (double)s->n_rows;
    for (size_t i = 0; i < s->n_rows; i++) {
        sse += (out[i] - s->y[i]) * (out[i] - s->y[i]);
        sst += (s->y[i] - mean) * (s->y[i] - mean);
    }
    return 1 - sse / sst;
}

static double *predict(const tz_forest_model *m, const test_split *s)
{
    double *out = malloc(s->n_rows * (size_t)tz_forest_n_outputs(m) * sizeof *out);
    tz_err err;
    if (tz_forest_predict(m, &s->data, out, &err)) {
        printf("# predict: %s\n", err.msg);
        free(out);
        return NULL;
    }
    return out;
}

static uint32_t model_crc(const tz_forest_model *m, size_t *len)
{
    unsigned char *buf;
    tz_err err;
    if (tz_forest_save(m, &buf, len, &err)) return 0;
    uint32_t crc = tz_crc32(0, buf, *len - 4);
    free(buf);
    return crc;
}

static void punch_holes(test_split *s, size_t col, size_t every)
{
    for (size_t i = 0; i < s->n_rows; i += every) s->cols[col][i] = NAN;
}

static void det_params(tz_forest_params *p)
{
    tz_forest_params_default(p);
    p->n_classes = 2;
    p->n_trees = 24;
    p->seed = 11;
}

static int child(void)
{
    test_dataset ds;
    if (test_dataset_load("spam", 0, &ds)) return 1;
    punch_holes(&ds.train, 51, 10);
    tz_forest_params p;
    det_params(&p);
    tz_forest_model *m;
    tz_err err;
    if (tz_forest_fit(&p, &ds.train.data, &m, &err)) return 1;
    size_t len;
    uint32_t crc = model_crc(m, &len);
    printf("%08x %zu\n", crc, len);
    tz_forest_free(m);
    test_dataset_free(&ds);
    return 0;
}

/* Runs this test binary again (/proc/self/exe, which still works if the
 * file has been rebuilt meanwhile) with TYCHO_THREADS set, before any pool
 * exists in that process, and reads back its model's checksum. */
static int child_crc(int threads, uint32_t *crc, size_t *len)
{
    int fd[2];
    if (pipe(fd)) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        char n[16];
        snprintf(n, sizeof n, "%d", threads);
        setenv("TYCHO_THREADS", n, 1);
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execl("/proc/self/exe", "child", "--child", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    unsigned c = 0;
    int got = f ? fscanf(f, "%x %zu", &c, len) : 0;
    if (f) fclose(f);
    int status = 0;
    waitpid(pid, &status, 0);
    *crc = c;
    return got == 2 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--child")) return child();

    test_dataset spam, digits, letter, diamonds;
    if (test_dataset_load("spam", 0, &spam) || test_dataset_load("digits", 0, &digits) ||
        test_dataset_load("letter", 5000, &letter) || test_dataset_load("diamonds", 10000, &diamonds)) {
        printf("1..0 # SKIP shared data sets not found\n");
        return 0;
    }
    tz_forest_params p;
    tz_forest_model *m = NULL;
    tz_err err;
    double *out, a;

    /* --- accuracy floors (scikit-learn 1.2 RandomForest, same settings) */
    tz_forest_params_default(&p);
    p.n_classes = 2;
    is_int(tz_forest_fit(&p, &spam.train.data, &m, &err), 0, "spam: fit (%s)", err.msg);
    is_int(tz_forest_n_outputs(m), 2, "spam: two outputs");
    is_int(tz_forest_n_trees(m), 100, "spam: 100 trees");
    out = predict(m, &spam.test);
    ok(fabs(out[0] + out[1] - 1) < 1e-12, "spam: probabilities sum to 1");
    a = accuracy(out, 2, &spam.test);
    ok(a >= 0.950, "spam: accuracy %.4f >= 0.950 (scikit-learn 0.9555)", a);
    double oob = tz_forest_oob_score(m);
    ok(oob >= 0.940 && oob <= 1, "spam: out-of-bag accuracy %.4f >= 0.940 (scikit-learn 0.9481)", oob);
    double imp[57], imp_sum = 0;
    tz_forest_importance(m, imp);
    for (int j = 0; j < 57; j++) imp_sum += imp[j];
    ok(imp_sum > 0, "spam: importance adds up to a positive gain");

    unsigned char *buf;
    size_t len, len2;
    is_int(tz_forest_save(m, &buf, &len, &err), 0, "spam: save");
    tz_forest_model *m2 = NULL;
    is_int(tz_forest_load(buf, len, &m2, &err), 0, "spam: load (%s)", err.msg);
    double *out2 = m2 ? predict(m2, &spam.test) : NULL;
    ok(out2 && !memcmp(out, out2, spam.test.n_rows * 2 * sizeof *out), "spam: loaded model predicts the same");
    ok(m2 && tz_forest_oob_score(m2) == oob, "spam: loaded model keeps its out-of-bag score");
    ok(m2 && model_crc(m2, &len2) == tz_crc32(0, buf, len - 4) && len2 == len, "spam: loaded model saves to the same bytes");
    tz_forest_free(m2);
    free(out2);
    free(buf);
    free(out);
    tz_forest_free(m);

    p.n_classes = 10;
    is_int(tz_forest_fit(&p, &digits.train.data, &m, &err), 0, "digits: fit (%s)", err.msg);
    out = predict(m, &digits.test);
    a = accuracy(out, 10, &digits.test);
    ok(a >= 0.965, "digits: accuracy %.4f >= 0.965 (scikit-learn 0.9778)", a);
    free(out);
    tz_forest_free(m);

    p.n_classes = 26;
    p.n_trees = 50;
    is_int(tz_forest_fit(&p, &letter.train.data, &m, &err), 0, "letter[:5000]: fit (%s)", err.msg);
    out = predict(m, &letter.test);
    a = accuracy(out, 26, &letter.test);
    ok(a >= 0.895, "letter[:5000]: accuracy %.4f >= 0.895 (scikit-learn 0.9045, 50 trees)", a);
    free(out);
    tz_forest_free(m);

    tz_forest_params_default(&p);
    p.task = TZ_FOREST_REGRESS;
    p.n_trees = 50;
    is_int(tz_forest_fit(&p, &diamonds.train.data, &m, &err), 0, "diamonds[:10000]: fit (%s)", err.msg);
    is_int(tz_forest_n_outputs(m), 1, "diamonds: one output");
    out = predict(m, &diamonds.test);
    a = r2(out, &diamonds.test);
    ok(a >= 0.930, "diamonds[:10000]: R² %.4f >= 0.930 (scikit-learn 0.9376, max_features 1/3, 50 trees)", a);
    oob = tz_forest_oob_score(m);
    ok(oob >= 0.92 && oob <= 1, "diamonds: out-of-bag R² %.4f >= 0.92", oob);
    free(out);
    tz_forest_free(m);

    /* --- determinism: the same bytes for 1, 3 and the default threads */
    test_dataset holed;
    test_dataset_load("spam", 0, &holed);
    punch_holes(&holed.train, 51, 10);
    det_params(&p);
    is_int(tz_forest_fit(&p, &holed.train.data, &m, &err), 0, "determinism: fit");
    size_t l0, l1 = 0, l3 = 0, la;
    uint32_t c0 = model_crc(m, &l0), c1 = 0, c3 = 0, ca;
    tz_forest_free(m);
    is_int(child_crc(1, &c1, &l1), 0, "determinism: child with TYCHO_THREADS=1 ran");
    is_int(child_crc(3, &c3, &l3), 0, "determinism: child with TYCHO_THREADS=3 ran");
    ok(c0 == c1 && l0 == l1, "determinism: 1 thread gives the same model bytes (%08x vs %08x)", c1, c0);
    ok(c0 == c3 && l0 == l3, "determinism: 3 threads give the same model bytes (%08x vs %08x)", c3, c0);
    tz_forest_fit(&p, &holed.train.data, &m, &err);
    ca = model_crc(m, &la);
    tz_forest_free(m);
    ok(ca == c0 && la == l0, "same seed: identical bytes");
    p.seed = 12;
    tz_forest_fit(&p, &holed.train.data, &m, &err);
    ok(model_crc(m, &la) != c0, "another seed: another forest");
    tz_forest_free(m);

    /* --- no bootstrap: no out-of-bag score; max_features 1: all trees alike */
    det_params(&p);
    p.bootstrap = 0;
    p.n_trees = 3;
    p.max_features = 1;
    is_int(tz_forest_fit(&p, &spam.train.data, &m, &err), 0, "no bootstrap: fit");
    ok(isnan(tz_forest_oob_score(m)), "no bootstrap: the out-of-bag score is NaN");
    out = predict(m, &spam.train);
    a = accuracy(out, 2, &spam.train);
    ok(a >= 0.99, "no bootstrap, full depth: fits the training set (%.4f)", a);
    free(out);
    tz_forest_free(m);

    /* --- depth limit and leaf size */
    det_params(&p);
    p.max_depth = 1;
    tz_forest_fit(&p, &spam.train.data, &m, &err);
    unsigned char *sbuf;
    size_t slen;
    tz_forest_save(m, &sbuf, &slen, &err);
    tz_forest_free(m);
    p.max_depth = 0;
    p.min_samples_leaf = 50;
    tz_forest_fit(&p, &spam.train.data, &m, &err);
    size_t llen;
    model_crc(m, &llen);
    tz_forest_free(m);
    det_params(&p);
    tz_forest_fit(&p, &spam.train.data, &m, &err);
    size_t flen;
    model_crc(m, &flen);
    tz_forest_free(m);
    ok(slen < llen && llen < flen, "stumps < 50-row leaves < full trees in size (%zu, %zu, %zu)", slen, llen, flen);
    free(sbuf);

    /* --- missing values */
    punch_holes(&holed.train, 52, 10);
    punch_holes(&holed.test, 51, 10);
    punch_holes(&holed.test, 6, 7);
    for (size_t i = 0; i < holed.train.n_rows; i++) holed.train.cols[40][i] = NAN;
    tz_forest_params_default(&p);
    p.n_classes = 2;
    p.n_trees = 50;
    is_int(tz_forest_fit(&p, &holed.train.data, &m, &err), 0, "missing values: fit (%s)", err.msg);
    out = predict(m, &holed.test);
    int finite = 1;
    for (size_t i = 0; i < holed.test.n_rows * 2; i++) finite &= isfinite(out[i]);
    ok(finite, "missing values: every prediction is a number");
    a = accuracy(out, 2, &holed.test);
    ok(a >= 0.94, "missing values: accuracy %.4f >= 0.94", a);
    free(out);
    tz_forest_free(m);

    /* --- bad input */
    m = NULL;
    tz_forest_params_default(&p);
    p.n_classes = 2;
    double saved = spam.train.y[5];
    spam.train.y[5] = INFINITY;
    is_int(tz_forest_fit(&p, &spam.train.data, &m, &err), TZ_EINVAL, "infinite label: %s", err.msg);
    spam.train.y[5] = 2;
    is_int(tz_forest_fit(&p, &spam.train.data, &m, &err), TZ_EINVAL, "label 2 of 2 classes: %s", err.msg);
    spam.train.y[5] = 0.5;
    is_int(tz_forest_fit(&p, &spam.train.data, &m, &err), TZ_EINVAL, "label 0.5: %s", err.msg);
    spam.train.y[5] = saved;
    double *ones = malloc(spam.train.n_rows * sizeof *ones);
    for (size_t i = 0; i < spam.train.n_rows; i++) ones[i] = 1;
    tz_data one_class = spam.train.data;
    one_class.y = ones;
    is_int(tz_forest_fit(&p, &one_class, &m, &err), TZ_EINVAL, "single class refused");
    is_str(err.msg, "label has a single class", "single class: message");
    const char *bad[] = { "n_trees 0", "min_samples_leaf 0", "max_features 2", "max_bins 300",
                          "max_depth 65", "n_classes 1", "task 7" };
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        tz_forest_params_default(&p);
        p.n_classes = 2;
        switch (i) {
        case 0: p.n_trees = 0; break;
        case 1: p.min_samples_leaf = 0; break;
        case 2: p.max_features = 2; break;
        case 3: p.max_bins = 300; break;
        case 4: p.max_depth = 65; break;
        case 5: p.n_classes = 1; break;
        case 6: p.task = 7; break;
        }
        is_int(tz_forest_fit(&p, &spam.train.data, &m, &err), TZ_EINVAL, "%s: %s", bad[i], err.msg);
    }
    ok(m == NULL, "no model came out of the bad calls");
    tz_forest_params_default(&p);
    p.n_classes = 2;
    p.n_trees = 2;
    tz_forest_fit(&p, &spam.train.data, &m, &err);
    tz_data narrow = spam.test.data;
    narrow.n_cols = 58;
    double dummy[4];
    is_int(tz_forest_predict(m, &narrow, dummy, &err), TZ_EINVAL, "predict with 58 columns: %s", err.msg);
    ok(strstr(err.msg, "58") && strstr(err.msg, "57"), "the message names both counts");
    tz_forest_free(m);

    free(ones);
    test_dataset_free(&holed);
    test_dataset_free(&spam);
    test_dataset_free(&digits);
    test_dataset_free(&letter);
    test_dataset_free(&diamonds);
    return tap_done();
}
