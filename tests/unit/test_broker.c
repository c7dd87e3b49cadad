/*
 * Unit tests for src/broker: memory, none, throttle, factory, health names.
 * No sleeps decide an outcome: asynchronous delivery is awaited with a
 * condition variable or by polling against a generous deadline, and the
 * queue is filled deterministically by a subscriber held on a gate.
 */
#include "broker/broker.h"
#include "broker/broker_ring.h"
#include "core/clock.h"
#include "core/err.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEADLINE_MS 10000
#define MAX_SEEN    4096

/* ---- helpers ---------------------------------------------------------- */

static struct broker_reading reading(int64_t sensor_id)
{
    struct broker_reading r;
    memset(&r, 0, sizeof r);
    r.sensor_id = sensor_id;
    snprintf(r.sensor_uuid, sizeof r.sensor_uuid, "sensor-%lld", (long long)sensor_id);
    snprintf(r.device_uuid, sizeof r.device_uuid, "device-1");
    r.value = (double)sensor_id * 0.5;
    r.ts_ms = 1700000000000LL + sensor_id;
    snprintf(r.cls, sizeof r.cls, "normal");
    return r;
}

static struct timespec deadline_in(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Records what a subscriber receives; wait_count blocks until n arrived. */
struct collector {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n;
    int64_t ids[MAX_SEEN];
    bool payload_ok;
};

static void collector_init(struct collector *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->payload_ok = true;
}

static void collector_fini(struct collector *c)
{
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

static void collect(const struct broker_reading *msg, void *ud)
{
    struct collector *c = ud;
    struct broker_reading want = reading(msg->sensor_id);
    pthread_mutex_lock(&c->mu);
    if (memcmp(&want, msg, sizeof want) != 0) c->payload_ok = false;
    if (c->n < MAX_SEEN) c->ids[c->n] = msg->sensor_id;
    c->n++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static size_t collector_count(struct collector *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* True once at least n messages arrived; false after DEADLINE_MS. */
static bool collector_wait(struct collector *c, size_t n)
{
    struct timespec dl = deadline_in(DEADLINE_MS);
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    while (c->n < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->cv, &c->mu, &dl);
    bool ok = c->n >= n;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* A subscriber that blocks on each message until the gate is opened. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered;
    bool open;
    struct collector *after; /* receives each message once let through */
};

static void gate_init(struct gate *g, struct collector *after)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->after = after;
}

static void gate_fini(struct gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static void gated(const struct broker_reading *msg, void *ud)
{
    struct gate *g = ud;
    pthread_mutex_lock(&g->mu);
    g->entered++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    collect(msg, g->after);
}

static bool gate_wait_entered(struct gate *g, int n)
{
    struct timespec dl = deadline_in(DEADLINE_MS);
    int rc = 0;
    pthread_mutex_lock(&g->mu);
    while (g->entered < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&g->cv, &g->mu, &dl);
    bool ok = g->entered >= n;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Polls the stats until delivered reaches n; false after DEADLINE_MS. */
static bool wait_delivered(struct broker *b, uint64_t n)
{
    struct timespec pause = {0, 1000000L};
    for (int waited = 0; waited < DEADLINE_MS; waited++) {
        struct broker_stats st;
        broker_stats(b, &st);
        if (st.delivered >= n) return true;
        nanosleep(&pause, NULL);
    }
    return false;
}

static void nop_subscriber(const struct broker_reading *msg, void *ud)
{
    (void)msg;
    (void)ud;
}

/* ---- memory broker ---------------------------------------------------- */

Test(broker_memory, delivers_in_order_to_two_subscribers)
{
    struct broker *b;
    struct collector a, c;
    collector_init(&a);
    collector_init(&c);
    cr_assert_eq(broker_memory_create(64, &b), 0);
    cr_assert_str_eq(b->ops->name, "memory");
    cr_assert_eq(broker_health(b), BROKER_OK);
    cr_assert_eq(broker_subscribe(b, collect, &a), 0);
    cr_assert_eq(broker_subscribe(b, collect, &c), 0);

    for (int64_t i = 0; i < 50; i++) {
        struct broker_reading r = reading(i);
        cr_assert_eq(broker_publish(b, &r), 0);
    }
    cr_assert(collector_wait(&a, 50));
    cr_assert(collector_wait(&c, 50));
    cr_assert(wait_delivered(b, 50));
    for (size_t i = 0; i < 50; i++) {
        cr_assert_eq(a.ids[i], (int64_t)i);
        cr_assert_eq(c.ids[i], (int64_t)i);
    }
    cr_assert(a.payload_ok && c.payload_ok);

    struct broker_stats st;
    broker_stats(b, &st);
    cr_assert_eq(st.published, 50);
    cr_assert_eq(st.dropped, 0);
    cr_assert_eq(st.delivered, 50);
    cr_assert_eq(st.throttled, 0);
    broker_destroy(b);
    cr_assert_eq(collector_count(&a), 50);
    collector_fini(&a);
    collector_fini(&c);
}

Test(broker_memory, full_queue_drops_and_counts)
{
    struct broker *b;
    struct collector seen;
    struct gate g;
    collector_init(&seen);
    gate_init(&g, &seen);
    cr_assert_eq(broker_memory_create(4, &b), 0);
    cr_assert_eq(broker_subscribe(b, gated, &g), 0);

    /* message 0 leaves the queue and holds the delivery thread at the gate */
    struct broker_reading r = reading(0);
    cr_assert_eq(broker_publish(b, &r), 0);
    cr_assert(gate_wait_entered(&g, 1));
    /* 1..4 fill the queue; 5..7 do not fit, yet publish still returns 0 */
    for (int64_t i = 1; i <= 7; i++) {
        r = reading(i);
        cr_assert_eq(broker_publish(b, &r), 0);
    }
    struct broker_stats st;
    broker_stats(b, &st);
    cr_assert_eq(st.published, 5);
    cr_assert_eq(st.dropped, 3);
    cr_assert_eq(st.delivered, 0);

    gate_open(&g);
    cr_assert(collector_wait(&seen, 5));
    cr_assert(wait_delivered(b, 5));
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(seen.ids[i], (int64_t)i);
    broker_stats(b, &st);
    cr_assert_eq(st.published, 5);
    cr_assert_eq(st.dropped, 3);
    cr_assert_eq(st.delivered, 5);

    /* room again once drained */
    r = reading(8);
    cr_assert_eq(broker_publish(b, &r), 0);
    cr_assert(collector_wait(&seen, 6));
    cr_assert_eq(seen.ids[5], 8);
    broker_destroy(b);
    cr_assert_eq(collector_count(&seen), 6);
    gate_fini(&g);
    collector_fini(&seen);
}

Test(broker_memory, destroy_delivers_what_was_queued)
{
    struct broker *b;
    struct collector seen;
    struct gate g;
    collector_init(&seen);
    gate_init(&g, &seen);
    cr_assert_eq(broker_memory_create(8, &b), 0);
    cr_assert_eq(broker_subscribe(b, gated, &g), 0);

    for (int64_t i = 0; i < 6; i++) {
        struct broker_reading r = reading(i);
        cr_assert_eq(broker_publish(b, &r), 0);
        if (i == 0) cr_assert(gate_wait_entered(&g, 1));
    }
    cr_assert_eq(collector_count(&seen), 0);
    gate_open(&g);
    broker_destroy(b); /* returns only after the 6 are handed over */
    cr_assert_eq(collector_count(&seen), 6);
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(seen.ids[i], (int64_t)i);
    gate_fini(&g);
    collector_fini(&seen);
}

Test(broker_memory, destroy_drains_a_burst)
{
    struct broker *b;
    struct collector seen;
    collector_init(&seen);
    cr_assert_eq(broker_memory_create(2048, &b), 0);
    cr_assert_eq(broker_subscribe(b, collect, &seen), 0);
    for (int64_t i = 0; i < 2000; i++) {
        struct broker_reading r = reading(i);
        cr_assert_eq(broker_publish(b, &r), 0);
    }
    broker_destroy(b);
    cr_assert_eq(collector_count(&seen), 2000);
    for (size_t i = 0; i < 2000; i++)
        cr_assert_eq(seen.ids[i], (int64_t)i);
    collector_fini(&seen);
}

struct publisher_arg {
    struct broker *b;
    int count;
};

static void *publisher(void *arg)
{
    struct publisher_arg *p = arg;
    for (int i = 0; i < p->count; i++) {
        struct broker_reading r = reading(i);
        broker_publish(p->b, &r);
    }
    return NULL;
}

Test(broker_memory, subscribe_while_running)
{
    enum { NSUB = 8 };
    struct broker *b;
    struct collector subs[NSUB];
    pthread_t th;
    cr_assert_eq(broker_memory_create(256, &b), 0);
    struct publisher_arg pa = {b, 3000};
    cr_assert_eq(pthread_create(&th, NULL, publisher, &pa), 0);
    for (int i = 0; i < NSUB; i++) {
        collector_init(&subs[i]);
        cr_assert_eq(broker_subscribe(b, collect, &subs[i]), 0);
    }
    pthread_join(th, NULL);

    /* once the backlog is gone, a marker is sure to fit in the queue */
    struct broker_stats st;
    broker_stats(b, &st);
    cr_assert_eq(st.published + st.dropped, 3000);
    cr_assert(wait_delivered(b, st.published));
    struct broker_reading marker = reading(MAX_SEEN + 1);
    cr_assert_eq(broker_publish(b, &marker), 0);
    cr_assert(wait_delivered(b, st.published + 1));
    /* every subscriber, however late, got the message published after it */
    for (int i = 0; i < NSUB; i++) {
        size_t n = collector_count(&subs[i]);
        cr_assert(n >= 1 && n <= 3001);
        pthread_mutex_lock(&subs[i].mu);
        int64_t last = subs[i].ids[n - 1];
        pthread_mutex_unlock(&subs[i].mu);
        cr_assert_eq(last, MAX_SEEN + 1);
    }
    broker_destroy(b);
    for (int i = 0; i < NSUB; i++)
        collector_fini(&subs[i]);
}

Test(broker_memory, rejects_bad_arguments_and_extra_subscribers)
{
    struct broker *b = (struct broker *)&b;
    cr_assert_eq(broker_memory_create(0, &b), IOT_EINVAL);
    cr_assert_null(b);
    cr_assert_eq(broker_memory_create(1, NULL), IOT_EINVAL);

    cr_assert_eq(broker_memory_create(1, &b), 0);
    cr_assert_eq(broker_subscribe(b, NULL, NULL), IOT_EINVAL);
    int accepted = 0;
    while (broker_subscribe(b, nop_subscriber, NULL) == 0 && accepted < 100)
        accepted++;
    cr_assert_eq(accepted, 16);
    cr_assert_eq(broker_subscribe(b, nop_subscriber, NULL), IOT_EFULL);
    cr_assert_eq(broker_publish(b, NULL), IOT_EINVAL);
    broker_destroy(b);
    broker_destroy(NULL);
}

Test(broker_memory, stats_without_subscribers)
{
    struct broker *b;
    cr_assert_eq(broker_memory_create(16, &b), 0);
    struct broker_reading r = reading(1);
    cr_assert_eq(broker_publish(b, &r), 0);
    cr_assert(wait_delivered(b, 1));
    struct broker_stats st;
    broker_stats(b, &st);
    cr_assert_eq(st.published, 1);
    cr_assert_eq(st.dropped, 0);
    broker_destroy(b);
}

/* ---- none broker ------------------------------------------------------ */

Test(broker_none, discards_and_reports_disabled)
{
    struct broker *b;
    struct collector seen;
    collector_init(&seen);
    cr_assert_eq(broker_none_create(&b), 0);
    cr_assert_str_eq(b->ops->name, "none");
    cr_assert_eq(broker_health(b), BROKER_DISABLED);
    cr_assert_eq(broker_subscribe(b, collect, &seen), 0);
    cr_assert_eq(broker_subscribe(b, NULL, NULL), IOT_EINVAL);
    for (int64_t i = 0; i < 10; i++) {
        struct broker_reading r = reading(i);
        cr_assert_eq(broker_publish(b, &r), 0);
    }
    struct broker_stats st;
    memset(&st, 0xff, sizeof st);
    broker_stats(b, &st);
    cr_assert_eq(st.published, 0);
    cr_assert_eq(st.dropped, 0);
    cr_assert_eq(st.delivered, 0);
    cr_assert_eq(st.throttled, 0);
    broker_destroy(b);
    cr_assert_eq(collector_count(&seen), 0);
    cr_assert_eq(broker_none_create(NULL), IOT_EINVAL);
    collector_fini(&seen);
}

/* ---- throttle --------------------------------------------------------- */

static int64_t fake_ms;
static int64_t fake_mono(void)
{
    return fake_ms;
}

static void fake_clock_on(void)
{
    fake_ms = 1000000;
    clock_set_source(NULL, fake_mono);
}

static void fake_clock_off(void)
{
    clock_set_source(NULL, NULL);
}

/* A batch that does not fit: what fits is taken in order, the rest dropped and counted. */
Test(broker_memory, batch_takes_what_fits_in_order)
{
    struct broker *b;
    struct collector seen;
    struct gate g;
    collector_init(&seen);
    gate_init(&g, &seen);
    cr_assert_eq(broker_memory_create(4, &b), 0);
    cr_assert_eq(broker_subscribe(b, gated, &g), 0);
    struct broker_reading r = reading(0);
    cr_assert_eq(broker_publish(b, &r), 0);
    cr_assert(gate_wait_entered(&g, 1));

    struct broker_reading batch[6];
    for (int64_t i = 0; i < 6; i++)
        batch[i] = reading(i + 1);
    cr_assert_eq(broker_publish_batch(b, batch, 6), 0);
    cr_assert_eq(broker_publish_batch(b, NULL, 1), IOT_EINVAL);
    struct broker_stats st;
    broker_stats(b, &st);
    cr_assert_eq(st.published, 5);
    cr_assert_eq(st.dropped, 2);
    gate_open(&g);
    cr_assert(collector_wait(&seen, 5));
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(seen.ids[i], (int64_t)i);
    broker_destroy(b);
    gate_fini(&g);
    collector_fini(&seen);
}

/* An inner broker that records calls synchronously. */
struct spy {
    struct broker base;
    int published;
    int64_t last_id;
    int subscribed;
    enum broker_health health;
    bool *destroyed;
};

static int spy_publish(struct broker *b, const struct broker_reading *msgs, size_t n)
{
    struct spy *s = (struct spy *)b;
    s->published += (int)n;
    if (n) s->last_id = msgs[n - 1].sensor_id;
    return 0;
}

static int spy_subscribe(struct broker *b, broker_subscriber_fn fn, void *ud)
{
    (void)fn;
    (void)ud;
    ((struct spy *)b)->subscribed++;
    return 0;
}

static void spy_stats(struct broker *b, struct broker_stats *out)
{
    struct spy *s = (struct spy *)b;
    out->published = (uint64_t)s->published;
    out->throttled = 0;
    out->dropped = 7;
    out->delivered = 5;
}

static enum broker_health spy_health(struct broker *b)
{
    return ((struct spy *)b)->health;
}

static void spy_destroy(struct broker *b)
{
    struct spy *s = (struct spy *)b;
    if (s->destroyed) *s->destroyed = true;
    free(s);
}

static const struct broker_ops spy_ops = {
    .name = "spy",
    .publish = spy_publish,
    .subscribe = spy_subscribe,
    .stats = spy_stats,
    .health = spy_health,
    .destroy = spy_destroy,
};

static struct spy *spy_new(bool *destroyed)
{
    struct spy *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    s->base.ops = &spy_ops;
    s->health = BROKER_OK;
    s->destroyed = destroyed;
    return s;
}

static void pub(struct broker *b, int64_t sensor_id)
{
    struct broker_reading r = reading(sensor_id);
    cr_assert_eq(broker_publish(b, &r), 0);
}

TestSuite(broker_throttle, .init = fake_clock_on, .fini = fake_clock_off);

/* In one batch a sensor passes once; more than a chunk of messages all arrive. */
Test(broker_throttle, batch_passes_each_sensor_once)
{
    bool destroyed = false;
    struct spy *s = spy_new(&destroyed);
    struct broker *b;
    cr_assert_eq(broker_throttle_create(&s->base, 1000, 1024, &b), 0);
    enum { N = 200 };
    struct broker_reading batch[N];
    for (int i = 0; i < N; i++)
        batch[i] = reading(i % 100); /* 100 sensors, each twice */
    cr_assert_eq(broker_publish_batch(b, batch, N), 0);
    cr_assert_eq(s->published, 100);
    cr_assert_eq(s->last_id, 99);
    struct broker_stats st;
    broker_stats(b, &st);
    cr_assert_eq(st.throttled, 100);
    broker_destroy(b);
    cr_assert(destroyed);
}

Test(broker_throttle, one_publication_per_sensor_per_window)
{
    bool destroyed = false;
    struct spy *s = spy_new(&destroyed);
    struct broker *b;
    cr_assert_eq(broker_throttle_create(&s->base, 1000, 16, &b), 0);
    cr_assert_str_eq(b->ops->name, "throttle");

    pub(b, 1); /* first passes */
    cr_assert_eq(s->published, 1);
    fake_ms += 500;
    pub(b, 1); /* inside the window */
    fake_ms += 499;
    pub(b, 1); /* 999 ms after the first: still inside */
    cr_assert_eq(s->published, 1);
    fake_ms += 1;
    pub(b, 1); /* 1000 ms after the first: passes, new window starts */
    cr_assert_eq(s->published, 2);
    fake_ms += 999;
    pub(b, 1);
    cr_assert_eq(s->published, 2);

    struct broker_stats st;
    broker_stats(b, &st);
    cr_assert_eq(st.published, 2);
    cr_assert_eq(st.throttled, 3);
    cr_assert_eq(st.dropped, 7); /* inner's, passed through */
    cr_assert_eq(st.delivered, 5);

    broker_destroy(b);
    cr_assert(destroyed); /* inner is owned */
}

Test(broker_throttle, distinct_sensors_are_independent)
{
    struct spy *s = spy_new(NULL);
    struct broker *b;
    cr_assert_eq(broker_throttle_create(&s->base, 1000, 16, &b), 0);
    pub(b, 1);
    pub(b, 2);
    pub(b, 3);
    cr_assert_eq(s->published, 3);
    pub(b, 2);
    pub(b, 1);
    cr_assert_eq(s->published, 3);
    fake_ms += 600;
    pub(b, 4); /* new sensor passes at once */
    cr_assert_eq(s->published, 4);
    cr_assert_eq(s->last_id, 4);
    fake_ms += 400;
    pub(b, 1); /* sensor 1's window is over, 4's is not */
    pub(b, 4);
    cr_assert_eq(s->published, 5);
    cr_assert_eq(s->last_id, 1);
    struct broker_stats st;
    broker_stats(b, &st);
    cr_assert_eq(st.throttled, 3);
    broker_destroy(b);
}

Test(broker_throttle, table_bound_evicts_least_recently_seen)
{
    struct spy *s = spy_new(NULL);
    struct broker *b;
    cr_assert_eq(broker_throttle_create(&s->base, 1000, 2, &b), 0);
    pub(b, 1);
    pub(b, 2);
    pub(b, 1); /* throttled; 1 is now the most recently seen */
    cr_assert_eq(s->published, 2);
    pub(b, 3); /* table full: forgets 2, the least recently seen */
    cr_assert_eq(s->published, 3);
    pub(b, 1); /* still tracked: throttled */
    pub(b, 3); /* still tracked: throttled */
    cr_assert_eq(s->published, 3);
    pub(b, 2); /* forgotten, so it passes inside its window; 1 is evicted now */
    cr_assert_eq(s->published, 4);
    cr_assert_eq(s->last_id, 2);
    pub(b, 3); /* tracked: throttled */
    pub(b, 2); /* tracked: throttled */
    cr_assert_eq(s->published, 4);
    pub(b, 1); /* forgotten: passes */
    cr_assert_eq(s->published, 5);
    cr_assert_eq(s->last_id, 1);

    /* many sensors through a 2-entry table: every first sight passes */
    for (int64_t id = 100; id < 1100; id++)
        pub(b, id);
    cr_assert_eq(s->published, 1005);
    pub(b, 1099); /* the last two are still remembered */
    pub(b, 1098);
    cr_assert_eq(s->published, 1005);
    broker_destroy(b);
}

Test(broker_throttle, forwards_health_and_subscribe)
{
    struct spy *s = spy_new(NULL);
    struct broker *b;
    cr_assert_eq(broker_throttle_create(&s->base, 10, 4, &b), 0);
    cr_assert_eq(broker_health(b), BROKER_OK);
    s->health = BROKER_ERROR;
    cr_assert_eq(broker_health(b), BROKER_ERROR);
    cr_assert_eq(broker_subscribe(b, nop_subscriber, NULL), 0);
    cr_assert_eq(s->subscribed, 1);
    cr_assert_eq(broker_publish(b, NULL), IOT_EINVAL);
    broker_destroy(b);
}

Test(broker_throttle, bad_arguments_still_take_inner)
{
    struct broker *b = (struct broker *)&b;
    bool destroyed = false;
    cr_assert_eq(broker_throttle_create(&spy_new(&destroyed)->base, 0, 4, &b), IOT_EINVAL);
    cr_assert(destroyed);
    cr_assert_null(b);
    destroyed = false;
    cr_assert_eq(broker_throttle_create(&spy_new(&destroyed)->base, 10, 0, &b), IOT_EINVAL);
    cr_assert(destroyed);
    cr_assert_eq(broker_throttle_create(NULL, 10, 4, &b), IOT_EINVAL);
}

Test(broker_throttle, over_a_memory_broker)
{
    struct broker *inner, *b;
    struct collector seen;
    collector_init(&seen);
    cr_assert_eq(broker_memory_create(16, &inner), 0);
    cr_assert_eq(broker_throttle_create(inner, 1000, 16, &b), 0);
    cr_assert_eq(broker_subscribe(b, collect, &seen), 0);
    pub(b, 1);
    pub(b, 1);
    pub(b, 2);
    fake_ms += 1000;
    pub(b, 1);
    broker_destroy(b);
    cr_assert_eq(collector_count(&seen), 3);
    cr_assert_eq(seen.ids[0], 1);
    cr_assert_eq(seen.ids[1], 2);
    cr_assert_eq(seen.ids[2], 1);
    collector_fini(&seen);
}

/* ---- factory and health names ----------------------------------------- */

Test(broker_factory, memory_and_none)
{
    struct broker *b;
    char err[256];
    cr_assert_eq(broker_create_from_url("memory", 8, 0, &b, err, sizeof err), 0);
    cr_assert_str_eq(b->ops->name, "memory");
    cr_assert_eq(broker_health(b), BROKER_OK);
    broker_destroy(b);

    cr_assert_eq(broker_create_from_url("none", 8, 0, &b, err, sizeof err), 0);
    cr_assert_str_eq(b->ops->name, "none");
    cr_assert_eq(broker_health(b), BROKER_DISABLED);
    broker_destroy(b);
}

Test(broker_factory, wraps_in_throttle)
{
    struct broker *b;
    char err[256];
    cr_assert_eq(broker_create_from_url("memory", 8, 250, &b, err, sizeof err), 0);
    cr_assert_str_eq(b->ops->name, "throttle");
    cr_assert_eq(broker_health(b), BROKER_OK);
    broker_destroy(b);
    cr_assert_eq(broker_create_from_url("none", 8, 250, &b, NULL, 0), 0);
    cr_assert_str_eq(b->ops->name, "throttle");
    cr_assert_eq(broker_health(b), BROKER_DISABLED);
    broker_destroy(b);
}

Test(broker_factory, rejects_garbage)
{
    struct broker *b = (struct broker *)&b;
    char err[256];
    cr_assert_eq(broker_create_from_url("kafka://bus:9092", 8, 0, &b, err, sizeof err), IOT_EINVAL);
    cr_assert_null(b);
    cr_assert_not_null(strstr(err, "kafka://bus:9092"), "err: %s", err);
    cr_assert_not_null(strstr(err, "'memory'"), "err: %s", err);
    cr_assert_not_null(strstr(err, "'none'"), "err: %s", err);

    cr_assert_eq(broker_create_from_url("", 8, 0, &b, err, sizeof err), IOT_EINVAL);
    cr_assert_eq(broker_create_from_url("Memory", 8, 0, &b, err, sizeof err), IOT_EINVAL);
    cr_assert_eq(broker_create_from_url(NULL, 8, 0, &b, err, sizeof err), IOT_EINVAL);
    cr_assert_eq(broker_create_from_url("memory", 0, 0, &b, err, sizeof err), IOT_EINVAL);
    cr_assert_eq(broker_create_from_url("memory", 8, -1, &b, err, sizeof err), IOT_EINVAL);
    cr_assert_eq(broker_create_from_url("bogus", 8, 0, &b, NULL, 0), IOT_EINVAL);
    cr_assert_eq(broker_create_from_url("memory", 8, 0, NULL, err, sizeof err), IOT_EINVAL);

    /* a password in the URL never reaches the message */
    cr_assert_eq(
        broker_create_from_url("amqp://user:s3cret@host:5672/vh", 8, 0, &b, err, sizeof err),
        IOT_EINVAL);
    cr_assert_null(strstr(err, "s3cret"), "err: %s", err);
    cr_assert_not_null(strstr(err, "amqp://***@host:5672/vh"), "err: %s", err);

    /* NATS needs the settings only broker_create has: refused here, without the password */
    cr_assert_eq(broker_create_from_url("nats://user:s3cret@bus:4222/iot.readings", 8, 0, &b, err,
                                        sizeof err),
                 IOT_EINVAL);
    cr_assert_null(b);
    cr_assert_null(strstr(err, "s3cret"), "err: %s", err);
    cr_assert_not_null(strstr(err, "broker_create"), "err: %s", err);

    /* a tiny buffer is truncated, not overrun */
    char small[8];
    cr_assert_eq(broker_create_from_url("bogus", 8, 0, &b, small, sizeof small), IOT_EINVAL);
    cr_assert_eq(strlen(small), sizeof small - 1);
}

Test(broker_health, names)
{
    cr_assert_str_eq(broker_health_name(BROKER_OK), "ok");
    cr_assert_str_eq(broker_health_name(BROKER_ERROR), "error");
    cr_assert_str_eq(broker_health_name(BROKER_DISABLED), "disabled");
    cr_assert_str_eq(broker_health_name((enum broker_health)42), "unknown");
}

/* ---- the hand-off ring shared by the memory and NATS brokers ------------ */

Test(broker_ring, fifo_bound_wrap_and_rewind)
{
    struct broker_ring r;
    struct broker_reading m = reading(0), out;
    cr_assert_eq(broker_ring_init(&r, 0), IOT_EINVAL);
    cr_assert_eq(broker_ring_init(&r, 3), 0);
    cr_assert_not(broker_ring_pop(&r, &out));

    /* fill to the bound: the fourth push is refused and changes nothing */
    for (int i = 1; i <= 3; i++) {
        m = reading(i);
        cr_assert(broker_ring_push(&r, &m));
    }
    m = reading(4);
    cr_assert_not(broker_ring_push(&r, &m));
    cr_assert_eq(r.count, 3);

    /* pop one, push one: the write wraps past the end, order is kept */
    cr_assert(broker_ring_pop(&r, &out));
    cr_expect_eq(out.sensor_id, 1);
    cr_assert(broker_ring_push(&r, &m));
    for (int want = 2; want <= 4; want++) {
        cr_assert(broker_ring_pop(&r, &out));
        cr_expect_eq(out.sensor_id, want);
        struct broker_reading w = reading(want);
        cr_expect_str_eq(out.sensor_uuid, w.sensor_uuid);
    }
    /* emptied: the head is back at slot 0, so a drained queue reuses the same slots */
    cr_expect_eq(r.head, 0);
    cr_expect_eq(r.count, 0);
    m = reading(5);
    cr_assert(broker_ring_push(&r, &m));
    cr_assert(broker_ring_pop(&r, &out));
    cr_expect_eq(r.head, 0);

    /* clear reports what it dropped */
    for (int i = 0; i < 2; i++)
        cr_assert(broker_ring_push(&r, &m));
    cr_expect_eq(broker_ring_clear(&r), 2);
    cr_expect_not(broker_ring_pop(&r, &out));
    broker_ring_fini(&r);
    broker_ring_fini(NULL);
}
