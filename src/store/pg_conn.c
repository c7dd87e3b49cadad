/*
 * PostgreSQL backend: the connection, the pipeline every op goes through,
 * transactions and savepoints (see pg_int.h for the rules). The ops on data
 * are in store_pg.c, the jobs' in pg_jobs.c, the schema in pg_schema.c.
 */
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "core/timefmt.h"
#include "store/pg_int.h"

#include <endian.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDLE_CHECK_MS  1000 /* a connection idle this long is probed by BEGIN */
#define PG_MAX_PENDING 512  /* queued commands before a forced round trip */

int pg_fail(struct pg_store *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return code;
}

/* The first line of a libpq message, into s->err. */
static void set_err_line(struct pg_store *s, const char *what, const char *msg)
{
    if (!msg || !*msg) msg = "unknown error";
    snprintf(s->err, sizeof s->err, "%s%.*s", what, (int)strcspn(msg, "\n"), msg);
}

/* ---- results and parameters ---------------------------------------------- */

int64_t pg_i64(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

double pg_f64(const PGresult *r, int row, int col)
{
    return strtod(PQgetvalue(r, row, col), NULL);
}

int pg_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col);
}

void pg_text(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    snprintf(dst, cap, "%s", PQgetvalue(r, row, col));
}

const char *pg_fmt_i64(char buf[24], int64_t v)
{
    snprintf(buf, 24, "%lld", (long long)v);
    return buf;
}

const char *pg_fmt_f64(char buf[32], double v)
{
    snprintf(buf, 32, "%.17g", v);
    return buf;
}

const char *pg_fmt_ts(char buf[32], int64_t ms)
{
    timefmt_format_rfc3339(ms, buf);
    return buf;
}

static int buf_be32(struct buf *b, uint32_t v)
{
    v = htobe32(v);
    return buf_put(b, &v, 4);
}

/* One element: its length, then its bytes in network order. */
static int arr_be64(struct buf *b, uint64_t v)
{
    v = htobe64(v);
    int rc = buf_be32(b, 8);
    return rc ? rc : buf_put(b, &v, 8);
}

int pg_arr_begin(struct buf *b, unsigned oid, size_t n)
{
    b->len = 0;
    /* ndim 1, no null bitmap flag (array_recv finds NULLs itself), type, size, lower bound 1 */
    const uint32_t head[5] = {1, 0, oid, (uint32_t)n, 1};
    int rc = 0;
    for (int i = 0; !rc && i < 5; i++)
        rc = buf_be32(b, head[i]);
    return rc;
}

int pg_arr_i64(struct buf *b, int64_t v)
{
    return arr_be64(b, (uint64_t)v);
}

int pg_arr_i32(struct buf *b, int32_t v)
{
    int rc = buf_be32(b, 4);
    return rc ? rc : buf_be32(b, (uint32_t)v);
}

int pg_arr_f64(struct buf *b, double v)
{
    uint64_t u;
    _Static_assert(sizeof u == sizeof v, "IEEE 754 binary64");
    memcpy(&u, &v, sizeof u);
    return arr_be64(b, u);
}

/* timestamptz on the wire: microseconds since 2000-01-01 00:00:00 UTC. */
int pg_arr_ts(struct buf *b, int64_t ms)
{
    return arr_be64(b, (uint64_t)((ms - INT64_C(946684800000)) * 1000));
}

int pg_arr_text(struct buf *b, const char *str)
{
    size_t n = strlen(str);
    int rc = buf_be32(b, (uint32_t)n);
    return rc ? rc : buf_put(b, str, n);
}

int pg_arr_null(struct buf *b)
{
    return buf_be32(b, UINT32_MAX); /* length -1 */
}

int pg_buf_elem(struct buf *b, const char *str)
{
    int rc = buf_put(b, b->len ? "," : "{", 1);
    return rc ? rc : buf_put(b, str, strlen(str));
}

int pg_buf_close(struct buf *b)
{
    int rc = b->len ? 0 : buf_put(b, "{", 1);
    return rc ? rc : buf_put(b, "}", 1);
}

/* A statement that returns one id (RETURNING); ENOTFOUND when it returned no row. */
int pg_returning_id(struct pg_store *s, const struct pg_cmd *c, int64_t *id, int64_t *id2)
{
    PGresult *r;
    int rc = pg_roundtrip(s, c, 1, &r, 0);
    if (rc) return rc;
    if (PQntuples(r) == 0) {
        rc = IOT_ENOTFOUND;
    } else {
        *id = pg_i64(r, 0, 0);
        if (id2) *id2 = pg_i64(r, 0, 1);
    }
    PQclear(r);
    return rc;
}

/* ---- connection ------------------------------------------------------------ */

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg; /* NOTICEs ("already exists, skipping") are not errors: never on stderr */
}

/* Forgets the connection; a transaction open on it is lost. */
static void drop_conn(struct pg_store *s)
{
    PQfinish(s->conn);
    s->conn = NULL;
    s->npend = 0;
    s->nabuf = 0;
    memset(s->prep, 0, sizeof s->prep);
    if (s->in_tx) s->lost = 1;
}

/* A send or read failed on the connection: drop it. */
static int conn_lost(struct pg_store *s)
{
    if (s->conn) set_err_line(s, "connection lost: ", PQerrorMessage(s->conn));
    drop_conn(s);
    return IOT_EUNAVAIL;
}

/*
 * Connects with defaults that bound every wait on a dead server
 * (connect_timeout, TCP keepalives, tcp_user_timeout); parameters in the URL
 * override them. Then the session settings: synchronous_commit from DB_SYNC,
 * lock_timeout from DB_BUSY_TIMEOUT_MS; then pipeline mode.
 */
/*
 * The ingest writer checks its foreign keys once per batch instead of per
 * row (the triggers' own KEY SHARE locks, taken by store_pg.c), which saves
 * PostgreSQL about a sixth of its CPU per packet (docs/BENCHMARKS.md). That
 * needs session_replication_role = replica, which a superuser or a role
 * granted SET on it may set (docs/deployment.md); any other role keeps the
 * per-row checks. Triggers of the schema that must fire for the writer are
 * ENABLE ALWAYS (pg_schema.c). 0, or the session's error code.
 */
static int writer_replica_role(struct pg_store *s, PGconn *c)
{
    PGresult *r = PQexec(c, "SET session_replication_role = replica");
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int rc = 0;
    s->fk_batch = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!s->fk_batch && !(st && strcmp(st, "42501") == 0)) { /* 42501: not allowed, keep rows */
        set_err_line(s, "session setup: ", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
        rc = pg_sqlstate_code(st);
    } else if (s->fk_batch) {
        LOG(LOG_INFO, "pg_writer_session", "foreign_keys=per_batch");
    } else {
        LOG(LOG_INFO, "pg_writer_session",
            "foreign_keys=per_row reason=\"this role may not set session_replication_role"
            " (docs/deployment.md)\"");
    }
    PQclear(r);
    return rc;
}

int pg_connect(struct pg_store *s)
{
    static const char *const kw[] = {"connect_timeout",  "keepalives",
                                     "keepalives_idle",  "keepalives_interval",
                                     "keepalives_count", "tcp_user_timeout",
                                     "application_name", "client_encoding",
                                     "dbname",           NULL};
    const char *val[] = {"5", "1", "10", "5", "3", "30000", "iot-ingest", "UTF8", s->url, NULL};
    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (!c) return pg_fail(s, IOT_ENOMEM, "out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        set_err_line(s, "cannot connect to PostgreSQL: ", PQerrorMessage(c));
        PQfinish(c);
        return IOT_EUNAVAIL;
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    char sql[128];
    long long lock_ms = s->opts.busy_timeout_ms > 0 ? (long long)s->opts.busy_timeout_ms : 1;
    snprintf(sql, sizeof sql, "SET synchronous_commit = %s; SET lock_timeout = %lld",
             s->opts.sync_full ? "on" : "off", lock_ms);
    PGresult *r = PQexec(c, sql);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        set_err_line(s, "session setup: ", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
        rc = pg_sqlstate_code(r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL);
    } else if (s->opts.ingest_writer) {
        rc = writer_replica_role(s, c);
    }
    if (!rc && !PQenterPipelineMode(c)) {
        set_err_line(s, "pipeline mode: ", PQerrorMessage(c));
        rc = IOT_EDB;
    }
    PQclear(r);
    if (rc) {
        PQfinish(c);
        return rc;
    }
    s->conn = c;
    s->npend = 0;
    memset(s->prep, 0, sizeof s->prep);
    snprintf(s->lock_timeout, sizeof s->lock_timeout, "%lldms", lock_ms);
    return 0;
}

/*
 * Makes sure there is a connection. Inside a transaction whose connection
 * died, fails (the transaction is gone). Otherwise reconnects, at most once
 * per backoff step (250 ms doubling to 2 s) so a down server costs no more
 * than one connection attempt per step, whoever asks.
 */
int pg_ensure_conn(struct pg_store *s)
{
    if (s->lost) return IOT_EUNAVAIL; /* s->err still says why */
    if (s->conn) return 0;
    int64_t now = clock_mono_ms();
    if (now < s->retry_at) return IOT_EUNAVAIL;
    int rc = pg_connect(s);
    if (rc) {
        s->backoff_ms = s->backoff_ms ? (s->backoff_ms * 2 > 2000 ? 2000 : s->backoff_ms * 2) : 250;
        s->retry_at = now + s->backoff_ms;
        return rc;
    }
    s->backoff_ms = 0;
    s->retry_at = 0;
    s->last_used = now;
    return 0;
}

/* ---- pipeline ------------------------------------------------------------------ */

static int pend_reserve(struct pg_store *s, size_t more)
{
    if (s->npend + more <= s->pend_cap) return 0;
    size_t cap = s->pend_cap ? s->pend_cap * 2 : 64;
    while (cap < s->npend + more)
        cap *= 2;
    struct pg_pending *p = realloc(s->pend, cap * sizeof *p);
    if (!p) return pg_fail(s, IOT_ENOMEM, "out of memory");
    s->pend = p;
    s->pend_cap = cap;
    return 0;
}

/* Sends one command (and the Parse of its statement on first use); records what to check. */
static int send_one(struct pg_store *s, const struct pg_cmd *c, int own)
{
    char name[16];
    int ok, rc = pend_reserve(s, 2);
    if (rc) return rc;
    if (c->slot >= 0) {
        snprintf(name, sizeof name, "p%d", c->slot);
        if (s->prep[c->slot] == 0) {
            if (!PQsendPrepare(s->conn, name, c->sql, c->nparams, NULL)) return conn_lost(s);
            s->pend[s->npend++] = (struct pg_pending){-1, c->slot, 0, 0, s->gen};
            s->prep[c->slot] = 1;
        }
        ok = PQsendQueryPrepared(s->conn, name, c->nparams, c->params, c->lengths, c->formats, 0);
    } else {
        ok = PQsendQueryParams(s->conn, c->sql, c->nparams, NULL, c->params, c->lengths, c->formats,
                               0);
    }
    if (!ok) return conn_lost(s);
    s->pend[s->npend++] = (struct pg_pending){own, -1, c->want_rows, c->mismatch, s->gen};
    return 0;
}

int pg_send(struct pg_store *s, const struct pg_cmd *c)
{
    return send_one(s, c, -1);
}

/* Reads the result of every pending command, then the Sync. */
static int read_all(struct pg_store *s, PGresult **res, size_t nres, int *older)
{
    int first = 0;
    size_t np = s->npend;
    for (size_t i = 0; i < np; i++) {
        const struct pg_pending p = s->pend[i];
        PGresult *r = PQgetResult(s->conn), *extra;
        if (!r) return first ? (drop_conn(s), first) : conn_lost(s);
        while ((extra = PQgetResult(s->conn)) != NULL) /* the NULL that ends this command */
            PQclear(extra);
        ExecStatusType st = PQresultStatus(r);
        int code = 0, ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
        if (p.prep_slot >= 0) s->prep[p.prep_slot] = ok ? 2 : 0;
        if (st != PGRES_PIPELINE_ABORTED && !ok) {
            code = PQstatus(s->conn) == CONNECTION_BAD
                       ? IOT_EUNAVAIL
                       : pg_sqlstate_code(PQresultErrorField(r, PG_DIAG_SQLSTATE));
            if (!first) set_err_line(s, "", PQresultErrorMessage(r));
        } else if (ok && p.want_rows && atoi(PQcmdTuples(r)) != p.want_rows) {
            code = p.mismatch;
            if (!first)
                pg_fail(s, code, "a command touched %s rows, not %d", PQcmdTuples(r), p.want_rows);
        }
        if (code && !first) {
            first = code;
            *older = !(p.own >= 0 || (s->sp_active && p.gen == s->gen));
        }
        if (ok && !code && p.own >= 0 && res && (size_t)p.own < nres)
            res[p.own] = r;
        else
            PQclear(r);
    }
    s->npend = 0;
    PGresult *r = PQgetResult(s->conn);
    int synced = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
    PQclear(r);
    if (!synced || PQstatus(s->conn) == CONNECTION_BAD) {
        if (!first) return conn_lost(s);
        drop_conn(s);
        return first == IOT_EUNAVAIL ? first : IOT_EUNAVAIL;
    }
    return first;
}

/* One round trip without the state checks of pg_roundtrip. */
static int roundtrip_raw(struct pg_store *s, const struct pg_cmd *cmds, size_t n, PGresult **res,
                         int *older)
{
    int rc = pg_alerts_flush(s);
    *older = 0;
    for (size_t i = 0; !rc && i < n; i++)
        rc = send_one(s, &cmds[i], (int)i);
    if (!rc && !PQpipelineSync(s->conn)) rc = conn_lost(s);
    if (rc) {
        /* Nothing was synced: whatever is queued can no longer be trusted. */
        if (s->conn) drop_conn(s);
        return rc;
    }
    rc = read_all(s, res, n, older);
    s->last_used = clock_mono_ms();
    for (size_t i = 0; rc && res && i < n; i++) {
        PQclear(res[i]);
        res[i] = NULL;
    }
    /* Outside a transaction, never leave the session in a failed transaction block. */
    if (s->conn && !s->in_tx && PQtransactionStatus(s->conn) == PQTRANS_INERROR) {
        int o;
        struct pg_cmd rb = pg_raw("ROLLBACK");
        int rrc = send_one(s, &rb, -1);
        if (!rrc && !PQpipelineSync(s->conn)) rrc = conn_lost(s);
        if (!rrc) {
            char keep[sizeof s->err];
            memcpy(keep, s->err, sizeof keep);
            read_all(s, NULL, 0, &o);
            memcpy(s->err, keep, sizeof keep);
        }
    }
    return rc;
}

int pg_roundtrip(struct pg_store *s, const struct pg_cmd *cmds, size_t n, PGresult **res,
                 int read_only)
{
    for (size_t i = 0; res && i < n; i++)
        res[i] = NULL;
    if (s->poison) return s->poison;
    int had_conn = s->conn != NULL, older = 0;
    int rc = pg_ensure_conn(s);
    if (rc) return rc;
    rc = roundtrip_raw(s, cmds, n, res, &older);
    if (rc && older && s->in_tx && !s->poison) s->poison = rc;
    /* A connection that died while idle (server restarted): one retry on a new one. */
    if (rc == IOT_EUNAVAIL && read_only && had_conn && !s->conn && !s->in_tx &&
        pg_ensure_conn(s) == 0)
        rc = roundtrip_raw(s, cmds, n, res, &older);
    return rc;
}

int pg_query(struct pg_store *s, const struct pg_cmd *c, PGresult **res)
{
    return pg_roundtrip(s, c, 1, res, 1);
}

int pg_defer(struct pg_store *s, const struct pg_cmd *c)
{
    if (!s->in_tx) return pg_roundtrip(s, c, 1, NULL, 0);
    if (s->poison) return s->poison;
    int rc = pg_ensure_conn(s);
    if (!rc) rc = pg_alerts_flush(s);
    if (!rc) rc = send_one(s, c, -1);
    if (!rc && s->npend > PG_MAX_PENDING) rc = pg_roundtrip(s, NULL, 0, NULL, 0);
    return rc;
}

/* ---- connection-level ops -------------------------------------------------------- */

void pg_close(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    if (!s) return;
    PQfinish(s->conn);
    for (int i = 0; i < PG_NBUF; i++)
        buf_free(&s->buf[i]);
    for (int i = 0; i < 2; i++)
        buf_free(&s->touch_buf[i]);
    buf_free(&s->claimed);
    free(s->pend);
    free(s->url);
    free(s);
}

const char *pg_errmsg(struct store *base)
{
    return ((struct pg_store *)base)->err;
}

int pg_ping(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_cmd c = pg_raw("SELECT 1");
    PGresult *r;
    int rc = pg_query(s, &c, &r);
    PQclear(r);
    return rc;
}

static int do_apply(PGconn *c, int *v, char *err, size_t len)
{
    (void)v;
    return pg_schema_apply(c, err, len);
}

static int do_version(PGconn *c, int *v, char *err, size_t len)
{
    return pg_schema_read_version(c, v, err, len);
}

/*
 * Schema work runs outside pipeline mode (multi-statement DDL) and outside
 * transactions. Prepared statements are dropped: they may name tables that
 * just changed, and are prepared again on first use.
 */
static int with_plain_conn(struct pg_store *s, int (*fn)(PGconn *, int *, char *, size_t), int *v)
{
    if (s->in_tx) return pg_fail(s, IOT_EDB, "schema operations cannot run inside a transaction");
    int rc = pg_ensure_conn(s);
    if (rc) return rc;
    if (!PQexitPipelineMode(s->conn)) return conn_lost(s);
    rc = fn(s->conn, v, s->err, sizeof s->err);
    PQclear(PQexec(s->conn, "DEALLOCATE ALL"));
    memset(s->prep, 0, sizeof s->prep);
    if (PQstatus(s->conn) == CONNECTION_BAD || !PQenterPipelineMode(s->conn)) {
        int lost = conn_lost(s);
        return rc ? rc : lost;
    }
    s->last_used = clock_mono_ms();
    return rc;
}

int pg_schema_init(struct store *base)
{
    return with_plain_conn((struct pg_store *)base, do_apply, NULL);
}

int pg_schema_version(struct store *base, int *out)
{
    *out = 0;
    return with_plain_conn((struct pg_store *)base, do_version, out);
}

/* ---- transactions ------------------------------------------------------------------ */

/* Ends the transaction state (the server side is committed, rolled back or gone). */
static void tx_end(struct pg_store *s)
{
    s->in_tx = s->sp_active = s->poison = s->lost = 0;
    s->nabuf = s->ntouch = 0;
    buf_clear(&s->claimed);
    s->held_sensor_max = s->pkt_sensor_max = 0;
    s->held_adv = s->pkt_adv = 0;
}

void pg_note_locks(struct pg_store *s, int64_t sensor_max, int adv)
{
    if (!s->in_tx) return; /* an implicit transaction: released at its Sync */
    int64_t *m = s->sp_active ? &s->pkt_sensor_max : &s->held_sensor_max;
    int *a = s->sp_active ? &s->pkt_adv : &s->held_adv;
    if (sensor_max > *m) *m = sensor_max;
    if (adv) *a = 1;
}

/*
 * BEGIN is only queued: it travels with the first round trip of the
 * transaction. A connection idle for a while may have died silently (server
 * restarted): then BEGIN is a round trip of its own, retried once on a new
 * connection, so the first batch after an outage does not fail needlessly.
 */
int pg_tx_begin(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    if (s->in_tx) return pg_fail(s, IOT_EDB, "a transaction is already open");
    struct pg_cmd c = pg_raw("BEGIN");
    int rc;
    tx_end(s);
    if (!s->conn || clock_mono_ms() - s->last_used > IDLE_CHECK_MS) {
        rc = pg_roundtrip(s, &c, 1, NULL, 1);
    } else {
        s->in_tx = 1; /* so that pg_defer queues */
        rc = pg_defer(s, &c);
    }
    tx_end(s); /* a failed BEGIN leaves no transaction (nor a "lost" one) behind */
    if (rc) return rc;
    s->in_tx = 1;
    return 0;
}

/* ROLLBACK until the session is out of its transaction block (or the connection is gone). */
static void rollback_now(struct pg_store *s)
{
    struct pg_cmd c = pg_raw("ROLLBACK");
    s->nabuf = s->ntouch = 0;
    for (int i = 0; i < 2 && s->conn; i++) {
        int older;
        char keep[sizeof s->err];
        memcpy(keep, s->err, sizeof keep);
        roundtrip_raw(s, &c, 1, NULL, &older);
        memcpy(s->err, keep, sizeof keep);
        if (s->conn && PQtransactionStatus(s->conn) == PQTRANS_IDLE) break;
    }
}

/*
 * Queues the delete of the sensor_state rows this transaction claimed for a
 * sensor that got no state after all (the silence job locks a never-reported
 * sensor's row to open its alert): a sensor without a reading has no row.
 * Rows claimed in a savepoint rolled back since are gone already: no match.
 */
static int unclaim(struct pg_store *s)
{
    int rc = pg_buf_close(&s->claimed);
    const char *ids = s->claimed.p;
    struct pg_cmd c = {
        .slot = -1,
        .sql = "DELETE FROM sensor_state WHERE sensor_id = ANY($1::bigint[]) AND last_ts IS NULL",
        .nparams = 1,
        .params = &ids,
    };
    return rc ? pg_fail(s, rc, "out of memory") : pg_defer(s, &c);
}

int pg_tx_commit(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    if (!s->in_tx) return pg_fail(s, IOT_EDB, "commit without a transaction");
    int rc = s->lost ? IOT_EUNAVAIL : s->poison;
    PGresult *r = NULL;
    struct pg_cmd c = pg_raw("COMMIT");
    if (!rc) rc = pg_touches_flush(s);
    if (!rc && s->claimed.len) rc = unclaim(s);
    if (!rc) rc = pg_roundtrip(s, &c, 1, &r, 0);
    /* A COMMIT of a failed transaction answers ROLLBACK, without an error. */
    if (!rc && strcmp(PQcmdStatus(r), "COMMIT") != 0)
        rc = pg_fail(s, IOT_EDB, "the transaction was rolled back by the server");
    PQclear(r);
    if (rc && s->conn && PQtransactionStatus(s->conn) != PQTRANS_IDLE) rollback_now(s);
    tx_end(s);
    return rc;
}

int pg_tx_rollback(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    if (!s->in_tx) return 0;
    if (s->conn && !s->lost) rollback_now(s);
    tx_end(s);
    return 0; /* the transaction is over either way: a lost connection rolled it back */
}

static int in_tx_or_fail(struct pg_store *s)
{
    if (!s->in_tx) return pg_fail(s, IOT_EDB, "savepoints need a transaction");
    return s->lost ? IOT_EUNAVAIL : s->poison;
}

int pg_savepoint(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_cmd c = pg_raw("SAVEPOINT pkt");
    int rc = in_tx_or_fail(s);
    if (!rc) rc = pg_touches_flush(s);
    if (!rc) rc = pg_defer(s, &c); /* queued in the old generation: its failure poisons */
    if (rc) return rc;
    s->gen++;
    s->sp_active = 1;
    s->pkt_sensor_max = 0;
    s->pkt_adv = 0;
    return 0;
}

int pg_savepoint_release(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_cmd c = pg_raw("RELEASE SAVEPOINT pkt");
    int rc = in_tx_or_fail(s);
    if (!rc) rc = pg_touches_flush(s);
    if (!rc) rc = pg_defer(s, &c);
    if (rc) return rc;
    s->sp_active = 0; /* the packet's locks are the transaction's now */
    if (s->pkt_sensor_max > s->held_sensor_max) s->held_sensor_max = s->pkt_sensor_max;
    s->held_adv |= s->pkt_adv;
    s->pkt_sensor_max = 0;
    s->pkt_adv = 0;
    return 0;
}

/*
 * Undoes the packet in progress: its buffered alert updates are dropped,
 * what it queued is read (an error there is expected: it is why we roll
 * back), then ROLLBACK TO + RELEASE in one round trip.
 */
int pg_savepoint_rollback(struct store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    int rc = in_tx_or_fail(s);
    if (rc) return rc;
    s->nabuf = s->ntouch = 0;
    if (s->npend) {
        int older = 0;
        rc = roundtrip_raw(s, NULL, 0, NULL, &older);
        if (rc && (older || !s->conn)) {
            if (!s->poison) s->poison = rc;
            return rc;
        }
    }
    struct pg_cmd c[2] = {pg_raw("ROLLBACK TO SAVEPOINT pkt"), pg_raw("RELEASE SAVEPOINT pkt")};
    rc = pg_roundtrip(s, c, 2, NULL, 0);
    if (rc) return rc;
    s->sp_active = 0; /* the packet's locks are released with it */
    s->pkt_sensor_max = 0;
    s->pkt_adv = 0;
    return 0;
}

/*
 * Another gateway may change any sensor's state or alerts at any time, and
 * no cheap per-transaction check could say which without reading the rows
 * it has to lock anyway. So the epoch moves on every call: the writer drops
 * its cache at each batch and states_load reloads, under FOR UPDATE, the
 * sensors of each packet in one round trip. Within a batch the cache stays
 * valid: the rows stay locked until COMMIT.
 */
int pg_change_epoch(struct store *base, uint64_t *out)
{
    struct pg_store *s = (struct pg_store *)base;
    *out = ++s->epoch;
    return 0;
}
