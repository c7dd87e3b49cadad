#include "support/http_harness.h"
#include "core/err.h"
#include "http/http_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct harness_ctx {
    const char *const *headers;
    char query[1024]; /* the URL after '?', as given (not percent-decoded) */
    char value[1024]; /* the last value h_query returned */
    struct http_harness_reply *out;
    int responded;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int resumed;
};

static const char *h_header(struct request *rq, const char *name)
{
    struct harness_ctx *c = rq->tctx;
    for (const char *const *h = c->headers; h && h[0] && h[1]; h += 2)
        if (strcasecmp(h[0], name) == 0) return h[1];
    return NULL;
}

/* name=value pairs separated by '&'; no percent-decoding (the callers pass plain values). */
static const char *h_query(struct request *rq, const char *name)
{
    struct harness_ctx *c = rq->tctx;
    size_t nl = strlen(name);
    for (const char *p = c->query; *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            snprintf(c->value, sizeof c->value, "%.*s", (int)(len - nl - 1), p + nl + 1);
            return c->value;
        }
        p += len + (end != NULL);
    }
    return NULL;
}

static int h_respond(struct request *rq, struct http_reply *r)
{
    struct harness_ctx *c = rq->tctx;
    if (c->responded) { /* a second answer is a bug in request.c: keep the first */
        free(r->body);
        return MHD_NO;
    }
    c->responded = 1;
    c->out->status = r->status;
    c->out->body = r->body;
    c->out->len = r->len;
    c->out->retry_after_s = r->retry_after_s;
    return MHD_YES;
}

static void h_suspend(struct request *rq)
{
    (void)rq;
}

static void h_resume(struct request *rq)
{
    struct harness_ctx *c = rq->tctx;
    pthread_mutex_lock(&c->mu);
    c->resumed = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static const struct http_transport harness_transport = {h_header, h_query, h_respond, h_suspend,
                                                        h_resume};

int http_harness_serve(struct http_server *s, const char *method, const char *url,
                       const char *const *headers, const char *client_ip, const char *body,
                       size_t len, struct http_harness_reply *out)
{
    struct harness_ctx c = {.headers = headers, .out = out};
    memset(out, 0, sizeof *out);
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    struct request *rq = request_create(s, &harness_transport, &c, method);
    if (!rq) return IOT_ENOMEM;
    snprintf(rq->client_ip, sizeof rq->client_ip, "%s", client_ip ? client_ip : "127.0.0.1");
    /* As libmicrohttpd does, the route sees the path; the query is read apart. */
    char path[2048];
    const char *q = strchr(url, '?');
    snprintf(path, sizeof path, "%.*s", q ? (int)(q - url) : (int)strlen(url), url);
    if (q) snprintf(c.query, sizeof c.query, "%s", q + 1);
    int ok = request_headers(rq, path);
    /* Like libmicrohttpd, deliver the body in pieces, then the end of it. */
    for (size_t off = 0; ok && !c.responded && off < len; off += 4096)
        ok = request_body(rq, body + off, len - off < 4096 ? len - off : 4096);
    if (ok && !c.responded) ok = request_complete(rq);
    if (ok && rq->suspended) {
        pthread_mutex_lock(&c.mu);
        while (!c.resumed)
            pthread_cond_wait(&c.cv, &c.mu);
        pthread_mutex_unlock(&c.mu);
        request_complete(rq);
    }
    request_destroy(rq, !c.responded);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
    if (!c.responded) out->status = 0; /* the connection would have been dropped */
    return 0;
}

void http_harness_reply_fini(struct http_harness_reply *r)
{
    free(r->body);
    r->body = NULL;
}
