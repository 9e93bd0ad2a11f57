/* tz_redis — Redis Cluster on hiredis: slot map, routing, redirects,
 * reconnection, pipelining by node. The contract is in tz_redis.h. */
#include "io/tz_redis.h"
#include "io/tz_redis_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS 1000
#define DEFAULT_RETRY_MS 5000
#define DEFAULT_MAX_REPLY ((size_t)64 << 20)
#define DEFAULT_MAX_ELEMENTS (1 << 20)

/* ---- slots ---------------------------------------------------------- */

static uint16_t crc16_xmodem(const unsigned char *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

int tz_redis_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - open - 1);
        }
    }
    return crc16_xmodem((const unsigned char *)key, len) & (TZ_REDIS_SLOTS - 1);
}

/* ---- time ----------------------------------------------------------- */

double tzr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(double ms)
{
    if (ms <= 0) return;
    struct timespec ts = { (time_t)(ms / 1000), (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6) };
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

/* ---- replies -------------------------------------------------------- */

/* hiredis builds replies through these; the array constructor is wrapped so
 * a hostile or broken peer cannot make it allocate an absurd vector. */
static redisReplyObjectFunctions base_fns, bounded_fns;

static void *bounded_array(const redisReadTask *task, int elements)
{
    const int *max = task->privdata;
    if (elements > (max ? *max : DEFAULT_MAX_ELEMENTS)) return NULL;  /* reader reports out of memory */
    return base_fns.createArray(task, elements);
}

void tzr_bound_reader(redisReader *rd, int *max_elements)
{
    if (!base_fns.createArray) {
        base_fns = *rd->fn;
        bounded_fns = base_fns;
        bounded_fns.createArray = bounded_array;
    }
    rd->fn = &bounded_fns;
    rd->privdata = max_elements;
}

static int count_items(const redisReply *r)
{
    int n = 1;
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++) n += count_items(r->element[i]);
    return n;
}

static tz_redis_item *flatten(const redisReply *r, tz_redis_item *it)
{
    tz_redis_item *self = it++;
    self->integer = 0, self->str = NULL, self->len = 0;
    switch (r->type) {
    case REDIS_REPLY_STRING: self->type = TZ_REDIS_STRING; break;
    case REDIS_REPLY_STATUS: self->type = TZ_REDIS_STATUS; break;
    case REDIS_REPLY_ERROR: self->type = TZ_REDIS_ERROR; break;
    case REDIS_REPLY_INTEGER: self->type = TZ_REDIS_INTEGER; self->integer = r->integer; return it;
    case REDIS_REPLY_ARRAY:
        self->type = TZ_REDIS_ARRAY;
        self->integer = (int64_t)r->elements;
        for (size_t i = 0; i < r->elements; i++) it = flatten(r->element[i], it);
        return it;
    default: self->type = TZ_REDIS_NIL; return it;
    }
    self->str = r->str, self->len = r->len;
    return it;
}

static int reserve_items(tz_redis_batch *b, int more)
{
    if (b->n_items + more <= b->items_cap) return 0;
    int cap = b->items_cap ? b->items_cap : 64;
    while (cap < b->n_items + more) cap *= 2;
    tz_redis_item *p = realloc(b->items, sizeof *p * (size_t)cap);
    if (!p) return TZ_ENOMEM;
    b->items = p, b->items_cap = cap;
    return 0;
}

/* Takes reply (owned from now on) as command i's answer. */
int tzr_set_reply(tz_redis_batch *b, int i, redisReply *reply)
{
    cmd *c = &b->cmds[i];
    int n = count_items(reply);
    if (reserve_items(b, n)) {
        freeReplyObject(reply);
        return TZ_ENOMEM;
    }
    if (c->reply) freeReplyObject(c->reply);
    c->reply = reply, c->state = DONE;
    c->item0 = b->n_items, c->n_items = n;
    flatten(reply, b->items + b->n_items);
    b->n_items += n;
    return 0;
}

int tzr_set_unavailable(tz_redis_batch *b, int i, const char *why)
{
    cmd *c = &b->cmds[i];
    c->state = FAILED;
    if (reserve_items(b, 1)) return TZ_ENOMEM;
    snprintf(c->why, sizeof c->why, "%s", why);
    tz_redis_item *it = &b->items[b->n_items];
    it->type = TZ_REDIS_UNAVAILABLE, it->integer = 0, it->str = c->why, it->len = strlen(c->why);
    c->item0 = b->n_items++, c->n_items = 1;
    return 0;
}

int tz_redis_parse_redirect(const char *msg, size_t len, int *slot, char *host, size_t host_cap, int *port)
{
    int kind;
    size_t skip;
    if (len > 6 && !memcmp(msg, "MOVED ", 6)) kind = 1, skip = 6;
    else if (len > 4 && !memcmp(msg, "ASK ", 4)) kind = 2, skip = 4;
    else return 0;
    char buf[320];
    if (len - skip >= sizeof buf) return 0;
    memcpy(buf, msg + skip, len - skip);
    buf[len - skip] = 0;
    char *sp = strchr(buf, ' ');
    char *colon = sp ? strrchr(sp + 1, ':') : NULL;
    if (!sp || !colon) return 0;
    char *end;
    long s = strtol(buf, &end, 10);
    if (end != sp || s < 0 || s >= TZ_REDIS_SLOTS) return 0;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535) return 0;
    size_t hl = (size_t)(colon - sp - 1);
    if (hl >= host_cap) return 0;
    memcpy(host, sp + 1, hl);
    host[hl] = 0;
    if (hl == 1 && host[0] == '?') host[0] = 0;   /* "unknown endpoint" */
    *slot = (int)s, *port = (int)p;
    return kind;
}

/* ---- nodes and connections ------------------------------------------ */

int tzr_node_index(tz_redis *r, const char *host, int port)
{
    for (int i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].port == port && !strcmp(r->nodes[i].host, host)) return i;
    if (r->n_nodes >= MAX_NODES || strlen(host) >= sizeof r->nodes[0].host) return -1;
    node *n = &r->nodes[r->n_nodes];
    memset(n, 0, sizeof *n);
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    return r->n_nodes++;
}

static void drop(tz_redis *r, int i)
{
    if (r->nodes[i].c) redisFree(r->nodes[i].c);
    r->nodes[i].c = NULL;
    r->nodes[i].queued = 0;
}

int tzr_known_down(const node *n) { return n->down_until > tzr_now_ms(); }

static redisContext *connection(tz_redis *r, int i)
{
    node *n = &r->nodes[i];
    if (n->c) return n->c;
    if (tzr_known_down(n)) return NULL;
    struct timeval tv = { r->o.timeout_ms / 1000, (r->o.timeout_ms % 1000) * 1000 };
    redisContext *c = redisConnectWithTimeout(n->host, n->port, tv);
    if (c && !c->err && redisSetTimeout(c, tv) != REDIS_OK) c->err = REDIS_ERR_IO;
    if (!c || c->err) {
        if (c) redisFree(c);
        n->down_until = tzr_now_ms() + r->o.timeout_ms;
        return NULL;
    }
    tzr_bound_reader(c->reader, &r->o.max_elements);
    r->stats.reconnects++;
    return n->c = c;
}

/* Reads one reply; -1 on a connection failure, -2 past max_reply. */
static int read_reply(tz_redis *r, redisContext *c, redisReply **out)
{
    void *rep = NULL;
    for (;;) {
        if (redisGetReplyFromReader(c, &rep) != REDIS_OK) return -1;
        if (rep) {
            *out = rep;
            return 0;
        }
        if (c->reader->len - c->reader->pos > r->o.max_reply) return -2;
        if (redisBufferRead(c) != REDIS_OK) return -1;
    }
}

static int flush(redisContext *c)
{
    int done = 0;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK) return -1;
    return 0;
}

/* ---- the slot map --------------------------------------------------- */

int tzr_parse_slots(tz_redis *r, const redisReply *rep, const char *default_host, tz_err *err)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0)
        return tz_err_set(err, TZ_EINVAL, "CLUSTER SLOTS: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "empty or not an array");
    int16_t map[TZ_REDIS_SLOTS];
    for (int s = 0; s < TZ_REDIS_SLOTS; s++) map[s] = -1;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER
            || e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY)
            return tz_err_set(err, TZ_EINVAL, "CLUSTER SLOTS: malformed range %zu", i);
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        const redisReply *m = e->element[2];
        if (lo < 0 || hi >= TZ_REDIS_SLOTS || lo > hi || m->elements < 2 || m->element[0]->type != REDIS_REPLY_STRING
            || m->element[1]->type != REDIS_REPLY_INTEGER)
            return tz_err_set(err, TZ_EINVAL, "CLUSTER SLOTS: malformed range %zu", i);
        const char *host = m->element[0]->len ? m->element[0]->str : default_host;
        int idx = tzr_node_index(r, host, (int)m->element[1]->integer);
        if (idx < 0) return tz_err_set(err, TZ_EINVAL, "CLUSTER SLOTS: too many nodes or a host name too long");
        for (long long s = lo; s <= hi; s++) map[s] = (int16_t)idx;
    }
    memcpy(r->slots, map, sizeof map);
    return 0;
}

int tz_redis_load_slots(tz_redis *r, const char *resp, size_t len, tz_err *err)
{
    redisReader *rd = redisReaderCreate();
    if (!rd) return tz_err_set(err, TZ_ENOMEM, "out of memory");
    void *rep = NULL;
    int rc = 0;
    if (redisReaderFeed(rd, resp, len) != REDIS_OK || redisReaderGetReply(rd, &rep) != REDIS_OK || !rep)
        rc = tz_err_set(err, TZ_EINVAL, "CLUSTER SLOTS: not one complete reply");
    else
        rc = tzr_parse_slots(r, rep, "127.0.0.1", err);
    if (rep) freeReplyObject(rep);
    redisReaderFree(rd);
    return rc;
}

/* Asks node i for the map; 0 when it answered with one. */
static int refresh_from(tz_redis *r, int i, tz_err *err)
{
    redisContext *c = connection(r, i);
    if (!c) return tz_err_set(err, TZ_EIO, "cannot connect to %s:%d", r->nodes[i].host, r->nodes[i].port);
    redisReply *rep = NULL;
    if (redisAppendCommand(c, "CLUSTER SLOTS") != REDIS_OK || flush(c) || read_reply(r, c, &rep)) {
        tz_err_set(err, TZ_EIO, "%s:%d: %s", r->nodes[i].host, r->nodes[i].port, c->errstr[0] ? c->errstr : "reply too large");
        drop(r, i);
        return TZ_EIO;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", r->nodes[i].host);
    int rc = tzr_parse_slots(r, rep, host, err);
    freeReplyObject(rep);
    return rc;
}

static int refresh_map(tz_redis *r, tz_err *err)
{
    r->stats.refreshes++;
    r->refreshed_at = tzr_now_ms();
    /* Nodes already connected first (cheapest), then every node known,
     * seeds included. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < r->n_nodes; i++) {
            if ((pass == 0) != (r->nodes[i].c != NULL)) continue;
            if (refresh_from(r, i, err) == 0) return 0;
        }
    return tz_err_set(err, TZ_EIO, "no node of the cluster answers (%d known)", r->n_nodes);
}

int tz_redis_refresh(tz_redis *r, tz_err *err)
{
    for (int i = 0; i < r->n_nodes; i++) r->nodes[i].down_until = 0;
    return refresh_map(r, err);
}

/* ---- open / close --------------------------------------------------- */

static int add_seeds(tz_redis *r, const char *seeds, tz_err *err)
{
    const char *p = seeds;
    while (*p) {
        if (!strncasecmp(p, "redis://", 8)) p += 8;
        size_t n = strcspn(p, ",");
        char one[300];
        if (n == 0 || n >= sizeof one) return tz_err_set(err, TZ_EINVAL, "bad cluster address list '%s'", seeds);
        memcpy(one, p, n);
        one[n] = 0;
        char *slash = strchr(one, '/');
        if (slash) *slash = 0;
        char *colon = strrchr(one, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 6379;
        if (colon) *colon = 0;
        if ((colon && (*end || port <= 0 || port > 65535)) || !one[0])
            return tz_err_set(err, TZ_EINVAL, "bad cluster address '%.*s' (host:port)", (int)n, p);
        if (tzr_node_index(r, one, (int)port) < 0) return tz_err_set(err, TZ_EINVAL, "too many seeds");
        p += n;
        if (*p == ',') p++;
    }
    if (!r->n_nodes) return tz_err_set(err, TZ_EINVAL, "no cluster address in '%s'", seeds);
    r->n_seeds = r->n_nodes;
    return 0;
}

int tz_redis_create(const char *seeds, const tz_redis_opts *opts, tz_redis **out, tz_err *err)
{
    *out = NULL;
    if (!seeds) return tz_err_set(err, TZ_EINVAL, "no cluster addresses");
    tz_redis *r = calloc(1, sizeof *r);
    if (r) r->nodes = calloc(MAX_NODES, sizeof *r->nodes);
    if (!r || !r->nodes) {
        free(r);
        return tz_err_set(err, TZ_ENOMEM, "out of memory");
    }
    if (opts) r->o = *opts;
    if (r->o.timeout_ms <= 0) r->o.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (r->o.retry_ms <= 0) r->o.retry_ms = DEFAULT_RETRY_MS;
    if (!r->o.max_reply) r->o.max_reply = DEFAULT_MAX_REPLY;
    if (r->o.max_elements <= 0) r->o.max_elements = DEFAULT_MAX_ELEMENTS;
    for (int s = 0; s < TZ_REDIS_SLOTS; s++) r->slots[s] = -1;
    int rc = add_seeds(r, seeds, err);
    if (rc) {
        tz_redis_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

int tz_redis_open(const char *seeds, const tz_redis_opts *opts, tz_redis **out, tz_err *err)
{
    int rc = tz_redis_create(seeds, opts, out, err);
    if (rc) return rc;
    if ((rc = tz_redis_refresh(*out, err))) {
        tz_redis_close(*out);
        *out = NULL;
    }
    return rc;
}

void tz_redis_close(tz_redis *r)
{
    if (!r) return;
    tzr_async_close(r);
    for (int i = 0; i < r->n_nodes; i++) drop(r, i);
    free(r->nodes);
    free(r);
}

int tz_redis_slot_node(const tz_redis *r, int slot, char *buf, size_t cap)
{
    if (slot < 0 || slot >= TZ_REDIS_SLOTS || r->slots[slot] < 0) return TZ_ENOTFOUND;
    const node *n = &r->nodes[r->slots[slot]];
    snprintf(buf, cap, "%s:%d", n->host, n->port);
    return 0;
}

int tz_redis_master_slots(const tz_redis *r, int *slots, int max)
{
    int n = 0;
    char seen[MAX_NODES] = { 0 };
    for (int s = 0; s < TZ_REDIS_SLOTS && n < max; s++) {
        int i = r->slots[s];
        if (i >= 0 && !seen[i]) seen[i] = 1, slots[n++] = s;
    }
    return n;
}

void tz_redis_get_stats(const tz_redis *r, tz_redis_stats *out) { *out = r->stats; }

/* ---- batches -------------------------------------------------------- */

tz_redis_batch *tz_redis_batch_new(void)
{
    tz_redis_batch *b = calloc(1, sizeof *b);
    if (b) b->max_elements = DEFAULT_MAX_ELEMENTS;
    return b;
}

void tz_redis_batch_clear(tz_redis_batch *b)
{
    for (int i = 0; i < b->n; i++)
        if (b->cmds[i].reply) freeReplyObject(b->cmds[i].reply);
    b->n = 0, b->data_len = 0, b->n_args = 0, b->n_items = 0;
}

void tz_redis_batch_free(tz_redis_batch *b)
{
    if (!b) return;
    tz_redis_batch_clear(b);
    free(b->cmds), free(b->data), free(b->off), free(b->lens), free(b->argv), free(b->items);
    free(b);
}

int tz_redis_batch_count(const tz_redis_batch *b) { return b->n; }

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * size);
    if (!q) return -1;
    *p = q, *cap = c;
    return 0;
}

int tz_redis_batch_add(tz_redis_batch *b, int slot, int argc, const char **argv, const size_t *lens, tz_err *err)
{
    if (argc <= 0 || slot < -1 || slot >= TZ_REDIS_SLOTS) return tz_err_set(err, TZ_EINVAL, "bad command (argc %d, slot %d)", argc, slot);
    size_t bytes = 0;
    for (int a = 0; a < argc; a++) bytes += lens ? lens[a] : strlen(argv[a]);
    size_t cmd_cap = (size_t)b->cap, args_cap = b->args_cap, lens_cap = b->args_cap;
    if (grow((void **)&b->cmds, &cmd_cap, (size_t)b->n + 1, sizeof *b->cmds)
        || grow((void **)&b->data, &b->data_cap, b->data_len + bytes + 1, 1)
        || grow((void **)&b->off, &args_cap, b->n_args + (size_t)argc, sizeof *b->off)
        || grow((void **)&b->lens, &lens_cap, b->n_args + (size_t)argc, sizeof *b->lens))
        return tz_err_set(err, TZ_ENOMEM, "out of memory");
    b->cap = (int)cmd_cap;
    b->args_cap = args_cap < lens_cap ? args_cap : lens_cap;
    cmd *c = &b->cmds[b->n];
    memset(c, 0, sizeof *c);
    c->slot = slot, c->argc = argc, c->arg0 = b->n_args, c->ask = -1, c->target = -1;
    for (int a = 0; a < argc; a++) {
        size_t l = lens ? lens[a] : strlen(argv[a]);
        if (l) memcpy(b->data + b->data_len, argv[a], l);
        b->off[b->n_args] = b->data_len, b->lens[b->n_args] = l;
        b->data_len += l, b->n_args++;
    }
    return b->n++;
}

int tz_redis_batch_reply(const tz_redis_batch *b, int i, const tz_redis_item **items, int *n)
{
    if (i < 0 || i >= b->n) return TZ_EINVAL;
    const cmd *c = &b->cmds[i];
    if (!c->n_items) return TZ_ENOTFOUND;
    *items = b->items + c->item0, *n = c->n_items;
    return 0;
}

int tz_redis_batch_feed(tz_redis_batch *b, int i, const char *resp, size_t len, tz_err *err)
{
    if (i < 0 || i >= b->n) return tz_err_set(err, TZ_EINVAL, "no command %d", i);
    redisReader *rd = redisReaderCreate();
    if (!rd) return tz_err_set(err, TZ_ENOMEM, "out of memory");
    tzr_bound_reader(rd, &b->max_elements);
    void *rep = NULL;
    int rc = 0;
    if (redisReaderFeed(rd, resp, len) != REDIS_OK || redisReaderGetReply(rd, &rep) != REDIS_OK)
        rc = tz_err_set(err, rd->err == REDIS_ERR_OOM ? TZ_ETOOBIG : TZ_EINVAL, "bad reply: %s", rd->errstr);
    else if (!rep)
        rc = tz_err_set(err, TZ_EINVAL, "incomplete reply");
    else if ((rc = tzr_set_reply(b, i, rep)))
        tz_err_set(err, rc, "out of memory");
    redisReaderFree(rd);
    return rc;
}

/* ---- exec ----------------------------------------------------------- */

static int any_node(tz_redis *r)
{
    for (int i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].c) return i;
    for (int s = 0; s < TZ_REDIS_SLOTS; s++)
        if (r->slots[s] >= 0) return r->slots[s];
    return 0;
}

const char **tzr_argv_of(tz_redis_batch *b, const cmd *c)
{
    if (c->argc > b->argv_cap) {
        const char **p = realloc(b->argv, sizeof *p * (size_t)c->argc);
        if (!p) return NULL;
        b->argv = p, b->argv_cap = c->argc;
    }
    for (int a = 0; a < c->argc; a++) b->argv[a] = b->data + b->off[c->arg0 + (size_t)a];
    return b->argv;
}

static int target_of(tz_redis *r, const cmd *c)
{
    return c->ask >= 0 ? c->ask : c->slot < 0 ? any_node(r) : r->slots[c->slot];
}

/* Whether a round that left commands pending is worth repeating at once,
 * without waiting: a redirect or a refreshed map sends some command to
 * another node, or (first round only) a connection dropped on a node not
 * known to be down, which a reconnect may mend (an idle connection closed
 * by the server). A node that refuses connections is waited for, within
 * the budget, only. */
static int retry_now(tz_redis *r, const tz_redis_batch *b, int round)
{
    if (round >= 3) return 0;
    for (int i = 0; i < b->n; i++) {
        const cmd *c = &b->cmds[i];
        if (c->state != PENDING) continue;
        int t = target_of(r, c);
        if (t != c->target) return 1;
        if (round == 0 && t >= 0 && !tzr_known_down(&r->nodes[t])) return 1;
    }
    return 0;
}

/* Writes every pending command to its node's buffer; commands whose node
 * cannot be reached stay pending. Returns how many were queued. */
static int queue_round(tz_redis *r, tz_redis_batch *b, int *failed)
{
    int queued = 0;
    for (int i = 0; i < b->n; i++) {
        cmd *c = &b->cmds[i];
        c->sent = 0;
        if (c->state != PENDING) continue;
        int t = target_of(r, c);
        c->target = t;
        if (t < 0) {
            *failed = 1;
            continue;
        }
        redisContext *ctx = connection(r, t);
        if (!ctx) {
            *failed = 1;
            continue;
        }
        const char **argv = tzr_argv_of(b, c);
        if (!argv) return TZ_ENOMEM;
        if (c->ask >= 0 && redisAppendCommand(ctx, "ASKING") != REDIS_OK) return TZ_ENOMEM;
        if (redisAppendCommandArgv(ctx, c->argc, argv, b->lens + c->arg0) != REDIS_OK) return TZ_ENOMEM;
        c->sent = 1 + (c->ask >= 0);
        r->nodes[t].queued++;
        queued++;
    }
    return queued;
}

/* One reply of command c from its node; sets *failed on a dead connection. */
static int read_one(tz_redis *r, tz_redis_batch *b, int i, int *failed, int *refresh, int *too_big)
{
    cmd *c = &b->cmds[i];
    node *n = &r->nodes[c->target];
    if (!n->c) {             /* the connection died earlier in this round */
        *failed = 1;
        return 0;
    }
    redisReply *rep = NULL;
    for (int k = 0; k < c->sent; k++) {
        if (rep) freeReplyObject(rep);
        rep = NULL;
        int rc = read_reply(r, n->c, &rep);
        if (rc) {
            if (rc == -2) {
                *too_big = 1;
                c->state = FAILED;
                tzr_set_unavailable(b, i, "reply larger than the client's max_reply");
            }
            /* No answer within timeout_ms (a hung node, a partition): known
             * down, as when it refuses, so the next commands do not wait
             * the same again. A closed connection is reconnected at once. */
            if (rc == -1 && n->c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
                n->down_until = tzr_now_ms() + r->o.timeout_ms;
            drop(r, c->target);
            *failed = 1;
            return 0;
        }
    }
    c->ask = -1;
    if (rep->type == REDIS_REPLY_ERROR) {
        char host[256];
        int slot, port;
        int kind = tz_redis_parse_redirect(rep->str, rep->len, &slot, host, sizeof host, &port);
        if (kind) {
            int t = tzr_node_index(r, host[0] ? host : n->host, port);
            freeReplyObject(rep);
            if (t < 0) return 0;
            if (kind == 1) {
                r->slots[slot] = (int16_t)t;
                r->stats.moved++;
                *refresh = 1;
            } else {
                c->ask = t;
                r->stats.ask++;
            }
            return 0;
        }
        if (!strncmp(rep->str, "TRYAGAIN", 8) || !strncmp(rep->str, "CLUSTERDOWN", 11) || !strncmp(rep->str, "LOADING", 7)
            || !strncmp(rep->str, "MASTERDOWN", 10)) {
            freeReplyObject(rep);
            *failed = 1;   /* the map is asked again, at most every REFRESH_MIN_MS */
            return 0;
        }
    }
    return tzr_set_reply(b, i, rep);
}

/* Refreshes the map after a failed round: always after a redirect, at
 * most every REFRESH_MIN_MS while nodes only fail. */
static void refresh_after(tz_redis *r, int refresh)
{
    if (!refresh && tzr_now_ms() - r->refreshed_at < REFRESH_MIN_MS) return;
    tz_err ignored;
    refresh_map(r, &ignored);
}

int tz_redis_exec_within(tz_redis *r, tz_redis_batch *b, int budget_ms, tz_err *err)
{
    double deadline = tzr_now_ms() + (budget_ms > 0 ? budget_ms : 0), backoff = 25;
    int too_big = 0;
    for (int i = 0; i < b->n; i++)
        if (b->cmds[i].state == FAILED) b->cmds[i].state = PENDING;
    for (int round = 0;; round++) {
        int failed = 0, refresh = 0;
        for (int k = 0; k < r->n_nodes; k++) r->nodes[k].queued = 0;
        int queued = queue_round(r, b, &failed);
        if (queued < 0) return tz_err_set(err, queued, "out of memory");
        /* Every node's commands go out before any reply is awaited, so the
         * nodes work in parallel: one round trip for the whole batch. */
        for (int k = 0; k < r->n_nodes; k++)
            if (r->nodes[k].queued && flush(r->nodes[k].c)) drop(r, k);
        for (int i = 0; i < b->n; i++) {
            if (!b->cmds[i].sent) continue;
            int rc = read_one(r, b, i, &failed, &refresh, &too_big);
            if (rc) return tz_err_set(err, rc, "out of memory");
        }
        int pending = 0;
        for (int i = 0; i < b->n; i++) pending += b->cmds[i].state == PENDING;
        if (!pending) break;
        if (failed || refresh) refresh_after(r, refresh);
        int again = retry_now(r, b, round);
        double left = deadline - tzr_now_ms();
        if (left <= 0 && !again) {
            for (int i = 0; i < b->n; i++)
                if (b->cmds[i].state == PENDING) {
                    tzr_set_unavailable(b, i, "no reply from the cluster within the retry budget");
                }
            return tz_err_set(err, TZ_EIO, "redis cluster: %d of %d commands got no reply within %d ms",
                              pending, b->n, budget_ms);
        }
        r->stats.retries++;
        if (!again) {
            sleep_ms(backoff < left ? backoff : left);
            if (backoff < 400) backoff *= 2;
        }
    }
    if (too_big) return tz_err_set(err, TZ_ETOOBIG, "a reply passed the client's max_reply (%zu bytes)", r->o.max_reply);
    return 0;
}

int tz_redis_exec(tz_redis *r, tz_redis_batch *b, tz_err *err)
{
    return tz_redis_exec_within(r, b, r->o.retry_ms, err);
}
