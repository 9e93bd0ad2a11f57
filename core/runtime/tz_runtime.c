#include "runtime/tz_runtime.h"

#include <lauxlib.h>
#include <limits.h>
#include <lualib.h>
#include <luv/luv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua/tz_lua.h"

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static void exe_dir(char *out, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", out, len - 1);
    if (n <= 0) { snprintf(out, len, "."); return; }
    out[n] = 0;
    char *slash = strrchr(out, '/');
    if (slash) *slash = 0;
}

/* The tree holding tycho/init.lua: beside the binary, else the install tree. */
static void find_lua_dir(char *out, size_t len)
{
    char dir[PATH_MAX], cand[PATH_MAX + 64];
    exe_dir(dir, sizeof dir);
    snprintf(cand, sizeof cand, "%s/lua", dir);
    if (!is_dir(cand)) snprintf(cand, sizeof cand, "%s/../share/tycho/lua", dir);
    if (!is_dir(cand)) snprintf(cand, sizeof cand, "%s", TYCHO_INSTALL_LUADIR);
    if (!realpath(cand, out)) snprintf(out, len, "%.*s", (int)len - 1, cand);
}

static void set_paths(lua_State *L, const char *luadir)
{
    const char *extra = getenv("TYCHO_LUA_PATH");
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    /* Ours first, then the user's additions, then the system's (busted, ...). */
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s%s%s", luadir, luadir,
                    extra ? extra : "", extra ? ";" : "", lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

void tz_runtime_set_arg(lua_State *L, const char *script, int argc, char **argv)
{
    lua_createtable(L, argc, 1);
    lua_pushstring(L, script);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
}

static void register_internal(lua_State *L, const char *home, const char *luadir)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_newtable(L);
    lua_pushstring(L, TYCHO_VERSION);  lua_setfield(L, -2, "version");
    lua_pushstring(L, home);           lua_setfield(L, -2, "home");
    lua_pushstring(L, luadir);         lua_setfield(L, -2, "lua_dir");
    lua_pushstring(L, exe);            lua_setfield(L, -2, "exe");
    lua_pushcfunction(L, tz_lua_xpcall); lua_setfield(L, -2, "xpcall");
    tz_lua_http_register(L);
    tz_lua_repl_register(L);
    tz_lua_sandbox_register(L);
    tz_lua_console_register(L);
    lua_setfield(L, -2, "tycho.internal");
    lua_pop(L, 2);
}

static void preload_luv(lua_State *L, uv_loop_t *loop)
{
    /* luv runs on our loop, so Lua timers and processes share the server's. */
    luv_set_loop(L, loop);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    luaopen_luv(L);
    lua_setfield(L, -2, "luv");
    lua_pop(L, 2);
}

/* os.exit closes the Lua state unless told not to: finalizers then close
 * the store and sockets, and a script or DAG task that exits early leaks
 * nothing (LeakSanitizer aborts a process that does). A last searcher
 * resolves the module names of earlier releases (tycho/aliases.lua) to where
 * the modules live now, so users' scripts keep working. */
static void lua_prelude(lua_State *L)
{
    static const char prelude[] =
        "local exit = os.exit\n"
        "os.exit = function(code, close)\n"
        "  if close == nil then close = true end\n"
        "  return exit(code, close)\n"
        "end\n"
        "local aliases\n"
        "package.loaders[#package.loaders + 1] = function(name)\n"
        "  if name:sub(1, 6) ~= 'tycho.' or name == 'tycho.aliases' then return nil end\n"
        "  aliases = aliases or require 'tycho.aliases'\n"
        "  local to = aliases[name]\n"
        "  if not to then return nil end\n"
        "  return function() return require(to) end\n"
        "end\n";
    if (luaL_dostring(L, prelude)) lua_pop(L, 1);
}

int tz_runtime_init(tz_runtime *rt, const char *home, char *err, size_t errlen)
{
    char luadir[PATH_MAX];
    rt->loop = uv_default_loop();
    rt->L = luaL_newstate();
    if (!rt->L) {
        snprintf(err, errlen, "cannot create a Lua state: out of memory");
        return -1;
    }
    luaL_openlibs(rt->L);
    lua_prelude(rt->L);
    find_lua_dir(luadir, sizeof luadir);
    set_paths(rt->L, luadir);
    preload_luv(rt->L, rt->loop);
    register_internal(rt->L, home, luadir);
    return 0;
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void tz_runtime_close(tz_runtime *rt)
{
    if (!rt->L) return;
    /* Close what Lua left open while the state is alive: luv's close
     * callbacks run Lua code. luv's own finaliser then closes the loop, so
     * the loop is not touched after lua_close. */
    uv_walk(rt->loop, close_handle, NULL);
    uv_run(rt->loop, UV_RUN_DEFAULT);
    lua_close(rt->L);
    rt->L = NULL;
    rt->loop = NULL;
}

int tz_runtime_call(tz_runtime *rt, const char *module, const char *fn, int argc, const char **argv)
{
    lua_State *L = rt->L;
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    if (tz_lua_pcall(L, 1, 1)) return TZ_EXIT_ERROR;
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
    if (tz_lua_pcall(L, argc, 1)) return TZ_EXIT_ERROR;
    int code = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : TZ_EXIT_OK;
    lua_pop(L, 1);
    return code;
}
