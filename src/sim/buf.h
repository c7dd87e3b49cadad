/* A growable byte buffer for the simulator's request bodies and replies. */
#ifndef IOT_SIM_BUF_H
#define IOT_SIM_BUF_H

#include <stddef.h>

struct sim_buf {
    char *p; /* NUL-terminated when len > 0 (text appenders keep one spare byte) */
    size_t len, cap;
};

/* Makes room for n more bytes plus a NUL. 0 or IOT_ENOMEM. */
int sim_buf_reserve(struct sim_buf *b, size_t n);
/* Appends bytes / printf-formatted text. 0 or IOT_ENOMEM (b unchanged on failure). */
int sim_buf_put(struct sim_buf *b, const void *data, size_t n);
int sim_buf_printf(struct sim_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included. */
int sim_buf_put_json_str(struct sim_buf *b, const char *s);
static inline void sim_buf_clear(struct sim_buf *b)
{
    b->len = 0;
    if (b->p) b->p[0] = 0;
}
/* Frees the storage; b is empty and reusable afterwards. */
void sim_buf_free(struct sim_buf *b);

#endif
