/*
 * The baseline model's formulas (docs/jobs.md), as pure functions.
 *
 * Given the sensor's newest readings v[0] (newest) .. v[n-1], by reading time:
 *   prediction  = mean of v[0..w-1]                      (w = min(n, window))
 *   spread      = population standard deviation of v[0..w-1]
 *   confidence  = 1 / (1 + spread / max(|prediction|, 1))        in (0, 1]
 *   reference   = v[1..r], r = min(n-1, window): the readings before the newest
 *   z           = |v[0] - mean(ref)| / std(ref)   (0 when v[0] == mean(ref);
 *                 +inf when std(ref) == 0 and v[0] differs; 0 when r < 2;
 *                 differences below 1e-9 * max(|mean(ref)|, 1) count as 0)
 *   score       = 1 - 4^(-(z / anomaly_z)^2)                     in [0, 1]
 *                 (0 for z = 0; 0.75 at z = anomaly_z; > 0.99 at 2 anomaly_z)
 *   is_anomaly  = z >= anomaly_z
 */
#ifndef IOT_BASELINE_MATH_H
#define IOT_BASELINE_MATH_H

#include <stddef.h>

struct baseline_result {
    double predicted, confidence, z, score;
    int is_anomaly;
};

/* values[0] is the newest; n >= 1. window >= 1. Never produces NaN. */
void baseline_compute(const double *values, size_t n, size_t window, double anomaly_z,
                      struct baseline_result *out);

/*
 * The formulas above that the online model (online_model.h) shares, for
 * z >= 0 (+inf allowed) and anomaly_z > 0:
 *   score       = 1 - 4^(-(z / anomaly_z)^2); exactly 1 when z or the ratio is infinite
 *   is_anomaly  = z >= anomaly_z
 *   confidence  = 1 / (1 + spread / max(|level|, 1)); 0 when spread is not finite
 */
double baseline_score(double z, double anomaly_z);
int baseline_is_anomaly(double z, double anomaly_z);
double baseline_confidence(double level, double spread);

#endif
