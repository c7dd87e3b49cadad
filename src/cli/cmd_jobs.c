/*
 * job baseline|explain|silence|retention (one run) and jobs (all four on their
 * intervals until SIGTERM). Each run opens its own database connection, so
 * a database that was down for one run is simply retried at the next.
 * Exit codes: 0 the run completed (some items may have failed: see the
 * summary), 1 the job could not run (no database), 2 bad usage/setting.
 */
#include "cli/cli.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "jobs/baseline.h"
#include "core/timefmt.h"
#include "jobs/explainer.h"
#include "jobs/retention.h"
#include "jobs/scheduler.h"
#include "jobs/silence.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>

/*
 * Adds the run to job_stats (for /metrics on any gateway) and closes the
 * store. A statistics failure is logged only: the job itself ran.
 */
static void finish_run(struct store *s, const char *job, int rc, int64_t started)
{
    int64_t now = clock_now_ms();
    int src = store_job_stat_record(s, job, rc == 0, clock_mono_ms() - started, now);
    if (src) LOG(LOG_WARN, "job_stats_failed", "job=%s err=\"%s\"", job, iot_strerror(src));
    store_close(s);
}

/*
 * One run of a job: opens the store (a database that cannot be opened
 * fails the run, unrecorded), runs body, which formats the summary line
 * into line, prints that line or the failure, and records the run.
 */
static int run_job(const struct config *cfg, const char *job,
                   int (*body)(struct store *s, const struct config *cfg, char *line, size_t len))
{
    char line[512];
    struct store *s;
    int64_t started = clock_mono_ms();
    int rc = cli_open_ready(cfg, 0, &s); /* a schema failure is reported below */
    if (!s) return 1;
    if (!rc) rc = body(s, cfg, line, sizeof line);
    if (rc)
        fprintf(stderr, "iot-ingest job %s: could not run: %s: %s\n", job, iot_strerror(rc),
                store_errmsg(s));
    else
        printf("%s\n", line);
    fflush(stdout);
    finish_run(s, job, rc, started);
    return rc ? 1 : 0;
}

static int baseline(struct store *s, const struct config *cfg, char *line, size_t len)
{
    struct baseline_opts o = {cfg->baseline_lookback_s * 1000, cfg->baseline_horizon_min,
                              (size_t)cfg->baseline_window, cfg->anomaly_z};
    struct baseline_summary r;
    int rc = job_baseline_run(s, &o, &r);
    if (!rc)
        snprintf(line, len,
                 "baseline: sensors=%llu predictions=%llu anomalies=%llu events_opened=%llu "
                 "events_resolved=%llu failed=%llu duration_ms=%lld",
                 (unsigned long long)r.sensors, (unsigned long long)r.predictions,
                 (unsigned long long)r.anomalies, (unsigned long long)r.events_opened,
                 (unsigned long long)r.events_resolved, (unsigned long long)r.failed,
                 (long long)r.duration_ms);
    return rc;
}

static int explain(struct store *s, const struct config *cfg, char *line, size_t len)
{
    struct explain_opts o = {cfg->ai_explainer_url, cfg->anomaly_score_threshold,
                             cfg->explain_connect_timeout_ms, cfg->explain_timeout_ms,
                             (size_t)cfg->explain_max_per_run};
    struct explain_summary r;
    int rc = job_explain_run(s, &o, &r);
    if (!rc)
        snprintf(line, len, "explain: candidates=%llu stored=%llu failed=%llu duration_ms=%lld",
                 (unsigned long long)r.candidates, (unsigned long long)r.stored,
                 (unsigned long long)r.failed, (long long)r.duration_ms);
    return rc;
}

static int silence(struct store *s, const struct config *cfg, char *line, size_t len)
{
    struct silence_summary r;
    int rc = job_silence_run(s, cfg->no_data_after_s * 1000, &r);
    if (!rc)
        snprintf(line, len, "silence: silent=%llu alerts_opened=%llu failed=%llu duration_ms=%lld",
                 (unsigned long long)r.silent, (unsigned long long)r.opened,
                 (unsigned long long)r.failed, (long long)r.duration_ms);
    return rc;
}

static int retention(struct store *s, const struct config *cfg, char *line, size_t len)
{
    struct retention_opts o = {cfg->retention_days * 86400000,
                               cfg->rollup_retention_days * 86400000};
    struct retention_summary r;
    int rc = job_retention_run(s, &o, clock_now_ms(), &r);
    char mark[TIMEFMT_RFC3339_LEN] = "none";
    if (r.rolled_until) timefmt_format_rfc3339(r.rolled_until, mark);
    if (!rc)
        snprintf(line, len,
                 "retention: hours_rolled_up=%llu rollups_written=%llu readings_deleted=%llu "
                 "rollups_deleted=%llu rolled_until=%s duration_ms=%lld",
                 (unsigned long long)r.hours, (unsigned long long)r.rollups,
                 (unsigned long long)r.readings_deleted, (unsigned long long)r.rollups_deleted,
                 mark, (long long)r.duration_ms);
    return rc;
}

static int run_baseline(void *ud)
{
    return run_job(ud, "baseline", baseline);
}

static int run_explain(void *ud)
{
    return run_job(ud, "explain", explain);
}

static int run_silence(void *ud)
{
    const struct config *cfg = ud;
    if (cfg->no_data_after_s == 0) {
        printf("silence: off (NO_DATA_AFTER_S=0)\n");
        fflush(stdout);
        return 0;
    }
    return run_job(cfg, "silence", silence);
}

static int run_retention(void *ud)
{
    return run_job(ud, "retention", retention);
}

static int one(struct config *cfg, int (*fn)(void *))
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = fn(cfg);
    curl_global_cleanup();
    return rc;
}

static int cmd_baseline(struct config *cfg, const char **pos)
{
    (void)pos;
    return one(cfg, run_baseline);
}
static int cmd_explain(struct config *cfg, const char **pos)
{
    (void)pos;
    return one(cfg, run_explain);
}
static int cmd_silence(struct config *cfg, const char **pos)
{
    (void)pos;
    return one(cfg, run_silence);
}

static int cmd_retention(struct config *cfg, const char **pos)
{
    (void)pos;
    return one(cfg, run_retention);
}

static int cmd_all(struct config *cfg, const char **pos)
{
    (void)pos;
    sigset_t stop;
    cli_block_stop_signals(&stop);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct sched_task tasks[] = {
        {"baseline", cfg->baseline_every_s * 1000, run_baseline, cfg, 0},
        {"explain", cfg->explain_every_s * 1000, run_explain, cfg, 0},
        {"silence", cfg->no_data_every_s * 1000, run_silence, cfg, 0},
        {"retention", cfg->retention_every_s * 1000, run_retention, cfg, 0},
    };
    LOG(LOG_INFO, "jobs_started",
        "baseline_every_s=%lld explain_every_s=%lld no_data_every_s=%lld retention_every_s=%lld",
        (long long)cfg->baseline_every_s, (long long)cfg->explain_every_s,
        (long long)cfg->no_data_every_s, (long long)cfg->retention_every_s);
    int sig = scheduler_run(tasks, (int)(sizeof tasks / sizeof tasks[0]), &stop);
    LOG(LOG_INFO, "jobs_stopped", "signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    curl_global_cleanup();
    return 0;
}

const struct cli_cmd cmd_job_baseline = {
    .name = "job baseline",
    .summary = "Runs the baseline predictor once. One moving-average prediction per active\n"
               "sensor with a recent reading, anomaly scores, ml_events for predicted critical\n"
               "breaches.",
    .run = cmd_baseline,
    .uses = CU_DB | CU_BASELINE,
};
const struct cli_cmd cmd_job_explain = {
    .name = "job explain",
    .summary = "Fetches explanations of anomalies once. Anomalous predictions without one go to\n"
               "AI_EXPLAINER_URL/explain; the JSON answers are stored.",
    .run = cmd_explain,
    .uses = CU_DB | CU_EXPLAIN,
};
const struct cli_cmd cmd_job_silence = {
    .name = "job silence",
    .summary = "Opens no_data alerts for sensors silent for NO_DATA_AFTER_S (0 = off), once.",
    .run = cmd_silence,
    .uses = CU_DB | CU_SILENCE,
};
const struct cli_cmd cmd_job_retention = {
    .name = "job retention",
    .summary = "Rolls up and expires readings once. Every complete hour not rolled up yet goes\n"
               "into sensor_readings_hourly, then readings older than RETENTION_DAYS and rollups\n"
               "older than ROLLUP_RETENTION_DAYS (0 = keep forever) are deleted in short chunks.",
    .run = cmd_retention,
    .uses = CU_DB | CU_RETENTION,
};
const struct cli_cmd cmd_jobs = {
    .name = "jobs",
    .summary = "Runs the jobs on a schedule. Baseline, explain, silence and retention every\n"
               "BASELINE_EVERY_S, EXPLAIN_EVERY_S, NO_DATA_EVERY_S and RETENTION_EVERY_S until\n"
               "SIGTERM/SIGINT; finishes the run in progress, exits 0.",
    .run = cmd_all,
    .uses = CU_DB | CU_BASELINE | CU_EXPLAIN | CU_SILENCE | CU_RETENTION | CU_SCHED,
    .creates_db = 1,
};
