/* Address texts and per-address limit keys (addr_key.h). */
#include "core/addr_key.h"
#include "core/err.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

int addr_peer_text(const struct sockaddr *peer, char out[ADDR_KEY_LEN])
{
    const char *r = NULL;
    if (peer->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, peer, sizeof sin);
        r = inet_ntop(AF_INET, &sin.sin_addr, out, ADDR_KEY_LEN);
    } else if (peer->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, peer, sizeof sin6);
        if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr))
            r = inet_ntop(AF_INET, sin6.sin6_addr.s6_addr + 12, out, ADDR_KEY_LEN);
        else
            r = inet_ntop(AF_INET6, &sin6.sin6_addr, out, ADDR_KEY_LEN);
    }
    if (r) return 0;
    snprintf(out, ADDR_KEY_LEN, "unknown");
    return IOT_EINVAL;
}

void addr_limit_key(const char *ip, unsigned v6_prefix, char out[ADDR_KEY_LEN])
{
    struct in6_addr a;
    if (v6_prefix >= 128 || !strchr(ip, ':') || inet_pton(AF_INET6, ip, &a) != 1) {
        snprintf(out, ADDR_KEY_LEN, "%s", ip);
        return;
    }
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = v6_prefix > i * 8 ? v6_prefix - i * 8 : 0;
        if (keep < 8) a.s6_addr[i] &= (unsigned char)(0xff00u >> keep);
    }
    char net[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a, net, sizeof net);
    snprintf(out, ADDR_KEY_LEN, "%s/%u", net, v6_prefix);
}
