#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *iot_strerror(int err)
{
    switch (err) {
    case IOT_OK:
        return "ok";
    case IOT_ENOMEM:
        return "out of memory";
    case IOT_EINVAL:
        return "invalid argument";
    case IOT_ENOTFOUND:
        return "not found";
    case IOT_EEXIST:
        return "already exists";
    case IOT_EBUSY:
        return "database busy";
    case IOT_EUNAVAIL:
        return "database unavailable";
    case IOT_EDB:
        return "database error";
    case IOT_EIO:
        return "i/o error";
    case IOT_ETOOBIG:
        return "over limit";
    case IOT_EFULL:
        return "queue full";
    case IOT_ESHUTDOWN:
        return "shutting down";
    }
    return "unknown error";
}

void iot_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0) return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
