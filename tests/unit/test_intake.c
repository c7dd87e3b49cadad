/*
 * The front door (src/ingest/intake.c) without a transport: keys and their
 * failed-authentication budgets, the device limit, and a packet's verdict
 * down to the bytes of its answer.
 */
#include <criterion/criterion.h>

#include "core/config.h"
#include "core/err.h"
#include "core/secret.h"
#include "ingest/intake.h"

#include <stdlib.h>
#include <string.h>

#define DEV_KEY "device-key-0123456789"
#define API_KEY "api-key-0123456789abcdef"

static struct config cfg;
static struct intake *in;
static struct store_device dev;

static void setup(void)
{
    cr_assert_eq(config_init(&cfg), 0);
    cfg.auth_fail_rps = 0.001; /* a spent budget stays spent during the test */
    cfg.auth_fail_burst = 2;
    cfg.auth_fail_addr_factor = 1; /* the address's budget: as loose as a pair's */
    cfg.rate_limit_device_rps = 0.001;
    cfg.rate_limit_burst = 1;
    free(cfg.api_key); /* config_fini frees the string settings */
    cfg.api_key = strdup(API_KEY);
    cr_assert_eq(intake_create(&cfg, &in), 0);
    memset(&dev, 0, sizeof dev);
    dev.id = 7;
    snprintf(dev.uuid, sizeof dev.uuid, "dev-1");
    dev.is_active = 1;
    secret_hash(DEV_KEY, strlen(DEV_KEY), dev.key_hash);
}

static void teardown(void)
{
    intake_destroy(in);
    config_fini(&cfg);
}

static struct intake_claim claim(const char *addr, const char *device_uuid, const char *key,
                                 const char *api)
{
    return (struct intake_claim){addr, device_uuid,           key, key ? strlen(key) : 0,
                                 api,  api ? strlen(api) : 0, 0,   NULL};
}

TestSuite(intake, .init = setup, .fini = teardown);

Test(intake, keys_decide_and_failures_spend_the_pair_then_the_address)
{
    int retry;
    struct intake_claim ok = claim("10.0.0.1", "dev-1", DEV_KEY, NULL);
    cr_expect_eq(intake_authenticate(in, &ok, &dev, &retry), INTAKE_AUTH_OK);
    struct intake_claim api = claim("10.0.0.1", "dev-1", NULL, API_KEY);
    cr_expect_eq(intake_authenticate(in, &api, &dev, &retry), INTAKE_AUTH_OK);
    dev.is_active = 0;
    cr_expect_eq(intake_authenticate(in, &ok, &dev, &retry), INTAKE_AUTH_INACTIVE);
    dev.is_active = 1;
    /* A valid API key naming an unknown device spends no budget. */
    cr_expect_eq(intake_authenticate(in, &api, NULL, &retry), INTAKE_AUTH_DENIED);
    cr_expect_eq(retry, 0);
    cr_expect_eq(intake_locked_out(in, &api), 0);

    /* Two wrong keys spend the pair (burst 2) ... */
    struct intake_claim bad = claim("10.0.0.2", "dev-1", "wrong-key-0123456789", NULL);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(intake_authenticate(in, &bad, &dev, &retry), INTAKE_AUTH_DENIED);
        cr_expect_eq(retry, 0);
    }
    cr_expect_gt(intake_locked_out(in, &bad), 0);
    /* ... so even the right key from that address is locked out for that pair, */
    struct intake_claim right = claim("10.0.0.2", "dev-1", DEV_KEY, NULL);
    cr_expect_gt(intake_locked_out(in, &right), 0);
    /* not another device's pair, nor another address. */
    struct intake_claim other = claim("10.0.0.2", "dev-2", "wrong-key-0123456789", NULL);
    cr_expect_eq(intake_locked_out(in, &other), 0);
    cr_expect_eq(intake_locked_out(in, &ok), 0);
    /* A fresh pair's first failure past the address's budget: refused with a delay. */
    cr_expect_eq(intake_authenticate(in, &other, NULL, &retry), INTAKE_AUTH_DENIED);
    cr_expect_gt(retry, 0, "the address budget is spent");
    cr_expect_gt(intake_locked_out(in, &other), 0, "and the pair emptied at once");

    struct intake_metrics *m = intake_metrics(in);
    cr_expect_eq(atomic_load(&m->auth_failures), 4,
                 "the API key with an unknown device counts too");
    cr_expect_eq(atomic_load(&m->rate_limited_auth), 4, "three lockouts seen, one refusal");
}

Test(intake, a_client_certificate_decides_alone)
{
    int retry;
    struct intake_cert cert = {"dev-1", NULL, 0};
    /* A certificate naming the device needs no key; a wrong key does not spoil it. */
    struct intake_claim c = claim("10.0.0.4", "dev-1", NULL, NULL);
    c.cert = &cert;
    cr_expect_eq(intake_authenticate(in, &c, &dev, &retry), INTAKE_AUTH_OK);
    c.device_key = "wrong-key-0123456789", c.device_key_len = 20;
    cr_expect_eq(intake_authenticate(in, &c, &dev, &retry), INTAKE_AUTH_OK);
    dev.is_active = 0;
    cr_expect_eq(intake_authenticate(in, &c, &dev, &retry), INTAKE_AUTH_INACTIVE);
    dev.is_active = 1;
    /* Naming another device, or refused: denied even with the right key. */
    struct intake_claim k = claim("10.0.0.4", "dev-1", DEV_KEY, NULL);
    struct intake_cert other = {"dev-2", NULL, 0}, refused = {"", "expired", 0};
    k.cert = &other;
    cr_expect_eq(intake_authenticate(in, &k, &dev, &retry), INTAKE_AUTH_DENIED);
    k.cert = &refused;
    cr_expect_eq(intake_authenticate(in, &k, &dev, &retry), INTAKE_AUTH_DENIED);
    /* No certificate: the key, unless one is required; the API key either way. */
    struct intake_cert none = {"", NULL, 0}, required = {"", NULL, 1};
    k.cert = &none;
    cr_expect_eq(intake_authenticate(in, &k, &dev, &retry), INTAKE_AUTH_OK);
    k.cert = &required;
    cr_expect_eq(intake_authenticate(in, &k, &dev, &retry), INTAKE_AUTH_DENIED);
    struct intake_claim api = claim("10.0.0.5", "dev-1", NULL, API_KEY);
    api.cert = &required;
    cr_expect_eq(intake_authenticate(in, &api, &dev, &retry), INTAKE_AUTH_OK);
}

Test(intake, the_api_key_alone_on_legacy_routes)
{
    struct intake_claim c = claim("10.0.0.3", "", "whatever-device-key", API_KEY);
    cr_expect(intake_api_key_ok(in, &c));
    c.api_only = 1;
    int retry;
    intake_failed(in, &c, &retry);
    intake_failed(in, &c, &retry);
    cr_expect_gt(intake_locked_out(in, &c), 0, "the API-key pair is spent");
    c.api_only = 0;
    c.api_key = NULL;
    cr_expect_eq(intake_locked_out(in, &c), 0, "the device pair was never claimed");
}

Test(intake, device_limit)
{
    int retry;
    cr_expect_eq(intake_device_take(in, 7, &retry), 1);
    cr_expect_eq(intake_device_take(in, 7, &retry), 0);
    cr_expect_geq(retry, 1);
    cr_expect_eq(intake_device_take(in, 8, &retry), 1, "another device has its own bucket");
    cr_expect_eq(atomic_load(&intake_metrics(in)->rate_limited_device), 1);
}

Test(intake, verdict_and_answer_text)
{
    struct store_sensor sensors[2];
    memset(sensors, 0, sizeof sensors);
    sensors[0].id = 11, sensors[0].device_id = 7, sensors[0].is_active = 1;
    snprintf(sensors[0].uuid, sizeof sensors[0].uuid, "s-a");
    sensors[1].id = 12, sensors[1].device_id = 7, sensors[1].is_active = 0;
    snprintf(sensors[1].uuid, sizeof sensors[1].uuid, "s-b");
    struct device_ref ref = {dev, sensors, 2};

    const char *body = "{\"device_uuid\":\"dev-1\",\"readings\":["
                       "{\"sensor_uuid\":\"s-a\",\"value\":1.5},"
                       "{\"sensor_uuid\":\"s-b\",\"value\":2},"
                       "{\"sensor_uuid\":\"q\\\"\\\\\\u0001\",\"value\":3},"
                       "{\"value\":4},"
                       "{\"sensor_uuid\":\"s-a\",\"value\":\"5\"},"
                       "{\"sensor_uuid\":\"s-a\",\"value\":6,\"ts\":\"yesterday\"}]}";
    struct decoded_packet p;
    char detail[128];
    const char *code;
    cr_assert_eq(packet_decode(body, strlen(body), 100, &p, detail, sizeof detail, &code), 0, "%s",
                 detail);
    struct intake_verdict v;
    cr_assert_eq(intake_judge(in, &p, &ref, 1795798800000, &v), 0);
    cr_expect_eq(v.nvalid, 1);
    cr_expect_eq(v.readings[0].sensor_id, 11);
    cr_expect_eq(v.readings[0].device_id, 7);
    cr_expect_eq(v.readings[0].value, 1.5);
    cr_expect_eq(v.readings[0].ts, 1795798800000, "no ts: the receive time");
    cr_expect(v.readings[0].stamped);
    cr_expect_str_eq(v.answer.p,
                     "{\"device_uuid\":\"dev-1\",\"accepted\":1,\"rejected\":["
                     "{\"index\":1,\"sensor_uuid\":\"s-b\",\"reason\":\"unknown_sensor\"},"
                     "{\"index\":2,\"sensor_uuid\":\"q\\\"\\\\\\u0001\","
                     "\"reason\":\"unknown_sensor\"},"
                     "{\"index\":3,\"sensor_uuid\":null,\"reason\":\"unknown_sensor\"},"
                     "{\"index\":4,\"sensor_uuid\":\"s-a\",\"reason\":\"invalid_value\"},"
                     "{\"index\":5,\"sensor_uuid\":\"s-a\",\"reason\":\"invalid_timestamp\"}],"
                     "\"duplicate\":false}");
    struct intake_metrics *m = intake_metrics(in);
    cr_expect_eq(atomic_load(&m->rejected[REJECT_UNKNOWN_SENSOR]), 3);
    cr_expect_eq(atomic_load(&m->rejected[REJECT_INVALID_VALUE]), 1);
    cr_expect_eq(atomic_load(&m->rejected[REJECT_INVALID_TIMESTAMP]), 1);
    intake_verdict_fini(&v);
    decoded_packet_fini(&p);
}
