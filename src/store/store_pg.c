/*
 * PostgreSQL backend of the store interface (libpq, pipeline mode, prepared
 * statements). The pipeline layer and the reconnection rules are described
 * in pg_int.h; the locking scheme that keeps N gateways on one database
 * correct is in docs/deployment.md. In short:
 *
 *  - Round trips per batch: packet_get (per packet, only with a
 *    packet_id), states_load (locks the batch's sensor_state rows, reads
 *    state and active alerts; a second one only for sensors without a row
 *    yet), alert_insert (only when an alert opens). Everything else
 *    (readings as one multi-row INSERT ... SELECT unnest(...) of binary
 *    arrays, sensor states likewise, alert updates coalesced per alert,
 *    notifications, packet_put, device touches, savepoints) is pipelined and
 *    checked at the next round trip; COMMIT is one round trip per batch.
 *  - states_load takes ids ascending and locks the sensor_state rows in
 *    that order (SELECT ... ORDER BY ... FOR UPDATE), so lock order is
 *    global; the rows of first readings are created afterwards, out of
 *    order, with the short wait. State and alerts are read by later
 *    statements (fresh READ COMMITTED snapshots, taken after the locks).
 *    A wait against that order is bounded (locked_roundtrip).
 *  - packet_get takes a transaction-level advisory lock on (device,
 *    packet_id) before it looks the id up, so a concurrent copy at another
 *    gateway waits for the first to commit and then finds its answer.
 *  - On the ingest writer's session (fk_batch, see pg_conn.c) no per-row
 *    foreign-key trigger runs. A sensor whose state row the batch locks
 *    FOR UPDATE cannot be deleted until COMMIT (deleting it deletes or
 *    checks that row, and waits for the lock); the sensors without a row
 *    are locked FOR KEY SHARE, the triggers' own lock, in the round trip
 *    that claims their rows (ST_SENSORS_KEY_SHARE in claim_missing).
 *  - change_epoch moves on every call: another gateway may change any
 *    sensor at any time, so the writer reloads (and locks) the sensors of
 *    every batch, which it has to do anyway to lock them.
 * Timestamps travel as RFC 3339 text into timestamptz (binary in the
 * readings' and states' arrays) and come back as bigint ms ((extract(epoch
 * from col) * 1000)::bigint, exact: numeric); key hashes are hex text as on
 * SQLite.
 */
#include "core/clock.h"
#include "core/err.h"
#include "core/secret.h"
#include "store/pg_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PACKET_LOCK_CLASS "74001" /* advisory lock class of (device, packet_id) */
/* The lock_timeout of a wait that would break the global lock order (docs/deployment.md). */
#define OUT_OF_ORDER_WAIT_MS 200

enum stmt_id {
    ST_BEFORE_FIRST = PG_CORE_BASE - 1,
    ST_PACKET_LOCK,
    ST_PACKET_GET,
    ST_PACKET_PUT,
    ST_PACKETS_PURGE,
    ST_STATES_PUT,
    ST_STATES_CLAIM,
    ST_STATES_LOCK,
    ST_ALERTS_OF,
    ST_ALERT_INSERT,
    ST_ALERT_UPDATE,
    ST_NOTIFY_INSERT,
    ST_READINGS_INSERT,
    ST_DEVICE_TOUCH,
    ST_DEVICES_TOUCH,
    ST_LOCK_TIMEOUT,
    ST_SENSORS_KEY_SHARE,
    ST_COUNT
};
_Static_assert(ST_COUNT <= PG_CORE_BASE + PG_CORE_STMTS, "grow PG_CORE_STMTS");

static const char *const stmt_sql[ST_COUNT] = {
    [ST_PACKET_LOCK] = "SELECT pg_advisory_xact_lock(" PACKET_LOCK_CLASS
                       ", hashtext($1::text || ':' || $2::text))",
    [ST_PACKET_GET] = "SELECT response FROM ingest_packets WHERE device_id = $1 AND packet_id = $2"
                      " AND created_at >= $3",
    [ST_PACKET_PUT] = "INSERT INTO ingest_packets(device_id, packet_id, created_at, response)"
                      " VALUES ($1, $2, $3, $4) ON CONFLICT (device_id, packet_id) DO UPDATE"
                      " SET created_at = excluded.created_at, response = excluded.response"
                      " WHERE ingest_packets.created_at < $5",
    [ST_PACKETS_PURGE] = "DELETE FROM ingest_packets WHERE created_at < $1",
    /*
     * The rows exist and are this transaction's: states_load locked or
     * created every one (want_rows checks it). A plain UPDATE, not INSERT
     * ... ON CONFLICT DO UPDATE: no speculative insertion per row (0.58
     * against 0.76 ms for 320 sensors, docs/BENCHMARKS.md).
     */
    [ST_STATES_PUT] = "UPDATE sensor_state st SET last_ts = u.ts, last_value = u.value,"
                      " last_class = u.class, normal_run = u.run FROM unnest($1::bigint[],"
                      " $2::timestamptz[], $3::float8[], $4::text[], $5::bigint[])"
                      " AS u(id, ts, value, class, run) WHERE st.sensor_id = u.id",
    /*
     * Creates the sensor_state rows of sensors that have none (a sensor's
     * first reading; claim_missing), in ascending id order: each id
     * is either inserted or, on conflict, locked (DO UPDATE ... WHERE false
     * locks the row, FOR NO KEY UPDATE strength, without writing it). The ids
     * come from the resolver, so they are not checked against sensors here
     * (the foreign key still is): a join with sensors got a generic plan that
     * scanned the whole table for every packet (docs/BENCHMARKS.md). RETURNING
     * names the rows inserted (not those only locked): pg_tx_commit deletes
     * those still without a state (pg_store.claimed).
     */
    [ST_STATES_CLAIM] =
        "INSERT INTO sensor_state(sensor_id) SELECT u.id FROM unnest($1::bigint[]) AS u(id)"
        " ORDER BY u.id ON CONFLICT (sensor_id) DO UPDATE SET normal_run = sensor_state.normal_run"
        " WHERE false RETURNING sensor_id",
    /*
     * A join with the array, not "WHERE sensor_id = ANY($1)": in the generic
     * plan of a prepared statement ANY compares each row with the whole
     * array (a seq scan of a 1,000-sensor table: 1.06 against 0.47 ms for
     * 320 sensors); the join hashes the array or probes the primary key.
     * LockRows sits above the sort, so rows are locked in id order.
     */
    [ST_STATES_LOCK] = "SELECT st.sensor_id, (extract(epoch from st.last_ts) * 1000)::bigint,"
                       " st.last_value, st.last_class, st.normal_run FROM unnest($1::bigint[])"
                       " AS u(id) JOIN sensor_state st ON st.sensor_id = u.id"
                       " ORDER BY st.sensor_id FOR UPDATE OF st",
    [ST_ALERTS_OF] = "SELECT id, sensor_id, device_id, threshold_id, severity, kind, first_value,"
                     " last_value, hit_count, (extract(epoch from triggered_at) * 1000)::bigint,"
                     " (extract(epoch from last_seen_at) * 1000)::bigint, message FROM alerts"
                     " WHERE sensor_id = ANY($1::bigint[]) AND status = 'active'",
    [ST_ALERT_INSERT] =
        "INSERT INTO alerts(sensor_id, device_id, threshold_id, severity, kind, status,"
        " first_value, last_value, hit_count, triggered_at, last_seen_at, resolved_at, message)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    [ST_ALERT_UPDATE] = "UPDATE alerts SET threshold_id = $2, severity = $3, status = $4,"
                        " last_value = $5, hit_count = $6, last_seen_at = $7, resolved_at = $8,"
                        " message = $9 WHERE id = $1",
    [ST_NOTIFY_INSERT] = "INSERT INTO alert_notifications(alert_id, event, severity, created_at)"
                         " VALUES ($1, $2, $3, $4)",
    [ST_READINGS_INSERT] = "INSERT INTO sensor_readings(sensor_id, value, ts, ingested_at, class,"
                           " late) SELECT * FROM unnest($1::bigint[], $2::float8[],"
                           " $3::timestamptz[], $4::timestamptz[], $5::text[], $6::int[])",
    [ST_LOCK_TIMEOUT] = "SELECT set_config('lock_timeout', $1, true)",
    /*
     * What a foreign-key trigger runs per inserted row, run once per batch
     * on the writer's session, which has no such triggers (fk_batch), for
     * the batch's sensors that have no state row yet (claim_missing): they
     * must exist and stay until commit. The others need no such lock: their
     * state rows are held FOR UPDATE (ST_STATES_LOCK), and a sensor cannot
     * go without its state row going or being checked first (the foreign
     * key sensor_state -> sensors), which waits for that lock. Every row the
     * writer inserts names these sensors (readings, state, alerts) or rows
     * that cannot be deleted without deleting them first (alerts'
     * thresholds and devices, notifications' alerts, packet ids' devices:
     * device delete is the only way): such a delete waits for the batch
     * and then fails on its committed readings, as it would against the
     * triggers' own locks. A join with the array, as ST_STATES_LOCK, for
     * the same reason (the generic plan of "id = ANY($1)").
     */
    [ST_SENSORS_KEY_SHARE] = "SELECT s.id FROM unnest($1::bigint[]) AS u(id) JOIN sensors s"
                             " ON s.id = u.id ORDER BY s.id FOR KEY SHARE OF s",
    /* SKIP LOCKED: another gateway touching the same device is not waited for (see docs). */
    [ST_DEVICE_TOUCH] = "UPDATE devices SET last_seen_at = $2 WHERE id = (SELECT id FROM devices"
                        " WHERE id = $1 AND (last_seen_at IS NULL OR last_seen_at < $2)"
                        " FOR NO KEY UPDATE SKIP LOCKED)",
    /* The same for a transaction's devices at once (pg_touches_flush), locked in id order. */
    [ST_DEVICES_TOUCH] =
        "UPDATE devices d SET last_seen_at = u.ts FROM (SELECT l.id, x.ts"
        " FROM unnest($1::bigint[], $2::timestamptz[]) AS x(id, ts) JOIN devices l ON l.id = x.id"
        " WHERE l.last_seen_at IS NULL OR l.last_seen_at < x.ts ORDER BY l.id"
        " FOR NO KEY UPDATE OF l SKIP LOCKED) u WHERE d.id = u.id",
};

/* PostgreSQL checkpoints and vacuums itself (docs/deployment.md). */
static int pg_maintain(struct store *base)
{
    (void)base;
    return 0;
}

static const struct store_ops pg_ops;

static struct pg_cmd cmd(enum stmt_id id, int n, const char *const *params)
{
    return (struct pg_cmd){.slot = (int)id,
                           .sql = stmt_sql[id],
                           .nparams = n,
                           .params = params}; /* slots from PG_CORE_BASE */
}

/* "{1,2,3}" of ids into buffer i. */
static int id_array(struct pg_store *s, int i, const int64_t *ids, size_t n)
{
    char v[24];
    int rc = 0;
    buf_clear(&s->buf[i]);
    for (size_t k = 0; !rc && k < n; k++)
        rc = pg_buf_elem(&s->buf[i], pg_fmt_i64(v, ids[k]));
    return rc ? rc : pg_buf_close(&s->buf[i]);
}

/* The parameters of ST_ALERT_UPDATE; b holds their text. */
struct alert_params {
    char id[24], thr[24], val[32], hits[24], seen[32], res[32];
    const char *v[9];
};

static struct pg_cmd alert_update_cmd(const struct store_alert *a, struct alert_params *b)
{
    b->v[0] = pg_fmt_i64(b->id, a->id);
    b->v[1] = a->threshold_id ? pg_fmt_i64(b->thr, a->threshold_id) : NULL;
    b->v[2] = severity_name(a->severity);
    b->v[3] = a->active ? "active" : "resolved";
    b->v[4] = pg_fmt_f64(b->val, a->last_value);
    b->v[5] = pg_fmt_i64(b->hits, a->hit_count);
    b->v[6] = pg_fmt_ts(b->seen, a->last_seen_at);
    b->v[7] = a->resolved_at ? pg_fmt_ts(b->res, a->resolved_at) : NULL;
    b->v[8] = a->message;
    return cmd(ST_ALERT_UPDATE, 9, b->v);
}

/* Sends the buffered alert updates (program order: they precede whatever is sent next). */
int pg_alerts_flush(struct pg_store *s)
{
    size_t n = s->nabuf;
    s->nabuf = 0;
    for (size_t i = 0; i < n; i++) {
        struct alert_params b;
        struct pg_cmd c = alert_update_cmd(&s->abuf[i], &b);
        int rc = pg_send(s, &c);
        if (rc) return rc;
    }
    return 0;
}

/*
 * Runs cmds, which take locks, in one round trip. Waits in the global lock
 * order (nothing held yet, or only lower sensor ids) use the session's
 * lock_timeout; a wait that would break the order (ooo) is bounded by
 * OUT_OF_ORDER_WAIT_MS instead (SET LOCAL before, restored after; a failure
 * rolls the batch or the packet's savepoint back, and the setting with it), so no wait
 * cycle between gateways lives longer than that: the packet fails with
 * IOT_EBUSY (503) and the device retries. res[i] gets cmds[i]'s result.
 */
static int locked_roundtrip(struct pg_store *s, int ooo, const struct pg_cmd *cmds, size_t n,
                            PGresult **res)
{
    if (!ooo) return pg_roundtrip(s, cmds, n, res, 0);
    char ms[24];
    long long wait = s->opts.busy_timeout_ms > 0 && s->opts.busy_timeout_ms < OUT_OF_ORDER_WAIT_MS
                         ? (long long)s->opts.busy_timeout_ms
                         : OUT_OF_ORDER_WAIT_MS;
    snprintf(ms, sizeof ms, "%lldms", wait);
    const char *p_short = ms, *p_normal = s->lock_timeout;
    struct pg_cmd all[8];
    PGresult *r[8];
    assert(n + 2 <= 8);
    all[0] = cmd(ST_LOCK_TIMEOUT, 1, &p_short);
    for (size_t i = 0; i < n; i++)
        all[i + 1] = cmds[i];
    all[n + 1] = cmd(ST_LOCK_TIMEOUT, 1, &p_normal);
    int rc = pg_roundtrip(s, all, n + 2, r, 0);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        res[i] = r[i + 1];
    PQclear(r[0]);
    PQclear(r[n + 1]);
    return 0;
}

/* ---- packet ids -------------------------------------------------------------------- */

/*
 * Takes the advisory lock of (device, packet_id) for the rest of the
 * transaction, then looks the id up (a later statement: a snapshot taken
 * after the lock). A copy being stored by another gateway makes this wait
 * until that commits (then we find its answer: duplicate) or rolls back
 * (then we store ours). One round trip.
 */
static int pq_packet_get(struct store *base, int64_t device_id, const char *packet_id,
                         int64_t since, char **response)
{
    struct pg_store *s = (struct pg_store *)base;
    char dev[24], ts[32];
    const char *pl[2] = {pg_fmt_i64(dev, device_id), packet_id};
    const char *pg[3] = {dev, packet_id, pg_fmt_ts(ts, since)};
    struct pg_cmd c[2] = {cmd(ST_PACKET_LOCK, 2, pl), cmd(ST_PACKET_GET, 3, pg)};
    PGresult *r[2];
    int ooo = s->in_tx && (s->held_adv || s->held_sensor_max > 0);
    int rc = s->in_tx ? locked_roundtrip(s, ooo, c, 2, r) : pg_roundtrip(s, c, 2, r, 1);
    if (rc) return rc;
    pg_note_locks(s, 0, 1);
    if (PQntuples(r[1]) == 0) {
        rc = IOT_ENOTFOUND;
    } else {
        *response = strdup(PQgetvalue(r[1], 0, 0));
        if (!*response) rc = pg_fail(s, IOT_ENOMEM, "out of memory");
    }
    PQclear(r[0]);
    PQclear(r[1]);
    return rc;
}

/*
 * Records a packet id, replacing an expired row (see store.h). Inside a
 * transaction it is queued: packet_get's lock makes a live conflict
 * impossible among gateways, so a conflict there means a writer that skipped
 * the lock: the batch fails with IOT_EBUSY (503), and the client's retry
 * finds the stored answer. Outside one, a live id is IOT_EEXIST.
 */
static int pq_packet_put(struct store *base, int64_t device_id, const char *packet_id,
                         const char *response, int64_t now, int64_t expired_before)
{
    struct pg_store *s = (struct pg_store *)base;
    char dev[24], ts[32], cut[32];
    const char *p[5] = {pg_fmt_i64(dev, device_id), packet_id, pg_fmt_ts(ts, now), response,
                        pg_fmt_ts(cut, expired_before)};
    struct pg_cmd c = cmd(ST_PACKET_PUT, 5, p);
    c.want_rows = 1;
    c.mismatch = s->in_tx ? IOT_EBUSY : IOT_EEXIST;
    return pg_defer(s, &c);
}

static int pq_packets_purge(struct store *base, int64_t before)
{
    char ts[32];
    const char *p = pg_fmt_ts(ts, before);
    struct pg_cmd c = cmd(ST_PACKETS_PURGE, 1, &p);
    return pg_defer((struct pg_store *)base, &c);
}

/* ---- sensor state and alerts --------------------------------------------------------- */

/* Columns col..col+3: last_ts (ms or NULL), last_value, last_class, normal_run. */
static void read_state(const PGresult *r, int row, int col, struct store_sensor_state *out)
{
    out->normal_run = pg_i64(r, row, col + 3);
    out->has_last = !pg_null(r, row, col);
    if (!out->has_last) return;
    out->last_ts = pg_i64(r, row, col);
    out->last_value = pg_f64(r, row, col + 1);
    out->last_class = reading_class_parse(PQgetvalue(r, row, col + 2));
    if (out->last_class == CLASS_INVALID) out->last_class = CLASS_NORMAL;
}

/* A command of n binary array parameters, built in s->buf[0..n). */
static struct pg_cmd array_cmd(struct pg_store *s, enum stmt_id id, int n, const char **p, int *len,
                               const int *fmt)
{
    for (int i = 0; i < n; i++) {
        p[i] = s->buf[i].p;
        len[i] = (int)s->buf[i].len;
    }
    struct pg_cmd c = cmd(id, n, p);
    c.lengths = len;
    c.formats = fmt;
    return c;
}

static const int all_binary[PG_NBUF] = {1, 1, 1, 1, 1, 1};

/*
 * One multi-row UPDATE for the states of a batch (five binary array
 * parameters): every row was locked or created by states_load in this
 * transaction, so each must be touched.
 */
static int pq_states_put(struct store *base, const struct store_sensor_state *const *st, size_t n)
{
    struct pg_store *s = (struct pg_store *)base;
    struct buf *b = s->buf;
    static const unsigned oid[5] = {PG_OID_INT8, PG_OID_TIMESTAMPTZ, PG_OID_FLOAT8, PG_OID_TEXT,
                                    PG_OID_INT8};
    int rc = 0;
    if (n == 0) return 0;
    for (int i = 0; !rc && i < 5; i++)
        rc = pg_arr_begin(&b[i], oid[i], n);
    for (size_t k = 0; !rc && k < n; k++) {
        const struct store_sensor_state *x = st[k];
        rc = pg_arr_i64(&b[0], x->sensor_id);
        if (!rc) rc = x->has_last ? pg_arr_ts(&b[1], x->last_ts) : pg_arr_null(&b[1]);
        if (!rc) rc = x->has_last ? pg_arr_f64(&b[2], x->last_value) : pg_arr_null(&b[2]);
        if (!rc)
            rc = x->has_last ? pg_arr_text(&b[3], reading_class_name(x->last_class))
                             : pg_arr_null(&b[3]);
        if (!rc) rc = pg_arr_i64(&b[4], x->normal_run);
    }
    if (rc) return pg_fail(s, rc, "out of memory");
    const char *p[5];
    int len[5];
    struct pg_cmd c = array_cmd(s, ST_STATES_PUT, 5, p, len, all_binary);
    c.want_rows = (int)n;
    c.mismatch = IOT_ENOTFOUND;
    return pg_defer(s, &c);
}

/* Row i of ST_ALERTS_OF into a. */
static enum alert_kind read_alert(const PGresult *r, int i, struct store_alert *a)
{
    memset(a, 0, sizeof *a);
    a->id = pg_i64(r, i, 0);
    a->sensor_id = pg_i64(r, i, 1);
    a->device_id = pg_i64(r, i, 2);
    a->threshold_id = pg_i64(r, i, 3); /* NULL reads as "" -> 0 */
    a->severity = severity_parse(PQgetvalue(r, i, 4));
    a->kind = alert_kind_parse(PQgetvalue(r, i, 5));
    a->active = 1;
    a->first_value = pg_f64(r, i, 6);
    a->last_value = pg_f64(r, i, 7);
    a->hit_count = pg_i64(r, i, 8);
    a->triggered_at = pg_i64(r, i, 9);
    a->last_seen_at = pg_i64(r, i, 10);
    pg_text(a->message, sizeof a->message, r, i, 11);
    return a->kind;
}

/* Fills out[] from a lock result (state rows) and an alerts result, for the ids[0..n). */
static void read_snapshots(const PGresult *lock, const PGresult *alerts, const int64_t *ids,
                           size_t n, struct store_sensor_snapshot *out)
{
    for (int row = 0; row < PQntuples(lock); row++) {
        size_t i = store_id_index(ids, n, pg_i64(lock, row, 0));
        if (i < n) read_state(lock, row, 1, &out[i].st);
    }
    for (int row = 0; row < PQntuples(alerts); row++) {
        struct store_alert a;
        enum alert_kind k = read_alert(alerts, row, &a);
        size_t i = store_id_index(ids, n, a.sensor_id);
        if (i == n) continue;
        out[i].alerts[k] = a;
        out[i].present[k] = 1;
    }
}

/*
 * The sensors of ids whose state row the lock result does not hold (no row
 * yet: their first reading), in ascending order into missing; their number.
 */
static size_t missing_rows(const PGresult *lock, const int64_t *ids, size_t n, int64_t *missing)
{
    size_t m = 0, row = 0, rows = (size_t)PQntuples(lock);
    for (size_t i = 0; i < n; i++) {
        while (row < rows && pg_i64(lock, (int)row, 0) < ids[i])
            row++;
        if (row == rows || pg_i64(lock, (int)row, 0) != ids[i]) missing[m++] = ids[i];
    }
    return m;
}

/*
 * Creates and locks the state rows of the sensors in missing[0..m) and
 * reads them and their alerts into out (indexed by ids): a second round
 * trip, needed only for sensors without a row yet. On the writer's session
 * it first locks those sensors FOR KEY SHARE (ST_SENSORS_KEY_SHARE: they
 * have no state row whose lock would keep them). It may lock below rows
 * already held, so it waits with the short out-of-order timeout; and it
 * reads again what it locked, since another gateway may have created the
 * row (and written state and alerts) since the first round trip. The rows
 * it inserted are remembered (pg_store.claimed) for pg_tx_commit.
 */
static int claim_missing(struct pg_store *s, const int64_t *missing, size_t m, const int64_t *ids,
                         size_t n, struct store_sensor_snapshot *out)
{
    int rc = id_array(s, 1, missing, m);
    if (rc) return pg_fail(s, rc, "out of memory");
    const char *p = s->buf[1].p;
    struct pg_cmd all[4] = {cmd(ST_SENSORS_KEY_SHARE, 1, &p), cmd(ST_STATES_CLAIM, 1, &p),
                            cmd(ST_STATES_LOCK, 1, &p), cmd(ST_ALERTS_OF, 1, &p)};
    all[0].want_rows = (int)m; /* a sensor deleted meanwhile: what its foreign key would say */
    all[0].mismatch = IOT_ENOTFOUND;
    PGresult *res[4] = {NULL}, **r = res + 1; /* r: claim, lock, alerts */
    int skip = !s->fk_batch; /* per-row triggers check and lock on other sessions */
    if ((rc = locked_roundtrip(s, s->in_tx, all + skip, 4 - (size_t)skip, res + skip))) return rc;
    for (int row = 0; !rc && s->in_tx && row < PQntuples(r[0]); row++)
        rc = pg_buf_elem(&s->claimed, PQgetvalue(r[0], row, 0));
    if (!rc && PQntuples(r[1]) != (int)m) /* a sensor deleted meanwhile */
        rc = pg_fail(s, IOT_ENOTFOUND, "a sensor of the batch is gone");
    if (!rc) read_snapshots(r[1], r[2], ids, n, out);
    for (int i = 0; i < 4; i++)
        PQclear(res[i]);
    return rc == IOT_ENOMEM ? pg_fail(s, rc, "out of memory") : rc;
}

/*
 * The writer's one round trip per batch: lock the existing state rows in id
 * order (held until COMMIT) and read them; read the active alerts. Sensors
 * without a row yet (a first reading) take a second round trip
 * (claim_missing). Reads come after the locks, so with fresh snapshots:
 * whatever another gateway committed before we got the locks is seen.
 */
static int pq_states_load(struct store *base, const int64_t *ids, size_t n,
                          struct store_sensor_snapshot *out)
{
    struct pg_store *s = (struct pg_store *)base;
    if (n == 0) return 0;
    for (size_t i = 1; i < n; i++)
        assert(ids[i - 1] < ids[i]); /* the contract: distinct, ascending (the lock order) */
    int rc = id_array(s, 0, ids, n);
    if (rc) return pg_fail(s, rc, "out of memory");
    const char *p = s->buf[0].p;
    struct pg_cmd c[2] = {cmd(ST_STATES_LOCK, 1, &p), cmd(ST_ALERTS_OF, 1, &p)};
    PGresult *r[2] = {NULL}; /* lock, alerts */
    int ooo = s->in_tx && ids[0] <= s->held_sensor_max;
    if ((rc = locked_roundtrip(s, ooo, c, 2, r))) return rc;
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].st.sensor_id = ids[i];
    }
    read_snapshots(r[0], r[1], ids, n, out);
    pg_note_locks(s, ids[n - 1], 0);
    int64_t *missing = NULL; /* the rare case: sensors with no row yet */
    size_t m = 0;
    if ((size_t)PQntuples(r[0]) < n && !(missing = malloc(n * sizeof *missing)))
        rc = pg_fail(s, IOT_ENOMEM, "out of memory");
    else if (missing)
        m = missing_rows(r[0], ids, n, missing);
    PQclear(r[0]);
    PQclear(r[1]);
    if (!rc && m) rc = claim_missing(s, missing, m, ids, n, out);
    free(missing);
    return rc;
}

static int pq_alert_insert(struct store *base, struct store_alert *a)
{
    char sid[24], did[24], thr[24], fv[32], lv[32], hits[24], trig[32], seen[32], res[32];
    const char *p[13] = {pg_fmt_i64(sid, a->sensor_id),
                         pg_fmt_i64(did, a->device_id),
                         a->threshold_id ? pg_fmt_i64(thr, a->threshold_id) : NULL,
                         severity_name(a->severity),
                         alert_kind_name(a->kind),
                         a->active ? "active" : "resolved",
                         pg_fmt_f64(fv, a->first_value),
                         pg_fmt_f64(lv, a->last_value),
                         pg_fmt_i64(hits, a->hit_count),
                         pg_fmt_ts(trig, a->triggered_at),
                         pg_fmt_ts(seen, a->last_seen_at),
                         a->resolved_at ? pg_fmt_ts(res, a->resolved_at) : NULL,
                         a->message};
    struct pg_cmd c = cmd(ST_ALERT_INSERT, 13, p);
    return pg_returning_id((struct pg_store *)base, &c, &a->id, NULL);
}

/*
 * Inside a transaction, updates are buffered per alert and sent just before
 * the next command: a sustained violation refreshes its alert once per
 * packet, not once per reading. Outside one, a round trip.
 */
static int pq_alert_update(struct store *base, const struct store_alert *a)
{
    struct pg_store *s = (struct pg_store *)base;
    if (s->in_tx) {
        int rc = s->lost ? IOT_EUNAVAIL : s->poison;
        if (rc) return rc;
        for (size_t i = 0; i < s->nabuf; i++)
            if (s->abuf[i].id == a->id) {
                s->abuf[i] = *a;
                return 0;
            }
        if (s->nabuf == PG_ALERT_BUF && (rc = pg_ensure_conn(s)) == 0) rc = pg_alerts_flush(s);
        if (rc) return rc;
        s->abuf[s->nabuf++] = *a;
        return 0;
    }
    struct alert_params b;
    struct pg_cmd c = alert_update_cmd(a, &b);
    return pg_roundtrip(s, &c, 1, NULL, 0);
}

static int pq_notification_insert(struct store *base, int64_t alert_id, enum alert_event ev,
                                  enum severity sev, int64_t now)
{
    char id[24], ts[32];
    const char *p[4] = {pg_fmt_i64(id, alert_id), alert_event_name(ev), severity_name(sev),
                        pg_fmt_ts(ts, now)};
    struct pg_cmd c = cmd(ST_NOTIFY_INSERT, 4, p);
    return pg_defer((struct pg_store *)base, &c);
}

/* All the readings of a batch: one INSERT ... SELECT unnest(six binary arrays), queued. */
static int pq_readings_insert(struct store *base, struct store_reading *rows, size_t n)
{
    struct pg_store *s = (struct pg_store *)base;
    struct buf *b = s->buf;
    static const unsigned oid[6] = {PG_OID_INT8,        PG_OID_FLOAT8, PG_OID_TIMESTAMPTZ,
                                    PG_OID_TIMESTAMPTZ, PG_OID_TEXT,   PG_OID_INT4};
    int rc = 0;
    if (n == 0) return 0;
    for (int i = 0; !rc && i < 6; i++)
        rc = pg_arr_begin(&b[i], oid[i], n);
    for (size_t k = 0; !rc && k < n; k++) {
        rc = pg_arr_i64(&b[0], rows[k].sensor_id);
        if (!rc) rc = pg_arr_f64(&b[1], rows[k].value);
        if (!rc) rc = pg_arr_ts(&b[2], rows[k].ts);
        if (!rc) rc = pg_arr_ts(&b[3], rows[k].ingested_at);
        if (!rc) rc = pg_arr_text(&b[4], reading_class_name(rows[k].cls));
        if (!rc) rc = pg_arr_i32(&b[5], rows[k].late ? 1 : 0);
    }
    if (rc) return pg_fail(s, rc, "out of memory");
    const char *p[6];
    int len[6];
    struct pg_cmd c = array_cmd(s, ST_READINGS_INSERT, 6, p, len, all_binary);
    return pg_defer(s, &c);
}

static int by_device(const void *a, const void *b)
{
    int64_t x = ((const struct pg_touch *)a)->device_id,
            y = ((const struct pg_touch *)b)->device_id;
    return (x > y) - (x < y);
}

int pg_touches_flush(struct pg_store *s)
{
    size_t n = s->ntouch;
    if (n == 0) return 0;
    s->ntouch = 0;
    qsort(s->touch, n, sizeof *s->touch, by_device);
    struct buf *b = s->touch_buf;
    int rc = pg_arr_begin(&b[0], PG_OID_INT8, n);
    if (!rc) rc = pg_arr_begin(&b[1], PG_OID_TIMESTAMPTZ, n);
    for (size_t i = 0; !rc && i < n; i++) {
        rc = pg_arr_i64(&b[0], s->touch[i].device_id);
        if (!rc) rc = pg_arr_ts(&b[1], s->touch[i].last_seen);
    }
    if (rc) return pg_fail(s, rc, "out of memory");
    const char *p[2] = {b[0].p, b[1].p};
    int len[2] = {(int)b[0].len, (int)b[1].len};
    struct pg_cmd c = cmd(ST_DEVICES_TOUCH, 2, p);
    c.lengths = len;
    c.formats = all_binary;
    return pg_defer(s, &c);
}

/*
 * Inside a transaction a device's last_seen_at is buffered, one entry per
 * device, and written for all of them in one statement (pg_touches_flush):
 * a batch touches each of its devices once, not once per packet. Outside
 * one, a statement of its own.
 */
static int pq_device_touch(struct store *base, int64_t device_id, int64_t last_seen)
{
    struct pg_store *s = (struct pg_store *)base;
    if (s->in_tx) {
        for (size_t i = 0; i < s->ntouch; i++)
            if (s->touch[i].device_id == device_id) {
                if (last_seen > s->touch[i].last_seen) s->touch[i].last_seen = last_seen;
                return 0;
            }
        int rc = s->ntouch == PG_TOUCH_BUF ? pg_touches_flush(s) : 0;
        if (rc) return rc;
        s->touch[s->ntouch++] = (struct pg_touch){device_id, last_seen};
        return 0;
    }
    char id[24], ts[32];
    const char *p[2] = {pg_fmt_i64(id, device_id), pg_fmt_ts(ts, last_seen)};
    struct pg_cmd c = cmd(ST_DEVICE_TOUCH, 2, p);
    return pg_defer(s, &c);
}

/* ---- open and the ops table ----------------------------------------------------------- */

int store_pg_open(const char *url, const struct store_open_opts *opts, struct store **out,
                  char *err, size_t errlen)
{
    *out = NULL;
    struct pg_store *s = calloc(1, sizeof *s);
    if (!s || !(s->url = strdup(url))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return IOT_ENOMEM;
    }
    s->base.ops = &pg_ops;
    s->opts = *opts;
    int rc = pg_connect(s);
    if (rc) {
        snprintf(err, errlen, "%s", s->err);
        pg_close(&s->base);
        return rc;
    }
    s->last_used = clock_mono_ms();
    *out = &s->base;
    return 0;
}

static const struct store_ops pg_ops = {
    .name = "postgresql",
    .close = pg_close,
    .errmsg = pg_errmsg,
    .ping = pg_ping,
    .schema_init = pg_schema_init,
    .schema_version = pg_schema_version,
    .device_get = pg_device_get,
    .device_get_by_id = pg_device_get_by_id,
    .device_sensors = pg_device_sensors,
    .sensor_get = pg_sensor_get,
    .device_status = pg_device_status,
    .device_add = pg_device_add,
    .device_set_active = pg_device_set_active,
    .device_delete = pg_device_delete,
    .sensor_add = pg_sensor_add,
    .sensor_set_active = pg_sensor_set_active,
    .threshold_set = pg_threshold_set,
    .threshold_clear = pg_threshold_clear,
    .tx_begin = pg_tx_begin,
    .tx_commit = pg_tx_commit,
    .tx_rollback = pg_tx_rollback,
    .savepoint = pg_savepoint,
    .savepoint_release = pg_savepoint_release,
    .savepoint_rollback = pg_savepoint_rollback,
    .change_epoch = pg_change_epoch,
    .maintain = pg_maintain,
    .packet_get = pq_packet_get,
    .packet_put = pq_packet_put,
    .packets_purge = pq_packets_purge,
    .states_load = pq_states_load,
    .states_put = pq_states_put,
    .alert_insert = pq_alert_insert,
    .alert_update = pq_alert_update,
    .notification_insert = pq_notification_insert,
    .readings_insert = pq_readings_insert,
    .device_touch = pq_device_touch,
    .job_sensors = pg_job_sensors,
    .silent_sensors = pg_silent_sensors,
    .job_sensor_get = pg_job_sensor_get,
    .recent_readings = pg_recent_readings,
    .model_ensure = pg_model_ensure,
    .prediction_insert = pg_prediction_insert,
    .ml_event_active = pg_ml_event_active,
    .ml_event_insert = pg_ml_event_insert,
    .ml_event_resolve = pg_ml_event_resolve,
    .unexplained = pg_unexplained,
    .prediction_explain = pg_prediction_explain,
    .online_load = pg_online_load,
    .online_apply = pg_online_apply,
    .online_prune = pg_online_prune,
    .job_stat_record = pg_job_stat_record,
    .job_stats = pg_job_stats,
    /* retention and rollups (pg_retention.c) */
    .rollup_step = pg_rollup_step,
    .readings_expire = pg_readings_expire,
    .rollups_expire = pg_rollups_expire,
    .readings_range = pg_readings_range,
    .readings_buckets = pg_readings_buckets,
};
