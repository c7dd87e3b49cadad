#include "ingest/packet_decode.h"
#include "core/err.h"
#include "core/timefmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const reason_names[] = {
    "none",           "unknown_sensor", "invalid_value", "invalid_timestamp", "future_timestamp",
    "stale_timestamp"};
_Static_assert(sizeof reason_names / sizeof *reason_names == REJECT_REASONS, "a name per reason");

const char *reject_reason_name(enum reject_reason r)
{
    return reason_names[r];
}

void decoded_packet_fini(struct decoded_packet *p)
{
    free(p->readings);
    p->readings = NULL;
    p->n = 0;
}

static int bad(char *detail, size_t dlen, const char **code, const char *c, const char *fmt,
               const char *arg)
{
    snprintf(detail, dlen, fmt, arg);
    *code = c;
    return IOT_EINVAL;
}

/* Parses JSON text strictly (duplicate keys rejected, UTF-8 validated, depth-limited). */
static json_t *parse(const char *body, size_t len, char *detail, size_t dlen, const char **code)
{
    json_error_t e;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &e);
    if (!root) {
        snprintf(detail, dlen, "malformed JSON at line %d column %d: %s", e.line, e.column, e.text);
        *code = DECODE_INVALID_JSON;
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        bad(detail, dlen, code, DECODE_INVALID_REQUEST, "the body must be a JSON object%s", "");
        return NULL;
    }
    return root;
}

/* Number of UTF-8 code points (jansson has validated the encoding). */
static size_t utf8_chars(const char *s, size_t bytes)
{
    size_t n = 0;
    for (size_t i = 0; i < bytes; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static void decode_ts(json_t *v, enum ts_state *state, int64_t *ts)
{
    if (!v || json_is_null(v)) {
        *state = TS_MISSING;
        return;
    }
    int rc = IOT_EINVAL;
    if (json_is_string(v))
        rc = timefmt_parse_rfc3339(json_string_value(v), json_string_length(v), ts);
    else if (json_is_number(v))
        rc = timefmt_from_epoch_s(json_number_value(v), ts);
    *state = rc ? TS_INVALID : TS_OK;
}

static void decode_value(json_t *v, struct decoded_reading *r)
{
    r->value_ok = v && json_is_number(v) && isfinite(json_number_value(v));
    if (r->value_ok) r->value = json_number_value(v);
}

static int decode_readings(json_t *arr, const char *field, size_t max_readings, int legacy,
                           struct decoded_packet *out, char *detail, size_t dlen, const char **code)
{
    if (!arr) return bad(detail, dlen, code, DECODE_INVALID_REQUEST, "%s is missing", field);
    if (!json_is_array(arr))
        return bad(detail, dlen, code, DECODE_INVALID_REQUEST, "%s must be an array", field);
    size_t n = json_array_size(arr);
    if (n == 0) return bad(detail, dlen, code, DECODE_INVALID_REQUEST, "%s is empty", field);
    if (n > max_readings) {
        snprintf(detail, dlen, "%s has %zu readings, more than the limit of %zu", field, n,
                 max_readings);
        *code = DECODE_INVALID_REQUEST;
        return IOT_EINVAL;
    }
    out->readings = calloc(n, sizeof *out->readings);
    if (!out->readings) return IOT_ENOMEM;
    out->n = n;
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(arr, i);
        struct decoded_reading *r = &out->readings[i];
        r->index = (int)i;
        if (!json_is_object(o)) {
            snprintf(detail, dlen, "%s[%zu] must be an object", field, i);
            *code = DECODE_INVALID_REQUEST;
            decoded_packet_fini(out);
            return IOT_EINVAL;
        }
        if (legacy) {
            json_t *id = json_object_get(o, "sensor_id");
            double d = id && json_is_number(id) ? json_number_value(id) : 0;
            if (d >= 1 && d <= 9007199254740992.0 && d == floor(d)) r->sensor_id = (int64_t)d;
            decode_ts(json_object_get(o, "timestamp"), &r->ts_state, &r->ts);
        } else {
            json_t *u = json_object_get(o, "sensor_uuid");
            size_t ulen = u && json_is_string(u) ? json_string_length(u) : 0;
            r->uuid_ok =
                ulen >= 1 && ulen <= STORE_UUID_MAX && !memchr(json_string_value(u), 0, ulen);
            if (r->uuid_ok) memcpy(r->sensor_uuid, json_string_value(u), ulen + 1);
            decode_ts(json_object_get(o, "ts"), &r->ts_state, &r->ts);
        }
        decode_value(json_object_get(o, "value"), r);
    }
    return 0;
}

int packet_decode(const char *body, size_t len, size_t max_readings, struct decoded_packet *out,
                  char *detail, size_t dlen, const char **code)
{
    memset(out, 0, sizeof *out);
    json_t *root = parse(body, len, detail, dlen, code);
    if (!root) return IOT_EINVAL;
    int rc = IOT_EINVAL;
    json_t *d = json_object_get(root, "device_uuid");
    if (!d) {
        bad(detail, dlen, code, DECODE_INVALID_REQUEST, "device_uuid is missing%s", "");
        goto out;
    }
    if (!json_is_string(d)) {
        bad(detail, dlen, code, DECODE_INVALID_REQUEST, "device_uuid must be a string%s", "");
        goto out;
    }
    size_t dl = json_string_length(d);
    if (dl == 0 || dl > STORE_UUID_MAX || memchr(json_string_value(d), 0, dl)) {
        snprintf(detail, dlen, "device_uuid must be 1 to %d bytes", STORE_UUID_MAX);
        *code = DECODE_INVALID_REQUEST;
        goto out;
    }
    memcpy(out->device_uuid, json_string_value(d), dl + 1);

    json_t *pid = json_object_get(root, "packet_id");
    if (pid) {
        size_t pl = json_is_string(pid) ? json_string_length(pid) : 0;
        size_t chars = pl ? utf8_chars(json_string_value(pid), pl) : 0;
        if (!json_is_string(pid) || chars == 0 || chars > STORE_PACKET_ID_MAX ||
            memchr(json_string_value(pid), 0, pl)) {
            snprintf(detail, dlen, "packet_id must be a string of 1 to %d characters",
                     STORE_PACKET_ID_MAX);
            *code = DECODE_INVALID_REQUEST;
            goto out;
        }
        memcpy(out->packet_id, json_string_value(pid), pl + 1);
    }
    decode_ts(json_object_get(root, "ts"), &out->ts_state, &out->ts);
    rc = decode_readings(json_object_get(root, "readings"), "readings", max_readings, 0, out,
                         detail, dlen, code);
out:
    json_decref(root);
    return rc;
}

int legacy_decode(const char *body, size_t len, int bulk, size_t max_readings,
                  struct decoded_packet *out, char *detail, size_t dlen, const char **code)
{
    memset(out, 0, sizeof *out);
    json_t *root = parse(body, len, detail, dlen, code);
    if (!root) return IOT_EINVAL;
    int rc;
    if (bulk) {
        rc = decode_readings(json_object_get(root, "readings"), "readings", max_readings, 1, out,
                             detail, dlen, code);
    } else {
        /* A single reading is decoded as a one-element array of itself. */
        json_t *arr = json_array();
        rc = arr && json_array_append(arr, root) == 0
                 ? decode_readings(arr, "body", 1, 1, out, detail, dlen, code)
                 : IOT_ENOMEM;
        json_decref(arr);
    }
    json_decref(root);
    return rc;
}

enum reject_reason decode_effective_ts(const struct decoded_reading *r,
                                       const struct decoded_packet *p, int64_t now,
                                       int64_t max_future_ms, int64_t max_past_ms, int64_t *ts)
{
    enum ts_state st = r->ts_state;
    int64_t t = r->ts;
    if (st == TS_MISSING) {
        st = p->ts_state;
        t = p->ts;
    }
    if (st == TS_MISSING) {
        st = TS_OK;
        t = now;
    }
    if (st == TS_INVALID) return REJECT_INVALID_TIMESTAMP;
    if (t > now + max_future_ms) return REJECT_FUTURE_TIMESTAMP;
    if (t < now - max_past_ms) return REJECT_STALE_TIMESTAMP;
    *ts = t;
    return REJECT_NONE;
}
