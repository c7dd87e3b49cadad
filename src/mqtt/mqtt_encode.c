/*
 * The MQTT encoders: the packets a server sends, MQTT 3.1.1 and 5.0 (see
 * mqtt_codec.h). Each measures the frame first, so nothing is written past
 * cap and a frame that does not fit is IOT_ETOOBIG before a byte is written.
 * Optional fields take their shortest form: a PUBACK or DISCONNECT with
 * reason 0 and no properties is written without them (§3.4.2.1, §3.14.2.1).
 */
#include "mqtt/mqtt_int.h"

#include <string.h>

/* The frame under construction: its fixed header, then the body's pieces. */
struct frame_out {
    uint8_t *o;
    uint8_t *end;
};

/*
 * Checks that a frame with this body fits in cap and writes its fixed header
 * (§2.1): the first byte, then the Remaining Length. 0 or IOT_ETOOBIG.
 */
static int begin(struct frame_out *w, uint8_t *buf, size_t cap, uint8_t first, size_t body)
{
    if (body > MQTT_MAX_REMAINING) return IOT_ETOOBIG;
    size_t total = 1 + mqtt_varint_size((uint32_t)body) + body;
    if (total > cap) return IOT_ETOOBIG;
    w->o = buf;
    w->end = buf + total;
    *w->o++ = first;
    w->o += mqtt_varint_put(w->o, (uint32_t)body);
    return 0;
}

static void put_u8(struct frame_out *w, uint8_t v)
{
    *w->o++ = v;
}

static void put_u16(struct frame_out *w, uint16_t v)
{
    *w->o++ = (uint8_t)(v >> 8);
    *w->o++ = (uint8_t)v;
}

static void put_raw(struct frame_out *w, const void *p, size_t n)
{
    if (n) memcpy(w->o, p, n);
    w->o += n;
}

static void put_props(struct frame_out *w, const struct mqtt_props *props, unsigned ctx)
{
    w->o += mqtt_props_write(w->o, props, ctx);
}

/* The frame's length: every byte begin() promised was written. */
static int finish(const struct frame_out *w, const uint8_t *buf)
{
    return w->o == w->end ? (int)(w->o - buf) : IOT_EINVAL;
}

static bool version_ok(int version)
{
    return version == MQTT_V311 || version == MQTT_V5;
}

uint8_t mqtt_connack_code_v311(uint8_t reason)
{
    switch (reason) {
    case MQTT_RC_SUCCESS:
        return 0;
    case MQTT_RC_UNSUPPORTED_VERSION:
        return 1;
    case MQTT_RC_CLIENT_ID_INVALID:
        return 2;
    case MQTT_RC_BAD_CREDENTIALS:
    case MQTT_RC_BAD_AUTH_METHOD:
        return 4;
    case MQTT_RC_NOT_AUTHORIZED:
    case MQTT_RC_BANNED:
        return 5;
    default:
        return 3; /* server unavailable: the only other refusal 3.1.1 has */
    }
}

/* CONNACK (§3.2; 3.1.1 §3.2): Session Present only with success ([MQTT-3.2.2-6]). */
int mqtt_encode_connack(uint8_t *buf, size_t cap, int version, bool session_present, uint8_t reason,
                        const struct mqtt_props *props)
{
    if (!version_ok(version) || !mqtt_reason_valid(MQTT_CONNACK, reason)) return IOT_EINVAL;
    if (session_present && reason != MQTT_RC_SUCCESS) return IOT_EINVAL;
    long psize = version == MQTT_V5 ? mqtt_props_size(props, MQTT_PC_CONNACK) : 0;
    if (psize < 0) return IOT_EINVAL;
    struct frame_out w;
    int rc = begin(&w, buf, cap, MQTT_CONNACK << 4, 2 + (size_t)psize);
    if (rc) return rc;
    put_u8(&w, session_present ? 1 : 0);
    put_u8(&w, version == MQTT_V5 ? reason : mqtt_connack_code_v311(reason));
    if (version == MQTT_V5) put_props(&w, props, MQTT_PC_CONNACK);
    return finish(&w, buf);
}

/* PUBLISH (§3.3), server to client: QoS 0 or 1. */
int mqtt_encode_publish(uint8_t *buf, size_t cap, int version, const struct mqtt_publish *p)
{
    if (!version_ok(version) || p->qos > 1 || (p->qos == 1 && p->packet_id == 0)) return IOT_EINVAL;
    if (p->qos == 0 && p->dup) return IOT_EINVAL; /* [MQTT-3.3.1-2] */
    if (p->topic.len > UINT16_MAX || !mqtt_utf8_valid((const uint8_t *)p->topic.p, p->topic.len) ||
        !mqtt_topic_name_valid(p->topic.p, p->topic.len))
        return IOT_EINVAL;
    if (p->payload_len && !p->payload) return IOT_EINVAL;
    long psize = version == MQTT_V5 ? mqtt_props_size(&p->props, MQTT_PC_PUBLISH) : 0;
    if (psize < 0) return IOT_EINVAL;
    size_t body = 2 + p->topic.len + (p->qos ? 2 : 0) + (size_t)psize;
    if (p->payload_len > MQTT_MAX_REMAINING - body) return IOT_ETOOBIG;
    struct frame_out w;
    uint8_t first =
        (uint8_t)(MQTT_PUBLISH << 4 | (p->dup ? 0x08 : 0) | p->qos << 1 | (p->retain ? 0x01 : 0));
    int rc = begin(&w, buf, cap, first, body + p->payload_len);
    if (rc) return rc;
    put_u16(&w, (uint16_t)p->topic.len);
    put_raw(&w, p->topic.p, p->topic.len);
    if (p->qos) put_u16(&w, p->packet_id);
    if (version == MQTT_V5) put_props(&w, &p->props, MQTT_PC_PUBLISH);
    put_raw(&w, p->payload, p->payload_len);
    return finish(&w, buf);
}

/*
 * A packet id, then (5 only) a reason code and properties, each left out when
 * it is the default and nothing follows: PUBACK (§3.4.2) and the DISCONNECT
 * that has no packet id (§3.14.2). 3.1.1 carries no reason: only 0 is valid.
 */
static int encode_short_ack(uint8_t *buf, size_t cap, int version, uint8_t first, bool has_id,
                            uint16_t id, uint8_t reason, const struct mqtt_props *props,
                            unsigned ctx)
{
    if (!version_ok(version) || (has_id && id == 0)) return IOT_EINVAL;
    if (!mqtt_reason_valid((enum mqtt_type)(first >> 4), reason)) return IOT_EINVAL;
    if (version == MQTT_V311 && reason != MQTT_RC_SUCCESS) return IOT_EINVAL;
    long psize = version == MQTT_V5 ? mqtt_props_size(props, ctx) : 1;
    if (psize < 0) return IOT_EINVAL;
    bool with_props = psize > 1;
    bool with_reason = with_props || reason != MQTT_RC_SUCCESS;
    size_t body = (has_id ? 2 : 0) + (with_reason ? 1 : 0) + (with_props ? (size_t)psize : 0);
    struct frame_out w;
    int rc = begin(&w, buf, cap, first, body);
    if (rc) return rc;
    if (has_id) put_u16(&w, id);
    if (with_reason) put_u8(&w, reason);
    if (with_props) put_props(&w, props, ctx);
    return finish(&w, buf);
}

int mqtt_encode_puback(uint8_t *buf, size_t cap, int version, uint16_t packet_id, uint8_t reason,
                       const struct mqtt_props *props)
{
    return encode_short_ack(buf, cap, version, MQTT_PUBACK << 4, true, packet_id, reason, props,
                            MQTT_PC_PUBACK);
}

int mqtt_encode_disconnect(uint8_t *buf, size_t cap, int version, uint8_t reason,
                           const struct mqtt_props *props)
{
    return encode_short_ack(buf, cap, version, MQTT_DISCONNECT << 4, false, 0, reason, props,
                            MQTT_PC_DISCONNECT);
}

/*
 * SUBACK (§3.9) and UNSUBACK (§3.11): packet id, (5 only) properties, then a
 * reason code per topic filter; a 3.1.1 SUBACK has return codes 0x00..0x02 or
 * 0x80, a 3.1.1 UNSUBACK nothing after the packet id.
 */
static int encode_list_ack(uint8_t *buf, size_t cap, int version, enum mqtt_type type,
                           uint16_t packet_id, const uint8_t *codes, size_t n,
                           const struct mqtt_props *props, unsigned ctx)
{
    if (!version_ok(version) || packet_id == 0) return IOT_EINVAL;
    bool with_codes = version == MQTT_V5 || type == MQTT_SUBACK;
    if (with_codes && (n == 0 || !codes)) return IOT_EINVAL;
    for (size_t i = 0; with_codes && i < n; i++)
        if (!mqtt_reason_valid(type, codes[i])) return IOT_EINVAL;
    long psize = version == MQTT_V5 ? mqtt_props_size(props, ctx) : 0;
    if (psize < 0) return IOT_EINVAL;
    size_t ncodes = with_codes ? n : 0;
    if (ncodes > MQTT_MAX_REMAINING) return IOT_ETOOBIG;
    struct frame_out w;
    uint8_t first = (uint8_t)(type << 4);
    int rc = begin(&w, buf, cap, first, 2 + (size_t)psize + ncodes);
    if (rc) return rc;
    put_u16(&w, packet_id);
    if (version == MQTT_V5) put_props(&w, props, ctx);
    for (size_t i = 0; i < ncodes; i++)
        put_u8(&w, version == MQTT_V5 || codes[i] < 0x80 ? codes[i] : 0x80);
    return finish(&w, buf);
}

int mqtt_encode_suback(uint8_t *buf, size_t cap, int version, uint16_t packet_id,
                       const uint8_t *codes, size_t n, const struct mqtt_props *props)
{
    return encode_list_ack(buf, cap, version, MQTT_SUBACK, packet_id, codes, n, props,
                           MQTT_PC_SUBACK);
}

int mqtt_encode_unsuback(uint8_t *buf, size_t cap, int version, uint16_t packet_id,
                         const uint8_t *codes, size_t n, const struct mqtt_props *props)
{
    return encode_list_ack(buf, cap, version, MQTT_UNSUBACK, packet_id, codes, n, props,
                           MQTT_PC_UNSUBACK);
}

/* PINGRESP (§3.13): d0 00. */
int mqtt_encode_pingresp(uint8_t *buf, size_t cap)
{
    struct frame_out w;
    int rc = begin(&w, buf, cap, MQTT_PINGRESP << 4, 0);
    return rc ? rc : finish(&w, buf);
}
