/*
 * PostgreSQL backend: hourly rollups and retention (job retention, SPEC §12),
 * the same operations as sqlite_retention.c. Hours are UTC hours
 * (date_bin from the epoch, whatever the session's TimeZone).
 *
 * Concurrency with the writers of every gateway: the insert trigger of schema
 * step 4 takes the rollup lock (PG_ROLLUP_LOCK) shared for the rest of each
 * writer transaction before it reads the mark; rollup_step takes it
 * exclusively, so it waits for the writers in flight to commit, and its
 * aggregate (a statement that starts after the lock is granted) sees every
 * reading stored below the new mark that the trigger did not add.
 */
#include "core/err.h"
#include "store/pg_int.h"

#include <stdlib.h>

enum ret_stmt { RS_LOCK, RS_ROLL, RS_EXPIRE, RS_EXPIRE_ROLLUPS, RS_COUNT };
_Static_assert(RS_COUNT <= PG_RET_STMTS, "grow PG_RET_STMTS");

#define HOUR_OF(x) "date_bin('1 hour', " x ", timestamptz 'epoch')"

static const char *const ret_sql[RS_COUNT] = {
    [RS_LOCK] = "SELECT pg_advisory_xact_lock(" PG_ROLLUP_LOCK ")",
    /*
     * The first hour with readings at or after the mark and before $1, its
     * rollup rows (raw rows are the authority above the mark: replace), and
     * the mark moved past it, or to $1 when there is no such hour.
     */
    [RS_ROLL] =
        "WITH m AS (SELECT rolled_until FROM rollup_state WHERE id = 1),"
        " nx AS (SELECT " HOUR_OF(
            "min(r.ts)") " AS h FROM sensor_readings r, m"
                         "  WHERE r.ts >= coalesce(m.rolled_until, '-infinity') AND r.ts < "
                         "$1::timestamptz),"
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
    [RS_EXPIRE] = "DELETE FROM sensor_readings WHERE id IN (SELECT id FROM sensor_readings"
                  " WHERE ts < $1::timestamptz"
                  " AND ts < (SELECT rolled_until FROM rollup_state WHERE id = 1)"
                  " ORDER BY ts LIMIT $2)",
    [RS_EXPIRE_ROLLUPS] = "DELETE FROM sensor_readings_hourly WHERE (sensor_id, hour) IN"
                          " (SELECT sensor_id, hour FROM sensor_readings_hourly"
                          " WHERE hour < $1::timestamptz ORDER BY hour LIMIT $2)",
};

static struct pg_cmd rcmd(enum ret_stmt id, int n, const char *const *params)
{
    return (struct pg_cmd){PG_RET_BASE + (int)id, ret_sql[id], n, params, 0, 0};
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

int pg_readings_expire(struct store *base, int64_t before, int64_t max_rows, int64_t *deleted)
{
    return expire(base, RS_EXPIRE, before, max_rows, deleted);
}

int pg_rollups_expire(struct store *base, int64_t before, int64_t max_rows, int64_t *deleted)
{
    return expire(base, RS_EXPIRE_ROLLUPS, before, max_rows, deleted);
}
