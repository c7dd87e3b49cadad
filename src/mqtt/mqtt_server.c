/*
 * The MQTT listener's life: bind, one libuv loop on its own thread, the
 * wake-up from the writer (uv_async: one wake carries any number of
 * completions), a 100 ms tick for deadlines and held packets, quiesce, drain
 * stop and destroy. Connections are in mqtt_conn.c, the packets in mqtt_ingest.c.
 */
#include "mqtt/mqtt_srv_int.h"
#include "core/err.h"
#include "core/ident.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_MS 100
#define BACKLOG 511

const double mqtt_lat_bounds[MQTT_LAT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1,   0.25,   0.5,   1,    2.5,   10};

const char *mqtt_outcome_name(enum mqtt_outcome o)
{
    static const char *const names[MQTT_OUTCOMES] = {"stored",  "duplicate", "rejected",
                                                     "refused", "failed",    "dropped"};
    return (unsigned)o < MQTT_OUTCOMES ? names[o] : "unknown";
}

static void server__on_connection(uv_stream_t *listener, int status)
{
    struct mqtt_server *m = listener->data;
    if (status < 0) {
        LOG(LOG_WARN, "mqtt_accept_failed", "err=\"%s\"", uv_strerror(status));
        return;
    }
    conn_accept(m, listener);
}

static void server__close_listener(struct mqtt_server *m)
{
    if (m->listening) uv_close((uv_handle_t *)&m->listener, NULL);
    if (m->listening_tls) uv_close((uv_handle_t *)&m->listener_tls, NULL);
    m->listening = m->listening_tls = false;
}

/* The writer finished jobs, or the server is asked to quiesce or stop. */
static void server__on_wake(uv_async_t *a)
{
    struct mqtt_server *m = a->data;
    ingest_completions(m);
    pthread_mutex_lock(&m->done_mu);
    bool stop = m->stop, quiesce = m->quiesce;
    pthread_mutex_unlock(&m->done_mu);
    if (quiesce || stop) server__close_listener(m);
    if (!stop) return;
    for (struct mqtt_conn *c = m->conns; c; c = c->next)
        conn_close(c, "server stopping");
    uv_close((uv_handle_t *)&m->wake, NULL);
    uv_close((uv_handle_t *)&m->tick, NULL);
}

static void server__on_tick(uv_timer_t *t)
{
    struct mqtt_server *m = t->data;
    uint64_t now = uv_now(&m->loop);
    /* conn_tick may close a connection: uv_close frees it later, the list holds. */
    for (struct mqtt_conn *c = m->conns; c; c = c->next)
        conn_tick(c, now);
}

static void *server__thread(void *arg)
{
    struct mqtt_server *m = arg;
    uv_run(&m->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Binds l on host:port (port -1: any free port); *bound_port the port. 0 or a libuv error. */
static int server__bind(struct mqtt_server *m, uv_tcp_t *l, bool *listening, const char *host,
                        int port, int *bound_port)
{
    struct sockaddr_storage ss;
    int p = port < 0 ? 0 : port;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, p, (struct sockaddr_in6 *)&ss)
                               : uv_ip4_addr(host, p, (struct sockaddr_in *)&ss);
    if (rc) return rc;
    if ((rc = uv_tcp_init(&m->loop, l))) return rc;
    l->data = m;
    *listening = true;
    if ((rc = uv_tcp_bind(l, (const struct sockaddr *)&ss, 0))) return rc;
    if ((rc = uv_listen((uv_stream_t *)l, BACKLOG, server__on_connection))) return rc;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    if ((rc = uv_tcp_getsockname(l, (struct sockaddr *)&bound, &len))) return rc;
    *bound_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

/* Closes every handle of a server whose thread never ran, and runs the loop until they are. */
static void server__unwind(struct mqtt_server *m)
{
    server__close_listener(m);
    if (m->wake.data) uv_close((uv_handle_t *)&m->wake, NULL);
    if (m->tick.data) uv_close((uv_handle_t *)&m->tick, NULL);
    uv_run(&m->loop, UV_RUN_DEFAULT);
}

static void server__free(struct mqtt_server *m)
{
    if (m->loop_ready) uv_loop_close(&m->loop);
    pthread_mutex_destroy(&m->done_mu);
    free(m);
}

int mqtt_server_create(const struct mqtt_deps *deps, struct mqtt_server **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    struct mqtt_server *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "MQTT listener: out of memory");
        return IOT_ENOMEM;
    }
    m->d = *deps;
    m->max_frame = (size_t)deps->cfg->max_body_bytes + 4096; /* topic, properties */
    m->log_publishes = log_requests_mode(deps->cfg->log_requests);
    m->request_prefix = ident_request_prefix();
    pthread_mutex_init(&m->done_mu, NULL);
    const struct config *cfg = deps->cfg;
    int port = (int)cfg->mqtt_port;
    int rc = uv_loop_init(&m->loop);
    if (rc) goto fail;
    m->loop_ready = true;
    if (port &&
        (rc = server__bind(m, &m->listener, &m->listening, cfg->ingest_host, port, &m->port)))
        goto fail;
    port = (int)cfg->mqtt_tls_port;
    if (port && deps->tls &&
        (rc = server__bind(m, &m->listener_tls, &m->listening_tls, cfg->ingest_host, port,
                           &m->tls_port)))
        goto fail;
    if ((rc = uv_async_init(&m->loop, &m->wake, server__on_wake))) goto fail;
    m->wake.data = m;
    if ((rc = uv_timer_init(&m->loop, &m->tick))) goto fail;
    m->tick.data = m;
    if ((rc = uv_timer_start(&m->tick, server__on_tick, TICK_MS, TICK_MS))) goto fail;
    *out = m;
    return 0;
fail:
    snprintf(err, errlen, "MQTT listener on %s port %lld: %s", deps->cfg->ingest_host,
             (long long)port, uv_strerror(rc));
    mqtt_server_destroy(m);
    return rc == UV_EINVAL ? IOT_EINVAL : IOT_EIO;
}

int mqtt_server_start(struct mqtt_server *m, char *err, size_t errlen)
{
    int e = pthread_create(&m->thread, NULL, server__thread, m);
    if (e) {
        snprintf(err, errlen, "MQTT listener: cannot create its thread: %s", strerror(e));
        return IOT_EIO;
    }
    m->thread_started = true;
    return 0;
}

int mqtt_server_port(struct mqtt_server *m)
{
    return m->port;
}

int mqtt_server_tls_port(struct mqtt_server *m)
{
    return m->tls_port;
}

static void server__signal(struct mqtt_server *m, bool stop)
{
    pthread_mutex_lock(&m->done_mu);
    if (stop)
        m->stop = true;
    else
        m->quiesce = true;
    pthread_mutex_unlock(&m->done_mu);
    uv_async_send(&m->wake);
}

void mqtt_server_quiesce(struct mqtt_server *m)
{
    if (m) server__signal(m, false);
}

void mqtt_server_drain(struct mqtt_server *m, int64_t timeout_ms)
{
    if (!m) return;
    struct timespec pause = {0, 10 * 1000 * 1000};
    for (int64_t waited = 0; atomic_load(&m->in_writer) > 0 && waited < timeout_ms; waited += 10)
        nanosleep(&pause, NULL);
}

void mqtt_server_stop(struct mqtt_server *m)
{
    if (!m || !m->thread_started || m->thread_joined) return;
    server__signal(m, true);
    pthread_join(m->thread, NULL); /* the loop ends once every handle is closed */
    m->thread_joined = true;
    /* Completions that came after the last wake (none once the writer stopped). */
    ingest_completions(m);
}

void mqtt_server_destroy(struct mqtt_server *m)
{
    if (!m) return;
    if (m->thread_started)
        mqtt_server_stop(m);
    else if (m->loop_ready)
        server__unwind(m); /* the handles create opened, closed on this thread */
    server__free(m);
}

void mqtt_server_get_stats(struct mqtt_server *m, struct mqtt_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!m) return;
#define LD(f) atomic_load_explicit(&m->st.f, memory_order_relaxed)
    out->connections = LD(connections);
    out->connects_accepted = LD(connects_accepted);
    out->connects_refused = LD(connects_refused);
    out->closed_malformed = LD(closed_malformed);
    out->closed_keepalive = LD(closed_keepalive);
    out->refused_at_accept = LD(refused_at_accept);
    out->dup_in_flight = LD(dup_in_flight);
    out->retries_rate_limited = LD(retries_rate_limited);
    out->retries_unavailable = LD(retries_unavailable);
    out->results_sent = LD(results_sent);
    out->results_dropped = LD(results_dropped);
    out->puback_us_sum = LD(puback_us_sum);
    for (int q = 0; q < 2; q++)
        for (int o = 0; o < MQTT_OUTCOMES; o++)
            out->publishes[q][o] = LD(publishes[q][o]);
    for (int b = 0; b <= MQTT_LAT_BUCKETS; b++)
        out->puback_lat[b] = LD(puback_lat[b]);
#undef LD
}
