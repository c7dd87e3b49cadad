#include "sim/latency.h"

#include <math.h>
#include <string.h>

void lat_hist_reset(struct lat_hist *h)
{
    memset(h, 0, sizeof *h);
}

unsigned lat_hist_index(uint64_t us)
{
    if (us > LAT_MAX_US) us = LAT_MAX_US;
    if (us < 2 * LAT_SUB) return (unsigned)us;
    unsigned msb = 63u - (unsigned)__builtin_clzll(us);
    unsigned shift = msb - LAT_SUB_BITS; /* >= 1: us >> shift lies in [LAT_SUB, 2 * LAT_SUB) */
    return (shift + 1) * LAT_SUB + (unsigned)((us >> shift) - LAT_SUB);
}

uint64_t lat_hist_bucket_high(unsigned idx)
{
    if (idx < 2 * LAT_SUB) return idx;
    unsigned shift = idx / LAT_SUB - 1;
    uint64_t mant = idx % LAT_SUB + LAT_SUB;
    return ((mant + 1) << shift) - 1;
}

void lat_hist_add(struct lat_hist *h, uint64_t us)
{
    if (us > LAT_MAX_US) us = LAT_MAX_US;
    h->bucket[lat_hist_index(us)]++;
    if (h->count == 0 || us < h->min_us) h->min_us = us;
    if (us > h->max_us) h->max_us = us;
    h->count++;
    h->sum_us += us;
}

void lat_hist_merge(struct lat_hist *dst, const struct lat_hist *src)
{
    if (src->count == 0) return;
    for (unsigned i = 0; i < LAT_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    if (dst->count == 0 || src->min_us < dst->min_us) dst->min_us = src->min_us;
    if (src->max_us > dst->max_us) dst->max_us = src->max_us;
    dst->count += src->count;
    dst->sum_us += src->sum_us;
}

uint64_t lat_hist_percentile(const struct lat_hist *h, double p)
{
    if (h->count == 0) return 0;
    if (p < 0) p = 0;
    if (p > 100) p = 100;
    /* Rank of the sample, 1-based: the smallest value with >= p% of samples at or below it. */
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LAT_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = lat_hist_bucket_high(i);
            if (v > h->max_us) v = h->max_us;
            if (v < h->min_us) v = h->min_us;
            return v;
        }
    }
    return h->max_us;
}
