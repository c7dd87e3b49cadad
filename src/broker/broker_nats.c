/*
 * The NATS JetStream publisher (BROKER_URL=nats://…), docs/broker.md.
 *
 * broker_publish, called by the writer after each commit, only copies the
 * reading into a bounded hand-off ring under a mutex (O(1)); it never calls
 * libnats, so neither a slow socket nor libnats' PublishAsync.StallWait can
 * hold the writer. One publishing thread drains the ring into asynchronous
 * JetStream publishes; it waits while o.max_pending publications are
 * unacknowledged (its own count, below libnats' MaxPending, so libnats never
 * stalls), and the ring filling up meanwhile makes broker_publish drop.
 * While the engine is unreachable, readings are dropped at once (counted),
 * never buffered; the connection retries for ever and publishing resumes.
 *
 * Counters: published = handed to the engine; delivered = stored by it
 * (acknowledged; a duplicate id within the window counts here too); dropped
 * = lost: refused at the door (engine down, ring full, stopping), or handed
 * over and then not acknowledged (error, or no ack within PUB_ACK_WAIT_MS).
 *
 * Threads and lifetime: the ack handler runs on a libnats thread, the
 * connection callbacks on another. Destroy stops the publishing thread,
 * waits (bounded) for outstanding acks, takes the rest back from libnats
 * (they never call back after that), closes the connection and waits for
 * its closed callback, after which libnats calls nothing of ours. Should
 * that wait time out, the object is leaked rather than freed under a
 * callback.
 */
#include "broker/broker_msg.h"
#include "broker/broker_nats.h"
#include "broker/broker_ring.h"
#include "broker/nats_int.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* No ack within this long: the publication counts as dropped. */
#define PUB_ACK_WAIT_MS 5000
/* How long destroy waits for outstanding acks, and for the connection to close. */
#define DRAIN_WAIT_MS 3000
#define CLOSE_WAIT_MS 5000
/* Pause between two attempts to create/check the stream. */
#define ENSURE_RETRY_MS 1000
/* libnats' own pending limit sits above ours so its stall path is never taken. */
#define LIBNATS_PENDING_SLACK 64
#define MAX_SUBSCRIBERS       16

struct nats_sub {
    struct nats_broker *nb;
    broker_subscriber_fn fn;
    void *ud;
    natsSubscription *sub;
};

struct nats_broker {
    struct broker base;
    struct nats_target t;
    char stream[65];
    struct broker_nats_opts o;
    natsConnection *nc;
    jsCtx *js;
    char ensure_err[IOT_ERRBUF]; /* last stream failure logged; publishing thread only */

    pthread_mutex_t mu; /* guards the fields up to `thread` */
    pthread_cond_t cv;  /* publishing thread: work, ack, stop, connection change */
    pthread_cond_t closed_cv;
    struct broker_ring ring;
    int64_t inflight; /* publications awaiting their ack (our count) */
    bool stopping, need_ensure, closed;
    int64_t last_ok_mono, last_err_mono; /* last ack / last failed publication */
    bool failing;                        /* for logging the transitions only */
    struct nats_sub subs[MAX_SUBSCRIBERS];
    size_t nsubs, subs_done;
    pthread_t thread;

    atomic_bool connected, stream_ok;
    atomic_uint_fast64_t published, dropped, delivered;
    bool mu_ok, cv_ok, closed_cv_ok, thread_ok;
};

static void count_drop(struct nats_broker *nb, uint64_t n)
{
    if (n) atomic_fetch_add(&nb->dropped, n);
}

/* Called with mu held: logs when publishing starts or stops failing. */
static void note_outcome(struct nats_broker *nb, bool ok, const char *why)
{
    int64_t now = clock_mono_ms();
    if (ok)
        nb->last_ok_mono = now;
    else
        nb->last_err_mono = now;
    if (ok && nb->failing) {
        nb->failing = false;
        LOG(LOG_INFO, "broker_publish_ok", "url=%s stream=%s", nb->t.shown, nb->stream);
    } else if (!ok && !nb->failing) {
        nb->failing = true;
        LOG(LOG_WARN, "broker_publish_failed", "url=%s stream=%s err=\"%s\"", nb->t.shown,
            nb->stream, why);
    }
}

/* ---- libnats callbacks ---------------------------------------------------- */

static void on_connected(natsConnection *nc, void *closure)
{
    struct nats_broker *nb = closure;
    (void)nc;
    atomic_store(&nb->connected, true);
    pthread_mutex_lock(&nb->mu);
    nb->need_ensure = true; /* the engine may have restarted without its stream */
    pthread_cond_signal(&nb->cv);
    pthread_mutex_unlock(&nb->mu);
    LOG(LOG_INFO, "broker_connected", "url=%s", nb->t.shown);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    struct nats_broker *nb = closure;
    (void)nc;
    atomic_store(&nb->connected, false);
    pthread_mutex_lock(&nb->mu);
    bool closing = nb->stopping;
    pthread_cond_signal(&nb->cv);
    pthread_mutex_unlock(&nb->mu);
    if (closing)
        LOG(LOG_DEBUG, "broker_disconnected", "url=%s reason=closing", nb->t.shown);
    else
        LOG(LOG_WARN, "broker_disconnected", "url=%s", nb->t.shown);
}

static void on_closed(natsConnection *nc, void *closure)
{
    struct nats_broker *nb = closure;
    (void)nc;
    pthread_mutex_lock(&nb->mu);
    nb->closed = true;
    pthread_cond_broadcast(&nb->closed_cv);
    pthread_mutex_unlock(&nb->mu);
}

/* One call per publication handed to libnats: acknowledged, refused or timed out. */
static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    struct nats_broker *nb = closure;
    (void)js;
    natsMsg_Destroy(msg);
    if (pa)
        atomic_fetch_add(&nb->delivered, 1);
    else
        count_drop(nb, 1);
    pthread_mutex_lock(&nb->mu);
    note_outcome(nb, pa != NULL,
                 pae && pae->ErrText ? pae->ErrText
                                     : (pae ? natsStatus_GetText(pae->Err) : "no ack"));
    nb->inflight--;
    pthread_cond_broadcast(&nb->cv);
    pthread_mutex_unlock(&nb->mu);
}

/* ---- the publishing thread ------------------------------------------------ */

/* Hands one reading to libnats. Called without mu; inflight already counts it. */
static void send_one(struct nats_broker *nb, const struct broker_reading *r)
{
    char *body = NULL;
    size_t len = 0;
    char id[BROKER_MSG_ID_LEN];
    natsMsg *m = NULL;
    jsPubOptions po;
    natsStatus s = NATS_ERR;
    const char *why = "encode failed";

    if (broker_msg_encode(r, &body, &len) == 0 && len <= INT32_MAX) {
        broker_msg_id(r, id);
        s = natsMsg_Create(&m, nb->t.subject, NULL, body, (int)len);
        if (s == NATS_OK) s = jsPubOptions_Init(&po);
        if (s == NATS_OK) {
            po.MsgId = id;
            po.ExpectStream = nb->stream;
            po.MaxWait = PUB_ACK_WAIT_MS;
            s = js_PublishMsgAsync(nb->js, &m, &po);
        }
        why = s == NATS_OK ? NULL : nats_err_text(s);
    }
    free(body);
    natsMsg_Destroy(m); /* NULL when libnats took it */
    if (s == NATS_OK) {
        atomic_fetch_add(&nb->published, 1);
        return;
    }
    count_drop(nb, 1);
    pthread_mutex_lock(&nb->mu);
    nb->inflight--;
    note_outcome(nb, false, why);
    pthread_mutex_unlock(&nb->mu);
}

/*
 * Creates or checks the stream; called on the publishing thread without mu.
 * A failure is logged once per distinct reason, not at every retry.
 */
static void ensure_stream(struct nats_broker *nb)
{
    char err[IOT_ERRBUF] = "";
    int rc = nats_stream_ensure(nb->js, &nb->o, nb->t.subject, NULL, err, sizeof err);
    bool was = atomic_exchange(&nb->stream_ok, rc == 0);
    if (rc) {
        if (strcmp(err, nb->ensure_err) != 0)
            LOG(LOG_WARN, "broker_stream_unavailable", "url=%s err=\"%s\"", nb->t.shown, err);
        snprintf(nb->ensure_err, sizeof nb->ensure_err, "%s", err);
        return;
    }
    nb->ensure_err[0] = '\0';
    if (!was)
        LOG(LOG_INFO, "broker_stream_ready", "url=%s stream=%s subject=%s", nb->t.shown, nb->stream,
            nb->t.subject);
}

static void *publish_loop(void *arg)
{
    struct nats_broker *nb = arg;
    int64_t next_ensure = 0;

    pthread_mutex_lock(&nb->mu);
    for (;;) {
        bool up = atomic_load(&nb->connected);
        if (up && (nb->need_ensure || !atomic_load(&nb->stream_ok)) && !nb->stopping &&
            clock_mono_ms() >= next_ensure) {
            nb->need_ensure = false;
            pthread_mutex_unlock(&nb->mu);
            ensure_stream(nb);
            pthread_mutex_lock(&nb->mu);
            next_ensure = clock_mono_ms() + ENSURE_RETRY_MS;
            continue;
        }
        bool ready = up && atomic_load(&nb->stream_ok);
        if (nb->ring.count > 0 && !ready) /* engine down: drop, never buffer */
            count_drop(nb, broker_ring_clear(&nb->ring));
        struct broker_reading r;
        if (nb->inflight < nb->o.max_pending && broker_ring_pop(&nb->ring, &r)) {
            nb->inflight++;
            pthread_mutex_unlock(&nb->mu);
            send_one(nb, &r);
            pthread_mutex_lock(&nb->mu);
            continue;
        }
        if (nb->stopping) {
            /* window full at shutdown: these cannot go */
            count_drop(nb, broker_ring_clear(&nb->ring));
            break;
        }
        /* Wait for work, an ack, a connection change, or the next stream check. */
        struct timespec until = deadline_in(ENSURE_RETRY_MS);
        int rc = pthread_cond_timedwait(&nb->cv, &nb->mu, &until);
        if (rc != 0 && rc != ETIMEDOUT) LOG(LOG_ERROR, "broker_wait_failed", "rc=%d", rc);
    }
    pthread_mutex_unlock(&nb->mu);
    return NULL;
}

/* ---- broker ops ----------------------------------------------------------- */

/* O(1) and lock-short: never touches libnats. Always 0 for a non-NULL msg. */
static int nats_publish(struct broker *b, const struct broker_reading *msgs, size_t n)
{
    struct nats_broker *nb = (struct nats_broker *)b;
    bool wake = false;

    if (!msgs) return IOT_EINVAL;
    if (!atomic_load(&nb->connected) || !atomic_load(&nb->stream_ok)) {
        count_drop(nb, n);
        return 0;
    }
    pthread_mutex_lock(&nb->mu);
    for (size_t i = 0; i < n; i++) {
        bool was_empty = nb->ring.count == 0;
        if (nb->stopping || !broker_ring_push(&nb->ring, &msgs[i])) {
            count_drop(nb, 1);
            if (!nb->stopping) note_outcome(nb, false, "hand-off queue full: engine too slow");
            continue;
        }
        wake = wake || was_empty;
    }
    if (wake) pthread_cond_signal(&nb->cv);
    pthread_mutex_unlock(&nb->mu);
    return 0;
}

/* Core NATS delivery of one message to an in-process subscriber (at most once). */
static void on_sub_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    struct nats_sub *ns = closure;
    struct broker_reading r;
    (void)nc;
    (void)sub;
    if (broker_msg_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &r) == 0)
        ns->fn(&r, ns->ud);
    else
        LOG(LOG_DEBUG, "broker_message_undecodable", "subject=%s", natsMsg_GetSubject(msg));
    natsMsg_Destroy(msg);
}

static void on_sub_complete(void *closure)
{
    struct nats_sub *ns = closure;
    struct nats_broker *nb = ns->nb;
    pthread_mutex_lock(&nb->mu);
    nb->subs_done++;
    pthread_cond_broadcast(&nb->closed_cv);
    pthread_mutex_unlock(&nb->mu);
}

/*
 * An in-process subscriber: a plain (non-durable, at-most-once) NATS
 * subscription on the subject, called on a libnats thread for every reading
 * published while it is connected. Durable, shared, acknowledged
 * consumption is `iot-ingest consume` (nats_consumer.h). Returns 0,
 * IOT_EINVAL, IOT_EFULL (past MAX_SUBSCRIBERS) or IOT_EIO.
 */
static int nats_subscribe(struct broker *b, broker_subscriber_fn fn, void *ud)
{
    struct nats_broker *nb = (struct nats_broker *)b;
    int rc = 0;

    if (!fn) return IOT_EINVAL;
    pthread_mutex_lock(&nb->mu);
    if (nb->nsubs == MAX_SUBSCRIBERS || nb->stopping) {
        pthread_mutex_unlock(&nb->mu);
        return nb->stopping ? IOT_ESHUTDOWN : IOT_EFULL;
    }
    struct nats_sub *ns = &nb->subs[nb->nsubs];
    ns->nb = nb;
    ns->fn = fn;
    ns->ud = ud;
    natsStatus s = natsConnection_Subscribe(&ns->sub, nb->nc, nb->t.subject, on_sub_msg, ns);
    if (s == NATS_OK) s = natsSubscription_SetOnCompleteCB(ns->sub, on_sub_complete, ns);
    if (s != NATS_OK) {
        LOG(LOG_WARN, "broker_subscribe_failed", "url=%s err=\"%s\"", nb->t.shown,
            nats_err_text(s));
        natsSubscription_Destroy(ns->sub);
        ns->sub = NULL;
        rc = IOT_EIO;
    } else {
        nb->nsubs++;
    }
    pthread_mutex_unlock(&nb->mu);
    return rc;
}

static void nats_stats(struct broker *b, struct broker_stats *out)
{
    struct nats_broker *nb = (struct nats_broker *)b;
    out->published = atomic_load(&nb->published);
    out->throttled = 0;
    out->dropped = atomic_load(&nb->dropped);
    out->delivered = atomic_load(&nb->delivered);
}

/*
 * ERROR while the engine is unreachable, the stream is not usable, or the
 * newest publication outcome was a failure (refused or not acknowledged);
 * OK again with the next acknowledged publication.
 */
static enum broker_health nats_health(struct broker *b)
{
    struct nats_broker *nb = (struct nats_broker *)b;
    if (!atomic_load(&nb->connected) || !atomic_load(&nb->stream_ok)) return BROKER_ERROR;
    pthread_mutex_lock(&nb->mu);
    bool failing = nb->last_err_mono > nb->last_ok_mono;
    pthread_mutex_unlock(&nb->mu);
    return failing ? BROKER_ERROR : BROKER_OK;
}

/* Waits on closed_cv until pred holds or the deadline passes; mu held. */
static bool wait_closed_cv(struct nats_broker *nb, bool (*pred)(struct nats_broker *), int64_t ms)
{
    struct timespec until = deadline_in(ms);
    while (!pred(nb))
        if (pthread_cond_timedwait(&nb->closed_cv, &nb->mu, &until) == ETIMEDOUT) return pred(nb);
    return true;
}

static bool is_closed(struct nats_broker *nb)
{
    return nb->closed;
}

static bool subs_finished(struct nats_broker *nb)
{
    return nb->subs_done == nb->nsubs;
}

/*
 * Stops the publishing thread, gives outstanding publications up to
 * DRAIN_WAIT_MS for their acks, closes the connection and frees everything.
 * Accepts NULL and a half-built broker.
 */
static void nats_destroy(struct broker *b)
{
    struct nats_broker *nb = (struct nats_broker *)b;
    bool safe = true;

    if (!nb) return;
    if (nb->thread_ok) {
        pthread_mutex_lock(&nb->mu);
        nb->stopping = true;
        pthread_cond_broadcast(&nb->cv);
        pthread_mutex_unlock(&nb->mu);
        pthread_join(nb->thread, NULL);
    }
    if (nb->js) {
        jsPubOptions po;
        if (jsPubOptions_Init(&po) == NATS_OK) {
            po.MaxWait = DRAIN_WAIT_MS;
            if (js_PublishAsyncComplete(nb->js, &po) != NATS_OK) {
                natsMsgList left = {0};
                if (js_PublishAsyncGetPendingList(&left, nb->js) == NATS_OK) {
                    /* Taken back: libnats will not call on_pub_ack for these. */
                    count_drop(nb, (uint64_t)left.Count);
                    pthread_mutex_lock(&nb->mu);
                    nb->inflight -= left.Count;
                    pthread_mutex_unlock(&nb->mu);
                    natsMsgList_Destroy(&left);
                }
            }
        }
        /* An ack handler may still be on its way out: wait for its decrement. */
        if (nb->mu_ok) {
            pthread_mutex_lock(&nb->mu);
            struct timespec until = deadline_in(DRAIN_WAIT_MS);
            while (nb->inflight > 0)
                if (pthread_cond_timedwait(&nb->cv, &nb->mu, &until) == ETIMEDOUT) break;
            if (nb->inflight > 0) safe = false;
            pthread_mutex_unlock(&nb->mu);
        }
    }
    for (size_t i = 0; i < nb->nsubs; i++)
        if (natsSubscription_Unsubscribe(nb->subs[i].sub) != NATS_OK)
            LOG(LOG_DEBUG, "broker_unsubscribe_failed", "url=%s", nb->t.shown);
    if (nb->nc) {
        natsConnection_Close(nb->nc);
        pthread_mutex_lock(&nb->mu);
        if (!wait_closed_cv(nb, is_closed, CLOSE_WAIT_MS) ||
            !wait_closed_cv(nb, subs_finished, CLOSE_WAIT_MS))
            safe = false;
        pthread_mutex_unlock(&nb->mu);
    }
    for (size_t i = 0; i < nb->nsubs; i++)
        natsSubscription_Destroy(nb->subs[i].sub);
    jsCtx_Destroy(nb->js);
    natsConnection_Destroy(nb->nc);
    if (!safe) {
        /* A libnats callback might still reach nb: leaking beats a use after free. */
        LOG(LOG_WARN, "broker_close_incomplete", "url=%s", nb->t.shown);
        return;
    }
    if (nb->closed_cv_ok) pthread_cond_destroy(&nb->closed_cv);
    if (nb->cv_ok) pthread_cond_destroy(&nb->cv);
    if (nb->mu_ok) pthread_mutex_destroy(&nb->mu);
    broker_ring_fini(&nb->ring);
    free(nb);
}

static const struct broker_ops nats_ops = {
    .name = "nats",
    .publish = nats_publish,
    .subscribe = nats_subscribe,
    .stats = nats_stats,
    .health = nats_health,
    .destroy = nats_destroy,
};

void broker_nats_opts_from_config(const struct config *cfg, struct broker_nats_opts *o)
{
    o->stream = cfg->broker_stream;
    o->max_age_s = cfg->broker_max_age_s;
    o->max_bytes = cfg->broker_max_bytes;
    o->max_pending = cfg->broker_max_pending;
    o->reconnect_wait_ms = cfg->broker_reconnect_wait_ms;
}

int broker_nats_create(const char *url, const struct broker_nats_opts *o, size_t queue_max,
                       struct broker **out, char *err, size_t errlen)
{
    struct nats_broker *nb;
    int rc, connected_now = 0;

    if (!out) return IOT_EINVAL;
    *out = NULL;
    if ((rc = nats_opts_check("NATS broker", o, o && queue_max > 0 && o->max_pending >= 1, err,
                              errlen)))
        return rc;
    assert(o); /* nats_opts_check refuses NULL (the analyzer cannot see into nats_conn.c) */
    if (!(nb = calloc(1, sizeof *nb))) return IOT_ENOMEM;
    nb->base.ops = &nats_ops;
    if ((rc = nats_target_parse(url, &nb->t, err, errlen))) {
        free(nb);
        return rc;
    }
    snprintf(nb->stream, sizeof nb->stream, "%s", o->stream);
    nb->o = *o;
    nb->o.stream = nb->stream;
    atomic_init(&nb->connected, false);
    atomic_init(&nb->stream_ok, false);
    atomic_init(&nb->published, 0);
    atomic_init(&nb->dropped, 0);
    atomic_init(&nb->delivered, 0);
    if (broker_ring_init(&nb->ring, queue_max)) {
        nats_destroy(&nb->base);
        return IOT_ENOMEM;
    }
    if (!(nb->mu_ok = pthread_mutex_init(&nb->mu, NULL) == 0) ||
        !(nb->cv_ok = pthread_cond_init(&nb->cv, NULL) == 0) ||
        !(nb->closed_cv_ok = pthread_cond_init(&nb->closed_cv, NULL) == 0)) {
        nats_destroy(&nb->base);
        return IOT_EIO;
    }

    char name[64];
    snprintf(name, sizeof name, "iot-ingest-publisher-%ld", (long)getpid());
    struct nats_conn_events ev = {on_connected, on_disconnected, on_closed, nb};
    if ((rc = nats_conn_open(&nb->t, name, o->reconnect_wait_ms, &ev, &nb->nc, &connected_now, err,
                             errlen))) {
        nats_destroy(&nb->base);
        return rc;
    }
    if (connected_now) atomic_store(&nb->connected, true);

    jsOptions jo;
    natsStatus s = jsOptions_Init(&jo);
    if (s == NATS_OK) {
        jo.Wait = NATS_API_WAIT_MS;
        jo.PublishAsync.MaxPending = o->max_pending + LIBNATS_PENDING_SLACK;
        jo.PublishAsync.StallWait = 1; /* never reached: our own window is smaller */
        jo.PublishAsync.AckHandler = on_pub_ack;
        jo.PublishAsync.AckHandlerClosure = nb;
        s = natsConnection_JetStream(&nb->js, nb->nc, &jo);
    }
    if (s != NATS_OK) {
        if (err && errlen) snprintf(err, errlen, "NATS JetStream context: %s", nats_err_text(s));
        nats_destroy(&nb->base);
        return s == NATS_NO_MEMORY ? IOT_ENOMEM : IOT_EIO;
    }
    nb->need_ensure = true;
    if (!(nb->thread_ok = pthread_create(&nb->thread, NULL, publish_loop, nb) == 0)) {
        nats_destroy(&nb->base);
        return IOT_EIO;
    }
    LOG(LOG_INFO, "broker_nats_started", "url=%s subject=%s stream=%s max_pending=%lld",
        nb->t.shown, nb->t.subject, nb->stream, (long long)o->max_pending);
    *out = &nb->base;
    return 0;
}
