#include "core/secret.h"
#include "core/err.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

int secret_hash(const char *key, size_t len, unsigned char out[SECRET_HASH_LEN])
{
    unsigned int n = 0;
    if (!EVP_Digest(key, len, out, &n, EVP_sha256(), NULL) || n != SECRET_HASH_LEN) return IOT_EIO;
    return 0;
}

int secret_hash_equal(const unsigned char a[SECRET_HASH_LEN],
                      const unsigned char b[SECRET_HASH_LEN])
{
    return CRYPTO_memcmp(a, b, SECRET_HASH_LEN) == 0;
}

void secret_hash_hex(const unsigned char h[SECRET_HASH_LEN], char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SECRET_HASH_LEN; i++) {
        out[2 * i] = digits[h[i] >> 4];
        out[2 * i + 1] = digits[h[i] & 15];
    }
    out[2 * SECRET_HASH_LEN] = 0;
}

int secret_generate(char out[SECRET_KEY_HEX_LEN + 1])
{
    unsigned char raw[SECRET_KEY_BYTES];
    static const char digits[] = "0123456789abcdef";
    if (RAND_bytes(raw, sizeof raw) != 1) return IOT_EIO;
    for (int i = 0; i < SECRET_KEY_BYTES; i++) {
        out[2 * i] = digits[raw[i] >> 4];
        out[2 * i + 1] = digits[raw[i] & 15];
    }
    out[SECRET_KEY_HEX_LEN] = 0;
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}
