/*
 * The MQTT codec: bytes in, frames out (what a server receives from its
 * clients) and frames in, bytes out (what a server sends), MQTT 3.1.1 (OASIS
 * Standard, 29 October 2014) and MQTT 5.0 (OASIS Standard, 7 March 2019).
 * Pure: no socket, no clock, no allocation, no global state; nothing of the
 * HTTP transport and no SQL. The listener (next) owns the connection state
 * and the policy (who may connect, publish and subscribe to what).
 *
 * Decoding is incremental. The caller keeps the bytes of a connection in a
 * buffer and calls mqtt_decode() on what it holds: NEED_MORE until one whole
 * frame is there, then 0 with the frame; the frame's strings, binaries and
 * payload point into that buffer (no copy), so they live as long as those
 * bytes do. The frame size bound (max_frame, the whole packet as MQTT 5's
 * Maximum Packet Size counts it) is checked from the fixed header, before the
 * body arrives, so an oversized frame closes its connection at once.
 *
 * Every decode error means: this connection is broken, close it (after, for
 * MQTT 5, a CONNACK when the frame was a CONNECT, else a DISCONNECT, with
 * frame.reason; for 3.1.1, a CONNACK with mqtt_connack_code_v311(reason) when
 * the frame was a CONNECT, else nothing). A malformed frame never affects
 * another connection: the codec holds no state between calls.
 *
 * Decisions this codec takes for the gateway (SPEC §11):
 * - QoS 2 is refused: a PUBLISH with QoS 2, or a CONNECT whose will has
 *   QoS 2, is an error with reason 0x9B "QoS not supported" (the CONNACK
 *   advertises Maximum QoS 1; MQTT 5 [MQTT-3.2.2-11], [MQTT-3.2.2-12]).
 *   3.1.1 cannot refuse a QoS 2 PUBLISH but by closing, which is what it gets.
 * - Topic aliases are refused (0x94): the server's Topic Alias Maximum is 0.
 * - A will is parsed and validated (will flag, QoS and retain rules, will
 *   properties, will topic as a topic name) and returned; the codec does not
 *   refuse it. Whether to accept it is the listener's policy: a will is a
 *   publication on the device's behalf, and SPEC §11 lets a device publish to
 *   its packets topic only.
 * - Strings must be well-formed UTF-8 without U+0000 or surrogates (1.5.3 of
 *   both standards); other control characters and non-characters are allowed
 *   ("SHOULD NOT", the receiver MAY refuse; the ingest decoder judges them).
 * - Remaining Length and every Variable Byte Integer must use the fewest bytes
 *   ([MQTT-1.5.5-1]; 3.1.1 says the same of the encoding algorithm).
 * - Payload Format Indicator 1 is not checked here: the payload is JSON and
 *   the ingest decoder checks its UTF-8.
 * Stateful rules stay with the listener: a second CONNECT is caught here
 * (version != 0), but packet identifiers in use, Receive Maximum, a Session
 * Expiry set in DISCONNECT after 0 in CONNECT, and RETAIN (Retain Available
 * is 0) are the listener's to enforce.
 */
#ifndef IOT_MQTT_CODEC_H
#define IOT_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MQTT_V311 4 /* protocol level of MQTT 3.1.1 */
#define MQTT_V5   5 /* protocol level of MQTT 5.0 */

/* mqtt_decode(): not a whole frame yet (the other results: 0, IOT_EINVAL, IOT_ETOOBIG). */
#define MQTT_NEED_MORE 1

#define MQTT_MAX_REMAINING 268435455u /* 0xFF 0xFF 0xFF 0x7F: a 4-byte Remaining Length */

enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
    MQTT_AUTH = 15,
};

/* MQTT 5 reason codes (MQTT 5.0 §2.4, Table 2-6). */
enum mqtt_reason {
    MQTT_RC_SUCCESS = 0x00, /* also Granted QoS 0, Normal disconnection */
    MQTT_RC_GRANTED_QOS1 = 0x01,
    MQTT_RC_GRANTED_QOS2 = 0x02,
    MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    MQTT_RC_UNSPECIFIED = 0x80,
    MQTT_RC_MALFORMED = 0x81,
    MQTT_RC_PROTOCOL_ERROR = 0x82,
    MQTT_RC_IMPL_SPECIFIC = 0x83,
    MQTT_RC_UNSUPPORTED_VERSION = 0x84,
    MQTT_RC_CLIENT_ID_INVALID = 0x85,
    MQTT_RC_BAD_CREDENTIALS = 0x86,
    MQTT_RC_NOT_AUTHORIZED = 0x87,
    MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    MQTT_RC_SERVER_BUSY = 0x89,
    MQTT_RC_BANNED = 0x8A,
    MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    MQTT_RC_BAD_AUTH_METHOD = 0x8C,
    MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    MQTT_RC_PACKET_ID_IN_USE = 0x91,
    MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    MQTT_RC_PACKET_TOO_LARGE = 0x95,
    MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    MQTT_RC_QUOTA_EXCEEDED = 0x97,
    MQTT_RC_ADMIN_ACTION = 0x98,
    MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
    MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
    MQTT_RC_SERVER_MOVED = 0x9D,
    MQTT_RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E,
    MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    MQTT_RC_MAX_CONNECT_TIME = 0xA0,
    MQTT_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
    MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

/* MQTT 5 property identifiers (MQTT 5.0 §2.2.2.2, Table 2-4). */
enum mqtt_prop_id {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01,
    MQTT_PROP_MESSAGE_EXPIRY = 0x02,
    MQTT_PROP_CONTENT_TYPE = 0x03,
    MQTT_PROP_RESPONSE_TOPIC = 0x08,
    MQTT_PROP_CORRELATION_DATA = 0x09,
    MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
    MQTT_PROP_SESSION_EXPIRY = 0x11,
    MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
    MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,
    MQTT_PROP_AUTH_METHOD = 0x15,
    MQTT_PROP_AUTH_DATA = 0x16,
    MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
    MQTT_PROP_WILL_DELAY = 0x18,
    MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
    MQTT_PROP_RESPONSE_INFO = 0x1A,
    MQTT_PROP_SERVER_REFERENCE = 0x1C,
    MQTT_PROP_REASON_STRING = 0x1F,
    MQTT_PROP_RECEIVE_MAXIMUM = 0x21,
    MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
    MQTT_PROP_TOPIC_ALIAS = 0x23,
    MQTT_PROP_MAXIMUM_QOS = 0x24,
    MQTT_PROP_RETAIN_AVAILABLE = 0x25,
    MQTT_PROP_USER = 0x26,
    MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,
    MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
    MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
    MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};
#define MQTT_PROP_MAX_ID  0x2A
#define MQTT_PROP_BIT(id) ((uint64_t)1 << (id))

/* A UTF-8 string of the frame (validated, not NUL-terminated). */
struct mqtt_str {
    const char *p;
    size_t len;
};

/* Binary data of the frame (password, will payload, correlation data). */
struct mqtt_bytes {
    const uint8_t *p;
    size_t len;
};

/*
 * MQTT 5 properties. A property is there when its bit is set in present
 * (MQTT_PROP_BIT(id)); the value fields of absent ones are 0. User
 * properties (any number, in order) stay in the raw property block
 * user/user_len and are read with mqtt_props_user(). To encode, set the
 * fields and their bits; user/user_len may name a property block whose user
 * properties are written again (as a decoded frame's are).
 */
struct mqtt_props {
    uint64_t present;
    uint8_t payload_format;             /* 0x01: 0 bytes, 1 UTF-8 */
    uint32_t message_expiry;            /* 0x02: seconds */
    struct mqtt_str content_type;       /* 0x03 */
    struct mqtt_str response_topic;     /* 0x08 */
    struct mqtt_bytes correlation_data; /* 0x09 */
    uint32_t subscription_id;           /* 0x0B: 1..268435455 */
    uint32_t session_expiry;            /* 0x11: seconds */
    struct mqtt_str assigned_client_id; /* 0x12 */
    uint16_t server_keep_alive;         /* 0x13: seconds */
    struct mqtt_str auth_method;        /* 0x15 */
    struct mqtt_bytes auth_data;        /* 0x16 */
    uint8_t request_problem_info;       /* 0x17: 0 or 1 */
    uint32_t will_delay;                /* 0x18: seconds */
    uint8_t request_response_info;      /* 0x19: 0 or 1 */
    struct mqtt_str response_info;      /* 0x1A */
    struct mqtt_str server_reference;   /* 0x1C */
    struct mqtt_str reason_string;      /* 0x1F */
    uint16_t receive_maximum;           /* 0x21: 1..65535 */
    uint16_t topic_alias_maximum;       /* 0x22 */
    uint16_t topic_alias;               /* 0x23 */
    uint8_t maximum_qos;                /* 0x24: 0 or 1 */
    uint8_t retain_available;           /* 0x25: 0 or 1 */
    uint32_t maximum_packet_size;       /* 0x27: 1.. */
    uint8_t wildcard_sub_available;     /* 0x28: 0 or 1 */
    uint8_t sub_id_available;           /* 0x29: 0 or 1 */
    uint8_t shared_sub_available;       /* 0x2A: 0 or 1 */
    size_t user_count;                  /* 0x26: how many user properties */
    const uint8_t *user;                /* the property block that holds them */
    size_t user_len;
};

/* CONNECT (MQTT 3.1.1 §3.1, MQTT 5.0 §3.1). */
struct mqtt_connect {
    uint8_t version;           /* protocol level: 4 or 5 (on an 0x84 error: as read) */
    bool clean_start;          /* Clean Session (3.1.1), Clean Start (5) */
    uint16_t keep_alive;       /* seconds; 0: no keep-alive */
    struct mqtt_props props;   /* 5 only */
    struct mqtt_str client_id; /* may be empty */
    bool will;                 /* a will message is set; then: */
    uint8_t will_qos;          /* 0 or 1 (2 is refused) */
    bool will_retain;
    struct mqtt_props will_props; /* 5 only */
    struct mqtt_str will_topic;   /* a topic name: no wildcards, not empty */
    struct mqtt_bytes will_payload;
    bool has_username;
    struct mqtt_str username;
    bool has_password;
    struct mqtt_bytes password;
};

/* PUBLISH (§3.3 of both). */
struct mqtt_publish {
    uint8_t qos; /* 0 or 1 */
    bool dup;
    bool retain;
    struct mqtt_str topic;   /* no wildcards, not empty */
    uint16_t packet_id;      /* QoS 1: 1..65535; QoS 0: 0 */
    struct mqtt_props props; /* 5 only */
    const uint8_t *payload;  /* into the caller's buffer */
    size_t payload_len;
};

/* PUBACK (§3.4 of both). */
struct mqtt_puback {
    uint16_t packet_id;
    uint8_t reason; /* 5 only; 0 when omitted */
    struct mqtt_props props;
};

/*
 * SUBSCRIBE (§3.8) and UNSUBSCRIBE (§3.10): the topic filters (at least one,
 * each a valid filter) stay in list/list_len, read with mqtt_sublist_next().
 */
struct mqtt_sublist {
    uint16_t packet_id;
    struct mqtt_props props; /* 5 only */
    size_t count;            /* topic filters, >= 1 */
    bool has_options;        /* SUBSCRIBE: an options byte follows each filter */
    const uint8_t *list;
    size_t list_len;
};

/* DISCONNECT (§3.14 of both). */
struct mqtt_disconnect {
    uint8_t reason; /* 5 only; 0 when omitted */
    struct mqtt_props props;
};

/* Subscription options byte (MQTT 5.0 §3.8.3.1; 3.1.1: the QoS bits only). */
#define MQTT_SUBOPT_QOS(o)              ((o)&0x03)
#define MQTT_SUBOPT_NO_LOCAL            0x04
#define MQTT_SUBOPT_RETAIN_AS_PUBLISHED 0x08
#define MQTT_SUBOPT_RETAIN_HANDLING(o)  (((o) >> 4) & 0x03)

struct mqtt_frame {
    enum mqtt_type type; /* 0 until the first byte was read */
    uint8_t flags;       /* the low 4 bits of the first byte */
    size_t len;          /* the whole frame; on NEED_MORE: 0 until the fixed header is complete */
    union {
        struct mqtt_connect connect;
        struct mqtt_publish publish;
        struct mqtt_puback puback;
        struct mqtt_sublist subscribe; /* also UNSUBSCRIBE */
        struct mqtt_disconnect disconnect;
    } u;
    /* On an error: the MQTT 5 reason code to answer with and the rule broken (static text). */
    uint8_t reason;
    const char *error;
};

/*
 * Decodes the first frame of buf[0..len) as a server receives it from a
 * client. version: 0 before the connection's CONNECT (only a CONNECT is
 * valid), else the CONNECT's protocol level (4 or 5; a CONNECT is then a
 * protocol error). max_frame: the largest whole frame accepted.
 * Returns 0 and the frame, *consumed = out->len; MQTT_NEED_MORE, *consumed =
 * 0 (out->len is the frame's size once its fixed header is there); or, with
 * out->reason and out->error set and *consumed = 0: IOT_ETOOBIG for a frame
 * over max_frame (0x95), IOT_EINVAL for any other broken or refused frame.
 * Never reads past buf[len - 1], never allocates. The frame borrows buf.
 */
int mqtt_decode(const uint8_t *buf, size_t len, size_t max_frame, int version,
                struct mqtt_frame *out, size_t *consumed);

/*
 * The next topic filter of a decoded SUBSCRIBE or UNSUBSCRIBE: *pos starts at
 * 0; returns false after the last one. *options is 0 for UNSUBSCRIBE.
 */
bool mqtt_sublist_next(const struct mqtt_sublist *l, size_t *pos, struct mqtt_str *filter,
                       uint8_t *options);

/*
 * The next user property (0x26) of props: *pos starts at 0; returns false
 * after the last one.
 */
bool mqtt_props_user(const struct mqtt_props *props, size_t *pos, struct mqtt_str *key,
                     struct mqtt_str *value);

/* 1 if s[0..n) is well-formed UTF-8 without U+0000 (what MQTT strings require). */
bool mqtt_utf8_valid(const uint8_t *s, size_t n);

/* 1 if t is a valid topic name (PUBLISH, will): not empty, no '+' or '#'. */
bool mqtt_topic_name_valid(const char *t, size_t n);

/* 1 if t is a valid topic filter: not empty, '+' a whole level, '#' only as the last level. */
bool mqtt_topic_filter_valid(const char *t, size_t n);

/*
 * The 3.1.1 CONNACK return code (§3.2.2.3) for an MQTT 5 reason code: 0
 * accepted, 1 unacceptable protocol version, 2 identifier rejected, 3 server
 * unavailable, 4 bad user name or password, 5 not authorized.
 */
uint8_t mqtt_connack_code_v311(uint8_t reason);

/*
 * Encoders: write one frame into buf[0..cap) and return its length, or
 * IOT_ETOOBIG when it does not fit (nothing useful in buf), IOT_EINVAL for
 * arguments the protocol forbids (a reason code the packet cannot carry, a
 * property it cannot carry or out of range, QoS 1 without a packet id, ...).
 * version is 4 or 5; for 4, reason codes are mapped as 3.1.1 allows and
 * props are ignored. props may be NULL (none). To honour a client's MQTT 5
 * Maximum Packet Size, pass a cap no larger than it. User properties are
 * written again from props->user when set.
 */
int mqtt_encode_connack(uint8_t *buf, size_t cap, int version, bool session_present, uint8_t reason,
                        const struct mqtt_props *props);
int mqtt_encode_publish(uint8_t *buf, size_t cap, int version, const struct mqtt_publish *p);
int mqtt_encode_puback(uint8_t *buf, size_t cap, int version, uint16_t packet_id, uint8_t reason,
                       const struct mqtt_props *props);
/* codes: one MQTT 5 SUBACK reason per filter; 3.1.1 gets 0x00..0x02 or 0x80 (failure). */
int mqtt_encode_suback(uint8_t *buf, size_t cap, int version, uint16_t packet_id,
                       const uint8_t *codes, size_t n, const struct mqtt_props *props);
/* codes: one MQTT 5 UNSUBACK reason per filter; 3.1.1 has none (codes ignored). */
int mqtt_encode_unsuback(uint8_t *buf, size_t cap, int version, uint16_t packet_id,
                         const uint8_t *codes, size_t n, const struct mqtt_props *props);
int mqtt_encode_pingresp(uint8_t *buf, size_t cap);
/* 3.1.1 has no server DISCONNECT: only reason 0 (e0 00) is accepted for version 4. */
int mqtt_encode_disconnect(uint8_t *buf, size_t cap, int version, uint8_t reason,
                           const struct mqtt_props *props);

#endif
