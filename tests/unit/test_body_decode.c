#include <criterion/criterion.h>

#include "core/err.h"
#include "http/body_decode.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <malloc.h> /* under ASan, malloc_usable_size is the exact requested size */
#endif

#define MIB (1024u * 1024u)

/* ---- Content-Type ---- */

struct ct_case {
    const char *ct;
    int ok;
};

Test(body_content_type, table)
{
    static const struct ct_case cases[] = {
        {NULL, 1},
        {"application/json", 1},
        {"APPLICATION/JSON", 1},
        {"Application/Json", 1},
        {"application/json;charset=utf-8", 1},
        {"application/json; charset=utf-8", 1},
        {"application/json ; charset=UTF-8", 1},
        {"Application/JSON;Charset=\"utf-8\"", 1},
        {"  application/json  ", 1},
        {"\tapplication/json\t", 1},
        {"application/json;", 1},
        {"application/json;foo=bar;charset=utf-8", 1},
        {"", 0},
        {" ", 0},
        {"application/jsonx", 0},
        {"application/json-seq", 0},
        {"application/json+x", 0},
        {"application/json/x", 0},
        {"application/json x", 0},
        {"application/json,text/plain", 0},
        {"application/jso", 0},
        {"application/", 0},
        {"application", 0},
        {"text/plain", 0},
        {"text/json", 0},
        {"application/ld+json", 0},
        {"application/x-www-form-urlencoded", 0},
        {"multipart/form-data; boundary=x", 0},
        {"xapplication/json", 0},
        {"application /json", 0},
        {"application\\/json", 0},
        {";application/json", 0},
        {"\napplication/json", 0},
        {"application/json\n", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_expect_eq(body_content_type_ok(cases[i].ct), cases[i].ok, "case %zu \"%s\"", i,
                     cases[i].ct ? cases[i].ct : "(null)");
    }
}

/* ---- Content-Encoding ---- */

struct ce_case {
    const char *ce;
    enum body_encoding want;
};

Test(body_encoding, table)
{
    static const struct ce_case cases[] = {
        {NULL, BODY_IDENTITY},
        {"", BODY_IDENTITY},
        {"  ", BODY_IDENTITY},
        {"identity", BODY_IDENTITY},
        {"IDENTITY", BODY_IDENTITY},
        {" Identity ", BODY_IDENTITY},
        {"gzip", BODY_GZIP},
        {"GZIP", BODY_GZIP},
        {"GZip", BODY_GZIP},
        {" gzip ", BODY_GZIP},
        {"\tgzip\t", BODY_GZIP},
        {"gzip, gzip", BODY_UNSUPPORTED},
        {"gzip,identity", BODY_UNSUPPORTED},
        {"identity, gzip", BODY_UNSUPPORTED},
        {"deflate", BODY_UNSUPPORTED},
        {"br", BODY_UNSUPPORTED},
        {"compress", BODY_UNSUPPORTED},
        {"zstd", BODY_UNSUPPORTED},
        {"x-gzip", BODY_UNSUPPORTED},
        {"gzipx", BODY_UNSUPPORTED},
        {"gzi", BODY_UNSUPPORTED},
        {"g zip", BODY_UNSUPPORTED},
        {"gzip;q=1", BODY_UNSUPPORTED},
        {"identityx", BODY_UNSUPPORTED},
        {"identit", BODY_UNSUPPORTED},
        {"*", BODY_UNSUPPORTED},
        {"\ngzip", BODY_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_expect_eq(body_encoding_parse(cases[i].ce), cases[i].want, "case %zu \"%s\"", i,
                     cases[i].ce ? cases[i].ce : "(null)");
    }
}

/* ---- gunzip ---- */

/*
 * gzip-compresses len bytes with zlib into a malloc'ed buffer (caller frees);
 * a non-NULL hdr sets the optional header fields. Fails the test on error.
 */
static unsigned char *gz(const void *data, size_t len, int level, gz_header *hdr, size_t *outlen)
{
    z_stream zs = {0};
    cr_assert_eq(deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    if (hdr) cr_assert_eq(deflateSetHeader(&zs, hdr), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len) + 64;
    unsigned char *buf = malloc(cap);
    cr_assert_not_null(buf);
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = buf;
    zs.avail_out = (uInt)cap;
    cr_assert_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *outlen = cap - zs.avail_out;
    deflateEnd(&zs);
    return buf;
}

/* Deterministic pseudo-random bytes (incompressible). */
static void fill_random(unsigned char *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (unsigned char)(seed >> 24);
    }
}

/* Calls body_gunzip and checks the outputs are cleared on failure. */
static int gunzip(const void *in, size_t inlen, size_t max_out, char **out, size_t *outlen)
{
    *out = (char *)1;
    *outlen = 77;
    int rc = body_gunzip(in, inlen, max_out, out, outlen);
    if (rc != 0) {
        cr_expect_null(*out, "output left set on error %d", rc);
        cr_expect_eq(*outlen, 0);
    }
    return rc;
}

Test(body_gunzip, round_trip_sizes)
{
    static const size_t sizes[] = {0,    1,     2,     100,    4095,   4096,   4097,
                                   8191, 16384, 65537, 300000, 999999, 1048576};
    unsigned char *data = malloc(MIB);
    cr_assert_not_null(data);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        for (int kind = 0; kind < 2; kind++) {
            size_t n = sizes[s];
            if (kind == 0)
                fill_random(data, n, (uint32_t)n);
            else
                for (size_t i = 0; i < n; i++)
                    data[i] = (unsigned char)("{\"value\": 21.5, \"ts\": 1}"[i % 25]);
            size_t zlen;
            unsigned char *z = gz(data, n, 6, NULL, &zlen);
            char *out;
            size_t outlen;
            int rc = gunzip(z, zlen, MIB, &out, &outlen);
            cr_expect_eq(rc, 0, "size %zu kind %d: rc %d", n, kind, rc);
            if (rc == 0) {
                cr_expect_eq(outlen, n);
                cr_expect(memcmp(out, data, n) == 0, "size %zu kind %d: content differs", n, kind);
                cr_expect_eq(out[outlen], '\0', "not NUL-terminated");
                free(out);
            }
            free(z);
        }
    }
    free(data);
}

/*
 * Limits around the inflated size n: the cap is inclusive. Random data starts
 * with a buffer of the full cap; zeros compress well, so their buffer grows
 * from a small start and must stop growing at the cap.
 */
Test(body_gunzip, exact_cap_and_one_over)
{
    static const size_t sizes[] = {0, 1, 10, 4096, 4097, 50000, 131072, 300001};
    unsigned char *data = malloc(300001);
    cr_assert_not_null(data);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        for (int kind = 0; kind < 2; kind++) {
            size_t n = sizes[s];
            if (kind == 0)
                fill_random(data, n, 7);
            else
                memset(data, 0, n);
            size_t zlen;
            unsigned char *z = gz(data, n, 9, NULL, &zlen);
            char *out;
            size_t outlen;

            cr_expect_eq(gunzip(z, zlen, n, &out, &outlen), 0, "n=%zu kind %d, cap=n", n, kind);
            if (out && outlen == n) {
                cr_expect(memcmp(out, data, n) == 0);
#ifdef TEST_ASAN
                cr_expect_leq(malloc_usable_size(out), n + 1, "n=%zu: block %zu", n,
                              malloc_usable_size(out));
#endif
            }
            free(out);
            if (n > 0)
                cr_expect_eq(gunzip(z, zlen, n - 1, &out, &outlen), IOT_ETOOBIG,
                             "n=%zu kind %d, cap=n-1", n, kind);
            if (n > 1)
                cr_expect_eq(gunzip(z, zlen, n / 2, &out, &outlen), IOT_ETOOBIG,
                             "n=%zu kind %d, cap=n/2", n, kind);
            cr_expect_eq(gunzip(z, zlen, n + 1, &out, &outlen), 0, "n=%zu kind %d, cap=n+1", n,
                         kind);
            free(out);
            cr_expect_eq(gunzip(z, zlen, SIZE_MAX, &out, &outlen), 0, "n=%zu kind %d, cap=SIZE_MAX",
                         n, kind);
            free(out);
            if (n > 0)
                cr_expect_eq(gunzip(z, zlen, 0, &out, &outlen), IOT_ETOOBIG, "n=%zu kind %d, cap=0",
                             n, kind);
            free(z);
        }
    }
    free(data);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 10 MiB of zeros (about 10 KiB compressed) against a 1 MiB cap and smaller ones. */
Test(body_gunzip, bomb_stops_at_the_cap)
{
    size_t n = 10 * MIB;
    unsigned char *zeros = calloc(n, 1);
    cr_assert_not_null(zeros);
    size_t zlen;
    unsigned char *z = gz(zeros, n, 9, NULL, &zlen);
    free(zeros);
    cr_expect_lt(zlen, 20000u);

    char *out;
    size_t outlen;
    double t0 = now_s();
    cr_expect_eq(gunzip(z, zlen, MIB, &out, &outlen), IOT_ETOOBIG);
    cr_expect_eq(gunzip(z, zlen, 1000, &out, &outlen), IOT_ETOOBIG);
    cr_expect_eq(gunzip(z, zlen, 0, &out, &outlen), IOT_ETOOBIG);
    double dt = now_s() - t0;
    cr_expect_lt(dt, 1.0, "bomb took %.3f s", dt);

    /* Sanity: the same data under a cap that fits inflates fully. */
    cr_expect_eq(gunzip(z, zlen, n, &out, &outlen), 0);
    cr_expect_eq(outlen, n);
    free(out);
    free(z);
}

/* Every proper prefix of a valid stream is rejected as invalid. */
Test(body_gunzip, truncated)
{
    const char *json = "{\"device_uuid\":\"d\",\"readings\":[{\"sensor_uuid\":\"s\",\"value\":1}]}";
    size_t zlen;
    unsigned char *z = gz(json, strlen(json), 6, NULL, &zlen);
    for (size_t len = 0; len < zlen; len++) {
        unsigned char *cut = malloc(len ? len : 1);
        cr_assert_not_null(cut);
        memcpy(cut, z, len);
        char *out;
        size_t outlen;
        cr_expect_eq(gunzip(cut, len, MIB, &out, &outlen), IOT_EINVAL, "prefix %zu of %zu", len,
                     zlen);
        free(cut);
    }
    char *out;
    size_t outlen;
    cr_expect_eq(gunzip(z, zlen, MIB, &out, &outlen), 0);
    cr_expect_str_eq(out, json);
    free(out);
    free(z);
}

struct corrupt_case {
    const char *what;
    long pos; /* from the start if >= 0, from the end if < 0 */
    unsigned char xor_mask;
};

Test(body_gunzip, corrupted)
{
    static const struct corrupt_case cases[] = {
        {"magic byte 1", 0, 0x01},       {"magic byte 2", 1, 0x80},
        {"compression method", 2, 0x01}, {"reserved flag bit", 3, 0x80},
        {"CRC-32 first byte", -8, 0x01}, {"CRC-32 last byte", -5, 0x40},
        {"ISIZE first byte", -4, 0x01},  {"ISIZE last byte", -1, 0x01},
    };
    char data[2000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)('a' + i % 26);
    size_t zlen;
    unsigned char *z = gz(data, sizeof(data), 6, NULL, &zlen);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char *c = malloc(zlen);
        cr_assert_not_null(c);
        memcpy(c, z, zlen);
        size_t at = cases[i].pos >= 0 ? (size_t)cases[i].pos : zlen - (size_t)-cases[i].pos;
        c[at] ^= cases[i].xor_mask;
        char *out;
        size_t outlen;
        cr_expect_eq(gunzip(c, zlen, MIB, &out, &outlen), IOT_EINVAL, "%s", cases[i].what);
        free(c);
    }
    free(z);
}

/*
 * A flipped bit anywhere: never a crash, a leak, or different content. Bits
 * nothing checks (MTIME, XFL, OS, the FTEXT hint, padding after the last
 * deflate block) may go unnoticed; everything else is IOT_EINVAL.
 */
Test(body_gunzip, every_bit_flip)
{
    const char *json = "{\"readings\":[{\"value\":1.5},{\"value\":2.5},{\"value\":3.5}]}";
    size_t zlen;
    unsigned char *z = gz(json, strlen(json), 6, NULL, &zlen);
    unsigned char *c = malloc(zlen);
    cr_assert_not_null(c);
    int rejected = 0, total = 0;
    for (size_t pos = 0; pos < zlen; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(c, z, zlen);
            c[pos] ^= (unsigned char)(1u << bit);
            char *out;
            size_t outlen;
            int rc = gunzip(c, zlen, MIB, &out, &outlen);
            total++;
            if (pos >= 4 && pos <= 9) cr_expect_eq(rc, 0, "pos %zu bit %d", pos, bit);
            if (rc == 0) {
                cr_expect_str_eq(out, json, "pos %zu bit %d", pos, bit);
                free(out);
            } else {
                cr_expect_eq(rc, IOT_EINVAL, "pos %zu bit %d: rc %d", pos, bit, rc);
                rejected++;
            }
        }
    }
    /* 48 header bits, FTEXT and at most 7 padding bits are unchecked */
    cr_expect_geq(rejected, total - 48 - 1 - 7);
    free(c);
    free(z);
}

Test(body_gunzip, trailing_data_and_concatenated_members)
{
    const char *json = "{\"a\":1}";
    size_t zlen;
    unsigned char *z = gz(json, strlen(json), 6, NULL, &zlen);
    static const struct {
        const char *what;
        const char *tail;
        size_t tail_len;
    } tails[] = {
        {"one garbage byte", "x", 1},      {"a newline", "\n", 1},
        {"zero padding", "\0\0\0\0", 4},   {"text", "garbage after the member", 24},
        {"a second magic", "\x1f\x8b", 2},
    };
    for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
        size_t n = zlen + tails[i].tail_len;
        unsigned char *c = malloc(n);
        cr_assert_not_null(c);
        memcpy(c, z, zlen);
        memcpy(c + zlen, tails[i].tail, tails[i].tail_len);
        char *out;
        size_t outlen;
        cr_expect_eq(gunzip(c, n, MIB, &out, &outlen), IOT_EINVAL, "%s", tails[i].what);
        free(c);
    }

    /* Two complete members back to back: rejected by choice (one member only). */
    unsigned char *two = malloc(2 * zlen);
    cr_assert_not_null(two);
    memcpy(two, z, zlen);
    memcpy(two + zlen, z, zlen);
    char *out;
    size_t outlen;
    cr_expect_eq(gunzip(two, 2 * zlen, MIB, &out, &outlen), IOT_EINVAL);
    free(two);
    free(z);
}

Test(body_gunzip, not_gzip)
{
    static const struct {
        const char *data;
        size_t len;
    } cases[] = {
        {"{\"device_uuid\":\"x\",\"readings\":[]}", 33},
        {"\x1f", 1},
        {"\x1f\x8b", 2},
        {"\x1f\x8b\x08", 3},
        {"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10},         /* header only */
        {"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x03\x00", 12}, /* no trailer */
        {"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out;
        size_t outlen;
        cr_expect_eq(gunzip(cases[i].data, cases[i].len, MIB, &out, &outlen), IOT_EINVAL,
                     "case %zu", i);
    }

    /* zlib (RFC 1950) and raw deflate (RFC 1951) data are not gzip. */
    const char *json = "{\"a\":1}";
    for (int wbits = -MAX_WBITS; wbits <= MAX_WBITS; wbits += 2 * MAX_WBITS) {
        z_stream zs = {0};
        unsigned char buf[256];
        cr_assert_eq(deflateInit2(&zs, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
        zs.next_in = (Bytef *)json;
        zs.avail_in = (uInt)strlen(json);
        zs.next_out = buf;
        zs.avail_out = sizeof(buf);
        cr_assert_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
        size_t n = sizeof(buf) - zs.avail_out;
        deflateEnd(&zs);
        char *out;
        size_t outlen;
        cr_expect_eq(gunzip(buf, n, MIB, &out, &outlen), IOT_EINVAL, "wbits %d", wbits);
    }
}

Test(body_gunzip, empty_input_and_bad_arguments)
{
    char *out;
    size_t outlen;
    cr_expect_eq(gunzip(NULL, 0, MIB, &out, &outlen), IOT_EINVAL);
    cr_expect_eq(gunzip("", 0, MIB, &out, &outlen), IOT_EINVAL);
    cr_expect_eq(gunzip(NULL, 10, MIB, &out, &outlen), IOT_EINVAL);
    cr_expect_eq(body_gunzip("x", 1, MIB, NULL, &outlen), IOT_EINVAL);
    cr_expect_eq(body_gunzip("x", 1, MIB, &out, NULL), IOT_EINVAL);
}

/* An empty payload still makes a valid member: it inflates to "" even with cap 0. */
Test(body_gunzip, empty_payload)
{
    size_t zlen;
    unsigned char *z = gz("", 0, 6, NULL, &zlen);
    char *out;
    size_t outlen;
    cr_expect_eq(gunzip(z, zlen, 0, &out, &outlen), 0);
    cr_expect_eq(outlen, 0);
    cr_expect_str_eq(out, "");
    free(out);
    free(z);
}

/* Optional header fields (FEXTRA, FNAME, FCOMMENT, FHCRC) are accepted. */
Test(body_gunzip, header_fields)
{
    char name[] = "readings.json";
    char comment[] = "from a sensor";
    unsigned char extra[] = {'A', 'B', 2, 0, 'x', 'y'};
    gz_header h = {0};
    h.text = 1;
    h.time = 1700000000;
    h.os = 3;
    h.extra = extra;
    h.extra_len = sizeof(extra);
    h.name = (Bytef *)name;
    h.comment = (Bytef *)comment;
    h.hcrc = 1;
    const char *json = "{\"a\":[1,2,3]}";
    size_t zlen;
    unsigned char *z = gz(json, strlen(json), 6, &h, &zlen);
    char *out;
    size_t outlen;
    cr_expect_eq(gunzip(z, zlen, MIB, &out, &outlen), 0);
    cr_expect_str_eq(out, json);
    free(out);

    /* The header CRC covers the name: corrupting it is caught. */
    z[10 + 2 + sizeof(extra)] ^= 0x01;
    cr_expect_eq(gunzip(z, zlen, MIB, &out, &outlen), IOT_EINVAL);
    free(z);
}

/* Embedded NUL bytes in the payload survive; outlen, not strlen, is the size. */
Test(body_gunzip, binary_payload)
{
    const char data[] = "a\0b\0c";
    size_t zlen;
    unsigned char *z = gz(data, sizeof(data), 6, NULL, &zlen);
    char *out;
    size_t outlen;
    cr_expect_eq(gunzip(z, zlen, MIB, &out, &outlen), 0);
    cr_expect_eq(outlen, sizeof(data));
    cr_expect(memcmp(out, data, sizeof(data)) == 0);
    free(out);
    free(z);
}
