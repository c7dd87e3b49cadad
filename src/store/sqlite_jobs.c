/*
 * SQLite backend, batch-job operations: keyset pages of sensors, models,
 * predictions, ML events, explanations (a sensor's recent readings are in
 * sqlite_chain.c). Pages keep memory bounded however many sensors there are.
 */
#include "core/err.h"
#include "store/store_sql.h"
#include "store/sqlite_int.h"

#include <string.h>

enum job_stmt {
    JS_SENSORS,
    JS_SILENT,
    JS_SENSOR_ONE,
    JS_MODEL_GET,
    JS_MODEL_ADD,
    JS_PRED_ADD,
    JS_EVENT_ACTIVE,
    JS_EVENT_ADD,
    JS_EVENT_RESOLVE,
    JS_UNEXPLAINED,
    JS_EXPLAIN,
    JS_COUNT
};
_Static_assert(JS_COUNT + 2 <= SQLITE_JOB_STMTS, "grow SQLITE_JOB_STMTS");

#define SENSOR_COLS    STORE_SQL_SENSOR_COLS
#define THRESHOLD_COLS STORE_SQL_THRESHOLD_COLS

static const char *const job_sql[JS_COUNT] = {
    [JS_SENSORS] = "SELECT " SENSOR_COLS "st.last_ts" THRESHOLD_COLS
                   " WHERE s.is_active = 1 AND d.is_active = 1 AND st.last_ts >= ?1 AND s.id > ?2"
                   " ORDER BY s.id LIMIT ?3",
    [JS_SILENT] = "SELECT " SENSOR_COLS "coalesce(st.last_ts, s.created_at)" THRESHOLD_COLS
                  " WHERE s.is_active = 1 AND d.is_active = 1"
                  " AND coalesce(st.last_ts, s.created_at) < ?1 AND s.id > ?2"
                  " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.sensor_id = s.id"
                  "   AND a.kind = 'no_data' AND a.status = 'active')"
                  " ORDER BY s.id LIMIT ?3",
    [JS_SENSOR_ONE] =
        "SELECT " SENSOR_COLS "coalesce(st.last_ts, 0)" THRESHOLD_COLS " WHERE s.id = ?1",
    [JS_MODEL_GET] = "SELECT id FROM ml_models WHERE name = ?1 AND version = ?2",
    [JS_MODEL_ADD] = "INSERT INTO ml_models(name, model_type, version, params, is_active,"
                     " created_at) VALUES (?1, ?2, ?3, ?4, 1, ?5)",
    [JS_PRED_ADD] = "INSERT INTO predictions(sensor_id, model_id, predicted_value, confidence,"
                    " horizon_minutes, target_ts, predicted_at, is_anomaly, anomaly_score)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [JS_EVENT_ACTIVE] = "SELECT id FROM ml_events WHERE sensor_id = ?1 AND event_type = ?2"
                        " AND status = 'active'",
    [JS_EVENT_ADD] = "INSERT INTO ml_events(sensor_id, device_id, prediction_id, event_type,"
                     " severity, title, message, status, created_at, payload)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'active', ?8, ?9)",
    [JS_EVENT_RESOLVE] = "UPDATE ml_events SET status = 'resolved' WHERE id = ?1",
    [JS_UNEXPLAINED] = "SELECT id, sensor_id, model_id, predicted_value, confidence,"
                       " anomaly_score, horizon_minutes, target_ts, predicted_at FROM predictions"
                       " WHERE is_anomaly = 1 AND anomaly_score >= ?1"
                       " AND (explanation IS NULL OR explanation = '') AND id > ?2"
                       " ORDER BY id LIMIT ?3",
    [JS_EXPLAIN] = "UPDATE predictions SET explanation = ?2 WHERE id = ?1",
};

static int jstmt(struct sqlite_store *s, enum job_stmt id, sqlite3_stmt **out)
{
    return sqlite_stmt(s, &s->job_st[id], job_sql[id], out);
}

static void read_threshold(sqlite3_stmt *st, int col, struct store_threshold *t)
{
    memset(t, 0, sizeof *t);
    if (sqlite3_column_type(st, col) == SQLITE_NULL) return;
    t->id = sqlite3_column_int64(st, col);
    if ((t->has_min = sqlite3_column_type(st, col + 1) != SQLITE_NULL))
        t->min = sqlite3_column_double(st, col + 1);
    if ((t->has_max = sqlite3_column_type(st, col + 2) != SQLITE_NULL))
        t->max = sqlite3_column_double(st, col + 2);
    if ((t->has_delta = sqlite3_column_type(st, col + 3) != SQLITE_NULL))
        t->delta_max = sqlite3_column_double(st, col + 3);
}

static int read_sensor_page(struct sqlite_store *s, sqlite3_stmt *st, size_t limit,
                            struct store_job_sensor *out, size_t *n)
{
    int rc;
    *n = 0;
    while (*n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_job_sensor *x = &out[(*n)++];
        memset(x, 0, sizeof *x);
        x->id = sqlite3_column_int64(st, 0);
        x->device_id = sqlite3_column_int64(st, 1);
        sqlite_copy_text(x->uuid, sizeof x->uuid, st, 2);
        sqlite_copy_text(x->device_uuid, sizeof x->device_uuid, st, 3);
        sqlite_copy_text(x->name, sizeof x->name, st, 4);
        sqlite_copy_text(x->type, sizeof x->type, st, 5);
        sqlite_copy_text(x->unit, sizeof x->unit, st, 6);
        x->last_ts = sqlite3_column_int64(st, 7);
        read_threshold(st, 8, &x->thr[SEV_CRITICAL]);
        read_threshold(st, 12, &x->thr[SEV_WARNING]);
    }
    if (*n < limit && rc != SQLITE_DONE) {
        int e = sqlite_fail(s, rc);
        sqlite3_reset(st);
        return e;
    }
    sqlite3_reset(st);
    return 0;
}

static int sensor_page(struct store *base, enum job_stmt id, int64_t t, int64_t after_id,
                       size_t limit, struct store_job_sensor *out, size_t *n)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = jstmt(s, id, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, t);
    sqlite3_bind_int64(st, 2, after_id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    return read_sensor_page(s, st, limit, out, n);
}

int sqlite_job_sensors(struct store *base, int64_t since, int64_t after_id, size_t limit,
                       struct store_job_sensor *out, size_t *n)
{
    return sensor_page(base, JS_SENSORS, since, after_id, limit, out, n);
}

int sqlite_silent_sensors(struct store *base, int64_t before, int64_t after_id, size_t limit,
                          struct store_job_sensor *out, size_t *n)
{
    return sensor_page(base, JS_SILENT, before, after_id, limit, out, n);
}

int sqlite_job_sensor_get(struct store *base, int64_t sensor_id, struct store_job_sensor *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    int rc = jstmt(s, JS_SENSOR_ONE, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, sensor_id);
    if ((rc = read_sensor_page(s, st, 1, out, &n))) return rc;
    return n ? 0 : IOT_ENOTFOUND;
}

int sqlite_model_ensure(struct store *base, const char *name, const char *type, const char *version,
                        const char *params, int64_t now, int64_t *id)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = jstmt(s, JS_MODEL_GET, &st);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, version, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        return 0;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return sqlite_fail(s, rc);
    if ((rc = jstmt(s, JS_MODEL_ADD, &st))) return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, params, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    if ((rc = sqlite_exec_done(s, st))) return rc;
    *id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int sqlite_prediction_insert(struct store *base, struct store_prediction *p)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = jstmt(s, JS_PRED_ADD, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, p->sensor_id);
    sqlite3_bind_int64(st, 2, p->model_id);
    sqlite3_bind_double(st, 3, p->predicted_value);
    sqlite3_bind_double(st, 4, p->confidence);
    sqlite3_bind_int64(st, 5, p->horizon_minutes);
    sqlite3_bind_int64(st, 6, p->target_ts);
    sqlite3_bind_int64(st, 7, p->predicted_at);
    sqlite3_bind_int(st, 8, p->is_anomaly ? 1 : 0);
    sqlite3_bind_double(st, 9, p->anomaly_score);
    if ((rc = sqlite_exec_done(s, st))) return rc;
    p->id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int sqlite_ml_event_active(struct store *base, int64_t sensor_id, const char *event_type,
                           int64_t *id)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = jstmt(s, JS_EVENT_ACTIVE, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, sensor_id);
    sqlite3_bind_text(st, 2, event_type, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    int ret = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? IOT_ENOTFOUND : sqlite_fail(s, rc);
    if (rc == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return ret;
}

int sqlite_ml_event_insert(struct store *base, struct store_ml_event *e)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = jstmt(s, JS_EVENT_ADD, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, e->sensor_id);
    sqlite3_bind_int64(st, 2, e->device_id);
    if (e->prediction_id) sqlite3_bind_int64(st, 3, e->prediction_id);
    sqlite3_bind_text(st, 4, e->event_type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, e->severity, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, e->title, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, e->message, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, e->created_at);
    sqlite3_bind_text(st, 9, e->payload, -1, SQLITE_STATIC);
    if ((rc = sqlite_exec_done(s, st))) return rc;
    e->id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int sqlite_ml_event_resolve(struct store *base, int64_t id)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = jstmt(s, JS_EVENT_RESOLVE, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    return sqlite_exec_done(s, st);
}

int sqlite_unexplained(struct store *base, double min_score, int64_t after_id, size_t limit,
                       struct store_prediction *out, size_t *n)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = jstmt(s, JS_UNEXPLAINED, &st);
    if (rc) return rc;
    sqlite3_bind_double(st, 1, min_score);
    sqlite3_bind_int64(st, 2, after_id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    *n = 0;
    while (*n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_prediction *p = &out[(*n)++];
        memset(p, 0, sizeof *p);
        p->id = sqlite3_column_int64(st, 0);
        p->sensor_id = sqlite3_column_int64(st, 1);
        p->model_id = sqlite3_column_int64(st, 2);
        p->predicted_value = sqlite3_column_double(st, 3);
        p->confidence = sqlite3_column_double(st, 4);
        p->anomaly_score = sqlite3_column_double(st, 5);
        p->horizon_minutes = sqlite3_column_int64(st, 6);
        p->target_ts = sqlite3_column_int64(st, 7);
        p->predicted_at = sqlite3_column_int64(st, 8);
        p->is_anomaly = 1;
    }
    int ret = (*n == limit || rc == SQLITE_DONE) ? 0 : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

int sqlite_prediction_explain(struct store *base, int64_t id, const char *json)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = jstmt(s, JS_EXPLAIN, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, json, -1, SQLITE_STATIC);
    return sqlite_exec_done(s, st);
}

/* The UPSERT of one job run; the ten bucket flags are computed by the caller. */
static const char job_stat_sql[] =
    "INSERT INTO job_stats(job, runs_ok, runs_failed, duration_sum_ms, b0, b1, b2, b3, b4, b5, b6,"
    " b7, b8, b9, last_duration_ms, last_run_at, last_success_at)"
    " VALUES (?1, ?2, 1 - ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?3, ?14,"
    "  CASE WHEN ?2 = 1 THEN ?14 END)"
    " ON CONFLICT(job) DO UPDATE SET runs_ok = runs_ok + excluded.runs_ok,"
    " runs_failed = runs_failed + excluded.runs_failed,"
    " duration_sum_ms = duration_sum_ms + excluded.duration_sum_ms,"
    " b0 = b0 + excluded.b0, b1 = b1 + excluded.b1, b2 = b2 + excluded.b2,"
    " b3 = b3 + excluded.b3, b4 = b4 + excluded.b4, b5 = b5 + excluded.b5,"
    " b6 = b6 + excluded.b6, b7 = b7 + excluded.b7, b8 = b8 + excluded.b8,"
    " b9 = b9 + excluded.b9, last_duration_ms = excluded.last_duration_ms,"
    " last_run_at = excluded.last_run_at,"
    " last_success_at = coalesce(excluded.last_success_at, job_stats.last_success_at)";

int sqlite_job_stat_record(struct store *base, const char *job, int ok, int64_t duration_ms,
                           int64_t now)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = sqlite_stmt(s, &s->job_st[JS_COUNT], job_stat_sql, &st);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, job, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, ok ? 1 : 0);
    sqlite3_bind_int64(st, 3, duration_ms);
    for (int i = 0; i < STORE_JOB_BUCKETS; i++)
        sqlite3_bind_int(st, 4 + i, (double)duration_ms / 1000.0 <= store_job_bounds_s[i]);
    sqlite3_bind_int64(st, 14, now);
    return sqlite_exec_done(s, st);
}

int sqlite_job_stats(struct store *base, struct store_job_stat *out, size_t cap, size_t *n)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = sqlite_stmt(s, &s->job_st[JS_COUNT + 1],
                         "SELECT job, runs_ok, runs_failed, duration_sum_ms, b0, b1, b2, b3, b4,"
                         " b5, b6, b7, b8, b9, last_duration_ms, last_run_at,"
                         " coalesce(last_success_at, 0) FROM job_stats ORDER BY job",
                         &st);
    if (rc) return rc;
    *n = 0;
    while (*n < cap && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_job_stat *j = &out[(*n)++];
        sqlite_copy_text(j->job, sizeof j->job, st, 0);
        j->runs_ok = sqlite3_column_int64(st, 1);
        j->runs_failed = sqlite3_column_int64(st, 2);
        j->duration_sum_ms = sqlite3_column_int64(st, 3);
        for (int i = 0; i < STORE_JOB_BUCKETS; i++)
            j->buckets[i] = sqlite3_column_int64(st, 4 + i);
        j->last_duration_ms = sqlite3_column_int64(st, 14);
        j->last_run_at = sqlite3_column_int64(st, 15);
        j->last_success_at = sqlite3_column_int64(st, 16);
    }
    int ret = (*n == cap || rc == SQLITE_DONE) ? 0 : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}
