/* Private to src/http/: the server state and one request, shared by the endpoints. */
#ifndef IOT_HTTP_INT_H
#define IOT_HTTP_INT_H

#include "core/buf.h"
#include "http/client_ip.h"
#include "http/metrics.h"
#include "core/rate_limit.h"
#include "http/server.h"
#include "ingest/intake.h"
#include "ingest/write_job.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>

#define REQUEST_ID_MAX 64
/*
 * libmicrohttpd's memory per connection: request line, headers, read buffer
 * and answer headers, allocated when the connection is accepted and cleared
 * per request. 16 KiB: the longest request line and header block the gateway
 * takes (past it 414/431); a body is not held there (it is streamed into the
 * request's own buffer), so 100-reading packets cost no more CPU than with 32
 * KiB, and 64 connections hold 1 MiB, not 2 (docs/BENCHMARKS.md, memory).
 */
#define HTTP_CONN_MEMORY (16 * 1024)
_Static_assert(CLIENT_IP_LEN <= INTAKE_ADDR_MAX, "a client address must fit an intake claim");

enum route {
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_PACKETS,
    ROUTE_READINGS,
    ROUTE_READINGS_BULK,
    ROUTE_STATUS,
    ROUTE_HISTORY,
    ROUTE_OTHER,
    ROUTE_COUNT
};
_Static_assert(ROUTE_COUNT <= METRICS_ROUTES, "grow METRICS_ROUTES");

struct http_server {
    struct http_deps d;
    /*
     * Owned by the thread that calls http_server_start/stop. Set once, when
     * MHD_start_daemon returns: its worker threads may already be serving,
     * and /metrics reads it from them, hence _Atomic (the plain assignment
     * in server.c is a sequentially consistent store); a worker that runs
     * before the store sees NULL. Cleared by stop, after MHD_stop_daemon has
     * joined the workers (no reader is left).
     */
    _Atomic(struct MHD_Daemon *) mhd;
    struct rate_limiter *rl_ip; /* the per-address request limit (per device: the intake) */
    struct cidr_list *trusted;
    struct conn_guard *guard; /* slow clients and connections per address (conn_guard.h) */
    atomic_long in_flight;
    atomic_ullong request_seq;
    unsigned request_prefix; /* random per process: ids stay unique across restarts */
    int log_requests;        /* 0 none, 1 errors (status >= 400), 2 all */
    struct http_metrics metrics;
};

struct request;

/* A response as the endpoints produce it; the transport sends it. */
struct http_reply {
    unsigned status;
    const char *content_type;
    char *body; /* malloc'ed; the transport takes it */
    size_t len;
    int retry_after_s; /* > 0: Retry-After */
    const char *allow; /* Allow header for 405, or NULL */
    int close;         /* close the connection after this response */
};

/*
 * How request.c talks to the connection: libmicrohttpd (server.c) or memory
 * (tests/support/http_harness.c).
 */
struct http_transport {
    const char *(*header)(struct request *rq, const char *name);
    /* The URL query argument name, decoded; NULL when absent (also "?name" without "="). */
    const char *(*query)(struct request *rq, const char *name);
    int (*respond)(struct request *rq, struct http_reply *r); /* MHD_YES/MHD_NO */
    void (*suspend)(struct request *rq);
    void (*resume)(struct request *rq); /* may be called from the writer thread */
};

struct request {
    struct http_server *srv;
    const struct http_transport *tp;
    void *tctx; /* the transport's handle: an MHD_Connection, or the harness's */
    enum route route;
    char route_arg[STORE_UUID_MAX + 1];  /* device uuid of the status and history routes */
    char route_arg2[STORE_UUID_MAX + 1]; /* sensor uuid of the history route */
    int path_too_long;
    int64_t t_start_us; /* monotonic */
    int64_t received;   /* wall ms */
    char client_ip[CLIENT_IP_LEN];
    char limit_key[CLIENT_IP_LEN]; /* client_ip as every per-address limit keys it (rq_limit_key) */
    char request_id[REQUEST_ID_MAX + 1];   /* echoed in X-Request-Id */
    char device_uuid[STORE_UUID_MAX + 1];  /* for the access log, once known */
    struct intake_cert cert;               /* the client certificate's evidence (HTTPS) */
    char cert_detail[STORE_UUID_MAX + 64]; /* the 401 detail that names cert.device */
    const char *method;

    char *body;
    size_t len, cap;
    int body_too_big;
    int early_done;   /* a response was queued before the body was read */
    int close;        /* the connection must not be reused */
    int auth_retry_s; /* > 0: a failed authentication past the address budget (auth.c) */

    /* Write path: the job, and the answer prepared while it is queued. */
    struct write_job job;
    json_t *answer;                    /* success body to send (and remember) */
    int answer_status;                 /* 200 or 201 */
    int (*finish)(struct request *rq); /* builds the reply after the writer is done */
    atomic_int job_done;
    int suspended;
    int status;       /* final status, for metrics */
    const char *code; /* the error answer's "code" (a literal), for the access log */
};

static inline const char *rq_header(struct request *rq, const char *name)
{
    return rq->tp->header(rq, name);
}

static inline const char *rq_query(struct request *rq, const char *name)
{
    return rq->tp->query(rq, name);
}

/*
 * The key of every per-address limit for this request (client_ip_limit_key:
 * an IPv6 client by its RATE_LIMIT_IPV6_PREFIX), computed on first use, so
 * after the transport has set client_ip.
 */
static inline const char *rq_limit_key(struct request *rq)
{
    if (!rq->limit_key[0])
        client_ip_limit_key(rq->client_ip, (unsigned)rq->srv->d.cfg->rate_limit_ipv6_prefix,
                            rq->limit_key);
    return rq->limit_key;
}

/* request.c: the transport calls these in order. All return MHD_YES or MHD_NO. */
struct request *request_create(struct http_server *s, const struct http_transport *tp, void *tctx,
                               const char *method);
int request_headers(struct request *rq, const char *url);
int request_body(struct request *rq, const char *data, size_t n);
/* End of body; also called again after resume (then it sends the writer's answer). */
int request_complete(struct request *rq);
/* Logs and counts the request (aborted: the client went away first), then frees it. */
void request_destroy(struct request *rq, int aborted);
const char *http_route_name(int route);

/* reply.c: queue a response. All return MHD_YES/MHD_NO for the access handler. */
int reply_json(struct request *rq, unsigned status, json_t *body); /* steals body */
int reply_error(struct request *rq, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int reply_retry(struct request *rq, unsigned status, int retry_after_s, const char *code,
                const char *detail);
int reply_text(struct request *rq, unsigned status, const char *content_type, char *text,
               size_t len); /* takes text (malloc'ed) */

/* auth.c */
enum auth_result { AUTH_OK, AUTH_DENIED, AUTH_INACTIVE };
/* 1 if X-API-Key is present and equals API_KEY (constant time). */
int auth_api_key(struct request *rq);
/* Device key of dev, or the API key. Same cost whether or not dev exists. */
enum auth_result auth_device(struct request *rq, const struct store_device *dev);
/*
 * Before authenticating (rq->device_uuid set): a pair of client address and
 * claimed identity (the device, or the API key) that has used up its
 * failed-authentication budget (AUTH_FAIL_BURST, AUTH_FAIL_RPS) is refused
 * with 429 whatever key it sends, so key guessing learns nothing. Other pairs
 * of the same address are not refused. Returns 1 and queues the reply in
 * *ret if refused.
 */
int auth_locked_out(struct request *rq, int *ret);
/*
 * Counts a failed authentication against the pairs rq claims and against
 * its address; past the address budget (AUTH_FAIL_ADDR_FACTOR times looser)
 * it also empties those pairs and sets rq->auth_retry_s.
 */
void auth_failed(struct request *rq);
/*
 * A failed authentication's answer: 401 unauthorized with detail (NULL: one
 * that names the device-route header that was wrong), or 429 past the
 * address budget.
 */
int auth_reply_denied(struct request *rq, const char *detail);
/*
 * Authentication of a read of one device's data (the status and history
 * routes, SPEC §5): that device's key or the API key; another device's key,
 * a wrong key or none is 401; an unknown device is 401 too, but 404 with the
 * API key; a disabled device 403 unless the API key is used. Returns 1 with
 * the answer queued in *ret, or 0 with *dref set (release it with
 * resolver_release).
 */
int auth_device_read(struct request *rq, const char *device_uuid, const struct device_ref **dref,
                     int *ret);
/* Takes a per-device token after authentication; replies 429 itself when limited. */
int auth_device_rate(struct request *rq, int64_t device_id, int *replied);

/*
 * Writer plumbing (request.c): suspends rq and submits rq->job; returns MHD_YES.
 * It never replies itself: the endpoint's rq->finish does, from request_complete
 * once the transport resumes rq, after the writer's done() or at once when the
 * writer refuses the job (status WRITE_FAILED, err the refusal, which finish
 * maps to 503 or 500 through reply_store_error). rq->finish must be set first.
 */
int http_submit(struct request *rq);

/* Endpoints: each returns the MHD result of its reply. */
int ep_packets(struct request *rq);
int ep_legacy(struct request *rq, int bulk);
int ep_status(struct request *rq);
int ep_readings(struct request *rq);
int ep_health(struct request *rq);
int ep_metrics(struct request *rq);

/* Maps a store/writer error to 503 (retryable) or 500. */
int reply_store_error(struct request *rq, int err);
/* 422 no_valid_readings: answer (stolen) plus "no reading in the <what> is valid". */
int reply_no_valid(struct request *rq, json_t *answer, const char *what);
/* The same from the answer's text, which it takes (and leaves empty). */
int reply_no_valid_text(struct request *rq, struct buf *answer, const char *what);
#endif
