/* The identifier alphabet (see ident.h). */
#include "core/ident.h"

#include <gnutls/crypto.h>
#include <stdio.h>
#include <unistd.h>

size_t ident_span(const char *s, size_t n)
{
    size_t i = 0;
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok) break;
    }
    return i;
}

unsigned ident_request_prefix(void)
{
    unsigned char r[4];
    if (gnutls_rnd(GNUTLS_RND_NONCE, r, sizeof r) < 0) return (unsigned)getpid();
    return (unsigned)r[0] << 24 | (unsigned)r[1] << 16 | (unsigned)r[2] << 8 | r[3];
}

void ident_request_id(char *out, size_t cap, unsigned prefix, unsigned long long seq)
{
    snprintf(out, cap, "%08x%012llx", prefix, seq);
}
