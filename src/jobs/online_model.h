/*
 * The online model of `iot-ingest consume` (docs/broker.md), as pure
 * functions: an exponentially weighted mean and variance per sensor, updated
 * one reading at a time, with the newest reading scored against the model as
 * it stood before that reading.
 *
 * With weight a (ONLINE_ALPHA, 0 < a <= 1) and reading x:
 *   first reading   mean = x, var = 0
 *   then            d = x - mean
 *                   mean' = mean + a d
 *                   var'  = (1 - a) (var + a d^2)
 *   z           = |d| / sqrt(var)   (before the update; 0 while fewer than
 *                 ONLINE_WARMUP readings were applied; 0 when |d| is below
 *                 1e-9 max(|mean|, 1); +inf when var = 0 and d is not 0)
 *   score       = 1 - 4^(-(z / anomaly_z)^2)       in [0, 1], as the baseline
 *   is_anomaly  = z >= anomaly_z
 *   predicted   = mean'   (an EWMA forecasts a flat level)
 *   confidence  = 1 / (1 + sqrt(var') / max(|mean'|, 1))   in (0, 1]
 */
#ifndef IOT_ONLINE_MODEL_H
#define IOT_ONLINE_MODEL_H

#include <stdint.h>

/* Readings applied before a reading's z-score is trusted. */
#define ONLINE_WARMUP 5

struct online_model {
    double mean, var;
    int64_t count; /* readings applied; 0 = empty */
};

struct online_result {
    double z, score, predicted, confidence;
    int is_anomaly;
};

/*
 * Scores x against m, then folds x into m. x must be finite; alpha in
 * (0, 1]; anomaly_z > 0. out may be NULL. Never produces NaN.
 */
void online_model_update(struct online_model *m, double x, double alpha, double anomaly_z,
                         struct online_result *out);

#endif
