/*
 * MQTT 5 properties (MQTT 5.0 §2.2.2): one table of every property (its
 * type, the packets that may carry it, its range, where it lives in struct
 * mqtt_props) drives both reading a property block and writing one, so the
 * decoder and the encoders cannot disagree on a property.
 */
#include "mqtt/mqtt_int.h"

#include <stddef.h>
#include <string.h>

enum prop_type { T_NONE, T_BYTE, T_U16, T_U32, T_VARINT, T_STR, T_BIN, T_PAIR };

enum prop_rule {
    R_ANY,
    R_BOOL,    /* 0 or 1 */
    R_NONZERO, /* 0 is a Protocol Error */
    R_TOPIC,   /* a topic name (Response Topic, [MQTT-3.3.2-14]) */
};

struct prop_def {
    uint8_t type;
    uint8_t rule;
    uint16_t ctx;    /* enum mqtt_prop_ctx bits */
    uint16_t offset; /* of the value in struct mqtt_props */
};

#define PC_PUB_WILL (MQTT_PC_PUBLISH | MQTT_PC_WILL)
#define PC_ACKS     (MQTT_PC_CONNACK | MQTT_PC_PUBACK | MQTT_PC_SUBACK | MQTT_PC_UNSUBACK)
#define PC_ALL                                                                                     \
    (MQTT_PC_CONNECT | MQTT_PC_WILL | PC_ACKS | MQTT_PC_PUBLISH | MQTT_PC_SUBSCRIBE |              \
     MQTT_PC_UNSUBSCRIBE | MQTT_PC_DISCONNECT | MQTT_PC_AUTH)
#define OFF(field) offsetof(struct mqtt_props, field)

/* MQTT 5.0 Table 2-4, with the ranges of §3.1.2.11, §3.2.2.3 and §3.3.2.3. */
static const struct prop_def PROPS[MQTT_PROP_MAX_ID + 1] = {
    [MQTT_PROP_PAYLOAD_FORMAT] = {T_BYTE, R_BOOL, PC_PUB_WILL, OFF(payload_format)},
    [MQTT_PROP_MESSAGE_EXPIRY] = {T_U32, R_ANY, PC_PUB_WILL, OFF(message_expiry)},
    [MQTT_PROP_CONTENT_TYPE] = {T_STR, R_ANY, PC_PUB_WILL, OFF(content_type)},
    [MQTT_PROP_RESPONSE_TOPIC] = {T_STR, R_TOPIC, PC_PUB_WILL, OFF(response_topic)},
    [MQTT_PROP_CORRELATION_DATA] = {T_BIN, R_ANY, PC_PUB_WILL, OFF(correlation_data)},
    [MQTT_PROP_SUBSCRIPTION_ID] = {T_VARINT, R_NONZERO, MQTT_PC_PUBLISH | MQTT_PC_SUBSCRIBE,
                                   OFF(subscription_id)},
    [MQTT_PROP_SESSION_EXPIRY] = {T_U32, R_ANY,
                                  MQTT_PC_CONNECT | MQTT_PC_CONNACK | MQTT_PC_DISCONNECT,
                                  OFF(session_expiry)},
    [MQTT_PROP_ASSIGNED_CLIENT_ID] = {T_STR, R_ANY, MQTT_PC_CONNACK, OFF(assigned_client_id)},
    [MQTT_PROP_SERVER_KEEP_ALIVE] = {T_U16, R_ANY, MQTT_PC_CONNACK, OFF(server_keep_alive)},
    [MQTT_PROP_AUTH_METHOD] = {T_STR, R_ANY, MQTT_PC_CONNECT | MQTT_PC_CONNACK | MQTT_PC_AUTH,
                               OFF(auth_method)},
    [MQTT_PROP_AUTH_DATA] = {T_BIN, R_ANY, MQTT_PC_CONNECT | MQTT_PC_CONNACK | MQTT_PC_AUTH,
                             OFF(auth_data)},
    [MQTT_PROP_REQUEST_PROBLEM_INFO] = {T_BYTE, R_BOOL, MQTT_PC_CONNECT, OFF(request_problem_info)},
    [MQTT_PROP_WILL_DELAY] = {T_U32, R_ANY, MQTT_PC_WILL, OFF(will_delay)},
    [MQTT_PROP_REQUEST_RESPONSE_INFO] = {T_BYTE, R_BOOL, MQTT_PC_CONNECT,
                                         OFF(request_response_info)},
    [MQTT_PROP_RESPONSE_INFO] = {T_STR, R_ANY, MQTT_PC_CONNACK, OFF(response_info)},
    [MQTT_PROP_SERVER_REFERENCE] = {T_STR, R_ANY, MQTT_PC_CONNACK | MQTT_PC_DISCONNECT,
                                    OFF(server_reference)},
    [MQTT_PROP_REASON_STRING] = {T_STR, R_ANY, PC_ACKS | MQTT_PC_DISCONNECT | MQTT_PC_AUTH,
                                 OFF(reason_string)},
    [MQTT_PROP_RECEIVE_MAXIMUM] = {T_U16, R_NONZERO, MQTT_PC_CONNECT | MQTT_PC_CONNACK,
                                   OFF(receive_maximum)},
    [MQTT_PROP_TOPIC_ALIAS_MAXIMUM] = {T_U16, R_ANY, MQTT_PC_CONNECT | MQTT_PC_CONNACK,
                                       OFF(topic_alias_maximum)},
    [MQTT_PROP_TOPIC_ALIAS] = {T_U16, R_NONZERO, MQTT_PC_PUBLISH, OFF(topic_alias)},
    [MQTT_PROP_MAXIMUM_QOS] = {T_BYTE, R_BOOL, MQTT_PC_CONNACK, OFF(maximum_qos)},
    [MQTT_PROP_RETAIN_AVAILABLE] = {T_BYTE, R_BOOL, MQTT_PC_CONNACK, OFF(retain_available)},
    [MQTT_PROP_USER] = {T_PAIR, R_ANY, PC_ALL, 0},
    [MQTT_PROP_MAXIMUM_PACKET_SIZE] = {T_U32, R_NONZERO, MQTT_PC_CONNECT | MQTT_PC_CONNACK,
                                       OFF(maximum_packet_size)},
    [MQTT_PROP_WILDCARD_SUB_AVAILABLE] = {T_BYTE, R_BOOL, MQTT_PC_CONNACK,
                                          OFF(wildcard_sub_available)},
    [MQTT_PROP_SUB_ID_AVAILABLE] = {T_BYTE, R_BOOL, MQTT_PC_CONNACK, OFF(sub_id_available)},
    [MQTT_PROP_SHARED_SUB_AVAILABLE] = {T_BYTE, R_BOOL, MQTT_PC_CONNACK, OFF(shared_sub_available)},
};

static const struct prop_def *prop_def(uint8_t id)
{
    if (id > MQTT_PROP_MAX_ID || PROPS[id].type == T_NONE) return NULL;
    return &PROPS[id];
}

/* Whether an integer value keeps the property's rule. */
static bool int_ok(const struct prop_def *d, uint32_t v)
{
    if (d->rule == R_BOOL) return v <= 1;
    if (d->rule == R_NONZERO) return v != 0;
    return true;
}

/* Reads one property's value into props; 0, or the reason code of the failure. */
static uint8_t read_value(struct mqtt_rd *r, const struct prop_def *d, struct mqtt_props *props)
{
    char *dst = (char *)props + d->offset;
    uint32_t v = 0;
    switch (d->type) {
    case T_BYTE: {
        uint8_t b;
        if (!mqtt_rd_u8(r, &b)) return MQTT_RC_MALFORMED;
        v = b;
        if (!int_ok(d, v)) return MQTT_RC_PROTOCOL_ERROR;
        *(uint8_t *)dst = b;
        return 0;
    }
    case T_U16: {
        uint16_t w;
        if (!mqtt_rd_u16(r, &w)) return MQTT_RC_MALFORMED;
        if (!int_ok(d, w)) return MQTT_RC_PROTOCOL_ERROR;
        memcpy(dst, &w, sizeof w);
        return 0;
    }
    case T_U32:
    case T_VARINT: {
        if (d->type == T_U32) {
            if (!mqtt_rd_u32(r, &v)) return MQTT_RC_MALFORMED;
        } else {
            size_t used;
            if (mqtt_varint_get(r->p + r->at, mqtt_rd_left(r), &v, &used) != 0)
                return MQTT_RC_MALFORMED;
            r->at += used;
        }
        if (!int_ok(d, v)) return MQTT_RC_PROTOCOL_ERROR;
        memcpy(dst, &v, sizeof v);
        return 0;
    }
    case T_STR: {
        struct mqtt_str s;
        if (!mqtt_rd_str(r, &s)) return MQTT_RC_MALFORMED;
        if (d->rule == R_TOPIC && !mqtt_topic_name_valid(s.p, s.len)) return MQTT_RC_PROTOCOL_ERROR;
        memcpy(dst, &s, sizeof s);
        return 0;
    }
    case T_BIN: {
        struct mqtt_bytes b;
        if (!mqtt_rd_bytes(r, &b)) return MQTT_RC_MALFORMED;
        memcpy(dst, &b, sizeof b);
        return 0;
    }
    default: { /* T_PAIR: counted, kept in the raw block */
        struct mqtt_str k, val;
        if (!mqtt_rd_str(r, &k) || !mqtt_rd_str(r, &val)) return MQTT_RC_MALFORMED;
        props->user_count++;
        return 0;
    }
    }
}

int mqtt_props_parse(struct mqtt_rd *r, unsigned ctx, struct mqtt_props *props,
                     struct mqtt_frame *f)
{
    memset(props, 0, sizeof *props);
    uint32_t n;
    size_t used;
    if (mqtt_varint_get(r->p + r->at, mqtt_rd_left(r), &n, &used) != 0)
        return mqtt_fail(f, MQTT_RC_MALFORMED, "property length is not a valid integer");
    r->at += used;
    if (n > mqtt_rd_left(r)) return mqtt_fail(f, MQTT_RC_MALFORMED, "properties past the packet");
    struct mqtt_rd pr = {r->p + r->at, n, 0};
    r->at += n;
    while (mqtt_rd_left(&pr) > 0) {
        uint8_t id = pr.p[pr.at++];
        const struct prop_def *d = prop_def(id); /* every identifier is 1 byte (2.2.2.2) */
        if (!d) return mqtt_fail(f, MQTT_RC_MALFORMED, "unknown property");
        if (!(d->ctx & ctx))
            return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "property not allowed in this packet");
        if (d->type != T_PAIR && (props->present & MQTT_PROP_BIT(id)))
            return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "property given twice");
        uint8_t rc = read_value(&pr, d, props);
        if (rc == MQTT_RC_MALFORMED)
            return mqtt_fail(f, rc, "property truncated or not valid UTF-8");
        if (rc) return mqtt_fail(f, rc, "property value out of range");
        props->present |= MQTT_PROP_BIT(id);
    }
    if (props->user_count) {
        props->user = pr.p;
        props->user_len = n;
    }
    return 0;
}

bool mqtt_props_user(const struct mqtt_props *props, size_t *pos, struct mqtt_str *key,
                     struct mqtt_str *value)
{
    if (!props || !props->user) return false;
    struct mqtt_rd r = {props->user, props->user_len, *pos};
    struct mqtt_props scratch;
    memset(&scratch, 0, sizeof scratch);
    while (mqtt_rd_left(&r) > 0) {
        uint8_t id = r.p[r.at++];
        const struct prop_def *d = prop_def(id);
        if (!d) return false;
        if (d->type == T_PAIR) {
            if (!mqtt_rd_str(&r, key) || !mqtt_rd_str(&r, value)) return false;
            *pos = r.at;
            return true;
        }
        if (read_value(&r, d, &scratch) == MQTT_RC_MALFORMED) return false;
    }
    *pos = r.at;
    return false;
}

/* ---- encoding --------------------------------------------------------- */

static size_t value_size(const struct prop_def *d, const char *src)
{
    switch (d->type) {
    case T_BYTE:
        return 1;
    case T_U16:
        return 2;
    case T_U32:
        return 4;
    case T_VARINT: {
        uint32_t v;
        memcpy(&v, src, sizeof v);
        return mqtt_varint_size(v);
    }
    default: { /* T_STR, T_BIN: same layout apart from the pointer's type */
        struct mqtt_bytes b;
        memcpy(&b, src, sizeof b);
        return 2 + b.len;
    }
    }
}

/* Whether the value at src may be written: in range, a valid string, not too long. */
static bool value_ok(const struct prop_def *d, const char *src)
{
    uint32_t v = 0;
    switch (d->type) {
    case T_BYTE:
        v = *(const uint8_t *)src;
        break;
    case T_U16: {
        uint16_t w;
        memcpy(&w, src, sizeof w);
        v = w;
        break;
    }
    case T_U32:
    case T_VARINT:
        memcpy(&v, src, sizeof v);
        if (d->type == T_VARINT && v > MQTT_MAX_REMAINING) return false;
        break;
    default: {
        struct mqtt_bytes b;
        memcpy(&b, src, sizeof b);
        if (b.len > UINT16_MAX || (b.len && !b.p)) return false;
        if (d->type == T_BIN) return true;
        if (!mqtt_utf8_valid(b.p, b.len)) return false;
        return d->rule != R_TOPIC || mqtt_topic_name_valid((const char *)b.p, b.len);
    }
    }
    return int_ok(d, v);
}

static uint8_t *put_u16(uint8_t *o, uint32_t v)
{
    o[0] = (uint8_t)(v >> 8);
    o[1] = (uint8_t)v;
    return o + 2;
}

static uint8_t *put_bytes(uint8_t *o, const void *p, size_t n)
{
    o = put_u16(o, (uint32_t)n);
    if (n) memcpy(o, p, n);
    return o + n;
}

static uint8_t *write_value(uint8_t *o, const struct prop_def *d, const char *src)
{
    uint32_t v;
    switch (d->type) {
    case T_BYTE:
        *o = *(const uint8_t *)src;
        return o + 1;
    case T_U16: {
        uint16_t w;
        memcpy(&w, src, sizeof w);
        return put_u16(o, w);
    }
    case T_U32:
        memcpy(&v, src, sizeof v);
        o = put_u16(o, v >> 16);
        return put_u16(o, v & 0xFFFF);
    case T_VARINT:
        memcpy(&v, src, sizeof v);
        return o + mqtt_varint_put(o, v);
    default: {
        struct mqtt_bytes b;
        memcpy(&b, src, sizeof b);
        return put_bytes(o, b.p, b.len);
    }
    }
}

/* The user properties of props->user as written: the bytes, or -1 if the block is broken. */
static long user_size(const struct mqtt_props *props)
{
    long n = 0;
    size_t pos = 0;
    struct mqtt_str k, v;
    while (mqtt_props_user(props, &pos, &k, &v))
        n += 1 + 2 + (long)k.len + 2 + (long)v.len;
    return props->user && pos != props->user_len ? -1 : n;
}

/* The properties' bytes without the length prefix; -1 if one may not be written. */
static long body_size(const struct mqtt_props *props, unsigned ctx)
{
    long n = 0;
    for (unsigned id = 0; id < 64; id++) {
        if (!(props->present & MQTT_PROP_BIT(id)) || id == MQTT_PROP_USER) continue;
        const struct prop_def *d = id <= MQTT_PROP_MAX_ID ? prop_def((uint8_t)id) : NULL;
        if (!d || !(d->ctx & ctx)) return -1;
        const char *src = (const char *)props + d->offset;
        if (!value_ok(d, src)) return -1;
        n += 1 + (long)value_size(d, src);
    }
    long u = user_size(props);
    if (u < 0 || n + u > (long)MQTT_MAX_REMAINING) return -1;
    return n + u;
}

long mqtt_props_size(const struct mqtt_props *props, unsigned ctx)
{
    if (!props) return 1;
    long n = body_size(props, ctx);
    return n < 0 ? -1 : n + (long)mqtt_varint_size((uint32_t)n);
}

size_t mqtt_props_write(uint8_t *o, const struct mqtt_props *props, unsigned ctx)
{
    if (!props) {
        *o = 0;
        return 1;
    }
    uint8_t *start = o;
    o += mqtt_varint_put(o, (uint32_t)body_size(props, ctx));
    for (uint8_t id = 1; id <= MQTT_PROP_MAX_ID; id++) {
        const struct prop_def *d = prop_def(id);
        if (!d || id == MQTT_PROP_USER || !(props->present & MQTT_PROP_BIT(id))) continue;
        *o++ = id;
        o = write_value(o, d, (const char *)props + d->offset);
    }
    size_t pos = 0;
    struct mqtt_str k, v;
    while (mqtt_props_user(props, &pos, &k, &v)) {
        *o++ = MQTT_PROP_USER;
        o = put_bytes(o, k.p, k.len);
        o = put_bytes(o, v.p, v.len);
    }
    return (size_t)(o - start);
}
