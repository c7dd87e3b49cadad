/*
 * The consuming side of the NATS JetStream broker: one member of a durable
 * pull-consumer group (BROKER_CONSUMER) on the readings stream. Every
 * process that opens the same group shares its messages: each message goes
 * to one of them, and one that is not acknowledged within the ack wait
 * (a member killed, say) is delivered again, to any member.
 *
 * Not thread-safe: one thread fetches, acknowledges and closes.
 */
#ifndef IOT_NATS_CONSUMER_H
#define IOT_NATS_CONSUMER_H

#include "broker/broker_nats.h"

#include <stddef.h>
#include <stdint.h>

/* Most messages one fetch returns. */
#define NATS_FETCH_MAX 64

struct nats_consumer_opts {
    struct broker_nats_opts stream; /* the stream is created if missing, as by the publisher */
    const char *durable;            /* group name, BROKER_CONSUMER; borrowed */
    int64_t ack_wait_ms;            /* BROKER_ACK_WAIT_S in ms */
    int64_t max_ack_pending;        /* messages out unacknowledged across the whole group */
    const char *name;               /* this process, for the engine's connection list */
};

/* One fetched message; data and msg stay valid until nats_consumer_release. */
struct nats_delivery {
    const char *data;
    size_t len;
    uint64_t stream_seq; /* the message's sequence in the stream */
    uint64_t delivered;  /* 1 on first delivery, more on redelivery */
    void *msg;           /* the natsMsg, owned by the consumer */
};

struct nats_consumer;

/*
 * Starts the connection (retried for ever in the background if the engine
 * is down) and, once it is up, the stream and the durable consumer. *out is
 * owned by the caller (nats_consumer_close). Returns 0, IOT_EINVAL (bad url
 * or option, err says which), IOT_ENOMEM or IOT_EIO.
 */
int nats_consumer_open(const char *url, const struct nats_consumer_opts *o,
                       struct nats_consumer **out, char *err, size_t errlen);

/*
 * Fetches up to max (<= NATS_FETCH_MAX) messages, waiting at most
 * timeout_ms for the first. Releases the previous batch first. *n = 0 when
 * none came in time. Returns 0, or IOT_EUNAVAIL when the engine, the stream
 * or the consumer is not usable right now (the caller pauses and retries:
 * the next fetch sets them up again).
 */
int nats_consumer_fetch(struct nats_consumer *c, size_t max, int64_t timeout_ms,
                        struct nats_delivery *out, size_t *n);

/* Acknowledges d: the group will not deliver it again. 0 or IOT_EUNAVAIL. */
int nats_consumer_ack(struct nats_consumer *c, struct nats_delivery *d);
/* Hands d back for redelivery after delay_ms (0: at once). 0 or IOT_EUNAVAIL. */
int nats_consumer_nak(struct nats_consumer *c, struct nats_delivery *d, int64_t delay_ms);
/* Gives up on d for good (a poison message). 0 or IOT_EUNAVAIL. */
int nats_consumer_term(struct nats_consumer *c, struct nats_delivery *d);
/* Frees the last fetched batch (acknowledged or not). */
void nats_consumer_release(struct nats_consumer *c);

/*
 * The identity of the stream the last fetch read: "<name>@<creation ns>".
 * A stream deleted and created again restarts its sequences; the identity
 * changes with it, so (identity, stream_seq) names one message for ever.
 * Empty until the first successful setup.
 */
const char *nats_consumer_stream_id(const struct nats_consumer *c);

/*
 * The group's ack floor: every message with a stream sequence <= *floor
 * has been acknowledged and will never be delivered again. Blocks up to a
 * few seconds. 0 or IOT_EUNAVAIL.
 */
int nats_consumer_ack_floor(struct nats_consumer *c, uint64_t *floor);

/* Flushes pending acknowledgements (bounded), closes, frees. Accepts NULL. */
void nats_consumer_close(struct nats_consumer *c);

#endif
