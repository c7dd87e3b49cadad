#include "jobs/baseline.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "core/timefmt.h"
#include "ingest/classifier.h"
#include "jobs/baseline_math.h"
#include "jobs/job_progress.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#define PAGE              256
#define MAX_PAGE_FAILURES 3

struct run {
    struct store *s;
    const struct baseline_opts *o;
    struct baseline_summary *sum;
    int64_t model_id, now;
    struct store_reading *rows;
    double *values;
};

/* Opens, keeps or resolves the sensor's breach event for prediction p. */
static int breach_event(struct run *r, const struct store_job_sensor *sen,
                        const struct store_prediction *p)
{
    const struct store_threshold *c = &sen->thr[SEV_CRITICAL];
    int violates = classifier_violates_range(c, p->predicted_value);
    int64_t active = 0;
    int rc = store_ml_event_active(r->s, sen->id, BASELINE_EVENT_TYPE, &active);
    if (rc && rc != IOT_ENOTFOUND) return rc;
    if (!violates) {
        if (rc == IOT_ENOTFOUND) return 0;
        if ((rc = store_ml_event_resolve(r->s, active))) return rc;
        r->sum->events_resolved++;
        return 0;
    }
    if (rc == 0) return 0; /* already active: no duplicate */
    int above = c->has_max && p->predicted_value > c->max;
    const char *bound = above ? "max" : "min";
    double bound_value = above ? c->max : c->min;
    char when[TIMEFMT_RFC3339_LEN], title[256], message[512];
    timefmt_format_rfc3339(p->target_ts, when);
    snprintf(title, sizeof title, "Predicted critical breach on sensor %s", sen->uuid);
    snprintf(message, sizeof message,
             "Sensor %s (%s): predicted value %g for %s is %s the critical %s %g", sen->uuid,
             sen->name, p->predicted_value, when, above ? "above" : "below", bound, bound_value);
    json_t *payload = json_pack("{s:I, s:s, s:s, s:f, s:s, s:f, s:s}", "prediction_id",
                                (json_int_t)p->id, "sensor_uuid", sen->uuid, "device_uuid",
                                sen->device_uuid, "predicted_value", p->predicted_value, "bound",
                                bound, "bound_value", bound_value, "target_ts", when);
    char *ptext = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    json_decref(payload);
    if (!ptext) return IOT_ENOMEM;
    struct store_ml_event e = {0,          sen->id, sen->device_id, p->id, BASELINE_EVENT_TYPE,
                               "critical", title,   message,        ptext, r->now};
    rc = store_ml_event_insert(r->s, &e);
    free(ptext);
    if (!rc) r->sum->events_opened++;
    return rc;
}

static int one_sensor(struct run *r, const struct store_job_sensor *sen)
{
    size_t n = 0;
    int rc = store_recent_readings(r->s, sen->id, r->o->window + 1, r->rows, &n);
    if (rc || n == 0) return rc;
    for (size_t i = 0; i < n; i++)
        r->values[i] = r->rows[i].value;
    struct baseline_result b;
    baseline_compute(r->values, n, r->o->window, r->o->anomaly_z, &b);
    struct store_prediction p = {
        .sensor_id = sen->id,
        .model_id = r->model_id,
        .predicted_value = b.predicted,
        .confidence = b.confidence,
        .anomaly_score = b.score,
        .horizon_minutes = r->o->horizon_min,
        .target_ts = r->rows[0].ts + r->o->horizon_min * 60000,
        .predicted_at = r->now,
        .is_anomaly = b.is_anomaly,
    };
    if ((rc = store_prediction_insert(r->s, &p))) return rc;
    r->sum->predictions++;
    r->sum->anomalies += b.is_anomaly;
    return breach_event(r, sen, &p);
}

/* One page of sensors in one transaction. */
static int one_page(struct run *r, const struct store_job_sensor *page, size_t n)
{
    struct baseline_summary before = *r->sum;
    int rc = store_tx_begin(r->s);
    for (size_t i = 0; !rc && i < n; i++)
        rc = one_sensor(r, &page[i]);
    if (!rc) rc = store_tx_commit(r->s);
    if (rc) {
        store_tx_rollback(r->s);
        *r->sum = before;
        r->sum->failed += n;
        LOG(LOG_WARN, "baseline_page_failed", "err=\"%s\" db=\"%s\" sensors=%zu", iot_strerror(rc),
            store_errmsg(r->s), n);
    }
    r->sum->sensors += n;
    return rc;
}

int job_baseline_run(struct store *s, const struct baseline_opts *o, struct baseline_summary *sum)
{
    struct job_progress prog;
    struct run r = {s, o, sum, 0, clock_now_ms(), NULL, NULL};
    struct store_job_sensor *page = calloc(PAGE, sizeof *page);
    r.rows = calloc(o->window + 1, sizeof *r.rows);
    r.values = calloc(o->window + 1, sizeof *r.values);
    *sum = (struct baseline_summary){0};
    int rc = page && r.rows && r.values ? 0 : IOT_ENOMEM;
    char params[160];
    snprintf(params, sizeof params, "{\"window\":%zu,\"horizon_minutes\":%lld,\"anomaly_z\":%g}",
             o->window, (long long)o->horizon_min, o->anomaly_z);
    if (!rc)
        rc = store_model_ensure(s, BASELINE_MODEL_NAME, "moving_average", "1", params, r.now,
                                &r.model_id);
    job_progress_start(&prog, "baseline", "sensors");
    int64_t after = 0;
    int failures = 0;
    while (!rc) {
        size_t n = 0;
        if ((rc = store_job_sensors(s, r.now - o->lookback_ms, after, PAGE, page, &n)) || n == 0)
            break;
        after = page[n - 1].id;
        if (one_page(&r, page, n) == 0)
            failures = 0;
        else if (++failures >= MAX_PAGE_FAILURES)
            rc = IOT_EUNAVAIL;
        job_progress_tick(&prog, sum->sensors);
    }
    sum->duration_ms = job_progress_end(&prog);
    free(page);
    free(r.rows);
    free(r.values);
    return rc;
}
