/* Lua binding of tz_http: tycho.internal.http_serve(opts, handler).
 * Runs the loop until SIGTERM/SIGINT has drained the server. Every request
 * calls handler(req) under a traceback pcall; a Lua error becomes a 500 with
 * the detail on stderr, never a dead worker.
 *
 * Deferred responses: inside the handler, http_defer() returns a token and
 * the handler's return values are ignored; http_respond(token, status,
 * headers, body) answers later, once. Tokens map to connections in a
 * registry table, so a stale or repeated token is refused, never a dangling
 * pointer.
 *
 * Direct routes (opts.direct, a list of {method, path, fn}): a request for
 * exactly that method and path, with no query string, first calls fn()
 * under the same pcall, without the request table or the router: for the
 * hot routes whose answer needs nothing else of the request (making its
 * table and routing it was a fifth of a prediction's time, bench/serve).
 * A string fn returns is the 200 JSON answer; nil sends the request down
 * the general path (handler(req)) as if fn had not run.
 *
 * fn reads the body's bytes through FFI (tz_lua_http_direct_body, valid
 * during the call) and may answer from a buffer's bytes the same way
 * (tz_lua_http_direct_answer, then returning true), so that neither is
 * made a Lua string: LuaJIT interns, hashes and later sweeps every new
 * one. With no two bodies alike, the body as a string cost 15.6 µs of
 * worker CPU a GBT prediction against 10.6 µs without; the answer's text
 * and the prediction id's, a sixth of a worker's requests a second at 16
 * connections and most of its p99 (bench/serve). */
#include <lauxlib.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/tz_http.h"
#include "lua/tz_lua.h"

#define MAX_RESPONSE_HEADERS 64
#define MAX_DIRECT_ROUTES 256
#define MAX_DIRECT_PATH 1024
#define DRAIN_TIMEOUT_MS 10000

typedef struct direct_route {
    char method[8];
    char path[MAX_DIRECT_PATH];
    size_t path_len;
    int ref;                   /* fn in the registry */
} direct_route;

typedef struct serve_ctx {
    lua_State *L;
    int handler_ref;
    direct_route *direct;
    size_t n_direct;
    int pending_ref;           /* token -> light userdata conn */
    lua_Integer next_token;
    tz_http_conn *current;     /* the request in the handler, if any */
    lua_Integer current_token; /* its token once deferred, else 0 */
    tz_http_server *srv;
    uv_signal_t sigterm, sigint;
} serve_ctx;

/* One server per process (a worker): the context http_defer works on. */
static serve_ctx *active;

static void push_headers(lua_State *L, const tz_http_request *req)
{
    lua_createtable(L, 0, (int)req->nheaders);
    for (size_t i = 0; i < req->nheaders; i++) {
        const tz_http_header *h = &req->headers[i];
        char name[256];
        size_t n = h->name_len < sizeof name ? h->name_len : sizeof name;
        for (size_t j = 0; j < n; j++) {
            char ch = h->name[j];
            name[j] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
        lua_pushlstring(L, name, n);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isstring(L, -1)) {
            /* Repeated header: join as RFC 9110 allows for list values. */
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, h->value, h->value_len);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, h->value, h->value_len);
        }
        lua_rawset(L, -3);
    }
}

static void push_request(lua_State *L, const tz_http_request *req)
{
    /* Room for the router's fields too (params, route, query, ...): the
     * table is not rehashed on the request path. */
    lua_createtable(L, 0, 16);
    lua_pushstring(L, req->method);              lua_setfield(L, -2, "method");
    lua_pushlstring(L, req->path, req->path_len);   lua_setfield(L, -2, "path");
    lua_pushlstring(L, req->query, req->query_len); lua_setfield(L, -2, "query_string");
    lua_pushlstring(L, req->body, req->body_len);   lua_setfield(L, -2, "body");
    lua_pushstring(L, req->peer);                lua_setfield(L, -2, "peer");
    push_headers(L, req);
    lua_setfield(L, -2, "headers");
}

static void respond_internal_error(tz_http_conn *conn)
{
    static const tz_http_header json = { "Content-Type", 12, "application/json", 16 };
    static const char body[] = "{\"error\":{\"code\":\"internal\",\"message\":\"internal server error\"}}";
    tz_http_respond(conn, 500, &json, 1, body, sizeof body - 1);
}

/* Responds on conn with the handler-shaped values at base: status, headers
 * table, body string. */
static void respond_from(lua_State *L, tz_http_conn *conn, int base)
{
    int status = (int)lua_tointeger(L, base);
    size_t body_len = 0;
    const char *body = lua_tolstring(L, base + 2, &body_len);
    tz_http_header headers[MAX_RESPONSE_HEADERS];
    size_t nh = 0;
    if (lua_istable(L, base + 1)) {
        lua_pushnil(L);
        while (nh < MAX_RESPONSE_HEADERS && lua_next(L, base + 1)) {
            /* Only strings: they stay alive, referenced by the table, until
             * tz_http_respond has copied them. */
            if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
                headers[nh].name = lua_tolstring(L, -2, &headers[nh].name_len);
                headers[nh].value = lua_tolstring(L, -1, &headers[nh].value_len);
                nh++;
            }
            lua_pop(L, 1);
        }
    }
    if (status < 100 || status > 599) {
        fprintf(stderr, "tycho: handler returned bad status %d\n", status);
        respond_internal_error(conn);
    } else {
        tz_http_respond(conn, status, headers, nh, body ? body : "", body_len);
    }
}

static void forget_token(lua_State *L, serve_ctx *ctx, lua_Integer token)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->pending_ref);
    lua_pushnil(L);
    lua_rawseti(L, -2, (int)token);
    lua_pop(L, 1);
}

static const direct_route *find_direct(const serve_ctx *ctx, const tz_http_request *req)
{
    if (req->query_len) return NULL;
    for (size_t i = 0; i < ctx->n_direct; i++) {
        const direct_route *d = &ctx->direct[i];
        if (d->path_len == req->path_len && memcmp(d->path, req->path, d->path_len) == 0 &&
            strcmp(d->method, req->method) == 0)
            return d;
    }
    return NULL;
}

static const tz_http_header json_type = { "Content-Type", 12, "application/json", 16 };

/* The connection whose direct route's fn runs now and has not answered,
 * and its request's body. */
static tz_http_conn *direct_conn;
static const char *direct_body;
static size_t direct_body_len;

const char *tz_lua_http_direct_body(size_t *len)
{
    *len = direct_body ? direct_body_len : 0;
    return direct_body;
}

int tz_lua_http_direct_answer(const char *body, size_t len)
{
    if (!direct_conn) return 0;
    tz_http_respond(direct_conn, 200, &json_type, 1, body, len);
    direct_conn = NULL;
    return 1;
}

/* Calls the function on top of the stack as a direct route's fn, with
 * body and conn (NULL: none to answer) for the FFI calls above; leaves its
 * result on the stack unless it failed (tz_lua_pcall). Whether it failed;
 * *answered: whether it answered through tz_lua_http_direct_answer. */
static int call_direct(lua_State *L, tz_http_conn *conn, const char *body, size_t len, int *answered)
{
    direct_conn = conn;
    direct_body = body;
    direct_body_len = len;
    int failed = tz_lua_pcall(L, 0, 1);
    *answered = conn && direct_conn == NULL;
    direct_conn = NULL;
    direct_body = NULL;
    return failed;
}

/* The direct route's answer to req (1), or 0 when its fn neither answered
 * nor returned a string: the general path answers then. It runs with no
 * current request, so http_defer() raises in it (a 500): it must answer
 * now or decline. */
static int answer_direct(lua_State *L, tz_http_conn *conn, const tz_http_request *req, const direct_route *d)
{
    int answered;
    lua_rawgeti(L, LUA_REGISTRYINDEX, d->ref);
    if (call_direct(L, conn, req->body ? req->body : "", req->body_len, &answered)) {
        if (!answered) respond_internal_error(conn);
        return 1;
    }
    size_t len;
    const char *body = !answered && lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (body) tz_http_respond(conn, 200, &json_type, 1, body, len);
    lua_pop(L, 1);
    return answered || body != NULL;
}

static void on_request(tz_http_conn *conn, const tz_http_request *req, void *ud)
{
    serve_ctx *ctx = ud;
    lua_State *L = ctx->L;
    int top = lua_gettop(L);
    const direct_route *d = ctx->n_direct ? find_direct(ctx, req) : NULL;
    if (d && answer_direct(L, conn, req, d)) {
        lua_settop(L, top);
        return;
    }
    ctx->current = conn;
    ctx->current_token = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->handler_ref);
    push_request(L, req);
    int failed = tz_lua_pcall(L, 1, 3);
    lua_Integer deferred = ctx->current_token;
    ctx->current = NULL;
    ctx->current_token = 0;
    if (failed) {
        /* A deferred request that failed is answered now: its token dies. */
        if (deferred) forget_token(L, ctx, deferred);
        respond_internal_error(conn);
    } else if (!deferred) {
        respond_from(L, conn, top + 1);
    }
    lua_settop(L, top);
}

/* http_defer() -> token: the request being handled will be answered by
 * http_respond(token, ...). */
static int l_http_defer(lua_State *L)
{
    serve_ctx *ctx = active;
    if (!ctx || !ctx->current) return luaL_error(L, "http_defer: no request is being handled");
    if (!ctx->current_token) {
        /* Registry table keys are ints: wrap long before they would. */
        if (ctx->next_token == INT_MAX) ctx->next_token = 0;
        ctx->current_token = ++ctx->next_token;
        tz_http_defer(ctx->current);
        lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->pending_ref);
        lua_pushlightuserdata(L, ctx->current);
        lua_rawseti(L, -2, (int)ctx->current_token);
        lua_pop(L, 1);
    }
    lua_pushinteger(L, ctx->current_token);
    return 1;
}

/* http_respond(token, status, headers, body) -> true | false (token unknown
 * or already answered). */
static int l_http_respond(lua_State *L)
{
    serve_ctx *ctx = active;
    lua_Integer token = luaL_checkinteger(L, 1);
    luaL_checkinteger(L, 2);
    luaL_checkstring(L, 4);
    if (!ctx) { lua_pushboolean(L, 0); return 1; }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->pending_ref);
    lua_rawgeti(L, -1, (int)token);
    tz_http_conn *conn = lua_touserdata(L, -1);
    lua_pop(L, 2);
    if (!conn) { lua_pushboolean(L, 0); return 1; }
    forget_token(L, ctx, token);
    respond_from(L, conn, 2);
    lua_pushboolean(L, 1);
    return 1;
}

/* http_all_waiting() -> true when every open connection waits for a
 * deferred response (so none can send more before one is answered). */
static int l_http_all_waiting(lua_State *L)
{
    serve_ctx *ctx = active;
    size_t n = ctx && ctx->srv ? tz_http_server_connections(ctx->srv) : 0;
    lua_pushboolean(L, n > 0 && tz_http_server_deferred(ctx->srv) == n);
    return 1;
}

/* Deferred requests nobody answered before the loop ended: their
 * connections are released with a 503. */
static void release_pending(lua_State *L, serve_ctx *ctx)
{
    static const tz_http_header json = { "Content-Type", 12, "application/json", 16 };
    static const char body[] = "{\"error\":{\"code\":\"unavailable\",\"message\":\"server stopped\"}}";
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->pending_ref);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        tz_http_respond(lua_touserdata(L, -1), 503, &json, 1, body, sizeof body - 1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void on_drained(void *ud)
{
    serve_ctx *ctx = ud;
    ctx->srv = NULL;
    uv_close((uv_handle_t *)&ctx->sigterm, NULL);
    uv_close((uv_handle_t *)&ctx->sigint, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    serve_ctx *ctx = h->data;
    uv_signal_stop(&ctx->sigterm);
    uv_signal_stop(&ctx->sigint);
    if (ctx->srv) tz_http_server_drain(ctx->srv, DRAIN_TIMEOUT_MS, on_drained, ctx);
}

static unsigned opt_uint(lua_State *L, int t, const char *name)
{
    lua_getfield(L, t, name);
    unsigned v = (unsigned)luaL_optinteger(L, -1, 0);
    lua_pop(L, 1);
    return v;
}

/* Direct route i of the list at the top of the stack, checked: pushes its
 * method, path and fn, and gives the method's and path's bytes. */
static void push_direct_route(lua_State *L, int i, const char **m, size_t *ml, const char **p, size_t *pl)
{
    lua_rawgeti(L, -1, i);
    if (!lua_istable(L, -1)) luaL_error(L, "http_serve: direct route %d is not a table", i);
    lua_getfield(L, -1, "method");
    lua_getfield(L, -2, "path");
    lua_getfield(L, -3, "fn");
    lua_remove(L, -4);
    *m = lua_type(L, -3) == LUA_TSTRING ? lua_tolstring(L, -3, ml) : NULL;
    *p = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, pl) : NULL;
    if (!*m || *ml == 0 || *ml >= sizeof ((direct_route *)0)->method || !*p || *pl == 0 ||
        *pl >= MAX_DIRECT_PATH || !lua_isfunction(L, -1))
        luaL_error(L, "http_serve: direct route %d needs a method, a path (under %d bytes) and a function", i,
                   MAX_DIRECT_PATH);
}

/* opts.direct (opts at index 1), checked whole before anything is kept: a
 * bad entry raises with no route half taken. */
static void read_direct_routes(lua_State *L, serve_ctx *ctx)
{
    const char *m, *p;
    size_t ml, pl;
    lua_getfield(L, 1, "direct");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    luaL_checktype(L, -1, LUA_TTABLE);
    int n = (int)lua_objlen(L, -1);
    if (n > MAX_DIRECT_ROUTES) luaL_error(L, "http_serve: more than %d direct routes", MAX_DIRECT_ROUTES);
    for (int i = 1; i <= n; i++) {
        push_direct_route(L, i, &m, &ml, &p, &pl);
        lua_pop(L, 3);
    }
    ctx->direct = n ? calloc((size_t)n, sizeof *ctx->direct) : NULL;
    if (n && !ctx->direct) luaL_error(L, "http_serve: out of memory");
    for (int i = 1; i <= n; i++) {
        direct_route *d = &ctx->direct[i - 1];
        push_direct_route(L, i, &m, &ml, &p, &pl);
        memcpy(d->method, m, ml);
        memcpy(d->path, p, pl);
        d->path_len = pl;
        d->ref = luaL_ref(L, LUA_REGISTRYINDEX);  /* pops fn */
        lua_pop(L, 2);
    }
    ctx->n_direct = (size_t)n;
    lua_pop(L, 1);
}

static void free_direct_routes(lua_State *L, serve_ctx *ctx)
{
    for (size_t i = 0; i < ctx->n_direct; i++) luaL_unref(L, LUA_REGISTRYINDEX, ctx->direct[i].ref);
    free(ctx->direct);
    ctx->direct = NULL;
    ctx->n_direct = 0;
}

/* http_serve(opts, handler) -> true | nil, message
 * opts: host, port, reuseport, max_header_bytes, max_body_bytes,
 * idle_timeout_ms, request_timeout_ms, on_listen (function(port), optional),
 * direct (the direct routes, optional: see the top of this file). */
static int l_http_serve(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_getfield(L, 1, "host");
    const char *host = luaL_optstring(L, -1, "127.0.0.1");
    lua_getfield(L, 1, "reuseport");
    int reuseport = lua_toboolean(L, -1);
    lua_pop(L, 1);
    tz_http_limits lim = {
        .max_header_bytes = opt_uint(L, 1, "max_header_bytes"),
        .max_body_bytes = opt_uint(L, 1, "max_body_bytes"),
        .idle_timeout_ms = opt_uint(L, 1, "idle_timeout_ms"),
        .request_timeout_ms = opt_uint(L, 1, "request_timeout_ms"),
    };
    serve_ctx ctx = { .L = L };
    read_direct_routes(L, &ctx);
    uv_loop_t *loop = uv_default_loop();
    tz_err err = {0};
    if (tz_http_server_start(loop, host, (int)opt_uint(L, 1, "port"), reuseport, &lim, on_request,
                             &ctx, &ctx.srv, &err)) {
        free_direct_routes(L, &ctx);
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        lua_pushstring(L, tz_strerror(err.code));
        return 3;
    }
    lua_pushvalue(L, 2);
    ctx.handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    ctx.pending_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    active = &ctx;
    uv_signal_init(loop, &ctx.sigterm);
    uv_signal_init(loop, &ctx.sigint);
    ctx.sigterm.data = ctx.sigint.data = &ctx;
    uv_signal_start(&ctx.sigterm, on_signal, SIGTERM);
    uv_signal_start(&ctx.sigint, on_signal, SIGINT);
    lua_getfield(L, 1, "on_listen");
    if (lua_isfunction(L, -1)) {
        lua_pushinteger(L, tz_http_server_port(ctx.srv));
        tz_lua_pcall(L, 1, 0);
    } else {
        lua_pop(L, 1);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    release_pending(L, &ctx);
    active = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, ctx.handler_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ctx.pending_ref);
    free_direct_routes(L, &ctx);
    lua_pushboolean(L, 1);
    return 1;
}

/* http_probe(host, port) -> bound_port | nil, message, code */
static int l_http_probe(lua_State *L)
{
    tz_err err = {0};
    int bound = 0;
    if (tz_http_probe(luaL_checkstring(L, 1), (int)luaL_checkinteger(L, 2), &bound, &err)) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        lua_pushstring(L, tz_strerror(err.code));
        return 3;
    }
    lua_pushinteger(L, bound);
    return 1;
}

/* http_run_direct(fn, body): calls fn() as the server calls a direct
 * route, with body as the request's body but no connection (an answer
 * from a buffer is refused: fn returns its text). true and fn's result, or
 * false once the error is on stderr. For tests and the trace fixture, so
 * that their traces start where the server's do. */
static int l_http_run_direct(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    size_t len;
    const char *body = luaL_checklstring(L, 2, &len);  /* stays on the stack, alive, during the call */
    int answered;
    lua_pushvalue(L, 1);
    if (call_direct(L, NULL, body, len, &answered)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, -2);
    return 2;
}

void tz_lua_http_register(lua_State *L)
{
    lua_pushcfunction(L, l_http_run_direct);
    lua_setfield(L, -2, "http_run_direct");
    lua_pushcfunction(L, l_http_serve);
    lua_setfield(L, -2, "http_serve");
    lua_pushcfunction(L, l_http_probe);
    lua_setfield(L, -2, "http_probe");
    lua_pushcfunction(L, l_http_defer);
    lua_setfield(L, -2, "http_defer");
    lua_pushcfunction(L, l_http_respond);
    lua_setfield(L, -2, "http_respond");
    lua_pushcfunction(L, l_http_all_waiting);
    lua_setfield(L, -2, "http_all_waiting");
}
