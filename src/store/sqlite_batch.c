/*
 * The writer's batch statements on SQLite: a batch's readings and sensor
 * states in multi-row INSERTs, SQLITE_BATCH_SIZES statements per table
 * prepared once (64, 16, 4 and 1 rows), so that a batch of n rows runs
 * about n/64 statements instead of n. Per-statement work (bind reset, VDBE
 * start and halt, statement bookkeeping) was half of a reading's cost.
 *
 * Both are INSERT OR FAIL: a refused row stops the statement without undoing
 * the rows before it, which spares SQLite the statement journal a multi-row
 * statement otherwise keeps (a 4 KiB copy of every page it touches). That
 * is safe because every caller undoes a failure itself: the writer rolls
 * back the whole transaction, or the packet's savepoint.
 */
#include "core/err.h"
#include "store/sqlite_int.h"

#include <stdio.h>
#include <string.h>

static const int batch_rows[SQLITE_BATCH_SIZES] = {64, 16, 4, 1};

struct batch_table {
    const char *head; /* up to VALUES */
    const char *tail; /* after the rows */
    int ncols;
};

enum { BATCH_READINGS, BATCH_STATES };

static const struct batch_table batch_tables[SQLITE_BATCH_TABLES] = {
    [BATCH_READINGS] = {"INSERT OR FAIL INTO sensor_readings(id, sensor_id, value, ts,"
                        " ingested_at, class, late, prev_id) VALUES ",
                        "", 8},
    [BATCH_STATES] = {"INSERT OR FAIL INTO sensor_state(sensor_id, last_ts, last_value,"
                      " last_class, normal_run, last_reading_id) VALUES ",
                      " ON CONFLICT(sensor_id) DO UPDATE"
                      " SET last_ts = excluded.last_ts, last_value = excluded.last_value,"
                      " last_class = excluded.last_class, normal_run = excluded.normal_run,"
                      " last_reading_id = excluded.last_reading_id",
                      6},
};

/* The statement of table t for batch_rows[z] rows, prepared on first use. */
static int batch_stmt(struct sqlite_store *s, int t, int z, sqlite3_stmt **out)
{
    sqlite3_stmt **slot = &s->batch_st[t][z];
    if (*slot) {
        *out = *slot;
        return 0;
    }
    const struct batch_table *bt = &batch_tables[t];
    char sql[8192];
    size_t len = (size_t)snprintf(sql, sizeof sql, "%s", bt->head);
    for (int r = 0; r < batch_rows[z]; r++) {
        len += (size_t)snprintf(sql + len, sizeof sql - len, "%s(?", r ? "," : "");
        for (int c = 1; c < bt->ncols; c++)
            len += (size_t)snprintf(sql + len, sizeof sql - len, ",?");
        len += (size_t)snprintf(sql + len, sizeof sql - len, ")");
    }
    snprintf(sql + len, sizeof sql - len, "%s", bt->tail);
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
    if (rc != SQLITE_OK) {
        rc = sqlite_fail(s, rc);
        return rc ? rc : IOT_EDB;
    }
    *out = *slot;
    return 0;
}

typedef void (*bind_row_fn)(sqlite3_stmt *st, int p, const void *rows, size_t i);

/* Inserts n rows of table t, the largest statements first. */
static int batch_insert(struct sqlite_store *s, int t, const void *rows, size_t n, bind_row_fn bind)
{
    size_t i = 0;
    int z = 0;
    while (i < n) {
        while ((size_t)batch_rows[z] > n - i)
            z++;
        sqlite3_stmt *st = NULL;
        int rc = batch_stmt(s, t, z, &st);
        if (rc) return rc;
        for (int r = 0; r < batch_rows[z]; r++)
            bind(st, 1 + r * batch_tables[t].ncols, rows, i + (size_t)r);
        if ((rc = sqlite_exec_done(s, st))) return rc;
        i += (size_t)batch_rows[z];
    }
    return 0;
}

static void bind_reading(sqlite3_stmt *st, int p, const void *v, size_t i)
{
    const struct store_reading *rows = v, *r = &rows[i];
    sqlite3_bind_int64(st, p, r->id);
    sqlite3_bind_int64(st, p + 1, r->sensor_id);
    sqlite3_bind_double(st, p + 2, r->value);
    sqlite3_bind_int64(st, p + 3, r->ts);
    sqlite3_bind_int64(st, p + 4, r->ingested_at);
    sqlite3_bind_text(st, p + 5, reading_class_name(r->cls), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, p + 6, r->late);
    int64_t prev = r->prev_row ? rows[r->prev_row - 1].id : r->prev_id;
    if (prev >= 0)
        sqlite3_bind_int64(st, p + 7, prev);
    else
        sqlite3_bind_null(st, p + 7); /* unknown */
}

/*
 * The rows get their ids before the INSERT: one past the table's largest,
 * in order, exactly what SQLite would choose, known in advance so that a
 * reading can link to one stored by the same statement. The writer holds
 * the write lock (BEGIN IMMEDIATE), so no other connection takes ids
 * meanwhile.
 */
int sqlite_readings_insert(struct store *base, struct store_reading *rows, size_t n)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    if (n == 0) return 0;
    sqlite3_stmt *st;
    int rc = sqlite_stmt(s, &s->batch_next_id,
                         "SELECT coalesce(max(id), 0) + 1 FROM sensor_readings", &st);
    if (rc) return rc;
    if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
        rc = sqlite_fail(s, rc);
        sqlite3_reset(st);
        return rc;
    }
    int64_t next = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    for (size_t i = 0; i < n; i++)
        rows[i].id = next + (int64_t)i;
    rc = batch_insert(s, BATCH_READINGS, rows, n, bind_reading);
    return rc || !s->writer ? rc : sqlite_rollup_add(s, rows, n);
}

static void bind_state(sqlite3_stmt *st, int p, const void *v, size_t i)
{
    const struct store_sensor_state *const *states = v, *x = states[i];
    sqlite3_bind_int64(st, p, x->sensor_id);
    if (x->has_last) {
        sqlite3_bind_int64(st, p + 1, x->last_ts);
        sqlite3_bind_double(st, p + 2, x->last_value);
        sqlite3_bind_text(st, p + 3, reading_class_name(x->last_class), -1, SQLITE_STATIC);
    } else {
        for (int c = 1; c <= 3; c++)
            sqlite3_bind_null(st, p + c);
    }
    sqlite3_bind_int64(st, p + 4, x->normal_run);
    if (x->last_reading_id >= 0)
        sqlite3_bind_int64(st, p + 5, x->last_reading_id);
    else
        sqlite3_bind_null(st, p + 5);
}

/* The states of distinct sensors (one row per sensor in one statement). */
int sqlite_states_put(struct store *base, const struct store_sensor_state *const *st, size_t n)
{
    return batch_insert((struct sqlite_store *)base, BATCH_STATES, st, n, bind_state);
}

void sqlite_batch_close(struct sqlite_store *s)
{
    for (int t = 0; t < SQLITE_BATCH_TABLES; t++)
        for (int z = 0; z < SQLITE_BATCH_SIZES; z++)
            sqlite3_finalize(s->batch_st[t][z]);
    sqlite3_finalize(s->batch_next_id);
}
