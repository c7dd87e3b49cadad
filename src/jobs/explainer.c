#include "jobs/explainer.h"
#include "core/err.h"
#include "core/log.h"
#include "core/timefmt.h"
#include "jobs/job_progress.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 64

struct body {
    char *data;
    size_t len;
    int too_big;
    struct job_progress *prog; /* ticked while a request waits */
    uint64_t done;
};

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    struct body *b = ud;
    job_progress_tick(b->prog, b->done);
    return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct body *b = ud;
    size_t n = size * nmemb;
    if (b->len + n > EXPLAIN_MAX_RESPONSE) {
        b->too_big = 1;
        return 0; /* aborts the transfer */
    }
    char *nd = realloc(b->data, b->len + n + 1);
    if (!nd) return 0;
    memcpy(nd + b->len, ptr, n);
    b->data = nd;
    b->len += n;
    b->data[b->len] = 0;
    return n;
}

static json_t *threshold_json(const struct store_threshold *t)
{
    if (!t->id) return json_null();
    return json_pack("{s:o, s:o, s:o}", "min", t->has_min ? json_real(t->min) : json_null(), "max",
                     t->has_max ? json_real(t->max) : json_null(), "delta_max",
                     t->has_delta ? json_real(t->delta_max) : json_null());
}

static json_t *ts_json(int64_t ms)
{
    char b[TIMEFMT_RFC3339_LEN];
    timefmt_format_rfc3339(ms, b);
    return json_string(b);
}

/* The request body of docs/jobs.md. Returns a malloc'ed string or NULL. */
static char *request_body(struct store *s, const struct store_prediction *p, int *rc)
{
    struct store_job_sensor sen;
    struct store_reading rows[EXPLAIN_RECENT_READINGS];
    size_t n = 0;
    if ((*rc = store_job_sensor_get(s, p->sensor_id, &sen)) ||
        (*rc = store_recent_readings(s, p->sensor_id, EXPLAIN_RECENT_READINGS, rows, &n)))
        return NULL;
    json_t *recent = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(recent,
                              json_pack("{s:o, s:f, s:s, s:b}", "ts", ts_json(rows[i].ts), "value",
                                        rows[i].value, "class", reading_class_name(rows[i].cls),
                                        "late", rows[i].late));
    json_t *root = json_pack(
        "{s:{s:I, s:I, s:f, s:f, s:f, s:b, s:I, s:o, s:o},"
        " s:{s:I, s:s, s:s, s:s, s:s, s:s, s:{s:o, s:o}}, s:o}",
        "prediction", "id", (json_int_t)p->id, "model_id", (json_int_t)p->model_id,
        "predicted_value", p->predicted_value, "confidence", p->confidence, "anomaly_score",
        p->anomaly_score, "is_anomaly", 1, "horizon_minutes", (json_int_t)p->horizon_minutes,
        "target_ts", ts_json(p->target_ts), "predicted_at", ts_json(p->predicted_at), "sensor",
        "id", (json_int_t)sen.id, "uuid", sen.uuid, "device_uuid", sen.device_uuid, "name",
        sen.name, "type", sen.type, "unit", sen.unit, "thresholds", "warning",
        threshold_json(&sen.thr[SEV_WARNING]), "critical", threshold_json(&sen.thr[SEV_CRITICAL]),
        "recent_readings", recent);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    *rc = text ? 0 : IOT_ENOMEM;
    return text;
}

/* POSTs body; on a 2xx whose body is JSON, returns it (malloc'ed). */
static char *post(CURL *c, const char *url, const char *body, const struct explain_opts *o,
                  struct job_progress *prog, uint64_t done, char *why, size_t whylen)
{
    struct body b = {NULL, 0, 0, prog, done};
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &b);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    CURLcode cc = curl_easy_perform(c);
    curl_slist_free_all(h);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK) {
        snprintf(why, whylen, "%s", b.too_big ? "response too large" : curl_easy_strerror(cc));
    } else if (status < 200 || status > 299) {
        snprintf(why, whylen, "HTTP status %ld", status);
    } else {
        json_error_t e;
        json_t *j = b.data ? json_loadb(b.data, b.len, JSON_DECODE_ANY, &e) : NULL;
        if (j) {
            json_decref(j);
            return b.data;
        }
        snprintf(why, whylen, "response is not JSON");
    }
    free(b.data);
    return NULL;
}

int job_explain_run(struct store *s, const struct explain_opts *o, struct explain_summary *sum)
{
    *sum = (struct explain_summary){0};
    char url[1024];
    size_t ul = strlen(o->url);
    snprintf(url, sizeof url, "%.*s/explain", (int)(ul && o->url[ul - 1] == '/' ? ul - 1 : ul),
             o->url);
    struct store_prediction *page = calloc(PAGE, sizeof *page);
    CURL *c = curl_easy_init();
    int rc = page && c ? 0 : IOT_ENOMEM;
    struct job_progress prog;
    job_progress_start(&prog, "explain", "predictions");
    int64_t after = 0;
    while (!rc && sum->candidates < o->max_per_run) {
        size_t n = 0;
        if ((rc = store_unexplained(s, o->min_score, after, PAGE, page, &n)) || n == 0) break;
        for (size_t i = 0; i < n && sum->candidates < o->max_per_run; i++) {
            const struct store_prediction *p = &page[i];
            char why[256] = "";
            after = p->id;
            sum->candidates++;
            char *body = request_body(s, p, &rc);
            if (rc) break;
            char *answer = post(c, url, body, o, &prog, sum->candidates, why, sizeof why);
            free(body);
            if (answer) {
                rc = store_prediction_explain(s, p->id, answer);
                free(answer);
                if (rc) break;
                sum->stored++;
            } else {
                sum->failed++;
                LOG(LOG_WARN, "explain_failed", "prediction_id=%lld reason=\"%s\"",
                    (long long)p->id, why);
            }
            job_progress_tick(&prog, sum->candidates);
        }
    }
    sum->duration_ms = job_progress_end(&prog);
    curl_easy_cleanup(c);
    free(page);
    return rc;
}
