/* tz_tree_hist.c — histograms and the splits found in them (tz_tree.h,
 * "Growing"): per-bin sums of a node's rows for a column (dense, or sparse
 * for small random-forest nodes), the parallel tasks that build a level's
 * histograms (by subtraction from the parent's when it was kept), and the
 * scans that pick each node's best bin boundary. Which nodes to look at,
 * and what to do with the splits found, is tz_tree.c's business. */
#include "kernels/tz_tree.h"

#include <math.h>
#include <string.h>

#include "kernels/tz_tree_internal.h"

/* Best split of one node on one column from its histogram h: every bin
 * boundary, with the missing rows on either side. Empty bins change
 * nothing and are skipped; once the right side is lighter than allowed it
 * only gets lighter, so the scan stops there. bl (when not NULL) lists the
 * nbl non-empty bins in increasing order, which gives the same answer
 * without walking all nb bins. */
static void scan(const grower *g, const double *h, int nb, const uint16_t *bl, int nbl, const double *tot,
                 double *best_gain, int32_t *best_bin, uint8_t *best_dl, double *best_l)
{
    /* Class mode. With S the class sums, score = ΣS²/W, and the right
     * side's ΣR² = ΣT² − 2ΣL·T + ΣL², so one pass over the classes per bin
     * gives both sides (exact for integer weights, e.g. bootstrap counts). */
    int nc = g->nc, K = nc - 1;
    double L[nc], X[nc];
    const double *M = h + (size_t)nb * nc;
    double W = tot[K];
    double floor = g->min_w_floor * fabs(W);
    double minw = g->p->min_child_weight > floor ? g->p->min_child_weight : floor;
    int missing = M[K] > floor;
    double lambda = g->p->lambda;
    double t2 = 0;
    for (int k = 0; k < K; k++) t2 += tot[k] * tot[k];
    double parent = W + lambda > 0 ? t2 / (W + lambda) : 0;
    double gain_floor = g->p->min_split_gain;
    *best_gain = -INFINITY;
    *best_bin = -1;
    memset(L, 0, sizeof L);
    for (int q = 0, nq = bl ? nbl : nb; q < nq; q++) {
        int b = bl ? bl[q] : q;
        const double *hb = h + (size_t)b * nc;
        if (hb[K] == 0) continue;
        double l2 = 0, lt = 0;
        for (int k = 0; k < K; k++) {
            double l = L[k] + hb[k];
            L[k] = l;
            l2 += l * l;
            lt += l * tot[k];
        }
        L[K] += hb[K];
        if (W - L[K] < minw) break;
        for (int opt = 0; opt <= missing; opt++) {
            /* opt 0: missing goes right (or there is none); 1: left. */
            const double *Lx = L;
            double x2 = l2, xt = lt;
            if (opt) {
                x2 = xt = 0;
                for (int k = 0; k < K; k++) {
                    double x = L[k] + M[k];
                    X[k] = x;
                    x2 += x * x;
                    xt += x * tot[k];
                }
                X[K] = L[K] + M[K];
                Lx = X;
            }
            double wl = Lx[K], wr = W - wl;
            if (!(wl >= minw && wr >= minw)) continue;
            double r2 = t2 - 2 * xt + x2;
            double sl = wl + lambda > 0 ? x2 / (wl + lambda) : 0, sr = wr + lambda > 0 ? r2 / (wr + lambda) : 0;
            double gain = sl + sr - parent;
            if (!(gain > gain_floor && gain > 1e-10 * (sl + sr))) continue;
            if (gain > *best_gain) {
                *best_gain = gain;
                *best_bin = b;
                *best_dl = missing ? (uint8_t)opt : (uint8_t)(wl >= wr);
                memcpy(best_l, Lx, sizeof L);
            }
        }
    }
}

/* The same for gradient mode (two channels: G, H), written out. */
static void scan_gh(const grower *g, const double *h, int nb, const uint16_t *bl, int nbl, const double *tot,
                    double *best_gain, int32_t *best_bin, uint8_t *best_dl, double *best_l)
{
    double G = tot[0], H = tot[1], lambda = g->p->lambda;
    double floor = g->min_w_floor * fabs(H);
    double minw = g->p->min_child_weight > floor ? g->p->min_child_weight : floor;
    double MG = h[2 * (size_t)nb], MH = h[2 * (size_t)nb + 1];
    int missing = MH > floor;
    double parent = H + lambda > 0 ? G * G / (H + lambda) : 0;
    double gain_floor = g->p->min_split_gain, best = -INFINITY;
    double GL = 0, HL = 0, bl_g = 0, bl_h = 0;
    int bb = -1, bdl = 0;
    if (!missing && !bl) {  /* the common case, written out */
        for (int b = 0; b < nb; b++) {
            double hh = h[2 * b + 1];
            if (hh == 0) continue;
            GL += h[2 * b];
            HL += hh;
            double hr = H - HL;
            if (hr < minw) break;
            if (HL < minw) continue;
            double gr = G - GL, sl = GL * GL / (HL + lambda), sr = gr * gr / (hr + lambda);
            double gain = sl + sr - parent;
            if (gain > best && gain > gain_floor && gain > 1e-10 * (sl + sr)) {
                best = gain;
                bb = b;
                bl_g = GL;
                bl_h = HL;
            }
        }
        bdl = bl_h >= H - bl_h;
        goto done;
    }
    for (int q = 0, nq = bl ? nbl : nb; q < nq; q++) {
        int b = bl ? bl[q] : q;
        double hg = h[2 * b], hh = h[2 * b + 1];
        if (hh == 0) continue;
        GL += hg;
        HL += hh;
        if (H - HL < minw) break;
        for (int opt = 0; opt <= missing; opt++) {
            double gl = opt ? GL + MG : GL, hl = opt ? HL + MH : HL;
            double gr = G - gl, hr = H - hl;
            if (!(hl >= minw && hr >= minw)) continue;
            double sl = gl * gl / (hl + lambda), sr = gr * gr / (hr + lambda);
            double gain = sl + sr - parent;
            if (gain > best && gain > gain_floor && gain > 1e-10 * (sl + sr)) {
                best = gain;
                bb = b;
                bdl = missing ? opt : hl >= hr;
                bl_g = gl;
                bl_h = hl;
            }
        }
    }
done:
    *best_gain = best;
    *best_bin = bb;
    *best_dl = (uint8_t)bdl;
    best_l[0] = bl_g;
    best_l[1] = bl_h;
}

static void build_hist(const grower *g, double *h, double *aux, int32_t f, size_t beg, size_t end)
{
    int nc = g->nc;
    memset(h, 0, ((size_t)g->bins->n_bins[f] + 1) * nc * sizeof *h);
    const uint8_t *col = g->bins->codes + (size_t)f * g->n;
    const uint32_t *rows = g->rows;
    if (g->K == 0) {
        const float *gh = g->ogh;
        size_t nb2 = ((size_t)g->bins->n_bins[f] + 1) * 2;
        if (aux && end - beg >= nb2) {
            /* Rows k mod 4 into four histograms: a column where most rows
             * share a bin then is not one long chain of dependent adds. */
            double *a1 = aux, *a2 = aux + nb2, *a3 = aux + 2 * nb2;
            memset(aux, 0, 3 * nb2 * sizeof *aux);
            size_t k = beg;
            for (; k + 3 < end; k += 4) {
                double *h0 = h + 2 * (size_t)col[rows[k]], *h1 = a1 + 2 * (size_t)col[rows[k + 1]];
                double *h2 = a2 + 2 * (size_t)col[rows[k + 2]], *h3 = a3 + 2 * (size_t)col[rows[k + 3]];
                h0[0] += gh[2 * k];
                h0[1] += gh[2 * k + 1];
                h1[0] += gh[2 * k + 2];
                h1[1] += gh[2 * k + 3];
                h2[0] += gh[2 * k + 4];
                h2[1] += gh[2 * k + 5];
                h3[0] += gh[2 * k + 6];
                h3[1] += gh[2 * k + 7];
            }
            for (; k < end; k++) {
                double *h0 = h + 2 * (size_t)col[rows[k]];
                h0[0] += gh[2 * k];
                h0[1] += gh[2 * k + 1];
            }
            for (size_t b = 0; b < nb2; b++) h[b] += (a1[b] + a2[b]) + a3[b];
            return;
        }
        for (size_t k = beg; k < end; k++) {
            double *hb = h + 2 * (size_t)col[rows[k]];
            hb[0] += gh[2 * k];
            hb[1] += gh[2 * k + 1];
        }
    } else {
        const uint16_t *cls = g->t->cls;
        const float *w = g->t->w;
        int K = g->K;
        for (size_t k = beg; k < end; k++) {
            uint32_t r = rows[k];
            double *hb = h + (size_t)col[r] * nc;
            double wt = w[r];
            hb[cls[r]] += wt;
            hb[K] += wt;
        }
    }
}

static void level_task(void *vctx, size_t task, int worker)
{
    grower *g = vctx;
    size_t gi = task / (size_t)g->n_slots;
    int s = (int)(task % (size_t)g->n_slots);
    const group *gr = &g->groups[gi];
    int32_t a = gr->a, b = gr->b;
    int nc = g->nc;
    double *scr = g->scratch + (size_t)worker * tz_tree_hist_scratch(g);
    int32_t f = g->feats[s];
    int nb = g->bins->n_bins[f];
    size_t fh = ((size_t)nb + 1) * nc;

    /* a is built from rows; b (if any) by subtraction when the parent's
     * histogram was kept, else from rows too. */
    int32_t ida = g->lvl[a];
    double *ha = g->keep && g->eval[a] ? g->keep + (size_t)a * g->node_hist + g->hoff[f] : scr;
    double *hb = NULL;
    int need_a = g->eval[a] || (b >= 0 && gr->parent && g->eval[b]);
    if (need_a) build_hist(g, ha, scr + 2 * g->max_fhist + nc, f, g->beg[ida], g->end[ida]);
    if (b >= 0 && g->eval[b]) {
        int32_t idb = g->lvl[b];
        hb = g->keep ? g->keep + (size_t)b * g->node_hist + g->hoff[f] : scr + g->max_fhist;
        if (gr->parent) {
            const double *hp = gr->parent + g->hoff[f];
            for (size_t k = 0; k < fh; k++) hb[k] = hp[k] - ha[k];
        } else {
            build_hist(g, hb, scr + 2 * g->max_fhist + nc, f, g->beg[idb], g->end[idb]);
        }
    }
    if (g->eval[a]) {
        size_t c = (size_t)a * g->n_slots + s;
        g->cfeat[c] = f;
        (g->K ? scan : scan_gh)(g, ha, nb, NULL, 0, g->sums + (size_t)ida * nc, &g->cgain[c], &g->cbin[c], &g->cdl[c],
                                g->clsum + c * nc);
    }
    if (hb) {
        size_t c = (size_t)b * g->n_slots + s;
        g->cfeat[c] = f;
        (g->K ? scan : scan_gh)(g, hb, nb, NULL, 0, g->sums + (size_t)g->lvl[b] * nc, &g->cgain[c], &g->cbin[c],
                                &g->cdl[c], g->clsum + c * nc);
    }
}

/* A histogram of a small node: only the bins its rows touch, listed in
 * *touched (unsorted); h must be all zeroes on entry. */
static int build_sparse(const grower *g, double *h, int32_t f, size_t beg, size_t end, uint16_t *touched)
{
    int nc = g->nc, nt = 0;
    const uint8_t *col = g->bins->codes + (size_t)f * g->n;
    const uint32_t *rows = g->rows;
    for (size_t k = beg; k < end; k++) {
        uint32_t r = rows[k];
        unsigned b = col[r];
        double *hb = h + (size_t)b * nc;
        if (hb[nc - 1] == 0) touched[nt++] = (uint16_t)b;
        if (g->K == 0) {
            hb[0] += g->ogh[2 * k];
            hb[1] += g->ogh[2 * k + 1];
        } else {
            double wt = g->t->w[r];
            hb[g->t->cls[r]] += wt;
            hb[g->K] += wt;
        }
    }
    return nt;
}

/* Random forests: one node, columns drawn one at a time (its own stream,
 * seeded from the node id) until n_slots of them vary within the node, as
 * scikit-learn does; constant columns do not count. Small nodes use sparse
 * histograms, so a deep tree does not pay for every bin at every node. */
static void rf_node_task(void *vctx, size_t task, int worker)
{
    grower *g = vctx;
    int32_t i = g->groups[task].a, id = g->lvl[i];
    int nc = g->nc;
    double *h = g->scratch + (size_t)worker * tz_tree_hist_scratch(g);
    double *hz = h + g->max_fhist, *lsum = h + 2 * g->max_fhist;  /* hz: kept zeroed */
    int32_t *perm = g->perm + (size_t)worker * g->n_feats;
    uint16_t *touched = g->touched + (size_t)worker * (TZ_TREE_MAX_BINS + 1);
    memcpy(perm, g->feats, (size_t)g->n_feats * sizeof *perm);
    tz_rng rng;
    tz_rng_seed(&rng, g->p->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(id + 1)));
    const double *tot = g->sums + (size_t)id * nc;
    size_t c = (size_t)i, beg = g->beg[id], end = g->end[id];
    int found = 0;
    for (int s = 0; s < g->n_feats && found < g->n_slots; s++) {
        int j = s + (int)tz_rng_below(&rng, (uint64_t)(g->n_feats - s));
        int32_t f = perm[j];
        perm[j] = perm[s];
        perm[s] = f;
        int nb = g->bins->n_bins[f], nt = 0;
        double gain;
        int32_t bin = -1;
        uint8_t dl;
        if ((end - beg) * 4 < (size_t)nb) {
            nt = build_sparse(g, hz, f, beg, end, touched);
            if (nt >= 2) {
                /* insertion sort: nt is small; the missing bin (nb) sorts last */
                for (int a = 1; a < nt; a++) {
                    uint16_t v = touched[a];
                    int q = a;
                    for (; q > 0 && touched[q - 1] > v; q--) touched[q] = touched[q - 1];
                    touched[q] = v;
                }
                int nl = touched[nt - 1] == nb ? nt - 1 : nt;
                found++;
                (g->K ? scan : scan_gh)(g, hz, nb, touched, nl, tot, &gain, &bin, &dl, lsum);
            }
            for (int a = 0; a < nt; a++) memset(hz + (size_t)touched[a] * nc, 0, nc * sizeof *hz);
        } else {
            build_hist(g, h, NULL, f, beg, end);
            for (int b = 0; b <= nb && nt < 2; b++) nt += h[(size_t)b * nc + nc - 1] > 0;
            if (nt >= 2) {
                found++;
                (g->K ? scan : scan_gh)(g, h, nb, NULL, 0, tot, &gain, &bin, &dl, lsum);
            }
        }
        if (bin >= 0 && gain > g->cgain[c]) {
            g->cgain[c] = gain;
            g->cbin[c] = bin;
            g->cdl[c] = dl;
            g->cfeat[c] = f;
            memcpy(g->clsum + c * nc, lsum, nc * sizeof *lsum);
        }
    }
}

/* One task per (node group × column slot), or per node for random forests. */
void tz_tree_hist_level(grower *g, size_t eval_rows)
{
    if (g->rf)
        run_tasks((size_t)g->n_groups, eval_rows * (size_t)g->n_slots, rf_node_task, g, g->p->serial);
    else
        run_tasks((size_t)g->n_groups * g->n_slots, eval_rows * (size_t)g->n_slots, level_task, g, g->p->serial);
}
