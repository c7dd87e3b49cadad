/* Building and queueing responses: JSON bodies, the error shape, Retry-After. */
#include "core/err.h"
#include "core/log.h"
#include "http/http_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int reply_text(struct request *rq, unsigned status, const char *content_type, char *text,
               size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (status == 405) {
        const char *allow =
            rq->route == ROUTE_HEALTH || rq->route == ROUTE_METRICS || rq->route == ROUTE_STATUS
                ? "GET"
                : "POST";
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    }
    int ret = MHD_queue_response(rq->conn, status, r);
    MHD_destroy_response(r);
    rq->status = (int)status;
    return ret;
}

int reply_json(struct request *rq, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) return MHD_NO;
    return reply_text(rq, status, "application/json", text, strlen(text));
}

static json_t *error_body(const char *code, const char *detail)
{
    return json_pack("{s:s, s:s}", "detail", detail, "code", code);
}

int reply_error(struct request *rq, unsigned status, const char *code, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return reply_json(rq, status, error_body(code, detail));
}

int reply_retry(struct request *rq, unsigned status, int retry_after_s, const char *code,
                const char *detail)
{
    json_t *body = error_body(code, detail);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    char ra[16];
    snprintf(ra, sizeof ra, "%d", retry_after_s);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    int ret = MHD_queue_response(rq->conn, status, r);
    MHD_destroy_response(r);
    rq->status = (int)status;
    return ret;
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
    LOG(LOG_ERROR, "internal_error", "err=\"%s\"", iot_strerror(err));
    return reply_error(rq, 500, "internal_error", "internal error: %s", iot_strerror(err));
}
