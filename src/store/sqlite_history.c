/*
 * SQLite backend: a sensor's history (GET .../sensors/{uuid}/readings).
 *
 * sensor_readings has no per-sensor index (only (ts, sensor_id): see the
 * reading chain in docs/architecture.md), so a time range of one sensor
 * would walk the index entries of every sensor in that range. Below the
 * rollup mark the rollups say which hours the sensor has readings in, and
 * between which times (first_ts, last_ts); the range query visits only those
 * hours, one index range each. Above the mark (the hour or so the job has
 * not rolled up yet) it is one range. Buckets come from the rollups below
 * the mark and from raw readings above it.
 */
#include "core/err.h"
#include "store/sqlite_int.h"

#include <string.h>

#define HOUR_MS 3600000LL

enum hist_stmt { HS_OLDEST, HS_NEXT_HOUR, HS_RAW, HS_BUCKETS, HS_COUNT };
_Static_assert(HS_COUNT <= SQLITE_HISTORY_STMTS, "grow SQLITE_HISTORY_STMTS");

/* b(x): the start of the step (?4 ms) that holds x, also before 1970. */
#define BUCKET(x) x " - ((" x " % ?4) + ?4) % ?4"

static const char *const hist_sql[HS_COUNT] = {
    [HS_OLDEST] = "SELECT min(ts) FROM sensor_readings",
    [HS_NEXT_HOUR] = "SELECT hour, first_ts, last_ts FROM sensor_readings_hourly"
                     " WHERE sensor_id = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour LIMIT 1",
    [HS_RAW] = "SELECT id, value, ts, class, late FROM sensor_readings"
               " WHERE ts >= ?2 AND ts < ?3 AND sensor_id = ?1 AND (ts > ?4 OR id > ?5)"
               " ORDER BY ts, id LIMIT ?6",
    /* ?5: the rollup mark (INT64_MIN when none). */
    [HS_BUCKETS] =
        "SELECT b, sum(c), min(mn), max(mx), sum(sm) FROM ("
        " SELECT " BUCKET(
            "hour") " AS b, count AS c, min AS mn, max AS mx, sum AS sm"
                    " FROM sensor_readings_hourly WHERE sensor_id = ?1 AND hour >= ?2"
                    " AND hour < min(?3, ?5)"
                    " UNION ALL SELECT " BUCKET(
                        "ts") ", count(*), min(value), max(value),"
                              " sum(value) FROM sensor_readings WHERE ts >= max(?2, ?5) AND ts < ?3"
                              " AND sensor_id = ?1 GROUP BY 1)"
                              " GROUP BY b ORDER BY b LIMIT ?6",
};

static int hist_stmt(struct sqlite_store *s, enum hist_stmt id, sqlite3_stmt **out)
{
    return sqlite_stmt(s, &s->hist_st[id], hist_sql[id], out);
}

/* A page of the query: the readings in [lo, hi) after the cursor, appended to out. */
struct page {
    int64_t sensor_id, after_ts, after_id;
    size_t limit, n;
    struct store_reading *out;
};

static int raw_range(struct sqlite_store *s, struct page *p, int64_t lo, int64_t hi)
{
    sqlite3_stmt *st;
    int rc = hist_stmt(s, HS_RAW, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, p->sensor_id);
    sqlite3_bind_int64(st, 2, lo);
    sqlite3_bind_int64(st, 3, hi);
    sqlite3_bind_int64(st, 4, p->after_ts);
    sqlite3_bind_int64(st, 5, p->after_id);
    sqlite3_bind_int64(st, 6, (int64_t)(p->limit - p->n));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && p->n < p->limit) {
        struct store_reading *r = &p->out[p->n++];
        memset(r, 0, sizeof *r);
        r->sensor_id = p->sensor_id;
        r->id = sqlite3_column_int64(st, 0);
        r->value = sqlite3_column_double(st, 1);
        r->ts = sqlite3_column_int64(st, 2);
        r->cls = reading_class_parse((const char *)sqlite3_column_text(st, 3));
        r->late = sqlite3_column_int(st, 4);
    }
    int ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

/*
 * The sensor's next rolled-up hour at or after `from_hour` and before `before`:
 * *found = 0 when there is none, else its start and the times of its first
 * and last readings.
 */
static int next_hour(struct sqlite_store *s, int64_t sensor_id, int64_t from_hour, int64_t before,
                     int *found, int64_t hour[3])
{
    sqlite3_stmt *st;
    int rc = hist_stmt(s, HS_NEXT_HOUR, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, sensor_id);
    sqlite3_bind_int64(st, 2, from_hour);
    sqlite3_bind_int64(st, 3, before);
    rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    for (int i = 0; *found && i < 3; i++)
        hour[i] = sqlite3_column_int64(st, i);
    int ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

int sqlite_readings_range(struct store *base, int64_t sensor_id, int64_t from, int64_t to,
                          int64_t after_ts, int64_t after_id, size_t limit,
                          struct store_reading *out, size_t *n)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct page p = {sensor_id, after_ts, after_id, limit, 0, out};
    sqlite3_stmt *st;
    int has_mark, has_oldest, rc;
    int64_t mark = 0, oldest = 0;
    *n = 0;
    if ((rc = sqlite_rollup_mark(s, &has_mark, &mark)) || (rc = hist_stmt(s, HS_OLDEST, &st)))
        return rc;
    int step = sqlite3_step(st);
    has_oldest = step == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
    if (has_oldest) oldest = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE) return sqlite_fail(s, step);
    if (!has_oldest) return 0;
    if (!has_mark) mark = INT64_MIN;
    /* Hours deleted by retention hold no raw readings: start at the oldest one. */
    int64_t lo = max64(max64(from, after_ts), oldest);
    while (!rc && p.n < limit && lo < to) {
        if (lo >= mark) {
            rc = raw_range(s, &p, lo, to);
            break;
        }
        int found;
        int64_t h[3];
        int64_t lo_hour = lo - ((lo % HOUR_MS) + HOUR_MS) % HOUR_MS;
        if ((rc = next_hour(s, sensor_id, lo_hour, min64(to, mark), &found, h))) break;
        if (!found) {
            lo = mark;
            continue;
        }
        int64_t a = max64(lo, h[1]), b = min64(min64(to, h[2] + 1), h[0] + HOUR_MS);
        if (a < b) rc = raw_range(s, &p, a, b);
        lo = h[0] + HOUR_MS;
    }
    *n = p.n;
    return rc;
}

int sqlite_readings_buckets(struct store *base, int64_t sensor_id, int64_t from, int64_t to,
                            int64_t step_ms, size_t cap, struct store_bucket *out, size_t *n)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st;
    int has_mark, rc;
    int64_t mark = 0;
    *n = 0;
    if ((rc = sqlite_rollup_mark(s, &has_mark, &mark)) || (rc = hist_stmt(s, HS_BUCKETS, &st)))
        return rc;
    sqlite3_bind_int64(st, 1, sensor_id);
    sqlite3_bind_int64(st, 2, from);
    sqlite3_bind_int64(st, 3, to);
    sqlite3_bind_int64(st, 4, step_ms);
    sqlite3_bind_int64(st, 5, has_mark ? mark : INT64_MIN);
    sqlite3_bind_int64(st, 6, (int64_t)cap);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < cap) {
        struct store_bucket *b = &out[(*n)++];
        b->start = sqlite3_column_int64(st, 0);
        b->count = sqlite3_column_int64(st, 1);
        b->min = sqlite3_column_double(st, 2);
        b->max = sqlite3_column_double(st, 3);
        b->sum = sqlite3_column_double(st, 4);
    }
    int ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}
