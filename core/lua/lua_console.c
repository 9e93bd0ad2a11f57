/* The embedded console bundle for Lua (console_assets.h), read by
 * lua/tycho/serve/console_routes.lua:
 *   internal.console_asset(name) -> the file's bytes, or nil when the
 *   binary holds no such file (or no console at all).
 * Lua copies the bytes into a string on each call; the route keeps it. */
#include <lauxlib.h>
#include <string.h>

#include "lua/console_assets.h"
#include "lua/tz_lua.h"

static int l_console_asset(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    for (const tz_console_asset *a = tz_console_assets; a->name; a++) {
        if (strcmp(a->name, name) == 0) {
            lua_pushlstring(L, (const char *)a->data, a->size);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

void tz_lua_console_register(lua_State *L)
{
    lua_pushcfunction(L, l_console_asset);
    lua_setfield(L, -2, "console_asset");
}
