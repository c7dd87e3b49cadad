/*
 * Token buckets in a chained hash table, threaded on an LRU list.
 *
 * Keys of up to RL_KEY_MAX bytes are stored verbatim. A longer key is stored
 * as its first RL_KEY_PREFIX bytes followed by a 128-bit keyed digest of the
 * whole key, together with its true length; two long keys therefore share a
 * bucket only if they have the same length, the same prefix and the same
 * 128-bit SipHash under a per-limiter random secret, which an attacker cannot
 * arrange. The table hash is SipHash too, so chains stay short even when
 * clients choose their keys (IPv6 addresses).
 *
 * Memory: an index of next_pow2(max_buckets) pointers is allocated up front;
 * buckets are allocated on first use and, once max_buckets exist, the least
 * recently used one is recycled in place (no malloc on the hot path).
 */
#include "core/rate_limit.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/err.h"

#define RL_KEY_MAX    64
#define RL_DIGEST_LEN 16
#define RL_KEY_PREFIX (RL_KEY_MAX - RL_DIGEST_LEN)
#define RL_EPSILON    1e-9 /* fractional costs: a bucket this close to the cost holds it */

struct rl_bucket {
    struct rl_bucket *hnext;   /* hash chain */
    struct rl_bucket **hpprev; /* address of the pointer to this bucket */
    struct rl_bucket *lprev;   /* LRU list, towards most recent */
    struct rl_bucket *lnext;   /* LRU list, towards least recent */
    uint64_t hash;
    size_t keylen; /* true length; > RL_KEY_MAX means key holds prefix + digest */
    double tokens;
    int64_t last_ms;
    unsigned char key[RL_KEY_MAX];
};

struct rate_limiter {
    int disabled; /* rate 0: no table, every take allowed */
    double rate_per_ms;
    double rate;
    double burst;
    size_t max_buckets;
    size_t count;
    size_t mask;
    struct rl_bucket **index;
    struct rl_bucket *lru_head; /* most recently used */
    struct rl_bucket *lru_tail; /* least recently used: next to evict */
    uint64_t seed[6];           /* [0,1] table hash, [2..5] long-key digest */
    pthread_mutex_t lock;
    int lock_ok;
};

/* A key reduced to its stored form, computed before taking the lock. */
struct rl_key {
    uint64_t hash;
    size_t keylen;
    size_t storedlen;
    unsigned char bytes[RL_KEY_MAX];
};

static uint64_t rl__rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t rl__load64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define RL_SIPROUND                                                                                \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rl__rotl(v1, 13);                                                                     \
        v1 ^= v0;                                                                                  \
        v0 = rl__rotl(v0, 32);                                                                     \
        v2 += v3;                                                                                  \
        v3 = rl__rotl(v3, 16);                                                                     \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rl__rotl(v3, 21);                                                                     \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rl__rotl(v1, 17);                                                                     \
        v1 ^= v2;                                                                                  \
        v2 = rl__rotl(v2, 32);                                                                     \
    } while (0)

/* SipHash-2-4 of data under the 128-bit key (k0, k1). */
static uint64_t rl__siphash(uint64_t k0, uint64_t k1, const unsigned char *data, size_t len)
{
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k1 ^ 0x7465646279746573ULL;
    size_t whole = len - len % 8;

    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = rl__load64(data + i);
        v3 ^= m;
        RL_SIPROUND;
        RL_SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)data[whole + i] << (8 * i);
    v3 ^= b;
    RL_SIPROUND;
    RL_SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    RL_SIPROUND;
    RL_SIPROUND;
    RL_SIPROUND;
    RL_SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/*
 * Fills the hash secrets from getrandom(); if the kernel cannot supply them
 * (very early boot, seccomp), falls back to clock and address bits, which
 * still keeps distinct processes from sharing a secret.
 */
static void rl__seed(struct rate_limiter *rl)
{
    if (getrandom(rl->seed, sizeof rl->seed, GRND_NONBLOCK) == (ssize_t)sizeof rl->seed) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^
                 (uint64_t)(uintptr_t)rl ^ (uint64_t)errno;
    for (size_t i = 0; i < sizeof rl->seed / sizeof rl->seed[0]; i++) {
        x += 0x9e3779b97f4a7c15ULL;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        rl->seed[i] = z ^ (z >> 31);
    }
}

int rl_create(double rate, double burst, size_t max_buckets, struct rate_limiter **out)
{
    if (!out) return IOT_EINVAL;
    *out = NULL;
    if (!isfinite(rate) || rate < 0 || !isfinite(burst) || burst < 1 || max_buckets == 0)
        return IOT_EINVAL;

    struct rate_limiter *rl = calloc(1, sizeof *rl);
    if (!rl) return IOT_ENOMEM;
    rl->rate = rate;
    rl->rate_per_ms = rate / 1000.0;
    rl->burst = burst;
    rl->max_buckets = max_buckets;
    if (!(rate > 0)) {
        rl->disabled = 1;
        *out = rl;
        return 0;
    }

    size_t n = 1;
    while (n < max_buckets) {
        if (n > SIZE_MAX / 2 / sizeof *rl->index) {
            rl_destroy(rl);
            return IOT_ENOMEM;
        }
        n <<= 1;
    }
    rl->index = calloc(n, sizeof *rl->index);
    if (!rl->index) {
        rl_destroy(rl);
        return IOT_ENOMEM;
    }
    rl->mask = n - 1;
    if (pthread_mutex_init(&rl->lock, NULL) != 0) {
        rl_destroy(rl);
        return IOT_ENOMEM;
    }
    rl->lock_ok = 1;
    rl__seed(rl);
    *out = rl;
    return 0;
}

void rl_destroy(struct rate_limiter *rl)
{
    if (!rl) return;
    struct rl_bucket *b = rl->lru_head;
    while (b) {
        struct rl_bucket *next = b->lnext;
        free(b);
        b = next;
    }
    free(rl->index);
    if (rl->lock_ok) pthread_mutex_destroy(&rl->lock);
    free(rl);
}

static void rl__key_init(const struct rate_limiter *rl, struct rl_key *k, const void *key,
                         size_t keylen)
{
    const unsigned char *p = key;

    k->keylen = keylen;
    k->hash = rl__siphash(rl->seed[0], rl->seed[1], p, keylen);
    if (keylen <= RL_KEY_MAX) {
        if (keylen) memcpy(k->bytes, p, keylen);
        k->storedlen = keylen;
        return;
    }
    uint64_t d0 = rl__siphash(rl->seed[2], rl->seed[3], p, keylen);
    uint64_t d1 = rl__siphash(rl->seed[4], rl->seed[5], p, keylen);
    memcpy(k->bytes, p, RL_KEY_PREFIX);
    memcpy(k->bytes + RL_KEY_PREFIX, &d0, sizeof d0);
    memcpy(k->bytes + RL_KEY_PREFIX + sizeof d0, &d1, sizeof d1);
    k->storedlen = RL_KEY_MAX;
}

static void rl__lru_unlink(struct rate_limiter *rl, struct rl_bucket *b)
{
    if (b->lprev)
        b->lprev->lnext = b->lnext;
    else
        rl->lru_head = b->lnext;
    if (b->lnext)
        b->lnext->lprev = b->lprev;
    else
        rl->lru_tail = b->lprev;
    b->lprev = b->lnext = NULL;
}

static void rl__lru_push_front(struct rate_limiter *rl, struct rl_bucket *b)
{
    b->lprev = NULL;
    b->lnext = rl->lru_head;
    if (rl->lru_head) rl->lru_head->lprev = b;
    rl->lru_head = b;
    if (!rl->lru_tail) rl->lru_tail = b;
}

static void rl__hash_unlink(struct rl_bucket *b)
{
    *b->hpprev = b->hnext;
    if (b->hnext) b->hnext->hpprev = b->hpprev;
}

static void rl__hash_insert(struct rate_limiter *rl, struct rl_bucket *b)
{
    struct rl_bucket **slot = &rl->index[b->hash & rl->mask];
    b->hnext = *slot;
    if (*slot) (*slot)->hpprev = &b->hnext;
    b->hpprev = slot;
    *slot = b;
}

static struct rl_bucket *rl__lookup(struct rate_limiter *rl, const struct rl_key *k)
{
    for (struct rl_bucket *b = rl->index[k->hash & rl->mask]; b; b = b->hnext) {
        if (b->hash == k->hash && b->keylen == k->keylen &&
            memcmp(b->key, k->bytes, k->storedlen) == 0)
            return b;
    }
    return NULL;
}

/*
 * A bucket for a key not in the table: a fresh allocation while under the
 * cap, otherwise the least recently used bucket, unhooked for reuse. NULL
 * only if the table is empty and malloc fails.
 */
static struct rl_bucket *rl__obtain(struct rate_limiter *rl)
{
    struct rl_bucket *b = NULL;

    if (rl->count < rl->max_buckets) {
        b = malloc(sizeof *b);
        if (b) {
            rl->count++;
            return b;
        }
    }
    b = rl->lru_tail;
    if (b) {
        rl__lru_unlink(rl, b);
        rl__hash_unlink(b);
    }
    return b;
}

/* Whole seconds (>= 1) until tokens reaches cost at the limiter's rate. */
static int rl__retry_after(const struct rate_limiter *rl, double tokens, double cost)
{
    double secs = ceil((cost - tokens) / rl->rate - 1e-9);
    if (!(secs >= 1)) return 1;
    if (secs >= (double)INT_MAX) return INT_MAX;
    return (int)secs;
}

/* b's tokens at now_ms: refilled for the time since last_ms, capped at the burst. */
static double rl__tokens_at(const struct rate_limiter *rl, const struct rl_bucket *b,
                            int64_t now_ms)
{
    double tokens = b->tokens;
    if (now_ms > b->last_ms) tokens += (double)(now_ms - b->last_ms) * rl->rate_per_ms;
    return tokens > rl->burst ? rl->burst : tokens;
}

/*
 * The bucket of k at now_ms, refilled and moved to the front of the LRU list;
 * created with a full bucket if absent. Called with the lock held. A clock
 * that goes backwards (it should not: now_ms is monotonic) adds no tokens and
 * leaves last_ms alone, so time cannot be replayed for a refill. NULL only
 * when memory for a new bucket cannot be had.
 */
static struct rl_bucket *rl__touch(struct rate_limiter *rl, const struct rl_key *k, int64_t now_ms)
{
    struct rl_bucket *b = rl__lookup(rl, k);
    if (b) {
        rl__lru_unlink(rl, b);
        if (now_ms > b->last_ms) {
            b->tokens = rl__tokens_at(rl, b, now_ms);
            b->last_ms = now_ms;
        }
    } else {
        b = rl__obtain(rl);
        if (!b) return NULL;
        b->hash = k->hash;
        b->keylen = k->keylen;
        memcpy(b->key, k->bytes, k->storedlen);
        b->tokens = rl->burst;
        b->last_ms = now_ms;
        rl__hash_insert(rl, b);
    }
    rl__lru_push_front(rl, b);
    return b;
}

int rl_take(struct rate_limiter *rl, const void *key, size_t keylen, int64_t now_ms,
            int *retry_after_s)
{
    return rl_take_cost(rl, key, keylen, 1.0, now_ms, retry_after_s);
}

/*
 * If memory for a new bucket cannot be had, the request is allowed: the
 * limiter errs towards availability, as it does on eviction. A NULL key is
 * the empty key.
 */
int rl_take_cost(struct rate_limiter *rl, const void *key, size_t keylen, double cost,
                 int64_t now_ms, int *retry_after_s)
{
    if (!rl || rl->disabled) return 1;
    if (!key) keylen = 0;
    if (!(cost > 0) || !isfinite(cost)) cost = 1.0;

    struct rl_key k;
    rl__key_init(rl, &k, key, keylen);

    pthread_mutex_lock(&rl->lock);
    struct rl_bucket *b = rl__touch(rl, &k, now_ms);
    int allowed = !b || b->tokens >= cost - RL_EPSILON;
    if (b && allowed)
        b->tokens -= cost;
    else if (b && retry_after_s)
        *retry_after_s = rl__retry_after(rl, b->tokens, cost);
    pthread_mutex_unlock(&rl->lock);
    return allowed;
}

void rl_drain(struct rate_limiter *rl, const void *key, size_t keylen, int64_t now_ms)
{
    if (!rl || rl->disabled) return;
    if (!key) keylen = 0;
    struct rl_key k;
    rl__key_init(rl, &k, key, keylen);
    pthread_mutex_lock(&rl->lock);
    struct rl_bucket *b = rl__touch(rl, &k, now_ms);
    if (b && b->tokens > 0) b->tokens = 0;
    pthread_mutex_unlock(&rl->lock);
}

int rl_peek(struct rate_limiter *rl, const void *key, size_t keylen, int64_t now_ms,
            int *retry_after_s)
{
    if (!rl || rl->disabled) return 1;
    if (!key) keylen = 0;
    struct rl_key k;
    rl__key_init(rl, &k, key, keylen);
    pthread_mutex_lock(&rl->lock);
    struct rl_bucket *b = rl__lookup(rl, &k);
    double tokens = b ? rl__tokens_at(rl, b, now_ms) : rl->burst;
    int allowed = tokens >= 1.0;
    if (!allowed && retry_after_s) *retry_after_s = rl__retry_after(rl, tokens, 1.0);
    pthread_mutex_unlock(&rl->lock);
    return allowed;
}

size_t rl_size(struct rate_limiter *rl)
{
    if (!rl || rl->disabled) return 0;
    pthread_mutex_lock(&rl->lock);
    size_t n = rl->count;
    pthread_mutex_unlock(&rl->lock);
    return n;
}
