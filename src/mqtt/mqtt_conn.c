/*
 * One MQTT connection: accept (the connection caps), bytes in (a buffer that
 * grows up to the frame bound), frames out (a write per frame, bounded in
 * bytes), CONNECT (the device's credentials through the intake),
 * SUBSCRIBE/UNSUBSCRIBE (its results topic only), PINGREQ, DISCONNECT, the
 * CONNECT deadline and keep-alive, and closing. PUBLISH goes to
 * mqtt_ingest.c. A malformed or refused frame closes its own connection and
 * nothing else.
 */
#include "core/err.h"
#include "core/ident.h"
#include "core/log.h"
#include "mqtt/mqtt_srv_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IN_CHUNK       4096
#define CLOSE_GRACE_MS 5000 /* a closing connection whose last frame is not sent by then is cut */

/* One write: the request and the bytes it sends. */
struct conn_write {
    uv_write_t req;
    struct mqtt_conn *c;
    size_t len;
    uint8_t data[];
};

static void conn__on_closed(uv_handle_t *h)
{
    struct mqtt_conn *c = h->data;
    struct mqtt_server *m = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    m->nconns--;
    if (c->sub_results) m->nsubs--;
    atomic_fetch_sub(&m->st.connections, 1);
    if (c->tls) gnutls_deinit(c->tls);
    free(c->tin);
    free(c->in);
    free(c);
}

void conn_close(struct mqtt_conn *c, const char *why)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
    if (!c->closing)
        LOG(LOG_INFO, "mqtt_close", "ip=%s device=%s reason=\"%s\"", c->addr,
            c->device_uuid[0] ? c->device_uuid : "-", why);
    c->closing = true;
    ingest_detach(c);
    uv_close((uv_handle_t *)&c->tcp, conn__on_closed);
}

static void conn__on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    struct mqtt_conn *c = req->data;
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, conn__on_closed);
}

void conn_close_after(struct mqtt_conn *c, const uint8_t *frame, int len, const char *why)
{
    if (c->closing) return;
    if (frame && len > 0) conn_send(c, frame, len);
    if (c->tls && c->tls_ready) gnutls_bye(c->tls, GNUTLS_SHUT_WR); /* pushes close_notify */
    LOG(LOG_INFO, "mqtt_close", "ip=%s device=%s reason=\"%s\"", c->addr,
        c->device_uuid[0] ? c->device_uuid : "-", why);
    c->closing = true;
    c->closing_since = uv_now(&c->srv->loop);
    ingest_detach(c);
    if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, conn__on_shutdown))
        uv_close((uv_handle_t *)&c->tcp, conn__on_closed);
}

static void conn__on_written(uv_write_t *req, int status)
{
    struct conn_write *w = (struct conn_write *)req;
    w->c->out_bytes -= w->len;
    if (status < 0 && status != UV_ECANCELED && !w->c->closing) conn_close(w->c, "write failed");
    free(w);
}

/* Queues bytes as they go on the wire (a frame, or TLS records). 0, or -1 (the caller closes). */
static int conn__write(struct mqtt_conn *c, const void *data, size_t len)
{
    struct conn_write *w = malloc(sizeof *w + len);
    if (!w) return -1;
    memcpy(w->data, data, len);
    w->c = c;
    w->len = len;
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn__on_written)) {
        free(w);
        return -1;
    }
    c->out_bytes += len;
    return 0;
}

void conn_send(struct mqtt_conn *c, const uint8_t *frame, int len)
{
    if (c->closing || len <= 0) return;
    size_t bound = c->srv->max_frame * MQTT_OUT_FRAMES_MAX;
    if (c->out_bytes + (size_t)len > bound) {
        conn_close(c, "the client does not read what it is sent");
        return;
    }
    /* Over TLS the frame goes through gnutls_record_send, which calls conn__tls_push. */
    int bad = c->tls ? !c->tls_ready || gnutls_record_send(c->tls, frame, (size_t)len) != len
                     : conn__write(c, frame, (size_t)len) != 0;
    if (bad) conn_close(c, "write failed");
}

/* GnuTLS's push: the records it made go out as one write. */
static ssize_t conn__tls_push(gnutls_transport_ptr_t p, const void *data, size_t len)
{
    struct mqtt_conn *c = p;
    if (conn__write(c, data, len)) {
        gnutls_transport_set_errno(c->tls, EPIPE);
        return -1;
    }
    return (ssize_t)len;
}

/* GnuTLS's wait for data: never waits (the loop calls back when bytes arrive). */
static int conn__tls_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
    (void)ms;
    struct mqtt_conn *c = p;
    return c->tin_len > c->tin_off ? 1 : 0;
}

/* GnuTLS's pull: what was read and not yet handed over, or EAGAIN. */
static ssize_t conn__tls_pull(gnutls_transport_ptr_t p, void *data, size_t len)
{
    struct mqtt_conn *c = p;
    size_t have = c->tin_len - c->tin_off;
    if (have == 0) {
        gnutls_transport_set_errno(c->tls, EAGAIN);
        return -1;
    }
    if (len > have) len = have;
    memcpy(data, c->tin + c->tin_off, len);
    c->tin_off += len;
    if (c->tin_off == c->tin_len) c->tin_off = c->tin_len = 0;
    return (ssize_t)len;
}

/* The per-address cap: connections from the same limit key. */
static size_t conn__same_key(struct mqtt_server *m, const char *key)
{
    size_t n = 0;
    for (struct mqtt_conn *c = m->conns; c; c = c->next)
        n += !c->closing && strcmp(c->key, key) == 0;
    return n;
}

/* Makes room for IN_CHUNK more bytes in *p (of *cap, *len used), up to limit; best effort. */
static void conn__grow(uint8_t **p, size_t *cap, size_t len, size_t limit)
{
    if (*cap - len >= IN_CHUNK || *cap >= limit) return;
    size_t n = *cap ? *cap * 2 : IN_CHUNK;
    if (n > limit) n = limit;
    uint8_t *q = realloc(*p, n);
    if (q) *p = q, *cap = n;
}

/* Reads go to in, or over TLS to tin (bounded alike: the frame bound and a chunk). */
static void conn__alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct mqtt_conn *c = h->data;
    size_t limit = c->srv->max_frame + IN_CHUNK;
    if (c->tls) {
        if (c->tin_off) { /* compact what the pull left */
            memmove(c->tin, c->tin + c->tin_off, c->tin_len - c->tin_off);
            c->tin_len -= c->tin_off;
            c->tin_off = 0;
        }
        conn__grow(&c->tin, &c->tin_cap, c->tin_len, limit);
        *buf = uv_buf_init((char *)c->tin + c->tin_len, (unsigned)(c->tin_cap - c->tin_len));
        return;
    }
    conn__grow(&c->in, &c->in_cap, c->in_len, limit);
    *buf = uv_buf_init((char *)c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

/* After the handshake: what the client certificate says, for CONNECT (TLS_CLIENT_AUTH). */
static void conn__peer_cert(struct mqtt_conn *c)
{
    struct tls_keys *k = c->srv->d.tls;
    if (tls_keys_client_auth(k) == TLS_CLIENT_OFF) return;
    if (tls_keys_peer_device(k, c->tls, c->cert.device, sizeof c->cert.device, &c->cert.refused) ==
        IOT_ENOTFOUND)
        c->cert.refused = NULL;
}

/*
 * Over TLS: the handshake, then every record that fits into in decrypted
 * (what does not fit waits in tin, or in GnuTLS, for the next call), then
 * the frames.
 */
static void conn__tls_pump(struct mqtt_conn *c)
{
    if (!c->tls_ready) {
        int r = gnutls_handshake(c->tls);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) return;
        if (r < 0) {
            char why[160];
            snprintf(why, sizeof why, "TLS handshake failed: %s", gnutls_strerror(r));
            conn_close(c, why);
            return;
        }
        c->tls_ready = true;
        conn__peer_cert(c);
    }
    size_t limit = c->srv->max_frame + IN_CHUNK;
    while (!c->closing) {
        conn__grow(&c->in, &c->in_cap, c->in_len, limit);
        if (c->in_cap == c->in_len) break;
        ssize_t r = gnutls_record_recv(c->tls, c->in + c->in_len, c->in_cap - c->in_len);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) break;
        if (r <= 0) {
            conn_close(c, r == 0 ? "closed by the client" : gnutls_strerror((int)r));
            return;
        }
        c->in_len += (size_t)r;
    }
    conn_process(c);
}

static void conn__on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct mqtt_conn *c = s->data;
    if (n < 0) {
        conn_close(c, n == UV_EOF ? "closed by the client" : uv_strerror((int)n));
        return;
    }
    if (n == 0) return;
    c->last_rx = uv_now(&c->srv->loop);
    if (c->tls) {
        c->tin_len += (size_t)n;
        conn__tls_pump(c);
        return;
    }
    c->in_len += (size_t)n;
    conn_process(c);
}

void conn_resume(struct mqtt_conn *c)
{
    if (c->closing || c->reading || c->npubs >= MQTT_INFLIGHT_MAX) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, conn__alloc, conn__on_read)) {
        conn_close(c, "cannot read");
        return;
    }
    c->reading = true;
    /* A PUBLISH from the client waited unread: the pause was not its silence. */
    c->last_rx = uv_now(&c->srv->loop);
    if (c->tls) /* records that waited, then the frames */
        conn__tls_pump(c);
    else
        conn_process(c); /* frames that waited in the buffer */
}

void conn_accept(struct mqtt_server *m, uv_stream_t *listener)
{
    bool tls = listener == (uv_stream_t *)&m->listener_tls;
    struct mqtt_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = m;
    if (uv_tcp_init(&m->loop, &c->tcp)) {
        free(c);
        return;
    }
    c->tcp.data = c;
    c->next = m->conns;
    if (m->conns) m->conns->prev = c;
    m->conns = c;
    m->nconns++;
    atomic_fetch_add(&m->st.connections, 1);
    c->opened = c->last_rx = uv_now(&m->loop);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp)) {
        conn_close(c, "accept failed");
        return;
    }
    struct sockaddr_storage peer;
    int len = sizeof peer;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &len) ||
        addr_peer_text((struct sockaddr *)&peer, c->addr))
        snprintf(c->addr, sizeof c->addr, "unknown");
    addr_limit_key(c->addr, (unsigned)m->d.cfg->rate_limit_ipv6_prefix, c->key);
    const struct config *cfg = m->d.cfg;
    int per_ip = cfg->mqtt_max_connections_per_ip;
    if (m->nconns > (size_t)cfg->mqtt_max_connections ||
        (per_ip > 0 && conn__same_key(m, c->key) > (size_t)per_ip)) {
        MQTT_COUNT(m, refused_at_accept);
        conn_close(c, "too many connections");
        return;
    }
    c->cert.required = tls_keys_client_auth(m->d.tls) == TLS_CLIENT_REQUIRED;
    if (tls) {
        if (tls_keys_session_new(m->d.tls, &c->tls)) {
            conn_close(c, "out of memory");
            return;
        }
        gnutls_transport_set_ptr(c->tls, c);
        gnutls_transport_set_push_function(c->tls, conn__tls_push);
        gnutls_transport_set_pull_function(c->tls, conn__tls_pull);
        gnutls_transport_set_pull_timeout_function(c->tls, conn__tls_pull_timeout);
        gnutls_handshake_set_timeout(c->tls, 0); /* MQTT_CONNECT_TIMEOUT_S bounds it */
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_resume(c);
}

/* MQTT 5 CONNACK properties: what this server supports (SPEC §11). */
static void conn__connack_props(struct mqtt_conn *c, const struct mqtt_connect *k,
                                struct mqtt_props *p)
{
    memset(p, 0, sizeof *p);
    p->present = MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_QOS) | MQTT_PROP_BIT(MQTT_PROP_RETAIN_AVAILABLE) |
                 MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE) |
                 MQTT_PROP_BIT(MQTT_PROP_WILDCARD_SUB_AVAILABLE) |
                 MQTT_PROP_BIT(MQTT_PROP_SUB_ID_AVAILABLE) |
                 MQTT_PROP_BIT(MQTT_PROP_SHARED_SUB_AVAILABLE) |
                 MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM);
    p->maximum_qos = 1;
    p->maximum_packet_size = (uint32_t)c->srv->max_frame;
    p->receive_maximum = MQTT_INFLIGHT_MAX;
    if (k->client_id.len == 0) { /* a client without an id gets its device's */
        p->present |= MQTT_PROP_BIT(MQTT_PROP_ASSIGNED_CLIENT_ID);
        p->assigned_client_id = (struct mqtt_str){c->device_uuid, strlen(c->device_uuid)};
    }
}

/* Refuses a CONNECT with reason (MQTT 5) or its 3.1.1 code, and closes. */
static void conn__refuse(struct mqtt_conn *c, int version, uint8_t reason, const char *why)
{
    uint8_t f[16];
    MQTT_COUNT(c->srv, connects_refused);
    int n = mqtt_encode_connack(f, sizeof f, version, false, reason, NULL);
    c->device_uuid[0] = 0;
    conn_close_after(c, f, n, why);
}

/*
 * CONNECT: user name = device_uuid, password = its key (never the API key).
 * The claim goes through the intake as an HTTP request's does: lockout
 * first, then the lookup and the key, a refusal spends the budgets. A will
 * is refused: it would be a publication on the device's behalf to a topic
 * it may not publish to. The lookup may query the database (a resolver
 * miss) on this thread; see docs/mqtt.md.
 */
static void conn__connect(struct mqtt_conn *c, const struct mqtt_connect *k)
{
    struct mqtt_server *m = c->srv;
    int v = k->version;
    if (k->will) return conn__refuse(c, v, MQTT_RC_NOT_AUTHORIZED, "a will is not accepted");
    if (v == MQTT_V311 && k->client_id.len == 0 && !k->clean_start)
        return conn__refuse(c, v, MQTT_RC_CLIENT_ID_INVALID,
                            "empty client id without clean session");
    char uuid[STORE_UUID_MAX + 1] = "";
    bool uuid_ok = k->has_username && ident_valid(k->username.p, k->username.len, STORE_UUID_MAX);
    if (uuid_ok) {
        memcpy(uuid, k->username.p, k->username.len);
        uuid[k->username.len] = 0;
    }
    struct intake_claim claim = {c->key, uuid, NULL, 0, NULL, 0, 0, NULL};
    if (k->has_password) {
        claim.device_key = (const char *)k->password.p;
        claim.device_key_len = k->password.len;
    }
    /* With TLS_CLIENT_AUTH on, every connection shows its certificate, or that it has none. */
    if (tls_keys_client_auth(m->d.tls) != TLS_CLIENT_OFF) claim.cert = &c->cert;
    bool has_cert = claim.cert && (c->cert.device[0] || c->cert.refused);
    int retry = intake_locked_out(m->d.intake, &claim);
    if (retry)
        return conn__refuse(c, v, MQTT_RC_CONNECTION_RATE_EXCEEDED,
                            "too many failed authentications");
    const struct device_ref *dref = NULL;
    if (uuid_ok) {
        int rc = resolver_get(m->d.resolver, uuid, &dref);
        if (rc && rc != IOT_ENOTFOUND)
            return conn__refuse(c, v, MQTT_RC_SERVER_UNAVAILABLE, iot_strerror(rc));
    }
    enum intake_auth a;
    if (claim.device_key || has_cert)
        a = intake_authenticate(m->d.intake, &claim, dref ? &dref->dev : NULL, &retry);
    else {
        intake_failed(m->d.intake, &claim, &retry);
        a = INTAKE_AUTH_DENIED;
    }
    resolver_release(m->d.resolver, dref);
    if (a == INTAKE_AUTH_INACTIVE)
        return conn__refuse(c, v, MQTT_RC_NOT_AUTHORIZED, "device inactive");
    if (a != INTAKE_AUTH_OK) {
        const char *why = c->cert.refused                          ? c->cert.refused
                          : c->cert.device[0]                      ? "the client certificate names "
                                                                     "another device"
                          : c->cert.required && !c->cert.device[0] ? "no client certificate"
                                                                   : "not authorized";
        return conn__refuse(c, v, retry ? MQTT_RC_CONNECTION_RATE_EXCEEDED : MQTT_RC_NOT_AUTHORIZED,
                            why);
    }
    memcpy(c->device_uuid, uuid, sizeof uuid);
    c->version = v;
    c->keep_alive = k->keep_alive;
    if (v == MQTT_V5 && (k->props.present & MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE)))
        c->max_out = k->props.maximum_packet_size;
    struct mqtt_props props;
    conn__connack_props(c, k, &props);
    uint8_t f[256];
    int n = mqtt_encode_connack(f, sizeof f, v, false, MQTT_RC_SUCCESS, &props);
    MQTT_COUNT(m, connects_accepted);
    LOG(LOG_INFO, "mqtt_connect", "ip=%s device=%s version=%d keep_alive=%u", c->addr,
        c->device_uuid, v == MQTT_V5 ? 5 : 3, (unsigned)c->keep_alive);
    conn_send(c, f, n);
}

/* 1 if the filter (or topic) is devices/{this device}/{leaf}. */
int conn_topic_is(const struct mqtt_conn *c, const char *t, size_t n, const char *leaf)
{
    char want[STORE_UUID_MAX + 32];
    int w = snprintf(want, sizeof want, "devices/%s/%s", c->device_uuid, leaf);
    return w > 0 && (size_t)w == n && memcmp(want, t, n) == 0;
}

static void conn__subscribe(struct mqtt_conn *c, const struct mqtt_sublist *l, bool sub)
{
    uint8_t codes[64], f[128];
    size_t pos = 0, i = 0;
    struct mqtt_str filter;
    uint8_t opts;
    if (l->count > sizeof codes)
        return conn_close_after(c, NULL, 0, "too many topic filters in one (UN)SUBSCRIBE");
    while (mqtt_sublist_next(l, &pos, &filter, &opts)) {
        bool ours = conn_topic_is(c, filter.p, filter.len, "results");
        if (sub)
            codes[i++] = ours ? MQTT_RC_SUCCESS : MQTT_RC_NOT_AUTHORIZED;
        else
            codes[i++] = ours && c->sub_results ? MQTT_RC_SUCCESS : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
        if (ours && c->sub_results != sub) {
            c->sub_results = sub;
            c->srv->nsubs += sub ? 1 : (size_t)-1;
        }
    }
    int n = sub ? mqtt_encode_suback(f, sizeof f, c->version, l->packet_id, codes, i, NULL)
                : mqtt_encode_unsuback(f, sizeof f, c->version, l->packet_id, codes, i, NULL);
    conn_send(c, f, n);
}

/* A frame that breaks the protocol or the gateway's policy: answer as the codec says, close. */
static void conn__broken(struct mqtt_conn *c, const struct mqtt_frame *f)
{
    uint8_t out[16];
    int n = 0;
    MQTT_COUNT(c->srv, closed_malformed);
    if (f->type == MQTT_CONNECT && c->version == 0) {
        int v = f->u.connect.version == MQTT_V5 ? MQTT_V5 : MQTT_V311;
        n = mqtt_encode_connack(out, sizeof out, v, false, f->reason, NULL);
    } else if (c->version == MQTT_V5) {
        n = mqtt_encode_disconnect(out, sizeof out, MQTT_V5, f->reason, NULL);
    }
    char why[160];
    snprintf(why, sizeof why, "malformed or refused frame: %s", f->error ? f->error : "?");
    conn_close_after(c, out, n, why);
}

/* One decoded frame. */
static void conn__frame(struct mqtt_conn *c, const struct mqtt_frame *f)
{
    uint8_t out[8];
    switch (f->type) {
    case MQTT_CONNECT:
        return conn__connect(c, &f->u.connect);
    case MQTT_PUBLISH:
        return ingest_publish(c, &f->u.publish);
    case MQTT_SUBSCRIBE:
        return conn__subscribe(c, &f->u.subscribe, true);
    case MQTT_UNSUBSCRIBE:
        return conn__subscribe(c, &f->u.subscribe, false);
    case MQTT_PINGREQ:
        return conn_send(c, out, mqtt_encode_pingresp(out, sizeof out));
    case MQTT_DISCONNECT:
        return conn_close(c, "DISCONNECT");
    default:
        return; /* PUBACK: the server sends QoS 0 only, there is nothing to acknowledge */
    }
}

void conn_process(struct mqtt_conn *c)
{
    size_t off = 0;
    while (!c->closing && c->reading && off < c->in_len) {
        /*
         * Back-pressure: a PUBLISH past the in-flight cap waits, unread, until
         * one finishes. Other frames go on (a PINGREQ behind the Receive
         * Maximum's worth of packets is answered).
         */
        if (c->npubs >= MQTT_INFLIGHT_MAX && (c->in[off] >> 4) == MQTT_PUBLISH) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
            break;
        }
        struct mqtt_frame f;
        size_t used = 0;
        int rc =
            mqtt_decode(c->in + off, c->in_len - off, c->srv->max_frame, c->version, &f, &used);
        if (rc == MQTT_NEED_MORE) break;
        if (rc) {
            conn__broken(c, &f);
            break;
        }
        conn__frame(c, &f);
        off += used;
    }
    if (c->closing) {
        c->in_len = 0;
    } else if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

void conn_tick(struct mqtt_conn *c, uint64_t now)
{
    struct mqtt_server *m = c->srv;
    if (c->closing) {
        if (now - c->closing_since > CLOSE_GRACE_MS && !uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, conn__on_closed);
        return;
    }
    if (c->version == 0 && now - c->opened > (uint64_t)m->d.cfg->mqtt_connect_timeout_s * 1000) {
        MQTT_COUNT(m, closed_keepalive);
        return conn_close(c, "no CONNECT in time");
    }
    /*
     * [MQTT-3.1.2-24]: one and a half times the keep-alive without a packet;
     * not while reading waits for the packets in flight (conn_process).
     */
    if (c->version && c->keep_alive && c->reading &&
        now - c->last_rx > (uint64_t)c->keep_alive * 1500) {
        MQTT_COUNT(m, closed_keepalive);
        return conn_close(c, "keep-alive expired");
    }
    ingest_run_held(c, now);
}
