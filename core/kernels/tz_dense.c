/* tz_dense.c — elementwise steps on one row (tz_dense.h). A loop in C, not
 * in Lua: the serving path calls it once per instance, and a Lua loop
 * there was an inner loop to every trace through the predict route. */
#include "kernels/tz_dense.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "util/tz_pool.h"

/* Operation op with a, b on one value. */
static inline double apply_one(int op, double v, double a, double b)
{
    switch (op) {
    case TZ_DENSE_FILL: return v != v ? a : v;
    case TZ_DENSE_AFFINE: return (v - a) / b;
    case TZ_DENSE_CLIP:
        if (v < a) v = a;
        if (v > b) v = b;
        return v;
    case TZ_DENSE_LOG1P: return v > -1 ? log(1 + v) : NAN;
    default: return NAN;
    }
}

void tz_dense_apply(double *x, int n, const int *op, const int *at, const double *a, const double *b)
{
    for (int i = 0; i < n; i++) x[at[i]] = apply_one(op[i], x[at[i]], a[i], b[i]);
}

typedef struct block_job {
    const double *const *src;
    size_t lo, n;
    double *const *scratch;
    const double **out;
    int n_ops;
    const int *op, *at;
    const double *a, *b;
} block_job;

static int any_nan(const double *x, size_t n)
{
    int nan = 0;
    for (size_t r = 0; r < n; r++) nan |= x[r] != x[r];
    return nan;
}

static void block_task(void *ctx, size_t task, int worker)
{
    (void)worker;
    const block_job *jb = ctx;
    int j = (int)task, changes = 0, fills_only = 1;
    const double *from = jb->src[j] + jb->lo;
    for (int i = 0; i < jb->n_ops; i++)
        if (jb->at[i] == j) {
            changes = 1;
            fills_only &= jb->op[i] == TZ_DENSE_FILL;
        }
    /* Most columns of a scored file hold no missing value: their fill
     * would copy the block only to change nothing. */
    if (!changes || (fills_only && !any_nan(from, jb->n))) {
        jb->out[j] = from;
        return;
    }
    double *to = jb->scratch[j];
    if (to != from) memcpy(to, from, jb->n * sizeof *to);
    for (int i = 0; i < jb->n_ops; i++)
        if (jb->at[i] == j)
            for (size_t r = 0; r < jb->n; r++) to[r] = apply_one(jb->op[i], to[r], jb->a[i], jb->b[i]);
    jb->out[j] = to;
}

void tz_dense_block(const double *const *src, size_t lo, size_t n, int p, double *const *scratch,
                    const double **out, int n_ops, const int *op, const int *at, const double *a, const double *b)
{
    block_job jb = { src, lo, n, scratch, out, n_ops, op, at, a, b };
    tz_pool_run((size_t)(p > 0 ? p : 0), block_task, &jb);
}

void tz_dense_columns(const double *rows, int n_rows, int width, int p, double *scratch, double *cols,
                      int n, const int *op, const int *at, const double *a, const double *b)
{
    for (int r = 0; r < n_rows; r++) {
        const double *row = rows + (size_t)r * (size_t)width;
        for (int j = 0; j < p; j++) scratch[j] = row[j];
        tz_dense_apply(scratch, n, op, at, a, b);
        for (int j = 0; j < p; j++) cols[(size_t)j * (size_t)n_rows + (size_t)r] = scratch[j];
    }
}
