/*
 * tz_lua — the Lua C API side of Tycho: what Lua reaches through the C API
 * rather than the FFI, because it calls back into Lua (the HTTP server with
 * its Lua handler, the REPL's terminal, the sandbox runner) or hands Lua
 * data of the binary (the embedded console), and the one protected call
 * every C entry into Lua goes through.
 *
 * core/runtime makes the state and registers these into the
 * "tycho.internal" table; nothing here includes runtime/, and the plain C
 * modules (store, frame, kernels, io) never include lua.h.
 *
 * Errors. tz_lua_pcall prints "tycho: MESSAGE" and a traceback on stderr
 * and returns non-zero; the bindings raise Lua errors for misuse and return
 * nil, message, code for expected failures.
 */
#ifndef TZ_LUA_H
#define TZ_LUA_H

#include <lua.h>

/* lua_pcall with a traceback handler; on error prints "tycho: MSG\nTRACE" to
 * stderr, pops it and returns non-zero. */
int tz_lua_pcall(lua_State *L, int nargs, int nresults);

/* xpcall(f, ...) -> ok, results... | false, message with traceback: a pcall
 * for Lua code that reports errors itself. A lua_CFunction. */
int tz_lua_xpcall(lua_State *L);

/* Each adds its functions to the table on top of the stack. */
void tz_lua_http_register(lua_State *L);     /* lua_http.c */
/* lua_http.c, for FFI (tycho.core.http): answers the direct route whose fn
 * runs now with 200 and body (copied); 1, or 0 when none waits for one. */
int tz_lua_http_direct_answer(const char *body, size_t len);
/* The body of the request whose direct route's fn runs now, its length in
 * *len; NULL (and 0) outside one. */
const char *tz_lua_http_direct_body(size_t *len);
void tz_lua_repl_register(lua_State *L);     /* lua_repl.c */
void tz_lua_sandbox_register(lua_State *L);  /* lua_sandbox.c */
void tz_lua_console_register(lua_State *L);  /* lua_console.c */

#endif
