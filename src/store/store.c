/* Backend selection by URL scheme, and the shared enum names. */
#include "store/store.h"
#include "core/err.h"
#include "store/pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const class_names[] = {"normal", "warning", "spike", "alert", "invalid"};
static const char *const kind_names[] = {"threshold", "delta_spike", "no_data"};
static const char *const event_names[] = {"triggered", "escalated", "resolved"};

const double store_job_bounds_s[STORE_JOB_BUCKETS] = {0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600};

const char *severity_name(enum severity s)
{
    return s == SEV_CRITICAL ? "critical" : "warning";
}
const char *alert_kind_name(enum alert_kind k)
{
    return kind_names[k];
}
const char *alert_event_name(enum alert_event e)
{
    return event_names[e];
}
const char *reading_class_name(enum reading_class c)
{
    return class_names[c];
}

enum reading_class reading_class_parse(const char *s)
{
    for (int i = 0; i < CLASS_INVALID; i++)
        if (s && strcmp(s, class_names[i]) == 0) return (enum reading_class)i;
    return CLASS_INVALID;
}

enum severity severity_parse(const char *s)
{
    return s && strcmp(s, "critical") == 0 ? SEV_CRITICAL : SEV_WARNING;
}

enum alert_kind alert_kind_parse(const char *s)
{
    for (int i = 0; i < ALERT_KINDS; i++)
        if (s && strcmp(s, kind_names[i]) == 0) return (enum alert_kind)i;
    return ALERT_THRESHOLD;
}

int store_open(const char *url, const struct store_open_opts *opts, struct store **out, char *err,
               size_t errlen)
{
    *out = NULL;
    if (strncmp(url, "sqlite:", 7) == 0) {
        const char *path = url + 7;
        if (strncmp(path, "//", 2) == 0) path += 2; /* sqlite:///abs/path */
        if (!*path) {
            snprintf(err, errlen, "DATABASE_URL sqlite: needs a file path");
            return IOT_EINVAL;
        }
        return store_sqlite_open(path, opts, out, err, errlen);
    }
    if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)
        return store_pg_open(url, opts, out, err, errlen);
    snprintf(err, errlen, "DATABASE_URL must be sqlite:PATH or postgresql://...");
    return IOT_EINVAL;
}

struct store_sensor *store_sensors_fit(struct store_sensor *arr, size_t n)
{
    if (n == 0) {
        free(arr);
        return NULL;
    }
    struct store_sensor *fit = realloc(arr, n * sizeof *arr);
    return fit ? fit : arr;
}

size_t store_id_index(const int64_t *ids, size_t n, int64_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && ids[lo] == id ? lo : n;
}
