/*
 * The libmicrohttpd daemon: listening, connection limits and timeouts, the
 * client address, and the transport (headers, responses, suspend/resume)
 * through which request.c serves each request.
 */
#include "http/server.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/ident.h"
#include "core/log.h"
#include "http/body_decode.h"
#include "http/conn_guard.h"
#include "http/http_int.h"
#include "tls/tls_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

/* Collects every X-Forwarded-For header, joined with commas, in order. */
struct xff_acc {
    char *buf; /* every X-Forwarded-For value joined with ',' (never truncated) */
    size_t len;
    int failed;
};

static enum MHD_Result xff_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    (void)kind;
    struct xff_acc *a = cls;
    if (strcasecmp(key, "X-Forwarded-For") != 0 || !value || a->failed) return MHD_YES;
    size_t n = strlen(value);
    char *nb = realloc(a->buf, a->len + n + 2);
    if (!nb) {
        a->failed = 1;
        return MHD_NO;
    }
    a->buf = nb;
    if (a->len) a->buf[a->len++] = ',';
    memcpy(a->buf + a->len, value, n + 1);
    a->len += n;
    return MHD_YES;
}

/*
 * The client address for rate limits and logs. The header list is bounded
 * by MHD's per-connection memory limit, so the joined X-Forwarded-For is too;
 * it is never truncated, because its right end (what the trusted proxies
 * appended) is the part that decides.
 */
static void find_client_ip(struct request *rq, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    struct xff_acc acc = {NULL, 0, 0};
    const struct http_server *s = rq->srv;
    if (s->trusted) MHD_get_connection_values(conn, MHD_HEADER_KIND, xff_iter, &acc);
    const char *xff = acc.len && !acc.failed ? acc.buf : NULL;
    if (!ci || client_ip_resolve(ci->client_addr, xff, s->trusted, rq->client_ip) != 0)
        snprintf(rq->client_ip, sizeof rq->client_ip, "unknown");
    free(acc.buf);
}

/*
 * The device the connection's client certificate names (HTTPS with
 * TLS_CLIENT_AUTH on), verified for each request: the intake decides what
 * it proves (src/ingest/intake.h).
 */
static void find_peer_device(struct request *rq, struct MHD_Connection *conn)
{
    struct tls_keys *k = rq->srv->d.tls;
    if (tls_keys_client_auth(k) == TLS_CLIENT_OFF) return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    rq->cert.required = tls_keys_client_auth(k) == TLS_CLIENT_REQUIRED;
    if (!ci || !ci->tls_session) return;
    int rc = tls_keys_peer_device(k, ci->tls_session, rq->cert.device, sizeof rq->cert.device,
                                  &rq->cert.refused);
    if (rc == IOT_ENOTFOUND) rq->cert.refused = NULL;
}

/* The libmicrohttpd transport of a request. */
static const char *mhd_header(struct request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->tctx, MHD_HEADER_KIND, name);
}

static int mhd_respond(struct request *rq, struct http_reply *rep)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(rep->len, rep->body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(rep->body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rep->content_type);
    MHD_add_response_header(r, "X-Request-Id", rq->request_id);
    if (rep->retry_after_s > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", rep->retry_after_s);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (rep->allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, rep->allow);
    if (rep->close) MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    int ret = MHD_queue_response(rq->tctx, rep->status, r);
    MHD_destroy_response(r);
    return ret;
}

static void mhd_suspend(struct request *rq)
{
    MHD_suspend_connection(rq->tctx);
}
static void mhd_resume(struct request *rq)
{
    MHD_resume_connection(rq->tctx);
}

static const char *mhd_query(struct request *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->tctx, MHD_GET_ARGUMENT_KIND, name);
}

static const struct http_transport mhd_transport = {mhd_header, mhd_query, mhd_respond, mhd_suspend,
                                                    mhd_resume};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    struct request *rq = *con_cls;
    struct conn_guard_conn *gc = conn_guard_of(conn);
    if (!rq) {
        if (!(rq = request_create(cls, &mhd_transport, conn, method))) return MHD_NO;
        *con_cls = rq;
        find_client_ip(rq, conn);
        find_peer_device(rq, conn);
        int ret = request_headers(rq, url);
        return ret && conn_guard_headers_done(gc, rq->early_done) ? MHD_YES : MHD_NO;
    }
    if (*upload_size) {
        int ret = request_body(rq, upload, *upload_size) && conn_guard_body(gc, *upload_size);
        *upload_size = 0;
        return ret ? MHD_YES : MHD_NO;
    }
    if (!conn_guard_body_done(gc)) return MHD_NO;
    return request_complete(rq) ? MHD_YES : MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    struct request *rq = *con_cls;
    int timed_out = conn_guard_request_done(conn_guard_of(conn));
    if (!rq) return;
    if (timed_out && rq->status == 0) rq->status = 408; /* the guard answered it (conn_guard.c) */
    request_destroy(rq, toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
    *con_cls = NULL;
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
    if (!h || !h->mhd) return;
    MHD_stop_daemon(h->mhd); /* joins the workers: nothing reads h->mhd afterwards */
    h->mhd = NULL;
}

void http_server_destroy(struct http_server *h)
{
    if (!h) return;
    http_server_stop(h);
    conn_guard_destroy(h->guard); /* after the daemon: its callbacks use the guard */
    rl_destroy(h->rl_ip);
    cidr_list_destroy(h->trusted);
    free(h);
}

int http_server_create(const struct http_deps *deps, struct http_server **out, char *err,
                       size_t errlen)
{
    const struct config *cfg = deps->cfg;
    struct http_server *h = calloc(1, sizeof *h);
    if (!h) return IOT_ENOMEM;
    h->d = *deps;
    int rc = rl_create(cfg->rate_limit_ip_rps, cfg->rate_limit_burst,
                       (size_t)cfg->rate_limit_max_buckets, &h->rl_ip);
    if (rc == IOT_EINVAL) snprintf(err, errlen, "bad rate-limit settings");
    if (!rc && cfg->trusted_proxies[0])
        rc = cidr_list_parse(cfg->trusted_proxies, &h->trusted, err, errlen);
    if (rc) {
        http_server_destroy(h);
        return rc;
    }
    h->log_requests = log_requests_mode(cfg->log_requests);
    h->request_prefix = ident_request_prefix();
    *out = h;
    return 0;
}

int http_server_start(struct http_server *h, char *err, size_t errlen)
{
    const struct http_deps *deps = &h->d;
    const struct config *cfg = deps->cfg;
    int rc;
    raise_fd_limit();
    if (!h->guard && (rc = conn_guard_create(cfg, h->trusted, &h->guard)) != 0) {
        snprintf(err, errlen, "cannot start the connection guard: %s", iot_strerror(rc));
        return rc;
    }
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
        return IOT_EINVAL;
    }
    /* HTTPS: certificates from the reloadable pair, device certificates requested when on. */
    struct MHD_OptionItem tls_opts[4] = {{MHD_OPTION_END, 0, NULL}};
    if (deps->tls) {
        const char *ca = tls_keys_client_ca_pem(deps->tls);
        /*
         * poll(), not epoll: libmicrohttpd 0.9.75 keeps a connection whose TLS
         * handshake waits for the client on its epoll ready list, and the
         * worker spins on recv() (perf: 1.7 ms of CPU per handshake).
         */
        flags = (flags & ~(unsigned)MHD_USE_EPOLL) | MHD_USE_POLL | MHD_USE_TLS;
        tls_opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0,
                                              (void *)(uintptr_t)tls_keys_retrieve};
        tls_opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, TLS_PRIORITIES};
        tls_opts[2] = ca ? (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, (void *)ca}
                         : (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
        tls_opts[3] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    h->mhd = MHD_start_daemon(flags, (uint16_t)cfg->ingest_port, conn_guard_accept, h->guard,
                              on_request, h, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_SOCK_ADDR, addr,
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->http_max_connections,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->http_idle_timeout_s,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                              MHD_OPTION_NOTIFY_CONNECTION, conn_guard_notify, h->guard,
                              MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(err, errlen, "cannot listen on %s:%lld (address in use or not permitted)",
                 cfg->ingest_host, (long long)cfg->ingest_port);
        return IOT_EIO;
    }
    return 0;
}

int http_server_port(struct http_server *h)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : -1;
}

/*
 * New connections are closed on accept from now on; the listening socket
 * closes in stop. Not MHD_quiesce_daemon: in libmicrohttpd 0.9.75 with a
 * thread pool it raced the workers' epoll sets and aborted the process
 * ("Failed to remove listen FD from epoll set", once in about 26 shutdowns
 * of an MQTT test) and closing its socket raced too (found by TSan).
 */
void http_server_quiesce(struct http_server *h)
{
    conn_guard_close_door(h->guard);
}

void http_server_drain(struct http_server *h, int64_t timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    struct timespec ts = {0, 5 * 1000000};
    while (atomic_load(&h->in_flight) > 0 && clock_mono_ms() < deadline)
        nanosleep(&ts, NULL);
}
