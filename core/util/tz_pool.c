#include "util/tz_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 64

static struct {
    pthread_once_t once;
    pthread_mutex_t run_lock;    /* one tz_pool_run at a time */
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    int threads;                 /* including the caller */
    unsigned long generation;    /* bumped per job */
    tz_pool_fn fn;
    void *ctx;
    size_t n_tasks;
    atomic_size_t next;
    int busy;                    /* helper threads still on this job */
} pool = { .once = PTHREAD_ONCE_INIT, .run_lock = PTHREAD_MUTEX_INITIALIZER,
           .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
           .done = PTHREAD_COND_INITIALIZER };

static __thread int in_pool_job;

static void drain(int worker)
{
    size_t t;
    while ((t = atomic_fetch_add(&pool.next, 1)) < pool.n_tasks) pool.fn(pool.ctx, t, worker);
}

static void *helper(void *arg)
{
    int worker = (int)(size_t)arg;
    unsigned long seen = 0;
    in_pool_job = 1;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        pthread_mutex_unlock(&pool.lock);
        drain(worker);
        pthread_mutex_lock(&pool.lock);
        if (--pool.busy == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

static void start(void)
{
    const char *env = getenv("TYCHO_THREADS");
    long n = env ? atol(env) : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    pool.threads = 1;
    for (long i = 1; i < n; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* Its worker index is the count so far: with a thread that failed to
         * start, indices still stay below tz_pool_threads(). */
        if (pthread_create(&t, &attr, helper, (void *)(size_t)pool.threads) == 0) pool.threads++;
        pthread_attr_destroy(&attr);
    }
}

int tz_pool_threads(void)
{
    pthread_once(&pool.once, start);
    return pool.threads;
}

void tz_pool_run(size_t n_tasks, tz_pool_fn fn, void *ctx)
{
    if (n_tasks == 0) return;
    if (in_pool_job || tz_pool_threads() == 1 || n_tasks == 1) {
        for (size_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&pool.run_lock);
    pthread_mutex_lock(&pool.lock);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n_tasks = n_tasks;
    atomic_store(&pool.next, 0);
    pool.busy = pool.threads - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    in_pool_job = 1;
    drain(0);
    in_pool_job = 0;
    pthread_mutex_lock(&pool.lock);
    while (pool.busy > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.run_lock);
}
