/*
 * Identifiers that travel unescaped: device and sensor uuids (they stand in
 * the status URL's path) and request ids (they stand in log lines). One
 * alphabet for all of them, [A-Za-z0-9._:-], so a character counts one byte
 * and every documented limit is the same in bytes and in characters.
 */
#ifndef IOT_IDENT_H
#define IOT_IDENT_H

#include <stddef.h>

/* The alphabet, for messages and strspn(). */
#define IDENT_ALPHABET_TEXT "A-Z a-z 0-9 . _ : -"
#define IDENT_ALPHABET      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"

/* The length of the longest prefix of s[0..n) made of the alphabet. */
size_t ident_span(const char *s, size_t n);

/* 1 when s[0..n) is 1 to max characters of the alphabet, else 0. */
static inline int ident_valid(const char *s, size_t n, size_t max)
{
    return n >= 1 && n <= max && ident_span(s, n) == n;
}

/*
 * Request ids the gateway makes (HTTP without a usable X-Request-Id, MQTT
 * PUBLISHes): a per-process random prefix, so that the ids of two gateways
 * or two runs differ, then a sequence number; 20 hex digits.
 */
#define IDENT_REQUEST_ID_LEN 20
unsigned ident_request_prefix(void);
void ident_request_id(char *out, size_t cap, unsigned prefix, unsigned long long seq);

#endif
