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
 * Applies the readings of njobs jobs, in job order and within each job in
 * reading-time order (sorting each job's readings), and sets each reading's
 * cls, late and final ts. Every sensor of the jobs is loaded (on a shared
 * backend: locked) in one call, their readings stored in one
 * store_readings_insert and their states in one store_states_put, so a whole
 * batch costs one call of each. Then the caller ends what was applied:
 * router_packet_done once it is sure to be part of the transaction (its
 * savepoint released, or no savepoint), or router_abort_packet if this or a
 * later step failed and it was rolled back.
 */
int router_apply(struct router *r, struct store *s, struct write_job *const *jobs, size_t njobs);

/* What router_apply applied is part of the transaction: its counters join the transaction's. */
void router_packet_done(struct router *r);

/* Forgets the in-memory effects of what router_apply applied (rolled back). */
void router_abort_packet(struct router *r);

/*
 * Ends the transaction: on commit the batch's counters become visible;
 * otherwise all cached state is forgotten (the database rolled back).
 */
void router_end_tx(struct router *r, int committed);

/* Counters; read by the writer after commit. */
void router_stats(struct router *r, struct router_stats *out);

#endif
