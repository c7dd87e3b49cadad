/*
 * Authentication of HTTP requests: X-Device-Key (the device's own key) or
 * X-API-Key (the global key), decided by the shared front door
 * (src/ingest/intake.h: the keys' checks and the failed-authentication
 * budgets, whatever the transport). Here: the claim a request makes, read
 * from its headers and its client address, and the HTTP answers.
 */
#include "core/err.h"
#include "http/http_int.h"
#include "tls/tls_keys.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* A header's value without the optional whitespace around it (RFC 9110 5.5). */
static const char *auth__header(struct request *rq, const char *name, size_t *len)
{
    const char *v = rq_header(rq, name);
    if (!v) return NULL;
    size_t n = strlen(v);
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    *len = n;
    return v;
}

/* The identity rq claims: its address, the device it names, the keys it sends. */
static struct intake_claim auth__claim(struct request *rq)
{
    struct intake_claim c = {rq_limit_key(rq), rq->device_uuid, NULL, 0, NULL, 0, 0, NULL};
    c.device_key = auth__header(rq, "X-Device-Key", &c.device_key_len);
    c.api_key = auth__header(rq, "X-API-Key", &c.api_key_len);
    c.api_only = rq->route == ROUTE_READINGS || rq->route == ROUTE_READINGS_BULK;
    if (tls_keys_client_auth(rq->srv->d.tls) != TLS_CLIENT_OFF) c.cert = &rq->cert;
    return c;
}

int auth_api_key(struct request *rq)
{
    struct intake_claim c = auth__claim(rq);
    return intake_api_key_ok(rq->srv->d.intake, &c);
}

enum auth_result auth_device(struct request *rq, const struct store_device *dev)
{
    struct intake_claim c = auth__claim(rq);
    switch (intake_authenticate(rq->srv->d.intake, &c, dev, &rq->auth_retry_s)) {
    case INTAKE_AUTH_OK:
        return AUTH_OK;
    case INTAKE_AUTH_INACTIVE:
        return AUTH_INACTIVE;
    case INTAKE_AUTH_DENIED:
        break;
    }
    return AUTH_DENIED;
}

int auth_locked_out(struct request *rq, int *ret)
{
    struct intake_claim c = auth__claim(rq);
    int retry = intake_locked_out(rq->srv->d.intake, &c);
    if (!retry) return 0;
    *ret = reply_retry(rq, 429, retry, "rate_limited_auth",
                       "too many failed authentications for this identity from this address; "
                       "retry later");
    return 1;
}

void auth_failed(struct request *rq)
{
    struct intake_claim c = auth__claim(rq);
    intake_failed(rq->srv->d.intake, &c, &rq->auth_retry_s);
}

/*
 * The 401 detail names the header that was sent and is wrong (whether the
 * device exists is never said to a caller without the API key).
 */
static const char *auth__denied_detail(struct request *rq)
{
    int dk = rq_header(rq, "X-Device-Key") != NULL, ak = rq_header(rq, "X-API-Key") != NULL;
    if (rq->cert.refused) return rq->cert.refused;
    if (rq->cert.device[0]) {
        snprintf(rq->cert_detail, sizeof rq->cert_detail,
                 "the client certificate names device %s, not this one", rq->cert.device);
        return rq->cert_detail;
    }
    if (ak && auth_api_key(rq)) return "the X-API-Key is valid, but no such device exists";
    if (rq->cert.required && !ak)
        return "a client certificate naming the device is required (TLS_CLIENT_AUTH=required)";
    if (ak) return dk ? "invalid X-Device-Key and X-API-Key" : "invalid X-API-Key";
    return dk ? "missing or invalid device key (X-Device-Key)"
              : "missing device key: send X-Device-Key (or X-API-Key)";
}

int auth_reply_denied(struct request *rq, const char *detail)
{
    if (!rq->auth_retry_s)
        return reply_error(rq, 401, "unauthorized", "%s",
                           detail ? detail : auth__denied_detail(rq));
    return reply_retry(rq, 429, rq->auth_retry_s, "rate_limited_auth",
                       "too many failed authentications from this address; retry later");
}

int auth_device_rate(struct request *rq, int64_t device_id, int *replied)
{
    int retry;
    *replied = 0;
    if (intake_device_take(rq->srv->d.intake, device_id, &retry)) return MHD_YES;
    *replied = 1;
    return reply_retry(rq, 429, retry, "rate_limited_device",
                       "too many requests for this device; retry later");
}

int auth_device_read(struct request *rq, const char *device_uuid, const struct device_ref **dref,
                     int *ret)
{
    struct http_server *s = rq->srv;
    *dref = NULL;
    snprintf(rq->device_uuid, sizeof rq->device_uuid, "%s", device_uuid);
    if (auth_locked_out(rq, ret)) return 1;
    int rc = resolver_get(s->d.resolver, device_uuid, dref);
    if (rc && rc != IOT_ENOTFOUND) {
        *ret = reply_store_error(rq, rc);
        return 1;
    }
    if (!*dref && auth_api_key(rq)) {
        *ret = reply_error(rq, 404, "not_found", "no such device");
        return 1;
    }
    switch (auth_device(rq, *dref ? &(*dref)->dev : NULL)) {
    case AUTH_DENIED:
        *ret = auth_reply_denied(rq, NULL);
        break;
    case AUTH_INACTIVE:
        if (auth_api_key(rq)) return 0;
        *ret = reply_error(rq, 403, "device_inactive", "this device is disabled");
        break;
    case AUTH_OK:
        assert(*dref); /* auth_device returns AUTH_OK for a known device only */
        return 0;
    }
    resolver_release(s->d.resolver, *dref);
    *dref = NULL;
    return 1;
}
