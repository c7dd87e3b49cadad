/*
 * POST /ingest/packets: decode, authenticate (device key or API key), take a
 * device token, resolve and validate every reading, then hand the valid ones
 * to the writer. The answer is prepared before the job is queued, because
 * the writer remembers it with the packet_id inside the same transaction.
 */
#include "core/err.h"
#include "http/http_int.h"
#include "ingest/packet_decode.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Rewrites a remembered answer with "duplicate": true. */
static json_t *as_duplicate(const char *stored)
{
    json_t *j = json_loads(stored, 0, NULL);
    if (j) json_object_set_new(j, "duplicate", json_true());
    return j;
}

static int finish_packet(struct request *rq)
{
    struct write_job *job = &rq->job;
    switch (job->status) {
    case WRITE_STORED: {
        /* The answer's text, remembered with the packet_id if there is one. */
        char *text = (char *)job->response;
        job->response = NULL;
        return reply_text(rq, (unsigned)rq->answer_status, "application/json", text, strlen(text));
    }
    case WRITE_DUPLICATE: {
        json_t *j = as_duplicate(job->stored_response);
        if (!j) return reply_store_error(rq, IOT_EDB);
        return reply_json(rq, 200, j);
    }
    case WRITE_NOTHING: {
        char *text = (char *)job->response;
        size_t len = strlen(text);
        struct buf a = {text, len, len + 1};
        job->response = NULL;
        return reply_no_valid_text(rq, &a, "packet");
    }
    case WRITE_FAILED:
        /*
         * The device or a sensor of the packet was deleted (`device delete`)
         * while this gateway still held it: the answer it gets once the
         * cache has let it go, now.
         */
        if (job->err == IOT_ENOTFOUND)
            return reply_error(rq, 401, "unauthorized", "this device no longer exists");
        break;
    case WRITE_PENDING:
        break;
    }
    return reply_store_error(rq, job->err);
}

/* Validates one decoded reading; on success fills w. */
static enum reject_reason check_reading(struct request *rq, const struct device_ref *dref,
                                        const struct decoded_packet *p,
                                        const struct decoded_reading *d, struct write_reading *w)
{
    const struct config *cfg = rq->srv->d.cfg;
    const struct store_sensor *sen = d->uuid_ok ? device_ref_sensor(dref, d->sensor_uuid) : NULL;
    if (!sen || !sen->is_active) return REJECT_UNKNOWN_SENSOR;
    if (!d->value_ok) return REJECT_INVALID_VALUE;
    int64_t ts;
    enum reject_reason why = decode_effective_ts(d, p, rq->received, cfg->max_future_skew_s * 1000,
                                                 cfg->max_past_age_s * 1000, &ts);
    if (why != REJECT_NONE) return why;
    http_reading_fill(w, d->index, sen, &dref->dev, d->value, ts, decode_ts_is_stamped(d, p));
    return REJECT_NONE;
}

int ep_packets(struct request *rq)
{
    struct http_server *s = rq->srv;
    struct decoded_packet p;
    char detail[256];
    const char *code = NULL;
    int rc =
        packet_decode(rq->body ? rq->body : "", rq->len, (size_t)s->d.cfg->max_readings_per_packet,
                      &p, detail, sizeof detail, &code);
    if (rc == IOT_ENOMEM) return MHD_NO;
    if (rc) return reply_error(rq, 400, code, "%s", detail);
    memcpy(rq->device_uuid, p.device_uuid, sizeof rq->device_uuid);

    int ret, replied;
    if (auth_locked_out(rq, &ret)) {
        decoded_packet_fini(&p);
        return ret;
    }
    const struct device_ref *dref = NULL;
    rc = resolver_get(s->d.resolver, p.device_uuid, &dref);
    if (rc && rc != IOT_ENOTFOUND) {
        decoded_packet_fini(&p);
        return reply_store_error(rq, rc);
    }
    switch (auth_device(rq, dref ? &dref->dev : NULL)) {
    case AUTH_DENIED:
        ret = auth_reply_denied(rq, NULL);
        goto out;
    case AUTH_INACTIVE:
        ret = reply_error(rq, 403, "device_inactive", "this device is disabled");
        goto out;
    case AUTH_OK:
        break;
    }
    assert(dref); /* auth_device grants AUTH_OK to a known device only */
    ret = auth_device_rate(rq, dref->dev.id, &replied);
    if (replied) goto out;

    /*
     * The answer is written as text, not built as a JSON tree: it is the same
     * for every packet but the rejections, and it is what the writer
     * remembers with the packet_id.
     */
    struct write_reading *w = calloc(p.n, sizeof *w);
    struct buf rejected = {0}, answer = {0};
    size_t nvalid = 0;
    int oom = !w;
    for (size_t i = 0; !oom && i < p.n; i++) {
        const struct decoded_reading *d = &p.readings[i];
        enum reject_reason why = check_reading(rq, dref, &p, d, &w[nvalid]);
        if (why == REJECT_NONE) {
            nvalid++;
            continue;
        }
        atomic_fetch_add_explicit(&s->metrics.rejected[why], 1, memory_order_relaxed);
        oom = buf_printf(&rejected, "%s{\"index\":%d,\"sensor_uuid\":", rejected.len ? "," : "",
                         d->index) ||
              (d->uuid_ok ? buf_put_json_str(&rejected, d->sensor_uuid)
                          : buf_put(&rejected, "null", 4)) ||
              buf_printf(&rejected, ",\"reason\":\"%s\"}", reject_reason_name(why));
    }
    oom = oom || buf_put(&answer, "{\"device_uuid\":", 15) ||
          buf_put_json_str(&answer, p.device_uuid) ||
          buf_printf(&answer, ",\"accepted\":%zu,\"rejected\":[", nvalid) ||
          buf_put(&answer, rejected.p ? rejected.p : "", rejected.len) ||
          buf_put(&answer, "],\"duplicate\":false}", 20);
    buf_free(&rejected);
    if (oom) {
        free(w);
        buf_free(&answer);
        ret = MHD_NO;
        goto out;
    }
    if (nvalid == 0 && !p.packet_id[0]) {
        free(w);
        ret = reply_no_valid_text(rq, &answer, "packet");
        goto out;
    }
    rq->answer_status = 200;
    rq->finish = finish_packet;
    rq->job.device_id = dref->dev.id;
    memcpy(rq->job.packet_id, p.packet_id, sizeof rq->job.packet_id);
    rq->job.readings = w;
    rq->job.nreadings = nvalid;
    rq->job.response = answer.p; /* the request frees it (request_free) */
    ret = http_submit(rq);
out:
    resolver_release(s->d.resolver, dref);
    decoded_packet_fini(&p);
    return ret;
}
