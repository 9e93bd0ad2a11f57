/*
 * tz_tree — the machinery shared by the tree kernels (tz_gbt, tz_forest):
 * quantile binning of features, a histogram-based tree builder, and the
 * compact tree every model stores.
 *
 * Binning (tz_tree_bins_build): every column gets at most max_bins (≤ 255)
 * bins whose edges come from quantiles of the column (of a sample of rows
 * when there are many); NaN gets one more bin of its own, "missing". The
 * codes are a uint8 matrix stored column-major. Bin b of column j holds the
 * values v with cuts[j][b-1] < v <= cuts[j][b] (the last cut is +inf), so a
 * split "bin <= b" is the same as "v <= cuts[j][b]": trees carry raw
 * thresholds and predicting needs no binning.
 *
 * Growing (tz_tree_grow): level by level, from per-bin sums of the rows'
 * targets. Two kinds of target:
 *  - gradient mode (n_classes == 0): per row a gradient g and a hessian h;
 *    a leaf's sums are (G, H) and the split gain is XGBoost's
 *    G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ). A random-forest regression
 *    passes g = w·(y − mean), h = w and λ = 0 (variance reduction).
 *  - class mode (n_classes = K ≥ 2): per row a class and a weight; a leaf's
 *    sums are the K class weights then their total W; the gain is
 *    Σ_k (L_k²/W_L + R_k²/W_R − T_k²/W), the weighted Gini decrease.
 * Missing values go to whichever side gains more (the learned default
 * direction; when a node has none, to the heavier side). Gradient mode
 * builds the smaller child's histogram and subtracts it from the parent's;
 * with per-split feature sampling (random forests) each node builds its own
 * (sparse for small nodes). Work is split into fixed tasks (node pair ×
 * column, or node) for tz_pool_run, each writing only its own results,
 * combined in a fixed order: the tree is the same for any thread count.
 * Splits happen level by level; a node splits when its best gain is above
 * min_split_gain and both children keep min_child_weight; with max_leaves,
 * a level's largest gains go first.
 *
 * Ownership: tz_tree_bins and tz_tree own their arrays; free them with
 * tz_tree_bins_free / tz_tree_free (both accept zeroed structs). The
 * builder borrows everything it is given for the duration of the call.
 * Errors: 0 or a negative TZ_E* code with `err` filled; nothing prints.
 */
#ifndef TZ_TREE_H
#define TZ_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/tz_data.h"
#include "util/tz_blob.h"
#include "util/tz_err.h"

#define TZ_TREE_MAX_BINS 255   /* non-missing bins per column */
#define TZ_TREE_MAX_DEPTH 64

typedef struct tz_tree_bins {
    size_t n_rows, n_cols;
    uint8_t *codes;       /* codes[j * n_rows + i]; missing = n_bins[j] */
    uint16_t *n_bins;     /* per column: non-missing bins, 1..max_bins */
    double *cuts;         /* column j: cuts[cut_start[j] .. + n_bins[j]) */
    size_t *cut_start;
} tz_tree_bins;

/* Bins every column of x. sample_rows > 0 takes the quantiles from that
 * many rows drawn with `seed` when x has more (0: all rows). max_bins in
 * 2..255. TZ_EINVAL for bad arguments, TZ_ENOMEM. */
int tz_tree_bins_build(const tz_data *x, int max_bins, size_t sample_rows, uint64_t seed,
                       tz_tree_bins *out, tz_err *err);
void tz_tree_bins_free(tz_tree_bins *b);

/* A split. Its children are split nodes (index >= 0, always after this
 * one) or leaves (index < 0: leaf number ~index). */
typedef struct tz_tree_node {
    double threshold;       /* x <= threshold goes left */
    int32_t feature;        /* the column tested */
    int32_t left, right;
    uint8_t default_left;   /* where NaN goes */
} tz_tree_node;

/* The same tree laid out for walking many rows without a branch per node
 * (tz_tree_leaves): breadth first, each split's two children side by side,
 * so a step is `left + went_right` and the load of `left` need not wait
 * for the comparison; a leaf points at itself with a +inf threshold, so
 * every row takes exactly `depth` steps and LANES rows walk in lockstep. */
typedef struct tz_tree_step {
    double threshold;       /* +inf on a leaf */
    int32_t left;           /* x <= threshold: left; x > threshold: left + 1 */
    int32_t feature;        /* 0 on a leaf (read, never used) */
    int32_t nan_right;      /* NaN goes to left + nan_right */
    int32_t leaf;           /* the leaf number; -1 on a split */
} tz_tree_step;

typedef struct tz_tree {
    int32_t n_nodes;        /* splits; 0: the tree is the single leaf 0 */
    int32_t n_leaves;       /* n_nodes + 1 */
    int32_t n_values;       /* doubles per leaf */
    tz_tree_node *nodes;    /* nodes[0] is the root */
    double *values;         /* n_leaves × n_values */
    double *gain;           /* per split, its gain (importance); NULL on a
                               loaded tree (files keep only the totals) */
    tz_tree_step *steps;    /* n_nodes + n_leaves, from tz_tree_prepare */
    int32_t depth;          /* the deepest leaf's number of splits above it */
} tz_tree;

void tz_tree_free(tz_tree *t);

/* Builds t->steps and t->depth from t->nodes (whose children point
 * forward, as tz_tree_grow and tz_tree_read guarantee). tz_tree_grow and
 * tz_tree_read call it; TZ_ENOMEM. */
int tz_tree_prepare(tz_tree *t, tz_err *err);

typedef struct tz_tree_grow_params {
    int max_depth;            /* 1..TZ_TREE_MAX_DEPTH */
    int max_leaves;           /* 0: no limit; else the best gains of a level win */
    double lambda;            /* L2 on leaf sums (gradient mode) */
    double min_child_weight;  /* least H (gradient) or W (class) in a child */
    double min_split_gain;    /* a split must gain more than this */
    int n_classes;            /* 0: gradient mode; K ≥ 2: class mode */
    const uint8_t *allowed;   /* per column, non-zero = usable; NULL = all */
    int split_features;       /* > 0 (random forests): at every node draw
                                 usable columns one by one until this many
                                 vary within the node (scikit-learn's rule;
                                 no histogram subtraction); 0: all usable */
    uint64_t seed;            /* for split_features: node i draws from a
                                 stream seeded by (seed, i) */
    int serial;               /* non-zero: grow on the calling thread only
                                 (the caller is itself a pool task, e.g.
                                 one tree of a forest); same result */
} tz_tree_grow_params;

typedef struct tz_tree_target {
    const uint32_t *rows;     /* the rows to grow on, ascending, into bins */
    size_t n_rows;
    const float *gh;          /* gradient mode: g, h of bins row i at 2i, 2i+1 */
    const uint16_t *cls;      /* class mode: class of row i, < n_classes */
    const float *w;           /* class mode: weight of row i (> 0 for rows listed) */
    int32_t *leaf_of;         /* optional out: leaf number of every listed row */
} tz_tree_target;

/* Scratch memory reused from one tz_tree_grow to the next (growing many
 * trees then maps no fresh memory). One grow at a time per workspace.
 * tz_tree_work_new returns NULL when out of memory. */
typedef struct tz_tree_work tz_tree_work;
tz_tree_work *tz_tree_work_new(void);
void tz_tree_work_free(tz_tree_work *w);  /* NULL is fine */

/* Grows one tree into *out (which the caller frees with tz_tree_free).
 * out->values gets every leaf's sums: 2 per leaf (G, H) in gradient mode,
 * K + 1 (class weights, then W) in class mode; callers turn them into leaf
 * values in place or replace the array. work may be NULL (a temporary one
 * is used). TZ_EINVAL, TZ_ENOMEM. */
int tz_tree_grow(const tz_tree_bins *bins, const tz_tree_grow_params *p, const tz_tree_target *t,
                 tz_tree_work *work, tz_tree *out, tz_err *err);

/* Leaf number that row `row` of x reaches (raw values; NaN takes the
 * default direction). The tree must be valid for x's columns. */
static inline int32_t tz_tree_leaf(const tz_tree *t, const double *const *cols, size_t row)
{
    if (t->n_nodes == 0) return 0;
    int32_t i = 0;
    for (;;) {
        const tz_tree_node *n = t->nodes + i;
        double v = cols[n->feature][row];
        i = v <= n->threshold ? n->left : v != v ? (n->default_left ? n->left : n->right) : n->right;
        if (i < 0) return ~i;
    }
}

/* Rows lo .. hi-1 of x copied row-major for walking: what tz_tree_leaves
 * reads. x holds n_rows × n_cols doubles; finite says no value is NaN (the
 * walk then skips the missing-value test). TZ_TREE_CHUNK_DOUBLES bounds a
 * chunk, so callers keep one on the stack: at most that / n_cols rows. */
#define TZ_TREE_CHUNK_DOUBLES 16384
typedef struct tz_tree_chunk {
    double x[TZ_TREE_CHUNK_DOUBLES];
    size_t n_rows, n_cols;
    int finite;
} tz_tree_chunk;

/* Rows in one chunk for data of n_cols columns (at least 1). */
size_t tz_tree_chunk_rows(size_t n_cols);
/* Fills c with rows lo .. hi-1 (hi - lo <= tz_tree_chunk_rows(n_cols)). */
void tz_tree_chunk_fill(tz_tree_chunk *c, const tz_data *x, size_t lo, size_t hi);

/* Leaf numbers of the chunk's rows into leaf[0 .. c->n_rows): tz_tree_leaf
 * for many rows. Shallow trees walk LANES rows in lockstep over t->steps
 * (no data-dependent branch, so no mispredictions); deep ones, where
 * lockstep would take many idle steps, walk row by row. */
void tz_tree_leaves(const tz_tree *t, const tz_tree_chunk *c, int32_t *leaf);

/* Rows walked in lockstep; a chunk of fewer rows is better walked a row at
 * a time through many trees (tz_tree_row_leaves). */
#define TZ_TREE_LANES 8

/* Leaf numbers of one row (row-major, finite as in tz_tree_chunk) in n
 * trees, trees[0], trees[stride], ... into leaf[0 .. n): LANES trees walk
 * in lockstep, as rows do in tz_tree_leaves (a single prediction's path). */
void tz_tree_row_leaves(const tz_tree *trees, size_t n, size_t stride, const double *row, int finite,
                        int32_t *leaf);

/* Serialisation shared by the model files: n_nodes, n_leaves, the nodes
 * (feature, left, right, default_left, threshold), then the leaf values.
 * tz_tree_read checks every count against the bytes left before
 * allocating, n_leaves == n_nodes + 1, and every index (split children
 * after their parent and in range, leaves < n_leaves, features <
 * n_features), so a damaged file is TZ_ECORRUPT, never a crash. */
void tz_tree_write(tz_blob_writer *w, const tz_tree *t);
int tz_tree_read(tz_blob_reader *r, int32_t n_features, int32_t n_values, tz_tree *out, tz_err *err);

#endif
