/* The sandbox's runner: user code from artifacts and feature views runs
 * through sandbox_run(), which bounds it three ways for the length of the
 * call and undoes all three before returning:
 *   - instructions and time: a count hook, every HOOK_STEP instructions,
 *     raises once the instruction budget or the deadline is spent (a few
 *     instructions can take long: each pcall(error) unwinds), and from then
 *     on raises at every instruction, so a pcall inside user code cannot
 *     catch the stop and carry on;
 *   - memory: for the call, the state's allocator is wrapped by one that
 *     counts bytes and refuses growth past a cap measured from the call's
 *     start (LuaJIT raises "not enough memory", which the call's pcall
 *     catches); outside sandboxed calls every allocation goes straight to
 *     LuaJIT's own allocator, without the wrapper's call;
 *   - strings: the string metatable's __index points at the sandbox's own
 *     string table, so ("x"):find and friends are the sandbox's checked
 *     copies and never the host's table.
 * Hooking, arming and restoring happen here in C: no Lua instruction of the
 * host runs between the protected call's return and the hook's removal.
 * Error values are never converted through metamethods (a __tostring would
 * run outside the budget). One runtime per process: the memory account is
 * process-wide. */
#include <lauxlib.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "lua/tz_lua.h"

#define MAX_ERROR_TEXT 1000
#define HOOK_STEP 10000

typedef struct mem_account {
    lua_Alloc base;
    void *base_ud;
    ptrdiff_t used;   /* bytes since the call began; frees of older blocks make it smaller */
    ptrdiff_t limit;  /* growth past this fails */
} mem_account;

static mem_account account;

static struct {
    int active;
    int expired;         /* 0, or what ran out: 'i'nstructions, 't'ime */
    lua_Integer left;    /* instructions left after the hook's current step */
    double deadline;     /* monotonic seconds */
} run;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    mem_account *a = ud;
    if (ptr == NULL) osize = 0;  /* a new block has no old size to give back */
    if (nsize > osize && a->used + (ptrdiff_t)(nsize - osize) > a->limit) return NULL;
    void *p = a->base(a->base_ud, ptr, osize, nsize);
    if (p || nsize == 0) a->used += (ptrdiff_t)nsize - (ptrdiff_t)osize;
    return p;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (!run.expired) {
        if (run.left > 0 && now() < run.deadline) {
            int step = run.left < HOOK_STEP ? (int)run.left : HOOK_STEP;
            run.left -= step;
            lua_sethook(L, budget_hook, LUA_MASKCOUNT, step);
            return;
        }
        run.expired = run.left > 0 ? 't' : 'i';
    }
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "ran past its budget");
}

static void push_error(lua_State *L, int status, lua_Integer budget, lua_Number cap, lua_Number ms)
{
    if (run.expired == 't') {
        lua_pushfstring(L, "stopped: ran past its time budget (%d ms)", (int)ms);
        lua_pushliteral(L, "budget");
    } else if (run.expired) {
        lua_pushfstring(L, "stopped: ran past its instruction budget (%d instructions)", (int)budget);
        lua_pushliteral(L, "budget");
    } else if (status == LUA_ERRMEM) {
        lua_pushfstring(L, "stopped: ran past its memory cap (%d KiB)", (int)(cap / 1024));
        lua_pushliteral(L, "memory");
    } else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
        size_t len;
        const char *msg = lua_tolstring(L, -1, &len);
        lua_pushlstring(L, msg, len > MAX_ERROR_TEXT ? MAX_ERROR_TEXT : len);
        lua_pushliteral(L, "error");
    } else {
        lua_pushfstring(L, "raised a %s value", luaL_typename(L, -1));
        lua_pushliteral(L, "error");
    }
}

/* sandbox_run(instructions, memory_cap_bytes, milliseconds, strings, fn, ...)
 *   -> true, results... | false, message, "budget" | "memory" | "error" */
static int l_sandbox_run(lua_State *L)
{
    lua_Integer budget = luaL_checkinteger(L, 1);
    lua_Number cap = luaL_checknumber(L, 2), ms = luaL_checknumber(L, 3);
    luaL_checktype(L, 4, LUA_TTABLE);
    luaL_checktype(L, 5, LUA_TFUNCTION);
    if (budget < 1) return luaL_error(L, "sandbox_run: budget out of range");
    if (!(ms > 0)) return luaL_error(L, "sandbox_run: time budget out of range");
    if (!(cap >= 0 && cap < (lua_Number)PTRDIFF_MAX / 2)) return luaL_error(L, "sandbox_run: cap out of range");
    if (run.active) return luaL_error(L, "sandbox_run: sandbox calls do not nest");
    int nargs = lua_gettop(L) - 5;

    lua_pushliteral(L, "");
    if (!lua_getmetatable(L, -1)) return luaL_error(L, "sandbox_run: strings have no metatable");
    lua_remove(L, -2);
    int mt = lua_gettop(L);
    lua_getfield(L, mt, "__index");  /* the host's, restored below */
    lua_pushvalue(L, 4);
    lua_setfield(L, mt, "__index");

    lua_pushvalue(L, 5);
    for (int i = 0; i < nargs; i++) lua_pushvalue(L, 6 + i);
    lua_Hook old_hook = lua_gethook(L);
    int old_mask = lua_gethookmask(L), old_count = lua_gethookcount(L);
    run.active = 1;
    run.expired = 0;
    int step = budget < HOOK_STEP ? (int)budget : HOOK_STEP;
    run.left = budget - step;
    run.deadline = now() + ms / 1000.0;
    /* Blocks pass between the two allocators freely: the wrapper hands
     * every call on to the base. */
    account.base = lua_getallocf(L, &account.base_ud);
    account.used = 0;
    account.limit = (ptrdiff_t)cap;
    lua_setallocf(L, counting_alloc, &account);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, step);
    int status = lua_pcall(L, nargs, LUA_MULTRET, 0);
    lua_sethook(L, old_hook, old_mask, old_count);
    lua_setallocf(L, account.base, account.base_ud);
    run.active = 0;

    lua_pushvalue(L, mt + 1);
    lua_setfield(L, mt, "__index");
    if (status != 0) {
        push_error(L, status, budget, cap, ms);
        lua_pushboolean(L, 0);
        lua_replace(L, -4);
        return 3;
    }
    int nres = lua_gettop(L) - (mt + 1);
    lua_pushboolean(L, 1);
    lua_insert(L, mt + 2);
    return nres + 1;
}

void tz_lua_sandbox_register(lua_State *L)
{
    lua_pushcfunction(L, l_sandbox_run);
    lua_setfield(L, -2, "sandbox_run");
}
