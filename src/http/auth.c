/*
 * Authentication: X-Device-Key (the device's own key) or X-API-Key (the
 * global key). Both are hashed and compared in constant time; an unknown
 * device costs the same as a wrong key and gets the same answer.
 *
 * Failed authentications are budgeted in one limiter (rl_authfail), under
 * three kinds of key, each led by the client's limit key (rq_limit_key):
 *
 *   "<addr>\0d<device_uuid>"  one pair of address and claimed device
 *   "<addr>\0k"               the pair of address and the API key
 *   "<addr>\0a"               the address as a whole
 *
 * A pair past its budget (AUTH_FAIL_BURST, AUTH_FAIL_RPS) is refused before
 * the device is looked up, whatever key it sends; other pairs of the same
 * address are not, so one bad actor behind a NAT cannot lock the other
 * devices out. The address key is charged 1/AUTH_FAIL_ADDR_FACTOR per
 * failure (a budget that many times looser) and is never checked before the
 * key: past it, a failure answers 429 instead of 401 and empties its pair at
 * once, so minting fresh device uuids buys one try each, not a burst. A
 * correct key is never refused by the address budget. docs/SECURITY.md says
 * what this does and does not stop.
 */
#include "core/clock.h"
#include "core/err.h"
#include "core/secret.h"
#include "http/http_int.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* Longest budget key: address, NUL, kind, device uuid. */
#define AUTH_KEY_MAX (CLIENT_IP_LEN + 2 + STORE_UUID_MAX)

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

/* Writes the budget key of kind ('d', 'k' or 'a') for rq into key; returns its length. */
static size_t auth__key(struct request *rq, char kind, char key[AUTH_KEY_MAX])
{
    const char *addr = rq_limit_key(rq);
    size_t n = strlen(addr);
    memcpy(key, addr, n);
    key[n++] = 0; /* an address never holds a NUL: "<addr>\0..." cannot be another address */
    key[n++] = kind;
    if (kind == 'd') {
        size_t u = strnlen(rq->device_uuid, STORE_UUID_MAX);
        memcpy(key + n, rq->device_uuid, u);
        n += u;
    }
    return n;
}

/*
 * The budget keys of the pairs rq claims, into keys/lens; returns how many
 * (1 or 2). The legacy routes take the API key only. Elsewhere a request
 * claims the API key when it sends X-API-Key, and the device it names when it
 * sends X-Device-Key or no key at all; sending both claims both, so adding a
 * device key header cannot give API-key guesses a fresh budget.
 */
static int auth__pairs(struct request *rq, char keys[2][AUTH_KEY_MAX], size_t lens[2])
{
    int api = rq_header(rq, "X-API-Key") != NULL;
    int dev = !api || rq_header(rq, "X-Device-Key");
    if (rq->route == ROUTE_READINGS || rq->route == ROUTE_READINGS_BULK) api = 1, dev = 0;
    int n = 0;
    if (dev) lens[n] = auth__key(rq, 'd', keys[n]), n++;
    if (api) lens[n] = auth__key(rq, 'k', keys[n]), n++;
    return n;
}

int auth_locked_out(struct request *rq, int *ret)
{
    char keys[2][AUTH_KEY_MAX];
    size_t lens[2];
    int n = auth__pairs(rq, keys, lens), retry = 0;
    int64_t now = clock_mono_ms();
    for (int i = 0; i < n; i++) {
        int r = 1;
        if (!rl_peek(rq->srv->rl_authfail, keys[i], lens[i], now, &r) && r > retry) retry = r;
    }
    if (!retry) return 0;
    atomic_fetch_add_explicit(&rq->srv->metrics.rate_limited_auth, 1, memory_order_relaxed);
    *ret = reply_retry(rq, 429, retry, "rate_limited_auth",
                       "too many failed authentications for this identity from this address; "
                       "retry later");
    return 1;
}

void auth_failed(struct request *rq)
{
    struct http_server *s = rq->srv;
    char keys[2][AUTH_KEY_MAX], addr[AUTH_KEY_MAX];
    size_t lens[2];
    int n = auth__pairs(rq, keys, lens), retry = 1;
    int64_t now = clock_mono_ms();

    atomic_fetch_add_explicit(&s->metrics.auth_failures, 1, memory_order_relaxed);
    for (int i = 0; i < n; i++)
        rl_take(s->rl_authfail, keys[i], lens[i], now, NULL);
    int factor = s->d.cfg->auth_fail_addr_factor;
    size_t alen = auth__key(rq, 'a', addr);
    if (!factor || rl_take_cost(s->rl_authfail, addr, alen, 1.0 / factor, now, &retry)) return;
    /* Past the address budget: this try was the pair's last for now. */
    for (int i = 0; i < n; i++)
        rl_drain(s->rl_authfail, keys[i], lens[i], now);
    rq->auth_retry_s = retry;
}

/*
 * The 401 detail names the header that was sent and is wrong (whether the
 * device exists is never said to a caller without the API key).
 */
static const char *auth__denied_detail(struct request *rq)
{
    int dk = rq_header(rq, "X-Device-Key") != NULL, ak = rq_header(rq, "X-API-Key") != NULL;
    if (ak && auth_api_key(rq)) return "the X-API-Key is valid, but no such device exists";
    if (ak) return dk ? "invalid X-Device-Key and X-API-Key" : "invalid X-API-Key";
    return dk ? "missing or invalid device key (X-Device-Key)"
              : "missing device key: send X-Device-Key (or X-API-Key)";
}

int auth_reply_denied(struct request *rq, const char *detail)
{
    if (!rq->auth_retry_s)
        return reply_error(rq, 401, "unauthorized", "%s",
                           detail ? detail : auth__denied_detail(rq));
    atomic_fetch_add_explicit(&rq->srv->metrics.rate_limited_auth, 1, memory_order_relaxed);
    return reply_retry(rq, 429, rq->auth_retry_s, "rate_limited_auth",
                       "too many failed authentications from this address; retry later");
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
