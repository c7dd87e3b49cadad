/*
 * The MQTT listener (SPEC §11): MQTT 3.1.1 and 5.0 on MQTT_PORT, one libuv
 * loop on one thread. Devices CONNECT with their device_uuid as user name and
 * their key as password, PUBLISH the body of POST /ingest/packets to
 * devices/{device_uuid}/packets at QoS 0 or 1, and may SUBSCRIBE to
 * devices/{device_uuid}/results for the answer an HTTP client would get. The
 * packet takes the same path as over HTTP (src/ingest/intake.h, the writer);
 * a QoS 1 PUBACK leaves only after the packet's transaction has committed.
 * Includes nothing of src/http and knows no SQL.
 */
#ifndef IOT_MQTT_SERVER_H
#define IOT_MQTT_SERVER_H

#include "core/config.h"
#include "ingest/intake.h"
#include "ingest/resolver.h"
#include "ingest/writer.h"
#include "tls/tls_keys.h"

#include <stddef.h>
#include <stdint.h>

struct mqtt_server;

struct mqtt_deps {
    const struct config *cfg;
    struct writer *writer;     /* borrowed */
    struct resolver *resolver; /* borrowed */
    struct intake *intake;     /* borrowed: keys, their budgets, device limits, verdicts */
    struct tls_keys *tls;      /* borrowed, may be NULL: no MQTT_TLS_PORT */
};

/* What became of a PUBLISH (iot_ingest_mqtt_publishes_total{outcome}). */
enum mqtt_outcome {
    MQTT_OUT_STORED,    /* committed (QoS 1: PUBACKed) */
    MQTT_OUT_DUPLICATE, /* a packet_id seen before: nothing stored again */
    MQTT_OUT_REJECTED,  /* the payload was refused (bad JSON or shape, no valid reading, too big) */
    MQTT_OUT_REFUSED,   /* not authorized: another topic or device, a device gone or disabled */
    MQTT_OUT_FAILED,    /* an error retrying will not fix */
    MQTT_OUT_DROPPED,   /* the connection closed before the packet was stored */
    MQTT_OUTCOMES
};
const char *mqtt_outcome_name(enum mqtt_outcome o);

#define MQTT_LAT_BUCKETS 12
extern const double mqtt_lat_bounds[MQTT_LAT_BUCKETS]; /* seconds */

struct mqtt_stats {
    uint64_t connections;                 /* open now */
    uint64_t connects_accepted;           /* CONNACK 0 */
    uint64_t connects_refused;            /* CONNACK refused (credentials, lockout, will, ...) */
    uint64_t closed_malformed;            /* connections closed for a malformed or refused frame */
    uint64_t closed_keepalive;            /* silent past 1.5x keep-alive, or no CONNECT in time */
    uint64_t refused_at_accept;           /* over MQTT_MAX_CONNECTIONS or the per-address cap */
    uint64_t publishes[2][MQTT_OUTCOMES]; /* by QoS and outcome */
    uint64_t retries_rate_limited, retries_unavailable; /* a held packet tried again */
    uint64_t dup_in_flight;                             /* DUP retries ignored */
    uint64_t results_sent, results_dropped;             /* results topic publications */
    uint64_t puback_lat[MQTT_LAT_BUCKETS + 1];          /* non-cumulative; last = +Inf */
    uint64_t puback_us_sum;
};

/*
 * Binds INGEST_HOST:MQTT_PORT and INGEST_HOST:MQTT_TLS_PORT (those not 0;
 * -1: any free port), without serving yet (mqtt_server_start).
 * Returns 0, or IOT_EINVAL/IOT_EIO/IOT_ENOMEM with a message in err. deps
 * and what it points to are borrowed until mqtt_server_destroy.
 */
int mqtt_server_create(const struct mqtt_deps *deps, struct mqtt_server **out, char *err,
                       size_t errlen);
/* Starts the loop thread. Returns 0, or IOT_EIO with a message in err. */
int mqtt_server_start(struct mqtt_server *m, char *err, size_t errlen);
int mqtt_server_port(struct mqtt_server *m);     /* the bound MQTT_PORT, 0 when off */
int mqtt_server_tls_port(struct mqtt_server *m); /* the bound MQTT_TLS_PORT, 0 when off */
/* Stops accepting; connections and packets in flight go on. */
void mqtt_server_quiesce(struct mqtt_server *m);
/* Waits (up to timeout_ms) until no packet is with the writer any more. */
void mqtt_server_drain(struct mqtt_server *m, int64_t timeout_ms);
/*
 * Closes every connection and joins the loop thread. Call after
 * writer_stop: every job's done() must have run. Accepts NULL, a server
 * never started, twice.
 */
void mqtt_server_stop(struct mqtt_server *m);
/* Stops it if running, then frees it. Accepts NULL and a half-built server. */
void mqtt_server_destroy(struct mqtt_server *m);
void mqtt_server_get_stats(struct mqtt_server *m, struct mqtt_stats *out); /* m may be NULL */

#endif
