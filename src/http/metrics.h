/*
 * HTTP request metrics: counts by route and status, latency histograms by
 * route, rate-limit refusals. Lock-free counters (relaxed atomics) so the hot
 * path pays a few increments.
 */
#ifndef IOT_HTTP_METRICS_H
#define IOT_HTTP_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#define METRICS_ROUTES      8
#define METRICS_STATUSES    16
#define METRICS_LAT_BUCKETS 12

extern const unsigned metrics_status_codes[METRICS_STATUSES]; /* 0 = any other */
extern const double metrics_lat_bounds[METRICS_LAT_BUCKETS];  /* seconds */

struct http_metrics {
    atomic_ullong requests[METRICS_ROUTES][METRICS_STATUSES];
    atomic_ullong lat_bucket[METRICS_ROUTES][METRICS_LAT_BUCKETS + 1]; /* last: +Inf */
    atomic_ullong lat_sum_us[METRICS_ROUTES];
    atomic_ullong rate_limited_ip; /* the others are the intake's (struct intake_metrics) */
};

void http_metrics_observe(struct http_metrics *m, int route, unsigned status, int64_t elapsed_us);

#endif
