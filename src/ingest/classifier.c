#include "ingest/classifier.h"

#include <math.h>

int classifier_violates_range(const struct store_threshold *t, double value)
{
    if (!t->id) return 0;
    return (t->has_min && value < t->min) || (t->has_max && value > t->max);
}

int classifier_is_spike(const struct store_threshold thr[2], double prev, double value,
                        int64_t *thr_id)
{
    double jump = fabs(value - prev);
    for (int sev = SEV_CRITICAL; sev >= SEV_WARNING; sev--) {
        const struct store_threshold *t = &thr[sev];
        if (t->id && t->has_delta && jump > t->delta_max) {
            if (thr_id) *thr_id = t->id;
            return 1;
        }
    }
    return 0;
}

enum reading_class classifier_range_class(const struct store_threshold thr[2], double value)
{
    if (classifier_violates_range(&thr[SEV_CRITICAL], value)) return CLASS_ALERT;
    if (classifier_violates_range(&thr[SEV_WARNING], value)) return CLASS_WARNING;
    return CLASS_NORMAL;
}

enum reading_class classifier_classify(const struct store_threshold thr[2], int has_prev,
                                       double prev, double value)
{
    if (classifier_violates_range(&thr[SEV_CRITICAL], value)) return CLASS_ALERT;
    if (has_prev && classifier_is_spike(thr, prev, value, NULL)) return CLASS_SPIKE;
    if (classifier_violates_range(&thr[SEV_WARNING], value)) return CLASS_WARNING;
    return CLASS_NORMAL;
}
