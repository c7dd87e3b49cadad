/*
 * The HTTP gateway: a libmicrohttpd daemon (epoll, a pool of worker
 * threads) that decodes, authenticates, rate-limits, resolves and validates
 * requests, hands write jobs to the writer and answers after their commit
 * (connection suspend/resume).
 */
#ifndef IOT_HTTP_SERVER_H
#define IOT_HTTP_SERVER_H

#include "broker/broker.h"
#include "core/config.h"
#include "ingest/intake.h"
#include "ingest/resolver.h"
#include "ingest/writer.h"
#include "mqtt/mqtt_server.h"
#include "store/store_shared.h"

#include <stdint.h>

struct http_server;

struct http_deps {
    const struct config *cfg;
    struct writer *writer;     /* borrowed */
    struct resolver *resolver; /* borrowed */
    struct store_shared *db;   /* borrowed: reads (status, legacy, health) */
    struct broker *broker;     /* borrowed, may be NULL */
    struct intake *intake;     /* borrowed: keys, their budgets, device limits, verdicts */
    struct mqtt_server *mqtt;  /* borrowed, may be NULL: its counters for /metrics */
    struct tls_keys *tls;      /* borrowed, may be NULL: plain HTTP */
};

/*
 * Builds the server without listening (rate limiters, trusted proxies, API
 * key); the in-memory harness of the tests (tests/support/http_harness.h)
 * serves it as it is. deps and what it points to are borrowed until
 * http_server_destroy. Returns 0, or IOT_ENOMEM/IOT_EINVAL with a message in err.
 */
int http_server_create(const struct http_deps *deps, struct http_server **out, char *err,
                       size_t errlen);
/* Binds and starts serving. Returns 0, or IOT_EINVAL/IOT_EIO with a message in err. */
int http_server_start(struct http_server *h, char *err, size_t errlen);
/* The bound TCP port (useful with port 0). */
int http_server_port(struct http_server *h);
/* New connections are closed on accept from now on; requests in flight go on. */
void http_server_quiesce(struct http_server *h);
/* Waits (up to timeout_ms) until every request in flight has been answered. */
void http_server_drain(struct http_server *h, int64_t timeout_ms);
/* Closes the listening socket, joins the workers. Accepts NULL, one never started, twice. */
void http_server_stop(struct http_server *h);
/* Stops it if running, then frees it. Accepts NULL and a half-built server. */
void http_server_destroy(struct http_server *h);

#endif
