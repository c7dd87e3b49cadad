/*
 * Serving one request from memory, below the HTTP library: method, path,
 * headers and body in; status, headers and body out. The request goes
 * through exactly the code a socket request does (request.c and the
 * endpoints), including the writer and its commit. For fuzzing and tests:
 * part of the test-support library (tests/support/), never of the product
 * binary; it reaches request.c through the private src/http/http_int.h.
 */
#ifndef IOT_TESTS_HTTP_HARNESS_H
#define IOT_TESTS_HTTP_HARNESS_H

#include "http/server.h"

#include <stddef.h>

struct http_harness_reply {
    unsigned status;
    char *body; /* malloc'ed; free with http_harness_reply_fini */
    size_t len;
    int retry_after_s;
};

/*
 * headers: name, value, name, value, ..., NULL (names case-insensitive).
 * client_ip: the address the request seems to come from. The server comes
 * from http_server_create (never started). Returns 0, or IOT_ENOMEM.
 */
int http_harness_serve(struct http_server *s, const char *method, const char *url,
                       const char *const *headers, const char *client_ip, const char *body,
                       size_t len, struct http_harness_reply *out);
void http_harness_reply_fini(struct http_harness_reply *r);

#endif
