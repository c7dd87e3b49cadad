/*
 * GET /ingest/devices/{uuid}/status: each sensor's state and active alert
 * count, read from the database (sensor_state and alerts), so it reflects
 * what is committed, also by other processes.
 */
#include "core/err.h"
#include "core/timefmt.h"
#include "http/http_int.h"

#include <string.h>

static int add_row(const struct store_sensor_status *r, void *ud)
{
    json_t *arr = ud;
    const char *state = "no_data";
    if (r->has_reading && !r->no_data_active)
        state = r->critical_active ? "alert" : reading_class_name(r->last_class);
    char ts[TIMEFMT_RFC3339_LEN];
    if (r->has_reading) timefmt_format_rfc3339(r->last_ts, ts);
    json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:o, s:o, s:I}", "sensor_uuid", r->uuid,
                          "sensor_id", (json_int_t)r->sensor_id, "name", r->name, "state", state,
                          "last_value", r->has_reading ? json_real(r->last_value) : json_null(),
                          "last_ts", r->has_reading ? json_string(ts) : json_null(),
                          "active_alerts", (json_int_t)r->active_alerts);
    return o && json_array_append_new(arr, o) == 0 ? 0 : IOT_ENOMEM;
}

int ep_status(struct request *rq)
{
    struct http_server *s = rq->srv;
    if (rq->path_too_long) return reply_error(rq, 404, "not_found", "no such device");
    int ret;
    const struct device_ref *dref = NULL;
    if (auth_device_read(rq, rq->route_arg, &dref, &ret)) return ret;
    json_t *sensors = json_array();
    struct store *db = store_shared_acquire(s->d.db);
    int rc = sensors ? store_device_status(db, dref->dev.id, add_row, sensors) : IOT_ENOMEM;
    store_shared_release(s->d.db);
    if (rc) {
        json_decref(sensors);
        ret = reply_store_error(rq, rc);
    } else {
        ret = reply_json(
            rq, 200, json_pack("{s:s, s:o}", "device_uuid", dref->dev.uuid, "sensors", sensors));
    }
    resolver_release(s->d.resolver, dref);
    return ret;
}
