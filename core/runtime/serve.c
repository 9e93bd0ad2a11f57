#include "runtime/serve.h"

#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/tz_http.h"
#include "lua/tz_lua.h"
#include "runtime/tz_runtime.h"

#define MAX_WORKERS 256
#define MAX_QUICK_DEATHS 5   /* workers dying within a second of start */

/* Loopback is what a client on this machine dials: 127.0.0.1 and ::1
 * ("localhost" binds 127.0.0.1 exactly). Any other address, the rest of
 * 127.0.0.0/8 included, was chosen for a reason and needs a token or
 * --insecure. */
static int is_loopback(const char *host)
{
    return !strcmp(host, "localhost") || !strcmp(host, "::1") || !strcmp(host, "127.0.0.1");
}

static void set_int(lua_State *L, const char *k, long v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static int worker_main(const tz_serve_opts *o, const char *home, int index)
{
    tz_runtime rt;
    char err[256];
    if (tz_runtime_init(&rt, home, err, sizeof err)) {
        fprintf(stderr, "tycho: %s\n", err);
        return TZ_EXIT_ERROR;
    }
    lua_State *L = rt.L;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "tycho.serve.worker");
    int code = TZ_EXIT_ERROR;
    if (tz_lua_pcall(L, 1, 1) == 0) {
        lua_getfield(L, -1, "worker");
        lua_createtable(L, 0, 12);
        set_str(L, "app", o->app);
        set_str(L, "host", o->host);
        set_int(L, "port", o->port);
        set_int(L, "worker", index);
        set_str(L, "token_file", o->token_file);
        set_str(L, "access_log", o->access_log);
        set_str(L, "log_retention", o->log_retention);
        set_int(L, "max_body_bytes", o->max_body_bytes);
        set_int(L, "max_header_bytes", o->max_header_bytes);
        set_int(L, "idle_timeout_ms", o->idle_timeout_ms);
        set_int(L, "request_timeout_ms", o->request_timeout_ms);
        lua_pushboolean(L, o->offline_store);
        lua_setfield(L, -2, "offline_store");
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "reuseport");
        if (tz_lua_pcall(L, 1, 1) == 0) code = lua_toboolean(L, -1) ? TZ_EXIT_OK : TZ_EXIT_ERROR;
    }
    tz_runtime_close(&rt);
    return code;
}

/* Loads the app once so a broken app fails before any worker starts. It
 * runs in a child of its own: the master stays free of Lua and libuv state,
 * which must not be shared by the workers it forks. */
static int check_app(const tz_serve_opts *o, const char *home)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("tycho serve: fork");
        return TZ_EXIT_ERROR;
    }
    if (pid == 0) {
        tz_runtime rt;
        char err[256];
        if (tz_runtime_init(&rt, home, err, sizeof err)) {
            fprintf(stderr, "tycho: %s\n", err);
            _exit(TZ_EXIT_ERROR);
        }
        const char *argv[] = { o->app, o->token_file ? o->token_file : "", o->log_retention ? o->log_retention : "" };
        int code = tz_runtime_call(&rt, "tycho.serve.worker", "check_app", 3, argv);
        tz_runtime_close(&rt);
        fflush(NULL);
        _exit(code);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) ? WEXITSTATUS(status) : TZ_EXIT_ERROR;
}

typedef struct worker_slot {
    pid_t pid;
    time_t started;
} worker_slot;

static pid_t spawn_worker(const tz_serve_opts *o, const char *home, int index, const sigset_t *orig)
{
    fflush(NULL);
    pid_t master = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* A master killed outright (SIGKILL, a crash) must not leave workers
         * serving on its port: they get SIGTERM and drain. The check after
         * covers a master that died before the request took effect. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master) _exit(TZ_EXIT_ERROR);
        sigprocmask(SIG_SETMASK, orig, NULL);
        _exit(worker_main(o, home, index));
    }
    return pid;
}

static void signal_all(worker_slot *w, int n, int sig)
{
    for (int i = 0; i < n; i++)
        if (w[i].pid > 0) kill(w[i].pid, sig);
}

int tz_serve_main(const tz_serve_opts *opts, const char *home)
{
    tz_serve_opts o = *opts;
    if (o.workers < 1 || o.workers > MAX_WORKERS) {
        fprintf(stderr, "tycho serve: --workers must be between 1 and %d\n", MAX_WORKERS);
        return TZ_EXIT_USAGE;
    }
    if (!is_loopback(o.host) && !o.token_file && !o.insecure) {
        fprintf(stderr, "tycho serve: refusing to listen on %s without a token: "
                        "pass --token-file FILE (clients send Authorization: Bearer TOKEN) "
                        "or --insecure\n", o.host);
        return TZ_EXIT_USAGE;
    }
    int code = check_app(&o, home);
    if (code) return code;
    tz_err err = {0};
    int port;
    if (tz_http_probe(o.host, o.port, &port, &err)) {
        fprintf(stderr, "tycho serve: %s\n", err.msg);
        return TZ_EXIT_ERROR;
    }
    o.port = port;

    sigset_t set, orig;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &orig);

    worker_slot w[MAX_WORKERS] = {{0}};
    for (int i = 0; i < o.workers; i++) {
        w[i].pid = spawn_worker(&o, home, i, &orig);
        w[i].started = time(NULL);
    }
    printf("tycho: serving %s on http://%s:%d with %d worker%s (pid %d)\n", o.app,
           o.host, o.port, o.workers, o.workers > 1 ? "s" : "", (int)getpid());
    if (!strcmp(o.app, "tycho:ui")) printf("tycho: the console is at http://%s:%d/ui/\n", o.host, o.port);
    fflush(stdout);

    int stopping = 0, quick_deaths = 0, alive = o.workers, failed = 0;
    while (alive > 0) {
        int sig;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGTERM || sig == SIGINT) {
            if (!stopping) signal_all(w, o.workers, SIGTERM);
            stopping = 1;
            continue;
        }
        pid_t pid;
        int status;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (int i = 0; i < o.workers; i++) {
                if (w[i].pid != pid) continue;
                /* Stopping, a worker that died of the SIGTERM sent to it (one
                 * restarted a moment ago, before its handler was set) stopped
                 * as asked. */
                int clean = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                            (stopping && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
                if (stopping || clean) {
                    w[i].pid = 0;
                    alive--;
                    if (!clean) failed = 1;
                    break;
                }
                fprintf(stderr, "tycho serve: worker %d (pid %d) died (%s %d); restarting\n", i,
                        (int)pid, WIFSIGNALED(status) ? "signal" : "exit",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                if (time(NULL) - w[i].started < 1 && ++quick_deaths > MAX_QUICK_DEATHS) {
                    fprintf(stderr, "tycho serve: workers keep dying at start; stopping\n");
                    w[i].pid = 0;
                    alive--;
                    failed = stopping = 1;
                    signal_all(w, o.workers, SIGTERM);
                    break;
                }
                w[i].pid = spawn_worker(&o, home, i, &orig);
                w[i].started = time(NULL);
                break;
            }
        }
    }
    sigprocmask(SIG_SETMASK, &orig, NULL);
    return failed ? TZ_EXIT_ERROR : TZ_EXIT_OK;
}
