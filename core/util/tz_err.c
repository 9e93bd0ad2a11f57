#include "util/tz_err.h"

#include <stdarg.h>
#include <stdio.h>

int tz_err_set(tz_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *tz_strerror(int code)
{
    switch (code) {
    case TZ_OK:        return "OK";
    case TZ_ENOTFOUND: return "ENOTFOUND";
    case TZ_EINVAL:    return "EINVAL";
    case TZ_ENOMEM:    return "ENOMEM";
    case TZ_EIO:       return "EIO";
    case TZ_EMAPFULL:  return "EMAPFULL";
    case TZ_ECORRUPT:  return "ECORRUPT";
    case TZ_EBUSY:     return "EBUSY";
    case TZ_ESTORE:    return "ESTORE";
    case TZ_ETOOBIG:   return "ETOOBIG";
    default:           return "EUNKNOWN";
    }
}
