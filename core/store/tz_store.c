#include "store/tz_store.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The one batch tz_store_behind_append() hands its thread, and what became
 * of it: pending while the thread has it, then 0 or an error, unread until
 * tz_store_behind_poll() reports it to the sender (no other batch is taken
 * before: each sender hears of its own). */
typedef struct {
    unsigned dbi;
    const uint8_t *keys, *vals;
    const uint32_t *key_ends, *val_ends;
    int n, pending, unread;
    tz_err err;
} behind_job;

struct tz_store {
    MDB_env *env;
    int read_only;
    /* The writer behind the loop (tz_store_behind_append): started by the
     * first batch, in the process that sent it. map_lock is held by its
     * transactions and by every change of the map's size, which LMDB
     * allows only while no write transaction is open in the process. */
    pthread_mutex_t lock, map_lock;
    pthread_cond_t changed;
    pthread_t thread;
    pid_t thread_pid;
    int stop;
    behind_job job;
};

/* Transactions and cursors are LMDB's own handles behind our opaque names:
 * no allocation per transaction on the hot path. */
#define TXN(t) ((MDB_txn *)(void *)(t))
#define CUR(c) ((MDB_cursor *)(void *)(c))
#define STORE_MAX_KEY 511      /* LMDB's default mdb_env_get_maxkeysize */

static int store_fail(tz_err *err, int rc, const char *what)
{
    switch (rc) {
    case MDB_NOTFOUND:   return TZ_ENOTFOUND;
    case MDB_MAP_FULL:   return tz_err_set(err, TZ_EMAPFULL, "%s: store map is full", what);
    case MDB_KEYEXIST:   return TZ_EBUSY;  /* expected, like NOTFOUND: no message */
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_VERSION_MISMATCH:
        return tz_err_set(err, TZ_ECORRUPT, "%s: %s (the home is damaged or is not a Tycho store)",
                          what, mdb_strerror(rc));
    case ENOMEM:         return tz_err_set(err, TZ_ENOMEM, "%s: out of memory", what);
    case MDB_BAD_VALSIZE:
        return tz_err_set(err, TZ_EINVAL, "%s: key is empty or longer than %d bytes", what, STORE_MAX_KEY);
    default:
        if (rc > 0)
            return tz_err_set(err, TZ_EIO, "%s: %s", what, strerror(rc));
        return tz_err_set(err, TZ_ESTORE, "%s: %s", what, mdb_strerror(rc));
    }
}

static int ensure_dir(const char *path, tz_err *err)
{
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return 0;
        return tz_err_set(err, TZ_EIO, "cannot open home %s: not a directory", path);
    }
    if (mkdir(path, 0775) != 0)
        return tz_err_set(err, TZ_EIO, "cannot create home %s: %s", path, strerror(errno));
    return 0;
}

static void store_free(tz_store *st)
{
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->map_lock);
    pthread_cond_destroy(&st->changed);
    free(st);
}

static void behind_stop(tz_store *st);

int tz_store_open(const char *path, const tz_store_opts *opts, tz_store **out, tz_err *err)
{
    tz_store_opts o = opts ? *opts : (tz_store_opts){0};
    if (!o.map_size) o.map_size = (size_t)64 << 20;
    if (!o.max_dbs) o.max_dbs = 64;
    if (!o.read_only && ensure_dir(path, err)) return err ? err->code : TZ_EIO;

    tz_store *st = calloc(1, sizeof *st);
    if (!st) return tz_err_set(err, TZ_ENOMEM, "out of memory");
    st->read_only = o.read_only;
    pthread_mutex_init(&st->lock, NULL);
    pthread_mutex_init(&st->map_lock, NULL);
    pthread_cond_init(&st->changed, NULL);
    int rc = mdb_env_create(&st->env);
    if (!rc) rc = mdb_env_set_maxdbs(st->env, o.max_dbs);
    if (!rc) rc = mdb_env_set_maxreaders(st->env, 1022);
    if (!rc) rc = mdb_env_set_mapsize(st->env, o.map_size);
    /* NOTLS: read transactions may move between threads and a thread may
     * hold several; the Lua runtime relies on both. */
    unsigned flags = MDB_NOTLS | (o.read_only ? MDB_RDONLY : 0) | (o.random_access ? MDB_NORDAHEAD : 0);
    if (!rc) rc = mdb_env_open(st->env, path, flags, 0664);
    if (rc) {
        char what[512];
        snprintf(what, sizeof what, "cannot open home %s", path);
        int code = store_fail(err, rc, what);
        mdb_env_close(st->env);
        store_free(st);
        return code == TZ_ENOTFOUND ? tz_err_set(err, TZ_EIO, "%s: not found", what) : code;
    }
    *out = st;
    return 0;
}

void tz_store_close(tz_store *st)
{
    if (!st) return;
    behind_stop(st);
    mdb_env_close(st->env);
    store_free(st);
}

int tz_store_random_access(tz_store *st)
{
    unsigned flags = 0;
    return !mdb_env_get_flags(st->env, &flags) && (flags & MDB_NORDAHEAD);
}

size_t tz_store_map_size(tz_store *st)
{
    MDB_envinfo info;
    mdb_env_info(st->env, &info);
    return info.me_mapsize;
}

uint64_t tz_store_last_txnid(tz_store *st)
{
    MDB_envinfo info;
    mdb_env_info(st->env, &info);
    return (uint64_t)info.me_last_txnid;
}

/* mdb_env_set_mapsize once the writer behind the loop is out of its
 * transaction (it takes map_lock for each). */
static int set_map_size(tz_store *st, size_t size)
{
    pthread_mutex_lock(&st->map_lock);
    int rc = mdb_env_set_mapsize(st->env, size);
    pthread_mutex_unlock(&st->map_lock);
    return rc;
}

int tz_store_grow(tz_store *st, tz_err *err)
{
    int rc = set_map_size(st, tz_store_map_size(st) * 2);
    return rc ? store_fail(err, rc, "grow store map") : 0;
}

int tz_store_reserve(tz_store *st, size_t bytes, tz_err *err)
{
    MDB_envinfo info;
    MDB_stat stat;
    int rc = mdb_env_info(st->env, &info);
    if (!rc) rc = mdb_env_stat(st->env, &stat);
    if (rc) return store_fail(err, rc, "read the store's size");
    size_t used = ((size_t)info.me_last_pgno + 1) * stat.ms_psize, size = info.me_mapsize;
    if (bytes > SIZE_MAX / 2 - used) return tz_err_set(err, TZ_EINVAL, "cannot reserve %zu bytes", bytes);
    while (size < used + bytes) size *= 2;
    if (size == info.me_mapsize) return 0;
    rc = set_map_size(st, size);
    return rc ? store_fail(err, rc, "grow store map") : 0;
}

int tz_store_txn_begin(tz_store *st, int write, tz_store_txn **out, tz_err *err)
{
    MDB_txn *txn;
    unsigned flags = write ? 0 : MDB_RDONLY;
    int rc = mdb_txn_begin(st->env, NULL, flags, &txn);
    if (rc == MDB_MAP_RESIZED) {
        /* Another process grew the map: adopt its size (0 = read from disk). */
        rc = set_map_size(st, 0);
        if (!rc) rc = mdb_txn_begin(st->env, NULL, flags, &txn);
    }
    if (rc) return store_fail(err, rc, write ? "begin write transaction" : "begin read transaction");
    *out = (tz_store_txn *)(void *)txn;
    return 0;
}

uint64_t tz_store_txn_id(tz_store_txn *txn) { return (uint64_t)mdb_txn_id(TXN(txn)); }

int tz_store_txn_commit(tz_store_txn *txn, tz_err *err)
{
    int rc = mdb_txn_commit(TXN(txn));
    return rc ? store_fail(err, rc, "commit") : 0;
}

int tz_store_txn_commit_lazy(tz_store_txn *txn, tz_err *err)
{
    /* The flag is read by this commit alone: only the thread holding the
     * write transaction sets it, and it is cleared before that thread can
     * begin another. */
    MDB_env *env = mdb_txn_env(TXN(txn));
    int rc = mdb_env_set_flags(env, MDB_NOMETASYNC, 1);
    if (rc) {
        mdb_txn_abort(TXN(txn));
        return store_fail(err, rc, "commit");
    }
    rc = mdb_txn_commit(TXN(txn));
    mdb_env_set_flags(env, MDB_NOMETASYNC, 0);
    return rc ? store_fail(err, rc, "commit") : 0;
}

int tz_store_fd(tz_store *st)
{
    mdb_filehandle_t fd;
    return mdb_env_get_fd(st->env, &fd) ? -1 : (int)fd;
}

void tz_store_txn_abort(tz_store_txn *txn)
{
    mdb_txn_abort(TXN(txn));
}

int tz_store_db(tz_store *st, const char *name, int create, unsigned *dbi, tz_err *err)
{
    /* Try a read transaction first so that readers never take the writer
     * lock; the handle lives on once the opening transaction commits. */
    for (int pass = 0; pass < 2; pass++) {
        int write = pass == 1;
        if (write && (!create || st->read_only)) break;
        tz_store_txn *txn;
        int rc = tz_store_txn_begin(st, write, &txn, err);
        if (rc) return rc;
        MDB_dbi h;
        rc = mdb_dbi_open(TXN(txn), name, write ? MDB_CREATE : 0, &h);
        if (rc == MDB_NOTFOUND) {
            mdb_txn_abort(TXN(txn));
            continue;
        }
        if (rc) {
            mdb_txn_abort(TXN(txn));
            return store_fail(err, rc, "open database");
        }
        rc = mdb_txn_commit(TXN(txn));
        if (rc) return store_fail(err, rc, "open database");
        *dbi = h;
        return 0;
    }
    return tz_err_set(err, TZ_ENOTFOUND, "no database named '%s' in this home", name);
}

void tz_store_txn_reset(tz_store_txn *txn)
{
    mdb_txn_reset(TXN(txn));
}

int tz_store_txn_renew(tz_store *st, tz_store_txn *txn, tz_err *err)
{
    int rc = mdb_txn_renew(TXN(txn));
    if (rc == MDB_MAP_RESIZED) {
        /* Another process grew the map since: adopt its size, as begin does. */
        rc = set_map_size(st, 0);
        if (!rc) rc = mdb_txn_renew(TXN(txn));
    }
    return rc ? store_fail(err, rc, "renew read transaction") : 0;
}

int tz_store_txn_db(tz_store_txn *txn, const char *name, int create, unsigned *dbi, tz_err *err)
{
    MDB_dbi h;
    int rc = mdb_dbi_open(TXN(txn), name, create ? MDB_CREATE : 0, &h);
    if (rc == MDB_NOTFOUND) return TZ_ENOTFOUND;
    if (rc) return store_fail(err, rc, "open database");
    *dbi = h;
    return 0;
}

int tz_store_get(tz_store_txn *txn, unsigned dbi, const void *key, size_t klen,
                 tz_store_val *val, tz_err *err)
{
    MDB_val k = { klen, (void *)key }, v;
    int rc = mdb_get(TXN(txn), dbi, &k, &v);
    if (rc) return store_fail(err, rc, "get");
    val->size = v.mv_size;
    val->data = v.mv_data;
    return 0;
}

int tz_store_put(tz_store_txn *txn, unsigned dbi, const void *key, size_t klen,
                 const void *val, size_t vlen, int no_overwrite, tz_err *err)
{
    MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
    int rc = mdb_put(TXN(txn), dbi, &k, &v, no_overwrite ? MDB_NOOVERWRITE : 0);
    return rc ? store_fail(err, rc, "put") : 0;
}

int tz_store_append(tz_store_txn *txn, unsigned dbi, const void *key, size_t klen,
                    const void *val, size_t vlen, tz_err *err)
{
    MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
    int rc = mdb_put(TXN(txn), dbi, &k, &v, MDB_APPEND);
    return rc ? store_fail(err, rc, "append") : 0;
}

/* One key of a put_new_many batch, built in full: its bytes in the batch's
 * buffer, its length, and its place in the caller's arrays. */
typedef struct {
    size_t off, len, index;
    const char *base;
} store_batch_key;

/* LMDB's default order: bytes, then the shorter key first. */
static int store_batch_key_cmp(const void *a, const void *b)
{
    const store_batch_key *x = a, *y = b;
    int c = memcmp(x->base + x->off, y->base + y->off, x->len < y->len ? x->len : y->len);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* The keys go in in order through one cursor: LMDB then finds the place of
 * a key next to the last one on the same leaf page without descending the
 * tree again, which for a batch of nearby keys is most of an insert's cost. */
static int store_put_sorted(MDB_txn *txn, unsigned dbi, store_batch_key *order, size_t n,
                            const char *const *vals, const size_t *val_lens, unsigned char *added, tz_err *err)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) return store_fail(err, rc, "open cursor");
    for (size_t i = 0; i < n; i++) {
        size_t at = order[i].index;
        MDB_val k = { order[i].len, (void *)(order[i].base + order[i].off) }, v = { val_lens[at], (void *)vals[at] };
        rc = mdb_cursor_put(cur, &k, &v, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST) { added[at] = 0; continue; }
        if (rc) break;
        added[at] = 1;
    }
    mdb_cursor_close(cur);
    return rc && rc != MDB_KEYEXIST ? store_fail(err, rc, "put") : 0;
}

int tz_store_put_new_many(tz_store_txn *txn, unsigned dbi, const void *prefix, size_t prefix_len,
                          const void *suffix, size_t suffix_len, size_t n,
                          const char *const *keys, const size_t *key_lens,
                          const char *const *vals, const size_t *val_lens,
                          unsigned char *added, tz_err *err)
{
    if (n == 0) return 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t klen = prefix_len + key_lens[i] + suffix_len;
        if (klen > STORE_MAX_KEY)
            return tz_err_set(err, TZ_EINVAL, "put_new_many: key %zu is longer than %d bytes", i, STORE_MAX_KEY);
        total += klen;
    }
    char *buf = malloc(total);
    store_batch_key *order = malloc(n * sizeof *order);
    if (!buf || !order) {
        free(buf);
        free(order);
        return tz_err_set(err, TZ_ENOMEM, "put_new_many: out of memory for %zu keys", n);
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        order[i] = (store_batch_key){ off, prefix_len + key_lens[i] + suffix_len, i, buf };
        memcpy(buf + off, prefix, prefix_len);
        memcpy(buf + off + prefix_len, keys[i], key_lens[i]);
        memcpy(buf + off + prefix_len + key_lens[i], suffix, suffix_len);
        off += order[i].len;
    }
    qsort(order, n, sizeof *order, store_batch_key_cmp);
    int rc = store_put_sorted(TXN(txn), dbi, order, n, vals, val_lens, added, err);
    free(buf);
    free(order);
    return rc;
}

int tz_store_del(tz_store_txn *txn, unsigned dbi, const void *key, size_t klen, tz_err *err)
{
    MDB_val k = { klen, (void *)key };
    int rc = mdb_del(TXN(txn), dbi, &k, NULL);
    return rc ? store_fail(err, rc, "delete") : 0;
}

int tz_store_clear(tz_store_txn *txn, unsigned dbi, tz_err *err)
{
    int rc = mdb_drop(TXN(txn), dbi, 0);
    return rc ? store_fail(err, rc, "clear") : 0;
}

int tz_store_count(tz_store_txn *txn, unsigned dbi, uint64_t *count, tz_err *err)
{
    MDB_stat s;
    int rc = mdb_stat(TXN(txn), dbi, &s);
    if (rc) return store_fail(err, rc, "stat");
    *count = s.ms_entries;
    return 0;
}

int tz_store_cursor_open(tz_store_txn *txn, unsigned dbi, tz_store_cursor **out, tz_err *err)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(TXN(txn), dbi, &c);
    if (rc) return store_fail(err, rc, "open cursor");
    *out = (tz_store_cursor *)(void *)c;
    return 0;
}

void tz_store_cursor_close(tz_store_cursor *cur)
{
    mdb_cursor_close(CUR(cur));
}

int tz_store_cursor_move(tz_store_cursor *cur, tz_store_move how, const void *seek, size_t seeklen,
                         tz_store_val *key, tz_store_val *val, tz_err *err)
{
    static const MDB_cursor_op ops[] = {
        [TZ_STORE_FIRST] = MDB_FIRST, [TZ_STORE_LAST] = MDB_LAST,
        [TZ_STORE_NEXT] = MDB_NEXT,   [TZ_STORE_PREV] = MDB_PREV,
        [TZ_STORE_SEEK] = MDB_SET_RANGE,
    };
    if ((unsigned)how > TZ_STORE_SEEK) return tz_err_set(err, TZ_EINVAL, "bad cursor move %d", how);
    MDB_val k = { seeklen, (void *)seek }, v = { 0, NULL };
    int rc = mdb_cursor_get(CUR(cur), &k, &v, ops[how]);
    if (rc) return store_fail(err, rc, "cursor");
    key->size = k.mv_size;
    key->data = k.mv_data;
    val->size = v.mv_size;
    val->data = v.mv_data;
    return 0;
}

/* ---- the writer behind the loop ------------------------------------------------------- */

/* One batch in one write transaction: appended where its keys come after the
 * database's last (MDB_APPEND), else put. Committed in full (two disk
 * flushes: it makes no one wait). Never changes the map's size: a full or
 * resized map is reported for the caller's thread to handle. */
static void behind_write(tz_store *st, behind_job *job)
{
    MDB_txn *txn;
    pthread_mutex_lock(&st->map_lock);
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc == MDB_MAP_RESIZED) rc = MDB_MAP_FULL;  /* the caller adopts the new size */
    if (rc) {
        pthread_mutex_unlock(&st->map_lock);
        store_fail(&job->err, rc, "begin write transaction");
        return;
    }
    uint32_t key_at = 0, val_at = 0;
    for (int i = 0; i < job->n && !rc; i++) {
        MDB_val k = { job->key_ends[i] - key_at, (void *)(job->keys + key_at) };
        MDB_val v = { job->val_ends[i] - val_at, (void *)(job->vals + val_at) };
        rc = mdb_put(txn, job->dbi, &k, &v, MDB_APPEND);
        if (rc == MDB_KEYEXIST) rc = mdb_put(txn, job->dbi, &k, &v, 0);
        key_at = job->key_ends[i];
        val_at = job->val_ends[i];
    }
    if (rc) mdb_txn_abort(txn);
    else rc = mdb_txn_commit(txn);
    pthread_mutex_unlock(&st->map_lock);
    if (rc) store_fail(&job->err, rc, "append");
}

static void *behind_main(void *arg)
{
    tz_store *st = arg;
    pthread_mutex_lock(&st->lock);
    for (;;) {
        while (!st->job.pending && !st->stop) pthread_cond_wait(&st->changed, &st->lock);
        if (!st->job.pending) break;
        behind_job job = st->job;
        pthread_mutex_unlock(&st->lock);
        job.err.code = 0;
        behind_write(st, &job);
        pthread_mutex_lock(&st->lock);
        st->job.err = job.err;
        st->job.pending = 0;
        pthread_cond_broadcast(&st->changed);
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/* This process's id, asked of the kernel once per process: the poll runs
 * on every turn of a serving loop, and each getpid is a system call (3 %
 * of a worker's time under 1000-instance predictions on a virtual
 * machine). A fork's child forgets the parent's. */
static pid_t known_pid;
static pthread_once_t fork_hook = PTHREAD_ONCE_INIT;

static void forget_pid(void) { __atomic_store_n(&known_pid, 0, __ATOMIC_RELAXED); }
static void hook_fork(void) { pthread_atfork(NULL, NULL, forget_pid); }

static pid_t self_pid(void)
{
    pid_t pid = __atomic_load_n(&known_pid, __ATOMIC_RELAXED);
    if (pid) return pid;
    pthread_once(&fork_hook, hook_fork);
    pid = getpid();
    __atomic_store_n(&known_pid, pid, __ATOMIC_RELAXED);
    return pid;
}

/* Ends the writer after the batch it holds, if this process started it. */
static void behind_stop(tz_store *st)
{
    if (st->thread_pid != self_pid()) return;
    pthread_mutex_lock(&st->lock);
    st->stop = 1;
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->lock);
    pthread_join(st->thread, NULL);
    st->thread_pid = 0;
    st->stop = 0;
}

int tz_store_behind_append(tz_store *st, unsigned dbi, const void *keys, const uint32_t *key_ends,
                           const void *vals, const uint32_t *val_ends, int n, tz_err *err)
{
    if (st->read_only) return tz_err_set(err, TZ_EINVAL, "append: the store is read-only");
    if (n <= 0) return 0;
    if (st->thread_pid != self_pid()) {
        /* First batch of this process (a fork leaves the parent's thread behind). */
        st->job.pending = 0;
        st->stop = 0;
        int rc = pthread_create(&st->thread, NULL, behind_main, st);
        if (rc) return tz_err_set(err, TZ_EIO, "cannot start the store's writer: %s", strerror(rc));
        st->thread_pid = self_pid();
    }
    pthread_mutex_lock(&st->lock);
    int busy = st->job.pending || st->job.unread;
    if (!busy) {
        st->job = (behind_job){ .dbi = dbi, .keys = keys, .key_ends = key_ends, .vals = vals,
                                .val_ends = val_ends, .n = n, .pending = 1, .unread = 1 };
        pthread_cond_broadcast(&st->changed);
    }
    pthread_mutex_unlock(&st->lock);
    return busy ? TZ_EBUSY : 0;
}

int tz_store_behind_poll(tz_store *st, int wait, tz_err *err)
{
    if (st->thread_pid != self_pid()) return 0;
    pthread_mutex_lock(&st->lock);
    while (wait && st->job.pending) pthread_cond_wait(&st->changed, &st->lock);
    int rc = st->job.pending ? TZ_EBUSY : st->job.err.code;
    if (!st->job.pending) {
        if (rc && err) *err = st->job.err;
        st->job.err.code = 0;
        st->job.unread = 0;
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}
