/* The packet and legacy decoders: packet-level 400s and per-reading problems. */
#include "core/err.h"
#include "ingest/packet_decode.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct decoded_packet p;
static char detail[256];
static const char *code;

static int dec(const char *body)
{
    memset(&p, 0, sizeof p);
    detail[0] = 0;
    code = NULL;
    return packet_decode(body, strlen(body), 3, &p, detail, sizeof detail, &code);
}

static void fini(void)
{
    decoded_packet_fini(&p);
}

TestSuite(packet_decode, .fini = fini);

Test(packet_decode, a_good_packet)
{
    cr_assert_eq(dec("{\"device_uuid\":\"d\",\"packet_id\":\"p-1\",\"ts\":1764262800.5,"
                     "\"readings\":[{\"sensor_uuid\":\"s\",\"value\":21},"
                     "{\"sensor_uuid\":\"s\",\"value\":1.5,\"ts\":\"2026-11-27T17:00:00+01:00\"}],"
                     "\"unknown\":{\"ignored\":true}}"),
                 0, "%s", detail);
    cr_expect_str_eq(p.device_uuid, "d");
    cr_expect_str_eq(p.packet_id, "p-1");
    cr_expect_eq(p.ts_state, TS_OK);
    cr_expect_eq(p.ts, 1764262800500);
    cr_assert_eq(p.n, 2);
    cr_expect(p.readings[0].uuid_ok && p.readings[0].value_ok);
    cr_expect_eq(p.readings[0].value, 21.0);
    cr_expect_eq(p.readings[0].ts_state, TS_MISSING);
    cr_expect_eq(p.readings[1].ts, 1795795200000, "17:00+01:00 is 16:00Z");
}

Test(packet_decode, packet_level_problems_are_400_and_name_the_field)
{
    struct {
        const char *body, *code, *field;
    } cases[] = {
        {"{\"device_uuid\":\"d\",", DECODE_INVALID_JSON, "JSON"},
        {"[]", DECODE_INVALID_REQUEST, "object"},
        {"{\"readings\":[{}]}", DECODE_INVALID_REQUEST, "device_uuid"},
        {"{\"device_uuid\":7,\"readings\":[{}]}", DECODE_INVALID_REQUEST, "device_uuid"},
        {"{\"device_uuid\":\"d\"}", DECODE_INVALID_REQUEST, "readings"},
        {"{\"device_uuid\":\"d\",\"readings\":{}}", DECODE_INVALID_REQUEST, "readings"},
        {"{\"device_uuid\":\"d\",\"readings\":[]}", DECODE_INVALID_REQUEST, "readings"},
        {"{\"device_uuid\":\"d\",\"readings\":[{},{},{},{}]}", DECODE_INVALID_REQUEST, "limit"},
        {"{\"device_uuid\":\"d\",\"readings\":[1]}", DECODE_INVALID_REQUEST, "readings[0]"},
        {"{\"device_uuid\":\"d\",\"packet_id\":5,\"readings\":[{}]}", DECODE_INVALID_REQUEST,
         "packet_id"},
        {"{\"device_uuid\":\"d\",\"packet_id\":\"\",\"readings\":[{}]}", DECODE_INVALID_REQUEST,
         "packet_id"},
        {"{\"device_uuid\":\"d\",\"device_uuid\":\"e\",\"readings\":[{}]}", DECODE_INVALID_JSON,
         "duplicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_expect_eq(dec(cases[i].body), IOT_EINVAL, "case %zu", i);
        cr_expect_str_eq(code, cases[i].code, "case %zu: %s", i, detail);
        cr_expect(strstr(detail, cases[i].field), "case %zu: %s", i, detail);
        fini();
    }
}

Test(packet_decode, packet_id_length_is_counted_in_characters)
{
    char body[512];
    char id[300] = "";
    for (int i = 0; i < 64; i++)
        strcat(id, "\xc3\xa9"); /* 64 characters, 128 bytes */
    snprintf(body, sizeof body, "{\"device_uuid\":\"d\",\"packet_id\":\"%s\",\"readings\":[{}]}",
             id);
    cr_expect_eq(dec(body), 0, "%s", detail);
    fini();
    strcat(id, "x");
    snprintf(body, sizeof body, "{\"device_uuid\":\"d\",\"packet_id\":\"%s\",\"readings\":[{}]}",
             id);
    cr_expect_eq(dec(body), IOT_EINVAL);
}

/*
 * device_uuid: 1 to 64 characters of [A-Za-z0-9._:-] (the uuids `device add`
 * accepts), so bytes and characters agree and docs/openapi.yaml can state the
 * rule exactly as a pattern.
 */
Test(packet_decode, device_uuid_is_1_to_64_characters_of_the_uuid_alphabet)
{
    char body[512], id[80];
    const char *bad[] = {"a b", "a/b", "\\u00e9", "caf\\u00e9", "x\\ty", "a%20b", "\\u0080"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, "{\"device_uuid\":\"%s\",\"readings\":[{}]}", bad[i]);
        cr_expect_eq(dec(body), IOT_EINVAL, "%s", bad[i]);
        cr_expect_str_eq(code, DECODE_INVALID_REQUEST, "%s", bad[i]);
        cr_expect(strstr(detail, "A-Z a-z 0-9 . _ : -"), "%s: %s", bad[i], detail);
        fini();
    }
    memset(id, 'a', 64);
    memcpy(id, "Az09._:-", 8);
    id[64] = 0;
    snprintf(body, sizeof body, "{\"device_uuid\":\"%s\",\"readings\":[{}]}", id);
    cr_expect_eq(dec(body), 0, "%s", detail);
    cr_expect_str_eq(p.device_uuid, id);
    fini();
    strcat(id, "a"); /* 65 */
    snprintf(body, sizeof body, "{\"device_uuid\":\"%s\",\"readings\":[{}]}", id);
    cr_expect_eq(dec(body), IOT_EINVAL);
}

/* MQTT: the topic names the device; the body may omit it, never contradict it. */
Test(packet_decode, the_topic_device_fills_in_a_missing_device_uuid_and_must_match_a_present_one)
{
    const char *b1 = "{\"readings\":[{\"sensor_uuid\":\"s\",\"value\":1}]}";
    cr_assert_eq(packet_decode_topic("dev-1", b1, strlen(b1), 3, &p, detail, sizeof detail, &code),
                 0, "%s", detail);
    cr_expect_str_eq(p.device_uuid, "dev-1");
    cr_expect_eq(p.n, 1);
    fini();
    const char *b2 = "{\"device_uuid\":\"dev-1\",\"readings\":[{}]}";
    cr_expect_eq(packet_decode_topic("dev-1", b2, strlen(b2), 3, &p, detail, sizeof detail, &code),
                 0, "%s", detail);
    cr_expect_str_eq(p.device_uuid, "dev-1");
    fini();
    const char *b3 = "{\"device_uuid\":\"dev-2\",\"readings\":[{}]}";
    cr_expect_eq(packet_decode_topic("dev-1", b3, strlen(b3), 3, &p, detail, sizeof detail, &code),
                 IOT_EINVAL);
    cr_expect_str_eq(code, DECODE_INVALID_REQUEST);
    cr_expect(strstr(detail, "topic"), "%s", detail);
    const char *b4 = "{\"device_uuid\":7,\"readings\":[{}]}";
    cr_expect_eq(packet_decode_topic("dev-1", b4, strlen(b4), 3, &p, detail, sizeof detail, &code),
                 IOT_EINVAL);
    cr_expect(strstr(detail, "must be a string"), "%s", detail);
    cr_expect_eq(dec(b1), IOT_EINVAL, "without a topic the body must name its device");
}

Test(packet_decode, reading_level_problems_are_recorded_not_fatal)
{
    cr_assert_eq(dec("{\"device_uuid\":\"d\",\"readings\":[{\"value\":1},"
                     "{\"sensor_uuid\":\"s\",\"value\":\"7\"},"
                     "{\"sensor_uuid\":\"s\",\"value\":2,\"ts\":\"yesterday\"}]}"),
                 0, "%s", detail);
    cr_expect_not(p.readings[0].uuid_ok);
    cr_expect_not(p.readings[1].value_ok);
    cr_expect_eq(p.readings[2].ts_state, TS_INVALID);
    int64_t ts;
    cr_expect_eq(decode_effective_ts(&p.readings[2], &p, 0, 1000, 1000, &ts),
                 REJECT_INVALID_TIMESTAMP);
}

Test(packet_decode, effective_time_and_its_window)
{
    struct decoded_packet pk = {.ts_state = TS_MISSING};
    struct decoded_reading r = {.ts_state = TS_MISSING};
    int64_t ts = 0, now = 1000000;
    cr_expect_eq(decode_effective_ts(&r, &pk, now, 300000, 600000, &ts), REJECT_NONE);
    cr_expect_eq(ts, now, "no time anywhere: the server's");
    pk.ts_state = TS_OK;
    pk.ts = now - 5;
    cr_expect_eq(decode_effective_ts(&r, &pk, now, 300000, 600000, &ts), REJECT_NONE);
    cr_expect_eq(ts, now - 5, "the packet's");
    r.ts_state = TS_OK;
    r.ts = now + 300001;
    cr_expect_eq(decode_effective_ts(&r, &pk, now, 300000, 600000, &ts), REJECT_FUTURE_TIMESTAMP);
    r.ts = now + 300000;
    cr_expect_eq(decode_effective_ts(&r, &pk, now, 300000, 600000, &ts), REJECT_NONE);
    r.ts = now - 600001;
    cr_expect_eq(decode_effective_ts(&r, &pk, now, 300000, 600000, &ts), REJECT_STALE_TIMESTAMP);
}

Test(packet_decode, legacy_single_and_bulk)
{
    struct decoded_packet q;
    const char *one = "{\"sensor_id\":12,\"value\":3.5,\"timestamp\":1764262800}";
    cr_assert_eq(legacy_decode(one, strlen(one), 0, 10, &q, detail, sizeof detail, &code), 0);
    cr_expect_eq(q.n, 1);
    cr_expect_eq(q.readings[0].sensor_id, 12);
    cr_expect_eq(q.readings[0].ts, 1764262800000);
    decoded_packet_fini(&q);
    const char *bulk =
        "{\"readings\":[{\"sensor_id\":1.5,\"value\":1},{\"sensor_id\":-3,\"value\":1},"
        "{\"sensor_id\":\"4\",\"value\":1},{\"sensor_id\":9,\"value\":null}]}";
    cr_assert_eq(legacy_decode(bulk, strlen(bulk), 1, 10, &q, detail, sizeof detail, &code), 0);
    cr_expect_eq(q.readings[0].sensor_id, 0, "not an integer");
    cr_expect_eq(q.readings[1].sensor_id, 0, "not positive");
    cr_expect_eq(q.readings[2].sensor_id, 0, "not a number");
    cr_expect_eq(q.readings[3].sensor_id, 9);
    cr_expect_not(q.readings[3].value_ok);
    decoded_packet_fini(&q);
}

Test(packet_decode, a_number_that_overflows_a_double_is_an_invalid_value)
{
    cr_assert_eq(dec("{\"device_uuid\":\"d\",\"readings\":[{\"sensor_uuid\":\"s\",\"value\":1e999},"
                     "{\"sensor_uuid\":\"s\",\"value\":-1E+400,\"ts\":1e999},"
                     "{\"sensor_uuid\":\"s\",\"value\":1e-999}]}"),
                 0, "%s", detail);
    cr_expect_not(p.readings[0].value_ok, "1e999");
    cr_expect_not(p.readings[1].value_ok, "-1E+400");
    cr_expect_eq(p.readings[1].ts_state, TS_INVALID, "an overflowing time is invalid");
    cr_expect(p.readings[2].value_ok, "an underflow is 0, a finite number");
    cr_expect_eq(p.readings[2].value, 0.0);
    fini();
    cr_assert_eq(dec("{\"device_uuid\":\"d\",\"ts\":1e999,\"readings\":[{}],\"x\":1e999}"), 0, "%s",
                 detail);
    cr_expect_eq(p.ts_state, TS_INVALID);
}

Test(packet_decode, json_errors_have_line_and_column)
{
    struct {
        const char *body, *detail;
    } cases[] = {
        {"{\"device_uuid\":\"d\",\n \"readings\":[{}],\n \"x\":tru}", "at line 3 column"},
        {"{\"device_uuid\":\"d\",\"device_uuid\":\"e\",\"readings\":[{}]}",
         "at line 1 column 33: duplicate object key \"device_uuid\""},
        {"", "at line 1 column 1: "},
        {"42", "'[' or '{' expected"},
        {"{\"a\":\"\\u0000\"}", "\\u0000 is not allowed"},
        {"{\"a\":\"\\ud800\"}", "invalid Unicode '\\ud800'"},
        {"{\"a\":\"\\udc00\\ud800\"}", "invalid Unicode '\\udc00'"},
        {"{\"a\":\"\\ud800\\u0041\"}", "invalid Unicode '\\ud800'"},
        {"{\"a\":\"\xc0\xaf\"}", "invalid UTF-8"},
        {"{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8"},
        {"{\"a\":\"\xf4\x90\x80\x80\"}", "invalid UTF-8"},
        {"{\"\xe2\x82\":1}", "invalid UTF-8"},
        {"{\"device_uuid\":\"d\",\"readings\":[{}]} {}", "trailing garbage"},
        {"{\"device_uuid\":\"d\",\"readings\":[{}]} \"unterminated", "trailing garbage"},
        {"{\"device_uuid\":\"d\",\"readings\":\f[{}]}", "at line 1 column 31: invalid token"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_expect_eq(dec(cases[i].body), IOT_EINVAL, "case %zu", i);
        cr_expect_str_eq(code, DECODE_INVALID_JSON, "case %zu: %s", i, detail);
        cr_expect(strstr(detail, "malformed JSON at line ") == detail, "case %zu: %s", i, detail);
        cr_expect(strstr(detail, cases[i].detail), "case %zu: %s", i, detail);
        fini();
    }
}

Test(packet_decode, escapes_and_surrogate_pairs_are_decoded)
{
    cr_assert_eq(dec("{\"device\\u005fuuid\":\"d\\u002d1\",\"packet_id\":\"\\ud83d\\ude00\","
                     "\"readings\":[{\"sensor_uuid\":\"s\\\"\\\\\\u00e9\",\"value\":1}]}"),
                 0, "%s", detail);
    cr_expect_str_eq(p.device_uuid, "d-1");
    cr_expect_str_eq(p.packet_id, "\xf0\x9f\x98\x80");
    cr_expect_str_eq(p.readings[0].sensor_uuid, "s\"\\\xc3\xa9");
}

/* A body of n objects nested in "x", each with one key. */
static char *nested(int n)
{
    char *b = malloc(64 + (size_t)n * 7);
    char *w = b + sprintf(b, "{\"device_uuid\":\"d\",\"readings\":[{}],\"x\":");
    for (int i = 0; i < n; i++)
        w += sprintf(w, "{\"a\":");
    w += sprintf(w, "1");
    for (int i = 0; i < n + 1; i++)
        *w++ = '}';
    *w = 0;
    return b;
}

Test(packet_decode, depth_is_bounded_like_jansson)
{
    char *ok = nested(2046), *deep = nested(2047); /* 2047 and 2048 objects around a 1 */
    cr_expect_eq(dec(ok), 0, "%s", detail);
    fini();
    cr_expect_eq(dec(deep), IOT_EINVAL);
    cr_expect(strstr(detail, "maximum parsing depth reached"), "%s", detail);
    free(ok);
    free(deep);
}

Test(packet_decode, duplicates_are_found_in_objects_of_any_size)
{
    char *b = malloc(32768);
    for (int dup = 0; dup < 2; dup++) {
        char *w = b + sprintf(b, "{\"device_uuid\":\"d\",\"readings\":[{}],\"x\":{");
        for (int i = 0; i < 1000; i++)
            w += sprintf(w, "\"k%d\":%d,", dup && i == 700 ? 3 : i, i);
        sprintf(w, "\"last\":0}}");
        cr_expect_eq(dec(b), dup ? IOT_EINVAL : 0, "%s", detail);
        if (dup) cr_expect(strstr(detail, "duplicate object key \"k3\""), "%s", detail);
        fini();
    }
    free(b);
}

Test(packet_decode, over_the_limit_the_readings_are_counted_not_kept)
{
    cr_expect_eq(dec("{\"device_uuid\":\"d\",\"readings\":[{},{},{},{},7]}"), IOT_EINVAL);
    cr_expect_str_eq(detail, "readings has 5 readings, more than the limit of 3");
    cr_expect_null(p.readings);
}

Test(packet_decode, a_shape_error_loses_to_a_json_error_anywhere)
{
    cr_expect_eq(dec("{\"readings\":[{}],\"x\":[1,2,]}"), IOT_EINVAL);
    cr_expect_str_eq(code, DECODE_INVALID_JSON, "%s", detail);
    fini();
    cr_expect_eq(dec("[1,{\"a\":1,\"a\":2}]"), IOT_EINVAL);
    cr_expect_str_eq(code, DECODE_INVALID_JSON, "%s", detail);
}

Test(packet_decode, legacy_sensor_ids_are_exact)
{
    struct {
        const char *id;
        int64_t want;
    } cases[] = {
        {"12", 12},
        {"12.0", 12},
        {"1.2e1", 12},
        {"1200e-2", 12},
        {"0.5", 0},
        {"1.0000000000000000001", 0},
        {"9007199254740992", 9007199254740992LL},
        {"9007199254740993", 0},
        {"9007199254740992.5", 0},
        {"1e16", 0},
        {"0", 0},
        {"-0", 0},
        {"1e999", 0},
    };
    struct decoded_packet q;
    char body[128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(body, sizeof body, "{\"sensor_id\":%s,\"value\":1}", cases[i].id);
        cr_assert_eq(legacy_decode(body, strlen(body), 0, 10, &q, detail, sizeof detail, &code), 0,
                     "%s", detail);
        cr_expect_eq(q.readings[0].sensor_id, cases[i].want, "%s", cases[i].id);
        decoded_packet_fini(&q);
    }
    const char *dup = "{\"sensor_id\":1,\"value\":1,\"value\":2}";
    cr_expect_eq(legacy_decode(dup, strlen(dup), 0, 10, &q, detail, sizeof detail, &code),
                 IOT_EINVAL);
    cr_expect_str_eq(code, DECODE_INVALID_JSON);
    cr_expect_eq(legacy_decode("[]", 2, 0, 10, &q, detail, sizeof detail, &code), IOT_EINVAL);
    cr_expect_str_eq(detail, "the body must be a JSON object");
}
