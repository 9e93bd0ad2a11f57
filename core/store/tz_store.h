/*
 * tz_store — Tycho's data home: one LMDB environment with named databases.
 *
 * Ownership. tz_store_open() returns a handle the caller frees with
 * tz_store_close() after every transaction is finished. A tz_store_txn is
 * freed by exactly one of tz_store_txn_commit() or tz_store_txn_abort(), and
 * its cursors must be closed first. Values returned by get and cursor calls
 * point into the memory map: valid until the transaction ends (or, in a write
 * transaction, until the next write), and must not be modified.
 *
 * Processes. Several processes may open one home at once (LMDB: one writer,
 * many lock-free readers). A handle must not cross fork(): open it after.
 *
 * Errors. Calls return 0 or a negative TZ_E* code (util/tz_err.h) and fill
 * err. TZ_ENOTFOUND is an expected outcome of get/seek, with no message.
 * TZ_EMAPFULL from put/commit means the map is full: abort the transaction,
 * call tz_store_grow() and run the transaction again. A map grown by another
 * process is adopted inside tz_store_txn_begin().
 *
 * Durability. Commits are synchronous (no MDB_NOSYNC): a writer killed at any
 * point leaves every committed transaction present and nothing of the rest.
 * tz_store_txn_commit_lazy() is the one exception, for a writer that must
 * not wait for two disk flushes per commit (see there).
 */
#ifndef TZ_STORE_H
#define TZ_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util/tz_err.h"

typedef struct tz_store tz_store;
typedef struct tz_store_txn tz_store_txn;
typedef struct tz_store_cursor tz_store_cursor;

/* A byte range, borrowed: see the ownership rules above. */
typedef struct tz_store_val {
    size_t size;
    const void *data;
} tz_store_val;

typedef struct tz_store_opts {
    size_t   map_size;  /* initial map size in bytes; 0 = 64 MiB */
    unsigned max_dbs;   /* named databases; 0 = 64 */
    int      read_only;
    /* No readahead on the map (MDB_NORDAHEAD): for a process that reads and
     * writes pages at random, as a serving worker does. Readahead fills the
     * page cache in large folios (Linux 6.16+ on ext4), and a 4 KB page that
     * LMDB writes then dirties its whole folio: 50 to 60 times the bytes to
     * disk per commit, measured. Sequential scans on a cold cache are the
     * price (each page a read of its own). */
    int      random_access;
} tz_store_opts;

/* Opens (creating when absent, unless read_only) the home directory `path`.
 * Fails with TZ_EIO (cannot create/open/lock), TZ_ECORRUPT (not an LMDB file
 * or damaged) or TZ_ESTORE. */
int  tz_store_open(const char *path, const tz_store_opts *opts, tz_store **out, tz_err *err);
void tz_store_close(tz_store *st);

/* Whether the home was opened with random_access (no readahead). */
int tz_store_random_access(tz_store *st);

/* Current map size in bytes. */
size_t tz_store_map_size(tz_store *st);
/* The id of the last committed write transaction, by any process: a value
 * read when this was N is still current while this stays N. No lock, no
 * transaction. */
uint64_t tz_store_last_txnid(tz_store *st);

/* Doubles the map size. Only while this process has no open transaction. */
int tz_store_grow(tz_store *st, tz_err *err);

/* Doubles the map size until `bytes` more fit past the pages in use, before
 * a transaction known to write about that much: growing on TZ_EMAPFULL runs
 * the whole transaction again (a 10M-row ingest into a new home ran five
 * times over). Only while this process has no open transaction. */
int tz_store_reserve(tz_store *st, size_t bytes, tz_err *err);

/* Opens (creating it in its own write transaction when absent and `create`)
 * the named database and stores its handle in *dbi. The handle is valid for
 * the life of st. TZ_ENOTFOUND when absent and !create. */
int tz_store_db(tz_store *st, const char *name, int create, unsigned *dbi, tz_err *err);

/* Like tz_store_db but inside the caller's transaction, which must be a
 * write transaction to create. The handle becomes permanent when txn
 * commits and is invalid if it aborts. */
int tz_store_txn_db(tz_store_txn *txn, const char *name, int create, unsigned *dbi, tz_err *err);

/* Begins a read (write = 0) or write transaction. A write transaction waits
 * for any other writer, in this or another process. */
int  tz_store_txn_begin(tz_store *st, int write, tz_store_txn **out, tz_err *err);
/* The commit a transaction reads (a read transaction), or the one it will
 * be (a write transaction). */
uint64_t tz_store_txn_id(tz_store_txn *txn);
int  tz_store_txn_commit(tz_store_txn *txn, tz_err *err);
/* Commits with the data pages flushed but not the meta page that makes the
 * transaction current (LMDB's MDB_NOMETASYNC, for this commit only): one
 * disk flush instead of two. The transaction is durable once a later
 * fdatasync of tz_store_fd() — or any later commit — has finished; an OS
 * crash before then may undo it and nothing else (the previous meta page
 * still points at intact pages). A process crash loses nothing. Same
 * errors and ownership as tz_store_txn_commit(). */
int  tz_store_txn_commit_lazy(tz_store_txn *txn, tz_err *err);
/* The data file's descriptor: fdatasync() it (from any thread) to make
 * lazy commits durable. Owned by the store; -1 if unavailable. */
int  tz_store_fd(tz_store *st);
void tz_store_txn_abort(tz_store_txn *txn);

/* A read transaction can be parked and reused: reset releases its snapshot
 * (cheaply, keeping the handle), renew takes a fresh one. For hot readers
 * that do many small reads. */
void tz_store_txn_reset(tz_store_txn *txn);
int  tz_store_txn_renew(tz_store *st, tz_store_txn *txn, tz_err *err);

int tz_store_get(tz_store_txn *txn, unsigned dbi, const void *key, size_t klen,
                 tz_store_val *val, tz_err *err);
/* no_overwrite: TZ_EBUSY when the key exists (err untouched: an answer,
 * not a failure), and the stored value stays. */
int tz_store_put(tz_store_txn *txn, unsigned dbi, const void *key, size_t klen,
                 const void *val, size_t vlen, int no_overwrite, tz_err *err);
/* Puts key = val at the end of the database (MDB_APPEND: no B-tree search,
 * pages filled whole): the key must sort after every key there (TZ_EBUSY
 * otherwise, nothing stored). For runs of keys written in order. */
int tz_store_append(tz_store_txn *txn, unsigned dbi, const void *key, size_t klen,
                    const void *val, size_t vlen, tz_err *err);
/* For each i < n: puts prefix + keys[i] + suffix = vals[i] when that key is
 * absent, and sets added[i] to 1 (0 when it existed; its value stays). One
 * call for a batch of mostly new keys, an experiment's units at each flush.
 * The keys go in sorted, through one cursor; of keys repeated in the batch
 * one is added. Stops at the first failure (TZ_EINVAL for a key over 511
 * bytes, before anything is put; TZ_ENOMEM). */
int tz_store_put_new_many(tz_store_txn *txn, unsigned dbi, const void *prefix, size_t prefix_len,
                          const void *suffix, size_t suffix_len, size_t n,
                          const char *const *keys, const size_t *key_lens,
                          const char *const *vals, const size_t *val_lens,
                          unsigned char *added, tz_err *err);
/* TZ_ENOTFOUND when the key is absent. */
int tz_store_del(tz_store_txn *txn, unsigned dbi, const void *key, size_t klen, tz_err *err);
/* Deletes every key of the database. */
int tz_store_clear(tz_store_txn *txn, unsigned dbi, tz_err *err);
/* Number of entries. */
int tz_store_count(tz_store_txn *txn, unsigned dbi, uint64_t *count, tz_err *err);

/* The writer behind the loop: a thread of the store that writes a batch of
 * entries to dbi in a write transaction of its own and commits it in full,
 * so that the caller's thread (the event loop) neither builds it nor waits
 * for the disk. Entry i's key is keys[key_ends[i-1] .. key_ends[i]) and its
 * value likewise in vals (ends are cumulative, the first starts at 0); keys
 * after the database's last are appended (MDB_APPEND), others put. One
 * batch at a time: TZ_EBUSY until tz_store_behind_poll() has reported the
 * last one's fate (so each sender hears of its own batch). The arrays
 * are borrowed until tz_store_behind_poll() says the batch is done.
 * The thread starts with the first batch in the process and ends with
 * tz_store_close(); it takes no lock of the caller's and never changes the
 * map's size, which waits for its transaction to end. */
int tz_store_behind_append(tz_store *st, unsigned dbi, const void *keys, const uint32_t *key_ends,
                           const void *vals, const uint32_t *val_ends, int n, tz_err *err);
/* The last batch's fate: TZ_EBUSY while it is written (wait = 0; wait = 1
 * waits for it), 0 once committed or when none was sent, else its error,
 * reported once: TZ_EMAPFULL when the map was full or grown by another
 * process (nothing written: the caller writes it in its own transaction,
 * which grows the map). */
int tz_store_behind_poll(tz_store *st, int wait, tz_err *err);

/* Cursors: keys are ordered bytewise (memcmp, shorter first on a tie). */
typedef enum tz_store_move {
    TZ_STORE_FIRST, TZ_STORE_LAST, TZ_STORE_NEXT, TZ_STORE_PREV,
    TZ_STORE_SEEK   /* first key >= the given key */
} tz_store_move;

int  tz_store_cursor_open(tz_store_txn *txn, unsigned dbi, tz_store_cursor **out, tz_err *err);
void tz_store_cursor_close(tz_store_cursor *cur);
/* Moves the cursor and fills key/val; TZ_ENOTFOUND past either end.
 * `seek`/`seeklen` are read only for TZ_STORE_SEEK. */
int tz_store_cursor_move(tz_store_cursor *cur, tz_store_move how, const void *seek, size_t seeklen,
                         tz_store_val *key, tz_store_val *val, tz_err *err);

#endif
