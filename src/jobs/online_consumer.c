#include "jobs/online_consumer.h"
#include "core/err.h"
#include "core/log.h"
#include "jobs/online_model.h"

#include <stdio.h>
#include <string.h>

/* Ends a failed or read-only transaction; the caller reports its own error. */
static void rollback(struct store *s)
{
    int rc = store_tx_rollback(s);
    if (rc)
        LOG(LOG_DEBUG, "online_rollback_failed", "err=\"%s\" db=\"%s\"", iot_strerror(rc),
            store_errmsg(s));
}

int online_model_id(struct store *s, const struct online_opts *o, int64_t now, int64_t *id)
{
    char params[160];
    snprintf(params, sizeof params,
             "{\"alpha\":%.17g,\"predict_every\":%lld,\"horizon_min\":%lld,\"warmup\":%d}",
             o->alpha, (long long)o->predict_every, (long long)o->horizon_min, ONLINE_WARMUP);
    int rc = store_tx_begin(s);
    if (rc) return rc;
    rc = store_model_ensure(s, ONLINE_MODEL_NAME, ONLINE_MODEL_TYPE, ONLINE_MODEL_VERSION, params,
                            now, id);
    if (!rc) rc = store_tx_commit(s);
    if (rc) rollback(s);
    return rc;
}

int online_apply_reading(struct store *s, const struct online_opts *o, const char *stream_id,
                         uint64_t seq, const struct broker_reading *r, int64_t now,
                         enum online_outcome *outcome)
{
    struct store_online_state st;
    struct store_prediction pred;
    struct online_result res;
    int applied = 0;
    int rc;

    if (!s || !o || !stream_id || !r || !outcome || o->predict_every < 1) return IOT_EINVAL;
    if ((rc = store_tx_begin(s))) return rc;
    rc = store_online_load(s, stream_id, seq, r->sensor_id, &st, &applied);
    if (!rc && applied) {
        *outcome = ONLINE_DUPLICATE;
        return store_tx_rollback(s);
    }
    if (!rc) {
        struct online_model m = {st.mean, st.var, st.count};
        online_model_update(&m, r->value, o->alpha, o->anomaly_z, &res);
        st.sensor_id = r->sensor_id;
        st.mean = m.mean;
        st.var = m.var;
        st.count = m.count;
        if (r->ts_ms > st.last_ts) st.last_ts = r->ts_ms;
        st.updated_at = now;
        int predict = st.count % o->predict_every == 0;
        if (predict) {
            memset(&pred, 0, sizeof pred);
            pred.sensor_id = r->sensor_id;
            pred.model_id = o->model_id;
            pred.predicted_value = res.predicted;
            pred.confidence = res.confidence;
            pred.anomaly_score = res.score;
            pred.is_anomaly = res.is_anomaly;
            pred.horizon_minutes = o->horizon_min;
            pred.target_ts = r->ts_ms + o->horizon_min * 60000;
            pred.predicted_at = now;
        }
        rc = store_online_apply(s, stream_id, seq, o->consumer, &st, predict ? &pred : NULL);
        if (!rc) rc = store_tx_commit(s);
        if (!rc) *outcome = predict ? ONLINE_PREDICTED : ONLINE_APPLIED;
    }
    if (rc) {
        rollback(s);
        if (rc == IOT_EEXIST && !applied) {
            /* Another member applied it between our load and our insert. */
            int again = 0;
            struct store_online_state tmp;
            if (store_tx_begin(s) == 0) {
                if (store_online_load(s, stream_id, seq, r->sensor_id, &tmp, &again) != 0)
                    again = 0;
                rollback(s);
            }
            if (again) {
                *outcome = ONLINE_DUPLICATE;
                return 0;
            }
        }
    }
    return rc;
}
