/*
 * One list of error codes for the whole program. Functions return 0 on
 * success and one of these (negative) on failure. Retryable failures are
 * distinct codes, the four iot_err_retryable() names: IOT_EBUSY and
 * IOT_EUNAVAIL (the database), IOT_EFULL (the write queue), IOT_ESHUTDOWN
 * (the gateway is stopping). The HTTP layer maps them to 503 with
 * Retry-After (reply_store_error), input errors to 4xx, the rest to 500.
 */
#ifndef IOT_ERR_H
#define IOT_ERR_H

#include <stddef.h>

enum iot_err {
    IOT_OK = 0,
    IOT_ENOMEM = -1,     /* allocation failed */
    IOT_EINVAL = -2,     /* bad argument or input */
    IOT_ENOTFOUND = -3,  /* no such row / key */
    IOT_EEXIST = -4,     /* unique constraint: already exists */
    IOT_EBUSY = -5,      /* database locked or busy: retry later */
    IOT_EUNAVAIL = -6,   /* database or service unreachable: retry later */
    IOT_EDB = -7,        /* database error that retrying will not fix */
    IOT_EIO = -8,        /* I/O or system call failure */
    IOT_ETOOBIG = -9,    /* input over a configured limit */
    IOT_EFULL = -10,     /* bounded queue is full */
    IOT_ESHUTDOWN = -11, /* component is stopping */
};

const char *iot_strerror(int err);

/* A retryable failure: the caller should answer 503 / try again later. */
static inline int iot_err_retryable(int err)
{
    return err == IOT_EBUSY || err == IOT_EUNAVAIL || err == IOT_EFULL || err == IOT_ESHUTDOWN;
}

#define IOT_ERRBUF 256

/* Formats a one-line reason into a caller's buffer (NULL or 0 length: nothing). */
void iot_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
