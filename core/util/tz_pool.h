/*
 * tz_pool — a process-wide pool of worker threads for the kernels.
 *
 * tz_pool_run(n, fn, ctx) calls fn(ctx, task, worker) once for every task in
 * 0..n-1, spread over the pool's threads and the caller, and returns when all
 * are done. Tasks are claimed in any order, so a kernel is deterministic (and
 * independent of the thread count) exactly when each task writes only its
 * own outputs and the caller combines them in task order: split work into a
 * fixed number of tasks (never "one per thread"), reduce afterwards.
 *
 * `worker` (0..tz_pool_threads()-1) indexes per-thread scratch space.
 * The thread count is TYCHO_THREADS, else the online CPUs (at most 64).
 * Calls from several threads at once are serialised. fn must not call
 * tz_pool_run (nested calls run inline on the caller).
 */
#ifndef TZ_POOL_H
#define TZ_POOL_H

#include <stddef.h>

typedef void (*tz_pool_fn)(void *ctx, size_t task, int worker);

int  tz_pool_threads(void);
void tz_pool_run(size_t n_tasks, tz_pool_fn fn, void *ctx);

#endif
