#include "ingest/alert_engine.h"
#include "core/timefmt.h"

#include <stdio.h>
#include <string.h>

static void describe(struct store_alert *a, const char *sensor_uuid, double value)
{
    switch (a->kind) {
    case ALERT_THRESHOLD:
        snprintf(a->message, sizeof a->message, "sensor %s: value %g outside its %s range",
                 sensor_uuid, value, severity_name(a->severity));
        break;
    case ALERT_DELTA_SPIKE:
        snprintf(a->message, sizeof a->message, "sensor %s: jump to %g exceeds delta_max",
                 sensor_uuid, value);
        break;
    case ALERT_NO_DATA:
    case ALERT_KINDS:
        break;
    }
}

int alert_engine_violation(struct store *s, struct alert_set set, enum alert_kind kind,
                           enum severity sev, int64_t thr_id, const struct alert_reading *r,
                           struct alert_counts *counts)
{
    struct store_alert *a = &set.a[kind];
    int rc;
    if (!set.present[kind]) {
        memset(a, 0, sizeof *a);
        a->sensor_id = r->sensor_id;
        a->device_id = r->device_id;
        a->threshold_id = thr_id;
        a->severity = sev;
        a->kind = kind;
        a->active = 1;
        a->first_value = a->last_value = r->value;
        a->hit_count = 1;
        a->triggered_at = a->last_seen_at = r->ts;
        describe(a, r->sensor_uuid, r->value);
        if ((rc = store_alert_insert(s, a))) return rc;
        set.present[kind] = 1;
        if (counts) counts->opened++;
        return store_notification_insert(s, a->id, EVENT_TRIGGERED, sev, r->now);
    }
    int escalate = sev == SEV_CRITICAL && a->severity == SEV_WARNING;
    a->last_value = r->value;
    a->last_seen_at = r->ts;
    a->hit_count++;
    /* threshold_id follows the most severe threshold violated, never below the alert's severity. */
    if (sev >= a->severity) a->threshold_id = thr_id;
    if (escalate) {
        a->severity = SEV_CRITICAL;
        describe(a, r->sensor_uuid, r->value);
    }
    if ((rc = store_alert_update(s, a))) return rc;
    if (!escalate) return 0;
    if (counts) counts->escalated++;
    return store_notification_insert(s, a->id, EVENT_ESCALATED, SEV_CRITICAL, r->now);
}

static int resolve(struct store *s, struct alert_set set, enum alert_kind kind, int64_t ts,
                   int64_t now, struct alert_counts *counts)
{
    struct store_alert *a = &set.a[kind];
    a->active = 0;
    a->resolved_at = ts;
    int rc = store_alert_update(s, a);
    if (rc) return rc;
    set.present[kind] = 0;
    if (counts) counts->resolved++;
    return store_notification_insert(s, a->id, EVENT_RESOLVED, a->severity, now);
}

int alert_engine_after_reading(struct store *s, struct alert_set set, int is_normal,
                               int64_t normal_run, int64_t clear_after,
                               const struct alert_reading *r, struct alert_counts *counts)
{
    int rc;
    if (set.present[ALERT_NO_DATA] && (rc = resolve(s, set, ALERT_NO_DATA, r->ts, r->now, counts)))
        return rc;
    if (!is_normal || normal_run < clear_after) return 0;
    for (int k = 0; k < ALERT_KINDS; k++) {
        if (set.present[k] && (rc = resolve(s, set, (enum alert_kind)k, r->ts, r->now, counts)))
            return rc;
    }
    return 0;
}

int alert_engine_no_data(struct store *s, struct alert_set set, int64_t sensor_id,
                         int64_t device_id, const char *sensor_uuid, int64_t silent_since,
                         int64_t detect_time, int *opened, struct alert_counts *counts)
{
    *opened = 0;
    if (set.present[ALERT_NO_DATA]) return 0;
    struct store_alert *a = &set.a[ALERT_NO_DATA];
    memset(a, 0, sizeof *a);
    a->sensor_id = sensor_id;
    a->device_id = device_id;
    a->severity = SEV_WARNING;
    a->kind = ALERT_NO_DATA;
    a->active = 1;
    a->hit_count = 1;
    a->triggered_at = a->last_seen_at = detect_time;
    char since[TIMEFMT_RFC3339_LEN];
    timefmt_format_rfc3339(silent_since, since);
    snprintf(a->message, sizeof a->message, "sensor %s: no reading since %s", sensor_uuid, since);
    int rc = store_alert_insert(s, a);
    if (rc) return rc;
    set.present[ALERT_NO_DATA] = 1;
    *opened = 1;
    if (counts) counts->opened++;
    return store_notification_insert(s, a->id, EVENT_TRIGGERED, SEV_WARNING, detect_time);
}
