/*
 * Private to the PostgreSQL backend (pg_conn.c, store_pg.c, pg_devices.c,
 * pg_jobs.c, pg_schema.c): the connection struct and the pipeline layer every
 * op goes through.
 *
 * The connection runs in libpq pipeline mode. An op either
 *  - makes a round trip (pg_roundtrip): whatever is queued, then its own
 *    commands, then one Sync; every result is read and checked; or
 *  - defers (pg_defer): inside a transaction the command is only queued and
 *    its result is checked at the next round trip (COMMIT at the latest);
 *    outside a transaction it is a round trip of its own.
 * An error in a deferred command that belongs to the packet in progress (it
 * was queued after the current savepoint) is returned by the round trip that
 * sees it, and the caller rolls the savepoint back as usual. An error in an
 * older deferred command cannot be attributed to one packet: it poisons the
 * transaction, and every op fails with that error until tx_rollback.
 *
 * Reconnection: a lost connection is never replaced inside a transaction (the
 * transaction is gone: every op fails with IOT_EUNAVAIL until tx_rollback or
 * tx_commit ends it). Outside a transaction the next op reconnects, at most
 * once per backoff step, and prepared statements are prepared again on first
 * use.
 */
#ifndef IOT_PG_INT_H
#define IOT_PG_INT_H

#include "core/buf.h"
#include "store/store.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* Prepared-statement slots: one range per file. */
#define PG_DEV_BASE   0
#define PG_DEV_STMTS  16 /* pg_devices.c */
#define PG_CORE_BASE  (PG_DEV_BASE + PG_DEV_STMTS)
#define PG_CORE_STMTS 24 /* store_pg.c */
#define PG_JOB_BASE   (PG_CORE_BASE + PG_CORE_STMTS)
#define PG_JOB_STMTS  24 /* pg_jobs.c */
#define PG_RET_BASE   (PG_JOB_BASE + PG_JOB_STMTS)
#define PG_RET_STMTS  16 /* pg_retention.c */
#define PG_SLOTS      (PG_RET_BASE + PG_RET_STMTS)
#define PG_ALERT_BUF  16 /* alert updates coalesced before they are sent */
#define PG_TOUCH_BUF  64 /* devices' last_seen_at coalesced per transaction */
#define PG_NBUF       6  /* text buffers for array parameters */

/* A command queued in the pipeline whose result is still to be read. */
struct pg_pending {
    int own;       /* index in the round trip's commands, or -1 (deferred) */
    int prep_slot; /* >= 0: this is the Parse of that slot */
    int want_rows; /* 0: any; else the rows the command must touch */
    int mismatch;  /* error code when want_rows is not met */
    unsigned gen;  /* savepoint generation when queued */
};

struct pg_store {
    struct store base;
    PGconn *conn; /* NULL or broken: replaced by the next op outside a transaction */
    char *url;
    struct store_open_opts opts;
    unsigned char prep[PG_SLOTS]; /* 0 no, 1 Parse queued, 2 ready */

    struct pg_pending *pend;
    size_t npend, pend_cap;
    int in_tx;     /* between tx_begin and tx_commit/tx_rollback */
    int sp_active; /* a savepoint is open */
    unsigned gen;  /* bumped by every savepoint */
    int poison;    /* 0, or the error every op returns until tx_rollback */
    int lost;      /* the connection died inside the open transaction */

    /*
     * The locks this transaction holds, for the global lock order (see
     * docs/deployment.md): from packets already released (held_*) and from
     * the packet in progress (pkt_*, dropped by a savepoint rollback).
     */
    int64_t held_sensor_max, pkt_sensor_max; /* highest sensor_state row locked; 0 none */
    int held_adv, pkt_adv;                   /* a packet_id advisory lock is held */
    char lock_timeout[24];                   /* the session's lock_timeout ("5000ms") */
    /*
     * The ingest writer's session runs with session_replication_role =
     * replica when the role may set it: no foreign-key trigger per row; the
     * writer takes the same KEY SHARE locks once per batch (store_pg.c,
     * states_load and packet_put). 0: per-row checks as on any session.
     */
    int fk_batch;

    int64_t retry_at, backoff_ms; /* reconnect throttle (monotonic ms) */
    int64_t last_used;            /* monotonic ms of the last round trip */
    uint64_t epoch;

    /*
     * The sensor_state rows this transaction inserted only to lock them
     * (states_load of a sensor that never reported), an open array literal
     * "{1,2": pg_tx_commit deletes those still without a state (last_ts NULL),
     * so no row of NULLs outlives the transaction. Reset by tx_end.
     */
    struct buf claimed;

    struct store_alert abuf[PG_ALERT_BUF]; /* pending alert_update rows */
    size_t nabuf;
    struct pg_touch {
        int64_t device_id, last_seen;
    } touch[PG_TOUCH_BUF]; /* pending device_touch, one per device (pg_touches_flush) */
    size_t ntouch;
    struct buf touch_buf[2]; /* their array parameters */
    struct buf buf[PG_NBUF]; /* array parameters */
    char err[256];
};

/* One command: a prepared statement (slot) or an unnamed one, with its parameters. */
struct pg_cmd {
    int slot;                  /* index into prep[], or -1 for an unnamed statement */
    const char *sql;           /* the statement text (prepared once per connection) */
    int nparams;               /* entries of params */
    const char *const *params; /* NULL entries are SQL NULL */
    int want_rows;             /* 0: any; n > 0: the command must touch exactly n rows, */
    int mismatch;              /* else it fails with this code */
    const int *lengths;        /* NULL: every parameter is text; else with formats: */
    const int *formats;        /* 1 = binary of lengths[i] bytes (pg_arr_*), 0 = text */
};

/*
 * Sends the queued commands plus cmds[0..n), one Sync, and reads every
 * result. On success res[i] (if res) holds the result of cmds[i]; the caller
 * PQclear()s them. On failure nothing is returned in res and the error is in
 * s->err. read_only: the commands may be retried once on a fresh connection
 * when the old one turns out dead (outside a transaction only).
 */
int pg_roundtrip(struct pg_store *s, const struct pg_cmd *cmds, size_t n, PGresult **res,
                 int read_only);
/* One command that returns rows: *res as above. */
int pg_query(struct pg_store *s, const struct pg_cmd *cmd, PGresult **res);
/* Queues a command inside a transaction, else runs it (see above). */
int pg_defer(struct pg_store *s, const struct pg_cmd *cmd);
/* Queues one command as is (no alert flush): for pg_alerts_flush. */
int pg_send(struct pg_store *s, const struct pg_cmd *cmd);
/* Sends the buffered alert updates (store_pg.c); called before anything else is sent. */
int pg_alerts_flush(struct pg_store *s);
/*
 * Queues the buffered device touches as one statement (store_pg.c): before
 * COMMIT and before each savepoint command, so that a savepoint rolled back
 * undoes its packet's touches with it (tx_end and the rollback drop them).
 */
int pg_touches_flush(struct pg_store *s);
/* Connects s->url with the session settings, in pipeline mode (s->conn). */
int pg_connect(struct pg_store *s);
/* A connection for the next op: reconnects outside a transaction (with backoff). */
int pg_ensure_conn(struct pg_store *s);

static inline struct pg_cmd pg_raw(const char *sql)
{
    return (struct pg_cmd){.slot = -1, .sql = sql, .nparams = 0, .params = NULL};
}

/* Notes locks just taken (sensor_state rows up to sensor_max, an advisory lock). */
void pg_note_locks(struct pg_store *s, int64_t sensor_max, int adv);

/* Sets s->err and returns code. */
int pg_fail(struct pg_store *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Runs c (a RETURNING statement): *id (and *id2) from its row; IOT_ENOTFOUND without one. */
int pg_returning_id(struct pg_store *s, const struct pg_cmd *c, int64_t *id, int64_t *id2);

/* Result helpers (text format). */
int64_t pg_i64(const PGresult *r, int row, int col);
double pg_f64(const PGresult *r, int row, int col);
int pg_null(const PGresult *r, int row, int col);
void pg_text(char *dst, size_t cap, const PGresult *r, int row, int col);
/* Parameter helpers: write into caller buffers, return them. */
const char *pg_fmt_i64(char buf[24], int64_t v);
const char *pg_fmt_f64(char buf[32], double v);
const char *pg_fmt_ts(char buf[32], int64_t ms); /* RFC 3339 UTC, for ::timestamptz */

/*
 * Binary array parameters (PostgreSQL's array_recv format): pg_arr_begin
 * writes the header of a one-dimensional array of n elements of type oid,
 * then one pg_arr_* call per element, in order. No text to format in the
 * gateway or to parse in the server: a batch's readings travel as six such
 * arrays. IOT_ENOMEM or 0; the buffer's len is the parameter's length.
 */
#define PG_OID_INT8        20
#define PG_OID_INT4        23
#define PG_OID_TEXT        25
#define PG_OID_FLOAT8      701
#define PG_OID_TIMESTAMPTZ 1184
int pg_arr_begin(struct buf *b, unsigned oid, size_t n);
int pg_arr_i64(struct buf *b, int64_t v);
int pg_arr_i32(struct buf *b, int32_t v);
int pg_arr_f64(struct buf *b, double v);
int pg_arr_ts(struct buf *b, int64_t ms); /* Unix ms -> timestamptz */
int pg_arr_text(struct buf *b, const char *s);
int pg_arr_null(struct buf *b);

/* Text buffers for array literals ("{1,2,3}"). */
int pg_buf_elem(struct buf *b, const char *s); /* appends "," if needed, then s */
int pg_buf_close(struct buf *b);               /* appends "}" */

/* Schema (pg_schema.c). */
/* pg_jobstats.c */
int pg_job_stat_record(struct store *s, const char *job, int ok, int64_t duration_ms, int64_t now);
int pg_job_stats(struct store *s, struct store_job_stat *out, size_t cap, size_t *n);

#define PG_SCHEMA_LATEST 6
/* The rollup lock (class, key): writers shared, the rollup of an hour exclusive. */
#define PG_ROLLUP_LOCK "74003, 0"
/*
 * How long retention's DETACH and DROP of a month wait for their locks:
 * every insert queues behind the wait, so it stays under a writer's usual
 * transaction time and well under its p99; pg_retention.c retries.
 */
#define PG_DROP_LOCK_TIMEOUT "20ms"
/* How long they wait for the month's own lock (schema step 5 says why past 1 s). */
#define PG_OWN_LOCK_TIMEOUT "3s"
/*
 * Creates or upgrades to PG_SCHEMA_LATEST in one transaction, serialised by
 * an advisory lock. These two return 0 or an iot_err code, the reason in err.
 */
int pg_schema_apply(PGconn *conn, char *err, size_t errlen);
/* Current version (0 = empty database). */
int pg_schema_read_version(PGconn *conn, int *out, char *err, size_t errlen);
/* Maps an SQLSTATE (or NULL: connection-level failure) to an iot_err code. */
int pg_sqlstate_code(const char *sqlstate);

/* Job operations (pg_jobs.c). */
int pg_job_sensors(struct store *s, int64_t since, int64_t after_id, size_t limit,
                   struct store_job_sensor *out, size_t *n);
int pg_silent_sensors(struct store *s, int64_t before, int64_t after_id, size_t limit,
                      struct store_job_sensor *out, size_t *n);
int pg_job_sensor_get(struct store *s, int64_t sensor_id, struct store_job_sensor *out);
int pg_recent_readings(struct store *s, int64_t sensor_id, size_t limit, struct store_reading *out,
                       size_t *n);
int pg_model_ensure(struct store *s, const char *name, const char *type, const char *version,
                    const char *params, int64_t now, int64_t *id);
int pg_prediction_insert(struct store *s, struct store_prediction *p);
int pg_ml_event_active(struct store *s, int64_t sensor_id, const char *event_type, int64_t *id);
int pg_ml_event_insert(struct store *s, struct store_ml_event *e);
int pg_ml_event_resolve(struct store *s, int64_t id);
int pg_unexplained(struct store *s, double min_score, int64_t after_id, size_t limit,
                   struct store_prediction *out, size_t *n);
int pg_prediction_explain(struct store *s, int64_t id, const char *json);
int pg_online_load(struct store *s, const char *stream, uint64_t seq, int64_t sensor_id,
                   struct store_online_state *out, int *applied);
int pg_online_apply(struct store *s, const char *stream, uint64_t seq, const char *consumer,
                    const struct store_online_state *st, struct store_prediction *pred);
int pg_online_prune(struct store *s, const char *stream, uint64_t upto, int64_t *removed);

/* Retention and hourly rollups (pg_retention.c). */
int pg_rollup_step(struct store *s, int64_t until, int64_t *mark, int64_t *rollups);
int pg_readings_expire(struct store *s, int64_t before, int64_t max_rows, int64_t *deleted);
int pg_rollups_expire(struct store *s, int64_t before, int64_t max_rows, int64_t *deleted);
int pg_readings_range(struct store *s, int64_t sensor_id, int64_t from, int64_t to,
                      int64_t after_ts, int64_t after_id, size_t limit, struct store_reading *out,
                      size_t *n);
int pg_readings_buckets(struct store *s, int64_t sensor_id, int64_t from, int64_t to,
                        int64_t step_ms, size_t cap, struct store_bucket *out, size_t *n);

/* Ops of pg_devices.c: lookups and provisioning. */
int pg_device_get(struct store *s, const char *uuid, struct store_device *out);
int pg_device_get_by_id(struct store *s, int64_t id, struct store_device *out);
int pg_device_sensors(struct store *s, int64_t device_id, struct store_sensor **out, size_t *n);
int pg_sensor_get(struct store *s, int64_t sensor_id, struct store_sensor *out);
int pg_device_status(struct store *s, int64_t device_id, store_status_cb cb, void *ud);
int pg_device_add(struct store *s, const char *uuid, const char *name,
                  const unsigned char key_hash[STORE_KEY_HASH_LEN], int64_t now, int64_t *id);
int pg_device_set_active(struct store *s, const char *uuid, int active);
int pg_device_delete(struct store *s, const char *uuid, struct store_device_deleted *out);
int pg_sensor_add(struct store *s, const char *device_uuid, const char *uuid, const char *name,
                  const char *type, const char *unit, int64_t now, int64_t *id, int64_t *device_id);
int pg_sensor_set_active(struct store *s, const char *uuid, int active);
int pg_threshold_set(struct store *s, const char *sensor_uuid, enum severity sev,
                     const struct store_threshold *t, int64_t now, int64_t *id);
int pg_threshold_clear(struct store *s, const char *sensor_uuid, enum severity sev);

/* Ops of struct store_ops implemented in pg_conn.c. */
void pg_close(struct store *s);
const char *pg_errmsg(struct store *s);
int pg_ping(struct store *s);
int pg_schema_init(struct store *s);
int pg_schema_version(struct store *s, int *out);
int pg_tx_begin(struct store *s);
int pg_tx_commit(struct store *s);
int pg_tx_rollback(struct store *s);
int pg_savepoint(struct store *s);
int pg_savepoint_release(struct store *s);
int pg_savepoint_rollback(struct store *s);
int pg_change_epoch(struct store *s, uint64_t *out);

/* The backend constructor, used by store_open (store.c). */
int store_pg_open(const char *url, const struct store_open_opts *opts, struct store **out,
                  char *err, size_t errlen);

#endif
