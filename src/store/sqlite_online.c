/*
 * SQLite backend, online ML consumer operations: each sensor's online model
 * (online_state) and the broker messages already applied (consumer_applied).
 * Both run inside the consumer's BEGIN IMMEDIATE transaction, which already
 * serialises every writer of the file, so no row lock is needed here.
 *
 * These statements are prepared per call rather than kept in the
 * connection's statement cache: the consumer runs a handful per message, next
 * to a commit that costs an fsync, so preparing is noise; and keeping them
 * out of struct sqlite_store leaves the core backend untouched.
 */
#include "core/err.h"
#include "store/sqlite_int.h"

#include <stdint.h>
#include <string.h>

#define SQL_APPLIED "SELECT 1 FROM consumer_applied WHERE stream = ?1 AND seq = ?2"
#define SQL_STATE_GET                                                                              \
    "SELECT mean, var, count, last_ts, updated_at FROM online_state WHERE sensor_id = ?1"
#define SQL_STATE_PUT                                                                              \
    "INSERT INTO online_state(sensor_id, mean, var, count, last_ts, updated_at)"                   \
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(sensor_id) DO UPDATE SET mean = excluded.mean,"  \
    " var = excluded.var, count = excluded.count, last_ts = excluded.last_ts,"                     \
    " updated_at = excluded.updated_at"
#define SQL_MARK                                                                                   \
    "INSERT INTO consumer_applied(stream, seq, sensor_id, consumer, applied_at)"                   \
    " VALUES (?1, ?2, ?3, ?4, ?5)"
#define SQL_PRUNE "DELETE FROM consumer_applied WHERE stream = ?1 AND seq <= ?2"

/* Prepares sql for one use; the caller finalizes *out. */
static int prepare(struct sqlite_store *s, const char *sql, sqlite3_stmt **out)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, out, NULL);
    return rc == SQLITE_OK ? 0 : sqlite_fail(s, rc);
}

/* Steps a statement that returns no row, then finalizes it. */
static int run_once(struct sqlite_store *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? 0 : sqlite_fail(s, rc);
    sqlite3_finalize(st);
    return ret;
}

int sqlite_online_load(struct store *base, const char *stream, uint64_t seq, int64_t sensor_id,
                       struct store_online_state *out, int *applied)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc;

    if (!stream || !out || !applied || seq > INT64_MAX) return IOT_EINVAL;
    memset(out, 0, sizeof *out);
    out->sensor_id = sensor_id;
    *applied = 0;

    if ((rc = prepare(s, SQL_APPLIED, &st))) return rc;
    sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *applied = 1;
    rc = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : sqlite_fail(s, rc);
    sqlite3_finalize(st);
    if (rc || *applied) return rc;

    if ((rc = prepare(s, SQL_STATE_GET, &st))) return rc;
    sqlite3_bind_int64(st, 1, sensor_id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->mean = sqlite3_column_double(st, 0);
        out->var = sqlite3_column_double(st, 1);
        out->count = sqlite3_column_int64(st, 2);
        out->last_ts = sqlite3_column_int64(st, 3);
        out->updated_at = sqlite3_column_int64(st, 4);
    }
    rc = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : sqlite_fail(s, rc);
    sqlite3_finalize(st);
    return rc;
}

int sqlite_online_apply(struct store *base, const char *stream, uint64_t seq, const char *consumer,
                        const struct store_online_state *state, struct store_prediction *pred)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc;

    if (!stream || !consumer || !state || seq > INT64_MAX) return IOT_EINVAL;

    /* The mark first: a duplicate fails before anything else is written. */
    if ((rc = prepare(s, SQL_MARK, &st))) return rc;
    sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 3, state->sensor_id);
    sqlite3_bind_text(st, 4, consumer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, state->updated_at);
    if ((rc = run_once(s, st))) return rc;

    if ((rc = prepare(s, SQL_STATE_PUT, &st))) return rc;
    sqlite3_bind_int64(st, 1, state->sensor_id);
    sqlite3_bind_double(st, 2, state->mean);
    sqlite3_bind_double(st, 3, state->var);
    sqlite3_bind_int64(st, 4, state->count);
    sqlite3_bind_int64(st, 5, state->last_ts);
    sqlite3_bind_int64(st, 6, state->updated_at);
    if ((rc = run_once(s, st))) return rc;

    return pred ? sqlite_prediction_insert(base, pred) : 0;
}

int sqlite_online_prune(struct store *base, const char *stream, uint64_t upto, int64_t *removed)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st = NULL;
    int rc;

    if (!stream) return IOT_EINVAL;
    if (removed) *removed = 0;
    if (upto > INT64_MAX) upto = INT64_MAX;
    if ((rc = prepare(s, SQL_PRUNE, &st))) return rc;
    sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)upto);
    if ((rc = run_once(s, st))) return rc;
    if (removed) *removed = sqlite3_changes64(s->db);
    return 0;
}
