/*
 * One member of a durable JetStream pull-consumer group (nats_consumer.h).
 *
 * The durable consumer is created explicitly (ack explicit, deliver all,
 * unlimited redeliveries, the configured ack wait) and the pull
 * subscription only binds to it, so that libnats never deletes it and a
 * changed BROKER_ACK_WAIT_S is applied with an update rather than refused.
 * Setup runs lazily from fetch whenever the connection is up and the last
 * attempt failed, so an engine that is down at start, or restarts, is
 * simply waited for.
 */
#include "broker/nats_consumer.h"
#include "broker/nats_int.h"
#include "core/err.h"
#include "core/log.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_PER_MS      1000000LL
#define CLOSE_WAIT_MS  5000
#define FLUSH_WAIT_MS  2000
#define DURABLE_MAXLEN 64

struct nats_consumer {
    struct nats_target t;
    char stream[65];
    char durable[DURABLE_MAXLEN + 1];
    struct nats_consumer_opts o;
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub; /* NULL until set up, and after a failure */
    natsMsgList batch;
    char stream_id[96];
    char setup_err[IOT_ERRBUF]; /* last stream failure logged */

    atomic_bool connected, closing;
    pthread_mutex_t mu; /* guards closed */
    pthread_cond_t cv;
    bool closed, mu_ok, cv_ok;
};

static void on_connected(natsConnection *nc, void *closure)
{
    struct nats_consumer *c = closure;
    (void)nc;
    atomic_store(&c->connected, true);
    LOG(LOG_INFO, "consumer_connected", "url=%s", c->t.shown);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    struct nats_consumer *c = closure;
    (void)nc;
    atomic_store(&c->connected, false);
    if (atomic_load(&c->closing))
        LOG(LOG_DEBUG, "consumer_disconnected", "url=%s reason=closing", c->t.shown);
    else
        LOG(LOG_WARN, "consumer_disconnected", "url=%s", c->t.shown);
}

static void on_closed(natsConnection *nc, void *closure)
{
    struct nats_consumer *c = closure;
    (void)nc;
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Creates the durable consumer, or brings its ack wait and window to the settings. */
static int ensure_consumer(struct nats_consumer *c, jsOptions *jo)
{
    jsConsumerConfig cc;
    jsConsumerInfo *ci = NULL, *ci2 = NULL;
    jsErrCode jerr = 0;
    natsStatus s;

    if (jsConsumerConfig_Init(&cc) != NATS_OK) return IOT_EIO;
    cc.Durable = c->durable;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = c->o.ack_wait_ms * NS_PER_MS;
    cc.MaxDeliver = -1;
    cc.MaxAckPending = c->o.max_ack_pending;
    cc.DeliverPolicy = js_DeliverAll;
    cc.FilterSubject = c->t.subject;

    s = js_GetConsumerInfo(&ci, c->js, c->stream, c->durable, jo, &jerr);
    if (s != NATS_OK && (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr)) {
        jerr = 0;
        s = js_AddConsumer(&ci, c->js, c->stream, &cc, jo, &jerr);
        if (s != NATS_OK && jerr == JSConsumerNameExistErr) /* another member won the race */
            s = js_GetConsumerInfo(&ci, c->js, c->stream, c->durable, jo, &jerr);
        else if (s == NATS_OK)
            LOG(LOG_INFO, "consumer_group_created", "stream=%s group=%s ack_wait_ms=%lld",
                c->stream, c->durable, (long long)c->o.ack_wait_ms);
    }
    if (s != NATS_OK) {
        LOG(LOG_WARN, "consumer_group_unavailable", "stream=%s group=%s err=\"%s\" code=%d",
            c->stream, c->durable, nats_err_text(s), (int)jerr);
        jsConsumerInfo_Destroy(ci);
        return IOT_EUNAVAIL;
    }
    if (ci->Config &&
        (ci->Config->AckWait != cc.AckWait || ci->Config->MaxAckPending != cc.MaxAckPending)) {
        jerr = 0;
        s = js_UpdateConsumer(&ci2, c->js, c->stream, &cc, jo, &jerr);
        if (s != NATS_OK)
            LOG(LOG_WARN, "consumer_group_update_failed", "group=%s err=\"%s\" code=%d", c->durable,
                nats_err_text(s), (int)jerr);
        jsConsumerInfo_Destroy(ci2);
    }
    jsConsumerInfo_Destroy(ci);
    return 0;
}

/* Stream, group, subscription; IOT_EUNAVAIL while any of them cannot be had. */
static int setup(struct nats_consumer *c)
{
    char err[IOT_ERRBUF] = "";
    int64_t created = 0;
    jsOptions jo;
    jsSubOptions so;
    jsErrCode jerr = 0;
    int rc;

    if (!atomic_load(&c->connected)) return IOT_EUNAVAIL;
    if (nats_stream_ensure(c->js, &c->o.stream, c->t.subject, &created, err, sizeof err)) {
        if (strcmp(err, c->setup_err) != 0) /* once per reason, not at every retry */
            LOG(LOG_WARN, "consumer_stream_unavailable", "url=%s err=\"%s\"", c->t.shown, err);
        snprintf(c->setup_err, sizeof c->setup_err, "%s", err);
        return IOT_EUNAVAIL;
    }
    c->setup_err[0] = '\0';
    if (jsOptions_Init(&jo) != NATS_OK || jsSubOptions_Init(&so) != NATS_OK) return IOT_EIO;
    jo.Wait = NATS_API_WAIT_MS;
    if ((rc = ensure_consumer(c, &jo))) return rc;
    so.Stream = c->stream;
    so.Consumer = c->durable; /* bind only: libnats neither creates nor deletes it */
    natsStatus s = js_PullSubscribe(&c->sub, c->js, c->t.subject, c->durable, &jo, &so, &jerr);
    if (s != NATS_OK) {
        LOG(LOG_WARN, "consumer_subscribe_failed", "group=%s err=\"%s\" code=%d", c->durable,
            nats_err_text(s), (int)jerr);
        natsSubscription_Destroy(c->sub);
        c->sub = NULL;
        return IOT_EUNAVAIL;
    }
    snprintf(c->stream_id, sizeof c->stream_id, "%s@%lld", c->stream, (long long)created);
    LOG(LOG_INFO, "consumer_ready", "url=%s stream=%s subject=%s group=%s stream_id=%s", c->t.shown,
        c->stream, c->t.subject, c->durable, c->stream_id);
    return 0;
}

int nats_consumer_open(const char *url, const struct nats_consumer_opts *o,
                       struct nats_consumer **out, char *err, size_t errlen)
{
    struct nats_consumer *c;
    int rc, connected_now = 0;

    if (!out) return IOT_EINVAL;
    *out = NULL;
    if ((rc = nats_opts_check("NATS consumer", o ? &o->stream : NULL,
                              o && o->ack_wait_ms >= 1 && o->max_ack_pending >= 1, err, errlen)))
        return rc;
    assert(o); /* nats_opts_check refuses NULL (the analyzer cannot see into nats_conn.c) */
    if (!nats_stream_name_ok(o->durable)) { /* a durable name follows the stream name's rules */
        if (err && errlen)
            snprintf(err, errlen,
                     "BROKER_CONSUMER must be 1-64 letters, digits, '-' or '_', got \"%.64s\"",
                     o->durable ? o->durable : "");
        return IOT_EINVAL;
    }
    if (!(c = calloc(1, sizeof *c))) return IOT_ENOMEM;
    if ((rc = nats_target_parse(url, &c->t, err, errlen))) {
        free(c);
        return rc;
    }
    snprintf(c->stream, sizeof c->stream, "%s", o->stream.stream);
    snprintf(c->durable, sizeof c->durable, "%s", o->durable);
    c->o = *o;
    c->o.stream.stream = c->stream;
    c->o.durable = c->durable;
    c->o.name = NULL;
    atomic_init(&c->connected, false);
    atomic_init(&c->closing, false);
    if (!(c->mu_ok = pthread_mutex_init(&c->mu, NULL) == 0) ||
        !(c->cv_ok = pthread_cond_init(&c->cv, NULL) == 0)) {
        nats_consumer_close(c);
        return IOT_EIO;
    }
    struct nats_conn_events ev = {on_connected, on_disconnected, on_closed, c};
    if ((rc = nats_conn_open(&c->t, o->name, o->stream.reconnect_wait_ms, &ev, &c->nc,
                             &connected_now, err, errlen))) {
        nats_consumer_close(c);
        return rc;
    }
    if (connected_now) atomic_store(&c->connected, true);
    jsOptions jo;
    natsStatus s = jsOptions_Init(&jo);
    if (s == NATS_OK) {
        jo.Wait = NATS_API_WAIT_MS;
        s = natsConnection_JetStream(&c->js, c->nc, &jo);
    }
    if (s != NATS_OK) {
        if (err && errlen) snprintf(err, errlen, "NATS JetStream context: %s", nats_err_text(s));
        nats_consumer_close(c);
        return s == NATS_NO_MEMORY ? IOT_ENOMEM : IOT_EIO;
    }
    *out = c;
    return 0;
}

void nats_consumer_release(struct nats_consumer *c)
{
    if (c && c->batch.Msgs) natsMsgList_Destroy(&c->batch);
    if (c) memset(&c->batch, 0, sizeof c->batch);
}

int nats_consumer_fetch(struct nats_consumer *c, size_t max, int64_t timeout_ms,
                        struct nats_delivery *out, size_t *n)
{
    jsErrCode jerr = 0;
    int rc;

    *n = 0;
    nats_consumer_release(c);
    if (max == 0 || max > NATS_FETCH_MAX) return IOT_EINVAL;
    if (!c->sub && (rc = setup(c))) return rc;
    natsStatus s = natsSubscription_Fetch(&c->batch, c->sub, (int)max, timeout_ms, &jerr);
    if (s == NATS_TIMEOUT) {
        nats_consumer_release(c);
        return 0;
    }
    if (s != NATS_OK) {
        nats_consumer_release(c);
        /* Consumer or stream gone (engine restarted empty), or the connection: set up again. */
        LOG(LOG_WARN, "consumer_fetch_failed", "group=%s err=\"%s\" code=%d", c->durable,
            nats_err_text(s), (int)jerr);
        natsSubscription_Destroy(c->sub);
        c->sub = NULL;
        return IOT_EUNAVAIL;
    }
    for (int i = 0; i < c->batch.Count && *n < max; i++) {
        natsMsg *m = c->batch.Msgs[i];
        jsMsgMetaData *meta = NULL;
        struct nats_delivery *d = &out[(*n)++];
        memset(d, 0, sizeof *d);
        d->msg = m;
        d->data = natsMsg_GetData(m);
        d->len = (size_t)natsMsg_GetDataLength(m);
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
            d->stream_seq = meta->Sequence.Stream;
            d->delivered = meta->NumDelivered;
        }
        jsMsgMetaData_Destroy(meta);
    }
    return 0;
}

static int settle(natsStatus s, const char *what, const struct nats_delivery *d)
{
    if (s == NATS_OK) return 0;
    LOG(LOG_WARN, "consumer_settle_failed", "what=%s seq=%llu err=\"%s\"", what,
        (unsigned long long)d->stream_seq, nats_err_text(s));
    return IOT_EUNAVAIL;
}

int nats_consumer_ack(struct nats_consumer *c, struct nats_delivery *d)
{
    (void)c;
    return settle(natsMsg_Ack(d->msg, NULL), "ack", d);
}

int nats_consumer_nak(struct nats_consumer *c, struct nats_delivery *d, int64_t delay_ms)
{
    (void)c;
    natsStatus s =
        delay_ms > 0 ? natsMsg_NakWithDelay(d->msg, delay_ms, NULL) : natsMsg_Nak(d->msg, NULL);
    return settle(s, "nak", d);
}

int nats_consumer_term(struct nats_consumer *c, struct nats_delivery *d)
{
    (void)c;
    return settle(natsMsg_Term(d->msg, NULL), "term", d);
}

const char *nats_consumer_stream_id(const struct nats_consumer *c)
{
    return c->stream_id;
}

int nats_consumer_ack_floor(struct nats_consumer *c, uint64_t *floor)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    jsOptions jo;

    if (!atomic_load(&c->connected) || !c->js) return IOT_EUNAVAIL;
    if (jsOptions_Init(&jo) != NATS_OK) return IOT_EIO;
    jo.Wait = NATS_API_WAIT_MS;
    natsStatus s = js_GetConsumerInfo(&ci, c->js, c->stream, c->durable, &jo, &jerr);
    if (s != NATS_OK) {
        jsConsumerInfo_Destroy(ci);
        return IOT_EUNAVAIL;
    }
    *floor = ci->AckFloor.Stream;
    jsConsumerInfo_Destroy(ci);
    return 0;
}

void nats_consumer_close(struct nats_consumer *c)
{
    bool safe = true;

    if (!c) return;
    atomic_store(&c->closing, true);
    nats_consumer_release(c);
    if (c->nc && atomic_load(&c->connected)) {
        natsStatus s = natsConnection_FlushTimeout(c->nc, FLUSH_WAIT_MS); /* the last acks */
        if (s != NATS_OK)
            LOG(LOG_WARN, "consumer_flush_failed", "url=%s err=\"%s\"", c->t.shown,
                nats_err_text(s));
    }
    natsSubscription_Destroy(c->sub);
    if (c->nc) {
        natsConnection_Close(c->nc);
        pthread_mutex_lock(&c->mu);
        struct timespec until = deadline_in(CLOSE_WAIT_MS);
        while (!c->closed)
            if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT) break;
        safe = c->closed;
        pthread_mutex_unlock(&c->mu);
    }
    jsCtx_Destroy(c->js);
    natsConnection_Destroy(c->nc);
    if (!safe) {
        LOG(LOG_WARN, "consumer_close_incomplete", "url=%s", c->t.shown);
        return; /* a libnats callback might still reach c */
    }
    if (c->cv_ok) pthread_cond_destroy(&c->cv);
    if (c->mu_ok) pthread_mutex_destroy(&c->mu);
    free(c);
}
