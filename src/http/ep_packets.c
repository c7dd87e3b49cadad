/*
 * POST /ingest/packets: decode, authenticate (device key or API key), take a
 * device token, have the intake judge every reading, then hand the valid
 * ones to the writer. The answer is prepared before the job is queued,
 * because the writer remembers it with the packet_id inside the same
 * transaction.
 */
#include "core/err.h"
#include "http/http_int.h"
#include "ingest/packet_decode.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static int finish_packet(struct request *rq)
{
    struct write_job *job = &rq->job;
    switch (job->status) {
    case WRITE_STORED: {
        /* The answer's text, remembered with the packet_id if there is one. */
        char *text = job->response;
        job->response = NULL;
        return reply_text(rq, (unsigned)rq->answer_status, "application/json", text, strlen(text));
    }
    case WRITE_DUPLICATE: {
        char *text = intake_answer_duplicate(job->stored_response);
        if (!text) return reply_store_error(rq, IOT_EDB);
        return reply_text(rq, 200, "application/json", text, strlen(text));
    }
    case WRITE_NOTHING: {
        char *text = job->response;
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

    struct intake_verdict v;
    if (intake_judge(s->d.intake, &p, dref, rq->received, &v)) {
        ret = MHD_NO;
        goto out;
    }
    if (v.nvalid == 0 && !p.packet_id[0]) {
        ret = reply_no_valid_text(rq, &v.answer, "packet");
        intake_verdict_fini(&v);
        goto out;
    }
    rq->answer_status = 200;
    rq->finish = finish_packet;
    rq->job.device_id = dref->dev.id;
    memcpy(rq->job.packet_id, p.packet_id, sizeof rq->job.packet_id);
    rq->job.readings = v.readings; /* the request frees both (request_destroy) */
    rq->job.nreadings = v.nvalid;
    rq->job.response = v.answer.p;
    ret = http_submit(rq);
out:
    resolver_release(s->d.resolver, dref);
    decoded_packet_fini(&p);
    return ret;
}
