#include "io/tz_http.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <strings.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINGER_MS 1000         /* how long input is drained after an error */
#define READ_CHUNK (64 * 1024)

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static int buf_add(buf *b, const void *data, size_t n)
{
    if (!n) return 0;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

/* Appends v in decimal. */
static int buf_add_size(buf *b, size_t v)
{
    char digits[24];
    size_t n = sizeof digits;
    do {
        digits[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return buf_add(b, digits + n, sizeof digits - n);
}

static int buf_add_str(buf *b, const char *s) { return buf_add(b, s, strlen(s)); }

/* Header positions are offsets into conn->head: it may move while growing. */
typedef struct header_span {
    size_t name_off, name_len, value_off, value_len;
} header_span;

struct tz_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t drain_timer;
    uv_idle_t resume_idle;     /* runs conn_resume for answered deferrals */
    tz_http_conn *resume_head; /* connections waiting for it */
    tz_http_limits lim;
    tz_http_handler handler;
    void *ud;
    tz_http_conn *conns;
    size_t nconns;
    size_t ndeferred;          /* attached connections waiting for a deferred response */
    int port;
    int draining;
    int handles_open;          /* listener, drain timer, resume idle until closed */
    int drain_timer_closing;
    void (*drained)(void *);
    void *drained_ud;
    time_t date_sec;
    char date[64];
    char readbuf[READ_CHUNK];  /* shared: every read is consumed synchronously */
};

struct tz_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    http_parser parser;
    tz_http_server *srv;
    tz_http_conn *prev, *next;
    buf head;                  /* URL and header bytes of the current request */
    size_t url_len, head_bytes;
    header_span *spans;
    size_t nspans, spans_cap;
    tz_http_header *headers;   /* built from spans for the handler */
    size_t headers_cap;
    int last_was_value;
    buf body;
    buf out;                   /* responses not yet handed to the kernel */
    buf stash;                 /* input read past a deferred request */
    tz_http_conn *resume_next;
    int resume_queued;
    int writing;               /* a uv_write is in flight */
    int in_request;
    int responded;
    int deferred;              /* the handler will respond later */
    int keep_alive;
    int close_after;           /* close once out is flushed */
    int lingering;             /* error sent: discard input until EOF */
    int closing;
    int handles_open;
    char peer[64];
};

typedef struct write_req {
    uv_write_t req;
    buf data;
    tz_http_conn *conn;
} write_req;

static http_parser_settings parser_settings;

/* ---- connection lifetime ---------------------------------------------- */

static void on_server_handle_closed(uv_handle_t *h);

static void server_maybe_done(tz_http_server *srv)
{
    if (!srv->draining || srv->nconns) return;
    if (!srv->drain_timer_closing) {
        srv->drain_timer_closing = 1;
        uv_close((uv_handle_t *)&srv->drain_timer, on_server_handle_closed);
        uv_close((uv_handle_t *)&srv->resume_idle, on_server_handle_closed);
    }
    if (srv->handles_open) return;
    void (*done)(void *) = srv->drained;
    void *ud = srv->drained_ud;
    free(srv);
    if (done) done(ud);
}

static void resume_unqueue(tz_http_conn *c)
{
    if (!c->resume_queued) return;
    for (tz_http_conn **p = &c->srv->resume_head; *p; p = &(*p)->resume_next) {
        if (*p == c) { *p = c->resume_next; break; }
    }
    c->resume_queued = 0;
}

static void conn_release(tz_http_conn *c)
{
    free(c->head.p);
    free(c->body.p);
    free(c->out.p);
    free(c->stash.p);
    free(c->spans);
    free(c->headers);
    free(c);
}

/* Both handles are closed: the connection leaves the server. A deferred one
 * stays allocated, detached (srv NULL), until its late tz_http_respond. */
static void on_conn_handle_closed(uv_handle_t *h)
{
    tz_http_conn *c = h->data;
    if (--c->handles_open) return;
    tz_http_server *srv = c->srv;
    resume_unqueue(c);
    if (c->prev) c->prev->next = c->next; else srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    srv->nconns--;
    if (c->deferred) srv->ndeferred--;
    c->srv = NULL;
    if (!c->deferred) conn_release(c);
    server_maybe_done(srv);
}

static void conn_close(tz_http_conn *c)
{
    if (c->closing) return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_timer(uv_timer_t *t);

static void conn_arm(tz_http_conn *c, unsigned ms)
{
    /* The loop's clock is read once per iteration; a slow handler earlier in
     * this one would otherwise make the timeout fire early. */
    uv_update_time(c->srv->loop);
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    tz_http_conn *c = req->data;
    free(req);
    /* A client that already sent more than we read would get an RST that
     * can destroy our error response in flight, so keep reading (and
     * discarding) until it closes or the linger time ends. */
    if (!c->closing && status == 0) {
        c->lingering = 1;
        conn_arm(c, LINGER_MS);
        /* Reading may have stopped (a deferred request, backpressure): it
         * must run while lingering, to discard input and see the EOF. */
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    } else {
        conn_close(c);
    }
}

static void conn_finish(tz_http_conn *c)
{
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req) { conn_close(c); return; }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(req);
        conn_close(c);
    }
}

/* ---- writing ---------------------------------------------------------- */

static void conn_flush(tz_http_conn *c);

/* Reads the next requests unless the connection waits: for a deferred
 * response, for stashed input to be parsed first (order), for the kernel to
 * take what we wrote (backpressure), or to close. */
static void conn_read_more(tz_http_conn *c)
{
    if (c->closing || c->close_after || c->lingering || c->deferred || c->writing || c->stash.len
        || c->resume_queued)
        return;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_write(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    tz_http_conn *c = w->conn;
    free(w->data.p);
    free(w);
    c->writing = 0;
    if (c->closing) return;
    if (status < 0) { conn_close(c); return; }
    conn_read_more(c);
    conn_flush(c);
}

static void conn_flush(tz_http_conn *c)
{
    if (c->closing || c->writing) return;
    if (c->out.len) {
        uv_buf_t b = uv_buf_init(c->out.p, (unsigned)c->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == UV_EAGAIN) n = 0;
        if (n < 0) { conn_close(c); return; }
        if ((size_t)n < c->out.len) {
            write_req *w = malloc(sizeof *w);
            if (!w) { conn_close(c); return; }
            memmove(c->out.p, c->out.p + n, c->out.len - n);
            c->out.len -= n;
            w->data = c->out;
            w->conn = c;
            memset(&c->out, 0, sizeof c->out);
            b = uv_buf_init(w->data.p, (unsigned)w->data.len);
            if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
                free(w->data.p);
                free(w);
                conn_close(c);
                return;
            }
            c->writing = 1;
            /* Backpressure: a client that does not read its responses stops
             * being read until the kernel takes what we have. */
            uv_read_stop((uv_stream_t *)&c->tcp);
            return;
        }
        c->out.len = 0;
    }
    if (c->close_after && !c->lingering) conn_finish(c);
}

/* ---- responses -------------------------------------------------------- */

const char *tz_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default:  return status < 400 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
    }
}

static const char *http_date(tz_http_server *srv)
{
    time_t now = time(NULL);
    if (now != srv->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(srv->date, sizeof srv->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        srv->date_sec = now;
    }
    return srv->date;
}

static int header_is_safe(const tz_http_header *h)
{
    /* CR or LF in a header would let a handler split the response. */
    return h->name_len && !memchr(h->name, '\r', h->name_len) && !memchr(h->name, '\n', h->name_len)
        && !memchr(h->value, '\r', h->value_len) && !memchr(h->value, '\n', h->value_len);
}

static void conn_resume_later(tz_http_conn *c);

void tz_http_defer(tz_http_conn *c)
{
    if (c->responded || c->deferred) return;
    c->deferred = 1;
    c->srv->ndeferred++;
    /* Responses must leave in request order, so nothing more is parsed or
     * read until this one is answered: the parser stops after the current
     * callback and on_read stashes what it had not parsed. */
    http_parser_pause(&c->parser, 1);
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
}

void tz_http_respond(tz_http_conn *c, int status, const tz_http_header *headers, size_t nheaders,
                     const char *body, size_t body_len)
{
    if (c->responded) return;
    c->responded = 1;
    int was_deferred = c->deferred;
    c->deferred = 0;
    if (was_deferred && c->srv) c->srv->ndeferred--;
    if (was_deferred && c->closing) {
        /* The client is gone: nothing to write; free it if already detached. */
        if (!c->srv) conn_release(c);
        return;
    }
    if (c->srv->draining) c->keep_alive = 0;
    if (!c->keep_alive) c->close_after = 1;
    buf *o = &c->out;
    if (status < 100 || status > 999) status = 500; /* three digits on the wire, whatever a handler said */
    /* The status line and fixed headers by pieces: printf cost a small
     * request more than its handler's routing. */
    int ok = buf_add(o, "HTTP/1.1 ", 9) == 0 && buf_add_size(o, (size_t)status) == 0 && buf_add(o, " ", 1) == 0
          && buf_add_str(o, tz_http_reason(status)) == 0 && buf_add(o, "\r\nServer: tycho\r\nDate: ", 23) == 0
          && buf_add_str(o, http_date(c->srv)) == 0 && buf_add(o, "\r\nContent-Length: ", 18) == 0
          && buf_add_size(o, body_len) == 0 && buf_add(o, "\r\n", 2) == 0
          && (c->keep_alive || buf_add(o, "Connection: close\r\n", 19) == 0);
    for (size_t i = 0; ok && i < nheaders; i++) {
        if (!header_is_safe(&headers[i])) continue;
        ok = buf_add(o, headers[i].name, headers[i].name_len) == 0 && buf_add(o, ": ", 2) == 0
          && buf_add(o, headers[i].value, headers[i].value_len) == 0 && buf_add(o, "\r\n", 2) == 0;
    }
    ok = ok && buf_add(o, "\r\n", 2) == 0;
    if (ok && c->parser.method != HTTP_HEAD) ok = buf_add(o, body, body_len) == 0;
    if (!ok) { conn_close(c); return; }
    if (was_deferred) {
        conn_arm(c, c->srv->lim.idle_timeout_ms);
        conn_flush(c);
        conn_resume_later(c);
    }
}

/* Answers a request the handler never sees, then closes the connection. */
static void respond_error(tz_http_conn *c, int status, const char *code, const char *message)
{
    static const tz_http_header json = { "Content-Type", 12, "application/json", 16 };
    char body[512];
    int n = snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, message);
    c->responded = 0;
    c->keep_alive = 0;
    tz_http_respond(c, status, &json, 1, body, (size_t)n < sizeof body ? (size_t)n : sizeof body - 1);
    c->in_request = 0;
}

/* ---- parsing ---------------------------------------------------------- */

#define CONN(p) ((tz_http_conn *)(p)->data)

static int count_head(tz_http_conn *c, size_t n)
{
    c->head_bytes += n;
    if (c->head_bytes <= c->srv->lim.max_header_bytes) return 0;
    respond_error(c, 431, "headers_too_large", "request line and headers exceed the size limit");
    return -1;
}

static int on_message_begin(http_parser *p)
{
    tz_http_conn *c = CONN(p);
    c->head.len = c->body.len = 0;
    c->url_len = c->head_bytes = c->nspans = 0;
    c->last_was_value = 0;
    c->in_request = 1;
    c->responded = 0;
    conn_arm(c, c->srv->lim.request_timeout_ms);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    tz_http_conn *c = CONN(p);
    if (count_head(c, n) || buf_add(&c->head, at, n)) return -1;
    c->url_len += n;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    tz_http_conn *c = CONN(p);
    if (count_head(c, n)) return -1;
    if (c->last_was_value || c->nspans == 0) {
        if (c->nspans == c->spans_cap) {
            size_t cap = c->spans_cap ? c->spans_cap * 2 : 16;
            header_span *s = realloc(c->spans, cap * sizeof *s);
            if (!s) return -1;
            c->spans = s;
            c->spans_cap = cap;
        }
        c->spans[c->nspans++] = (header_span){ c->head.len, 0, 0, 0 };
        c->last_was_value = 0;
    }
    c->spans[c->nspans - 1].name_len += n;
    return buf_add(&c->head, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    tz_http_conn *c = CONN(p);
    if (count_head(c, n)) return -1;
    header_span *s = &c->spans[c->nspans - 1];
    if (!c->last_was_value) {
        s->value_off = c->head.len;
        c->last_was_value = 1;
    }
    s->value_len += n;
    return buf_add(&c->head, at, n);
}

static int span_is(const tz_http_conn *c, const header_span *s, const char *name, const char *value)
{
    return s->name_len == strlen(name) && !strncasecmp(c->head.p + s->name_off, name, s->name_len)
        && s->value_len == strlen(value) && !strncasecmp(c->head.p + s->value_off, value, s->value_len);
}

static int on_headers_complete(http_parser *p)
{
    tz_http_conn *c = CONN(p);
    if (!(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX
        && p->content_length > c->srv->lim.max_body_bytes) {
        respond_error(c, 413, "body_too_large", "request body exceeds the size limit");
        return -1;
    }
    /* One interim answer per request, however many Expect headers ask. */
    for (size_t i = 0; i < c->nspans; i++)
        if (span_is(c, &c->spans[i], "expect", "100-continue")) {
            buf_add(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            break;
        }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    tz_http_conn *c = CONN(p);
    if (c->body.len + n > c->srv->lim.max_body_bytes) {
        respond_error(c, 413, "body_too_large", "request body exceeds the size limit");
        return -1;
    }
    return buf_add(&c->body, at, n);
}

static int build_headers(tz_http_conn *c)
{
    if (c->nspans > c->headers_cap) {
        tz_http_header *h = realloc(c->headers, c->nspans * sizeof *h);
        if (!h) return -1;
        c->headers = h;
        c->headers_cap = c->nspans;
    }
    for (size_t i = 0; i < c->nspans; i++) {
        const header_span *s = &c->spans[i];
        c->headers[i] = (tz_http_header){ c->head.p + s->name_off, s->name_len,
                                          c->head.p + s->value_off, s->value_len };
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    tz_http_conn *c = CONN(p);
    if (build_headers(c)) return -1;
    tz_http_request req = {0};
    req.method = http_method_str((enum http_method)p->method);
    const char *url = c->head.p;
    size_t url_len = c->url_len;
    const char *hash = memchr(url, '#', url_len);
    if (hash) url_len = (size_t)(hash - url);
    const char *q = memchr(url, '?', url_len);
    req.path = url;
    req.path_len = q ? (size_t)(q - url) : url_len;
    req.query = q ? q + 1 : "";
    req.query_len = q ? url_len - req.path_len - 1 : 0;
    req.headers = c->headers;
    req.nheaders = c->nspans;
    req.body = c->body.p ? c->body.p : "";
    req.body_len = c->body.len;
    req.peer = c->peer;
    c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    c->in_request = 0;
    c->srv->handler(c, &req, c->srv->ud);
    if (c->deferred) return 0;
    if (!c->responded) {
        static const char msg[] = "{\"error\":{\"code\":\"internal\",\"message\":\"no response\"}}";
        tz_http_respond(c, 500, NULL, 0, msg, sizeof msg - 1);
    }
    conn_arm(c, c->srv->lim.idle_timeout_ms);
    return c->close_after ? -1 : 0;
}

static void on_timer(uv_timer_t *t)
{
    tz_http_conn *c = t->data;
    if (c->in_request && !c->lingering) {
        respond_error(c, 408, "request_timeout", "request not received in time");
        conn_flush(c);
    } else {
        conn_close(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    tz_http_conn *c = h->data;
    *b = uv_buf_init(c->srv->readbuf, sizeof c->srv->readbuf);
}

static void conn_parse(tz_http_conn *c, const char *data, size_t len)
{
    size_t used = http_parser_execute(&c->parser, &parser_settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) {
        /* A request was deferred: keep the rest (the read buffer is shared). */
        if (buf_add(&c->stash, data + used, len - used)) conn_close(c);
        return;
    }
    if (e != HPE_OK && !c->close_after) {
        char msg[200];
        snprintf(msg, sizeof msg, "malformed HTTP request: %s", http_errno_description(e));
        respond_error(c, 400, "bad_request", msg);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    tz_http_conn *c = s->data;
    if (nread < 0) { conn_close(c); return; }
    if (nread == 0 || c->lingering || c->close_after) return;
    conn_parse(c, b->base, (size_t)nread);
    conn_flush(c);
}

/* After a deferred response: parse what was stashed behind it, then read on.
 * Run from an idle callback, never inside tz_http_respond, so a handler is
 * never re-entered from its own caller. */
static void conn_resume(tz_http_conn *c)
{
    http_parser_pause(&c->parser, 0);
    if (c->stash.len) {
        buf in = c->stash;
        memset(&c->stash, 0, sizeof c->stash);
        conn_parse(c, in.p, in.len);
        free(in.p);
    }
    conn_flush(c);
    conn_read_more(c);
}

static void on_resume(uv_idle_t *h)
{
    tz_http_server *srv = h->data;
    while (srv->resume_head) {
        tz_http_conn *c = srv->resume_head;
        srv->resume_head = c->resume_next;
        c->resume_queued = 0;
        conn_resume(c);
    }
    uv_idle_stop(h);
}

static void conn_resume_later(tz_http_conn *c)
{
    if (c->closing || c->close_after || c->resume_queued) return;
    c->resume_queued = 1;
    c->resume_next = c->srv->resume_head;
    c->srv->resume_head = c;
    uv_idle_start(&c->srv->resume_idle, on_resume);
}

/* ---- server ----------------------------------------------------------- */

static void on_connection(uv_stream_t *listener, int status)
{
    tz_http_server *srv = listener->data;
    if (status < 0 || srv->draining) return;
    tz_http_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) { conn_close(c); return; }
    uv_tcp_nodelay(&c->tcp, 1);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char ip[48] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
    }
    conn_arm(c, srv->lim.idle_timeout_ms);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static int resolve(const char *host, int port, struct sockaddr_storage *ss, tz_err *err)
{
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
    return tz_err_set(err, TZ_EINVAL, "cannot listen on '%s': not an IPv4 or IPv6 address", host);
}

static int bind_socket(const char *host, int port, int reuseport, int *fd_out, tz_err *err)
{
    struct sockaddr_storage ss;
    if (resolve(host, port, &ss, err)) return err ? err->code : TZ_EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return tz_err_set(err, TZ_EIO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    socklen_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE)
            return tz_err_set(err, TZ_EBUSY, "port %d on %s is already in use", port, host);
        return tz_err_set(err, TZ_EIO, "cannot bind %s:%d: %s", host, port, strerror(e));
    }
    *fd_out = fd;
    return 0;
}

static int socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

int tz_http_probe(const char *host, int port, int *bound, tz_err *err)
{
    int fd = -1;
    int rc = bind_socket(host, port, 0, &fd, err);
    if (rc) return rc;
    *bound = socket_port(fd);
    close(fd);
    return 0;
}

static void init_parser_settings(void)
{
    parser_settings.on_message_begin = on_message_begin;
    parser_settings.on_url = on_url;
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_message_complete;
}

int tz_http_server_start(uv_loop_t *loop, const char *host, int port, int reuseport,
                         const tz_http_limits *limits, tz_http_handler handler, void *ud,
                         tz_http_server **out, tz_err *err)
{
    init_parser_settings();
    int fd = -1;
    int rc = bind_socket(host, port, reuseport, &fd, err);
    if (rc) return rc;
    tz_http_server *srv = calloc(1, sizeof *srv);
    if (!srv) { close(fd); return tz_err_set(err, TZ_ENOMEM, "out of memory"); }
    srv->loop = loop;
    srv->handler = handler;
    srv->ud = ud;
    srv->lim = limits ? *limits : (tz_http_limits){0};
    if (!srv->lim.max_header_bytes) srv->lim.max_header_bytes = 16 * 1024;
    if (!srv->lim.max_body_bytes) srv->lim.max_body_bytes = 8 * 1024 * 1024;
    if (!srv->lim.idle_timeout_ms) srv->lim.idle_timeout_ms = 30000;
    if (!srv->lim.request_timeout_ms) srv->lim.request_timeout_ms = 30000;
    srv->port = socket_port(fd);
    uv_tcp_init(loop, &srv->listener);
    uv_timer_init(loop, &srv->drain_timer);
    uv_idle_init(loop, &srv->resume_idle);
    srv->listener.data = srv->drain_timer.data = srv->resume_idle.data = srv;
    srv->handles_open = 3;
    rc = uv_tcp_open(&srv->listener, fd);
    if (!rc) rc = uv_listen((uv_stream_t *)&srv->listener, 1024, on_connection);
    if (rc) {
        /* The handles are initialised: free through the drain path. */
        tz_err_set(err, TZ_EIO, "cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
        tz_http_server_drain(srv, 0, NULL, NULL);
        return TZ_EIO;
    }
    *out = srv;
    return 0;
}

int tz_http_server_port(const tz_http_server *srv) { return srv->port; }

size_t tz_http_server_connections(const tz_http_server *srv) { return srv->nconns; }

size_t tz_http_server_deferred(const tz_http_server *srv) { return srv->ndeferred; }

static void on_server_handle_closed(uv_handle_t *h)
{
    tz_http_server *srv = h->data;
    srv->handles_open--;
    server_maybe_done(srv);
}

static void on_drain_timeout(uv_timer_t *t)
{
    tz_http_server *srv = t->data;
    for (tz_http_conn *c = srv->conns; c; c = c->next) conn_close(c);
}

void tz_http_server_drain(tz_http_server *srv, unsigned timeout_ms, void (*done)(void *), void *ud)
{
    if (srv->draining) return;
    srv->draining = 1;
    srv->drained = done;
    srv->drained_ud = ud;
    uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
    /* A connection inside a request finishes it: tz_http_respond() turns
     * keep-alive off while draining, so it closes after its response. */
    for (tz_http_conn *c = srv->conns; c; c = c->next) {
        if (c->in_request || c->deferred) continue;
        if (c->writing || c->out.len) c->close_after = 1;
        else conn_close(c);
    }
    if (timeout_ms) uv_timer_start(&srv->drain_timer, on_drain_timeout, timeout_ms, 0);
    server_maybe_done(srv);
}
