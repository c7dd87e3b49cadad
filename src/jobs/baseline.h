/*
 * The baseline job (the seed's ml_batch_runner, SPEC §6.1): one moving-average
 * prediction per active sensor with a recent reading, an anomaly score for its
 * newest reading, and an ml_events row while the prediction violates an active
 * critical threshold. Reads sensors in keyset pages: memory is bounded by the
 * page size and the window, however many sensors and readings there are.
 */
#ifndef IOT_JOB_BASELINE_H
#define IOT_JOB_BASELINE_H

#include "store/store.h"

#include <stdint.h>

#define BASELINE_MODEL_NAME "baseline_moving_average"
#define BASELINE_EVENT_TYPE "PRED_THRESHOLD_BREACH"

struct baseline_opts {
    int64_t lookback_ms;
    int64_t horizon_min;
    size_t window;
    double anomaly_z;
};

struct baseline_summary {
    uint64_t sensors, predictions, anomalies, events_opened, events_resolved, failed;
    int64_t duration_ms;
};

/*
 * Runs once. Returns 0 when the run completed (even if some sensors failed:
 * see summary->failed), or an error when the job could not run at all.
 */
int job_baseline_run(struct store *s, const struct baseline_opts *o, struct baseline_summary *sum);

#endif
