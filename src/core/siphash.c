/*
 * SipHash-2-4, written from the paper's description: four 64-bit words of
 * state, two SipRounds per 8-byte message word, the length in the top byte
 * of the last word, four finalization rounds. Words are read little-endian
 * so the output is the same on every machine (the paper's test vector is in
 * tests/unit/test_lru.c).
 */
#include "core/siphash.h"
#include "core/err.h"

#include <endian.h>
#include <gnutls/crypto.h>
#include <string.h>

static inline uint64_t sip__rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = sip__rotl(v1, 13);                                                                    \
        v1 ^= v0;                                                                                  \
        v0 = sip__rotl(v0, 32);                                                                    \
        v2 += v3;                                                                                  \
        v3 = sip__rotl(v3, 16);                                                                    \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = sip__rotl(v3, 21);                                                                    \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = sip__rotl(v1, 17);                                                                    \
        v1 ^= v2;                                                                                  \
        v2 = sip__rotl(v2, 32);                                                                    \
    } while (0)

uint64_t siphash24(const struct siphash_key *k, const void *data, size_t len)
{
    const unsigned char *p = data;
    const unsigned char *end = p + (len - len % 8);
    uint64_t v0 = k->k0 ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k->k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k->k0 ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k->k1 ^ 0x7465646279746573ULL;

    for (; p != end; p += 8) {
        uint64_t m;
        memcpy(&m, p, sizeof m);
        m = le64toh(m);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    switch (len % 8) { /* the last 0 to 7 bytes, little-endian */
    case 7:
        b |= (uint64_t)p[6] << 48; /* fall through */
    case 6:
        b |= (uint64_t)p[5] << 40; /* fall through */
    case 5:
        b |= (uint64_t)p[4] << 32; /* fall through */
    case 4:
        b |= (uint64_t)p[3] << 24; /* fall through */
    case 3:
        b |= (uint64_t)p[2] << 16; /* fall through */
    case 2:
        b |= (uint64_t)p[1] << 8; /* fall through */
    case 1:
        b |= (uint64_t)p[0];
    }
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

int siphash_key_random(struct siphash_key *k)
{
    unsigned char b[sizeof *k];
    if (gnutls_rnd(GNUTLS_RND_KEY, b, sizeof b) < 0) return IOT_EIO;
    memcpy(k, b, sizeof b);
    return 0;
}
