/*
 * The slow-client guard (see conn_guard.h for what it enforces).
 *
 * Each connection's state is one atomic word, (generation << 3) | phase. The
 * connection's thread moves it WAIT/HEAD -> BODY -> BUSY -> WAIT, bumping the
 * generation; the housekeeper moves WAIT -> HEAD when it sees a new byte and
 * anything -> DEAD when a deadline passes, each with a compare-and-swap on
 * the word it read, so it never acts on a request that has moved on. DEAD is
 * final: the handler then returns MHD_NO, so libmicrohttpd never writes to a
 * socket the housekeeper has written its 408 to.
 *
 * The first byte of a request is seen from outside libmicrohttpd: the
 * kernel's count of bytes received on the socket (TCP_INFO) is recorded when
 * a request ends, and a connection in WAIT whose count has grown has begun
 * its next request. So an idle keep-alive connection stays governed by
 * HTTP_IDLE_TIMEOUT_S alone, and the header clock starts at most one scan
 * (500 ms) late.
 *
 * Locking: the slot table has one mutex, taken once per connection open and
 * close and by the housekeeper per chunk of slots; libmicrohttpd calls
 * NOTIFY_CLOSED before it closes the socket, so under that mutex a tracked
 * fd is always still the connection's. Per request the handler does a few
 * atomic operations and, when a request ends, one getsockopt.
 */
#include "http/conn_guard.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "http/client_ip.h"
#include "http/conn_count.h"

#include <jansson.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define CG_SCAN_MS      500
#define CG_CHUNK        256 /* slots examined per hold of the lock */
#define CG_SLACK        64  /* slots beyond HTTP_MAX_CONNECTIONS, for connections being torn down */
#define CG_LOG_EVERY_MS 10000
#define CG_PHASE_MASK   7u
#define CG_REPLY_MAX    512

struct conn_guard_conn {
    struct conn_guard *g;
    int fd;
    size_t slot;                   /* index in g->slots, or SIZE_MAX when untracked */
    struct conn_count_entry *ip;   /* this connection's share of its address's count */
    _Atomic uint64_t state;        /* (generation << 3) | enum conn_phase */
    _Atomic uint64_t mark;         /* WAIT: TCP bytes received when the wait began */
    _Atomic int64_t first_byte_ms; /* HEAD: when the housekeeper saw the first byte */
    _Atomic int64_t body_start_ms; /* BODY: when the headers were complete */
    _Atomic uint64_t body_bytes;   /* BODY: body bytes so far */
};

struct conn_guard {
    atomic_bool door_closed; /* shutdown: refuse every new connection */
    struct conn_guard_limits lim;
    unsigned per_ip; /* 0 = off */
    unsigned v6_prefix;
    const struct cidr_list *trusted;
    struct conn_count *counts;

    pthread_mutex_t lock; /* slots, nfree, top */
    struct conn_guard_conn **slots;
    size_t nslots, top, nfree;
    size_t *free_slots;

    pthread_t thread;
    int thread_ok;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cv;
    int stopping;

    atomic_ullong n_header, n_body, n_refused;
    unsigned long long logged_header, logged_body, logged_refused;
    int64_t last_log_ms;

    char reply_header[CG_REPLY_MAX], reply_body[CG_REPLY_MAX];
    size_t reply_header_len, reply_body_len;
};

/* A reservation made by the accept policy, claimed by NOTIFY_STARTED on the same thread. */
static _Thread_local struct {
    struct conn_guard *g;
    struct conn_count_entry *e;
} cg__pending;

enum conn_verdict conn_guard_verdict(const struct conn_guard_limits *l, enum conn_phase ph,
                                     int64_t since_ms, uint64_t body_bytes, int64_t now_ms)
{
    int64_t elapsed = now_ms - since_ms;
    if (ph == CONN_HEAD) return elapsed > l->header_timeout_ms ? CONN_HEADER_TIMEOUT : CONN_KEEP;
    if (ph != CONN_BODY || l->body_min_rate <= 0 || elapsed <= l->body_grace_ms) return CONN_KEEP;
    return (double)body_bytes * 1000.0 < l->body_min_rate * (double)elapsed ? CONN_BODY_TOO_SLOW
                                                                            : CONN_KEEP;
}

static enum conn_phase cg__phase(uint64_t s)
{
    return (enum conn_phase)(s & CG_PHASE_MASK);
}

/*
 * The connection's thread moves gc to phase to if it is in one of the phases
 * of from_mask (bits 1 << phase), with a new generation. Returns 0 if gc is
 * DEAD, else 1 (also when it was in no phase of from_mask: nothing to do).
 */
static int cg__move(struct conn_guard_conn *gc, unsigned from_mask, enum conn_phase to)
{
    uint64_t s = atomic_load(&gc->state), n;
    do {
        if (!(from_mask & (1u << cg__phase(s)))) return cg__phase(s) != CONN_DEAD;
        n = (((s >> 3) + 1) << 3) | (uint64_t)to;
    } while (!atomic_compare_exchange_weak(&gc->state, &s, n));
    return 1;
}

/* Bytes the kernel has received on fd so far; 0 with *ok = 0 if unknown. */
static uint64_t cg__bytes_received(int fd, int *ok)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    *ok = getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
          len >= offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received;
    return *ok ? ti.tcpi_bytes_received : 0;
}

/* Writes the 408 (best effort: never blocks) and ends the stream both ways. */
static void cg__close(struct conn_guard *g, struct conn_guard_conn *gc, enum conn_verdict v)
{
    const char *r = v == CONN_HEADER_TIMEOUT ? g->reply_header : g->reply_body;
    size_t n = v == CONN_HEADER_TIMEOUT ? g->reply_header_len : g->reply_body_len;
    (void)!send(gc->fd, r, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    shutdown(gc->fd, SHUT_RDWR);
    atomic_fetch_add_explicit(v == CONN_HEADER_TIMEOUT ? &g->n_header : &g->n_body, 1,
                              memory_order_relaxed);
}

/* One connection, lock held: notice a first byte, or close past a deadline. */
static void cg__check(struct conn_guard *g, struct conn_guard_conn *gc, int64_t now)
{
    uint64_t s = atomic_load(&gc->state);
    enum conn_phase ph = cg__phase(s);
    int64_t since;
    if (ph == CONN_WAIT) {
        int ok;
        uint64_t b = cg__bytes_received(gc->fd, &ok);
        if (ok && b <= atomic_load_explicit(&gc->mark, memory_order_relaxed)) return;
        atomic_store_explicit(&gc->first_byte_ms, now, memory_order_relaxed);
        atomic_compare_exchange_strong(&gc->state, &s, (s & ~(uint64_t)CG_PHASE_MASK) | CONN_HEAD);
        return;
    }
    if (ph == CONN_HEAD)
        since = atomic_load_explicit(&gc->first_byte_ms, memory_order_relaxed);
    else if (ph == CONN_BODY)
        since = atomic_load_explicit(&gc->body_start_ms, memory_order_relaxed);
    else
        return;
    enum conn_verdict v = conn_guard_verdict(
        &g->lim, ph, since, atomic_load_explicit(&gc->body_bytes, memory_order_relaxed), now);
    if (v == CONN_KEEP) return;
    if (atomic_compare_exchange_strong(&gc->state, &s, (s & ~(uint64_t)CG_PHASE_MASK) | CONN_DEAD))
        cg__close(g, gc, v);
}

/* At most one line per CG_LOG_EVERY_MS, with what happened since the last one. */
static void cg__log(struct conn_guard *g, int64_t now)
{
    struct conn_guard_stats st;
    conn_guard_stats(g, &st);
    if (st.header_timeouts == g->logged_header && st.body_too_slow == g->logged_body &&
        st.refused_per_ip == g->logged_refused)
        return;
    if (g->last_log_ms && now - g->last_log_ms < CG_LOG_EVERY_MS) return;
    LOG(LOG_WARN, "slow_clients",
        "header_timeouts=%llu body_too_slow=%llu refused_per_address=%llu since_last=%.1fs",
        st.header_timeouts - g->logged_header, st.body_too_slow - g->logged_body,
        st.refused_per_ip - g->logged_refused,
        g->last_log_ms ? (double)(now - g->last_log_ms) / 1000.0 : 0.0);
    g->logged_header = st.header_timeouts;
    g->logged_body = st.body_too_slow;
    g->logged_refused = st.refused_per_ip;
    g->last_log_ms = now;
}

static void cg__scan(struct conn_guard *g)
{
    int64_t now = clock_mono_ms();
    for (size_t i = 0, done = 0; !done; i += CG_CHUNK) {
        pthread_mutex_lock(&g->lock);
        size_t end = i + CG_CHUNK < g->top ? i + CG_CHUNK : g->top;
        for (size_t j = i; j < end; j++)
            if (g->slots[j]) cg__check(g, g->slots[j], now);
        done = end >= g->top;
        pthread_mutex_unlock(&g->lock);
    }
    cg__log(g, now);
}

static void *cg__housekeeper(void *arg)
{
    struct conn_guard *g = arg;
    pthread_mutex_lock(&g->stop_lock);
    while (!g->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += CG_SCAN_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&g->stop_cv, &g->stop_lock, &ts);
        if (g->stopping) break;
        pthread_mutex_unlock(&g->stop_lock);
        cg__scan(g);
        pthread_mutex_lock(&g->stop_lock);
    }
    pthread_mutex_unlock(&g->stop_lock);
    return NULL;
}

/* The canned 408 for one verdict: the usual {detail, code} body, then close. 0 if it fails. */
static size_t cg__reply(char *out, const char *detail)
{
    json_t *o = json_object();
    json_object_set_new(o, "detail", json_string(detail));
    json_object_set_new(o, "code", json_string("request_timeout"));
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!body) return 0;
    int n = snprintf(out, CG_REPLY_MAX,
                     "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    free(body);
    return n > 0 && n < CG_REPLY_MAX ? (size_t)n : 0;
}

static int cg__start_thread(struct conn_guard *g)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) return IOT_EIO;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
             pthread_cond_init(&g->stop_cv, &ca) != 0 ||
             pthread_mutex_init(&g->stop_lock, NULL) != 0;
    pthread_condattr_destroy(&ca);
    if (rc) return IOT_EIO;
    if (pthread_create(&g->thread, NULL, cg__housekeeper, g) != 0) return IOT_EIO;
    g->thread_ok = 1;
    return 0;
}

int conn_guard_create(const struct config *cfg, const struct cidr_list *trusted,
                      struct conn_guard **out)
{
    *out = NULL;
    struct conn_guard *g = calloc(1, sizeof *g);
    if (!g) return IOT_ENOMEM;
    g->lim.header_timeout_ms = cfg->http_header_timeout_s * 1000;
    g->lim.body_grace_ms = g->lim.header_timeout_ms;
    g->lim.body_min_rate = cfg->http_body_min_rate;
    g->v6_prefix = (unsigned)cfg->rate_limit_ipv6_prefix;
    g->trusted = trusted;
    g->per_ip = (unsigned)cfg->http_max_connections_per_ip;
    unsigned half = (unsigned)(cfg->http_max_connections / 2);
    if (g->per_ip > half) {
        LOG(LOG_WARN, "config",
            "HTTP_MAX_CONNECTIONS_PER_IP=%u lowered to %u, half of HTTP_MAX_CONNECTIONS, so that "
            "one address cannot take every connection",
            g->per_ip, half);
        g->per_ip = half;
    }
    char d[160];
    snprintf(d, sizeof d, "the request headers did not arrive within %lld s",
             (long long)cfg->http_header_timeout_s);
    g->reply_header_len = cg__reply(g->reply_header, d);
    snprintf(d, sizeof d, "the request body arrived slower than %g bytes/s",
             cfg->http_body_min_rate);
    g->reply_body_len = cg__reply(g->reply_body, d);

    g->nslots = (size_t)cfg->http_max_connections + CG_SLACK;
    g->slots = calloc(g->nslots, sizeof *g->slots);
    g->free_slots = calloc(g->nslots, sizeof *g->free_slots);
    int rc = g->slots && g->free_slots ? 0 : IOT_ENOMEM;
    if (!rc && g->per_ip) rc = conn_count_create(g->per_ip, g->nslots, &g->counts);
    if (!rc && pthread_mutex_init(&g->lock, NULL) != 0) rc = IOT_EIO;
    if (!rc) rc = cg__start_thread(g);
    if (rc) {
        conn_guard_destroy(g);
        return rc;
    }
    *out = g;
    return 0;
}

void conn_guard_destroy(struct conn_guard *g)
{
    if (!g) return;
    if (g->thread_ok) {
        pthread_mutex_lock(&g->stop_lock);
        g->stopping = 1;
        pthread_cond_signal(&g->stop_cv);
        pthread_mutex_unlock(&g->stop_lock);
        pthread_join(g->thread, NULL);
    }
    for (size_t i = 0; g->slots && i < g->top; i++)
        free(g->slots[i]); /* only if libmicrohttpd never reported their close */
    conn_count_destroy(g->counts);
    free(g->slots);
    free(g->free_slots);
    free(g);
}

unsigned conn_guard_per_ip_limit(const struct conn_guard *g)
{
    return g->per_ip;
}

void conn_guard_stats(struct conn_guard *g, struct conn_guard_stats *out)
{
    out->header_timeouts = atomic_load_explicit(&g->n_header, memory_order_relaxed);
    out->body_too_slow = atomic_load_explicit(&g->n_body, memory_order_relaxed);
    out->refused_per_ip = atomic_load_explicit(&g->n_refused, memory_order_relaxed);
}

/* Gives back a reservation this thread made and no connection claimed. */
static void cg__drop_pending(void)
{
    if (cg__pending.e) conn_count_release(cg__pending.g->counts, cg__pending.e);
    cg__pending.g = NULL;
    cg__pending.e = NULL;
}

/* One connection of addr's key, or NULL: cap off, a trusted proxy, or (unless force) at the cap. */
static struct conn_count_entry *cg__take(struct conn_guard *g, const struct sockaddr *addr,
                                         int force, int *refused)
{
    char ip[CLIENT_IP_LEN], key[CLIENT_IP_LEN];
    *refused = 0;
    if (!g->per_ip || !addr || cidr_list_contains(g->trusted, addr)) return NULL;
    if (client_ip_resolve(addr, NULL, NULL, ip) != 0) snprintf(ip, sizeof ip, "unknown");
    client_ip_limit_key(ip, g->v6_prefix, key);
    struct conn_count_entry *e = conn_count_take(g->counts, key, force);
    *refused = !e;
    return e;
}

void conn_guard_close_door(struct conn_guard *g)
{
    atomic_store(&g->door_closed, true);
}

enum MHD_Result conn_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addrlen;
    struct conn_guard *g = cls;
    int refused;
    cg__drop_pending();
    if (atomic_load_explicit(&g->door_closed, memory_order_relaxed)) return MHD_NO;
    struct conn_count_entry *e = cg__take(g, addr, 0, &refused);
    if (refused) {
        atomic_fetch_add_explicit(&g->n_refused, 1, memory_order_relaxed);
        return MHD_NO;
    }
    cg__pending.g = g;
    cg__pending.e = e;
    return MHD_YES;
}

/* NOTIFY_STARTED: track c, with the reservation its accept made. */
static struct conn_guard_conn *cg__started(struct conn_guard *g, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct conn_guard_conn *gc = calloc(1, sizeof *gc);
    if (!gc || !fi) {
        /* Untracked, it would escape every deadline: end it now. */
        if (fi) shutdown(fi->connect_fd, SHUT_RDWR);
        free(gc);
        cg__drop_pending();
        return NULL;
    }
    gc->g = g;
    gc->fd = fi->connect_fd;
    if (cg__pending.g == g && cg__pending.e) {
        gc->ip = cg__pending.e;
        cg__pending.e = NULL;
    } else {
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        int refused;
        gc->ip = cg__take(g, ai ? ai->client_addr : NULL, 1, &refused);
    }
    pthread_mutex_lock(&g->lock);
    gc->slot = g->nfree ? g->free_slots[--g->nfree] : g->top < g->nslots ? g->top++ : SIZE_MAX;
    if (gc->slot != SIZE_MAX) g->slots[gc->slot] = gc;
    pthread_mutex_unlock(&g->lock);
    if (gc->slot == SIZE_MAX) shutdown(gc->fd, SHUT_RDWR);
    return gc;
}

/* NOTIFY_CLOSED (before libmicrohttpd closes the socket): forget gc. */
static void cg__closed(struct conn_guard *g, struct conn_guard_conn *gc)
{
    pthread_mutex_lock(&g->lock);
    if (gc->slot != SIZE_MAX) {
        g->slots[gc->slot] = NULL;
        g->free_slots[g->nfree++] = gc->slot;
    }
    pthread_mutex_unlock(&g->lock);
    conn_count_release(g->counts, gc->ip);
    free(gc);
}

void conn_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode code)
{
    struct conn_guard *g = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        /*
         * No Nagle: a TLS handshake's flight goes out in several small writes,
         * and each would wait for the client's delayed ACK (40 ms).
         */
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        int one = 1;
        if (fd) setsockopt(fd->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        *socket_context = cg__started(g, c);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        cg__closed(g, *socket_context);
        *socket_context = NULL;
    }
}

struct conn_guard_conn *conn_guard_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

int conn_guard_headers_done(struct conn_guard_conn *gc, int answered)
{
    if (!gc) return 1;
    atomic_store_explicit(&gc->body_start_ms, clock_mono_ms(), memory_order_relaxed);
    atomic_store_explicit(&gc->body_bytes, 0, memory_order_relaxed);
    return cg__move(gc, 1u << CONN_WAIT | 1u << CONN_HEAD, answered ? CONN_BUSY : CONN_BODY);
}

int conn_guard_body(struct conn_guard_conn *gc, size_t n)
{
    if (!gc) return 1;
    atomic_fetch_add_explicit(&gc->body_bytes, n, memory_order_relaxed);
    return cg__phase(atomic_load_explicit(&gc->state, memory_order_relaxed)) != CONN_DEAD;
}

int conn_guard_body_done(struct conn_guard_conn *gc)
{
    return gc ? cg__move(gc, 1u << CONN_BODY, CONN_BUSY) : 1;
}

int conn_guard_request_done(struct conn_guard_conn *gc)
{
    if (!gc) return 0;
    int ok;
    uint64_t b = cg__bytes_received(gc->fd, &ok);
    atomic_store_explicit(&gc->mark, b, memory_order_relaxed);
    return !cg__move(gc, 1u << CONN_HEAD | 1u << CONN_BODY | 1u << CONN_BUSY, CONN_WAIT);
}
