/*
 * Fuzzes http/body_decode: body_gunzip (gzip inflation under a hard cap on
 * the inflated size) and the Content-Type / Content-Encoding checks.
 *
 * Input: two bytes of cap (big-endian, cap = value + 1, so 1..65536), then
 * the gzip data. The whole input, as a C string, is also fed to
 * body_content_type_ok and body_encoding_parse.
 *
 * body_gunzip is checked against a reference inflation with plain zlib into
 * a buffer of cap + 1 bytes:
 * - the reference ends the stream with all input used and at most cap bytes
 *   out: body_gunzip returns 0 and the same bytes, NUL-terminated;
 * - the reference produces more than cap bytes: IOT_ETOOBIG;
 * - otherwise (corrupt, truncated, trailing data): IOT_EINVAL.
 * IOT_ENOMEM is accepted anywhere. ASan checks that nothing is written past
 * the cap (+1 for the NUL) and nothing is read past the input.
 */
#include "core/err.h"
#include "http/body_decode.h"

#include "fuzz_util.h"

#include <strings.h>
#include <zlib.h>

enum ref_result { REF_OK, REF_TOOBIG, REF_INVALID, REF_NOMEM };

static enum ref_result reference(const uint8_t *in, size_t inlen, size_t cap, unsigned char *out,
                                 size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return REF_NOMEM;
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)inlen;
    zs.next_out = out;
    zs.avail_out = (uInt)(cap + 1);
    int ret = inflate(&zs, Z_FINISH);
    *outlen = zs.total_out;
    size_t left = zs.avail_in;
    inflateEnd(&zs);
    if (ret == Z_MEM_ERROR) return REF_NOMEM;
    if (*outlen > cap) return REF_TOOBIG;
    if (ret == Z_STREAM_END && left == 0 && inlen > 0) return REF_OK;
    return REF_INVALID;
}

static void check_headers(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    if (!s) return;
    int ok = body_content_type_ok(s);
    FUZZ_CHECK(ok == 0 || ok == 1, "content_type_ok %d", ok);
    if (ok) {
        /* whatever surrounds it, the media type itself must be application/json */
        const char *p = s;
        while (*p == ' ' || *p == '\t')
            p++;
        FUZZ_CHECK(strncasecmp(p, "application/json", 16) == 0, "accepted \"%s\"", s);
    }
    enum body_encoding e = body_encoding_parse(s);
    FUZZ_CHECK(e == BODY_IDENTITY || e == BODY_GZIP || e == BODY_UNSUPPORTED, "encoding %d", e);
    if (e == BODY_GZIP) {
        int found = 0;
        for (const char *q = s; *q && !found; q++)
            found = strncasecmp(q, "gzip", 4) == 0;
        FUZZ_CHECK(found, "gzip from \"%s\"", s);
    }
    free(s);
    FUZZ_CHECK(body_content_type_ok(NULL) == 1 && body_encoding_parse(NULL) == BODY_IDENTITY,
               "missing headers must mean JSON, identity");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_headers(data, size);
    if (size < 2) return 0;
    size_t cap = ((size_t)data[0] << 8 | data[1]) + 1;
    const uint8_t *in = data + 2;
    size_t inlen = size - 2;

    /* A private copy of exactly inlen bytes: ASan sees any read past it. */
    uint8_t *copy = malloc(inlen ? inlen : 1);
    unsigned char *ref = malloc(cap + 1);
    if (!copy || !ref) {
        free(copy);
        free(ref);
        return 0;
    }
    if (inlen) memcpy(copy, in, inlen);

    char *out = NULL;
    size_t outlen = 12345;
    int rc = body_gunzip(inlen ? copy : NULL, inlen, cap, &out, &outlen);
    size_t reflen = 0;
    enum ref_result want = reference(copy, inlen, cap, ref, &reflen);

    if (rc == IOT_ENOMEM || want == REF_NOMEM) goto done;
    if (rc != 0) FUZZ_CHECK(out == NULL && outlen == 0, "outputs set on failure (rc %d)", rc);
    switch (want) {
    case REF_OK:
        FUZZ_CHECK(rc == 0, "valid gzip of %zu bytes (cap %zu) refused with %d", reflen, cap, rc);
        FUZZ_CHECK(outlen == reflen, "length %zu, reference %zu", outlen, reflen);
        FUZZ_CHECK(memcmp(out, ref, reflen) == 0, "inflated bytes differ from the reference");
        FUZZ_CHECK(out[outlen] == '\0', "not NUL-terminated");
        break;
    case REF_TOOBIG:
        FUZZ_CHECK(rc == IOT_ETOOBIG, "inflates past the cap %zu, got %d", cap, rc);
        break;
    case REF_INVALID:
        FUZZ_CHECK(rc == IOT_EINVAL, "invalid gzip (reference %zu bytes out), got %d", reflen, rc);
        break;
    case REF_NOMEM:
        break;
    }
done:
    free(out);
    free(ref);
    free(copy);
    return 0;
}
