/*
 * The silence (deadman) check, SPEC §6.3: an active sensor of an active
 * device with no reading for NO_DATA_AFTER_S (counted from its newest
 * reading, or from its creation) gets a no_data alert through the same alert
 * engine the gateway uses. The page query runs inside the write transaction,
 * so a reading committed meanwhile by the gateway is never missed.
 */
#ifndef IOT_JOB_SILENCE_H
#define IOT_JOB_SILENCE_H

#include "store/store.h"

struct silence_summary {
    uint64_t silent, opened;
    int64_t duration_ms;
};

/* after_ms = 0 means the check is off (returns 0 at once). */
int job_silence_run(struct store *s, int64_t after_ms, struct silence_summary *sum);

#endif
