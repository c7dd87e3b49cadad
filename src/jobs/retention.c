#include "jobs/retention.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "jobs/job_progress.h"

#define HOUR_MS 3600000LL

/*
 * Rolls up hour after hour until the mark reaches until, pausing after each
 * step as long as it took, as the deletes do (a catch-up over a long history
 * leaves the writer the lock half the time).
 */
static int roll_up(struct store *s, int64_t until, struct job_progress *prog,
                   struct retention_summary *sum)
{
    for (;;) {
        int64_t mark = 0, rows = 0, t0 = clock_mono_us();
        int rc = store_rollup_step(s, until, &mark, &rows);
        if (rc) return rc;
        clock_sleep_us(clock_mono_us() - t0);
        sum->rolled_until = mark;
        if (rows == 0 && mark >= until) return 0;
        sum->hours++;
        sum->rollups += (uint64_t)rows;
        job_progress_tick(prog, sum->hours);
    }
}

/* The next chunk's size: the rows that take about RETENTION_CHUNK_US at the last chunk's pace. */
static int64_t next_chunk(int64_t rows, int64_t took_us)
{
    int64_t next = took_us > 0 ? rows * RETENTION_CHUNK_US / took_us : RETENTION_CHUNK_MAX;
    if (next > 2 * rows) next = 2 * rows; /* grow gently: one slow chunk costs a writer's p99 */
    return next < RETENTION_CHUNK_MIN   ? RETENTION_CHUNK_MIN
           : next > RETENTION_CHUNK_MAX ? RETENTION_CHUNK_MAX
                                        : next;
}

/*
 * Calls expire in chunks until a chunk comes back short, each sized to take
 * about RETENTION_CHUNK_US and followed by a pause as long as it took
 * (retention.h says why).
 */
static int expire_all(struct store *s, int (*expire)(struct store *, int64_t, int64_t, int64_t *),
                      int64_t before, uint64_t *total, struct job_progress *prog)
{
    int64_t chunk = RETENTION_CHUNK_MIN;
    for (;;) {
        int64_t n = 0, t0 = clock_mono_us();
        int rc = expire(s, before, chunk, &n);
        if (rc) return rc;
        int64_t took = clock_mono_us() - t0;
        *total += (uint64_t)n;
        if (n < chunk) return 0;
        job_progress_tick(prog, *total);
        clock_sleep_us(took);
        chunk = next_chunk(chunk, took);
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
