#include "jobs/silence.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "ingest/alert_engine.h"
#include "jobs/job_progress.h"

#include <stdlib.h>

#define PAGE              256
#define MAX_PAGE_FAILURES 3 /* in a row: then the database is taken to be away (as baseline) */

/*
 * One page: select and open alerts in the same write transaction. The
 * page's states are loaded in one call (ids ascending, as the store wants).
 * *n is the page's size, also when a later step failed (0 if the select did);
 * *after moves past the page either way, so a failed page is not retried.
 */
static int one_page(struct store *s, int64_t now, int64_t before, int64_t *after,
                    struct store_job_sensor *page, int64_t *ids,
                    struct store_sensor_snapshot *snaps, size_t *n, struct silence_summary *sum)
{
    int rc = store_tx_begin(s);
    if (!rc) rc = store_silent_sensors(s, before, *after, PAGE, page, n);
    for (size_t i = 0; !rc && i < *n; i++)
        ids[i] = page[i].id;
    if (!rc && *n) rc = store_states_load(s, ids, *n, snaps);
    for (size_t i = 0; !rc && i < *n; i++) {
        int opened = 0;
        struct alert_set set = {snaps[i].alerts, snaps[i].present};
        rc = alert_engine_no_data(s, set, page[i].id, page[i].device_id, page[i].uuid,
                                  page[i].last_ts, now, &opened, NULL);
        sum->opened += (uint64_t)opened;
    }
    if (!rc) rc = store_tx_commit(s);
    if (rc) store_tx_rollback(s);
    if (*n) *after = page[*n - 1].id;
    return rc;
}

int job_silence_run(struct store *s, int64_t after_ms, struct silence_summary *sum)
{
    *sum = (struct silence_summary){0};
    if (after_ms <= 0) return 0;
    struct store_job_sensor *page = calloc(PAGE, sizeof *page);
    int64_t *ids = calloc(PAGE, sizeof *ids);
    struct store_sensor_snapshot *snaps = calloc(PAGE, sizeof *snaps);
    if (!page || !ids || !snaps) {
        free(page);
        free(ids);
        free(snaps);
        return IOT_ENOMEM;
    }
    struct job_progress prog;
    job_progress_start(&prog, "silence", "sensors");
    int64_t now = clock_now_ms(), after = 0;
    int rc = 0, failures = 0;
    for (;;) {
        size_t n = 0;
        uint64_t opened_before = sum->opened;
        int prc = one_page(s, now, now - after_ms, &after, page, ids, snaps, &n, sum);
        sum->silent += n;
        if (prc) {
            /* Rolled back: this page's sensors count as failed, the run goes on (SPEC §6). */
            sum->opened = opened_before;
            sum->failed += n;
            LOG(LOG_WARN, "silence_page_failed", "err=\"%s\" db=\"%s\" sensors=%zu",
                iot_strerror(prc), store_errmsg(s), n);
            if (++failures >= MAX_PAGE_FAILURES) {
                rc = IOT_EUNAVAIL;
                break;
            }
            if (n == 0) continue; /* the select failed: try the same page again */
        } else {
            failures = 0;
        }
        if (n < PAGE) break;
        job_progress_tick(&prog, sum->silent);
    }
    sum->duration_ms = job_progress_end(&prog);
    free(snaps);
    free(ids);
    free(page);
    return rc;
}
