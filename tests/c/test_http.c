/* tz_http against raw sockets: the server runs its loop in a thread, the
 * test talks bytes to it from the main thread. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "io/tz_http.h"
#include "tap.h"

static uv_loop_t loop;
static uv_async_t stop_async;
static tz_http_server *srv;
static int port;

/* Requests to /defer/... are answered 50 ms later from a timer, in one go;
 * /defer-slow after 300 ms. */
static uv_timer_t defer_timer;
static tz_http_conn *deferred[16];
static int ndeferred, nanswered_late, stopping;
static size_t waiting_seen = 99;  /* tz_http_server_deferred() before the first answer */

static void answer_deferred(uv_timer_t *t)
{
    (void)t;
    if (waiting_seen == 99) waiting_seen = tz_http_server_deferred(srv);
    for (int i = 0; i < ndeferred; i++) {
        char body[64];
        int n = snprintf(body, sizeof body, "deferred %d len=0", ++nanswered_late);
        tz_http_respond(deferred[i], 200, NULL, 0, body, (size_t)n);
    }
    ndeferred = 0;
    if (stopping) uv_close((uv_handle_t *)t, NULL);
}

static void echo(tz_http_conn *conn, const tz_http_request *req, void *ud)
{
    if (req->path_len >= 6 && !memcmp(req->path, "/defer", 6) && ndeferred < 16) {
        tz_http_defer(conn);
        deferred[ndeferred++] = conn;
        int slow = req->path_len > 6 && req->path[6] == '-';
        uv_timer_start(&defer_timer, answer_deferred, slow ? 300 : 50, 0);
        return;
    }
    char body[256];
    int n = snprintf(body, sizeof body, "%s %.*s q=%.*s len=%zu", req->method, (int)req->path_len,
                     req->path, (int)req->query_len, req->query, req->body_len);
    tz_http_header h = { "X-Test", 6, "yes\r\nInjected: 1", 17 };  /* unsafe: dropped */
    tz_http_respond(conn, 200, &h, 1, body, (size_t)n);
}

static void on_stop(uv_async_t *a)
{
    /* The drain outlasts no deferred answer: the pending one's connection
     * is cut at 100 ms and the server freed; its answer comes at 300 ms. */
    stopping = 1;
    tz_http_server_drain(srv, 100, NULL, NULL);
    uv_close((uv_handle_t *)a, NULL);
    if (!ndeferred) uv_close((uv_handle_t *)&defer_timer, NULL);
}

static void *server_thread(void *arg)
{
    (void)arg;
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = { 3, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return -1; }
    return fd;
}

/* Sends req and reads until `want` responses' worth of "HTTP/1.1 " or EOF. */
static char *exchange(const char *req, size_t len, int want)
{
    static char out[1 << 16];
    int fd = dial();
    if (fd < 0) return strcpy(out, "connect failed");
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += (size_t)n;
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, out + got, sizeof out - 1 - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
        out[got] = 0;
        int seen = 0;
        for (char *p = out; (p = strstr(p, "HTTP/1.1 ")); p++) seen++;
        if (want && seen >= want && strstr(out, "len=")) break;
    }
    out[got] = 0;
    close(fd);
    return out;
}

int main(void)
{
    uv_loop_init(&loop);
    tz_err err;
    tz_http_limits lim = { .max_header_bytes = 1024, .max_body_bytes = 1000,
                           .idle_timeout_ms = 300, .request_timeout_ms = 300 };
    ok(tz_http_server_start(&loop, "127.0.0.1", 0, 0, &lim, echo, NULL, &srv, &err) == 0, "server starts");
    port = tz_http_server_port(srv);
    ok(port > 0, "bound a free port %d", port);
    int other;
    is_int(tz_http_probe("127.0.0.1", port, &other, &err), TZ_EBUSY, "probe sees the port in use");
    is_int(tz_http_probe("not-an-ip", 0, &other, &err), TZ_EINVAL, "probe refuses a bad host");
    uv_async_init(&loop, &stop_async, on_stop);
    uv_timer_init(&loop, &defer_timer);
    pthread_t th;
    pthread_create(&th, NULL, server_thread, NULL);

    const char get[] = "GET /a/b?x=1 HTTP/1.1\r\nHost: t\r\n\r\n";
    char *r = exchange(get, sizeof get - 1, 1);
    ok(strstr(r, "HTTP/1.1 200 OK") && strstr(r, "GET /a/b q=x=1 len=0"), "GET with query");
    ok(!strstr(r, "Injected"), "a header with CR/LF is not written");

    const char two[] = "GET /1 HTTP/1.1\r\nHost: t\r\n\r\nPOST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc";
    r = exchange(two, sizeof two - 1, 2);
    char *first = strstr(r, "GET /1"), *second = strstr(r, "POST /2 q= len=3");
    ok(first && second && first < second, "pipelined requests answered in order");

    const char chunked[] = "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n";
    r = exchange(chunked, sizeof chunked - 1, 1);
    ok(strstr(r, "POST /c q= len=7") != NULL, "chunked body is de-chunked");

    const char big[] = "POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n";
    r = exchange(big, sizeof big - 1, 0);
    ok(strstr(r, "HTTP/1.1 413") && strstr(r, "body_too_large"), "declared 100 MB body gets 413 JSON");

    char bigchunk[4096];
    int n = snprintf(bigchunk, sizeof bigchunk, "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "7d0\r\n%02000d\r\n0\r\n\r\n", 0);
    r = exchange(bigchunk, (size_t)n, 0);
    ok(strstr(r, "HTTP/1.1 413") != NULL, "chunked body over the limit gets 413");

    char hdrs[4096];
    n = snprintf(hdrs, sizeof hdrs, "GET / HTTP/1.1\r\nX-Big: %02000d\r\n\r\n", 0);
    r = exchange(hdrs, (size_t)n, 0);
    ok(strstr(r, "HTTP/1.1 431") != NULL, "oversized headers get 431");

    const char junk[] = "\x01\x02garbage\r\n\r\n";
    r = exchange(junk, sizeof junk - 1, 0);
    ok(strstr(r, "HTTP/1.1 400") && strstr(r, "\"code\":\"bad_request\""), "garbage gets a 400 JSON error");

    const char partial[] = "POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc";
    r = exchange(partial, sizeof partial - 1, 0);
    ok(strstr(r, "HTTP/1.1 408") != NULL, "a body shorter than Content-Length times out with 408");

    int fd = dial();
    char c;
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    ssize_t got = recv(fd, &c, 1, 0);
    gettimeofday(&t1, NULL);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_usec - t0.tv_usec) / 1e6;
    ok(got == 0 && waited < 2.0, "an idle connection is closed by the server (%.2fs)", waited);
    close(fd);

    const char later[] = "GET /defer/1 HTTP/1.1\r\nHost: t\r\n\r\n";
    r = exchange(later, sizeof later - 1, 1);
    ok(strstr(r, "HTTP/1.1 200 OK") && strstr(r, "deferred 1"), "a deferred request is answered later");
    is_int(waiting_seen, 1, "the server counts the connection waiting for its deferred answer");

    /* Behind a deferred request, pipelined ones wait: answers stay in order,
     * including a deferred one after a plain one. */
    const char mixed[] = "GET /defer/2 HTTP/1.1\r\nHost: t\r\n\r\nGET /plain HTTP/1.1\r\nHost: t\r\n\r\n"
                         "GET /defer/3 HTTP/1.1\r\nHost: t\r\n\r\nGET /last HTTP/1.1\r\nHost: t\r\n\r\n";
    r = exchange(mixed, sizeof mixed - 1, 4);
    char *d2 = strstr(r, "deferred 2"), *p1 = strstr(r, "GET /plain"), *d3 = strstr(r, "deferred 3"),
         *p2 = strstr(r, "GET /last");
    ok(d2 && p1 && d3 && p2 && d2 < p1 && p1 < d3 && d3 < p2, "pipelined requests around deferred ones in order");

    /* The client leaves before its deferred answer: the late respond is
     * dropped, nothing is freed twice (ASan checks), the server goes on. */
    fd = dial();
    send(fd, later, sizeof later - 1, MSG_NOSIGNAL);
    close(fd);
    usleep(150 * 1000);
    ok(nanswered_late == 4, "the abandoned deferred request was still answered (%d)", nanswered_late);

    r = exchange(get, sizeof get - 1, 1);
    ok(strstr(r, "HTTP/1.1 200 OK") != NULL, "server still serves after all of that");

    const char slow[] = "GET /defer-slow HTTP/1.1\r\nHost: t\r\n\r\n";
    fd = dial();
    send(fd, slow, sizeof slow - 1, MSG_NOSIGNAL);
    usleep(30 * 1000);
    uv_async_send(&stop_async);
    got = recv(fd, &c, 1, 0);
    ok(got <= 0, "a drain that times out cuts the connection still waiting for its answer");
    close(fd);
    pthread_join(th, NULL);
    ok(nanswered_late == 5, "its late answer came after the server was gone (%d)", nanswered_late);
    ok(uv_loop_close(&loop) == 0, "drain closed every handle");
    return tap_done();
}
