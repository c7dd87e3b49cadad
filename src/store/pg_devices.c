/*
 * PostgreSQL backend: devices, sensors and thresholds: the lookups of the
 * resolver, the status endpoint and the legacy endpoints, and provisioning.
 * Same queries as store_sqlite.c; uuids sort with COLLATE "C" (strcmp order,
 * which the resolver's binary search relies on).
 */
#include "core/err.h"
#include "core/secret.h"
#include "store/pg_int.h"
#include "store/store_sql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum dev_stmt {
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
    ST_DEV_COUNT
};
_Static_assert(ST_DEV_COUNT <= PG_DEV_STMTS, "grow PG_DEV_STMTS");

static const char *const stmt_sql[ST_DEV_COUNT] = {
    [ST_DEVICE_GET] = "SELECT id, device_uuid, device_key_hash, is_active FROM devices"
                      " WHERE device_uuid = $1",
    [ST_DEVICE_GET_BY_ID] = "SELECT id, device_uuid, device_key_hash, is_active FROM devices"
                            " WHERE id = $1",
    [ST_DEVICE_SENSORS] =
        STORE_SQL_SENSOR_SELECT " WHERE s.device_id = $1 ORDER BY s.sensor_uuid COLLATE \"C\"",
    [ST_SENSOR_GET] = STORE_SQL_SENSOR_SELECT " WHERE s.id = $1",
    [ST_DEVICE_STATUS] =
        "SELECT s.id, s.sensor_uuid, s.name, (extract(epoch from st.last_ts) * 1000)::bigint,"
        " st.last_value, st.last_class,"
        " (SELECT count(*) FROM alerts a WHERE a.sensor_id = s.id AND a.status = 'active'),"
        " (SELECT count(*) FROM alerts a WHERE a.sensor_id = s.id AND a.status = 'active'"
        "   AND a.severity = 'critical'),"
        " (SELECT count(*) FROM alerts a WHERE a.sensor_id = s.id AND a.status = 'active'"
        "   AND a.kind = 'no_data')"
        " FROM sensors s LEFT JOIN sensor_state st ON st.sensor_id = s.id"
        " WHERE s.device_id = $1 ORDER BY s.sensor_uuid COLLATE \"C\"",
    [ST_DEVICE_ADD] =
        "INSERT INTO devices(device_uuid, name, device_key_hash, is_active, created_at)"
        " VALUES ($1, $2, $3, 1, $4) RETURNING id",
    [ST_DEVICE_SET_ACTIVE] = "UPDATE devices SET is_active = $2 WHERE device_uuid = $1",
    [ST_SENSOR_ADD] = "INSERT INTO sensors(sensor_uuid, device_id, name, sensor_type, unit,"
                      " is_active, created_at) SELECT $1::text, d.id, $2::text, $3::text,"
                      " $4::text, 1, $5::timestamptz FROM devices d WHERE d.device_uuid = $6::text"
                      " RETURNING id, device_id",
    [ST_SENSOR_SET_ACTIVE] = "UPDATE sensors SET is_active = $2 WHERE sensor_uuid = $1",
    /* One row when the sensor exists (cleared or not), none when it does not. */
    [ST_THRESHOLD_CLEAR] =
        "WITH s AS (SELECT id FROM sensors WHERE sensor_uuid = $1),"
        " u AS (UPDATE alert_thresholds SET is_active = 0 WHERE is_active = 1 AND severity = $2"
        " AND sensor_id = (SELECT id FROM s)) SELECT id FROM s",
    [ST_THRESHOLD_INSERT] =
        "INSERT INTO alert_thresholds(sensor_id, severity, min_value, max_value, delta_max,"
        " is_active, created_at) SELECT s.id, $2::text, $3::float8, $4::float8, $5::float8, 1,"
        " $6::timestamptz FROM sensors s WHERE s.sensor_uuid = $1::text RETURNING id",
};

static struct pg_cmd cmd(enum dev_stmt id, int n, const char *const *params)
{
    return (struct pg_cmd){
        .slot = PG_DEV_BASE + (int)id, .sql = stmt_sql[id], .nparams = n, .params = params};
}

/* ---- lookups ------------------------------------------------------------------ */

static int get_device(struct pg_store *s, enum dev_stmt id, const char *key,
                      struct store_device *out)
{
    PGresult *r;
    struct pg_cmd c = cmd(id, 1, &key);
    int rc = pg_query(s, &c, &r);
    if (rc) return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return IOT_ENOTFOUND;
    }
    out->id = pg_i64(r, 0, 0);
    pg_text(out->uuid, sizeof out->uuid, r, 0, 1);
    secret_hash_from_hex(PQgetvalue(r, 0, 2), out->key_hash);
    out->is_active = (int)pg_i64(r, 0, 3);
    PQclear(r);
    return 0;
}

int pg_device_get(struct store *base, const char *uuid, struct store_device *out)
{
    return get_device((struct pg_store *)base, ST_DEVICE_GET, uuid, out);
}

int pg_device_get_by_id(struct store *base, int64_t id, struct store_device *out)
{
    char v[24];
    return get_device((struct pg_store *)base, ST_DEVICE_GET_BY_ID, pg_fmt_i64(v, id), out);
}

/* Columns 4-8 of STORE_SQL_SENSOR_SELECT: id, severity, min, max, delta_max. */
static void read_threshold(const PGresult *r, int row, struct store_threshold *t)
{
    t->id = pg_i64(r, row, 4);
    if ((t->has_min = !pg_null(r, row, 6))) t->min = pg_f64(r, row, 6);
    if ((t->has_max = !pg_null(r, row, 7))) t->max = pg_f64(r, row, 7);
    if ((t->has_delta = !pg_null(r, row, 8))) t->delta_max = pg_f64(r, row, 8);
}

/* Folds rows of (sensor, optional threshold), ordered by sensor, into store_sensors. */
static int sensors_of(struct pg_store *s, enum dev_stmt id, int64_t key, struct store_sensor **out,
                      size_t *n)
{
    char v[24];
    const char *p = pg_fmt_i64(v, key);
    PGresult *r;
    struct pg_cmd c = cmd(id, 1, &p);
    int rc = pg_query(s, &c, &r);
    if (rc) return rc;
    int rows = PQntuples(r);
    struct store_sensor *arr = rows ? calloc((size_t)rows, sizeof *arr) : NULL;
    size_t len = 0;
    if (rows && !arr) {
        PQclear(r);
        return pg_fail(s, IOT_ENOMEM, "out of memory");
    }
    for (int i = 0; i < rows; i++) {
        int64_t sid = pg_i64(r, i, 0);
        if (len == 0 || arr[len - 1].id != sid) {
            struct store_sensor *x = &arr[len++];
            x->id = sid;
            x->device_id = pg_i64(r, i, 1);
            pg_text(x->uuid, sizeof x->uuid, r, i, 2);
            x->is_active = (int)pg_i64(r, i, 3);
        }
        if (!pg_null(r, i, 4)) {
            read_threshold(r, i, &arr[len - 1].thr[severity_parse(PQgetvalue(r, i, 5))]);
        }
    }
    PQclear(r);
    *out = store_sensors_fit(arr, len); /* rows counted threshold rows too */
    *n = len;
    return 0;
}

int pg_device_sensors(struct store *base, int64_t device_id, struct store_sensor **out, size_t *n)
{
    return sensors_of((struct pg_store *)base, ST_DEVICE_SENSORS, device_id, out, n);
}

int pg_sensor_get(struct store *base, int64_t sensor_id, struct store_sensor *out)
{
    struct store_sensor *arr = NULL;
    size_t n = 0;
    int rc = sensors_of((struct pg_store *)base, ST_SENSOR_GET, sensor_id, &arr, &n);
    if (!rc && n == 0) rc = IOT_ENOTFOUND;
    if (!rc) *out = arr[0];
    free(arr);
    return rc;
}

int pg_device_status(struct store *base, int64_t device_id, store_status_cb cb, void *ud)
{
    struct pg_store *s = (struct pg_store *)base;
    char v[24];
    const char *p = pg_fmt_i64(v, device_id);
    PGresult *r;
    struct pg_cmd c = cmd(ST_DEVICE_STATUS, 1, &p);
    int rc = pg_query(s, &c, &r);
    for (int i = 0; !rc && i < PQntuples(r); i++) {
        struct store_sensor_status x;
        memset(&x, 0, sizeof x);
        x.sensor_id = pg_i64(r, i, 0);
        pg_text(x.uuid, sizeof x.uuid, r, i, 1);
        pg_text(x.name, sizeof x.name, r, i, 2);
        x.has_reading = !pg_null(r, i, 3);
        x.last_ts = pg_i64(r, i, 3);
        x.last_value = pg_f64(r, i, 4);
        x.last_class = reading_class_parse(PQgetvalue(r, i, 5));
        x.active_alerts = pg_i64(r, i, 6);
        x.critical_active = pg_i64(r, i, 7) > 0;
        x.no_data_active = pg_i64(r, i, 8) > 0;
        rc = cb(&x, ud);
    }
    PQclear(r);
    return rc;
}

/* ---- provisioning ----------------------------------------------------------------- */

int pg_device_add(struct store *base, const char *uuid, const char *name,
                  const unsigned char key_hash[STORE_KEY_HASH_LEN], int64_t now, int64_t *id)
{
    char hex[2 * STORE_KEY_HASH_LEN + 1], ts[32];
    secret_hash_hex(key_hash, hex);
    const char *p[4] = {uuid, name, hex, pg_fmt_ts(ts, now)};
    struct pg_cmd c = cmd(ST_DEVICE_ADD, 4, p);
    return pg_returning_id((struct pg_store *)base, &c, id, NULL);
}

/* Runs an UPDATE by uuid; IOT_ENOTFOUND when no row matched. */
static int set_active(struct pg_store *s, enum dev_stmt id, const char *uuid, int active)
{
    const char *p[2] = {uuid, active ? "1" : "0"};
    PGresult *r;
    struct pg_cmd c = cmd(id, 2, p);
    int rc = pg_roundtrip(s, &c, 1, &r, 0);
    if (rc) return rc;
    rc = atoi(PQcmdTuples(r)) ? 0 : IOT_ENOTFOUND;
    PQclear(r);
    return rc;
}

int pg_device_set_active(struct store *base, const char *uuid, int active)
{
    return set_active((struct pg_store *)base, ST_DEVICE_SET_ACTIVE, uuid, active);
}

int pg_sensor_set_active(struct store *base, const char *uuid, int active)
{
    return set_active((struct pg_store *)base, ST_SENSOR_SET_ACTIVE, uuid, active);
}

int pg_sensor_add(struct store *base, const char *device_uuid, const char *uuid, const char *name,
                  const char *type, const char *unit, int64_t now, int64_t *id, int64_t *device_id)
{
    char ts[32];
    const char *p[6] = {uuid, name, type, unit, pg_fmt_ts(ts, now), device_uuid};
    struct pg_cmd c = cmd(ST_SENSOR_ADD, 6, p);
    return pg_returning_id((struct pg_store *)base, &c, id, device_id);
}

int pg_threshold_clear(struct store *base, const char *sensor_uuid, enum severity sev)
{
    const char *p[2] = {sensor_uuid, severity_name(sev)};
    struct pg_cmd c = cmd(ST_THRESHOLD_CLEAR, 2, p);
    c.want_rows = 1; /* the sensor's row: none for an unknown sensor */
    c.mismatch = IOT_ENOTFOUND;
    return pg_roundtrip((struct pg_store *)base, &c, 1, NULL, 0);
}

/*
 * Replaces the active threshold of (sensor, severity): clear + insert in one
 * transaction, one round trip (inside the caller's transaction if one is open).
 */
int pg_threshold_set(struct store *base, const char *sensor_uuid, enum severity sev,
                     const struct store_threshold *t, int64_t now, int64_t *id)
{
    struct pg_store *s = (struct pg_store *)base;
    char mn[32], mx[32], dm[32], ts[32];
    const char *pc[2] = {sensor_uuid, severity_name(sev)};
    const char *pi[6] = {sensor_uuid,
                         severity_name(sev),
                         t->has_min ? pg_fmt_f64(mn, t->min) : NULL,
                         t->has_max ? pg_fmt_f64(mx, t->max) : NULL,
                         t->has_delta ? pg_fmt_f64(dm, t->delta_max) : NULL,
                         pg_fmt_ts(ts, now)};
    struct pg_cmd c[4] = {pg_raw("BEGIN"), cmd(ST_THRESHOLD_CLEAR, 2, pc),
                          cmd(ST_THRESHOLD_INSERT, 6, pi), pg_raw("COMMIT")};
    c[2].want_rows = 1; /* an unknown sensor inserts nothing (and cleared nothing) */
    c[2].mismatch = IOT_ENOTFOUND;
    int own = s->in_tx, n = own ? 2 : 4;
    PGresult *r[4];
    int rc = pg_roundtrip(s, own ? c + 1 : c, (size_t)n, r, 0);
    if (rc) return rc;
    *id = pg_i64(r[own ? 1 : 2], 0, 0);
    for (int i = 0; i < n; i++)
        PQclear(r[i]);
    return 0;
}

/* ---- deleting a device ------------------------------------------------------------- */

#define PG_DEL_DEVICE "(SELECT id FROM devices WHERE device_uuid = $1)"
#define PG_DEL_LOCKS  3

/*
 * Row locks first, in the order the writer takes them (sensor_state rows by
 * sensor id, then the sensors, which its inserts reference, then the
 * device): a gateway storing a packet of this device either commits first,
 * and its rows are deleted with the rest, or waits for this transaction and
 * then fails on the foreign keys. Never a deadlock between the two.
 */
static const char *const del_locks[PG_DEL_LOCKS] = {
    "SELECT sensor_id FROM sensor_state WHERE sensor_id IN " STORE_SQL_SENSORS_OF(
        PG_DEL_DEVICE) " ORDER BY sensor_id FOR UPDATE",
    "SELECT id FROM sensors WHERE device_id = " PG_DEL_DEVICE " ORDER BY id FOR UPDATE",
    "SELECT id FROM devices WHERE device_uuid = $1 FOR UPDATE",
};
static const char *const del_sql[STORE_DEL_COUNT] = {
#define DEL_SQL(name, sql) [name] = sql,
    STORE_SQL_DEVICE_DELETE(DEL_SQL, PG_DEL_DEVICE)
#undef DEL_SQL
};

/*
 * BEGIN, the locks, the deletes of store_sql.h and COMMIT in one round trip;
 * every statement names the device by uuid, so nothing waits for an answer
 * in between. An unknown device deletes nothing and is IOT_ENOTFOUND.
 */
int pg_device_delete(struct store *base, const char *uuid, struct store_device_deleted *out)
{
    struct pg_store *s = (struct pg_store *)base;
    enum { FIRST_DEL = 1 + PG_DEL_LOCKS, N = FIRST_DEL + STORE_DEL_COUNT + 1 };
    struct pg_cmd c[N];
    PGresult *r[N];
    *out = (struct store_device_deleted){0};
    if (s->in_tx) return pg_fail(s, IOT_EINVAL, "device_delete runs its own transaction");
    c[0] = pg_raw("BEGIN");
    for (int i = 0; i < PG_DEL_LOCKS; i++)
        c[1 + i] = (struct pg_cmd){.slot = -1, .sql = del_locks[i], .nparams = 1, .params = &uuid};
    for (int i = 0; i < STORE_DEL_COUNT; i++)
        c[FIRST_DEL + i] =
            (struct pg_cmd){.slot = -1, .sql = del_sql[i], .nparams = 1, .params = &uuid};
    c[FIRST_DEL + STORE_DEL_DEVICE].want_rows = 1; /* none: unknown, and nothing was deleted */
    c[FIRST_DEL + STORE_DEL_DEVICE].mismatch = IOT_ENOTFOUND;
    c[N - 1] = pg_raw("COMMIT");
    int rc = pg_roundtrip(s, c, N, r, 0);
    if (rc) return rc;
    out->device_id = pg_i64(r[PG_DEL_LOCKS], 0, 0);
    out->sensors = atoll(PQcmdTuples(r[FIRST_DEL + STORE_DEL_SENSORS]));
    out->readings = atoll(PQcmdTuples(r[FIRST_DEL + STORE_DEL_READINGS]));
    for (int i = 0; i < N; i++)
        PQclear(r[i]);
    return 0;
}
