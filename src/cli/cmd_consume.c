/*
 * consume: one member of the online ML consumer group (docs/broker.md).
 * Fetches readings from the NATS JetStream stream through the durable group
 * BROKER_CONSUMER, applies each to its sensor's online model in one
 * transaction with its prediction and its "applied" mark
 * (jobs/online_consumer.h), and acknowledges it only after the commit.
 *
 * Signals: SIGTERM/SIGINT are blocked in every thread and polled between
 * messages, so the message in hand is finished (committed and acknowledged);
 * the rest of the fetched batch is handed back for immediate redelivery to
 * the other members, and the command exits 0.
 * Exit codes: 0 stopped by a signal; 1 could not start (database, engine
 * setup); 2 bad usage or setting.
 */
#include "broker/broker_msg.h"
#include "broker/nats_consumer.h"
#include "cli/cli.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "jobs/online_consumer.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FETCH_BATCH     32
#define FETCH_WAIT_MS   500
#define RETRY_PAUSE_MS  1000
#define MAX_ACK_PENDING 1024

struct consume_stats {
    unsigned long long applied, predictions, duplicates, poison, retried, redelivered;
};

/* Returns the stop signal if one is pending, waiting up to wait_ms for it; else 0. */
static int stop_signal(const sigset_t *sigs, int64_t wait_ms)
{
    struct timespec ts = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L};
    int sig = sigtimedwait(sigs, NULL, &ts);
    return sig > 0 ? sig : 0;
}

/* One message: apply, then settle it with the engine. */
static void handle(struct store *s, struct nats_consumer *c, const struct online_opts *o,
                   const struct config *cfg, struct nats_delivery *d, struct consume_stats *st)
{
    struct broker_reading r;
    enum online_outcome outcome;
    int rc;

    if (d->delivered > 1) st->redelivered++;
    if (d->stream_seq == 0 || broker_msg_decode(d->data, d->len, &r) != 0) {
        LOG(LOG_WARN, "consume_poison_message", "seq=%llu bytes=%zu",
            (unsigned long long)d->stream_seq, d->len);
        st->poison++;
        if (nats_consumer_term(c, d)) LOG(LOG_DEBUG, "consume_term_failed", "%s", "");
        return;
    }
    rc = online_apply_reading(s, o, nats_consumer_stream_id(c), d->stream_seq, &r, clock_now_ms(),
                              &outcome);
    if (rc == 0) {
        if (outcome == ONLINE_DUPLICATE)
            st->duplicates++;
        else
            st->applied++;
        if (outcome == ONLINE_PREDICTED) st->predictions++;
        /* A lost ack is harmless: the redelivery is recognised and skipped. */
        if (nats_consumer_ack(c, d))
            LOG(LOG_DEBUG, "consume_ack_failed", "seq=%llu", (unsigned long long)d->stream_seq);
        return;
    }
    if (!iot_err_retryable(rc) && rc != IOT_ENOMEM) {
        /* Retrying will not help (a sensor this database does not know, say): drop it. */
        LOG(LOG_WARN, "consume_message_rejected", "seq=%llu sensor_id=%lld err=\"%s\" db=\"%s\"",
            (unsigned long long)d->stream_seq, (long long)r.sensor_id, iot_strerror(rc),
            store_errmsg(s));
        st->poison++;
        if (nats_consumer_term(c, d)) LOG(LOG_DEBUG, "consume_term_failed", "%s", "");
        return;
    }
    LOG(LOG_WARN, "consume_apply_failed", "seq=%llu err=\"%s\" db=\"%s\" retry_in_ms=%lld",
        (unsigned long long)d->stream_seq, iot_strerror(rc), store_errmsg(s),
        (long long)cfg->broker_redelivery_delay_ms);
    st->retried++;
    if (nats_consumer_nak(c, d, cfg->broker_redelivery_delay_ms))
        LOG(LOG_DEBUG, "consume_nak_failed", "seq=%llu", (unsigned long long)d->stream_seq);
}

/* Forgets applied marks the group will never redeliver (at or below its ack floor). */
static void prune(struct store *s, struct nats_consumer *c)
{
    uint64_t floor = 0;
    int64_t removed = 0;
    const char *sid = nats_consumer_stream_id(c);

    if (!sid[0] || nats_consumer_ack_floor(c, &floor) != 0 || floor == 0) return;
    int rc = store_tx_begin(s);
    if (!rc) rc = store_online_prune(s, sid, floor, &removed);
    if (!rc) rc = store_tx_commit(s);
    if (rc) {
        LOG(LOG_WARN, "consume_prune_failed", "err=\"%s\" db=\"%s\"", iot_strerror(rc),
            store_errmsg(s));
        if (store_tx_rollback(s)) LOG(LOG_DEBUG, "consume_rollback_failed", "%s", "");
        return;
    }
    LOG(LOG_DEBUG, "consume_pruned", "stream_id=%s ack_floor=%llu removed=%lld", sid,
        (unsigned long long)floor, (long long)removed);
}

static const char *flag_name;

static int run_consume(struct config *cfg, const char **pos)
{
    (void)pos;
    char err[IOT_ERRBUF] = "";
    char name[128];
    struct store *s = NULL;
    struct nats_consumer *c = NULL;
    struct nats_delivery batch[FETCH_BATCH];
    struct consume_stats st = {0};
    int status = 1, rc, sig = 0;

    if (strncmp(cfg->broker_url, "nats://", 7) != 0) {
        cli_error("BROKER_URL must be a nats:// URL (the engine the "
                  "gateway publishes to)");
        return EXIT_USAGE;
    }
    if (flag_name) {
        snprintf(name, sizeof name, "%s", flag_name);
    } else {
        char host[64] = "host";
        if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "host");
        host[sizeof host - 1] = '\0';
        snprintf(name, sizeof name, "%s-%ld", host, (long)getpid());
    }

    /* Before any thread starts (libnats makes several): they all inherit the mask. */
    sigset_t sigs;
    if (cli_block_stop_signals(&sigs) != 0 || signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        cli_error("cannot set up signal handling");
        return 1;
    }

    if (cli_open_ready(cfg, 1, &s)) goto out;
    struct online_opts oo = {cfg->online_alpha,
                             cfg->anomaly_z,
                             cfg->online_predict_every,
                             cfg->online_horizon_min,
                             0,
                             name};
    if ((rc = online_model_id(s, &oo, clock_now_ms(), &oo.model_id))) {
        cli_error("cannot record the online model: %s: %s", iot_strerror(rc), store_errmsg(s));
        goto out;
    }
    struct nats_consumer_opts co;
    memset(&co, 0, sizeof co);
    broker_nats_opts_from_config(cfg, &co.stream);
    co.durable = cfg->broker_consumer;
    co.ack_wait_ms = cfg->broker_ack_wait_s * 1000;
    co.max_ack_pending = MAX_ACK_PENDING;
    co.name = name;
    if ((rc = nats_consumer_open(cfg->broker_url, &co, &c, err, sizeof err))) {
        cli_error("%s", err);
        status = rc == IOT_EINVAL ? EXIT_USAGE : 1;
        goto out;
    }
    LOG(LOG_INFO, "consume_started", "consumer=%s group=%s stream=%s ack_wait_s=%lld", name,
        cfg->broker_consumer, cfg->broker_stream, (long long)cfg->broker_ack_wait_s);

    int64_t next_prune = clock_mono_ms() + cfg->online_prune_every_s * 1000;
    while (!(sig = stop_signal(&sigs, 0))) {
        size_t n = 0;
        rc = nats_consumer_fetch(c, FETCH_BATCH, FETCH_WAIT_MS, batch, &n);
        if (rc) { /* engine, stream or group not usable yet: pause, stay stoppable */
            if ((sig = stop_signal(&sigs, RETRY_PAUSE_MS))) break;
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            handle(s, c, &oo, cfg, &batch[i], &st);
            if ((sig = stop_signal(&sigs, 0))) {
                for (size_t j = i + 1; j < n; j++) /* back to the group, at once */
                    if (nats_consumer_nak(c, &batch[j], 0))
                        LOG(LOG_DEBUG, "consume_nak_failed", "%s", "");
                break;
            }
        }
        if (sig) break;
        if (cfg->online_prune_every_s > 0 && clock_mono_ms() >= next_prune) {
            prune(s, c);
            next_prune = clock_mono_ms() + cfg->online_prune_every_s * 1000;
        }
    }
    LOG(LOG_INFO, "consume_stopping", "signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    status = 0;
out:
    nats_consumer_close(c);
    if (status == 0) {
        printf("consume: consumer=%s applied=%llu predictions=%llu duplicates=%llu poison=%llu "
               "retried=%llu redelivered=%llu\n",
               name, st.applied, st.predictions, st.duplicates, st.poison, st.retried,
               st.redelivered);
        fflush(stdout);
    }
    store_close(s);
    return status;
}

static struct cli_flag consume_flags[] = {
    {"--name", &flag_name, 0, "this member's name in consumer_applied (default HOST-PID)"},
    {0, 0, 0, 0},
};

const struct cli_cmd cmd_consume = {
    .name = "consume",
    .summary =
        "Runs the online ML consumer. It joins the durable group BROKER_CONSUMER on the NATS "
        "stream of\n"
        "BROKER_URL, keeps an EWMA model per sensor in the database and writes an online_ewma\n"
        "prediction every ONLINE_PREDICT_EVERY readings. Each message is applied once, and\n"
        "acknowledged after its commit. Runs until SIGTERM/SIGINT, finishing the message in hand.",
    .flags = consume_flags,
    .run = run_consume,
    .uses = CU_DB | CU_CONSUME,
    .creates_db = 1,
};
