/* A growable byte buffer: request bodies and replies, built as text (the simulator, the HTTP
 * answers). */
#ifndef IOT_BUF_H
#define IOT_BUF_H

#include <stddef.h>

struct buf {
    char *p; /* NUL-terminated when len > 0 (text appenders keep one spare byte) */
    size_t len, cap;
};

/* Makes room for n more bytes plus a NUL. 0 or IOT_ENOMEM. */
int buf_reserve(struct buf *b, size_t n);
/* Appends bytes / printf-formatted text. 0 or IOT_ENOMEM (b unchanged on failure). */
int buf_put(struct buf *b, const void *data, size_t n);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
int buf_put_json_str(struct buf *b, const char *s);
static inline void buf_clear(struct buf *b)
{
    b->len = 0;
    if (b->p) b->p[0] = 0;
}
/* Frees the storage; b is empty and reusable afterwards. */
void buf_free(struct buf *b);

#endif
