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

/* max(|v|, 1): the scale below which differences are absolute, not relative. */
static double max1(double v)
{
    v = fabs(v);
    return v > 1.0 ? v : 1.0;
}

double baseline_score(double z, double anomaly_z)
{
    double k = z / anomaly_z;
    return isinf(z) || isinf(k) ? 1.0 : 1.0 - pow(4.0, -(k * k));
}

int baseline_is_anomaly(double z, double anomaly_z)
{
    return z >= anomaly_z;
}

double baseline_confidence(double level, double spread)
{
    return isfinite(spread) ? 1.0 / (1.0 + spread / max1(level)) : 0.0;
}

void baseline_compute(const double *values, size_t n, size_t window, double anomaly_z,
                      struct baseline_result *out)
{
    size_t w = n < window ? n : window;
    double mean, spread;
    mean_std(values, w, &mean, &spread);
    out->predicted = mean;
    out->confidence = baseline_confidence(mean, spread);

    size_t r = n - 1 < window ? n - 1 : window;
    out->z = 0;
    if (r >= 2) {
        double rmean, rstd;
        mean_std(values + 1, r, &rmean, &rstd);
        /* Rounding noise of a flat series must not look like variation. */
        double eps = 1e-9 * max1(rmean);
        double dev = fabs(values[0] - rmean);
        if (dev > eps) out->z = rstd > eps ? dev / rstd : INFINITY;
    }
    out->score = baseline_score(out->z, anomaly_z);
    out->is_anomaly = baseline_is_anomaly(out->z, anomaly_z);
}
