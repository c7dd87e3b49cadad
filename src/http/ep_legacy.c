/*
 * Legacy endpoints, by internal sensor_id, for the seed's older clients:
 * POST /ingest/readings (one reading, 201 with its class) and
 * POST /ingest/readings/bulk. API key only; sensors are looked up in the
 * database on every call (no cache: a low-volume path that must see
 * disables at once).
 */
#include "core/err.h"
#include "http/http_int.h"
#include "ingest/packet_decode.h"

#include <stdlib.h>
#include <string.h>

static int finish_legacy(struct request *rq)
{
    struct write_job *job = &rq->job;
    if (job->status != WRITE_STORED) return reply_store_error(rq, job->err ? job->err : IOT_EDB);
    json_t *a = rq->answer;
    rq->answer = NULL;
    if (rq->route == ROUTE_READINGS) {
        /* The class is the writer's verdict: known only now. */
        json_object_set_new(a, "class", json_string(reading_class_name(job->readings[0].cls)));
    }
    return reply_json(rq, (unsigned)rq->answer_status, a);
}

/*
 * Looks a sensor up with its device; 0, IOT_ENOTFOUND or a store error. dev
 * (dev->id 0 = none yet) is the previous reading's device, read again only
 * when this sensor belongs to another: a bulk request is mostly one device.
 */
static int lookup(struct store *db, int64_t sensor_id, struct store_sensor *sen,
                  struct store_device *dev)
{
    int rc = store_sensor_get(db, sensor_id, sen);
    if (!rc && dev->id != sen->device_id) {
        rc = store_device_get_by_id(db, sen->device_id, dev);
        if (rc) dev->id = 0;
    }
    if (!rc && (!sen->is_active || !dev->is_active)) rc = IOT_ENOTFOUND;
    return rc;
}

int ep_legacy(struct request *rq, int bulk)
{
    struct http_server *s = rq->srv;
    int ret;
    if (auth_locked_out(rq, &ret)) return ret;
    if (!auth_api_key(rq)) {
        auth_failed(rq);
        return auth_reply_denied(rq, "missing or invalid API key");
    }
    struct decoded_packet p;
    char detail[256];
    const char *code = NULL;
    int rc =
        legacy_decode(rq->body ? rq->body : "", rq->len, bulk,
                      (size_t)s->d.cfg->max_readings_per_packet, &p, detail, sizeof detail, &code);
    if (rc == IOT_ENOMEM) return MHD_NO;
    if (rc) return reply_error(rq, 400, code, "%s", detail);

    struct write_reading *w = calloc(p.n, sizeof *w);
    json_t *rejected = json_array();
    if (!w || !rejected) {
        free(w);
        json_decref(rejected);
        decoded_packet_fini(&p);
        return MHD_NO;
    }
    size_t nvalid = 0;
    struct store *db = store_shared_acquire(s->d.db);
    struct store_device dev = {0};
    for (size_t i = 0; i < p.n; i++) {
        const struct decoded_reading *d = &p.readings[i];
        struct store_sensor sen;
        enum reject_reason why = REJECT_NONE;
        int64_t ts = 0;
        rc = d->sensor_id ? lookup(db, d->sensor_id, &sen, &dev) : IOT_ENOTFOUND;
        if (rc && rc != IOT_ENOTFOUND) {
            store_shared_release(s->d.db);
            free(w);
            json_decref(rejected);
            decoded_packet_fini(&p);
            return reply_store_error(rq, rc);
        }
        if (rc)
            why = REJECT_UNKNOWN_SENSOR;
        else if (!d->value_ok)
            why = REJECT_INVALID_VALUE;
        else
            why = decode_effective_ts(d, &p, rq->received, s->d.cfg->max_future_skew_s * 1000,
                                      s->d.cfg->max_past_age_s * 1000, &ts);
        if (why != REJECT_NONE) {
            intake_count_rejected(s->d.intake, why);
            json_array_append_new(
                rejected, json_pack("{s:i, s:o, s:s}", "index", (json_int_t)d->index, "sensor_id",
                                    d->sensor_id ? json_integer(d->sensor_id) : json_null(),
                                    "reason", reject_reason_name(why)));
            continue;
        }
        intake_reading_fill(&w[nvalid++], d->index, &sen, &dev, d->value, ts,
                            decode_ts_is_stamped(d, &p));
    }
    store_shared_release(s->d.db);
    decoded_packet_fini(&p);

    json_t *answer = json_pack("{s:i, s:o}", "accepted", (json_int_t)nvalid, "rejected", rejected);
    if (!answer) {
        free(w);
        return MHD_NO;
    }
    if (nvalid == 0) {
        free(w);
        return reply_no_valid(rq, answer, "request");
    }
    if (!bulk) json_object_del(answer, "rejected");
    rq->answer = answer;
    rq->answer_status = bulk ? 200 : 201;
    rq->finish = finish_legacy;
    rq->job.readings = w;
    rq->job.nreadings = nvalid;
    ret = http_submit(rq);
    return ret;
}
