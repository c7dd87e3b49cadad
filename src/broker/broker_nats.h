/*
 * The NATS JetStream broker (BROKER_URL=nats://host:port/<subject>), see
 * docs/broker.md. Publishing side: an implementation of struct broker whose
 * publish never blocks ingest and never fails it. The consuming side (the
 * durable pull consumer of `iot-ingest consume`) is in nats_consumer.h.
 */
#ifndef IOT_BROKER_NATS_H
#define IOT_BROKER_NATS_H

#include "broker/broker.h"
#include "core/config.h"

#include <stddef.h>
#include <stdint.h>

/* Settings shared by the publisher and the consumer (src/core/config.h). */
struct broker_nats_opts {
    const char *stream;        /* BROKER_STREAM; borrowed */
    int64_t max_age_s;         /* BROKER_MAX_AGE_S */
    int64_t max_bytes;         /* BROKER_MAX_BYTES */
    int64_t max_pending;       /* BROKER_MAX_PENDING: publications awaiting an ack */
    int64_t reconnect_wait_ms; /* BROKER_RECONNECT_WAIT_MS */
};

/* Fills o from cfg; o->stream borrows cfg's string. */
void broker_nats_opts_from_config(const struct config *cfg, struct broker_nats_opts *o);

/*
 * Creates the publisher for url ("nats://[user:pass@]host[:port][/subject]").
 * Readings pass through a hand-off queue of queue_max messages to one
 * publishing thread, which sends them with asynchronous JetStream publishes,
 * at most o->max_pending unacknowledged at a time, each with the message id
 * "<sensor_id>-<ts_ms>". The engine being down at start is not an error:
 * the connection is retried for ever and health says ERROR until then.
 * *out is owned by the caller (broker_destroy). Returns 0, IOT_EINVAL (bad
 * url or option; err says which), IOT_ENOMEM or IOT_EIO.
 */
int broker_nats_create(const char *url, const struct broker_nats_opts *o, size_t queue_max,
                       struct broker **out, char *err, size_t errlen);

#endif
