/*
 * The project's one hash function: SipHash-2-4 (Aumasson and Bernstein,
 * "SipHash: a fast short-input PRF", 2012), a 64-bit keyed hash. Under a
 * random secret an attacker who chooses the input (a client address, a
 * device uuid) cannot predict the output, so he cannot make keys collide in
 * a hash table or forge a digest. Used by core/lru (hash tables), the rate
 * limiter's long-key digest and http/conn_count.
 */
#ifndef IOT_SIPHASH_H
#define IOT_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* A 128-bit secret; make one with siphash_key_random(). */
struct siphash_key {
    uint64_t k0, k1;
};

/* SipHash-2-4 of data[0..len) under k. data may be NULL when len is 0. */
uint64_t siphash24(const struct siphash_key *k, const void *data, size_t len);

/*
 * Fills k from GnuTLS's generator (gnutls_rnd, GNUTLS_RND_KEY), the project's
 * one source of secrets (core/secret.c, core/ident.c). 0, or IOT_EIO if it has no bytes
 * to give (no entropy yet): the caller fails rather than use a guessable key.
 */
int siphash_key_random(struct siphash_key *k);

#endif
