#include "jobs/retention.h"
#include "core/err.h"
#include "core/log.h"
#include "jobs/job_progress.h"

#define HOUR_MS 3600000LL

/* Rolls up hour after hour until the mark reaches until. */
static int roll_up(struct store *s, int64_t until, struct job_progress *prog,
                   struct retention_summary *sum)
{
    for (;;) {
        int64_t mark = 0, rows = 0;
        int rc = store_rollup_step(s, until, &mark, &rows);
        if (rc) return rc;
        sum->rolled_until = mark;
        if (rows == 0 && mark >= until) return 0;
        sum->hours++;
        sum->rollups += (uint64_t)rows;
        job_progress_tick(prog, sum->hours);
    }
}

/* Calls expire in chunks until a chunk comes back short. */
static int expire_all(struct store *s, int (*expire)(struct store *, int64_t, int64_t, int64_t *),
                      int64_t before, uint64_t *total, struct job_progress *prog)
{
    for (;;) {
        int64_t n = 0;
        int rc = expire(s, before, RETENTION_CHUNK_ROWS, &n);
        if (rc) return rc;
        *total += (uint64_t)n;
        if (n < RETENTION_CHUNK_ROWS) return 0;
        job_progress_tick(prog, *total);
    }
}

int job_retention_run(struct store *s, const struct retention_opts *o, int64_t now,
                      struct retention_summary *sum)
{
    *sum = (struct retention_summary){0};
    struct job_progress prog;
    job_progress_start(&prog, "retention", "hours rolled up");
    int64_t until = now - ((now % HOUR_MS) + HOUR_MS) % HOUR_MS; /* complete hours only */
    int rc = roll_up(s, until, &prog, sum);
    if (!rc && o->keep_readings_ms > 0) {
        prog.unit = "readings deleted";
        rc = expire_all(s, store_readings_expire, now - o->keep_readings_ms, &sum->readings_deleted,
                        &prog);
    }
    /*
     * Rollups stay at least as long as raw readings: the history API reads a
     * rolled-up hour from its rollup, so one deleted before its readings
     * would hide them.
     */
    int64_t keep_rollups = o->keep_rollups_ms;
    if (keep_rollups > 0 && (o->keep_readings_ms == 0 || keep_rollups < o->keep_readings_ms))
        keep_rollups = o->keep_readings_ms;
    if (!rc && keep_rollups > 0) {
        prog.unit = "rollups deleted";
        rc = expire_all(s, store_rollups_expire, now - keep_rollups, &sum->rollups_deleted, &prog);
    }
    if (rc)
        LOG(LOG_WARN, "retention_failed", "err=\"%s\" db=\"%s\"", iot_strerror(rc),
            store_errmsg(s));
    sum->duration_ms = job_progress_end(&prog);
    return rc;
}
