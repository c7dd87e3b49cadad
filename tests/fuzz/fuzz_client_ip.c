/*
 * Fuzzes http/client_ip: the TRUSTED_PROXIES CIDR list parser and the
 * X-Forwarded-For resolution (the client address that the rate limits key
 * on).
 *
 * Input: "<cidr spec>\n<x-forwarded-for>" (no newline: all of it is the
 * X-Forwarded-For value, with the fixed list 127.0.0.0/8, ::1/128). The
 * resolution runs for an IPv4 and an IPv6 peer, trusted and not.
 *
 * Invariants: the parser either fails with a message or gives a list; the
 * resolved address is a NUL-terminated string shorter than CLIENT_IP_LEN
 * that is a valid IPv4 or IPv6 address; an untrusted peer always resolves
 * to itself, whatever the header says.
 */
#include "core/err.h"
#include "http/client_ip.h"

#include "fuzz_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static void check_addr(const char *out)
{
    FUZZ_CHECK(memchr(out, '\0', CLIENT_IP_LEN) != NULL, "unterminated address");
    unsigned char buf[16];
    FUZZ_CHECK(inet_pton(AF_INET, out, buf) == 1 || inet_pton(AF_INET6, out, buf) == 1,
               "resolved to \"%s\"", out);
}

static void resolve(const struct cidr_list *trusted, const char *xff)
{
    struct sockaddr_in v4;
    memset(&v4, 0, sizeof v4);
    v4.sin_family = AF_INET;
    struct sockaddr_in6 v6;
    memset(&v6, 0, sizeof v6);
    v6.sin6_family = AF_INET6;
    char out[CLIENT_IP_LEN];

    static const char *const peers4[] = {"127.0.0.1", "192.0.2.7"};
    for (size_t i = 0; i < 2; i++) {
        inet_pton(AF_INET, peers4[i], &v4.sin_addr);
        memset(out, 0x55, sizeof out);
        FUZZ_CHECK(client_ip_resolve((struct sockaddr *)&v4, xff, trusted, out) == 0, "v4 peer");
        check_addr(out);
        if (!trusted) FUZZ_CHECK(strcmp(out, peers4[i]) == 0, "untrusted peer became %s", out);
    }
    static const char *const peers6[] = {"::1", "2001:db8::5", "::ffff:127.0.0.1"};
    for (size_t i = 0; i < 3; i++) {
        inet_pton(AF_INET6, peers6[i], &v6.sin6_addr);
        memset(out, 0x55, sizeof out);
        FUZZ_CHECK(client_ip_resolve((struct sockaddr *)&v6, xff, trusted, out) == 0, "v6 peer");
        check_addr(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    if (!s) return 0;
    char *nl = memchr(s, '\n', size);
    const char *spec = "127.0.0.0/8, ::1/128";
    const char *xff = s;
    if (nl) {
        *nl = '\0';
        spec = s;
        xff = nl + 1;
    }
    struct cidr_list *l = NULL;
    char err[IOT_ERRBUF] = "";
    int rc = cidr_list_parse(spec, &l, err, sizeof err);
    if (rc == 0) {
        resolve(l, xff);
        resolve(l, NULL);
    } else {
        FUZZ_CHECK(rc == IOT_EINVAL || rc == IOT_ENOMEM, "rc %d", rc);
        FUZZ_CHECK(rc == IOT_ENOMEM || err[0], "no message for a bad spec");
        FUZZ_CHECK(l == NULL, "list returned on failure");
    }
    cidr_list_destroy(l);
    resolve(NULL, xff);
    free(s);
    return 0;
}
