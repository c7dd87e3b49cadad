/*
 * In-memory cache of per-sensor classification state and active alerts,
 * used only by the writer thread (no locking). The database is the
 * authority: entries are loaded inside the writer's transaction on a miss,
 * and the whole cache is dropped whenever the store's change epoch moves
 * (another process wrote). Bounded by max entries, least recently used
 * first out; entries touched by the packet in progress are pinned.
 */
#ifndef IOT_SENSOR_STATE_H
#define IOT_SENSOR_STATE_H

#include "core/lru.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

/*
 * One per cached sensor, 104 bytes (a 112-byte malloc chunk): the fields are
 * ordered so that no padding is left (docs/operations.md, memory per sensor).
 * The alerts, 888 bytes, are allocated only for a sensor that has had an
 * active alert while cached (a small minority).
 */
struct sensor_entry {
    struct store_sensor_state st;
    struct store_alert *alerts; /* ALERT_KINDS slots, or NULL: none present (owned) */
    size_t router_row;          /* owned by the router: 1 + its newest row in the packet */
    /* Internal: the pin of the packet in progress and the cache's links. */
    uint64_t pin;
    struct lru_node node;
    unsigned char present[ALERT_KINDS]; /* 1: alerts[k] holds an active alert */
};

struct sensor_states;

int sensor_states_create(size_t max_entries, struct sensor_states **out);
void sensor_states_destroy(struct sensor_states *c); /* accepts NULL */

/* Drops every entry if the store's change epoch moved. Call after tx begin. */
int sensor_states_validate(struct sensor_states *c, struct store *s);

/*
 * Makes sure the n sensors of ids (distinct, ascending) are cached, loading
 * the missing ones in one store_states_load call, and pins them all; out[i]
 * is the entry of ids[i], valid until the next packet starts (see
 * sensor_states_next_packet).
 */
int sensor_states_load(struct sensor_states *c, struct store *s, const int64_t *ids, size_t n,
                       struct sensor_entry **out);

/* Gives e its alert slots if it has none yet. Returns 0 or IOT_ENOMEM. */
int sensor_entry_alerts(struct sensor_entry *e);

/* Starts a new packet: unpins the previous packet's entries. */
void sensor_states_next_packet(struct sensor_states *c);
/* Evicts every entry pinned by the current packet (its savepoint rolled back). */
void sensor_states_evict_pinned(struct sensor_states *c);
/* Drops everything (transaction failed). */
void sensor_states_clear(struct sensor_states *c);

#endif
