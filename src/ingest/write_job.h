/*
 * A unit of work for the writer: the validated readings of one packet (or
 * one legacy request), with everything the writer needs to store, classify
 * and answer them without going back to the HTTP layer.
 */
#ifndef IOT_WRITE_JOB_H
#define IOT_WRITE_JOB_H

#include "store/store.h"

#include <stdint.h>

struct write_reading {
    int index; /* position in the request, for answers */
    int64_t sensor_id, device_id;
    char sensor_uuid[STORE_UUID_MAX + 1];
    char device_uuid[STORE_UUID_MAX + 1];
    double value;
    int64_t ts;
    int stamped; /* ts is the arrival time (no ts in the reading or the packet): the
                    writer may raise it to keep the sensor's times increasing */
    struct store_threshold thr[2]; /* snapshot of the active thresholds */
    /* Set by the writer. */
    enum reading_class cls;
    int late;
};

enum write_status {
    WRITE_PENDING = 0,
    WRITE_STORED,    /* committed */
    WRITE_DUPLICATE, /* packet_id seen: stored_response holds the first answer */
    WRITE_NOTHING,   /* no valid reading and no earlier packet with that id: nothing stored */
    WRITE_FAILED,    /* rolled back; err says why (retryable -> 503) */
};

struct write_job;
typedef void (*write_done_fn)(struct write_job *job, void *ud);

struct write_job {
    /* Input, owned by the submitter until done() is called. */
    int64_t device_id;                         /* 0 for legacy jobs (no packet bookkeeping) */
    char packet_id[STORE_PACKET_ID_BYTES + 1]; /* "" = none */
    char *response; /* owned: the malloc'ed answer to remember with packet_id; the
                       submitter frees it (or takes it back) after done() */
    struct write_reading *readings;
    size_t nreadings;
    int64_t received_at; /* server time (ms) the request arrived */
    write_done_fn done;  /* called once, on the writer thread */
    void *done_ud;

    /* Output, valid in done(). */
    enum write_status status;
    int err;               /* for WRITE_FAILED */
    char *stored_response; /* WRITE_DUPLICATE: malloc'ed; submitter frees */
};

#endif
