/*
 * A bounded hash table in least-recently-used order, written once for every
 * cache and per-key table in the program (core/rate_limit, ingest/resolver,
 * ingest/sensor_state, broker/broker_throttle).
 *
 * Intrusive: the caller embeds a struct lru_node in its own entry, owns the
 * entries (allocates, frees, recycles them) and says where an entry's key is
 * (lru_params). The table links the nodes into hash chains and one LRU
 * list, and never allocates per entry; it allocates only its bucket array
 * (at lru_init, and when a growing table doubles on an insert).
 *
 * The bound: lru_full() says when the table holds max entries; the caller
 * then evicts (lru_evict, or its own walk from lru_oldest when some entries
 * may not go) before it inserts. The table itself refuses nothing.
 *
 * Hashing: byte keys are hashed with SipHash-2-4 (core/siphash.h) under a
 * secret drawn at lru_init for this table alone, so keys that come from the
 * network (addresses, uuids) cannot be chosen to collide: chains stay short
 * whatever the keys. A table keyed by int64 ids that the database assigned
 * (nobody outside chooses them) hashes them with a keyed multiplicative
 * mixer instead, inline, and finds them without a callback: the writer looks
 * up about ten per packet, and SipHash there made sensor_states_load of ten
 * cached sensors cost 1950 instructions instead of 430 (callgrind; 405 with
 * the old private table).
 *
 * Memory per entry: the node, 24 bytes (three pointers; no stored hash: a
 * node's hash is recomputed from its key when it is removed or the table
 * grows), plus the bucket array, one pointer per bucket: next_pow2(max)
 * buckets at most, 8 to 16 bytes per entry of the bound on a 64-bit machine,
 * and only as many as the entries so far need in a growing table.
 *
 * Not thread-safe: the users lock around it as they need. lru_hash only reads
 * the secret, so it may run outside the user's lock.
 */
#ifndef IOT_LRU_H
#define IOT_LRU_H

#include "core/siphash.h"

#include <stddef.h>
#include <stdint.h>

/* Embedded in the caller's entry. Private: use the functions below. */
struct lru_node {
    struct lru_node *hnext;         /* hash chain */
    struct lru_node *newer, *older; /* LRU list */
};

/* The entry of type that embeds node n as member. */
#define LRU_ENTRY(n, type, member) ((type *)(void *)((char *)(n)-offsetof(type, member)))

/* Where node n's key is: its bytes, and their number in *len. */
typedef const void *lru_key_fn(const struct lru_node *n, size_t *len);

/* For lru_params.id_offset: where type's int64_t id is, seen from its node. */
#define LRU_ID_OFFSET(type, node_member, id_member)                                                \
    ((ptrdiff_t)offsetof(type, id_member) - (ptrdiff_t)offsetof(type, node_member))

struct lru_params {
    /*
     * The key: bytes, found by key (SipHash; use lru_hash / lru_find), or,
     * with key NULL, an int64_t id at id_offset from the node (LRU_ID_OFFSET;
     * the integer mixer; use lru_hash_id / lru_find_id).
     */
    lru_key_fn *key;
    ptrdiff_t id_offset;
    size_t max;         /* the bound, for lru_full() */
    size_t buckets;     /* first size of the bucket array (rounded up to a power of two) */
    size_t buckets_max; /* it doubles while it holds as many entries as buckets, up to this */
    /* NULL: a secret of its own; else that table's, so one lru_hash serves both. */
    const struct lru *secret_of;
};

/* Embedded; the fields are private. */
struct lru {
    struct lru_node **buckets;
    size_t mask; /* buckets - 1 */
    size_t buckets_max;
    size_t count, max;
    struct lru_node *newest, *oldest;
    lru_key_fn *key; /* NULL: id keys at id_offset */
    ptrdiff_t id_offset;
    struct siphash_key secret;
};

/*
 * An empty table with a fresh random secret. Returns 0, IOT_EINVAL (no key
 * function, a bucket count too large to allocate), IOT_ENOMEM or IOT_EIO (no
 * random bytes for the secret).
 */
int lru_init(struct lru *t, const struct lru_params *p);
/* Frees the bucket array; the entries are the caller's. Accepts a zeroed or failed table. */
void lru_fini(struct lru *t);

/* The hash of a byte key, for lru_find and lru_insert. Reads only the secret. */
uint64_t lru_hash(const struct lru *t, const void *key, size_t len);

/* The node holding a byte key (hash = lru_hash of it), or NULL. Leaves the order alone. */
struct lru_node *lru_find(const struct lru *t, uint64_t hash, const void *key, size_t len);

/*
 * The hash of an id, for lru_find_id and lru_insert: the id xor half the
 * secret, times 2^64 / golden ratio (Fibonacci hashing), the high half folded
 * onto the low bits that pick the bucket. Sequential and strided ids spread
 * evenly (test_lru), and an id's bucket differs from table to table. Not a
 * defence against chosen keys: only for ids the program assigns. Reads only
 * the secret.
 */
static inline uint64_t lru_hash_id(const struct lru *t, int64_t id)
{
    uint64_t x = ((uint64_t)id ^ t->secret.k0) * 0x9e3779b97f4a7c15ULL;
    return x ^ (x >> 32);
}

static inline int64_t lru__node_id(const struct lru *t, const struct lru_node *n)
{
    return *(const int64_t *)(const void *)((const char *)n + t->id_offset);
}

/* The node holding id (hash = lru_hash_id of it), or NULL. Leaves the order alone. */
static inline struct lru_node *lru_find_id(const struct lru *t, uint64_t hash, int64_t id)
{
    struct lru_node *n = t->buckets[hash & t->mask];
    while (n && lru__node_id(t, n) != id)
        n = n->hnext;
    return n;
}

/*
 * Adds n (not in the table; its key, whose hash is hash, not in the table
 * either) as the most recently used. May double the bucket array; if that
 * allocation fails the table keeps its array (chains get longer).
 */
void lru_insert(struct lru *t, struct lru_node *n, uint64_t hash);

/* Makes n, which is in the table, the most recently used. */
static inline void lru_touch(struct lru *t, struct lru_node *n)
{
    if (t->newest == n) return;
    n->newer->older = n->older; /* n is not the newest: it has a newer one */
    if (n->older)
        n->older->newer = n->newer;
    else
        t->oldest = n->newer;
    n->newer = NULL;
    n->older = t->newest;
    t->newest->newer = n;
    t->newest = n;
}

/* Takes n, which is in the table, out of it. */
void lru_remove(struct lru *t, struct lru_node *n);

/* Takes the least recently used node out and returns it; NULL when empty. */
struct lru_node *lru_evict(struct lru *t);

/* The length of the longest hash chain (for tests and diagnostics; O(buckets)). */
size_t lru_longest_chain(const struct lru *t);

static inline size_t lru_count(const struct lru *t)
{
    return t->count;
}

/* Whether the table holds max entries (or more: a caller may overfill it). */
static inline int lru_full(const struct lru *t)
{
    return t->count >= t->max;
}

/* The ends of the LRU list and the steps along it (NULL past an end). */
static inline struct lru_node *lru_oldest(const struct lru *t)
{
    return t->oldest;
}

static inline struct lru_node *lru_newest(const struct lru *t)
{
    return t->newest;
}

static inline struct lru_node *lru_newer(const struct lru_node *n)
{
    return n->newer;
}

static inline struct lru_node *lru_older(const struct lru_node *n)
{
    return n->older;
}

#endif
