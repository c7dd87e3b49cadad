/*
 * Request decoding, with no I/O: JSON text -> decoded packet (SPEC §5), in
 * one streaming pass (yajl), no JSON tree. Packet-level problems fail the
 * whole request (400, with a detail naming the field); reading-level
 * problems are recorded per reading and become the reading's rejection
 * reason later. Pure functions, so they are fuzzed.
 */
#ifndef IOT_PACKET_DECODE_H
#define IOT_PACKET_DECODE_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

enum reject_reason {
    REJECT_NONE = 0,
    REJECT_UNKNOWN_SENSOR,
    REJECT_INVALID_VALUE,
    REJECT_INVALID_TIMESTAMP,
    REJECT_FUTURE_TIMESTAMP,
    REJECT_STALE_TIMESTAMP,
    REJECT_REASONS /* count */
};
const char *reject_reason_name(enum reject_reason r);

enum ts_state { TS_MISSING = 0, TS_OK, TS_INVALID };

struct decoded_reading {
    int index;
    int uuid_ok; /* a string of 1..STORE_UUID_MAX bytes */
    char sensor_uuid[STORE_UUID_MAX + 1];
    int64_t sensor_id; /* legacy requests: > 0 when valid */
    int value_ok;      /* a JSON number that is finite as a double (1e999 is not) */
    double value;
    enum ts_state ts_state;
    int64_t ts;
};

struct decoded_packet {
    char device_uuid[STORE_UUID_MAX + 1];
    char packet_id[STORE_PACKET_ID_BYTES + 1]; /* "" = none */
    enum ts_state ts_state;
    int64_t ts;
    struct decoded_reading *readings; /* malloc'ed */
    size_t n;
};

/* Machine codes of packet-level failures. */
#define DECODE_INVALID_JSON    "invalid_json"
#define DECODE_INVALID_REQUEST "invalid_request"

/*
 * Decodes a POST /ingest/packets body. Returns 0, or IOT_EINVAL with a
 * human sentence in detail and *code one of the DECODE_* codes, or
 * IOT_ENOMEM. On success the caller must call decoded_packet_fini.
 */
int packet_decode(const char *body, size_t len, size_t max_readings, struct decoded_packet *out,
                  char *detail, size_t dlen, const char **code);

/*
 * packet_decode for a body whose device the transport already names (MQTT:
 * the topic devices/{device_uuid}/packets): the body's device_uuid may be
 * omitted and then is device_uuid (valid, at most STORE_UUID_MAX bytes); if
 * present it must equal it, else IOT_EINVAL (invalid_request).
 */
int packet_decode_topic(const char *device_uuid, const char *body, size_t len, size_t max_readings,
                        struct decoded_packet *out, char *detail, size_t dlen, const char **code);

/*
 * Legacy bodies: {"sensor_id","value","timestamp"?} (single: one reading)
 * and {"readings":[...]} (bulk). The result uses decoded_packet with no
 * device; readings carry sensor_id (0 when missing or not a positive integer).
 */
int legacy_decode(const char *body, size_t len, int bulk, size_t max_readings,
                  struct decoded_packet *out, char *detail, size_t dlen, const char **code);

void decoded_packet_fini(struct decoded_packet *p);

/*
 * Reading time after defaults (own ts, else the packet's, else now) and its
 * check against the window [now - max_past_ms, now + max_future_ms].
 * Returns REJECT_NONE and *ts, or the reason.
 */
enum reject_reason decode_effective_ts(const struct decoded_reading *r,
                                       const struct decoded_packet *p, int64_t now,
                                       int64_t max_future_ms, int64_t max_past_ms, int64_t *ts);

/* True when the reading's time is the server's (neither it nor its packet has ts). */
static inline int decode_ts_is_stamped(const struct decoded_reading *r,
                                       const struct decoded_packet *p)
{
    return r->ts_state == TS_MISSING && p->ts_state == TS_MISSING;
}

#endif
