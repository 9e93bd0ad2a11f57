/*
 * tz_redis_internal — what tz_redis.c (the blocking client) and
 * tz_redis_async.c (its non-blocking reads) share: the client's and the
 * batch's layout and the helpers both paths route and record replies with.
 * Not part of the contract: that is tz_redis.h.
 */
#ifndef TZ_REDIS_INTERNAL_H
#define TZ_REDIS_INTERNAL_H

#include <hiredis/hiredis.h>
#include "io/tz_redis.h"

#define MAX_NODES 1024
/* While a node fails, the map is asked for at most this often (a read that
 * finds its node down asks once, not every read of a busy server). */
#define REFRESH_MIN_MS 100

typedef struct tzr_entry tzr_entry;
typedef struct tzr_op tzr_op;

/* A non-blocking connection and what it owes replies to, oldest first (a
 * ring): Redis answers one connection in order. */
typedef struct tzr_conn {
    redisContext *c;
    int want;            /* TZ_REDIS_READ | TZ_REDIS_WRITE the loop is told to watch c for */
    tzr_entry *q;
    int q_head, q_n, q_cap;
} tzr_conn;

typedef struct node {
    char host[256];
    int port;
    redisContext *c;
    int queued;      /* commands written to c in this round, to read back */
    double down_until;  /* a connect failed: not tried again before this (now_ms),
                         * so a dead node costs one connect per timeout_ms, not one per command */
    /* The non-blocking connections of tz_redis_async_*, apart from c so
     * that a blocking exec never reads a reply meant for a waiting read:
     * one per lane (TZ_REDIS_LANE_*), so that a write's WAIT, which holds
     * its connection until a replica answers, never holds the reads. */
    tzr_conn lanes[TZ_REDIS_LANES];
} node;

struct tz_redis {
    tz_redis_opts o;
    node *nodes;
    int n_nodes, n_seeds;   /* nodes[0 .. n_seeds) are the seeds */
    int16_t slots[TZ_REDIS_SLOTS];
    double refreshed_at;    /* now_ms of the last map refresh */
    tz_redis_stats stats;
    /* tz_redis_async_*: reads in flight, what the loop must watch, reads done */
    tzr_op *ops;
    tz_redis_watch *events;
    int n_events, events_cap;
    int *done;
    int n_done, done_cap;
    tz_redis_batch *map_batch;   /* the CLUSTER SLOTS an async read asks when the map went stale */
    tzr_op *map_op;
    int map_stale;
};

enum { PENDING = 0, DONE = 1, FAILED = 2 };  /* FAILED: UNAVAILABLE, sent again by the next exec */

typedef struct cmd {
    int slot, argc, state;
    size_t arg0;            /* index of its first argument in the batch's arrays */
    int target;             /* node chosen for this round */
    int ask;                /* node named by an ASK reply, else -1 */
    int sent;               /* written this round (with ASKING first when asked) */
    redisReply *reply;
    int item0, n_items;
    char why[128];
} cmd;

struct tz_redis_batch {
    cmd *cmds;
    int n, cap;
    char *data;             /* argument bytes */
    size_t data_len, data_cap;
    size_t *off, *lens;     /* per argument: offset into data, length */
    size_t n_args, args_cap;
    const char **argv;      /* scratch for one command's pointers */
    int argv_cap;
    tz_redis_item *items;
    int n_items, items_cap;
    int max_elements;       /* for tz_redis_batch_feed */
};


double tzr_now_ms(void);
int tzr_known_down(const node *n);
int tzr_node_index(tz_redis *r, const char *host, int port);
void tzr_bound_reader(redisReader *rd, int *max_elements);
int tzr_parse_slots(tz_redis *r, const redisReply *rep, const char *default_host, tz_err *err);
/* Takes reply (owned from now on) as command i's answer. */
int tzr_set_reply(tz_redis_batch *b, int i, redisReply *reply);
int tzr_set_unavailable(tz_redis_batch *b, int i, const char *why);
const char **tzr_argv_of(tz_redis_batch *b, const cmd *c);

/* The async side's part of tz_redis_close: its connections and reads. */
void tzr_async_close(tz_redis *r);

#endif
