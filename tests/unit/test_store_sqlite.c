/*
 * Unit tests for the SQLite store backend (src/store/store_sqlite.c) and for
 * the fault-injecting wrapper (tests/support/store_fault.c), on real database
 * files in a fresh temporary directory per test. Rows are checked with a
 * second, plain sqlite3 connection, as the other readers of SPEC §3 would.
 */
#include "core/err.h"
#include "store/sqlite_schema.h"
#include "store/store.h"
#include "support/store_fault.h"
#include "sqlite_peer.h"

#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T0   1700000000000LL /* a reading time, ms */
#define HOUR 3600000LL
#define DAY  (24 * HOUR)

/* ---- fixture: a temp dir, a store on it, a peer connection --------------- */

static char dir[64];
static char path[128];
static char url[160];
static struct store *st;
static sqlite3 *peer;

static const struct store_open_opts OPTS = {.busy_timeout_ms = 5000, .cache_mb = 8};

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/iot-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    st = NULL;
    peer = NULL;
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
    if (peer) sqlite3_close(peer);
    peer = NULL;
    rm_db_files(path);
    rmdir(dir);
}

TestSuite(store_sqlite, .init = setup, .fini = teardown);
TestSuite(store_fault, .init = setup, .fini = teardown);

static struct store *open_store(const struct store_open_opts *o)
{
    struct store *s = NULL;
    char err[IOT_ERRBUF] = "";
    int rc = store_open(url, o, &s, err, sizeof err);
    cr_assert_eq(rc, 0, "store_open: %s (%s)", iot_strerror(rc), err);
    return s;
}

/* Opens st with the schema, and the peer connection. */
static void open_all(void)
{
    st = open_store(&OPTS);
    cr_assert_eq(store_schema_init(st), 0, "%s", store_errmsg(st));
    cr_assert_eq(sqlite3_open_v2(path, &peer, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(peer, 5000);
}

/* On the peer connection (sqlite_peer.h): q_int is -1 for no row, -2 for NULL. */
#define peer_exec(...) sqlite_peer_exec(peer, __VA_ARGS__)
#define q_int(...)     sqlite_peer_int(peer, __VA_ARGS__)
#define q_text(...)    sqlite_peer_text(peer, __VA_ARGS__)

static void key_hash(unsigned char h[STORE_KEY_HASH_LEN], unsigned char seed)
{
    for (int i = 0; i < STORE_KEY_HASH_LEN; i++)
        h[i] = (unsigned char)(seed + i * 7);
}

static int64_t add_device(struct store *s, const char *uuid)
{
    unsigned char h[STORE_KEY_HASH_LEN];
    int64_t id = 0;
    key_hash(h, 1);
    int rc = store_device_add(s, uuid, "dev", h, T0, &id);
    cr_assert_eq(rc, 0, "device_add %s: %s", uuid, iot_strerror(rc));
    return id;
}

static int64_t add_sensor(struct store *s, const char *dev, const char *uuid)
{
    int64_t id = 0, did = 0;
    int rc = store_sensor_add(s, dev, uuid, "temp", "temperature", "C", T0, &id, &did);
    cr_assert_eq(rc, 0, "sensor_add %s: %s", uuid, iot_strerror(rc));
    return id;
}

static struct store_threshold band(double min, double max)
{
    struct store_threshold t = {0};
    t.has_min = t.has_max = 1;
    t.min = min;
    t.max = max;
    return t;
}

/*
 * One sensor's state, its active alerts, and a state write, through the
 * batch ops the writer uses (states_load, states_put) on a list of one.
 */
static int state_get(struct store *s, int64_t sid, struct store_sensor_state *out)
{
    struct store_sensor_snapshot snap;
    int rc = store_states_load(s, &sid, 1, &snap);
    if (!rc) *out = snap.st;
    return rc;
}

static int state_put(struct store *s, const struct store_sensor_state *x)
{
    return store_states_put(s, &x, 1);
}

static int alerts_active(struct store *s, int64_t sid, struct store_alert out[ALERT_KINDS],
                         int present[ALERT_KINDS])
{
    struct store_sensor_snapshot snap;
    int rc = store_states_load(s, &sid, 1, &snap);
    if (rc) return rc;
    for (int k = 0; k < ALERT_KINDS; k++) {
        present[k] = snap.present[k];
        if (present[k]) out[k] = snap.alerts[k];
    }
    return 0;
}

/* ---- schema -------------------------------------------------------------- */

Test(store_sqlite, schema_init_is_idempotent_and_versioned)
{
    st = open_store(&OPTS);
    int v = -1;
    cr_assert_eq(store_schema_version(st, &v), 0);
    cr_expect_eq(v, 0, "empty database reports version %d", v);
    cr_assert_eq(store_schema_init(st), 0, "%s", store_errmsg(st));
    cr_assert_eq(store_schema_version(st, &v), 0);
    cr_expect_eq(v, SQLITE_SCHEMA_LATEST);
    cr_assert_eq(store_ping(st), 0);

    /* again, on the same connection and on a second one: no error, same version */
    cr_assert_eq(store_schema_init(st), 0, "%s", store_errmsg(st));
    struct store *other = open_store(&OPTS);
    cr_expect_eq(store_schema_init(other), 0, "%s", store_errmsg(other));
    cr_expect_eq(store_schema_version(other, &v), 0);
    cr_expect_eq(v, SQLITE_SCHEMA_LATEST);
    store_close(other);

    cr_assert_eq(sqlite3_open_v2(path, &peer, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    cr_expect_eq(q_int("SELECT count(*) FROM schema_version"), 1);
    char buf[32];
    cr_expect_str_eq(q_text(buf, sizeof buf, "PRAGMA journal_mode"), "wal");
}

/* The table and column names of SPEC §3 are a contract. */
Test(store_sqlite, schema_has_the_spec_tables_and_columns)
{
    open_all();
    static const char *const cols[][16] = {
        {"devices", "id", "device_uuid", "name", "device_key_hash", "is_active", "created_at",
         "last_seen_at"},
        {"sensors", "id", "sensor_uuid", "device_id", "name", "sensor_type", "unit", "is_active",
         "created_at"},
        {"sensor_readings", "id", "sensor_id", "value", "ts", "ingested_at", "class", "late"},
        {"alert_thresholds", "id", "sensor_id", "severity", "min_value", "max_value", "delta_max",
         "is_active", "created_at"},
        {"alerts", "id", "sensor_id", "device_id", "threshold_id", "severity", "kind", "status",
         "first_value", "last_value", "hit_count", "triggered_at", "last_seen_at", "resolved_at",
         "message"},
        {"alert_notifications", "id", "alert_id", "event", "severity", "created_at",
         "delivered_at"},
        {"ml_models", "id", "name", "model_type", "version", "params", "is_active", "created_at"},
        {"predictions", "id", "sensor_id", "model_id", "predicted_value", "confidence",
         "horizon_minutes", "target_ts", "predicted_at", "is_anomaly", "anomaly_score",
         "explanation"},
        {"ml_events", "id", "sensor_id", "device_id", "prediction_id", "event_type", "severity",
         "title", "message", "status", "created_at", "payload"},
        {"sensor_readings_hourly", "sensor_id", "hour", "count", "min", "max", "sum", "first_ts",
         "last_ts"},
    };
    for (size_t t = 0; t < sizeof cols / sizeof cols[0]; t++) {
        for (size_t c = 1; c < 16 && cols[t][c]; c++)
            cr_expect_eq(q_int("SELECT count(*) FROM pragma_table_info(%Q) WHERE name = %Q",
                               cols[t][0], cols[t][c]),
                         1, "missing column %s.%s", cols[t][0], cols[t][c]);
    }
}

Test(store_sqlite, newer_schema_is_refused)
{
    open_all();
    peer_exec("UPDATE schema_version SET version = version + 1");
    cr_expect_eq(store_schema_init(st), IOT_EINVAL);
    cr_expect_neq(strstr(store_errmsg(st), "newer"), NULL, "errmsg: %s", store_errmsg(st));
    /* and nothing was left half-done: the connection can still start a transaction */
    cr_expect_eq(store_tx_begin(st), 0, "%s", store_errmsg(st));
    cr_expect_eq(store_tx_rollback(st), 0);
}

/*
 * Schema step 4 on a database written by version 3: existing readings are
 * chained in id order and sensor_state gets each sensor's newest, so the
 * recent readings after the upgrade are those the old index gave.
 */
Test(store_sqlite, upgrade_to_4_chains_existing_readings)
{
    open_all();
    add_device(st, "dev-up");
    int64_t a = add_sensor(st, "dev-up", "sen-a"), b = add_sensor(st, "dev-up", "sen-b");
    /* back to the shape of version 3 */
    peer_exec("DROP TRIGGER sensor_readings_rolled_up; DROP TABLE sensor_readings_hourly;"
              "DROP TABLE rollup_state;"
              "DROP TRIGGER sensor_readings_unlinked; DROP INDEX sensor_readings_ts_sensor;"
              "CREATE INDEX sensor_readings_sensor_ts ON sensor_readings(sensor_id, ts);"
              "ALTER TABLE sensor_readings DROP COLUMN prev_id;"
              "ALTER TABLE sensor_state DROP COLUMN last_reading_id;"
              "UPDATE schema_version SET version = 3");
    /* interleaved readings of both sensors; one late reading of a */
    static const struct {
        int sensor_b, late;
        int64_t ts;
    } rows[] = {{0, 0, 1}, {1, 0, 1}, {0, 0, 2}, {0, 0, 5}, {1, 0, 3}, {0, 1, 3}, {1, 0, 4}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        peer_exec("INSERT INTO sensor_readings(sensor_id, value, ts, ingested_at,"
                  " class, late) VALUES (%lld, %d, %lld, %lld, 'normal', %d)",
                  (long long)(rows[i].sensor_b ? b : a), (int)i, (long long)(T0 + rows[i].ts),
                  (long long)T0, rows[i].late);
    peer_exec("INSERT INTO sensor_state(sensor_id, last_ts, last_value, last_class,"
              " normal_run) VALUES (%lld, %lld, 3, 'normal', 3),"
              " (%lld, %lld, 6, 'normal', 3)",
              (long long)a, (long long)(T0 + 5), (long long)b, (long long)(T0 + 4));

    cr_assert_eq(store_schema_init(st), 0, "%s", store_errmsg(st));
    int v = 0;
    cr_assert_eq(store_schema_version(st, &v), 0);
    cr_expect_eq(v, SQLITE_SCHEMA_LATEST);
    char buf[200];
    cr_expect_str_eq(q_text(buf, sizeof buf,
                            "SELECT group_concat(coalesce(prev_id, 'null'), ',') FROM"
                            " (SELECT prev_id FROM sensor_readings ORDER BY id)"),
                     "0,0,1,3,2,4,5");
    cr_expect_eq(
        q_int("SELECT last_reading_id FROM sensor_state WHERE sensor_id = %lld", (long long)a), 6);
    cr_expect_eq(
        q_int("SELECT last_reading_id FROM sensor_state WHERE sensor_id = %lld", (long long)b), 7);
    cr_expect_eq(
        q_int("SELECT count(*) FROM sqlite_master WHERE name = 'sensor_readings_sensor_ts'"), 0);
    cr_expect_eq(
        q_int("SELECT count(*) FROM sqlite_master WHERE name = 'sensor_readings_ts_sensor'"), 1);
    cr_expect_eq(
        q_int("SELECT count(*) FROM sqlite_master WHERE name = 'sensor_readings_unlinked'"), 1);

    /* a, newest first by time: ts 5 (id 4), 3 (id 6, late), 2 (id 3) */
    struct store_reading got[3];
    size_t n = 0;
    cr_assert_eq(store_recent_readings(st, a, 3, got, &n), 0, "%s", store_errmsg(st));
    cr_assert_eq(n, 3);
    cr_expect(got[0].id == 4 && got[1].id == 6 && got[2].id == 3, "%lld %lld %lld",
              (long long)got[0].id, (long long)got[1].id, (long long)got[2].id);
    cr_expect(got[1].late == 1 && got[0].ts == T0 + 5);
}

/*
 * Schema step 5: a reading stored into an hour below rollup_state.rolled_until
 * is added to that hour's rollup by the insert trigger; one at or above the
 * mark is left to the job.
 */
Test(store_sqlite, reading_into_a_rolled_up_hour_updates_its_rollup)
{
    open_all();
    add_device(st, "dev-r");
    int64_t a = add_sensor(st, "dev-r", "sen-r");
    int64_t h = T0 - T0 % HOUR;
    peer_exec("UPDATE rollup_state SET rolled_until = %lld", (long long)(h + HOUR));
    struct store_reading rows[3] = {
        {.sensor_id = a, .value = 4, .ts = h + 10, .ingested_at = T0, .prev_id = 0},
        {.sensor_id = a, .value = -2, .ts = h + 5, .ingested_at = T0, .prev_row = 1, .late = 1},
        {.sensor_id = a, .value = 9, .ts = h + HOUR, .ingested_at = T0, .prev_row = 2},
    };
    cr_assert_eq(store_tx_begin(st), 0);
    cr_assert_eq(store_readings_insert(st, rows, 3), 0, "%s", store_errmsg(st));
    cr_assert_eq(store_tx_commit(st), 0);
    char buf[200], want[200];
    snprintf(want, sizeof want, "%lld:2:-2.0:4.0:2.0:%lld:%lld", (long long)h, (long long)(h + 5),
             (long long)(h + 10));
    cr_expect_str_eq(q_text(buf, sizeof buf,
                            "SELECT group_concat(hour || ':' || count || ':' || min || ':' || max"
                            " || ':' || sum || ':' || first_ts || ':' || last_ts, ';')"
                            " FROM sensor_readings_hourly WHERE sensor_id = %lld",
                            (long long)a),
                     want);
}

Test(store_sqlite, open_errors)
{
    struct store *s = (struct store *)1;
    char err[IOT_ERRBUF];
    cr_expect_eq(store_open("mysql://x", &OPTS, &s, err, sizeof err), IOT_EINVAL);
    cr_expect_null(s);
    cr_expect_eq(store_open("sqlite:", &OPTS, &s, err, sizeof err), IOT_EINVAL);
    err[0] = 0; /* the message checked below must come from this call */
    cr_expect_eq(store_open("sqlite:/nonexistent-dir-iot/x/y.db", &OPTS, &s, err, sizeof err),
                 IOT_EUNAVAIL);
    cr_expect_null(s);
    cr_expect_neq(err[0], 0);

    /* sqlite:///abs/path is the same file as sqlite:/abs/path */
    char u3[200];
    snprintf(u3, sizeof u3, "sqlite://%s", path);
    cr_assert_eq(store_open(u3, &OPTS, &s, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(store_backend(s), "sqlite");
    cr_assert_eq(store_schema_init(s), 0);
    store_close(s);
    cr_expect_eq(access(path, F_OK), 0);
}

/* ---- devices and sensors --------------------------------------------------- */

Test(store_sqlite, devices)
{
    open_all();
    unsigned char h[STORE_KEY_HASH_LEN];
    key_hash(h, 42);
    int64_t id = 0;
    cr_assert_eq(store_device_add(st, "dev-a", "Device A", h, T0, &id), 0);
    cr_expect_gt(id, 0);
    cr_expect_eq(store_device_add(st, "dev-a", "again", h, T0, &id), IOT_EEXIST);

    struct store_device d;
    memset(&d, 0, sizeof d);
    cr_assert_eq(store_device_get(st, "dev-a", &d), 0);
    cr_expect_str_eq(d.uuid, "dev-a");
    cr_expect_eq(d.is_active, 1);
    cr_expect_eq(memcmp(d.key_hash, h, sizeof h), 0, "key hash round trip");
    int64_t first = d.id;
    memset(&d, 0, sizeof d);
    cr_assert_eq(store_device_get_by_id(st, first, &d), 0);
    cr_expect_str_eq(d.uuid, "dev-a");
    cr_expect_eq(store_device_get(st, "nope", &d), IOT_ENOTFOUND);
    cr_expect_eq(store_device_get_by_id(st, 9999, &d), IOT_ENOTFOUND);

    /* the key itself is never stored: only its hash, as hex */
    char buf[80];
    cr_expect_eq(strlen(q_text(buf, sizeof buf,
                               "SELECT device_key_hash FROM devices WHERE device_uuid='dev-a'")),
                 64);
    cr_expect_eq(q_int("SELECT created_at FROM devices WHERE id = %lld", (long long)first), T0);
    cr_expect_eq(q_int("SELECT last_seen_at FROM devices WHERE id = %lld", (long long)first), -2);

    cr_expect_eq(store_device_set_active(st, "dev-a", 0), 0);
    cr_assert_eq(store_device_get(st, "dev-a", &d), 0);
    cr_expect_eq(d.is_active, 0);
    cr_expect_eq(store_device_set_active(st, "dev-a", 1), 0);
    cr_expect_eq(store_device_set_active(st, "nope", 0), IOT_ENOTFOUND);

    /* device_touch only moves last_seen_at forward */
    cr_expect_eq(store_device_touch(st, first, T0 + 10), 0);
    cr_expect_eq(store_device_touch(st, first, T0 + 5), 0);
    cr_expect_eq(q_int("SELECT last_seen_at FROM devices WHERE id = %lld", (long long)first),
                 T0 + 10);
}

Test(store_sqlite, sensors)
{
    open_all();
    int64_t dev = add_device(st, "dev-a");
    add_device(st, "dev-b");
    int64_t id = 0, did = 0;
    cr_assert_eq(store_sensor_add(st, "dev-a", "s-2", "two", "temperature", "C", T0, &id, &did), 0);
    cr_expect_eq(did, dev);
    int64_t s2 = id;
    cr_assert_eq(store_sensor_add(st, "dev-a", "s-1", "one", "humidity", "%", T0, &id, &did), 0);
    int64_t s1 = id;
    cr_expect_eq(store_sensor_add(st, "dev-a", "s-1", "dup", "x", "y", T0, &id, &did), IOT_EEXIST);
    cr_expect_eq(store_sensor_add(st, "dev-b", "s-1", "dup", "x", "y", T0, &id, &did), IOT_EEXIST,
                 "sensor uuids are unique across devices");
    cr_expect_eq(store_sensor_add(st, "no-dev", "s-9", "x", "x", "x", T0, &id, &did),
                 IOT_ENOTFOUND);
    cr_expect_eq(q_int("SELECT count(*) FROM sensors"), 2);

    struct store_sensor s;
    cr_assert_eq(store_sensor_get(st, s1, &s), 0);
    cr_expect_str_eq(s.uuid, "s-1");
    cr_expect_eq(s.device_id, dev);
    cr_expect_eq(s.is_active, 1);
    cr_expect_eq(s.thr[SEV_WARNING].id, 0);
    cr_expect_eq(s.thr[SEV_CRITICAL].id, 0);
    cr_expect_eq(store_sensor_get(st, 9999, &s), IOT_ENOTFOUND);

    cr_expect_eq(store_sensor_set_active(st, "s-2", 0), 0);
    cr_assert_eq(store_sensor_get(st, s2, &s), 0);
    cr_expect_eq(s.is_active, 0);
    cr_expect_eq(store_sensor_set_active(st, "nope", 0), IOT_ENOTFOUND);

    /* device_sensors: sorted by uuid, thresholds folded in */
    int64_t tid = 0;
    struct store_threshold w = band(0, 10), c = band(-5, 20);
    w.has_delta = 1;
    w.delta_max = 3;
    cr_assert_eq(store_threshold_set(st, "s-2", SEV_WARNING, &w, T0, &tid), 0);
    cr_assert_eq(store_threshold_set(st, "s-2", SEV_CRITICAL, &c, T0, &tid), 0);
    struct store_sensor *arr = NULL;
    size_t n = 0;
    cr_assert_eq(store_device_sensors(st, dev, &arr, &n), 0);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(arr[0].uuid, "s-1");
    cr_expect_str_eq(arr[1].uuid, "s-2");
    cr_expect_eq(arr[0].thr[SEV_WARNING].id, 0);
    cr_expect_neq(arr[1].thr[SEV_WARNING].id, 0);
    cr_expect_eq(arr[1].thr[SEV_CRITICAL].id, tid);
    cr_expect(arr[1].thr[SEV_WARNING].has_delta && arr[1].thr[SEV_WARNING].delta_max == 3);
    cr_expect(!arr[1].thr[SEV_CRITICAL].has_delta);
    cr_expect(arr[1].thr[SEV_CRITICAL].min == -5 && arr[1].thr[SEV_CRITICAL].max == 20);
    free(arr);
    arr = NULL;
    cr_assert_eq(store_device_sensors(st, 9999, &arr, &n), 0);
    cr_expect_eq(n, 0);
    free(arr);
}

/* ---- thresholds -------------------------------------------------------------- */

Test(store_sqlite, threshold_replacement_keeps_one_active)
{
    open_all();
    add_device(st, "dev-a");
    int64_t sid = add_sensor(st, "dev-a", "s-1");
    int64_t t1 = 0, t2 = 0, t3 = 0, tc = 0;
    struct store_threshold a = band(0, 10), b = {0}, c = band(-10, 30);
    b.has_max = 1;
    b.max = 12; /* min open */
    cr_assert_eq(store_threshold_set(st, "s-1", SEV_WARNING, &a, T0, &t1), 0);
    cr_assert_eq(store_threshold_set(st, "s-1", SEV_CRITICAL, &c, T0, &tc), 0);
    cr_assert_eq(store_threshold_set(st, "s-1", SEV_WARNING, &b, T0 + 1, &t2), 0);
    cr_expect_neq(t1, t2);
    cr_expect_eq(q_int("SELECT count(*) FROM alert_thresholds WHERE sensor_id = %lld AND"
                       " severity = 'warning' AND is_active = 1",
                       (long long)sid),
                 1);
    cr_expect_eq(q_int("SELECT is_active FROM alert_thresholds WHERE id = %lld", (long long)t1), 0);
    cr_expect_eq(q_int("SELECT min_value FROM alert_thresholds WHERE id = %lld", (long long)t2), -2,
                 "open bound is NULL");
    cr_expect_eq(q_int("SELECT delta_max FROM alert_thresholds WHERE id = %lld", (long long)t2),
                 -2);
    /* the critical one was not touched by replacing the warning one */
    cr_expect_eq(q_int("SELECT is_active FROM alert_thresholds WHERE id = %lld", (long long)tc), 1);

    struct store_sensor s;
    cr_assert_eq(store_sensor_get(st, sid, &s), 0);
    cr_expect_eq(s.thr[SEV_WARNING].id, t2);
    cr_expect(!s.thr[SEV_WARNING].has_min && s.thr[SEV_WARNING].has_max);
    cr_expect_eq(s.thr[SEV_WARNING].max, 12);
    cr_expect_eq(s.thr[SEV_CRITICAL].id, tc);

    /* unknown sensor: ENOTFOUND, and the transaction left nothing behind */
    cr_expect_eq(store_threshold_set(st, "nope", SEV_WARNING, &a, T0, &t3), IOT_ENOTFOUND);
    cr_expect_eq(q_int("SELECT count(*) FROM alert_thresholds"), 3);

    /* clear deactivates; clear again is harmless */
    cr_expect_eq(store_threshold_clear(st, "s-1", SEV_WARNING), 0);
    cr_expect_eq(store_threshold_clear(st, "s-1", SEV_WARNING), 0);
    cr_expect_eq(store_threshold_clear(st, "nope", SEV_WARNING), IOT_ENOTFOUND);
    cr_assert_eq(store_sensor_get(st, sid, &s), 0);
    cr_expect_eq(s.thr[SEV_WARNING].id, 0);
    cr_expect_eq(s.thr[SEV_CRITICAL].id, tc);
    cr_expect_eq(q_int("SELECT count(*) FROM alert_thresholds WHERE is_active = 1"), 1);

    /* the unique index enforces one active per (sensor, severity) for every writer */
    char *msg = NULL;
    cr_expect_neq(sqlite3_exec(peer,
                               "INSERT INTO alert_thresholds(sensor_id, severity, is_active,"
                               " created_at) SELECT sensor_id, 'critical', 1, 0 FROM"
                               " alert_thresholds WHERE id = 1",
                               NULL, NULL, &msg),
                  SQLITE_OK);
    sqlite3_free(msg);
}

/* ---- packets ------------------------------------------------------------------- */

Test(store_sqlite, packets_within_the_24h_window)
{
    open_all();
    int64_t dev = add_device(st, "dev-a");
    int64_t dev2 = add_device(st, "dev-b");
    char *resp = NULL;
    cr_expect_eq(store_packet_get(st, dev, "p1", 0, &resp), IOT_ENOTFOUND);
    cr_assert_eq(store_packet_put(st, dev, "p1", "{\"first\":1}", T0, T0 - DAY), 0);

    cr_assert_eq(store_packet_get(st, dev, "p1", T0 - DAY, &resp), 0);
    cr_expect_str_eq(resp, "{\"first\":1}");
    free(resp);
    resp = NULL;
    /* since is inclusive: a packet exactly at the window's start is still remembered */
    cr_assert_eq(store_packet_get(st, dev, "p1", T0, &resp), 0);
    free(resp);
    resp = NULL;
    cr_expect_eq(store_packet_get(st, dev, "p1", T0 + 1, &resp), IOT_ENOTFOUND);
    cr_expect_null(resp);
    /* packet ids are per device */
    cr_expect_eq(store_packet_get(st, dev2, "p1", 0, &resp), IOT_ENOTFOUND);
    cr_expect_eq(store_packet_put(st, dev2, "p1", "other", T0, T0 - DAY), 0);

    /* a live id cannot be recorded twice; one exactly 24 h old is still live */
    cr_expect_eq(store_packet_put(st, dev, "p1", "second", T0 + HOUR, T0 + HOUR - DAY), IOT_EEXIST);
    cr_expect_eq(store_packet_put(st, dev, "p1", "second", T0 + DAY, T0 + DAY - DAY), IOT_EEXIST);
    /* past 24 h the expired row is overwritten */
    cr_expect_eq(store_packet_put(st, dev, "p1", "second", T0 + DAY + 1, T0 + DAY + 1 - DAY), 0);
    cr_assert_eq(store_packet_get(st, dev, "p1", T0 + 1, &resp), 0);
    cr_expect_str_eq(resp, "second");
    free(resp);
    resp = NULL;

    /* purge forgets rows created before the cut */
    cr_expect_eq(store_packets_purge(st, T0 + 1), 0);
    cr_expect_eq(store_packet_get(st, dev2, "p1", 0, &resp), IOT_ENOTFOUND);
    cr_expect_eq(store_packet_get(st, dev, "p1", 0, &resp), 0);
    free(resp);
}

/* ---- busy ---------------------------------------------------------------------- */

Test(store_sqlite, locked_database_is_busy)
{
    open_all();
    add_device(st, "dev-a");
    store_close(st);
    struct store_open_opts quick = OPTS;
    quick.busy_timeout_ms = 50;
    st = open_store(&quick);

    peer_exec("BEGIN IMMEDIATE");
    cr_expect_eq(store_tx_begin(st), IOT_EBUSY);
    unsigned char h[STORE_KEY_HASH_LEN];
    key_hash(h, 2);
    int64_t id;
    cr_expect_eq(store_device_add(st, "dev-b", "b", h, T0, &id), IOT_EBUSY);
    struct store_threshold t = band(0, 1);
    cr_expect_eq(store_threshold_set(st, "s-x", SEV_WARNING, &t, T0, &id), IOT_EBUSY);
    cr_expect(iot_err_retryable(IOT_EBUSY));
    cr_expect_neq(store_errmsg(st)[0], 0);
    /* WAL: readers are not blocked by the writer */
    struct store_device d;
    cr_expect_eq(store_device_get(st, "dev-a", &d), 0);
    peer_exec("ROLLBACK");

    /* once the lock is gone everything works again */
    cr_expect_eq(store_tx_begin(st), 0, "%s", store_errmsg(st));
    cr_expect_eq(store_device_add(st, "dev-b", "b", h, T0, &id), 0);
    cr_expect_eq(store_tx_commit(st), 0);
    cr_expect_eq(q_int("SELECT count(*) FROM devices"), 2);
}

/* ---- transactions, savepoints, change epoch -------------------------------------- */

Test(store_sqlite, transactions_and_savepoints)
{
    open_all();
    unsigned char h[STORE_KEY_HASH_LEN];
    key_hash(h, 3);
    int64_t id;
    cr_expect_eq(store_tx_rollback(st), 0, "rollback outside a transaction is a no-op");

    cr_assert_eq(store_tx_begin(st), 0);
    cr_assert_eq(store_device_add(st, "d1", "x", h, T0, &id), 0);
    cr_assert_eq(store_savepoint(st), 0);
    cr_assert_eq(store_device_add(st, "d2", "x", h, T0, &id), 0);
    cr_assert_eq(store_savepoint_rollback(st), 0);
    cr_assert_eq(store_savepoint(st), 0);
    cr_assert_eq(store_device_add(st, "d3", "x", h, T0, &id), 0);
    cr_assert_eq(store_savepoint_release(st), 0);
    cr_expect_eq(q_int("SELECT count(*) FROM devices"), 0, "uncommitted rows are invisible");
    cr_assert_eq(store_tx_commit(st), 0);
    cr_expect_eq(q_int("SELECT count(*) FROM devices WHERE device_uuid IN ('d1','d3')"), 2);
    cr_expect_eq(q_int("SELECT count(*) FROM devices WHERE device_uuid = 'd2'"), 0);

    cr_assert_eq(store_tx_begin(st), 0);
    cr_assert_eq(store_device_add(st, "d4", "x", h, T0, &id), 0);
    cr_assert_eq(store_tx_rollback(st), 0);
    cr_expect_eq(q_int("SELECT count(*) FROM devices"), 2);
    cr_expect_eq(store_tx_commit(st), IOT_EDB, "commit without a transaction");
}

Test(store_sqlite, change_epoch_moves_on_a_foreign_commit)
{
    open_all();
    uint64_t e1, e2;
    cr_assert_eq(store_tx_begin(st), 0);
    cr_assert_eq(store_change_epoch(st, &e1), 0);
    cr_assert_eq(store_tx_commit(st), 0);
    peer_exec("UPDATE devices SET name = name"); /* a write transaction, even if empty */
    peer_exec("INSERT INTO devices(device_uuid, name, device_key_hash, created_at)"
              " VALUES ('peer', 'p', '', 0)");
    cr_assert_eq(store_tx_begin(st), 0);
    cr_assert_eq(store_change_epoch(st, &e2), 0);
    cr_assert_eq(store_tx_commit(st), 0);
    cr_expect_neq(e1, e2, "another connection committed: the epoch must move");
}

/*
 * The contract of store_sqlite.c's sq_change_epoch: "the writer's own commits
 * leave it unchanged", so the writer's cache survives its own transactions.
 */
Test(store_sqlite, change_epoch_stays_after_own_commits)
{
    open_all();
    add_device(st, "dev-a");
    add_sensor(st, "dev-a", "s-1");
    uint64_t e1, e2, e3;
    cr_assert_eq(store_tx_begin(st), 0);
    cr_assert_eq(store_change_epoch(st, &e1), 0);
    cr_assert_eq(store_tx_commit(st), 0);
    cr_assert_eq(store_tx_begin(st), 0);
    cr_assert_eq(store_change_epoch(st, &e2), 0);
    struct store_sensor_state x = {.sensor_id = 1, .has_last = 1, .last_ts = T0, .last_value = 1};
    cr_assert_eq(state_put(st, &x), 0);
    cr_assert_eq(store_tx_commit(st), 0);
    cr_assert_eq(store_tx_begin(st), 0);
    cr_assert_eq(store_change_epoch(st, &e3), 0);
    cr_assert_eq(store_tx_commit(st), 0);
    cr_expect_eq(e1, e2, "an empty own commit moved the epoch (%llu -> %llu)",
                 (unsigned long long)e1, (unsigned long long)e2);
    cr_expect_eq(e2, e3, "an own write commit moved the epoch (%llu -> %llu)",
                 (unsigned long long)e2, (unsigned long long)e3);
}

/* ---- state, alerts, readings -------------------------------------------------- */

Test(store_sqlite, state_round_trip)
{
    open_all();
    add_device(st, "dev-a");
    int64_t sid = add_sensor(st, "dev-a", "s-1");
    struct store_sensor_state x;
    memset(&x, 0xff, sizeof x);
    cr_assert_eq(state_get(st, sid, &x), 0, "no row is not an error");
    cr_expect_eq(x.sensor_id, sid);
    cr_expect_eq(x.has_last, 0);
    cr_expect_eq(x.normal_run, 0);

    struct store_sensor_state y = {.sensor_id = sid,
                                   .has_last = 1,
                                   .last_ts = T0 + 5,
                                   .last_value = -2.5,
                                   .last_class = CLASS_SPIKE,
                                   .normal_run = 0,
                                   .last_reading_id = 0};
    cr_assert_eq(state_put(st, &y), 0);
    y.normal_run = 7;
    y.last_class = CLASS_NORMAL;
    cr_assert_eq(state_put(st, &y), 0, "upsert");
    cr_assert_eq(state_get(st, sid, &x), 0);
    cr_expect_eq(x.has_last, 1);
    cr_expect_eq(x.last_ts, T0 + 5);
    cr_expect_eq(x.last_value, -2.5);
    cr_expect_eq(x.last_class, CLASS_NORMAL);
    cr_expect_eq(x.normal_run, 7);
    cr_expect_eq(q_int("SELECT count(*) FROM sensor_state"), 1);
}

Test(store_sqlite, alerts_notifications_readings)
{
    open_all();
    int64_t dev = add_device(st, "dev-a");
    int64_t sid = add_sensor(st, "dev-a", "s-1");
    int64_t tid = 0;
    struct store_threshold w = band(0, 10);
    cr_assert_eq(store_threshold_set(st, "s-1", SEV_WARNING, &w, T0, &tid), 0);

    struct store_alert a;
    memset(&a, 0, sizeof a);
    a.sensor_id = sid;
    a.device_id = dev;
    a.threshold_id = tid;
    a.severity = SEV_WARNING;
    a.kind = ALERT_THRESHOLD;
    a.active = 1;
    a.first_value = a.last_value = 11;
    a.hit_count = 1;
    a.triggered_at = a.last_seen_at = T0;
    snprintf(a.message, sizeof a.message, "hello");
    cr_assert_eq(store_alert_insert(st, &a), 0);
    cr_expect_gt(a.id, 0);
    cr_expect_eq(q_int("SELECT resolved_at FROM alerts WHERE id = %lld", (long long)a.id), -2);

    /* at most one active alert per (sensor, kind) */
    struct store_alert b = a;
    cr_expect_eq(store_alert_insert(st, &b), IOT_EEXIST);
    b.kind = ALERT_DELTA_SPIKE;
    b.threshold_id = 0;
    cr_assert_eq(store_alert_insert(st, &b), 0);
    cr_expect_eq(q_int("SELECT threshold_id FROM alerts WHERE id = %lld", (long long)b.id), -2,
                 "threshold_id 0 is NULL");

    struct store_alert out[ALERT_KINDS];
    int present[ALERT_KINDS] = {9, 9, 9};
    cr_assert_eq(alerts_active(st, sid, out, present), 0);
    cr_expect(present[ALERT_THRESHOLD] && present[ALERT_DELTA_SPIKE] && !present[ALERT_NO_DATA]);
    cr_expect_eq(out[ALERT_THRESHOLD].id, a.id);
    cr_expect_eq(out[ALERT_THRESHOLD].threshold_id, tid);
    cr_expect_eq(out[ALERT_THRESHOLD].hit_count, 1);
    cr_expect_eq(out[ALERT_THRESHOLD].first_value, 11);
    cr_expect_str_eq(out[ALERT_THRESHOLD].message, "hello");

    a.hit_count = 3;
    a.last_value = 12;
    a.last_seen_at = T0 + 2;
    a.severity = SEV_CRITICAL;
    a.active = 0;
    a.resolved_at = T0 + 3;
    cr_assert_eq(store_alert_update(st, &a), 0);
    char buf[32];
    cr_expect_str_eq(
        q_text(buf, sizeof buf, "SELECT status FROM alerts WHERE id = %lld", (long long)a.id),
        "resolved");
    cr_expect_str_eq(
        q_text(buf, sizeof buf, "SELECT severity FROM alerts WHERE id = %lld", (long long)a.id),
        "critical");
    cr_expect_eq(q_int("SELECT resolved_at FROM alerts WHERE id = %lld", (long long)a.id), T0 + 3);
    cr_expect_eq(q_int("SELECT hit_count FROM alerts WHERE id = %lld", (long long)a.id), 3);
    cr_assert_eq(alerts_active(st, sid, out, present), 0);
    cr_expect(!present[ALERT_THRESHOLD] && present[ALERT_DELTA_SPIKE]);

    cr_assert_eq(store_notification_insert(st, a.id, EVENT_ESCALATED, SEV_CRITICAL, T0 + 9), 0);
    cr_expect_str_eq(q_text(buf, sizeof buf, "SELECT event FROM alert_notifications"), "escalated");
    cr_expect_eq(q_int("SELECT delivered_at FROM alert_notifications"), -2);

    struct store_reading rows[] = {
        {sid, 1.5, T0, T0 + 100, CLASS_NORMAL, 0, 0, 0, 0},
        {sid, 99, T0 - 5, T0 + 100, CLASS_ALERT, 1, 0, 1, 0},
        {sid, 5, T0 + 1, T0 + 100, CLASS_SPIKE, 0, STORE_READING_UNKNOWN, 0, 0},
    };
    cr_assert_eq(store_readings_insert(st, rows, 3), 0);
    cr_assert_eq(store_readings_insert(st, rows, 0), 0);
    cr_expect_eq(q_int("SELECT count(*) FROM sensor_readings"), 3);
    /* ids are set; links: none, the row before in the same call, unknown (NULL) */
    cr_expect(rows[0].id > 0 && rows[1].id > rows[0].id && rows[2].id > rows[1].id);
    cr_expect_eq(
        q_int("SELECT prev_id FROM sensor_readings WHERE id = %lld", (long long)rows[0].id), 0);
    cr_expect_eq(
        q_int("SELECT prev_id FROM sensor_readings WHERE id = %lld", (long long)rows[1].id),
        rows[0].id);
    cr_expect_eq(
        q_int("SELECT prev_id FROM sensor_readings WHERE id = %lld", (long long)rows[2].id), -2);
    cr_expect_eq(q_int("SELECT late FROM sensor_readings WHERE class = 'alert'"), 1);
    cr_expect_eq(q_int("SELECT ts FROM sensor_readings WHERE class = 'spike'"), T0 + 1);
    cr_expect_eq(q_int("SELECT ingested_at FROM sensor_readings WHERE class = 'normal'"), T0 + 100);
}

static int count_rows(const struct store_sensor_status *row, void *ud)
{
    struct store_sensor_status *last = ud;
    *last = *row;
    return 0;
}

Test(store_sqlite, device_status)
{
    open_all();
    int64_t dev = add_device(st, "dev-a");
    int64_t sid = add_sensor(st, "dev-a", "s-1");
    struct store_sensor_status row;
    memset(&row, 0, sizeof row);
    cr_assert_eq(store_device_status(st, dev, count_rows, &row), 0);
    cr_expect_eq(row.sensor_id, sid);
    cr_expect_eq(row.has_reading, 0);
    struct store_sensor_state x = {.sensor_id = sid,
                                   .has_last = 1,
                                   .last_ts = T0,
                                   .last_value = 4.25,
                                   .last_class = CLASS_WARNING,
                                   .normal_run = 0,
                                   .last_reading_id = 0};
    cr_assert_eq(state_put(st, &x), 0);
    cr_assert_eq(store_device_status(st, dev, count_rows, &row), 0);
    cr_expect_eq(row.has_reading, 1);
    cr_expect_eq(row.last_value, 4.25);
    cr_expect_eq(row.last_class, CLASS_WARNING);
    cr_expect_eq(row.active_alerts, 0);
}

/* ---- device delete --------------------------------------------------------------- */

/*
 * Everything the gateway and the jobs store for one sensor: a threshold,
 * linked readings (as the writer links them) with the state naming the
 * newest, an alert with a notification, a prediction with an ML event, the
 * online model with an applied broker message, and a packet id of its device.
 */
static void fill_sensor(int64_t dev, const char *uuid, int64_t sid, int64_t model, int k)
{
    int64_t tid = 0;
    struct store_threshold w = band(0, 10);
    cr_assert_eq(store_threshold_set(st, uuid, SEV_WARNING, &w, T0, &tid), 0);
    cr_assert_eq(store_tx_begin(st), 0);
    struct store_sensor_state x;
    cr_assert_eq(state_get(st, sid, &x), 0);
    struct store_reading r = {sid, 1.0 + k,           T0 + k, T0 + k, CLASS_NORMAL,
                              0,   x.last_reading_id, 0,      0};
    cr_assert_eq(store_readings_insert(st, &r, 1), 0);
    x.has_last = 1;
    x.last_ts = r.ts;
    x.last_value = r.value;
    x.last_reading_id = r.id;
    cr_assert_eq(state_put(st, &x), 0);
    cr_assert_eq(store_tx_commit(st), 0);
    if (k > 0) return; /* the rest once per sensor */

    struct store_alert a = {.sensor_id = sid,
                            .device_id = dev,
                            .threshold_id = tid,
                            .active = 1,
                            .hit_count = 1,
                            .triggered_at = T0,
                            .last_seen_at = T0};
    cr_assert_eq(store_alert_insert(st, &a), 0);
    cr_assert_eq(store_notification_insert(st, a.id, EVENT_TRIGGERED, SEV_WARNING, T0), 0);
    struct store_prediction p = {0, sid, model, 1.5, 0.9, 0.99, 60, T0 + HOUR, T0, 1};
    cr_assert_eq(store_prediction_insert(st, &p), 0);
    struct store_ml_event e = {0, sid, dev, p.id, "anomaly", "warning", "t", "m", NULL, T0};
    cr_assert_eq(store_ml_event_insert(st, &e), 0);
    struct store_online_state o = {sid, 1.0, 0.5, 3, T0, T0};
    cr_assert_eq(store_tx_begin(st), 0);
    cr_assert_eq(store_online_apply(st, "S@1", (uint64_t)sid, "c1", &o, NULL), 0);
    cr_assert_eq(store_tx_commit(st), 0);
    char pid[32];
    snprintf(pid, sizeof pid, "pkt-%s", uuid);
    cr_assert_eq(store_packet_put(st, dev, pid, "{}", T0, T0 - DAY), 0);
}

/* Rows of table whose column col is in the set `ids` (an SQL list, "(1,2)"). */
static int64_t rows_of(const char *table, const char *col, const char *ids)
{
    return q_int("SELECT count(*) FROM %s WHERE %s IN %s", table, col, ids);
}

/* The sensor's newest n readings by plain SQL equal what the reading chain gives. */
static void expect_chain_matches_sql(int64_t sid, size_t n)
{
    struct store_reading got[8];
    size_t k = 0;
    cr_assert_leq(n, 8);
    cr_assert_eq(store_recent_readings(st, sid, n, got, &k), 0, "%s", store_errmsg(st));
    cr_expect_eq(k, (size_t)q_int("SELECT min(count(*), %d) FROM sensor_readings"
                                  " WHERE sensor_id = %lld",
                                  (int)n, (long long)sid));
    for (size_t i = 0; i < k; i++)
        cr_expect_eq(got[i].id,
                     q_int("SELECT id FROM sensor_readings WHERE sensor_id = %lld"
                           " ORDER BY ts DESC, id DESC LIMIT 1 OFFSET %d",
                           (long long)sid, (int)i),
                     "sensor %lld, reading %zu", (long long)sid, i);
}

Test(store_sqlite, device_delete_removes_everything_under_the_device)
{
    open_all();
    int64_t a = add_device(st, "dev-a"), b = add_device(st, "dev-b");
    int64_t a1 = add_sensor(st, "dev-a", "a-1"), b1 = add_sensor(st, "dev-b", "b-1");
    int64_t a2 = add_sensor(st, "dev-a", "a-2"), model = 0;
    cr_assert_eq(store_model_ensure(st, "m", "baseline", "1", NULL, T0, &model), 0);
    /* interleaved, so the deleted readings sit between the kept ones, and last */
    for (int k = 0; k < 3; k++) {
        fill_sensor(b, "b-1", b1, model, k);
        fill_sensor(a, "a-1", a1, model, k);
        fill_sensor(a, "a-2", a2, model, k);
    }
    char sa[64], sb[64], da[32], db[32];
    snprintf(sa, sizeof sa, "(%lld,%lld)", (long long)a1, (long long)a2);
    snprintf(sb, sizeof sb, "(%lld)", (long long)b1);
    snprintf(da, sizeof da, "(%lld)", (long long)a);
    snprintf(db, sizeof db, "(%lld)", (long long)b);
    static const char *const by_sensor[] = {
        "sensor_readings", "sensor_state", "alert_thresholds", "alerts",
        "predictions",     "ml_events",    "online_state",     "consumer_applied"};
    static const char *const by_device[] = {"alerts", "ml_events", "ingest_packets", "sensors"};
    enum { NS = sizeof by_sensor / sizeof *by_sensor, ND = sizeof by_device / sizeof *by_device };
    int64_t kept_s[NS], kept_d[ND];
    for (int i = 0; i < NS; i++) {
        cr_assert_gt(rows_of(by_sensor[i], "sensor_id", sa), 0, "%s", by_sensor[i]);
        kept_s[i] = rows_of(by_sensor[i], "sensor_id", sb);
        cr_assert_gt(kept_s[i], 0, "%s", by_sensor[i]);
    }
    for (int i = 0; i < ND; i++)
        kept_d[i] = rows_of(by_device[i], "device_id", db);
    int64_t notes_b = q_int("SELECT count(*) FROM alert_notifications n JOIN alerts a"
                            " ON a.id = n.alert_id WHERE a.device_id = %lld",
                            (long long)b);

    struct store_device_deleted del;
    cr_assert_eq(store_device_delete(st, "dev-a", &del), 0, "%s", store_errmsg(st));
    cr_expect_eq(del.device_id, a);
    cr_expect_eq(del.sensors, 2);
    cr_expect_eq(del.readings, 6);

    for (int i = 0; i < NS; i++) {
        cr_expect_eq(rows_of(by_sensor[i], "sensor_id", sa), 0, "%s", by_sensor[i]);
        cr_expect_eq(rows_of(by_sensor[i], "sensor_id", sb), kept_s[i], "%s", by_sensor[i]);
    }
    for (int i = 0; i < ND; i++) {
        cr_expect_eq(rows_of(by_device[i], "device_id", da), 0, "%s", by_device[i]);
        cr_expect_eq(rows_of(by_device[i], "device_id", db), kept_d[i], "%s", by_device[i]);
    }
    cr_expect_eq(rows_of("devices", "id", da), 0);
    cr_expect_eq(rows_of("devices", "id", db), 1);
    cr_expect_eq(q_int("SELECT count(*) FROM alert_notifications"), notes_b);
    cr_expect_eq(q_int("SELECT count(*) FROM pragma_foreign_key_check"), 0);
    cr_expect_eq(q_int("SELECT count(*) FROM ml_models"), 1, "models are shared: kept");

    /* the kept sensor's chain: intact, also with reading ids given out again */
    expect_chain_matches_sql(b1, 8);
    expect_chain_matches_sql(b1, 2);
    for (int k = 3; k < 6; k++)
        fill_sensor(b, "b-1", b1, model, k);
    expect_chain_matches_sql(b1, 8);
    expect_chain_matches_sql(b1, 4);
    int64_t c1 = add_sensor(st, "dev-b", "b-2"); /* may reuse a deleted sensor's id */
    struct store_sensor_state fresh;
    cr_assert_eq(state_get(st, c1, &fresh), 0);
    cr_expect_eq(fresh.has_last, 0, "a new sensor inherits nothing");
    cr_expect_eq(q_int("SELECT count(*) FROM online_state WHERE sensor_id = %lld", (long long)c1),
                 0);

    /* gone is gone; foreign keys are checked again on this connection */
    cr_expect_eq(store_device_delete(st, "dev-a", &del), IOT_ENOTFOUND);
    cr_expect_eq(store_device_delete(st, "nope", &del), IOT_ENOTFOUND);
    struct store_sensor_state orphan = {.sensor_id = a1 == c1 ? a2 : a1,
                                        .has_last = 1,
                                        .last_ts = T0,
                                        .last_value = 1,
                                        .last_class = CLASS_NORMAL,
                                        .normal_run = 0,
                                        .last_reading_id = 0};
    cr_expect_eq(state_put(st, &orphan), IOT_EDB, "foreign keys are on again");
    cr_assert_eq(store_tx_begin(st), 0);
    cr_expect_eq(store_device_delete(st, "dev-b", &del), IOT_EINVAL, "not inside a transaction");
    cr_assert_eq(store_tx_rollback(st), 0);
    cr_expect_eq(rows_of("devices", "id", db), 1);
}

/*
 * The ingest writer's connection checks no foreign keys: loading the state
 * of a deleted sensor fails there, so a gateway whose resolver still holds
 * the device stores nothing for it.
 */
Test(store_sqlite, writer_refuses_a_deleted_sensor)
{
    open_all();
    add_device(st, "dev-a");
    add_device(st, "dev-b");
    int64_t ids[2] = {add_sensor(st, "dev-a", "a-1"), add_sensor(st, "dev-b", "b-1")};
    struct store_open_opts wo = OPTS;
    wo.ingest_writer = 1;
    struct store *w = open_store(&wo);
    struct store_sensor_snapshot snap[2];
    cr_assert_eq(store_tx_begin(w), 0);
    cr_expect_eq(store_states_load(w, ids, 2, snap), 0);
    cr_assert_eq(store_tx_commit(w), 0);
    struct store_device_deleted del;
    cr_assert_eq(store_device_delete(st, "dev-a", &del), 0);
    cr_assert_eq(store_tx_begin(w), 0);
    cr_expect_eq(store_states_load(w, ids, 2, snap), IOT_ENOTFOUND);
    cr_expect_eq(store_states_load(w, ids + 1, 1, snap), 0);
    cr_assert_eq(store_tx_rollback(w), 0);
    store_close(w);
}

/* ---- the ops tables are complete ------------------------------------------------- */

/*
 * A NULL op (an op added to STORE_OPS but not to a backend's table) would
 * crash on first use: every op of the list, and close and errmsg, is set.
 */
#define EXPECT_OP_(op, OP, params, args) cr_expect_not_null(ops->op, "%s: no " #op, ops->name);
static void expect_complete(const struct store_ops *ops)
{
    cr_expect_not_null(ops->close, "%s: no close", ops->name);
    cr_expect_not_null(ops->errmsg, "%s: no errmsg", ops->name);
    STORE_OPS(EXPECT_OP_)
}
#undef EXPECT_OP_

Test(store_fault, ops_tables_are_complete)
{
    st = open_store(&OPTS);
    expect_complete(st->ops);
    struct store *f;
    cr_assert_eq(store_fault_wrap(st, &f), 0);
    st = f;
    expect_complete(st->ops);
    cr_expect_str_eq(store_backend(st), "fault");
    cr_expect(store_fault_is_wrapper(st));
    for (int op = 0; op < STORE_FAULT_OPS; op++) {
        const char *name = store_fault_op_name((enum store_fault_op)op);
        cr_expect(name && *name && strcmp(name, "unknown") != 0, "op %d has no name", op);
        for (int k = 0; k < op; k++)
            cr_expect_str_neq(name, store_fault_op_name((enum store_fault_op)k));
    }
    cr_expect_str_eq(store_fault_op_name(STORE_FAULT_TX_COMMIT), "tx_commit");
    cr_expect_str_eq(store_fault_op_name(STORE_FAULT_OPS), "unknown");
}

/* ---- the fault wrapper ------------------------------------------------------------- */

/* Opens st as a fault wrapper around a fresh, initialised SQLite store. */
static void open_wrapped(void)
{
    struct store *inner = open_store(&OPTS);
    cr_assert_eq(store_fault_wrap(inner, &st), 0);
    cr_assert_eq(store_schema_init(st), 0, "%s", store_errmsg(st));
    cr_assert_eq(sqlite3_open_v2(path, &peer, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(peer, 5000);
}

Test(store_fault, transparent_without_a_fault)
{
    open_wrapped();
    int v;
    cr_assert_eq(store_schema_version(st, &v), 0);
    cr_expect_eq(v, SQLITE_SCHEMA_LATEST);
    int64_t dev = add_device(st, "dev-a");
    int64_t sid = add_sensor(st, "dev-a", "s-1");
    cr_expect_eq(add_device(st, "dev-b"), dev + 1);
    int64_t id;
    unsigned char h[STORE_KEY_HASH_LEN];
    key_hash(h, 1);
    /* errors pass through unchanged, with the inner message */
    cr_expect_eq(store_device_add(st, "dev-a", "x", h, T0, &id), IOT_EEXIST);
    cr_expect_neq(strstr(store_errmsg(st), "UNIQUE"), NULL, "errmsg: %s", store_errmsg(st));
    struct store_device d;
    cr_expect_eq(store_device_get(st, "nope", &d), IOT_ENOTFOUND);
    cr_assert_eq(store_packet_put(st, dev, "p", "r", T0, T0 - DAY), 0);
    char *resp = NULL;
    cr_assert_eq(store_packet_get(st, dev, "p", 0, &resp), 0);
    cr_expect_str_eq(resp, "r");
    free(resp);
    cr_assert_eq(store_tx_begin(st), 0);
    struct store_sensor_state x = {.sensor_id = sid,
                                   .has_last = 1,
                                   .last_ts = T0,
                                   .last_value = 3,
                                   .last_class = CLASS_NORMAL,
                                   .normal_run = 1,
                                   .last_reading_id = 0};
    cr_assert_eq(state_put(st, &x), 0);
    cr_assert_eq(store_tx_commit(st), 0);
    cr_expect_eq(q_int("SELECT normal_run FROM sensor_state"), 1);
    cr_expect_eq(store_fault_injected(st), 0);
    cr_expect_eq(store_fault_calls(st, STORE_FAULT_DEVICE_ADD), 3);
    cr_expect_eq(store_fault_calls(st, STORE_FAULT_TX_COMMIT), 1);
    cr_expect_geq(store_fault_calls(st, STORE_FAULT_ANY), 12);
}

Test(store_fault, nth_call_fails_once)
{
    open_wrapped();
    add_device(st, "dev-a");
    int64_t sid = add_sensor(st, "dev-a", "s-1");
    struct store_sensor_state x = {.sensor_id = sid,
                                   .has_last = 1,
                                   .last_ts = T0,
                                   .last_value = 3,
                                   .last_class = CLASS_NORMAL,
                                   .normal_run = 0,
                                   .last_reading_id = 0};
    store_fault_set(st, STORE_FAULT_STATES_PUT, 3, IOT_EBUSY);
    for (int i = 1; i <= 5; i++) {
        x.normal_run = i;
        int rc = state_put(st, &x);
        cr_expect_eq(rc, i == 3 ? IOT_EBUSY : 0, "call %d: %s", i, iot_strerror(rc));
        if (i == 3) {
            cr_expect_neq(strstr(store_errmsg(st), "injected"), NULL, "%s", store_errmsg(st));
            cr_expect_neq(strstr(store_errmsg(st), "states_put"), NULL, "%s", store_errmsg(st));
            cr_expect_eq(q_int("SELECT normal_run FROM sensor_state"), 2, "not forwarded");
        } else {
            cr_expect_null(strstr(store_errmsg(st), "injected"), "%s", store_errmsg(st));
        }
    }
    cr_expect_eq(q_int("SELECT normal_run FROM sensor_state"), 5);
    cr_expect_eq(store_fault_injected(st), 1);
    cr_expect_eq(store_fault_calls(st, STORE_FAULT_STATES_PUT), 5);

    /* other ops are not affected by a fault armed on one op */
    store_fault_set(st, STORE_FAULT_READINGS_INSERT, 1, IOT_EDB);
    cr_expect_eq(state_put(st, &x), 0);
    struct store_reading r = {sid, 1, T0, T0, CLASS_NORMAL, 0, 0, 0, 0};
    cr_expect_eq(store_readings_insert(st, &r, 1), IOT_EDB);
    cr_expect_eq(store_readings_insert(st, &r, 1), 0);
    cr_expect_eq(q_int("SELECT count(*) FROM sensor_readings"), 1);
}

Test(store_fault, sticky_until_cleared_and_disarm)
{
    open_wrapped();
    int64_t dev = add_device(st, "dev-a");
    store_fault_set_sticky(st, STORE_FAULT_PACKET_PUT, 2, IOT_EUNAVAIL);
    cr_expect_eq(store_packet_put(st, dev, "p1", "r", T0, T0 - DAY), 0);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(store_packet_put(st, dev, "p2", "r", T0, T0 - DAY), IOT_EUNAVAIL);
    cr_expect_eq(store_fault_injected(st), 4);
    store_fault_clear(st, STORE_FAULT_PACKET_PUT);
    cr_expect_eq(store_packet_put(st, dev, "p2", "r", T0, T0 - DAY), 0);

    /* err 0 or nth < 1 disarms; a new set replaces the old one */
    store_fault_set(st, STORE_FAULT_PACKET_GET, 1, IOT_EDB);
    store_fault_set(st, STORE_FAULT_PACKET_GET, 1, 0);
    char *resp = NULL;
    cr_expect_eq(store_packet_get(st, dev, "zz", 0, &resp), IOT_ENOTFOUND);
    store_fault_set(st, STORE_FAULT_PACKET_GET, 1, IOT_EDB);
    store_fault_set(st, STORE_FAULT_PACKET_GET, 0, IOT_EDB);
    cr_expect_eq(store_packet_get(st, dev, "zz", 0, &resp), IOT_ENOTFOUND);
    store_fault_set(st, STORE_FAULT_PACKET_GET, 1, IOT_EDB);
    store_fault_set(st, STORE_FAULT_PACKET_GET, 2, IOT_EBUSY);
    cr_expect_eq(store_packet_get(st, dev, "zz", 0, &resp), IOT_ENOTFOUND);
    cr_expect_eq(store_packet_get(st, dev, "zz", 0, &resp), IOT_EBUSY);

    store_fault_set_sticky(st, STORE_FAULT_ANY, 1, IOT_EDB);
    store_fault_set_sticky(st, STORE_FAULT_PING, 1, IOT_EDB);
    cr_expect_eq(store_ping(st), IOT_EDB);
    store_fault_clear_all(st);
    cr_expect_eq(store_ping(st), 0);
    cr_expect_eq(store_packet_get(st, dev, "zz", 0, &resp), IOT_ENOTFOUND);
}

Test(store_fault, any_counts_every_call)
{
    open_wrapped();
    int64_t dev = add_device(st, "dev-a");
    store_fault_set(st, STORE_FAULT_ANY, 3, IOT_EUNAVAIL);
    char *resp = NULL;
    struct store_device d;
    cr_expect_eq(store_ping(st), 0);
    cr_expect_eq(store_device_get(st, "dev-a", &d), 0);
    cr_expect_eq(store_packet_get(st, dev, "x", 0, &resp), IOT_EUNAVAIL);
    cr_expect_eq(store_packet_get(st, dev, "x", 0, &resp), IOT_ENOTFOUND);
    cr_expect_eq(store_fault_injected(st), 1);

    /* own fault and ANY on the same call: one failure, the op's own error, both spent */
    store_fault_set(st, STORE_FAULT_ANY, 1, IOT_EUNAVAIL);
    store_fault_set(st, STORE_FAULT_PING, 1, IOT_EBUSY);
    cr_expect_eq(store_ping(st), IOT_EBUSY);
    cr_expect_eq(store_ping(st), 0);
    cr_expect_eq(store_fault_injected(st), 2);
}

Test(store_fault, failed_commit_ends_the_transaction)
{
    open_wrapped();
    store_fault_set(st, STORE_FAULT_TX_COMMIT, 1, IOT_EUNAVAIL);
    cr_assert_eq(store_tx_begin(st), 0);
    add_device(st, "dev-a");
    cr_expect_eq(store_tx_commit(st), IOT_EUNAVAIL);
    cr_expect_eq(q_int("SELECT count(*) FROM devices"), 0);
    cr_expect_eq(store_tx_rollback(st), 0, "rollback after a failed commit is harmless");
    /* the connection is usable: a new transaction commits */
    cr_assert_eq(store_tx_begin(st), 0, "%s", store_errmsg(st));
    add_device(st, "dev-b");
    cr_expect_eq(store_tx_commit(st), 0);
    cr_expect_eq(q_int("SELECT count(*) FROM devices"), 1);
    char buf[32];
    cr_expect_str_eq(q_text(buf, sizeof buf, "SELECT device_uuid FROM devices"), "dev-b");

    /* a failed tx_begin starts nothing */
    store_fault_set(st, STORE_FAULT_TX_BEGIN, 1, IOT_EBUSY);
    cr_expect_eq(store_tx_begin(st), IOT_EBUSY);
    cr_expect_eq(store_tx_begin(st), 0);
    cr_expect_eq(store_tx_commit(st), 0);
}

Test(store_fault, failed_insert_leaves_outputs_alone)
{
    open_wrapped();
    int64_t dev = add_device(st, "dev-a");
    int64_t sid = add_sensor(st, "dev-a", "s-1");
    struct store_alert a;
    memset(&a, 0, sizeof a);
    a.sensor_id = sid;
    a.device_id = dev;
    a.active = 1;
    a.hit_count = 1;
    a.triggered_at = a.last_seen_at = T0;
    store_fault_set(st, STORE_FAULT_ALERT_INSERT, 1, IOT_EDB);
    cr_expect_eq(store_alert_insert(st, &a), IOT_EDB);
    cr_expect_eq(a.id, 0);
    cr_expect_eq(q_int("SELECT count(*) FROM alerts"), 0);
    cr_expect_eq(store_alert_insert(st, &a), 0);
    cr_expect_gt(a.id, 0);
}
