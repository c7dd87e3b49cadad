/*
 * Private to src/mqtt/: the bounded reader the decoder walks a frame with,
 * the Variable Byte Integer, and the MQTT 5 property block (mqtt_props.c)
 * shared by the decoder (mqtt_codec.c) and the encoders (mqtt_encode.c).
 */
#ifndef IOT_MQTT_INT_H
#define IOT_MQTT_INT_H

#include "core/err.h"
#include "mqtt/mqtt_codec.h"

/* A reader over p[0..len): every read checks the bound and fails instead of reading past it. */
struct mqtt_rd {
    const uint8_t *p;
    size_t len;
    size_t at;
};

static inline size_t mqtt_rd_left(const struct mqtt_rd *r)
{
    return r->len - r->at;
}

static inline bool mqtt_rd_u8(struct mqtt_rd *r, uint8_t *v)
{
    if (r->at >= r->len) return false;
    *v = r->p[r->at++];
    return true;
}

/* Two Byte Integer, big-endian (1.5.2 of both standards). */
static inline bool mqtt_rd_u16(struct mqtt_rd *r, uint16_t *v)
{
    if (mqtt_rd_left(r) < 2) return false;
    *v = (uint16_t)(r->p[r->at] << 8 | r->p[r->at + 1]);
    r->at += 2;
    return true;
}

/* Four Byte Integer, big-endian (MQTT 5.0 §1.5.3). */
static inline bool mqtt_rd_u32(struct mqtt_rd *r, uint32_t *v)
{
    if (mqtt_rd_left(r) < 4) return false;
    const uint8_t *b = r->p + r->at;
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    r->at += 4;
    return true;
}

/* Binary Data: a Two Byte Integer length, then that many bytes. */
static inline bool mqtt_rd_bytes(struct mqtt_rd *r, struct mqtt_bytes *v)
{
    uint16_t n;
    if (!mqtt_rd_u16(r, &n) || mqtt_rd_left(r) < n) return false;
    v->p = r->p + r->at;
    v->len = n;
    r->at += n;
    return true;
}

/* UTF-8 Encoded String (1.5.4): Binary Data that must be well-formed UTF-8 without U+0000. */
static inline bool mqtt_rd_str(struct mqtt_rd *r, struct mqtt_str *s)
{
    struct mqtt_bytes b;
    if (!mqtt_rd_bytes(r, &b) || !mqtt_utf8_valid(b.p, b.len)) return false;
    s->p = (const char *)b.p;
    s->len = b.len;
    return true;
}

#define MQTT_VARINT_SHORT (-1) /* the input ended inside the integer */
#define MQTT_VARINT_BAD   (-2) /* a 5th byte, or more bytes than the value needs */

/*
 * Variable Byte Integer (MQTT 5.0 §1.5.5, 3.1.1 §2.2.3): at most 4 bytes, in
 * the fewest bytes the value needs. 0 and *v, or MQTT_VARINT_SHORT/_BAD.
 */
int mqtt_varint_get(const uint8_t *p, size_t len, uint32_t *v, size_t *used);

static inline size_t mqtt_varint_size(uint32_t v)
{
    return v < 128u ? 1 : v < 16384u ? 2 : v < 2097152u ? 3 : 4;
}

/* Writes v (<= MQTT_MAX_REMAINING) and returns the number of bytes written. */
size_t mqtt_varint_put(uint8_t *o, uint32_t v);

/* Whether a packet of this type (CONNACK, PUBACK, SUBACK, UNSUBACK, DISCONNECT) may carry rc. */
bool mqtt_reason_valid(enum mqtt_type type, uint8_t rc);

/* The packets a property may appear in (MQTT 5.0 §2.2.2.2, Table 2-4). */
enum mqtt_prop_ctx {
    MQTT_PC_CONNECT = 1 << 0,
    MQTT_PC_WILL = 1 << 1,
    MQTT_PC_CONNACK = 1 << 2,
    MQTT_PC_PUBLISH = 1 << 3,
    MQTT_PC_PUBACK = 1 << 4,
    MQTT_PC_SUBSCRIBE = 1 << 5,
    MQTT_PC_SUBACK = 1 << 6,
    MQTT_PC_UNSUBSCRIBE = 1 << 7,
    MQTT_PC_UNSUBACK = 1 << 8,
    MQTT_PC_DISCONNECT = 1 << 9,
    MQTT_PC_AUTH = 1 << 10,
};

/* Records a decode error in f (reason, static text) and returns IOT_EINVAL. */
static inline int mqtt_fail(struct mqtt_frame *f, uint8_t reason, const char *error)
{
    f->reason = reason;
    f->error = error;
    return IOT_EINVAL;
}

/*
 * Reads a property block (its length, then the properties) of a packet of
 * kind ctx into *props (zeroed first): unknown property or truncated block:
 * 0x81; a property the packet cannot carry, one given twice that must be
 * unique, or a value out of its range: 0x82. 0 or IOT_EINVAL (f says why).
 */
int mqtt_props_parse(struct mqtt_rd *r, unsigned ctx, struct mqtt_props *props,
                     struct mqtt_frame *f);

/*
 * The size of props as a packet of kind ctx carries it, the length prefix
 * included (1 for none or NULL); -1 if a property is not allowed there, out
 * of range or too long.
 */
long mqtt_props_size(const struct mqtt_props *props, unsigned ctx);

/* Writes what mqtt_props_size() measured (it must have succeeded); returns the bytes written. */
size_t mqtt_props_write(uint8_t *o, const struct mqtt_props *props, unsigned ctx);

#endif
