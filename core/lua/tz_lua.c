/* The protected call every C entry into Lua goes through (tz_lua.h). */
#include "lua/tz_lua.h"

#include <lauxlib.h>
#include <stdio.h>

/* Message handler: adds a traceback to string errors; other error values
 * (tycho.http.error's tables) pass through untouched for Lua to inspect. */
static int traceback(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING && lua_type(L, 1) != LUA_TNUMBER) return 1;
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

static const char *error_text(lua_State *L)
{
    if (lua_isstring(L, -1)) return lua_tostring(L, -1);
    if (luaL_callmeta(L, -1, "__tostring") && lua_isstring(L, -1)) return lua_tostring(L, -1);
    return lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
}

int tz_lua_pcall(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (rc) {
        int top = lua_gettop(L);
        fprintf(stderr, "tycho: %s\n", error_text(L));
        lua_settop(L, top - 1);
    }
    return rc;
}

int tz_lua_xpcall(lua_State *L)
{
    /* pcall with a traceback, for Lua code that reports errors itself. */
    luaL_checkany(L, 1);
    int n = lua_gettop(L);
    lua_pushcfunction(L, traceback);
    lua_insert(L, 1);
    int rc = lua_pcall(L, n - 1, LUA_MULTRET, 1);
    lua_pushboolean(L, rc == 0);
    lua_replace(L, 1);
    return lua_gettop(L);
}
