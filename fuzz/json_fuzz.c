/* libFuzzer target: Tycho's JSON border, the module tycho.util.json
 * (lua/tycho/util/json.lua). It is lua-cjson's cjson.safe plus Tycho's rules: NaN, Infinity, hex and
 * numbers past a double's range are refused as "not a finite decimal"; a
 * computed NaN encodes as null.
 *
 * One LuaJIT state is made at start (luaL_newstate + luaL_openlibs);
 * package.path looks in <repo>/lua first (TZ_LUA_DIR, set by
 * fuzz/CMakeLists.txt); cjson comes from the system (Debian's lua-cjson,
 * through the default package.cpath). Per input, all under lua_pcall:
 *  1. v1 = json.decode(input). It must not raise; a refusal is nil plus a
 *     message string. A value must hold only tables, strings, booleans,
 *     json.null and finite numbers (the border's promise).
 *  2. e1 = json.encode(v1) must not raise, and v2 = json.decode(e1) must
 *     give a value again: v1 with every number rounded to lua-cjson's 14
 *     significant digits (computed here as strtod("%.14g")), the rest equal.
 *  3. e2 = json.encode(v2) must be the same bytes as e1 when no object in
 *     the value has two or more keys. Otherwise only the same length: cjson
 *     writes an object's members in the Lua table's hash order, and the
 *     table decode builds from e1 can hold the same keys in another order
 *     (a plain run of Lua shows it on most objects of a dozen keys), so
 *     exact bytes are not promised there. In both cases v3 = json.decode(e2)
 *     must equal v2 exactly (14 digits are a fixed point).
 *  4. json.encode_canonical (sorted keys; artifacts and hashes rely on it)
 *     must give the same bytes for v2 and v3, and decode back to v2.
 * Any breach aborts. The Lua stack is checked balanced after each input, a
 * full GC runs every 10000 inputs, and the state is closed at exit (cjson
 * mallocs buffers that only LuaJIT's mmapped heap points to: LeakSanitizer
 * would report them if the state stayed open). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef TZ_LUA_DIR
#error "TZ_LUA_DIR (the repo's lua/ directory) must be defined"
#endif

static lua_State *L;
static int ref_decode, ref_encode, ref_canonical;
static const void *json_null;
static unsigned long n_inputs;

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "json_fuzz: invariant broken: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

static void close_state(void)
{
    if (L) lua_close(L);
    L = NULL;
}

/* Calls the registry function `ref` on the value at `arg`; leaves `nres`
 * results on the stack. A raise aborts. */
static void call(int ref, int arg, int nres, const char *what)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushvalue(L, arg);
    if (lua_pcall(L, 1, nres, 0) != 0) fail(what, lua_tostring(L, -1));
}

/* Leaves json.decode(string at `arg`) at the top, or nil when refused (then
 * its message must be a string). */
static void decode_at(int arg, const char *what)
{
    call(ref_decode, arg, 2, what);
    if (lua_isnil(L, -2) && lua_type(L, -1) != LUA_TSTRING) fail(what, "refused without a message");
    lua_pop(L, 1);
}

static void encode_at(int ref, int arg, const char *what)
{
    call(ref, arg, 1, what);
    if (lua_type(L, -1) != LUA_TSTRING) fail(what, "did not return a string");
}

/* Checks what decode may return; counts objects with two or more keys. */
static void walk(int idx, int depth, int *multi_key)
{
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        if (!isfinite(lua_tonumber(L, idx))) fail("decode returned a non-finite number", NULL);
        return;
    case LUA_TSTRING:
    case LUA_TBOOLEAN:
        return;
    case LUA_TLIGHTUSERDATA:
        if (lua_topointer(L, idx) != json_null) fail("decode returned a light userdata other than json.null", NULL);
        return;
    case LUA_TTABLE:
        break;
    default:
        fail("decode returned an unexpected type", lua_typename(L, lua_type(L, idx)));
    }
    if (depth > 1100) fail("decoded value nested deeper than cjson's limit", NULL);
    if (!lua_checkstack(L, 4)) fail("Lua stack exhausted walking a value", NULL);
    if (lua_getmetatable(L, idx)) fail("decoded table has a metatable", NULL);
    size_t keys = 0;
    int string_keys = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        keys++;
        if (lua_type(L, -2) == LUA_TSTRING) string_keys = 1;
        else if (lua_type(L, -2) != LUA_TNUMBER) fail("decoded table has a key that is neither string nor number", NULL);
        walk(lua_gettop(L), depth + 1, multi_key);
        lua_pop(L, 1);
    }
    if (string_keys && keys >= 2) *multi_key = 1;
    if (!string_keys && keys != lua_objlen(L, idx)) fail("decoded array has holes", NULL);
}

/* lua-cjson's encoding of a finite number, read back. */
static double round14(double x)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.14g", x);
    return strtod(buf, NULL);
}

static int same_bits(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Structural equality of the values at a and b; with `rounded`, b's numbers
 * are a's rounded to 14 significant digits. */
static int same_value(int a, int b, int rounded)
{
    int t = lua_type(L, a);
    if (t != lua_type(L, b)) return 0;
    switch (t) {
    case LUA_TNUMBER: {
        double x = lua_tonumber(L, a), y = lua_tonumber(L, b);
        return same_bits(rounded ? round14(x) : x, y);
    }
    case LUA_TSTRING: {
        size_t la, lb;
        const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
        return la == lb && memcmp(sa, sb, la) == 0;
    }
    case LUA_TBOOLEAN:
        return lua_toboolean(L, a) == lua_toboolean(L, b);
    case LUA_TLIGHTUSERDATA:
        return lua_topointer(L, a) == lua_topointer(L, b);
    case LUA_TTABLE:
        break;
    default:
        return 0;
    }
    if (!lua_checkstack(L, 6)) fail("Lua stack exhausted comparing values", NULL);
    size_t na = 0, nb = 0;
    lua_pushnil(L);
    while (lua_next(L, b) != 0) {
        nb++;
        lua_pop(L, 1);
    }
    int ok = 1;
    lua_pushnil(L);
    while (ok && lua_next(L, a) != 0) {
        na++;
        lua_pushvalue(L, -2);
        lua_rawget(L, b);
        int top = lua_gettop(L);
        ok = same_value(top - 1, top, rounded);
        lua_pop(L, 2);
    }
    if (!ok) lua_pop(L, 1); /* the key lua_next left */
    return ok && na == nb;
}

static const char *str_at(int idx, size_t *len)
{
    return lua_tolstring(L, idx, len);
}

static void self_test(void)
{
    static const char *const script =
        "local json = ...\n"
        "assert(package.loaded['cjson.safe'], 'cjson.safe did not load')\n"
        "local v = json.decode('{\"instances\":[{\"x\":1.5}]}')\n"
        "assert(v and v.instances[1].x == 1.5, 'decode of a predict body')\n"
        "for _, s in ipairs{'NaN', '[Infinity]', '[-Infinity]', '[1e999]', '[0x10]'} do\n"
        "  local r, e = json.decode(s)\n"
        "  assert(r == nil and e:find('not a finite decimal', 1, true), 'decode accepted ' .. s)\n"
        "end\n"
        "assert(json.encode({0/0, 1/0}) == '[null,null]', 'computed NaN does not encode as null')\n";
    if (luaL_loadstring(L, script) != 0) fail("self test", lua_tostring(L, -1));
    lua_getfield(L, LUA_REGISTRYINDEX, "tz_json_fuzz_module");
    if (lua_pcall(L, 1, 0, 0) != 0) {
        fprintf(stderr, "json_fuzz: self test failed: %s\n", lua_tostring(L, -1));
        exit(1);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "json_fuzz: luaL_newstate failed\n");
        exit(1);
    }
    atexit(close_state);
    luaL_openlibs(L);

    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", TZ_LUA_DIR, TZ_LUA_DIR, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);

    static const char *const load = "return require 'tycho.util.json'\n";
    if (luaL_loadstring(L, load) != 0 || lua_pcall(L, 0, 1, 0) != 0 || !lua_istable(L, -1)) {
        fprintf(stderr, "json_fuzz: cannot load Tycho's JSON module (needs lua-cjson: apt-get install lua-cjson): %s\n",
                lua_isstring(L, -1) ? lua_tostring(L, -1) : "not a table");
        exit(1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "tz_json_fuzz_module");
    lua_getfield(L, -1, "decode");
    ref_decode = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "encode");
    ref_encode = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "encode_canonical");
    ref_canonical = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "null");
    json_null = lua_topointer(L, -1);
    if (lua_type(L, -1) != LUA_TLIGHTUSERDATA) fail("json.null is not a light userdata", NULL);
    lua_pop(L, 2);

    self_test();
    if (lua_gettop(L) != 0) fail("Lua stack not empty after setup", NULL);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (lua_gettop(L) != 0) fail("Lua stack not balanced between inputs", NULL);
    enum { IN = 1, V1, E1, V2, E2, V3, C2, C3, V4 };
    int multi_key = 0, multi_key2 = 0;
    size_t l1, l2;
    const char *s1, *s2;

    lua_pushlstring(L, (const char *)data, size);                    /* IN */
    decode_at(IN, "json.decode raised on the input");                 /* V1 */
    if (lua_isnil(L, V1)) goto done;
    walk(V1, 0, &multi_key);

    encode_at(ref_encode, V1, "json.encode raised on a decoded value");  /* E1 */
    decode_at(E1, "json.decode raised on json.encode's output");     /* V2 */
    if (lua_isnil(L, V2)) fail("json.encode's output does not decode", lua_tostring(L, E1));
    walk(V2, 0, &multi_key2);
    if (!same_value(V1, V2, 1)) fail("decode(encode(v)) differs from v (numbers to 14 digits)", lua_tostring(L, E1));

    encode_at(ref_encode, V2, "json.encode raised on a re-decoded value");  /* E2 */
    s1 = str_at(E1, &l1);
    s2 = str_at(E2, &l2);
    if (l1 != l2) fail("re-encoding changed the length", lua_tostring(L, E2));
    if (!multi_key && memcmp(s1, s2, l1) != 0) fail("re-encoding changed the bytes", lua_tostring(L, E2));
    decode_at(E2, "json.decode raised on a re-encoding");            /* V3 */
    if (lua_isnil(L, V3) || !same_value(V2, V3, 0)) fail("the re-encoding does not decode to the same value", s2);

    encode_at(ref_canonical, V2, "json.encode_canonical raised on a decoded value");  /* C2 */
    encode_at(ref_canonical, V3, "json.encode_canonical raised on a decoded value");  /* C3 */
    s1 = str_at(C2, &l1);
    s2 = str_at(C3, &l2);
    if (l1 != l2 || memcmp(s1, s2, l1) != 0) fail("encode_canonical differs for equal values", s1);
    decode_at(C2, "json.decode raised on encode_canonical's output");  /* V4 */
    if (lua_isnil(L, V4) || !same_value(V2, V4, 0)) fail("encode_canonical's output does not decode to the value", s1);

done:
    lua_settop(L, 0);
    if (++n_inputs % 10000 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
