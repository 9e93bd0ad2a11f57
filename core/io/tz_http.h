/*
 * tz_http — an HTTP/1.1 server on a libuv loop, parsing with http-parser.
 *
 * What it owns. The server owns its listening handle and every connection;
 * tz_http_server_close() (or a finished drain) frees them all. Requests are
 * parsed into per-connection buffers: the tz_http_request handed to the
 * handler, and every pointer in it, is valid only during the handler call.
 *
 * The handler contract. The handler runs on the loop thread, once per
 * complete request, in arrival order (pipelined requests included), and
 * calls tz_http_respond() exactly once: before it returns, or later after
 * tz_http_defer() (a response that waits for a group commit, say). Responses
 * are queued and written without blocking, always in request order; one
 * read's worth of pipelined responses goes out in one write.
 *
 * Limits and bad input never reach the handler: malformed requests get a 400,
 * oversized headers 431, oversized bodies 413, a request not complete within
 * request_timeout_ms gets 408; each as a JSON error body, after which the
 * connection is closed. Idle keep-alive connections close after
 * idle_timeout_ms. Other connections are never affected.
 *
 * Errors. Functions returning int give 0 or a TZ_E* code with err filled:
 * TZ_EBUSY when the address is in use, TZ_EINVAL for a bad host, TZ_EIO.
 */
#ifndef TZ_HTTP_H
#define TZ_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "util/tz_err.h"

typedef struct tz_http_server tz_http_server;
typedef struct tz_http_conn tz_http_conn;

typedef struct tz_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} tz_http_header;

typedef struct tz_http_request {
    const char *method;            /* static string: "GET", "POST", ... */
    const char *path;  size_t path_len;   /* URL path, still percent-encoded */
    const char *query; size_t query_len;  /* after '?', without it; may be empty */
    const tz_http_header *headers; size_t nheaders;
    const char *body;  size_t body_len;   /* de-chunked */
    const char *peer;              /* client address, "ip:port" */
} tz_http_request;

typedef void (*tz_http_handler)(tz_http_conn *conn, const tz_http_request *req, void *ud);

typedef struct tz_http_limits {
    size_t   max_header_bytes;    /* request line + headers; 0 = 16 KiB */
    size_t   max_body_bytes;      /* 0 = 8 MiB */
    unsigned idle_timeout_ms;     /* keep-alive idle; 0 = 30 s */
    unsigned request_timeout_ms;  /* first byte to complete request; 0 = 30 s */
} tz_http_limits;

/* Checks that host:port can be bound by a listener of ours and resolves
 * port 0 to a free port in *bound. Fails with TZ_EBUSY when in use, even by
 * another SO_REUSEPORT group. */
int tz_http_probe(const char *host, int port, int *bound, tz_err *err);

/* Binds host:port (with SO_REUSEPORT when reuseport, so several processes can
 * share it) and starts accepting on loop. */
int tz_http_server_start(uv_loop_t *loop, const char *host, int port, int reuseport,
                         const tz_http_limits *limits, tz_http_handler handler, void *ud,
                         tz_http_server **out, tz_err *err);

/* The bound port (useful after binding port 0). */
int tz_http_server_port(const tz_http_server *srv);

/* Number of open connections. */
size_t tz_http_server_connections(const tz_http_server *srv);

/* Number of open connections waiting for a deferred response. When it equals
 * the connection count, no client can send anything until one is answered:
 * a group commit gains nothing by waiting longer. */
size_t tz_http_server_deferred(const tz_http_server *srv);

/* Stops accepting, closes idle connections, lets each busy one finish its
 * current request, and frees the server once the last is gone, then calls
 * done(ud) (if non-NULL). Connections still open after timeout_ms are cut. */
void tz_http_server_drain(tz_http_server *srv, unsigned timeout_ms, void (*done)(void *), void *ud);

/* Called by the handler: it returns without responding, and the response
 * comes from a later tz_http_respond(conn, ...) on the loop thread. Until
 * then the connection reads no further requests and has no idle timeout.
 * conn stays valid until that call even if the client goes away (the
 * response is then dropped) or the server drains (which waits for it until
 * its timeout), so the call must come exactly once. */
void tz_http_defer(tz_http_conn *conn);

/* Queues the response to the request being handled, or to the deferred one.
 * headers may be NULL; Content-Length, Date, Server and Connection are added
 * here, and everything is copied before it returns. */
void tz_http_respond(tz_http_conn *conn, int status, const tz_http_header *headers, size_t nheaders,
                     const char *body, size_t body_len);

/* Reason phrase for a status code ("Not Found"). */
const char *tz_http_reason(int status);

#endif
