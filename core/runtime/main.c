/* tycho — command-line entry: global options, command dispatch, exit codes
 * (0 ok, 1 error, 2 usage). */
#include <lauxlib.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/serve.h"
#include "lua/tz_lua.h"
#include "runtime/tz_runtime.h"

typedef struct command {
    const char *name, *args, *summary, *detail;
} command;

static const command commands[] = {
    { "run", "SCRIPT.lua [ARGS...]", "run a Lua pipeline script",
      "Runs SCRIPT.lua with ARGS in the global `arg` (arg[0] is the script), then\n"
      "runs the event loop until no timer, process or socket is left." },
    { "repl", "", "interactive session",
      "Line editing and history (~/.tycho_history), multi-line input, every value\n"
      "printed. The `tycho` module is preloaded. Type :help inside." },
    { "serve", "APP.lua | --model NAME[@ALIAS] ... [--port P] [--host H] [--workers N] [--token-file F] [--insecure]\n"
               "      [--max-body BYTES] [--max-header BYTES] [--idle-timeout MS] [--request-timeout MS]\n"
               "      [--access-log FILE|-] [--log-retention 7d] [--offline-store]",
      "serve an app over HTTP",
      "APP.lua returns tycho.app(); --model NAME[@ALIAS] (repeatable; default alias\n"
      "production) serves registered models with no app file. Binds 127.0.0.1:8080 by default; N worker\n"
      "processes share the port. A non-loopback --host needs --token-file unless\n"
      "--insecure. SIGTERM drains in-flight requests and exits 0. Predictions\n"
      "are logged for monitoring and kept for --log-retention (default 7d).\n"
      "--offline-store (with --cluster): this node keeps the offline store, and its\n"
      "first worker applies the cluster's push streams to the home." },
    { "ui", "[--port P] [--host H] [--token-file F] [--insecure] [--workers N]",
      "browse this home in the web console",
      "Serves the console at http://HOST:PORT/ui/ (features, runs, models, experiments)\n"
      "and the built-in JSON routes, with no app file: `tycho serve` of an app that\n"
      "has only the built-in routes. Reads need no token; promote and rollback need\n"
      "the --token-file's token, typed into the page. Binds 127.0.0.1:8080 by default." },
    { "test", "[PATHS...] [BUSTED OPTIONS]", "run busted specs inside the runtime",
      "Runs the *_spec.lua files under PATHS (default: tests/lua) with busted,\n"
      "inside tycho, so specs exercise the real C core." },
    /* Commands written in Lua: their help lives with them (cli/help.lua). */
    { "features", NULL, "define, ingest, materialize and inspect feature views", NULL },
    { "models", NULL, "inspect, promote and roll back models in the registry", NULL },
    { "runs", NULL, "list, show and compare recorded fits, evaluations and trials", NULL },
    { "score", NULL, "batch-score a CSV or JSONL file with a registered pipeline", NULL },
    { "experiments", NULL, "inspect and stop experiments", NULL },
    { "monitor", NULL, "online metrics and drift of a served model", NULL },
    { "completion", NULL, "print a bash completion script", NULL },
    { "dag", "run FILE [--date D | --from D --to D] [--rerun] [--keep-going] [--verbose|--quiet]\n"
             "      | status FILE|NAME [--limit N] [--json] | list [--json]",
      "run and inspect scheduled DAGs",
      "run: one run for a logical date (default: the latest due slot), or a\n"
      "backfill over dates in order (stopping at a failed date unless\n"
      "--keep-going). A date that succeeded runs again only with --rerun; an\n"
      "interrupted one resumes. status: recent runs with each task's state,\n"
      "attempts, duration and log tail. list: every DAG with runs in this home." },
    { "version", "", "print the version", "" },
    { "help", "[COMMAND]", "show help", "" },
    { NULL, NULL, NULL, NULL },
};

static const command *find_command(const char *name)
{
    for (const command *c = commands; c->name; c++)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: tycho [--home DIR] [--cluster URL] COMMAND [ARGS]\n\ncommands:\n");
    for (const command *c = commands; c->name; c++) fprintf(out, "  %-12s %s\n", c->name, c->summary);
    fprintf(out, "\nglobal options:\n  --home DIR  data home (default: $TYCHO_HOME or ./tycho-data)\n"
                 "  --cluster URL  online store on a Redis Cluster, redis://host:port[,host:port...]"
                 " (default: $TYCHO_CLUSTER)\n"
                 "\n`tycho help COMMAND` tells more.\n");
}

static int cmd_lua(const char *home, const char *module, const char *fn, int argc, char **argv);

/* Help for a command; for one written in Lua (no args here) the Lua side
 * prints it, with its subcommands (argv: the command, then what followed). */
static int help_of(const char *home, const char *name, int argc, char **argv)
{
    if (!name) { usage(stdout); return TZ_EXIT_OK; }
    const command *c = find_command(name);
    if (!c) {
        fprintf(stderr, "tycho: unknown command '%s'\n", name);
        usage(stderr);
        return TZ_EXIT_USAGE;
    }
    if (!c->args) return cmd_lua(home ? home : "./tycho-data", "tycho.cli.help", "main", argc, argv);
    printf("usage: tycho %s %s\n\n%s.\n%s%s", c->name, c->args, c->summary, c->detail, *c->detail ? "\n" : "");
    return TZ_EXIT_OK;
}

static int help(const char *name)
{
    char *argv[] = { (char *)name };
    return help_of(NULL, name, name ? 1 : 0, argv);
}

/* Whether --help or -h is among the arguments. */
static int asks_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

static int usage_error(const char *cmd, const char *fmt, const char *what)
{
    fprintf(stderr, "tycho%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    fprintf(stderr, fmt, what);
    fputc('\n', stderr);
    if (cmd) help(cmd); else usage(stderr);
    return TZ_EXIT_USAGE;
}

/* A runtime for a batch command: its collector paced for throughput
 * (lua/tycho/core/gc.lua says why serving workers are not). */
static int open_runtime(tz_runtime *rt, const char *home)
{
    char err[256];
    if (tz_runtime_init(rt, home, err, sizeof err) != 0) {
        fprintf(stderr, "tycho: %s\n", err);
        return -1;
    }
    if (tz_runtime_call(rt, "tycho.core.gc", "start_batch", 0, NULL) != TZ_EXIT_OK) {
        tz_runtime_close(rt);
        return -1;
    }
    return 0;
}

static int cmd_run(const char *home, int argc, char **argv)
{
    if (argc < 1) return usage_error("run", "%s", "missing SCRIPT.lua");
    tz_runtime rt;
    if (open_runtime(&rt, home)) return TZ_EXIT_ERROR;
    lua_State *L = rt.L;
    tz_runtime_set_arg(L, argv[0], argc - 1, argv + 1);
    int code = TZ_EXIT_OK;
    if (luaL_loadfile(L, argv[0]) != 0) {
        fprintf(stderr, "tycho: %s\n", lua_tostring(L, -1));
        code = TZ_EXIT_ERROR;
    } else {
        for (int i = 1; i < argc; i++) lua_pushstring(L, argv[i]);
        if (tz_lua_pcall(L, argc - 1, 0)) code = TZ_EXIT_ERROR;
        else uv_run(rt.loop, UV_RUN_DEFAULT);  /* timers and processes the script started */
    }
    tz_runtime_close(&rt);
    return code;
}

static int cmd_lua(const char *home, const char *module, const char *fn, int argc, char **argv)
{
    tz_runtime rt;
    if (open_runtime(&rt, home)) return TZ_EXIT_ERROR;
    int code = tz_runtime_call(&rt, module, fn, argc, (const char **)argv);
    tz_runtime_close(&rt);
    return code;
}

static int parse_uint(const char *cmd, const char *opt, const char *val, unsigned max, unsigned *out)
{
    char *end;
    unsigned long v = val ? strtoul(val, &end, 10) : 0;
    if (!val || *end || end == val || v > max) {
        fprintf(stderr, "tycho %s: %s needs a number up to %u\n", cmd, opt, max);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

/* `tycho serve` and `tycho ui`: cmd is the command's name, and fixed_app
 * (for ui) the built-in app it serves instead of an app file. */
static int serve_command(const char *cmd, const char *fixed_app, const char *home, int argc, char **argv)
{
    tz_serve_opts o = { .host = "127.0.0.1", .port = 8080, .workers = 1 };
    /* --model NAME[@ALIAS] (repeatable) serves registered models with no
     * app file: the worker builds the app from "tycho:models=A,B@alias". */
    char models[4096] = "tycho:models=";
    size_t models_len = strlen(models), n_models = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned n = 0;
        int takes = 1, bad = 0;
        if (!strcmp(a, "--port")) { bad = parse_uint(cmd, a, v, 65535, &n); o.port = (int)n; }
        else if (!strcmp(a, "--workers")) { bad = parse_uint(cmd, a, v, 256, &n); o.workers = (int)n; }
        else if (!strcmp(a, "--host")) { if (!(o.host = v)) bad = 1; }
        else if (!strcmp(a, "--token-file")) { if (!(o.token_file = v)) bad = 1; }
        else if (!strcmp(a, "--access-log")) { if (!(o.access_log = v)) bad = 1; }
        else if (!strcmp(a, "--log-retention")) { if (!(o.log_retention = v)) bad = 1; }
        else if (!strcmp(a, "--max-body")) bad = parse_uint(cmd, a, v, 1u << 30, &o.max_body_bytes);
        else if (!strcmp(a, "--max-header")) bad = parse_uint(cmd, a, v, 1u << 20, &o.max_header_bytes);
        else if (!strcmp(a, "--idle-timeout")) bad = parse_uint(cmd, a, v, 86400000, &o.idle_timeout_ms);
        else if (!strcmp(a, "--request-timeout")) bad = parse_uint(cmd, a, v, 86400000, &o.request_timeout_ms);
        else if (!strcmp(a, "--insecure")) { o.insecure = 1; takes = 0; }
        else if (!strcmp(a, "--offline-store")) { o.offline_store = 1; takes = 0; }
        else if (!strcmp(a, "--model")) {
            size_t len = v ? strlen(v) : 0;
            if (!v || !len || strchr(v, ',') || models_len + len + 2 > sizeof models) bad = 1;
            else {
                models_len += (size_t)snprintf(models + models_len, sizeof models - models_len, "%s%s",
                                               n_models++ ? "," : "", v);
            }
        }
        else if (a[0] == '-') return usage_error(cmd, "unknown option '%s'", a);
        else if (!o.app) { o.app = a; takes = 0; }
        else return usage_error(cmd, "unexpected argument '%s'", a);
        if (bad) return usage_error(cmd, "bad value for %s", a);
        i += takes;
    }
    if (o.offline_store && !(getenv("TYCHO_CLUSTER") && *getenv("TYCHO_CLUSTER")))
        return usage_error(cmd, "%s", "--offline-store needs --cluster URL (or TYCHO_CLUSTER)");
    if (fixed_app && (o.app || n_models)) return usage_error(cmd, "%s", "takes no app file and no --model");
    if (fixed_app) return tz_serve_main((o.app = fixed_app, &o), home);
    if (n_models && o.app) return usage_error("serve", "%s", "give APP.lua or --model, not both");
    if (n_models) return tz_serve_main((o.app = models, &o), home);
    if (!o.app) return usage_error("serve", "%s", "missing APP.lua (or --model NAME[@ALIAS])");
    if (access(o.app, R_OK) != 0) {
        fprintf(stderr, "tycho serve: cannot read app file '%s'\n", o.app);
        return TZ_EXIT_ERROR;
    }
    return tz_serve_main(&o, home);
}

int main(int argc, char **argv)
{
    /* A peer that hangs up mid-response must cost its connection, never the
     * process: writes then fail with EPIPE, which every writer handles (the
     * HTTP server closes that connection). Children started through libuv
     * get the default disposition back. */
    signal(SIGPIPE, SIG_IGN);
    const char *home = getenv("TYCHO_HOME");
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--home")) {
            if (++i >= argc) return usage_error(NULL, "%s", "--home needs a directory");
            home = argv[i];
        } else if (!strcmp(argv[i], "--cluster")) {
            /* Through the environment, so serve workers, DAG tasks and
             * every child see the same cluster (features/online_redis.lua). */
            if (++i >= argc) return usage_error(NULL, "%s", "--cluster needs a URL (redis://host:port[,host:port...])");
            setenv("TYCHO_CLUSTER", argv[i], 1);
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            return help(NULL);
        } else if (!strcmp(argv[i], "--version")) {
            printf("tycho %s\n", TYCHO_VERSION);
            return TZ_EXIT_OK;
        } else {
            return usage_error(NULL, "unknown option '%s'", argv[i]);
        }
    }
    if (!home || !*home) home = "./tycho-data";
    char abs_home[PATH_MAX];
    if (home[0] != '/' && getcwd(abs_home, sizeof abs_home)) {
        /* Absolute, so a script that changes directory keeps its home. */
        size_t n = strlen(abs_home);
        snprintf(abs_home + n, sizeof abs_home - n, "/%s", home[0] == '.' && home[1] == '/' ? home + 2 : home);
        home = abs_home;
    }
    if (i >= argc) { usage(stderr); return TZ_EXIT_USAGE; }
    const char *cmd = argv[i];
    int rest = argc - i - 1;
    char **args = argv + i + 1;
    /* Asking for help runs nothing and touches no home. */
    if (strcmp(cmd, "run") && strcmp(cmd, "test") && find_command(cmd) && asks_help(rest, args))
        return help_of(home, cmd, rest + 1, argv + i);
    if (!strcmp(cmd, "help")) return help_of(home, rest ? args[0] : NULL, rest, args);
    if (!strcmp(cmd, "run")) return cmd_run(home, rest, args);
    if (!strcmp(cmd, "serve")) return serve_command("serve", NULL, home, rest, args);
    if (!strcmp(cmd, "ui")) return serve_command("ui", "tycho:ui", home, rest, args);
    if (!strcmp(cmd, "repl")) {
        if (rest) return usage_error("repl", "unexpected argument '%s'", args[0]);
        return cmd_lua(home, "tycho.cli.repl", "run", 0, NULL);
    }
    if (!strcmp(cmd, "test")) return cmd_lua(home, "tycho.cli.testing", "main", rest, args);
    if (!strcmp(cmd, "features")) return cmd_lua(home, "tycho.cli", "features", rest, args);
    if (!strcmp(cmd, "models")) return cmd_lua(home, "tycho.cli", "models", rest, args);
    if (!strcmp(cmd, "runs")) return cmd_lua(home, "tycho.cli", "runs", rest, args);
    if (!strcmp(cmd, "completion")) return cmd_lua(home, "tycho.cli", "completion", rest, args);
    if (!strcmp(cmd, "score")) return cmd_lua(home, "tycho.cli", "score", rest, args);
    if (!strcmp(cmd, "experiments")) return cmd_lua(home, "tycho.cli", "experiments", rest, args);
    if (!strcmp(cmd, "monitor")) return cmd_lua(home, "tycho.cli", "monitor", rest, args);
    if (!strcmp(cmd, "dag")) return cmd_lua(home, "tycho.dag", "cli", rest, args);
    if (!strcmp(cmd, "version")) { printf("tycho %s\n", TYCHO_VERSION); return TZ_EXIT_OK; }
    return usage_error(NULL, "unknown command '%s'", cmd);
}
