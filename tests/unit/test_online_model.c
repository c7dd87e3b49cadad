/*
 * Unit tests for the online ML consumer's pure parts and its store path:
 * the EWMA model (src/jobs/online_model.c), the broker message format
 * (src/broker/broker_msg.c), BROKER_URL parsing for NATS
 * (src/broker/nats_conn.c), and online_apply_reading
 * (src/jobs/online_consumer.c) on a real SQLite file: applied once, a
 * redelivery skipped, a prediction every N readings.
 */
#include "broker/broker_msg.h"
#include "broker/nats_int.h"
#include "core/err.h"
#include "jobs/online_consumer.h"
#include "jobs/online_model.h"
#include "store/store.h"
#include "sqlite_peer.h"

#include <criterion/criterion.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T0 1700000000000LL

/* ---- the model ----------------------------------------------------------- */

Test(online_model, first_reading_sets_the_level)
{
    struct online_model m = {0};
    struct online_result r;
    online_model_update(&m, 42.5, 0.1, 3, &r);
    cr_expect_eq(m.count, 1);
    cr_expect_float_eq(m.mean, 42.5, 1e-12);
    cr_expect_float_eq(m.var, 0, 1e-12);
    cr_expect_float_eq(r.predicted, 42.5, 1e-12);
    cr_expect_float_eq(r.confidence, 1, 1e-12);
    cr_expect_float_eq(r.z, 0, 1e-12);
    cr_expect_float_eq(r.score, 0, 1e-12);
    cr_expect_not(r.is_anomaly);
}

Test(online_model, matches_the_documented_recurrence)
{
    const double a = 0.25, xs[] = {10, 12, 9, 11, 30, 10};
    struct online_model m = {0};
    double mean = 0, var = 0;
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        online_model_update(&m, xs[i], a, 3, NULL);
        if (i == 0) {
            mean = xs[0];
        } else {
            double d = xs[i] - mean;
            mean += a * d;
            var = (1 - a) * (var + a * d * d);
        }
        cr_expect_float_eq(m.mean, mean, 1e-9, "step %zu", i);
        cr_expect_float_eq(m.var, var, 1e-9, "step %zu", i);
    }
    cr_expect_eq(m.count, 6);
}

Test(online_model, flat_series_scores_zero)
{
    struct online_model m = {0};
    struct online_result r;
    for (int i = 0; i < 50; i++) {
        online_model_update(&m, 7.0, 0.1, 3, &r);
        cr_expect_float_eq(r.score, 0, 1e-12);
        cr_expect_not(r.is_anomaly);
    }
    cr_expect_float_eq(r.predicted, 7.0, 1e-12);
    cr_expect_float_eq(r.confidence, 1, 1e-12);
}

Test(online_model, far_outlier_is_an_anomaly)
{
    struct online_model m = {0};
    struct online_result r;
    for (int i = 0; i < 40; i++)
        online_model_update(&m, 20.0 + (i % 2 ? 0.5 : -0.5), 0.1, 3, &r);
    cr_expect_not(r.is_anomaly);
    online_model_update(&m, 80.0, 0.1, 3, &r);
    cr_expect(r.is_anomaly, "z = %g", r.z);
    cr_expect_gt(r.score, 0.9);
    cr_expect_leq(r.score, 1.0);
    /* flat then a jump: variance 0, z infinite, score exactly 1, never NaN */
    struct online_model f = {0};
    for (int i = 0; i < 10; i++)
        online_model_update(&f, 5.0, 0.1, 3, NULL);
    online_model_update(&f, 6.0, 0.1, 3, &r);
    cr_expect(isinf(r.z));
    cr_expect_float_eq(r.score, 1.0, 1e-12);
    cr_expect(r.is_anomaly);
    cr_expect(isfinite(r.predicted) && isfinite(r.confidence));
}

Test(online_model, no_score_during_warmup)
{
    struct online_model m = {0};
    struct online_result r;
    online_model_update(&m, 1, 0.5, 3, &r);
    for (int i = 1; i < ONLINE_WARMUP; i++) {
        online_model_update(&m, i % 2 ? 1000 : 1, 0.5, 3, &r);
        cr_expect_float_eq(r.z, 0, 1e-12, "reading %d", i);
    }
}

Test(online_model, alpha_one_follows_the_last_reading)
{
    struct online_model m = {0};
    online_model_update(&m, 3, 1.0, 3, NULL);
    online_model_update(&m, 9, 1.0, 3, NULL);
    cr_expect_float_eq(m.mean, 9, 1e-12);
    cr_expect_float_eq(m.var, 0, 1e-12);
}

Test(online_model, huge_values_stay_finite)
{
    struct online_model m = {0};
    struct online_result r;
    online_model_update(&m, 1e308, 0.5, 3, &r);
    online_model_update(&m, -1e308, 0.5, 3, &r);
    online_model_update(&m, 1e308, 0.5, 3, &r);
    cr_expect(!isnan(m.mean) && !isnan(m.var) && !isnan(r.score) && !isnan(r.confidence));
}

/* ---- message format ------------------------------------------------------ */

static struct broker_reading sample(void)
{
    struct broker_reading r;
    memset(&r, 0, sizeof r);
    r.sensor_id = 42;
    snprintf(r.sensor_uuid, sizeof r.sensor_uuid, "sen-\"q\"-ü");
    snprintf(r.device_uuid, sizeof r.device_uuid, "dev-1");
    r.value = 0.1 + 0.2; /* not exactly representable in short decimal */
    r.ts_ms = T0 + 123;
    snprintf(r.cls, sizeof r.cls, "normal");
    return r;
}

Test(broker_msg, round_trip_and_fields)
{
    struct broker_reading r = sample(), back;
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(broker_msg_encode(&r, &text, &len), 0);
    cr_expect_eq(strlen(text), len);
    cr_expect_not_null(strstr(text, "\"v\":1"), "%s", text);
    cr_expect_not_null(strstr(text, "\"ts\":\"2023-11-14T22:13:20.123Z\""), "%s", text);
    cr_expect_not_null(strstr(text, "\"ts_ms\":1700000000123"), "%s", text);
    cr_expect_not_null(strstr(text, "\"class\":\"normal\""), "%s", text);
    cr_assert_eq(broker_msg_decode(text, len, &back), 0);
    cr_expect_eq(back.sensor_id, 42);
    cr_expect_eq(back.ts_ms, r.ts_ms);
    cr_expect(back.value == r.value, "value %.17g != %.17g", back.value, r.value);
    cr_expect_str_eq(back.sensor_uuid, r.sensor_uuid);
    cr_expect_str_eq(back.device_uuid, "dev-1");
    cr_expect_str_eq(back.cls, "normal");
    free(text);

    char id[BROKER_MSG_ID_LEN];
    broker_msg_id(&r, id);
    cr_expect_str_eq(id, "42-1700000000123");
}

Test(broker_msg, rejects_bad_messages)
{
    struct broker_reading out;
    const char *bad[] = {
        "",
        "[]",
        "{\"sensor_id\":1,\"value\":1}",
        "{\"sensor_id\":\"1\",\"value\":1,\"ts_ms\":5}",
        "{\"sensor_id\":1,\"value\":\"x\",\"ts_ms\":5}",
        "{\"sensor_id\":0,\"value\":1,\"ts_ms\":5}",
        "{\"sensor_id\":1,\"value\":1,\"ts_ms\":5,\"class\":\"much-too-long\"}",
        "{\"sensor_id\":1,\"value\":1,\"ts_ms\":5,\"sensor_id\":2}",
        "{\"sensor_id\":1,\"value\":1,\"ts_ms\":5",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(broker_msg_decode(bad[i], strlen(bad[i]), &out), IOT_EINVAL, "%s", bad[i]);
    const char *ok = "{\"sensor_id\":7,\"value\":1.5,\"ts_ms\":9,\"extra\":[1,2]}";
    cr_expect_eq(broker_msg_decode(ok, strlen(ok), &out), 0);
    cr_expect_eq(out.sensor_id, 7);
    cr_expect_str_eq(out.cls, "");

    struct broker_reading r = sample();
    char *text = (char *)1;
    size_t len = 1;
    r.value = NAN;
    cr_expect_eq(broker_msg_encode(&r, &text, &len), IOT_EINVAL);
    cr_expect_null(text);
}

/* ---- BROKER_URL ----------------------------------------------------------- */

Test(nats_url, parses_and_masks)
{
    struct nats_target t;
    char err[256];
    cr_assert_eq(nats_target_parse("nats://127.0.0.1:4222/iot.readings", &t, err, sizeof err), 0,
                 "%s", err);
    cr_expect_str_eq(t.server, "nats://127.0.0.1:4222");
    cr_expect_str_eq(t.subject, "iot.readings");
    cr_assert_eq(nats_target_parse("nats://bus", &t, err, sizeof err), 0);
    cr_expect_str_eq(t.subject, NATS_DEFAULT_SUBJECT);
    cr_assert_eq(nats_target_parse("nats://u:s3cret@bus:4222/a-b.c_d", &t, err, sizeof err), 0);
    cr_expect_str_eq(t.server, "nats://u:s3cret@bus:4222");
    cr_expect_str_eq(t.shown, "nats://***@bus:4222");
    cr_expect_str_eq(t.subject, "a-b.c_d");

    const char *bad[] = {"nats://",      "nats:///x",          "http://bus/x",  "nats://bus/a.*",
                         "nats://bus/>", "nats://bus/a..b",    "nats://bus/a.", "nats://bus/a b",
                         "nats://bus?x", "nats://u:s3cret@/x", "nats://b us/x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_expect_eq(nats_target_parse(bad[i], &t, err, sizeof err), IOT_EINVAL, "%s", bad[i]);
        cr_expect_null(strstr(err, "s3cret"), "%s", err);
        cr_expect_neq(err[0], '\0', "%s: no message", bad[i]);
    }
    cr_expect(nats_stream_name_ok("IOT_READINGS"));
    cr_expect_not(nats_stream_name_ok("a.b"));
    cr_expect_not(nats_stream_name_ok(""));
    cr_expect_not(nats_stream_name_ok("a*"));
}

/* ---- applying readings through the store --------------------------------- */

static char dir[64], path[128];
static struct store *st;
static sqlite3 *peer;

static void setup(void)
{
    char url[160], err[IOT_ERRBUF] = "";
    const struct store_open_opts o = {.busy_timeout_ms = 5000, .cache_mb = 8};
    unsigned char hash[STORE_KEY_HASH_LEN] = {0};
    int64_t dev = 0, sid = 0;

    snprintf(dir, sizeof dir, "/tmp/iot-online-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    cr_assert_eq(store_open(url, &o, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq(store_schema_init(st), 0, "%s", store_errmsg(st));
    cr_assert_eq(store_device_add(st, "d1", "dev", hash, T0, &dev), 0, "%s", store_errmsg(st));
    cr_assert_eq(store_sensor_add(st, "d1", "s1", "s", "t", "C", T0, &sid, &dev), 0, "%s",
                 store_errmsg(st));
    cr_assert_eq(sid, 1);
    cr_assert_eq(sqlite3_open(path, &peer), SQLITE_OK);
}

static void teardown(void)
{
    store_close(st);
    sqlite3_close(peer);
    rm_db_files(path);
    rmdir(dir);
}

/* -1 when there is no row, -2 for NULL (every count(*) below is never NULL). */
#define q_int(...) sqlite_peer_int(peer, __VA_ARGS__)

TestSuite(online_apply, .init = setup, .fini = teardown);

static struct online_opts opts(int64_t every)
{
    struct online_opts o = {0.2, 3, every, 10, 0, "unit"};
    return o;
}

static struct broker_reading reading_at(int64_t i, double v)
{
    struct broker_reading r;
    memset(&r, 0, sizeof r);
    r.sensor_id = 1;
    r.value = v;
    r.ts_ms = T0 + i * 1000;
    snprintf(r.cls, sizeof r.cls, "normal");
    return r;
}

Test(online_apply, applies_once_and_predicts_every_n)
{
    struct online_opts o = opts(3);
    enum online_outcome out;
    cr_assert_eq(online_model_id(st, &o, T0, &o.model_id), 0, "%s", store_errmsg(st));
    int64_t again = 0;
    cr_assert_eq(online_model_id(st, &o, T0, &again), 0);
    cr_expect_eq(again, o.model_id, "the model row is created once");

    for (int64_t i = 1; i <= 7; i++) {
        struct broker_reading r = reading_at(i, 10.0 + (double)i);
        cr_assert_eq(online_apply_reading(st, &o, "S@1", (uint64_t)i, &r, T0 + i, &out), 0, "%s",
                     store_errmsg(st));
        cr_expect_eq(out, i % 3 == 0 ? ONLINE_PREDICTED : ONLINE_APPLIED, "reading %lld",
                     (long long)i);
    }
    cr_expect_eq(q_int("SELECT count FROM online_state WHERE sensor_id = 1"), 7);
    cr_expect_eq(q_int("SELECT last_ts FROM online_state WHERE sensor_id = 1"), T0 + 7000);
    cr_expect_eq(q_int("SELECT count(*) FROM consumer_applied"), 7);
    cr_expect_eq(q_int("SELECT count(*) FROM predictions"), 2);
    cr_expect_eq(q_int("SELECT min(target_ts) FROM predictions"), T0 + 3000 + 10 * 60000);
    cr_expect_eq(q_int("SELECT count(*) FROM ml_models WHERE name = 'online_ewma'"), 1);

    /* a redelivery of message 5: recognised, nothing changes */
    struct broker_reading r5 = reading_at(5, 99);
    cr_assert_eq(online_apply_reading(st, &o, "S@1", 5, &r5, T0, &out), 0);
    cr_expect_eq(out, ONLINE_DUPLICATE);
    cr_expect_eq(q_int("SELECT count FROM online_state WHERE sensor_id = 1"), 7);
    cr_expect_eq(q_int("SELECT count(*) FROM consumer_applied"), 7);

    /* the same sequence in a recreated stream is another message */
    cr_assert_eq(online_apply_reading(st, &o, "S@2", 5, &r5, T0, &out), 0);
    cr_expect_eq(out, ONLINE_APPLIED);
    cr_expect_eq(q_int("SELECT count FROM online_state WHERE sensor_id = 1"), 8);
}

Test(online_apply, failure_leaves_nothing_behind)
{
    struct online_opts o = opts(1);
    enum online_outcome out;
    cr_assert_eq(online_model_id(st, &o, T0, &o.model_id), 0);
    /* sensor 99 does not exist: its prediction row breaks the foreign key */
    struct broker_reading r = reading_at(1, 1.0);
    r.sensor_id = 99;
    int rc = online_apply_reading(st, &o, "S@1", 1, &r, T0, &out);
    cr_expect(rc != 0 && !iot_err_retryable(rc), "%s: %s", iot_strerror(rc), store_errmsg(st));
    cr_expect_eq(q_int("SELECT count(*) FROM consumer_applied"), 0);
    cr_expect_eq(q_int("SELECT count(*) FROM online_state"), 0);
    /* and the connection is usable afterwards */
    r.sensor_id = 1;
    cr_expect_eq(online_apply_reading(st, &o, "S@1", 1, &r, T0, &out), 0, "%s", store_errmsg(st));
    cr_expect_eq(out, ONLINE_PREDICTED);
}

Test(online_apply, prune_forgets_up_to_the_floor)
{
    struct online_opts o = opts(1000);
    enum online_outcome out;
    int64_t removed = -1;
    cr_assert_eq(online_model_id(st, &o, T0, &o.model_id), 0);
    for (int64_t i = 1; i <= 5; i++) {
        struct broker_reading r = reading_at(i, 1.0);
        cr_assert_eq(online_apply_reading(st, &o, "S@1", (uint64_t)i, &r, T0, &out), 0);
    }
    cr_assert_eq(store_tx_begin(st), 0);
    cr_assert_eq(store_online_prune(st, "S@1", 3, &removed), 0);
    cr_assert_eq(store_tx_commit(st), 0);
    cr_expect_eq(removed, 3);
    cr_expect_eq(q_int("SELECT min(seq) FROM consumer_applied"), 4);

    struct store_online_state s;
    int applied = -1;
    cr_assert_eq(store_tx_begin(st), 0);
    cr_expect_eq(store_online_load(st, "S@1", 4, 1, &s, &applied), 0);
    cr_expect_eq(applied, 1);
    cr_expect_eq(store_online_load(st, "S@1", 6, 1, &s, &applied), 0);
    cr_expect_eq(applied, 0);
    cr_expect_eq(s.count, 5);
    cr_expect_eq(store_online_load(st, "S@1", 6, 2, &s, &applied), 0);
    cr_expect_eq(s.count, 0, "a sensor without state starts empty");
    cr_expect_eq(store_online_load(st, "S@1", (uint64_t)INT64_MAX + 1, 1, &s, &applied),
                 IOT_EINVAL);
    cr_assert_eq(store_tx_rollback(st), 0);
}
