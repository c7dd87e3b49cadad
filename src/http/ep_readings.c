/*
 * GET /ingest/devices/{uuid}/sensors/{sensor_uuid}/readings (SPEC §12): one
 * sensor's history, read on the shared read connection.
 *
 * Raw: readings with from <= ts < to in (ts, id) order, `limit` per page
 * (default 1000, at most 10000), `next` an opaque cursor (the (ts, id) of the
 * page's last reading) or null. Steps (step=1h|1d, agg=avg|min|max|count|sum,
 * avg by default): one point per UTC hour or day that has readings, from the
 * hourly rollups where they exist and from raw readings above the rollup mark;
 * from is rounded down and to up to whole steps; at most 10000 points.
 * Authentication as the status route (auth_device_read). Every bad parameter
 * is a 400 invalid_request whose detail names it.
 */
#include "core/err.h"
#include "core/timefmt.h"
#include "http/http_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LIMIT 1000
#define MAX_LIMIT     10000
#define MAX_POINTS    10000
#define HOUR_MS       3600000LL
#define TIME_MIN      (-62135596800000LL) /* 0001-01-01T00:00:00Z */
#define TIME_MAX      253402300799999LL   /* 9999-12-31T23:59:59.999Z */
#define CURSOR_LEN    22                  /* 16 bytes in unpadded base64url */

enum agg { AGG_AVG, AGG_MIN, AGG_MAX, AGG_COUNT, AGG_SUM };
static const char *const agg_names[] = {"avg", "min", "max", "count", "sum"};

struct query {
    int64_t from, to;
    size_t limit;
    int64_t after_ts, after_id; /* from the cursor, else (from, 0) */
    int64_t step_ms;            /* 0: raw readings */
    const char *step_name;
    enum agg agg;
};

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The cursor after (ts, id): both as 8 big-endian bytes, base64url without padding. */
static void cursor_encode(int64_t ts, int64_t id, char out[CURSOR_LEN + 1])
{
    unsigned char b[18] = {0};
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)((uint64_t)ts >> (56 - 8 * i));
        b[8 + i] = (unsigned char)((uint64_t)id >> (56 - 8 * i));
    }
    for (int g = 0, o = 0; g < 18 && o < CURSOR_LEN; g += 3) {
        uint32_t v = (uint32_t)b[g] << 16 | (uint32_t)b[g + 1] << 8 | b[g + 2];
        for (int k = 0; k < 4 && o < CURSOR_LEN; k++)
            out[o++] = b64url[(v >> (18 - 6 * k)) & 63];
    }
    out[CURSOR_LEN] = 0;
}

/* 0 and (ts, id), or IOT_EINVAL for anything cursor_encode cannot have made. */
static int cursor_decode(const char *s, int64_t *ts, int64_t *id)
{
    if (strlen(s) != CURSOR_LEN) return IOT_EINVAL;
    unsigned char b[18] = {0};
    for (int o = 0; o < CURSOR_LEN; o++) {
        const char *p = strchr(b64url, s[o]);
        if (!p || !s[o]) return IOT_EINVAL;
        unsigned v = (unsigned)(p - b64url);
        for (int k = 0; k < 6; k++) {
            int bit = o * 6 + k;
            if (v >> (5 - k) & 1) b[bit / 8] |= (unsigned char)(0x80 >> (bit % 8));
        }
    }
    if (b[16] & 0xf0) return IOT_EINVAL; /* the padding bits of the last character */
    uint64_t t = 0, i = 0;
    for (int k = 0; k < 8; k++) {
        t = t << 8 | b[k];
        i = i << 8 | b[8 + k];
    }
    *ts = (int64_t)t;
    *id = (int64_t)i;
    return *id > 0 && *ts >= TIME_MIN && *ts <= TIME_MAX ? 0 : IOT_EINVAL;
}

/* RFC 3339, or epoch seconds (a plain decimal number, fractions allowed). */
static int parse_time(const char *s, int64_t *out)
{
    if (!*s) return IOT_EINVAL;
    if (strpbrk(s, "Tt ")) return timefmt_parse_rfc3339(s, strlen(s), out);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || strpbrk(s, "xXnNiI")) return IOT_EINVAL; /* no hex, nan or inf */
    if (timefmt_from_epoch_s(v, out)) return IOT_EINVAL;
    return *out >= TIME_MIN && *out <= TIME_MAX ? 0 : IOT_EINVAL;
}

/* The start of the step that holds t (floor, also before 1970). */
static int64_t step_floor(int64_t t, int64_t step)
{
    return t - ((t % step) + step) % step;
}

/* Reads and checks every parameter; 1 with the 400 queued in *ret when one is bad. */
static int parse_query(struct request *rq, struct query *q, int *ret)
{
    const char *bad = NULL, *why = NULL;
    const char *from = rq_query(rq, "from"), *to = rq_query(rq, "to"),
               *limit = rq_query(rq, "limit"), *next = rq_query(rq, "next"),
               *step = rq_query(rq, "step"), *agg = rq_query(rq, "agg");
    *q = (struct query){TIME_MIN, TIME_MAX, DEFAULT_LIMIT, 0, 0, 0, NULL, AGG_AVG};
    if (from && parse_time(from, &q->from))
        bad = "from", why = "is not an RFC 3339 time or a number of epoch seconds";
    else if (to && parse_time(to, &q->to))
        bad = "to", why = "is not an RFC 3339 time or a number of epoch seconds";
    else if (q->from >= q->to)
        bad = "from", why = "must be before to";
    if (!bad && limit) {
        char *end;
        errno = 0;
        long long v = strtoll(limit, &end, 10);
        if (!*limit || *end || errno || v < 1 || v > MAX_LIMIT)
            bad = "limit", why = "must be an integer from 1 to 10000";
        else
            q->limit = (size_t)v;
    }
    if (!bad && step) {
        q->step_name = step;
        if (strcmp(step, "1h") == 0)
            q->step_ms = HOUR_MS;
        else if (strcmp(step, "1d") == 0)
            q->step_ms = 24 * HOUR_MS;
        else
            bad = "step", why = "must be 1h or 1d";
    }
    if (!bad && agg) {
        size_t i = 0;
        while (i < sizeof agg_names / sizeof agg_names[0] && strcmp(agg, agg_names[i]) != 0)
            i++;
        if (!step)
            bad = "agg", why = "needs step (1h or 1d)";
        else if (i == sizeof agg_names / sizeof agg_names[0])
            bad = "agg", why = "must be avg, min, max, count or sum";
        else
            q->agg = (enum agg)i;
    }
    if (!bad && next && step) bad = "next", why = "pages raw readings only (without step)";
    q->after_ts = q->from;
    if (!bad && next && cursor_decode(next, &q->after_ts, &q->after_id))
        bad = "next", why = "is not a cursor that this endpoint returned";
    if (!bad && next && q->after_ts < q->from) q->after_ts = q->from, q->after_id = 0;
    if (!bad && q->step_ms) {
        q->from = step_floor(q->from, q->step_ms);
        int64_t up = step_floor(q->to - 1, q->step_ms) + q->step_ms;
        q->to = up > TIME_MAX ? TIME_MAX : up;
    }
    if (!bad) return 0;
    *ret = reply_error(rq, 400, "invalid_request", "%s %s", bad, why);
    return 1;
}

static json_t *raw_answer(const struct store_reading *r, size_t n, size_t limit)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n && i < limit; i++) {
        char ts[TIMEFMT_RFC3339_LEN];
        timefmt_format_rfc3339(r[i].ts, ts);
        json_t *o = json_pack("{s:s, s:f, s:s, s:b}", "ts", ts, "value", r[i].value, "class",
                              reading_class_name(r[i].cls), "late", r[i].late);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static double agg_value(const struct store_bucket *b, enum agg a)
{
    switch (a) {
    case AGG_MIN:
        return b->min;
    case AGG_MAX:
        return b->max;
    case AGG_COUNT:
        return (double)b->count;
    case AGG_SUM:
        return b->sum;
    case AGG_AVG:
        break;
    }
    return b->sum / (double)b->count;
}

static json_t *points_answer(const struct store_bucket *b, size_t n, enum agg a)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        char ts[TIMEFMT_RFC3339_LEN];
        timefmt_format_rfc3339(b[i].start, ts);
        json_t *v = a == AGG_COUNT ? json_integer(b[i].count) : json_real(agg_value(&b[i], a));
        json_t *o = json_pack("{s:s, s:o}", "ts", ts, "value", v);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* The raw page: limit + 1 rows are read, so `next` is null exactly on the last page. */
static int answer_raw(struct request *rq, const struct device_ref *dref,
                      const struct store_sensor *sen, const struct query *q)
{
    struct http_server *s = rq->srv;
    struct store_reading *rows = calloc(q->limit + 1, sizeof *rows);
    if (!rows) return reply_store_error(rq, IOT_ENOMEM);
    size_t n = 0;
    struct store *db = store_shared_acquire(s->d.db);
    int rc = store_readings_range(db, sen->id, q->from, q->to, q->after_ts, q->after_id,
                                  q->limit + 1, rows, &n);
    store_shared_release(s->d.db);
    json_t *arr = rc ? NULL : raw_answer(rows, n, q->limit);
    char cur[CURSOR_LEN + 1];
    if (n > q->limit) cursor_encode(rows[q->limit - 1].ts, rows[q->limit - 1].id, cur);
    free(rows);
    if (rc || !arr) return reply_store_error(rq, rc ? rc : IOT_ENOMEM);
    return reply_json(rq, 200,
                      json_pack("{s:s, s:s, s:o, s:o}", "device_uuid", dref->dev.uuid,
                                "sensor_uuid", sen->uuid, "readings", arr, "next",
                                n > q->limit ? json_string(cur) : json_null()));
}

static int answer_points(struct request *rq, const struct device_ref *dref,
                         const struct store_sensor *sen, const struct query *q)
{
    struct http_server *s = rq->srv;
    struct store_bucket *b = calloc(MAX_POINTS + 1, sizeof *b);
    if (!b) return reply_store_error(rq, IOT_ENOMEM);
    size_t n = 0;
    struct store *db = store_shared_acquire(s->d.db);
    int rc = store_readings_buckets(db, sen->id, q->from, q->to, q->step_ms, MAX_POINTS + 1, b, &n);
    store_shared_release(s->d.db);
    int ret;
    if (rc) {
        ret = reply_store_error(rq, rc);
    } else if (n > MAX_POINTS) {
        ret = reply_error(rq, 400, "invalid_request",
                          "from and to hold more than %d points at step=%s; narrow the range",
                          MAX_POINTS, q->step_name);
    } else {
        json_t *arr = points_answer(b, n, q->agg);
        ret = arr ? reply_json(rq, 200,
                               json_pack("{s:s, s:s, s:s, s:s, s:o}", "device_uuid", dref->dev.uuid,
                                         "sensor_uuid", sen->uuid, "step", q->step_name, "agg",
                                         agg_names[q->agg], "points", arr))
                  : reply_store_error(rq, IOT_ENOMEM);
    }
    free(b);
    return ret;
}

int ep_readings(struct request *rq)
{
    struct http_server *s = rq->srv;
    if (rq->path_too_long) return reply_error(rq, 404, "not_found", "no such device or sensor");
    int ret;
    const struct device_ref *dref = NULL;
    if (auth_device_read(rq, rq->route_arg, &dref, &ret)) return ret;
    const struct store_sensor *sen = device_ref_sensor(dref, rq->route_arg2);
    struct query q;
    if (!sen)
        ret = reply_error(rq, 404, "not_found", "no sensor %s on this device", rq->route_arg2);
    else if (!parse_query(rq, &q, &ret))
        ret = q.step_ms ? answer_points(rq, dref, sen, &q) : answer_raw(rq, dref, sen, &q);
    resolver_release(s->d.resolver, dref);
    return ret;
}
