#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/tz_store.h"
#include "tap.h"

static char home[] = "/tmp/tz_store_test_XXXXXX";

static int put_str(tz_store *st, unsigned dbi, const char *k, const char *v)
{
    tz_store_txn *txn;
    tz_err err;
    int rc = tz_store_txn_begin(st, 1, &txn, &err);
    if (!rc) rc = tz_store_put(txn, dbi, k, strlen(k), v, strlen(v), 0, &err);
    if (!rc) return tz_store_txn_commit(txn, &err);
    tz_store_txn_abort(txn);
    return rc;
}

static void test_basic(tz_store *st)
{
    unsigned dbi, missing;
    tz_err err;
    ok(tz_store_db(st, "things", 1, &dbi, &err) == 0, "create a named database");
    is_int(tz_store_db(st, "absent", 0, &missing, &err), TZ_ENOTFOUND, "absent database without create");
    ok(put_str(st, dbi, "b", "2") == 0 && put_str(st, dbi, "a", "1") == 0 && put_str(st, dbi, "c", "3") == 0,
       "three writes commit");

    tz_store_txn *txn;
    tz_store_val v, k;
    ok(tz_store_txn_begin(st, 0, &txn, &err) == 0, "read transaction");
    ok(tz_store_get(txn, dbi, "b", 1, &v, &err) == 0 && v.size == 1 && !memcmp(v.data, "2", 1), "get b = 2");
    is_int(tz_store_get(txn, dbi, "zz", 2, &v, &err), TZ_ENOTFOUND, "missing key is ENOTFOUND");
    uint64_t n = 0;
    ok(tz_store_count(txn, dbi, &n, &err) == 0 && n == 3, "count is 3");

    tz_store_cursor *cur;
    ok(tz_store_cursor_open(txn, dbi, &cur, &err) == 0, "cursor opens");
    char order[8] = {0};
    int i = 0;
    for (int rc = tz_store_cursor_move(cur, TZ_STORE_SEEK, "a0", 2, &k, &v, &err); rc == 0 && i < 7;
         rc = tz_store_cursor_move(cur, TZ_STORE_NEXT, NULL, 0, &k, &v, &err))
        order[i++] = *(const char *)k.data;
    is_str(order, "bc", "seek a0 then next yields b, c in order");
    ok(tz_store_cursor_move(cur, TZ_STORE_LAST, NULL, 0, &k, &v, &err) == 0 && *(const char *)k.data == 'c',
       "last is c");
    tz_store_cursor_close(cur);
    tz_store_txn_abort(txn);
}

static void test_abort_discards(tz_store *st)
{
    unsigned dbi;
    tz_err err;
    tz_store_txn *txn;
    tz_store_val v;
    tz_store_db(st, "things", 1, &dbi, &err);
    tz_store_txn_begin(st, 1, &txn, &err);
    tz_store_put(txn, dbi, "gone", 4, "x", 1, 0, &err);
    tz_store_txn_abort(txn);
    tz_store_txn_begin(st, 0, &txn, &err);
    is_int(tz_store_get(txn, dbi, "gone", 4, &v, &err), TZ_ENOTFOUND, "aborted write is absent");
    tz_store_txn_abort(txn);
}

/* A lazy commit is a commit: visible at once, present after the home is
 * closed and opened again; the descriptor that makes it durable syncs. */
static void test_lazy_commit(tz_store **st)
{
    unsigned dbi;
    tz_err err;
    tz_store_txn *txn;
    tz_store_val v;
    tz_store_db(*st, "things", 1, &dbi, &err);
    ok(tz_store_txn_begin(*st, 1, &txn, &err) == 0, "write transaction for a lazy commit");
    tz_store_put(txn, dbi, "lazy", 4, "yes", 3, 0, &err);
    ok(tz_store_txn_commit_lazy(txn, &err) == 0, "lazy commit");
    tz_store_txn_begin(*st, 0, &txn, &err);
    ok(tz_store_get(txn, dbi, "lazy", 4, &v, &err) == 0 && v.size == 3, "lazily committed value is read back");
    tz_store_txn_abort(txn);
    int fd = tz_store_fd(*st);
    ok(fd >= 0 && fdatasync(fd) == 0, "the data file's descriptor syncs");
    ok(put_str(*st, dbi, "after", "1") == 0, "a synchronous commit follows a lazy one");
    tz_store_close(*st);
    ok(tz_store_open(home, NULL, st, &err) == 0, "the home opens again");
    tz_store_db(*st, "things", 0, &dbi, &err);
    tz_store_txn_begin(*st, 0, &txn, &err);
    ok(tz_store_get(txn, dbi, "lazy", 4, &v, &err) == 0 && !memcmp(v.data, "yes", 3), "the lazy commit is kept");
    tz_store_txn_abort(txn);
}

static void test_map_growth(void)
{
    char dir[] = "/tmp/tz_store_grow_XXXXXX";
    ok(mkdtemp(dir) != NULL, "temp dir for growth");
    tz_store *st;
    tz_err err;
    /* Random access too: the map keeps its advice when it grows. */
    tz_store_opts o = { .map_size = 1 << 20, .random_access = 1 };
    ok(tz_store_open(dir, &o, &st, &err) == 0, "open with a 1 MiB map");
    ok(tz_store_random_access(st), "opened for random access");
    unsigned dbi;
    tz_store_db(st, "big", 1, &dbi, &err);
    static char val[4000];
    memset(val, 'v', sizeof val);
    int grown = 0, written = 0;
    for (int batch = 0; batch < 40; batch++) {
        for (;;) {
            tz_store_txn *txn;
            tz_store_txn_begin(st, 1, &txn, &err);
            int rc = 0;
            for (int i = 0; i < 50 && !rc; i++) {
                char key[32];
                snprintf(key, sizeof key, "k%06d", batch * 50 + i);
                rc = tz_store_put(txn, dbi, key, strlen(key), val, sizeof val, 0, &err);
            }
            if (!rc) rc = tz_store_txn_commit(txn, &err);
            else tz_store_txn_abort(txn);
            if (rc == TZ_EMAPFULL) { grown += tz_store_grow(st, &err) == 0; continue; }
            if (rc == 0) written += 50;
            break;
        }
    }
    is_int(written, 2000, "2000 values of 4 KB written into a map that started at 1 MiB");
    ok(grown >= 3 && tz_store_map_size(st) >= (size_t)8 << 20, "map grew on EMAPFULL (%d times)", grown);
    /* A reservation grows it ahead: 16 MB more then fit in one transaction. */
    size_t before = tz_store_map_size(st);
    is_int(tz_store_reserve(st, 0, &err), 0, "reserving nothing");
    ok(tz_store_map_size(st) == before, "leaves the map as it is");
    is_int(tz_store_reserve(st, (size_t)16 << 20, &err), 0, "reserving 16 MB");
    ok(tz_store_map_size(st) >= before + ((size_t)16 << 20), "grows the map past what is in use (%zu)",
       tz_store_map_size(st));
    tz_store_txn *txn;
    tz_store_txn_begin(st, 1, &txn, &err);
    int rc = 0;
    for (int i = 0; i < 3500 && !rc; i++) {
        char key[32];
        snprintf(key, sizeof key, "r%06d", i);
        rc = tz_store_put(txn, dbi, key, strlen(key), val, sizeof val, 0, &err);
    }
    if (!rc) rc = tz_store_txn_commit(txn, &err);
    else tz_store_txn_abort(txn);
    is_int(rc, 0, "3500 values of 4 KB fit without growing on EMAPFULL");
    is_int(tz_store_reserve(st, SIZE_MAX - 1, &err), TZ_EINVAL, "an impossible reservation is refused: %s", err.msg);
    tz_store_close(st);
}

/* n entries "<prefix><i>" = 3000 bytes of 'a' + i % 26, packed as
 * tz_store_behind_append() reads them. */
typedef struct {
    char keys[600 * 16];
    uint32_t key_ends[600], val_ends[600];
    char *vals;
} behind_batch;

static void fill_batch(behind_batch *b, const char *prefix, int n)
{
    uint32_t k = 0;
    b->vals = malloc((size_t)n * 3000);
    for (int i = 0; i < n; i++) {
        k += (uint32_t)snprintf(b->keys + k, 16, "%s%05d", prefix, i);
        b->key_ends[i] = k;
        memset(b->vals + (size_t)i * 3000, 'a' + i % 26, 3000);
        b->val_ends[i] = (uint32_t)(i + 1) * 3000;
    }
}

static void test_behind(void)
{
    char dir[] = "/tmp/tz_store_behind_XXXXXX";
    ok(mkdtemp(dir) != NULL, "temp dir for the writer behind");
    tz_store *st;
    tz_err err;
    tz_store_opts o = { .map_size = 1 << 20 };
    ok(tz_store_open(dir, &o, &st, &err) == 0, "open with a 1 MiB map");
    unsigned dbi;
    tz_store_db(st, "log", 1, &dbi, &err);
    is_int(tz_store_behind_poll(st, 0, &err), 0, "nothing sent: done");
    behind_batch later, earlier;
    fill_batch(&later, "t2-", 600);   /* 1.8 MB: more than the map holds */
    is_int(tz_store_behind_append(st, dbi, later.keys, later.key_ends, later.vals, later.val_ends, 600, &err), 0,
           "a batch is sent");
    int rc = tz_store_behind_append(st, dbi, later.keys, later.key_ends, later.vals, later.val_ends, 600, &err);
    is_int(rc, TZ_EBUSY, "a second waits until the first's fate is read");
    rc = tz_store_behind_poll(st, 1, &err);
    is_int(rc, TZ_EMAPFULL, "a full map is reported: %s", err.msg);
    is_int(tz_store_behind_poll(st, 0, &err), 0, "once");
    uint64_t count = 1;
    tz_store_txn *txn;
    tz_store_txn_begin(st, 0, &txn, &err);
    tz_store_count(txn, dbi, &count, &err);
    tz_store_txn_abort(txn);
    is_int((int)count, 0, "and nothing of it was written");
    /* The caller grows the map; then the batch, and one whose keys sort
     * before it (put, not appended), land whole. */
    is_int(tz_store_reserve(st, (size_t)8 << 20, &err), 0, "the map grows while the writer waits");
    is_int(tz_store_behind_append(st, dbi, later.keys, later.key_ends, later.vals, later.val_ends, 600, &err), 0,
           "sent again");
    is_int(tz_store_behind_poll(st, 1, &err), 0, "committed");
    fill_batch(&earlier, "t1-", 300);
    is_int(tz_store_behind_append(st, dbi, earlier.keys, earlier.key_ends, earlier.vals, earlier.val_ends, 300, &err),
           0, "earlier keys sent");
    /* A writer on this thread meanwhile takes its turn. */
    is_int(put_str(st, dbi, "z-loop", "1"), 0, "the loop writes meanwhile");
    is_int(tz_store_behind_poll(st, 1, &err), 0, "committed too");
    tz_store_txn_begin(st, 0, &txn, &err);
    tz_store_count(txn, dbi, &count, &err);
    is_int((int)count, 901, "every entry is there once");
    tz_store_val v;
    ok(tz_store_get(txn, dbi, "t1-00027", 8, &v, &err) == 0 && v.size == 3000 && ((const char *)v.data)[2999] == 'b',
       "an entry's value whole");
    ok(tz_store_get(txn, dbi, "t2-00599", 8, &v, &err) == 0 && ((const char *)v.data)[0] == 'a' + 599 % 26,
       "the last entry's too");
    tz_store_txn_abort(txn);
    free(later.vals);
    free(earlier.vals);
    tz_store_close(st);
}

static void test_bad_homes(void)
{
    tz_store *st;
    tz_err err;
    char dir[] = "/tmp/tz_store_bad_XXXXXX";
    mkdtemp(dir);
    char path[256];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 5000; i++) fputs("garbage!", f);
    fclose(f);
    int rc = tz_store_open(dir, NULL, &st, &err);
    is_int(rc, TZ_ECORRUPT, "a garbage data file is refused as corrupt");
    ok(strstr(err.msg, "damaged") != NULL, "message says damaged: %s", err.msg);
    rc = tz_store_open(path, NULL, &st, &err);
    is_int(rc, TZ_EIO, "a file as home is refused: %s", err.msg);
}

int main(void)
{
    ok(mkdtemp(home) != NULL, "temp home");
    tz_store *st;
    tz_err err;
    ok(tz_store_open(home, NULL, &st, &err) == 0, "open a new home");
    ok(!tz_store_random_access(st), "readahead by default");
    test_basic(st);
    test_abort_discards(st);
    test_lazy_commit(&st);
    tz_store_close(st);
    test_map_growth();
    test_behind();
    test_bad_homes();
    return tap_done();
}
