/* Loading damaged tree models (tz_gbt kind 1, tz_forest kind 2) must fail
 * cleanly, never crash or over-read: truncation at every offset, byte
 * flips, and the same with the container's length and CRC-32 recomputed
 * (so the loaders' own checks of counts and indices are what stops them),
 * plus hand-made bad indices. Meant to run under the sanitizer build too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "kernels/tz_forest.h"
#include "kernels/tz_gbt.h"
#include "tap.h"
#include "util/tz_blob.h"

#define HEADER 24  /* magic, version, kind, payload length */

typedef struct kind_ops {
    const char *name;
    int (*load)(const void *buf, size_t len, void **out, tz_err *err);
    int (*predict)(const void *m, const tz_data *x, double *out, tz_err *err);
    int (*n_outputs)(const void *m);
    void (*free)(void *m);
} kind_ops;

static int gbt_load(const void *b, size_t n, void **o, tz_err *e) { return tz_gbt_load(b, n, (tz_gbt_model **)o, e); }
static int gbt_predict(const void *m, const tz_data *x, double *o, tz_err *e) { return tz_gbt_predict(m, x, o, e); }
static int gbt_nout(const void *m) { return tz_gbt_n_outputs(m); }
static void gbt_free(void *m) { tz_gbt_free(m); }
static int rf_load(const void *b, size_t n, void **o, tz_err *e) { return tz_forest_load(b, n, (tz_forest_model **)o, e); }
static int rf_predict(const void *m, const tz_data *x, double *o, tz_err *e) { return tz_forest_predict(m, x, o, e); }
static int rf_nout(const void *m) { return tz_forest_n_outputs(m); }
static void rf_free(void *m) { tz_forest_free(m); }

static const kind_ops GBT = { "gbt", gbt_load, gbt_predict, gbt_nout, gbt_free };
static const kind_ops RF = { "forest", rf_load, rf_predict, rf_nout, rf_free };

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A valid container around the first plen payload bytes of buf, padded
 * with `extra` zero bytes; the caller frees it. */
static unsigned char *rewrap(const unsigned char *buf, size_t plen, size_t extra, size_t *out_len)
{
    size_t len = HEADER + plen + extra + 4;
    unsigned char *w = calloc(1, len);
    memcpy(w, buf, HEADER + plen);
    put_le(w + 16, plen + extra, 8);
    put_le(w + len - 4, tz_crc32(0, w, len - 4), 4);
    *out_len = len;
    return w;
}

static void fix_crc(unsigned char *buf, size_t len) { put_le(buf + len - 4, tz_crc32(0, buf, len - 4), 4); }

/* Loads buf; a success must give a model that predicts (no crash). Returns
 * the load's code, or 1 for an unexpected code. */
static int try_load(const kind_ops *k, const unsigned char *buf, size_t len, const tz_data *x)
{
    void *m = NULL;
    tz_err err;
    int rc = k->load(buf, len, &m, &err);
    if (rc == 0) {
        double *out = malloc(x->n_rows * (size_t)k->n_outputs(m) * sizeof *out);
        k->predict(m, x, out, &err);  /* may refuse (another column count), must not crash */
        free(out);
        k->free(m);
        return 0;
    }
    if (m) return 1;  /* a failed load must not hand out a model */
    return rc == TZ_ECORRUPT || rc == TZ_EINVAL || rc == TZ_ENOMEM ? rc : 1;
}

static void hammer(const kind_ops *k, const char *what, const unsigned char *buf, size_t len, const tz_data *x,
                   size_t nf)
{
    unsigned char *copy = malloc(len);
    tz_err err;
    void *m = NULL;
    is_int(k->load(buf, len, &m, &err), 0, "%s %s: the model loads (%zu bytes)", k->name, what, len);
    k->free(m);

    int bad = 0;
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *t = malloc(cut ? cut : 1);  /* exact size, so ASan sees an over-read */
        memcpy(t, buf, cut);
        int rc = try_load(k, t, cut, x);
        bad += rc == 0 || rc == 1;
        free(t);
    }
    is_int(bad, 0, "%s %s: truncated at every offset, every load fails cleanly", k->name, what);

    bad = 0;
    for (size_t i = 0; i < len; i++) {
        static const unsigned char flips[] = { 0x01, 0x80, 0xff };
        for (int f = 0; f < 3; f++) {
            memcpy(copy, buf, len);
            copy[i] ^= flips[f];
            int rc = try_load(k, copy, len, x);
            bad += rc == 0 || rc == 1;
        }
    }
    is_int(bad, 0, "%s %s: every flipped byte is caught", k->name, what);

    size_t plen = len - HEADER - 4;
    bad = 0;
    for (size_t cut = 0; cut < plen; cut++) {
        size_t wl;
        unsigned char *w = rewrap(buf, cut, 0, &wl);
        int rc = try_load(k, w, wl, x);
        bad += rc != TZ_ECORRUPT;
        free(w);
    }
    for (size_t extra = 1; extra <= 9; extra += 8) {
        size_t wl;
        unsigned char *w = rewrap(buf, plen, extra, &wl);
        bad += try_load(k, w, wl, x) != TZ_ECORRUPT;
        free(w);
    }
    is_int(bad, 0, "%s %s: a re-checksummed short or padded payload is TZ_ECORRUPT", k->name, what);

    /* Flips with the checksum recomputed: leaf values and thresholds may
     * well load (they are just numbers); everything else must be refused.
     * Either way, no crash. */
    int unexpected = 0, loaded = 0, refused = 0;
    for (size_t i = HEADER; i < len - 4; i++) {
        static const unsigned char flips[] = { 0x01, 0x10, 0x80, 0xff };
        for (int f = 0; f < 4; f++) {
            memcpy(copy, buf, len);
            copy[i] ^= flips[f];
            fix_crc(copy, len);
            int rc = try_load(k, copy, len, x);
            unexpected += rc == 1;
            loaded += rc == 0;
            refused += rc < 0;
        }
    }
    is_int(unexpected, 0, "%s %s: re-checksummed flips: %d refused, %d loaded as other numbers, none crashed",
           k->name, what, refused, loaded);

    /* Hand-made structural damage in the first tree, checksum fixed. */
    size_t tree = HEADER + 24 + nf * 8, node0 = tree + 8;
    struct { const char *what; size_t at; int bytes; uint64_t v; } cases[] = {
        { "feature count 0", HEADER + 4, 4, 0 },
        { "feature count 2^32-1", HEADER + 4, 4, 0xffffffffu },
        { "tree count 2^32-1", HEADER + 12, 4, 0xffffffffu },
        { "node count 2^31", tree, 4, 0x80000000u },
        { "node count 0", tree, 4, 0 },
        { "leaf count 2^32-1", tree + 4, 4, 0xffffffffu },
        { "root's feature out of range", node0, 4, nf },
        { "root's left child is itself", node0 + 4, 4, 0 },
        { "root's right child out of range", node0 + 8, 4, 1000000 },
        { "root's default direction 2", node0 + 12, 1, 2 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memcpy(copy, buf, len);
        put_le(copy + cases[c].at, cases[c].v, cases[c].bytes);
        fix_crc(copy, len);
        m = NULL;
        int rc = k->load(copy, len, &m, &err);
        ok(rc == TZ_ECORRUPT && !m, "%s %s: %s: %s", k->name, what, cases[c].what, err.msg);
        k->free(m);
    }

    /* Random bytes after a valid model header, re-checksummed. */
    tz_rng rng;
    tz_rng_seed(&rng, 42);
    unexpected = 0;
    for (int rep = 0; rep < 2000; rep++) {
        size_t body = (size_t)tz_rng_below(&rng, len - HEADER - 4 + 64);
        size_t keep = body < 24 + nf * 8 ? body : 24 + nf * 8;  /* the model header, kept valid */
        size_t wl;
        unsigned char *w = rewrap(buf, keep, body - keep, &wl);
        for (size_t i = HEADER + keep; i < HEADER + body; i++) w[i] = (unsigned char)tz_rng_next(&rng);
        if (rep & 1)  /* plausible small counts */
            for (size_t i = HEADER + keep; i + 4 <= HEADER + body; i += 29) w[i + 1] = w[i + 2] = w[i + 3] = 0;
        fix_crc(w, wl);
        unexpected += try_load(k, w, wl, x) == 1;
        free(w);
    }
    is_int(unexpected, 0, "%s %s: random payloads behind a valid header fail cleanly", k->name, what);

    /* Foreign and cross-kind files. */
    is_int(k->load("TYCHOBLB", 8, &m, &err), TZ_ECORRUPT, "%s: 8 bytes: %s", k->name, err.msg);
    free(copy);
}

/* A gbt file of version 2 (flags after the base margin), as the XGBoost
 * importer writes one: squared error, one feature, two single-leaf trees
 * worth 1e8 and 1, so a float32 sum (1e8) and a double one (100000001)
 * differ. */
static void put_v2(unsigned char **buf, size_t *len, uint32_t flags)
{
    tz_blob_writer w;
    tz_err err;
    tz_blob_writer_init(&w);
    tz_blob_put_u32(&w, TZ_GBT_SQUARED);
    tz_blob_put_u32(&w, 1);  /* features */
    tz_blob_put_u32(&w, 1);  /* outputs */
    tz_blob_put_u32(&w, 2);  /* rounds */
    tz_blob_put_f64(&w, 0);
    tz_blob_put_u32(&w, flags);
    tz_blob_put_f64(&w, 0);  /* importance */
    const double leaves[] = { 1e8, 1 };
    for (int t = 0; t < 2; t++) {
        tz_blob_put_u32(&w, 0);
        tz_blob_put_u32(&w, 1);
        tz_blob_put_f64(&w, leaves[t]);
    }
    tz_blob_finish(&w, 1, 2, buf, len, &err);
}

static void test_flags(void)
{
    unsigned char *buf, *again;
    size_t len, len2;
    tz_err err;
    tz_gbt_model *m = NULL;
    double x0 = 0.5, out = 0;
    const double *cols[] = { &x0 };
    tz_data x = { .n_rows = 1, .n_cols = 1, .cols = cols };

    put_v2(&buf, &len, TZ_GBT_SUM_F32);
    is_int(tz_gbt_load(buf, len, &m, &err), 0, "gbt version 2 with TZ_GBT_SUM_F32 loads");
    tz_gbt_predict(m, &x, &out, &err);
    ok(out == 1e8, "TZ_GBT_SUM_F32: leaves summed in float32 (%.1f)", out);
    is_int(tz_gbt_save(m, &again, &len2, &err), 0, "it saves");
    ok(len2 == len && !memcmp(buf, again, len), "to the same version-2 bytes");
    free(again);
    tz_gbt_free(m);
    free(buf);

    /* No writer makes version 2 without flags, and a model has one encoding
     * (save(load(bytes)) == bytes, as model_fuzz checks). */
    put_v2(&buf, &len, 0);
    m = NULL;
    is_int(tz_gbt_load(buf, len, &m, &err), TZ_ECORRUPT, "gbt version 2 without flags: %s", err.msg);
    ok(!m, "and no model");
    free(buf);

    put_v2(&buf, &len, 2);
    m = NULL;
    is_int(tz_gbt_load(buf, len, &m, &err), TZ_ECORRUPT, "unknown flags: %s", err.msg);
    ok(!m, "and no model");
    free(buf);
}

int main(void)
{
    test_dataset bc, dia;
    if (test_dataset_load("breast_cancer", 0, &bc) || test_dataset_load("diamonds", 2000, &dia)) {
        printf("1..0 # SKIP shared data sets not found\n");
        return 0;
    }
    test_flags();
    for (size_t i = 0; i < bc.train.n_rows; i += 9) bc.train.cols[3][i] = NAN;  /* default directions */
    tz_data x = bc.test.data;
    x.n_rows = 20;
    tz_err err;
    unsigned char *buf;
    size_t len;

    tz_gbt_params gp;
    tz_gbt_params_default(&gp);
    gp.objective = TZ_GBT_LOGISTIC;
    gp.rounds = 3;
    gp.max_depth = 3;
    tz_gbt_model *g;
    tz_gbt_fit(&gp, &bc.train.data, NULL, NULL, NULL, &g, &err);
    tz_gbt_save(g, &buf, &len, &err);
    hammer(&GBT, "logistic", buf, len, &x, 30);
    void *other = NULL;
    is_int(tz_forest_load(buf, len, (tz_forest_model **)&other, &err), TZ_EINVAL, "a gbt file is not a forest: %s", err.msg);
    free(buf);
    tz_gbt_free(g);

    gp.objective = TZ_GBT_SOFTMAX;
    gp.n_classes = 2;
    gp.rounds = 2;
    gp.max_depth = 2;
    tz_gbt_fit(&gp, &bc.train.data, NULL, NULL, NULL, &g, &err);
    tz_gbt_save(g, &buf, &len, &err);
    hammer(&GBT, "softmax", buf, len, &x, 30);
    free(buf);
    tz_gbt_free(g);

    tz_forest_params fp;
    tz_forest_params_default(&fp);
    fp.n_classes = 2;
    fp.n_trees = 3;
    fp.max_depth = 3;
    tz_forest_model *f;
    tz_forest_fit(&fp, &bc.train.data, &f, &err);
    tz_forest_save(f, &buf, &len, &err);
    hammer(&RF, "classifier", buf, len, &x, 30);
    is_int(tz_gbt_load(buf, len, (tz_gbt_model **)&other, &err), TZ_EINVAL, "a forest file is not a gbt: %s", err.msg);
    free(buf);
    tz_forest_free(f);

    tz_forest_params_default(&fp);
    fp.task = TZ_FOREST_REGRESS;
    fp.n_trees = 2;
    fp.max_depth = 3;
    tz_forest_fit(&fp, &dia.train.data, &f, &err);
    tz_forest_save(f, &buf, &len, &err);
    tz_data dx = dia.test.data;
    dx.n_rows = 20;
    hammer(&RF, "regressor", buf, len, &dx, 9);
    free(buf);
    tz_forest_free(f);

    test_dataset_free(&bc);
    test_dataset_free(&dia);
    return tap_done();
}
