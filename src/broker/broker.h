/*
 * ReadingBroker: where clean (normal, non-late) readings go after their
 * commit, for online ML consumers. An interface (ops table + instance), with
 * implementations: memory (bounded queue, in-process subscribers), none,
 * throttle (wrapper), and NATS JetStream (broker_nats.h) for consumers in other
 * processes.
 *
 * Contract for every implementation: broker_publish never blocks and never
 * fails ingest. A message that cannot be taken (queue full, engine down) is
 * counted as dropped and 0 is still returned.
 */
#ifndef IOT_BROKER_H
#define IOT_BROKER_H

#include <stddef.h>
#include <stdint.h>

#define BROKER_UUID_MAX 64

struct broker_reading {
    int64_t sensor_id;
    char sensor_uuid[BROKER_UUID_MAX + 1];
    char device_uuid[BROKER_UUID_MAX + 1];
    double value;
    int64_t ts_ms; /* reading time, UTC ms */
    char cls[8];   /* classifier verdict: "normal" */
};

/* Called on a broker-owned thread; msg is borrowed for the call only. */
typedef void (*broker_subscriber_fn)(const struct broker_reading *msg, void *ud);

struct broker_stats {
    uint64_t published; /* accepted for delivery */
    uint64_t throttled; /* suppressed by the throttle wrapper */
    uint64_t dropped;   /* lost: queue full or engine unreachable */
    uint64_t delivered; /* handed to subscribers (memory) or acknowledged (engine) */
};

enum broker_health { BROKER_OK, BROKER_ERROR, BROKER_DISABLED };

struct broker;

struct broker_ops {
    const char *name;
    /*
     * Takes the n messages of msgs (copied before it returns; msgs NULL:
     * IOT_EINVAL). The writer hands over a whole batch at once: one lock and
     * at most one wake-up of the delivery side per batch, not per reading.
     */
    int (*publish)(struct broker *b, const struct broker_reading *msgs, size_t n);
    /* Adds a subscriber; returns 0 or IOT_EINVAL/IOT_ENOMEM/IOT_EFULL (too many). */
    int (*subscribe)(struct broker *b, broker_subscriber_fn fn, void *ud);
    void (*stats)(struct broker *b, struct broker_stats *out);
    enum broker_health (*health)(struct broker *b);
    /* Delivers what is queued (bounded wait), stops threads, frees b. Accepts NULL. */
    void (*destroy)(struct broker *b);
};

/* Every implementation's instance begins with this. */
struct broker {
    const struct broker_ops *ops;
};

static inline int broker_publish_batch(struct broker *b, const struct broker_reading *msgs,
                                       size_t n)
{
    return b->ops->publish(b, msgs, n);
}
static inline int broker_publish(struct broker *b, const struct broker_reading *m)
{
    return b->ops->publish(b, m, 1);
}
static inline int broker_subscribe(struct broker *b, broker_subscriber_fn fn, void *ud)
{
    return b->ops->subscribe(b, fn, ud);
}
static inline void broker_stats(struct broker *b, struct broker_stats *out)
{
    b->ops->stats(b, out);
}
static inline enum broker_health broker_health(struct broker *b)
{
    return b->ops->health(b);
}
static inline void broker_destroy(struct broker *b)
{
    if (b) b->ops->destroy(b);
}
const char *broker_health_name(enum broker_health h);

/* In-memory broker: bounded queue of queue_max messages, one delivery thread. */
int broker_memory_create(size_t queue_max, struct broker **out);
/* A broker that accepts and discards everything; health is DISABLED. */
int broker_none_create(struct broker **out);
/*
 * Throttling wrapper: at most one publication per sensor per throttle_ms
 * (mono clock from core/clock.h); the rest are counted as throttled, not
 * queued. Takes ownership of inner. Tracks at most max_sensors sensors
 * (bounded memory; LRU eviction).
 */
int broker_throttle_create(struct broker *inner, int64_t throttle_ms, size_t max_sensors,
                           struct broker **out);

/* Copies url with any user:password@ replaced by ***@, for logs. */
void broker_url_redact(const char *url, char *out, size_t outlen);

/*
 * Factory: "memory" or "none". Wraps in the throttle when throttle_ms > 0.
 * A "nats://host:port/subject" url needs the NATS settings, which only
 * broker_create has: here it is refused with IOT_EINVAL. Returns 0,
 * IOT_EINVAL (message in err) or IOT_ENOMEM.
 */
int broker_create_from_url(const char *url, size_t queue_max, int64_t throttle_ms,
                           struct broker **out, char *err, size_t errlen);

/*
 * The same factory, with every broker setting (NATS options included) taken
 * from cfg: "memory", "none" or "nats://host:port/subject".
 */
struct config;
int broker_create(const struct config *cfg, struct broker **out, char *err, size_t errlen);

#endif
