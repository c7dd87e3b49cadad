/*
 * Fuzzes packet_decode (POST /ingest/packets body -> decoded packet) and
 * decode_effective_ts. The input is the raw body.
 *
 * Invariants checked on every input:
 * - the decoder never reads past the body (ASan: the input is not
 *   NUL-terminated) and never leaks (LSan);
 * - failure is IOT_EINVAL with code invalid_json or invalid_request and a
 *   non-empty detail, or IOT_ENOMEM. The detail may quote body bytes
 *   (a duplicate key's text) that are not UTF-8: reply.c makes it valid before
 *   it goes into the JSON answer, which the request harness checks;
 * - success gives 1..max readings, a device_uuid of 1..STORE_UUID_MAX bytes,
 *   a packet_id of at most STORE_PACKET_ID_MAX characters, finite values,
 *   timestamps inside 0001..9999, and readings whose effective time lies in
 *   the accepted window when decode_effective_ts accepts them;
 * - differential: the same answer as the jansson tree decoder it replaced
 *   (reference_decode below, the code of f739d22): the same code, the same
 *   detail for invalid_request, the same fields on success. One difference
 *   is by design: a number that overflows a double is a malformed body for
 *   jansson, a reading's invalid value (or time) here; those inputs are not
 *   compared. Nor are bodies with a NUL byte that jansson accepts: jansson
 *   2.14 drops a NUL that directly follows a number (its unget buffer takes
 *   the NUL for "empty"), so it accepts `{"a":7\0}`, which is not JSON.
 */
#include "core/err.h"
#include "core/ident.h"
#include "core/timefmt.h"
#include "ingest/packet_decode.h"

#include "fuzz_util.h"

#include <jansson.h>
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

/* ------------------------------------------------ the jansson reference */

struct ref {
    int rc; /* 0, or 1 = invalid_json, 2 = invalid_request, -1 = not compared */
    char detail[256];
};

static void ref_ts(json_t *v, enum ts_state *st, int64_t *ts)
{
    int rc = IOT_EINVAL;
    if (!v || json_is_null(v)) {
        *st = TS_MISSING;
        return;
    }
    if (json_is_string(v))
        rc = timefmt_parse_rfc3339(json_string_value(v), json_string_length(v), ts);
    if (json_is_number(v)) rc = timefmt_from_epoch_s(json_number_value(v), ts);
    *st = rc ? TS_INVALID : TS_OK;
}

#define REF_BAD(...) (snprintf(r->detail, sizeof r->detail, __VA_ARGS__), r->rc = 2, 0)

/* The tree decoder of f739d22, compared field by field with out (on success). */
static int reference_check(json_t *root, const struct decoded_packet *out, struct ref *r)
{
    json_t *d = json_object_get(root, "device_uuid");
    if (!d) return REF_BAD("device_uuid is missing");
    if (!json_is_string(d)) return REF_BAD("device_uuid must be a string");
    size_t dl = json_string_length(d);
    if (dl == 0 || dl > STORE_UUID_MAX || strlen(json_string_value(d)) != dl ||
        strspn(json_string_value(d), IDENT_ALPHABET) != dl)
        return REF_BAD("device_uuid must be 1 to %d characters of " IDENT_ALPHABET_TEXT, 64);
    json_t *pid = json_object_get(root, "packet_id");
    if (pid) {
        size_t pl = json_is_string(pid) ? json_string_length(pid) : 0;
        size_t chars = 0;
        for (size_t i = 0; i < pl; i++)
            chars += (json_string_value(pid)[i] & 0xC0) != 0x80;
        if (!json_is_string(pid) || chars == 0 || chars > STORE_PACKET_ID_MAX)
            return REF_BAD("packet_id must be a string of 1 to %d characters", 64);
    }
    json_t *arr = json_object_get(root, "readings");
    if (!arr) return REF_BAD("readings is missing");
    if (!json_is_array(arr)) return REF_BAD("readings must be an array");
    size_t n = json_array_size(arr);
    if (n == 0) return REF_BAD("readings is empty");
    if (n > MAX_READINGS)
        return REF_BAD("readings has %zu readings, more than the limit of %d", n, MAX_READINGS);
    for (size_t i = 0; i < n; i++)
        if (!json_is_object(json_array_get(arr, i)))
            return REF_BAD("readings[%zu] must be an object", i);
    if (!out) return 0; /* the new decoder failed where this one did not */
    FUZZ_CHECK(strcmp(out->device_uuid, json_string_value(d)) == 0, "device_uuid differs");
    FUZZ_CHECK(strcmp(out->packet_id, pid ? json_string_value(pid) : "") == 0, "packet_id differs");
    enum ts_state st;
    int64_t ts = 0;
    ref_ts(json_object_get(root, "ts"), &st, &ts);
    FUZZ_CHECK(st == out->ts_state && (st != TS_OK || ts == out->ts), "packet ts differs");
    FUZZ_CHECK(n == out->n, "n %zu, reference %zu", out->n, n);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i), *u = json_object_get(o, "sensor_uuid"),
               *v = json_object_get(o, "value");
        const struct decoded_reading *x = &out->readings[i];
        size_t ul = u && json_is_string(u) ? json_string_length(u) : 0;
        int uuid_ok = ul >= 1 && ul <= STORE_UUID_MAX;
        FUZZ_CHECK(x->uuid_ok == uuid_ok &&
                       (!uuid_ok || !strcmp(x->sensor_uuid, json_string_value(u))),
                   "readings[%zu].sensor_uuid differs", i);
        int value_ok = v && json_is_number(v) && isfinite(json_number_value(v));
        FUZZ_CHECK(x->value_ok == value_ok && (!value_ok || x->value == json_number_value(v)),
                   "readings[%zu].value differs", i);
        ref_ts(json_object_get(o, "ts"), &st, &ts);
        FUZZ_CHECK(st == x->ts_state && (st != TS_OK || ts == x->ts), "readings[%zu].ts differs",
                   i);
    }
    return 0;
}

static void reference_compare(const uint8_t *data, size_t size, int rc, const char *code,
                              const char *detail, const struct decoded_packet *out)
{
    json_error_t e;
    struct ref r = {.rc = 0};
    json_t *root =
        json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &e);
    if (!root) {
        if (strstr(e.text, "overflow")) return; /* the difference by design */
        r.rc = 1;
    } else if (!json_is_object(root)) {
        snprintf(r.detail, sizeof r.detail, "the body must be a JSON object");
        r.rc = 2;
    } else {
        reference_check(root, rc ? NULL : out, &r);
    }
    json_decref(root);
    if (root && memchr(data, 0, size)) return; /* jansson's NUL bug, above */
    int got = rc == 0 ? 0 : strcmp(code, DECODE_INVALID_JSON) == 0 ? 1 : 2;
    FUZZ_CHECK(got == r.rc, "decoder says %d (%s), jansson says %d (%s)", got, detail, r.rc,
               r.rc == 1 ? e.text : r.detail);
    if (r.rc == 2)
        FUZZ_CHECK(strcmp(detail, r.detail) == 0, "detail \"%s\", jansson's \"%s\"", detail,
                   r.detail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct decoded_packet p;
    char detail[256] = "";
    const char *code = NULL;
    int rc =
        packet_decode((const char *)data, size, MAX_READINGS, &p, detail, sizeof detail, &code);
    if (rc == IOT_ENOMEM) return 0;
    reference_compare(data, size, rc, code, detail, &p);
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
