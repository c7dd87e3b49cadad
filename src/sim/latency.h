/*
 * A fixed-size latency histogram (log-linear, like HdrHistogram): exact
 * below 128 us, then 64 buckets per power of two, so any recorded value is
 * reported within 1.6% of its true value. Values are microseconds, clamped
 * at LAT_MAX_US. Memory is fixed (16 KiB), whatever the run length.
 */
#ifndef IOT_SIM_LATENCY_H
#define IOT_SIM_LATENCY_H

#include <stdint.h>

#define LAT_SUB_BITS 6
#define LAT_SUB      (1u << LAT_SUB_BITS)
#define LAT_MAX_BITS 36 /* 2^36 us: about 19 hours */
#define LAT_BUCKETS  ((LAT_MAX_BITS - LAT_SUB_BITS + 1) * LAT_SUB)
#define LAT_MAX_US   ((UINT64_C(1) << LAT_MAX_BITS) - 1)

struct lat_hist {
    uint64_t count, sum_us, min_us, max_us;
    uint64_t bucket[LAT_BUCKETS];
};

void lat_hist_reset(struct lat_hist *h);
void lat_hist_add(struct lat_hist *h, uint64_t us);
/* Adds every value of src to dst. */
void lat_hist_merge(struct lat_hist *dst, const struct lat_hist *src);
/*
 * The value at percentile p (0..100): the highest value that falls in the
 * same bucket as the p-th percentile sample, capped at the maximum seen.
 * 0 for an empty histogram.
 */
uint64_t lat_hist_percentile(const struct lat_hist *h, double p);

/* Bucket index of a value and the highest value of a bucket (exposed for tests). */
unsigned lat_hist_index(uint64_t us);
uint64_t lat_hist_bucket_high(unsigned idx);

#endif
