/*
 * Throttling wrapper (BROKER_THROTTLE_MS > 0): lets through at most one
 * publication per sensor per throttle_ms and counts the rest as throttled
 * (they never reach the inner broker). The window runs from the last
 * publication that was let through, on the monotonic clock (clock_mono_ms,
 * replaceable in tests).
 *
 * Memory is bounded: the per-sensor table (a core/lru table keyed by sensor
 * id) holds at most max_sensors entries, all allocated at create (40 bytes
 * each, plus next_pow2(max_sensors) bucket pointers); when the pool is full
 * the least recently seen sensor is forgotten, so its next reading passes
 * even inside its window (throttling is best effort past max_sensors active
 * sensors).
 */
#include "broker/broker.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/lru.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct sensor_slot {
    struct lru_node node;
    int64_t sensor_id;
    int64_t last_ms; /* when its last publication was let through */
};

struct throttle_broker {
    struct broker base;
    struct broker *inner; /* owned */
    int64_t throttle_ms;

    pthread_mutex_t mu; /* guards everything below */
    bool mu_ok;
    struct sensor_slot *slots; /* pool of max_slots entries */
    size_t max_slots, used;
    struct lru table; /* of the used slots */
    bool table_ok;
    uint64_t throttled;
};

/*
 * Returns a slot for a sensor not in the table (hash: lru_hash_id of it): a
 * never-used one while the pool lasts, else the least recently seen
 * sensor's, which is forgotten.
 */
static struct sensor_slot *throttle_insert(struct throttle_broker *t, int64_t sensor_id,
                                           uint64_t hash)
{
    struct sensor_slot *s;
    if (t->used < t->max_slots)
        s = &t->slots[t->used++];
    else
        s = LRU_ENTRY(lru_evict(&t->table), struct sensor_slot, node);
    s->sensor_id = sensor_id;
    lru_insert(&t->table, &s->node, hash);
    return s;
}

/* Whether msg may pass now (the sensor's last pass is throttle_ms old); called with mu held. */
static bool throttle_pass(struct throttle_broker *t, const struct broker_reading *msg, int64_t now)
{
    bool pass = true;
    int64_t id = msg->sensor_id;
    uint64_t h = lru_hash_id(&t->table, id);
    struct lru_node *n = lru_find_id(&t->table, h, id);
    struct sensor_slot *s;
    if (!n) {
        s = throttle_insert(t, id, h);
    } else {
        s = LRU_ENTRY(n, struct sensor_slot, node);
        lru_touch(&t->table, n);
        pass = now - s->last_ms >= t->throttle_ms;
    }
    if (pass)
        s->last_ms = now;
    else
        t->throttled++;
    return pass;
}

/*
 * Lets each message through to the inner broker when its sensor has had no
 * publication in the last throttle_ms, else counts it as throttled; those
 * that pass are forwarded THROTTLE_CHUNK at a time (copied on the stack),
 * the inner publish outside the lock. Always returns 0 (or IOT_EINVAL for a
 * NULL msgs), like every broker.
 */
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
    if (t->table_ok) lru_fini(&t->table);
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
    t->slots = calloc(max_sensors, sizeof *t->slots);
    struct lru_params p = {.id_offset = LRU_ID_OFFSET(struct sensor_slot, node, sensor_id),
                           .max = max_sensors,
                           .buckets = max_sensors,
                           .buckets_max = max_sensors};
    if (!t->slots || !(t->table_ok = lru_init(&t->table, &p) == 0)) {
        throttle_destroy(&t->base);
        return IOT_ENOMEM;
    }
    if (!(t->mu_ok = pthread_mutex_init(&t->mu, NULL) == 0)) {
        throttle_destroy(&t->base);
        return IOT_EIO;
    }
    *out = &t->base;
    return 0;
}
