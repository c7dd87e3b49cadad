/*
 * job baseline|explain|silence (one run) and jobs (all three on their
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
#include "jobs/explainer.h"
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

static int run_baseline(void *ud)
{
    const struct config *cfg = ud;
    struct store *s;
    int64_t started = clock_mono_ms();
    if (cli_open_store(cfg, &s)) return 1;
    struct baseline_opts o = {cfg->baseline_lookback_s * 1000, cfg->baseline_horizon_min,
                              (size_t)cfg->baseline_window, cfg->anomaly_z};
    struct baseline_summary r;
    int rc = store_schema_init(s);
    if (!rc) rc = job_baseline_run(s, &o, &r);
    if (rc)
        fprintf(stderr, "iot-ingest job baseline: could not run: %s: %s\n", iot_strerror(rc),
                store_errmsg(s));
    else
        printf("baseline: sensors=%llu predictions=%llu anomalies=%llu events_opened=%llu "
               "events_resolved=%llu failed=%llu duration_ms=%lld\n",
               (unsigned long long)r.sensors, (unsigned long long)r.predictions,
               (unsigned long long)r.anomalies, (unsigned long long)r.events_opened,
               (unsigned long long)r.events_resolved, (unsigned long long)r.failed,
               (long long)r.duration_ms);
    fflush(stdout);
    finish_run(s, "baseline", rc, started);
    return rc ? 1 : 0;
}

static int run_explain(void *ud)
{
    const struct config *cfg = ud;
    struct store *s;
    int64_t started = clock_mono_ms();
    if (cli_open_store(cfg, &s)) return 1;
    struct explain_opts o = {cfg->ai_explainer_url, cfg->anomaly_score_threshold,
                             cfg->explain_connect_timeout_ms, cfg->explain_timeout_ms,
                             (size_t)cfg->explain_max_per_run};
    struct explain_summary r;
    int rc = store_schema_init(s);
    if (!rc) rc = job_explain_run(s, &o, &r);
    if (rc)
        fprintf(stderr, "iot-ingest job explain: could not run: %s: %s\n", iot_strerror(rc),
                store_errmsg(s));
    else
        printf("explain: candidates=%llu stored=%llu failed=%llu duration_ms=%lld\n",
               (unsigned long long)r.candidates, (unsigned long long)r.stored,
               (unsigned long long)r.failed, (long long)r.duration_ms);
    fflush(stdout);
    finish_run(s, "explain", rc, started);
    return rc ? 1 : 0;
}

static int run_silence(void *ud)
{
    const struct config *cfg = ud;
    if (cfg->no_data_after_s == 0) {
        printf("silence: off (NO_DATA_AFTER_S=0)\n");
        fflush(stdout);
        return 0;
    }
    struct store *s;
    int64_t started = clock_mono_ms();
    if (cli_open_store(cfg, &s)) return 1;
    struct silence_summary r;
    int rc = store_schema_init(s);
    if (!rc) rc = job_silence_run(s, cfg->no_data_after_s * 1000, &r);
    if (rc)
        fprintf(stderr, "iot-ingest job silence: could not run: %s: %s\n", iot_strerror(rc),
                store_errmsg(s));
    else
        printf("silence: silent=%llu alerts_opened=%llu duration_ms=%lld\n",
               (unsigned long long)r.silent, (unsigned long long)r.opened,
               (long long)r.duration_ms);
    fflush(stdout);
    finish_run(s, "silence", rc, started);
    return rc ? 1 : 0;
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

static int cmd_all(struct config *cfg, const char **pos)
{
    (void)pos;
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct sched_task tasks[] = {
        {"baseline", cfg->baseline_every_s * 1000, run_baseline, cfg, 0, 0},
        {"explain", cfg->explain_every_s * 1000, run_explain, cfg, 0, 0},
        {"silence", cfg->no_data_every_s * 1000, run_silence, cfg, 0, 0},
    };
    LOG(LOG_INFO, "jobs_started", "baseline_every_s=%lld explain_every_s=%lld no_data_every_s=%lld",
        (long long)cfg->baseline_every_s, (long long)cfg->explain_every_s,
        (long long)cfg->no_data_every_s);
    int sig = scheduler_run(tasks, 3, &stop);
    LOG(LOG_INFO, "jobs_stopped", "signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    curl_global_cleanup();
    return 0;
}

static struct cli_flag no_flags[] = {{0, 0, 0, 0}};

const struct cli_cmd cmd_job_baseline = {
    "job baseline",
    NULL,
    "Runs the baseline predictor once: one moving-average prediction per active sensor\n"
    "with a recent reading, anomaly scores, ml_events for predicted critical breaches.",
    no_flags,
    0,
    cmd_baseline};
const struct cli_cmd cmd_job_explain = {
    "job explain",
    NULL,
    "Sends anomalous predictions without an explanation to AI_EXPLAINER_URL/explain once\n"
    "and stores the JSON answers.",
    no_flags,
    0,
    cmd_explain};
const struct cli_cmd cmd_job_silence = {
    "job silence",
    NULL,
    "Opens no_data alerts for sensors silent for NO_DATA_AFTER_S (0 = off), once.",
    no_flags,
    0,
    cmd_silence};
const struct cli_cmd cmd_jobs = {
    "jobs",
    NULL,
    "Runs baseline, explain and silence on BASELINE_EVERY_S, EXPLAIN_EVERY_S and\n"
    "NO_DATA_EVERY_S until SIGTERM/SIGINT; finishes the run in progress, exits 0.",
    no_flags,
    0,
    cmd_all};
