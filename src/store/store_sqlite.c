/*
 * SQLite backend of the store interface: WAL journal, one connection per
 * struct store, prepared statements prepared once and reused, busy timeout.
 * Timestamps are INTEGER ms (SPEC §3); key hashes are stored as hex text.
 */
#include "store/store.h"
#include "store/sqlite_int.h"
#include "store/store_sql.h"
#include "store/sqlite_schema.h"
#include "core/err.h"
#include "core/secret.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum stmt_id {
    ST_DEVICE_GET,
    ST_DEVICE_GET_BY_ID,
    ST_DEVICE_SENSORS,
    ST_SENSOR_GET,
    ST_DEVICE_STATUS,
    ST_DEVICE_ADD,
    ST_DEVICE_SET_ACTIVE,
    ST_SENSOR_ADD,
    ST_SENSOR_SET_ACTIVE,
    ST_THRESHOLD_CLEAR,
    ST_THRESHOLD_INSERT,
    ST_SENSOR_EXISTS,
    ST_SENSOR_ID_EXISTS,
    ST_PACKET_GET,
    ST_PACKET_PUT,
    ST_PACKETS_PURGE,
    ST_STATE_GET,
    ST_ALERTS_ACTIVE,
    ST_ALERT_INSERT,
    ST_ALERT_UPDATE,
    ST_NOTIFY_INSERT,
    ST_DEVICE_TOUCH,
    ST_DATA_VERSION,
    ST_COUNT
};

_Static_assert(ST_COUNT <= SQLITE_CORE_STMTS, "grow SQLITE_CORE_STMTS");

static const char *const stmt_sql[ST_COUNT] = {
    [ST_DEVICE_GET] = "SELECT id, device_uuid, device_key_hash, is_active FROM devices"
                      " WHERE device_uuid = ?1",
    [ST_DEVICE_GET_BY_ID] = "SELECT id, device_uuid, device_key_hash, is_active FROM devices"
                            " WHERE id = ?1",
    [ST_DEVICE_SENSORS] = STORE_SQL_SENSOR_SELECT " WHERE s.device_id = ?1 ORDER BY s.sensor_uuid",
    [ST_SENSOR_GET] = STORE_SQL_SENSOR_SELECT " WHERE s.id = ?1",
    [ST_DEVICE_STATUS] =
        "SELECT s.id, s.sensor_uuid, s.name, st.last_ts, st.last_value, st.last_class,"
        " (SELECT count(*) FROM alerts a WHERE a.sensor_id = s.id AND a.status = 'active'),"
        " (SELECT count(*) FROM alerts a WHERE a.sensor_id = s.id AND a.status = 'active'"
        "   AND a.severity = 'critical'),"
        " (SELECT count(*) FROM alerts a WHERE a.sensor_id = s.id AND a.status = 'active'"
        "   AND a.kind = 'no_data')"
        " FROM sensors s LEFT JOIN sensor_state st ON st.sensor_id = s.id"
        " WHERE s.device_id = ?1 ORDER BY s.sensor_uuid",
    [ST_DEVICE_ADD] =
        "INSERT INTO devices(device_uuid, name, device_key_hash, is_active, created_at)"
        " VALUES (?1, ?2, ?3, 1, ?4)",
    [ST_DEVICE_SET_ACTIVE] = "UPDATE devices SET is_active = ?2 WHERE device_uuid = ?1",
    [ST_SENSOR_ADD] = "INSERT INTO sensors(sensor_uuid, device_id, name, sensor_type, unit,"
                      " is_active, created_at)"
                      " SELECT ?1, d.id, ?2, ?3, ?4, 1, ?5 FROM devices d WHERE d.device_uuid = ?6"
                      " RETURNING id, device_id",
    [ST_SENSOR_SET_ACTIVE] = "UPDATE sensors SET is_active = ?2 WHERE sensor_uuid = ?1",
    [ST_THRESHOLD_CLEAR] =
        "UPDATE alert_thresholds SET is_active = 0 WHERE is_active = 1 AND severity = ?2"
        " AND sensor_id = (SELECT id FROM sensors WHERE sensor_uuid = ?1)",
    [ST_THRESHOLD_INSERT] =
        "INSERT INTO alert_thresholds(sensor_id, severity, min_value, max_value, delta_max,"
        " is_active, created_at) SELECT s.id, ?2, ?3, ?4, ?5, 1, ?6 FROM sensors s"
        " WHERE s.sensor_uuid = ?1 RETURNING id",
    [ST_SENSOR_EXISTS] = "SELECT 1 FROM sensors WHERE sensor_uuid = ?1",
    [ST_SENSOR_ID_EXISTS] = "SELECT 1 FROM sensors WHERE id = ?1",
    [ST_PACKET_GET] = "SELECT response FROM ingest_packets WHERE device_id = ?1 AND packet_id = ?2"
                      " AND created_at >= ?3",
    [ST_PACKET_PUT] = "INSERT INTO ingest_packets(device_id, packet_id, created_at, response)"
                      " VALUES (?1, ?2, ?3, ?4) ON CONFLICT(device_id, packet_id) DO UPDATE"
                      " SET created_at = excluded.created_at, response = excluded.response"
                      " WHERE ingest_packets.created_at < ?5",
    [ST_PACKETS_PURGE] = "DELETE FROM ingest_packets WHERE created_at < ?1",
    [ST_STATE_GET] = "SELECT last_ts, last_value, last_class, normal_run, last_reading_id"
                     " FROM sensor_state WHERE sensor_id = ?1",
    [ST_ALERTS_ACTIVE] =
        "SELECT id, sensor_id, device_id, threshold_id, severity, kind, first_value, last_value,"
        " hit_count, triggered_at, last_seen_at, message FROM alerts"
        " WHERE sensor_id = ?1 AND status = 'active'",
    [ST_ALERT_INSERT] =
        "INSERT INTO alerts(sensor_id, device_id, threshold_id, severity, kind, status,"
        " first_value, last_value, hit_count, triggered_at, last_seen_at, resolved_at, message)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [ST_ALERT_UPDATE] = "UPDATE alerts SET threshold_id = ?2, severity = ?3, status = ?4,"
                        " last_value = ?5, hit_count = ?6, last_seen_at = ?7, resolved_at = ?8,"
                        " message = ?9"
                        " WHERE id = ?1",
    [ST_NOTIFY_INSERT] = "INSERT INTO alert_notifications(alert_id, event, severity, created_at)"
                         " VALUES (?1, ?2, ?3, ?4)",
    [ST_DATA_VERSION] = "PRAGMA data_version",
    [ST_DEVICE_TOUCH] = "UPDATE devices SET last_seen_at = ?2 WHERE id = ?1"
                        " AND (last_seen_at IS NULL OR last_seen_at < ?2)",
};

static const struct store_ops sqlite_ops;

/* Maps a SQLite result code to our codes; records the message. */
int sqlite_fail(struct sqlite_store *s, int rc)
{
    snprintf(s->err, sizeof s->err, "%s", sqlite3_errmsg(s->db));
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return IOT_EBUSY;
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PROTOCOL:
    case SQLITE_NOLFS:
        return IOT_EUNAVAIL;
    case SQLITE_CONSTRAINT:
        /* Only a duplicate key means "already exists"; NOT NULL or CHECK is a bug. */
        return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY ? IOT_EEXIST
                                                                                    : IOT_EDB;
    case SQLITE_NOMEM:
        return IOT_ENOMEM;
    default:
        return IOT_EDB;
    }
}

int sqlite_stmt(struct sqlite_store *s, sqlite3_stmt **slot, const char *sql, sqlite3_stmt **out)
{
    if (!*slot) {
        int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
        if (rc != SQLITE_OK) return sqlite_fail(s, rc);
    } else {
        sqlite3_reset(*slot);
        sqlite3_clear_bindings(*slot);
    }
    *out = *slot;
    return 0;
}

static int stmt(struct sqlite_store *s, enum stmt_id id, sqlite3_stmt **out)
{
    return sqlite_stmt(s, &s->st[id], stmt_sql[id], out);
}

/* Steps a statement that returns no rows (or ignores them) and resets it. */
int sqlite_exec_done(struct sqlite_store *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    int ret = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? 0 : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

int sqlite_exec_sql(struct sqlite_store *s, const char *sql)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sqlite_fail(s, rc);
}

void sqlite_bind_opt_double(sqlite3_stmt *st, int i, int has, double v)
{
    if (has)
        sqlite3_bind_double(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static void bind_opt_int(sqlite3_stmt *st, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

void sqlite_copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static void sq_close(struct store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    for (int i = 0; i < SQLITE_JOB_STMTS; i++)
        sqlite3_finalize(s->job_st[i]);
    for (int i = 0; i < SQLITE_CHAIN_STMTS; i++)
        sqlite3_finalize(s->chain_st[i]);
    for (int i = 0; i < SQLITE_RETENTION_STMTS; i++)
        sqlite3_finalize(s->ret_st[i]);
    for (int i = 0; i < SQLITE_HISTORY_STMTS; i++)
        sqlite3_finalize(s->hist_st[i]);
    sqlite_batch_close(s);
    sqlite3_close(s->db);
    free(s);
}

static const char *sq_errmsg(struct store *base)
{
    return ((struct sqlite_store *)base)->err;
}

static int sq_ping(struct store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int v;
    int rc = sqlite_schema_read_version(s->db, &v);
    if (rc) return sqlite_fail(s, sqlite3_errcode(s->db));
    return 0;
}

static int sq_schema_init(struct store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    return sqlite_schema_apply(s->db, s->err, sizeof s->err);
}

static int sq_schema_version(struct store *base, int *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    return sqlite_schema_read_version(s->db, out) ? sqlite_fail(s, sqlite3_errcode(s->db)) : 0;
}

static int read_device(struct sqlite_store *s, sqlite3_stmt *st, struct store_device *out)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return IOT_ENOTFOUND;
    }
    if (rc != SQLITE_ROW) {
        int e = sqlite_fail(s, rc);
        sqlite3_reset(st);
        return e;
    }
    out->id = sqlite3_column_int64(st, 0);
    sqlite_copy_text(out->uuid, sizeof out->uuid, st, 1);
    secret_hash_from_hex((const char *)sqlite3_column_text(st, 2), out->key_hash);
    out->is_active = sqlite3_column_int(st, 3);
    sqlite3_reset(st);
    return 0;
}

static int sq_device_get(struct store *base, const char *uuid, struct store_device *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_DEVICE_GET, &st);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
    return read_device(s, st, out);
}

static int sq_device_get_by_id(struct store *base, int64_t id, struct store_device *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_DEVICE_GET_BY_ID, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    return read_device(s, st, out);
}

/*
 * Reads rows of (sensor, optional threshold) ordered by sensor, folding the
 * 0..2 threshold rows of each sensor into one struct store_sensor.
 */
static int read_sensors(struct sqlite_store *s, sqlite3_stmt *st, struct store_sensor **out,
                        size_t *n)
{
    size_t cap = 0, len = 0;
    struct store_sensor *arr = NULL;
    int rc;
    *out = NULL; /* and *n = 0, unless it succeeds */
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (len == 0 || arr[len - 1].id != id) {
            if (len == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                struct store_sensor *na = realloc(arr, ncap * sizeof *arr);
                if (!na) {
                    free(arr);
                    sqlite3_reset(st);
                    return IOT_ENOMEM;
                }
                arr = na;
                cap = ncap;
            }
            struct store_sensor *x = &arr[len++];
            memset(x, 0, sizeof *x);
            x->id = id;
            x->device_id = sqlite3_column_int64(st, 1);
            sqlite_copy_text(x->uuid, sizeof x->uuid, st, 2);
            x->is_active = sqlite3_column_int(st, 3);
        }
        if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
            struct store_threshold *t =
                &arr[len - 1].thr[severity_parse((const char *)sqlite3_column_text(st, 5))];
            t->id = sqlite3_column_int64(st, 4);
            if ((t->has_min = sqlite3_column_type(st, 6) != SQLITE_NULL))
                t->min = sqlite3_column_double(st, 6);
            if ((t->has_max = sqlite3_column_type(st, 7) != SQLITE_NULL))
                t->max = sqlite3_column_double(st, 7);
            if ((t->has_delta = sqlite3_column_type(st, 8) != SQLITE_NULL))
                t->delta_max = sqlite3_column_double(st, 8);
        }
    }
    if (rc != SQLITE_DONE) {
        int e = sqlite_fail(s, rc);
        sqlite3_reset(st);
        free(arr);
        return e;
    }
    sqlite3_reset(st);
    *out = store_sensors_fit(arr, len);
    *n = len;
    return 0;
}

static int sq_device_sensors(struct store *base, int64_t device_id, struct store_sensor **out,
                             size_t *n)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_DEVICE_SENSORS, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, device_id);
    return read_sensors(s, st, out, n);
}

static int sq_sensor_get(struct store *base, int64_t sensor_id, struct store_sensor *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    struct store_sensor *arr;
    size_t n;
    int rc = stmt(s, ST_SENSOR_GET, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, sensor_id);
    if ((rc = read_sensors(s, st, &arr, &n))) return rc;
    if (n == 0)
        rc = IOT_ENOTFOUND;
    else
        *out = arr[0];
    free(arr);
    return rc;
}

static int sq_device_status(struct store *base, int64_t device_id, store_status_cb cb, void *ud)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_DEVICE_STATUS, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, device_id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_sensor_status r;
        memset(&r, 0, sizeof r);
        r.sensor_id = sqlite3_column_int64(st, 0);
        sqlite_copy_text(r.uuid, sizeof r.uuid, st, 1);
        sqlite_copy_text(r.name, sizeof r.name, st, 2);
        r.has_reading = sqlite3_column_type(st, 3) != SQLITE_NULL;
        r.last_ts = sqlite3_column_int64(st, 3);
        r.last_value = sqlite3_column_double(st, 4);
        r.last_class = reading_class_parse((const char *)sqlite3_column_text(st, 5));
        r.active_alerts = sqlite3_column_int64(st, 6);
        r.critical_active = sqlite3_column_int64(st, 7) > 0;
        r.no_data_active = sqlite3_column_int64(st, 8) > 0;
        int cbrc = cb(&r, ud);
        if (cbrc) {
            sqlite3_reset(st);
            return cbrc;
        }
    }
    int ret = rc == SQLITE_DONE ? 0 : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

static int sq_device_add(struct store *base, const char *uuid, const char *name,
                         const unsigned char key_hash[STORE_KEY_HASH_LEN], int64_t now, int64_t *id)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    char hex[2 * STORE_KEY_HASH_LEN + 1];
    int rc = stmt(s, ST_DEVICE_ADD, &st);
    if (rc) return rc;
    secret_hash_hex(key_hash, hex);
    sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, hex, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    if ((rc = sqlite_exec_done(s, st))) return rc;
    *id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

/* Runs an UPDATE by uuid; IOT_ENOTFOUND when no row matched. */
static int set_active(struct sqlite_store *s, enum stmt_id id, const char *uuid, int active)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, id, &st);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, active ? 1 : 0);
    if ((rc = sqlite_exec_done(s, st))) return rc;
    return sqlite3_changes(s->db) ? 0 : IOT_ENOTFOUND;
}

static int sq_device_set_active(struct store *base, const char *uuid, int active)
{
    return set_active((struct sqlite_store *)base, ST_DEVICE_SET_ACTIVE, uuid, active);
}

static int sq_sensor_set_active(struct store *base, const char *uuid, int active)
{
    return set_active((struct sqlite_store *)base, ST_SENSOR_SET_ACTIVE, uuid, active);
}

static int sq_sensor_add(struct store *base, const char *device_uuid, const char *uuid,
                         const char *name, const char *type, const char *unit, int64_t now,
                         int64_t *id, int64_t *device_id)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_SENSOR_ADD, &st);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, unit, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    sqlite3_bind_text(st, 6, device_uuid, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        *device_id = sqlite3_column_int64(st, 1);
        rc = sqlite_exec_done(s, st); /* finish the statement */
        return rc;
    }
    int ret = rc == SQLITE_DONE ? IOT_ENOTFOUND : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

static int sq_threshold_clear(struct store *base, const char *sensor_uuid, enum severity sev)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_THRESHOLD_CLEAR, &st);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, sensor_uuid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, severity_name(sev), -1, SQLITE_STATIC);
    if ((rc = sqlite_exec_done(s, st)) || sqlite3_changes(s->db) > 0) return rc;
    /* Nothing cleared: an unknown sensor is IOT_ENOTFOUND, a sensor without one is fine. */
    if ((rc = stmt(s, ST_SENSOR_EXISTS, &st))) return rc;
    sqlite3_bind_text(st, 1, sensor_uuid, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? IOT_ENOTFOUND : sqlite_fail(s, src);
    sqlite3_reset(st);
    return rc;
}

/* Replaces the active threshold of (sensor, severity) in one transaction. */
static int sq_threshold_set(struct store *base, const char *sensor_uuid, enum severity sev,
                            const struct store_threshold *t, int64_t now, int64_t *id)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = sqlite_exec_sql(s, "BEGIN IMMEDIATE");
    if (rc) return rc;
    if ((rc = sq_threshold_clear(base, sensor_uuid, sev))) goto out;
    if ((rc = stmt(s, ST_THRESHOLD_INSERT, &st))) goto out;
    sqlite3_bind_text(st, 1, sensor_uuid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, severity_name(sev), -1, SQLITE_STATIC);
    sqlite_bind_opt_double(st, 3, t->has_min, t->min);
    sqlite_bind_opt_double(st, 4, t->has_max, t->max);
    sqlite_bind_opt_double(st, 5, t->has_delta, t->delta_max);
    sqlite3_bind_int64(st, 6, now);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        rc = sqlite_exec_done(s, st);
    } else {
        rc = src == SQLITE_DONE ? IOT_ENOTFOUND : sqlite_fail(s, src);
        sqlite3_reset(st);
    }
out:
    if (rc == 0) return sqlite_exec_sql(s, "COMMIT");
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int sq_tx_begin(struct store *base)
{
    return sqlite_exec_sql((struct sqlite_store *)base, "BEGIN IMMEDIATE");
}

static int sq_tx_commit(struct store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int rc = sqlite_exec_sql(s, "COMMIT");
    if (rc && !sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int sq_tx_rollback(struct store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    if (sqlite3_get_autocommit(s->db)) return 0; /* SQLite already rolled back */
    return sqlite_exec_sql(s, "ROLLBACK");
}

static int sq_savepoint(struct store *base)
{
    return sqlite_exec_sql((struct sqlite_store *)base, "SAVEPOINT pkt");
}

static int sq_savepoint_release(struct store *base)
{
    return sqlite_exec_sql((struct sqlite_store *)base, "RELEASE pkt");
}

static int sq_savepoint_rollback(struct store *base)
{
    return sqlite_exec_sql((struct sqlite_store *)base, "ROLLBACK TO pkt; RELEASE pkt");
}

/*
 * Copies committed WAL frames into the database file without blocking
 * writers or readers (PASSIVE). Once every frame is copied, the writer's next
 * transaction starts the log over by itself; journal_size_limit then trims
 * the file. Nothing here ever waits for the writer.
 */
static int sq_maintain(struct store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    return rc == SQLITE_OK || rc == SQLITE_BUSY ? 0 : sqlite_fail(s, rc);
}

/*
 * PRAGMA data_version changes whenever another connection (a job, the
 * CLI, an operator's sqlite3 shell) commits to the file; the writer's own
 * commits leave it unchanged. That is exactly "someone else may have
 * changed state": no cooperation needed from out-of-band writers.
 */
static int sq_change_epoch(struct store *base, uint64_t *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_DATA_VERSION, &st);
    if (rc) return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *out = (uint64_t)sqlite3_column_int64(st, 0);
    int ret = rc == SQLITE_ROW ? 0 : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

static int sq_packet_get(struct store *base, int64_t device_id, const char *packet_id,
                         int64_t since, char **response)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_PACKET_GET, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, device_id);
    sqlite3_bind_text(st, 2, packet_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, since);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        *response = strdup(t ? t : "");
        sqlite3_reset(st);
        return *response ? 0 : IOT_ENOMEM;
    }
    int ret = rc == SQLITE_DONE ? IOT_ENOTFOUND : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

/* Records a packet id, replacing an expired row (see store.h). */
static int sq_packet_put(struct store *base, int64_t device_id, const char *packet_id,
                         const char *response, int64_t now, int64_t expired_before)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_PACKET_PUT, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, device_id);
    sqlite3_bind_text(st, 2, packet_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_text(st, 4, response, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, expired_before);
    if ((rc = sqlite_exec_done(s, st))) return rc;
    if (sqlite3_changes(s->db)) return 0;
    snprintf(s->err, sizeof s->err, "packet_id already recorded");
    return IOT_EEXIST;
}

static int sq_packets_purge(struct store *base, int64_t before)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_PACKETS_PURGE, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, before);
    return sqlite_exec_done(s, st);
}

/* A sensor's state (has_last 0 when it has none), for states_load and the reading chain. */
int sqlite_state_get(struct store *base, int64_t sensor_id, struct store_sensor_state *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_STATE_GET, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, sensor_id);
    memset(out, 0, sizeof *out);
    out->sensor_id = sensor_id;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->has_last = sqlite3_column_type(st, 0) != SQLITE_NULL;
        out->last_ts = sqlite3_column_int64(st, 0);
        out->last_value = sqlite3_column_double(st, 1);
        out->last_class = reading_class_parse((const char *)sqlite3_column_text(st, 2));
        if (out->last_class == CLASS_INVALID) out->last_class = CLASS_NORMAL;
        out->normal_run = sqlite3_column_int64(st, 3);
        /* NULL: a reading written by hand (schema step 4's trigger): head unknown. */
        out->last_reading_id = sqlite3_column_type(st, 4) == SQLITE_NULL
                                   ? STORE_READING_UNKNOWN
                                   : sqlite3_column_int64(st, 4);
        rc = SQLITE_DONE;
    }
    int ret = rc == SQLITE_DONE ? 0 : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

/* IOT_ENOTFOUND if sensor `id` is not in the database (deleted). */
static int sensor_present(struct sqlite_store *s, int64_t id)
{
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_SENSOR_ID_EXISTS, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    int src = sqlite3_step(st);
    rc = src == SQLITE_ROW ? 0 : src == SQLITE_DONE ? IOT_ENOTFOUND : sqlite_fail(s, src);
    sqlite3_reset(st);
    if (rc == IOT_ENOTFOUND)
        snprintf(s->err, sizeof s->err, "sensor %lld was deleted", (long long)id);
    return rc;
}

static int sq_alerts_active(struct store *base, int64_t sensor_id,
                            struct store_alert out[ALERT_KINDS], unsigned char present[ALERT_KINDS])
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_ALERTS_ACTIVE, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, sensor_id);
    for (int k = 0; k < ALERT_KINDS; k++)
        present[k] = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        enum alert_kind k = alert_kind_parse((const char *)sqlite3_column_text(st, 5));
        struct store_alert *a = &out[k];
        memset(a, 0, sizeof *a);
        present[k] = 1;
        a->id = sqlite3_column_int64(st, 0);
        a->sensor_id = sqlite3_column_int64(st, 1);
        a->device_id = sqlite3_column_int64(st, 2);
        a->threshold_id = sqlite3_column_int64(st, 3);
        a->severity = severity_parse((const char *)sqlite3_column_text(st, 4));
        a->kind = k;
        a->active = 1;
        a->first_value = sqlite3_column_double(st, 6);
        a->last_value = sqlite3_column_double(st, 7);
        a->hit_count = sqlite3_column_int64(st, 8);
        a->triggered_at = sqlite3_column_int64(st, 9);
        a->last_seen_at = sqlite3_column_int64(st, 10);
        sqlite_copy_text(a->message, sizeof a->message, st, 11);
    }
    int ret = rc == SQLITE_DONE ? 0 : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

/*
 * SQLite has no round trips to save: the batch forms loop over the single
 * ones. On the ingest writer's connection, which checks no foreign keys, a
 * sensor that is gone (device delete) is IOT_ENOTFOUND: the writer loads a
 * sensor's state before it stores anything for it, and again after every
 * commit of another connection (store_change_epoch), so a gateway whose
 * resolver still holds a deleted device fails its packets instead of
 * storing rows of a sensor that no longer exists. Other connections check
 * foreign keys, and their inserts fail on such a sensor by themselves.
 */
static int sq_states_load(struct store *base, const int64_t *ids, size_t n,
                          struct store_sensor_snapshot *out)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        if (s->writer) rc = sensor_present(s, ids[i]);
        if (!rc) rc = sqlite_state_get(base, ids[i], &out[i].st);
        if (!rc) rc = sq_alerts_active(base, ids[i], out[i].alerts, out[i].present);
    }
    return rc;
}

static int sq_alert_insert(struct store *base, struct store_alert *a)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_ALERT_INSERT, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, a->sensor_id);
    sqlite3_bind_int64(st, 2, a->device_id);
    bind_opt_int(st, 3, a->threshold_id);
    sqlite3_bind_text(st, 4, severity_name(a->severity), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, alert_kind_name(a->kind), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, a->active ? "active" : "resolved", -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 7, a->first_value);
    sqlite3_bind_double(st, 8, a->last_value);
    sqlite3_bind_int64(st, 9, a->hit_count);
    sqlite3_bind_int64(st, 10, a->triggered_at);
    sqlite3_bind_int64(st, 11, a->last_seen_at);
    bind_opt_int(st, 12, a->resolved_at);
    sqlite3_bind_text(st, 13, a->message, -1, SQLITE_STATIC);
    if ((rc = sqlite_exec_done(s, st))) return rc;
    a->id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

static int sq_alert_update(struct store *base, const struct store_alert *a)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_ALERT_UPDATE, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, a->id);
    bind_opt_int(st, 2, a->threshold_id);
    sqlite3_bind_text(st, 3, severity_name(a->severity), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, a->active ? "active" : "resolved", -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 5, a->last_value);
    sqlite3_bind_int64(st, 6, a->hit_count);
    sqlite3_bind_int64(st, 7, a->last_seen_at);
    bind_opt_int(st, 8, a->resolved_at);
    sqlite3_bind_text(st, 9, a->message, -1, SQLITE_STATIC);
    return sqlite_exec_done(s, st);
}

static int sq_notification_insert(struct store *base, int64_t alert_id, enum alert_event ev,
                                  enum severity sev, int64_t now)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_NOTIFY_INSERT, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, alert_id);
    sqlite3_bind_text(st, 2, alert_event_name(ev), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, severity_name(sev), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    return sqlite_exec_done(s, st);
}

static int sq_device_touch(struct store *base, int64_t device_id, int64_t last_seen)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = stmt(s, ST_DEVICE_TOUCH, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, device_id);
    sqlite3_bind_int64(st, 2, last_seen);
    return sqlite_exec_done(s, st);
}

int store_sqlite_open(const char *path, const struct store_open_opts *opts, struct store **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    struct sqlite_store *s = calloc(1, sizeof *s);
    if (!s) return IOT_ENOMEM;
    s->base.ops = &sqlite_ops;
    s->writer = opts->ingest_writer;
    int rc = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "no memory");
        sq_close(&s->base);
        return IOT_EUNAVAIL;
    }
    sqlite3_busy_timeout(s->db, (int)opts->busy_timeout_ms);
    sqlite3_extended_result_codes(s->db, 1);
    char pragmas[320];
    /*
     * A connection whose owner runs store_maintain (the gateway's writer, with
     * its maintainer thread) leaves checkpoints to that thread; only should it
     * fall SQLITE_WRITER_CHECKPOINT_PAGES behind does a commit checkpoint
     * itself, which bounds the WAL without ever blocking on a reset.
     */
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=%s;"
             " PRAGMA cache_size=-%lld; PRAGMA temp_store=MEMORY;"
             " PRAGMA journal_size_limit=67108864;%s",
             opts->sync_full ? "FULL" : "NORMAL", opts->ingest_writer ? "OFF" : "ON",
             (long long)opts->cache_mb * 1024,
             opts->background_checkpoint
                 ? " PRAGMA wal_autocheckpoint=" SQLITE_WRITER_CHECKPOINT_PAGES ";"
                 : "");
    /*
     * The gateway's writer links every reading it stores and writes its
     * sensor's state in the same transaction, which is all the reading-chain
     * trigger (schema step 4) does for other writers, and adds a reading stored
     * below the rollup mark to its hour (sqlite_rollup_add, the rollup trigger
     * of step 5). Off on its connection,
     * a reading INSERT is a single-row statement again and SQLite opens no
     * statement journal for it (with the trigger: two 4 KiB page copies into
     * the sub-journal per reading, docs/BENCHMARKS.md).
     * Foreign keys are not checked on its connection either (the PRAGMA below
     * turns them on for every other): every id it writes was read from this
     * database by the resolver or the state load, so the check, one parent
     * lookup per row, could fail only for a device deleted since (device
     * delete), and sq_states_load checks instead that a sensor still exists
     * whenever the writer loads its state, which it does before it stores
     * anything for it and again after any commit of another connection.
     */
    s->writer = opts->ingest_writer;
    if (opts->ingest_writer &&
        (rc = sqlite3_db_config(s->db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, NULL)) != SQLITE_OK) {
        snprintf(err, errlen, "cannot configure %s: %s", path, sqlite3_errmsg(s->db));
        int e = sqlite_fail(s, rc);
        sq_close(&s->base);
        return e;
    }
    if ((rc = sqlite3_exec(s->db, pragmas, NULL, NULL, NULL)) != SQLITE_OK) {
        snprintf(err, errlen, "cannot configure %s: %s", path, sqlite3_errmsg(s->db));
        int e = sqlite_fail(s, rc);
        sq_close(&s->base);
        return e;
    }
    *out = &s->base;
    return 0;
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .errmsg = sq_errmsg,
    .ping = sq_ping,
    .schema_init = sq_schema_init,
    .schema_version = sq_schema_version,
    .device_get = sq_device_get,
    .device_get_by_id = sq_device_get_by_id,
    .device_sensors = sq_device_sensors,
    .sensor_get = sq_sensor_get,
    .device_status = sq_device_status,
    .device_add = sq_device_add,
    .device_set_active = sq_device_set_active,
    .device_delete = sqlite_device_delete,
    .sensor_add = sq_sensor_add,
    .sensor_set_active = sq_sensor_set_active,
    .threshold_set = sq_threshold_set,
    .threshold_clear = sq_threshold_clear,
    .tx_begin = sq_tx_begin,
    .tx_commit = sq_tx_commit,
    .tx_rollback = sq_tx_rollback,
    .savepoint = sq_savepoint,
    .savepoint_release = sq_savepoint_release,
    .savepoint_rollback = sq_savepoint_rollback,
    .change_epoch = sq_change_epoch,
    .maintain = sq_maintain,
    .packet_get = sq_packet_get,
    .packet_put = sq_packet_put,
    .packets_purge = sq_packets_purge,
    .states_load = sq_states_load,
    .states_put = sqlite_states_put,
    .alert_insert = sq_alert_insert,
    .alert_update = sq_alert_update,
    .notification_insert = sq_notification_insert,
    .readings_insert = sqlite_readings_insert,
    .device_touch = sq_device_touch,
    .job_sensors = sqlite_job_sensors,
    .silent_sensors = sqlite_silent_sensors,
    .job_sensor_get = sqlite_job_sensor_get,
    .recent_readings = sqlite_recent_readings,
    .model_ensure = sqlite_model_ensure,
    .prediction_insert = sqlite_prediction_insert,
    .ml_event_active = sqlite_ml_event_active,
    .ml_event_insert = sqlite_ml_event_insert,
    .ml_event_resolve = sqlite_ml_event_resolve,
    .unexplained = sqlite_unexplained,
    .prediction_explain = sqlite_prediction_explain,
    .online_load = sqlite_online_load,
    .online_apply = sqlite_online_apply,
    .online_prune = sqlite_online_prune,
    .job_stat_record = sqlite_job_stat_record,
    .job_stats = sqlite_job_stats,
    /* retention and rollups (sqlite_retention.c) */
    .rollup_step = sqlite_rollup_step,
    .readings_expire = sqlite_readings_expire,
    .rollups_expire = sqlite_rollups_expire,
    .readings_range = sqlite_readings_range,
    .readings_buckets = sqlite_readings_buckets,
};
