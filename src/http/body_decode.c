/*
 * Request body checks and bounded gzip inflation.
 *
 * Choices:
 * - One gzip member only. A body with anything after the first member's
 *   trailer (a second member, zero padding, garbage) is rejected with
 *   IOT_EINVAL; HTTP clients send one member, and accepting concatenation
 *   would only widen what a fuzzer can reach.
 * - Only the gzip wrapper is accepted (zlib windowBits 16 + MAX_WBITS): zlib
 *   or raw deflate data labelled gzip is IOT_EINVAL.
 * - Header values are compared in ASCII without the C locale (no tolower,
 *   no strcasecmp), and only space and tab count as whitespace (RFC 9110 OWS).
 */
#include "http/body_decode.h"

#include "core/err.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#define ZLIB_CONST
#include <zlib.h>

#define BODY_INITIAL_CAP 4096

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* 1 if s[0..n) equals the lower-case word w of length n, ignoring ASCII case. */
static int body_word_eq(const char *s, size_t n, const char *w)
{
    for (size_t i = 0; i < n; i++) {
        if (w[i] == '\0' || ascii_lower(s[i]) != w[i]) return 0;
    }
    return w[n] == '\0';
}

/*
 * Accepts "application/json" in any case, surrounded by OWS, optionally
 * followed by ";" and parameters, which are not inspected (the JSON parser
 * rejects bytes that are not UTF-8 whatever the charset says). An empty
 * header value is not JSON.
 */
int body_content_type_ok(const char *content_type)
{
    static const char json[] = "application/json";
    const size_t json_len = sizeof(json) - 1;

    if (!content_type) return 1;
    const char *p = content_type;
    while (is_ows(*p))
        p++;
    for (size_t i = 0; i < json_len; i++) {
        if (ascii_lower(p[i]) != json[i]) return 0;
    }
    p += json_len;
    while (is_ows(*p))
        p++;
    return *p == '\0' || *p == ';';
}

enum body_encoding body_encoding_parse(const char *content_encoding)
{
    if (!content_encoding) return BODY_IDENTITY;
    const char *p = content_encoding;
    while (is_ows(*p))
        p++;
    size_t n = 0;
    while (p[n] != '\0')
        n++;
    while (n > 0 && is_ows(p[n - 1]))
        n--;
    if (n == 0 || body_word_eq(p, n, "identity")) return BODY_IDENTITY;
    if (body_word_eq(p, n, "gzip")) return BODY_GZIP;
    return BODY_UNSUPPORTED;
}

static int body_zerr(int zret)
{
    return zret == Z_MEM_ERROR ? IOT_ENOMEM : IOT_EINVAL;
}

/*
 * The output buffer starts at min(max_out, max(4 KiB, 4 * inlen)) and doubles
 * up to max_out, always with one spare byte for the NUL, so it never exceeds
 * max_out + 1 bytes. Once max_out bytes are out, inflate continues into a
 * one-byte scratch: any byte produced there means the data is too big, and we
 * stop at once (a bomb costs at most max_out bytes of inflation); reaching the
 * end of the stream with nothing produced means it fit exactly. zlib checks
 * the trailer's CRC-32 and length itself. The avail_in/avail_out fields are
 * 32-bit, so input and output are handed over in chunks of at most UINT_MAX.
 */
int body_gunzip(const void *in, size_t inlen, size_t max_out, char **out, size_t *outlen)
{
    if (out) *out = NULL;
    if (outlen) *outlen = 0;
    if (!out || !outlen || !in || inlen == 0) return IOT_EINVAL;
    if (max_out == SIZE_MAX) max_out--;

    size_t cap = inlen < max_out / 4 ? inlen * 4 : max_out;
    if (cap < BODY_INITIAL_CAP) cap = max_out < BODY_INITIAL_CAP ? max_out : BODY_INITIAL_CAP;
    char *buf = malloc(cap + 1);
    if (!buf) return IOT_ENOMEM;

    z_stream zs = {0};
    int zret = inflateInit2(&zs, 16 + MAX_WBITS);
    if (zret != Z_OK) {
        free(buf);
        return body_zerr(zret);
    }

    const unsigned char *src = in;
    size_t in_left = inlen;
    size_t used = 0;
    int rc = 0;
    for (;;) {
        if (zs.avail_in == 0 && in_left > 0) {
            uInt chunk = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
            zs.next_in = src;
            zs.avail_in = chunk;
            src += chunk;
            in_left -= chunk;
        }
        if (used == cap && cap < max_out) {
            size_t ncap = cap > max_out / 2 ? max_out : cap * 2;
            char *nbuf = realloc(buf, ncap + 1);
            if (!nbuf) {
                rc = IOT_ENOMEM;
                break;
            }
            buf = nbuf;
            cap = ncap;
        }

        unsigned char scratch;
        int probing = used == cap;
        size_t room = cap - used;
        zs.next_out = probing ? &scratch : (Bytef *)buf + used;
        zs.avail_out = probing ? 1 : room > UINT_MAX ? UINT_MAX : (uInt)room;
        uInt before = zs.avail_out;

        zret = inflate(&zs, Z_NO_FLUSH);
        size_t produced = before - zs.avail_out;
        if (probing && produced > 0) {
            rc = IOT_ETOOBIG;
            break;
        }
        used += probing ? 0 : produced;

        if (zret == Z_STREAM_END) {
            if (zs.avail_in != 0 || in_left != 0) rc = IOT_EINVAL;
            break;
        }
        if (zret != Z_OK) {
            /* Z_BUF_ERROR here means all input is consumed: truncated. */
            rc = body_zerr(zret);
            break;
        }
    }
    inflateEnd(&zs);

    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[used] = '\0';
    *out = buf;
    *outlen = used;
    return 0;
}
