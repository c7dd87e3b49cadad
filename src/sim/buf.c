#include "sim/buf.h"
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sim_buf_reserve(struct sim_buf *b, size_t n)
{
    if (n > (size_t)-1 / 2 - b->len) return IOT_ENOMEM;
    size_t need = b->len + n + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return IOT_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int sim_buf_put(struct sim_buf *b, const void *data, size_t n)
{
    if (sim_buf_reserve(b, n)) return IOT_ENOMEM;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int sim_buf_printf(struct sim_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || sim_buf_reserve(b, (size_t)n)) return IOT_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int sim_buf_put_json_str(struct sim_buf *b, const char *s)
{
    size_t start = b->len;
    int rc = sim_buf_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; !rc && *c; c++) {
        if (*c == '"' || *c == '\\')
            rc = sim_buf_printf(b, "\\%c", *c);
        else if (*c < 0x20)
            rc = sim_buf_printf(b, "\\u%04x", *c);
        else
            rc = sim_buf_put(b, c, 1);
    }
    if (!rc) rc = sim_buf_put(b, "\"", 1);
    if (rc) {
        b->len = start;
        if (b->p) b->p[start] = 0;
    }
    return rc;
}

void sim_buf_free(struct sim_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
