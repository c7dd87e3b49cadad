/*
 * One hash table holds two kinds of entry, each on its own LRU list with its
 * own bound: devices (a loaded device_ref, handed out with a reference) and
 * negative entries (a uuid the database did not know: answered IOT_ENOTFOUND
 * without a query until it expires; never handed out). A load that finds the
 * device replaces a negative entry at once; one that does not replaces a
 * device entry (a device that is gone must not live on in the cache).
 */
#include "ingest/resolver.h"
#include "core/clock.h"
#include "core/err.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct device_ref ref; /* first: a device_ref* is an entry*; negative: only dev.uuid */
    int64_t expires;       /* monotonic ms */
    int refs;              /* holders, plus 1 while in the table */
    int negative;          /* the device is not in the database */
    struct entry *hnext, *lprev, *lnext;
};

/* Least recently used last. */
struct lru {
    struct entry *head, *tail;
    size_t count, max;
};

struct resolver {
    struct store_shared *db;
    int64_t ttl_ms, neg_ttl_ms;
    size_t nbuckets;
    struct entry **buckets;
    struct lru devices, negatives;
    pthread_mutex_t mu;
    struct resolver_stats stats;
};

static size_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

int resolver_create(struct store_shared *db, int64_t ttl_ms, int64_t neg_ttl_ms, size_t max_devices,
                    struct resolver **out)
{
    struct resolver *r = calloc(1, sizeof *r);
    if (!r) return IOT_ENOMEM;
    r->db = db;
    r->ttl_ms = ttl_ms;
    r->neg_ttl_ms = neg_ttl_ms < ttl_ms ? neg_ttl_ms : ttl_ms;
    r->devices.max = max_devices;
    r->negatives.max = max_devices / 4 > 16 ? max_devices / 4 : 16;
    r->nbuckets = 256;
    while (r->nbuckets < max_devices && r->nbuckets < ((size_t)1 << 22))
        r->nbuckets <<= 1;
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    if (!r->buckets) {
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

static struct lru *lru_of(struct resolver *r, const struct entry *e)
{
    return e->negative ? &r->negatives : &r->devices;
}

static void lru_unlink(struct lru *l, struct entry *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        l->head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        l->tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_front(struct lru *l, struct entry *e)
{
    e->lnext = l->head;
    if (l->head) l->head->lprev = e;
    l->head = e;
    if (!l->tail) l->tail = e;
}

/* Removes e from the table (holders keep it alive until they release). */
static void table_remove(struct resolver *r, struct entry *e)
{
    struct entry **pp = &r->buckets[hash_str(e->ref.dev.uuid) & (r->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(lru_of(r, e), e);
    lru_of(r, e)->count--;
    entry_unref(e);
}

/*
 * Puts e (its refs already count the table) in bucket b, first evicting the
 * least recently used entries of e's kind while that kind is at its bound.
 */
static void table_insert(struct resolver *r, size_t b, struct entry *e)
{
    struct lru *l = lru_of(r, e);
    while (l->count >= l->max && l->tail) {
        struct entry *victim = l->tail;
        table_remove(r, victim);   /* unlinks it, then may free it */
        assert(l->tail != victim); /* so the loop never reads freed memory */
    }
    e->hnext = r->buckets[b];
    r->buckets[b] = e;
    lru_front(l, e);
    l->count++;
}

static struct entry *table_find(struct resolver *r, size_t b, const char *uuid)
{
    struct entry *e = r->buckets[b];
    while (e && strcmp(e->ref.dev.uuid, uuid) != 0)
        e = e->hnext;
    return e;
}

/*
 * Remembers that uuid is not in the database, until now + the negative TTL
 * (now: taken before the query, so a device added after it is seen by then).
 * Not when negative caching is off, the uuid would not fit, or memory is short.
 */
static void negative_insert(struct resolver *r, size_t b, const char *uuid, int64_t now)
{
    size_t n = strlen(uuid);
    if (r->neg_ttl_ms <= 0 || n > STORE_UUID_MAX) return;
    struct entry *e = calloc(1, sizeof *e);
    if (!e) return;
    memcpy(e->ref.dev.uuid, uuid, n + 1);
    e->negative = 1;
    e->refs = 1;
    e->expires = now + r->neg_ttl_ms;
    table_insert(r, b, e);
}

void resolver_destroy(struct resolver *r)
{
    if (!r) return;
    while (r->devices.head)
        table_remove(r, r->devices.head);
    while (r->negatives.head)
        table_remove(r, r->negatives.head);
    free(r->buckets);
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
    size_t b = hash_str(uuid) & (r->nbuckets - 1);
    *out = NULL;
    pthread_mutex_lock(&r->mu);
    struct entry *e = table_find(r, b, uuid);
    if (e && e->expires > now) {
        lru_unlink(lru_of(r, e), e);
        lru_front(lru_of(r, e), e);
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
    e = table_find(r, b, uuid);
    if (rc) {
        /* A device that is gone (or unreadable) must not live on in the cache. */
        if (rc == IOT_ENOTFOUND) {
            if (e) table_remove(r, e);
            negative_insert(r, b, uuid, now);
        }
        pthread_mutex_unlock(&r->mu);
        return rc;
    }
    if (e) table_remove(r, e);
    fresh->expires = now + r->ttl_ms;
    fresh->refs = 2; /* the table and the caller */
    table_insert(r, b, fresh);
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
    out->entries = r->devices.count;
    out->negatives = r->negatives.count;
    pthread_mutex_unlock(&r->mu);
}
