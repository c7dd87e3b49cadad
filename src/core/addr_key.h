/*
 * A client's address as text, and the key every per-address limit uses for
 * it, whatever the transport (HTTP's client_ip.c, the MQTT listener).
 */
#ifndef IOT_ADDR_KEY_H
#define IOT_ADDR_KEY_H

#include <sys/socket.h>

/* Bytes of an address text or key, NUL included ("net/len" of IPv6 fits). */
#define ADDR_KEY_LEN 64

/*
 * The text of a socket peer: IPv4 dotted, IPv6 as inet_ntop writes it, a
 * v4-mapped IPv6 address (a dual-stack listener) as its IPv4 text. 0, or
 * IOT_EINVAL for another family ("unknown" is then in out).
 */
int addr_peer_text(const struct sockaddr *peer, char out[ADDR_KEY_LEN]);

/*
 * The key every per-address limit uses for an address text: an IPv4 address
 * as it is, an IPv6 address reduced to its first v6_prefix bits and written
 * as "net/len" (2001:db8:1:2::/64), so a host that owns a whole prefix cannot
 * mint fresh budgets by changing its interface identifier. Text that is not
 * an address ("unknown") is copied.
 */
void addr_limit_key(const char *ip, unsigned v6_prefix, char out[ADDR_KEY_LEN]);

#endif
