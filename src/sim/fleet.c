#include "sim/fleet.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/secret.h"
#include "core/buf.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_BODY_MAX (4u << 20) /* a status answer bigger than this is refused */

int sim_fleet_create(size_t ndev, size_t nsensors, struct sim_fleet **out)
{
    *out = NULL;
    struct sim_fleet *f = calloc(1, sizeof *f);
    if (!f) return IOT_ENOMEM;
    f->dev = calloc(ndev ? ndev : 1, sizeof *f->dev);
    if (!f->dev) {
        free(f);
        return IOT_ENOMEM;
    }
    f->ndev = ndev;
    for (size_t i = 0; i < ndev && nsensors; i++) {
        f->dev[i].sensors = calloc(nsensors, sizeof *f->dev[i].sensors);
        if (!f->dev[i].sensors) {
            sim_fleet_destroy(f);
            return IOT_ENOMEM;
        }
        f->dev[i].nsensors = nsensors;
    }
    *out = f;
    return 0;
}

void sim_fleet_destroy(struct sim_fleet *f)
{
    if (!f) return;
    for (size_t i = 0; f->dev && i < f->ndev; i++)
        free(f->dev[i].sensors);
    free(f->dev);
    free(f);
}

/* Adds one device and its sensors in one transaction. */
static int add_device(struct store *s, struct sim_device *d, size_t index, int64_t now)
{
    unsigned char h[SECRET_HASH_LEN];
    int64_t id, sid, did;
    int rc = secret_hash(d->key, strlen(d->key), h);
    if (rc) return rc;
    char name[STORE_NAME_MAX + 1];
    snprintf(name, sizeof name, "sim device %zu", index + 1);
    if ((rc = store_tx_begin(s))) return rc;
    rc = store_device_add(s, d->uuid, name, h, now, &id);
    for (size_t k = 0; !rc && k < d->nsensors; k++) {
        const struct sim_profile *p = d->sensors[k].sig.p;
        snprintf(name, sizeof name, "%s %zu", p->type, k + 1);
        rc = store_sensor_add(s, d->uuid, d->sensors[k].uuid, name, p->type, p->unit, now, &sid,
                              &did);
    }
    if (!rc) return store_tx_commit(s);
    (void)store_tx_rollback(s); /* the original error is the one to report */
    return rc;
}

static int add_thresholds(struct store *s, const struct sim_sensor *sn, int64_t now)
{
    const struct sim_profile *p = sn->sig.p;
    int64_t tid;
    struct store_threshold w = {.min = p->warn_min, .max = p->warn_max, .has_min = 1, .has_max = 1};
    struct store_threshold c = {.min = p->crit_min,
                                .max = p->crit_max,
                                .delta_max = p->delta_max,
                                .has_min = 1,
                                .has_max = 1,
                                .has_delta = 1};
    int rc = store_threshold_set(s, sn->uuid, SEV_WARNING, &w, now, &tid);
    if (!rc) rc = store_threshold_set(s, sn->uuid, SEV_CRITICAL, &c, now, &tid);
    return rc;
}

int sim_fleet_provision(struct sim_fleet *f, struct store *s, const char *prefix, int thresholds,
                        struct sim_rng *r, char *err, size_t errlen)
{
    int64_t now = clock_now_ms();
    for (size_t i = 0; i < f->ndev; i++) {
        struct sim_device *d = &f->dev[i];
        int n = snprintf(d->uuid, sizeof d->uuid, "%s-d%06zu", prefix, i + 1);
        if (n < 0 || (size_t)n >= sizeof d->uuid - 5) {
            snprintf(err, errlen, "prefix too long for a device uuid");
            return IOT_EINVAL;
        }
        char key[SECRET_KEY_HEX_LEN + 1];
        if (secret_generate(key)) {
            snprintf(err, errlen, "no randomness available for device keys");
            return IOT_EIO;
        }
        snprintf(d->key, sizeof d->key, "%s", key);
        for (size_t k = 0; k < d->nsensors; k++) {
            struct sim_sensor *sn = &d->sensors[k];
            n = snprintf(sn->uuid, sizeof sn->uuid, "%s-s%03zu", d->uuid, k + 1);
            if (n < 0 || (size_t)n >= sizeof sn->uuid) {
                snprintf(err, errlen, "prefix too long for a sensor uuid");
                return IOT_EINVAL;
            }
            sim_signal_init(&sn->sig, sim_profile_at(k), r);
        }
        int rc = add_device(s, d, i, now); /* one transaction: all or nothing */
        if (!rc) f->provisioned = i + 1;
        for (size_t k = 0; !rc && thresholds && k < d->nsensors; k++)
            rc = add_thresholds(s, &d->sensors[k], now);
        if (rc == IOT_EEXIST) {
            snprintf(err, errlen, "device %s already exists (choose another --prefix)", d->uuid);
            return rc;
        }
        if (rc) {
            snprintf(err, errlen, "provisioning %s: %s: %s", d->uuid, iot_strerror(rc),
                     store_errmsg(s));
            return rc;
        }
    }
    return 0;
}

/* libcurl write callback: appends to a buf, refusing more than STATUS_BODY_MAX. */
static size_t collect(char *data, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t n = size * nmemb;
    if (b->len + n > STATUS_BODY_MAX || buf_put(b, data, n)) return 0;
    return n;
}

/* Fills d's sensors from one status answer (JSON text). */
static int sensors_from_status(struct sim_device *d, const char *text, size_t max_sensors,
                               struct sim_rng *r)
{
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    json_t *arr = root ? json_object_get(root, "sensors") : NULL;
    if (!json_is_array(arr)) {
        json_decref(root);
        return IOT_EINVAL;
    }
    size_t n = json_array_size(arr);
    if (max_sensors && n > max_sensors) n = max_sensors;
    if (n == 0) {
        json_decref(root);
        return IOT_ENOTFOUND;
    }
    d->sensors = calloc(n, sizeof *d->sensors);
    if (!d->sensors) {
        json_decref(root);
        return IOT_ENOMEM;
    }
    int rc = 0;
    for (size_t k = 0; k < n && !rc; k++) {
        const char *u = json_string_value(json_object_get(json_array_get(arr, k), "sensor_uuid"));
        if (!u || strlen(u) > STORE_UUID_MAX) {
            rc = IOT_EINVAL;
            break;
        }
        snprintf(d->sensors[k].uuid, sizeof d->sensors[k].uuid, "%s", u);
        sim_signal_init(&d->sensors[k].sig, sim_profile_at(k), r);
        d->nsensors = k + 1;
    }
    json_decref(root);
    return rc;
}

/* GET {base}/ingest/devices/{uuid}/status into body; *status = HTTP status. */
static int fetch_status(CURL *c, const char *base_url, const char *uuid, struct curl_slist *hdrs,
                        long timeout_ms, struct buf *body, long *status, char *err, size_t errlen)
{
    char *esc = curl_easy_escape(c, uuid, 0);
    if (!esc) return IOT_ENOMEM;
    struct buf url = {0};
    int rc = buf_printf(&url, "%s/ingest/devices/%s/status", base_url, esc);
    curl_free(esc);
    if (rc) return rc;
    buf_clear(body);
    CURLcode cc = CURLE_OK;
    if (cc == CURLE_OK) cc = curl_easy_setopt(c, CURLOPT_URL, url.p);
    if (cc == CURLE_OK) cc = curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (cc == CURLE_OK) cc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    if (cc == CURLE_OK) cc = curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    if (cc == CURLE_OK) cc = curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (cc == CURLE_OK) cc = curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (cc == CURLE_OK) cc = curl_easy_perform(c);
    if (cc == CURLE_OK) cc = curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "GET %s: %s", url.p, curl_easy_strerror(cc));
        rc = cc == CURLE_OUT_OF_MEMORY ? IOT_ENOMEM : IOT_EUNAVAIL;
    }
    buf_free(&url);
    return rc;
}

int sim_fleet_from_api(const char *base_url, const char *api_key, const char *const *uuids,
                       size_t n, size_t max_sensors, long timeout_ms, struct sim_rng *r,
                       struct sim_fleet **out, char *err, size_t errlen)
{
    struct sim_fleet *f = NULL;
    struct buf hdr = {0}, body = {0};
    struct curl_slist *hdrs = NULL;
    CURL *c = NULL;
    int rc = sim_fleet_create(n, 0, &f);
    if (!rc) rc = buf_printf(&hdr, "X-API-Key: %s", api_key);
    if (!rc && !(hdrs = curl_slist_append(NULL, hdr.p))) rc = IOT_ENOMEM;
    if (!rc && !(c = curl_easy_init())) rc = IOT_ENOMEM;
    if (rc) snprintf(err, errlen, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        struct sim_device *d = &f->dev[i];
        if (strlen(uuids[i]) == 0 || strlen(uuids[i]) > STORE_UUID_MAX) {
            snprintf(err, errlen, "device uuid \"%.64s\" must be 1 to %d characters", uuids[i],
                     STORE_UUID_MAX);
            rc = IOT_EINVAL;
            break;
        }
        snprintf(d->uuid, sizeof d->uuid, "%s", uuids[i]);
        long status = 0;
        rc = fetch_status(c, base_url, d->uuid, hdrs, timeout_ms, &body, &status, err, errlen);
        if (rc) break;
        if (status == 404) {
            snprintf(err, errlen, "device %s: not found", d->uuid);
            rc = IOT_ENOTFOUND;
        } else if (status != 200) {
            snprintf(err, errlen, "device %s: status endpoint answered HTTP %ld%s", d->uuid, status,
                     status == 401 ? " (is API_KEY the gateway's?)" : "");
            rc = IOT_EINVAL;
        } else if ((rc = sensors_from_status(d, body.p ? body.p : "", max_sensors, r))) {
            snprintf(err, errlen, "device %s: %s", d->uuid,
                     rc == IOT_ENOTFOUND ? "has no sensor" : "unexpected status answer");
        }
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    buf_free(&hdr);
    buf_free(&body);
    if (rc) {
        sim_fleet_destroy(f);
        return rc;
    }
    *out = f;
    return 0;
}
