/* Building and queueing responses: JSON bodies, the error shape, Retry-After, X-Request-Id. */
#include "core/err.h"
#include "core/log.h"
#include "http/http_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Hands text (malloc'ed, taken) to the transport. */
static int queue(struct request *rq, unsigned status, const char *content_type, char *text,
                 size_t len, int retry_after_s)
{
    struct http_reply r = {status, content_type, text, len, retry_after_s, NULL, rq->close};
    if (status == 405)
        r.allow = rq->route == ROUTE_HEALTH || rq->route == ROUTE_METRICS ||
                          rq->route == ROUTE_STATUS || rq->route == ROUTE_HISTORY
                      ? "GET, HEAD"
                      : "POST";
    rq->status = (int)status;
    return rq->tp->respond(rq, &r);
}

int reply_text(struct request *rq, unsigned status, const char *content_type, char *text,
               size_t len)
{
    return queue(rq, status, content_type, text, len, 0);
}

static int json_reply(struct request *rq, unsigned status, json_t *body, int retry_after_s)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) return MHD_NO;
    return queue(rq, status, "application/json", text, strlen(text), retry_after_s);
}

int reply_json(struct request *rq, unsigned status, json_t *body)
{
    return json_reply(rq, status, body, 0);
}

/*
 * Replaces every byte that is not part of a valid UTF-8 sequence with '?',
 * in place. Details may quote client input (a URL, jansson's view of a
 * broken body), and JSON text must be valid UTF-8.
 */
static void utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = *p < 0x80         ? 1
                   : (*p >> 5) == 6  ? 2
                   : (*p >> 4) == 14 ? 3
                   : (*p >> 3) == 30 ? 4
                                     : 0;
        size_t k = 1;
        while (n && k < n && (p[k] & 0xC0) == 0x80)
            k++;
        /* Overlong, surrogate and out-of-range forms are left to jansson's check below. */
        if (n == 0 || k < n) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

static json_t *error_body(const char *code, const char *detail)
{
    json_t *j = json_pack("{s:s, s:s}", "detail", detail, "code", code);
    /* Still not UTF-8 jansson accepts (an overlong form, a surrogate): say so plainly. */
    return j ? j : json_pack("{s:s, s:s}", "detail", "the request is malformed", "code", code);
}

int reply_error(struct request *rq, unsigned status, const char *code, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    utf8_sanitize(detail);
    rq->code = code;
    return json_reply(rq, status, error_body(code, detail), 0);
}

int reply_retry(struct request *rq, unsigned status, int retry_after_s, const char *code,
                const char *detail)
{
    rq->code = code;
    return json_reply(rq, status, error_body(code, detail), retry_after_s > 0 ? retry_after_s : 1);
}

int reply_store_error(struct request *rq, int err)
{
    if (iot_err_retryable(err)) {
        const char *code = err == IOT_EFULL ? "overloaded" : "db_unavailable";
        const char *detail = err == IOT_EFULL       ? "the write queue is full; retry shortly"
                             : err == IOT_ESHUTDOWN ? "the gateway is shutting down; retry"
                                                    : "the database is unavailable; retry shortly";
        return reply_retry(rq, 503, err == IOT_EFULL ? 1 : 2, code, detail);
    }
    LOG(LOG_ERROR, "internal_error", "request_id=%s err=\"%s\"", rq->request_id, iot_strerror(err));
    return reply_error(rq, 500, "internal_error", "internal error: %s", iot_strerror(err));
}

int reply_no_valid_text(struct request *rq, struct buf *answer, const char *what)
{
    if (intake_answer_no_valid(answer, what)) return MHD_NO;
    rq->code = "no_valid_readings";
    char *text = answer->p;
    size_t len = answer->len;
    *answer = (struct buf){0};
    return reply_text(rq, 422, "application/json", text, len);
}

int reply_no_valid(struct request *rq, json_t *answer, const char *what)
{
    char *text = json_dumps(answer, JSON_COMPACT);
    json_decref(answer);
    if (!text) return MHD_NO;
    struct buf b = {text, strlen(text), strlen(text) + 1};
    return reply_no_valid_text(rq, &b, what);
}
