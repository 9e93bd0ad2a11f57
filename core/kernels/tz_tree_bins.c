/* tz_tree_bins.c — quantile binning of features (tz_tree.h, "Binning"). */
#include "kernels/tz_tree.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tz_tree_internal.h"


typedef struct bin_ctx {
    const tz_data *x;
    tz_tree_bins *b;
    int max_bins;
    const uint32_t *sample;  /* NULL: all rows */
    size_t n_sample;
    double *cuts;            /* n_cols × max_bins, compacted afterwards */
    double *scratch;         /* per worker: n_sample values */
    uint32_t *counts;        /* per worker: n_sample counts */
} bin_ctx;

/* Sorts n doubles (no NaN) ascending: quicksort with a median of three,
 * insertion sort for short runs; qsort's comparator calls cost more than
 * the rest of binning. */
static void sort_doubles(double *v, size_t n)
{
    while (n > 16) {
        double a = v[0], b = v[n / 2], c = v[n - 1];
        double piv = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
        size_t i = 0, j = n - 1;
        for (;;) {
            while (v[i] < piv) i++;
            while (v[j] > piv) j--;
            if (i >= j) break;
            double t = v[i];
            v[i] = v[j];
            v[j] = t;
            i++;
            j--;
        }
        /* v[0..j] <= piv <= v[j+1..n-1]: recurse into the smaller part */
        size_t left = j + 1;
        if (left < n - left) {
            sort_doubles(v, left);
            v += left;
            n -= left;
        } else {
            sort_doubles(v + left, n - left);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        double x = v[i];
        size_t j = i;
        for (; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
        v[j] = x;
    }
}

/* A cut between neighbouring distinct values a < b: their midpoint when it
 * is representable and strictly below b, else a itself. */
static double cut_between(double a, double b)
{
    double m = a + (b - a) * 0.5;
    return (m >= a && m < b) ? m : a;
}

static void bin_column(void *vctx, size_t j, int worker)
{
    bin_ctx *c = vctx;
    const double *col = c->x->cols[j];
    double *v = c->scratch + (size_t)worker * c->n_sample;
    uint32_t *cnt = c->counts + (size_t)worker * c->n_sample;
    double *cuts = c->cuts + j * (size_t)c->max_bins;
    size_t m = 0;
    for (size_t i = 0; i < c->n_sample; i++) {
        double x = col[c->sample ? c->sample[i] : i];
        if (x == x) v[m++] = x;
    }
    sort_doubles(v, m);
    size_t nd = 0;  /* distinct values, compacted in place, with counts */
    for (size_t i = 0; i < m; i++) {
        if (nd && v[nd - 1] == v[i]) {
            cnt[nd - 1]++;
        } else {
            v[nd] = v[i];
            cnt[nd++] = 1;
        }
    }
    int nb = 0;
    if (nd <= (size_t)c->max_bins) {
        for (size_t i = 0; i + 1 < nd; i++) cuts[nb++] = cut_between(v[i], v[i + 1]);
    } else {
        /* Greedy equal-count bins over distinct values: a heavy value gets a
         * bin of its own and the rest share the bins left. */
        int left = c->max_bins;
        double rest = (double)m, acc = 0, target = rest / left;
        for (size_t i = 0; i + 1 < nd && left > 1; i++) {
            acc += cnt[i];
            if (acc >= target || nd - 1 - i <= (size_t)(left - 1)) {
                cuts[nb++] = cut_between(v[i], v[i + 1]);
                left--;
                rest -= acc;
                acc = 0;
                target = rest / left;
            }
        }
    }
    cuts[nb++] = INFINITY;
    c->b->n_bins[j] = (uint16_t)nb;

    uint8_t *codes = c->b->codes + j * c->b->n_rows;
    for (size_t i = 0; i < c->b->n_rows; i++) {
        double x = col[i];
        if (x != x) {
            codes[i] = (uint8_t)nb;
            continue;
        }
        int lo = 0, hi = nb - 1;  /* first b with x <= cuts[b]; cuts[nb-1] = inf */
        while (lo < hi) {
            int mid = (lo + hi) >> 1;
            if (x <= cuts[mid]) hi = mid; else lo = mid + 1;
        }
        codes[i] = (uint8_t)lo;
    }
}

void tz_tree_bins_free(tz_tree_bins *b)
{
    free(b->codes);
    free(b->n_bins);
    free(b->cuts);
    free(b->cut_start);
    memset(b, 0, sizeof *b);
}

int tz_tree_bins_build(const tz_data *x, int max_bins, size_t sample_rows, uint64_t seed,
                       tz_tree_bins *out, tz_err *err)
{
    memset(out, 0, sizeof *out);
    if (max_bins < 2 || max_bins > TZ_TREE_MAX_BINS)
        return tz_err_set(err, TZ_EINVAL, "max_bins must be in 2..%d, got %d", TZ_TREE_MAX_BINS, max_bins);
    if (!x || !x->cols || x->n_rows == 0 || x->n_cols == 0)
        return tz_err_set(err, TZ_EINVAL, "no data to bin");
    if (x->n_rows > UINT32_MAX)
        return tz_err_set(err, TZ_ETOOBIG, "%zu rows: at most %u are supported", x->n_rows, UINT32_MAX);
    size_t n = x->n_rows, p = x->n_cols;
    bin_ctx c = { .x = x, .b = out, .max_bins = max_bins, .n_sample = n };
    uint32_t *sample = NULL;
    if (sample_rows && n > sample_rows) {
        sample = malloc(sample_rows * sizeof *sample);
        if (!sample) return tz_err_set(err, TZ_ENOMEM, "out of memory binning features");
        /* Selection sampling (Knuth's algorithm S): sorted, no repeats. */
        tz_rng rng;
        tz_rng_seed(&rng, seed ^ 0xB1A5B1A5ull);
        size_t k = 0;
        for (size_t i = 0; i < n && k < sample_rows; i++)
            if (tz_rng_below(&rng, n - i) < sample_rows - k) sample[k++] = (uint32_t)i;
        c.sample = sample;
        c.n_sample = k;
    }
    int workers = tz_pool_threads();  /* scratch is per worker id, whoever runs */
    out->n_rows = n;
    out->n_cols = p;
    out->codes = malloc(n * p);
    out->n_bins = calloc(p, sizeof *out->n_bins);
    out->cut_start = calloc(p, sizeof *out->cut_start);
    c.cuts = malloc(p * (size_t)max_bins * sizeof *c.cuts);
    c.scratch = malloc((size_t)workers * c.n_sample * sizeof *c.scratch);
    c.counts = malloc((size_t)workers * c.n_sample * sizeof *c.counts);
    if (!out->codes || !out->n_bins || !out->cut_start || !c.cuts || !c.scratch || !c.counts) {
        free(sample);
        free(c.cuts);
        free(c.scratch);
        free(c.counts);
        tz_tree_bins_free(out);
        return tz_err_set(err, TZ_ENOMEM, "out of memory binning %zu × %zu values", n, p);
    }
    run_tasks(p, n * p, bin_column, &c, 0);
    size_t total = 0;
    for (size_t j = 0; j < p; j++) {
        out->cut_start[j] = total;
        total += out->n_bins[j];
    }
    out->cuts = malloc(total * sizeof *out->cuts);
    if (out->cuts)
        for (size_t j = 0; j < p; j++)
            memcpy(out->cuts + out->cut_start[j], c.cuts + j * (size_t)max_bins,
                   out->n_bins[j] * sizeof *out->cuts);
    free(sample);
    free(c.cuts);
    free(c.scratch);
    free(c.counts);
    if (!out->cuts) {
        tz_tree_bins_free(out);
        return tz_err_set(err, TZ_ENOMEM, "out of memory binning features");
    }
    return 0;
}
