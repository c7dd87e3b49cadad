/*
 * Addresses are held in one 16-byte form: IPv6 as is, IPv4 as the v4-mapped
 * IPv6 address ::ffff:a.b.c.d, and an IPv4 CIDR a.b.c.d/n as the IPv6 prefix
 * ::ffff:a.b.c.d/(96+n). Matching is then one prefix comparison, an IPv4 peer
 * and the same peer seen through a dual-stack socket are the same client, and
 * an IPv6 CIDR that covers ::ffff:0:0/96 (such as ::/0) covers IPv4 too.
 */
#include "http/client_ip.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* Longest text accepted as one address; INET6_ADDRSTRLEN is 46. */
#define CIP_ADDR_TEXT_MAX 63
/* Longest part of a bad entry quoted back in an error message. */
#define CIP_ERR_QUOTE_MAX 64

struct cip_addr {
    unsigned char b[16];
};

struct cip_cidr {
    struct cip_addr net;
    unsigned bits; /* 0..128, in the 16-byte form */
};

struct cidr_list {
    size_t n;
    struct cip_cidr items[];
};

static const unsigned char cip_v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int cip__is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void cip__trim(const char **s, const char **e)
{
    while (*s < *e && cip__is_space(**s))
        (*s)++;
    while (*e > *s && cip__is_space((*e)[-1]))
        (*e)--;
}

static int cip__is_v4(const struct cip_addr *a)
{
    return memcmp(a->b, cip_v4_mapped_prefix, sizeof cip_v4_mapped_prefix) == 0;
}

static void cip__from_v4(struct cip_addr *a, const struct in_addr *v4)
{
    memcpy(a->b, cip_v4_mapped_prefix, sizeof cip_v4_mapped_prefix);
    memcpy(a->b + 12, &v4->s_addr, 4);
}

/*
 * Parses exactly [s, e) as an IPv4 or IPv6 address (no port, brackets or
 * zone). Sets *is_v4 to say which syntax it was. Returns 0 or IOT_EINVAL.
 */
static int cip__parse_addr(const char *s, const char *e, struct cip_addr *a, int *is_v4)
{
    char buf[CIP_ADDR_TEXT_MAX + 1];
    size_t len = (size_t)(e - s);

    if (len == 0 || len > CIP_ADDR_TEXT_MAX) return IOT_EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';

    struct in_addr v4;
    if (inet_pton(AF_INET, buf, &v4) == 1) {
        cip__from_v4(a, &v4);
        *is_v4 = 1;
        return 0;
    }
    struct in6_addr v6;
    if (inet_pton(AF_INET6, buf, &v6) == 1) {
        memcpy(a->b, v6.s6_addr, sizeof a->b);
        *is_v4 = 0;
        return 0;
    }
    return IOT_EINVAL;
}

static int cip__in_prefix(const struct cip_addr *a, const struct cip_cidr *c)
{
    unsigned whole = c->bits / 8;
    unsigned rest = c->bits % 8;

    if (memcmp(a->b, c->net.b, whole) != 0) return 0;
    if (rest == 0) return 1;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a->b[whole] & mask) == c->net.b[whole];
}

static int cip__trusted(const struct cidr_list *l, const struct cip_addr *a)
{
    if (!l) return 0;
    for (size_t i = 0; i < l->n; i++) {
        if (cip__in_prefix(a, &l->items[i])) return 1;
    }
    return 0;
}

/*
 * Writes an error naming entry number idx (from 1) and its text, cut short
 * and made printable (the spec may come from the environment).
 */
static void cip__set_err(char *err, size_t errlen, size_t idx, const char *what, const char *s,
                         const char *e)
{
    char quote[CIP_ERR_QUOTE_MAX + 4];
    size_t len = (size_t)(e - s);
    size_t n = len > CIP_ERR_QUOTE_MAX ? CIP_ERR_QUOTE_MAX : len;

    if (!err || errlen == 0) return;
    for (size_t i = 0; i < n; i++)
        quote[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (n < len) {
        memcpy(quote + n, "...", 3);
        n += 3;
    }
    quote[n] = '\0';
    snprintf(err, errlen, "bad CIDR entry %zu \"%s\": %s", idx, quote, what);
}

/*
 * Parses one trimmed entry [s, e): an address, optionally "/" and a decimal
 * prefix length. Host bits beyond the prefix are refused rather than masked,
 * so a typo such as 10.0.0.1/8 cannot silently trust a whole /8.
 */
static int cip__parse_cidr(const char *s, const char *e, struct cip_cidr *c, size_t idx, char *err,
                           size_t errlen)
{
    if (s == e) {
        cip__set_err(err, errlen, idx, "empty entry", s, e);
        return IOT_EINVAL;
    }
    const char *slash = memchr(s, '/', (size_t)(e - s));
    const char *addr_end = slash ? slash : e;
    int is_v4 = 0;

    if (cip__parse_addr(s, addr_end, &c->net, &is_v4) != 0) {
        cip__set_err(err, errlen, idx, "not an IPv4 or IPv6 address", s, e);
        return IOT_EINVAL;
    }
    unsigned max = is_v4 ? 32 : 128;
    unsigned bits = max;
    if (slash) {
        const char *p = slash + 1;
        if (p == e || e - p > 3) {
            cip__set_err(err, errlen, idx, "prefix length missing or too long", s, e);
            return IOT_EINVAL;
        }
        bits = 0;
        for (; p < e; p++) {
            if (*p < '0' || *p > '9') {
                cip__set_err(err, errlen, idx, "prefix length is not a number", s, e);
                return IOT_EINVAL;
            }
            bits = bits * 10 + (unsigned)(*p - '0');
        }
        if (bits > max) {
            cip__set_err(err, errlen, idx,
                         is_v4 ? "IPv4 prefix length over 32" : "IPv6 prefix length over 128", s,
                         e);
            return IOT_EINVAL;
        }
    }
    c->bits = is_v4 ? bits + 96 : bits;

    struct cip_cidr masked = *c;
    unsigned whole = c->bits / 8;
    unsigned rest = c->bits % 8;
    if (whole < 16) {
        masked.net.b[whole] &= (unsigned char)(0xffu << (8 - rest));
        memset(masked.net.b + whole + 1, 0, 16 - whole - 1);
    }
    if (memcmp(masked.net.b, c->net.b, sizeof c->net.b) != 0) {
        cip__set_err(err, errlen, idx, "address has bits set beyond the prefix length", s, e);
        return IOT_EINVAL;
    }
    return 0;
}

int cidr_list_parse(const char *spec, struct cidr_list **out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!out) return IOT_EINVAL;
    *out = NULL;
    if (!spec) spec = "";

    const char *s = spec;
    const char *e = spec + strlen(spec);
    cip__trim(&s, &e);
    size_t cap = 0;
    if (s < e) {
        cap = 1;
        for (const char *p = s; p < e; p++)
            cap += *p == ',';
    }

    struct cidr_list *l = malloc(sizeof *l + cap * sizeof l->items[0]);
    if (!l) return IOT_ENOMEM;
    l->n = 0;
    while (s < e) {
        const char *comma = memchr(s, ',', (size_t)(e - s));
        const char *end = comma ? comma : e;
        const char *es = s;
        const char *ee = end;
        cip__trim(&es, &ee);
        int rc = cip__parse_cidr(es, ee, &l->items[l->n], l->n + 1, err, errlen);
        if (rc != 0) {
            cidr_list_destroy(l);
            return rc;
        }
        l->n++;
        if (!comma) break;
        s = comma + 1;
        if (s == e) {
            cip__set_err(err, errlen, l->n + 1, "empty entry (trailing comma)", s, e);
            cidr_list_destroy(l);
            return IOT_EINVAL;
        }
    }
    *out = l;
    return 0;
}

void cidr_list_destroy(struct cidr_list *l)
{
    free(l);
}

static int cip__format(const struct cip_addr *a, char out[CLIENT_IP_LEN])
{
    const char *r;
    if (cip__is_v4(a))
        r = inet_ntop(AF_INET, a->b + 12, out, CLIENT_IP_LEN);
    else
        r = inet_ntop(AF_INET6, a->b, out, CLIENT_IP_LEN);
    return r ? 0 : IOT_EINVAL;
}

/*
 * peer must point to a whole sockaddr_in or sockaddr_in6 as its family says.
 * X-Forwarded-For is walked from the right: each parsed hop becomes the
 * candidate, and the first one outside the trusted list is the client. An
 * entry that does not parse as a plain address (empty, garbage, with a port
 * or brackets) ends the walk and the last candidate stands, since only a
 * trusted proxy vouched for it. Several X-Forwarded-For headers must be
 * joined with "," by the caller, in order, before calling.
 */
/* The 16-byte form of a socket address; IOT_EINVAL for a family other than IPv4/IPv6. */
static int cip__from_sockaddr(struct cip_addr *a, const struct sockaddr *peer)
{
    if (peer->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, peer, sizeof sin);
        cip__from_v4(a, &sin.sin_addr);
    } else if (peer->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, peer, sizeof sin6);
        memcpy(a->b, sin6.sin6_addr.s6_addr, sizeof a->b);
    } else {
        return IOT_EINVAL;
    }
    return 0;
}

int cidr_list_contains(const struct cidr_list *l, const struct sockaddr *peer)
{
    struct cip_addr a;
    return l && peer && cip__from_sockaddr(&a, peer) == 0 && cip__trusted(l, &a);
}

int client_ip_resolve(const struct sockaddr *peer, const char *xff, const struct cidr_list *trusted,
                      char out[CLIENT_IP_LEN])
{
    struct cip_addr cur;

    if (!peer || !out || cip__from_sockaddr(&cur, peer) != 0) return IOT_EINVAL;

    if (xff && cip__trusted(trusted, &cur)) {
        const char *end = xff + strlen(xff);
        for (;;) {
            const char *start = end;
            while (start > xff && start[-1] != ',')
                start--;
            const char *s = start;
            const char *e = end;
            cip__trim(&s, &e);
            struct cip_addr hop;
            int is_v4;
            if (cip__parse_addr(s, e, &hop, &is_v4) != 0) break;
            cur = hop;
            if (!cip__trusted(trusted, &cur) || start == xff) break;
            end = start - 1;
        }
    }
    return cip__format(&cur, out);
}

void client_ip_limit_key(const char *ip, unsigned v6_prefix, char out[CLIENT_IP_LEN])
{
    addr_limit_key(ip, v6_prefix, out);
}
