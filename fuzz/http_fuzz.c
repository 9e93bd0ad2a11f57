/* libFuzzer target: the HTTP/1.1 server of core/io (tz_http.c), driven for
 * real over loopback TCP, with tz_http.c unchanged.
 *
 * The server runs on a private uv_loop in this thread, started once (port
 * 0 on 127.0.0.1) with small limits so that 413 and 431 are reachable. For
 * every input the harness opens a client socket, writes the input in 1-3
 * chunks (the first input byte chooses how; see below) pumping the loop
 * after each chunk until the server has read it (so the parser meets
 * requests cut at arbitrary places), half-closes, reads whatever comes back
 * until the server closes or a deadline, and resets the connection. It then
 * pumps until the server has closed its side. Where the server no longer
 * reads that connection it would only notice when a timer fires (1 s), so
 * after 20 ms the harness drains the server (tz_http_server_drain) and the
 * next input starts a fresh one; a drain that does not finish within 4 s
 * (far beyond the server's timers) aborts as a bug.
 *
 * The handler reads every byte of the request it is given (so ASan checks
 * the pointers), answers /defer... later from a zero-delay timer through
 * tz_http_defer, leaves /none... unanswered (the server must answer 500),
 * and answers everything else at once with the body and header counts.
 *
 * HTTP_FUZZ_VERBOSE=1 prints the server's replies to stderr (for reading a
 * reproducer's exchange).
 *
 * First byte b: chunks = 1 + b % 3; with s = b / 3, the first cut is at
 * (1 + s % 8) / 9 of the rest, the second at (1 + (s / 8) % 8) / 9 of what
 * follows the first. '0' (0x30) gives one chunk, '1' two, '2' three. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/tz_http.h"

#define MAX_DEFERRED 64
#define SEND_DEADLINE_MS 2000
#define CHUNK_DEADLINE_MS 200
#define REPLY_DEADLINE_MS 1500
#define CLOSE_WAIT_MS 20
#define DRAIN_TIMEOUT_MS 500
#define DRAIN_DEADLINE_MS 4000   /* well above every timer of the server */

static uv_loop_t loop;
static tz_http_server *srv;
static int port;
static uv_timer_t defer_timer;
static tz_http_conn *deferred[MAX_DEFERRED];
static int ndeferred;
static volatile unsigned sink;
static int drained;
static int verbose;  /* HTTP_FUZZ_VERBOSE=1: print what the server sends */

/* ---- the server side ------------------------------------------------------ */

static void touch(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) sink += (unsigned char)p[i];
}

static void answer_deferred(uv_timer_t *t)
{
    for (int i = 0; i < ndeferred; i++) {
        static const char body[] = "deferred";
        tz_http_respond(deferred[i], 202, NULL, 0, body, sizeof body - 1);
    }
    ndeferred = 0;
}

static int path_is(const tz_http_request *req, const char *prefix)
{
    size_t n = strlen(prefix);
    return req->path_len >= n && !memcmp(req->path, prefix, n);
}

static void handler(tz_http_conn *conn, const tz_http_request *req, void *ud)
{
    touch(req->method, strlen(req->method));
    touch(req->path, req->path_len);
    touch(req->query, req->query_len);
    touch(req->body, req->body_len);
    touch(req->peer, strlen(req->peer));
    for (size_t i = 0; i < req->nheaders; i++) {
        touch(req->headers[i].name, req->headers[i].name_len);
        touch(req->headers[i].value, req->headers[i].value_len);
    }
    if (path_is(req, "/defer") && ndeferred < MAX_DEFERRED) {
        tz_http_defer(conn);
        deferred[ndeferred++] = conn;
        uv_timer_start(&defer_timer, answer_deferred, 0, 0);
        return;
    }
    if (path_is(req, "/none")) return;  /* the server answers 500 itself */
    char body[128];
    int n = snprintf(body, sizeof body, "%s len=%zu headers=%zu query=%zu\n", req->method, req->body_len,
                     req->nheaders, req->query_len);
    const tz_http_header h[] = {
        { "Content-Type", 12, "text/plain", 10 },
        { "X-Bad", 5, "a\r\nInjected: 1", 15 },  /* unsafe: the server drops it */
    };
    tz_http_respond(conn, 200, h, 2, body, (size_t)n);
}

static void on_drained(void *ud) { drained = 1; }

static void start_server(void)
{
    static int loop_ready;
    if (!loop_ready) {
        signal(SIGPIPE, SIG_IGN);
        verbose = getenv("HTTP_FUZZ_VERBOSE") && *getenv("HTTP_FUZZ_VERBOSE") == '1';
        if (uv_loop_init(&loop) != 0) abort();
        uv_timer_init(&loop, &defer_timer);
        loop_ready = 1;
    }
    tz_http_limits lim = { .max_header_bytes = 1024, .max_body_bytes = 512, .idle_timeout_ms = 1000,
                           .request_timeout_ms = 1000 };
    tz_err err;
    if (tz_http_server_start(&loop, "127.0.0.1", 0, 0, &lim, handler, NULL, &srv, &err) != 0) {
        fprintf(stderr, "http_fuzz: cannot start the server: %s\n", err.msg);
        exit(1);
    }
    port = tz_http_server_port(srv);
}

/* ---- pumping -------------------------------------------------------------- */

static uint64_t now_ms(void) { return uv_hrtime() / 1000000; }

/* Waits up to ms for the loop or the client socket to have something, then
 * runs one non-blocking loop iteration. */
static void pump(int client, int ms)
{
    struct pollfd p[2] = { { uv_backend_fd(&loop), POLLIN, 0 }, { client, POLLIN, 0 } };
    int timeout = uv_backend_timeout(&loop);
    if (timeout < 0 || timeout > ms) timeout = ms;
    poll(p, client >= 0 ? 2 : 1, timeout);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* Bytes the server's connections have not read yet (the listener and closed
 * handles give an error and count nothing). */
static void count_unread(uv_handle_t *h, void *arg)
{
    uv_os_fd_t fd;
    int n = 0;
    if (h->type != UV_TCP || uv_is_closing(h) || uv_fileno(h, &fd) != 0) return;
    if (ioctl(fd, FIONREAD, &n) == 0 && n > 0) *(size_t *)arg += (size_t)n;
}

static size_t server_unread(void)
{
    size_t n = 0;
    uv_walk(&loop, count_unread, &n);
    return n;
}

/* Reads and drops what the server sent: 0 on EOF or reset, 1 otherwise. */
static int drain_client(int fd)
{
    char buf[16384];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0 && verbose) fwrite(buf, 1, (size_t)n, stderr);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        return 0;
    }
}

/* ---- one exchange ----------------------------------------------------------- */

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Loopback connects complete in the kernel's backlog: no accept needed.
     * libFuzzer's timer signal can interrupt one; it then completes on its
     * own, and poll tells when. */
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int soerr = errno;
        if (errno == EINTR) {
            struct pollfd pf = { .fd = fd, .events = POLLOUT };
            socklen_t len = sizeof soerr;
            int r;
            while ((r = poll(&pf, 1, 1000)) < 0 && errno == EINTR) {}
            if (r != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = ETIMEDOUT;
        }
        if (soerr) {
            close(fd);
            errno = soerr;
            return -1;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Sends all of p (pumping while the socket is full). 0, or -1 once the
 * server has closed or the deadline passed. */
static int send_all(int fd, const uint8_t *p, size_t n)
{
    uint64_t deadline = now_ms() + SEND_DEADLINE_MS;
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && now_ms() < deadline) {
            pump(fd, 10);
            if (!drain_client(fd)) return -1;
            continue;
        }
        return -1;
    }
    return 0;
}

static void exchange(const uint8_t *data, size_t size)
{
    int fd = dial();
    if (fd < 0) {
        fprintf(stderr, "http_fuzz: cannot connect to 127.0.0.1:%d: %s\n", port, strerror(errno));
        abort();
    }
    /* The server accepts first, so that the first chunk is a read of its own. */
    uint64_t deadline = now_ms() + CHUNK_DEADLINE_MS;
    while (tz_http_server_connections(srv) == 0 && now_ms() < deadline) pump(fd, 10);

    size_t cut[4] = { 0, 0, 0, 0 }, nchunks = 0;
    if (size) {
        uint8_t b = data[0];
        data++, size--;
        unsigned s = b / 3u;
        nchunks = 1 + b % 3u;
        cut[1] = nchunks > 1 ? size * (1 + s % 8) / 9 : size;
        cut[2] = nchunks > 2 ? cut[1] + (size - cut[1]) * (1 + (s / 8) % 8) / 9 : size;
        cut[3] = size;
    }
    int open = 1;
    for (size_t k = 0; k < nchunks && open; k++) {
        size_t from = cut[k], to = k + 1 < nchunks ? cut[k + 1] : size;
        if (to > from && send_all(fd, data + from, to - from) != 0) open = 0;
        deadline = now_ms() + CHUNK_DEADLINE_MS;
        do {
            pump(fd, 1);
            if (!drain_client(fd)) open = 0;
        } while (open && server_unread() && now_ms() < deadline);
    }

    /* Half-close, then read the responses until the server closes. */
    shutdown(fd, SHUT_WR);
    deadline = now_ms() + REPLY_DEADLINE_MS;
    while (drain_client(fd) && now_ms() < deadline) pump(fd, 10);

    /* Reset (no TIME_WAIT left behind by thousands of runs). */
    struct linger lg = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);

    /* The server closes its side at once on the reset, except where it no
     * longer reads (it then waits for a timer): a drain closes those, and
     * the next input starts a new server. */
    deadline = now_ms() + CLOSE_WAIT_MS;
    while ((tz_http_server_connections(srv) || ndeferred) && now_ms() < deadline) pump(-1, 5);
    if (!tz_http_server_connections(srv) && !ndeferred) return;
    if (verbose) fprintf(stderr, "\nhttp_fuzz: the server holds the connection 20 ms after the reset: draining\n");
    drained = 0;
    tz_http_server_drain(srv, DRAIN_TIMEOUT_MS, on_drained, NULL);
    deadline = now_ms() + DRAIN_DEADLINE_MS;
    while ((!drained || ndeferred) && now_ms() < deadline) pump(-1, 10);
    if (!drained || ndeferred) {
        fprintf(stderr, "http_fuzz: the server did not finish draining %d ms after the client reset\n",
                DRAIN_DEADLINE_MS);
        abort();
    }
    srv = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv) start_server();
    exchange(data, size);
    return 0;
}
