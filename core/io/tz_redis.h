/*
 * tz_redis — a synchronous Redis Cluster client on hiredis (RESP2).
 *
 *   tz_redis *r;  tz_err err;
 *   if (tz_redis_open("redis://127.0.0.1:7000,127.0.0.1:7001", NULL, &r, &err)) ...
 *   tz_redis_batch *b = tz_redis_batch_new();
 *   const char *argv[] = { "HGET", "{user:42}", "7" };
 *   tz_redis_batch_add(b, tz_redis_key_slot("{user:42}", 9), 3, argv, NULL, &err);
 *   tz_redis_exec(r, b, &err);          one round trip per node, nodes overlapped
 *   tz_redis_batch_reply(b, 0, &items, &n);
 *
 * The client keeps the cluster's slot map (CLUSTER SLOTS, asked of any node
 * it knows, seeds first when none answers) and one connection per master.
 * tz_redis_exec groups a batch's commands by the node that serves their
 * slot, writes every node's commands before reading any reply, then reads
 * them in order. A MOVED reply updates the map and the command goes again to
 * the node named (the whole map is refreshed before the next round); an ASK
 * reply sends it once to the node named, preceded by ASKING. A connection
 * that fails (refused, reset, timed out) is dropped, the map is refreshed,
 * and its commands go again after a short backoff, until opts.retry_ms has
 * passed: so a failover (a replica promoted in a few seconds) is ridden out
 * within that budget, and past it the commands still pending are marked
 * TZ_REDIS_UNAVAILABLE, never waited on. tz_redis_exec_within sets another
 * budget for one exec: 0 for a read on a serving path, which answers
 * "unavailable" at once rather than hold its worker through a failover.
 * A node that refused a connection is not tried again for timeout_ms, and
 * while nodes fail the map is asked for at most every 100 ms. Commands may
 * thus be sent twice: give the client idempotent commands only.
 *
 * Not thread-safe: one tz_redis per thread (the runtime has one loop).
 *
 * A serving worker's loop must not wait on Redis, so reads there go through
 * tz_redis_async_* instead: the client writes a batch on non-blocking
 * connections of its own and returns at once; the caller watches the
 * sockets it names (tz_redis_async_events) on its event loop, hands each
 * readiness to tz_redis_async_io, calls tz_redis_async_tick every few
 * milliseconds while reads are in flight, and collects finished batches
 * with tz_redis_async_take. No libuv handle lives in the client: the loop
 * is the caller's, and closing either never waits on the other.
 */
#ifndef TZ_REDIS_H
#define TZ_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include "util/tz_err.h"

#define TZ_REDIS_SLOTS 16384

typedef struct tz_redis tz_redis;
typedef struct tz_redis_batch tz_redis_batch;

/* Options; a zero field takes its default. */
typedef struct tz_redis_opts {
    int timeout_ms;      /* connect, and each blocking read or write (1000) */
    int retry_ms;        /* budget of one exec for redirects, reconnects and failover (5000) */
    size_t max_reply;    /* bytes of replies one node may have pending unparsed (64 MiB) */
    int max_elements;    /* elements of one array reply (1 << 20) */
} tz_redis_opts;

/* Reply item types. A reply is flattened depth-first: an ARRAY item's
 * integer is its element count and its elements follow it. */
enum {
    TZ_REDIS_NIL = 0,
    TZ_REDIS_STRING = 1,
    TZ_REDIS_INTEGER = 2,
    TZ_REDIS_STATUS = 3,
    TZ_REDIS_ERROR = 4,        /* the server's error reply, e.g. "WRONGTYPE ..." */
    TZ_REDIS_ARRAY = 5,
    TZ_REDIS_UNAVAILABLE = 6,  /* no reply within the retry budget; str says why */
};

typedef struct tz_redis_item {
    int type;
    int64_t integer;           /* INTEGER's value; ARRAY's element count */
    const char *str;           /* STRING, STATUS, ERROR, UNAVAILABLE: owned by the batch */
    size_t len;
} tz_redis_item;

/* Counters since tz_redis_open, for tests and metrics. */
typedef struct tz_redis_stats {
    int64_t moved, ask, reconnects, refreshes, retries;
    int64_t waited;   /* batches sent by tz_redis_async_send */
} tz_redis_stats;

/* The cluster hash slot of a key: CRC16 (XMODEM) mod 16384 of the key, or of
 * its hash tag (the bytes between the first '{' and the next '}', when that
 * is not empty). */
int tz_redis_key_slot(const char *key, size_t len);

/* A client for the cluster that seeds ("redis://h:p,h:p", or "h:p,..."; each
 * element may carry its own "redis://") belong to. opts may be NULL. Fails
 * with TZ_EINVAL for a malformed list, TZ_EIO when no seed answers CLUSTER
 * SLOTS. The client is the caller's; tz_redis_close frees it. */
int tz_redis_open(const char *seeds, const tz_redis_opts *opts, tz_redis **out, tz_err *err);

/* The same without connecting: the slot map starts empty (tests load one with
 * tz_redis_load_slots). */
int tz_redis_create(const char *seeds, const tz_redis_opts *opts, tz_redis **out, tz_err *err);

/* Closes every connection and frees r (NULL is fine). */
void tz_redis_close(tz_redis *r);

/* Asks the cluster for its slot map again. 0, or TZ_EIO when no node answers
 * (the old map is kept). */
int tz_redis_refresh(tz_redis *r, tz_err *err);

/* Replaces the slot map with a CLUSTER SLOTS reply given as RESP bytes (what
 * tz_redis_refresh does with the server's answer). TZ_EINVAL when malformed. */
int tz_redis_load_slots(tz_redis *r, const char *resp, size_t len, tz_err *err);

/* Writes "host:port" of the master serving slot into buf (cap bytes);
 * returns 0, or TZ_ENOTFOUND when the map has no node for it. */
int tz_redis_slot_node(const tz_redis *r, int slot, char *buf, size_t cap);

/* Fills slots with one slot served by each master (at most max); returns
 * how many, for commands that must reach every master (FUNCTION LOAD). */
int tz_redis_master_slots(const tz_redis *r, int *slots, int max);

void tz_redis_get_stats(const tz_redis *r, tz_redis_stats *out);

/* A batch of commands and, after exec, their replies. NULL when out of memory. */
tz_redis_batch *tz_redis_batch_new(void);
void tz_redis_batch_free(tz_redis_batch *b);

/* Empties the batch (commands and replies) keeping its memory. */
void tz_redis_batch_clear(tz_redis_batch *b);

/* Number of commands in the batch. */
int tz_redis_batch_count(const tz_redis_batch *b);

/* Appends a command routed to slot (tz_redis_key_slot of its key; -1 for any
 * node). The arguments are copied; lens may be NULL for NUL-terminated
 * strings. Returns the command's index, or TZ_ENOMEM / TZ_EINVAL. */
int tz_redis_batch_add(tz_redis_batch *b, int slot, int argc, const char **argv, const size_t *lens, tz_err *err);

/* Sends the batch's commands not answered yet and reads their replies.
 * 0 when every command has its reply (which may be a server ERROR item);
 * TZ_EIO when some are TZ_REDIS_UNAVAILABLE after the retry budget;
 * TZ_ETOOBIG when a reply passed opts.max_reply or max_elements (that
 * command's item is UNAVAILABLE too). Earlier replies are kept: exec again
 * retries only what is missing. */
int tz_redis_exec(tz_redis *r, tz_redis_batch *b, tz_err *err);

/* tz_redis_exec with budget_ms in place of opts.retry_ms. With 0, a command
 * whose node cannot be reached now (refused, reset, known down, the cluster
 * failing over) is TZ_REDIS_UNAVAILABLE at once; redirects, a refreshed
 * map that names another node, and one reconnect after a dropped connection
 * are still followed at once, without waiting. Same returns. */
int tz_redis_exec_within(tz_redis *r, tz_redis_batch *b, int budget_ms, tz_err *err);

/* The flattened reply of command i: *items (owned by the batch, valid until
 * it is cleared, freed or executed again) and their count. TZ_EINVAL when i
 * is out of range; TZ_ENOTFOUND when the command has no reply yet. */
int tz_redis_batch_reply(const tz_redis_batch *b, int i, const tz_redis_item **items, int *n);

/* Sets command i's reply from RESP bytes, as exec does with what a node sends
 * (tests of reply handling without a server). TZ_EINVAL when the bytes are not
 * one complete reply; TZ_ETOOBIG past max_elements (1 << 20). */
int tz_redis_batch_feed(tz_redis_batch *b, int i, const char *resp, size_t len, tz_err *err);

/* ---- non-blocking reads ------------------------------------------------ */

enum { TZ_REDIS_READ = 1, TZ_REDIS_WRITE = 2 };

/* Lanes: each node gets a non-blocking connection per lane, so that writes
 * (whose WAIT holds a connection until a replica confirms) never delay reads. */
enum { TZ_REDIS_LANE_READS = 0, TZ_REDIS_LANE_WRITES = 1, TZ_REDIS_LANES = 2 };

/* A socket to watch: want is TZ_REDIS_READ | TZ_REDIS_WRITE (0: nothing for
 * now), or -1: stop watching it, then tz_redis_async_release it. */
typedef struct tz_redis_watch {
    int fd;
    int want;
} tz_redis_watch;

/* Sends batch b's commands that have no reply yet, without blocking, on
 * the connections of lane, with the budget of a serving read
 * (tz_redis_exec_within's 0): redirects are
 * followed, a node known down or unreachable answers UNAVAILABLE at once,
 * and a node silent for timeout_ms is given up (its commands UNAVAILABLE,
 * the node known down). Returns 1 when every command was settled at once
 * (no ticket will come), 0 when the batch is in flight: ticket comes out of
 * tz_redis_async_take once it is settled, and b must not be touched, cleared
 * or freed before. TZ_ENOMEM on failure. A stale map is asked for again in
 * the background. */
int tz_redis_async_send(tz_redis *r, tz_redis_batch *b, int lane, int ticket, tz_err *err);

/* Moves up to max changes of what the loop must watch into out; returns
 * how many (call again while it returns max). */
int tz_redis_async_events(tz_redis *r, tz_redis_watch *out, int max);

/* The loop found fd readable and/or writable. */
void tz_redis_async_io(tz_redis *r, int fd, int readable, int writable);

/* Gives up on nodes silent past timeout_ms; returns how many batches are in
 * flight (the caller's timer may stop at 0). */
int tz_redis_async_tick(tz_redis *r);

/* Moves up to max tickets of settled batches into tickets; returns how many. */
int tz_redis_async_take(tz_redis *r, int *tickets, int max);

/* Closes a socket named with want -1, once the loop no longer watches it. */
void tz_redis_async_release(tz_redis *r, int fd);

/* What a MOVED or ASK error reply says: returns 1 for MOVED, 2 for ASK, 0 for
 * any other text; fills slot, host (empty when the server left it out) and port. */
int tz_redis_parse_redirect(const char *msg, size_t len, int *slot, char *host, size_t host_cap, int *port);

#endif
