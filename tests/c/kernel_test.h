/* Helpers shared by the kernel tests: tolerance checks, running a fit in a
 * child process with another TYCHO_THREADS (the pool starts once per
 * process, so a thread count can only be chosen before its first use), and
 * a model-file fuzzer (truncations, byte flips, byte flips with the CRC
 * recomputed so that the loader's own structural checks are exercised). */
#ifndef TZ_KERNEL_TEST_H
#define TZ_KERNEL_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"
#include "util/tz_blob.h"
#include "util/tz_err.h"

#define is_close(got, want, rtol, atol, ...) do { double g_ = (got), w_ = (want); \
    if (!ok(fabs(g_ - w_) <= (atol) + (rtol) * fabs(w_), __VA_ARGS__)) \
        printf("#   got %.17g, want %.17g (diff %.3g)\n", g_, w_, g_ - w_); } while (0)

/* Computes something in a child whose pool runs TYCHO_THREADS=threads: fn
 * returns a malloc'd buffer, which comes back through a pipe. Must be
 * called before this process first uses tz_pool. Returns 0 or -1. */
typedef unsigned char *(*kt_child_fn)(void *ctx, size_t *len);

static inline int kt_run_with_threads(const char *threads, kt_child_fn fn, void *ctx,
                               unsigned char **out, size_t *out_len)
{
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        setenv("TYCHO_THREADS", threads, 1);
        size_t len = 0;
        unsigned char *buf = fn(ctx, &len);
        uint64_t n = buf ? len : (uint64_t)-1;
        int bad = write(fd[1], &n, sizeof n) != (ssize_t)sizeof n;
        for (size_t off = 0; buf && off < len && !bad;) {
            ssize_t w = write(fd[1], buf + off, len - off);
            if (w <= 0) bad = 1; else off += (size_t)w;
        }
        _exit(bad);
    }
    close(fd[1]);
    uint64_t n = 0;
    int rc = read(fd[0], &n, sizeof n) == (ssize_t)sizeof n && n != (uint64_t)-1 ? 0 : -1;
    unsigned char *buf = rc ? NULL : malloc(n ? n : 1);
    size_t got = 0;
    while (buf && got < n) {
        ssize_t r = read(fd[0], buf + got, n - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!buf || got != n || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = n;
    return 0;
}

/* Loads a model from bytes (0 or an error), uses it (predicts: must not
 * crash whatever it loaded), frees it. */
typedef int (*kt_load_use_fn)(void *ctx, const unsigned char *buf, size_t len, tz_err *err);

static inline void kt_set_crc(unsigned char *buf, size_t len)
{
    uint32_t c = tz_crc32(0, buf, len - 4);
    for (int i = 0; i < 4; i++) buf[len - 4 + i] = (unsigned char)(c >> (8 * i));
}

/* Fuzzes a valid model file: every truncation must be refused, every byte
 * flip refused (CRC), and byte flips with a recomputed CRC either refused
 * or loaded into a model that predicts without crashing. Returns the number
 * of failures; *n_loaded counts CRC-fixed mutants that still loaded. */
static inline int kt_fuzz_model(const unsigned char *good, size_t len, kt_load_use_fn fn, void *ctx,
                         size_t *n_refused, size_t *n_loaded)
{
    int failures = 0;
    size_t refused = 0, loaded = 0;
    unsigned char *buf = malloc(len);
    tz_err err;
    size_t step = len > 4000 ? len / 2000 : 1;
    for (size_t cut = 0; cut < len; cut += step) {
        memcpy(buf, good, cut);
        if (fn(ctx, buf, cut, &err) == 0) failures++;
        else refused++;
    }
    static const unsigned char flips[] = { 0x01, 0x80, 0xff, 0x7f };
    for (size_t off = 0; off < len; off += step) {
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(buf, good, len);
            buf[off] ^= flips[f];
            if (fn(ctx, buf, len, &err) == 0) failures++;
            else refused++;
            if (off >= 24 && off < len - 4) {  /* payload: re-sign it */
                kt_set_crc(buf, len);
                if (fn(ctx, buf, len, &err) == 0) loaded++;
                else refused++;
            }
        }
    }
    free(buf);
    if (n_refused) *n_refused = refused;
    if (n_loaded) *n_loaded = loaded;
    return failures;
}

/* Overwrites the u64 / u32 at payload offset off (after the 24-byte header)
 * and re-signs the file. */
static inline void kt_poke_u64(unsigned char *buf, size_t len, size_t off, uint64_t v)
{
    for (int i = 0; i < 8; i++) buf[24 + off + i] = (unsigned char)(v >> (8 * i));
    kt_set_crc(buf, len);
}

static inline void kt_poke_u32(unsigned char *buf, size_t len, size_t off, uint32_t v)
{
    for (int i = 0; i < 4; i++) buf[24 + off + i] = (unsigned char)(v >> (8 * i));
    kt_set_crc(buf, len);
}

#endif
