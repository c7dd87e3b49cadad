/*
 * Secrets: device and API keys are never stored or compared in clear. A key
 * is hashed with SHA-256 (keys are random and >= 128 bits, so a fast hash is
 * safe) and hashes are compared in constant time.
 */
#ifndef IOT_SECRET_H
#define IOT_SECRET_H

#include <stddef.h>

#define SECRET_HASH_LEN    32
#define SECRET_KEY_BYTES   24 /* generated keys: 192 bits */
#define SECRET_KEY_HEX_LEN (2 * SECRET_KEY_BYTES)

/* SHA-256 of key[0..len). Returns 0 or IOT_EIO. */
int secret_hash(const char *key, size_t len, unsigned char out[SECRET_HASH_LEN]);
/* Constant-time equality of two hashes: 1 if equal. */
int secret_hash_equal(const unsigned char a[SECRET_HASH_LEN],
                      const unsigned char b[SECRET_HASH_LEN]);
/* A new random key as lower-case hex (NUL-terminated). Returns 0 or IOT_EIO. */
int secret_generate(char out[SECRET_KEY_HEX_LEN + 1]);
/*
 * Decodes a stored hex hash. A malformed or missing one decodes to all
 * zeros, which no key hashes to in practice: it can never authenticate.
 */
void secret_hash_from_hex(const char *hex, unsigned char out[SECRET_HASH_LEN]);
/* Lower-case hex of a hash; out needs 2*SECRET_HASH_LEN+1 bytes. */
void secret_hash_hex(const unsigned char h[SECRET_HASH_LEN], char *out);

#endif
