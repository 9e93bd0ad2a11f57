/* Gradient-boosted trees on the shared data sets: accuracy floors a little
 * under what XGBoost 1.7 (hist) reaches on the same split, determinism
 * across thread counts (child processes with TYCHO_THREADS set), seeds,
 * early stopping, missing values, save/load, and bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataset.h"
#include "kernels/tz_gbt.h"
#include "tap.h"
#include "util/tz_blob.h"

/* Area under the ROC curve by ranking (ties share ranks). */
static double auc(const double *score, const double *y, size_t n)
{
    size_t *idx = malloc(n * sizeof *idx);
    for (size_t i = 0; i < n; i++) idx[i] = i;
    for (size_t i = 1; i < n; i++) {  /* insertion sort: n is a test split */
        size_t v = idx[i], j = i;
        for (; j > 0 && score[idx[j - 1]] > score[v]; j--) idx[j] = idx[j - 1];
        idx[j] = v;
    }
    double rank_pos = 0, npos = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && score[idx[j]] == score[idx[i]]) j++;
        double r = (double)(i + j + 1) / 2;  /* 1-based average rank */
        for (size_t k = i; k < j; k++)
            if (y[idx[k]] == 1) { rank_pos += r; npos++; }
        i = j;
    }
    free(idx);
    double nneg = (double)n - npos;
    return (rank_pos - npos * (npos + 1) / 2) / (npos * nneg);
}

static double accuracy(const double *out, int K, const test_split *s)
{
    size_t right = 0;
    for (size_t i = 0; i < s->n_rows; i++) {
        int pred;
        if (K == 1) {
            pred = out[i] > 0.5;
        } else {
            pred = 0;
            for (int k = 1; k < K; k++) if (out[i * K + k] > out[i * K + pred]) pred = k;
        }
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

static double *predict(const tz_gbt_model *m, const test_split *s)
{
    double *out = malloc(s->n_rows * (size_t)tz_gbt_n_outputs(m) * sizeof *out);
    tz_err err;
    if (tz_gbt_predict(m, &s->data, out, &err)) {
        printf("# predict: %s\n", err.msg);
        free(out);
        return NULL;
    }
    return out;
}

/* Rows predicted alone, or a few at a time (the trees then walk in
 * lockstep for one row, not rows in lockstep for one tree), give the bits
 * they get among all of s's rows. */
static int few_rows_agree(const tz_gbt_model *m, const test_split *s, const double *all)
{
    int K = tz_gbt_n_outputs(m), same = 1;
    size_t nc = s->data.n_cols, rows = s->n_rows < 200 ? s->n_rows : 200;
    const double **cols = malloc(nc * sizeof *cols);
    double out[3 * 32];
    for (size_t i = 0; i + 3 <= rows && K <= 32; i += 3) {
        for (size_t width = 1; width <= 3; width += 2) {
            for (size_t j = 0; j < nc; j++) cols[j] = s->data.cols[j] + i;
            tz_data few = { .n_rows = width, .n_cols = nc, .cols = cols };
            tz_err err;
            if (tz_gbt_predict(m, &few, out, &err)) return 0;
            same &= memcmp(out, all + i * (size_t)K, width * (size_t)K * sizeof *out) == 0;
        }
    }
    free(cols);
    return same;
}

static uint32_t model_crc(const tz_gbt_model *m, size_t *len)
{
    unsigned char *buf;
    tz_err err;
    if (tz_gbt_save(m, &buf, len, &err)) return 0;
    uint32_t crc = tz_crc32(0, buf, *len - 4);  /* (of everything but the CRC itself) */
    free(buf);
    return crc;
}

/* The determinism fit: subsampling, column sampling and missing values. */
static void det_params(tz_gbt_params *p)
{
    tz_gbt_params_default(p);
    p->objective = TZ_GBT_LOGISTIC;
    p->rounds = 20;
    p->subsample = 0.8;
    p->colsample = 0.6;
    p->seed = 7;
}

static void punch_holes(test_split *s, size_t col, size_t every)
{
    for (size_t i = 0; i < s->n_rows; i += every) s->cols[col][i] = NAN;
}

static int child(void)
{
    test_dataset ds;
    if (test_dataset_load("spam", 0, &ds)) return 1;
    punch_holes(&ds.train, 51, 10);
    tz_gbt_params p;
    det_params(&p);
    tz_gbt_model *m;
    tz_err err;
    if (tz_gbt_fit(&p, &ds.train.data, NULL, NULL, NULL, &m, &err)) return 1;
    size_t len;
    uint32_t crc = model_crc(m, &len);
    printf("%08x %zu\n", crc, len);
    tz_gbt_free(m);
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

typedef struct progress_log {
    int calls, last_round, stop_at;
    double last_valid;
} progress_log;

static int on_progress(void *ud, int round, double train_loss, double valid_loss)
{
    progress_log *l = ud;
    l->calls++;
    if (round != l->last_round + 1) l->last_round = -1000;  /* flags a skipped round */
    else l->last_round = round;
    l->last_valid = valid_loss;
    (void)train_loss;
    return l->stop_at && round >= l->stop_at;
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
    tz_gbt_params p;
    tz_gbt_model *m = NULL;
    tz_err err;
    double *out;

    /* --- accuracy floors (XGBoost 1.7 hist, same settings, in comments) */
    tz_gbt_params_default(&p);
    p.objective = TZ_GBT_LOGISTIC;
    is_int(tz_gbt_fit(&p, &spam.train.data, NULL, NULL, NULL, &m, &err), 0, "spam: fit (%s)", err.msg);
    is_int(tz_gbt_n_outputs(m), 1, "spam: one output");
    is_int(tz_gbt_rounds(m), 100, "spam: 100 rounds");
    out = predict(m, &spam.test);
    double a = accuracy(out, 1, &spam.test), u = auc(out, spam.test.y, spam.test.n_rows);
    ok(a >= 0.950, "spam: accuracy %.4f >= 0.950 (xgboost 0.9577)", a);
    ok(u >= 0.980, "spam: AUC %.4f >= 0.980 (xgboost 0.9878)", u);
    double imp[57];
    tz_gbt_importance(m, imp);
    double imp_sum = 0;
    for (int j = 0; j < 57; j++) imp_sum += imp[j];
    ok(imp_sum > 0, "spam: importance adds up to a positive gain");

    /* save / load round trip: same predictions, same bytes */
    unsigned char *buf;
    size_t len;
    is_int(tz_gbt_save(m, &buf, &len, &err), 0, "spam: save");
    tz_gbt_model *m2 = NULL;
    is_int(tz_gbt_load(buf, len, &m2, &err), 0, "spam: load (%s)", err.msg);
    double *out2 = m2 ? predict(m2, &spam.test) : NULL;
    ok(out2 && !memcmp(out, out2, spam.test.n_rows * sizeof *out), "spam: loaded model predicts the same");
    size_t len2;
    uint32_t crc1 = tz_crc32(0, buf, len - 4), crc2 = m2 ? model_crc(m2, &len2) : 0;
    ok(crc1 == crc2 && len == len2, "spam: loaded model saves to the same bytes");
    tz_gbt_free(m2);
    free(buf);
    free(out);
    free(out2);
    tz_gbt_free(m);

    tz_gbt_params_default(&p);
    p.objective = TZ_GBT_SOFTMAX;
    p.n_classes = 10;
    p.rounds = 30;
    is_int(tz_gbt_fit(&p, &digits.train.data, NULL, NULL, NULL, &m, &err), 0, "digits: fit (%s)", err.msg);
    is_int(tz_gbt_n_outputs(m), 10, "digits: ten outputs");
    out = predict(m, &digits.test);
    double psum = 0;
    for (int k = 0; k < 10; k++) psum += out[k];
    ok(fabs(psum - 1) < 1e-9, "digits: probabilities sum to 1");
    a = accuracy(out, 10, &digits.test);
    ok(a >= 0.950, "digits: accuracy %.4f >= 0.950 (xgboost 0.9639, 30 rounds)", a);
    ok(few_rows_agree(m, &digits.test, out), "digits: one or three rows alone get the bits they get among all");
    free(out);
    tz_gbt_free(m);

    p.n_classes = 26;
    is_int(tz_gbt_fit(&p, &letter.train.data, NULL, NULL, NULL, &m, &err), 0, "letter[:5000]: fit (%s)", err.msg);
    out = predict(m, &letter.test);
    a = accuracy(out, 26, &letter.test);
    ok(a >= 0.885, "letter[:5000]: accuracy %.4f >= 0.885 (xgboost 0.8965, 30 rounds)", a);
    free(out);
    tz_gbt_free(m);

    tz_gbt_params_default(&p);
    is_int(tz_gbt_fit(&p, &diamonds.train.data, NULL, NULL, NULL, &m, &err), 0, "diamonds[:10000]: fit (%s)", err.msg);
    out = predict(m, &diamonds.test);
    a = r2(out, &diamonds.test);
    ok(a >= 0.930, "diamonds[:10000]: R² %.4f >= 0.930 (xgboost 0.9390)", a);
    free(out);
    tz_gbt_free(m);

    /* --- determinism: the same bytes for 1, 3 and the default threads */
    test_dataset holed;
    test_dataset_load("spam", 0, &holed);
    punch_holes(&holed.train, 51, 10);
    det_params(&p);
    is_int(tz_gbt_fit(&p, &holed.train.data, NULL, NULL, NULL, &m, &err), 0, "determinism: fit");
    size_t l0, l1 = 0, l3 = 0;
    uint32_t c0 = model_crc(m, &l0), c1 = 0, c3 = 0;
    tz_gbt_free(m);
    is_int(child_crc(1, &c1, &l1), 0, "determinism: child with TYCHO_THREADS=1 ran");
    is_int(child_crc(3, &c3, &l3), 0, "determinism: child with TYCHO_THREADS=3 ran");
    ok(c0 == c1 && l0 == l1, "determinism: 1 thread gives the same model bytes (%08x vs %08x)", c1, c0);
    ok(c0 == c3 && l0 == l3, "determinism: 3 threads give the same model bytes (%08x vs %08x)", c3, c0);

    tz_gbt_fit(&p, &holed.train.data, NULL, NULL, NULL, &m, &err);
    size_t la;
    uint32_t ca = model_crc(m, &la);
    tz_gbt_free(m);
    ok(ca == c0 && la == l0, "same seed: identical bytes");
    p.seed = 8;
    tz_gbt_fit(&p, &holed.train.data, NULL, NULL, NULL, &m, &err);
    ca = model_crc(m, &la);
    tz_gbt_free(m);
    ok(ca != c0, "another seed: another model");

    /* weights of 1 are the same as no weights */
    double *ones = malloc(spam.train.n_rows * sizeof *ones);
    for (size_t i = 0; i < spam.train.n_rows; i++) ones[i] = 1;
    det_params(&p);
    tz_gbt_fit(&p, &holed.train.data, NULL, NULL, NULL, &m, &err);
    ca = model_crc(m, &la);
    tz_gbt_free(m);
    holed.train.data.weight = ones;
    tz_gbt_fit(&p, &holed.train.data, NULL, NULL, NULL, &m, &err);
    ok(model_crc(m, &la) == ca, "unit weights give the same model as none");
    tz_gbt_free(m);
    holed.train.data.weight = NULL;

    /* --- missing values: 10% of two strong columns, an all-NaN column */
    punch_holes(&holed.train, 52, 10);
    punch_holes(&holed.test, 51, 10);
    punch_holes(&holed.test, 6, 7);  /* never missing in training */
    for (size_t i = 0; i < holed.train.n_rows; i++) holed.train.cols[40][i] = NAN;
    tz_gbt_params_default(&p);
    p.objective = TZ_GBT_LOGISTIC;
    is_int(tz_gbt_fit(&p, &holed.train.data, NULL, NULL, NULL, &m, &err), 0, "missing values: fit (%s)", err.msg);
    out = predict(m, &holed.test);
    int finite = 1;
    for (size_t i = 0; i < holed.test.n_rows; i++) finite &= isfinite(out[i]);
    ok(finite, "missing values: every prediction is a number");
    ok(few_rows_agree(m, &holed.test, out), "missing values: rows alone agree with rows among all, NaN included");
    a = accuracy(out, 1, &holed.test);
    ok(a >= 0.94, "missing values: accuracy %.4f >= 0.94", a);
    free(out);
    tz_gbt_free(m);

    /* --- early stopping and the progress callback */
    tz_gbt_params_default(&p);
    p.objective = TZ_GBT_LOGISTIC;
    p.rounds = 1000;
    p.early_stopping_rounds = 10;
    progress_log log = { 0 };
    is_int(tz_gbt_fit(&p, &spam.train.data, &spam.test.data, on_progress, &log, &m, &err), 0,
           "early stopping: fit (%s)", err.msg);
    ok(log.calls < 1000, "early stopping: stopped after %d of 1000 rounds", log.calls);
    ok(log.last_round == log.calls, "progress: called once per round, in order");
    ok(isfinite(log.last_valid), "progress: gets the validation loss");
    is_int(tz_gbt_rounds(m), log.calls - 10, "early stopping: keeps the best %d rounds", tz_gbt_rounds(m));
    tz_gbt_free(m);

    tz_gbt_params_default(&p);
    p.objective = TZ_GBT_LOGISTIC;
    log = (progress_log){ .stop_at = 5 };
    is_int(tz_gbt_fit(&p, &spam.train.data, NULL, on_progress, &log, &m, &err), 0, "progress stop: fit");
    is_int(tz_gbt_rounds(m), 5, "progress: a non-zero return stops training");
    ok(isnan(log.last_valid), "progress: NaN validation loss without a validation set");
    tz_gbt_free(m);

    /* --- bad input */
    m = NULL;
    tz_gbt_params_default(&p);
    p.objective = TZ_GBT_LOGISTIC;
    double saved = spam.train.y[3];
    spam.train.y[3] = NAN;
    is_int(tz_gbt_fit(&p, &spam.train.data, NULL, NULL, NULL, &m, &err), TZ_EINVAL, "NaN label: %s", err.msg);
    spam.train.y[3] = 2;
    is_int(tz_gbt_fit(&p, &spam.train.data, NULL, NULL, NULL, &m, &err), TZ_EINVAL, "logistic label 2: %s", err.msg);
    spam.train.y[3] = saved;
    p.objective = TZ_GBT_SOFTMAX;
    p.n_classes = 10;
    saved = digits.train.y[0];
    digits.train.y[0] = 3.5;
    is_int(tz_gbt_fit(&p, &digits.train.data, NULL, NULL, NULL, &m, &err), TZ_EINVAL, "softmax label 3.5: %s", err.msg);
    digits.train.y[0] = 10;
    is_int(tz_gbt_fit(&p, &digits.train.data, NULL, NULL, NULL, &m, &err), TZ_EINVAL, "softmax label 10 of 10: %s", err.msg);
    digits.train.y[0] = saved;
    double *zeros = calloc(spam.train.n_rows, sizeof *zeros);
    tz_data one_class = spam.train.data;
    one_class.y = zeros;
    p.objective = TZ_GBT_LOGISTIC;
    is_int(tz_gbt_fit(&p, &one_class, NULL, NULL, NULL, &m, &err), TZ_EINVAL, "single class refused");
    is_str(err.msg, "label has a single class", "single class: message");
    ok(m == NULL, "a failed fit leaves *out alone");

    tz_gbt_params_default(&p);
    p.objective = TZ_GBT_LOGISTIC;
    p.rounds = 3;
    tz_gbt_fit(&p, &spam.train.data, NULL, NULL, NULL, &m, &err);
    tz_data narrow = spam.test.data;
    narrow.n_cols = 56;
    double dummy[1000];
    is_int(tz_gbt_predict(m, &narrow, dummy, &err), TZ_EINVAL, "predict with 56 columns: %s", err.msg);
    ok(strstr(err.msg, "56") && strstr(err.msg, "57"), "the message names both counts");
    tz_gbt_free(m);
    m = NULL;

    const char *bad[] = { "rounds 0", "max_bins 1", "subsample 0", "learning_rate 0",
                          "max_depth 0", "colsample 1.5", "lambda -1", "softmax with 1 class" };
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        tz_gbt_params_default(&p);
        p.objective = TZ_GBT_LOGISTIC;
        switch (i) {
        case 0: p.rounds = 0; break;
        case 1: p.max_bins = 1; break;
        case 2: p.subsample = 0; break;
        case 3: p.learning_rate = 0; break;
        case 4: p.max_depth = 0; break;
        case 5: p.colsample = 1.5; break;
        case 6: p.lambda = -1; break;
        case 7: p.objective = TZ_GBT_SOFTMAX; p.n_classes = 1; break;
        }
        is_int(tz_gbt_fit(&p, &spam.train.data, NULL, NULL, NULL, &m, &err), TZ_EINVAL, "%s: %s", bad[i], err.msg);
    }
    tz_gbt_params_default(&p);
    p.objective = TZ_GBT_LOGISTIC;
    p.early_stopping_rounds = 5;
    is_int(tz_gbt_fit(&p, &spam.train.data, NULL, NULL, NULL, &m, &err), TZ_EINVAL,
           "early stopping without a validation set: %s", err.msg);
    p.early_stopping_rounds = 0;
    is_int(tz_gbt_fit(&p, &spam.train.data, &narrow, NULL, NULL, &m, &err), TZ_EINVAL,
           "validation set with other columns: %s", err.msg);
    ok(m == NULL, "no model came out of the bad calls");

    free(ones);
    free(zeros);
    test_dataset_free(&holed);
    test_dataset_free(&spam);
    test_dataset_free(&digits);
    test_dataset_free(&letter);
    test_dataset_free(&diamonds);
    return tap_done();
}
