#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "core/err.h"
#include "http/client_ip.h"

static struct sockaddr_storage peer4(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(40000);
    cr_assert_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1, "%s", ip);
    return ss;
}

static struct sockaddr_storage peer6(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(40000);
    cr_assert_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1, "%s", ip);
    return ss;
}

static struct cidr_list *parse_ok(const char *spec)
{
    struct cidr_list *l = NULL;
    char err[IOT_ERRBUF] = "";
    cr_assert_eq(cidr_list_parse(spec, &l, err, sizeof err), 0, "%s: %s", spec, err);
    cr_assert_not_null(l);
    return l;
}

/* Resolves with peer (v4 or v6 text) and returns a static copy. */
static const char *resolve(const char *peer, const char *xff, const struct cidr_list *trusted)
{
    static char out[CLIENT_IP_LEN];
    struct sockaddr_storage ss = strchr(peer, ':') ? peer6(peer) : peer4(peer);
    memset(out, 0, sizeof out);
    cr_assert_eq(client_ip_resolve((const struct sockaddr *)&ss, xff, trusted, out), 0);
    return out;
}

static void expect_parse_error(const char *spec, const char *needle)
{
    struct cidr_list *l = (struct cidr_list *)1;
    char err[IOT_ERRBUF] = "";
    cr_expect_eq(cidr_list_parse(spec, &l, err, sizeof err), IOT_EINVAL, "%s", spec);
    cr_expect_null(l, "%s", spec);
    cr_expect_neq(strstr(err, needle), NULL, "spec \"%s\": error \"%s\" should name \"%s\"", spec,
                  err, needle);
}

Test(cidr_list, parses_mixed_list_with_spaces)
{
    struct cidr_list *l = parse_ok(" 10.0.0.0/8 ,\t::1/128,192.168.1.7 , 2001:db8::/32 ");
    cr_expect_str_eq(resolve("10.1.2.3", "5.6.7.8", l), "5.6.7.8");
    cr_expect_str_eq(resolve("::1", "5.6.7.8", l), "5.6.7.8");
    cr_expect_str_eq(resolve("192.168.1.7", "5.6.7.8", l), "5.6.7.8");
    cr_expect_str_eq(resolve("192.168.1.8", "5.6.7.8", l), "192.168.1.8", "bare address is /32");
    cr_expect_str_eq(resolve("2001:db8:ffff::1", "5.6.7.8", l), "5.6.7.8");
    cr_expect_str_eq(resolve("2001:db9::1", "5.6.7.8", l), "2001:db9::1");
    cidr_list_destroy(l);
}

Test(cidr_list, empty_spec_is_empty_list)
{
    struct cidr_list *l = parse_ok("");
    cr_expect_str_eq(resolve("10.0.0.1", "1.1.1.1", l), "10.0.0.1");
    cidr_list_destroy(l);
    l = parse_ok("   ");
    cr_expect_str_eq(resolve("10.0.0.1", "1.1.1.1", l), "10.0.0.1");
    cidr_list_destroy(l);
    cidr_list_destroy(NULL);
}

Test(cidr_list, odd_prefix_lengths)
{
    struct cidr_list *l = parse_ok("172.16.0.0/12, 0.0.0.0/0");
    cidr_list_destroy(l);
    l = parse_ok("172.16.0.0/12");
    cr_expect_str_eq(resolve("172.31.255.255", "9.9.9.9", l), "9.9.9.9");
    cr_expect_str_eq(resolve("172.32.0.0", "9.9.9.9", l), "172.32.0.0");
    cr_expect_str_eq(resolve("172.15.255.255", "9.9.9.9", l), "172.15.255.255");
    cidr_list_destroy(l);
    l = parse_ok("fe80::/10");
    cr_expect_str_eq(resolve("febf::1", "9.9.9.9", l), "9.9.9.9");
    cr_expect_str_eq(resolve("fec0::1", "9.9.9.9", l), "fec0::1");
    cidr_list_destroy(l);
}

Test(cidr_list, bad_entries_are_named)
{
    expect_parse_error("1.2.3.4/33", "1.2.3.4/33");
    expect_parse_error("10.0.0.0/8, ::/129", "::/129");
    expect_parse_error("abc", "abc");
    expect_parse_error("1.2.3.4/", "1.2.3.4/");
    expect_parse_error("1.2.3.4/x", "1.2.3.4/x");
    expect_parse_error("1.2.3.4/-1", "1.2.3.4/-1");
    expect_parse_error("1.2.3.4/+8", "1.2.3.4/+8");
    expect_parse_error("1.2.3.4/ 8", "1.2.3.4/ 8");
    expect_parse_error("1.2.3.4/0008", "1.2.3.4/0008");
    expect_parse_error("/8", "/8");
    expect_parse_error("1.2.3", "1.2.3");
    expect_parse_error("256.1.1.1", "256.1.1.1");
    expect_parse_error("1.2.3.4.5", "1.2.3.4.5");
    expect_parse_error("10.0.0.1/8", "bits set beyond");
    expect_parse_error("2001:db8::1/32", "bits set beyond");
    expect_parse_error("fe80::1%eth0", "fe80::1%eth0");
    expect_parse_error("10.0.0.0/8,,1.2.3.4", "entry 2");
    expect_parse_error(",10.0.0.0/8", "entry 1");
    expect_parse_error("10.0.0.0/8,", "trailing comma");
    expect_parse_error("10.0.0.0/8, 1.2.3.4, nope", "entry 3 \"nope\"");
}

Test(cidr_list, error_message_is_bounded_and_printable)
{
    char spec[600];
    memset(spec, 'z', sizeof spec - 1);
    spec[sizeof spec - 1] = '\0';
    spec[3] = '\x01';
    struct cidr_list *l = NULL;
    char err[IOT_ERRBUF];
    cr_assert_eq(cidr_list_parse(spec, &l, err, sizeof err), IOT_EINVAL);
    cr_expect_lt(strlen(err), (size_t)150);
    cr_expect_null(strchr(err, '\x01'));
    cr_expect_neq(strstr(err, "..."), NULL);
    /* Tiny and absent error buffers are fine. */
    char tiny[4];
    cr_expect_eq(cidr_list_parse("abc", &l, tiny, sizeof tiny), IOT_EINVAL);
    cr_expect_eq(strlen(tiny), 3u);
    cr_expect_eq(cidr_list_parse("abc", &l, NULL, 0), IOT_EINVAL);
}

Test(client_ip, untrusted_peer_ignores_xff)
{
    struct cidr_list *l = parse_ok("10.0.0.0/8");
    cr_expect_str_eq(resolve("203.0.113.9", "1.1.1.1", l), "203.0.113.9");
    cr_expect_str_eq(resolve("203.0.113.9", NULL, l), "203.0.113.9");
    cr_expect_str_eq(resolve("2001:db8::7", "1.1.1.1", l), "2001:db8::7");
    cr_expect_str_eq(resolve("10.0.0.1", "1.1.1.1", NULL), "10.0.0.1", "NULL list trusts none");
    cidr_list_destroy(l);
}

Test(client_ip, trusted_peer_without_xff_is_the_client)
{
    struct cidr_list *l = parse_ok("10.0.0.0/8");
    cr_expect_str_eq(resolve("10.0.0.1", NULL, l), "10.0.0.1");
    cr_expect_str_eq(resolve("10.0.0.1", "", l), "10.0.0.1");
    cr_expect_str_eq(resolve("10.0.0.1", "   ", l), "10.0.0.1");
    cidr_list_destroy(l);
}

Test(client_ip, xff_chain_right_to_left)
{
    struct cidr_list *l = parse_ok("10.0.0.0/8, 2001:db8::/32");
    /* Client-supplied spoof on the left is ignored: the first untrusted from
     * the right wins. */
    cr_expect_str_eq(resolve("10.0.0.1", "6.6.6.6, 198.51.100.4, 10.0.0.2, 10.0.0.3", l),
                     "198.51.100.4");
    cr_expect_str_eq(resolve("10.0.0.1", "198.51.100.4", l), "198.51.100.4");
    cr_expect_str_eq(resolve("10.0.0.1", "  198.51.100.4  ,\t10.9.9.9\t", l), "198.51.100.4");
    cr_expect_str_eq(resolve("10.0.0.1", "198.51.100.4,10.9.9.9", l), "198.51.100.4");
    cr_expect_str_eq(resolve("2001:db8::1", "2001:db8::2, 2a00:1450::1, 2001:db8::3", l),
                     "2a00:1450::1");
    cr_expect_str_eq(resolve("2001:db8::1", "2A00:1450:0:0::1", l), "2a00:1450::1",
                     "printed in canonical form");
    cidr_list_destroy(l);
}

Test(client_ip, all_trusted_gives_leftmost)
{
    struct cidr_list *l = parse_ok("10.0.0.0/8");
    cr_expect_str_eq(resolve("10.0.0.1", "10.0.0.5, 10.0.0.6, 10.0.0.7", l), "10.0.0.5");
    cidr_list_destroy(l);
}

Test(client_ip, garbage_stops_the_walk)
{
    struct cidr_list *l = parse_ok("10.0.0.0/8");
    cr_expect_str_eq(resolve("10.0.0.1", "1.1.1.1, garbage, 10.0.0.2", l), "10.0.0.2");
    cr_expect_str_eq(resolve("10.0.0.1", "1.1.1.1, garbage", l), "10.0.0.1");
    cr_expect_str_eq(resolve("10.0.0.1", "1.1.1.1,,10.0.0.2", l), "10.0.0.2", "empty entry");
    cr_expect_str_eq(resolve("10.0.0.1", "1.1.1.1, 10.0.0.2,", l), "10.0.0.1", "trailing comma");
    cr_expect_str_eq(resolve("10.0.0.1", "1.2.3.4:5678", l), "10.0.0.1", "port not accepted");
    cr_expect_str_eq(resolve("10.0.0.1", "[2001:db8::1]", l), "10.0.0.1", "brackets");
    cr_expect_str_eq(resolve("10.0.0.1", "unknown", l), "10.0.0.1");
    cr_expect_str_eq(resolve("10.0.0.1", "1.1.1.1 2.2.2.2", l), "10.0.0.1", "space inside");
    char big[200];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_expect_str_eq(resolve("10.0.0.1", big, l), "10.0.0.1", "over-long entry");
    cidr_list_destroy(l);
}

Test(client_ip, v4_mapped_peers_are_v4)
{
    struct cidr_list *l = parse_ok("10.0.0.0/8");
    cr_expect_str_eq(resolve("::ffff:203.0.113.9", NULL, l), "203.0.113.9");
    cr_expect_str_eq(resolve("::ffff:10.1.1.1", "198.51.100.4", l), "198.51.100.4",
                     "mapped peer matches a v4 CIDR");
    cr_expect_str_eq(resolve("10.1.1.1", "::ffff:198.51.100.4", l), "198.51.100.4",
                     "mapped XFF entry printed as v4");
    cr_expect_str_eq(resolve("10.1.1.1", "1.1.1.1, ::ffff:10.2.2.2", l), "1.1.1.1",
                     "mapped XFF entry matches a v4 CIDR");
    cidr_list_destroy(l);

    l = parse_ok("::ffff:10.0.0.0/104");
    cr_expect_str_eq(resolve("10.1.1.1", "1.1.1.1", l), "1.1.1.1", "mapped CIDR matches v4 peer");
    cidr_list_destroy(l);

    l = parse_ok("::/0");
    cr_expect_str_eq(resolve("10.1.1.1", "1.1.1.1", l), "1.1.1.1", "::/0 covers v4 as well");
    cidr_list_destroy(l);
}

Test(client_ip, v4_cidr_does_not_match_plain_v6)
{
    struct cidr_list *l = parse_ok("0.0.0.0/0");
    cr_expect_str_eq(resolve("2001:db8::1", "1.1.1.1", l), "2001:db8::1");
    cr_expect_str_eq(resolve("::1", "1.1.1.1", l), "::1");
    cr_expect_str_eq(resolve("9.9.9.9", "1.1.1.1", l), "1.1.1.1");
    cidr_list_destroy(l);
}

Test(client_ip, bad_arguments)
{
    char out[CLIENT_IP_LEN];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_UNIX;
    cr_expect_eq(client_ip_resolve((const struct sockaddr *)&ss, NULL, NULL, out), IOT_EINVAL);
    cr_expect_eq(client_ip_resolve(NULL, NULL, NULL, out), IOT_EINVAL);
    struct sockaddr_storage p = peer4("1.2.3.4");
    cr_expect_eq(client_ip_resolve((const struct sockaddr *)&p, NULL, NULL, NULL), IOT_EINVAL);
    struct cidr_list *l = NULL;
    cr_expect_eq(cidr_list_parse("1.2.3.4", NULL, NULL, 0), IOT_EINVAL);
    cr_expect_eq(cidr_list_parse(NULL, &l, NULL, 0), 0, "NULL spec is empty");
    cidr_list_destroy(l);
}

Test(client_ip, limit_key_groups_an_ipv6_prefix)
{
    char k1[CLIENT_IP_LEN], k2[CLIENT_IP_LEN];
    client_ip_limit_key("2001:db8:1:2:aaaa::1", 64, k1);
    client_ip_limit_key("2001:db8:1:2:bbbb:cccc:dddd:eeee", 64, k2);
    cr_expect_str_eq(k1, "2001:db8:1:2::/64");
    cr_expect_str_eq(k2, k1, "one /64, one key");
    client_ip_limit_key("2001:db8:1:3::1", 64, k2);
    cr_expect_str_neq(k2, k1, "the next /64 is another client");
    client_ip_limit_key("2001:db8:1:2:aaaa::1", 61, k1);
    cr_expect_str_eq(k1, "2001:db8:1::/61", "a prefix that splits a byte");
    client_ip_limit_key("2001:db8:1:2:aaaa::1", 128, k1);
    cr_expect_str_eq(k1, "2001:db8:1:2:aaaa::1", "/128: the address itself");
    client_ip_limit_key("192.0.2.7", 64, k1);
    cr_expect_str_eq(k1, "192.0.2.7", "IPv4 is keyed whole");
    client_ip_limit_key("unknown", 64, k1);
    cr_expect_str_eq(k1, "unknown");
}

/* The MQTT listener's address text (no X-Forwarded-For there). */
Test(client_ip, addr_peer_text_shows_a_v4_mapped_peer_as_ipv4)
{
    char t[ADDR_KEY_LEN];
    struct sockaddr_storage a = peer4("192.0.2.7"), b = peer6("::ffff:192.0.2.8"),
                            c = peer6("2001:db8::1"), d = {.ss_family = AF_UNIX};
    cr_expect_eq(addr_peer_text((struct sockaddr *)&a, t), 0);
    cr_expect_str_eq(t, "192.0.2.7");
    cr_expect_eq(addr_peer_text((struct sockaddr *)&b, t), 0);
    cr_expect_str_eq(t, "192.0.2.8");
    cr_expect_eq(addr_peer_text((struct sockaddr *)&c, t), 0);
    cr_expect_str_eq(t, "2001:db8::1");
    cr_expect_eq(addr_peer_text((struct sockaddr *)&d, t), IOT_EINVAL);
    cr_expect_str_eq(t, "unknown");
}

Test(cidr_list, contains_a_socket_peer)
{
    struct cidr_list *l = parse_ok("10.0.0.0/8, 2001:db8::/32");
    struct sockaddr_storage a = peer4("10.1.2.3"), b = peer4("11.0.0.1"), c = peer6("2001:db8::1"),
                            d = peer6("::ffff:10.0.0.9");
    cr_expect(cidr_list_contains(l, (struct sockaddr *)&a));
    cr_expect(!cidr_list_contains(l, (struct sockaddr *)&b));
    cr_expect(cidr_list_contains(l, (struct sockaddr *)&c));
    cr_expect(cidr_list_contains(l, (struct sockaddr *)&d), "v4-mapped is v4");
    cr_expect(!cidr_list_contains(NULL, (struct sockaddr *)&a));
    cr_expect(!cidr_list_contains(l, NULL));
    cidr_list_destroy(l);
}
