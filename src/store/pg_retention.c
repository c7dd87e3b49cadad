/*
 * PostgreSQL backend: hourly rollups, retention (job retention, SPEC §12) and
 * a sensor's history, the same operations as sqlite_retention.c and
 * sqlite_history.c. Hours are UTC hours
 * (date_bin from the epoch, whatever the session's TimeZone).
 *
 * Concurrency with the writers of every gateway: the insert trigger of schema
 * step 4 takes the rollup lock (PG_ROLLUP_LOCK) shared for the rest of each
 * writer transaction before it reads the mark; rollup_step takes it
 * exclusively, so it waits for the writers in flight to commit, and its
 * aggregate (a statement that starts after the lock is granted) sees every
 * reading stored below the new mark that the trigger did not add.
 */
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "store/pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ret_stmt {
    RS_LOCK,
    RS_ROLL,
    RS_EXPIRE,
    RS_EXPIRE_ROLLUPS,
    RS_RANGE,
    RS_BUCKETS,
    RS_MARK,
    RS_DETACH,
    RS_EMPTY,
    RS_DROP,
    RS_COUNT
};
_Static_assert(RS_COUNT <= PG_RET_STMTS, "grow PG_RET_STMTS");

static const char *const ret_sql[RS_COUNT] = {
    [RS_LOCK] = "SELECT pg_advisory_xact_lock(" PG_ROLLUP_LOCK ")",
    /*
     * The first hour with readings at or after the mark and before $1, its
     * rollup rows (raw rows are the authority above the mark: replace), and
     * the mark moved past it, or to $1 when there is no such hour.
     */
    [RS_ROLL] =
        /* min() over one table, so that it is one index probe, not a scan from the mark. */
    "WITH nx AS (SELECT date_bin('1 hour', (SELECT min(ts) FROM sensor_readings"
    "  WHERE ts >= (SELECT coalesce(rolled_until, '-infinity') FROM rollup_state"
    "  WHERE id = 1) AND ts < $1::timestamptz), timestamptz 'epoch') AS h),"
    " ins AS (INSERT INTO sensor_readings_hourly AS o"
    "  (sensor_id, hour, count, min, max, sum, first_ts, last_ts)"
    "  SELECT r.sensor_id, nx.h, count(*), min(r.value), max(r.value), "
    "sum(r.value),"
    "  min(r.ts), max(r.ts) FROM sensor_readings r, nx WHERE nx.h IS NOT NULL"
    "  AND r.ts >= nx.h AND r.ts < nx.h + interval '1 hour' GROUP BY "
    "r.sensor_id, nx.h"
    "  ON CONFLICT (sensor_id, hour) DO UPDATE SET count = excluded.count,"
    "  min = excluded.min, max = excluded.max, sum = excluded.sum,"
    "  first_ts = excluded.first_ts, last_ts = excluded.last_ts RETURNING 1),"
    " up AS (UPDATE rollup_state SET rolled_until = coalesce((SELECT h FROM "
    "nx)"
    "  + interval '1 hour', greatest(rolled_until, $1::timestamptz)) WHERE id "
    "= 1"
    "  RETURNING rolled_until)"
    " SELECT (extract(epoch from (SELECT rolled_until FROM up)) * "
    "1000)::bigint,"
    " (SELECT count(*) FROM ins)",
    /* A NULL mark (nothing rolled up yet) deletes nothing. */
    /*
     * The oldest max_rows readings (and their ties) by time, as a range of
     * ts, so that only the partitions of that range are touched; a NULL mark
     * (nothing rolled up yet) deletes nothing.
     */
    [RS_EXPIRE] = "DELETE FROM sensor_readings WHERE ts < $1::timestamptz"
                  " AND ts < (SELECT rolled_until FROM rollup_state WHERE id = 1)"
                  " AND ts <= coalesce((SELECT ts FROM sensor_readings WHERE ts < $1::timestamptz"
                  " ORDER BY ts OFFSET $2::bigint - 1 LIMIT 1), 'infinity')",
    [RS_DETACH] = "SELECT sensor_readings_detach_expired($1::timestamptz)",
    [RS_EMPTY] = "SELECT sensor_readings_empty_detached($1::timestamptz)",
    [RS_DROP] = "SELECT sensor_readings_drop_detached($1::timestamptz)",
    [RS_EXPIRE_ROLLUPS] = "DELETE FROM sensor_readings_hourly WHERE (sensor_id, hour) IN"
                          " (SELECT sensor_id, hour FROM sensor_readings_hourly"
                          " WHERE hour < $1::timestamptz ORDER BY hour LIMIT $2)",
    /* History: the (sensor_id, ts) index serves both directly. */
    [RS_RANGE] = "SELECT id, value, (extract(epoch from ts) * 1000)::bigint, class, late"
                 " FROM sensor_readings WHERE sensor_id = $1 AND ts >= $2::timestamptz"
                 " AND ts < $3::timestamptz AND (ts, id) > ($4::timestamptz, $5::bigint)"
                 " ORDER BY ts, id LIMIT $6",
    /*
     * $6 = min(to, mark), $7 = max(from, mark), computed by the caller: as
     * parameters, the planner sees how short the raw range is.
     */
    [RS_BUCKETS] =
        "SELECT (extract(epoch from b) * 1000)::bigint, sum(c), min(mn), max(mx), sum(sm) FROM ("
        " SELECT date_bin($4::interval, hour, timestamptz 'epoch') AS b, count AS c, min AS mn,"
        " max AS mx, sum AS sm FROM sensor_readings_hourly WHERE sensor_id = $1"
        " AND hour >= $2::timestamptz AND hour < $6::timestamptz"
        " UNION ALL SELECT date_bin($4::interval, ts, timestamptz 'epoch'), count(*), min(value),"
        " max(value), sum(value) FROM sensor_readings WHERE sensor_id = $1"
        " AND ts >= $7::timestamptz AND ts < $3::timestamptz GROUP BY 1) x"
        " GROUP BY 1 ORDER BY 1 LIMIT $5",
    /* Parenthesised: clang takes a two-piece literal in an array for a missing comma. */
    [RS_MARK] = ("SELECT (extract(epoch from rolled_until) * 1000)::bigint"
                 " FROM rollup_state WHERE id = 1"),
};

static struct pg_cmd rcmd(enum ret_stmt id, int n, const char *const *params)
{
    return (struct pg_cmd){
        .slot = PG_RET_BASE + (int)id, .sql = ret_sql[id], .nparams = n, .params = params};
}

int pg_rollup_step(struct store *base, int64_t until, int64_t *mark, int64_t *rollups)
{
    struct pg_store *s = (struct pg_store *)base;
    char u[32];
    const char *p[1] = {pg_fmt_ts(u, until)};
    struct pg_cmd c[2] = {rcmd(RS_LOCK, 0, NULL), rcmd(RS_ROLL, 1, p)};
    PGresult *r[2];
    int rc = pg_tx_begin(base);
    if (rc) return rc;
    /* Two round trips: the aggregate's snapshot must be taken after the lock is granted. */
    if ((rc = pg_roundtrip(s, &c[0], 1, &r[0], 0))) goto fail;
    PQclear(r[0]);
    if ((rc = pg_roundtrip(s, &c[1], 1, &r[1], 0))) goto fail;
    if (PQntuples(r[1]) != 1 || pg_null(r[1], 0, 0)) {
        PQclear(r[1]);
        rc = pg_fail(s, IOT_EDB, "rollup_state has no row");
        goto fail;
    }
    *mark = pg_i64(r[1], 0, 0);
    *rollups = pg_i64(r[1], 0, 1);
    PQclear(r[1]);
    return pg_tx_commit(base);
fail:
    pg_tx_rollback(base);
    return rc;
}

/* One chunked DELETE (autocommit); *deleted its row count. */
static int expire(struct store *base, enum ret_stmt id, int64_t before, int64_t max_rows,
                  int64_t *deleted)
{
    char b[32], m[24];
    const char *p[2] = {pg_fmt_ts(b, before), pg_fmt_i64(m, max_rows)};
    struct pg_cmd c = rcmd(id, 2, p);
    PGresult *r;
    *deleted = 0;
    int rc = pg_roundtrip((struct pg_store *)base, &c, 1, &r, 0);
    if (rc) return rc;
    *deleted = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

/* One of the month functions of schema step 5; *out its value (NULL: 0, *name ""). */
static int month_call(struct pg_store *s, enum ret_stmt id, const char *before, int64_t *out,
                      char *name, size_t cap)
{
    const char *p[1] = {before};
    struct pg_cmd c = rcmd(id, 1, p);
    PGresult *r;
    int rc = pg_roundtrip(s, &c, 1, &r, 0);
    if (rc) return rc;
    int null = pg_null(r, 0, 0);
    if (out) *out = null ? 0 : pg_i64(r, 0, 0);
    if (name) snprintf(name, cap, "%s", null ? "" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

/*
 * Detaches, empties and drops the expired months one at a time (schema
 * step 5 says why in three transactions), pausing after each as long as it
 * took, as the chunked deletes do. Locks refused for DROP_PATIENCE_US in a
 * row leave the rest to the chunked deletes of this run and the next run.
 */
#define DROP_PATIENCE_US 10000000
#define DROP_RETRY_US    50000
static int drop_months(struct pg_store *s, const char *before, int64_t *dropped)
{
    char name[64]; /* NAMEDATALEN */
    int refused = 0;
    for (int64_t since = 0;;) {
        int64_t n = 0, t0 = clock_mono_us();
        int rc = month_call(s, RS_EMPTY, before, &n, NULL, 0);
        *dropped += n;
        if (!rc) rc = month_call(s, RS_DROP, before, NULL, NULL, 0);
        if (!rc) rc = month_call(s, RS_DETACH, before, NULL, name, sizeof name);
        if (rc == IOT_EBUSY) {
            refused++;
            if (!since) since = t0;
            if (clock_mono_us() - since < DROP_PATIENCE_US) {
                clock_sleep_us(DROP_RETRY_US);
                continue;
            }
            LOG(LOG_WARN, "retention_month_busy", "refused=%d db=\"%s\"", refused, s->err);
            return 0;
        }
        if (rc || !name[0]) return rc;
        int64_t took = clock_mono_us() - t0;
        LOG(LOG_INFO, "retention_month_detached", "partition=%s refused=%d took_ms=%lld", name,
            refused, (long long)(took / 1000));
        refused = 0, since = 0;
        clock_sleep_us(took);
    }
}

/*
 * Whole monthly partitions first (schema step 5: dropped, not deleted row by
 * row), then one chunk of the rest; *deleted counts both.
 */
int pg_readings_expire(struct store *base, int64_t before, int64_t max_rows, int64_t *deleted)
{
    char b[32];
    int64_t dropped = 0;
    int rc = drop_months((struct pg_store *)base, pg_fmt_ts(b, before), &dropped);
    if (!rc) rc = expire(base, RS_EXPIRE, before, max_rows, deleted);
    *deleted += dropped;
    return rc;
}

int pg_rollups_expire(struct store *base, int64_t before, int64_t max_rows, int64_t *deleted)
{
    return expire(base, RS_EXPIRE_ROLLUPS, before, max_rows, deleted);
}

int pg_readings_range(struct store *base, int64_t sensor_id, int64_t from, int64_t to,
                      int64_t after_ts, int64_t after_id, size_t limit, struct store_reading *out,
                      size_t *n)
{
    char id[24], f[32], t[32], at[32], ai[24], lim[24];
    const char *p[6] = {pg_fmt_i64(id, sensor_id), pg_fmt_ts(f, from),
                        pg_fmt_ts(t, to),          pg_fmt_ts(at, after_ts),
                        pg_fmt_i64(ai, after_id),  pg_fmt_i64(lim, (int64_t)limit)};
    struct pg_cmd c = rcmd(RS_RANGE, 6, p);
    PGresult *r;
    *n = 0;
    int rc = pg_query((struct pg_store *)base, &c, &r);
    if (rc) return rc;
    for (int i = 0; i < PQntuples(r) && *n < limit; i++) {
        struct store_reading *x = &out[(*n)++];
        memset(x, 0, sizeof *x);
        x->sensor_id = sensor_id;
        x->id = pg_i64(r, i, 0);
        x->value = pg_f64(r, i, 1);
        x->ts = pg_i64(r, i, 2);
        x->cls = reading_class_parse(PQgetvalue(r, i, 3));
        x->late = (int)pg_i64(r, i, 4);
    }
    PQclear(r);
    return 0;
}

int pg_readings_buckets(struct store *base, int64_t sensor_id, int64_t from, int64_t to,
                        int64_t step_ms, size_t cap, struct store_bucket *out, size_t *n)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_cmd mc = rcmd(RS_MARK, 0, NULL);
    PGresult *r;
    *n = 0;
    int rc = pg_query(s, &mc, &r);
    if (rc) return rc;
    /* No mark (nothing rolled up): no rollups, raw readings from `from` on. */
    int64_t mark = PQntuples(r) == 1 && !pg_null(r, 0, 0) ? pg_i64(r, 0, 0) : from;
    PQclear(r);
    int64_t roll_end = mark < to ? mark : to, raw_start = mark > from ? mark : from;
    char id[24], f[32], t[32], step[48], lim[24], re[32], rs[32];
    snprintf(step, sizeof step, "%lld milliseconds", (long long)step_ms);
    const char *p[7] = {
        pg_fmt_i64(id, sensor_id),     pg_fmt_ts(f, from),      pg_fmt_ts(t, to),        step,
        pg_fmt_i64(lim, (int64_t)cap), pg_fmt_ts(re, roll_end), pg_fmt_ts(rs, raw_start)};
    struct pg_cmd c = rcmd(RS_BUCKETS, 7, p);
    if ((rc = pg_query(s, &c, &r))) return rc;
    for (int i = 0; i < PQntuples(r) && *n < cap; i++) {
        struct store_bucket *b = &out[(*n)++];
        b->start = pg_i64(r, i, 0);
        b->count = pg_i64(r, i, 1);
        b->min = pg_f64(r, i, 2);
        b->max = pg_f64(r, i, 3);
        b->sum = pg_f64(r, i, 4);
    }
    PQclear(r);
    return 0;
}
