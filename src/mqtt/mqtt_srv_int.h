/*
 * Private to the MQTT listener (mqtt_server.c, mqtt_conn.c, mqtt_ingest.c):
 * the server, its connections and the packets they have in flight. Every
 * field is touched on the loop thread only, except where a comment says
 * otherwise (the completion list, the atomics).
 */
#ifndef IOT_MQTT_SRV_INT_H
#define IOT_MQTT_SRV_INT_H

#include "core/addr_key.h"
#include "core/ident.h"
#include "mqtt/mqtt_codec.h"
#include "mqtt/mqtt_server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

/* Packets one connection may have in flight (MQTT 5 Receive Maximum); past it, a PUBLISH waits. */
#define MQTT_INFLIGHT_MAX 64
/* A connection whose unsent bytes pass this many frames' worth is closed (it does not read). */
#define MQTT_OUT_FRAMES_MAX 4

struct mqtt_conn;

/* One PUBLISH from its arrival to its final answer. */
struct mqtt_pub {
    struct mqtt_pub *next;      /* the connection's list, in arrival order */
    struct mqtt_pub *done_next; /* the completion list (under done_mu) */
    struct mqtt_server *srv;
    struct mqtt_conn *conn; /* NULL once the connection went away */
    uint16_t packet_id;     /* QoS 1; 0 for QoS 0 */
    uint8_t qos;
    char *payload; /* a copy (the frame's bytes move) */
    size_t len;
    int64_t t_start_us;
    char request_id[IDENT_REQUEST_ID_LEN + 1]; /* ident_request_id(): as HTTP's */
    char addr[ADDR_KEY_LEN];                   /* its connection's, for the log (it may go first) */
    char device_uuid[STORE_UUID_MAX + 1];      /* likewise */
    uint64_t retry_at;                         /* uv_now ms: held until then; 0 = not held */
    bool in_writer; /* the job is with the writer: only its done() frees it */
    struct write_job job;
};

struct mqtt_conn {
    uv_tcp_t tcp;
    uv_shutdown_t shut;
    struct mqtt_server *srv;
    struct mqtt_conn *prev, *next;
    char addr[ADDR_KEY_LEN]; /* the peer's address text (logs) */
    char key[ADDR_KEY_LEN];  /* its per-address limit key (claims, the connection cap) */
    uint8_t *in;             /* bytes read, not yet decoded */
    size_t in_len, in_cap;
    int version;  /* 0 until a CONNECT is accepted, then 4 or 5 */
    bool closing; /* closing or closed: nothing more is read or written */
    bool reading; /* uv_read_start in force */
    bool sub_results;
    uint64_t opened, last_rx, closing_since; /* uv_now ms */
    uint16_t keep_alive;                     /* seconds; 0 = none */
    uint32_t max_out;                        /* MQTT 5 client's Maximum Packet Size, else 0 */
    size_t out_bytes;                        /* written, not yet sent */
    char device_uuid[STORE_UUID_MAX + 1];
    struct mqtt_pub *pubs, *pubs_tail; /* in flight, in arrival order */
    size_t npubs;
    /* MQTT_TLS_PORT: the session (owned), and TLS records read, not yet decrypted */
    gnutls_session_t tls; /* NULL: plain TCP */
    bool tls_ready;       /* the handshake is done */
    uint8_t *tin;
    size_t tin_off, tin_len, tin_cap; /* tin[tin_off..tin_len) is unread */
    struct intake_cert cert;          /* what its client certificate says (TLS_CLIENT_AUTH) */
};

struct mqtt_server {
    struct mqtt_deps d;
    uv_loop_t loop;
    uv_tcp_t listener, listener_tls; /* MQTT_PORT, MQTT_TLS_PORT */
    uv_async_t wake;                 /* completions arrived, or stop */
    uv_timer_t tick;                 /* deadlines, keep-alive, held packets */
    pthread_t thread;
    bool thread_started, thread_joined, listening, listening_tls, loop_ready;
    int port, tls_port;
    size_t max_frame;        /* the largest frame read: MAX_BODY_BYTES and room for the header */
    unsigned request_prefix; /* random: request ids of two gateways differ */
    unsigned long long request_seq; /* loop thread only */
    int log_publishes;              /* LOG_REQUESTS: 2 all, 1 errors, 0 none */
    struct mqtt_conn *conns;
    size_t nconns;
    size_t nsubs; /* connections subscribed to their results topic */

    pthread_mutex_t done_mu; /* guards done_head and stop */
    struct mqtt_pub *done_head;
    bool stop, quiesce;

    atomic_int in_writer; /* packets with the writer (read by drain) */
    struct {
        atomic_ullong connections, connects_accepted, connects_refused, closed_malformed,
            closed_keepalive, refused_at_accept, dup_in_flight, retries_rate_limited,
            retries_unavailable, results_sent, results_dropped, puback_us_sum;
        atomic_ullong publishes[2][MQTT_OUTCOMES];
        atomic_ullong puback_lat[MQTT_LAT_BUCKETS + 1];
    } st;
};

#define MQTT_COUNT(m, field) atomic_fetch_add_explicit(&(m)->st.field, 1, memory_order_relaxed)

/* mqtt_conn.c */
/* Accepts from listener (the TLS one: the connection speaks TLS). */
void conn_accept(struct mqtt_server *m, uv_stream_t *listener);
void conn_close(struct mqtt_conn *c, const char *why);
/* Sends frame (if any) and closes once it is written. */
void conn_close_after(struct mqtt_conn *c, const uint8_t *frame, int len, const char *why);
void conn_send(struct mqtt_conn *c, const uint8_t *frame, int len);
void conn_tick(struct mqtt_conn *c, uint64_t now);
/* 1 if topic t[0..n) is devices/{the connection's device}/{leaf}. */
int conn_topic_is(const struct mqtt_conn *c, const char *t, size_t n, const char *leaf);
void conn_process(struct mqtt_conn *c);
/* The connection may read again (a packet in flight finished). */
void conn_resume(struct mqtt_conn *c);

/* mqtt_ingest.c */
void ingest_publish(struct mqtt_conn *c, const struct mqtt_publish *p);
void ingest_run_held(struct mqtt_conn *c, uint64_t now);
void ingest_completions(struct mqtt_server *m);
void ingest_detach(struct mqtt_conn *c);               /* the connection is going away */
void ingest_job_done(struct write_job *job, void *ud); /* writer thread */

#endif
