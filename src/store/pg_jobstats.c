/* PostgreSQL backend: batch-job statistics (table job_stats), as in sqlite_jobs.c. */
#include "core/err.h"
#include "store/pg_int.h"

#include <stdio.h>
#include <string.h>

static const char job_stat_sql[] =
    "INSERT INTO job_stats(job, runs_ok, runs_failed, duration_sum_ms, b0, b1, b2, b3, b4, b5,"
    " b6, b7, b8, b9, last_duration_ms, last_run_at, last_success_at)"
    " VALUES ($1, $2::bigint, 1 - $2::bigint, $3::bigint, $4::bigint, $5::bigint, $6::bigint,"
    "  $7::bigint, $8::bigint, $9::bigint, $10::bigint, $11::bigint, $12::bigint,"
    "  $13::bigint, $3::bigint, $14::timestamptz,"
    "  CASE WHEN $2::bigint = 1 THEN $14::timestamptz END)"
    " ON CONFLICT (job) DO UPDATE SET runs_ok = job_stats.runs_ok + excluded.runs_ok,"
    " runs_failed = job_stats.runs_failed + excluded.runs_failed,"
    " duration_sum_ms = job_stats.duration_sum_ms + excluded.duration_sum_ms,"
    " b0 = job_stats.b0 + excluded.b0, b1 = job_stats.b1 + excluded.b1,"
    " b2 = job_stats.b2 + excluded.b2, b3 = job_stats.b3 + excluded.b3,"
    " b4 = job_stats.b4 + excluded.b4, b5 = job_stats.b5 + excluded.b5,"
    " b6 = job_stats.b6 + excluded.b6, b7 = job_stats.b7 + excluded.b7,"
    " b8 = job_stats.b8 + excluded.b8, b9 = job_stats.b9 + excluded.b9,"
    " last_duration_ms = excluded.last_duration_ms, last_run_at = excluded.last_run_at,"
    " last_success_at = coalesce(excluded.last_success_at, job_stats.last_success_at)";

int pg_job_stat_record(struct store *base, const char *job, int ok, int64_t duration_ms,
                       int64_t now)
{
    struct pg_store *s = (struct pg_store *)base;
    char dur[24], when[32], flags[STORE_JOB_BUCKETS][2];
    const char *params[3 + STORE_JOB_BUCKETS + 1];
    params[0] = job;
    params[1] = ok ? "1" : "0";
    params[2] = pg_fmt_i64(dur, duration_ms);
    for (int i = 0; i < STORE_JOB_BUCKETS; i++) {
        flags[i][0] = (double)duration_ms / 1000.0 <= store_job_bounds_s[i] ? '1' : '0';
        flags[i][1] = 0;
        params[3 + i] = flags[i];
    }
    params[3 + STORE_JOB_BUCKETS] = pg_fmt_ts(when, now);
    struct pg_cmd c = {
        .slot = -1, .sql = job_stat_sql, .nparams = 3 + STORE_JOB_BUCKETS + 1, .params = params};
    return pg_roundtrip(s, &c, 1, NULL, 0);
}

int pg_job_stats(struct store *base, struct store_job_stat *out, size_t cap, size_t *n)
{
    struct pg_store *s = (struct pg_store *)base;
    struct pg_cmd c = pg_raw(
        "SELECT job, runs_ok, runs_failed, duration_sum_ms, b0, b1, b2, b3, b4, b5, b6, b7, b8,"
        " b9, last_duration_ms, (extract(epoch from last_run_at) * 1000)::bigint,"
        " coalesce((extract(epoch from last_success_at) * 1000)::bigint, 0)"
        " FROM job_stats ORDER BY job COLLATE \"C\"");
    PGresult *r = NULL;
    int rc = pg_query(s, &c, &r);
    *n = 0;
    if (rc) return rc;
    for (int row = 0; row < PQntuples(r) && *n < cap; row++) {
        struct store_job_stat *j = &out[(*n)++];
        pg_text(j->job, sizeof j->job, r, row, 0);
        j->runs_ok = pg_i64(r, row, 1);
        j->runs_failed = pg_i64(r, row, 2);
        j->duration_sum_ms = pg_i64(r, row, 3);
        for (int i = 0; i < STORE_JOB_BUCKETS; i++)
            j->buckets[i] = pg_i64(r, row, 4 + i);
        j->last_duration_ms = pg_i64(r, row, 14);
        j->last_run_at = pg_i64(r, row, 15);
        j->last_success_at = pg_i64(r, row, 16);
    }
    PQclear(r);
    return 0;
}
