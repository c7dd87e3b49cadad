#include <criterion/criterion.h>

#include "core/secret.h"

#include <string.h>

/*
 * Stored device keys are hex SHA-256 (devices.device_key_hash): whatever
 * library computes it, a database written by any version must still
 * authenticate. FIPS 180-2's vectors pin the function.
 */
Test(secret, hash_is_sha256)
{
    static const struct {
        const char *in, *hex;
    } kat[] = {
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        unsigned char h[SECRET_HASH_LEN];
        char hex[2 * SECRET_HASH_LEN + 1];
        cr_assert_eq(secret_hash(kat[i].in, strlen(kat[i].in), h), 0);
        secret_hash_hex(h, hex);
        cr_assert_str_eq(hex, kat[i].hex, "SHA-256(\"%s\")", kat[i].in);
    }
}

Test(secret, equal_compares_every_byte)
{
    unsigned char a[SECRET_HASH_LEN], b[SECRET_HASH_LEN];
    cr_assert_eq(secret_hash("key", 3, a), 0);
    memcpy(b, a, sizeof b);
    cr_assert(secret_hash_equal(a, b));
    for (size_t i = 0; i < SECRET_HASH_LEN; i += SECRET_HASH_LEN - 1) {
        b[i] ^= 1;
        cr_assert_not(secret_hash_equal(a, b), "differs at byte %zu", i);
        b[i] ^= 1;
    }
}

Test(secret, hex_round_trip_and_malformed)
{
    unsigned char h[SECRET_HASH_LEN], back[SECRET_HASH_LEN], zero[SECRET_HASH_LEN] = {0};
    char hex[2 * SECRET_HASH_LEN + 1];
    cr_assert_eq(secret_hash("abc", 3, h), 0);
    secret_hash_hex(h, hex);
    secret_hash_from_hex(hex, back);
    cr_assert_arr_eq(back, h, sizeof h);
    hex[5] = 'g';
    secret_hash_from_hex(hex, back);
    cr_assert_arr_eq(back, zero, sizeof zero);
    secret_hash_from_hex("abcd", back);
    cr_assert_arr_eq(back, zero, sizeof zero);
}

Test(secret, generated_keys_are_hex_and_differ)
{
    char a[SECRET_KEY_HEX_LEN + 1], b[SECRET_KEY_HEX_LEN + 1];
    cr_assert_eq(secret_generate(a), 0);
    cr_assert_eq(secret_generate(b), 0);
    cr_assert_eq(strlen(a), SECRET_KEY_HEX_LEN);
    cr_assert_eq(strspn(a, "0123456789abcdef"), SECRET_KEY_HEX_LEN);
    cr_assert_str_neq(a, b);
}
