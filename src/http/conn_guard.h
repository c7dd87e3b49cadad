/*
 * Slow clients cannot hold the server (SPEC §5). libmicrohttpd 0.9.75 only
 * closes a connection that goes silent for HTTP_IDLE_TIMEOUT_S, and every
 * byte resets that clock, so a client trickling one byte every few seconds
 * keeps its connection forever. The guard closes such connections from our
 * side and caps the connections one address may hold:
 *
 * - HTTP_HEADER_TIMEOUT_S: a request's first byte to its last header;
 * - HTTP_BODY_MIN_RATE: once the headers are in and HTTP_HEADER_TIMEOUT_S has
 *   passed, the body received so far must average at least this many bytes/s;
 * - HTTP_MAX_CONNECTIONS_PER_IP: refused at accept time, keyed by
 *   client_ip_limit_key of the socket peer (an IPv6 prefix counts as one).
 *
 * libmicrohttpd reports each connection (conn_guard_notify) and asks before
 * accepting one (conn_guard_accept); the access handler reports the request's
 * progress (conn_guard_headers_done ... conn_guard_request_done). A
 * housekeeping thread walks the tracked connections twice a second and, for
 * one past its deadline, writes a 408 and shuts its socket down; libmicrohttpd
 * then sees the end of the stream and closes it. Memory is bounded: one entry
 * per open connection, at most HTTP_MAX_CONNECTIONS.
 */
#ifndef IOT_CONN_GUARD_H
#define IOT_CONN_GUARD_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct config;
struct cidr_list;
struct conn_guard;
struct conn_guard_conn;

/* Where a connection is in its current request. */
enum conn_phase {
    CONN_WAIT, /* between requests: no byte of the next one seen yet (the idle timeout applies) */
    CONN_HEAD, /* the request's first byte seen, headers not complete */
    CONN_BODY, /* headers complete, body being received */
    CONN_BUSY, /* request complete (or answered early): the server's turn */
    CONN_DEAD, /* closed by the guard */
};

enum conn_verdict { CONN_KEEP, CONN_HEADER_TIMEOUT, CONN_BODY_TOO_SLOW };

struct conn_guard_limits {
    int64_t header_timeout_ms; /* HEAD: first byte to last header */
    int64_t body_grace_ms;     /* BODY: no rate check before this */
    double body_min_rate;      /* BODY: bytes/s averaged since the headers; 0 = off */
};

/*
 * The deadline rule, pure: for a connection in phase ph since since_ms (HEAD:
 * its first byte; BODY: the end of its headers) that has received body_bytes
 * of body, at monotonic time now_ms. Other phases are always CONN_KEEP.
 */
enum conn_verdict conn_guard_verdict(const struct conn_guard_limits *l, enum conn_phase ph,
                                     int64_t since_ms, uint64_t body_bytes, int64_t now_ms);

/*
 * Reads HTTP_HEADER_TIMEOUT_S, HTTP_BODY_MIN_RATE, HTTP_MAX_CONNECTIONS_PER_IP,
 * HTTP_MAX_CONNECTIONS and RATE_LIMIT_IPV6_PREFIX from cfg and starts the
 * housekeeping thread. Peers in trusted (TRUSTED_PROXIES, borrowed, may be
 * NULL) are exempt from the per-address cap: they carry many clients. The
 * per-address cap is lowered to half of HTTP_MAX_CONNECTIONS (with a warning)
 * so that one address can never take every slot. Returns 0 and *out, or
 * IOT_ENOMEM / IOT_EIO.
 */
int conn_guard_create(const struct config *cfg, const struct cidr_list *trusted,
                      struct conn_guard **out);
/* Stops the thread and frees. Call after MHD_stop_daemon (its callbacks use g). Accepts NULL. */
void conn_guard_destroy(struct conn_guard *g);

/* The effective per-address cap (0 = off), after lowering. */
unsigned conn_guard_per_ip_limit(const struct conn_guard *g);

struct conn_guard_stats {
    unsigned long long header_timeouts; /* closed: headers too slow */
    unsigned long long body_too_slow;   /* closed: body under HTTP_BODY_MIN_RATE */
    unsigned long long refused_per_ip;  /* refused: address at HTTP_MAX_CONNECTIONS_PER_IP */
};
void conn_guard_stats(struct conn_guard *g, struct conn_guard_stats *out);

/* From now on every new connection is closed as soon as it is accepted (shutdown). */
void conn_guard_close_door(struct conn_guard *g);

/* libmicrohttpd callbacks, cls = the guard: the accept policy and NOTIFY_CONNECTION. */
enum MHD_Result conn_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
void conn_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode code);

/*
 * The access handler's reports, on the connection's thread. gc comes from
 * conn_guard_of (NULL: untracked, every call is a no-op that returns 1).
 * Those returning int return 0 once the guard has closed the connection: the
 * handler must then return MHD_NO.
 */
struct conn_guard_conn *conn_guard_of(struct MHD_Connection *c);
/* First call of the handler: headers complete; answered = a response is already queued. */
int conn_guard_headers_done(struct conn_guard_conn *gc, int answered);
/* n bytes of body arrived. */
int conn_guard_body(struct conn_guard_conn *gc, size_t n);
/* The whole body arrived (also called again after a resume: then a no-op). */
int conn_guard_body_done(struct conn_guard_conn *gc);
/* The request is over (MHD_OPTION_NOTIFY_COMPLETED). Returns 1 if the guard had closed it. */
int conn_guard_request_done(struct conn_guard_conn *gc);

#endif
