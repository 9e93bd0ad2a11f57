/*
 * tz_tree_internal.h — what the tree kernel's own files share (tz_tree.c grows
 * trees, tz_tree_hist.c builds histograms and finds splits in them,
 * tz_tree_bins.c bins features, tz_tree_io.c reads and writes trees): when a
 * step is worth the thread pool, and the grower's state, which growing and
 * histogram building both work on. Not a public header.
 */
#ifndef TZ_TREE_INTERNAL_H
#define TZ_TREE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/tz_tree.h"
#include "util/tz_pool.h"

/* Below this much work (rows × columns) a step runs on the calling thread:
 * waking the pool costs more. Either path computes the same numbers. */
#define INLINE_WORK 32768
#define INLINE_ROWS 131072  /* the same for partitioning, which is cheap per row */
#define HIST_BUDGET ((size_t)256 << 20)  /* bytes of histograms kept per level */

static inline void run_tasks(size_t n, size_t work, tz_pool_fn fn, void *ctx, int serial)
{
    if (serial || work < INLINE_WORK) {
        for (size_t i = 0; i < n; i++) fn(ctx, i, 0);
    } else {
        tz_pool_run(n, fn, ctx);
    }
}

/* ------------------------------------------------------------- the grower */

typedef struct gnode {   /* a node while growing; leaves have feature -1 */
    double threshold, gain;
    int32_t feature, left, right;
    uint8_t default_left, bin;
} gnode;

typedef struct group {   /* nodes whose histograms are built together */
    int32_t a, b;        /* indices into the level (b = -1: none) */
    const double *parent;/* parent's kept histogram, or NULL */
} group;

typedef struct grower {
    const tz_tree_bins *bins;
    const tz_tree_grow_params *p;
    const tz_tree_target *t;
    size_t n;                   /* rows of the bin matrix */
    int nc, K;                  /* channels per bin; classes (0: gradient) */
    int32_t *feats;             /* usable columns */
    int n_feats, n_slots;       /* slots: columns looked at per node */
    int rf;                     /* per-split column draws (random forests) */
    int cslots;                 /* candidates kept per node: n_slots, or 1 (rf) */
    size_t *hoff;               /* per column: offset in a node histogram */
    size_t node_hist, max_fhist;/* doubles */
    double min_w_floor;         /* relative floor under min_child_weight */

    uint32_t *rows, *rtmp;      /* rows in node order; partition buffer */
    float *ogh, *otmp;          /* gradient mode: (g, h) in rows order */
    double *scratch;            /* per worker: tz_tree_hist_scratch(g) doubles */

    /* the tree so far, indexed by node id */
    gnode *nodes;
    size_t *beg, *end;
    int *depth;
    double *sums;               /* nc per node */
    int32_t n_nodes, cap;

    /* the level being split */
    int32_t *lvl;               /* node ids */
    int32_t n_lvl;
    uint8_t *eval;              /* per level node: looked for a split */
    int32_t *perm;              /* rf: per worker, a permutation of feats */
    uint16_t *touched;          /* rf: per worker, bins of a sparse histogram */
    group *groups;
    int32_t n_groups;
    double *keep;               /* kept histograms of this level (or NULL) */
    double *cgain;              /* per level node × cslots: best gain */
    int32_t *cbin, *cfeat;
    uint8_t *cdl;
    double *clsum;              /* × nc: left sums of that split */
    int32_t *split_of;          /* per level node: chosen slot or -1 */
} grower;

/* Doubles of scratch each worker needs while building histograms: two
 * feature histograms, a node's sums, and three more feature histograms for
 * build_hist's 4-way accumulation. tz_tree.c allocates it, tz_tree_hist.c
 * carves it up, so the layout's size lives here. */
static inline size_t tz_tree_hist_scratch(const grower *g) { return 5 * g->max_fhist + g->nc; }

/* Looks for the best split of every node of the level marked in eval: builds
 * the histograms (one pool run) and scans them into the candidate arrays
 * (cgain, cbin, cdl, cfeat, clsum). In tz_tree_hist.c; the grower calls it
 * once per level, so the call costs nothing next to the work. */
void tz_tree_hist_level(grower *g, size_t eval_rows);

#endif
