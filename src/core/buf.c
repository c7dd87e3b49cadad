#include "core/buf.h"
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int buf_reserve(struct buf *b, size_t n)
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

int buf_put(struct buf *b, const void *data, size_t n)
{
    if (buf_reserve(b, n)) return IOT_ENOMEM;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n)) return IOT_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* Bytes that stand for themselves in a JSON string: not '"', '\\' or a control character. */
static size_t plain_run(const unsigned char *c)
{
    size_t n = 0;
    while (c[n] >= 0x20 && c[n] != '"' && c[n] != '\\')
        n++;
    return n;
}

int buf_put_json_str(struct buf *b, const char *s)
{
    size_t start = b->len;
    int rc = buf_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; !rc && *c;) {
        size_t n = plain_run(c);
        if (n) {
            rc = buf_put(b, c, n);
            c += n;
        } else {
            rc = *c < 0x20 ? buf_printf(b, "\\u%04x", *c) : buf_printf(b, "\\%c", *c);
            c++;
        }
    }
    if (!rc) rc = buf_put(b, "\"", 1);
    if (rc) {
        b->len = start;
        if (b->p) b->p[start] = 0;
    }
    return rc;
}

void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
