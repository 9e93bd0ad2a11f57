/*
 * serve — the `tycho serve` master: checks the app and the address, forks
 * the workers (each with its own runtime, loop and SO_REUSEPORT listener),
 * restarts a worker that dies, and on SIGTERM/SIGINT forwards the signal so
 * every worker drains, then exits 0.
 */
#ifndef TZ_SERVE_H
#define TZ_SERVE_H

typedef struct tz_serve_opts {
    const char *app;
    const char *host;
    int port;
    int workers;
    const char *token_file;
    const char *access_log;    /* file for JSON access lines, "-" for stderr, NULL for none */
    const char *log_retention; /* prediction log retention, a duration ("7d"); NULL: the default */
    int insecure;
    int offline_store;         /* worker 0 applies the cluster's push streams to the home (--offline-store) */
    unsigned max_body_bytes, max_header_bytes, idle_timeout_ms, request_timeout_ms;
} tz_serve_opts;

/* Returns the process exit code. */
int tz_serve_main(const tz_serve_opts *opts, const char *home);

#endif
