/* tz_tree.c — growing trees (tz_tree.h, "Growing"): the workspace, node
 * bookkeeping, each level's prepare / choose / split, the partition of rows
 * under the children, and the compact tree out. Histograms and the split
 * scans over them are in tz_tree_hist.c; the grower's state, shared with
 * it, in tz_tree_internal.h. Then walking: a tree's lockstep layout
 * (tz_tree_prepare) and the block walk over it (tz_tree_leaves). */
#include "kernels/tz_tree.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tz_tree_internal.h"

/* ---------------------------------------------------------------- growing */

/* Stable partition of a split node's rows (and ordered gradients). */
static void partition_task(void *vctx, size_t task, int worker)
{
    grower *g = vctx;
    int32_t id = g->lvl[task];
    if (g->split_of[task] < 0) return;
    const gnode *nd = &g->nodes[id];
    const uint8_t *col = g->bins->codes + (size_t)nd->feature * g->n;
    int missing = g->bins->n_bins[nd->feature];
    unsigned bin = nd->bin;
    int dl = nd->default_left;
    size_t beg = g->beg[id], end = g->end[id], nl = beg, nr = beg;
    uint32_t *rows = g->rows, *rt = g->rtmp;
    float *gh = g->ogh, *ot = g->otmp;
    /* Branch-free: every row is written to both sides and only the side
     * it belongs to advances. (g, h) pairs move as one 8-byte word. */
    if (gh) {
        uint64_t *pg = (uint64_t *)(void *)gh, *po = (uint64_t *)(void *)ot;
        for (size_t k = beg; k < end; k++) {
            uint32_t r = rows[k];
            unsigned c = col[r];
            size_t left = c == (unsigned)missing ? (size_t)dl : c <= bin;
            uint64_t v = pg[k];
            rows[nl] = r;
            pg[nl] = v;
            rt[nr] = r;
            po[nr] = v;
            nl += left;
            nr += 1 - left;
        }
        memcpy(pg + nl, po + beg, (nr - beg) * sizeof *pg);
    } else {
        for (size_t k = beg; k < end; k++) {
            uint32_t r = rows[k];
            unsigned c = col[r];
            size_t left = c == (unsigned)missing ? (size_t)dl : c <= bin;
            rows[nl] = r;
            rt[nr] = r;
            nl += left;
            nr += 1 - left;
        }
    }
    memcpy(rows + nl, rt + beg, (nr - beg) * sizeof *rows);
    g->beg[nd->left] = beg;
    g->end[nd->left] = nl;
    g->beg[nd->right] = nl;
    g->end[nd->right] = end;
}

/* The workspace: buffers kept from one tree to the next, so growing many
 * trees does not keep mapping fresh memory. */
enum { W_FEATS, W_HOFF, W_ROWS, W_RTMP, W_OGH, W_OTMP, W_SCRATCH, W_NODES, W_BEG, W_END, W_DEPTH,
       W_SUMS, W_LVL0, W_LVL1, W_SPLIT0, W_SPLIT1, W_KEEP0, W_KEEP1, W_EVAL, W_PERM, W_GROUPS,
       W_CGAIN, W_CBIN, W_CFEAT, W_CDL, W_CLSUM, W_RANK, W_TOUCHED, W_MAP, W_N };

struct tz_tree_work {
    void *p[W_N];
    size_t cap[W_N];
};

tz_tree_work *tz_tree_work_new(void) { return calloc(1, sizeof(tz_tree_work)); }

void tz_tree_work_free(tz_tree_work *w)
{
    if (!w) return;
    for (int i = 0; i < W_N; i++) free(w->p[i]);
    free(w);
}

/* A buffer of at least `bytes`, keeping its contents; NULL when out of memory. */
static void *wget(tz_tree_work *w, int slot, size_t bytes)
{
    if (bytes > w->cap[slot] || !w->p[slot]) {
        size_t cap = w->cap[slot] + w->cap[slot] / 2;
        if (cap < bytes) cap = bytes;
        if (cap < 64) cap = 64;
        void *q = realloc(w->p[slot], cap);
        if (!q) return NULL;
        w->p[slot] = q;
        w->cap[slot] = cap;
    }
    return w->p[slot];
}

static int grow_nodes(grower *g, tz_tree_work *w, int32_t need)
{
    if (g->n_nodes + need <= g->cap) return 0;
    int32_t cap = g->cap ? g->cap : 64;
    while (cap < g->n_nodes + need) cap *= 2;
    size_t c = (size_t)cap;
    if (!(g->nodes = wget(w, W_NODES, c * sizeof *g->nodes)) || !(g->beg = wget(w, W_BEG, c * sizeof *g->beg)) ||
        !(g->end = wget(w, W_END, c * sizeof *g->end)) || !(g->depth = wget(w, W_DEPTH, c * sizeof *g->depth)) ||
        !(g->sums = wget(w, W_SUMS, c * g->nc * sizeof *g->sums)))
        return -1;
    g->cap = cap;
    return 0;
}

static int32_t new_node(grower *g, int depth)
{
    int32_t id = g->n_nodes++;
    memset(&g->nodes[id], 0, sizeof g->nodes[id]);
    g->nodes[id].feature = -1;
    g->depth[id] = depth;
    return id;
}

/* Whether node id is worth looking at for a split. */
static int splittable(const grower *g, int32_t id, int leaves_now)
{
    const tz_tree_grow_params *p = g->p;
    if (g->depth[id] >= p->max_depth) return 0;
    if (p->max_leaves > 0 && leaves_now >= p->max_leaves) return 0;
    if (g->end[id] - g->beg[id] < 2) return 0;
    const double *s = g->sums + (size_t)id * g->nc;
    double W = s[g->nc - 1];
    if (!(W >= 2 * p->min_child_weight)) return 0;
    if (g->K) {  /* a pure node cannot gain */
        for (int k = 0; k < g->K; k++)
            if (s[k] >= W * (1 - 1e-12)) return 0;
    }
    return 1;
}

typedef struct gain_rank { double gain; int32_t i; } gain_rank;

static int cmp_rank(const void *a, const void *b)
{
    const gain_rank *x = a, *y = b;
    if (x->gain != y->gain) return x->gain > y->gain ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Per-level arrays for n_lvl nodes; lvl/split_of alternate between two
 * buffers since a level is built from the one before. */
static int level_alloc(grower *g, tz_tree_work *w, int32_t n_lvl, int parity)
{
    size_t nl = (size_t)n_lvl, ns = nl * g->cslots;
    if (!(g->eval = wget(w, W_EVAL, nl)) || !(g->groups = wget(w, W_GROUPS, nl * sizeof *g->groups)) ||
        !(g->cgain = wget(w, W_CGAIN, ns * sizeof *g->cgain)) || !(g->cbin = wget(w, W_CBIN, ns * sizeof *g->cbin)) ||
        !(g->cfeat = wget(w, W_CFEAT, ns * sizeof *g->cfeat)) ||
        !(g->cdl = wget(w, W_CDL, ns)) || !(g->clsum = wget(w, W_CLSUM, ns * g->nc * sizeof *g->clsum)) ||
        !(g->split_of = wget(w, W_SPLIT0 + parity, nl * sizeof *g->split_of)) ||
        !(g->lvl = wget(w, W_LVL0 + parity, nl * sizeof *g->lvl)))
        return -1;
    return 0;
}

/* Buffers for one tree, and the root: every row, its sums. */
static int grow_root(grower *g, tz_tree_work *w)
{
    const tz_tree_target *t = g->t;
    int nc = g->nc;
    int workers = g->p->serial ? 1 : tz_pool_threads();
    g->rows = wget(w, W_ROWS, t->n_rows * sizeof *g->rows);
    g->rtmp = wget(w, W_RTMP, t->n_rows * sizeof *g->rtmp);
    if (g->K == 0) {
        g->ogh = wget(w, W_OGH, t->n_rows * 2 * sizeof *g->ogh);
        g->otmp = wget(w, W_OTMP, t->n_rows * 2 * sizeof *g->otmp);
    }
    g->scratch = wget(w, W_SCRATCH, (size_t)workers * tz_tree_hist_scratch(g) * sizeof *g->scratch);
    g->perm = wget(w, W_PERM, (size_t)workers * g->n_feats * sizeof *g->perm);
    g->touched = wget(w, W_TOUCHED, (size_t)workers * (TZ_TREE_MAX_BINS + 1) * sizeof *g->touched);
    if (!g->perm || !g->touched || !g->rows || !g->rtmp || (g->K == 0 && (!g->ogh || !g->otmp)) || !g->scratch ||
        grow_nodes(g, w, 1) || level_alloc(g, w, 1, 0))
        return -1;
    memcpy(g->rows, t->rows, t->n_rows * sizeof *g->rows);
    memset(g->scratch, 0, (size_t)workers * tz_tree_hist_scratch(g) * sizeof *g->scratch);

    int32_t root = new_node(g, 0);
    g->beg[root] = 0;
    g->end[root] = t->n_rows;
    double *rs = g->sums + (size_t)root * nc;
    memset(rs, 0, nc * sizeof *rs);
    if (g->K == 0) {
        /* (g, h) gathered into row order; the root's sums in four
         * interleaved parts, added in a fixed order */
        double s4[8] = { 0 };
        const uint64_t *src = (const uint64_t *)(const void *)t->gh;
        uint64_t *dst = (uint64_t *)(void *)g->ogh;
        for (size_t k = 0; k < t->n_rows; k++) dst[k] = src[g->rows[k]];
        for (size_t k = 0; k < t->n_rows; k++) {
            s4[2 * (k & 3)] += g->ogh[2 * k];
            s4[2 * (k & 3) + 1] += g->ogh[2 * k + 1];
        }
        rs[0] = (s4[0] + s4[2]) + (s4[4] + s4[6]);
        rs[1] = (s4[1] + s4[3]) + (s4[5] + s4[7]);
    } else {
        for (size_t k = 0; k < t->n_rows; k++) {
            uint32_t r = g->rows[k];
            rs[t->cls[r]] += t->w[r];
            rs[g->K] += t->w[r];
        }
    }
    g->lvl[0] = root;
    g->n_lvl = 1;
    g->groups[0] = (group){ 0, -1, NULL };
    g->n_groups = 1;
    return 0;
}

/* Marks the level's nodes worth a look and sets up its groups (and, in
 * gradient mode, where its histograms are kept). Returns the rows under
 * the marked nodes (0: nothing to do), or (size_t)-1 when out of memory. */
static size_t level_prepare(grower *g, tz_tree_work *w, int parity, int leaves)
{
    const tz_tree_grow_params *p = g->p;
    size_t eval_rows = 0;
    for (int32_t i = 0; i < g->n_lvl; i++) {
        g->eval[i] = (uint8_t)splittable(g, g->lvl[i], leaves);
        if (g->eval[i]) eval_rows += g->end[g->lvl[i]] - g->beg[g->lvl[i]];
    }
    if (!eval_rows) return 0;
    g->keep = NULL;
    int32_t ng = 0;
    if (g->rf) {
        /* Random forests: one task per node, no subtraction. */
        for (int32_t i = 0; i < g->n_lvl; i++)
            if (g->eval[i]) g->groups[ng++] = (group){ i, -1, NULL };
    } else {
        /* Keep this level's histograms for the next one when the
         * children may split and the memory is modest. */
        int children_split = 0;
        for (int32_t i = 0; i < g->n_lvl; i++)
            if (g->eval[i] && g->depth[g->lvl[i]] + 1 < p->max_depth) children_split = 1;
        size_t bytes = (size_t)g->n_lvl * g->node_hist * sizeof(double);
        if (children_split && bytes <= HIST_BUDGET && !(g->keep = wget(w, W_KEEP0 + parity, bytes)))
            return (size_t)-1;
        /* Drop groups with nothing to look at. */
        for (int32_t k = 0; k < g->n_groups; k++) {
            group gr = g->groups[k];
            if (g->eval[gr.a] || (gr.b >= 0 && g->eval[gr.b])) g->groups[ng++] = gr;
        }
    }
    g->n_groups = ng;
    for (size_t c = 0; c < (size_t)g->n_lvl * g->cslots; c++) {
        g->cgain[c] = -INFINITY;
        g->cbin[c] = -1;
    }
    return eval_rows;
}

/* Picks each node's best candidate (columns in slot order) into split_of;
 * when max_leaves binds, the best gains of the level win. Returns the
 * number of splits, or -1 when out of memory. */
static int32_t level_choose(grower *g, tz_tree_work *w, int leaves)
{
    const tz_tree_grow_params *p = g->p;
    gain_rank *rank = wget(w, W_RANK, (size_t)g->n_lvl * sizeof *rank);
    if (!rank) return -1;
    int32_t n_split = 0;
    for (int32_t i = 0; i < g->n_lvl; i++) {
        g->split_of[i] = -1;
        if (!g->eval[i]) continue;
        double best = -INFINITY;
        for (int s = 0; s < g->cslots; s++) {
            size_t c = (size_t)i * g->cslots + s;
            if (g->cbin[c] >= 0 && g->cgain[c] > best) {
                best = g->cgain[c];
                g->split_of[i] = s;
            }
        }
        if (g->split_of[i] >= 0) rank[n_split++] = (gain_rank){ best, i };
    }
    if (p->max_leaves > 0 && leaves + n_split > p->max_leaves) {
        qsort(rank, (size_t)n_split, sizeof *rank, cmp_rank);
        for (int32_t k = p->max_leaves - leaves; k < n_split; k++) g->split_of[rank[k].i] = -1;
        n_split = p->max_leaves - leaves;
    }
    return n_split;
}

/* Turns the chosen nodes into splits with two children each (listed in
 * `next`), then moves their rows under the children. */
static void level_split(grower *g, int32_t *next)
{
    int nc = g->nc;
    int32_t n_next = 0;
    size_t part_rows = 0;
    for (int32_t i = 0; i < g->n_lvl; i++) {
        int s = g->split_of[i];
        if (s < 0) continue;
        int32_t id = g->lvl[i];
        size_t c = (size_t)i * g->cslots + s;
        int32_t f = g->cfeat[c];
        int32_t l = new_node(g, g->depth[id] + 1), r = new_node(g, g->depth[id] + 1);
        gnode *nd = &g->nodes[id];
        nd->feature = f;
        nd->bin = (uint8_t)g->cbin[c];
        nd->threshold = g->bins->cuts[g->bins->cut_start[f] + (size_t)g->cbin[c]];
        nd->default_left = g->cdl[c];
        nd->gain = g->cgain[c];
        nd->left = l;
        nd->right = r;
        const double *ls = g->clsum + c * nc, *ps = g->sums + (size_t)id * nc;
        double *sl = g->sums + (size_t)l * nc, *sr = g->sums + (size_t)r * nc;
        for (int k = 0; k < nc; k++) {
            sl[k] = ls[k];
            sr[k] = ps[k] - ls[k];
        }
        next[n_next++] = l;
        next[n_next++] = r;
        part_rows += g->end[id] - g->beg[id];
    }
    run_tasks((size_t)g->n_lvl, part_rows * INLINE_WORK / INLINE_ROWS, partition_task, g, g->p->serial);
}

/* The finished tree, compact: splits and leaves each numbered in node
 * order (so a split's children still come after it), leaves with their
 * sums. */
static int tree_out(grower *g, tz_tree_work *w, tz_tree *out)
{
    const tz_tree_target *t = g->t;
    int nc = g->nc;
    int32_t *map = wget(w, W_MAP, (size_t)g->n_nodes * sizeof *map), n_split = 0, n_leaves = 0;
    if (!map) return -1;
    for (int32_t i = 0; i < g->n_nodes; i++) map[i] = g->nodes[i].feature >= 0 ? n_split++ : ~n_leaves++;
    if (n_split) {
        out->nodes = malloc((size_t)n_split * sizeof *out->nodes);
        out->gain = malloc((size_t)n_split * sizeof *out->gain);
        if (!out->nodes || !out->gain) return -1;
    }
    out->values = malloc((size_t)n_leaves * nc * sizeof *out->values);
    if (!out->values) return -1;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const gnode *nd = &g->nodes[i];
        if (nd->feature >= 0) {
            int32_t j = map[i];
            out->nodes[j] = (tz_tree_node){ .threshold = nd->threshold, .feature = nd->feature,
                                            .left = map[nd->left], .right = map[nd->right],
                                            .default_left = nd->default_left };
            out->gain[j] = nd->gain;
        } else {
            int32_t lf = ~map[i];
            memcpy(out->values + (size_t)lf * nc, g->sums + (size_t)i * nc, nc * sizeof(double));
            if (t->leaf_of)
                for (size_t k = g->beg[i]; k < g->end[i]; k++) t->leaf_of[g->rows[k]] = lf;
        }
    }
    out->n_nodes = n_split;
    out->n_leaves = n_leaves;
    out->n_values = nc;
    return tz_tree_prepare(out, NULL) ? -1 : 0;
}

/* Level by level: look for splits (one pool run), choose, split, and
 * pair the children up for the next level (smaller child first, built
 * from rows; its sibling by subtraction when the parent's histograms
 * were kept). */
static int grow(grower *g, tz_tree_work *w, tz_tree *out, tz_err *err)
{
    int parity = 0, leaves = 1;
    double *parent_keep = NULL;  /* the previous level's kept histograms */
    if (grow_root(g, w)) goto nomem;
    for (;;) {
        size_t eval_rows = level_prepare(g, w, parity, leaves);
        if (eval_rows == (size_t)-1) goto nomem;
        if (!eval_rows) break;
        tz_tree_hist_level(g, eval_rows);
        parent_keep = g->keep;  /* the parents' histograms are done with */
        int32_t n_split = level_choose(g, w, leaves);
        if (n_split < 0) goto nomem;
        if (!n_split) break;
        leaves += n_split;
        if (grow_nodes(g, w, 2 * n_split)) goto nomem;
        int32_t *next = wget(w, W_LVL0 + !parity, (size_t)2 * n_split * sizeof *next);
        if (!next) goto nomem;
        level_split(g, next);

        /* The next level (its arrays are the other parity's, so this
         * level's split_of stays readable): sibling pairs. */
        const int32_t *split_old = g->split_of;
        int32_t n_old = g->n_lvl;
        parity = !parity;
        if (level_alloc(g, w, 2 * n_split, parity)) goto nomem;
        g->n_lvl = 2 * n_split;
        int32_t ng = 0, k = 0;
        for (int32_t i = 0; i < n_old; i++) {
            if (split_old[i] < 0) continue;
            int32_t l = k, r = k + 1;
            k += 2;
            size_t nl = g->end[g->lvl[l]] - g->beg[g->lvl[l]], nr = g->end[g->lvl[r]] - g->beg[g->lvl[r]];
            const double *par = parent_keep ? parent_keep + (size_t)i * g->node_hist : NULL;
            g->groups[ng++] = nr < nl ? (group){ r, l, par } : (group){ l, r, par };
        }
        g->n_groups = ng;
    }

    if (tree_out(g, w, out)) goto nomem;
    return 0;
nomem:
    return tz_err_set(err, TZ_ENOMEM, "out of memory growing a tree");
}

int tz_tree_grow(const tz_tree_bins *bins, const tz_tree_grow_params *p, const tz_tree_target *t,
                 tz_tree_work *work, tz_tree *out, tz_err *err)
{
    memset(out, 0, sizeof *out);
    if (!bins || !p || !t || !t->rows || t->n_rows == 0)
        return tz_err_set(err, TZ_EINVAL, "no rows to grow a tree on");
    if (p->max_depth < 1 || p->max_depth > TZ_TREE_MAX_DEPTH)
        return tz_err_set(err, TZ_EINVAL, "max_depth must be in 1..%d, got %d", TZ_TREE_MAX_DEPTH, p->max_depth);
    if (p->n_classes == 1 || p->n_classes < 0 || p->n_classes > 4096)
        return tz_err_set(err, TZ_EINVAL, "n_classes must be 0 or 2..4096, got %d", p->n_classes);
    if (p->n_classes == 0 ? !t->gh : (!t->cls || !t->w))
        return tz_err_set(err, TZ_EINVAL, "the target lacks %s", p->n_classes ? "classes or weights" : "gradients");
    if (!(p->lambda >= 0) || !(p->min_child_weight >= 0) || !(p->min_split_gain >= 0))
        return tz_err_set(err, TZ_EINVAL, "lambda, min_child_weight and min_split_gain must be >= 0");

    tz_tree_work *w = work ? work : tz_tree_work_new();
    if (!w) return tz_err_set(err, TZ_ENOMEM, "out of memory growing a tree");
    grower g = { .bins = bins, .p = p, .t = t, .n = bins->n_rows, .K = p->n_classes,
                 .nc = p->n_classes ? p->n_classes + 1 : 2, .min_w_floor = 1e-12 };
    int rc = 0;
    g.feats = wget(w, W_FEATS, bins->n_cols * sizeof *g.feats);
    g.hoff = wget(w, W_HOFF, bins->n_cols * sizeof *g.hoff);
    if (!g.feats || !g.hoff) {
        rc = tz_err_set(err, TZ_ENOMEM, "out of memory growing a tree");
        goto done;
    }
    for (size_t j = 0; j < bins->n_cols; j++) {
        if (p->allowed && !p->allowed[j]) continue;
        size_t fh = ((size_t)bins->n_bins[j] + 1) * g.nc;
        g.hoff[j] = g.node_hist;
        g.node_hist += fh;
        if (fh > g.max_fhist) g.max_fhist = fh;
        g.feats[g.n_feats++] = (int32_t)j;
    }
    if (!g.n_feats) {
        rc = tz_err_set(err, TZ_EINVAL, "no usable column");
        goto done;
    }
    g.n_slots = p->split_features > 0 && p->split_features < g.n_feats ? p->split_features : g.n_feats;
    g.rf = p->split_features > 0;
    g.cslots = g.rf ? 1 : g.n_slots;
    rc = grow(&g, w, out, err);
done:
    if (!work) tz_tree_work_free(w);
    if (rc) tz_tree_free(out);
    return rc;
}

void tz_tree_free(tz_tree *t)
{
    free(t->nodes);
    free(t->values);
    free(t->gain);
    free(t->steps);
    memset(t, 0, sizeof *t);
}

int tz_tree_prepare(tz_tree *t, tz_err *err)
{
    int32_t n = t->n_nodes + t->n_leaves;
    tz_tree_step *s = malloc((size_t)n * sizeof *s);
    int32_t *node = malloc((size_t)n * sizeof *node), *depth = malloc((size_t)n * sizeof *depth);
    if (!s || !node || !depth) {
        free(s);
        free(node);
        free(depth);
        return tz_err_set(err, TZ_ENOMEM, "out of memory preparing a tree");
    }
    /* Breadth first from the root: node[i] is what step i stands for (a
     * split's index, or ~leaf); its children take the next two free steps. */
    int32_t placed = 1, shared = 0;
    node[0] = t->n_nodes ? 0 : ~0;
    depth[0] = 0;
    t->depth = 0;
    for (int32_t i = 0; i < placed; i++) {
        if (node[i] < 0) {
            s[i] = (tz_tree_step){ .threshold = INFINITY, .left = i, .feature = 0, .nan_right = 0, .leaf = ~node[i] };
            continue;
        }
        const tz_tree_node *nd = &t->nodes[node[i]];
        if (placed + 2 > n) {  /* a child shared by two parents (a crafted file): steps i.. are not all made */
            shared = 1;
            break;
        }
        s[i] = (tz_tree_step){ .threshold = nd->threshold, .left = placed, .feature = nd->feature,
                               .nan_right = !nd->default_left, .leaf = -1 };
        node[placed] = nd->left;
        node[placed + 1] = nd->right;
        depth[placed] = depth[placed + 1] = depth[i] + 1;
        if (t->depth < depth[i] + 1) t->depth = depth[i] + 1;
        placed += 2;
    }
    free(node);
    free(depth);
    if (shared || placed != n) {
        free(s);
        return tz_err_set(err, TZ_ECORRUPT, "a tree whose nodes do not form one tree");
    }
    free(t->steps);
    t->steps = s;
    return 0;
}

/* Walks in lockstep: enough independent ones to hide a step's load
 * latency, few enough to keep their positions in registers. */
#define LANES TZ_TREE_LANES
/* Deeper than this, lockstep's fixed step count costs more than the
 * mispredictions it saves (unbalanced forest trees). */
#define LOCKSTEP_DEPTH 16

size_t tz_tree_chunk_rows(size_t n_cols) { return n_cols ? TZ_TREE_CHUNK_DOUBLES / n_cols : TZ_TREE_CHUNK_DOUBLES; }

void tz_tree_chunk_fill(tz_tree_chunk *c, const tz_data *x, size_t lo, size_t hi)
{
    size_t nc = x->n_cols, n = hi - lo;
    int finite = 1;
    for (size_t j = 0; j < nc; j++) {
        const double *col = x->cols[j] + lo;
        double *to = c->x + j;
        for (size_t i = 0; i < n; i++) {
            double v = col[i];
            finite &= v == v;
            to[i * nc] = v;
        }
    }
    c->n_rows = n;
    c->n_cols = nc;
    c->finite = finite;
}

/* One step: to left when x <= threshold, left + 1 when x > threshold,
 * left + nan_right when x is NaN (a leaf stays put). */
static inline int32_t step(const tz_tree_step *st, const double *row, int finite)
{
    double v = row[st->feature];
    return st->left + (finite ? v > st->threshold : (v > st->threshold) | ((v != v) & st->nan_right));
}

/* LANES walks in lockstep, `depth` steps each: lane l walks the steps s[l]
 * with the row x[l] (a leaf's step stays put, so a lane that reaches its
 * leaf early waits there). One tree and LANES rows (tz_tree_leaves), or
 * LANES trees and one row (tz_tree_row_leaves). */
static inline void walk(const tz_tree_step *const *s, const double *const *x, int32_t depth, int finite,
                        int32_t *leaf)
{
    int32_t at[LANES] = { 0 };
    for (int32_t d = 0; d < depth; d++) {
#pragma GCC unroll 16
        for (int l = 0; l < LANES; l++) at[l] = step(s[l] + at[l], x[l], finite);
    }
    for (int l = 0; l < LANES; l++) leaf[l] = s[l][at[l]].leaf;
}

static int32_t walk_row(const tz_tree *t, const double *row)
{
    int32_t i = 0;
    while (t->steps[i].leaf < 0) i = step(t->steps + i, row, 0);
    return t->steps[i].leaf;
}

void tz_tree_leaves(const tz_tree *t, const tz_tree_chunk *c, int32_t *leaf)
{
    size_t i = 0, n = c->n_rows, nc = c->n_cols;
    if (t->depth <= LOCKSTEP_DEPTH && n >= LANES) {
        /* One tree, LANES rows a block. depth and finite are copied: the
         * stores to leaf might change t or c, so they would be read again
         * for every block. */
        const tz_tree_step *s[LANES];
        const double *x[LANES];
        int32_t depth = t->depth;
        int finite = c->finite;
        for (int l = 0; l < LANES; l++) {
            s[l] = t->steps;
            x[l] = c->x + (size_t)l * nc;
        }
        for (;;) {
            /* finite as a constant in each copy: the NaN test compiles away */
            if (finite) walk(s, x, depth, 1, leaf + i);
            else walk(s, x, depth, 0, leaf + i);
            /* the rows move on only when a whole block follows: x stays in c->x */
            if ((i += LANES) + LANES > n) break;
            for (int l = 0; l < LANES; l++) x[l] += LANES * nc;
        }
    }
    for (; i < n; i++) leaf[i] = walk_row(t, c->x + i * nc);
}

void tz_tree_row_leaves(const tz_tree *trees, size_t n, size_t stride, const double *row, int finite,
                        int32_t *leaf)
{
    const double *x[LANES];  /* LANES trees, one row */
    for (int l = 0; l < LANES; l++) x[l] = row;
    for (size_t i = 0; i < n; i += LANES) {
        const tz_tree_step *s[LANES];
        int32_t got[LANES], depth = 0;
        int lanes = n - i < LANES ? (int)(n - i) : LANES;
        for (int l = 0; l < LANES; l++) {
            const tz_tree *t = &trees[(i + (size_t)(l < lanes ? l : 0)) * stride];  /* spare lanes redo the first */
            s[l] = t->steps;
            if (depth < t->depth) depth = t->depth;
        }
        if (depth > LOCKSTEP_DEPTH) {
            for (int l = 0; l < lanes; l++) leaf[i + (size_t)l] = walk_row(&trees[(i + (size_t)l) * stride], row);
            continue;
        }
        if (finite) walk(s, x, depth, 1, got);
        else walk(s, x, depth, 0, got);
        for (int l = 0; l < lanes; l++) leaf[i + (size_t)l] = got[l];
    }
}
