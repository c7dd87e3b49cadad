/*
 * The router (the seed's ReadingRouter): applies the readings of one write
 * job, in reading-time order, inside the writer's transaction. For each
 * reading it decides late or not, classifies it against the sensor's
 * previous reading and thresholds, routes it to the alert pipeline by class
 * (alert/warning -> threshold alert, spike -> delta_spike alert, normal ->
 * clearing), updates the sensor state, and stores the readings. Runs only on
 * the writer thread.
 */
#ifndef IOT_ROUTER_H
#define IOT_ROUTER_H

#include "ingest/alert_engine.h"
#include "ingest/sensor_state.h"
#include "ingest/write_job.h"

struct router;

struct router_stats {
    uint64_t by_class[CLASS_INVALID]; /* stored readings by class */
    uint64_t late;
    struct alert_counts alerts;
};

int router_create(size_t state_cache_max, int64_t alert_clear_after, struct router **out);
void router_destroy(struct router *r); /* accepts NULL */

/* Call right after the transaction begins: drops cached state if another process wrote. */
int router_begin_tx(struct router *r, struct store *s);

/*
 * Applies job's readings (sorting them by reading time) and sets each
 * reading's cls and late. Then the caller ends the packet: its savepoint
 * released, router_packet_done; rolled back (this or a later step of the
 * packet failed), router_abort_packet.
 */
int router_apply(struct router *r, struct store *s, struct write_job *job);
/* The packet's savepoint was released: its counters join the transaction's. */
void router_packet_done(struct router *r);
/* Forgets the in-memory effects of the packet just rolled back. */
void router_abort_packet(struct router *r);
/*
 * Ends the transaction: on commit the batch's counters become visible;
 * otherwise all cached state is forgotten (the database rolled back).
 */
void router_end_tx(struct router *r, int committed);

/* Counters; read by the writer after commit. */
void router_stats(struct router *r, struct router_stats *out);

#endif
