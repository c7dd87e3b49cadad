/*
 * Request body decoding: Content-Type and Content-Encoding checks and gzip
 * inflation with a hard cap on the inflated size (a gzip bomb stops at the
 * cap without allocating past it).
 */
#ifndef IOT_BODY_DECODE_H
#define IOT_BODY_DECODE_H

#include <stddef.h>

/* 1 if the Content-Type is JSON (NULL = missing = JSON; params like charset ok). */
int body_content_type_ok(const char *content_type);

enum body_encoding { BODY_IDENTITY, BODY_GZIP, BODY_UNSUPPORTED };
/* NULL, "identity" -> BODY_IDENTITY; "gzip" (case-insensitive, spaces trimmed) -> BODY_GZIP. */
enum body_encoding body_encoding_parse(const char *content_encoding);

/*
 * Inflates a gzip (RFC 1952) buffer. On success *out is a malloc'ed buffer
 * (NUL-terminated, caller frees) and *outlen its length. Returns 0,
 * IOT_ETOOBIG when the inflated data would exceed max_out, IOT_EINVAL when the
 * data is not valid gzip (truncated, bad CRC, trailing garbage), IOT_ENOMEM.
 */
int body_gunzip(const void *in, size_t inlen, size_t max_out, char **out, size_t *outlen);

#endif
