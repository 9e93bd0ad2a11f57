/*
 * tz_tree_internal.h — what the tree kernel's own files share (tz_tree.c grows
 * trees, tz_tree_bins.c bins features, tz_tree_io.c reads and writes trees):
 * when a step is worth the thread pool. Not a public header.
 */
#ifndef TZ_TREE_INTERNAL_H
#define TZ_TREE_INTERNAL_H

#include <stddef.h>

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

#endif
