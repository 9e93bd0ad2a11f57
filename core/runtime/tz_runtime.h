/*
 * tz_runtime — one LuaJIT state bound to Tycho's libuv loop.
 *
 * Owns the lua_State and the loop (uv_default_loop of the process, so a
 * forked worker creates its runtime after fork). Finds the Lua modules
 * beside the binary (build tree: <bindir>/lua; install tree:
 * <bindir>/../share/tycho/lua) plus TYCHO_LUA_PATH, preloads luv on the
 * runtime's loop, and registers the C bindings (core/lua) as
 * package.loaded["tycho.internal"]. Errors are reported on stderr by the
 * CLI layer only; C entries into Lua go through tz_lua_pcall.
 */
#ifndef TZ_RUNTIME_H
#define TZ_RUNTIME_H

#include <lua.h>
#include <uv.h>

#define TZ_EXIT_OK    0
#define TZ_EXIT_ERROR 1
#define TZ_EXIT_USAGE 2

typedef struct tz_runtime {
    lua_State *L;
    uv_loop_t *loop;
} tz_runtime;

/* Creates the state; home is the data home (not opened here). Returns 0, or
 * -1 with a message in err. */
int  tz_runtime_init(tz_runtime *rt, const char *home, char *err, size_t errlen);
void tz_runtime_close(tz_runtime *rt);

/* Sets the global `arg` like luajit does: arg[0] = script, arg[1..] = args. */
void tz_runtime_set_arg(lua_State *L, const char *script, int argc, char **argv);

/* Calls require(module)[fn](args...) with string arguments; returns an exit
 * code: the function's integer result if any, 0 otherwise, 1 on error. */
int tz_runtime_call(tz_runtime *rt, const char *module, const char *fn, int argc, const char **argv);

#endif
