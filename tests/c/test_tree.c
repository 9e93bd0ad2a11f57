/* tz_tree on small made-up data: bin edges, missing and infinite values,
 * raw thresholds that agree with the bins, depth and leaf limits; and the
 * tree models on degenerate input (one row, constant columns, an absent
 * class, empty predictions). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tz_forest.h"
#include "kernels/tz_gbt.h"
#include "kernels/tz_tree.h"
#include "tap.h"

static double sq(double x) { return x * x; }

/* tz_tree_leaves over chunks of several sizes (lockstep lanes and a
 * row-by-row tail; chunks with and without NaN) agrees with tz_tree_leaf
 * on every row of x. */
static int leaves_agree(const tz_tree *t, const tz_data *x)
{
    static tz_tree_chunk chunk;
    int32_t leaf[TZ_TREE_CHUNK_DOUBLES];
    size_t sizes[] = { 1, 7, 8, 9, 61, tz_tree_chunk_rows(x->n_cols) };
    int agree = 1;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (size_t lo = 0; lo < x->n_rows; lo += sizes[s]) {
            size_t hi = lo + sizes[s] < x->n_rows ? lo + sizes[s] : x->n_rows;
            tz_tree_chunk_fill(&chunk, x, lo, hi);
            tz_tree_leaves(t, &chunk, leaf);
            for (size_t i = lo; i < hi; i++) agree &= leaf[i - lo] == tz_tree_leaf(t, x->cols, i);
        }
    return agree;
}

int main(void)
{
    tz_err err;

    /* --- binning */
    enum { N = 1000 };
    static double c0[N], c1[N], c2[N], c3[N], c4[N];
    tz_rng rng;
    tz_rng_seed(&rng, 1);
    for (int i = 0; i < N; i++) {
        c0[i] = i % 3;                                     /* three values */
        c1[i] = tz_rng_uniform(&rng);                       /* continuous */
        c2[i] = NAN;                                        /* all missing */
        c3[i] = i % 10 == 0 ? NAN : i % 10 == 1 ? INFINITY : i % 10 == 2 ? -INFINITY : (double)(i % 7);
        c4[i] = i < 900 ? 0 : i;                            /* a heavy tie, then distinct */
    }
    const double *cols[5] = { c0, c1, c2, c3, c4 };
    tz_data x = { .n_rows = N, .n_cols = 5, .cols = cols };
    tz_tree_bins b;
    is_int(tz_tree_bins_build(&x, 32, 0, 0, &b, &err), 0, "bins: build");
    is_int(b.n_bins[0], 3, "three distinct values, three bins");
    const double *cut0 = b.cuts + b.cut_start[0];
    ok(cut0[0] == 0.5 && cut0[1] == 1.5 && isinf(cut0[2]), "cuts between them at the midpoints, then +inf");
    int codes_ok = 1;
    for (int i = 0; i < N; i++) codes_ok &= b.codes[i] == i % 3;
    ok(codes_ok, "codes follow the values");
    ok(b.n_bins[1] <= 32 && b.n_bins[1] >= 30, "a continuous column gets about max_bins bins (%d)", b.n_bins[1]);
    int counts[33] = { 0 };
    for (int i = 0; i < N; i++) counts[b.codes[N + i]]++;
    int lo = N, hi = 0;
    for (int k = 0; k < b.n_bins[1]; k++) {
        if (counts[k] < lo) lo = counts[k];
        if (counts[k] > hi) hi = counts[k];
    }
    ok(lo >= 20 && hi <= 45, "quantile bins hold similar counts (%d..%d)", lo, hi);
    is_int(b.n_bins[2], 1, "an all-NaN column has one (empty) bin");
    int all_missing = 1;
    for (int i = 0; i < N; i++) all_missing &= b.codes[2 * N + i] == 1;
    ok(all_missing, "and every row in the missing bin");
    int inf_ok = 1;
    for (int i = 0; i < N; i++) {
        int code = b.codes[3 * N + i], nb = b.n_bins[3];
        const double *cut = b.cuts + b.cut_start[3];
        if (isnan(c3[i])) inf_ok &= code == nb;
        else inf_ok &= code < nb && c3[i] <= cut[code] && (code == 0 || c3[i] > cut[code - 1]);
    }
    ok(inf_ok, "with ±inf present every value sits in the bin its cuts say");
    int c4_ok = 1;
    for (int i = 0; i < N; i++) {
        int code = b.codes[4 * N + i];
        const double *cut = b.cuts + b.cut_start[4];
        c4_ok &= c4[i] <= cut[code] && (code == 0 || c4[i] > cut[code - 1]);
    }
    ok(c4_ok && b.n_bins[4] >= 20, "a heavy tie takes one bin, the rest share the others (%d bins)", b.n_bins[4]);
    tz_tree_bins_free(&b);
    is_int(tz_tree_bins_build(&x, 1, 0, 0, &b, &err), TZ_EINVAL, "max_bins 1: %s", err.msg);
    is_int(tz_tree_bins_build(&x, 256, 0, 0, &b, &err), TZ_EINVAL, "max_bins 256 at this level: %s", err.msg);

    /* --- raw thresholds agree with the bins: every training row reaches
     * the leaf the builder put it in, NaN included */
    static double y[N];
    static float gh[2 * N];
    static uint32_t rows[N];
    static int32_t leaf_of[N];
    for (int i = 0; i < N; i++) {
        y[i] = (c1[i] > 0.3 ? 1 : -1) + (isnan(c3[i]) ? 2 : 0) + 0.5 * c0[i];
        gh[2 * i] = (float)-y[i];
        gh[2 * i + 1] = 1;
        rows[i] = (uint32_t)i;
    }
    tz_tree_bins_build(&x, 255, 0, 0, &b, &err);
    tz_tree_grow_params gp = { .max_depth = 6, .lambda = 1, .min_child_weight = 1 };
    tz_tree_target tt = { .rows = rows, .n_rows = N, .gh = gh, .leaf_of = leaf_of };
    tz_tree t;
    is_int(tz_tree_grow(&b, &gp, &tt, NULL, &t, &err), 0, "grow");
    int agree = 1, used_missing = 0;
    for (int i = 0; i < N; i++) agree &= tz_tree_leaf(&t, cols, (size_t)i) == leaf_of[i];
    for (int j = 0; j < t.n_nodes; j++) used_missing |= t.nodes[j].feature == 3;
    ok(agree, "raw-value traversal matches the builder's leaves on all %d rows", N);
    ok(used_missing, "the column whose missing values matter is used");
    ok(leaves_agree(&t, &x), "the lockstep block walk (depth %d) reaches the same leaves, NaN rows and tails too",
       t.depth);
    double sse = 0;
    for (int i = 0; i < N; i++) {
        const double *v = t.values + 2 * (size_t)leaf_of[i];
        sse += sq(y[i] - -v[0] / (v[1] + 1));
    }
    ok(sse / N < 0.05, "the tree fits a step function with a missing-value effect (MSE %.4f)", sse / N);
    tz_tree_free(&t);

    gp.max_depth = 1;
    tz_tree_grow(&b, &gp, &tt, NULL, &t, &err);
    ok(t.n_nodes == 1 && t.n_leaves == 2, "max_depth 1: a stump (%d splits)", t.n_nodes);
    ok(leaves_agree(&t, &x), "a stump walks in lockstep too");
    tz_tree_free(&t);
    /* a caterpillar: split j sends c1 <= j/24 to leaf j, the rest (and
     * NaN in c3, alternately) on down */
    enum { DEEP = 24 };
    tz_tree deep = { .n_nodes = DEEP, .n_leaves = DEEP + 1, .n_values = 1 };
    deep.nodes = calloc(DEEP, sizeof *deep.nodes);
    deep.values = calloc(DEEP + 1, sizeof *deep.values);
    for (int j = 0; j < DEEP; j++)
        deep.nodes[j] = (tz_tree_node){ .threshold = (double)j / DEEP, .feature = j % 2 ? 1 : 3, .left = ~j,
                                        .right = j + 1 < DEEP ? j + 1 : ~DEEP, .default_left = (uint8_t)(j % 3 == 0) };
    is_int(tz_tree_prepare(&deep, &err), 0, "prepare a hand-made tree");
    ok(deep.depth == DEEP && leaves_agree(&deep, &x), "a deep tree (depth %d) walks row by row to the same leaves",
       deep.depth);
    tz_tree_free(&deep);
    /* A split reached from two parents (a crafted file): the breadth-first
     * layout fills every step before it is done, and must refuse it. */
    tz_tree dag = { .n_nodes = 3, .n_leaves = 4, .n_values = 1 };
    dag.nodes = calloc(3, sizeof *dag.nodes);
    dag.values = calloc(4, sizeof *dag.values);
    dag.nodes[0] = (tz_tree_node){ .feature = 1, .left = 1, .right = 2 };
    dag.nodes[1] = (tz_tree_node){ .feature = 1, .left = 2, .right = ~0 };
    dag.nodes[2] = (tz_tree_node){ .feature = 1, .left = ~1, .right = ~2 };
    is_int(tz_tree_prepare(&dag, &err), TZ_ECORRUPT, "a split with two parents is refused: %s", err.msg);
    tz_tree_free(&dag);
    gp.max_depth = 10;
    gp.max_leaves = 5;
    tz_tree_grow(&b, &gp, &tt, NULL, &t, &err);
    ok(t.n_leaves <= 5 && t.n_leaves >= 4, "max_leaves 5: %d leaves", t.n_leaves);
    tz_tree_free(&t);
    gp.max_leaves = 0;
    gp.min_split_gain = 1e12;
    tz_tree_grow(&b, &gp, &tt, NULL, &t, &err);
    ok(t.n_nodes == 0 && t.n_leaves == 1, "no split gains enough: a single leaf");
    tz_tree_free(&t);
    gp.min_split_gain = 0;
    uint8_t allowed[5] = { 0, 0, 1, 0, 0 };
    gp.allowed = allowed;
    tz_tree_grow(&b, &gp, &tt, NULL, &t, &err);
    ok(t.n_nodes == 0, "only an all-missing column allowed: a single leaf");
    tz_tree_free(&t);
    memset(allowed, 0, sizeof allowed);
    is_int(tz_tree_grow(&b, &gp, &tt, NULL, &t, &err), TZ_EINVAL, "no column allowed: %s", err.msg);
    gp.allowed = NULL;
    tt.n_rows = 0;
    is_int(tz_tree_grow(&b, &gp, &tt, NULL, &t, &err), TZ_EINVAL, "no rows: %s", err.msg);
    tz_tree_bins_free(&b);

    /* --- degenerate data through the models */
    double one_x = 3, *one_col[1] = { &one_x }, one_y = 42;
    tz_data one = { .n_rows = 1, .n_cols = 1, .cols = (const double *const *)one_col, .y = &one_y };
    tz_gbt_params p;
    tz_gbt_params_default(&p);
    p.rounds = 5;
    tz_gbt_model *g = NULL;
    is_int(tz_gbt_fit(&p, &one, NULL, NULL, NULL, &g, &err), 0, "gbt on one row");
    static double out[3 * N];
    if (g) {
        tz_gbt_predict(g, &one, out, &err);
        ok(fabs(out[0] - 42) < 1e-9, "one row: predicts its label (%g)", out[0]);
        tz_data none = one;
        none.n_rows = 0;
        is_int(tz_gbt_predict(g, &none, out, &err), 0, "predicting no rows is fine");
        tz_gbt_free(g);
    }

    /* constant features: every tree a single leaf, the mean comes out */
    static double k0[N], k1[N], yy[N];
    for (int i = 0; i < N; i++) {
        k0[i] = 5;
        k1[i] = NAN;
        yy[i] = i % 2;
    }
    const double *kcols[2] = { k0, k1 };
    tz_data kd = { .n_rows = N, .n_cols = 2, .cols = kcols, .y = yy };
    p.objective = TZ_GBT_LOGISTIC;
    is_int(tz_gbt_fit(&p, &kd, NULL, NULL, NULL, &g, &err), 0, "gbt on constant columns");
    if (g) {
        tz_gbt_predict(g, &kd, out, &err);
        ok(fabs(out[0] - 0.5) < 1e-9, "constant columns: predicts the base rate (%g)", out[0]);
        tz_gbt_free(g);
    }
    tz_forest_params fp;
    tz_forest_params_default(&fp);
    fp.n_classes = 2;
    fp.n_trees = 5;
    tz_forest_model *f = NULL;
    is_int(tz_forest_fit(&fp, &kd, &f, &err), 0, "forest on constant columns");
    if (f) {
        tz_forest_predict(f, &kd, out, &err);
        ok(fabs(out[0] - 0.5) < 0.1 && fabs(out[0] + out[1] - 1) < 1e-12, "constant columns: about the class shares (%g)", out[0]);
        tz_forest_free(f);
    }

    /* xor of two columns: depth 2 finds it, softmax with an absent class */
    static double xa[N], xb[N], xy[N];
    for (int i = 0; i < N; i++) {
        xa[i] = tz_rng_uniform(&rng);
        xb[i] = tz_rng_uniform(&rng);
        xy[i] = (xa[i] > 0.5) != (xb[i] > 0.5) ? 2 : 0;
    }
    const double *xc[2] = { xa, xb };
    tz_data xd = { .n_rows = N, .n_cols = 2, .cols = xc, .y = xy };
    tz_gbt_params_default(&p);
    p.objective = TZ_GBT_SOFTMAX;
    p.n_classes = 3;
    p.rounds = 50;  /* xor's first splits have next to no gain: give it rounds */
    p.max_depth = 2;
    is_int(tz_gbt_fit(&p, &xd, NULL, NULL, NULL, &g, &err), 0, "softmax with class 1 absent");
    if (g) {
        static double px[3 * N];
        tz_gbt_predict(g, &xd, px, &err);
        int right = 0;
        double p1 = 0;
        for (int i = 0; i < N; i++) {
            int pred = px[3 * i] > px[3 * i + 2] ? 0 : 2;
            right += pred == (int)xy[i];
            p1 += px[3 * i + 1] / N;
        }
        ok(right >= 0.975 * N, "xor learnt at depth 2 (%d of %d)", right, N);
        ok(p1 < 0.05, "the absent class gets little probability (%.4f)", p1);
        tz_gbt_free(g);
    }
    tz_forest_params_default(&fp);
    fp.n_classes = 3;
    fp.n_trees = 20;
    is_int(tz_forest_fit(&fp, &xd, &f, &err), 0, "forest on xor");
    if (f) {
        static double px[3 * N];
        tz_forest_predict(f, &xd, px, &err);
        int right = 0;
        for (int i = 0; i < N; i++) right += (px[3 * i] > px[3 * i + 2] ? 0 : 2) == (int)xy[i];
        ok(right >= 0.97 * N, "forest learns xor (%d of %d)", right, N);
        ok(tz_forest_oob_score(f) > 0.9, "xor out-of-bag accuracy %.3f", tz_forest_oob_score(f));
        tz_forest_free(f);
    }

    /* rows with weight 0 do not count */
    static double wt[N], yw[N];
    for (int i = 0; i < N; i++) {
        wt[i] = i % 2 ? 1 : 0;
        yw[i] = i % 2 ? 10 : -1000;  /* the zero-weight rows carry absurd labels */
    }
    tz_data wd = { .n_rows = N, .n_cols = 2, .cols = xc, .y = yw, .weight = wt };
    tz_gbt_params_default(&p);
    p.rounds = 20;
    is_int(tz_gbt_fit(&p, &wd, NULL, NULL, NULL, &g, &err), 0, "gbt with zero weights");
    if (g) {
        tz_gbt_predict(g, &wd, out, &err);
        ok(fabs(out[0] - 10) < 0.01, "zero-weight rows are ignored (%g)", out[0]);
        tz_gbt_free(g);
    }
    tz_forest_params_default(&fp);
    fp.task = TZ_FOREST_REGRESS;
    fp.n_trees = 10;
    is_int(tz_forest_fit(&fp, &wd, &f, &err), 0, "forest with zero weights");
    if (f) {
        tz_forest_predict(f, &wd, out, &err);
        ok(fabs(out[0] - 10) < 1e-9, "zero-weight rows are ignored by the forest (%g)", out[0]);
        tz_forest_free(f);
    }
    for (int i = 0; i < N; i++) wt[i] = 0;
    is_int(tz_gbt_fit(&p, &wd, NULL, NULL, NULL, &g, &err), TZ_EINVAL, "all weights zero: %s", err.msg);
    wt[0] = -1;
    is_int(tz_forest_fit(&fp, &wd, &f, &err), TZ_EINVAL, "negative weight: %s", err.msg);
    return tap_done();
}
