/*
 * The MQTT decoder: the packets a server receives, MQTT 3.1.1 and 5.0 (see
 * mqtt_codec.h for the contract and the decisions). Section numbers are of
 * MQTT 5.0 unless marked 3.1.1; the 3.1.1 layout is the 5.0 one without the
 * properties and reason codes.
 */
#include "mqtt/mqtt_int.h"

#include <string.h>

int mqtt_varint_get(const uint8_t *p, size_t len, uint32_t *v, size_t *used)
{
    uint32_t value = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i >= len) return MQTT_VARINT_SHORT;
        value |= (uint32_t)(p[i] & 0x7F) << (7 * i);
        if (!(p[i] & 0x80)) {
            /* a last byte of 0 after the first: the value fits in fewer bytes */
            if (i > 0 && p[i] == 0) return MQTT_VARINT_BAD;
            *v = value;
            *used = i + 1;
            return 0;
        }
    }
    return MQTT_VARINT_BAD;
}

size_t mqtt_varint_put(uint8_t *o, uint32_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        o[n++] = v ? (uint8_t)(b | 0x80) : b;
    } while (v);
    return n;
}

/*
 * RFC 3629 well-formedness (Table 3-7 of the Unicode Standard): no overlong
 * forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF; and no
 * U+0000, which MQTT forbids ([MQTT-1.5.4-1], [MQTT-1.5.4-2]).
 */
bool mqtt_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == 0) return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint8_t lo = 0x80, hi = 0xBF; /* the range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            if (c == 0xE0) lo = 0xA0; /* overlong */
            if (c == 0xED) hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            if (c == 0xF0) lo = 0x90; /* overlong */
            if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
        } else {
            return false;
        }
        if (n - i <= k) return false;
        if (s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return false;
        i += k + 1;
    }
    return true;
}

bool mqtt_topic_name_valid(const char *t, size_t n)
{
    return n > 0 && !memchr(t, '+', n) && !memchr(t, '#', n);
}

/* §4.7.1: '#' alone in the last level, '+' alone in its level. */
bool mqtt_topic_filter_valid(const char *t, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '+' && t[i] != '#') continue;
        bool alone = (i == 0 || t[i - 1] == '/') && (i + 1 == n || t[i + 1] == '/');
        if (!alone || (t[i] == '#' && i + 1 != n)) return false;
    }
    return true;
}

/*
 * The reason codes each packet may carry (Tables 3-1, 3-4, 3-8, 3-9, 3-10).
 * A client's PUBACK and DISCONNECT are checked against the same lists.
 */
bool mqtt_reason_valid(enum mqtt_type type, uint8_t rc)
{
    static const uint8_t connack[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
                                      0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
                                      0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
    static const uint8_t puback[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
    static const uint8_t suback[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                                     0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
    static const uint8_t unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
    static const uint8_t disconnect[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
                                         0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                                         0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
    switch (type) {
    case MQTT_CONNACK:
        return memchr(connack, rc, sizeof connack) != NULL;
    case MQTT_PUBACK:
        return memchr(puback, rc, sizeof puback) != NULL;
    case MQTT_SUBACK:
        return memchr(suback, rc, sizeof suback) != NULL;
    case MQTT_UNSUBACK:
        return memchr(unsuback, rc, sizeof unsuback) != NULL;
    case MQTT_DISCONNECT:
        return memchr(disconnect, rc, sizeof disconnect) != NULL;
    default:
        return false;
    }
}

/* The protocol name and level: "MQTT" 4 or 5; anything else is 0x84 (§3.1.2.1, §3.1.2.2). */
static int connect_version(struct mqtt_rd *r, struct mqtt_frame *f)
{
    struct mqtt_bytes name;
    uint8_t level;
    if (!mqtt_rd_bytes(r, &name) || !mqtt_rd_u8(r, &level))
        return mqtt_fail(f, MQTT_RC_MALFORMED, "CONNECT truncated");
    f->u.connect.version = level;
    if (name.len != 4 || memcmp(name.p, "MQTT", 4) != 0)
        return mqtt_fail(f, MQTT_RC_UNSUPPORTED_VERSION, "protocol name is not MQTT");
    if (level != MQTT_V311 && level != MQTT_V5)
        return mqtt_fail(f, MQTT_RC_UNSUPPORTED_VERSION, "protocol level is not 4 or 5");
    return 0;
}

/* The will of a CONNECT (§3.1.3.2 to §3.1.3.4). */
static int connect_will(struct mqtt_rd *r, struct mqtt_connect *c, struct mqtt_frame *f)
{
    if (c->version == MQTT_V5) {
        int rc = mqtt_props_parse(r, MQTT_PC_WILL, &c->will_props, f);
        if (rc) return rc;
    }
    if (!mqtt_rd_str(r, &c->will_topic) || !mqtt_rd_bytes(r, &c->will_payload))
        return mqtt_fail(f, MQTT_RC_MALFORMED, "will topic or payload truncated or not UTF-8");
    if (!mqtt_topic_name_valid(c->will_topic.p, c->will_topic.len))
        return mqtt_fail(f, MQTT_RC_TOPIC_NAME_INVALID, "will topic empty or with a wildcard");
    return 0;
}

/* CONNECT (§3.1; 3.1.1 §3.1). */
static int decode_connect(struct mqtt_rd *r, struct mqtt_frame *f)
{
    struct mqtt_connect *c = &f->u.connect;
    int rc = connect_version(r, f);
    if (rc) return rc;
    uint8_t flags;
    if (!mqtt_rd_u8(r, &flags) || !mqtt_rd_u16(r, &c->keep_alive))
        return mqtt_fail(f, MQTT_RC_MALFORMED, "CONNECT truncated");
    if (flags & 0x01) return mqtt_fail(f, MQTT_RC_MALFORMED, "CONNECT reserved flag set");
    c->clean_start = flags & 0x02;
    c->will = flags & 0x04;
    c->will_qos = (flags >> 3) & 0x03;
    c->will_retain = flags & 0x20;
    c->has_password = flags & 0x40;
    c->has_username = flags & 0x80;
    if (!c->will && (c->will_qos || c->will_retain))
        return mqtt_fail(f, MQTT_RC_MALFORMED, "will QoS or retain without a will");
    if (c->will_qos == 3) return mqtt_fail(f, MQTT_RC_MALFORMED, "will QoS 3");
    if (c->will_qos == 2) return mqtt_fail(f, MQTT_RC_QOS_NOT_SUPPORTED, "will QoS 2 refused");
    if (c->version == MQTT_V311 && c->has_password && !c->has_username)
        return mqtt_fail(f, MQTT_RC_MALFORMED, "password without user name"); /* 3.1.2-22 */
    if (c->version == MQTT_V5) {
        rc = mqtt_props_parse(r, MQTT_PC_CONNECT, &c->props, f);
        if (rc) return rc;
        uint64_t p = c->props.present;
        if ((p & MQTT_PROP_BIT(MQTT_PROP_AUTH_DATA)) && !(p & MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD)))
            return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "authentication data without method");
    }
    if (!mqtt_rd_str(r, &c->client_id))
        return mqtt_fail(f, MQTT_RC_MALFORMED, "client id truncated or not UTF-8");
    if (c->will && (rc = connect_will(r, c, f)) != 0) return rc;
    if (c->has_username && !mqtt_rd_str(r, &c->username))
        return mqtt_fail(f, MQTT_RC_MALFORMED, "user name truncated or not UTF-8");
    if (c->has_password && !mqtt_rd_bytes(r, &c->password))
        return mqtt_fail(f, MQTT_RC_MALFORMED, "password truncated");
    return 0;
}

/* PUBLISH (§3.3): the QoS was checked from the fixed header. */
static int decode_publish(struct mqtt_rd *r, int version, struct mqtt_frame *f)
{
    struct mqtt_publish *p = &f->u.publish;
    p->dup = f->flags & 0x08;
    p->qos = (f->flags >> 1) & 0x03;
    p->retain = f->flags & 0x01;
    if (!mqtt_rd_str(r, &p->topic))
        return mqtt_fail(f, MQTT_RC_MALFORMED, "topic truncated or not UTF-8");
    if (p->topic.len == 0) /* no topic alias can stand in for it (Topic Alias Maximum 0) */
        return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "empty topic name");
    if (!mqtt_topic_name_valid(p->topic.p, p->topic.len))
        return mqtt_fail(f, MQTT_RC_TOPIC_NAME_INVALID, "wildcard in a topic name");
    if (p->qos > 0) {
        if (!mqtt_rd_u16(r, &p->packet_id))
            return mqtt_fail(f, MQTT_RC_MALFORMED, "packet identifier truncated");
        if (p->packet_id == 0)
            return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "packet identifier 0"); /* 2.2.1-3 */
    }
    if (version == MQTT_V5) {
        int rc = mqtt_props_parse(r, MQTT_PC_PUBLISH, &p->props, f);
        if (rc) return rc;
        if (p->props.present & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS))
            return mqtt_fail(f, MQTT_RC_TOPIC_ALIAS_INVALID, "topic alias (maximum is 0)");
        if (p->props.present & MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID))
            return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "subscription id from a client");
    }
    p->payload = r->p + r->at;
    p->payload_len = mqtt_rd_left(r);
    r->at = r->len;
    return 0;
}

/*
 * The optional tail of an MQTT 5 PUBACK or DISCONNECT: a reason code the
 * packet may carry, then properties; each may be left out when nothing
 * follows it (§3.4.2.1, §3.14.2.1), reading as reason 0 and no properties.
 */
static int reason_and_props(struct mqtt_rd *r, enum mqtt_type type, unsigned ctx, uint8_t *reason,
                            struct mqtt_props *props, struct mqtt_frame *f)
{
    if (!mqtt_rd_u8(r, reason)) return 0;
    if (!mqtt_reason_valid(type, *reason))
        return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "reason code not valid for this packet");
    if (mqtt_rd_left(r) == 0) return 0;
    return mqtt_props_parse(r, ctx, props, f);
}

/* PUBACK (§3.4): reason code and properties may be left out (§3.4.2.1). */
static int decode_puback(struct mqtt_rd *r, int version, struct mqtt_frame *f)
{
    struct mqtt_puback *a = &f->u.puback;
    if (!mqtt_rd_u16(r, &a->packet_id))
        return mqtt_fail(f, MQTT_RC_MALFORMED, "packet identifier truncated");
    if (a->packet_id == 0) return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "packet identifier 0");
    if (version != MQTT_V5) return 0;
    return reason_and_props(r, MQTT_PUBACK, MQTT_PC_PUBACK, &a->reason, &a->props, f);
}

/* One subscription's options (§3.8.3.1; 3.1.1 §3.8.3.1: QoS only). */
static int sub_options(uint8_t o, int version, const struct mqtt_str *filter, struct mqtt_frame *f)
{
    uint8_t reserved = version == MQTT_V5 ? 0xC0 : 0xFC;
    if (o & reserved) return mqtt_fail(f, MQTT_RC_MALFORMED, "subscription reserved bits set");
    if (MQTT_SUBOPT_QOS(o) == 3) return mqtt_fail(f, MQTT_RC_MALFORMED, "subscription QoS 3");
    if (MQTT_SUBOPT_RETAIN_HANDLING(o) == 3)
        return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "retain handling 3");
    if ((o & MQTT_SUBOPT_NO_LOCAL) && filter->len >= 7 && memcmp(filter->p, "$share/", 7) == 0)
        return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "no local on a shared subscription");
    return 0;
}

/* SUBSCRIBE (§3.8) and UNSUBSCRIBE (§3.10): packet id, properties, >= 1 filter. */
static int decode_sublist(struct mqtt_rd *r, int version, struct mqtt_frame *f)
{
    struct mqtt_sublist *l = &f->u.subscribe;
    l->has_options = f->type == MQTT_SUBSCRIBE;
    if (!mqtt_rd_u16(r, &l->packet_id))
        return mqtt_fail(f, MQTT_RC_MALFORMED, "packet identifier truncated");
    if (l->packet_id == 0) return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "packet identifier 0");
    if (version == MQTT_V5) {
        unsigned ctx = l->has_options ? MQTT_PC_SUBSCRIBE : MQTT_PC_UNSUBSCRIBE;
        int rc = mqtt_props_parse(r, ctx, &l->props, f);
        if (rc) return rc;
    }
    l->list = r->p + r->at;
    l->list_len = mqtt_rd_left(r);
    while (mqtt_rd_left(r) > 0) {
        struct mqtt_str filter;
        uint8_t o = 0;
        if (!mqtt_rd_str(r, &filter) || (l->has_options && !mqtt_rd_u8(r, &o)))
            return mqtt_fail(f, MQTT_RC_MALFORMED, "topic filter truncated or not UTF-8");
        if (!mqtt_topic_filter_valid(filter.p, filter.len))
            return mqtt_fail(f, MQTT_RC_MALFORMED, "topic filter is not valid");
        if (l->has_options) {
            int rc = sub_options(o, version, &filter, f);
            if (rc) return rc;
        }
        l->count++;
    }
    if (l->count == 0) return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "no topic filter");
    return 0;
}

bool mqtt_sublist_next(const struct mqtt_sublist *l, size_t *pos, struct mqtt_str *filter,
                       uint8_t *options)
{
    struct mqtt_rd r = {l->list, l->list_len, *pos};
    *options = 0;
    if (!mqtt_rd_str(&r, filter) || (l->has_options && !mqtt_rd_u8(&r, options))) return false;
    *pos = r.at;
    return true;
}

/* DISCONNECT (§3.14): reason code and properties may be left out (§3.14.2.1). */
static int decode_disconnect(struct mqtt_rd *r, int version, struct mqtt_frame *f)
{
    struct mqtt_disconnect *d = &f->u.disconnect;
    if (version != MQTT_V5) return 0;
    return reason_and_props(r, MQTT_DISCONNECT, MQTT_PC_DISCONNECT, &d->reason, &d->props, f);
}

/*
 * What the first byte alone tells (§2.1.2, §2.1.3): a type the server may
 * receive in this state, the flags that type requires, and QoS 2 refused.
 */
static int check_first_byte(uint8_t b, int version, struct mqtt_frame *f)
{
    f->type = (enum mqtt_type)(b >> 4);
    f->flags = b & 0x0F;
    if (version == 0 && f->type != MQTT_CONNECT)
        return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "first packet is not CONNECT");
    uint8_t want = 0;
    switch (b >> 4) {
    case MQTT_CONNECT:
        if (version != 0) return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "second CONNECT");
        break;
    case MQTT_PUBLISH:
        if (((f->flags >> 1) & 3) == 3) return mqtt_fail(f, MQTT_RC_MALFORMED, "QoS 3");
        if (((f->flags >> 1) & 3) == 2)
            return mqtt_fail(f, MQTT_RC_QOS_NOT_SUPPORTED, "QoS 2 refused");
        if ((f->flags & 0x08) && !(f->flags & 0x06))
            return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "DUP on QoS 0"); /* 3.3.1-2 */
        want = f->flags;
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        want = 0x02;
        break;
    case MQTT_PUBACK:
    case MQTT_PINGREQ:
    case MQTT_DISCONNECT:
        break;
    case MQTT_AUTH:
        if (version == MQTT_V311) return mqtt_fail(f, MQTT_RC_MALFORMED, "packet type 15");
        return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "AUTH without an authentication method");
    case 0:
        return mqtt_fail(f, MQTT_RC_MALFORMED, "packet type 0");
    default: /* CONNACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP */
        return mqtt_fail(f, MQTT_RC_PROTOCOL_ERROR, "a packet a server does not receive");
    }
    if (f->flags != want) return mqtt_fail(f, MQTT_RC_MALFORMED, "reserved flag bits");
    return 0;
}

/* The body of a whole frame; every byte must belong to a field. */
static int decode_body(struct mqtt_rd *r, int version, struct mqtt_frame *f)
{
    int rc;
    switch (f->type) {
    case MQTT_CONNECT:
        rc = decode_connect(r, f);
        break;
    case MQTT_PUBLISH:
        rc = decode_publish(r, version, f);
        break;
    case MQTT_PUBACK:
        rc = decode_puback(r, version, f);
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        rc = decode_sublist(r, version, f);
        break;
    case MQTT_DISCONNECT:
        rc = decode_disconnect(r, version, f);
        break;
    default: /* PINGREQ */
        rc = 0;
        break;
    }
    if (rc == 0 && mqtt_rd_left(r) != 0)
        return mqtt_fail(f, MQTT_RC_MALFORMED, "bytes after the last field");
    return rc;
}

int mqtt_decode(const uint8_t *buf, size_t len, size_t max_frame, int version,
                struct mqtt_frame *out, size_t *consumed)
{
    memset(out, 0, sizeof *out);
    *consumed = 0;
    if (version != 0 && version != MQTT_V311 && version != MQTT_V5)
        return mqtt_fail(out, MQTT_RC_IMPL_SPECIFIC, "bad version argument");
    if (len == 0) return MQTT_NEED_MORE;
    int rc = check_first_byte(buf[0], version, out);
    if (rc) return rc;
    uint32_t remaining;
    size_t used;
    rc = mqtt_varint_get(buf + 1, len - 1, &remaining, &used);
    if (rc == MQTT_VARINT_SHORT) return MQTT_NEED_MORE;
    if (rc) return mqtt_fail(out, MQTT_RC_MALFORMED, "remaining length is not a valid integer");
    size_t total = 1 + used + (size_t)remaining;
    if (total > max_frame) {
        mqtt_fail(out, MQTT_RC_PACKET_TOO_LARGE, "frame larger than the maximum");
        return IOT_ETOOBIG;
    }
    out->len = total;
    if (len < total) return MQTT_NEED_MORE;
    struct mqtt_rd r = {buf + 1 + used, remaining, 0};
    /* a CONNECT sets the version; the other packets are read with the connection's */
    rc = decode_body(&r, version, out);
    if (rc) return rc;
    *consumed = total;
    return 0;
}
