/*
 * Chained hash table (singly linked chains, a power-of-two bucket array)
 * plus a doubly linked LRU list through the same nodes. See lru.h.
 */
#include "core/lru.h"
#include "core/err.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define LRU_BUCKETS_LIMIT (SIZE_MAX / 4 / sizeof(struct lru_node *))

/* The smallest power of two >= n (1 for 0), or 0 past LRU_BUCKETS_LIMIT. */
static size_t lru__pow2(size_t n)
{
    size_t p = 1;
    while (p < n) {
        if (p > LRU_BUCKETS_LIMIT / 2) return 0;
        p <<= 1;
    }
    return p;
}

int lru_init(struct lru *t, const struct lru_params *p)
{
    memset(t, 0, sizeof *t);
    size_t n = lru__pow2(p->buckets);
    size_t nmax = lru__pow2(p->buckets_max);
    if ((!p->key && !p->id_offset) || !n || !nmax) return IOT_EINVAL;
    t->buckets = calloc(n, sizeof *t->buckets);
    if (!t->buckets) return IOT_ENOMEM;
    t->mask = n - 1;
    t->buckets_max = nmax > n ? nmax : n;
    t->max = p->max;
    t->key = p->key;
    t->id_offset = p->id_offset;
    if (p->secret_of)
        t->secret = p->secret_of->secret;
    else if (siphash_key_random(&t->secret)) {
        lru_fini(t);
        return IOT_EIO;
    }
    return 0;
}

void lru_fini(struct lru *t)
{
    free(t->buckets);
    t->buckets = NULL;
}

uint64_t lru_hash(const struct lru *t, const void *key, size_t len)
{
    return siphash24(&t->secret, key, len);
}

static uint64_t lru__node_hash(const struct lru *t, const struct lru_node *n)
{
    if (!t->key) return lru_hash_id(t, lru__node_id(t, n));
    size_t len;
    const void *k = t->key(n, &len);
    return lru_hash(t, k, len);
}

struct lru_node *lru_find(const struct lru *t, uint64_t hash, const void *key, size_t len)
{
    assert(t->key); /* a byte-keyed table */
    for (struct lru_node *n = t->buckets[hash & t->mask]; n; n = n->hnext) {
        size_t nlen;
        const void *nk = t->key(n, &nlen);
        if (nlen == len && memcmp(nk, key, len) == 0) return n;
    }
    return NULL;
}

static void lru__list_unlink(struct lru *t, struct lru_node *n)
{
    if (n->newer)
        n->newer->older = n->older;
    else
        t->newest = n->older;
    if (n->older)
        n->older->newer = n->newer;
    else
        t->oldest = n->newer;
    n->newer = n->older = NULL;
}

static void lru__list_push(struct lru *t, struct lru_node *n)
{
    n->newer = NULL;
    n->older = t->newest;
    if (t->newest) t->newest->newer = n;
    t->newest = n;
    if (!t->oldest) t->oldest = n;
}

/* Doubles the bucket array and rechains every node; keeps the old one if memory is short. */
static void lru__grow(struct lru *t)
{
    size_t n = (t->mask + 1) * 2;
    struct lru_node **nb = calloc(n, sizeof *nb);
    if (!nb) return;
    free(t->buckets);
    t->buckets = nb;
    t->mask = n - 1;
    for (struct lru_node *e = t->newest; e; e = e->older) {
        struct lru_node **slot = &nb[lru__node_hash(t, e) & t->mask];
        e->hnext = *slot;
        *slot = e;
    }
}

void lru_insert(struct lru *t, struct lru_node *n, uint64_t hash)
{
    if (t->count > t->mask && t->mask + 1 < t->buckets_max) lru__grow(t);
    struct lru_node **slot = &t->buckets[hash & t->mask];
    n->hnext = *slot;
    *slot = n;
    lru__list_push(t, n);
    t->count++;
}

void lru_remove(struct lru *t, struct lru_node *n)
{
    struct lru_node **pp = &t->buckets[lru__node_hash(t, n) & t->mask];
    while (*pp != n) {
        assert(*pp); /* n is in the table */
        pp = &(*pp)->hnext;
    }
    *pp = n->hnext;
    n->hnext = NULL;
    lru__list_unlink(t, n);
    t->count--;
}

struct lru_node *lru_evict(struct lru *t)
{
    struct lru_node *n = t->oldest;
    if (n) lru_remove(t, n);
    return n;
}

size_t lru_longest_chain(const struct lru *t)
{
    size_t longest = 0;
    for (size_t b = 0; b <= t->mask; b++) {
        size_t len = 0;
        for (const struct lru_node *n = t->buckets[b]; n; n = n->hnext)
            len++;
        if (len > longest) longest = len;
    }
    return longest;
}
