/*
 * Fuzzes packet_decode (POST /ingest/packets body -> decoded packet) and
 * decode_effective_ts. The input is the raw body.
 *
 * Invariants checked on every input:
 * - the decoder never reads past the body (ASan: the input is not
 *   NUL-terminated) and never leaks (LSan);
 * - failure is IOT_EINVAL with code invalid_json or invalid_request and a
 *   non-empty detail, or IOT_ENOMEM. The detail may quote body bytes
 *   (jansson's error text) that are not UTF-8: reply.c makes it valid before
 *   it goes into the JSON answer, which the request harness checks;
 * - success gives 1..max readings, a device_uuid of 1..STORE_UUID_MAX bytes,
 *   a packet_id of at most STORE_PACKET_ID_MAX characters, finite values,
 *   timestamps inside 0001..9999, and readings whose effective time lies in
 *   the accepted window when decode_effective_ts accepts them.
 */
#include "core/err.h"
#include "ingest/packet_decode.h"

#include "fuzz_util.h"

#include <math.h>

#define MAX_READINGS 64
#define NOW_MS       1780272000000LL /* 2026-06-01T00:00:00Z */
#define FUTURE_MS    300000LL
#define PAST_MS      604800000LL
#define TS_MIN       (-62135596800000LL)
#define TS_MAX       253402300799999LL

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void check_ts(enum ts_state st, int64_t ts)
{
    FUZZ_CHECK(st == TS_MISSING || st == TS_OK || st == TS_INVALID, "ts_state %d", (int)st);
    if (st == TS_OK)
        FUZZ_CHECK(ts >= TS_MIN && ts <= TS_MAX, "ts %lld out of range", (long long)ts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct decoded_packet p;
    char detail[256] = "";
    const char *code = NULL;
    int rc =
        packet_decode((const char *)data, size, MAX_READINGS, &p, detail, sizeof detail, &code);
    if (rc == IOT_ENOMEM) return 0;
    if (rc) {
        FUZZ_CHECK(rc == IOT_EINVAL, "rc %d", rc);
        FUZZ_CHECK(code && (strcmp(code, DECODE_INVALID_JSON) == 0 ||
                            strcmp(code, DECODE_INVALID_REQUEST) == 0),
                   "code %s", code ? code : "(null)");
        FUZZ_CHECK(detail[0] != '\0', "empty detail");
        FUZZ_CHECK(p.readings == NULL && p.n == 0, "readings left after a failure");
        return 0;
    }

    size_t dl = strlen(p.device_uuid);
    FUZZ_CHECK(dl >= 1 && dl <= STORE_UUID_MAX, "device_uuid of %zu bytes", dl);
    size_t pl = strlen(p.packet_id);
    FUZZ_CHECK(pl <= STORE_PACKET_ID_BYTES && utf8_chars(p.packet_id) <= STORE_PACKET_ID_MAX,
               "packet_id of %zu bytes", pl);
    FUZZ_CHECK(p.n >= 1 && p.n <= MAX_READINGS && p.readings, "n = %zu", p.n);
    check_ts(p.ts_state, p.ts);
    for (size_t i = 0; i < p.n; i++) {
        const struct decoded_reading *r = &p.readings[i];
        FUZZ_CHECK(r->index == (int)i, "index %d at %zu", r->index, i);
        size_t ul = strlen(r->sensor_uuid);
        if (r->uuid_ok)
            FUZZ_CHECK(ul >= 1 && ul <= STORE_UUID_MAX, "sensor_uuid of %zu bytes", ul);
        else
            FUZZ_CHECK(ul == 0, "sensor_uuid set but not ok");
        FUZZ_CHECK(r->sensor_id == 0, "sensor_id set by the packet decoder");
        if (r->value_ok) FUZZ_CHECK(isfinite(r->value), "value %g", r->value);
        check_ts(r->ts_state, r->ts);

        int64_t ts = 0;
        enum reject_reason why = decode_effective_ts(r, &p, NOW_MS, FUTURE_MS, PAST_MS, &ts);
        FUZZ_CHECK(why >= REJECT_NONE && why <= REJECT_STALE_TIMESTAMP, "reason %d", (int)why);
        FUZZ_CHECK(reject_reason_name(why) != NULL, "no name for reason %d", (int)why);
        if (why == REJECT_NONE)
            FUZZ_CHECK(ts >= NOW_MS - PAST_MS && ts <= NOW_MS + FUTURE_MS,
                       "accepted ts %lld outside the window", (long long)ts);
        else
            FUZZ_CHECK(why != REJECT_UNKNOWN_SENSOR && why != REJECT_INVALID_VALUE,
                       "time check gave %s", reject_reason_name(why));
    }
    decoded_packet_fini(&p);
    return 0;
}
