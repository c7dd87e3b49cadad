/*
 * Fuzzes mqtt/mqtt_codec: the byte stream of one MQTT connection, decoded
 * as the listener will decode it.
 *
 * Input: byte 0 chooses the connection's state (bits 0-1: 0 before CONNECT,
 * 1 MQTT 3.1.1, else 5) and the frame bound (bit 7 set: 2 + bits 0-6 bytes,
 * else 1 MiB); byte 1 seeds the split of the stream into reads; the rest is
 * the stream.
 *
 * The stream is decoded twice: whole (frame after frame until NEED_MORE or
 * an error; a CONNECT sets the version), and in reads of random size, each
 * decode on an exact-size heap copy of what has arrived, so ASan catches a
 * read past len. Invariants:
 * - both give the same frames and the same final result (rc, type, length,
 *   reason): the split never changes what is decoded;
 * - consumed is 0 unless the result is 0, then it is the frame's length, at
 *   most len and at most the bound; an error has a reason and a text;
 * - every proper prefix of a decoded frame is NEED_MORE, and every prefix of
 *   a refused frame is NEED_MORE or the same refusal;
 * - the frame's strings, binaries and payload lie inside the frame, its
 *   strings are valid UTF-8 and its topic a valid topic name;
 * - PUBLISH, PUBACK and DISCONNECT (the packets with an encoder): encoding
 *   the frame gives a frame that decodes to the same fields, fits in exactly
 *   its length and not in one byte less.
 */
#include "core/err.h"
#include "mqtt/mqtt_codec.h"

#include "fuzz_util.h"

#define BIG_FRAME (1u << 20)
#define MAX_STEPS 64

struct step {
    int rc;
    int type;
    size_t len;
    uint8_t reason;
};

static int decode_copy(const uint8_t *p, size_t n, size_t max, int version, struct mqtt_frame *f,
                       size_t *used)
{
    uint8_t *copy = malloc(n ? n : 1);
    FUZZ_CHECK(copy != NULL, "out of memory");
    if (n) memcpy(copy, p, n);
    int rc = mqtt_decode(copy, n, max, version, f, used);
    free(copy);
    /* the frame pointed into the copy: only its scalars are used after this */
    return rc;
}

static void check_inside(const void *p, size_t n, const uint8_t *frame, size_t len,
                         const char *what)
{
    if (n == 0) return;
    const uint8_t *b = p;
    FUZZ_CHECK(b >= frame && b + n <= frame + len, "%s outside the frame", what);
}

static void check_str(struct mqtt_str s, const uint8_t *frame, size_t len, const char *what)
{
    check_inside(s.p, s.len, frame, len, what);
    FUZZ_CHECK(mqtt_utf8_valid((const uint8_t *)s.p, s.len), "%s not UTF-8", what);
}

static bool str_eq(struct mqtt_str a, struct mqtt_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static bool bytes_eq(struct mqtt_bytes a, struct mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static void check_props_eq(const struct mqtt_props *a, const struct mqtt_props *b)
{
    FUZZ_CHECK(a->present == b->present, "present %llx != %llx", (unsigned long long)a->present,
               (unsigned long long)b->present);
    FUZZ_CHECK(a->payload_format == b->payload_format && a->message_expiry == b->message_expiry &&
                   a->subscription_id == b->subscription_id &&
                   a->session_expiry == b->session_expiry && a->topic_alias == b->topic_alias,
               "integer property differs");
    FUZZ_CHECK(str_eq(a->content_type, b->content_type) &&
                   str_eq(a->response_topic, b->response_topic) &&
                   bytes_eq(a->correlation_data, b->correlation_data) &&
                   str_eq(a->reason_string, b->reason_string) &&
                   str_eq(a->server_reference, b->server_reference),
               "string property differs");
    FUZZ_CHECK(a->user_count == b->user_count, "%zu != %zu user properties", a->user_count,
               b->user_count);
    size_t pa = 0, pb = 0;
    struct mqtt_str ka, va, kb, vb;
    while (mqtt_props_user(a, &pa, &ka, &va)) {
        FUZZ_CHECK(mqtt_props_user(b, &pb, &kb, &vb), "user property missing");
        FUZZ_CHECK(str_eq(ka, kb) && str_eq(va, vb), "user property differs");
    }
    FUZZ_CHECK(!mqtt_props_user(b, &pb, &kb, &vb), "user property added");
}

/* The encoder of f's type (PUBLISH, PUBACK, DISCONNECT) into out[0..cap). */
static int encode(const struct mqtt_frame *f, int version, uint8_t *out, size_t cap)
{
    if (f->type == MQTT_PUBLISH) return mqtt_encode_publish(out, cap, version, &f->u.publish);
    if (f->type == MQTT_PUBACK)
        return mqtt_encode_puback(out, cap, version, f->u.puback.packet_id, f->u.puback.reason,
                                  &f->u.puback.props);
    return mqtt_encode_disconnect(out, cap, version, f->u.disconnect.reason,
                                  &f->u.disconnect.props);
}

/*
 * Encodes f and checks that the bytes decode to the same fields, that they
 * fit in exactly their length and not in one byte less.
 */
static void round_trip(const struct mqtt_frame *f, int version)
{
    uint8_t *out = malloc(f->len + 64);
    FUZZ_CHECK(out != NULL, "out of memory");
    int n = encode(f, version, out, f->len + 64);
    free(out);
    FUZZ_CHECK(n > 0, "type %d (v%d) does not encode again: %d", f->type, version, n);
    FUZZ_CHECK((size_t)n <= f->len, "re-encoded %d bytes, decoded %zu", n, f->len);
    uint8_t *exact = malloc((size_t)n);
    FUZZ_CHECK(exact != NULL, "out of memory");
    int m = encode(f, version, exact, (size_t)n - 1);
    FUZZ_CHECK(m == IOT_ETOOBIG, "%d bytes encoded into %d", m, n - 1);
    m = encode(f, version, exact, (size_t)n);
    FUZZ_CHECK(m == n, "%d bytes, then %d", n, m);

    struct mqtt_frame g;
    size_t used;
    int rc = mqtt_decode(exact, (size_t)n, BIG_FRAME, version, &g, &used);
    FUZZ_CHECK(rc == 0, "re-decode refused: %d %s", rc, g.error);
    FUZZ_CHECK(used == (size_t)n && g.type == f->type, "re-decode differs");
    if (f->type == MQTT_PUBLISH) {
        const struct mqtt_publish *a = &f->u.publish, *b = &g.u.publish;
        FUZZ_CHECK(a->qos == b->qos && a->dup == b->dup && a->retain == b->retain &&
                       a->packet_id == b->packet_id && str_eq(a->topic, b->topic),
                   "PUBLISH header differs");
        FUZZ_CHECK(a->payload_len == b->payload_len &&
                       (a->payload_len == 0 || !memcmp(a->payload, b->payload, a->payload_len)),
                   "payload differs");
        check_props_eq(&a->props, &b->props);
    } else if (f->type == MQTT_PUBACK) {
        FUZZ_CHECK(f->u.puback.packet_id == g.u.puback.packet_id &&
                       f->u.puback.reason == g.u.puback.reason,
                   "PUBACK differs");
        check_props_eq(&f->u.puback.props, &g.u.puback.props);
    } else {
        FUZZ_CHECK(f->u.disconnect.reason == g.u.disconnect.reason, "DISCONNECT differs");
        check_props_eq(&f->u.disconnect.props, &g.u.disconnect.props);
    }
    free(exact);
}

/* What a decoded frame must look like (f points into frame[0..len)). */
static void check_frame(const struct mqtt_frame *f, const uint8_t *frame, int version)
{
    size_t len = f->len;
    switch (f->type) {
    case MQTT_CONNECT: {
        const struct mqtt_connect *c = &f->u.connect;
        FUZZ_CHECK(c->version == MQTT_V311 || c->version == MQTT_V5, "level %d", c->version);
        check_str(c->client_id, frame, len, "client id");
        if (c->will) {
            FUZZ_CHECK(c->will_qos <= 1, "will QoS %d", c->will_qos);
            check_str(c->will_topic, frame, len, "will topic");
            FUZZ_CHECK(mqtt_topic_name_valid(c->will_topic.p, c->will_topic.len), "will topic");
            check_inside(c->will_payload.p, c->will_payload.len, frame, len, "will payload");
        } else {
            FUZZ_CHECK(c->will_qos == 0 && !c->will_retain, "will bits without a will");
        }
        if (c->has_username) check_str(c->username, frame, len, "user name");
        if (c->has_password) check_inside(c->password.p, c->password.len, frame, len, "password");
        break;
    }
    case MQTT_PUBLISH: {
        const struct mqtt_publish *p = &f->u.publish;
        FUZZ_CHECK(p->qos <= 1 && (p->qos == 1) == (p->packet_id != 0), "QoS %d id %u", p->qos,
                   p->packet_id);
        check_str(p->topic, frame, len, "topic");
        FUZZ_CHECK(mqtt_topic_name_valid(p->topic.p, p->topic.len), "topic name");
        check_inside(p->payload, p->payload_len, frame, len, "payload");
        if (p->payload_len) FUZZ_CHECK(p->payload + p->payload_len == frame + len, "payload end");
        break;
    }
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE: {
        const struct mqtt_sublist *l = &f->u.subscribe;
        FUZZ_CHECK(l->count >= 1 && l->packet_id != 0, "empty list or id 0");
        size_t pos = 0, n = 0;
        struct mqtt_str t;
        uint8_t o;
        while (mqtt_sublist_next(l, &pos, &t, &o)) {
            check_str(t, frame, len, "filter");
            FUZZ_CHECK(mqtt_topic_filter_valid(t.p, t.len), "filter");
            FUZZ_CHECK(MQTT_SUBOPT_QOS(o) != 3, "options QoS 3");
            n++;
        }
        FUZZ_CHECK(n == l->count && pos == l->list_len, "%zu of %zu filters", n, l->count);
        break;
    }
    case MQTT_PUBACK:
        FUZZ_CHECK(f->u.puback.packet_id != 0, "PUBACK id 0");
        break;
    case MQTT_PINGREQ:
    case MQTT_DISCONNECT:
        break;
    default:
        FUZZ_CHECK(0, "decoded a packet of type %d", f->type);
    }
    if (f->type == MQTT_PUBLISH || f->type == MQTT_PUBACK || f->type == MQTT_DISCONNECT)
        round_trip(f, version);
}

/* Every proper prefix of the frame at p (result *whole) is NEED_MORE or the same refusal. */
static void check_prefixes(const uint8_t *p, size_t avail, size_t max, int version,
                           const struct step *whole)
{
    size_t end = whole->rc == 0 ? whole->len : avail;
    /* all short prefixes, then a sample: a large frame is O(n) per prefix */
    for (size_t k = 0; k < end; k = k < 64 ? k + 1 : k + 1 + k / 8) {
        struct mqtt_frame f;
        size_t used = 7;
        int rc = decode_copy(p, k, max, version, &f, &used);
        FUZZ_CHECK(used == 0, "prefix %zu consumed %zu", k, used);
        if (rc == MQTT_NEED_MORE) continue;
        FUZZ_CHECK(whole->rc != 0, "prefix %zu of an accepted frame: %d (%s)", k, rc, f.error);
        FUZZ_CHECK(rc == whole->rc && f.reason == whole->reason,
                   "prefix %zu: rc %d reason %02x, whole: rc %d reason %02x", k, rc, f.reason,
                   whole->rc, whole->reason);
    }
}

/* Decodes frames from p[0..n) until NEED_MORE or an error: the reference sequence. */
static size_t decode_whole(const uint8_t *p, size_t n, size_t max, int version, struct step *out)
{
    size_t steps = 0, off = 0;
    for (;;) {
        struct mqtt_frame f;
        size_t used = 7;
        int rc = mqtt_decode(p + off, n - off, max, version, &f, &used);
        FUZZ_CHECK(rc == 0 || rc == MQTT_NEED_MORE || rc == IOT_EINVAL || rc == IOT_ETOOBIG,
                   "rc %d", rc);
        struct step s = {rc, f.type, f.len, f.reason};
        if (rc == 0) {
            FUZZ_CHECK(used == f.len && used >= 2 && used <= n - off && used <= max,
                       "consumed %zu, frame %zu, len %zu, max %zu", used, f.len, n - off, max);
            check_frame(&f, p + off, version);
        } else {
            FUZZ_CHECK(used == 0, "consumed %zu on %d", used, rc);
            if (rc != MQTT_NEED_MORE)
                FUZZ_CHECK(f.error && f.error[0] && f.reason >= 0x80, "error without a reason");
            if (rc == IOT_ETOOBIG)
                FUZZ_CHECK(f.reason == MQTT_RC_PACKET_TOO_LARGE, "ETOOBIG reason %02x", f.reason);
        }
        if (rc != MQTT_NEED_MORE && steps < 8) check_prefixes(p + off, n - off, max, version, &s);
        out[steps++] = s;
        if (rc != 0 || steps == MAX_STEPS) return steps;
        if (f.type == MQTT_CONNECT) version = f.u.connect.version;
        off += used;
    }
}

static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    int version = (data[0] & 3) == 0 ? 0 : (data[0] & 3) == 1 ? MQTT_V311 : MQTT_V5;
    size_t max = (data[0] & 0x80) ? 2 + (size_t)(data[0] & 0x7F) : BIG_FRAME;
    uint32_t seed = data[1];
    const uint8_t *p = data + 2;
    size_t n = size - 2;

    struct step whole[MAX_STEPS];
    size_t nwhole = decode_whole(p, n, max, version, whole);

    /* the same stream in reads of 1..64 bytes (sometimes all that is left) */
    size_t have = 0, off = 0, steps = 0;
    bool done = false;
    while (!done) {
        size_t chunk = next_rand(&seed) % 8 == 0 ? n - have : 1 + next_rand(&seed) % 64;
        have = chunk > n - have ? n : have + chunk;
        for (;;) {
            struct mqtt_frame f;
            size_t used;
            int rc = decode_copy(p + off, have - off, max, version, &f, &used);
            if (rc == MQTT_NEED_MORE && have < n) break;
            FUZZ_CHECK(steps < nwhole, "more frames split than whole");
            const struct step *w = &whole[steps++];
            FUZZ_CHECK(rc == w->rc && (int)f.type == w->type && f.len == w->len &&
                           f.reason == w->reason,
                       "step %zu split: rc %d type %d len %zu reason %02x; whole: rc %d type %d "
                       "len %zu reason %02x",
                       steps - 1, rc, f.type, f.len, f.reason, w->rc, w->type, w->len, w->reason);
            if (rc != 0 || steps == MAX_STEPS) {
                done = true;
                break;
            }
            if (f.type == MQTT_CONNECT) version = f.u.connect.version;
            off += used;
        }
    }
    FUZZ_CHECK(steps == nwhole, "%zu steps split, %zu whole", steps, nwhole);
    return 0;
}
