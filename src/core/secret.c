#include "core/secret.h"
#include "core/err.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nettle/memops.h>
#include <string.h>

/*
 * GnuTLS (with Nettle under it) rather than OpenSSL: it is the gateway's TLS
 * library already, initialised when it loads, while OpenSSL 3's first digest or
 * random call initialises its providers and touches 2 MiB of libcrypto's pages
 * for this one hash (docs/BENCHMARKS.md, memory). Also 60 ns per hash, not 300.
 */
int secret_hash(const char *key, size_t len, unsigned char out[SECRET_HASH_LEN])
{
    return gnutls_hash_fast(GNUTLS_DIG_SHA256, key, len, out) < 0 ? IOT_EIO : 0;
}

int secret_hash_equal(const unsigned char a[SECRET_HASH_LEN],
                      const unsigned char b[SECRET_HASH_LEN])
{
    return memeql_sec(a, b, SECRET_HASH_LEN);
}

/* Lower-case hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

void secret_hash_hex(const unsigned char h[SECRET_HASH_LEN], char *out)
{
    hex_encode(h, SECRET_HASH_LEN, out);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void secret_hash_from_hex(const char *hex, unsigned char out[SECRET_HASH_LEN])
{
    memset(out, 0, SECRET_HASH_LEN);
    if (!hex || strlen(hex) != 2 * SECRET_HASH_LEN) return;
    for (int i = 0; i < SECRET_HASH_LEN; i++) {
        int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
        if (a < 0 || b < 0) {
            memset(out, 0, SECRET_HASH_LEN);
            return;
        }
        out[i] = (unsigned char)(a << 4 | b);
    }
}

int secret_generate(char out[SECRET_KEY_HEX_LEN + 1])
{
    unsigned char raw[SECRET_KEY_BYTES];
    if (gnutls_rnd(GNUTLS_RND_KEY, raw, sizeof raw) < 0) return IOT_EIO;
    hex_encode(raw, sizeof raw, out);
    gnutls_memset(raw, 0, sizeof raw);
    return 0;
}
