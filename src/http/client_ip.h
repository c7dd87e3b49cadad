/*
 * Client address resolution: the socket peer, or, only when the peer lies in
 * a trusted proxy CIDR, the last untrusted address of X-Forwarded-For
 * (scanning right to left, skipping trusted hops).
 */
#ifndef IOT_CLIENT_IP_H
#define IOT_CLIENT_IP_H

#include "core/addr_key.h"

#include <stddef.h>
#include <sys/socket.h>

struct cidr_list;

/*
 * Parses "10.0.0.0/8, ::1/128, 192.168.1.7" (a bare address is a /32 or
 * /128). Empty string gives an empty list. Returns 0, IOT_EINVAL with a
 * message in err naming the bad entry, or IOT_ENOMEM. Caller owns *out.
 */
int cidr_list_parse(const char *spec, struct cidr_list **out, char *err, size_t errlen);
void cidr_list_destroy(struct cidr_list *l); /* accepts NULL */
/* 1 if the socket address peer lies in l (NULL or empty: 0). */
int cidr_list_contains(const struct cidr_list *l, const struct sockaddr *peer);

/*
 * Writes the client address as text into out (INET6_ADDRSTRLEN bytes is
 * enough). peer is the socket address (AF_INET or AF_INET6; v4-mapped v6 is
 * shown as v4); xff is the X-Forwarded-For header or NULL. Returns 0, or
 * IOT_EINVAL if peer is of an unknown family.
 */
#define CLIENT_IP_LEN ADDR_KEY_LEN
int client_ip_resolve(const struct sockaddr *peer, const char *xff, const struct cidr_list *trusted,
                      char out[CLIENT_IP_LEN]);

/*
 * The key every per-address limit uses for a client address (text from
 * client_ip_resolve): addr_limit_key (src/core/addr_key.h), shared with the
 * MQTT listener.
 */
void client_ip_limit_key(const char *ip, unsigned v6_prefix, char out[CLIENT_IP_LEN]);

#endif
