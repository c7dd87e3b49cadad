#include "store/sqlite_schema.h"
#include "core/err.h"

#include <stdio.h>

/* Whether the reading a trigger sees is at least as new as its sensor's newest. */
#define NEWER "(sensor_state.last_ts IS NULL OR excluded.last_ts >= sensor_state.last_ts)"

/* Step N brings version N-1 to N. Never edit a released step: append one. */
static const char *const steps[SQLITE_SCHEMA_LATEST] = {
    /* 1: the tables of SPEC §3 plus ingest bookkeeping. */
    "CREATE TABLE devices("
    " id INTEGER PRIMARY KEY,"
    " device_uuid TEXT NOT NULL UNIQUE,"
    " name TEXT NOT NULL,"
    " device_key_hash TEXT NOT NULL,"
    " is_active INTEGER NOT NULL DEFAULT 1,"
    " created_at INTEGER NOT NULL,"
    " last_seen_at INTEGER);"
    "CREATE TABLE sensors("
    " id INTEGER PRIMARY KEY,"
    " sensor_uuid TEXT NOT NULL UNIQUE,"
    " device_id INTEGER NOT NULL REFERENCES devices(id),"
    " name TEXT NOT NULL,"
    " sensor_type TEXT,"
    " unit TEXT,"
    " is_active INTEGER NOT NULL DEFAULT 1,"
    " created_at INTEGER NOT NULL);"
    "CREATE INDEX sensors_device ON sensors(device_id);"
    "CREATE TABLE sensor_readings("
    " id INTEGER PRIMARY KEY,"
    " sensor_id INTEGER NOT NULL REFERENCES sensors(id),"
    " value REAL NOT NULL,"
    " ts INTEGER NOT NULL,"
    " ingested_at INTEGER NOT NULL,"
    " class TEXT NOT NULL,"
    " late INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX sensor_readings_sensor_ts ON sensor_readings(sensor_id, ts);"
    "CREATE TABLE alert_thresholds("
    " id INTEGER PRIMARY KEY,"
    " sensor_id INTEGER NOT NULL REFERENCES sensors(id),"
    " severity TEXT NOT NULL CHECK (severity IN ('warning','critical')),"
    " min_value REAL,"
    " max_value REAL,"
    " delta_max REAL,"
    " is_active INTEGER NOT NULL DEFAULT 1,"
    " created_at INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX alert_thresholds_one_active ON alert_thresholds(sensor_id, severity)"
    " WHERE is_active = 1;"
    "CREATE TABLE alerts("
    " id INTEGER PRIMARY KEY,"
    " sensor_id INTEGER NOT NULL REFERENCES sensors(id),"
    " device_id INTEGER NOT NULL REFERENCES devices(id),"
    " threshold_id INTEGER REFERENCES alert_thresholds(id),"
    " severity TEXT NOT NULL CHECK (severity IN ('warning','critical')),"
    " kind TEXT NOT NULL CHECK (kind IN ('threshold','delta_spike','no_data')),"
    " status TEXT NOT NULL CHECK (status IN ('active','resolved')),"
    " first_value REAL,"
    " last_value REAL,"
    " hit_count INTEGER NOT NULL DEFAULT 1,"
    " triggered_at INTEGER NOT NULL,"
    " last_seen_at INTEGER NOT NULL,"
    " resolved_at INTEGER,"
    " message TEXT);"
    "CREATE UNIQUE INDEX alerts_one_active ON alerts(sensor_id, kind) WHERE status = 'active';"
    "CREATE INDEX alerts_sensor ON alerts(sensor_id);"
    "CREATE TABLE alert_notifications("
    " id INTEGER PRIMARY KEY,"
    " alert_id INTEGER NOT NULL REFERENCES alerts(id),"
    " event TEXT NOT NULL CHECK (event IN ('triggered','escalated','resolved')),"
    " severity TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " delivered_at INTEGER);"
    "CREATE INDEX alert_notifications_alert ON alert_notifications(alert_id);"
    "CREATE TABLE ml_models("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " model_type TEXT NOT NULL,"
    " version TEXT NOT NULL,"
    " params TEXT,"
    " is_active INTEGER NOT NULL DEFAULT 1,"
    " created_at INTEGER NOT NULL,"
    " UNIQUE(name, version));"
    "CREATE TABLE predictions("
    " id INTEGER PRIMARY KEY,"
    " sensor_id INTEGER NOT NULL REFERENCES sensors(id),"
    " model_id INTEGER NOT NULL REFERENCES ml_models(id),"
    " predicted_value REAL NOT NULL,"
    " confidence REAL NOT NULL,"
    " horizon_minutes INTEGER NOT NULL,"
    " target_ts INTEGER NOT NULL,"
    " predicted_at INTEGER NOT NULL,"
    " is_anomaly INTEGER NOT NULL DEFAULT 0,"
    " anomaly_score REAL NOT NULL DEFAULT 0,"
    " explanation TEXT);"
    "CREATE INDEX predictions_sensor ON predictions(sensor_id, predicted_at);"
    "CREATE INDEX predictions_unexplained ON predictions(anomaly_score)"
    " WHERE is_anomaly = 1 AND explanation IS NULL;"
    "CREATE TABLE ml_events("
    " id INTEGER PRIMARY KEY,"
    " sensor_id INTEGER NOT NULL REFERENCES sensors(id),"
    " device_id INTEGER NOT NULL REFERENCES devices(id),"
    " prediction_id INTEGER REFERENCES predictions(id),"
    " event_type TEXT NOT NULL,"
    " severity TEXT NOT NULL,"
    " title TEXT NOT NULL,"
    " message TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK (status IN ('active','resolved')),"
    " created_at INTEGER NOT NULL,"
    " payload TEXT);"
    "CREATE UNIQUE INDEX ml_events_one_active ON ml_events(sensor_id, event_type)"
    " WHERE status = 'active';"
    "CREATE TABLE ingest_packets("
    " device_id INTEGER NOT NULL REFERENCES devices(id),"
    " packet_id TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " response TEXT NOT NULL,"
    " PRIMARY KEY (device_id, packet_id)) WITHOUT ROWID;"
    "CREATE INDEX ingest_packets_created ON ingest_packets(created_at);"
    "CREATE TABLE sensor_state("
    " sensor_id INTEGER PRIMARY KEY REFERENCES sensors(id),"
    " last_ts INTEGER,"
    " last_value REAL,"
    " last_class TEXT,"
    " normal_run INTEGER NOT NULL DEFAULT 0);",
    /*
     * 2: the online ML consumer (iot-ingest consume): each sensor's
     * exponentially weighted model, and the broker messages already applied
     * (stream id + stream sequence), so a redelivered message is skipped.
     */
    "CREATE TABLE online_state("
    " sensor_id INTEGER PRIMARY KEY,"
    " mean REAL NOT NULL,"
    " var REAL NOT NULL,"
    " count INTEGER NOT NULL,"
    " last_ts INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE TABLE consumer_applied("
    " stream TEXT NOT NULL,"
    " seq INTEGER NOT NULL,"
    " sensor_id INTEGER NOT NULL,"
    " consumer TEXT NOT NULL,"
    " applied_at INTEGER NOT NULL,"
    " PRIMARY KEY (stream, seq)) WITHOUT ROWID;",
    /* 3: batch-job statistics for /metrics (one row per job, monotonic counters). */
    "CREATE TABLE job_stats("
    " job TEXT PRIMARY KEY,"
    " runs_ok INTEGER NOT NULL, runs_failed INTEGER NOT NULL, duration_sum_ms INTEGER NOT NULL,"
    " b0 INTEGER NOT NULL, b1 INTEGER NOT NULL, b2 INTEGER NOT NULL, b3 INTEGER NOT NULL,"
    " b4 INTEGER NOT NULL, b5 INTEGER NOT NULL, b6 INTEGER NOT NULL, b7 INTEGER NOT NULL,"
    " b8 INTEGER NOT NULL, b9 INTEGER NOT NULL,"
    " last_duration_ms INTEGER NOT NULL, last_run_at INTEGER NOT NULL, last_success_at INTEGER)"
    " WITHOUT ROWID;",
    /*
     * 4: the reading chain replaces the (sensor_id, ts) index. That index
     * dirtied one page per sensor per commit (docs/BENCHMARKS.md); each
     * reading now points to its sensor's previous one (prev_id, NULL =
     * unknown) and sensor_state to the newest (last_reading_id), while the
     * append-only (ts, sensor_id) index serves time ranges and retention.
     * Existing rows are chained here, in id (insertion) order. A reading
     * stored without a link (written by hand: prev_id NULL) marks its sensor's
     * head unknown, so the next walk scans instead of skipping it, and counts
     * in the sensor's state as the gateway's own would (newest time, value,
     * class), so that the writer flags older readings late after it.
     */
    "ALTER TABLE sensor_readings ADD COLUMN prev_id INTEGER;"
    "ALTER TABLE sensor_state ADD COLUMN last_reading_id INTEGER;"
    "UPDATE sensor_readings SET prev_id = c.prev FROM"
    " (SELECT id, coalesce(lag(id) OVER (PARTITION BY sensor_id ORDER BY id), 0) AS prev"
    "  FROM sensor_readings) AS c WHERE c.id = sensor_readings.id;"
    "UPDATE sensor_state SET last_reading_id ="
    " (SELECT max(id) FROM sensor_readings r WHERE r.sensor_id = sensor_state.sensor_id);"
    "DROP INDEX sensor_readings_sensor_ts;"
    "CREATE INDEX sensor_readings_ts_sensor ON sensor_readings(ts, sensor_id);"
    "CREATE TRIGGER sensor_readings_unlinked AFTER INSERT ON sensor_readings"
    " WHEN NEW.prev_id IS NULL BEGIN"
    " INSERT INTO sensor_state(sensor_id, last_ts, last_value, last_class, last_reading_id)"
    " VALUES (NEW.sensor_id, NEW.ts, NEW.value, NEW.class, NULL)"
    " ON CONFLICT(sensor_id) DO UPDATE SET last_reading_id = NULL,"
    " last_ts = iif(" NEWER ", excluded.last_ts, last_ts),"
    " last_value = iif(" NEWER ", excluded.last_value, last_value),"
    " last_class = iif(" NEWER ", excluded.last_class, last_class); END;",
    /*
     * 5: hourly rollups (SPEC §12, job retention). One row per sensor per
     * hour (hour = its start, ms), written by the job for every complete
     * hour below rollup_state.rolled_until. A reading stored later into an
     * hour below that mark (a late reading, or one from a sensor that was
     * silent) is added to its hour by the trigger, in the writer's own
     * transaction, so a rollup always equals the aggregate of its hour's raw
     * readings while they exist. rollup_state has exactly one row.
     */
    "CREATE TABLE sensor_readings_hourly("
    " sensor_id INTEGER NOT NULL REFERENCES sensors(id),"
    " hour INTEGER NOT NULL,"
    " count INTEGER NOT NULL,"
    " min REAL NOT NULL,"
    " max REAL NOT NULL,"
    " sum REAL NOT NULL,"
    " first_ts INTEGER NOT NULL,"
    " last_ts INTEGER NOT NULL,"
    " PRIMARY KEY (sensor_id, hour)) WITHOUT ROWID;"
    "CREATE INDEX sensor_readings_hourly_hour ON sensor_readings_hourly(hour);"
    "CREATE TABLE rollup_state(id INTEGER PRIMARY KEY CHECK (id = 1), rolled_until INTEGER);"
    "INSERT INTO rollup_state VALUES (1, NULL);"
    "CREATE TRIGGER sensor_readings_rolled_up AFTER INSERT ON sensor_readings"
    " WHEN NEW.ts < (SELECT rolled_until FROM rollup_state WHERE id = 1) BEGIN"
    " INSERT INTO sensor_readings_hourly(sensor_id, hour, count, min, max, sum, first_ts, last_ts)"
    " VALUES (NEW.sensor_id, NEW.ts - (NEW.ts % 3600000 + 3600000) % 3600000, 1, NEW.value,"
    " NEW.value, NEW.value, NEW.ts, NEW.ts)"
    " ON CONFLICT(sensor_id, hour) DO UPDATE SET count = count + 1,"
    " min = min(\"min\", excluded.min), max = max(\"max\", excluded.max), sum = sum + excluded.sum,"
    " first_ts = min(first_ts, excluded.first_ts), last_ts = max(last_ts, excluded.last_ts);"
    " END;",
};

int sqlite_schema_read_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *st;
    *out = 0;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT count(*) FROM sqlite_master WHERE type='table'"
                                " AND name='schema_version'",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return IOT_EDB;
    int exists = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0;
    sqlite3_finalize(st);
    if (!exists) return 0;
    if (sqlite3_prepare_v2(db, "SELECT max(version) FROM schema_version", -1, &st, NULL) !=
        SQLITE_OK)
        return IOT_EDB;
    if (sqlite3_step(st) == SQLITE_ROW) *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

int sqlite_schema_apply(sqlite3 *db, char *err, size_t errlen)
{
    char *msg = NULL;
    int version, rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
    if (rc != SQLITE_OK) goto fail;
    if (sqlite_schema_read_version(db, &version)) goto fail;
    if (version > SQLITE_SCHEMA_LATEST) {
        snprintf(err, errlen, "database schema version %d is newer than this binary's (%d)",
                 version, SQLITE_SCHEMA_LATEST);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return IOT_EINVAL;
    }
    rc = sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)",
                      NULL, NULL, &msg);
    if (rc != SQLITE_OK) goto fail;
    for (int v = version; v < SQLITE_SCHEMA_LATEST; v++) {
        if ((rc = sqlite3_exec(db, steps[v], NULL, NULL, &msg)) != SQLITE_OK) goto fail;
    }
    if (version < SQLITE_SCHEMA_LATEST) {
        char sql[96];
        snprintf(sql, sizeof sql,
                 "DELETE FROM schema_version; INSERT INTO schema_version VALUES(%d)",
                 SQLITE_SCHEMA_LATEST);
        if ((rc = sqlite3_exec(db, sql, NULL, NULL, &msg)) != SQLITE_OK) goto fail;
    }
    if ((rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg)) != SQLITE_OK) goto fail;
    return 0;
fail:
    snprintf(err, errlen, "schema: %s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? IOT_EBUSY : IOT_EDB;
}
