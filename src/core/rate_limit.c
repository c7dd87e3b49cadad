/*
 * Token buckets in a core/lru table (SipHash under the table's own random
 * secret, so chains stay short even when clients choose their keys: IPv6
 * addresses).
 *
 * Keys of up to RL_KEY_MAX bytes are stored verbatim. A longer key is stored
 * as its first RL_KEY_PREFIX bytes, a 128-bit keyed digest of the whole key
 * (two SipHashes under two more per-limiter random secrets) and one marker
 * byte, RL_KEY_MAX + 1 bytes that no short key has; two long keys therefore
 * share a bucket only if they have the same prefix and the same 128-bit
 * digest, which an attacker who does not know the secrets cannot arrange.
 *
 * Memory: the table's bucket array, next_pow2(max_buckets) pointers, is
 * allocated up front; buckets (112 bytes) are allocated on first use and,
 * once max_buckets exist, the least recently used one is recycled in place
 * (no malloc on the hot path).
 */
#include "core/rate_limit.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/lru.h"
#include "core/siphash.h"

#define RL_KEY_MAX    64
#define RL_DIGEST_LEN 16
#define RL_KEY_PREFIX (RL_KEY_MAX - RL_DIGEST_LEN)
#define RL_KEY_LONG   (RL_KEY_MAX + 1) /* stored length of a long key: prefix, digest, marker */
#define RL_EPSILON    1e-9 /* fractional costs: a bucket this close to the cost holds it */

struct rl_bucket {
    struct lru_node node;
    double tokens;
    int64_t last_ms;
    unsigned char keylen; /* stored length: <= RL_KEY_MAX, or RL_KEY_LONG */
    unsigned char key[RL_KEY_LONG];
};

struct rate_limiter {
    int disabled; /* rate 0: no table, every take allowed */
    double rate_per_ms;
    double rate;
    double burst;
    struct lru table; /* of rl_bucket */
    int table_ok;
    struct siphash_key digest[2]; /* the long-key digest */
    pthread_mutex_t lock;
    int lock_ok;
};

/* A key reduced to its stored form, computed before taking the lock. */
struct rl_key {
    uint64_t hash;
    size_t len;
    unsigned char bytes[RL_KEY_LONG];
};

static const void *rl__bucket_key(const struct lru_node *n, size_t *len)
{
    const struct rl_bucket *b = LRU_ENTRY(n, const struct rl_bucket, node);
    *len = b->keylen;
    return b->key;
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
    if (!(rate > 0)) {
        rl->disabled = 1;
        *out = rl;
        return 0;
    }

    /* The bucket array starts small and doubles with the keys actually seen. */
    struct lru_params p = {.key = rl__bucket_key,
                           .max = max_buckets,
                           .buckets = max_buckets < 64 ? max_buckets : 64,
                           .buckets_max = max_buckets};
    int rc = lru_init(&rl->table, &p);
    if (rc) {
        rl_destroy(rl);
        return rc;
    }
    rl->table_ok = 1;
    if (pthread_mutex_init(&rl->lock, NULL) != 0) {
        rl_destroy(rl);
        return IOT_ENOMEM;
    }
    rl->lock_ok = 1;
    if (siphash_key_random(&rl->digest[0]) || siphash_key_random(&rl->digest[1])) {
        rl_destroy(rl);
        return IOT_EIO;
    }
    *out = rl;
    return 0;
}

void rl_destroy(struct rate_limiter *rl)
{
    if (!rl) return;
    if (rl->table_ok) {
        struct lru_node *n;
        while ((n = lru_evict(&rl->table)))
            free(LRU_ENTRY(n, struct rl_bucket, node));
        lru_fini(&rl->table);
    }
    if (rl->lock_ok) pthread_mutex_destroy(&rl->lock);
    free(rl);
}

static void rl__key_init(const struct rate_limiter *rl, struct rl_key *k, const void *key,
                         size_t keylen)
{
    const unsigned char *p = key;

    if (keylen <= RL_KEY_MAX) {
        if (keylen) memcpy(k->bytes, p, keylen);
        k->len = keylen;
    } else {
        uint64_t d0 = siphash24(&rl->digest[0], p, keylen);
        uint64_t d1 = siphash24(&rl->digest[1], p, keylen);
        memcpy(k->bytes, p, RL_KEY_PREFIX);
        memcpy(k->bytes + RL_KEY_PREFIX, &d0, sizeof d0);
        memcpy(k->bytes + RL_KEY_PREFIX + sizeof d0, &d1, sizeof d1);
        k->bytes[RL_KEY_MAX] = 0;
        k->len = RL_KEY_LONG;
    }
    k->hash = lru_hash(&rl->table, k->bytes, k->len);
}

static struct rl_bucket *rl__lookup(struct rate_limiter *rl, const struct rl_key *k)
{
    struct lru_node *n = lru_find(&rl->table, k->hash, k->bytes, k->len);
    return n ? LRU_ENTRY(n, struct rl_bucket, node) : NULL;
}

/*
 * A bucket for a key not in the table: a fresh allocation while under the
 * cap, otherwise the least recently used bucket, taken out for reuse. NULL
 * only if the table is empty and malloc fails.
 */
static struct rl_bucket *rl__obtain(struct rate_limiter *rl)
{
    if (!lru_full(&rl->table)) {
        struct rl_bucket *b = malloc(sizeof *b);
        if (b) return b;
    }
    struct lru_node *n = lru_evict(&rl->table);
    return n ? LRU_ENTRY(n, struct rl_bucket, node) : NULL;
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
        lru_touch(&rl->table, &b->node);
        if (now_ms > b->last_ms) {
            b->tokens = rl__tokens_at(rl, b, now_ms);
            b->last_ms = now_ms;
        }
        return b;
    }
    b = rl__obtain(rl);
    if (!b) return NULL;
    b->keylen = (unsigned char)k->len;
    memcpy(b->key, k->bytes, k->len);
    b->tokens = rl->burst;
    b->last_ms = now_ms;
    lru_insert(&rl->table, &b->node, k->hash);
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
    size_t n = lru_count(&rl->table);
    pthread_mutex_unlock(&rl->lock);
    return n;
}
