/*
 * The fault-injecting store wrapper (see store_fault.h). Each op first asks
 * enter() whether an armed fault fires on this call; if not, it forwards to
 * the inner store through the usual inline wrappers.
 */
#include "store/store_fault.h"
#include "core/err.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct fault {
    int err;       /* 0: disarmed */
    int sticky;    /* keeps failing once it fired */
    uint64_t skip; /* calls still to let through before the failing one */
};

struct fault_store {
    struct store base;
    struct store *inner;
    pthread_mutex_t mu; /* guards f, calls, injected */
    struct fault f[STORE_FAULT_OPS];
    uint64_t calls[STORE_FAULT_OPS];
    uint64_t injected;
    /* Owner thread only: the last call was an injected failure; err describes it. */
    int faulted;
    char err[128];
};

static const struct store_ops fault_ops;

static const char *const op_names[STORE_FAULT_OPS] = {
    [STORE_FAULT_ANY] = "any",
    [STORE_FAULT_PING] = "ping",
    [STORE_FAULT_SCHEMA_INIT] = "schema_init",
    [STORE_FAULT_SCHEMA_VERSION] = "schema_version",
    [STORE_FAULT_DEVICE_GET] = "device_get",
    [STORE_FAULT_DEVICE_GET_BY_ID] = "device_get_by_id",
    [STORE_FAULT_DEVICE_SENSORS] = "device_sensors",
    [STORE_FAULT_SENSOR_GET] = "sensor_get",
    [STORE_FAULT_DEVICE_STATUS] = "device_status",
    [STORE_FAULT_DEVICE_ADD] = "device_add",
    [STORE_FAULT_DEVICE_SET_ACTIVE] = "device_set_active",
    [STORE_FAULT_DEVICE_DELETE] = "device_delete",
    [STORE_FAULT_SENSOR_ADD] = "sensor_add",
    [STORE_FAULT_SENSOR_SET_ACTIVE] = "sensor_set_active",
    [STORE_FAULT_THRESHOLD_SET] = "threshold_set",
    [STORE_FAULT_THRESHOLD_CLEAR] = "threshold_clear",
    [STORE_FAULT_TX_BEGIN] = "tx_begin",
    [STORE_FAULT_TX_COMMIT] = "tx_commit",
    [STORE_FAULT_TX_ROLLBACK] = "tx_rollback",
    [STORE_FAULT_SAVEPOINT] = "savepoint",
    [STORE_FAULT_SAVEPOINT_RELEASE] = "savepoint_release",
    [STORE_FAULT_SAVEPOINT_ROLLBACK] = "savepoint_rollback",
    [STORE_FAULT_CHANGE_EPOCH] = "change_epoch",
    [STORE_FAULT_PACKET_GET] = "packet_get",
    [STORE_FAULT_PACKET_PUT] = "packet_put",
    [STORE_FAULT_PACKETS_PURGE] = "packets_purge",
    [STORE_FAULT_STATE_GET] = "state_get",
    [STORE_FAULT_STATE_PUT] = "state_put",
    [STORE_FAULT_ALERTS_ACTIVE] = "alerts_active",
    [STORE_FAULT_STATES_LOAD] = "states_load",
    [STORE_FAULT_STATES_PUT] = "states_put",
    [STORE_FAULT_ALERT_INSERT] = "alert_insert",
    [STORE_FAULT_ALERT_UPDATE] = "alert_update",
    [STORE_FAULT_NOTIFICATION_INSERT] = "notification_insert",
    [STORE_FAULT_READINGS_INSERT] = "readings_insert",
    [STORE_FAULT_DEVICE_TOUCH] = "device_touch",
    [STORE_FAULT_JOB_SENSORS] = "job_sensors",
    [STORE_FAULT_SILENT_SENSORS] = "silent_sensors",
    [STORE_FAULT_JOB_SENSOR_GET] = "job_sensor_get",
    [STORE_FAULT_RECENT_READINGS] = "recent_readings",
    [STORE_FAULT_MODEL_ENSURE] = "model_ensure",
    [STORE_FAULT_PREDICTION_INSERT] = "prediction_insert",
    [STORE_FAULT_ML_EVENT_ACTIVE] = "ml_event_active",
    [STORE_FAULT_ML_EVENT_INSERT] = "ml_event_insert",
    [STORE_FAULT_ML_EVENT_RESOLVE] = "ml_event_resolve",
    [STORE_FAULT_UNEXPLAINED] = "unexplained",
    [STORE_FAULT_PREDICTION_EXPLAIN] = "prediction_explain",
    [STORE_FAULT_ONLINE_LOAD] = "online_load",
    [STORE_FAULT_ONLINE_APPLY] = "online_apply",
    [STORE_FAULT_ONLINE_PRUNE] = "online_prune",
    [STORE_FAULT_JOB_STAT_RECORD] = "job_stat_record",
    [STORE_FAULT_JOB_STATS] = "job_stats",
    [STORE_FAULT_MAINTAIN] = "maintain",
    [STORE_FAULT_ROLLUP_STEP] = "rollup_step",
    [STORE_FAULT_READINGS_EXPIRE] = "readings_expire",
    [STORE_FAULT_ROLLUPS_EXPIRE] = "rollups_expire",
    [STORE_FAULT_READINGS_RANGE] = "readings_range",
    [STORE_FAULT_READINGS_BUCKETS] = "readings_buckets",
};

const char *store_fault_op_name(enum store_fault_op op)
{
    if ((unsigned)op >= STORE_FAULT_OPS || !op_names[op]) return "unknown";
    return op_names[op];
}

static struct fault_store *fault_store(struct store *s)
{
    assert(s && s->ops == &fault_ops);
    return (struct fault_store *)s;
}

int store_fault_is_wrapper(const struct store *s)
{
    return s && s->ops == &fault_ops;
}

/* Counts one call of f; 1 if it is the one (or, sticky, one of those) that fails. */
static int fault_tick(struct fault *f)
{
    if (!f->err) return 0;
    if (f->skip) {
        f->skip--;
        return 0;
    }
    return 1;
}

/*
 * Called first by every op: counts the call and decides whether an armed
 * fault fires. Returns 0 and sets *inner to forward, or the injected error.
 */
static int enter(struct store *base, enum store_fault_op op, struct store **inner)
{
    struct fault_store *fs = (struct fault_store *)base;
    int err = 0;
    pthread_mutex_lock(&fs->mu);
    fs->calls[op]++;
    fs->calls[STORE_FAULT_ANY]++;
    int own = fault_tick(&fs->f[op]);
    int any = fault_tick(&fs->f[STORE_FAULT_ANY]);
    enum store_fault_op fired = own ? op : STORE_FAULT_ANY;
    if (own || any) {
        err = fs->f[fired].err;
        fs->injected++;
    }
    /* A one-shot fault that fired is spent, even when the other one won. */
    if (own && !fs->f[op].sticky) fs->f[op].err = 0;
    if (any && !fs->f[STORE_FAULT_ANY].sticky) fs->f[STORE_FAULT_ANY].err = 0;
    pthread_mutex_unlock(&fs->mu);

    if (err) {
        fs->faulted = 1;
        snprintf(fs->err, sizeof fs->err, "injected fault: %s failed with \"%s\"%s",
                 store_fault_op_name(op), iot_strerror(err),
                 fired == STORE_FAULT_ANY ? " (any)" : "");
        return err;
    }
    fs->faulted = 0;
    *inner = fs->inner;
    return 0;
}

static void arm(struct store *s, enum store_fault_op op, int nth, int err, int sticky)
{
    struct fault_store *fs = fault_store(s);
    assert((unsigned)op < STORE_FAULT_OPS);
    pthread_mutex_lock(&fs->mu);
    if (err == 0 || nth < 1)
        fs->f[op] = (struct fault){0, 0, 0};
    else
        fs->f[op] = (struct fault){err, sticky, (uint64_t)nth - 1};
    pthread_mutex_unlock(&fs->mu);
}

void store_fault_set(struct store *s, enum store_fault_op op, int nth, int err)
{
    arm(s, op, nth, err, 0);
}

void store_fault_set_sticky(struct store *s, enum store_fault_op op, int nth, int err)
{
    arm(s, op, nth, err, 1);
}

void store_fault_clear(struct store *s, enum store_fault_op op)
{
    arm(s, op, 0, 0, 0);
}

void store_fault_clear_all(struct store *s)
{
    for (int op = 0; op < STORE_FAULT_OPS; op++)
        arm(s, (enum store_fault_op)op, 0, 0, 0);
}

uint64_t store_fault_calls(struct store *s, enum store_fault_op op)
{
    struct fault_store *fs = fault_store(s);
    assert((unsigned)op < STORE_FAULT_OPS);
    pthread_mutex_lock(&fs->mu);
    uint64_t n = fs->calls[op];
    pthread_mutex_unlock(&fs->mu);
    return n;
}

uint64_t store_fault_injected(struct store *s)
{
    struct fault_store *fs = fault_store(s);
    pthread_mutex_lock(&fs->mu);
    uint64_t n = fs->injected;
    pthread_mutex_unlock(&fs->mu);
    return n;
}

int store_fault_wrap(struct store *inner, struct store **out)
{
    *out = NULL;
    struct fault_store *fs = calloc(1, sizeof *fs);
    if (!fs) {
        store_close(inner);
        return IOT_ENOMEM;
    }
    fs->base.ops = &fault_ops;
    fs->inner = inner;
    pthread_mutex_init(&fs->mu, NULL);
    *out = &fs->base;
    return 0;
}

/* ---- the ops ------------------------------------------------------------ */

static void sf_close(struct store *base)
{
    struct fault_store *fs = (struct fault_store *)base;
    store_close(fs->inner);
    pthread_mutex_destroy(&fs->mu);
    free(fs);
}

static const char *sf_errmsg(struct store *base)
{
    struct fault_store *fs = (struct fault_store *)base;
    return fs->faulted ? fs->err : store_errmsg(fs->inner);
}

static int sf_ping(struct store *base)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_PING, &in);
    return rc ? rc : store_ping(in);
}

static int sf_schema_init(struct store *base)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_SCHEMA_INIT, &in);
    return rc ? rc : store_schema_init(in);
}

static int sf_schema_version(struct store *base, int *out)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_SCHEMA_VERSION, &in);
    return rc ? rc : store_schema_version(in, out);
}

static int sf_device_get(struct store *base, const char *uuid, struct store_device *out)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_DEVICE_GET, &in);
    return rc ? rc : store_device_get(in, uuid, out);
}

static int sf_device_get_by_id(struct store *base, int64_t id, struct store_device *out)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_DEVICE_GET_BY_ID, &in);
    return rc ? rc : store_device_get_by_id(in, id, out);
}

static int sf_device_sensors(struct store *base, int64_t device_id, struct store_sensor **out,
                             size_t *n)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_DEVICE_SENSORS, &in);
    return rc ? rc : store_device_sensors(in, device_id, out, n);
}

static int sf_sensor_get(struct store *base, int64_t sensor_id, struct store_sensor *out)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_SENSOR_GET, &in);
    return rc ? rc : store_sensor_get(in, sensor_id, out);
}

static int sf_device_status(struct store *base, int64_t device_id, store_status_cb cb, void *ud)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_DEVICE_STATUS, &in);
    return rc ? rc : store_device_status(in, device_id, cb, ud);
}

static int sf_device_add(struct store *base, const char *uuid, const char *name,
                         const unsigned char key_hash[STORE_KEY_HASH_LEN], int64_t now, int64_t *id)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_DEVICE_ADD, &in);
    return rc ? rc : store_device_add(in, uuid, name, key_hash, now, id);
}

static int sf_device_set_active(struct store *base, const char *uuid, int active)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_DEVICE_SET_ACTIVE, &in);
    return rc ? rc : store_device_set_active(in, uuid, active);
}

static int sf_device_delete(struct store *base, const char *uuid, struct store_device_deleted *out)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_DEVICE_DELETE, &in);
    return rc ? rc : store_device_delete(in, uuid, out);
}

static int sf_sensor_add(struct store *base, const char *device_uuid, const char *uuid,
                         const char *name, const char *type, const char *unit, int64_t now,
                         int64_t *id, int64_t *device_id)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_SENSOR_ADD, &in);
    return rc ? rc : store_sensor_add(in, device_uuid, uuid, name, type, unit, now, id, device_id);
}

static int sf_sensor_set_active(struct store *base, const char *uuid, int active)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_SENSOR_SET_ACTIVE, &in);
    return rc ? rc : store_sensor_set_active(in, uuid, active);
}

static int sf_threshold_set(struct store *base, const char *sensor_uuid, enum severity sev,
                            const struct store_threshold *t, int64_t now, int64_t *id)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_THRESHOLD_SET, &in);
    return rc ? rc : store_threshold_set(in, sensor_uuid, sev, t, now, id);
}

static int sf_threshold_clear(struct store *base, const char *sensor_uuid, enum severity sev)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_THRESHOLD_CLEAR, &in);
    return rc ? rc : store_threshold_clear(in, sensor_uuid, sev);
}

static int sf_tx_begin(struct store *base)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_TX_BEGIN, &in);
    return rc ? rc : store_tx_begin(in);
}

/* A failed commit ends the transaction, as the SQLite backend's does. */
static int sf_tx_commit(struct store *base)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_TX_COMMIT, &in);
    if (rc) {
        store_tx_rollback(((struct fault_store *)base)->inner);
        return rc;
    }
    return store_tx_commit(in);
}

static int sf_tx_rollback(struct store *base)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_TX_ROLLBACK, &in);
    return rc ? rc : store_tx_rollback(in);
}

static int sf_savepoint(struct store *base)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_SAVEPOINT, &in);
    return rc ? rc : store_savepoint(in);
}

static int sf_savepoint_release(struct store *base)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_SAVEPOINT_RELEASE, &in);
    return rc ? rc : store_savepoint_release(in);
}

static int sf_savepoint_rollback(struct store *base)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_SAVEPOINT_ROLLBACK, &in);
    return rc ? rc : store_savepoint_rollback(in);
}

static int sf_change_epoch(struct store *base, uint64_t *out)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_CHANGE_EPOCH, &in);
    return rc ? rc : store_change_epoch(in, out);
}

static int sf_packet_get(struct store *base, int64_t device_id, const char *packet_id,
                         int64_t since, char **response)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_PACKET_GET, &in);
    return rc ? rc : store_packet_get(in, device_id, packet_id, since, response);
}

static int sf_packet_put(struct store *base, int64_t device_id, const char *packet_id,
                         const char *response, int64_t now, int64_t expired_before)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_PACKET_PUT, &in);
    return rc ? rc : store_packet_put(in, device_id, packet_id, response, now, expired_before);
}

static int sf_packets_purge(struct store *base, int64_t before)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_PACKETS_PURGE, &in);
    return rc ? rc : store_packets_purge(in, before);
}

static int sf_state_get(struct store *base, int64_t sensor_id, struct store_sensor_state *out)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_STATE_GET, &in);
    return rc ? rc : store_state_get(in, sensor_id, out);
}

static int sf_state_put(struct store *base, const struct store_sensor_state *st)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_STATE_PUT, &in);
    return rc ? rc : store_state_put(in, st);
}

static int sf_alerts_active(struct store *base, int64_t sensor_id,
                            struct store_alert out[ALERT_KINDS], int present[ALERT_KINDS])
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_ALERTS_ACTIVE, &in);
    return rc ? rc : store_alerts_active(in, sensor_id, out, present);
}

static int sf_states_load(struct store *base, const int64_t *ids, size_t n,
                          struct store_sensor_snapshot *out)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_STATES_LOAD, &in);
    return rc ? rc : store_states_load(in, ids, n, out);
}

static int sf_states_put(struct store *base, const struct store_sensor_state *const *st, size_t n)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_STATES_PUT, &in);
    return rc ? rc : store_states_put(in, st, n);
}

static int sf_alert_insert(struct store *base, struct store_alert *a)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_ALERT_INSERT, &in);
    return rc ? rc : store_alert_insert(in, a);
}

static int sf_alert_update(struct store *base, const struct store_alert *a)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_ALERT_UPDATE, &in);
    return rc ? rc : store_alert_update(in, a);
}

static int sf_notification_insert(struct store *base, int64_t alert_id, enum alert_event ev,
                                  enum severity sev, int64_t now)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_NOTIFICATION_INSERT, &in);
    return rc ? rc : store_notification_insert(in, alert_id, ev, sev, now);
}

static int sf_readings_insert(struct store *base, struct store_reading *rows, size_t n)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_READINGS_INSERT, &in);
    return rc ? rc : store_readings_insert(in, rows, n);
}

static int sf_device_touch(struct store *base, int64_t device_id, int64_t last_seen)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_DEVICE_TOUCH, &in);
    return rc ? rc : store_device_touch(in, device_id, last_seen);
}

static int sf_job_sensors(struct store *base, int64_t since, int64_t after_id, size_t limit,
                          struct store_job_sensor *out, size_t *n)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_JOB_SENSORS, &in);
    return rc ? rc : store_job_sensors(in, since, after_id, limit, out, n);
}

static int sf_silent_sensors(struct store *base, int64_t before, int64_t after_id, size_t limit,
                             struct store_job_sensor *out, size_t *n)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_SILENT_SENSORS, &in);
    return rc ? rc : store_silent_sensors(in, before, after_id, limit, out, n);
}

static int sf_job_sensor_get(struct store *base, int64_t sensor_id, struct store_job_sensor *out)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_JOB_SENSOR_GET, &in);
    return rc ? rc : store_job_sensor_get(in, sensor_id, out);
}

static int sf_recent_readings(struct store *base, int64_t sensor_id, size_t limit,
                              struct store_reading *out, size_t *n)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_RECENT_READINGS, &in);
    return rc ? rc : store_recent_readings(in, sensor_id, limit, out, n);
}

static int sf_model_ensure(struct store *base, const char *name, const char *type,
                           const char *version, const char *params, int64_t now, int64_t *id)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_MODEL_ENSURE, &in);
    return rc ? rc : store_model_ensure(in, name, type, version, params, now, id);
}

static int sf_prediction_insert(struct store *base, struct store_prediction *p)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_PREDICTION_INSERT, &in);
    return rc ? rc : store_prediction_insert(in, p);
}

static int sf_ml_event_active(struct store *base, int64_t sensor_id, const char *event_type,
                              int64_t *id)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_ML_EVENT_ACTIVE, &in);
    return rc ? rc : store_ml_event_active(in, sensor_id, event_type, id);
}

static int sf_ml_event_insert(struct store *base, struct store_ml_event *e)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_ML_EVENT_INSERT, &in);
    return rc ? rc : store_ml_event_insert(in, e);
}

static int sf_ml_event_resolve(struct store *base, int64_t id)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_ML_EVENT_RESOLVE, &in);
    return rc ? rc : store_ml_event_resolve(in, id);
}

static int sf_unexplained(struct store *base, double min_score, int64_t after_id, size_t limit,
                          struct store_prediction *out, size_t *n)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_UNEXPLAINED, &in);
    return rc ? rc : store_unexplained(in, min_score, after_id, limit, out, n);
}

static int sf_prediction_explain(struct store *base, int64_t id, const char *json)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_PREDICTION_EXPLAIN, &in);
    return rc ? rc : store_prediction_explain(in, id, json);
}

static int sf_online_load(struct store *base, const char *stream, uint64_t seq, int64_t sensor_id,
                          struct store_online_state *out, int *applied)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_ONLINE_LOAD, &in);
    return rc ? rc : store_online_load(in, stream, seq, sensor_id, out, applied);
}

static int sf_online_apply(struct store *base, const char *stream, uint64_t seq,
                           const char *consumer, const struct store_online_state *st,
                           struct store_prediction *pred)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_ONLINE_APPLY, &in);
    return rc ? rc : store_online_apply(in, stream, seq, consumer, st, pred);
}

static int sf_online_prune(struct store *base, const char *stream, uint64_t upto, int64_t *removed)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_ONLINE_PRUNE, &in);
    return rc ? rc : store_online_prune(in, stream, upto, removed);
}

static int sf_job_stat_record(struct store *base, const char *job, int ok, int64_t duration_ms,
                              int64_t now)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_JOB_STAT_RECORD, &in);
    return rc ? rc : store_job_stat_record(in, job, ok, duration_ms, now);
}

static int sf_job_stats(struct store *base, struct store_job_stat *out, size_t cap, size_t *n)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_JOB_STATS, &in);
    return rc ? rc : store_job_stats(in, out, cap, n);
}

static int sf_maintain(struct store *base)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_MAINTAIN, &in);
    return rc ? rc : store_maintain(in);
}

static int sf_rollup_step(struct store *base, int64_t until, int64_t *mark, int64_t *rollups)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_ROLLUP_STEP, &in);
    return rc ? rc : store_rollup_step(in, until, mark, rollups);
}

static int sf_readings_expire(struct store *base, int64_t before, int64_t max_rows,
                              int64_t *deleted)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_READINGS_EXPIRE, &in);
    return rc ? rc : store_readings_expire(in, before, max_rows, deleted);
}

static int sf_rollups_expire(struct store *base, int64_t before, int64_t max_rows, int64_t *deleted)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_ROLLUPS_EXPIRE, &in);
    return rc ? rc : store_rollups_expire(in, before, max_rows, deleted);
}

static int sf_readings_range(struct store *base, int64_t sensor_id, int64_t from, int64_t to,
                             int64_t after_ts, int64_t after_id, size_t limit,
                             struct store_reading *out, size_t *n)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_READINGS_RANGE, &in);
    return rc ? rc
              : store_readings_range(in, sensor_id, from, to, after_ts, after_id, limit, out, n);
}

static int sf_readings_buckets(struct store *base, int64_t sensor_id, int64_t from, int64_t to,
                               int64_t step_ms, size_t cap, struct store_bucket *out, size_t *n)
{
    struct store *in;
    int rc = enter(base, STORE_FAULT_READINGS_BUCKETS, &in);
    return rc ? rc : store_readings_buckets(in, sensor_id, from, to, step_ms, cap, out, n);
}

static const struct store_ops fault_ops = {
    .name = "fault",
    .close = sf_close,
    .errmsg = sf_errmsg,
    .ping = sf_ping,
    .schema_init = sf_schema_init,
    .schema_version = sf_schema_version,
    .device_get = sf_device_get,
    .device_get_by_id = sf_device_get_by_id,
    .device_sensors = sf_device_sensors,
    .sensor_get = sf_sensor_get,
    .device_status = sf_device_status,
    .device_add = sf_device_add,
    .device_set_active = sf_device_set_active,
    .device_delete = sf_device_delete,
    .sensor_add = sf_sensor_add,
    .sensor_set_active = sf_sensor_set_active,
    .threshold_set = sf_threshold_set,
    .threshold_clear = sf_threshold_clear,
    .tx_begin = sf_tx_begin,
    .tx_commit = sf_tx_commit,
    .tx_rollback = sf_tx_rollback,
    .savepoint = sf_savepoint,
    .savepoint_release = sf_savepoint_release,
    .savepoint_rollback = sf_savepoint_rollback,
    .change_epoch = sf_change_epoch,
    .maintain = sf_maintain,
    .packet_get = sf_packet_get,
    .packet_put = sf_packet_put,
    .packets_purge = sf_packets_purge,
    .state_get = sf_state_get,
    .state_put = sf_state_put,
    .alerts_active = sf_alerts_active,
    .states_load = sf_states_load,
    .states_put = sf_states_put,
    .alert_insert = sf_alert_insert,
    .alert_update = sf_alert_update,
    .notification_insert = sf_notification_insert,
    .readings_insert = sf_readings_insert,
    .device_touch = sf_device_touch,
    .job_sensors = sf_job_sensors,
    .silent_sensors = sf_silent_sensors,
    .job_sensor_get = sf_job_sensor_get,
    .recent_readings = sf_recent_readings,
    .model_ensure = sf_model_ensure,
    .prediction_insert = sf_prediction_insert,
    .ml_event_active = sf_ml_event_active,
    .ml_event_insert = sf_ml_event_insert,
    .ml_event_resolve = sf_ml_event_resolve,
    .unexplained = sf_unexplained,
    .prediction_explain = sf_prediction_explain,
    .online_load = sf_online_load,
    .online_apply = sf_online_apply,
    .online_prune = sf_online_prune,
    .job_stat_record = sf_job_stat_record,
    .job_stats = sf_job_stats,
    /* retention and rollups */
    .rollup_step = sf_rollup_step,
    .readings_expire = sf_readings_expire,
    .rollups_expire = sf_rollups_expire,
    .readings_range = sf_readings_range,
    .readings_buckets = sf_readings_buckets,
};
