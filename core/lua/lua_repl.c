/* Terminal bindings for the REPL: readline with Ctrl-C that cancels the line
 * (readline's callback interface, so a SIGINT never kills the process), its
 * history file, and a pcall that Ctrl-C interrupts (a count hook raises an
 * error at the next Lua instruction, as the stand-alone lua does). */
#include <errno.h>
#include <lauxlib.h>
#include <readline/history.h>
#include <readline/readline.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include "lua/tz_lua.h"

static volatile sig_atomic_t got_sigint;
static char *line_read;
static int line_done;
static lua_State *hooked_state;

/* Tab completion: readline asks complete_word for the word under the
 * cursor; the Lua completer given to readline() (at the top of the stack
 * while reading) returns the candidates as a list of strings. */
static lua_State *completing_state;
static int completer_index;

static char *next_candidate(const char *text, int state)
{
    (void)text;
    lua_State *L = completing_state;
    static int n, i;
    if (!state) {
        n = (int)lua_objlen(L, -1);
        i = 0;
    }
    while (i < n) {
        lua_rawgeti(L, -1, ++i);
        const char *c = lua_tostring(L, -1);
        char *copy = c ? strdup(c) : NULL;
        lua_pop(L, 1);
        if (copy) return copy;
    }
    return NULL;
}

static char **complete_word(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1;  /* no file-name completion */
    lua_State *L = completing_state;
    if (!L || !completer_index) return NULL;
    lua_pushvalue(L, completer_index);
    lua_pushstring(L, text);
    lua_pushstring(L, rl_line_buffer);
    /* A completer that fails offers nothing; it never ends the session. */
    if (lua_pcall(L, 2, 1, 0) != 0 || !lua_istable(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    rl_completion_append_character = '\0';
    rl_completion_suppress_quote = 1;  /* the user closes a string they opened */
    char **matches = rl_completion_matches(text, next_candidate);
    lua_pop(L, 1);
    return matches;
}

static void on_sigint(int sig)
{
    (void)sig;
    got_sigint = 1;
}

static void with_sigint(void (*handler)(int), struct sigaction *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, old);  /* no SA_RESTART: select() must wake up */
}

static void on_line(char *line)
{
    line_read = line;
    line_done = 1;
    rl_callback_handler_remove();
}

/* readline(prompt [, completer]) -> line | nil (end of input) | false
 * (Ctrl-C). completer(word, line) -> { candidate, ... } for Tab. */
static int l_readline(lua_State *L)
{
    const char *prompt = luaL_checkstring(L, 1);
    completing_state = L;
    completer_index = lua_isfunction(L, 2) ? 2 : 0;
    rl_attempted_completion_function = complete_word;
    rl_completer_quote_characters = "\"'";  /* known, so a completion inside one is not closed (below) */
    /* Words run through dots and colons (tycho.models.gbt, df:describe). */
    rl_basic_word_break_characters = " \t\n\"'`@$><=;|&{(,[+-*/%^~#";
    if (!isatty(STDIN_FILENO)) {
        /* Piped input: no line editing, and no prompt noise in the output. */
        char buf[4096];
        if (!fgets(buf, sizeof buf, stdin)) { lua_pushnil(L); return 1; }
        size_t n = strlen(buf);
        if (n && buf[n - 1] == '\n') n--;
        lua_pushlstring(L, buf, n);
        return 1;
    }
    struct sigaction old;
    got_sigint = 0;
    with_sigint(on_sigint, &old);
    rl_catch_signals = 0;
    line_done = 0;
    line_read = NULL;
    rl_callback_handler_install(prompt, on_line);
    int interrupted = 0;
    while (!line_done) {
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(fileno(rl_instream), &fds);
        int rc = select(fileno(rl_instream) + 1, &fds, NULL, NULL, NULL);
        if (got_sigint) {
            got_sigint = 0;
            rl_free_line_state();
            rl_callback_sigcleanup();
            rl_callback_handler_remove();
            fputs("^C\n", rl_outstream);
            interrupted = 1;
            break;
        }
        if (rc < 0 && errno != EINTR) break;
        if (rc > 0) rl_callback_read_char();
    }
    sigaction(SIGINT, &old, NULL);
    completing_state = NULL;
    completer_index = 0;
    if (interrupted) {
        lua_pushboolean(L, 0);
    } else if (!line_read) {
        fputc('\n', rl_outstream);
        lua_pushnil(L);
    } else {
        lua_pushstring(L, line_read);
        free(line_read);
    }
    return 1;
}

static int l_history_add(lua_State *L)
{
    add_history(luaL_checkstring(L, 1));
    return 0;
}

static int l_history_load(lua_State *L)
{
    read_history(luaL_checkstring(L, 1));
    return 0;
}

/* history_append(path, max_entries): appends the newest entry to the file
 * at once, so history survives a crash, and keeps the file bounded. */
static int l_history_append(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int max = (int)luaL_optinteger(L, 2, 1000);
    FILE *f = fopen(path, "a");
    if (f) fclose(f);
    append_history(1, path);
    history_truncate_file(path, max);
    return 0;
}

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted");
}

static volatile sig_atomic_t interrupts;

static void on_eval_sigint(int sig)
{
    /* Compiled traces never run hooks: a second Ctrl-C while a JIT-compiled
     * loop spins ends the process, as the terminal user expects. */
    if (++interrupts > 1) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    /* lua_sethook is the one Lua call that is safe from a signal handler. */
    if (hooked_state)
        lua_sethook(hooked_state, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* interruptible(f, ...) -> ok, results... | false, message-with-traceback */
static int l_interruptible(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    struct sigaction old;
    hooked_state = L;
    interrupts = 0;
    with_sigint(on_eval_sigint, &old);
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    lua_getfield(L, -1, "tycho.internal");
    lua_getfield(L, -1, "xpcall");
    lua_replace(L, -3);
    lua_pop(L, 1);
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    sigaction(SIGINT, &old, NULL);
    lua_sethook(L, NULL, 0, 0);
    hooked_state = NULL;
    return lua_gettop(L);
}

void tz_lua_repl_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "readline", l_readline },
        { "history_add", l_history_add },
        { "history_load", l_history_load },
        { "history_append", l_history_append },
        { "interruptible", l_interruptible },
        { NULL, NULL },
    };
    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
}
