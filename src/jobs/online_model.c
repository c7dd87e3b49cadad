#include "jobs/online_model.h"
#include "jobs/baseline_math.h"

#include <math.h>

static double max1(double v)
{
    v = fabs(v);
    return v > 1.0 ? v : 1.0;
}

void online_model_update(struct online_model *m, double x, double alpha, double anomaly_z,
                         struct online_result *out)
{
    double z = 0.0;

    if (m->count == 0) {
        m->mean = x;
        m->var = 0.0;
    } else {
        double d = x - m->mean;
        if (m->count >= ONLINE_WARMUP && fabs(d) > 1e-9 * max1(m->mean))
            z = m->var > 0.0 ? fabs(d) / sqrt(m->var) : INFINITY;
        double incr = alpha * d;
        m->mean += incr;
        m->var = (1.0 - alpha) * (m->var + d * incr);
        if (!(m->var >= 0.0)) m->var = 0.0; /* rounding, or a NaN from overflow */
        if (!isfinite(m->mean)) m->mean = x;
    }
    m->count++;
    if (!out) return;
    out->z = z;
    out->score = baseline_score(z, anomaly_z);
    out->is_anomaly = baseline_is_anomaly(z, anomaly_z);
    out->predicted = m->mean;
    out->confidence = baseline_confidence(m->mean, sqrt(m->var));
}
