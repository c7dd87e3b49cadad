/*
 * SQLite backend: a sensor's newest readings, found through the reading chain
 * (schema step 4) instead of a per-sensor index.
 *
 * Every stored reading carries prev_id, the id of its sensor's previously
 * stored reading, and sensor_state.last_reading_id names the newest; walking
 * the chain visits a sensor's readings in insertion (id) order, newest first.
 * The answer is ordered by reading time, so late readings need one rule: a
 * non-late reading is at least as new as every reading of its sensor stored
 * before it (SPEC §4: late means older than the sensor's newest), so once such
 * a reading ranks last among `limit` visited ones, nothing older in the chain
 * can enter the answer and the walk stops. Without late readings that is after
 * exactly `limit` rows.
 *
 * Where the chain is missing or broken (a reading written by hand, whose
 * insert trigger marks the sensor's head unknown; a reading deleted from the
 * middle), the walk goes on as a scan of the table by descending id restricted
 * to the sensor, under the same rule, which then trusts the late flags of
 * hand-written rows to follow SPEC §4 as the gateway's do.
 */
#include "core/err.h"
#include "store/sqlite_int.h"

#include <string.h>

enum chain_stmt { CH_ROW, CH_SCAN, CH_COUNT };
_Static_assert(CH_COUNT <= SQLITE_CHAIN_STMTS, "grow SQLITE_CHAIN_STMTS");

#define ROW_COLS "id, sensor_id, value, ts, ingested_at, class, late, prev_id"

static const char *const chain_sql[CH_COUNT] = {
    [CH_ROW] = "SELECT " ROW_COLS " FROM sensor_readings WHERE id = ?1",
    [CH_SCAN] = "SELECT " ROW_COLS " FROM sensor_readings WHERE sensor_id = ?1 AND id < ?2"
                " ORDER BY id DESC",
};

/* The newest `limit` readings seen so far, ordered by (ts, id) descending. */
struct top {
    struct store_reading *r;
    size_t n, limit;
};

static int newer(const struct store_reading *a, const struct store_reading *b)
{
    return a->ts != b->ts ? a->ts > b->ts : a->id > b->id;
}

/*
 * Offers one visited reading to the answer; returns 1 when the walk can stop
 * (see the rule at the top of this file).
 */
static int top_offer(struct top *t, const struct store_reading *x)
{
    size_t pos = t->n;
    while (pos > 0 && newer(x, &t->r[pos - 1]))
        pos--;
    if (pos < t->limit) {
        size_t keep = t->n < t->limit ? t->n : t->limit - 1;
        memmove(&t->r[pos + 1], &t->r[pos], (keep - pos) * sizeof *t->r);
        t->r[pos] = *x;
        if (t->n < t->limit) t->n++;
    }
    return !x->late && t->n == t->limit && pos >= t->limit - 1;
}

/* Decodes a row of ROW_COLS; *prev = its prev_id (STORE_READING_UNKNOWN when NULL). */
static void read_row(sqlite3_stmt *st, struct store_reading *r, int64_t *prev)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    r->sensor_id = sqlite3_column_int64(st, 1);
    r->value = sqlite3_column_double(st, 2);
    r->ts = sqlite3_column_int64(st, 3);
    r->ingested_at = sqlite3_column_int64(st, 4);
    r->cls = reading_class_parse((const char *)sqlite3_column_text(st, 5));
    r->late = sqlite3_column_int(st, 6);
    *prev = sqlite3_column_type(st, 7) == SQLITE_NULL ? STORE_READING_UNKNOWN
                                                      : sqlite3_column_int64(st, 7);
}

static int chain_stmt(struct sqlite_store *s, enum chain_stmt id, sqlite3_stmt **out)
{
    return sqlite_stmt(s, &s->chain_st[id], chain_sql[id], out);
}

/*
 * Follows the chain from `id`. Sets *scan_below to where a scan must go on
 * (the chain broke), or 0 when the walk is complete.
 */
static int chain_walk(struct sqlite_store *s, int64_t sensor_id, int64_t id, struct top *t,
                      int64_t *scan_below)
{
    sqlite3_stmt *st = NULL;
    int rc = chain_stmt(s, CH_ROW, &st);
    if (rc) return rc;
    *scan_below = 0;
    while (id > 0) {
        sqlite3_bind_int64(st, 1, id);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            sqlite3_reset(st);
            if (rc != SQLITE_DONE) return sqlite_fail(s, rc);
            *scan_below = id; /* deleted: the sensor's older readings lie below it */
            return 0;
        }
        struct store_reading r;
        int64_t prev;
        read_row(st, &r, &prev);
        sqlite3_reset(st);
        if (r.sensor_id != sensor_id) { /* the id was reused after a delete */
            *scan_below = id;
            return 0;
        }
        if (top_offer(t, &r)) return 0;
        if (prev == STORE_READING_UNKNOWN || prev >= id) { /* no link, or not a valid one */
            *scan_below = id;
            return 0;
        }
        id = prev;
    }
    return 0;
}

static int chain_scan(struct sqlite_store *s, int64_t sensor_id, int64_t below, struct top *t)
{
    sqlite3_stmt *st = NULL;
    int rc = chain_stmt(s, CH_SCAN, &st);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, sensor_id);
    sqlite3_bind_int64(st, 2, below);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_reading r;
        int64_t prev;
        read_row(st, &r, &prev);
        if (top_offer(t, &r)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    int ret = rc == SQLITE_DONE ? 0 : sqlite_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

int sqlite_recent_readings(struct store *base, int64_t sensor_id, size_t limit,
                           struct store_reading *out, size_t *n)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    struct top t = {out, 0, limit};
    struct store_sensor_state state;
    int64_t head, below = 0;
    *n = 0;
    if (limit == 0) return 0;
    int rc = sqlite_state_get(base, sensor_id, &state);
    if (rc) return rc;
    head = state.last_reading_id;
    if (head == STORE_READING_UNKNOWN)
        below = INT64_MAX;
    else if ((rc = chain_walk(s, sensor_id, head, &t, &below)))
        return rc;
    if (below && (rc = chain_scan(s, sensor_id, below, &t))) return rc;
    *n = t.n;
    return 0;
}
