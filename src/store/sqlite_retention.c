/*
 * SQLite backend: hourly rollups and retention (job retention, SPEC §12).
 *
 * rollup_state.rolled_until (the mark, ms, an hour boundary) splits time in
 * two: below it every hour with readings has its sensor_readings_hourly rows,
 * kept equal to the raw aggregate by the insert trigger of schema step 5 (a
 * reading stored into such an hour is added to its row in the writer's
 * transaction, by sqlite_rollup_add on the gateway's writer, which runs
 * without triggers); at and above it only raw readings count. The job moves the
 * mark one hour with readings at a time, each in its own short write
 * transaction, so the gateway's writer waits for at most one hour's
 * aggregate. Deletion runs in chunks of one autocommit DELETE each and never
 * reaches above the mark, so no reading goes before it is rolled up.
 */
#include "core/err.h"
#include "store/sqlite_int.h"

#define HOUR_MS 3600000LL

enum ret_stmt {
    RS_MARK,
    RS_NEXT,
    RS_ROLL,
    RS_SET_MARK,
    RS_EXPIRE,
    RS_EXPIRE_ROLLUPS,
    RS_ADD,
    RS_COUNT
};
_Static_assert(RS_COUNT <= SQLITE_RETENTION_STMTS, "grow SQLITE_RETENTION_STMTS");

static const char *const ret_sql[RS_COUNT] = {
    [RS_MARK] = "SELECT rolled_until FROM rollup_state WHERE id = 1",
    [RS_NEXT] = "SELECT min(ts) FROM sensor_readings WHERE ts >= ?1",
    /* The raw rows of the hour are the authority above the mark: replace. */
    [RS_ROLL] =
        "INSERT INTO sensor_readings_hourly(sensor_id, hour, count, min, max, sum, first_ts,"
        " last_ts) SELECT sensor_id, ?1, count(*), min(value), max(value), sum(value),"
        " min(ts), max(ts) FROM sensor_readings WHERE ts >= ?1 AND ts < ?1 + 3600000"
        " GROUP BY sensor_id ON CONFLICT(sensor_id, hour) DO UPDATE SET"
        " count = excluded.count, min = excluded.min, max = excluded.max,"
        " sum = excluded.sum, first_ts = excluded.first_ts, last_ts = excluded.last_ts",
    [RS_SET_MARK] = "UPDATE rollup_state SET rolled_until = ?1 WHERE id = 1",
    /* A NULL mark (nothing rolled up yet) deletes nothing. */
    [RS_EXPIRE] = "DELETE FROM sensor_readings WHERE id IN (SELECT id FROM sensor_readings"
                  " WHERE ts < ?1 AND ts < (SELECT rolled_until FROM rollup_state WHERE id = 1)"
                  " ORDER BY ts LIMIT ?2)",
    [RS_EXPIRE_ROLLUPS] = "DELETE FROM sensor_readings_hourly WHERE (sensor_id, hour) IN"
                          " (SELECT sensor_id, hour FROM sensor_readings_hourly WHERE hour < ?1"
                          " ORDER BY hour LIMIT ?2)",
    /* The body of the rollup trigger of schema step 5, for the writer that runs without it. */
    [RS_ADD] = "INSERT INTO sensor_readings_hourly(sensor_id, hour, count, min, max, sum, first_ts,"
               " last_ts) VALUES (?1, ?2, 1, ?3, ?3, ?3, ?4, ?4) ON CONFLICT(sensor_id, hour)"
               " DO UPDATE SET count = count + 1, min = min(\"min\", excluded.min),"
               " max = max(\"max\", excluded.max), sum = sum + excluded.sum,"
               " first_ts = min(first_ts, excluded.first_ts),"
               " last_ts = max(last_ts, excluded.last_ts)",
};

static int ret_stmt(struct sqlite_store *s, enum ret_stmt id, sqlite3_stmt **out)
{
    return sqlite_stmt(s, &s->ret_st[id], ret_sql[id], out);
}

/* The hour that holds ts (floor, also for times before 1970). */
static int64_t hour_of(int64_t ts)
{
    return ts - ((ts % HOUR_MS) + HOUR_MS) % HOUR_MS;
}

/* One optional integer: *has = 0 for no row or NULL. */
static int one_int(struct sqlite_store *s, sqlite3_stmt *st, int *has, int64_t *v)
{
    int rc = sqlite3_step(st);
    *has = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
    if (*has) *v = sqlite3_column_int64(st, 0);
    int ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

/* Inside the write transaction: the work of rollup_step. */
static int rollup_in_tx(struct sqlite_store *s, int64_t until, int64_t *mark, int64_t *rollups)
{
    sqlite3_stmt *st;
    int has_mark, has_next, rc;
    int64_t cur = 0, next = 0;
    if ((rc = sqlite_rollup_mark(s, &has_mark, &cur))) return rc;
    if ((rc = ret_stmt(s, RS_NEXT, &st))) return rc;
    sqlite3_bind_int64(st, 1, has_mark ? cur : INT64_MIN);
    if ((rc = one_int(s, st, &has_next, &next))) return rc;
    *rollups = 0;
    if (has_next && hour_of(next) < until) {
        int64_t h = hour_of(next);
        if ((rc = ret_stmt(s, RS_ROLL, &st))) return rc;
        sqlite3_bind_int64(st, 1, h);
        if ((rc = sqlite_exec_done(s, st))) return rc;
        *rollups = sqlite3_changes(s->db);
        *mark = h + HOUR_MS;
    } else {
        *mark = has_mark && cur > until ? cur : until;
    }
    if ((rc = ret_stmt(s, RS_SET_MARK, &st))) return rc;
    sqlite3_bind_int64(st, 1, *mark);
    return sqlite_exec_done(s, st);
}

int sqlite_rollup_mark(struct sqlite_store *s, int *has, int64_t *mark)
{
    sqlite3_stmt *st;
    int rc = ret_stmt(s, RS_MARK, &st);
    return rc ? rc : one_int(s, st, has, mark);
}

int sqlite_rollup_add(struct sqlite_store *s, const struct store_reading *rows, size_t n)
{
    sqlite3_stmt *st;
    int has_mark, rc;
    int64_t mark = 0;
    if ((rc = sqlite_rollup_mark(s, &has_mark, &mark))) return rc;
    for (size_t i = 0; has_mark && i < n; i++) {
        if (rows[i].ts >= mark) continue;
        if ((rc = ret_stmt(s, RS_ADD, &st))) return rc;
        sqlite3_bind_int64(st, 1, rows[i].sensor_id);
        sqlite3_bind_int64(st, 2, hour_of(rows[i].ts));
        sqlite3_bind_double(st, 3, rows[i].value);
        sqlite3_bind_int64(st, 4, rows[i].ts);
        if ((rc = sqlite_exec_done(s, st))) return rc;
    }
    return 0;
}

int sqlite_rollup_step(struct store *base, int64_t until, int64_t *mark, int64_t *rollups)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    int rc = sqlite_exec_sql(s, "BEGIN IMMEDIATE");
    if (rc) return rc;
    if ((rc = rollup_in_tx(s, until, mark, rollups)) || (rc = sqlite_exec_sql(s, "COMMIT"))) {
        if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return 0;
}

/* One chunked DELETE (its own autocommit transaction); *deleted its row count. */
static int expire(struct sqlite_store *s, enum ret_stmt id, int64_t before, int64_t max_rows,
                  int64_t *deleted)
{
    sqlite3_stmt *st;
    *deleted = 0;
    int rc = ret_stmt(s, id, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, before);
    sqlite3_bind_int64(st, 2, max_rows);
    if ((rc = sqlite_exec_done(s, st))) return rc;
    *deleted = sqlite3_changes(s->db);
    return 0;
}

int sqlite_readings_expire(struct store *base, int64_t before, int64_t max_rows, int64_t *deleted)
{
    return expire((struct sqlite_store *)base, RS_EXPIRE, before, max_rows, deleted);
}

int sqlite_rollups_expire(struct store *base, int64_t before, int64_t max_rows, int64_t *deleted)
{
    return expire((struct sqlite_store *)base, RS_EXPIRE_ROLLUPS, before, max_rows, deleted);
}
