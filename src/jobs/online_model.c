#include "jobs/online_model.h"

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
    if (isinf(z))
        out->score = 1.0;
    else {
        double r = z / anomaly_z;
        out->score = 1.0 - pow(4.0, -(r * r));
    }
    out->is_anomaly = z >= anomaly_z;
    out->predicted = m->mean;
    double sd = sqrt(m->var);
    out->confidence = isfinite(sd) ? 1.0 / (1.0 + sd / max1(m->mean)) : 0.0;
}
