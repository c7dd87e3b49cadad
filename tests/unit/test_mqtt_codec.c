/*
 * Unit tests for src/mqtt/mqtt_codec: every packet a server receives and
 * sends, MQTT 3.1.1 and 5.0, byte for byte.
 *
 * The frames are written here by hand from the OASIS standards (the section
 * of the example or table is cited at each): "3.1.1" is MQTT Version 3.1.1,
 * OASIS Standard 29 October 2014; "5.0" is MQTT Version 5.0, OASIS Standard
 * 7 March 2019. Frames captured from a real client (mosquitto_pub and
 * mosquitto_sub 2.0.11, Debian 12 package mosquitto-clients) are decoded
 * too; the command that produced each is in its comment. They were recorded
 * by a Python listener that answered CONNACK, PUBACK and SUBACK and wrote
 * each packet's bytes in hex.
 *
 * Every frame is also decoded from every prefix (NEED_MORE until the last
 * byte), each prefix in a heap block of exactly its size so that ASan
 * (make unit-asan) reports any read past the end.
 */
#include "core/err.h"
#include "mqtt/mqtt_codec.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FRAME (1024 * 1024)
#define N(a)      (sizeof(a) / sizeof((a)[0]))

/* Bytes from hex text ("10 1e 00 04", spaces ignored) into out; returns the count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    for (const char *c = hex; *c; c++) {
        int v;
        if (*c >= '0' && *c <= '9')
            v = *c - '0';
        else if (*c >= 'a' && *c <= 'f')
            v = *c - 'a' + 10;
        else if (*c >= 'A' && *c <= 'F')
            v = *c - 'A' + 10;
        else
            continue;
        if (hi < 0) {
            hi = v;
            continue;
        }
        cr_assert_lt(n, cap, "hex too long");
        out[n++] = (uint8_t)(hi << 4 | v);
        hi = -1;
    }
    cr_assert_eq(hi, -1, "odd number of hex digits in %s", hex);
    return n;
}

/* Decodes a copy of b[0..n) in a heap block of exactly n bytes. */
static int decode_exact(const uint8_t *b, size_t n, size_t max, int version, struct mqtt_frame *f,
                        size_t *used)
{
    uint8_t *copy = malloc(n ? n : 1);
    cr_assert_not_null(copy);
    if (n) memcpy(copy, b, n);
    int rc = mqtt_decode(copy, n, max, version, f, used);
    free(copy);
    return rc;
}

/*
 * Decodes hex as one whole frame: every shorter prefix must be NEED_MORE
 * (consuming nothing), the whole must be 0 and consume all of it; then the
 * frame followed by another frame's first bytes must consume exactly it.
 * The frame f points into *buf (static storage, one frame at a time).
 */
static uint8_t frame_buf[4096];

static struct mqtt_frame decode_ok(const char *hex, int version)
{
    size_t n = unhex(hex, frame_buf, sizeof frame_buf - 2);
    struct mqtt_frame f;
    size_t used = 99;
    for (size_t k = 0; k < n; k++) {
        int rc = decode_exact(frame_buf, k, MAX_FRAME, version, &f, &used);
        cr_assert_eq(rc, MQTT_NEED_MORE, "prefix %zu of %zu of %s: %d (%s)", k, n, hex, rc,
                     f.error ? f.error : "");
        cr_assert_eq(used, 0);
    }
    frame_buf[n] = 0xC0; /* a PINGREQ's first byte follows */
    int rc = mqtt_decode(frame_buf, n + 1, MAX_FRAME, version, &f, &used);
    cr_assert_eq(rc, 0, "%s: %d (%s)", hex, rc, f.error ? f.error : "");
    cr_assert_eq(used, n, "%s: consumed %zu of %zu", hex, used, n);
    cr_assert_eq(f.len, n);
    return f;
}

/* Decodes hex and expects the error rc with the MQTT 5 reason code. */
static void decode_err(const char *hex, int version, int want_rc, uint8_t want_reason)
{
    uint8_t b[512];
    size_t n = unhex(hex, b, sizeof b);
    struct mqtt_frame f;
    size_t used = 99;
    int rc = decode_exact(b, n, MAX_FRAME, version, &f, &used);
    cr_assert_eq(rc, want_rc, "%s (v%d): rc %d, want %d (%s)", hex, version, rc, want_rc,
                 f.error ? f.error : "");
    cr_assert_eq(f.reason, want_reason, "%s (v%d): reason 0x%02x, want 0x%02x (%s)", hex, version,
                 f.reason, want_reason, f.error ? f.error : "");
    cr_assert_not_null(f.error);
    cr_assert_eq(used, 0);
}

static void assert_str(struct mqtt_str s, const char *want)
{
    cr_assert_eq(s.len, strlen(want), "\"%.*s\" != \"%s\"", (int)s.len, s.p, want);
    cr_assert(memcmp(s.p, want, s.len) == 0, "\"%.*s\" != \"%s\"", (int)s.len, s.p, want);
}

static void assert_bytes(struct mqtt_bytes b, const char *want)
{
    cr_assert_eq(b.len, strlen(want));
    cr_assert(memcmp(b.p, want, b.len) == 0);
}

/* Encoder output equals hex. */
static void assert_encoded(int len, const uint8_t *got, const char *hex)
{
    uint8_t want[512];
    size_t n = unhex(hex, want, sizeof want);
    cr_assert_eq(len, (int)n, "length %d, want %zu (%s)", len, n, hex);
    cr_assert(memcmp(got, want, n) == 0, "bytes differ from %s", hex);
}

/* ---- CONNECT ------------------------------------------------------------ */

Test(mqtt_connect, v311_spec_example)
{
    /* 3.1.1 §3.1.2.10, Figure 3.6: protocol name, level 4, flags CE (user
     * name, password, will QoS 1, will, clean session), keep alive 10; then the
     * payload of §3.1.3 in its order: client id, will topic, will message,
     * user name, password. */
    struct mqtt_frame f = decode_ok("10 1e 00 04 4d 51 54 54 04 ce 00 0a"
                                    " 00 02 63 31  00 03 77 2f 74  00 02 6f 6b"
                                    " 00 01 75  00 02 70 77",
                                    0);
    struct mqtt_connect *c = &f.u.connect;
    cr_assert_eq(f.type, MQTT_CONNECT);
    cr_assert_eq(c->version, MQTT_V311);
    cr_assert(c->clean_start);
    cr_assert_eq(c->keep_alive, 10);
    assert_str(c->client_id, "c1");
    cr_assert(c->will);
    cr_assert_eq(c->will_qos, 1);
    cr_assert(!c->will_retain);
    assert_str(c->will_topic, "w/t");
    assert_bytes(c->will_payload, "ok");
    cr_assert(c->has_username && c->has_password);
    assert_str(c->username, "u");
    assert_bytes(c->password, "pw");
    cr_assert_eq(c->props.present, 0);
}

Test(mqtt_connect, v5_spec_example)
{
    /* 5.0 §3.1.2.12, Figure 3-7: level 5, flags C2 (user name, password,
     * clean start), keep alive 10, properties length 5: Session Expiry
     * Interval (0x11) 10; then client id, user name, password (§3.1.3). */
    struct mqtt_frame f = decode_ok("10 1b 00 04 4d 51 54 54 05 c2 00 0a 05 11 00 00 00 0a"
                                    " 00 02 63 31  00 01 75  00 02 70 77",
                                    0);
    struct mqtt_connect *c = &f.u.connect;
    cr_assert_eq(c->version, MQTT_V5);
    cr_assert(c->clean_start && !c->will);
    cr_assert_eq(c->keep_alive, 10);
    cr_assert_eq(c->props.present, MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY));
    cr_assert_eq(c->props.session_expiry, 10);
    assert_str(c->client_id, "c1");
    assert_str(c->username, "u");
    assert_bytes(c->password, "pw");
}

Test(mqtt_connect, v5_password_without_username_and_empty_client_id)
{
    /* 5.0 §3.1.2.9 allows a password without a user name (3.1.1 does not);
     * an empty client id is valid (§3.1.3.1: the server may assign one). */
    struct mqtt_frame f =
        decode_ok("10 11 00 04 4d 51 54 54 05 42 00 00 00  00 00  00 02 70 77", 0);
    cr_assert(!f.u.connect.has_username && f.u.connect.has_password);
    cr_assert_eq(f.u.connect.client_id.len, 0);
    cr_assert_eq(f.u.connect.keep_alive, 0);
}

Test(mqtt_connect, v5_will_properties)
{
    /* 5.0 §3.1.3.2: will properties before the will topic: Will Delay
     * Interval (0x18) 10, Payload Format Indicator (0x01) 1; will flag, QoS 1,
     * retain: flags 0x2e. */
    struct mqtt_frame f = decode_ok("10 1c 00 04 4d 51 54 54 05 2e 00 3c 00  00 01 61"
                                    " 07 18 00 00 00 0a 01 01  00 01 77  00 01 78",
                                    0);
    struct mqtt_connect *c = &f.u.connect;
    cr_assert(c->will && c->will_retain);
    cr_assert_eq(c->will_qos, 1);
    cr_assert_eq(c->will_props.will_delay, 10);
    cr_assert_eq(c->will_props.payload_format, 1);
    assert_str(c->will_topic, "w");
    assert_bytes(c->will_payload, "x");
}

/* ---- real clients --------------------------------------------------------- */

/*
 * mosquitto_pub -V mqttv311 -q 1 -i dev-cap-1 -u demo-device-1 -P demo-key-1
 *   -t devices/demo-device-1/packets
 *   -m '{"readings":[{"sensor_uuid":"demo-device-1-temp","value":21.5}]}'
 * (with -q 0 the PUBLISH is 305f... without the packet id, same CONNECT)
 */
static const char CAP_V311_CONNECT[] =
    "103000044d51545404c2003c00096465762d6361702d31000d64656d6f2d6465766963652d31000a64656d6f2d"
    "6b65792d31";
static const char CAP_V311_PUBLISH_Q1[] =
    "3261001d646576696365732f64656d6f2d6465766963652d312f7061636b65747300017b2272656164696e6773"
    "223a5b7b2273656e736f725f75756964223a2264656d6f2d6465766963652d312d74656d70222c2276616c7565"
    "223a32312e357d5d7d";
static const char CAP_V311_PUBLISH_Q0[] =
    "305f001d646576696365732f64656d6f2d6465766963652d312f7061636b6574737b2272656164696e6773223a"
    "5b7b2273656e736f725f75756964223a2264656d6f2d6465766963652d312d74656d70222c2276616c7565223a"
    "32312e357d5d7d";
/* the same with -V mqttv5 (mosquitto adds Receive Maximum 20 to its CONNECT) */
static const char CAP_V5_CONNECT[] =
    "103400044d51545405c2003c0321001400096465762d6361702d31000d64656d6f2d6465766963652d31000a64"
    "656d6f2d6b65792d31";
static const char CAP_V5_PUBLISH_Q1[] =
    "3262001d646576696365732f64656d6f2d6465766963652d312f7061636b6574730001007b2272656164696e67"
    "73223a5b7b2273656e736f725f75756964223a2264656d6f2d6465766963652d312d74656d70222c2276616c75"
    "65223a32312e357d5d7d";
static const char CAP_V5_PUBLISH_Q0[] =
    "3060001d646576696365732f64656d6f2d6465766963652d312f7061636b657473007b2272656164696e677322"
    "3a5b7b2273656e736f725f75756964223a2264656d6f2d6465766963652d312d74656d70222c2276616c756522"
    "3a32312e357d5d7d";
static const char PAYLOAD[] =
    "{\"readings\":[{\"sensor_uuid\":\"demo-device-1-temp\",\"value\":21.5}]}";

static void check_capture_connect(const struct mqtt_frame *f, int version)
{
    const struct mqtt_connect *c = &f->u.connect;
    cr_assert_eq(c->version, version);
    cr_assert(c->clean_start && !c->will);
    cr_assert_eq(c->keep_alive, 60);
    assert_str(c->client_id, "dev-cap-1");
    assert_str(c->username, "demo-device-1");
    assert_bytes(c->password, "demo-key-1");
}

static void check_capture_publish(const struct mqtt_frame *f, int qos)
{
    const struct mqtt_publish *p = &f->u.publish;
    cr_assert_eq(f->type, MQTT_PUBLISH);
    cr_assert_eq(p->qos, qos);
    cr_assert(!p->dup && !p->retain);
    cr_assert_eq(p->packet_id, qos ? 1 : 0);
    assert_str(p->topic, "devices/demo-device-1/packets");
    cr_assert_eq(p->payload_len, strlen(PAYLOAD));
    cr_assert(memcmp(p->payload, PAYLOAD, p->payload_len) == 0);
    cr_assert(p->payload > frame_buf && p->payload < frame_buf + sizeof frame_buf, "not a copy");
}

Test(mqtt_capture, mosquitto_pub_v311)
{
    struct mqtt_frame f = decode_ok(CAP_V311_CONNECT, 0);
    check_capture_connect(&f, MQTT_V311);
    f = decode_ok(CAP_V311_PUBLISH_Q1, MQTT_V311);
    check_capture_publish(&f, 1);
    f = decode_ok(CAP_V311_PUBLISH_Q0, MQTT_V311);
    check_capture_publish(&f, 0);
    f = decode_ok("e000", MQTT_V311); /* mosquitto_pub's DISCONNECT */
    cr_assert_eq(f.type, MQTT_DISCONNECT);
}

Test(mqtt_capture, mosquitto_pub_v5)
{
    struct mqtt_frame f = decode_ok(CAP_V5_CONNECT, 0);
    check_capture_connect(&f, MQTT_V5);
    cr_assert_eq(f.u.connect.props.present, MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM));
    cr_assert_eq(f.u.connect.props.receive_maximum, 20);
    f = decode_ok(CAP_V5_PUBLISH_Q1, MQTT_V5);
    check_capture_publish(&f, 1);
    f = decode_ok(CAP_V5_PUBLISH_Q0, MQTT_V5);
    check_capture_publish(&f, 0);
    f = decode_ok("e000", MQTT_V5);
    cr_assert_eq(f.u.disconnect.reason, 0);
}

/*
 * mosquitto_pub -V mqttv311 -q 1 -i dev-cap-2 -k 30 -c
 *   --will-topic devices/demo-device-1/status --will-payload offline --will-qos 1 --will-retain
 *   -u demo-device-1 -P demo-key-1 -t devices/demo-device-1/packets -m '{}'
 */
Test(mqtt_capture, mosquitto_pub_v311_will)
{
    struct mqtt_frame f = decode_ok(
        "105700044d51545404ec001e00096465762d6361702d32001c646576696365732f64656d6f2d646576696365"
        "2d312f73746174757300076f66666c696e65000d64656d6f2d6465766963652d31000a64656d6f2d6b65792d"
        "31",
        0);
    struct mqtt_connect *c = &f.u.connect;
    cr_assert(!c->clean_start && c->will && c->will_retain);
    cr_assert_eq(c->will_qos, 1);
    cr_assert_eq(c->keep_alive, 30);
    assert_str(c->will_topic, "devices/demo-device-1/status");
    assert_bytes(c->will_payload, "offline");
    f = decode_ok("3223001d646576696365732f64656d6f2d6465766963652d312f7061636b65747300017b7d",
                  MQTT_V311);
    cr_assert_eq(f.u.publish.payload_len, 2);
}

/*
 * mosquitto_pub -V mqttv5 -q 1 -i dev-cap-3 -k 30
 *   --will-topic devices/demo-device-1/status --will-payload offline
 *   -D will will-delay-interval 10 -D connect session-expiry-interval 3600
 *   -D connect maximum-packet-size 65536 -D connect user-property fw 1.2
 *   -D publish content-type application/json -D publish message-expiry-interval 30
 *   -D publish payload-format-indicator 1 -D publish user-property k v
 *   -u demo-device-1 -P demo-key-1 -t devices/demo-device-1/packets -m '{}'
 */
Test(mqtt_capture, mosquitto_pub_v5_properties)
{
    struct mqtt_frame f = decode_ok(
        "107500044d51545405c6001e171100000e10270001000026000266770003312e3221001400096465762d6361"
        "702d3305180000000a001c646576696365732f64656d6f2d6465766963652d312f7374617475730007"
        "6f66666c696e65000d64656d6f2d6465766963652d31000a64656d6f2d6b65792d31",
        0);
    struct mqtt_connect *c = &f.u.connect;
    cr_assert_eq(c->props.session_expiry, 3600);
    cr_assert_eq(c->props.maximum_packet_size, 65536);
    cr_assert_eq(c->props.receive_maximum, 20);
    cr_assert_eq(c->props.user_count, 1);
    struct mqtt_str k, v;
    size_t pos = 0;
    cr_assert(mqtt_props_user(&c->props, &pos, &k, &v));
    assert_str(k, "fw");
    assert_str(v, "1.2");
    cr_assert(!mqtt_props_user(&c->props, &pos, &k, &v));
    cr_assert(c->will && c->will_qos == 0);
    cr_assert_eq(c->will_props.present, MQTT_PROP_BIT(MQTT_PROP_WILL_DELAY));
    cr_assert_eq(c->will_props.will_delay, 10);

    f = decode_ok("3245001d646576696365732f64656d6f2d6465766963652d312f7061636b6574730001210300"
                  "106170706c69636174696f6e2f6a736f6e020000001e01012600016b0001767b7d",
                  MQTT_V5);
    struct mqtt_publish *p = &f.u.publish;
    assert_str(p->props.content_type, "application/json");
    cr_assert_eq(p->props.message_expiry, 30);
    cr_assert_eq(p->props.payload_format, 1);
    pos = 0;
    cr_assert(mqtt_props_user(&p->props, &pos, &k, &v));
    assert_str(k, "k");
    assert_str(v, "v");
    cr_assert_eq(p->payload_len, 2);
}

/*
 * mosquitto_sub -V mqttv311 -q 1 -i dev-cap-1 -u demo-device-1 -P demo-key-1
 *   -t devices/demo-device-1/results -W 1   (then with -V mqttv5)
 * The v5 client's DISCONNECT after the -W timeout carries reason 0x04.
 */
Test(mqtt_capture, mosquitto_sub)
{
    struct mqtt_frame f = decode_ok(
        "82220001001d646576696365732f64656d6f2d6465766963652d312f726573756c747301", MQTT_V311);
    cr_assert_eq(f.type, MQTT_SUBSCRIBE);
    cr_assert_eq(f.u.subscribe.packet_id, 1);
    cr_assert_eq(f.u.subscribe.count, 1);
    struct mqtt_str filter;
    uint8_t opt;
    size_t pos = 0;
    cr_assert(mqtt_sublist_next(&f.u.subscribe, &pos, &filter, &opt));
    assert_str(filter, "devices/demo-device-1/results");
    cr_assert_eq(opt, 1);

    f = decode_ok("8223000100001d646576696365732f64656d6f2d6465766963652d312f726573756c747301",
                  MQTT_V5);
    pos = 0;
    cr_assert(mqtt_sublist_next(&f.u.subscribe, &pos, &filter, &opt));
    assert_str(filter, "devices/demo-device-1/results");
    cr_assert_eq(opt, 1);
    cr_assert(!mqtt_sublist_next(&f.u.subscribe, &pos, &filter, &opt));
    f = decode_ok("e00104", MQTT_V5);
    cr_assert_eq(f.u.disconnect.reason, MQTT_RC_DISCONNECT_WITH_WILL);
}

/* ---- PUBLISH, PUBACK, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT ------------------- */

Test(mqtt_publish, v311_spec_example)
{
    /* 3.1.1 §3.3.2.3, Figure 3.11: topic "a/b", packet id 10; QoS 1 (0x32), payload "hi". */
    struct mqtt_frame f = decode_ok("32 09 00 03 61 2f 62 00 0a 68 69", MQTT_V311);
    cr_assert_eq(f.u.publish.qos, 1);
    cr_assert_eq(f.u.publish.packet_id, 10);
    assert_str(f.u.publish.topic, "a/b");
    cr_assert_eq(f.u.publish.payload_len, 2);
    /* QoS 0 has no packet id (§3.3.2.2); an empty payload is valid (§3.3.3) */
    f = decode_ok("30 05 00 03 61 2f 62", MQTT_V311);
    cr_assert_eq(f.u.publish.qos, 0);
    cr_assert_eq(f.u.publish.packet_id, 0);
    cr_assert_eq(f.u.publish.payload_len, 0);
}

Test(mqtt_publish, v5_flags_and_properties)
{
    /* 5.0 §3.3.1: 0x3b = DUP, QoS 1, RETAIN. §3.3.2.3: properties length 21:
     * Payload Format Indicator 1, Message Expiry Interval 60, Content Type
     * "json", User Property k=v. */
    struct mqtt_frame f = decode_ok("3b 1f 00 03 61 2f 62 00 0a 15 01 01 02 00 00 00 3c"
                                    " 03 00 04 6a 73 6f 6e 26 00 01 6b 00 01 76 68 69",
                                    MQTT_V5);
    struct mqtt_publish *p = &f.u.publish;
    cr_assert(p->dup && p->retain);
    cr_assert_eq(p->qos, 1);
    cr_assert_eq(p->props.payload_format, 1);
    cr_assert_eq(p->props.message_expiry, 60);
    assert_str(p->props.content_type, "json");
    cr_assert_eq(p->props.user_count, 1);
    cr_assert_eq(p->payload_len, 2);
    /* 5.0 §3.3.2.3.5/6: Response Topic and Correlation Data */
    f = decode_ok("30 11 00 01 61 0b 08 00 03 61 2f 62 09 00 02 01 02 68 69", MQTT_V5);
    assert_str(f.u.publish.props.response_topic, "a/b");
    cr_assert_eq(f.u.publish.props.correlation_data.len, 2);
}

Test(mqtt_puback, both_versions)
{
    /* 3.1.1 §3.4: 40 02 + packet id. */
    struct mqtt_frame f = decode_ok("40 02 00 0a", MQTT_V311);
    cr_assert_eq(f.u.puback.packet_id, 10);
    /* 5.0 §3.4.2.1: reason and properties may be left out; or reason only; or both. */
    f = decode_ok("40 02 00 0a", MQTT_V5);
    cr_assert_eq(f.u.puback.reason, 0);
    f = decode_ok("40 03 00 0a 10", MQTT_V5);
    cr_assert_eq(f.u.puback.reason, MQTT_RC_NO_MATCHING_SUBSCRIBERS);
    f = decode_ok("40 04 00 0a 00 00", MQTT_V5);
    cr_assert_eq(f.u.puback.props.present, 0);
    f = decode_ok("40 08 00 0a 80 04 1f 00 01 78", MQTT_V5); /* Reason String "x" */
    cr_assert_eq(f.u.puback.reason, MQTT_RC_UNSPECIFIED);
    assert_str(f.u.puback.props.reason_string, "x");
}

Test(mqtt_subscribe, v311_spec_example)
{
    /* 3.1.1 §3.8.3, Figure 3.22 / Table 3.5: "a/b" QoS 1, "c/d" QoS 2; 0x82 (§3.8.1). */
    struct mqtt_frame f = decode_ok("82 0e 00 0a 00 03 61 2f 62 01 00 03 63 2f 64 02", MQTT_V311);
    struct mqtt_sublist *l = &f.u.subscribe;
    cr_assert_eq(l->packet_id, 10);
    cr_assert_eq(l->count, 2);
    struct mqtt_str t;
    uint8_t o;
    size_t pos = 0;
    cr_assert(mqtt_sublist_next(l, &pos, &t, &o));
    assert_str(t, "a/b");
    cr_assert_eq(o, 1);
    cr_assert(mqtt_sublist_next(l, &pos, &t, &o));
    assert_str(t, "c/d");
    cr_assert_eq(o, 2);
    cr_assert(!mqtt_sublist_next(l, &pos, &t, &o));
}

Test(mqtt_subscribe, v5_options_and_subscription_id)
{
    /* 5.0 §3.8.2.1.2 Subscription Identifier 5; §3.8.3.1 options 0x2d = QoS 1,
     * No Local, Retain As Published, Retain Handling 2; filter "a/+". */
    struct mqtt_frame f = decode_ok("82 0b 00 0a 02 0b 05 00 03 61 2f 2b 2d", MQTT_V5);
    struct mqtt_sublist *l = &f.u.subscribe;
    cr_assert_eq(l->props.subscription_id, 5);
    struct mqtt_str t;
    uint8_t o;
    size_t pos = 0;
    cr_assert(mqtt_sublist_next(l, &pos, &t, &o));
    assert_str(t, "a/+");
    cr_assert_eq(MQTT_SUBOPT_QOS(o), 1);
    cr_assert(o & MQTT_SUBOPT_NO_LOCAL);
    cr_assert(o & MQTT_SUBOPT_RETAIN_AS_PUBLISHED);
    cr_assert_eq(MQTT_SUBOPT_RETAIN_HANDLING(o), 2);
}

Test(mqtt_unsubscribe, both_versions)
{
    /* 3.1.1 §3.10.3, Figure 3.28: "a/b", "c/d"; 0xa2 (§3.10.1). */
    struct mqtt_frame f = decode_ok("a2 0c 00 0a 00 03 61 2f 62 00 03 63 2f 64", MQTT_V311);
    cr_assert_eq(f.type, MQTT_UNSUBSCRIBE);
    cr_assert_eq(f.u.subscribe.count, 2);
    struct mqtt_str t;
    uint8_t o = 9;
    size_t pos = 0;
    cr_assert(mqtt_sublist_next(&f.u.subscribe, &pos, &t, &o));
    assert_str(t, "a/b");
    cr_assert_eq(o, 0);
    /* 5.0 §3.10.2: properties length 0, filter "a/#" */
    f = decode_ok("a2 08 00 0a 00 00 03 61 2f 23", MQTT_V5);
    cr_assert_eq(f.u.subscribe.count, 1);
}

Test(mqtt_ping_disconnect, both_versions)
{
    /* §3.12 PINGREQ c0 00; §3.14 DISCONNECT e0 00 (3.1.1 and 5.0). */
    cr_assert_eq(decode_ok("c0 00", MQTT_V311).type, MQTT_PINGREQ);
    cr_assert_eq(decode_ok("c0 00", MQTT_V5).type, MQTT_PINGREQ);
    cr_assert_eq(decode_ok("e0 00", MQTT_V311).type, MQTT_DISCONNECT);
    /* 5.0 §3.14.2: reason 0x00 with Session Expiry Interval 0 */
    struct mqtt_frame f = decode_ok("e0 07 00 05 11 00 00 00 00", MQTT_V5);
    cr_assert_eq(f.u.disconnect.props.present, MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY));
}

/* ---- malformed and refused frames ----------------------------------------- */

struct bad_case {
    const char *what;
    int version;
    const char *hex;
    int rc;
    uint8_t reason;
};

#define MAL   IOT_EINVAL, MQTT_RC_MALFORMED
#define PROTO IOT_EINVAL, MQTT_RC_PROTOCOL_ERROR

static const struct bad_case BAD[] = {
    /* fixed header, §2.1 */
    {"remaining length of 5 bytes", 4, "30 ff ff ff ff 01", MAL},
    {"remaining length not minimal", 4, "c0 80 00", MAL},
    {"packet type 0", 4, "00 00", MAL},
    {"PINGREQ with flags", 4, "c1 00", MAL},
    {"PUBACK with flags", 5, "41 02 00 01", MAL},
    {"SUBSCRIBE without flag 0010", 4, "80 06 00 01 00 01 61 00", MAL},
    {"UNSUBSCRIBE without flag 0010", 4, "a0 05 00 01 00 01 61", MAL},
    {"DISCONNECT with flags", 5, "e8 00", MAL},
    {"PINGREQ with a body", 4, "c0 01 00", MAL},
    {"3.1.1 DISCONNECT with a body", 4, "e0 01 00", MAL},
    {"AUTH in 3.1.1", 4, "f0 00", MAL},
    {"AUTH without a method", 5, "f0 00", PROTO},
    {"CONNACK from a client", 4, "20 02 00 00", PROTO},
    {"PUBREL (no QoS 2 here)", 5, "62 02 00 01", PROTO},
    {"PINGRESP from a client", 5, "d0 00", PROTO},
    /* order of packets */
    {"PUBLISH before CONNECT", 0, "30 03 00 01 61", PROTO},
    {"second CONNECT", 4, "10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00", PROTO},
    /* PUBLISH, §3.3 */
    {"QoS 3", 4, "36 05 00 01 61 00 01", MAL},
    {"QoS 2", 5, "34 05 00 01 61 00 01", IOT_EINVAL, MQTT_RC_QOS_NOT_SUPPORTED},
    {"QoS 2, 3.1.1", 4, "34 05 00 01 61 00 01", IOT_EINVAL, MQTT_RC_QOS_NOT_SUPPORTED},
    {"DUP on QoS 0", 4, "38 03 00 01 61", PROTO},
    {"'+' in a topic name", 4, "30 05 00 03 61 2f 2b", IOT_EINVAL, MQTT_RC_TOPIC_NAME_INVALID},
    {"'#' in a topic name", 5, "30 04 00 01 23 00", IOT_EINVAL, MQTT_RC_TOPIC_NAME_INVALID},
    {"empty topic name", 4, "30 02 00 00", PROTO},
    {"topic truncated", 4, "30 03 00 05 61", MAL},
    {"UTF-8: lone continuation", 4, "30 04 00 02 c3 28", MAL},
    {"UTF-8: U+0000", 4, "30 04 00 02 61 00", MAL},
    {"UTF-8: surrogate U+D800", 4, "30 05 00 03 ed a0 80", MAL},
    {"UTF-8: overlong '/'", 4, "30 04 00 02 c0 af", MAL},
    {"UTF-8: above U+10FFFF", 5, "30 07 00 04 f4 90 80 80 00", MAL},
    {"UTF-8: cut short", 4, "30 04 00 02 61 e2", MAL},
    {"packet id 0 on QoS 1", 4, "32 05 00 01 61 00 00", PROTO},
    {"packet id truncated", 4, "32 04 00 01 61 00", MAL},
    {"v5 PUBLISH without properties", 5, "30 03 00 01 61", MAL},
    /* MQTT 5 properties, §2.2.2 */
    {"properties past the packet", 5, "30 06 00 01 61 05 01 01", MAL},
    {"property value truncated", 5, "30 06 00 01 61 02 02 00", MAL},
    {"unknown property", 5, "30 05 00 01 61 01 7f", MAL},
    {"two-byte property id", 5, "30 06 00 01 61 02 81 01", MAL},
    {"duplicate Payload Format", 5, "30 08 00 01 61 04 01 01 01 01", PROTO},
    {"Payload Format 2", 5, "30 06 00 01 61 02 01 02", PROTO},
    {"Session Expiry in PUBLISH", 5, "30 09 00 01 61 05 11 00 00 00 00", PROTO},
    {"Topic Alias", 5, "30 07 00 01 61 03 23 00 01", IOT_EINVAL, MQTT_RC_TOPIC_ALIAS_INVALID},
    {"Topic Alias 0", 5, "30 07 00 01 61 03 23 00 00", PROTO},
    {"Subscription Identifier from a client", 5, "30 06 00 01 61 02 0b 01", PROTO},
    {"Response Topic with a wildcard", 5, "30 09 00 01 61 05 08 00 02 61 23", PROTO},
    {"user property cut short", 5, "30 09 00 01 61 05 26 00 01 6b 00", MAL},
    {"user property not UTF-8", 5, "30 0b 00 01 61 07 26 00 01 6b 00 01 ff", MAL},
    {"property length not minimal", 5, "30 05 00 01 61 80 00", MAL},
    /* PUBACK, §3.4 */
    {"PUBACK packet id 0", 4, "40 02 00 00", PROTO},
    {"PUBACK truncated", 4, "40 01 00", MAL},
    {"3.1.1 PUBACK with a reason", 4, "40 03 00 01 00", MAL},
    {"PUBACK reason 0x05", 5, "40 03 00 01 05", PROTO},
    {"PUBACK Session Expiry", 5, "40 09 00 01 00 05 11 00 00 00 01", PROTO},
    /* SUBSCRIBE / UNSUBSCRIBE, §3.8 / §3.10 */
    {"SUBSCRIBE packet id 0", 4, "82 06 00 00 00 01 61 00", PROTO},
    {"SUBSCRIBE without filters", 4, "82 02 00 01", PROTO},
    {"UNSUBSCRIBE without filters", 5, "a2 03 00 01 00", PROTO},
    {"filter 'a/#/b'", 4, "82 0a 00 01 00 05 61 2f 23 2f 62 00", MAL},
    {"filter 'a+'", 4, "82 07 00 01 00 02 61 2b 00", MAL},
    {"empty filter", 4, "82 05 00 01 00 00 00", MAL},
    {"UNSUBSCRIBE filter 'a#'", 4, "a2 06 00 01 00 02 61 23", MAL},
    {"3.1.1 options reserved bits", 4, "82 06 00 01 00 01 61 04", MAL},
    {"options QoS 3", 5, "82 07 00 01 00 00 01 61 03", MAL},
    {"options reserved bit 7", 5, "82 07 00 01 00 00 01 61 80", MAL},
    {"Retain Handling 3", 5, "82 07 00 01 00 00 01 61 30", PROTO},
    {"No Local on a shared subscription", 5,
     "82 10 00 01 00 00 0a 24 73 68 61 72 65 2f 67 2f 61 04", PROTO},
    {"options byte missing", 4, "82 05 00 01 00 01 61", MAL},
    {"Subscription Identifier 0", 5, "82 09 00 01 02 0b 00 00 01 61 00", PROTO},
    {"Subscription Identifier twice", 5, "82 0b 00 01 04 0b 01 0b 02 00 01 61 00", PROTO},
    /* DISCONNECT, §3.14 */
    {"DISCONNECT reason 0x05", 5, "e0 01 05", PROTO},
    {"DISCONNECT Topic Alias", 5, "e0 05 00 03 23 00 01", PROTO},
    /* CONNECT, §3.1 */
    {"CONNECT reserved flag", 0, "10 0c 00 04 4d 51 54 54 04 01 00 00 00 00", MAL},
    {"MQTT 3.1 (MQIsdp)", 0, "10 0e 00 06 4d 51 49 73 64 70 03 02 00 3c 00 00", IOT_EINVAL,
     MQTT_RC_UNSUPPORTED_VERSION},
    {"protocol level 6", 0, "10 0c 00 04 4d 51 54 54 06 02 00 3c 00 00", IOT_EINVAL,
     MQTT_RC_UNSUPPORTED_VERSION},
    {"will QoS without will", 0, "10 0c 00 04 4d 51 54 54 04 0a 00 3c 00 00", MAL},
    {"will retain without will", 0, "10 0c 00 04 4d 51 54 54 04 22 00 3c 00 00", MAL},
    {"will QoS 3", 0, "10 0c 00 04 4d 51 54 54 04 1e 00 3c 00 00", MAL},
    {"will QoS 2", 0, "10 11 00 04 4d 51 54 54 04 16 00 3c 00 00 00 01 61 00 00", IOT_EINVAL,
     MQTT_RC_QOS_NOT_SUPPORTED},
    {"3.1.1 password without user name", 0, "10 0e 00 04 4d 51 54 54 04 42 00 3c 00 00 00 00", MAL},
    {"client id not UTF-8", 0, "10 0e 00 04 4d 51 54 54 04 02 00 3c 00 02 c3 28", MAL},
    {"client id truncated", 0, "10 0b 00 04 4d 51 54 54 04 02 00 3c 00", MAL},
    {"will topic with a wildcard", 0, "10 11 00 04 4d 51 54 54 04 06 00 3c 00 00 00 01 23 00 00",
     IOT_EINVAL, MQTT_RC_TOPIC_NAME_INVALID},
    {"will payload missing", 0, "10 0f 00 04 4d 51 54 54 04 06 00 3c 00 00 00 01 61", MAL},
    {"user name missing", 0, "10 0c 00 04 4d 51 54 54 04 82 00 3c 00 00", MAL},
    {"password missing", 0, "10 0f 00 04 4d 51 54 54 04 c2 00 3c 00 00 00 01 75", MAL},
    {"bytes after the password", 0, "10 11 00 04 4d 51 54 54 04 c2 00 3c 00 00 00 00 00 00 ff",
     MAL},
    {"v5 CONNECT properties missing", 0, "10 0c 00 04 4d 51 54 54 05 02 00 3c 00 00", MAL},
    {"Authentication Data without Method", 0,
     "10 10 00 04 4d 51 54 54 05 02 00 3c 03 16 00 00 00 00", PROTO},
    {"Receive Maximum 0", 0, "10 10 00 04 4d 51 54 54 05 02 00 3c 03 21 00 00 00 00", PROTO},
    {"Maximum Packet Size 0", 0, "10 12 00 04 4d 51 54 54 05 02 00 3c 05 27 00 00 00 00 00 00",
     PROTO},
    {"Request Problem Information 2", 0, "10 0f 00 04 4d 51 54 54 05 02 00 3c 02 17 02 00 00",
     PROTO},
    {"Session Expiry twice", 0,
     "10 17 00 04 4d 51 54 54 05 02 00 3c 0a 11 00 00 00 01 11 00 00 00 02 00 00", PROTO},
    {"Will Delay in CONNECT properties", 0,
     "10 12 00 04 4d 51 54 54 05 02 00 3c 05 18 00 00 00 01 00 00", PROTO},
    {"Session Expiry in will properties", 0,
     "10 18 00 04 4d 51 54 54 05 06 00 3c 00 00 00 05 11 00 00 00 01 00 01 61 00 00", PROTO},
};

Test(mqtt_malformed, table)
{
    for (size_t i = 0; i < N(BAD); i++) {
        cr_log_info("%s", BAD[i].what);
        decode_err(BAD[i].hex, BAD[i].version, BAD[i].rc, BAD[i].reason);
    }
}

Test(mqtt_malformed, frame_over_max_is_refused_from_the_fixed_header)
{
    /* 2 bytes say 127 more follow: refused before any of them arrive */
    uint8_t b[] = {0x30, 0x7f};
    struct mqtt_frame f;
    size_t used;
    cr_assert_eq(decode_exact(b, 2, 100, MQTT_V311, &f, &used), IOT_ETOOBIG);
    cr_assert_eq(f.reason, MQTT_RC_PACKET_TOO_LARGE);
    /* the largest Remaining Length, 5 bytes of header */
    uint8_t big[] = {0x30, 0xff, 0xff, 0xff, 0x7f};
    cr_assert_eq(decode_exact(big, 5, MAX_FRAME, MQTT_V5, &f, &used), IOT_ETOOBIG);
    /* a frame of exactly max_frame bytes passes; one byte more does not */
    uint8_t ok[] = {0x30, 0x03, 0x00, 0x01, 0x61};
    cr_assert_eq(decode_exact(ok, 5, 5, MQTT_V311, &f, &used), 0);
    cr_assert_eq(used, 5);
    cr_assert_eq(decode_exact(ok, 5, 4, MQTT_V311, &f, &used), IOT_ETOOBIG);
    /* with a partial Remaining Length nothing is known yet */
    cr_assert_eq(decode_exact(big, 3, 100, MQTT_V5, &f, &used), MQTT_NEED_MORE);
    cr_assert_eq(f.len, 0);
    /* once it is known, NEED_MORE says how big the frame is */
    cr_assert_eq(decode_exact(ok, 3, 100, MQTT_V311, &f, &used), MQTT_NEED_MORE);
    cr_assert_eq(f.len, 5);
}

Test(mqtt_malformed, errors_are_found_in_prefixes_too)
{
    /* a frame refused from its first byte is refused however little arrived */
    uint8_t b[] = {0x34, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01};
    struct mqtt_frame f;
    size_t used;
    for (size_t k = 1; k <= sizeof b; k++) {
        cr_assert_eq(decode_exact(b, k, MAX_FRAME, MQTT_V5, &f, &used), IOT_EINVAL);
        cr_assert_eq(f.reason, MQTT_RC_QOS_NOT_SUPPORTED);
    }
    cr_assert_eq(decode_exact(b, 0, MAX_FRAME, MQTT_V5, &f, &used), MQTT_NEED_MORE);
    cr_assert_eq(mqtt_decode(b, 1, MAX_FRAME, 3, &f, &used), IOT_EINVAL, "bad version argument");
}

Test(mqtt_utf8, validity)
{
    struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"", true},
        {"plain ascii", true},
        {"\xc2\x80", true},          /* U+0080 */
        {"\xdf\xbf", true},          /* U+07FF */
        {"\xe0\xa0\x80", true},      /* U+0800 */
        {"\xed\x9f\xbf", true},      /* U+D7FF */
        {"\xee\x80\x80", true},      /* U+E000 */
        {"\xef\xbf\xbf", true},      /* U+FFFF (a non-character: allowed) */
        {"\xf0\x90\x80\x80", true},  /* U+10000 */
        {"\xf4\x8f\xbf\xbf", true},  /* U+10FFFF */
        {"\x01\x7f", true},          /* control characters: SHOULD NOT, allowed */
        {"\xc1\xbf", false},         /* overlong */
        {"\xe0\x9f\xbf", false},     /* overlong */
        {"\xf0\x8f\xbf\xbf", false}, /* overlong */
        {"\xed\xa0\x80", false},     /* U+D800 */
        {"\xed\xbf\xbf", false},     /* U+DFFF */
        {"\xf4\x90\x80\x80", false}, /* U+110000 */
        {"\xf5\x80\x80\x80", false},
        {"\xff", false},
        {"\x80", false},
        {"\xe2\x82", false}, /* cut */
        {"\xe2\x28\xa1", false},
    };
    for (size_t i = 0; i < N(cases); i++)
        cr_assert_eq(mqtt_utf8_valid((const uint8_t *)cases[i].s, strlen(cases[i].s)), cases[i].ok,
                     "case %zu", i);
    cr_assert(!mqtt_utf8_valid((const uint8_t *)"a\0b", 3), "U+0000");
}

Test(mqtt_topics, names_and_filters)
{
    /* 5.0 §4.7.1.2 and §4.7.1.3: the examples of the standard */
    const char *good[] = {"sport/tennis/player1/#", "sport/#", "#",   "+", "+/tennis/#",
                          "sport/+/player1",        "/+",      "+/+", "/", "$share/g/a"};
    const char *bad[] = {"sport/tennis#", "sport/tennis/#/ranking", "sport+", "a/#b", "++", ""};
    for (size_t i = 0; i < N(good); i++)
        cr_assert(mqtt_topic_filter_valid(good[i], strlen(good[i])), "%s", good[i]);
    for (size_t i = 0; i < N(bad); i++)
        cr_assert(!mqtt_topic_filter_valid(bad[i], strlen(bad[i])), "%s", bad[i]);
    cr_assert(mqtt_topic_name_valid("devices/d1/packets", 18));
    cr_assert(mqtt_topic_name_valid("/", 1));
    cr_assert(!mqtt_topic_name_valid("devices/+/packets", 17));
    cr_assert(!mqtt_topic_name_valid("", 0));
}

/* ---- encoders ----------------------------------------------------------- */

Test(mqtt_encode, connack_v311)
{
    /* 3.1.1 §3.2: 20 02, acknowledge flags (Session Present), return code (Table 3.1) */
    uint8_t b[64];
    assert_encoded(mqtt_encode_connack(b, sizeof b, 4, false, 0, NULL), b, "20 02 00 00");
    assert_encoded(mqtt_encode_connack(b, sizeof b, 4, true, 0, NULL), b, "20 02 01 00");
    assert_encoded(mqtt_encode_connack(b, sizeof b, 4, false, MQTT_RC_UNSUPPORTED_VERSION, NULL), b,
                   "20 02 00 01");
    assert_encoded(mqtt_encode_connack(b, sizeof b, 4, false, MQTT_RC_CLIENT_ID_INVALID, NULL), b,
                   "20 02 00 02");
    assert_encoded(mqtt_encode_connack(b, sizeof b, 4, false, MQTT_RC_SERVER_BUSY, NULL), b,
                   "20 02 00 03");
    assert_encoded(mqtt_encode_connack(b, sizeof b, 4, false, MQTT_RC_BAD_CREDENTIALS, NULL), b,
                   "20 02 00 04");
    assert_encoded(mqtt_encode_connack(b, sizeof b, 4, false, MQTT_RC_NOT_AUTHORIZED, NULL), b,
                   "20 02 00 05");
    /* props are ignored for 3.1.1 */
    struct mqtt_props p = {.present = MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM),
                           .receive_maximum = 1};
    assert_encoded(mqtt_encode_connack(b, sizeof b, 4, false, 0, &p), b, "20 02 00 00");
    /* Session Present with a refusal: [MQTT-3.2.2-4] */
    cr_assert_eq(mqtt_encode_connack(b, sizeof b, 4, true, MQTT_RC_NOT_AUTHORIZED, NULL),
                 IOT_EINVAL);
}

Test(mqtt_encode, connack_v5_with_the_gateways_properties)
{
    /* 5.0 §3.2.2.3: properties in identifier order: Assigned Client Identifier
     * "auto-1", Receive Maximum 16, Topic Alias Maximum 0, Maximum QoS 1,
     * Retain Available 0, Maximum Packet Size 1048576, Wildcard Subscription
     * Available 0, Subscription Identifiers Available 0, Shared Subscription
     * Available 0: 30 bytes. */
    struct mqtt_props p = {
        .present =
            MQTT_PROP_BIT(MQTT_PROP_ASSIGNED_CLIENT_ID) | MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM) |
            MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM) | MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_QOS) |
            MQTT_PROP_BIT(MQTT_PROP_RETAIN_AVAILABLE) |
            MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE) |
            MQTT_PROP_BIT(MQTT_PROP_WILDCARD_SUB_AVAILABLE) |
            MQTT_PROP_BIT(MQTT_PROP_SUB_ID_AVAILABLE) |
            MQTT_PROP_BIT(MQTT_PROP_SHARED_SUB_AVAILABLE),
        .assigned_client_id = {"auto-1", 6},
        .receive_maximum = 16,
        .maximum_qos = 1,
        .maximum_packet_size = 1048576,
    };
    uint8_t b[64];
    assert_encoded(mqtt_encode_connack(b, sizeof b, 5, false, 0, &p), b,
                   "20 21 00 00 1e 12 00 06 61 75 74 6f 2d 31 21 00 10 22 00 00 24 01 25 00"
                   " 27 00 10 00 00 28 00 29 00 2a 00");
    /* 5.0 §3.2.2.2: a refusal, no properties */
    assert_encoded(mqtt_encode_connack(b, sizeof b, 5, false, MQTT_RC_NOT_AUTHORIZED, NULL), b,
                   "20 03 00 87 00");
    /* Reason String "no" (0x1F) on a refusal */
    struct mqtt_props r = {.present = MQTT_PROP_BIT(MQTT_PROP_REASON_STRING),
                           .reason_string = {"no", 2}};
    assert_encoded(mqtt_encode_connack(b, sizeof b, 5, false, MQTT_RC_BAD_CREDENTIALS, &r), b,
                   "20 08 00 86 05 1f 00 02 6e 6f");
    /* what a CONNACK may not carry */
    cr_assert_eq(mqtt_encode_connack(b, sizeof b, 5, false, MQTT_RC_GRANTED_QOS1, NULL),
                 IOT_EINVAL);
    struct mqtt_props bad = {.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS), .topic_alias = 1};
    cr_assert_eq(mqtt_encode_connack(b, sizeof b, 5, false, 0, &bad), IOT_EINVAL);
    bad = (struct mqtt_props){.present = MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_QOS), .maximum_qos = 2};
    cr_assert_eq(mqtt_encode_connack(b, sizeof b, 5, false, 0, &bad), IOT_EINVAL);
    bad = (struct mqtt_props){.present = MQTT_PROP_BIT(MQTT_PROP_REASON_STRING),
                              .reason_string = {"\xff", 1}};
    cr_assert_eq(mqtt_encode_connack(b, sizeof b, 5, false, 0, &bad), IOT_EINVAL);
    bad = (struct mqtt_props){.present = MQTT_PROP_BIT(0x04)}; /* no such property */
    cr_assert_eq(mqtt_encode_connack(b, sizeof b, 5, false, 0, &bad), IOT_EINVAL);
    /* too small a buffer: every size short of the frame */
    for (size_t cap = 0; cap < 35; cap++)
        cr_assert_eq(mqtt_encode_connack(b, cap, 5, false, 0, &p), IOT_ETOOBIG, "cap %zu", cap);
}

Test(mqtt_encode, publish)
{
    /* §3.3: 3.1.1 QoS 0 "d/r" payload "{}" (no packet id) */
    uint8_t b[64];
    struct mqtt_publish p = {
        .qos = 0, .topic = {"d/r", 3}, .payload = (const uint8_t *)"{}", .payload_len = 2};
    assert_encoded(mqtt_encode_publish(b, sizeof b, 4, &p), b, "30 07 00 03 64 2f 72 7b 7d");
    /* 5.0 QoS 1 packet id 1, properties length 0 */
    p.qos = 1;
    p.packet_id = 1;
    assert_encoded(mqtt_encode_publish(b, sizeof b, 5, &p), b,
                   "32 0a 00 03 64 2f 72 00 01 00 7b 7d");
    /* 5.0 with Content Type "json", retain and dup flags */
    p.retain = p.dup = true;
    p.props.present = MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE);
    p.props.content_type = (struct mqtt_str){"json", 4};
    assert_encoded(mqtt_encode_publish(b, sizeof b, 5, &p), b,
                   "3b 11 00 03 64 2f 72 00 01 07 03 00 04 6a 73 6f 6e 7b 7d");
    /* what the server never sends */
    p.qos = 2;
    cr_assert_eq(mqtt_encode_publish(b, sizeof b, 5, &p), IOT_EINVAL);
    p.qos = 1;
    p.packet_id = 0;
    cr_assert_eq(mqtt_encode_publish(b, sizeof b, 5, &p), IOT_EINVAL);
    p.packet_id = 1;
    p.topic = (struct mqtt_str){"d/#", 3};
    cr_assert_eq(mqtt_encode_publish(b, sizeof b, 5, &p), IOT_EINVAL);
    p.topic = (struct mqtt_str){"d/r", 3};
    p.qos = 0; /* with dup */
    cr_assert_eq(mqtt_encode_publish(b, sizeof b, 5, &p), IOT_EINVAL);
    p.dup = false;
    cr_assert_eq(mqtt_encode_publish(b, 10, 5, &p), IOT_ETOOBIG);
}

Test(mqtt_encode, puback)
{
    uint8_t b[32];
    /* 3.1.1 §3.4: 40 02 + packet id */
    assert_encoded(mqtt_encode_puback(b, sizeof b, 4, 7, 0, NULL), b, "40 02 00 07");
    cr_assert_eq(mqtt_encode_puback(b, sizeof b, 4, 7, MQTT_RC_NOT_AUTHORIZED, NULL), IOT_EINVAL);
    /* 5.0 §3.4.2.1: success without properties leaves both out */
    assert_encoded(mqtt_encode_puback(b, sizeof b, 5, 7, 0, NULL), b, "40 02 00 07");
    assert_encoded(mqtt_encode_puback(b, sizeof b, 5, 7, MQTT_RC_NOT_AUTHORIZED, NULL), b,
                   "40 03 00 07 87");
    struct mqtt_props r = {.present = MQTT_PROP_BIT(MQTT_PROP_REASON_STRING),
                           .reason_string = {"db", 2}};
    assert_encoded(mqtt_encode_puback(b, sizeof b, 5, 7, MQTT_RC_UNSPECIFIED, &r), b,
                   "40 09 00 07 80 05 1f 00 02 64 62");
    cr_assert_eq(mqtt_encode_puback(b, sizeof b, 5, 0, 0, NULL), IOT_EINVAL);
    cr_assert_eq(mqtt_encode_puback(b, sizeof b, 5, 7, MQTT_RC_MALFORMED, NULL), IOT_EINVAL);
    cr_assert_eq(mqtt_encode_puback(b, 3, 5, 7, 0, NULL), IOT_ETOOBIG);
}

Test(mqtt_encode, suback_unsuback_pingresp)
{
    uint8_t b[32];
    /* 3.1.1 §3.9.3: return codes 0x00..0x02, 0x80; an MQTT 5 refusal becomes 0x80 */
    const uint8_t codes[] = {MQTT_RC_GRANTED_QOS1, MQTT_RC_NOT_AUTHORIZED};
    assert_encoded(mqtt_encode_suback(b, sizeof b, 4, 10, codes, 2, NULL), b, "90 04 00 0a 01 80");
    /* 5.0 §3.9: properties length 0, then the reason codes */
    assert_encoded(mqtt_encode_suback(b, sizeof b, 5, 10, codes, 2, NULL), b,
                   "90 05 00 0a 00 01 87");
    const uint8_t bad[] = {MQTT_RC_NO_SUBSCRIPTION_EXISTED};
    cr_assert_eq(mqtt_encode_suback(b, sizeof b, 5, 10, bad, 1, NULL), IOT_EINVAL);
    cr_assert_eq(mqtt_encode_suback(b, sizeof b, 5, 10, codes, 0, NULL), IOT_EINVAL);
    /* 3.1.1 §3.11: b0 02 + packet id; 5.0 §3.11.3: a reason code per filter */
    assert_encoded(mqtt_encode_unsuback(b, sizeof b, 4, 10, NULL, 0, NULL), b, "b0 02 00 0a");
    const uint8_t ucodes[] = {MQTT_RC_SUCCESS, MQTT_RC_NO_SUBSCRIPTION_EXISTED};
    assert_encoded(mqtt_encode_unsuback(b, sizeof b, 5, 10, ucodes, 2, NULL), b,
                   "b0 05 00 0a 00 00 11");
    cr_assert_eq(mqtt_encode_unsuback(b, sizeof b, 5, 10, codes, 2, NULL), IOT_EINVAL);
    /* §3.13: d0 00 */
    assert_encoded(mqtt_encode_pingresp(b, sizeof b), b, "d0 00");
    cr_assert_eq(mqtt_encode_pingresp(b, 1), IOT_ETOOBIG);
}

Test(mqtt_encode, disconnect)
{
    uint8_t b[32];
    /* 5.0 §3.14.2.1: reason 0 without properties leaves both out */
    assert_encoded(mqtt_encode_disconnect(b, sizeof b, 5, 0, NULL), b, "e0 00");
    assert_encoded(mqtt_encode_disconnect(b, sizeof b, 5, MQTT_RC_QOS_NOT_SUPPORTED, NULL), b,
                   "e0 01 9b");
    struct mqtt_props r = {.present = MQTT_PROP_BIT(MQTT_PROP_SERVER_REFERENCE),
                           .server_reference = {"h", 1}};
    assert_encoded(mqtt_encode_disconnect(b, sizeof b, 5, MQTT_RC_USE_ANOTHER_SERVER, &r), b,
                   "e0 06 9c 04 1c 00 01 68");
    cr_assert_eq(mqtt_encode_disconnect(b, sizeof b, 5, MQTT_RC_BAD_CREDENTIALS, NULL), IOT_EINVAL);
    /* 3.1.1 has no server DISCONNECT with a reason */
    assert_encoded(mqtt_encode_disconnect(b, sizeof b, 4, 0, NULL), b, "e0 00");
    cr_assert_eq(mqtt_encode_disconnect(b, sizeof b, 4, MQTT_RC_MALFORMED, NULL), IOT_EINVAL);
    cr_assert_eq(mqtt_encode_disconnect(b, sizeof b, 6, 0, NULL), IOT_EINVAL);
}

/* ---- round trip ------------------------------------------------------------ */

Test(mqtt_roundtrip, publish_puback_disconnect)
{
    uint8_t big[300];
    memset(big, 'x', sizeof big); /* a 2-byte Remaining Length */
    /* a decoded frame with user properties is encoded and decoded again */
    struct mqtt_frame src = decode_ok("3b 1f 00 03 61 2f 62 00 0a 15 01 01 02 00 00 00 3c"
                                      " 03 00 04 6a 73 6f 6e 26 00 01 6b 00 01 76 68 69",
                                      MQTT_V5);
    src.u.publish.payload = big;
    src.u.publish.payload_len = sizeof big;
    uint8_t b[512];
    int n = mqtt_encode_publish(b, sizeof b, 5, &src.u.publish);
    cr_assert_gt(n, 300);
    struct mqtt_frame f;
    size_t used;
    cr_assert_eq(mqtt_decode(b, (size_t)n, MAX_FRAME, 5, &f, &used), 0, "%s", f.error);
    cr_assert_eq(used, (size_t)n);
    struct mqtt_publish *p = &f.u.publish, *q = &src.u.publish;
    cr_assert(p->qos == q->qos && p->dup == q->dup && p->retain == q->retain);
    cr_assert_eq(p->packet_id, q->packet_id);
    cr_assert_eq(p->props.present, q->props.present);
    cr_assert_eq(p->props.message_expiry, 60);
    assert_str(p->props.content_type, "json");
    struct mqtt_str k, v;
    size_t pos = 0;
    cr_assert(mqtt_props_user(&p->props, &pos, &k, &v));
    assert_str(k, "k");
    assert_str(v, "v");
    cr_assert_eq(p->payload_len, sizeof big);
    cr_assert(memcmp(p->payload, big, sizeof big) == 0);

    for (int version = 4; version <= 5; version++) {
        n = mqtt_encode_puback(b, sizeof b, version, 65535, 0, NULL);
        cr_assert_eq(mqtt_decode(b, (size_t)n, MAX_FRAME, version, &f, &used), 0);
        cr_assert_eq(f.u.puback.packet_id, 65535);
        n = mqtt_encode_disconnect(b, sizeof b, version, 0, NULL);
        cr_assert_eq(mqtt_decode(b, (size_t)n, MAX_FRAME, version, &f, &used), 0);
        cr_assert_eq(f.type, MQTT_DISCONNECT);
    }
    n = mqtt_encode_disconnect(b, sizeof b, 5, MQTT_RC_DISCONNECT_WITH_WILL, NULL);
    cr_assert_eq(mqtt_decode(b, (size_t)n, MAX_FRAME, 5, &f, &used), 0);
    cr_assert_eq(f.u.disconnect.reason, MQTT_RC_DISCONNECT_WITH_WILL);
}

Test(mqtt_roundtrip, remaining_length_boundaries)
{
    /* 1.5.5 / 2.2.3: 127 | 128, 16383 | 16384, 2097151 | 2097152 take 1..4 bytes */
    static uint8_t payload[2097160], out[2097200];
    const size_t sizes[] = {0, 122, 123, 16378, 16379, 2097146, 2097147};
    struct mqtt_publish p = {.topic = {"t", 1}, .payload = payload};
    for (size_t i = 0; i < N(sizes); i++) {
        p.payload_len = sizes[i];
        int n = mqtt_encode_publish(out, sizeof out, 4, &p);
        cr_assert_gt(n, 0);
        size_t rl = 3 + sizes[i];
        size_t hdr = rl < 128 ? 2 : rl < 16384 ? 3 : rl < 2097152 ? 4 : 5;
        cr_assert_eq((size_t)n, hdr + rl, "size %zu", sizes[i]);
        struct mqtt_frame f;
        size_t used;
        cr_assert_eq(mqtt_decode(out, (size_t)n, sizeof out, 4, &f, &used), 0);
        cr_assert_eq(f.u.publish.payload_len, sizes[i]);
    }
}
