#include "broker/broker_msg.h"
#include "core/err.h"
#include "core/timefmt.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

int broker_msg_encode(const struct broker_reading *r, char **out, size_t *len)
{
    char ts[TIMEFMT_RFC3339_LEN];

    if (!r || !out || !len) return IOT_EINVAL;
    *out = NULL;
    *len = 0;
    if (!isfinite(r->value)) return IOT_EINVAL;
    timefmt_format_rfc3339(r->ts_ms, ts);
    json_t *o = json_pack("{s:i, s:I, s:s, s:s, s:f, s:s, s:I, s:s}", "v", BROKER_MSG_VERSION,
                          "sensor_id", (json_int_t)r->sensor_id, "sensor_uuid", r->sensor_uuid,
                          "device_uuid", r->device_uuid, "value", r->value, "ts", ts, "ts_ms",
                          (json_int_t)r->ts_ms, "class", r->cls);
    if (!o) return IOT_ENOMEM; /* json_pack also fails on invalid UTF-8 */
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(o);
    if (!text) return IOT_ENOMEM;
    *out = text;
    *len = strlen(text);
    return 0;
}

/* Copies the string member key of o into dst (cap bytes with the NUL), if present. */
static int copy_str(json_t *o, const char *key, char *dst, size_t cap)
{
    json_t *v = json_object_get(o, key);
    dst[0] = '\0';
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return IOT_EINVAL;
    size_t n = json_string_length(v);
    if (n >= cap) return IOT_EINVAL;
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
    return 0;
}

int broker_msg_decode(const char *data, size_t len, struct broker_reading *out)
{
    json_error_t jerr;
    int rc = IOT_EINVAL;

    if (!data || !out) return IOT_EINVAL;
    memset(out, 0, sizeof *out);
    json_t *o = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) return IOT_EINVAL;
    json_t *id = json_object_get(o, "sensor_id");
    json_t *val = json_object_get(o, "value");
    json_t *ts = json_object_get(o, "ts_ms");
    if (!json_is_object(o) || !json_is_integer(id) || !json_is_number(val) || !json_is_integer(ts))
        goto out;
    out->sensor_id = (int64_t)json_integer_value(id);
    out->value = json_number_value(val);
    out->ts_ms = (int64_t)json_integer_value(ts);
    if (!isfinite(out->value) || out->sensor_id <= 0) goto out;
    if (copy_str(o, "sensor_uuid", out->sensor_uuid, sizeof out->sensor_uuid) ||
        copy_str(o, "device_uuid", out->device_uuid, sizeof out->device_uuid) ||
        copy_str(o, "class", out->cls, sizeof out->cls))
        goto out;
    rc = 0;
out:
    json_decref(o);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}

void broker_msg_id(const struct broker_reading *r, char out[BROKER_MSG_ID_LEN])
{
    snprintf(out, BROKER_MSG_ID_LEN, "%lld-%lld", (long long)r->sensor_id, (long long)r->ts_ms);
}
