/*
 * A PUBLISH on its way through the ingest pipeline, the path of POST
 * /ingest/packets: the topic (the connection's own packets topic only), the
 * payload decoded (its device_uuid may be omitted), the device looked up
 * again (a device disabled or deleted meanwhile is refused), its rate limit,
 * the intake's verdict, the writer. The answer an HTTP client would get goes
 * to devices/{uuid}/results for a subscriber; a QoS 1 PUBACK leaves only
 * after the commit (the writer's done() queues the packet for the loop and
 * wakes it).
 *
 * Nothing is dropped to make room: past the device's rate limit, with the
 * write queue full or the database away, the packet is held and tried again
 * later (its PUBACK waits), and a connection with MQTT_INFLIGHT_MAX packets
 * in flight has its next PUBLISH left unread (mqtt_conn.c). A QoS 1 PUBLISH
 * whose packet identifier is already in flight on its connection is the
 * client's retry (DUP) and is not stored again; a packet_id in the payload
 * deduplicates across connections and gateways through the writer, as over
 * HTTP.
 */
#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/ident.h"
#include "core/log.h"
#include "mqtt/mqtt_srv_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_UNAVAILABLE_MS 1000
#define RETRY_QUEUE_FULL_MS  200

static void pub__free(struct mqtt_pub *pub)
{
    free(pub->job.readings);
    free(pub->job.response);
    free(pub->job.stored_response);
    free(pub->payload);
    free(pub);
}

static void pub__unlink(struct mqtt_conn *c, struct mqtt_pub *pub)
{
    struct mqtt_pub **pp = &c->pubs, *prev = NULL;
    while (*pp && *pp != pub) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) return;
    *pp = pub->next;
    if (c->pubs_tail == pub) c->pubs_tail = prev;
    c->npubs--;
}

/* {"detail","code"}, the error object of an HTTP answer; malloc'ed text or NULL. */
static char *error_text(const char *code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *error_text(const char *code, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    struct buf b = {0};
    if (buf_put(&b, "{\"detail\":", 10) || buf_put_json_str(&b, detail) ||
        buf_printf(&b, ",\"code\":\"%s\"}", code)) {
        buf_free(&b);
        return NULL;
    }
    return b.p;
}

/* Publishes text at QoS 0 on c's results topic, if c subscribed to it. */
static void results_send_one(struct mqtt_conn *c, const char *topic, const char *text)
{
    struct mqtt_server *m = c->srv;
    if (!c->sub_results || c->closing) return;
    size_t len = strlen(text), cap = len + strlen(topic) + 16;
    if (c->max_out && cap > c->max_out) cap = c->max_out;
    uint8_t *f = c->out_bytes + cap <= m->max_frame ? malloc(cap) : NULL;
    struct mqtt_publish p = {.qos = 0,
                             .topic = {topic, strlen(topic)},
                             .payload = (const uint8_t *)text,
                             .payload_len = len};
    int n = f ? mqtt_encode_publish(f, cap, c->version, &p) : IOT_ENOMEM;
    if (n > 0) {
        conn_send(c, f, n);
        MQTT_COUNT(m, results_sent);
    } else {
        MQTT_COUNT(m, results_dropped); /* QoS 0: a client that does not read loses answers */
    }
    free(f);
}

/*
 * The answer to every connection of the device that subscribed to its
 * results topic (the publisher's own and, say, a mosquitto_sub beside it).
 * Connections are scanned only while some subscription exists.
 */
static void results_send(struct mqtt_conn *from, const char *text)
{
    struct mqtt_server *m = from->srv;
    if (!text || m->nsubs == 0) return;
    char topic[STORE_UUID_MAX + 32];
    snprintf(topic, sizeof topic, "devices/%s/results", from->device_uuid);
    for (struct mqtt_conn *c = m->conns; c; c = c->next)
        if (c->sub_results && strcmp(c->device_uuid, from->device_uuid) == 0)
            results_send_one(c, topic, text);
}

/*
 * What became of a PUBLISH: counted, and logged as HTTP logs a request
 * (LOG_REQUESTS: every one at info, or only those not stored nor duplicate,
 * the rest at debug).
 */
static void pub__outcome(struct mqtt_server *m, struct mqtt_pub *pub, enum mqtt_outcome o)
{
    atomic_fetch_add_explicit(&m->st.publishes[pub->qos][o], 1, memory_order_relaxed);
    bool ok = o == MQTT_OUT_STORED || o == MQTT_OUT_DUPLICATE;
    LOG(log_access_level(m->log_publishes, !ok), "mqtt_publish",
        "request_id=%s qos=%d packet_id=%u outcome=%s duration_ms=%.3f ip=%s device=%s",
        pub->request_id, pub->qos, (unsigned)pub->packet_id, mqtt_outcome_name(o),
        (double)(clock_mono_us() - pub->t_start_us) / 1000.0, pub->addr, pub->device_uuid);
}

static void observe_puback(struct mqtt_server *m, int64_t t_start_us)
{
    int64_t us = clock_mono_us() - t_start_us;
    double s = (double)us / 1e6;
    int b = 0;
    while (b < MQTT_LAT_BUCKETS && s > mqtt_lat_bounds[b])
        b++;
    atomic_fetch_add_explicit(&m->st.puback_lat[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->st.puback_us_sum, (unsigned long long)(us > 0 ? us : 0),
                              memory_order_relaxed);
}

/*
 * The packet's last word: the results publication (text, taken), the PUBACK
 * with reason (MQTT 5; 3.1.1 has no refusal but closing, which is what a
 * refused or failed packet gets there), the count. Frees pub.
 */
static void pub__final(struct mqtt_pub *pub, enum mqtt_outcome o, uint8_t reason, char *text)
{
    struct mqtt_conn *c = pub->conn;
    struct mqtt_server *m = c->srv;
    pub__outcome(m, pub, o);
    results_send(c, text);
    free(text);
    bool close311 = c->version == MQTT_V311 && (o == MQTT_OUT_REFUSED || o == MQTT_OUT_FAILED);
    uint16_t id = pub->packet_id;
    int qos = pub->qos;
    if (qos == 1 && !close311) observe_puback(m, pub->t_start_us);
    pub__unlink(c, pub);
    pub__free(pub);
    if (close311) return conn_close_after(c, NULL, 0, "MQTT 3.1.1 cannot refuse a PUBLISH");
    if (qos == 1) {
        uint8_t f[16];
        uint8_t rc = c->version == MQTT_V5 ? reason : MQTT_RC_SUCCESS; /* 3.1.1 has none */
        conn_send(c, f, mqtt_encode_puback(f, sizeof f, c->version, id, rc, NULL));
    }
    conn_resume(c);
}

/* Holds pub for ms (its PUBACK waits); the tick runs it again. */
static void pub__hold(struct mqtt_pub *pub, uint64_t ms, bool rate_limited)
{
    struct mqtt_server *m = pub->conn->srv;
    pub->retry_at = uv_now(&m->loop) + (ms ? ms : 1);
    if (rate_limited)
        MQTT_COUNT(m, retries_rate_limited);
    else
        MQTT_COUNT(m, retries_unavailable);
}

static void job__reset(struct write_job *job)
{
    free(job->readings);
    free(job->response);
    free(job->stored_response);
    memset(job, 0, sizeof *job);
}

/* The device of a packet gone or disabled since CONNECT: not authorized any more. */
static void pub__refuse_device(struct mqtt_pub *pub, bool gone)
{
    pub__final(pub, MQTT_OUT_REFUSED, MQTT_RC_NOT_AUTHORIZED,
               gone ? error_text("unauthorized", "this device no longer exists")
                    : error_text("device_inactive", "this device is disabled"));
}

/* Takes pub from its payload to the writer, or to its final answer, or holds it. */
static void pub__run(struct mqtt_pub *pub)
{
    struct mqtt_conn *c = pub->conn;
    struct mqtt_server *m = c->srv;
    const struct config *cfg = m->d.cfg;
    if (pub->len > (size_t)cfg->max_body_bytes)
        return pub__final(pub, MQTT_OUT_REJECTED, MQTT_RC_QUOTA_EXCEEDED,
                          error_text("payload_too_large", "the payload is over %lld bytes",
                                     (long long)cfg->max_body_bytes));
    struct decoded_packet p;
    char detail[256];
    const char *code = NULL;
    int rc =
        packet_decode_topic(c->device_uuid, pub->payload, pub->len,
                            (size_t)cfg->max_readings_per_packet, &p, detail, sizeof detail, &code);
    if (rc == IOT_ENOMEM) return pub__hold(pub, RETRY_UNAVAILABLE_MS, false);
    if (rc)
        return pub__final(pub, MQTT_OUT_REJECTED, MQTT_RC_PAYLOAD_FORMAT_INVALID,
                          error_text(code, "%s", detail));
    const struct device_ref *dref = NULL;
    rc = resolver_get(m->d.resolver, c->device_uuid, &dref);
    if (rc && rc != IOT_ENOTFOUND) {
        decoded_packet_fini(&p);
        return pub__hold(pub, RETRY_UNAVAILABLE_MS, false);
    }
    if (!dref || !dref->dev.is_active) {
        bool gone = !dref;
        resolver_release(m->d.resolver, dref);
        decoded_packet_fini(&p);
        return pub__refuse_device(pub, gone);
    }
    int retry_s = 0;
    struct intake_verdict v;
    if (!intake_device_take(m->d.intake, dref->dev.id, &retry_s))
        rc = 1;
    else if (intake_judge(m->d.intake, &p, dref, clock_now_ms(), &v))
        rc = IOT_ENOMEM;
    int64_t device_id = dref->dev.id;
    resolver_release(m->d.resolver, dref);
    if (rc) {
        decoded_packet_fini(&p);
        if (rc == 1) return pub__hold(pub, (uint64_t)(retry_s > 0 ? retry_s : 1) * 1000, true);
        return pub__hold(pub, RETRY_UNAVAILABLE_MS, false);
    }
    if (v.nvalid == 0 && !p.packet_id[0]) {
        decoded_packet_fini(&p);
        free(v.readings);
        if (intake_answer_no_valid(&v.answer, "packet"))
            return pub__hold(pub, RETRY_UNAVAILABLE_MS, false);
        return pub__final(pub, MQTT_OUT_REJECTED, MQTT_RC_PAYLOAD_FORMAT_INVALID, v.answer.p);
    }
    struct write_job *job = &pub->job;
    memset(job, 0, sizeof *job);
    job->device_id = device_id;
    memcpy(job->packet_id, p.packet_id, sizeof job->packet_id);
    decoded_packet_fini(&p);
    job->readings = v.readings;
    job->nreadings = v.nvalid;
    job->response = v.answer.p;
    job->received_at = clock_now_ms();
    job->done = ingest_job_done;
    job->done_ud = pub;
    atomic_fetch_add(&m->in_writer, 1);
    pub->in_writer = true;
    rc = writer_submit(m->d.writer, job);
    if (!rc) return;
    pub->in_writer = false;
    atomic_fetch_sub(&m->in_writer, 1);
    job__reset(job);
    if (rc == IOT_EFULL) return pub__hold(pub, RETRY_QUEUE_FULL_MS, false);
    /* The gateway is stopping: no PUBACK; the client sends it again to whoever serves next. */
    conn_close(c, "the gateway is stopping");
}

void ingest_publish(struct mqtt_conn *c, const struct mqtt_publish *p)
{
    struct mqtt_server *m = c->srv;
    uint8_t f[16];
    if (p->retain) { /* Retain Available is 0 (MQTT 5: [MQTT-3.3.1-11]) */
        atomic_fetch_add(&m->st.publishes[p->qos][MQTT_OUT_REFUSED], 1);
        int n = c->version == MQTT_V5 ? mqtt_encode_disconnect(f, sizeof f, MQTT_V5,
                                                               MQTT_RC_RETAIN_NOT_SUPPORTED, NULL)
                                      : 0;
        return conn_close_after(c, f, n, "a retained PUBLISH");
    }
    if (!conn_topic_is(c, p->topic.p, p->topic.len, "packets")) {
        atomic_fetch_add(&m->st.publishes[p->qos][MQTT_OUT_REFUSED], 1);
        if (c->version == MQTT_V311)
            return conn_close_after(c, NULL, 0, "PUBLISH to a topic it may not publish to");
        if (p->qos == 1)
            conn_send(c, f,
                      mqtt_encode_puback(f, sizeof f, MQTT_V5, p->packet_id, MQTT_RC_NOT_AUTHORIZED,
                                         NULL));
        return;
    }
    bool held = false;
    uint64_t held_until = 0;
    for (struct mqtt_pub *q = c->pubs; q; q = q->next) {
        if (p->qos == 1 && q->qos == 1 && q->packet_id == p->packet_id) {
            MQTT_COUNT(m, dup_in_flight); /* the client's retry of a packet in flight */
            return;
        }
        if (q->retry_at) held = true, held_until = q->retry_at;
    }
    struct mqtt_pub *pub = calloc(1, sizeof *pub);
    char *payload = malloc(p->payload_len + 1);
    if (!pub || !payload) {
        free(pub);
        free(payload);
        return conn_close(c, "out of memory");
    }
    memcpy(payload, p->payload, p->payload_len);
    payload[p->payload_len] = 0;
    pub->srv = m;
    pub->conn = c;
    pub->qos = p->qos;
    pub->packet_id = p->packet_id;
    pub->payload = payload;
    pub->len = p->payload_len;
    pub->t_start_us = clock_mono_us();
    ident_request_id(pub->request_id, sizeof pub->request_id, m->request_prefix, m->request_seq++);
    memcpy(pub->addr, c->addr, sizeof pub->addr);
    memcpy(pub->device_uuid, c->device_uuid, sizeof pub->device_uuid);
    if (c->pubs_tail)
        c->pubs_tail->next = pub;
    else
        c->pubs = pub;
    c->pubs_tail = pub;
    c->npubs++;
    if (held) { /* behind a held packet of the same connection: keep their order */
        pub->retry_at = held_until;
        return;
    }
    pub__run(pub);
}

void ingest_run_held(struct mqtt_conn *c, uint64_t now)
{
    while (!c->closing) {
        struct mqtt_pub *pub = c->pubs;
        while (pub && (pub->in_writer || !pub->retry_at))
            pub = pub->next;
        if (!pub || pub->retry_at > now) return;
        pub->retry_at = 0;
        pub__run(pub);
    }
}

/* The writer thread: queue the finished job for the loop and wake it. */
void ingest_job_done(struct write_job *job, void *ud)
{
    (void)job;
    struct mqtt_pub *pub = ud;
    struct mqtt_server *m = pub->srv;
    pthread_mutex_lock(&m->done_mu);
    pub->done_next = m->done_head;
    m->done_head = pub;
    pthread_mutex_unlock(&m->done_mu);
    uv_async_send(&m->wake);
}

/* A job the writer finished: the answer, or the packet held to try again. */
static void pub__complete(struct mqtt_pub *pub)
{
    struct write_job *job = &pub->job;
    char *text;
    switch (job->status) {
    case WRITE_STORED:
        text = job->response;
        job->response = NULL;
        return pub__final(pub, MQTT_OUT_STORED, MQTT_RC_SUCCESS, text);
    case WRITE_DUPLICATE:
        return pub__final(pub, MQTT_OUT_DUPLICATE, MQTT_RC_SUCCESS,
                          intake_answer_duplicate(job->stored_response));
    case WRITE_NOTHING: {
        size_t len = strlen(job->response);
        struct buf a = {job->response, len, len + 1};
        job->response = NULL;
        text = intake_answer_no_valid(&a, "packet") ? NULL : a.p;
        return pub__final(pub, MQTT_OUT_REJECTED, MQTT_RC_PAYLOAD_FORMAT_INVALID, text);
    }
    case WRITE_FAILED:
    case WRITE_PENDING:
        break;
    }
    int err = job->err;
    if (iot_err_retryable(err)) {
        job__reset(job);
        return pub__hold(pub, RETRY_UNAVAILABLE_MS, false);
    }
    if (err == IOT_ENOTFOUND) return pub__refuse_device(pub, true);
    LOG(LOG_ERROR, "internal_error", "transport=mqtt device=%s err=\"%s\"", pub->conn->device_uuid,
        iot_strerror(err));
    pub__final(pub, MQTT_OUT_FAILED, MQTT_RC_UNSPECIFIED,
               error_text("internal_error", "internal error: %s", iot_strerror(err)));
}

void ingest_completions(struct mqtt_server *m)
{
    pthread_mutex_lock(&m->done_mu);
    struct mqtt_pub *list = m->done_head, *fifo = NULL;
    m->done_head = NULL;
    pthread_mutex_unlock(&m->done_mu);
    while (list) { /* pushed at the head: reverse into arrival order */
        struct mqtt_pub *next = list->done_next;
        list->done_next = fifo;
        fifo = list;
        list = next;
    }
    while (fifo) {
        struct mqtt_pub *pub = fifo;
        fifo = pub->done_next;
        pub->in_writer = false;
        atomic_fetch_sub(&m->in_writer, 1);
        if (pub->conn) {
            pub__complete(pub);
            continue;
        }
        /* Its connection closed meanwhile: stored or not, nobody is told. */
        enum mqtt_outcome o = pub->job.status == WRITE_STORED      ? MQTT_OUT_STORED
                              : pub->job.status == WRITE_DUPLICATE ? MQTT_OUT_DUPLICATE
                                                                   : MQTT_OUT_DROPPED;
        pub__outcome(m, pub, o);
        pub__free(pub);
    }
}

void ingest_detach(struct mqtt_conn *c)
{
    struct mqtt_pub *pub = c->pubs;
    while (pub) {
        struct mqtt_pub *next = pub->next;
        if (pub->in_writer) {
            pub->conn = NULL; /* freed when the writer is done with it */
        } else {
            pub__outcome(c->srv, pub, MQTT_OUT_DROPPED);
            pub__free(pub);
        }
        pub = next;
    }
    c->pubs = c->pubs_tail = NULL;
    c->npubs = 0;
}
