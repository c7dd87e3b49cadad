/* The front door of ingest (see intake.h for what it decides and why). */
#include "ingest/intake.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/rate_limit.h"
#include "core/secret.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct intake {
    const struct config *cfg;
    struct rate_limiter *rl_device, *rl_authfail;
    int api_key_set;
    unsigned char api_key_hash[SECRET_HASH_LEN];
    struct intake_metrics metrics;
};

/* Longest budget key: address, NUL, kind, device uuid. */
#define INTAKE_KEY_MAX (INTAKE_ADDR_MAX + 1 + STORE_UUID_MAX)

int intake_create(const struct config *cfg, struct intake **out)
{
    struct intake *in = calloc(1, sizeof *in);
    if (!in) return IOT_ENOMEM;
    in->cfg = cfg;
    int rc = rl_create(cfg->rate_limit_device_rps, cfg->rate_limit_burst,
                       (size_t)cfg->rate_limit_max_buckets, &in->rl_device);
    if (!rc)
        rc = rl_create(cfg->auth_fail_rps, cfg->auth_fail_burst,
                       (size_t)cfg->rate_limit_max_buckets, &in->rl_authfail);
    if (!rc && cfg->api_key[0]) {
        in->api_key_set = 1;
        rc = secret_hash(cfg->api_key, strlen(cfg->api_key), in->api_key_hash);
    }
    if (rc) {
        intake_destroy(in);
        return rc;
    }
    *out = in;
    return 0;
}

void intake_destroy(struct intake *in)
{
    if (!in) return;
    rl_destroy(in->rl_device);
    rl_destroy(in->rl_authfail);
    free(in);
}

struct intake_metrics *intake_metrics(struct intake *in)
{
    return &in->metrics;
}

static void count(atomic_ullong *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* Writes the budget key of kind ('d', 'k' or 'a') for c into key; returns its length. */
static size_t budget_key(const struct intake_claim *c, char kind, char key[INTAKE_KEY_MAX])
{
    size_t n = strnlen(c->addr, INTAKE_ADDR_MAX - 1);
    memcpy(key, c->addr, n);
    key[n++] = 0; /* an address never holds a NUL: "<addr>\0..." cannot be another address */
    key[n++] = kind;
    if (kind == 'd') {
        size_t u = strnlen(c->device_uuid, STORE_UUID_MAX);
        memcpy(key + n, c->device_uuid, u);
        n += u;
    }
    return n;
}

/*
 * The budget keys of the pairs c claims, into keys/lens; returns how many
 * (1 or 2). A claim that presents the API key claims the pair of the API
 * key, and one that presents a device key or no key at all claims the pair
 * of the device it names; presenting both claims both, so adding a device
 * key cannot give API-key guesses a fresh budget.
 */
static int claimed_pairs(const struct intake_claim *c, char keys[2][INTAKE_KEY_MAX], size_t lens[2])
{
    int api = c->api_key != NULL;
    int dev = !api || c->device_key != NULL;
    if (c->api_only) api = 1, dev = 0;
    int n = 0;
    if (dev) lens[n] = budget_key(c, 'd', keys[n]), n++;
    if (api) lens[n] = budget_key(c, 'k', keys[n]), n++;
    return n;
}

int intake_locked_out(struct intake *in, const struct intake_claim *c)
{
    char keys[2][INTAKE_KEY_MAX];
    size_t lens[2];
    int n = claimed_pairs(c, keys, lens), retry = 0;
    int64_t now = clock_mono_ms();
    for (int i = 0; i < n; i++) {
        int r = 1;
        if (!rl_peek(in->rl_authfail, keys[i], lens[i], now, &r) && r > retry) retry = r;
    }
    if (retry) count(&in->metrics.rate_limited_auth);
    return retry;
}

void intake_failed(struct intake *in, const struct intake_claim *c, int *retry_s)
{
    char keys[2][INTAKE_KEY_MAX], addr[INTAKE_KEY_MAX];
    size_t lens[2];
    int n = claimed_pairs(c, keys, lens), retry = 1;
    int64_t now = clock_mono_ms();
    *retry_s = 0;
    count(&in->metrics.auth_failures);
    for (int i = 0; i < n; i++)
        rl_take(in->rl_authfail, keys[i], lens[i], now, NULL);
    int factor = in->cfg->auth_fail_addr_factor;
    size_t alen = budget_key(c, 'a', addr);
    if (!factor || rl_take_cost(in->rl_authfail, addr, alen, 1.0 / factor, now, &retry)) return;
    /* Past the address budget: this try was the pair's last for now. */
    for (int i = 0; i < n; i++)
        rl_drain(in->rl_authfail, keys[i], lens[i], now);
    count(&in->metrics.rate_limited_auth);
    *retry_s = retry;
}

/* SHA-256 of a presented key; 0 when none was presented. */
static int key_hash(const char *key, size_t len, unsigned char h[SECRET_HASH_LEN])
{
    return key && secret_hash(key, len, h) == 0;
}

int intake_api_key_ok(struct intake *in, const struct intake_claim *c)
{
    unsigned char h[SECRET_HASH_LEN];
    if (!key_hash(c->api_key, c->api_key_len, h)) return 0;
    int ok = secret_hash_equal(h, in->api_key_hash);
    return ok && in->api_key_set;
}

enum intake_auth intake_authenticate(struct intake *in, const struct intake_claim *c,
                                     const struct store_device *dev, int *retry_s)
{
    static const unsigned char nobody[SECRET_HASH_LEN];
    unsigned char h[SECRET_HASH_LEN];
    int ok = 0;
    *retry_s = 0;
    const struct intake_cert *cert = c->cert;
    if (cert && (cert->refused || cert->device[0])) {
        /* A certificate decides alone: the one device it names, or nothing. */
        ok = !cert->refused && dev && strcmp(dev->uuid, cert->device) == 0;
        if (!ok) {
            intake_failed(in, c, retry_s);
            return INTAKE_AUTH_DENIED;
        }
        return dev->is_active ? INTAKE_AUTH_OK : INTAKE_AUTH_INACTIVE;
    }
    if (!(cert && cert->required) && key_hash(c->device_key, c->device_key_len, h))
        ok = secret_hash_equal(h, dev ? dev->key_hash : nobody);
    ok = ok && dev;
    int api = !ok && intake_api_key_ok(in, c);
    if (!ok) ok = api && dev;
    if (!ok) {
        /* A valid API key naming an unknown device is no guess at a secret. */
        if (!api)
            intake_failed(in, c, retry_s);
        else
            count(&in->metrics.auth_failures);
        return INTAKE_AUTH_DENIED;
    }
    return dev->is_active ? INTAKE_AUTH_OK : INTAKE_AUTH_INACTIVE;
}

int intake_device_take(struct intake *in, int64_t device_id, int *retry_s)
{
    *retry_s = 1;
    if (rl_take(in->rl_device, &device_id, sizeof device_id, clock_mono_ms(), retry_s)) return 1;
    count(&in->metrics.rate_limited_device);
    return 0;
}

void intake_count_rejected(struct intake *in, enum reject_reason why)
{
    count(&in->metrics.rejected[why]);
}

void intake_reading_fill(struct write_reading *w, int index, const struct store_sensor *sen,
                         const struct store_device *dev, double value, int64_t ts, int stamped)
{
    memset(w, 0, sizeof *w);
    w->index = index;
    w->sensor_id = sen->id;
    w->device_id = dev->id;
    memcpy(w->sensor_uuid, sen->uuid, sizeof w->sensor_uuid);
    memcpy(w->device_uuid, dev->uuid, sizeof w->device_uuid);
    w->value = value;
    w->ts = ts;
    w->stamped = stamped;
    memcpy(w->thr, sen->thr, sizeof w->thr);
}

/* Checks one decoded reading in the order of SPEC §5; on success fills w. */
static enum reject_reason check_reading(const struct intake *in, const struct device_ref *dref,
                                        const struct decoded_packet *p,
                                        const struct decoded_reading *d, int64_t received_ms,
                                        struct write_reading *w)
{
    const struct store_sensor *sen = d->uuid_ok ? device_ref_sensor(dref, d->sensor_uuid) : NULL;
    if (!sen || !sen->is_active) return REJECT_UNKNOWN_SENSOR;
    if (!d->value_ok) return REJECT_INVALID_VALUE;
    int64_t ts;
    enum reject_reason why = decode_effective_ts(
        d, p, received_ms, in->cfg->max_future_skew_s * 1000, in->cfg->max_past_age_s * 1000, &ts);
    if (why != REJECT_NONE) return why;
    intake_reading_fill(w, d->index, sen, &dref->dev, d->value, ts, decode_ts_is_stamped(d, p));
    return REJECT_NONE;
}

/*
 * The answer is written as text, not built as a JSON tree: it is the same for
 * every packet but the rejections, and it is what the writer remembers with
 * the packet_id.
 */
int intake_judge(struct intake *in, const struct decoded_packet *p, const struct device_ref *dref,
                 int64_t received_ms, struct intake_verdict *out)
{
    struct buf rejected = {0};
    memset(out, 0, sizeof *out);
    struct write_reading *w = calloc(p->n ? p->n : 1, sizeof *w);
    int oom = !w;
    size_t nvalid = 0;
    for (size_t i = 0; !oom && i < p->n; i++) {
        const struct decoded_reading *d = &p->readings[i];
        enum reject_reason why = check_reading(in, dref, p, d, received_ms, &w[nvalid]);
        if (why == REJECT_NONE) {
            nvalid++;
            continue;
        }
        intake_count_rejected(in, why);
        oom = buf_printf(&rejected, "%s{\"index\":%d,\"sensor_uuid\":", rejected.len ? "," : "",
                         d->index) ||
              (d->uuid_ok ? buf_put_json_str(&rejected, d->sensor_uuid)
                          : buf_put(&rejected, "null", 4)) ||
              buf_printf(&rejected, ",\"reason\":\"%s\"}", reject_reason_name(why));
    }
    struct buf *a = &out->answer;
    oom = oom || buf_put(a, "{\"device_uuid\":", 15) || buf_put_json_str(a, p->device_uuid) ||
          buf_printf(a, ",\"accepted\":%zu,\"rejected\":[", nvalid) ||
          buf_put(a, rejected.p ? rejected.p : "", rejected.len) ||
          buf_put(a, "],\"duplicate\":false}", 20);
    buf_free(&rejected);
    if (oom) {
        free(w);
        buf_free(a);
        return IOT_ENOMEM;
    }
    out->readings = w;
    out->nvalid = nvalid;
    return 0;
}

void intake_verdict_fini(struct intake_verdict *v)
{
    free(v->readings);
    buf_free(&v->answer);
    memset(v, 0, sizeof *v);
}

int intake_answer_no_valid(struct buf *answer, const char *what)
{
    /* answer is one JSON object: reopen it before its closing brace. */
    int ok = answer->len >= 2 && answer->p[answer->len - 1] == '}';
    if (ok) {
        answer->p[--answer->len] = 0;
        ok = !buf_printf(answer,
                         ",\"detail\":\"no reading in the %s is valid\","
                         "\"code\":\"no_valid_readings\"}",
                         what);
    }
    if (ok) return 0;
    buf_free(answer);
    return IOT_ENOMEM;
}

char *intake_answer_duplicate(const char *stored)
{
    json_t *j = json_loads(stored, 0, NULL);
    if (!json_is_object(j) || json_object_set_new(j, "duplicate", json_true())) {
        json_decref(j);
        return NULL;
    }
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return text;
}
