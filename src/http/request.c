/*
 * The life of one request, independent of the transport: routing, the
 * per-IP rate limit and header checks before the body is read, body
 * accumulation under MAX_BODY_BYTES, gzip, dispatch to the endpoint, and the
 * suspend/resume protocol that lets an endpoint answer only after the
 * writer's commit. server.c drives it from libmicrohttpd;
 * tests/support/http_harness.c drives it from memory (fuzzing, tests).
 */
#include "core/clock.h"
#include "core/err.h"
#include "core/ident.h"
#include "core/log.h"
#include "http/body_decode.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const route_names[ROUTE_COUNT] = {
    "/health",
    "/metrics",
    "/ingest/packets",
    "/ingest/readings",
    "/ingest/readings/bulk",
    "/ingest/devices/{uuid}/status",
    "/ingest/devices/{uuid}/sensors/{sensor_uuid}/readings",
    "other"};

const char *http_route_name(int route)
{
    return route_names[route];
}

/*
 * Copies the n bytes at src into arg (argcap bytes) as a route argument;
 * 0 when it holds a '/' (another route), sets *too_long when it does not fit.
 */
static int route_arg(const char *src, size_t n, char *arg, size_t argcap, int *too_long)
{
    if (memchr(src, '/', n)) return 0;
    if (n >= argcap)
        *too_long = 1;
    else {
        memcpy(arg, src, n);
        arg[n] = 0;
    }
    return 1;
}

static enum route match_route(struct request *rq, const char *url)
{
    static const char prefix[] = "/ingest/devices/", suffix[] = "/status", sensors[] = "/sensors/",
                      readings[] = "/readings";
    if (strcmp(url, "/health") == 0) return ROUTE_HEALTH;
    if (strcmp(url, "/metrics") == 0) return ROUTE_METRICS;
    if (strcmp(url, "/ingest/packets") == 0) return ROUTE_PACKETS;
    if (strcmp(url, "/ingest/readings") == 0) return ROUTE_READINGS;
    if (strcmp(url, "/ingest/readings/bulk") == 0) return ROUTE_READINGS_BULK;
    size_t ul = strlen(url), pl = sizeof prefix - 1, sl = sizeof suffix - 1;
    if (ul <= pl || strncmp(url, prefix, pl) != 0) return ROUTE_OTHER;
    const char *dev = url + pl;
    if (ul > pl + sl && strcmp(url + ul - sl, suffix) == 0)
        return route_arg(dev, ul - pl - sl, rq->route_arg, sizeof rq->route_arg, &rq->path_too_long)
                   ? ROUTE_STATUS
                   : ROUTE_OTHER;
    /* {uuid}/sensors/{sensor_uuid}/readings */
    const char *mid = strstr(dev, sensors);
    size_t rl = sizeof readings - 1, ml = sizeof sensors - 1;
    if (!mid || mid == dev || ul < pl + ml + rl || strcmp(url + ul - rl, readings) != 0)
        return ROUTE_OTHER;
    const char *sen = mid + ml, *sen_end = url + ul - rl;
    if (sen_end <= sen) return ROUTE_OTHER;
    if (!route_arg(dev, (size_t)(mid - dev), rq->route_arg, sizeof rq->route_arg,
                   &rq->path_too_long) ||
        !route_arg(sen, (size_t)(sen_end - sen), rq->route_arg2, sizeof rq->route_arg2,
                   &rq->path_too_long))
        return ROUTE_OTHER;
    return ROUTE_HISTORY;
}

static int route_method_ok(enum route r, const char *method)
{
    if (r == ROUTE_HEALTH || r == ROUTE_METRICS || r == ROUTE_STATUS || r == ROUTE_HISTORY)
        return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    return strcmp(method, "POST") == 0;
}

static int is_ingest(enum route r)
{
    return r >= ROUTE_PACKETS && r <= ROUTE_HISTORY;
}

/* Checks done before the body is read. Returns 1 if a response was queued. */
static int precheck(struct request *rq, int *ret)
{
    struct http_server *s = rq->srv;
    if (is_ingest(rq->route)) {
        int retry = 1;
        const char *addr = rq_limit_key(rq);
        if (!rl_take(s->rl_ip, addr, strlen(addr), clock_mono_ms(), &retry)) {
            atomic_fetch_add_explicit(&s->metrics.rate_limited_ip, 1, memory_order_relaxed);
            *ret = reply_retry(rq, 429, retry, "rate_limited_ip",
                               "too many requests from this address; retry later");
            return 1;
        }
    }
    if (rq->route != ROUTE_PACKETS && rq->route != ROUTE_READINGS &&
        rq->route != ROUTE_READINGS_BULK)
        return 0;
    const char *ct = rq_header(rq, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!body_content_type_ok(ct)) {
        *ret =
            reply_error(rq, 415, "unsupported_media_type", "Content-Type must be application/json");
        return 1;
    }
    const char *ce = rq_header(rq, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (body_encoding_parse(ce) == BODY_UNSUPPORTED) {
        *ret = reply_error(rq, 415, "unsupported_media_type",
                           "Content-Encoding must be gzip or identity");
        return 1;
    }
    const char *cl = rq_header(rq, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && rq_header(rq, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        /* RFC 9112 6.1: a request smuggling attempt or a broken proxy; answer and close. */
        rq->close = 1;
        *ret = reply_error(rq, 400, "invalid_request",
                           "Content-Length and Transfer-Encoding must not both be sent");
        return 1;
    }
    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end != cl && n > (unsigned long long)s->d.cfg->max_body_bytes) {
            *ret = reply_error(rq, 413, "body_too_large", "the body is larger than %lld bytes",
                               (long long)s->d.cfg->max_body_bytes);
            return 1;
        }
    }
    return 0;
}

/* A client's X-Request-Id is kept if it is 1-64 characters of [A-Za-z0-9._:-]; else one is made. */
static void set_request_id(struct request *rq)
{
    const char *v = rq_header(rq, "X-Request-Id");
    size_t n = v ? strlen(v) : 0;
    int ok = v && ident_valid(v, n, REQUEST_ID_MAX);
    if (ok) {
        memcpy(rq->request_id, v, n + 1);
        return;
    }
    unsigned long long seq = atomic_fetch_add(&rq->srv->request_seq, 1);
    ident_request_id(rq->request_id, sizeof rq->request_id, rq->srv->request_prefix, seq);
}

static int append_body(struct request *rq, const char *data, size_t n)
{
    size_t max = (size_t)rq->srv->d.cfg->max_body_bytes;
    if (rq->body_too_big || rq->len + n > max) {
        rq->body_too_big = 1;
        return 0;
    }
    if (rq->len + n + 1 > rq->cap) {
        size_t ncap = rq->cap ? rq->cap : 4096;
        while (ncap < rq->len + n + 1)
            ncap *= 2;
        if (ncap > max + 1) ncap = max + 1;
        char *nb = realloc(rq->body, ncap);
        if (!nb) return IOT_ENOMEM;
        rq->body = nb;
        rq->cap = ncap;
    }
    memcpy(rq->body + rq->len, data, n);
    rq->len += n;
    rq->body[rq->len] = 0;
    return 0;
}

/* Inflates a gzip body in place of the raw one. Returns 1 if a response was queued. */
static int inflate_body(struct request *rq, int *ret)
{
    const char *ce = rq_header(rq, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (body_encoding_parse(ce) != BODY_GZIP) return 0;
    char *out = NULL;
    size_t outlen = 0;
    int rc = body_gunzip(rq->body, rq->len, (size_t)rq->srv->d.cfg->max_body_bytes, &out, &outlen);
    if (rc == IOT_ETOOBIG) {
        *ret = reply_error(rq, 413, "body_too_large", "the inflated body is larger than %lld bytes",
                           (long long)rq->srv->d.cfg->max_body_bytes);
        return 1;
    }
    if (rc) {
        *ret = rc == IOT_ENOMEM
                   ? MHD_NO
                   : reply_error(rq, 400, "invalid_json", "the body is not valid gzip data");
        return 1;
    }
    free(rq->body);
    rq->body = out;
    rq->len = outlen;
    rq->cap = outlen + 1;
    return 0;
}

static int dispatch(struct request *rq)
{
    switch (rq->route) {
    case ROUTE_HEALTH:
        return ep_health(rq);
    case ROUTE_METRICS:
        return ep_metrics(rq);
    case ROUTE_PACKETS:
        return ep_packets(rq);
    case ROUTE_READINGS:
        return ep_legacy(rq, 0);
    case ROUTE_READINGS_BULK:
        return ep_legacy(rq, 1);
    case ROUTE_STATUS:
        return ep_status(rq);
    case ROUTE_HISTORY:
        return ep_readings(rq);
    case ROUTE_OTHER:
    case ROUTE_COUNT:
        break;
    }
    return reply_error(rq, 404, "not_found", "no such route");
}

static void job_done(struct write_job *job, void *ud)
{
    (void)job;
    struct request *rq = ud;
    atomic_store(&rq->job_done, 1);
    rq->tp->resume(rq);
}

int http_submit(struct request *rq)
{
    rq->job.done = job_done;
    rq->job.done_ud = rq;
    rq->job.received_at = rq->received;
    rq->suspended = 1;
    rq->tp->suspend(rq);
    int rc = writer_submit(rq->srv->d.writer, &rq->job);
    if (rc) {
        /* The writer refused: answer now, as if it had failed the job. */
        rq->job.status = WRITE_FAILED;
        rq->job.err = rc;
        atomic_store(&rq->job_done, 1);
        rq->tp->resume(rq);
    }
    return MHD_YES;
}

struct request *request_create(struct http_server *s, const struct http_transport *tp, void *tctx,
                               const char *method)
{
    struct request *rq = calloc(1, sizeof *rq);
    if (!rq) return NULL;
    rq->srv = s;
    rq->tp = tp;
    rq->tctx = tctx;
    rq->method = method;
    rq->t_start_us = clock_mono_us();
    rq->received = clock_now_ms();
    snprintf(rq->client_ip, sizeof rq->client_ip, "unknown");
    atomic_fetch_add(&s->in_flight, 1);
    return rq;
}

int request_headers(struct request *rq, const char *url)
{
    int ret = MHD_YES;
    rq->route = match_route(rq, url);
    set_request_id(rq);
    if (rq->route == ROUTE_OTHER) {
        rq->early_done = 1;
        return reply_error(rq, 404, "not_found", "no such route: %.100s", url);
    }
    if (!route_method_ok(rq->route, rq->method)) {
        rq->early_done = 1;
        return reply_error(rq, 405, "method_not_allowed", "method %.16s not allowed here",
                           rq->method);
    }
    if (precheck(rq, &ret)) rq->early_done = 1;
    return ret;
}

int request_body(struct request *rq, const char *data, size_t n)
{
    if (rq->early_done) return MHD_YES; /* discard whatever follows an early answer */
    return append_body(rq, data, n) ? MHD_NO : MHD_YES;
}

int request_complete(struct request *rq)
{
    int ret = MHD_YES;
    if (rq->early_done) return MHD_YES;
    if (rq->suspended) {
        if (!atomic_load(&rq->job_done)) return MHD_YES;
        rq->suspended = 0;
        return rq->finish(rq);
    }
    if (rq->body_too_big)
        return reply_error(rq, 413, "body_too_large", "the body is larger than %lld bytes",
                           (long long)rq->srv->d.cfg->max_body_bytes);
    if (inflate_body(rq, &ret)) return ret;
    return dispatch(rq);
}

void request_destroy(struct request *rq, int aborted)
{
    struct http_server *s = rq->srv;
    int64_t us = clock_mono_us() - rq->t_start_us;
    http_metrics_observe(&s->metrics, rq->route, (unsigned)rq->status, us);
    enum log_level level = log_access_level(s->log_requests, rq->status >= 400);
    if (aborted && rq->status == 0) level = LOG_INFO;
    if (level >= log_min_level) {
        char dev[4 * STORE_UUID_MAX + 8], method[80];
        LOG(level, "request",
            "request_id=%s method=%s route=%s status=%d%s%s duration_ms=%.3f ip=%s device=%s%s",
            rq->request_id[0] ? rq->request_id : "-",
            log_quote(rq->method ? rq->method : "-", method, sizeof method), route_names[rq->route],
            rq->status, rq->code ? " code=" : "", rq->code ? rq->code : "", (double)us / 1000.0,
            rq->client_ip, log_quote(rq->device_uuid[0] ? rq->device_uuid : "-", dev, sizeof dev),
            aborted ? " aborted=1" : "");
    }
    json_decref(rq->answer);
    free(rq->job.readings);
    free(rq->job.stored_response);
    free(rq->job.response);
    free(rq->body);
    free(rq);
    atomic_fetch_sub(&s->in_flight, 1);
}
