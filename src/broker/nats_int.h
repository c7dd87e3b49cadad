/*
 * Private to the NATS JetStream broker (broker_nats.c, nats_consumer.c):
 * BROKER_URL parsing, option checks, connection options, the stream both
 * sides create if it is missing, and a condition-variable deadline.
 */
#ifndef IOT_NATS_INT_H
#define IOT_NATS_INT_H

#include "broker/broker_nats.h"

#include <nats/nats.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define NATS_DEFAULT_SUBJECT "iot.readings"
/* How long one JetStream API request (stream info, consumer info) may take. */
#define NATS_API_WAIT_MS 5000

struct nats_target {
    char server[512];  /* "nats://[user:pass@]host[:port]", handed to libnats only */
    char shown[512];   /* the same with any credential replaced by "***": for logs */
    char subject[256]; /* where readings are published */
};

/*
 * Splits "nats://[user:pass@]host[:port][/subject]" (subject default
 * NATS_DEFAULT_SUBJECT: dot-separated tokens of letters, digits, '-' and
 * '_', no wildcards). Returns 0 or IOT_EINVAL with a sentence in err that
 * never contains the credential.
 */
int nats_target_parse(const char *url, struct nats_target *t, char *err, size_t errlen);

/* A JetStream stream (or durable consumer) name: 1..64 letters, digits, '-' or '_'. */
int nats_stream_name_ok(const char *name);

/*
 * The option checks both sides make before they start: own_limits_ok says
 * whether the caller's own limits are valid, o (may be NULL: invalid) holds
 * the shared ones, which must all be positive, and the stream name. Returns
 * 0, or IOT_EINVAL with err set to "<who>: every limit must be positive" or
 * the BROKER_STREAM sentence.
 */
int nats_opts_check(const char *who, const struct broker_nats_opts *o, int own_limits_ok, char *err,
                    size_t errlen);

/* An absolute CLOCK_REALTIME deadline ms from now, for pthread_cond_timedwait. */
static inline struct timespec deadline_in(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Callbacks the connection reports to, all with closure ud; any may be NULL. */
struct nats_conn_events {
    natsConnectionHandler connected; /* first connect after a failed start, and every reconnect */
    natsConnectionHandler disconnected;
    natsConnectionHandler closed; /* the last callback libnats makes for a connection */
    void *ud;
};

/*
 * Starts a connection that never gives up: unlimited reconnect attempts
 * every reconnect_wait_ms (plus jitter), and a first connect that is retried
 * in the background when the engine is down at start (then *connected_now is
 * 0 and ev->connected fires later). *out is owned by the caller
 * (natsConnection_Destroy). Returns 0, IOT_EINVAL or IOT_ENOMEM/IOT_EIO with
 * err set.
 */
int nats_conn_open(const struct nats_target *t, const char *name, int64_t reconnect_wait_ms,
                   const struct nats_conn_events *ev, natsConnection **out, int *connected_now,
                   char *err, size_t errlen);

/*
 * Makes sure the stream exists, takes the subject, and has the configured
 * limits: creates it when missing (limits retention, file storage, discard
 * old, duplicate window min(2 min, max age)), updates its max age and max
 * bytes when they differ. Blocks up to a few NATS_API_WAIT_MS. *created_ns
 * (may be NULL) gets the stream's creation time, which tells a recreated
 * stream (whose sequences restart) from the old one. Returns 0, IOT_EUNAVAIL
 * (engine unreachable, JetStream off), or IOT_EINVAL (the stream exists but
 * does not take the subject), with err set.
 */
int nats_stream_ensure(jsCtx *js, const struct broker_nats_opts *o, const char *subject,
                       int64_t *created_ns, char *err, size_t errlen);

/* The last libnats error text for s, for a log line. */
const char *nats_err_text(natsStatus s);

#endif
