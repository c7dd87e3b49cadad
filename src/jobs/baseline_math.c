#include "jobs/baseline_math.h"

#include <math.h>

/*
 * Mean and population standard deviation: two passes (stable for flat
 * series) over the values divided by their largest magnitude, so that sums
 * and squares cannot overflow even for values near DBL_MAX.
 */
static void mean_std(const double *v, size_t n, double *mean, double *std)
{
    double scale = 0, sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(v[i]) > scale) scale = fabs(v[i]);
    if (scale == 0) {
        *mean = *std = 0;
        return;
    }
    for (size_t i = 0; i < n; i++)
        sum += v[i] / scale;
    double m = sum / (double)n;
    for (size_t i = 0; i < n; i++)
        sq += (v[i] / scale - m) * (v[i] / scale - m);
    *mean = m * scale;
    *std = sqrt(sq / (double)n) * scale;
}

void baseline_compute(const double *values, size_t n, size_t window, double anomaly_z,
                      struct baseline_result *out)
{
    size_t w = n < window ? n : window;
    double mean, spread;
    mean_std(values, w, &mean, &spread);
    out->predicted = mean;
    double scale = fabs(mean) > 1 ? fabs(mean) : 1;
    out->confidence = 1.0 / (1.0 + spread / scale);

    size_t r = n - 1 < window ? n - 1 : window;
    out->z = 0;
    if (r >= 2) {
        double rmean, rstd;
        mean_std(values + 1, r, &rmean, &rstd);
        /* Rounding noise of a flat series must not look like variation. */
        double eps = 1e-9 * (fabs(rmean) > 1 ? fabs(rmean) : 1);
        double dev = fabs(values[0] - rmean);
        if (dev > eps) out->z = rstd > eps ? dev / rstd : INFINITY;
    }
    double k = out->z / anomaly_z;
    out->score = isinf(k) ? 1.0 : 1.0 - pow(4.0, -(k * k));
    out->is_anomaly = out->z >= anomaly_z;
}
