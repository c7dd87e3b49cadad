/*
 * Authentication: X-Device-Key (the device's own key) or X-API-Key (the
 * global key). Both are hashed and compared in constant time; an unknown
 * device costs the same as a wrong key and gets the same answer.
 */
#include "core/clock.h"
#include "core/secret.h"
#include "http/http_int.h"

#include <string.h>

static int header_hash(struct request *rq, const char *name, unsigned char h[SECRET_HASH_LEN])
{
    const char *v = rq_header(rq, name);
    if (!v) return 0;
    /* RFC 9110 5.5: optional whitespace around a field value is not part of it. */
    size_t len = strlen(v);
    while (len && (*v == ' ' || *v == '\t'))
        v++, len--;
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    return secret_hash(v, len, h) == 0;
}

int auth_api_key(struct request *rq)
{
    unsigned char h[SECRET_HASH_LEN];
    if (!header_hash(rq, "X-API-Key", h)) return 0;
    int ok = secret_hash_equal(h, rq->srv->api_key_hash);
    return ok && rq->srv->api_key_set;
}

enum auth_result auth_device(struct request *rq, const struct store_device *dev)
{
    static const unsigned char nobody[SECRET_HASH_LEN];
    unsigned char h[SECRET_HASH_LEN];
    int ok = 0;
    if (header_hash(rq, "X-Device-Key", h)) ok = secret_hash_equal(h, dev ? dev->key_hash : nobody);
    ok = ok && dev;
    int api = !ok && auth_api_key(rq);
    if (!ok) ok = api && dev;
    if (!ok) {
        /* A valid API key naming an unknown device is no guess at a secret. */
        if (!api)
            auth_failed(rq);
        else
            atomic_fetch_add_explicit(&rq->srv->metrics.auth_failures, 1, memory_order_relaxed);
        return AUTH_DENIED;
    }
    return dev->is_active ? AUTH_OK : AUTH_INACTIVE;
}

int auth_locked_out(struct request *rq, int *ret)
{
    int retry = 1;
    const char *addr = rq_limit_key(rq);
    if (rl_peek(rq->srv->rl_authfail, addr, strlen(addr), clock_mono_ms(), &retry)) return 0;
    atomic_fetch_add_explicit(&rq->srv->metrics.rate_limited_auth, 1, memory_order_relaxed);
    *ret = reply_retry(rq, 429, retry, "rate_limited_auth",
                       "too many failed authentications from this address; retry later");
    return 1;
}

void auth_failed(struct request *rq)
{
    atomic_fetch_add_explicit(&rq->srv->metrics.auth_failures, 1, memory_order_relaxed);
    const char *addr = rq_limit_key(rq);
    rl_take(rq->srv->rl_authfail, addr, strlen(addr), clock_mono_ms(), NULL);
}

int auth_device_rate(struct request *rq, int64_t device_id, int *replied)
{
    int retry = 1;
    *replied = 0;
    if (rl_take(rq->srv->rl_device, &device_id, sizeof device_id, clock_mono_ms(), &retry))
        return MHD_YES;
    atomic_fetch_add_explicit(&rq->srv->metrics.rate_limited_device, 1, memory_order_relaxed);
    *replied = 1;
    return reply_retry(rq, 429, retry, "rate_limited_device",
                       "too many requests for this device; retry later");
}
