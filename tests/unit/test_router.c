/*
 * Unit tests for src/ingest/router (with the sensor-state cache and the
 * alert engine under it) on a real SQLite file: SPEC §4 alert semantics and
 * late data, SPEC §10 "a packet rolled back leaves no trace in memory" and
 * "the database is the authority". Transactions are driven exactly as
 * writer.c drives them; the rows are checked with a second, plain sqlite3
 * connection. The store is wrapped in store_fault to fail chosen calls.
 */
#include "core/err.h"
#include "ingest/router.h"
#include "ingest/sensor_state.h"
#include "jobs/retention.h"
#include "store/store.h"
#include "support/store_fault.h"
#include "sqlite_peer.h"

#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T0   1700000000000LL   /* reading times are T0 + seconds */
#define NOW  (T0 + 3600000LL)  /* server time of every job */
#define T(s) (T0 + (s)*1000LL) /* reading time at second s */

/* ---- fixture ---------------------------------------------------------------- */

static char dir[64], path[128];
static struct store *st; /* fault wrapper around the SQLite store */
static sqlite3 *peer;    /* "another connection": checks rows, plays other processes */
static struct router *rt;

/* The provisioned sensors: thresholds as the HTTP layer would snapshot them. */
struct sensor {
    int64_t id, device_id;
    const char *uuid;
    struct store_threshold thr[2];
};
static struct sensor band;  /* warning [20, 30], critical [10, 40], no delta */
static struct sensor jumpy; /* warning [0, 100] with delta_max 5 */
static int64_t band_warn_id, band_crit_id, jumpy_warn_id;

static void new_router(int64_t clear_after)
{
    router_destroy(rt);
    rt = NULL;
    cr_assert_eq(router_create(1024, clear_after, &rt), 0);
}

static struct store_threshold range(double min, double max)
{
    struct store_threshold t = {0};
    t.has_min = t.has_max = 1;
    t.min = min;
    t.max = max;
    return t;
}

static void load_sensor(struct sensor *s, int64_t id, const char *uuid)
{
    struct store_sensor x;
    cr_assert_eq(store_sensor_get(st, id, &x), 0);
    s->id = id;
    s->device_id = x.device_id;
    s->uuid = uuid;
    s->thr[0] = x.thr[0];
    s->thr[1] = x.thr[1];
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/iot-router-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
    char url[160], err[IOT_ERRBUF] = "";
    snprintf(url, sizeof url, "sqlite:%s", path);
    struct store_open_opts o = {.busy_timeout_ms = 5000, .cache_mb = 8};
    struct store *inner = NULL;
    cr_assert_eq(store_open(url, &o, &inner, err, sizeof err), 0, "%s", err);
    cr_assert_eq(store_fault_wrap(inner, &st), 0);
    cr_assert_eq(store_schema_init(st), 0, "%s", store_errmsg(st));
    cr_assert_eq(sqlite3_open_v2(path, &peer, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(peer, 5000);

    unsigned char h[STORE_KEY_HASH_LEN] = {1, 2, 3};
    int64_t dev, sid, did;
    cr_assert_eq(store_device_add(st, "dev-1", "d", h, T0, &dev), 0);
    struct store_threshold w = range(20, 30), c = range(10, 40), j = range(0, 100);
    j.has_delta = 1;
    j.delta_max = 5;
    cr_assert_eq(store_sensor_add(st, "dev-1", "band", "b", "t", "C", T0, &sid, &did), 0);
    cr_assert_eq(store_threshold_set(st, "band", SEV_WARNING, &w, T0, &band_warn_id), 0);
    cr_assert_eq(store_threshold_set(st, "band", SEV_CRITICAL, &c, T0, &band_crit_id), 0);
    load_sensor(&band, sid, "band");
    cr_assert_eq(store_sensor_add(st, "dev-1", "jumpy", "j", "t", "C", T0, &sid, &did), 0);
    cr_assert_eq(store_threshold_set(st, "jumpy", SEV_WARNING, &j, T0, &jumpy_warn_id), 0);
    load_sensor(&jumpy, sid, "jumpy");
    rt = NULL;
    new_router(1);
}

static void teardown(void)
{
    router_destroy(rt);
    rt = NULL;
    store_close(st);
    st = NULL;
    if (peer) sqlite3_close(peer);
    peer = NULL;
    rm_db_files(path);
    rmdir(dir);
}

TestSuite(router, .init = setup, .fini = teardown);

/* ---- helpers ------------------------------------------------------------------ */

/* On the peer connection (sqlite_peer.h): q_int is -1 for no row, -2 for NULL. */
#define peer_exec(...) sqlite_peer_exec(peer, __VA_ARGS__)
#define q_int(...)     sqlite_peer_int(peer, __VA_ARGS__)
#define q_dbl(...)     sqlite_peer_dbl(peer, __VA_ARGS__)
#define q_text(...)    sqlite_peer_text(peer, __VA_ARGS__)

#define MAXR 16

/* One write job under construction. */
struct job {
    struct write_job j;
    struct write_reading r[MAXR];
};

static void job_init(struct job *b)
{
    memset(b, 0, sizeof *b);
    b->j.device_id = band.device_id;
    b->j.readings = b->r;
    b->j.received_at = NOW;
}

static void job_add(struct job *b, const struct sensor *s, double value, int64_t ts)
{
    cr_assert_lt(b->j.nreadings, MAXR);
    struct write_reading *w = &b->r[b->j.nreadings];
    memset(w, 0, sizeof *w);
    w->index = (int)b->j.nreadings;
    w->sensor_id = s->id;
    w->device_id = s->device_id;
    snprintf(w->sensor_uuid, sizeof w->sensor_uuid, "%s", s->uuid);
    snprintf(w->device_uuid, sizeof w->device_uuid, "dev-1");
    w->value = value;
    w->ts = ts;
    w->thr[0] = s->thr[0];
    w->thr[1] = s->thr[1];
    w->cls = CLASS_INVALID;
    w->late = -1;
    b->j.nreadings++;
}

/* The reading that was added at position index (router_apply sorts them). */
static const struct write_reading *job_reading(const struct job *b, int index)
{
    for (size_t i = 0; i < b->j.nreadings; i++)
        if (b->r[i].index == index) return &b->r[i];
    cr_assert_fail("no reading with index %d", index);
    return NULL;
}

/*
 * Runs jobs in one transaction as writer.c does: a savepoint per job;
 * a failed job is rolled back to its savepoint and aborted in the router.
 * rcs[i] gets each job's router_apply result. Returns the commit result.
 */
static int run_tx(struct job **jobs, size_t n, int *rcs)
{
    int rc = store_tx_begin(st);
    cr_assert_eq(rc, 0, "tx_begin: %s", store_errmsg(st));
    cr_assert_eq(router_begin_tx(rt, st), 0);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(store_savepoint(st), 0);
        struct write_job *one_job = &jobs[i]->j;
        int jrc = router_apply(rt, st, &one_job, 1);
        if (rcs) rcs[i] = jrc;
        if (jrc == 0) {
            cr_assert_eq(store_savepoint_release(st), 0, "%s", store_errmsg(st));
            router_packet_done(rt);
        } else {
            cr_assert_eq(store_savepoint_rollback(st), 0, "%s", store_errmsg(st));
            router_abort_packet(rt);
        }
    }
    rc = store_tx_commit(st);
    if (rc) store_tx_rollback(st);
    router_end_tx(rt, rc == 0);
    return rc;
}

/* Applies one job in its own transaction; asserts success. */
static void apply(struct job *b)
{
    struct job *jobs[1] = {b};
    int jrc = -1;
    cr_assert_eq(run_tx(jobs, 1, &jrc), 0, "commit: %s", store_errmsg(st));
    cr_assert_eq(jrc, 0, "router_apply: %s (%s)", iot_strerror(jrc), store_errmsg(st));
}

/* One reading as one job. Returns its class. */
static enum reading_class one(const struct sensor *s, double value, int64_t ts)
{
    struct job b;
    job_init(&b);
    job_add(&b, s, value, ts);
    apply(&b);
    return b.r[0].cls;
}

static int64_t alerts_of(const struct sensor *s, const char *kind)
{
    return q_int("SELECT count(*) FROM alerts WHERE sensor_id = %lld AND kind = %Q",
                 (long long)s->id, kind);
}

static int64_t active_id(const struct sensor *s, const char *kind)
{
    return q_int("SELECT id FROM alerts WHERE sensor_id = %lld AND kind = %Q AND"
                 " status = 'active'",
                 (long long)s->id, kind);
}

static int64_t notes(int64_t alert_id, const char *event)
{
    return q_int("SELECT count(*) FROM alert_notifications WHERE alert_id = %lld AND event = %Q",
                 (long long)alert_id, event);
}

static int64_t alert_col(int64_t id, const char *col)
{
    return q_int("SELECT %s FROM alerts WHERE id = %lld", col, (long long)id);
}

static const char *alert_text(char *buf, int64_t id, const char *col)
{
    return q_text(buf, 32, "SELECT %s FROM alerts WHERE id = %lld", col, (long long)id);
}

/* The stored reading of sensor s at time ts (the last stored one): class and late. */
static const char *reading_class_at(char *buf, const struct sensor *s, int64_t ts)
{
    return q_text(buf, 32,
                  "SELECT class FROM sensor_readings WHERE sensor_id = %lld AND ts = %lld"
                  " ORDER BY id DESC LIMIT 1",
                  (long long)s->id, (long long)ts);
}

static int64_t reading_late_at(const struct sensor *s, int64_t ts)
{
    return q_int("SELECT late FROM sensor_readings WHERE sensor_id = %lld AND ts = %lld"
                 " ORDER BY id DESC LIMIT 1",
                 (long long)s->id, (long long)ts);
}

static int64_t state_col(const struct sensor *s, const char *col)
{
    return q_int("SELECT %s FROM sensor_state WHERE sensor_id = %lld", col, (long long)s->id);
}

/* ---- alert lifecycle ------------------------------------------------------------ */

Test(router, alert_lifecycle_open_refresh_escalate_resolve)
{
    char buf[32];
    cr_expect_eq(one(&band, 25, T(1)), CLASS_NORMAL);
    cr_expect_eq(q_int("SELECT count(*) FROM alerts"), 0);
    cr_expect_eq(state_col(&band, "last_ts"), T(1));
    cr_expect_eq(state_col(&band, "normal_run"), 1);

    /* open: warning */
    cr_expect_eq(one(&band, 35, T(2)), CLASS_WARNING);
    int64_t id = active_id(&band, "threshold");
    cr_assert_gt(id, 0);
    cr_expect_str_eq(alert_text(buf, id, "severity"), "warning");
    cr_expect_eq(alert_col(id, "hit_count"), 1);
    cr_expect_eq(alert_col(id, "first_value"), 35);
    cr_expect_eq(alert_col(id, "last_value"), 35);
    cr_expect_eq(alert_col(id, "triggered_at"), T(2));
    cr_expect_eq(alert_col(id, "last_seen_at"), T(2));
    cr_expect_eq(alert_col(id, "resolved_at"), -2);
    cr_expect_eq(alert_col(id, "threshold_id"), band_warn_id);
    cr_expect_eq(alert_col(id, "device_id"), band.device_id);
    cr_expect_eq(notes(id, "triggered"), 1);
    cr_expect_eq(
        q_int("SELECT created_at FROM alert_notifications WHERE alert_id = %lld", (long long)id),
        NOW, "notification created_at is server time");
    cr_expect_str_eq(q_text(buf, sizeof buf,
                            "SELECT severity FROM alert_notifications WHERE alert_id = %lld",
                            (long long)id),
                     "warning");
    cr_expect_eq(state_col(&band, "normal_run"), 0);

    /* refresh: same alert, hit_count and last_value, no notification */
    cr_expect_eq(one(&band, 36.5, T(3)), CLASS_WARNING);
    cr_expect_eq(active_id(&band, "threshold"), id);
    cr_expect_eq(alert_col(id, "hit_count"), 2);
    cr_expect_eq(q_dbl("SELECT last_value FROM alerts WHERE id = %lld", (long long)id), 36.5);
    cr_expect_eq(alert_col(id, "first_value"), 35);
    cr_expect_eq(alert_col(id, "last_seen_at"), T(3));
    cr_expect_eq(alert_col(id, "triggered_at"), T(2));
    cr_expect_eq(q_int("SELECT count(*) FROM alert_notifications"), 1);

    /* escalation: warning -> critical, once */
    cr_expect_eq(one(&band, 45, T(4)), CLASS_ALERT);
    cr_expect_eq(active_id(&band, "threshold"), id);
    cr_expect_str_eq(alert_text(buf, id, "severity"), "critical");
    cr_expect_eq(alert_col(id, "hit_count"), 3);
    cr_expect_eq(alert_col(id, "threshold_id"), band_crit_id);
    cr_expect_eq(notes(id, "escalated"), 1);
    cr_expect_str_eq(q_text(buf, sizeof buf,
                            "SELECT severity FROM alert_notifications WHERE alert_id = %lld"
                            " AND event = 'escalated'",
                            (long long)id),
                     "critical");

    /* never de-escalates; threshold_id stays the most severe; no more notifications */
    cr_expect_eq(one(&band, 35, T(5)), CLASS_WARNING);
    cr_expect_str_eq(alert_text(buf, id, "severity"), "critical");
    cr_expect_eq(alert_col(id, "threshold_id"), band_crit_id);
    cr_expect_eq(alert_col(id, "hit_count"), 4);
    cr_expect_eq(one(&band, 46, T(6)), CLASS_ALERT);
    cr_expect_eq(notes(id, "escalated"), 1, "escalated twice");
    cr_expect_eq(alert_col(id, "hit_count"), 5);
    cr_expect_eq(q_int("SELECT count(*) FROM alert_notifications"), 2);
    cr_expect_eq(alerts_of(&band, "threshold"), 1);

    /* resolution after ALERT_CLEAR_AFTER = 1 normal */
    cr_expect_eq(one(&band, 25, T(7)), CLASS_NORMAL);
    cr_expect_eq(active_id(&band, "threshold"), -1);
    cr_expect_str_eq(alert_text(buf, id, "status"), "resolved");
    cr_expect_eq(alert_col(id, "resolved_at"), T(7), "resolved_at is the reading time");
    cr_expect_eq(alert_col(id, "hit_count"), 5);
    cr_expect_eq(notes(id, "resolved"), 1);
    cr_expect_str_eq(q_text(buf, sizeof buf,
                            "SELECT severity FROM alert_notifications WHERE alert_id = %lld"
                            " AND event = 'resolved'",
                            (long long)id),
                     "critical");
    cr_expect_eq(state_col(&band, "normal_run"), 1);

    /* more normals: nothing more happens */
    cr_expect_eq(one(&band, 26, T(8)), CLASS_NORMAL);
    cr_expect_eq(q_int("SELECT count(*) FROM alert_notifications"), 3);

    /* a new violation opens a new alert */
    cr_expect_eq(one(&band, 15, T(9)), CLASS_WARNING);
    int64_t id2 = active_id(&band, "threshold");
    cr_expect_gt(id2, id);
    cr_expect_eq(alert_col(id2, "hit_count"), 1);
    cr_expect_eq(alerts_of(&band, "threshold"), 2);
    cr_expect_eq(notes(id2, "triggered"), 1);

    /* a critical first violation opens a critical alert directly: no 'escalated' */
    cr_expect_eq(one(&band, 25, T(10)), CLASS_NORMAL);
    cr_expect_eq(one(&band, 5, T(11)), CLASS_ALERT);
    int64_t id3 = active_id(&band, "threshold");
    cr_expect_str_eq(alert_text(buf, id3, "severity"), "critical");
    cr_expect_eq(notes(id3, "triggered"), 1);
    cr_expect_eq(notes(id3, "escalated"), 0);
    cr_expect_eq(alert_col(id3, "threshold_id"), band_crit_id);

    /* every reading was stored with its class */
    cr_expect_eq(
        q_int("SELECT count(*) FROM sensor_readings WHERE sensor_id = %lld", (long long)band.id),
        11);
    cr_expect_str_eq(reading_class_at(buf, &band, T(4)), "alert");
    cr_expect_str_eq(reading_class_at(buf, &band, T(5)), "warning");
    cr_expect_eq(q_int("SELECT ingested_at FROM sensor_readings LIMIT 1"), NOW);
    cr_expect_eq(q_int("SELECT count(*) FROM sensor_readings WHERE late != 0"), 0);
}

Test(router, resolution_after_three_normals)
{
    new_router(3);
    char buf[32];
    cr_expect_eq(one(&band, 35, T(1)), CLASS_WARNING);
    int64_t id = active_id(&band, "threshold");
    cr_assert_gt(id, 0);
    one(&band, 25, T(2));
    one(&band, 25, T(3));
    cr_expect_eq(active_id(&band, "threshold"), id, "resolved after 2 normals");
    cr_expect_eq(state_col(&band, "normal_run"), 2);
    /* any other class resets the count */
    cr_expect_eq(one(&band, 31, T(4)), CLASS_WARNING);
    cr_expect_eq(state_col(&band, "normal_run"), 0);
    cr_expect_eq(alert_col(id, "hit_count"), 2);
    one(&band, 25, T(5));
    one(&band, 25, T(6));
    cr_expect_str_eq(alert_text(buf, id, "status"), "active");
    cr_expect_eq(one(&band, 25, T(7)), CLASS_NORMAL);
    cr_expect_str_eq(alert_text(buf, id, "status"), "resolved");
    cr_expect_eq(alert_col(id, "resolved_at"), T(7));
    cr_expect_eq(notes(id, "resolved"), 1);

    /* a spike also resets the count; the spike alert and the band alert clear together */
    new_router(3);
    one(&jumpy, 50, T(1));
    cr_expect_eq(one(&jumpy, 60, T(2)), CLASS_SPIKE);
    int64_t sp = active_id(&jumpy, "delta_spike");
    cr_assert_gt(sp, 0);
    one(&jumpy, 61, T(3));
    one(&jumpy, 62, T(4));
    cr_expect_eq(one(&jumpy, 70, T(5)), CLASS_SPIKE);
    cr_expect_eq(alert_col(sp, "hit_count"), 2);
    one(&jumpy, 71, T(6));
    one(&jumpy, 72, T(7));
    cr_expect_eq(active_id(&jumpy, "delta_spike"), sp);
    one(&jumpy, 73, T(8));
    cr_expect_eq(active_id(&jumpy, "delta_spike"), -1);
    cr_expect_eq(alert_col(sp, "resolved_at"), T(8));
}

Test(router, spike_opens_a_warning_delta_spike_alert)
{
    char buf[32];
    cr_expect_eq(one(&jumpy, 50, T(1)), CLASS_NORMAL, "first reading: no spike");
    cr_expect_eq(one(&jumpy, 55, T(2)), CLASS_NORMAL, "jump equal to delta_max");
    cr_expect_eq(one(&jumpy, 60.5, T(3)), CLASS_SPIKE);
    int64_t id = active_id(&jumpy, "delta_spike");
    cr_assert_gt(id, 0);
    cr_expect_str_eq(alert_text(buf, id, "severity"), "warning");
    cr_expect_eq(alert_col(id, "threshold_id"), jumpy_warn_id);
    cr_expect_eq(alert_col(id, "hit_count"), 1);
    cr_expect_eq(alert_col(id, "triggered_at"), T(3));
    cr_expect_eq(notes(id, "triggered"), 1);
    cr_expect_eq(alerts_of(&jumpy, "threshold"), 0);
    cr_expect_str_eq(reading_class_at(buf, &jumpy, T(3)), "spike");
    cr_expect_str_eq(q_text(buf, sizeof buf,
                            "SELECT last_class FROM sensor_state WHERE sensor_id = %lld",
                            (long long)jumpy.id),
                     "spike");

    /* the next jump is measured from the spike's value, whatever its class */
    cr_expect_eq(one(&jumpy, 50, T(4)), CLASS_SPIKE);
    cr_expect_eq(alert_col(id, "hit_count"), 2);
    cr_expect_eq(alert_col(id, "last_value"), 50);
    cr_expect_eq(one(&jumpy, 51, T(5)), CLASS_NORMAL);
    cr_expect_eq(active_id(&jumpy, "delta_spike"), -1);
    cr_expect_eq(notes(id, "resolved"), 1);

    /* a spike while a threshold alert is open: two alerts, one per kind */
    cr_expect_eq(one(&jumpy, 101, T(6)), CLASS_SPIKE, "jump 50 > 5 beats the warning range");
    cr_expect_eq(one(&jumpy, 102, T(7)), CLASS_WARNING);
    cr_expect_gt(active_id(&jumpy, "threshold"), 0);
    cr_expect_gt(active_id(&jumpy, "delta_spike"), 0);
    cr_expect_eq(one(&jumpy, 99, T(8)), CLASS_NORMAL);
    cr_expect_eq(q_int("SELECT count(*) FROM alerts WHERE status = 'active'"), 0);
}

/* ---- late data ---------------------------------------------------------------- */

Test(router, late_readings_change_nothing)
{
    char buf[32];
    one(&band, 25, T(10));
    cr_expect_eq(one(&band, 35, T(20)), CLASS_WARNING);
    int64_t id = active_id(&band, "threshold");

    /* older than the newest: stored late, class by range, no alert or state change */
    struct job b;
    job_init(&b);
    job_add(&b, &band, 45, T(15)); /* critical range */
    job_add(&b, &band, 25, T(12)); /* normal: would resolve if it counted */
    job_add(&b, &band, 5, T(5));   /* critical, older than everything */
    apply(&b);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(job_reading(&b, i)->late, 1, "reading %d not late", i);
    cr_expect_eq(job_reading(&b, 0)->cls, CLASS_ALERT);
    cr_expect_eq(job_reading(&b, 1)->cls, CLASS_NORMAL);
    cr_expect_eq(job_reading(&b, 2)->cls, CLASS_ALERT);
    cr_expect_eq(reading_late_at(&band, T(15)), 1);
    cr_expect_str_eq(reading_class_at(buf, &band, T(15)), "alert");
    cr_expect_eq(reading_late_at(&band, T(12)), 1);
    cr_expect_str_eq(reading_class_at(buf, &band, T(12)), "normal");

    cr_expect_eq(active_id(&band, "threshold"), id);
    cr_expect_str_eq(alert_text(buf, id, "severity"), "warning", "late reading escalated");
    cr_expect_eq(alert_col(id, "hit_count"), 1);
    cr_expect_eq(alert_col(id, "last_value"), 35);
    cr_expect_eq(alert_col(id, "last_seen_at"), T(20));
    cr_expect_eq(q_int("SELECT count(*) FROM alert_notifications"), 1);
    cr_expect_eq(state_col(&band, "last_ts"), T(20));
    cr_expect_eq(state_col(&band, "last_value"), 35);
    cr_expect_eq(state_col(&band, "normal_run"), 0);

    /* same time as the newest: not late */
    cr_expect_eq(one(&band, 36, T(20)), CLASS_WARNING);
    cr_expect_eq(q_int("SELECT count(*) FROM sensor_readings WHERE ts = %lld AND late = 0",
                       (long long)T(20)),
                 2);
    cr_expect_eq(alert_col(id, "hit_count"), 2);
    cr_expect_eq(state_col(&band, "last_value"), 36);
}

/*
 * The state cache's table grows with the sensors it holds (not sized for
 * STATE_CACHE_MAX up front), and every entry is found again after it grew;
 * an entry gets alert slots only when it needs them.
 */
Test(router, state_cache_table_grows_and_finds_every_entry)
{
    enum { N = 5000 };
    struct sensor_states *c = NULL;
    cr_assert_eq(sensor_states_create(100000, &c), 0);
    static int64_t ids[N];
    static struct sensor_entry *got[N], *again[N];
    for (int i = 0; i < N; i++)
        ids[i] = 1000 + i; /* no state rows: empty snapshots */
    cr_assert_eq(store_tx_begin(st), 0);
    for (int i = 0; i < N; i += 100) {
        sensor_states_next_packet(c);
        cr_assert_eq(sensor_states_load(c, st, &ids[i], 100, &got[i]), 0);
    }
    sensor_states_next_packet(c);
    cr_assert_eq(sensor_states_load(c, st, ids, N, again), 0);
    cr_assert_eq(store_tx_commit(st), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(again[i], got[i], "entry %d loaded twice", i);
        cr_assert_eq(again[i]->st.sensor_id, ids[i]);
        cr_assert_null(again[i]->alerts, "entry %d has alert slots it never needed", i);
    }
    cr_assert_eq(sensor_entry_alerts(again[0]), 0);
    cr_assert_not_null(again[0]->alerts);
    sensor_states_destroy(c);
}

/* SPEC §5: a server-stamped reading takes its time in the writer's order. */
Test(router, server_stamped_readings_are_never_late)
{
    char buf[32];
    cr_expect_eq(one(&band, 45, T(20)), CLASS_ALERT);
    int64_t id = active_id(&band, "threshold");

    /* Stamped by a worker before the newest reading was applied. */
    struct job b;
    job_init(&b);
    job_add(&b, &band, 46, T(19));
    b.r[0].stamped = 1;
    job_add(&b, &band, 47, T(19)); /* two in one packet: each gets its own time */
    b.r[1].stamped = 1;
    job_add(&b, &jumpy, 50, T(5)); /* a sensor without readings keeps its stamp */
    b.r[2].stamped = 1;
    apply(&b);
    cr_expect_eq(job_reading(&b, 0)->late, 0);
    cr_expect_eq(job_reading(&b, 0)->ts, T(20) + 1, "raised to 1 ms after the newest");
    cr_expect_eq(job_reading(&b, 1)->late, 0);
    cr_expect_eq(job_reading(&b, 1)->ts, T(20) + 2);
    cr_expect_eq(job_reading(&b, 2)->ts, T(5));
    cr_expect_eq(alert_col(id, "hit_count"), 3, "both count in the alert");
    cr_expect_eq(state_col(&band, "last_ts"), T(20) + 2);
    cr_expect_eq(state_col(&band, "last_value"), 47);
    cr_expect_str_eq(reading_class_at(buf, &band, T(20) + 2), "alert");
    cr_expect_eq(q_int("SELECT count(*) FROM sensor_readings WHERE late = 1"), 0);

    /* A stamp already after the newest is kept as it is. */
    job_init(&b);
    job_add(&b, &band, 25, T(30));
    b.r[0].stamped = 1;
    apply(&b);
    cr_expect_eq(b.r[0].ts, T(30));

    /* A reading that carries its own time keeps the late rule. */
    cr_expect_eq(one(&band, 25, T(29)), CLASS_NORMAL);
    cr_expect_eq(reading_late_at(&band, T(29)), 1);
}

Test(router, late_reading_is_never_a_spike)
{
    char buf[32];
    one(&jumpy, 50, T(10));
    cr_expect_eq(one(&jumpy, 90, T(9)), CLASS_NORMAL, "late: class by range only");
    cr_expect_eq(reading_late_at(&jumpy, T(9)), 1);
    cr_expect_eq(alerts_of(&jumpy, "delta_spike"), 0);
    /* and the next jump is measured from the newest reading, not the late one */
    cr_expect_eq(one(&jumpy, 54, T(11)), CLASS_NORMAL);
    cr_expect_eq(one(&jumpy, 60, T(12)), CLASS_SPIKE);
    cr_expect_str_eq(reading_class_at(buf, &jumpy, T(12)), "spike");
    /* a late reading does not resolve the spike alert either */
    one(&jumpy, 60, T(1));
    cr_expect_gt(active_id(&jumpy, "delta_spike"), 0);
}

Test(router, readings_of_a_job_apply_in_time_order)
{
    char buf[32];
    struct job b;
    job_init(&b);
    job_add(&b, &band, 45, T(3));
    job_add(&b, &jumpy, 60, T(2));
    job_add(&b, &band, 25, T(1));
    job_add(&b, &band, 35, T(2));
    job_add(&b, &jumpy, 50, T(1));
    apply(&b);
    cr_expect_eq(job_reading(&b, 0)->cls, CLASS_ALERT);
    cr_expect_eq(job_reading(&b, 1)->cls, CLASS_SPIKE);
    cr_expect_eq(job_reading(&b, 2)->cls, CLASS_NORMAL);
    cr_expect_eq(job_reading(&b, 3)->cls, CLASS_WARNING);
    cr_expect_eq(job_reading(&b, 4)->cls, CLASS_NORMAL);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(job_reading(&b, i)->late, 0, "reading %d late", i);
    cr_expect_eq(q_int("SELECT count(*) FROM sensor_readings WHERE late = 1"), 0);
    cr_expect_str_eq(reading_class_at(buf, &band, T(2)), "warning");

    int64_t id = active_id(&band, "threshold");
    cr_expect_eq(alert_col(id, "triggered_at"), T(2));
    cr_expect_eq(alert_col(id, "first_value"), 35);
    cr_expect_eq(notes(id, "escalated"), 1);
    cr_expect_eq(alert_col(id, "hit_count"), 2);
    cr_expect_eq(state_col(&band, "last_ts"), T(3));
    cr_expect_eq(state_col(&jumpy, "last_value"), 60);
    cr_expect_gt(active_id(&jumpy, "delta_spike"), 0);

    /* two readings with the same time in one job: neither is late, request order kept */
    job_init(&b);
    job_add(&b, &jumpy, 70, T(5));
    job_add(&b, &jumpy, 62, T(5));
    apply(&b);
    cr_expect_eq(job_reading(&b, 0)->late, 0);
    cr_expect_eq(job_reading(&b, 1)->late, 0);
    cr_expect_eq(job_reading(&b, 0)->cls, CLASS_SPIKE);
    cr_expect_eq(job_reading(&b, 1)->cls, CLASS_SPIKE);
    cr_expect_eq(state_col(&jumpy, "last_value"), 62);
}

/* ---- restart and other connections ----------------------------------------------- */

Test(router, fresh_router_continues_from_the_database)
{
    char buf[32];
    new_router(2);
    one(&band, 35, T(1));
    one(&band, 25, T(2)); /* one normal of the two needed */
    one(&jumpy, 50, T(1));
    int64_t id = active_id(&band, "threshold");

    new_router(2); /* a restart */
    cr_expect_eq(one(&band, 25, T(3)), CLASS_NORMAL);
    cr_expect_str_eq(alert_text(buf, id, "status"), "resolved", "normal_run lost in restart");
    cr_expect_eq(one(&jumpy, 60, T(2)), CLASS_SPIKE, "spike against the pre-restart value");

    new_router(2);
    one(&band, 35, T(4));
    int64_t id2 = active_id(&band, "threshold");
    new_router(2);
    cr_expect_eq(one(&band, 36, T(5)), CLASS_WARNING);
    cr_expect_eq(active_id(&band, "threshold"), id2, "restart reopened the alert");
    cr_expect_eq(alert_col(id2, "hit_count"), 2);
    cr_expect_eq(alerts_of(&band, "threshold"), 2);
    cr_expect_eq(notes(id2, "triggered"), 1);
    new_router(2);
    cr_expect_eq(one(&band, 45, T(6)), CLASS_ALERT);
    cr_expect_eq(notes(id2, "escalated"), 1);
    cr_expect_eq(alert_col(id2, "hit_count"), 3);
    new_router(2);
    cr_expect_eq(one(&band, 36, T(3)), CLASS_WARNING, "late after restart: class by range");
    cr_expect_eq(reading_late_at(&band, T(3)), 1, "late detection lost in restart");
    cr_expect_eq(alert_col(id2, "hit_count"), 3);
}

Test(router, alert_resolved_by_another_connection_is_seen)
{
    one(&band, 35, T(1));
    int64_t id = active_id(&band, "threshold");
    cr_assert_gt(id, 0);
    one(&band, 36, T(2)); /* the router has the alert cached now */
    cr_expect_eq(alert_col(id, "hit_count"), 2);

    peer_exec("UPDATE alerts SET status = 'resolved', resolved_at = %lld WHERE id = %lld",
              (long long)T(3), (long long)id);
    cr_expect_eq(one(&band, 37, T(4)), CLASS_WARNING);
    int64_t id2 = active_id(&band, "threshold");
    cr_expect_gt(id2, 0);
    cr_expect_neq(id2, id, "refreshed an alert another process resolved");
    cr_expect_eq(alert_col(id, "hit_count"), 2);
    cr_expect_eq(alert_col(id2, "hit_count"), 1);
    cr_expect_eq(notes(id2, "triggered"), 1);
}

Test(router, alert_opened_by_another_connection_is_seen)
{
    char buf[32];
    one(&band, 25, T(1));
    one(&band, 25, T(2));
    /* the silence job opens a no_data alert; a job opens a threshold one */
    peer_exec("INSERT INTO alerts(sensor_id, device_id, severity, kind, status, hit_count,"
              " triggered_at, last_seen_at) VALUES (%lld, %lld, 'warning', 'no_data', 'active',"
              " 1, %lld, %lld)",
              (long long)band.id, (long long)band.device_id, (long long)T(3), (long long)T(3));
    int64_t nd = active_id(&band, "no_data");
    cr_assert_gt(nd, 0);

    /* a late reading does not resolve it */
    one(&band, 25, T(1));
    cr_expect_eq(active_id(&band, "no_data"), nd);
    /* any non-late reading does, even a violating one */
    cr_expect_eq(one(&band, 35, T(4)), CLASS_WARNING);
    cr_expect_str_eq(alert_text(buf, nd, "status"), "resolved");
    cr_expect_eq(alert_col(nd, "resolved_at"), T(4));
    cr_expect_eq(notes(nd, "resolved"), 1);

    /* an active threshold alert inserted behind the router's back is refreshed, not doubled */
    int64_t id = active_id(&band, "threshold");
    peer_exec("UPDATE alerts SET status = 'resolved' WHERE id = %lld", (long long)id);
    peer_exec("INSERT INTO alerts(sensor_id, device_id, severity, kind, status, hit_count,"
              " triggered_at, last_seen_at) VALUES (%lld, %lld, 'warning', 'threshold', 'active',"
              " 7, %lld, %lld)",
              (long long)band.id, (long long)band.device_id, (long long)T(4), (long long)T(4));
    int64_t other = active_id(&band, "threshold");
    cr_expect_eq(one(&band, 36, T(5)), CLASS_WARNING);
    cr_expect_eq(active_id(&band, "threshold"), other);
    cr_expect_eq(alert_col(other, "hit_count"), 8);
}

Test(router, sensor_state_changed_by_another_connection_is_seen)
{
    one(&jumpy, 50, T(1));
    /* an operator rewrites the state: the next jump is measured from it */
    peer_exec("UPDATE sensor_state SET last_value = 80, last_ts = %lld WHERE sensor_id = %lld",
              (long long)T(5), (long long)jumpy.id);
    cr_expect_eq(one(&jumpy, 52, T(6)), CLASS_SPIKE);
    cr_expect_eq(one(&jumpy, 53, T(4)), CLASS_NORMAL);
    cr_expect_eq(reading_late_at(&jumpy, T(4)), 1);
}

/* Sensor state loads from the database (states_load, the one form there is). */
static uint64_t loads(void)
{
    return store_fault_calls(st, STORE_FAULT_STATES_LOAD);
}

/* The cache is worth having: the router's own commits do not invalidate it. */
Test(router, cache_survives_own_commits)
{
    one(&band, 25, T(1));
    uint64_t n = loads();
    cr_expect_gt(n, 0);
    one(&band, 26, T(2));
    one(&band, 35, T(3));
    one(&band, 25, T(4));
    cr_expect_eq(loads(), n, "state reloaded from the database after an own commit");
    /* while a foreign commit does invalidate it */
    peer_exec("UPDATE devices SET name = 'x'");
    one(&band, 25, T(5));
    cr_expect_eq(loads(), n + 1);
}

/* ---- rolled-back packets leave no trace in memory ----------------------------------- */

Test(router, rolled_back_packet_leaves_no_trace)
{
    char buf[32];
    one(&band, 25, T(1));

    struct job a, b, c;
    job_init(&a);
    job_add(&a, &band, 35, T(10)); /* opens an alert, then states_put fails */
    job_init(&b);
    job_add(&b, &band, 36, T(5)); /* older than a's reading: late only if a left a trace */
    job_init(&c);
    job_add(&c, &band, 37, T(6));
    struct job *jobs[] = {&a, &b, &c};
    int rcs[3] = {-1, -1, -1};
    store_fault_set(st, STORE_FAULT_STATES_PUT, 1, IOT_EBUSY);
    cr_assert_eq(run_tx(jobs, 3, rcs), 0, "%s", store_errmsg(st));
    cr_expect_eq(rcs[0], IOT_EBUSY);
    cr_expect_eq(rcs[1], 0);
    cr_expect_eq(rcs[2], 0);
    cr_expect_eq(store_fault_injected(st), 1);

    cr_expect_eq(b.r[0].late, 0, "the rolled-back reading made this one late");
    cr_expect_eq(b.r[0].cls, CLASS_WARNING);
    cr_expect_eq(q_int("SELECT count(*) FROM sensor_readings WHERE ts = %lld", (long long)T(10)),
                 0);
    cr_expect_eq(alerts_of(&band, "threshold"), 1);
    int64_t id = active_id(&band, "threshold");
    cr_expect_eq(alert_col(id, "first_value"), 36);
    cr_expect_eq(alert_col(id, "hit_count"), 2);
    cr_expect_eq(alert_col(id, "triggered_at"), T(5));
    cr_expect_eq(notes(id, "triggered"), 1);
    cr_expect_eq(q_int("SELECT count(*) FROM alert_notifications"), 1);
    cr_expect_eq(state_col(&band, "last_ts"), T(6));
    cr_expect_str_eq(reading_class_at(buf, &band, T(6)), "warning");

    /* and in the next transaction too */
    cr_expect_eq(one(&band, 25, T(7)), CLASS_NORMAL);
    cr_expect_eq(active_id(&band, "threshold"), -1);
    cr_expect_eq(notes(id, "resolved"), 1);
}

Test(router, rolled_back_first_violation_then_refresh)
{
    /* the alert insert succeeds, the notification fails: the alert must not stay cached */
    one(&band, 25, T(1));
    struct job a, b;
    job_init(&a);
    job_add(&a, &band, 35, T(2));
    job_init(&b);
    job_add(&b, &band, 36, T(3));
    struct job *jobs[] = {&a, &b};
    int rcs[2];
    store_fault_set(st, STORE_FAULT_NOTIFICATION_INSERT, 1, IOT_EDB);
    cr_assert_eq(run_tx(jobs, 2, rcs), 0);
    cr_expect_eq(rcs[0], IOT_EDB);
    cr_expect_eq(rcs[1], 0);
    int64_t id = active_id(&band, "threshold");
    cr_assert_gt(id, 0, "job b refreshed an alert that was rolled back");
    cr_expect_eq(alert_col(id, "hit_count"), 1);
    cr_expect_eq(alert_col(id, "first_value"), 36);
    cr_expect_eq(notes(id, "triggered"), 1);
}

Test(router, failed_commit_forgets_the_transaction)
{
    one(&band, 25, T(1));
    struct job a;
    job_init(&a);
    job_add(&a, &band, 35, T(5));
    struct job *jobs[] = {&a};
    int rc0;
    store_fault_set(st, STORE_FAULT_TX_COMMIT, 1, IOT_EUNAVAIL);
    cr_expect_eq(run_tx(jobs, 1, &rc0), IOT_EUNAVAIL);
    cr_expect_eq(rc0, 0);
    cr_expect_eq(q_int("SELECT count(*) FROM alerts"), 0);
    /* an older reading is not late, and it opens the alert */
    cr_expect_eq(one(&band, 36, T(3)), CLASS_WARNING);
    int64_t id = active_id(&band, "threshold");
    cr_assert_gt(id, 0);
    cr_expect_eq(alert_col(id, "hit_count"), 1);
    cr_expect_eq(reading_late_at(&band, T(3)), 0);
}

/*
 * writer.c rolls a packet back also when router_apply succeeded but a later
 * step of the packet failed (packet_put, device_touch). Its counters must be
 * forgotten like its state: SPEC §10, "no trace in memory".
 */
Test(router, stats_count_only_committed_packets)
{
    struct job a, b;
    job_init(&a);
    job_add(&a, &band, 25, T(1));
    apply(&a);

    cr_assert_eq(store_tx_begin(st), 0);
    cr_assert_eq(router_begin_tx(rt, st), 0);
    cr_assert_eq(store_savepoint(st), 0);
    job_init(&b);
    job_add(&b, &band, 35, T(2));
    struct write_job *bj = &b.j;
    cr_assert_eq(router_apply(rt, st, &bj, 1), 0);
    /* e.g. store_packet_put failed here */
    cr_assert_eq(store_savepoint_rollback(st), 0);
    router_abort_packet(rt);
    cr_assert_eq(store_tx_commit(st), 0);
    router_end_tx(rt, 1);

    struct router_stats s;
    router_stats(rt, &s);
    cr_expect_eq(s.by_class[CLASS_NORMAL], 1);
    cr_expect_eq(s.by_class[CLASS_WARNING], 0, "a rolled-back reading was counted");
    cr_expect_eq(s.alerts.opened, 0, "a rolled-back alert was counted");
    cr_expect_eq(q_int("SELECT count(*) FROM alerts"), 0);

    /* and the rolled-back packet left no state behind */
    cr_expect_eq(one(&band, 36, T(2)), CLASS_WARNING);
    router_stats(rt, &s);
    cr_expect_eq(s.by_class[CLASS_WARNING], 1);
    cr_expect_eq(s.alerts.opened, 1);
}

Test(router, stats_after_commit)
{
    new_router(1);
    one(&band, 25, T(1));
    one(&band, 35, T(2));
    one(&band, 45, T(3));
    one(&band, 25, T(4));
    one(&band, 25, T(0)); /* late */
    one(&jumpy, 50, T(1));
    one(&jumpy, 60, T(2));
    struct router_stats s;
    router_stats(rt, &s);
    cr_expect_eq(s.by_class[CLASS_NORMAL], 4);
    cr_expect_eq(s.by_class[CLASS_WARNING], 1);
    cr_expect_eq(s.by_class[CLASS_ALERT], 1);
    cr_expect_eq(s.by_class[CLASS_SPIKE], 1);
    cr_expect_eq(s.late, 1);
    cr_expect_eq(s.alerts.opened, 2);
    cr_expect_eq(s.alerts.escalated, 1);
    cr_expect_eq(s.alerts.resolved, 1);

    /* a failed commit counts nothing */
    struct job a;
    job_init(&a);
    job_add(&a, &band, 35, T(10));
    struct job *jobs[] = {&a};
    store_fault_set(st, STORE_FAULT_TX_COMMIT, 1, IOT_EBUSY);
    cr_expect_eq(run_tx(jobs, 1, NULL), IOT_EBUSY);
    struct router_stats s2;
    router_stats(rt, &s2);
    cr_expect_eq(s2.by_class[CLASS_WARNING], 1);
    cr_expect_eq(s2.alerts.opened, 2);
}

/* A cache of one entry: every switch of sensor evicts, and state comes back from the database. */
Test(router, tiny_cache_evicts_and_reloads)
{
    router_destroy(rt);
    rt = NULL;
    cr_assert_eq(router_create(1, 1, &rt), 0);
    struct job a, b, c;
    job_init(&a);
    job_add(&a, &band, 35, T(1));
    job_add(&a, &jumpy, 50, T(1));
    job_init(&b);
    job_add(&b, &jumpy, 60, T(2));
    job_init(&c);
    job_add(&c, &band, 36, T(2));
    job_add(&c, &band, 34, T(0)); /* late */
    struct job *jobs[] = {&a, &b, &c};
    int rcs[3];
    cr_assert_eq(run_tx(jobs, 3, rcs), 0);
    cr_expect(rcs[0] == 0 && rcs[1] == 0 && rcs[2] == 0);
    cr_expect_eq(b.r[0].cls, CLASS_SPIKE);
    int64_t spike_id = active_id(&jumpy, "delta_spike");
    cr_expect_gt(spike_id, 0, "the jump 50 -> 60 opened no delta_spike alert");
    cr_expect_eq(job_reading(&c, 1)->late, 1);
    int64_t id = active_id(&band, "threshold");
    cr_expect_eq(alert_col(id, "hit_count"), 2);
    cr_expect_eq(alerts_of(&band, "threshold"), 1);
    for (int i = 0; i < 4; i++) {
        one(&jumpy, 60, T(3 + i));
        one(&band, 37, T(3 + i));
    }
    cr_expect_eq(alert_col(id, "hit_count"), 6);
    cr_expect_eq(alerts_of(&band, "threshold"), 1);
    cr_expect_eq(active_id(&jumpy, "delta_spike"), -1, "resolved by the first normal");
    cr_expect_eq(alerts_of(&jumpy, "delta_spike"), 1);
    cr_expect_eq(notes(spike_id, "resolved"), 1);
}

/* ---- the reading chain (SQLite: sqlite_chain.c) ----------------------------------- */

/*
 * The chain's invariant, checked with plain SQL on the other connection: every
 * reading points to the previous stored reading of its sensor (0 for the
 * first), and sensor_state names the newest. Returns the number of violations.
 */
static int64_t chain_violations(void)
{
    return q_int("SELECT count(*) FROM sensor_readings r WHERE r.prev_id IS NOT"
                 " coalesce((SELECT max(q.id) FROM sensor_readings q"
                 "   WHERE q.sensor_id = r.sensor_id AND q.id < r.id), 0)") +
           q_int("SELECT count(*) FROM sensor_state s WHERE s.last_reading_id IS NOT"
                 " (SELECT max(r.id) FROM sensor_readings r WHERE r.sensor_id = s.sensor_id)");
}

/*
 * store_recent_readings against the SQL it replaces (the newest `limit`
 * readings by time, ties by id), for every limit in lims.
 */
static void expect_recent_matches_sql(const struct sensor *s, const char *when)
{
    static const size_t lims[] = {1, 2, 3, 7, 11, 40, 500};
    static struct store_reading got[500];
    for (size_t k = 0; k < sizeof lims / sizeof lims[0]; k++) {
        size_t n = 0, lim = lims[k];
        cr_assert_eq(store_recent_readings(st, s->id, lim, got, &n), 0, "%s", store_errmsg(st));
        sqlite3_stmt *q;
        cr_assert_eq(sqlite3_prepare_v2(peer,
                                        "SELECT id, value, ts, late FROM sensor_readings"
                                        " WHERE sensor_id = ?1 ORDER BY ts DESC, id DESC LIMIT ?2",
                                        -1, &q, NULL),
                     SQLITE_OK);
        sqlite3_bind_int64(q, 1, s->id);
        sqlite3_bind_int64(q, 2, (sqlite3_int64)lim);
        size_t i = 0;
        while (sqlite3_step(q) == SQLITE_ROW) {
            cr_assert_lt(i, n, "%s: %s limit %zu: only %zu rows, SQL has more", when, s->uuid, lim,
                         n);
            cr_expect_eq(got[i].id, sqlite3_column_int64(q, 0), "%s: %s limit %zu row %zu", when,
                         s->uuid, lim, i);
            cr_expect_eq(got[i].ts, sqlite3_column_int64(q, 2));
            cr_expect_eq(got[i].value, sqlite3_column_double(q, 1));
            cr_expect_eq(got[i].late, sqlite3_column_int(q, 3));
            cr_expect_eq(got[i].sensor_id, s->id);
            i++;
        }
        sqlite3_finalize(q);
        cr_expect_eq(i, n, "%s: %s limit %zu: %zu rows, SQL has %zu", when, s->uuid, lim, n, i);
    }
}

/*
 * Random packets over both sensors, several per transaction: readings in and
 * out of order (about one in four late, by up to late_s seconds; some ties in
 * time; several readings of one sensor in one packet), time moving on by 1 to
 * step_s seconds from *newest, and now and then a packet rolled back.
 */
static void random_history_from(unsigned seed, int packets, int64_t *clock, int step_s, int late_s)
{
    int64_t newest = *clock;
    for (int p = 0; p < packets;) {
        struct job jb[4];
        struct job *jobs[4];
        size_t nj = 1 + (size_t)(rand_r(&seed) % 4);
        for (size_t k = 0; k < nj; k++, p++) {
            job_init(&jb[k]);
            jobs[k] = &jb[k];
            int nr = 1 + rand_r(&seed) % 6;
            for (int i = 0; i < nr; i++) {
                int r = rand_r(&seed) % 100;
                int64_t ts = r < 25   ? newest - (1 + rand_r(&seed) % late_s) * 1000LL /* late */
                             : r < 35 ? newest                                         /* a tie */
                                      : (newest += (1 + rand_r(&seed) % step_s) * 1000LL);
                job_add(&jb[k], rand_r(&seed) % 2 ? &band : &jumpy, 25 + rand_r(&seed) % 3, ts);
            }
        }
        if (rand_r(&seed) % 10 == 0) /* the first packet fails after its readings are stored */
            store_fault_set(st, STORE_FAULT_STATES_PUT, 1, IOT_EBUSY);
        int rcs[4];
        cr_assert_eq(run_tx(jobs, nj, rcs), 0, "%s", store_errmsg(st));
        store_fault_clear_all(st);
    }
    *clock = newest;
}

static void random_history(unsigned seed, int packets)
{
    int64_t clock = T(100000);
    random_history_from(seed, packets, &clock, 3, 500);
}

Test(router, reading_chain_finds_the_newest_readings_by_time)
{
    size_t n = 99;
    struct store_reading none[1];
    cr_expect_eq(store_recent_readings(st, band.id, 1, none, &n), 0);
    cr_expect_eq(n, 0, "no readings yet");

    random_history(7, 600);
    cr_expect_gt(q_int("SELECT count(*) FROM sensor_readings WHERE late = 1"), 100);
    cr_expect_eq(chain_violations(), 0);
    expect_recent_matches_sql(&band, "intact");
    expect_recent_matches_sql(&jumpy, "intact");

    /* A new router reads the chain's head from the database. */
    new_router(1);
    random_history(8, 50);
    cr_expect_eq(chain_violations(), 0);
    expect_recent_matches_sql(&band, "after a restart");
}

/*
 * Rows the chain cannot vouch for -- deleted from the middle or at the head,
 * written by hand without links, an id reused after a delete -- must not change
 * the answer: the walk falls back to scanning the table.
 */
Test(router, broken_reading_chain_falls_back_to_a_scan)
{
    random_history(11, 400);
    cr_assert_eq(chain_violations(), 0);
    /* deleted from the middle, and the newest reading of band */
    peer_exec("DELETE FROM sensor_readings WHERE id IN (SELECT id FROM sensor_readings"
              " WHERE sensor_id = %lld ORDER BY id DESC LIMIT 5 OFFSET 3)",
              (long long)band.id);
    peer_exec("DELETE FROM sensor_readings WHERE id = (SELECT max(id) FROM sensor_readings"
              " WHERE sensor_id = %lld)",
              (long long)band.id);
    expect_recent_matches_sql(&band, "deleted");
    /* links of jumpy lost, then its head too */
    peer_exec("UPDATE sensor_readings SET prev_id = NULL WHERE sensor_id = %lld AND id %% 3 = 0",
              (long long)jumpy.id);
    expect_recent_matches_sql(&jumpy, "links lost");
    peer_exec("UPDATE sensor_state SET last_reading_id = NULL WHERE sensor_id = %lld",
              (long long)jumpy.id);
    expect_recent_matches_sql(&jumpy, "head lost");
    /* the id of band's deleted head reused by a hand-written reading of jumpy */
    peer_exec("DELETE FROM sensor_readings WHERE id > (SELECT max(id) FROM sensor_readings"
              " WHERE sensor_id = %lld)",
              (long long)band.id);
    peer_exec("UPDATE sensor_state SET last_reading_id = (SELECT max(id) + 1 FROM sensor_readings)"
              " WHERE sensor_id = %lld",
              (long long)band.id);
    peer_exec("INSERT INTO sensor_readings(sensor_id, value, ts, ingested_at, class, late)"
              " VALUES (%lld, 1, %lld, %lld, 'normal', 0)",
              (long long)jumpy.id, (long long)T(999999), (long long)NOW);
    expect_recent_matches_sql(&band, "id reused");
    expect_recent_matches_sql(&jumpy, "id reused");

    /*
     * Readings written by hand for a sensor whose chain is intact: the newest
     * of all, and an old one flagged late. Their insert trigger marks the head
     * unknown, so they are found now and after the writer's next readings.
     */
    new_router(1);
    random_history(13, 20);
    peer_exec("INSERT INTO sensor_readings(sensor_id, value, ts, ingested_at, class, late)"
              " VALUES (%lld, 7, %lld, %lld, 'normal', 0), (%lld, 8, %lld, %lld, 'normal', 1)",
              (long long)band.id, (long long)T(888888), (long long)NOW, (long long)band.id,
              (long long)T(1), (long long)NOW);
    cr_expect_eq(state_col(&band, "last_reading_id"), -2, "the head is marked unknown");
    cr_expect_eq(state_col(&band, "last_ts"), T(888888), "the newest reading counts");
    expect_recent_matches_sql(&band, "written by hand");
    /* the writer's next reading is older than the hand-written one: late */
    cr_expect_eq(one(&band, 25, T(500000)), CLASS_NORMAL);
    cr_expect_eq(reading_late_at(&band, T(500000)), 1);
    expect_recent_matches_sql(&band, "written by hand, then the writer");

    /* The writer goes on from there: new readings are found past the broken parts. */
    new_router(1);
    random_history(12, 100);
    expect_recent_matches_sql(&band, "after new readings");
    expect_recent_matches_sql(&jumpy, "after new readings");
}

/* ---- rollups and retention (job retention, sqlite_retention.c) -------------------- */

#define HOUR_MS 3600000LL

/*
 * Rollup rows below the mark that differ from the aggregate of the raw rows of
 * their hour, computed with plain SQL, in either direction; only hours at or
 * after from_hour (the earlier ones may have lost raw rows to retention).
 * Values are small integers, so every sum is exact in any order.
 */
static int64_t rollup_mismatches(int64_t from_hour)
{
    static const char raw[] =
        "SELECT sensor_id, ts - ts %% 3600000 AS hour, count(*), min(value), max(value),"
        " sum(value), min(ts), max(ts) FROM sensor_readings"
        " WHERE ts < (SELECT rolled_until FROM rollup_state) AND ts >= %lld GROUP BY 1, 2";
    static const char rolled[] = "SELECT sensor_id, hour, count, min, max, sum, first_ts, last_ts"
                                 " FROM sensor_readings_hourly WHERE hour >= %lld";
    char sql[1024];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM (%s EXCEPT %s)", raw, rolled);
    int64_t a = q_int(sql, (long long)from_hour, (long long)from_hour);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM (%s EXCEPT %s)", rolled, raw);
    return a + q_int(sql, (long long)from_hour, (long long)from_hour);
}

/* The rows retention must never touch (alerts, notifications, sensor state), as text. */
static const char *untouched(char *buf, size_t cap)
{
    return q_text(
        buf, cap,
        "SELECT (SELECT count(*) || '/' || total(hit_count) FROM alerts) || ':' ||"
        " (SELECT count(*) FROM alert_notifications) || ':' ||"
        " (SELECT group_concat(sensor_id || '/' || last_ts || '/' || last_value || '/'"
        " || normal_run || '/' || coalesce(last_reading_id, 'x'), ';') FROM sensor_state)");
}

static struct retention_summary retention_run(int64_t keep_ms, int64_t now)
{
    struct retention_opts o = {keep_ms, 0};
    struct retention_summary sum;
    cr_assert_eq(job_retention_run(st, &o, now, &sum), 0, "%s", store_errmsg(st));
    return sum;
}

/*
 * Random histories over many hours with late readings (up to 3 hours late,
 * so they land in hours already rolled up) and rolled-back packets: after
 * every job run each rollup equals the aggregate of its hour's raw readings,
 * hours rolled up stay equal while late readings keep arriving, and after
 * retention deletes old readings the rollups stay, every other table stays,
 * and the reading chain still answers exactly what plain SQL answers.
 */
static void rollups_and_retention(void)
{
    int64_t clock = T(100000);
    int64_t late_into_rolled = 0;
    for (unsigned round = 0; round < 6; round++) {
        int64_t before = q_int("SELECT coalesce(sum(count), 0) FROM sensor_readings_hourly");
        random_history_from(40 + round, 150, &clock, 120, 3 * 3600);
        late_into_rolled +=
            q_int("SELECT coalesce(sum(count), 0) FROM sensor_readings_hourly") - before;
        cr_assert_eq(rollup_mismatches(INT64_MIN), 0, "round %u, before the job", round);
        struct retention_summary sum = retention_run(0, clock);
        cr_expect_eq(sum.readings_deleted, 0, "RETENTION_DAYS=0 keeps everything");
        cr_expect_eq(sum.rolled_until, clock - clock % HOUR_MS);
        cr_assert_eq(rollup_mismatches(INT64_MIN), 0, "round %u, after the job", round);
    }
    cr_expect_gt(late_into_rolled, 20, "late readings were added to rolled-up hours");
    cr_expect_gt(q_int("SELECT count(DISTINCT hour) FROM sensor_readings_hourly"), 20);

    int64_t rolled = q_int("SELECT sum(count) FROM sensor_readings_hourly");
    int64_t total = q_int("SELECT count(*) FROM sensor_readings");
    char kept[512], now_kept[512];
    untouched(kept, sizeof kept);
    int64_t cutoff = clock - 10 * HOUR_MS;
    struct retention_summary sum = retention_run(10 * HOUR_MS, clock);
    cr_expect_gt(sum.readings_deleted, 10 * RETENTION_CHUNK_MIN, "several chunks");
    cr_expect_eq(q_int("SELECT count(*) FROM sensor_readings WHERE ts < %lld", (long long)cutoff),
                 0);
    cr_expect_eq(q_int("SELECT count(*) FROM sensor_readings"),
                 total - (int64_t)sum.readings_deleted);
    cr_expect_eq(q_int("SELECT sum(count) FROM sensor_readings_hourly"), rolled,
                 "rollups outlive their readings");
    cr_expect_str_eq(untouched(now_kept, sizeof now_kept), kept,
                     "alerts, notifications, sensor state untouched");
    expect_recent_matches_sql(&band, "after retention");
    expect_recent_matches_sql(&jumpy, "after retention");

    /* Late readings into deleted and kept hours: rollups of whole kept hours stay exact. */
    new_router(1);
    random_history_from(60, 200, &clock, 120, 12 * 3600);
    int64_t first_whole = cutoff - cutoff % HOUR_MS + HOUR_MS;
    cr_expect_eq(rollup_mismatches(first_whole), 0);
    retention_run(10 * HOUR_MS, clock);
    cr_expect_eq(
        rollup_mismatches(clock - 10 * HOUR_MS - (clock - 10 * HOUR_MS) % HOUR_MS + HOUR_MS), 0);
    expect_recent_matches_sql(&band, "after more readings and retention");
    expect_recent_matches_sql(&jumpy, "after more readings and retention");

    /* No reading at or above the rollup mark is ever deleted, whatever the cutoff. */
    int64_t mark = q_int("SELECT rolled_until FROM rollup_state");
    int64_t above = q_int("SELECT count(*) FROM sensor_readings WHERE ts >= %lld", (long long)mark);
    int64_t n = 0;
    cr_assert_eq(store_readings_expire(st, INT64_MAX, 1000000, &n), 0);
    cr_expect_eq(q_int("SELECT count(*) FROM sensor_readings"), above);
    cr_expect_gt(above, 0);
}

/* With the schema's triggers (every connection but the gateway's writer). */
Test(router, rollups_equal_raw_aggregates_and_retention_keeps_the_chain_exact)
{
    rollups_and_retention();
}

/* The gateway's writer runs without triggers and adds late readings itself. */
Test(router, rollups_stay_exact_on_the_writer_connection_without_triggers)
{
    store_close(st);
    char url[160], err[IOT_ERRBUF] = "";
    snprintf(url, sizeof url, "sqlite:%s", path);
    struct store_open_opts o = {.busy_timeout_ms = 5000, .cache_mb = 8, .ingest_writer = 1};
    struct store *inner = NULL;
    cr_assert_eq(store_open(url, &o, &inner, err, sizeof err), 0, "%s", err);
    cr_assert_eq(store_fault_wrap(inner, &st), 0);
    rollups_and_retention();
}
