/*
 * PostgreSQL backend, batch-job operations: keyset pages of sensors, recent
 * readings, models, predictions, ML events, explanations. The same queries
 * as sqlite_jobs.c, with timestamptz read back as bigint ms.
 */
#include "core/err.h"
#include "store/store_sql.h"
#include "store/pg_int.h"

#include <stdlib.h>
#include <string.h>

enum job_stmt {
    JS_SENSORS,
    JS_SILENT,
    JS_SENSOR_ONE,
    JS_RECENT,
    JS_MODEL_ADD,
    JS_MODEL_GET,
    JS_PRED_ADD,
    JS_EVENT_ACTIVE,
    JS_EVENT_ADD,
    JS_EVENT_RESOLVE,
    JS_UNEXPLAINED,
    JS_EXPLAIN,
    JS_ONLINE_LOCK,
    JS_ONLINE_APPLIED,
    JS_ONLINE_GET,
    JS_ONLINE_MARK,
    JS_ONLINE_PUT,
    JS_ONLINE_PRUNE,
    JS_COUNT
};
_Static_assert(JS_COUNT <= PG_JOB_STMTS, "grow PG_JOB_STMTS");

#define SENSOR_COLS    STORE_SQL_SENSOR_COLS
#define THRESHOLD_COLS STORE_SQL_THRESHOLD_COLS

static const char *const job_sql[JS_COUNT] = {
    [JS_SENSORS] =
        "SELECT " SENSOR_COLS "(extract(epoch from st.last_ts) * 1000)::bigint" THRESHOLD_COLS
        " WHERE s.is_active = 1 AND d.is_active = 1"
        " AND st.last_ts >= $1::timestamptz AND s.id > $2 ORDER BY s.id LIMIT $3",
    [JS_SILENT] =
        "SELECT " SENSOR_COLS
        "(extract(epoch from coalesce(st.last_ts, s.created_at)) * 1000)::bigint" THRESHOLD_COLS
        " WHERE s.is_active = 1 AND d.is_active = 1"
        " AND coalesce(st.last_ts, s.created_at) < $1::timestamptz AND s.id > $2"
        " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.sensor_id = s.id"
        "   AND a.kind = 'no_data' AND a.status = 'active')"
        " ORDER BY s.id LIMIT $3",
    [JS_SENSOR_ONE] = "SELECT " SENSOR_COLS
                      "coalesce((extract(epoch from st.last_ts) * 1000)::bigint, 0)" THRESHOLD_COLS
                      " WHERE s.id = $1",
    [JS_RECENT] = "SELECT value, (extract(epoch from ts) * 1000)::bigint, class, late"
                  " FROM sensor_readings WHERE sensor_id = $1"
                  " ORDER BY ts DESC, id DESC LIMIT $2",
    /* Find-or-create in one round trip, safe against a concurrent job doing the same. */
    [JS_MODEL_ADD] = "INSERT INTO ml_models(name, model_type, version, params, is_active,"
                     " created_at) VALUES ($1, $2, $3, $4, 1, $5)"
                     " ON CONFLICT (name, version) DO NOTHING",
    [JS_MODEL_GET] = "SELECT id FROM ml_models WHERE name = $1 AND version = $2",
    [JS_PRED_ADD] = "INSERT INTO predictions(sensor_id, model_id, predicted_value, confidence,"
                    " horizon_minutes, target_ts, predicted_at, is_anomaly, anomaly_score)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    [JS_EVENT_ACTIVE] = "SELECT id FROM ml_events WHERE sensor_id = $1 AND event_type = $2"
                        " AND status = 'active'",
    [JS_EVENT_ADD] = "INSERT INTO ml_events(sensor_id, device_id, prediction_id, event_type,"
                     " severity, title, message, status, created_at, payload)"
                     " VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9) RETURNING id",
    [JS_EVENT_RESOLVE] = "UPDATE ml_events SET status = 'resolved' WHERE id = $1",
    [JS_UNEXPLAINED] = "SELECT id, sensor_id, model_id, predicted_value, confidence,"
                       " anomaly_score, horizon_minutes,"
                       " (extract(epoch from target_ts) * 1000)::bigint,"
                       " (extract(epoch from predicted_at) * 1000)::bigint FROM predictions"
                       " WHERE is_anomaly = 1 AND anomaly_score >= $1"
                       " AND (explanation IS NULL OR explanation = '') AND id > $2"
                       " ORDER BY id LIMIT $3",
    [JS_EXPLAIN] = "UPDATE predictions SET explanation = $2 WHERE id = $1",
    /*
     * Online consumer: a transaction-level advisory lock per sensor (class
     * 74002) serialises consumers on one sensor even before its online_state
     * row exists, without touching the rows ingest locks.
     */
    [JS_ONLINE_LOCK] = "SELECT pg_advisory_xact_lock(74002, ($1::bigint % 2147483647)::int)",
    [JS_ONLINE_APPLIED] = "SELECT 1 FROM consumer_applied WHERE stream = $1 AND seq = $2",
    [JS_ONLINE_GET] = "SELECT mean, var, count, (extract(epoch from last_ts) * 1000)::bigint,"
                      " (extract(epoch from updated_at) * 1000)::bigint FROM online_state"
                      " WHERE sensor_id = $1",
    [JS_ONLINE_MARK] = "INSERT INTO consumer_applied(stream, seq, sensor_id, consumer, applied_at)"
                       " VALUES ($1, $2, $3, $4, $5)",
    [JS_ONLINE_PUT] = "INSERT INTO online_state(sensor_id, mean, var, count, last_ts, updated_at)"
                      " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sensor_id) DO UPDATE"
                      " SET mean = excluded.mean, var = excluded.var, count = excluded.count,"
                      " last_ts = excluded.last_ts, updated_at = excluded.updated_at",
    [JS_ONLINE_PRUNE] = "DELETE FROM consumer_applied WHERE stream = $1 AND seq <= $2",
};

static struct pg_cmd jcmd(enum job_stmt id, int n, const char *const *params)
{
    return (struct pg_cmd){
        .slot = PG_JOB_BASE + (int)id, .sql = job_sql[id], .nparams = n, .params = params};
}

static void read_threshold(const PGresult *r, int row, int col, struct store_threshold *t)
{
    memset(t, 0, sizeof *t);
    if (pg_null(r, row, col)) return;
    t->id = pg_i64(r, row, col);
    if ((t->has_min = !pg_null(r, row, col + 1))) t->min = pg_f64(r, row, col + 1);
    if ((t->has_max = !pg_null(r, row, col + 2))) t->max = pg_f64(r, row, col + 2);
    if ((t->has_delta = !pg_null(r, row, col + 3))) t->delta_max = pg_f64(r, row, col + 3);
}

/* Runs a sensor query and copies at most limit rows into out. */
static int sensor_rows(struct pg_store *s, const struct pg_cmd *c, size_t limit,
                       struct store_job_sensor *out, size_t *n)
{
    PGresult *r;
    *n = 0;
    int rc = pg_query(s, c, &r);
    if (rc) return rc;
    for (int i = 0; i < PQntuples(r) && *n < limit; i++) {
        struct store_job_sensor *x = &out[(*n)++];
        memset(x, 0, sizeof *x);
        x->id = pg_i64(r, i, 0);
        x->device_id = pg_i64(r, i, 1);
        pg_text(x->uuid, sizeof x->uuid, r, i, 2);
        pg_text(x->device_uuid, sizeof x->device_uuid, r, i, 3);
        pg_text(x->name, sizeof x->name, r, i, 4);
        pg_text(x->type, sizeof x->type, r, i, 5);
        pg_text(x->unit, sizeof x->unit, r, i, 6);
        x->last_ts = pg_i64(r, i, 7);
        read_threshold(r, i, 8, &x->thr[SEV_CRITICAL]);
        read_threshold(r, i, 12, &x->thr[SEV_WARNING]);
    }
    PQclear(r);
    return 0;
}

static int sensor_page(struct store *base, enum job_stmt id, int64_t t, int64_t after_id,
                       size_t limit, struct store_job_sensor *out, size_t *n)
{
    char ts[32], after[24], lim[24];
    const char *p[3] = {pg_fmt_ts(ts, t), pg_fmt_i64(after, after_id),
                        pg_fmt_i64(lim, (int64_t)limit)};
    struct pg_cmd c = jcmd(id, 3, p);
    return sensor_rows((struct pg_store *)base, &c, limit, out, n);
}

int pg_job_sensors(struct store *base, int64_t since, int64_t after_id, size_t limit,
                   struct store_job_sensor *out, size_t *n)
{
    return sensor_page(base, JS_SENSORS, since, after_id, limit, out, n);
}

int pg_silent_sensors(struct store *base, int64_t before, int64_t after_id, size_t limit,
                      struct store_job_sensor *out, size_t *n)
{
    return sensor_page(base, JS_SILENT, before, after_id, limit, out, n);
}

int pg_job_sensor_get(struct store *base, int64_t sensor_id, struct store_job_sensor *out)
{
    char id[24];
    const char *p = pg_fmt_i64(id, sensor_id);
    struct pg_cmd c = jcmd(JS_SENSOR_ONE, 1, &p);
    size_t n = 0;
    int rc = sensor_rows((struct pg_store *)base, &c, 1, out, &n);
    if (rc) return rc;
    return n ? 0 : IOT_ENOTFOUND;
}

int pg_recent_readings(struct store *base, int64_t sensor_id, size_t limit,
                       struct store_reading *out, size_t *n)
{
    char id[24], lim[24];
    const char *p[2] = {pg_fmt_i64(id, sensor_id), pg_fmt_i64(lim, (int64_t)limit)};
    struct pg_cmd c = jcmd(JS_RECENT, 2, p);
    PGresult *r;
    *n = 0;
    int rc = pg_query((struct pg_store *)base, &c, &r);
    if (rc) return rc;
    for (int i = 0; i < PQntuples(r) && *n < limit; i++) {
        struct store_reading *x = &out[(*n)++];
        x->sensor_id = sensor_id;
        x->value = pg_f64(r, i, 0);
        x->ts = pg_i64(r, i, 1);
        x->cls = reading_class_parse(PQgetvalue(r, i, 2));
        x->late = (int)pg_i64(r, i, 3);
        x->ingested_at = 0;
    }
    PQclear(r);
    return 0;
}

int pg_model_ensure(struct store *base, const char *name, const char *type, const char *version,
                    const char *params, int64_t now, int64_t *id)
{
    struct pg_store *s = (struct pg_store *)base;
    char ts[32];
    const char *pa[5] = {name, type, version, params, pg_fmt_ts(ts, now)};
    const char *pg[2] = {name, version};
    struct pg_cmd c[2] = {jcmd(JS_MODEL_ADD, 5, pa), jcmd(JS_MODEL_GET, 2, pg)};
    PGresult *r[2];
    int rc = pg_roundtrip(s, c, 2, r, 0);
    if (rc) return rc;
    if (PQntuples(r[1]) == 1)
        *id = pg_i64(r[1], 0, 0);
    else
        rc = pg_fail(s, IOT_EDB, "model %s %s: not found after insert", name, version);
    PQclear(r[0]);
    PQclear(r[1]);
    return rc;
}

/* The parameters of JS_PRED_ADD; b holds their text. */
struct pred_params {
    char sid[24], mid[24], pv[32], conf[32], hz[24], target[32], at[32], score[32];
    const char *v[9];
};

static struct pg_cmd pred_cmd(const struct store_prediction *p, struct pred_params *b)
{
    b->v[0] = pg_fmt_i64(b->sid, p->sensor_id);
    b->v[1] = pg_fmt_i64(b->mid, p->model_id);
    b->v[2] = pg_fmt_f64(b->pv, p->predicted_value);
    b->v[3] = pg_fmt_f64(b->conf, p->confidence);
    b->v[4] = pg_fmt_i64(b->hz, p->horizon_minutes);
    b->v[5] = pg_fmt_ts(b->target, p->target_ts);
    b->v[6] = pg_fmt_ts(b->at, p->predicted_at);
    b->v[7] = p->is_anomaly ? "1" : "0";
    b->v[8] = pg_fmt_f64(b->score, p->anomaly_score);
    return jcmd(JS_PRED_ADD, 9, b->v);
}

int pg_prediction_insert(struct store *base, struct store_prediction *p)
{
    struct pred_params b;
    struct pg_cmd c = pred_cmd(p, &b);
    return pg_returning_id((struct pg_store *)base, &c, &p->id, NULL);
}

int pg_ml_event_active(struct store *base, int64_t sensor_id, const char *event_type, int64_t *id)
{
    char sid[24];
    const char *p[2] = {pg_fmt_i64(sid, sensor_id), event_type};
    struct pg_cmd c = jcmd(JS_EVENT_ACTIVE, 2, p);
    PGresult *r;
    int rc = pg_query((struct pg_store *)base, &c, &r);
    if (rc) return rc;
    if (PQntuples(r) > 0)
        *id = pg_i64(r, 0, 0);
    else
        rc = IOT_ENOTFOUND;
    PQclear(r);
    return rc;
}

int pg_ml_event_insert(struct store *base, struct store_ml_event *e)
{
    char sid[24], did[24], pid[24], at[32];
    const char *p[9] = {pg_fmt_i64(sid, e->sensor_id),
                        pg_fmt_i64(did, e->device_id),
                        e->prediction_id ? pg_fmt_i64(pid, e->prediction_id) : NULL,
                        e->event_type,
                        e->severity,
                        e->title,
                        e->message,
                        pg_fmt_ts(at, e->created_at),
                        e->payload};
    struct pg_cmd c = jcmd(JS_EVENT_ADD, 9, p);
    return pg_returning_id((struct pg_store *)base, &c, &e->id, NULL);
}

int pg_ml_event_resolve(struct store *base, int64_t id)
{
    char v[24];
    const char *p = pg_fmt_i64(v, id);
    struct pg_cmd c = jcmd(JS_EVENT_RESOLVE, 1, &p);
    return pg_roundtrip((struct pg_store *)base, &c, 1, NULL, 0);
}

int pg_unexplained(struct store *base, double min_score, int64_t after_id, size_t limit,
                   struct store_prediction *out, size_t *n)
{
    char score[32], after[24], lim[24];
    const char *p[3] = {pg_fmt_f64(score, min_score), pg_fmt_i64(after, after_id),
                        pg_fmt_i64(lim, (int64_t)limit)};
    struct pg_cmd c = jcmd(JS_UNEXPLAINED, 3, p);
    PGresult *r;
    *n = 0;
    int rc = pg_query((struct pg_store *)base, &c, &r);
    if (rc) return rc;
    for (int i = 0; i < PQntuples(r) && *n < limit; i++) {
        struct store_prediction *x = &out[(*n)++];
        memset(x, 0, sizeof *x);
        x->id = pg_i64(r, i, 0);
        x->sensor_id = pg_i64(r, i, 1);
        x->model_id = pg_i64(r, i, 2);
        x->predicted_value = pg_f64(r, i, 3);
        x->confidence = pg_f64(r, i, 4);
        x->anomaly_score = pg_f64(r, i, 5);
        x->horizon_minutes = pg_i64(r, i, 6);
        x->target_ts = pg_i64(r, i, 7);
        x->predicted_at = pg_i64(r, i, 8);
        x->is_anomaly = 1;
    }
    PQclear(r);
    return 0;
}

int pg_prediction_explain(struct store *base, int64_t id, const char *json)
{
    char v[24];
    const char *p[2] = {pg_fmt_i64(v, id), json};
    struct pg_cmd c = jcmd(JS_EXPLAIN, 2, p);
    return pg_roundtrip((struct pg_store *)base, &c, 1, NULL, 0);
}

/* ---- online consumer --------------------------------------------------------- */

/*
 * Locks the sensor (advisory, until the transaction ends), then reads
 * whether (stream, seq) was applied and the sensor's model: one round trip;
 * the reads are later statements than the lock, so they see what a consumer
 * that held the lock before us committed.
 */
int pg_online_load(struct store *base, const char *stream, uint64_t seq, int64_t sensor_id,
                   struct store_online_state *out, int *applied)
{
    if (!stream || !out || !applied || seq > INT64_MAX) return IOT_EINVAL;
    struct pg_store *s = (struct pg_store *)base;
    char sid[24], sq[24];
    const char *pl = pg_fmt_i64(sid, sensor_id);
    const char *pa[2] = {stream, pg_fmt_i64(sq, (int64_t)seq)};
    struct pg_cmd c[3] = {jcmd(JS_ONLINE_LOCK, 1, &pl), jcmd(JS_ONLINE_APPLIED, 2, pa),
                          jcmd(JS_ONLINE_GET, 1, &pl)};
    PGresult *r[3];
    memset(out, 0, sizeof *out);
    out->sensor_id = sensor_id;
    *applied = 0;
    int rc = pg_roundtrip(s, c, 3, r, 0);
    if (rc) return rc;
    *applied = PQntuples(r[1]) > 0;
    if (!*applied && PQntuples(r[2]) > 0) {
        out->mean = pg_f64(r[2], 0, 0);
        out->var = pg_f64(r[2], 0, 1);
        out->count = pg_i64(r[2], 0, 2);
        out->last_ts = pg_i64(r[2], 0, 3);
        out->updated_at = pg_i64(r[2], 0, 4);
    }
    for (int i = 0; i < 3; i++)
        PQclear(r[i]);
    return 0;
}

/* The mark first: a duplicate (IOT_EEXIST) aborts the rest of the pipeline unwritten. */
int pg_online_apply(struct store *base, const char *stream, uint64_t seq, const char *consumer,
                    const struct store_online_state *st, struct store_prediction *pred)
{
    if (!stream || !consumer || !st || seq > INT64_MAX) return IOT_EINVAL;
    struct pg_store *s = (struct pg_store *)base;
    char sid[24], sq[24], at[32], mean[32], var[32], count[24], last[32];
    const char *pm[5] = {stream, pg_fmt_i64(sq, (int64_t)seq), pg_fmt_i64(sid, st->sensor_id),
                         consumer, pg_fmt_ts(at, st->updated_at)};
    const char *pp[6] = {sid,
                         pg_fmt_f64(mean, st->mean),
                         pg_fmt_f64(var, st->var),
                         pg_fmt_i64(count, st->count),
                         pg_fmt_ts(last, st->last_ts),
                         at};
    struct pred_params b;
    struct pg_cmd c[3] = {jcmd(JS_ONLINE_MARK, 5, pm), jcmd(JS_ONLINE_PUT, 6, pp)};
    size_t n = 2;
    if (pred) c[n++] = pred_cmd(pred, &b);
    PGresult *r[3] = {NULL, NULL, NULL};
    int rc = pg_roundtrip(s, c, n, r, 0);
    if (rc) return rc;
    if (pred) {
        if (PQntuples(r[2]) == 1)
            pred->id = pg_i64(r[2], 0, 0);
        else
            rc = pg_fail(s, IOT_EDB, "insert returned no id");
    }
    for (size_t i = 0; i < n; i++)
        PQclear(r[i]);
    return rc;
}

int pg_online_prune(struct store *base, const char *stream, uint64_t upto, int64_t *removed)
{
    if (!stream) return IOT_EINVAL;
    if (removed) *removed = 0;
    if (upto > INT64_MAX) upto = INT64_MAX;
    char sq[24];
    const char *p[2] = {stream, pg_fmt_i64(sq, (int64_t)upto)};
    struct pg_cmd c = jcmd(JS_ONLINE_PRUNE, 2, p);
    PGresult *r;
    int rc = pg_roundtrip((struct pg_store *)base, &c, 1, &r, 0);
    if (rc) return rc;
    if (removed) *removed = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}
