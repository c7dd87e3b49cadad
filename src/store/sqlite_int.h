/* Private to the SQLite backend: the connection struct and shared helpers. */
#ifndef IOT_SQLITE_INT_H
#define IOT_SQLITE_INT_H

#include "store/store.h"

#include <sqlite3.h>

#define SQLITE_CORE_STMTS              32
#define SQLITE_JOB_STMTS               16
#define SQLITE_CHAIN_STMTS             4
#define SQLITE_RETENTION_STMTS         16
#define SQLITE_HISTORY_STMTS           8
#define SQLITE_BATCH_TABLES            2       /* sqlite_batch.c: readings, sensor states */
#define SQLITE_BATCH_SIZES             4       /* rows per statement: 64, 16, 4, 1 */
#define SQLITE_WRITER_CHECKPOINT_PAGES "16384" /* 64 MiB of 4 KiB pages */

struct sqlite_store {
    struct store base;
    sqlite3 *db;
    sqlite3_stmt *st[SQLITE_CORE_STMTS];                             /* store_sqlite.c */
    sqlite3_stmt *job_st[SQLITE_JOB_STMTS];                          /* sqlite_jobs.c */
    sqlite3_stmt *chain_st[SQLITE_CHAIN_STMTS];                      /* sqlite_chain.c */
    sqlite3_stmt *ret_st[SQLITE_RETENTION_STMTS];                    /* sqlite_retention.c */
    sqlite3_stmt *hist_st[SQLITE_HISTORY_STMTS];                     /* sqlite_history.c */
    sqlite3_stmt *batch_st[SQLITE_BATCH_TABLES][SQLITE_BATCH_SIZES]; /* sqlite_batch.c */
    sqlite3_stmt *batch_next_id;                                     /* sqlite_batch.c */
    int writer; /* the gateway's ingest writer: no foreign-key checks, no triggers (it does
                   what the schema's triggers would: sqlite_rollup_add) */
    char err[256];
};

/* Maps a SQLite result code to our codes and records the message. */
int sqlite_fail(struct sqlite_store *s, int rc);
/* Prepares sql into *slot on first use, else resets it; *out = *slot. */
int sqlite_stmt(struct sqlite_store *s, sqlite3_stmt **slot, const char *sql, sqlite3_stmt **out);
/* Steps a statement whose rows are not needed, then resets it. */
int sqlite_exec_done(struct sqlite_store *s, sqlite3_stmt *st);
void sqlite_copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col);
void sqlite_bind_opt_double(sqlite3_stmt *st, int i, int has, double v);

/*
 * The writer's batch statements (sqlite_batch.c): readings (ids assigned
 * here, rows[i].id set) and the states of distinct sensors, in multi-row
 * INSERT OR FAIL statements; a failure leaves earlier rows of the call in
 * place, so the caller must roll back (transaction or savepoint).
 */
int sqlite_readings_insert(struct store *s, struct store_reading *rows, size_t n);
int sqlite_states_put(struct store *s, const struct store_sensor_state *const *st, size_t n);
void sqlite_batch_close(struct sqlite_store *s);

/* Deletes a device with everything under it (sqlite_delete.c). */
int sqlite_device_delete(struct store *s, const char *uuid, struct store_device_deleted *out);

/* Job operations (sqlite_jobs.c). */
int sqlite_job_sensors(struct store *s, int64_t since, int64_t after_id, size_t limit,
                       struct store_job_sensor *out, size_t *n);
int sqlite_silent_sensors(struct store *s, int64_t before, int64_t after_id, size_t limit,
                          struct store_job_sensor *out, size_t *n);
int sqlite_job_sensor_get(struct store *s, int64_t sensor_id, struct store_job_sensor *out);
int sqlite_model_ensure(struct store *s, const char *name, const char *type, const char *version,
                        const char *params, int64_t now, int64_t *id);
int sqlite_prediction_insert(struct store *s, struct store_prediction *p);
int sqlite_ml_event_active(struct store *s, int64_t sensor_id, const char *event_type, int64_t *id);
int sqlite_ml_event_insert(struct store *s, struct store_ml_event *e);
int sqlite_ml_event_resolve(struct store *s, int64_t id);
int sqlite_unexplained(struct store *s, double min_score, int64_t after_id, size_t limit,
                       struct store_prediction *out, size_t *n);
int sqlite_job_stat_record(struct store *s, const char *job, int ok, int64_t duration_ms,
                           int64_t now);
int sqlite_job_stats(struct store *s, struct store_job_stat *out, size_t cap, size_t *n);
int sqlite_prediction_explain(struct store *s, int64_t id, const char *json);

/* A sensor's state; a sensor without a row reads has_last 0 (store_sqlite.c). */
int sqlite_state_get(struct store *s, int64_t sensor_id, struct store_sensor_state *out);
/* A sensor's newest readings through the reading chain (sqlite_chain.c). */
int sqlite_recent_readings(struct store *s, int64_t sensor_id, size_t limit,
                           struct store_reading *out, size_t *n);

/* Retention and hourly rollups (sqlite_retention.c). */
int sqlite_rollup_step(struct store *s, int64_t until, int64_t *mark, int64_t *rollups);
int sqlite_readings_expire(struct store *s, int64_t before, int64_t max_rows, int64_t *deleted);
int sqlite_rollups_expire(struct store *s, int64_t before, int64_t max_rows, int64_t *deleted);
/* The rollup mark: *has = 0 when nothing is rolled up yet. */
int sqlite_rollup_mark(struct sqlite_store *s, int *has, int64_t *mark);
/* History reads (sqlite_history.c). */
int sqlite_readings_range(struct store *s, int64_t sensor_id, int64_t from, int64_t to,
                          int64_t after_ts, int64_t after_id, size_t limit,
                          struct store_reading *out, size_t *n);
int sqlite_readings_buckets(struct store *s, int64_t sensor_id, int64_t from, int64_t to,
                            int64_t step_ms, size_t cap, struct store_bucket *out, size_t *n);
/*
 * On a connection without triggers (the gateway's writer), the part of the
 * rollup trigger (schema step 5): adds each of the just-inserted rows that lies
 * below the rollup mark to its hour's rollup, in the caller's transaction.
 */
int sqlite_rollup_add(struct sqlite_store *s, const struct store_reading *rows, size_t n);
/* Runs sql (no rows) with sqlite3_exec; 0 or the mapped error. */
int sqlite_exec_sql(struct sqlite_store *s, const char *sql);

/* Online consumer operations (sqlite_online.c). */
int sqlite_online_load(struct store *s, const char *stream, uint64_t seq, int64_t sensor_id,
                       struct store_online_state *out, int *applied);
int sqlite_online_apply(struct store *s, const char *stream, uint64_t seq, const char *consumer,
                        const struct store_online_state *st, struct store_prediction *pred);
int sqlite_online_prune(struct store *s, const char *stream, uint64_t upto, int64_t *removed);

#endif
