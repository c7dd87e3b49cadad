/*
 * The libmicrohttpd daemon and the life of one request: routing, the per-IP
 * rate limit and body checks before the body is read, body accumulation
 * under MAX_BODY_BYTES, dispatch to the endpoint, and the suspend/resume
 * dance that lets an endpoint answer only after the writer's commit.
 */
#include "http/server.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "core/secret.h"
#include "http/body_decode.h"
#include "http/http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <openssl/rand.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>
#include <time.h>

static const char *const route_names[ROUTE_COUNT] = {"/health",
                                                     "/metrics",
                                                     "/ingest/packets",
                                                     "/ingest/readings",
                                                     "/ingest/readings/bulk",
                                                     "/ingest/devices/{uuid}/status",
                                                     "other"};

const char *http_route_name(int route)
{
    return route_names[route];
}

static enum route match_route(const char *url, char *arg, size_t argcap, int *too_long)
{
    static const char prefix[] = "/ingest/devices/", suffix[] = "/status";
    if (strcmp(url, "/health") == 0) return ROUTE_HEALTH;
    if (strcmp(url, "/metrics") == 0) return ROUTE_METRICS;
    if (strcmp(url, "/ingest/packets") == 0) return ROUTE_PACKETS;
    if (strcmp(url, "/ingest/readings") == 0) return ROUTE_READINGS;
    if (strcmp(url, "/ingest/readings/bulk") == 0) return ROUTE_READINGS_BULK;
    size_t ul = strlen(url), pl = sizeof prefix - 1, sl = sizeof suffix - 1;
    if (ul > pl + sl && strncmp(url, prefix, pl) == 0 && strcmp(url + ul - sl, suffix) == 0) {
        size_t n = ul - pl - sl;
        if (memchr(url + pl, '/', n)) return ROUTE_OTHER;
        if (n >= argcap)
            *too_long = 1;
        else {
            memcpy(arg, url + pl, n);
            arg[n] = 0;
        }
        return ROUTE_STATUS;
    }
    return ROUTE_OTHER;
}

static int route_method_ok(enum route r, const char *method)
{
    if (r == ROUTE_HEALTH || r == ROUTE_METRICS || r == ROUTE_STATUS)
        return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    return strcmp(method, "POST") == 0;
}

static int is_ingest(enum route r)
{
    return r >= ROUTE_PACKETS && r <= ROUTE_STATUS;
}

/* Collects every X-Forwarded-For header, joined with commas, in order. */
struct xff_acc {
    char buf[1024];
    size_t len;
};

static enum MHD_Result xff_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    (void)kind;
    struct xff_acc *a = cls;
    if (strcasecmp(key, "X-Forwarded-For") != 0 || !value) return MHD_YES;
    int n = snprintf(a->buf + a->len, sizeof a->buf - a->len, "%s%s", a->len ? "," : "", value);
    if (n > 0) a->len = a->len + (size_t)n < sizeof a->buf ? a->len + (size_t)n : sizeof a->buf - 1;
    return MHD_YES;
}

static void find_client_ip(struct request *rq)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    struct xff_acc acc = {.len = 0};
    acc.buf[0] = 0;
    const struct http_server *s = rq->srv;
    if (s->trusted) MHD_get_connection_values(rq->conn, MHD_HEADER_KIND, xff_iter, &acc);
    if (!ci || client_ip_resolve(ci->client_addr, acc.len ? acc.buf : NULL, s->trusted,
                                 rq->client_ip) != 0)
        snprintf(rq->client_ip, sizeof rq->client_ip, "unknown");
}

/* Checks done before the body is read. Returns 1 if a response was queued. */
static int precheck(struct request *rq, int *ret)
{
    struct http_server *s = rq->srv;
    if (is_ingest(rq->route)) {
        int retry = 1;
        if (!rl_take(s->rl_ip, rq->client_ip, strlen(rq->client_ip), clock_mono_ms(), &retry)) {
            atomic_fetch_add_explicit(&s->metrics.rate_limited_ip, 1, memory_order_relaxed);
            *ret = reply_retry(rq, 429, retry, "rate_limited_ip",
                               "too many requests from this address; retry later");
            return 1;
        }
    }
    if (rq->route != ROUTE_PACKETS && rq->route != ROUTE_READINGS &&
        rq->route != ROUTE_READINGS_BULK)
        return 0;
    const char *ct =
        MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!body_content_type_ok(ct)) {
        *ret =
            reply_error(rq, 415, "unsupported_media_type", "Content-Type must be application/json");
        return 1;
    }
    const char *ce =
        MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (body_encoding_parse(ce) == BODY_UNSUPPORTED) {
        *ret = reply_error(rq, 415, "unsupported_media_type",
                           "Content-Encoding must be gzip or identity");
        return 1;
    }
    const char *cl =
        MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end != cl && n > (unsigned long long)s->d.cfg->max_body_bytes) {
            *ret = reply_error(rq, 413, "body_too_large", "the body is larger than %lld bytes",
                               (long long)s->d.cfg->max_body_bytes);
            return 1;
        }
    }
    return 0;
}

/* A client's X-Request-Id is kept if it is 1-64 characters of [A-Za-z0-9._:-]; else one is made. */
static void set_request_id(struct request *rq)
{
    const char *v = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = v ? strlen(v) : 0;
    int ok = n >= 1 && n <= REQUEST_ID_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        char c = v[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == ':' || c == '-';
    }
    if (ok) {
        memcpy(rq->request_id, v, n + 1);
        return;
    }
    unsigned long long seq = atomic_fetch_add(&rq->srv->request_seq, 1);
    snprintf(rq->request_id, sizeof rq->request_id, "%08x%012llx", rq->srv->request_prefix, seq);
}

static int append_body(struct request *rq, const char *data, size_t n)
{
    size_t max = (size_t)rq->srv->d.cfg->max_body_bytes;
    if (rq->body_too_big || rq->len + n > max) {
        rq->body_too_big = 1;
        return 0;
    }
    if (rq->len + n + 1 > rq->cap) {
        size_t ncap = rq->cap ? rq->cap : 4096;
        while (ncap < rq->len + n + 1)
            ncap *= 2;
        if (ncap > max + 1) ncap = max + 1;
        char *nb = realloc(rq->body, ncap);
        if (!nb) return IOT_ENOMEM;
        rq->body = nb;
        rq->cap = ncap;
    }
    memcpy(rq->body + rq->len, data, n);
    rq->len += n;
    rq->body[rq->len] = 0;
    return 0;
}

/* Inflates a gzip body in place of the raw one. Returns 1 if a response was queued. */
static int inflate_body(struct request *rq, int *ret)
{
    const char *ce =
        MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (body_encoding_parse(ce) != BODY_GZIP) return 0;
    char *out = NULL;
    size_t outlen = 0;
    int rc = body_gunzip(rq->body, rq->len, (size_t)rq->srv->d.cfg->max_body_bytes, &out, &outlen);
    if (rc == IOT_ETOOBIG) {
        *ret = reply_error(rq, 413, "body_too_large", "the inflated body is larger than %lld bytes",
                           (long long)rq->srv->d.cfg->max_body_bytes);
        return 1;
    }
    if (rc) {
        *ret = rc == IOT_ENOMEM
                   ? MHD_NO
                   : reply_error(rq, 400, "invalid_json", "the body is not valid gzip data");
        return 1;
    }
    free(rq->body);
    rq->body = out;
    rq->len = outlen;
    rq->cap = outlen + 1;
    return 0;
}

static int dispatch(struct request *rq)
{
    switch (rq->route) {
    case ROUTE_HEALTH:
        return ep_health(rq);
    case ROUTE_METRICS:
        return ep_metrics(rq);
    case ROUTE_PACKETS:
        return ep_packets(rq);
    case ROUTE_READINGS:
        return ep_legacy(rq, 0);
    case ROUTE_READINGS_BULK:
        return ep_legacy(rq, 1);
    case ROUTE_STATUS:
        return ep_status(rq);
    case ROUTE_OTHER:
    case ROUTE_COUNT:
        break;
    }
    return reply_error(rq, 404, "not_found", "no such route");
}

static void job_done(struct write_job *job, void *ud)
{
    (void)job;
    struct request *rq = ud;
    atomic_store(&rq->job_done, 1);
    MHD_resume_connection(rq->conn);
}

int http_submit(struct request *rq)
{
    rq->job.done = job_done;
    rq->job.done_ud = rq;
    rq->job.received_at = rq->received;
    rq->suspended = 1;
    MHD_suspend_connection(rq->conn);
    int rc = writer_submit(rq->srv->d.writer, &rq->job);
    if (rc) {
        /* The writer refused: answer now, as if it had failed the job. */
        rq->job.status = WRITE_FAILED;
        rq->job.err = rc;
        atomic_store(&rq->job_done, 1);
        MHD_resume_connection(rq->conn);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    struct http_server *s = cls;
    struct request *rq = *con_cls;
    int ret = MHD_YES;

    if (!rq) {
        if (!(rq = calloc(1, sizeof *rq))) return MHD_NO;
        *con_cls = rq;
        rq->srv = s;
        rq->conn = conn;
        rq->t_start_us = clock_mono_us();
        rq->received = clock_now_ms();
        atomic_fetch_add(&s->in_flight, 1);
        rq->method = method;
        rq->route = match_route(url, rq->route_arg, sizeof rq->route_arg, &rq->path_too_long);
        set_request_id(rq);
        find_client_ip(rq);
        if (rq->route == ROUTE_OTHER) {
            rq->early_done = 1;
            return reply_error(rq, 404, "not_found", "no such route: %.100s", url);
        }
        if (!route_method_ok(rq->route, method)) {
            rq->early_done = 1;
            return reply_error(rq, 405, "method_not_allowed", "method %.16s not allowed here",
                               method);
        }
        if (precheck(rq, &ret)) rq->early_done = 1;
        return ret;
    }
    if (rq->early_done) {
        *upload_size = 0; /* discard whatever body follows an early answer */
        return MHD_YES;
    }
    if (rq->suspended) {
        if (!atomic_load(&rq->job_done)) return MHD_YES;
        rq->suspended = 0;
        return rq->finish(rq);
    }
    if (*upload_size) {
        if (append_body(rq, upload, *upload_size)) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->body_too_big)
        return reply_error(rq, 413, "body_too_large", "the body is larger than %lld bytes",
                           (long long)s->d.cfg->max_body_bytes);
    if (inflate_body(rq, &ret)) return ret;
    return dispatch(rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct http_server *s = cls;
    struct request *rq = *con_cls;
    if (!rq) return;
    int64_t us = clock_mono_us() - rq->t_start_us;
    http_metrics_observe(&s->metrics, rq->route, (unsigned)rq->status, us);
    enum log_level level = rq->status >= 400 && s->log_requests >= 1 ? LOG_INFO
                           : s->log_requests >= 2                    ? LOG_INFO
                                                                     : LOG_DEBUG;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && rq->status == 0) level = LOG_INFO;
    LOG(level, "request",
        "request_id=%s method=%s route=%s status=%d duration_ms=%.3f ip=%s device=%s%s",
        rq->request_id, rq->method ? rq->method : "-", route_names[rq->route], rq->status,
        (double)us / 1000.0, rq->client_ip, rq->device_uuid[0] ? rq->device_uuid : "-",
        toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    json_decref(rq->answer);
    free(rq->job.readings);
    free(rq->job.stored_response);
    free((void *)rq->job.response);
    free(rq->body);
    free(rq);
    *con_cls = NULL;
    atomic_fetch_sub(&s->in_flight, 1);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

void http_server_stop(struct http_server *h)
{
    if (!h) return;
    if (h->mhd) MHD_stop_daemon(h->mhd);
    rl_destroy(h->rl_ip);
    rl_destroy(h->rl_device);
    rl_destroy(h->rl_authfail);
    cidr_list_destroy(h->trusted);
    free(h);
}

int http_server_start(const struct http_deps *deps, struct http_server **out, char *err,
                      size_t errlen)
{
    const struct config *cfg = deps->cfg;
    struct http_server *h = calloc(1, sizeof *h);
    if (!h) return IOT_ENOMEM;
    h->d = *deps;
    int rc = rl_create(cfg->rate_limit_ip_rps, cfg->rate_limit_burst,
                       (size_t)cfg->rate_limit_max_buckets, &h->rl_ip);
    if (!rc)
        rc = rl_create(cfg->rate_limit_device_rps, cfg->rate_limit_burst,
                       (size_t)cfg->rate_limit_max_buckets, &h->rl_device);
    if (!rc)
        rc = rl_create(cfg->auth_fail_rps, cfg->auth_fail_burst,
                       (size_t)cfg->rate_limit_max_buckets, &h->rl_authfail);
    if (!rc && cfg->trusted_proxies[0])
        rc = cidr_list_parse(cfg->trusted_proxies, &h->trusted, err, errlen);
    if (!rc && cfg->api_key[0]) {
        h->api_key_set = 1;
        rc = secret_hash(cfg->api_key, strlen(cfg->api_key), h->api_key_hash);
    }
    if (rc) {
        if (rc == IOT_EINVAL && !strstr(err, "CIDR"))
            snprintf(err, errlen, "bad rate-limit settings");
        http_server_stop(h);
        return rc;
    }
    raise_fd_limit();
    h->log_requests = strcmp(cfg->log_requests, "all") == 0      ? 2
                      : strcmp(cfg->log_requests, "errors") == 0 ? 1
                                                                 : 0;
    unsigned char rnd[4];
    h->request_prefix =
        RAND_bytes(rnd, sizeof rnd) == 1
            ? (unsigned)rnd[0] << 24 | (unsigned)rnd[1] << 16 | (unsigned)rnd[2] << 8 | rnd[3]
            : (unsigned)getpid();

    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    struct sockaddr *addr;
    memset(&a6, 0, sizeof a6);
    memset(&a4, 0, sizeof a4);
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;
    if (inet_pton(AF_INET, cfg->ingest_host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)cfg->ingest_port);
        addr = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, cfg->ingest_host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)cfg->ingest_port);
        addr = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "INGEST_HOST must be an IPv4 or IPv6 address, got \"%.64s\"",
                 cfg->ingest_host);
        http_server_stop(h);
        return IOT_EINVAL;
    }
    h->mhd = MHD_start_daemon(
        flags, (uint16_t)cfg->ingest_port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->http_max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->http_idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        (unsigned)1024, MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(err, errlen, "cannot listen on %s:%lld (address in use or not permitted)",
                 cfg->ingest_host, (long long)cfg->ingest_port);
        http_server_stop(h);
        return IOT_EIO;
    }
    *out = h;
    return 0;
}

int http_server_port(struct http_server *h)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : -1;
}

void http_server_quiesce(struct http_server *h)
{
    MHD_socket fd = MHD_quiesce_daemon(h->mhd);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void http_server_drain(struct http_server *h, int64_t timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    struct timespec ts = {0, 5 * 1000000};
    while (atomic_load(&h->in_flight) > 0 && clock_mono_ms() < deadline)
        nanosleep(&ts, NULL);
}
