#include "http/metrics.h"

const unsigned metrics_status_codes[METRICS_STATUSES] = {200, 201, 400, 401, 403, 404, 405, 413,
                                                         415, 422, 429, 431, 500, 503, 414, 0};
const double metrics_lat_bounds[METRICS_LAT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                        0.05,   0.1,   0.25,   0.5,   1,    5};

void http_metrics_observe(struct http_metrics *m, int route, unsigned status, int64_t elapsed_us)
{
    int si = METRICS_STATUSES - 1;
    for (int i = 0; i < METRICS_STATUSES - 1; i++)
        if (metrics_status_codes[i] == status) {
            si = i;
            break;
        }
    atomic_fetch_add_explicit(&m->requests[route][si], 1, memory_order_relaxed);
    double secs = (double)elapsed_us / 1e6;
    int b = 0;
    while (b < METRICS_LAT_BUCKETS && secs > metrics_lat_bounds[b])
        b++;
    atomic_fetch_add_explicit(&m->lat_bucket[route][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->lat_sum_us[route], (unsigned long long)elapsed_us,
                              memory_order_relaxed);
}
