/*
 * The one place where alert transitions are decided (SPEC §4, §6.3, §10).
 * The writer calls it for every non-late reading; the silence job calls it
 * to open no_data alerts. It works on a sensor's set of active alerts (one
 * slot per kind) and applies each transition to the store, inside the
 * caller's transaction, together with its notification.
 *
 * Alert times (triggered_at, last_seen_at, resolved_at) are reading times;
 * notification created_at is server time (now).
 */
#ifndef IOT_ALERT_ENGINE_H
#define IOT_ALERT_ENGINE_H

#include "store/store.h"

struct alert_set {
    struct store_alert *a;  /* ALERT_KINDS slots */
    unsigned char *present; /* ALERT_KINDS flags */
};

struct alert_counts {
    uint64_t opened, escalated, resolved;
};

struct alert_reading {
    int64_t sensor_id, device_id;
    const char *sensor_uuid;
    double value;
    int64_t ts;  /* reading time */
    int64_t now; /* server time */
};

/*
 * A reading that violates: kind ALERT_THRESHOLD (sev = severity of the most
 * severe range violated, thr_id that threshold) or ALERT_DELTA_SPIKE
 * (sev = warning, thr_id = threshold whose delta_max was exceeded). Opens
 * the alert with a 'triggered' notification, or refreshes it; a warning
 * threshold alert hit by a critical violation escalates once ('escalated').
 */
int alert_engine_violation(struct store *s, struct alert_set set, enum alert_kind kind,
                           enum severity sev, int64_t thr_id, const struct alert_reading *r,
                           struct alert_counts *counts);

/*
 * A non-late reading that is not a violation of `kind`: resolves the no_data
 * alert (any non-late reading does) and, when normal_run has reached
 * clear_after, every other active alert ('resolved' notifications).
 * is_normal says whether the reading's class is normal.
 */
int alert_engine_after_reading(struct store *s, struct alert_set set, int is_normal,
                               int64_t normal_run, int64_t clear_after,
                               const struct alert_reading *r, struct alert_counts *counts);

/*
 * Opens a no_data alert for a silent sensor (triggered_at = detect_time),
 * unless one is active. Returns 0 and *opened = 1 when it opened one.
 */
int alert_engine_no_data(struct store *s, struct alert_set set, int64_t sensor_id,
                         int64_t device_id, const char *sensor_uuid, int64_t silent_since,
                         int64_t detect_time, int *opened, struct alert_counts *counts);

#endif
