/*
 * In-memory broker: a bounded ring of queue_max messages, allocated once at
 * create, and one delivery thread that hands each message, in publication
 * order, to every subscriber.
 *
 * Locking: `mu` guards the ring, the stop flag and the counters; publish
 * holds it for O(1) (one struct copy) and never waits on anything else. The
 * subscriber table is append-only: a slot is written under `sub_mu`, then
 * published to the delivery thread by a release store of `nsubs`, so the
 * delivery thread reads it without any lock.
 */
#include "broker/broker.h"
#include "broker/broker_ring.h"
#include "core/err.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#define MEMORY_MAX_SUBSCRIBERS 16

struct subscriber {
    broker_subscriber_fn fn;
    void *ud;
};

struct memory_broker {
    struct broker base;

    pthread_mutex_t mu;
    pthread_cond_t nonempty;
    struct broker_ring ring;
    bool stopping;
    uint64_t published, dropped, delivered;

    pthread_mutex_t sub_mu; /* serialises subscribe() calls */
    struct subscriber subs[MEMORY_MAX_SUBSCRIBERS];
    atomic_size_t nsubs;

    pthread_t thread;
    /* What create got as far as, so destroy can undo exactly that. */
    bool mu_ok, cond_ok, sub_mu_ok, thread_ok;
};

/*
 * Delivery thread: pops one message at a time (copying it out, so the slot is
 * free again while subscribers run) and calls every subscriber registered at
 * that moment. After destroy sets `stopping`, publish takes nothing more, so
 * the loop ends once the messages queued at that point are delivered.
 */
static void *memory_deliver_loop(void *arg)
{
    struct memory_broker *m = arg;
    struct broker_reading msg;

    for (;;) {
        pthread_mutex_lock(&m->mu);
        while (m->ring.count == 0 && !m->stopping)
            pthread_cond_wait(&m->nonempty, &m->mu);
        if (!broker_ring_pop(&m->ring, &msg)) { /* stopping and drained */
            pthread_mutex_unlock(&m->mu);
            break;
        }
        pthread_mutex_unlock(&m->mu);

        size_t n = atomic_load_explicit(&m->nsubs, memory_order_acquire);
        for (size_t i = 0; i < n; i++)
            m->subs[i].fn(&msg, m->subs[i].ud);

        pthread_mutex_lock(&m->mu);
        m->delivered++;
        pthread_mutex_unlock(&m->mu);
    }
    return NULL;
}

/* Never blocks beyond the O(1) critical section; a full queue counts a drop. */
static int memory_publish(struct broker *b, const struct broker_reading *msgs, size_t n)
{
    struct memory_broker *m = (struct memory_broker *)b;
    bool wake = false;

    if (!msgs) return IOT_EINVAL;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < n; i++) {
        bool was_empty = m->ring.count == 0;
        if (m->stopping || !broker_ring_push(&m->ring, &msgs[i])) {
            m->dropped++;
            continue;
        }
        wake = wake || was_empty;
        m->published++;
    }
    pthread_mutex_unlock(&m->mu);
    if (wake) pthread_cond_signal(&m->nonempty);
    return 0;
}

/*
 * Safe while messages flow: the new subscriber sees the messages delivered
 * after it is registered. Returns IOT_EINVAL for a NULL fn, IOT_EFULL past
 * MEMORY_MAX_SUBSCRIBERS. A subscriber cannot be removed.
 */
static int memory_subscribe(struct broker *b, broker_subscriber_fn fn, void *ud)
{
    struct memory_broker *m = (struct memory_broker *)b;
    int rc = 0;

    if (!fn) return IOT_EINVAL;
    pthread_mutex_lock(&m->sub_mu);
    size_t n = atomic_load_explicit(&m->nsubs, memory_order_relaxed);
    if (n == MEMORY_MAX_SUBSCRIBERS) {
        rc = IOT_EFULL;
    } else {
        m->subs[n].fn = fn;
        m->subs[n].ud = ud;
        atomic_store_explicit(&m->nsubs, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&m->sub_mu);
    return rc;
}

/*
 * published: taken into the queue; dropped: refused (queue full or stopping);
 * delivered: left the queue and was handed to every subscriber registered at
 * that time (with no subscriber the message is simply discarded), so
 * published - delivered is the current backlog.
 */
static void memory_stats(struct broker *b, struct broker_stats *out)
{
    struct memory_broker *m = (struct memory_broker *)b;

    pthread_mutex_lock(&m->mu);
    out->published = m->published;
    out->throttled = 0;
    out->dropped = m->dropped;
    out->delivered = m->delivered;
    pthread_mutex_unlock(&m->mu);
}

static enum broker_health memory_health(struct broker *b)
{
    (void)b;
    return BROKER_OK;
}

/*
 * Stops taking messages, lets the thread deliver what is queued (at most
 * queue_max messages; a subscriber that never returns keeps destroy waiting),
 * joins it and frees everything. Must not be called from a subscriber.
 * Accepts NULL and a half-built broker.
 */
static void memory_destroy(struct broker *b)
{
    struct memory_broker *m = (struct memory_broker *)b;

    if (!m) return;
    if (m->thread_ok) {
        pthread_mutex_lock(&m->mu);
        m->stopping = true;
        pthread_mutex_unlock(&m->mu);
        pthread_cond_signal(&m->nonempty);
        pthread_join(m->thread, NULL);
    }
    if (m->sub_mu_ok) pthread_mutex_destroy(&m->sub_mu);
    if (m->cond_ok) pthread_cond_destroy(&m->nonempty);
    if (m->mu_ok) pthread_mutex_destroy(&m->mu);
    broker_ring_fini(&m->ring);
    free(m);
}

static const struct broker_ops memory_ops = {
    .name = "memory",
    .publish = memory_publish,
    .subscribe = memory_subscribe,
    .stats = memory_stats,
    .health = memory_health,
    .destroy = memory_destroy,
};

/*
 * Creates the broker and starts its delivery thread. *out is owned by the
 * caller (broker_destroy). Returns 0, IOT_EINVAL (queue_max 0), IOT_ENOMEM,
 * or IOT_EIO when a lock or the thread cannot be created.
 */
int broker_memory_create(size_t queue_max, struct broker **out)
{
    struct memory_broker *m;

    if (!out) return IOT_EINVAL;
    *out = NULL;
    if (queue_max == 0) return IOT_EINVAL;
    if (!(m = calloc(1, sizeof *m))) return IOT_ENOMEM;
    m->base.ops = &memory_ops;
    atomic_init(&m->nsubs, 0);
    if (broker_ring_init(&m->ring, queue_max)) {
        memory_destroy(&m->base);
        return IOT_ENOMEM;
    }
    if (!(m->mu_ok = pthread_mutex_init(&m->mu, NULL) == 0) ||
        !(m->cond_ok = pthread_cond_init(&m->nonempty, NULL) == 0) ||
        !(m->sub_mu_ok = pthread_mutex_init(&m->sub_mu, NULL) == 0) ||
        !(m->thread_ok = pthread_create(&m->thread, NULL, memory_deliver_loop, m) == 0)) {
        memory_destroy(&m->base);
        return IOT_EIO;
    }
    *out = &m->base;
    return 0;
}
