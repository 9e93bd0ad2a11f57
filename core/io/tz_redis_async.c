/* tz_redis_async — the cluster client's non-blocking reads, for a serving
 * worker whose event loop must not wait on Redis. The contract is in
 * tz_redis.h; the blocking client it shares the slot map with is tz_redis.c.
 *
 * Each node gets non-blocking hiredis contexts of its own, one per lane
 * (reads; writes, whose WAIT holds its connection), each with a ring of
 * what it owes replies to, in the order the commands went out (Redis
 * answers one connection in order). A batch in flight is an op: it
 * counts its commands not settled yet and the ring entries that point at
 * it, so an op given up on (a silent node) stays allocated until the last
 * entry naming it is gone. A connection that fails settles every entry it
 * holds as UNAVAILABLE; its socket is not closed here but handed back to
 * the caller's loop (want -1), which stops watching it and then releases
 * it: a descriptor closed under a live watch could be reused by the next
 * socket and confuse the loop. */
#include "io/tz_redis.h"
#include "io/tz_redis_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_HOPS 5   /* redirects one batch follows before its command is UNAVAILABLE */

struct tzr_entry {
    tzr_op *op;
    int cmd;
    int asking;          /* the ASKING sent before an asked command: its reply is dropped */
};

struct tzr_op {
    tz_redis *r;
    tz_redis_batch *b;
    int lane;
    int ticket;
    int left;            /* commands not settled */
    int refs;            /* ring entries naming this op */
    int given_up;        /* settled: replies still owed are dropped */
    int hops;
    double deadline;
    tzr_op *prev, *next; /* r->ops */
};

/* ---- bookkeeping ---------------------------------------------------- */

static int push_event(tz_redis *r, int fd, int want)
{
    for (int i = 0; i < r->n_events; i++)
        if (r->events[i].fd == fd && r->events[i].want >= 0) {
            r->events[i].want = want;
            return 0;
        }
    if (r->n_events == r->events_cap) {
        int cap = r->events_cap ? r->events_cap * 2 : 16;
        tz_redis_watch *p = realloc(r->events, sizeof *p * (size_t)cap);
        if (!p) return TZ_ENOMEM;
        r->events = p, r->events_cap = cap;
    }
    r->events[r->n_events++] = (tz_redis_watch){ fd, want };
    return 0;
}

static void set_want(tz_redis *r, tzr_conn *k, int want)
{
    if (k->want == want) return;
    k->want = want;
    push_event(r, k->c->fd, want);
}

static int push_done(tz_redis *r, int ticket)
{
    if (r->n_done == r->done_cap) {
        int cap = r->done_cap ? r->done_cap * 2 : 16;
        int *p = realloc(r->done, sizeof *p * (size_t)cap);
        if (!p) return TZ_ENOMEM;
        r->done = p, r->done_cap = cap;
    }
    r->done[r->n_done++] = ticket;
    return 0;
}

static void unlink_op(tzr_op *o)
{
    tz_redis *r = o->r;
    if (o->prev) o->prev->next = o->next;
    else r->ops = o->next;
    if (o->next) o->next->prev = o->prev;
    free(o);
}

static void release_op(tzr_op *o)
{
    if (--o->refs == 0 && o->given_up) unlink_op(o);
}

/* The batch is settled: its ticket goes out (the map's own read parses
 * the new map instead), and the op lives on only while replies are owed. */
static void finish(tzr_op *o)
{
    tz_redis *r = o->r;
    o->given_up = 1;
    if (o == r->map_op) {
        r->map_op = NULL;
        const cmd *c = &o->b->cmds[0];
        tz_err ignored;
        if (c->state == DONE && c->reply && c->target >= 0
            && tzr_parse_slots(r, c->reply, r->nodes[c->target].host, &ignored) == 0)
            r->map_stale = 0;
    } else {
        push_done(r, o->ticket);
    }
    if (o->refs == 0) unlink_op(o);
}

static void settle(tzr_op *o)
{
    if (--o->left == 0) finish(o);
}

static void unavailable(tzr_op *o, int i, const char *why)
{
    tzr_set_unavailable(o->b, i, why);
    settle(o);
}

/* ---- connections ---------------------------------------------------- */

static int ring_push(tzr_conn *k, tzr_entry e)
{
    if (k->q_n == k->q_cap) {
        int cap = k->q_cap ? k->q_cap * 2 : 64;
        tzr_entry *q = malloc(sizeof *q * (size_t)cap);
        if (!q) return TZ_ENOMEM;
        for (int i = 0; i < k->q_n; i++) q[i] = k->q[(k->q_head + i) % k->q_cap];
        free(k->q);
        k->q = q, k->q_cap = cap, k->q_head = 0;
    }
    k->q[(k->q_head + k->q_n++) % k->q_cap] = e;
    return 0;
}

static tzr_entry ring_pop(tzr_conn *k)
{
    tzr_entry e = k->q[k->q_head];
    k->q_head = (k->q_head + 1) % k->q_cap;
    k->q_n--;
    return e;
}

/* Drops node t's connection of lane: what it owed is UNAVAILABLE, its
 * socket goes back to the loop to release. silent: the node stopped
 * answering, so it is known down for timeout_ms (one wait per timeout, not
 * one per read); a closed or refused connection is tried again at once. */
static void nb_fail(tz_redis *r, int t, int lane, const char *why, int silent)
{
    node *n = &r->nodes[t];
    tzr_conn *k = &n->lanes[lane];
    if (!k->c) return;
    int fd = k->c->fd;
    k->c->fd = -1;           /* redisFree leaves it open for the loop */
    redisFree(k->c);
    k->c = NULL, k->want = 0;
    if (fd >= 0) push_event(r, fd, -1);
    if (silent) n->down_until = tzr_now_ms() + r->o.timeout_ms;
    r->map_stale = 1;
    while (k->q_n) {
        tzr_entry e = ring_pop(k);
        if (!e.asking && !e.op->given_up) unavailable(e.op, e.cmd, why);
        release_op(e.op);
    }
}

static redisContext *nb_connection(tz_redis *r, int t, int lane)
{
    node *n = &r->nodes[t];
    tzr_conn *k = &n->lanes[lane];
    if (k->c) return k->c;
    if (tzr_known_down(n)) return NULL;
    redisContext *c = redisConnectNonBlock(n->host, n->port);
    if (!c || c->err) {     /* refused before a socket was made (hiredis closed it) */
        if (c) redisFree(c);
        n->down_until = tzr_now_ms() + r->o.timeout_ms;
        return NULL;
    }
    tzr_bound_reader(c->reader, &r->o.max_elements);
    r->stats.reconnects++;
    k->c = c, k->want = 0;
    return c;
}

/* Writes what the connection has buffered, as far as its socket takes it now. */
static void nb_write(tz_redis *r, int t, int lane)
{
    tzr_conn *k = &r->nodes[t].lanes[lane];
    int done = 0;
    if (redisBufferWrite(k->c, &done) != REDIS_OK) {
        nb_fail(r, t, lane, "connection to the node lost", 0);
        return;
    }
    set_want(r, k, TZ_REDIS_READ | (done ? 0 : TZ_REDIS_WRITE));
}

/* ---- sending -------------------------------------------------------- */

static int any_reachable(tz_redis *r)
{
    for (int i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].lanes[TZ_REDIS_LANE_READS].c) return i;
    for (int i = 0; i < r->n_nodes; i++)
        if (!tzr_known_down(&r->nodes[i])) return i;
    return -1;
}

/* Queues command i of op o on the node that serves it; settles it as
 * UNAVAILABLE when that node cannot be reached now. */
static int send_cmd(tz_redis *r, tzr_op *o, int i, unsigned char *touched)
{
    cmd *c = &o->b->cmds[i];
    int t = c->ask >= 0 ? c->ask : c->slot < 0 ? any_reachable(r) : r->slots[c->slot];
    redisContext *nb = t >= 0 ? nb_connection(r, t, o->lane) : NULL;
    if (!nb) {
        if (t < 0) r->map_stale = 1;
        unavailable(o, i, t < 0 ? "no node serves the slot" : "the node is down");
        return 0;
    }
    tzr_conn *k = &r->nodes[t].lanes[o->lane];
    c->target = t;
    const char **argv = tzr_argv_of(o->b, c);
    if (!argv) return TZ_ENOMEM;
    if (c->ask >= 0) {
        if (redisAppendCommand(nb, "ASKING") != REDIS_OK || ring_push(k, (tzr_entry){ o, i, 1 })) return TZ_ENOMEM;
        o->refs++;
        c->ask = -1;
    }
    if (redisAppendCommandArgv(nb, c->argc, argv, o->b->lens + c->arg0) != REDIS_OK
        || ring_push(k, (tzr_entry){ o, i, 0 }))
        return TZ_ENOMEM;
    o->refs++;
    touched[t] |= (unsigned char)(1u << o->lane);
    return 0;
}

/* touched[t]: a bit per lane whose connection to node t has commands to write. */
static void flush_touched(tz_redis *r, const unsigned char *touched)
{
    for (int t = 0; t < r->n_nodes; t++)
        for (int lane = 0; lane < TZ_REDIS_LANES; lane++)
            if ((touched[t] >> lane & 1) && r->nodes[t].lanes[lane].c) nb_write(r, t, lane);
}

static tzr_op *new_op(tz_redis *r, tz_redis_batch *b, int lane, int ticket)
{
    tzr_op *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->r = r, o->b = b, o->lane = lane, o->ticket = ticket;
    o->deadline = tzr_now_ms() + r->o.timeout_ms;
    o->next = r->ops;
    if (r->ops) r->ops->prev = o;
    r->ops = o;
    return o;
}

static int send_op(tz_redis *r, tzr_op *o)
{
    tz_redis_batch *b = o->b;
    unsigned char touched[MAX_NODES];
    memset(touched, 0, (size_t)r->n_nodes);
    o->left = 1;             /* held while sending, so it cannot finish half sent */
    int rc = 0;
    for (int i = 0; i < b->n && !rc; i++) {
        if (b->cmds[i].state == DONE) continue;
        b->cmds[i].state = PENDING;
        o->left++;
        rc = send_cmd(r, o, i, touched);
    }
    flush_touched(r, touched);
    return rc;
}

/* Asks for the map again, in the background, when a redirect or a lost
 * node made it stale (at most every REFRESH_MIN_MS). */
static void refresh_if_stale(tz_redis *r)
{
    if (!r->map_stale || r->map_op || tzr_now_ms() - r->refreshed_at < REFRESH_MIN_MS) return;
    if (!r->map_batch && !(r->map_batch = tz_redis_batch_new())) return;
    tz_redis_batch_clear(r->map_batch);
    const char *argv[] = { "CLUSTER", "SLOTS" };
    tz_err ignored;
    if (tz_redis_batch_add(r->map_batch, -1, 2, argv, NULL, &ignored) < 0) return;
    tzr_op *o = new_op(r, r->map_batch, TZ_REDIS_LANE_READS, 0);
    if (!o) return;
    r->map_op = o;
    r->refreshed_at = tzr_now_ms();
    r->stats.refreshes++;
    send_op(r, o);
    settle(o);
}

int tz_redis_async_send(tz_redis *r, tz_redis_batch *b, int lane, int ticket, tz_err *err)
{
    if (lane < 0 || lane >= TZ_REDIS_LANES) return tz_err_set(err, TZ_EINVAL, "no lane %d", lane);
    tzr_op *o = new_op(r, b, lane, ticket);
    if (!o) return tz_err_set(err, TZ_ENOMEM, "out of memory");
    r->stats.waited++;
    int rc = send_op(r, o);
    if (rc) {
        /* What went out stays owed by its connection and is dropped when
         * it comes; the rest is settled here, and no ticket will come. */
        for (int i = 0; i < b->n; i++)
            if (b->cmds[i].state == PENDING) tzr_set_unavailable(b, i, "out of memory");
        o->given_up = 1;
        if (o->refs == 0) unlink_op(o);
        return tz_err_set(err, rc, "out of memory");
    }
    int at_once = o->left == 1;
    if (at_once) {
        /* Settled without a reply owed: no ticket. */
        o->given_up = 1;
        if (o->refs == 0) unlink_op(o);
    } else {
        settle(o);
    }
    refresh_if_stale(r);
    return at_once;
}

/* ---- replies -------------------------------------------------------- */

static int is_busy(const redisReply *rep)
{
    return !strncmp(rep->str, "TRYAGAIN", 8) || !strncmp(rep->str, "CLUSTERDOWN", 11) || !strncmp(rep->str, "LOADING", 7)
           || !strncmp(rep->str, "MASTERDOWN", 10);
}

/* A redirect: the command goes again, to the node named. 1 when it went. */
static int follow(tz_redis *r, tzr_op *o, int i, node *from, const redisReply *rep, unsigned char *touched)
{
    char host[256];
    int slot, port;
    int kind = tz_redis_parse_redirect(rep->str, rep->len, &slot, host, sizeof host, &port);
    if (!kind || o->hops >= MAX_HOPS) return 0;
    int t = tzr_node_index(r, host[0] ? host : from->host, port);
    if (t < 0) return 0;
    o->hops++;
    if (kind == 1) {
        r->slots[slot] = (int16_t)t;
        r->stats.moved++;
        r->map_stale = 1;
    } else {
        o->b->cmds[i].ask = t;
        r->stats.ask++;
    }
    return send_cmd(r, o, i, touched) == 0;
}

static void on_reply(tz_redis *r, node *n, tzr_entry e, redisReply *rep, unsigned char *touched)
{
    tzr_op *o = e.op;
    if (e.asking || o->given_up) {
        freeReplyObject(rep);
    } else if (rep->type == REDIS_REPLY_ERROR && (follow(r, o, e.cmd, n, rep, touched) || is_busy(rep))) {
        if (is_busy(rep)) {
            r->map_stale = 1;
            unavailable(o, e.cmd, "the cluster is failing over");
        }
        freeReplyObject(rep);
    } else if (tzr_set_reply(o->b, e.cmd, rep)) {
        unavailable(o, e.cmd, "out of memory");
    } else {
        settle(o);
    }
    release_op(o);
}

/* The node whose connection has socket fd (its lane in *lane), or -1. */
static int node_of_fd(const tz_redis *r, int fd, int *lane)
{
    for (int t = 0; t < r->n_nodes; t++)
        for (int l = 0; l < TZ_REDIS_LANES; l++)
            if (r->nodes[t].lanes[l].c && r->nodes[t].lanes[l].c->fd == fd) {
                *lane = l;
                return t;
            }
    return -1;
}

static void nb_read(tz_redis *r, int t, int lane, unsigned char *touched)
{
    node *n = &r->nodes[t];
    tzr_conn *k = &n->lanes[lane];
    if (redisBufferRead(k->c) != REDIS_OK) {
        nb_fail(r, t, lane, "connection to the node lost", 0);
        return;
    }
    for (;;) {
        if (k->c->reader->len - k->c->reader->pos > r->o.max_reply) {
            nb_fail(r, t, lane, "reply larger than the client's max_reply", 0);
            return;
        }
        void *rep = NULL;
        if (redisGetReplyFromReader(k->c, &rep) != REDIS_OK || (rep && !k->q_n)) {
            if (rep) freeReplyObject(rep);
            nb_fail(r, t, lane, "the node sent what no command asked for", 0);
            return;
        }
        if (!rep) return;
        on_reply(r, n, ring_pop(k), rep, touched);
        if (!k->c) return;  /* a redirect's send failed it */
    }
}

void tz_redis_async_io(tz_redis *r, int fd, int readable, int writable)
{
    int lane = 0, t = node_of_fd(r, fd, &lane);
    if (t < 0) return;
    unsigned char touched[MAX_NODES];
    memset(touched, 0, (size_t)r->n_nodes);
    if (writable) nb_write(r, t, lane);
    if (readable && r->nodes[t].lanes[lane].c) nb_read(r, t, lane, touched);
    flush_touched(r, touched);
    refresh_if_stale(r);
}

static void give_up(tzr_op *o)
{
    for (int i = 0; i < o->b->n && !o->given_up; i++)
        if (o->b->cmds[i].state == PENDING) unavailable(o, i, "no reply from the node within timeout_ms");
    if (!o->given_up) finish(o);
}

/* The first batch past its deadline, or NULL. */
static tzr_op *overdue(tz_redis *r, double now)
{
    for (tzr_op *o = r->ops; o; o = o->next)
        if (!o->given_up && o->deadline <= now) return o;
    return NULL;
}

int tz_redis_async_tick(tz_redis *r)
{
    double now = tzr_now_ms();
    tzr_op *o;
    while ((o = overdue(r, now))) {
        /* Every node that still owes it a reply is silent; failing them
         * settles it (and frees it once nothing names it). */
        unsigned char silent[MAX_NODES];
        memset(silent, 0, (size_t)r->n_nodes);
        for (int t = 0; t < r->n_nodes; t++) {
            const tzr_conn *k = &r->nodes[t].lanes[o->lane];
            for (int i = 0; i < k->q_n && !silent[t]; i++) silent[t] = k->q[(k->q_head + i) % k->q_cap].op == o;
        }
        int failed = 0;
        for (int t = 0; t < r->n_nodes; t++)
            if (silent[t]) nb_fail(r, t, o->lane, "no reply from the node within timeout_ms", 1), failed = 1;
        if (!failed) give_up(o);   /* owed by no node: cannot happen, but must not spin */
    }
    int live = 0;
    for (o = r->ops; o; o = o->next) live += !o->given_up && o != r->map_op;
    refresh_if_stale(r);
    return live;
}

/* Moves up to max of a queue's *len items of size bytes into out. */
static int take_front(void *queue, int *len, void *out, int max, size_t size)
{
    int n = *len < max ? *len : max;
    if (n <= 0) return 0;   /* queue may be NULL: never grown */
    memcpy(out, queue, size * (size_t)n);
    memmove(queue, (char *)queue + size * (size_t)n, size * (size_t)(*len - n));
    *len -= n;
    return n;
}

int tz_redis_async_events(tz_redis *r, tz_redis_watch *out, int max)
{
    return take_front(r->events, &r->n_events, out, max, sizeof *out);
}

int tz_redis_async_take(tz_redis *r, int *tickets, int max)
{
    return take_front(r->done, &r->n_done, tickets, max, sizeof *tickets);
}

void tz_redis_async_release(tz_redis *r, int fd)
{
    (void)r;
    if (fd >= 0) close(fd);
}

void tzr_async_close(tz_redis *r)
{
    for (int t = 0; t < r->n_nodes; t++)
        for (int lane = 0; lane < TZ_REDIS_LANES; lane++) {
            tzr_conn *k = &r->nodes[t].lanes[lane];
            if (k->c) redisFree(k->c);   /* closes its socket: the loop is gone or stopped watching */
            k->c = NULL;
            free(k->q);
            k->q = NULL, k->q_n = 0;
        }
    for (int i = 0; i < r->n_events; i++)
        if (r->events[i].want < 0) close(r->events[i].fd);
    while (r->ops) {
        tzr_op *o = r->ops;
        r->ops = o->next;
        free(o);
    }
    free(r->events), free(r->done);
    tz_redis_batch_free(r->map_batch);
}
