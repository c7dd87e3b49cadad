/*
 * Unit tests for src/ingest/writer: the one serialized writer of SPEC §10,
 * on a real SQLite file (wrapped in store_fault) with a memory broker.
 *
 * No sleep decides an outcome. The writer is held deterministically by a
 * "gate" job whose done() callback blocks on a condition variable: while
 * it waits, the writer thread is parked after that job's commit, so jobs
 * submitted meanwhile are queued and taken together as the next batch.
 * Everything asynchronous is awaited with a condition variable against a
 * generous deadline.
 */
#include "broker/broker.h"
#include "core/clock.h"
#include "core/err.h"
#include "ingest/router.h"
#include "ingest/writer.h"
#include "store/store.h"
#include "support/store_fault.h"

/*
 * on_done() queries from the writer thread, where cr_assert's longjmp to the
 * test's frame is undefined: a failing query ends the test from any thread.
 */
#define SQLITE_PEER_FAIL(...) criterion_test_die(__VA_ARGS__)
#include "sqlite_peer.h"

#include <criterion/criterion.h>
#include <math.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_MS 10000
#define T0          1700000000000LL
#define T(s)        (T0 + (s)*1000LL)
#define HOUR        3600000LL
#define DAY         (24 * HOUR)
#define MAXR        4
#define MAXMSG      64

/* ---- fixture -------------------------------------------------------------------- */

static char dir[64], path[128];
static struct store *fst;  /* the writer's store (fault wrapper); owned by the writer */
static struct writer *wr;  /* NULL until start_writer */
static struct broker *bus; /* memory broker */
static sqlite3 *peer;      /* test thread: checks rows */
static sqlite3 *cbdb;      /* writer thread: checks rows from inside done() */
static int64_t dev_id, sensor_id;
static struct store_threshold sensor_thr[2];

/* Completion and gate state, shared with the writer thread. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int gate_open;    /* blocking jobs may leave done() */
static int gate_entered; /* blocking jobs inside done() */
static int done_total;   /* done() calls so far */

/* Messages the broker delivered. */
static struct broker_reading msgs[MAXMSG];
static size_t nmsgs;

static void on_message(const struct broker_reading *m, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&mu);
    if (nmsgs < MAXMSG) msgs[nmsgs] = *m;
    nmsgs++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void open_db(sqlite3 **db)
{
    cr_assert_eq(sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(*db, 5000);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/iot-writer-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
    char url[160], err[IOT_ERRBUF] = "";
    snprintf(url, sizeof url, "sqlite:%s", path);
    struct store_open_opts o = {.busy_timeout_ms = 5000, .cache_mb = 8};
    struct store *inner = NULL;
    cr_assert_eq(store_open(url, &o, &inner, err, sizeof err), 0, "%s", err);
    cr_assert_eq(store_fault_wrap(inner, &fst), 0);
    cr_assert_eq(store_schema_init(fst), 0, "%s", store_errmsg(fst));

    unsigned char h[STORE_KEY_HASH_LEN] = {7};
    int64_t did;
    cr_assert_eq(store_device_add(fst, "dev-1", "d", h, T0, &dev_id), 0);
    cr_assert_eq(store_sensor_add(fst, "dev-1", "s-1", "s", "t", "C", T0, &sensor_id, &did), 0);
    struct store_threshold w = {0}, c = {0};
    int64_t tid;
    w.has_min = w.has_max = c.has_min = c.has_max = 1;
    w.min = 20;
    w.max = 30;
    c.min = 10;
    c.max = 40;
    cr_assert_eq(store_threshold_set(fst, "s-1", SEV_WARNING, &w, T0, &tid), 0);
    cr_assert_eq(store_threshold_set(fst, "s-1", SEV_CRITICAL, &c, T0, &tid), 0);
    struct store_sensor s;
    cr_assert_eq(store_sensor_get(fst, sensor_id, &s), 0);
    sensor_thr[0] = s.thr[0];
    sensor_thr[1] = s.thr[1];

    open_db(&peer);
    open_db(&cbdb);
    cr_assert_eq(broker_memory_create(MAXMSG, &bus), 0);
    cr_assert_eq(broker_subscribe(bus, on_message, NULL), 0);
    wr = NULL;
}

static void teardown(void)
{
    pthread_mutex_lock(&mu);
    gate_open = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    if (wr)
        writer_destroy(wr);
    else
        store_close(fst);
    wr = NULL;
    fst = NULL;
    broker_destroy(bus);
    bus = NULL;
    sqlite3_close(peer);
    sqlite3_close(cbdb);
    rm_db_files(path);
    rmdir(dir);
}

TestSuite(writer, .init = setup, .fini = teardown);

/* Creates and starts the writer on fst (which it then owns). */
static void start_writer(size_t queue_max, size_t batch_max, int64_t window_ms)
{
    struct router *r = NULL;
    cr_assert_eq(router_create(1024, 1, &r), 0);
    struct writer_opts o = {queue_max, batch_max, window_ms};
    cr_assert_eq(writer_create(fst, r, bus, &o, &wr), 0);
    cr_assert_eq(writer_start(wr), 0);
}

/* ---- jobs ------------------------------------------------------------------------ */

struct tjob {
    struct write_job j;
    struct write_reading r[MAXR];
    char response[64]; /* j.response: the test is the submitter that owns it */
    int64_t ts0;       /* time of the first reading added */
    int block;         /* done() waits for the gate */
    int calls;         /* done() calls */
    int64_t rows;      /* readings at ts0 seen by another connection inside done() */
    int64_t pkt;       /* ingest_packets rows of its packet_id seen inside done() */
    int64_t touch;     /* devices.last_seen_at seen inside done() */
};

static void tjob_init(struct tjob *t, const char *packet_id, const char *response)
{
    memset(t, 0, sizeof *t);
    t->j.device_id = dev_id;
    snprintf(t->j.packet_id, sizeof t->j.packet_id, "%s", packet_id ? packet_id : "");
    if (response) {
        snprintf(t->response, sizeof t->response, "%s", response);
        t->j.response = t->response;
    }
    t->j.readings = t->r;
    t->j.received_at = clock_now_ms();
    t->rows = t->pkt = -1;
}

static void tjob_add(struct tjob *t, double value, int64_t ts)
{
    cr_assert_lt(t->j.nreadings, MAXR);
    struct write_reading *w = &t->r[t->j.nreadings];
    memset(w, 0, sizeof *w);
    w->index = (int)t->j.nreadings;
    w->sensor_id = sensor_id;
    w->device_id = dev_id;
    snprintf(w->sensor_uuid, sizeof w->sensor_uuid, "s-1");
    snprintf(w->device_uuid, sizeof w->device_uuid, "dev-1");
    w->value = value;
    w->ts = ts;
    w->thr[0] = sensor_thr[0];
    w->thr[1] = sensor_thr[1];
    if (t->j.nreadings == 0) t->ts0 = ts;
    t->j.nreadings++;
}

/* First column of the first row on db (peer or cbdb): -1 when there is no row, -2 for NULL. */
#define db_int(...) sqlite_peer_int(__VA_ARGS__)

/* Runs on the writer thread. */
static void on_done(struct write_job *job, void *ud)
{
    struct tjob *t = ud;
    int64_t rows = t->j.nreadings
                       ? db_int(cbdb, "SELECT count(*) FROM sensor_readings WHERE ts = %lld",
                                (long long)t->ts0)
                       : -1;
    int64_t pkt = t->j.packet_id[0] ? db_int(cbdb,
                                             "SELECT count(*) FROM ingest_packets WHERE"
                                             " packet_id = %Q",
                                             t->j.packet_id)
                                    : -1;
    int64_t touch =
        db_int(cbdb, "SELECT last_seen_at FROM devices WHERE id = %lld", (long long)dev_id);
    pthread_mutex_lock(&mu);
    (void)job;
    t->rows = rows;
    t->pkt = pkt;
    t->touch = touch;
    t->calls++;
    done_total++;
    if (t->block) {
        gate_entered++;
        pthread_cond_broadcast(&cv);
        while (!gate_open)
            pthread_cond_wait(&cv, &mu);
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int submit(struct tjob *t)
{
    t->j.done = on_done;
    t->j.done_ud = t;
    return writer_submit(wr, &t->j);
}

static struct timespec deadline_in(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Waits until *counter >= n (under mu); false after the deadline. */
static int wait_for(const int *counter, int n)
{
    struct timespec dl = deadline_in(DEADLINE_MS);
    int rc = 0;
    pthread_mutex_lock(&mu);
    while (*counter < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&cv, &mu, &dl);
    int ok = *counter >= n;
    pthread_mutex_unlock(&mu);
    return ok;
}

static int wait_msgs(size_t n)
{
    struct timespec dl = deadline_in(DEADLINE_MS);
    int rc = 0;
    pthread_mutex_lock(&mu);
    while (nmsgs < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&cv, &mu, &dl);
    int ok = nmsgs >= n;
    pthread_mutex_unlock(&mu);
    return ok;
}

static int calls_of(struct tjob *t)
{
    pthread_mutex_lock(&mu);
    int n = t->calls;
    pthread_mutex_unlock(&mu);
    return n;
}

static void open_gate(void)
{
    pthread_mutex_lock(&mu);
    gate_open = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* Submits a blocking job and waits until the writer is parked in its done(). */
static void hold_writer(struct tjob *g, int64_t ts)
{
    tjob_init(g, NULL, NULL);
    tjob_add(g, 25, ts);
    g->block = 1;
    pthread_mutex_lock(&mu);
    gate_open = 0;
    int want = gate_entered + 1;
    pthread_mutex_unlock(&mu);
    cr_assert_eq(submit(g), 0);
    cr_assert(wait_for(&gate_entered, want), "writer never reached the gate job");
    cr_expect_eq(g->j.status, WRITE_STORED, "gate job: status %d err %s", g->j.status,
                 iot_strerror(g->j.err));
}

static int64_t rows_at(int64_t ts)
{
    return db_int(peer, "SELECT count(*) FROM sensor_readings WHERE ts = %lld", (long long)ts);
}

/* ---- tests ------------------------------------------------------------------------- */

Test(writer, committed_before_done)
{
    start_writer(16, 8, DAY);
    struct tjob a;
    tjob_init(&a, "pkt-1", "{\"ok\":1}");
    tjob_add(&a, 25, T(1));
    tjob_add(&a, 26, T(2));
    cr_assert_eq(submit(&a), 0);
    cr_assert(wait_for(&done_total, 1));
    cr_expect_eq(a.calls, 1);
    cr_expect_eq(a.j.status, WRITE_STORED);
    cr_expect_eq(a.j.err, 0);
    cr_expect_eq(a.rows, 1, "reading not visible to another connection in done()");
    cr_expect_eq(a.pkt, 1, "packet id not committed before done()");
    cr_expect_eq(a.touch, a.j.received_at, "device last_seen_at");
    cr_expect_eq(db_int(peer, "SELECT count(*) FROM sensor_readings"), 2);
    cr_expect_eq(a.r[0].cls, CLASS_NORMAL);

    /* a legacy job (no device bookkeeping) */
    struct tjob l;
    tjob_init(&l, NULL, NULL);
    l.j.device_id = 0;
    tjob_add(&l, 35, T(3));
    cr_assert_eq(submit(&l), 0);
    cr_assert(wait_for(&done_total, 2));
    cr_expect_eq(l.j.status, WRITE_STORED);
    cr_expect_eq(l.rows, 1);
    cr_expect_eq(db_int(peer, "SELECT count(*) FROM alerts WHERE status = 'active'"), 1);

    writer_stop(wr);
    struct writer_stats s;
    writer_get_stats(wr, &s);
    cr_expect_eq(s.jobs, 2);
    cr_expect_eq(s.commits, 2);
    cr_expect_eq(s.commit_failures, 0);
    cr_expect_eq(s.router.by_class[CLASS_NORMAL], 2);
    cr_expect_eq(s.router.by_class[CLASS_WARNING], 1);
    cr_expect_eq(s.queue_depth, 0);
}

/*
 * A job the database refuses (here: a NaN value, stored as NULL in a NOT
 * NULL column; HTTP never lets one through) fails the fast pass; the isolating pass
 * then stores its neighbours and fails it alone, leaving no trace of it.
 */
Test(writer, one_failing_job_does_not_take_the_batch_down)
{
    start_writer(16, 8, DAY);
    struct tjob g, a, b, c;
    hold_writer(&g, T(1));
    tjob_init(&a, "pa", "ra");
    tjob_add(&a, 25, T(10));
    tjob_init(&b, "pb", "rb");
    tjob_add(&b, 35, T(20)); /* would open an alert */
    tjob_add(&b, 36, T(21));
    b.r[1].value = NAN; /* refused by the database */
    tjob_init(&c, "pc", "rc");
    tjob_add(&c, 26, T(30));
    cr_assert_eq(submit(&a), 0);
    cr_assert_eq(submit(&b), 0);
    cr_assert_eq(submit(&c), 0);
    open_gate();
    cr_assert(wait_for(&done_total, 4));

    cr_expect_eq(a.j.status, WRITE_STORED);
    cr_expect_eq(b.j.status, WRITE_FAILED);
    cr_expect_eq(b.j.err, IOT_EDB, "err %s", iot_strerror(b.j.err));
    cr_expect_null(b.j.stored_response);
    cr_expect_eq(c.j.status, WRITE_STORED);
    cr_expect_eq(a.rows, 1);
    cr_expect_eq(c.rows, 1);
    cr_expect_eq(rows_at(T(20)), 0);
    cr_expect_eq(rows_at(T(21)), 0);
    cr_expect_eq(db_int(peer, "SELECT count(*) FROM alerts"), 0, "failed job left an alert");
    cr_expect_eq(db_int(peer, "SELECT count(*) FROM ingest_packets WHERE packet_id = 'pb'"), 0);
    cr_expect_eq(db_int(peer, "SELECT count(*) FROM ingest_packets"), 2);

    writer_stop(wr);
    struct writer_stats s;
    writer_get_stats(wr, &s);
    cr_expect_eq(s.jobs, 4);
    cr_expect_eq(s.commits, 2, "the three jobs were not one batch");
    cr_expect_eq(s.commit_failures, 0);
    cr_expect_eq(s.router.by_class[CLASS_WARNING], 0);
    cr_expect_eq(s.router.alerts.opened, 0);
}

/* A transient failure of the fast pass: the isolating pass stores every job. */
Test(writer, transient_failure_of_the_fast_pass_stores_everything)
{
    start_writer(16, 8, DAY);
    struct tjob g, a, b;
    hold_writer(&g, T(1));
    tjob_init(&a, "pa", "ra");
    tjob_add(&a, 25, T(10));
    tjob_init(&b, "pa", "rb"); /* the same packet_id: a duplicate of a in both passes */
    tjob_add(&b, 35, T(20));
    cr_assert_eq(submit(&a), 0);
    cr_assert_eq(submit(&b), 0);
    uint64_t calls0 = store_fault_calls(fst, STORE_FAULT_READINGS_INSERT);
    store_fault_set(fst, STORE_FAULT_READINGS_INSERT, 1, IOT_EBUSY);
    open_gate();
    cr_assert(wait_for(&done_total, 3));
    cr_expect_eq(store_fault_injected(fst), 1);
    cr_expect_eq(store_fault_calls(fst, STORE_FAULT_READINGS_INSERT) - calls0, 2,
                 "one call for the batch, then one for the job in its savepoint");
    cr_expect_eq(a.j.status, WRITE_STORED);
    cr_expect_eq(a.rows, 1);
    cr_expect_eq(b.j.status, WRITE_DUPLICATE);
    cr_expect_str_eq(b.j.stored_response, "ra");
    free(b.j.stored_response); /* the submitter's, as the reply would take it */
    cr_expect_eq(rows_at(T(20)), 0);
    writer_stop(wr);
    struct writer_stats s;
    writer_get_stats(wr, &s);
    cr_expect_eq(s.commits, 2);
    cr_expect_eq(s.commit_failures, 0);
    cr_expect_eq(s.duplicates, 1);
}

/* A device with several packets in one batch is touched once, with the newest receive time. */
Test(writer, device_touched_once_per_batch_with_its_newest_time)
{
    start_writer(16, 8, DAY);
    struct tjob g, a, b;
    hold_writer(&g, T(1));
    tjob_init(&a, NULL, NULL);
    tjob_add(&a, 25, T(10));
    a.j.received_at += 5000; /* received later, queued first */
    tjob_init(&b, NULL, NULL);
    tjob_add(&b, 26, T(11));
    cr_assert_eq(submit(&a), 0);
    cr_assert_eq(submit(&b), 0);
    uint64_t t0 = store_fault_calls(fst, STORE_FAULT_DEVICE_TOUCH);
    open_gate();
    cr_assert(wait_for(&done_total, 3));
    cr_expect_eq(store_fault_calls(fst, STORE_FAULT_DEVICE_TOUCH) - t0, 1);
    cr_expect_eq(
        db_int(peer, "SELECT last_seen_at FROM devices WHERE id = %lld", (long long)dev_id),
        a.j.received_at);
}

/* A batch's own repeats: the second copy of a packet_id is the first's duplicate. */
Test(writer, repeated_packet_id_in_one_batch_is_a_duplicate)
{
    start_writer(16, 8, DAY);
    struct tjob g, a, b, c;
    hold_writer(&g, T(1));
    tjob_init(&a, "pa", "ra");
    tjob_add(&a, 25, T(10));
    tjob_init(&b, "pa", "rb");
    tjob_add(&b, 26, T(11));
    tjob_init(&c, "pc", "rc");
    tjob_add(&c, 27, T(12));
    cr_assert_eq(submit(&a), 0);
    cr_assert_eq(submit(&b), 0);
    cr_assert_eq(submit(&c), 0);
    uint64_t sp0 = store_fault_calls(fst, STORE_FAULT_SAVEPOINT);
    open_gate();
    cr_assert(wait_for(&done_total, 4));
    cr_expect_eq(a.j.status, WRITE_STORED);
    cr_expect_eq(b.j.status, WRITE_DUPLICATE);
    cr_expect_str_eq(b.j.stored_response, "ra");
    free(b.j.stored_response);
    cr_expect_eq(c.j.status, WRITE_STORED);
    cr_expect_eq(rows_at(T(11)), 0);
    cr_expect_eq(db_int(peer, "SELECT count(*) FROM ingest_packets"), 2);
    cr_expect_eq(store_fault_calls(fst, STORE_FAULT_SAVEPOINT), sp0,
                 "the fast pass took a savepoint");
}

Test(writer, commit_failure_fails_every_job_then_recovers)
{
    start_writer(16, 8, DAY);
    struct tjob g, a, b, c, a2;
    hold_writer(&g, T(1));
    tjob_init(&a, "pa", "ra");
    tjob_add(&a, 35, T(10));
    tjob_init(&b, NULL, NULL);
    tjob_add(&b, 25, T(11));
    cr_assert_eq(submit(&a), 0);
    cr_assert_eq(submit(&b), 0);
    store_fault_set(fst, STORE_FAULT_TX_COMMIT, 1, IOT_EUNAVAIL);
    open_gate();
    cr_assert(wait_for(&done_total, 3));
    cr_expect_eq(a.j.status, WRITE_FAILED);
    cr_expect_eq(a.j.err, IOT_EUNAVAIL);
    cr_expect_eq(b.j.status, WRITE_FAILED);
    cr_expect_eq(b.j.err, IOT_EUNAVAIL);
    cr_expect_eq(a.rows, 0);
    cr_expect_eq(b.rows, 0);
    cr_expect_eq(a.pkt, 0);
    cr_expect_eq(db_int(peer, "SELECT count(*) FROM alerts"), 0);
    cr_expect_eq(db_int(peer, "SELECT count(*) FROM sensor_readings"), 1); /* the gate's */
    pthread_mutex_lock(&mu);
    size_t published = nmsgs;
    pthread_mutex_unlock(&mu);
    cr_expect_leq(published, 1, "published a reading that was never committed");
    /* The broker delivers asynchronously; the writer's own count is final before done(). */
    struct writer_stats s0;
    writer_get_stats(wr, &s0);
    cr_expect_eq(s0.published, 1,
                 "published %llu readings: only the gate's was committed (a, b rolled back)",
                 (unsigned long long)s0.published);

    /* recovery: the next jobs commit, the retried packet is not a duplicate */
    tjob_init(&c, NULL, NULL);
    tjob_add(&c, 26,
             T(9)); /* older than the rolled-back readings: late only if they left a trace */
    tjob_init(&a2, "pa", "ra");
    tjob_add(&a2, 35, T(10));
    cr_assert_eq(submit(&c), 0);
    cr_assert_eq(submit(&a2), 0);
    cr_assert(wait_for(&done_total, 5));
    cr_expect_eq(c.j.status, WRITE_STORED);
    cr_expect_eq(c.r[0].late, 0, "the rolled-back batch left state in memory");
    cr_expect_eq(a2.j.status, WRITE_STORED, "status %d err %s", a2.j.status,
                 iot_strerror(a2.j.err));
    cr_expect_eq(a2.rows, 1);
    cr_expect_eq(a2.r[0].late, 0);
    cr_expect_eq(db_int(peer, "SELECT count(*) FROM alerts WHERE status = 'active'"), 1);

    writer_stop(wr);
    struct writer_stats s;
    writer_get_stats(wr, &s);
    cr_expect_eq(s.commit_failures, 1);
    cr_expect_eq(s.router.alerts.opened, 1);
}

Test(writer, duplicate_packet_returns_the_stored_response)
{
    start_writer(16, 8, DAY);
    struct tjob a, b;
    tjob_init(&a, "dup-1", "{\"first\":true}");
    tjob_add(&a, 25, T(1));
    cr_assert_eq(submit(&a), 0);
    cr_assert(wait_for(&done_total, 1));
    cr_expect_eq(a.j.status, WRITE_STORED);

    tjob_init(&b, "dup-1", "{\"second\":true}");
    tjob_add(&b, 35, T(2));
    cr_assert_eq(submit(&b), 0);
    cr_assert(wait_for(&done_total, 2));
    cr_expect_eq(b.j.status, WRITE_DUPLICATE);
    cr_assert_not_null(b.j.stored_response);
    cr_expect_str_eq(b.j.stored_response, "{\"first\":true}");
    free(b.j.stored_response);
    cr_expect_eq(rows_at(T(2)), 0, "a duplicate's readings were stored");
    cr_expect_eq(db_int(peer, "SELECT count(*) FROM alerts"), 0);

    /* the same id from another device is another packet */
    int64_t dev2;
    cr_assert_eq(sqlite3_exec(peer,
                              "INSERT INTO devices(device_uuid, name, device_key_hash, created_at)"
                              " VALUES ('dev-2', 'x', 'y', 0)",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    dev2 = db_int(peer, "SELECT id FROM devices WHERE device_uuid = 'dev-2'");
    struct tjob c;
    tjob_init(&c, "dup-1", "{\"dev2\":true}");
    c.j.device_id = dev2;
    tjob_add(&c, 25, T(3));
    cr_assert_eq(submit(&c), 0);
    cr_assert(wait_for(&done_total, 3));
    cr_expect_eq(c.j.status, WRITE_STORED);

    /* twice in one batch: the second sees the first's savepoint */
    struct tjob g, d, e;
    hold_writer(&g, T(4));
    tjob_init(&d, "dup-2", "rd");
    tjob_add(&d, 25, T(5));
    tjob_init(&e, "dup-2", "re");
    tjob_add(&e, 25, T(6));
    cr_assert_eq(submit(&d), 0);
    cr_assert_eq(submit(&e), 0);
    open_gate();
    cr_assert(wait_for(&done_total, 6));
    cr_expect_eq(d.j.status, WRITE_STORED);
    cr_expect_eq(e.j.status, WRITE_DUPLICATE);
    cr_expect_str_eq(e.j.stored_response ? e.j.stored_response : "(null)", "rd");
    free(e.j.stored_response);
    cr_expect_eq(rows_at(T(6)), 0);

    /* no readings: nothing stored, or the duplicate answer when the id is known */
    struct tjob n1, n2;
    tjob_init(&n1, "empty-1", "rn");
    tjob_init(&n2, "dup-1", "rn");
    cr_assert_eq(submit(&n1), 0);
    cr_assert_eq(submit(&n2), 0);
    cr_assert(wait_for(&done_total, 8));
    cr_expect_eq(n1.j.status, WRITE_NOTHING);
    cr_expect_eq(n2.j.status, WRITE_DUPLICATE);
    cr_expect_str_eq(n2.j.stored_response ? n2.j.stored_response : "(null)", "{\"first\":true}");
    free(n2.j.stored_response);

    writer_stop(wr);
    struct writer_stats s;
    writer_get_stats(wr, &s);
    cr_expect_eq(s.duplicates, 3);
}

/* A packet id older than the writer's window is forgotten, whatever the backend's default. */
Test(writer, packet_window_is_the_writers)
{
    start_writer(16, 8, HOUR);
    int64_t now = clock_now_ms();
    struct tjob a, b;
    tjob_init(&a, "win-1", "ra");
    a.j.received_at = now - 30 * 60000;
    tjob_add(&a, 25, T(1));
    cr_assert_eq(submit(&a), 0);
    cr_assert(wait_for(&done_total, 1));
    cr_expect_eq(a.j.status, WRITE_STORED);

    tjob_init(&b, "win-1", "rb");
    b.j.received_at = now + 31 * 60000; /* a's id is 61 minutes old: outside the window */
    tjob_add(&b, 26, T(2));
    cr_assert_eq(submit(&b), 0);
    cr_assert(wait_for(&done_total, 2));
    cr_expect_eq(b.j.status, WRITE_STORED, "status %d err %s (%d)", b.j.status,
                 iot_strerror(b.j.err), b.j.err);
}

Test(writer, queue_full_is_refused)
{
    start_writer(2, 1, DAY);
    struct tjob g, a, b, c;
    hold_writer(&g, T(1)); /* the queue is empty, the writer parked */
    tjob_init(&a, NULL, NULL);
    tjob_add(&a, 25, T(2));
    tjob_init(&b, NULL, NULL);
    tjob_add(&b, 25, T(3));
    tjob_init(&c, NULL, NULL);
    tjob_add(&c, 25, T(4));
    cr_expect_eq(submit(&a), 0);
    cr_expect_eq(submit(&b), 0);
    cr_expect_eq(submit(&c), IOT_EFULL);
    cr_expect(iot_err_retryable(IOT_EFULL));
    struct writer_stats s;
    writer_get_stats(wr, &s);
    cr_expect_eq(s.queue_depth, 2);

    open_gate();
    cr_assert(wait_for(&done_total, 3));
    cr_expect_eq(a.j.status, WRITE_STORED);
    cr_expect_eq(b.j.status, WRITE_STORED);
    /* there is room again */
    cr_expect_eq(submit(&c), 0);
    cr_assert(wait_for(&done_total, 4));
    writer_stop(wr);
    cr_expect_eq(calls_of(&c), 1);
    cr_expect_eq(rows_at(T(4)), 1);
}

Test(writer, publishes_only_committed_normal_non_late_readings)
{
    start_writer(16, 8, DAY);
    struct tjob a, b, f, d;
    tjob_init(&a, NULL, NULL);
    tjob_add(&a, 25, T(10)); /* normal */
    cr_assert_eq(submit(&a), 0);
    cr_assert(wait_for(&done_total, 1));

    tjob_init(&b, NULL, NULL);
    tjob_add(&b, 35, T(12));   /* warning */
    tjob_add(&b, 25.5, T(5));  /* late normal */
    tjob_add(&b, 26.5, T(13)); /* normal */
    tjob_add(&b, 45, T(11));   /* alert */
    cr_assert_eq(submit(&b), 0);
    cr_assert(wait_for(&done_total, 2));

    tjob_init(&f, "pf", "rf");
    tjob_add(&f, 27, T(14));                                         /* normal, but the job fails */
    store_fault_set_sticky(fst, STORE_FAULT_PACKET_PUT, 1, IOT_EDB); /* both passes */
    cr_assert_eq(submit(&f), 0);
    cr_assert(wait_for(&done_total, 3));
    store_fault_clear(fst, STORE_FAULT_PACKET_PUT);
    cr_expect_eq(f.j.status, WRITE_FAILED);
    cr_expect_eq(f.j.err, IOT_EDB);

    tjob_init(&d, NULL, NULL);
    tjob_add(&d, 28, T(15));
    cr_assert_eq(submit(&d), 0);
    cr_assert(wait_for(&done_total, 4));
    cr_assert(wait_msgs(3));

    writer_stop(wr);
    struct writer_stats s;
    writer_get_stats(wr, &s);
    cr_expect_eq(s.published, 3);
    broker_destroy(bus); /* delivers everything queued */
    bus = NULL;
    cr_assert_eq(nmsgs, 3);
    const double want_v[] = {25, 26.5, 28};
    const int64_t want_ts[] = {T(10), T(13), T(15)};
    for (size_t i = 0; i < 3; i++) {
        cr_expect_eq(msgs[i].value, want_v[i], "message %zu: value %g", i, msgs[i].value);
        cr_expect_eq(msgs[i].ts_ms, want_ts[i]);
        cr_expect_str_eq(msgs[i].cls, "normal");
        cr_expect_str_eq(msgs[i].sensor_uuid, "s-1");
        cr_expect_str_eq(msgs[i].device_uuid, "dev-1");
        cr_expect_eq(msgs[i].sensor_id, sensor_id);
    }
    cr_expect_eq(rows_at(T(14)), 0);
}

struct stopper {
    pthread_t th;
    int done;
};

static void *stop_thread(void *arg)
{
    struct stopper *s = arg;
    writer_stop(wr);
    pthread_mutex_lock(&mu);
    s->done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return NULL;
}

Test(writer, stop_drains_the_queue)
{
    start_writer(16, 2, DAY);
    struct tjob g, j[5];
    hold_writer(&g, T(1));
    for (int i = 0; i < 5; i++) {
        tjob_init(&j[i], NULL, NULL);
        tjob_add(&j[i], 25, T(10 + i));
        cr_assert_eq(submit(&j[i]), 0);
    }
    struct stopper s = {0};
    cr_assert_eq(pthread_create(&s.th, NULL, stop_thread, &s), 0);
    /*
     * Wait until the writer refuses new work (stop has begun) before letting
     * it go on, so that stop really finds jobs queued. A probe accepted
     * before that is queued work like any other and must be written too.
     */
    enum { PROBES = 16 }; /* the queue's size: more can never be accepted while parked */
    struct tjob probe[PROBES];
    int queued = 0, rc = 0;
    struct timespec pause = {0, 1000000L};
    int64_t give_up = clock_mono_ms() + DEADLINE_MS;
    while (queued < PROBES) {
        tjob_init(&probe[queued], NULL, NULL);
        tjob_add(&probe[queued], 25, T(100 + queued));
        rc = submit(&probe[queued]);
        if (rc == 0)
            queued++;
        else if (rc != IOT_EFULL) /* full: the writer is parked, retry until stop begins */
            break;
        if (clock_mono_ms() > give_up) break;
        nanosleep(&pause, NULL);
    }
    cr_expect_eq(rc, IOT_ESHUTDOWN, "submit never refused for shutdown: %s (%d accepted)",
                 iot_strerror(rc), queued);
    open_gate();
    cr_assert(wait_for(&s.done, 1), "writer_stop never returned");
    pthread_join(s.th, NULL);
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(calls_of(&j[i]), 1, "job %d not finished by stop", i);
        cr_expect_eq(j[i].j.status, WRITE_STORED);
        cr_expect_eq(rows_at(T(10 + i)), 1);
    }
    for (int i = 0; i < queued; i++)
        cr_expect_eq(calls_of(&probe[i]), 1, "probe %d accepted but never finished", i);
    /* after stop: refused, and done() is never called */
    struct tjob late;
    tjob_init(&late, NULL, NULL);
    tjob_add(&late, 25, T(200));
    cr_expect_eq(submit(&late), IOT_ESHUTDOWN);
    writer_stop(wr); /* twice is harmless */
    cr_expect_eq(calls_of(&late), 0);
    writer_destroy(NULL);
}

/*
 * Replays the stored non-late readings through the rules of SPEC §4
 * (ALERT_CLEAR_AFTER = 1, no delta) and checks that the threshold alerts and
 * their notifications in the database are exactly what they imply.
 */
struct model_alert {
    int64_t triggered_at, last_seen_at, hit_count, resolved_at;
    int critical, escalated, active;
};

static void expect_alerts_match_readings(int iteration)
{
    enum { MAXA = 256 };
    static struct model_alert want[MAXA];
    int nwant = 0, cur = -1;
    sqlite3_stmt *q;
    cr_assert_eq(sqlite3_prepare_v2(peer,
                                    "SELECT ts, class FROM sensor_readings WHERE late = 0"
                                    " ORDER BY ts, id",
                                    -1, &q, NULL),
                 SQLITE_OK);
    while (sqlite3_step(q) == SQLITE_ROW) {
        int64_t ts = sqlite3_column_int64(q, 0);
        enum reading_class c = reading_class_parse((const char *)sqlite3_column_text(q, 1));
        if (c == CLASS_WARNING || c == CLASS_ALERT) {
            if (cur < 0) {
                cr_assert_lt(nwant, MAXA);
                cur = nwant++;
                want[cur] = (struct model_alert){ts, ts, 1, 0, c == CLASS_ALERT, 0, 1};
            } else {
                want[cur].hit_count++;
                want[cur].last_seen_at = ts;
                if (c == CLASS_ALERT && !want[cur].critical)
                    want[cur].critical = want[cur].escalated = 1;
            }
        } else if (c == CLASS_NORMAL && cur >= 0) {
            want[cur].resolved_at = ts;
            want[cur].active = 0;
            cur = -1;
        }
    }
    sqlite3_finalize(q);

    cr_assert_eq(sqlite3_prepare_v2(peer,
                                    "SELECT id, triggered_at, last_seen_at, hit_count, severity,"
                                    " status, resolved_at FROM alerts WHERE kind = 'threshold'"
                                    " ORDER BY id",
                                    -1, &q, NULL),
                 SQLITE_OK);
    int i = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        if (i >= nwant) {
            cr_expect_fail("iteration %d: alert #%d has no readings to explain it", iteration, i);
            break;
        }
        const struct model_alert *m = &want[i];
        int64_t id = sqlite3_column_int64(q, 0);
        cr_expect_eq(sqlite3_column_int64(q, 1), m->triggered_at, "it %d alert %d triggered_at",
                     iteration, i);
        cr_expect_eq(sqlite3_column_int64(q, 2), m->last_seen_at, "it %d alert %d last_seen_at",
                     iteration, i);
        cr_expect_eq(sqlite3_column_int64(q, 3), m->hit_count, "it %d alert %d hit_count",
                     iteration, i);
        cr_expect_str_eq((const char *)sqlite3_column_text(q, 4),
                         m->critical ? "critical" : "warning", "it %d alert %d severity", iteration,
                         i);
        cr_expect_str_eq((const char *)sqlite3_column_text(q, 5), m->active ? "active" : "resolved",
                         "it %d alert %d status", iteration, i);
        if (!m->active)
            cr_expect_eq(sqlite3_column_int64(q, 6), m->resolved_at, "it %d alert %d resolved_at",
                         iteration, i);
        cr_expect_eq(db_int(peer,
                            "SELECT count(*) FROM alert_notifications WHERE alert_id = %lld"
                            " AND event = 'triggered'",
                            (long long)id),
                     1, "it %d alert %d", iteration, i);
        cr_expect_eq(db_int(peer,
                            "SELECT count(*) FROM alert_notifications WHERE alert_id = %lld"
                            " AND event = 'escalated'",
                            (long long)id),
                     m->escalated, "it %d alert %d escalated", iteration, i);
        cr_expect_eq(db_int(peer,
                            "SELECT count(*) FROM alert_notifications WHERE alert_id = %lld"
                            " AND event = 'resolved'",
                            (long long)id),
                     !m->active, "it %d alert %d resolved", iteration, i);
        i++;
    }
    sqlite3_finalize(q);
    cr_expect_eq(i, nwant, "iteration %d: %d alerts stored, the readings imply %d", iteration, i,
                 nwant);
}

/*
 * Fails each database call of a batch in turn (the Nth call for N = 1, 2, ...
 * until the batch makes fewer than N calls) and checks after every batch that
 * what done() reported is exactly what the database holds, and that no
 * rolled-back reading left a trace in the writer's memory: every batch's
 * readings are newer than the previous batch's, so a reading stored late
 * could only be measured against a reading that was rolled back.
 */
Test(writer, fault_sweep_over_every_call_of_a_batch)
{
    start_writer(16, 8, DAY);
    const double values[3] = {35, 25, 45}; /* warning (opens), normal (resolves), critical */
    int total = 0, n;
    for (n = 1; n <= 200; n++) {
        struct tjob g, j[3];
        hold_writer(&g, T(n * 100));
        total++;
        for (int k = 0; k < 3; k++) {
            char pid[32];
            snprintf(pid, sizeof pid, "sweep-%d-%d", n, k);
            tjob_init(&j[k], pid, "r");
            tjob_add(&j[k], values[k], T(n * 100 + 10 + k));
            cr_assert_eq(submit(&j[k]), 0);
        }
        uint64_t before = store_fault_injected(fst);
        store_fault_set(fst, STORE_FAULT_ANY, n, IOT_EBUSY);
        open_gate();
        cr_assert(wait_for(&done_total, total + 3), "iteration %d: jobs never finished", n);
        total += 3;
        store_fault_clear_all(fst);
        int fired = store_fault_injected(fst) > before;
        for (int k = 0; k < 3; k++) {
            struct tjob *t = &j[k];
            cr_expect_eq(calls_of(t), 1, "n=%d job %d: done() calls", n, k);
            if (t->j.status == WRITE_STORED) {
                cr_expect_eq(t->rows, 1, "n=%d job %d: stored but no reading", n, k);
                cr_expect_eq(t->pkt, 1, "n=%d job %d: stored but no packet id", n, k);
            } else {
                cr_expect_eq(t->j.status, WRITE_FAILED, "n=%d job %d: status %d", n, k,
                             t->j.status);
                cr_expect_eq(t->j.err, IOT_EBUSY, "n=%d job %d: err %d", n, k, t->j.err);
                cr_expect_eq(rows_at(t->ts0), 0, "n=%d job %d: failed but stored", n, k);
                cr_expect_eq(t->pkt, 0, "n=%d job %d: failed but packet id kept", n, k);
            }
            cr_expect(fired || t->j.status == WRITE_STORED, "n=%d job %d failed with no fault", n,
                      k);
        }
        cr_expect_eq(db_int(peer, "SELECT count(*) FROM sensor_readings WHERE late = 1"), 0,
                     "n=%d: a rolled-back reading made a later one late", n);
        expect_alerts_match_readings(n);
        if (!fired) break; /* the batch made fewer than n calls: every call was swept */
    }
    cr_log_info("fault sweep: %d calls per batch", n - 1);
    cr_expect_gt(n, 10, "a batch of three jobs made only %d calls", n - 1);
    cr_expect_leq(n, 200);
    cr_expect_eq(db_int(peer, "SELECT count(*) FROM alerts WHERE status = 'active' AND"
                              " kind = 'threshold'") <= 1,
                 1);
    cr_expect_eq(db_int(peer, "SELECT last_ts FROM sensor_state WHERE sensor_id = %lld",
                        (long long)sensor_id),
                 db_int(peer, "SELECT max(ts) FROM sensor_readings WHERE sensor_id = %lld",
                        (long long)sensor_id));
    writer_stop(wr);
    struct writer_stats s;
    writer_get_stats(wr, &s);
    cr_expect_eq(s.jobs, (uint64_t)total);
}
