/*
 * A bounded FIFO of readings: the hand-off queue of both brokers (memory and
 * NATS). Not thread-safe: the owning broker's mutex guards every call.
 *
 * The slots are allocated once, for cap messages, but touched only as deep as
 * the backlog ever reaches: whenever the ring empties its head goes back to
 * slot 0. A queue drained as fast as it fills (the usual case) so keeps a few
 * pages resident instead of walking through all cap slots, which at the
 * default BROKER_QUEUE_MAX of 65,536 is 10 MiB of RSS for nothing.
 */
#ifndef IOT_BROKER_RING_H
#define IOT_BROKER_RING_H

#include "broker/broker.h"

#include <stdbool.h>
#include <stddef.h>

struct broker_ring {
    struct broker_reading *slot; /* cap slots, owned */
    size_t cap, head, count;     /* head: the oldest queued message */
};

/* Allocates cap slots (lazily backed by the OS). 0, IOT_EINVAL or IOT_ENOMEM. */
int broker_ring_init(struct broker_ring *r, size_t cap);
/* Frees the slots; the ring is empty and unusable until init. NULL-safe. */
void broker_ring_fini(struct broker_ring *r);

/* Appends a copy of *m. False when the ring is full (nothing changes). */
static inline bool broker_ring_push(struct broker_ring *r, const struct broker_reading *m)
{
    if (r->count == r->cap) return false;
    r->slot[(r->head + r->count) % r->cap] = *m;
    r->count++;
    return true;
}

/* Copies the oldest message to *out and removes it. False when empty. */
static inline bool broker_ring_pop(struct broker_ring *r, struct broker_reading *out)
{
    if (r->count == 0) return false;
    *out = r->slot[r->head];
    r->head = --r->count == 0 ? 0 : (r->head + 1) % r->cap;
    return true;
}

/* Drops every queued message; returns how many there were. */
static inline size_t broker_ring_clear(struct broker_ring *r)
{
    size_t n = r->count;
    r->head = r->count = 0;
    return n;
}

#endif
