#include "jobs/silence.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "ingest/alert_engine.h"
#include "jobs/job_progress.h"

#include <stdlib.h>

#define PAGE 256

/*
 * One page: select and open alerts in the same write transaction. The
 * page's states are loaded in one call (ids ascending, as the store wants).
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
    if (rc) {
        store_tx_rollback(s);
        return rc;
    }
    sum->silent += *n;
    if (*n) *after = page[*n - 1].id;
    return 0;
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
    int rc;
    for (;;) {
        size_t n = 0;
        uint64_t opened_before = sum->opened;
        if ((rc = one_page(s, now, now - after_ms, &after, page, ids, snaps, &n, sum))) {
            sum->opened = opened_before;
            LOG(LOG_WARN, "silence_page_failed", "err=\"%s\" db=\"%s\"", iot_strerror(rc),
                store_errmsg(s));
            break;
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
