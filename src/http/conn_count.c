/*
 * A chained hash table of {key, count}. Entries are allocated when a key takes
 * its first connection and freed when it gives back its last one, so the
 * table holds only addresses that are connected now. The bucket index
 * (next_pow2(max_keys) pointers) is allocated up front.
 *
 * The hash is SipHash-2-4 (core/siphash.h) under a per-table random secret:
 * clients choose their IPv6 keys within their prefix, so the bucket must not
 * be predictable. A chain can only hold keys
 * that are connected, so even a long one costs one short string compare per
 * live address.
 */
#include "http/conn_count.h"
#include "core/err.h"
#include "core/siphash.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CC_KEY_MAX 64

struct conn_count_entry {
    struct conn_count_entry *next;
    uint64_t hash;
    unsigned count;
    char key[CC_KEY_MAX];
};

struct conn_count {
    unsigned limit;
    size_t max_keys, keys, mask;
    struct siphash_key secret;
    struct conn_count_entry **index;
    pthread_mutex_t lock;
};

static uint64_t cc__hash(const struct conn_count *c, const char *key)
{
    return siphash24(&c->secret, key, strlen(key));
}

int conn_count_create(unsigned limit, size_t max_keys, struct conn_count **out)
{
    if (!out) return IOT_EINVAL;
    *out = NULL;
    if (limit < 1 || max_keys < 1 || max_keys > SIZE_MAX / 4) return IOT_EINVAL;
    struct conn_count *c = calloc(1, sizeof *c);
    if (!c) return IOT_ENOMEM;
    size_t n = 1;
    while (n < max_keys)
        n <<= 1;
    c->index = calloc(n, sizeof *c->index);
    int rc = c->index ? siphash_key_random(&c->secret) : IOT_ENOMEM;
    if (rc || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c->index);
        free(c);
        return rc ? rc : IOT_ENOMEM;
    }
    c->limit = limit;
    c->max_keys = max_keys;
    c->mask = n - 1;
    *out = c;
    return 0;
}

void conn_count_destroy(struct conn_count *c)
{
    if (!c) return;
    for (size_t i = 0; i <= c->mask; i++)
        for (struct conn_count_entry *e = c->index[i], *nx; e; e = nx) {
            nx = e->next;
            free(e);
        }
    free(c->index);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* The entry for key, or NULL; *slot is where it is (or would be) chained. Lock held. */
static struct conn_count_entry *cc__find(struct conn_count *c, const char *key, uint64_t h,
                                         struct conn_count_entry ***slot)
{
    struct conn_count_entry **pp = &c->index[h & c->mask];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0) break;
    *slot = pp;
    return *pp;
}

/* Copies key, cut to CC_KEY_MAX - 1 bytes, into k; returns its length. */
static size_t cc__key(const char *key, char k[CC_KEY_MAX])
{
    size_t n = strnlen(key, CC_KEY_MAX - 1);
    memcpy(k, key, n);
    k[n] = 0;
    return n;
}

struct conn_count_entry *conn_count_take(struct conn_count *c, const char *key, int force)
{
    char k[CC_KEY_MAX];
    size_t n = cc__key(key, k);
    uint64_t h = cc__hash(c, k);
    struct conn_count_entry **slot;
    pthread_mutex_lock(&c->lock);
    struct conn_count_entry *e = cc__find(c, k, h, &slot);
    if (e && e->count >= c->limit && !force)
        e = NULL;
    else if (e)
        e->count++;
    else if (c->keys < c->max_keys && (e = calloc(1, sizeof *e))) {
        e->hash = h;
        e->count = 1;
        memcpy(e->key, k, n + 1);
        *slot = e;
        c->keys++;
    }
    pthread_mutex_unlock(&c->lock);
    return e;
}

void conn_count_release(struct conn_count *c, struct conn_count_entry *e)
{
    if (!e) return;
    pthread_mutex_lock(&c->lock);
    if (--e->count == 0) {
        struct conn_count_entry **slot;
        cc__find(c, e->key, e->hash, &slot);
        *slot = e->next;
        c->keys--;
        free(e);
    }
    pthread_mutex_unlock(&c->lock);
}

unsigned conn_count_get(struct conn_count *c, const char *key)
{
    char k[CC_KEY_MAX];
    cc__key(key, k);
    struct conn_count_entry **slot;
    pthread_mutex_lock(&c->lock);
    struct conn_count_entry *e = cc__find(c, k, cc__hash(c, k), &slot);
    unsigned v = e ? e->count : 0;
    pthread_mutex_unlock(&c->lock);
    return v;
}
