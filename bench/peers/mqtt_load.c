/*
 * The MQTT load of `make bench`: the HTTP workload's packets, published to the
 * gateway's MQTT listener at QoS 1 instead of POSTed.
 *
 *   mqtt_load [-c N] [-d SECS] [-w SECS] [-k K] [-t SECS] [-5] HOST PORT BODIES.tsv
 *
 * BODIES.tsv is what bench/gen_bodies.sh writes for wrk (HEADER<TAB>KEY<TAB>BODY,
 * one packet a line). Each of the N connections (-c, 64) is one device of that
 * file (connection i: the i-th device, modulo the devices): it CONNECTs with
 * MQTT 3.1.1 (-5: MQTT 5), user name = the body's device_uuid, password = its
 * key, clean session, no keep-alive, and then publishes that device's bodies in
 * turn, unchanged, to devices/{device_uuid}/packets at QoS 1 with K (-k, 1)
 * PUBLISHes in flight: a closed loop, as wrk's keep-alive connections are.
 * One thread, epoll.
 *
 * After -w seconds of warm-up (0 by default: bench/run.sh warms up with a run
 * of its own, as it does with wrk), -d seconds (10) are measured; a PUBACK
 * counts when it arrives in that window for a PUBLISH sent in it. Latency is
 * PUBLISH written to PUBACK read. Then one line in the format of
 * bench/packets.lua's, which bench/run.sh parses:
 *
 *   BENCH requests=PUBACKS duration_us=... bytes=READ non2xx=... connect_errors=...
 *         read_errors=... write_errors=... timeouts=... p50_us=... p90_us=... p99_us=... max_us=...
 *
 * non2xx: PUBACKs with a reason code of 0x80 or more (MQTT 5 only; 3.1.1 has
 * none, and the gateway closes the connection instead). connect_errors: TCP
 * connects that failed and CONNACKs that refused (a refused connection stays
 * closed: its credentials will not change). read_errors: the gateway closed or
 * reset a connection, sent a DISCONNECT or a frame that makes no sense here;
 * write_errors: a send failed; timeouts: PUBLISHes not acknowledged within -t
 * seconds (10). Each of these but a refusal reconnects the connection, and
 * what it had in flight is lost. Exits 1 when nothing was acknowledged.
 * Bench-only code.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INFLIGHT_MAX 64          /* the gateway's Receive Maximum */
#define IN_BUF       4096        /* the gateway sends us small frames only */
#define SWEEP_NS     10000000LL  /* timeouts and reconnects are looked at every 10 ms */
#define RETRY_NS     100000000LL /* a failed TCP connect is tried again after 100 ms */

struct body {
    uint8_t *frame; /* the whole PUBLISH, its packet identifier at pid_off */
    size_t len, pid_off;
};

struct device {
    char *uuid, *key;
    size_t *bodies, nbodies;
};

struct slot {
    uint16_t pid;
    int64_t sent;
};

enum cstate { C_RETRY, C_TCP, C_CONNACK, C_READY, C_DEAD };

struct conn {
    int fd;
    enum cstate state;
    int64_t since; /* when the state was entered; C_RETRY: when to connect */
    struct device *dev;
    size_t next; /* the next body, an index into dev->bodies (modulo) */
    uint16_t pid;
    struct slot fly[INFLIGHT_MAX];
    int nfly;
    uint8_t in[IN_BUF];
    size_t in_len;
    uint8_t *out; /* what a send could not take yet */
    size_t out_len, out_cap;
    bool want_out;
};

static struct {
    uint64_t requests, bytes, non2xx, connect_errors, read_errors, write_errors, timeouts;
    uint32_t *lat;
    size_t nlat, cap;
} st;

static struct body *bodies;
static struct device *devices;
static size_t nbodies, ndevices;
static struct addrinfo *peer;
static int ep, inflight = 1, mqtt5;
static int64_t now, t_meas, timeout_ns = 10000000000LL;
static const char *refusal; /* the first CONNACK refusal, for stderr */

static int64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static bool measuring(void)
{
    return now >= t_meas;
}

static void count(uint64_t *counter)
{
    if (measuring()) (*counter)++;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "mqtt_load: out of memory\n");
        exit(2);
    }
    return p;
}

/* MQTT's Variable Byte Integer (a Remaining Length); returns the bytes written. */
static size_t put_varint(uint8_t *p, size_t v)
{
    size_t n = 0;
    do {
        p[n] = (uint8_t)(v % 128);
        v /= 128;
        if (v) p[n] |= 128;
        n++;
    } while (v);
    return n;
}

static size_t put_str(uint8_t *p, const char *s, size_t len)
{
    p[0] = (uint8_t)(len >> 8);
    p[1] = (uint8_t)len;
    memcpy(p + 2, s, len);
    return len + 2;
}

static struct device *device_of(const char *uuid, size_t len, const char *key)
{
    for (size_t i = 0; i < ndevices; i++)
        if (strlen(devices[i].uuid) == len && memcmp(devices[i].uuid, uuid, len) == 0)
            return &devices[i];
    devices = xrealloc(devices, (ndevices + 1) * sizeof *devices);
    struct device *d = &devices[ndevices++];
    *d = (struct device){strndup(uuid, len), strdup(key), NULL, 0};
    if (!d->uuid || !d->key) {
        fprintf(stderr, "mqtt_load: out of memory\n");
        exit(2);
    }
    return d;
}

/* One PUBLISH (QoS 1) of a body to its device's packets topic. */
static void body_add(struct device *d, const char *payload, size_t plen)
{
    char topic[512];
    int tlen = snprintf(topic, sizeof topic, "devices/%s/packets", d->uuid);
    if (tlen < 0 || (size_t)tlen >= sizeof topic) {
        fprintf(stderr, "mqtt_load: device_uuid too long: %s\n", d->uuid);
        exit(2);
    }
    size_t rl = 2 + (size_t)tlen + 2 + (mqtt5 ? 1 : 0) + plen;
    struct body *b;
    bodies = xrealloc(bodies, (nbodies + 1) * sizeof *bodies);
    b = &bodies[nbodies];
    b->frame = xrealloc(NULL, rl + 5);
    b->frame[0] = 0x32; /* PUBLISH, QoS 1 */
    size_t n = 1 + put_varint(b->frame + 1, rl);
    n += put_str(b->frame + n, topic, (size_t)tlen);
    b->pid_off = n;
    n += 2;
    if (mqtt5) b->frame[n++] = 0; /* no properties */
    memcpy(b->frame + n, payload, plen);
    b->len = n + plen;
    d->bodies = xrealloc(d->bodies, (d->nbodies + 1) * sizeof *d->bodies);
    d->bodies[d->nbodies++] = nbodies++;
}

/* HEADER<TAB>KEY<TAB>BODY lines: the devices, their keys and their PUBLISHes. */
static void load_bodies(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "mqtt_load: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    static const char field[] = "\"device_uuid\":\"";
    while ((len = getline(&line, &cap, f)) > 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        char *key = strchr(line, '\t');
        char *payload = key ? strchr(key + 1, '\t') : NULL;
        if (!payload) continue;
        *key++ = 0;
        *payload++ = 0;
        const char *u = strstr(payload, field);
        const char *end = u ? strchr(u + sizeof field - 1, '"') : NULL;
        if (!end || strcmp(line, "-") == 0) {
            fprintf(stderr, "mqtt_load: %s: a line without device_uuid or key\n", path);
            exit(2);
        }
        u += sizeof field - 1;
        body_add(device_of(u, (size_t)(end - u), key), payload, (size_t)(line + len - payload));
    }
    free(line);
    fclose(f);
    if (!nbodies) {
        fprintf(stderr, "mqtt_load: no body in %s\n", path);
        exit(2);
    }
}

static void conn_watch(struct conn *c, int op)
{
    struct epoll_event ev = {.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, op, c->fd, &ev)) {
        perror("mqtt_load: epoll_ctl");
        exit(2);
    }
}

/* Closes the socket; retry_ns from now on, the connection connects again (-1: never). */
static void conn_drop(struct conn *c, int64_t retry_ns)
{
    if (c->fd >= 0) close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->nfly = 0;
    c->in_len = c->out_len = 0;
    c->want_out = false;
    c->state = retry_ns < 0 ? C_DEAD : C_RETRY;
    c->since = now + retry_ns;
}

/* Sends what waits, then what it is given; keeps the rest for EPOLLOUT. */
static bool conn_send(struct conn *c, const uint8_t *p, size_t n)
{
    if (c->out_len) {
        if (c->out_len + n > c->out_cap) {
            c->out_cap = (c->out_len + n) * 2;
            c->out = xrealloc(c->out, c->out_cap);
        }
        if (n) memcpy(c->out + c->out_len, p, n);
        c->out_len += n;
        p = c->out;
        n = c->out_len;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(c->fd, p + done, n - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (w <= 0) {
            count(&st.write_errors);
            conn_drop(c, 0);
            return false;
        }
        done += (size_t)w;
    }
    if (done < n) {
        if (p != c->out) {
            if (n - done > c->out_cap) {
                c->out_cap = (n - done) * 2;
                c->out = xrealloc(c->out, c->out_cap);
            }
            memcpy(c->out, p + done, n - done);
        } else {
            memmove(c->out, c->out + done, n - done);
        }
    }
    c->out_len = n - done;
    if (c->want_out != (c->out_len > 0)) {
        c->want_out = c->out_len > 0;
        conn_watch(c, EPOLL_CTL_MOD);
    }
    return true;
}

/* Keeps `inflight` PUBLISHes of the device's bodies on their way. */
static void conn_fill(struct conn *c)
{
    while (c->state == C_READY && c->nfly < inflight) {
        struct body *b = &bodies[c->dev->bodies[c->next++ % c->dev->nbodies]];
        if (++c->pid == 0) c->pid = 1;
        b->frame[b->pid_off] = (uint8_t)(c->pid >> 8);
        b->frame[b->pid_off + 1] = (uint8_t)c->pid;
        c->fly[c->nfly++] = (struct slot){c->pid, clock_ns()};
        if (!conn_send(c, b->frame, b->len)) return;
    }
}

static void conn_connect(struct conn *c)
{
    c->fd = socket(peer->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("mqtt_load: socket");
        exit(2);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = C_TCP;
    c->since = now;
    if (connect(c->fd, peer->ai_addr, peer->ai_addrlen) && errno != EINPROGRESS) {
        count(&st.connect_errors);
        conn_drop(c, RETRY_NS);
        return;
    }
    c->want_out = true; /* writable: the TCP connection is up */
    conn_watch(c, EPOLL_CTL_ADD);
}

/* The TCP connection is up: CONNECT with the device's credentials, clean session. */
static void conn_hello(struct conn *c)
{
    uint8_t f[1024];
    size_t ulen = strlen(c->dev->uuid), klen = strlen(c->dev->key);
    if (ulen + klen > sizeof f - 32) {
        fprintf(stderr, "mqtt_load: device_uuid and key too long\n");
        exit(2);
    }
    size_t rl = 10 + (mqtt5 ? 1 : 0) + 2 + 2 + ulen + 2 + klen;
    size_t n = 0;
    f[n++] = 0x10;
    n += put_varint(f + n, rl);
    n += put_str(f + n, "MQTT", 4);
    f[n++] = mqtt5 ? 5 : 4;
    f[n++] = 0xC2; /* user name, password, clean session */
    f[n++] = 0;    /* keep-alive 0: none */
    f[n++] = 0;
    if (mqtt5) f[n++] = 0; /* no properties */
    n += put_str(f + n, "", 0);
    n += put_str(f + n, c->dev->uuid, ulen);
    n += put_str(f + n, c->dev->key, klen);
    c->state = C_CONNACK;
    c->since = now;
    conn_send(c, f, n);
}

static void record(int64_t sent)
{
    if (st.nlat == st.cap) {
        st.cap = st.cap ? st.cap * 2 : 65536;
        st.lat = xrealloc(st.lat, st.cap * sizeof *st.lat);
    }
    int64_t us = (now - sent) / 1000;
    st.lat[st.nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void conn_puback(struct conn *c, uint16_t pid, uint8_t reason)
{
    for (int i = 0; i < c->nfly; i++) {
        if (c->fly[i].pid != pid) continue;
        if (c->fly[i].sent >= t_meas) {
            st.requests++;
            if (reason >= 0x80) st.non2xx++;
            record(c->fly[i].sent);
        }
        c->fly[i] = c->fly[--c->nfly];
        return conn_fill(c);
    }
}

/* One frame from the gateway; false when the connection was dropped. */
static bool conn_frame(struct conn *c, uint8_t type, const uint8_t *p, size_t len)
{
    switch (type >> 4) {
    case 2: /* CONNACK: flags, return code (3.1.1) or reason (5) */
        if (c->state != C_CONNACK || len < 2) break;
        if (p[1] != 0) {
            static char why[160];
            snprintf(why, sizeof why, "CONNACK refused (code 0x%02x) for %s", p[1], c->dev->uuid);
            if (!refusal) refusal = why;
            count(&st.connect_errors);
            conn_drop(c, -1);
            return false;
        }
        c->state = C_READY;
        conn_fill(c);
        return c->state == C_READY;
    case 4: /* PUBACK: packet identifier, MQTT 5's reason when there is one */
        if (c->state != C_READY || len < 2) break;
        conn_puback(c, (uint16_t)(p[0] << 8 | p[1]), len > 2 ? p[2] : 0);
        return c->state == C_READY;
    case 3:  /* PUBLISH (QoS 0: a results topic; nothing to answer) */
    case 13: /* PINGRESP */
        return true;
    default: /* DISCONNECT, or what a client is never sent */
        break;
    }
    count(&st.read_errors);
    conn_drop(c, 0);
    return false;
}

static void conn_read(struct conn *c)
{
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
        count(c->state == C_CONNACK ? &st.connect_errors : &st.read_errors);
        return conn_drop(c, 0);
    }
    st.bytes += measuring() ? (uint64_t)n : 0;
    c->in_len += (size_t)n;
    size_t off = 0;
    for (;;) {
        size_t avail = c->in_len - off, rl = 0, h = 1;
        for (; h < 5 && h < avail; h++) {
            rl |= (size_t)(c->in[off + h] & 127) << (7 * (h - 1));
            if (!(c->in[off + h] & 128)) break;
        }
        if (h == 5 || (h < avail && 1 + h + rl > sizeof c->in)) { /* not a frame we are sent */
            count(&st.read_errors);
            return conn_drop(c, 0);
        }
        if (h >= avail || 1 + h + rl > avail) break;
        if (!conn_frame(c, c->in[off], c->in + off + h + 1, rl)) return;
        off += 1 + h + rl;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static void conn_event(struct conn *c, uint32_t events)
{
    if (c->state == C_TCP) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
            count(&st.connect_errors);
            return conn_drop(c, RETRY_NS);
        }
        c->want_out = false;
        conn_watch(c, EPOLL_CTL_MOD);
        return conn_hello(c);
    }
    if ((events & EPOLLOUT) && c->out_len && !conn_send(c, NULL, 0)) return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_read(c);
}

/* Timeouts (a PUBLISH, a CONNECT) and reconnects that are due. */
static void sweep(struct conn *conns, int n)
{
    for (int i = 0; i < n; i++) {
        struct conn *c = &conns[i];
        if (c->state == C_RETRY && now >= c->since) {
            conn_connect(c);
        } else if ((c->state == C_TCP || c->state == C_CONNACK) && now - c->since > timeout_ns) {
            count(&st.connect_errors);
            conn_drop(c, 0);
        } else if (c->state == C_READY) {
            int late = 0;
            for (int j = 0; j < c->nfly; j++)
                late += now - c->fly[j].sent > timeout_ns;
            if (!late) continue;
            if (measuring()) st.timeouts += (uint64_t)late;
            conn_drop(c, 0);
        }
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The nearest-rank percentile q of the sorted latencies. */
static uint32_t percentile(size_t q)
{
    if (!st.nlat) return 0;
    size_t rank = (q * st.nlat + 99) / 100;
    return st.lat[rank ? rank - 1 : 0];
}

static double seconds(const char *opt, const char *v)
{
    char *end;
    double s = strtod(v, &end);
    if (*end || !(s >= 0) || s > 86400) {
        fprintf(stderr, "mqtt_load: %s %s: seconds from 0 to 86400\n", opt, v);
        exit(2);
    }
    return s;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mqtt_load [-c CONNECTIONS] [-d SECONDS] [-w WARMUP_SECONDS] [-k INFLIGHT] "
               "[-t TIMEOUT_SECONDS] [-5] HOST PORT BODIES.tsv\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"connections", required_argument, NULL, 'c'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"warmup", required_argument, NULL, 'w'},
                                         {"inflight", required_argument, NULL, 'k'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"mqtt5", no_argument, NULL, '5'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int nconns = 64, o;
    double duration = 10, warmup = 0;
    while ((o = getopt_long(argc, argv, "c:d:w:k:t:5h", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            nconns = atoi(optarg);
            break;
        case 'd':
            duration = seconds("-d", optarg);
            break;
        case 'w':
            warmup = seconds("-w", optarg);
            break;
        case 'k':
            inflight = atoi(optarg);
            break;
        case 't':
            timeout_ns = (int64_t)(seconds("-t", optarg) * 1e9);
            break;
        case '5':
            mqtt5 = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 3 || nconns < 1 || nconns > 10000 || inflight < 1 ||
        inflight > INFLIGHT_MAX) {
        usage(stderr);
        fprintf(stderr, "  -c 1..10000 (64), -k 1..%d (1), -d 10, -w 0, -t 10\n", INFLIGHT_MAX);
        return 2;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    int rc = getaddrinfo(argv[optind], argv[optind + 1], &hints, &peer);
    if (rc) {
        fprintf(stderr, "mqtt_load: %s port %s: %s\n", argv[optind], argv[optind + 1],
                gai_strerror(rc));
        return 2;
    }
    load_bodies(argv[optind + 2]);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (ep < 0 || !conns) {
        perror("mqtt_load");
        return 2;
    }
    now = clock_ns();
    t_meas = now + (int64_t)(warmup * 1e9);
    int64_t t_end = t_meas + (int64_t)(duration * 1e9), last_sweep = now;
    for (int i = 0; i < nconns; i++) {
        conns[i].dev = &devices[(size_t)i % ndevices];
        conns[i].next = (size_t)i / ndevices; /* two connections of a device start apart */
        conn_connect(&conns[i]);
    }
    struct epoll_event evs[256];
    int dead = 0;
    while (now < t_end && dead < nconns) {
        int64_t wait = t_end - now < SWEEP_NS ? t_end - now : SWEEP_NS;
        int n = epoll_wait(ep, evs, 256, (int)((wait + 999999) / 1000000));
        if (n < 0 && errno != EINTR) {
            perror("mqtt_load: epoll_wait");
            return 2;
        }
        for (int i = 0; i < n; i++) {
            now = clock_ns();
            conn_event(evs[i].data.ptr, evs[i].events);
        }
        now = clock_ns();
        if (now - last_sweep >= SWEEP_NS) {
            last_sweep = now;
            sweep(conns, nconns);
            dead = 0;
            for (int i = 0; i < nconns; i++)
                dead += conns[i].state == C_DEAD;
        }
    }
    int64_t end = now < t_end ? now : t_end;
    if (end < t_meas) end = t_meas; /* every connection refused during the warm-up */
    for (int i = 0; i < nconns; i++) {
        static const uint8_t bye[2] = {0xE0, 0}; /* DISCONNECT */
        if (conns[i].state == C_READY) conn_send(&conns[i], bye, sizeof bye);
        if (conns[i].fd >= 0) close(conns[i].fd);
        free(conns[i].out);
    }
    if (refusal) fprintf(stderr, "mqtt_load: %s\n", refusal);
    qsort(st.lat, st.nlat, sizeof *st.lat, cmp_u32);
    printf("BENCH requests=%llu duration_us=%lld bytes=%llu non2xx=%llu connect_errors=%llu "
           "read_errors=%llu write_errors=%llu timeouts=%llu p50_us=%u p90_us=%u p99_us=%u "
           "max_us=%u\n",
           (unsigned long long)st.requests, (long long)((end - t_meas) / 1000),
           (unsigned long long)st.bytes, (unsigned long long)st.non2xx,
           (unsigned long long)st.connect_errors, (unsigned long long)st.read_errors,
           (unsigned long long)st.write_errors, (unsigned long long)st.timeouts, percentile(50),
           percentile(90), percentile(99), st.nlat ? st.lat[st.nlat - 1] : 0);
    freeaddrinfo(peer);
    return st.requests ? 0 : 1;
}
