#include "ingest/resolver.h"
#include "core/clock.h"
#include "core/err.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct device_ref ref; /* first: a device_ref* is an entry* */
    int64_t expires;       /* monotonic ms */
    int refs;              /* holders, plus 1 while in the table */
    struct entry *hnext, *lprev, *lnext;
};

struct resolver {
    struct store_shared *db;
    int64_t ttl_ms;
    size_t max, count, nbuckets;
    struct entry **buckets;
    struct entry *lru_head, *lru_tail;
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

int resolver_create(struct store_shared *db, int64_t ttl_ms, size_t max_devices,
                    struct resolver **out)
{
    struct resolver *r = calloc(1, sizeof *r);
    if (!r) return IOT_ENOMEM;
    r->db = db;
    r->ttl_ms = ttl_ms;
    r->max = max_devices;
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

static void lru_unlink(struct resolver *r, struct entry *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        r->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        r->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_front(struct resolver *r, struct entry *e)
{
    e->lnext = r->lru_head;
    if (r->lru_head) r->lru_head->lprev = e;
    r->lru_head = e;
    if (!r->lru_tail) r->lru_tail = e;
}

/* Removes e from the table (holders keep it alive until they release). */
static void table_remove(struct resolver *r, struct entry *e)
{
    struct entry **pp = &r->buckets[hash_str(e->ref.dev.uuid) & (r->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(r, e);
    r->count--;
    entry_unref(e);
}

void resolver_destroy(struct resolver *r)
{
    if (!r) return;
    while (r->lru_head)
        table_remove(r, r->lru_head);
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
    pthread_mutex_lock(&r->mu);
    struct entry *e = r->buckets[b];
    while (e && strcmp(e->ref.dev.uuid, uuid) != 0)
        e = e->hnext;
    if (e && e->expires > now) {
        lru_unlink(r, e);
        lru_front(r, e);
        e->refs++;
        r->stats.hits++;
        pthread_mutex_unlock(&r->mu);
        *out = &e->ref;
        return 0;
    }
    r->stats.misses++;
    pthread_mutex_unlock(&r->mu);

    struct entry *fresh;
    int rc = load(r, uuid, &fresh);
    pthread_mutex_lock(&r->mu);
    if (rc) {
        /* A device that is gone (or unreadable) must not live on in the cache. */
        for (e = r->buckets[b]; e && strcmp(e->ref.dev.uuid, uuid) != 0; e = e->hnext)
            ;
        if (e && rc == IOT_ENOTFOUND) table_remove(r, e);
        pthread_mutex_unlock(&r->mu);
        return rc;
    }
    for (e = r->buckets[b]; e && strcmp(e->ref.dev.uuid, uuid) != 0; e = e->hnext)
        ;
    if (e) table_remove(r, e);
    while (r->count >= r->max && r->lru_tail)
        table_remove(r, r->lru_tail);
    fresh->expires = now + r->ttl_ms;
    fresh->refs = 2; /* the table and the caller */
    fresh->hnext = r->buckets[b];
    r->buckets[b] = fresh;
    lru_front(r, fresh);
    r->count++;
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
    out->entries = r->count;
    pthread_mutex_unlock(&r->mu);
}
