/*
 * Two core/lru tables, each with its own bound: devices (a loaded
 * device_ref, handed out with a reference) and negative entries (a uuid the
 * database did not know: answered IOT_ENOTFOUND without a query until it
 * expires; never handed out). A uuid is in at most one of them. A load that
 * finds the device replaces a negative entry at once; one that does not
 * replaces a device entry (a device that is gone must not live on in the
 * cache). Uuids come from the network: the tables hash them with SipHash
 * under their own random secrets.
 */
#include "ingest/resolver.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/lru.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct device_ref ref; /* first: a device_ref* is an entry*; negative: only dev.uuid */
    int64_t expires;       /* monotonic ms */
    int refs;              /* holders, plus 1 while in the table */
    int negative;          /* the device is not in the database */
    struct lru_node node;
};

struct resolver {
    struct store_shared *db;
    int64_t ttl_ms, neg_ttl_ms;
    struct lru devices, negatives;
    pthread_mutex_t mu;
    struct resolver_stats stats;
};

/* A uuid to look up, hashed (outside the lock) for both tables: they share a secret. */
struct uuid_key {
    const char *s;
    size_t len;
    uint64_t hash;
};

static const void *entry_key(const struct lru_node *n, size_t *len)
{
    const struct entry *e = LRU_ENTRY(n, const struct entry, node);
    *len = strlen(e->ref.dev.uuid);
    return e->ref.dev.uuid;
}

/*
 * The devices' bucket array starts at 256 buckets and doubles with the
 * devices actually cached, up to a power of two >= max_devices (at most
 * 2^22): 8 bytes per bucket, not 1 MiB up front for the default
 * SENSOR_CACHE_MAX. The negatives' starts at 16 and grows likewise, up to a
 * quarter of the devices' (their bound is a quarter of max_devices).
 */
int resolver_create(struct store_shared *db, int64_t ttl_ms, int64_t neg_ttl_ms, size_t max_devices,
                    struct resolver **out)
{
    struct resolver *r = calloc(1, sizeof *r);
    if (!r) return IOT_ENOMEM;
    r->db = db;
    r->ttl_ms = ttl_ms;
    r->neg_ttl_ms = neg_ttl_ms < ttl_ms ? neg_ttl_ms : ttl_ms;
    size_t nbuckets = 256;
    while (nbuckets < max_devices && nbuckets < ((size_t)1 << 22))
        nbuckets <<= 1;
    size_t max_neg = max_devices / 4 > 16 ? max_devices / 4 : 16;
    struct lru_params dev = {
        .key = entry_key, .max = max_devices, .buckets = 256, .buckets_max = nbuckets};
    struct lru_params neg = {.key = entry_key,
                             .max = max_neg,
                             .buckets = 16,
                             .buckets_max = nbuckets / 4,
                             .secret_of = &r->devices};
    if (lru_init(&r->devices, &dev) || lru_init(&r->negatives, &neg)) {
        lru_fini(&r->devices);
        lru_fini(&r->negatives);
        free(r);
        return IOT_ENOMEM;
    }
    pthread_mutex_init(&r->mu, NULL);
    *out = r;
    return 0;
}

static void entry_unref(struct entry *e)
{
    if (--e->refs == 0) {
        free(e->ref.sensors);
        free(e);
    }
}

static struct lru *table_of(struct resolver *r, const struct entry *e)
{
    return e->negative ? &r->negatives : &r->devices;
}

/* Removes e from its table (holders keep it alive until they release). */
static void table_remove(struct resolver *r, struct entry *e)
{
    lru_remove(table_of(r, e), &e->node);
    entry_unref(e);
}

/*
 * Puts e (its refs already count the table) in its table, first evicting the
 * least recently used entries of e's kind while that kind is at its bound.
 */
static void table_insert(struct resolver *r, const struct uuid_key *k, struct entry *e)
{
    struct lru *t = table_of(r, e);
    struct lru_node *victim;
    while (lru_full(t) && (victim = lru_evict(t)))
        entry_unref(LRU_ENTRY(victim, struct entry, node));
    lru_insert(t, &e->node, k->hash);
}

/* The entry of k, in either table, or NULL. */
static struct entry *table_find(struct resolver *r, const struct uuid_key *k)
{
    struct lru_node *n = lru_find(&r->devices, k->hash, k->s, k->len);
    if (!n) n = lru_find(&r->negatives, k->hash, k->s, k->len);
    return n ? LRU_ENTRY(n, struct entry, node) : NULL;
}

/*
 * Remembers that uuid is not in the database, until now + the negative TTL
 * (now: taken before the query, so a device added after it is seen by then).
 * Not when negative caching is off, the uuid would not fit, or memory is short.
 */
static void negative_insert(struct resolver *r, const struct uuid_key *k, int64_t now)
{
    if (r->neg_ttl_ms <= 0 || k->len > STORE_UUID_MAX) return;
    struct entry *e = calloc(1, sizeof *e);
    if (!e) return;
    memcpy(e->ref.dev.uuid, k->s, k->len + 1);
    e->negative = 1;
    e->refs = 1;
    e->expires = now + r->neg_ttl_ms;
    table_insert(r, k, e);
}

static void table_drain(struct lru *t)
{
    struct lru_node *n;
    while ((n = lru_evict(t)))
        entry_unref(LRU_ENTRY(n, struct entry, node));
}

void resolver_destroy(struct resolver *r)
{
    if (!r) return;
    table_drain(&r->devices);
    table_drain(&r->negatives);
    lru_fini(&r->devices);
    lru_fini(&r->negatives);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Loads a device and its sensors from the database (outside the cache lock). */
static int load(struct resolver *r, const char *uuid, struct entry **out)
{
    struct entry *e = calloc(1, sizeof *e);
    if (!e) return IOT_ENOMEM;
    struct store *s = store_shared_acquire(r->db);
    int rc = store_device_get(s, uuid, &e->ref.dev);
    if (!rc) rc = store_device_sensors(s, e->ref.dev.id, &e->ref.sensors, &e->ref.nsensors);
    store_shared_release(r->db);
    if (rc) {
        free(e);
        return rc;
    }
    *out = e;
    return 0;
}

int resolver_get(struct resolver *r, const char *uuid, const struct device_ref **out)
{
    int64_t now = clock_mono_ms();
    struct uuid_key k = {.s = uuid, .len = strlen(uuid)};
    k.hash = lru_hash(&r->devices, k.s, k.len);
    *out = NULL;
    pthread_mutex_lock(&r->mu);
    struct entry *e = table_find(r, &k);
    if (e && e->expires > now) {
        lru_touch(table_of(r, e), &e->node);
        if (e->negative) {
            r->stats.negative_hits++;
            pthread_mutex_unlock(&r->mu);
            return IOT_ENOTFOUND;
        }
        e->refs++;
        r->stats.hits++;
        pthread_mutex_unlock(&r->mu);
        *out = &e->ref;
        return 0;
    }
    r->stats.misses++;
    pthread_mutex_unlock(&r->mu);

    struct entry *fresh = NULL;
    int rc = load(r, uuid, &fresh);
    pthread_mutex_lock(&r->mu);
    e = table_find(r, &k);
    if (rc) {
        /* A device that is gone (or unreadable) must not live on in the cache. */
        if (rc == IOT_ENOTFOUND) {
            if (e) table_remove(r, e);
            negative_insert(r, &k, now);
        }
        pthread_mutex_unlock(&r->mu);
        return rc;
    }
    if (e) table_remove(r, e);
    fresh->expires = now + r->ttl_ms;
    fresh->refs = 2; /* the table and the caller */
    table_insert(r, &k, fresh);
    pthread_mutex_unlock(&r->mu);
    *out = &fresh->ref;
    return 0;
}

void resolver_release(struct resolver *r, const struct device_ref *ref)
{
    if (!ref) return;
    pthread_mutex_lock(&r->mu);
    entry_unref((struct entry *)ref);
    pthread_mutex_unlock(&r->mu);
}

static int cmp_uuid(const void *key, const void *elem)
{
    return strcmp(key, ((const struct store_sensor *)elem)->uuid);
}

const struct store_sensor *device_ref_sensor(const struct device_ref *ref, const char *sensor_uuid)
{
    if (!ref->nsensors) return NULL;
    return bsearch(sensor_uuid, ref->sensors, ref->nsensors, sizeof *ref->sensors, cmp_uuid);
}

void resolver_get_stats(struct resolver *r, struct resolver_stats *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->stats;
    out->entries = lru_count(&r->devices);
    out->negatives = lru_count(&r->negatives);
    pthread_mutex_unlock(&r->mu);
}
