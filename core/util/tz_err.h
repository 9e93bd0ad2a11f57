/*
 * tz_err — the error convention shared by every core module.
 *
 * Every fallible core call returns an int: 0 on success, a negative TZ_E*
 * code on failure, and fills the caller's tz_err (when non-NULL) with the
 * code and a human-readable message. Core code never prints and never exits.
 * tz_err is a plain value owned by the caller; nothing in it needs freeing.
 */
#ifndef TZ_ERR_H
#define TZ_ERR_H

#include <stddef.h>

enum {
    TZ_OK        = 0,
    TZ_ENOTFOUND = -30001, /* key or route not found: an expected outcome */
    TZ_EINVAL    = -30002, /* bad argument or malformed input */
    TZ_ENOMEM    = -30003,
    TZ_EIO       = -30004, /* operating-system failure; message has errno text */
    TZ_EMAPFULL  = -30005, /* store map full: abort, tz_store_grow(), retry */
    TZ_ECORRUPT  = -30006, /* data on disk is damaged or not ours */
    TZ_EBUSY     = -30007, /* resource in use (port, writer lock) */
    TZ_ESTORE    = -30008, /* other LMDB failure */
    TZ_ETOOBIG   = -30009, /* input exceeds a configured limit */
};

typedef struct tz_err {
    int  code;
    char msg[256];
} tz_err;

/* Sets err (if non-NULL) to code and a printf-style message; returns code. */
int tz_err_set(tz_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Static name of a TZ_E* code ("ENOTFOUND"); "EUNKNOWN" for others. */
const char *tz_strerror(int code);

#endif
