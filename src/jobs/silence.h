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
    uint64_t silent; /* silent sensors found, those of failed pages included */
    uint64_t opened; /* no_data alerts opened (committed) */
    uint64_t failed; /* sensors of pages that failed and were rolled back */
    int64_t duration_ms;
};

/*
 * after_ms = 0 means the check is off (returns 0 at once). A page that fails
 * is rolled back, counted in failed, logged (event=silence_page_failed), and
 * the run goes on; returns IOT_EUNAVAIL after MAX_PAGE_FAILURES failed pages
 * in a row (the job could not run), else 0 or IOT_ENOMEM.
 */
int job_silence_run(struct store *s, int64_t after_ms, struct silence_summary *sum);

#endif
