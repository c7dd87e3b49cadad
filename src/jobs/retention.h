/*
 * job retention (SPEC §12, docs/jobs.md): first rolls up every complete hour
 * not rolled up yet (one hour per short transaction), then deletes readings
 * older than RETENTION_DAYS and rollups older than ROLLUP_RETENTION_DAYS in
 * chunks of one short transaction each, so the gateway's writer never waits
 * long. Alerts, notifications, predictions, ML events and sensor state are
 * never touched.
 */
#ifndef IOT_JOB_RETENTION_H
#define IOT_JOB_RETENTION_H

#include "store/store.h"

/*
 * Deletion runs in chunks of one transaction each, sized to take about
 * RETENTION_CHUNK_US (between RETENTION_CHUNK_MIN and _MAX rows), and after
 * each chunk the job pauses as long as the chunk took: on SQLite the
 * gateway's writer waits for the one write lock, so it gets the lock at
 * least half the time and never waits much longer than one chunk.
 */
#define RETENTION_CHUNK_US  10000
#define RETENTION_CHUNK_MIN 100
#define RETENTION_CHUNK_MAX 10000

struct retention_opts {
    int64_t keep_readings_ms; /* 0 = keep forever */
    int64_t keep_rollups_ms;  /* 0 = keep forever */
};

struct retention_summary {
    uint64_t hours, rollups;   /* hours rolled up, rollup rows written */
    uint64_t readings_deleted; /* raw readings deleted */
    uint64_t rollups_deleted;
    int64_t rolled_until; /* the rollup mark after the run (ms) */
    int64_t duration_ms;
};

/*
 * One run at the wall-clock time now (ms). Returns 0, or the store error
 * that stopped it (what was committed before stays: every step is its own
 * transaction, and the next run goes on from there).
 */
int job_retention_run(struct store *s, const struct retention_opts *o, int64_t now,
                      struct retention_summary *sum);

#endif
