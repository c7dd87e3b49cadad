/*
 * Throttling wrapper (BROKER_THROTTLE_MS > 0): lets through at most one
 * publication per sensor per throttle_ms and counts the rest as throttled
 * (they never reach the inner broker). The window runs from the last
 * publication that was let through, on the monotonic clock (clock_mono_ms,
 * replaceable in tests).
 *
 * Memory is bounded: the per-sensor table holds at most max_sensors entries,
 * all allocated at create. It is a chained hash table over an entry pool,
 * plus a doubly linked LRU list; when the pool is full the least recently
 * seen sensor is forgotten, so its next reading passes even inside its
 * window (throttling is best effort past max_sensors active sensors).
 */
#include "broker/broker.h"
#include "core/clock.h"
#include "core/err.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define NIL SIZE_MAX

struct sensor_slot {
    int64_t sensor_id;
    int64_t last_ms;   /* when its last publication was let through */
    size_t hnext;      /* next entry in the same bucket */
    size_t prev, next; /* LRU list: prev is more recent */
};

struct throttle_broker {
    struct broker base;
    struct broker *inner; /* owned */
    int64_t throttle_ms;

    pthread_mutex_t mu; /* guards everything below */
    bool mu_ok;
    struct sensor_slot *slots; /* pool of max_slots entries */
    size_t max_slots, used;
    size_t *buckets;           /* nbuckets heads, NIL when empty */
    size_t nbuckets;           /* power of two */
    size_t lru_head, lru_tail; /* most / least recently seen */
    uint64_t throttled;
};

static size_t throttle_bucket(const struct throttle_broker *t, int64_t sensor_id)
{
    /* splitmix64 finaliser: spreads sequential ids over the buckets */
    uint64_t x = (uint64_t)sensor_id;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)(x & (t->nbuckets - 1));
}

static size_t throttle_find(const struct throttle_broker *t, int64_t sensor_id)
{
    size_t i = t->buckets[throttle_bucket(t, sensor_id)];
    while (i != NIL && t->slots[i].sensor_id != sensor_id)
        i = t->slots[i].hnext;
    return i;
}

static void lru_unlink(struct throttle_broker *t, size_t i)
{
    struct sensor_slot *s = &t->slots[i];
    if (s->prev != NIL)
        t->slots[s->prev].next = s->next;
    else
        t->lru_head = s->next;
    if (s->next != NIL)
        t->slots[s->next].prev = s->prev;
    else
        t->lru_tail = s->prev;
    s->prev = s->next = NIL;
}

static void lru_push_front(struct throttle_broker *t, size_t i)
{
    struct sensor_slot *s = &t->slots[i];
    s->prev = NIL;
    s->next = t->lru_head;
    if (t->lru_head != NIL) t->slots[t->lru_head].prev = i;
    t->lru_head = i;
    if (t->lru_tail == NIL) t->lru_tail = i;
}

static void bucket_remove(struct throttle_broker *t, size_t i)
{
    size_t *link = &t->buckets[throttle_bucket(t, t->slots[i].sensor_id)];
    while (*link != i)
        link = &t->slots[*link].hnext;
    *link = t->slots[i].hnext;
}

/*
 * Returns a slot for a sensor not in the table: a never-used one while the
 * pool lasts, else the least recently seen sensor's, which is forgotten.
 */
static size_t throttle_insert(struct throttle_broker *t, int64_t sensor_id)
{
    size_t i;
    if (t->used < t->max_slots) {
        i = t->used++;
    } else {
        i = t->lru_tail;
        lru_unlink(t, i);
        bucket_remove(t, i);
    }
    size_t bucket = throttle_bucket(t, sensor_id);
    t->slots[i].sensor_id = sensor_id;
    t->slots[i].hnext = t->buckets[bucket];
    t->buckets[bucket] = i;
    lru_push_front(t, i);
    return i;
}

/*
 * Lets the message through to the inner broker when its sensor has had no
 * publication in the last throttle_ms, else counts it as throttled. The
 * inner publish runs outside the lock. Always returns 0 (or IOT_EINVAL for
 * a NULL msg), like every broker.
 */
/* Whether msg may pass now (the sensor's last pass is throttle_ms old); called with mu held. */
static bool throttle_pass(struct throttle_broker *t, const struct broker_reading *msg, int64_t now)
{
    bool pass = true;
    size_t i = throttle_find(t, msg->sensor_id);
    if (i == NIL) {
        i = throttle_insert(t, msg->sensor_id);
    } else {
        lru_unlink(t, i);
        lru_push_front(t, i);
        pass = now - t->slots[i].last_ms >= t->throttle_ms;
    }
    if (pass)
        t->slots[i].last_ms = now;
    else
        t->throttled++;
    return pass;
}

/* Forwards the messages that pass, THROTTLE_CHUNK at a time (copied on the stack). */
#define THROTTLE_CHUNK 64
static int throttle_publish(struct broker *b, const struct broker_reading *msgs, size_t n)
{
    struct throttle_broker *t = (struct throttle_broker *)b;
    struct broker_reading pass[THROTTLE_CHUNK];

    if (!msgs) return IOT_EINVAL;
    int64_t now = clock_mono_ms();
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        pthread_mutex_lock(&t->mu);
        for (; i < n && k < THROTTLE_CHUNK; i++)
            if (throttle_pass(t, &msgs[i], now)) pass[k++] = msgs[i];
        pthread_mutex_unlock(&t->mu);
        if (k) broker_publish_batch(t->inner, pass, k);
    }
    return 0;
}

static int throttle_subscribe(struct broker *b, broker_subscriber_fn fn, void *ud)
{
    return broker_subscribe(((struct throttle_broker *)b)->inner, fn, ud);
}

/* The inner broker's stats plus the messages this wrapper held back. */
static void throttle_stats(struct broker *b, struct broker_stats *out)
{
    struct throttle_broker *t = (struct throttle_broker *)b;

    broker_stats(t->inner, out);
    pthread_mutex_lock(&t->mu);
    out->throttled += t->throttled;
    pthread_mutex_unlock(&t->mu);
}

static enum broker_health throttle_health(struct broker *b)
{
    return broker_health(((struct throttle_broker *)b)->inner);
}

/* Destroys the inner broker too. Accepts NULL and a half-built wrapper. */
static void throttle_destroy(struct broker *b)
{
    struct throttle_broker *t = (struct throttle_broker *)b;

    if (!t) return;
    broker_destroy(t->inner);
    if (t->mu_ok) pthread_mutex_destroy(&t->mu);
    free(t->buckets);
    free(t->slots);
    free(t);
}

static const struct broker_ops throttle_ops = {
    .name = "throttle",
    .publish = throttle_publish,
    .subscribe = throttle_subscribe,
    .stats = throttle_stats,
    .health = throttle_health,
    .destroy = throttle_destroy,
};

/*
 * Wraps inner. Ownership of inner passes to the wrapper in every case: on
 * failure inner has already been destroyed, so the caller never frees it.
 * *out is owned by the caller (broker_destroy). Returns 0, IOT_EINVAL (NULL
 * inner, throttle_ms <= 0, max_sensors 0 or absurdly large), IOT_ENOMEM, or
 * IOT_EIO when the lock cannot be created.
 */
int broker_throttle_create(struct broker *inner, int64_t throttle_ms, size_t max_sensors,
                           struct broker **out)
{
    struct throttle_broker *t;

    if (out) *out = NULL;
    if (!out || !inner || throttle_ms <= 0 || max_sensors == 0 || max_sensors > SIZE_MAX / 4) {
        broker_destroy(inner);
        return IOT_EINVAL;
    }
    if (!(t = calloc(1, sizeof *t))) {
        broker_destroy(inner);
        return IOT_ENOMEM;
    }
    t->base.ops = &throttle_ops;
    t->inner = inner;
    t->throttle_ms = throttle_ms;
    t->max_slots = max_sensors;
    t->lru_head = t->lru_tail = NIL;
    for (t->nbuckets = 1; t->nbuckets < max_sensors; t->nbuckets <<= 1)
        ;
    t->slots = calloc(max_sensors, sizeof *t->slots);
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (!t->slots || !t->buckets) {
        throttle_destroy(&t->base);
        return IOT_ENOMEM;
    }
    for (size_t i = 0; i < t->nbuckets; i++)
        t->buckets[i] = NIL;
    if (!(t->mu_ok = pthread_mutex_init(&t->mu, NULL) == 0)) {
        throttle_destroy(&t->base);
        return IOT_EIO;
    }
    *out = &t->base;
    return 0;
}
