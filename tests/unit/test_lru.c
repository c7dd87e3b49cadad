/*
 * core/lru, the one bounded LRU hash table, and core/siphash, the one hash:
 * the paper's test vectors, lookup / insert / touch / remove, eviction
 * order, the bound as its users keep it, growth, and keys chosen to collide.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/lru.h"
#include "core/siphash.h"

/* A string-keyed entry (like the resolver's and the rate limiter's). */
struct sent {
    struct lru_node node;
    char key[48];
};

static const void *sent_key(const struct lru_node *n, size_t *len)
{
    const struct sent *e = LRU_ENTRY(n, const struct sent, node);
    *len = strlen(e->key);
    return e->key;
}

/* An id-keyed entry (like sensor_state's and the throttle's). */
struct ient {
    int64_t id;           /* before the node: a negative id_offset */
    struct lru_node node; /* not first: LRU_ENTRY must subtract the offset */
};

static void init_str(struct lru *t, size_t max, size_t buckets, size_t buckets_max)
{
    struct lru_params p = {
        .key = sent_key, .max = max, .buckets = buckets, .buckets_max = buckets_max};
    cr_assert_eq(lru_init(t, &p), 0);
}

static void init_id(struct lru *t, size_t max, size_t buckets, size_t buckets_max)
{
    struct lru_params p = {.id_offset = LRU_ID_OFFSET(struct ient, node, id),
                           .max = max,
                           .buckets = buckets,
                           .buckets_max = buckets_max};
    cr_assert_eq(lru_init(t, &p), 0);
}

static struct sent *find_str(struct lru *t, const char *key)
{
    size_t n = strlen(key);
    struct lru_node *node = lru_find(t, lru_hash(t, key, n), key, n);
    return node ? LRU_ENTRY(node, struct sent, node) : NULL;
}

static void insert_str(struct lru *t, struct sent *e, const char *key)
{
    snprintf(e->key, sizeof e->key, "%s", key);
    lru_insert(t, &e->node, lru_hash(t, key, strlen(key)));
}

static struct ient *find_id(struct lru *t, int64_t id)
{
    struct lru_node *node = lru_find_id(t, lru_hash_id(t, id), id);
    return node ? LRU_ENTRY(node, struct ient, node) : NULL;
}

static void insert_id(struct lru *t, struct ient *e, int64_t id)
{
    e->id = id;
    lru_insert(t, &e->node, lru_hash_id(t, id));
}

/* The keys from the newest to the oldest, joined by spaces. */
static const char *order(const struct lru *t)
{
    static char buf[256];
    size_t len = 0;
    buf[0] = 0;
    for (struct lru_node *n = lru_newest(t); n; n = lru_older(n))
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", len ? " " : "",
                                LRU_ENTRY(n, struct sent, node)->key);
    return buf;
}

/* SipHash paper, appendix A; the reference code's vectors for 0 and 8 bytes. */
Test(siphash, matches_the_reference_vectors)
{
    struct siphash_key k = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
    unsigned char msg[15];
    for (int i = 0; i < 15; i++)
        msg[i] = (unsigned char)i;
    cr_expect_eq(siphash24(&k, msg, 15), 0xa129ca6149be45e5ULL);
    cr_expect_eq(siphash24(&k, NULL, 0), 0x726fdb47dd0e0e31ULL);
    cr_expect_eq(siphash24(&k, msg, 8), 0x93f5f5799a932462ULL);
}

Test(siphash, random_keys_differ)
{
    struct siphash_key a, b;
    cr_assert_eq(siphash_key_random(&a), 0);
    cr_assert_eq(siphash_key_random(&b), 0);
    cr_expect(a.k0 != b.k0 || a.k1 != b.k1);
}

Test(lru, init_rejects_a_missing_key_function_and_fini_accepts_a_zeroed_table)
{
    struct lru t;
    struct lru_params p = {.max = 4, .buckets = 4};
    cr_expect_eq(lru_init(&t, &p), IOT_EINVAL);
    lru_fini(&t);
    struct lru z;
    memset(&z, 0, sizeof z);
    lru_fini(&z);
    p.key = sent_key;
    p.buckets = SIZE_MAX;
    cr_expect_eq(lru_init(&t, &p), IOT_EINVAL, "a bucket array that cannot be allocated");
    lru_fini(&t);
}

Test(lru, insert_find_touch_remove)
{
    struct lru t;
    struct sent e[3];
    init_str(&t, 8, 8, 8);
    cr_expect_null(find_str(&t, "a"));
    insert_str(&t, &e[0], "a");
    insert_str(&t, &e[1], "b");
    insert_str(&t, &e[2], "c");
    cr_expect_eq(lru_count(&t), 3);
    cr_expect_eq(find_str(&t, "a"), &e[0]);
    cr_expect_eq(find_str(&t, "b"), &e[1]);
    cr_expect_null(find_str(&t, "ab"), "a key is all its bytes");
    cr_expect_null(find_str(&t, ""));
    cr_expect_str_eq(order(&t), "c b a", "lru_find leaves the order alone");

    lru_touch(&t, &e[0].node);
    cr_expect_str_eq(order(&t), "a c b");
    lru_touch(&t, &e[0].node);
    cr_expect_str_eq(order(&t), "a c b", "touching the newest changes nothing");
    lru_touch(&t, &e[2].node);
    cr_expect_str_eq(order(&t), "c a b");

    lru_remove(&t, &e[0].node);
    cr_expect_null(find_str(&t, "a"));
    cr_expect_eq(lru_count(&t), 2);
    cr_expect_str_eq(order(&t), "c b");
    cr_expect_eq(lru_oldest(&t), &e[1].node);
    cr_expect_eq(lru_newer(&e[1].node), &e[2].node);

    insert_str(&t, &e[0], "a"); /* a removed node may come back */
    cr_expect_eq(find_str(&t, "a"), &e[0]);
    cr_expect_str_eq(order(&t), "a c b");
    lru_fini(&t);
}

Test(lru, evicts_least_recently_used_first)
{
    struct lru t;
    struct sent e[4];
    init_str(&t, 4, 4, 4);
    const char *keys[] = {"k1", "k2", "k3", "k4"};
    for (int i = 0; i < 4; i++) {
        cr_expect_not(lru_full(&t));
        insert_str(&t, &e[i], keys[i]);
    }
    cr_expect(lru_full(&t));
    lru_touch(&t, &e[0].node); /* k1 used again: k2 is now the oldest */
    cr_expect_eq(lru_evict(&t), &e[1].node);
    cr_expect_not(lru_full(&t));
    cr_expect_null(find_str(&t, "k2"), "an evicted key is gone from the hash too");
    cr_expect_eq(lru_evict(&t), &e[2].node);
    cr_expect_eq(lru_evict(&t), &e[3].node);
    cr_expect_eq(lru_evict(&t), &e[0].node);
    cr_expect_null(lru_evict(&t));
    cr_expect_eq(lru_count(&t), 0);
    cr_expect_null(lru_oldest(&t));
    cr_expect_null(lru_newest(&t));
    lru_fini(&t);
}

/*
 * The bound as every user keeps it (evict while full, then insert, recycling
 * the evicted entry): never more than max, and the max most recent remain.
 */
Test(lru, the_bound_holds_and_keeps_the_most_recent)
{
    enum { MAX = 16, KEYS = 1000 };
    struct lru t;
    struct ient pool[MAX];
    size_t used = 0;
    init_id(&t, MAX, MAX, MAX);
    for (int64_t id = 0; id < KEYS; id++) {
        struct ient *e = find_id(&t, id % 7 == 0 ? 0 : id); /* id 0 stays in use */
        if (e) {
            lru_touch(&t, &e->node);
            continue;
        }
        if (lru_full(&t))
            e = LRU_ENTRY(lru_evict(&t), struct ient, node);
        else
            e = &pool[used++];
        insert_id(&t, e, id);
        cr_assert_leq(lru_count(&t), MAX);
    }
    cr_expect_eq(lru_count(&t), MAX);
    cr_expect_not_null(find_id(&t, 0), "a key in constant use is never evicted");
    cr_expect_not_null(find_id(&t, KEYS - 1));
    cr_expect_null(find_id(&t, 1));
    int present = 0;
    for (int64_t id = KEYS - 40; id < KEYS; id++)
        present += find_id(&t, id) != NULL;
    cr_expect_eq(present, MAX - 1, "the newest keys other than 0");
    lru_fini(&t);
}

/* A growing table doubles from 4 buckets as entries come and still finds them all. */
Test(lru, grows_and_finds_every_entry)
{
    enum { N = 5000 };
    struct lru t;
    static struct ient e[N];
    init_id(&t, N, 4, 1 << 20);
    for (int i = 0; i < N; i++)
        insert_id(&t, &e[i], 1000 + i);
    cr_expect_eq(t.mask + 1, 8192, "doubled while entries >= buckets, not past that");
    for (int i = 0; i < N; i++)
        cr_assert_eq(find_id(&t, 1000 + i), &e[i]);
    cr_expect_leq(lru_longest_chain(&t), 16);
    for (int i = 0; i < N; i += 2)
        lru_remove(&t, &e[i].node);
    for (int i = 0; i < N; i++)
        cr_assert_eq(find_id(&t, 1000 + i), i % 2 ? &e[i] : NULL);

    struct lru capped;
    static struct ient f[N];
    init_id(&capped, N, 4, 64);
    for (int i = 0; i < N; i++)
        insert_id(&capped, &f[i], i);
    cr_expect_eq(capped.mask + 1, 64, "never past buckets_max");
    cr_expect_eq(find_id(&capped, N - 1), &f[N - 1]);
    lru_fini(&capped);
    lru_fini(&t);
}

/*
 * Hostile keys. An attacker who knew the hash (here: SipHash under a fixed,
 * public secret) could send keys that all fall in one bucket, and every
 * lookup would walk all of them. The table draws its own secret, so the same
 * keys spread out. Likewise ids in steps of the bucket count (the worst case
 * for a plain masked id) and sequential addresses.
 */
Test(lru, keys_colliding_under_a_known_secret_spread_out)
{
    enum { BUCKETS = 1024, N = 512 };
    static const struct siphash_key known = {1, 2};
    static struct sent e[N];
    struct lru t;
    init_str(&t, N, BUCKETS, BUCKETS);
    char key[48];
    int n = 0;
    for (unsigned i = 0; n < N; i++) {
        int len = snprintf(key, sizeof key, "2001:db8::%x", i);
        if ((siphash24(&known, key, (size_t)len) & (BUCKETS - 1)) != 0) continue;
        insert_str(&t, &e[n++], key);
    }
    cr_expect_leq(lru_longest_chain(&t), 8, "all %d would share one chain under the known secret",
                  N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(find_str(&t, e[i].key), &e[i]);
    lru_fini(&t);
}

Test(lru, sequential_and_strided_keys_keep_chains_short)
{
    enum { BUCKETS = 4096, N = 4096 };
    static struct ient ids[N];
    static struct sent addrs[N];
    struct lru ti, ts;
    init_id(&ti, N, BUCKETS, BUCKETS);
    init_str(&ts, N, BUCKETS, BUCKETS);
    for (int i = 0; i < N; i++) {
        insert_id(&ti, &ids[i], (int64_t)i * BUCKETS);
        char key[48];
        snprintf(key, sizeof key, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        insert_str(&ts, &addrs[i], key);
    }
    cr_expect_leq(lru_longest_chain(&ti), 12);
    cr_expect_leq(lru_longest_chain(&ts), 12);

    /* Each table has its own secret: the same key hashes differently. */
    struct lru other_i, other_s;
    init_id(&other_i, N, BUCKETS, BUCKETS);
    init_str(&other_s, N, BUCKETS, BUCKETS);
    int64_t id = 42;
    cr_expect_neq(lru_hash_id(&ti, id), lru_hash_id(&other_i, id));
    cr_expect_neq(lru_hash(&ts, "10.0.0.1", 8), lru_hash(&other_s, "10.0.0.1", 8));
    lru_fini(&other_i);
    lru_fini(&other_s);
    lru_fini(&ti);
    lru_fini(&ts);
}
