/*
 * Applies one published reading to the online model, effectively once
 * (docs/broker.md): in one transaction it checks that the message (stream
 * identity + stream sequence) was not applied before, updates the sensor's
 * model (jobs/online_model.h), writes a prediction every predict_every
 * readings of the sensor, and records the message as applied. The caller
 * acknowledges the message only after this returns 0, so a crash anywhere
 * leads to a redelivery that is either applied (nothing was committed) or
 * recognised and skipped (everything was).
 */
#ifndef IOT_ONLINE_CONSUMER_H
#define IOT_ONLINE_CONSUMER_H

#include "broker/broker.h"
#include "store/store.h"

#include <stdint.h>

#define ONLINE_MODEL_NAME    "online_ewma"
#define ONLINE_MODEL_TYPE    "ewma"
#define ONLINE_MODEL_VERSION "1"

struct online_opts {
    double alpha, anomaly_z;
    int64_t predict_every; /* >= 1 */
    int64_t horizon_min;
    int64_t model_id;     /* from online_model_id */
    const char *consumer; /* recorded with each applied message; borrowed */
};

enum online_outcome {
    ONLINE_APPLIED,   /* model updated */
    ONLINE_PREDICTED, /* model updated and a prediction row written */
    ONLINE_DUPLICATE, /* applied before: nothing done */
};

/* Finds or creates the ml_models row of the online model (own transaction). */
int online_model_id(struct store *s, const struct online_opts *o, int64_t now, int64_t *id);

/*
 * Applies r, delivered as message seq of stream stream_id, at server time
 * now. Returns 0 with *outcome, or the store's error after rolling back
 * (IOT_EBUSY/IOT_EUNAVAIL are retryable: redeliver later).
 */
int online_apply_reading(struct store *s, const struct online_opts *o, const char *stream_id,
                         uint64_t seq, const struct broker_reading *r, int64_t now,
                         enum online_outcome *outcome);

#endif
