/*
 * GET /metrics: Prometheus text exposition (format 0.0.4). Values are pulled
 * from each component's stats at scrape time; nothing is kept twice.
 */
#include "http/http_int.h"
#include "ingest/packet_decode.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void header(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/*
 * A histogram from non-cumulative bucket counts (last = +Inf); labels is ""
 * or a label list without braces (route="/x") put before le.
 */
static void histogram(FILE *f, const char *name, const char *labels, const uint64_t *counts,
                      const double *bounds, int nb, double sum)
{
    const char *sep = *labels ? "," : "";
    unsigned long long cum = 0;
    for (int b = 0; b <= nb; b++) {
        cum += counts[b];
        if (b < nb)
            fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[b], cum);
        else
            fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
    }
    if (*labels)
        fprintf(f, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, sum, name, labels, cum);
    else
        fprintf(f, "%s_sum %.6f\n%s_count %llu\n", name, sum, name, cum);
}

static unsigned long long ld(atomic_ullong *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void http_section(FILE *f, struct http_metrics *m, struct intake_metrics *im)
{
    header(f, "iot_ingest_http_requests_total", "counter",
           "HTTP requests by route and status code.");
    for (int r = 0; r < METRICS_ROUTES; r++)
        for (int i = 0; i < METRICS_STATUSES; i++) {
            unsigned long long v = ld(&m->requests[r][i]);
            if (!v) continue;
            char code[16];
            if (metrics_status_codes[i])
                snprintf(code, sizeof code, "%u", metrics_status_codes[i]);
            else
                snprintf(code, sizeof code, "other");
            fprintf(f, "iot_ingest_http_requests_total{route=\"%s\",code=\"%s\"} %llu\n",
                    http_route_name(r), code, v);
        }
    header(f, "iot_ingest_http_request_duration_seconds", "histogram",
           "Time from request start to the response being queued.");
    for (int r = 0; r < METRICS_ROUTES; r++) {
        uint64_t counts[METRICS_LAT_BUCKETS + 1];
        for (int b = 0; b <= METRICS_LAT_BUCKETS; b++)
            counts[b] = ld(&m->lat_bucket[r][b]);
        char labels[64];
        snprintf(labels, sizeof labels, "route=\"%s\"", http_route_name(r));
        histogram(f, "iot_ingest_http_request_duration_seconds", labels, counts, metrics_lat_bounds,
                  METRICS_LAT_BUCKETS, (double)ld(&m->lat_sum_us[r]) / 1e6);
    }
    header(f, "iot_ingest_rate_limited_total", "counter", "Requests refused by a rate limit.");
    fprintf(f, "iot_ingest_rate_limited_total{limit=\"ip\"} %llu\n", ld(&m->rate_limited_ip));
    fprintf(f, "iot_ingest_rate_limited_total{limit=\"device\"} %llu\n",
            ld(&im->rate_limited_device));
    fprintf(f, "iot_ingest_rate_limited_total{limit=\"auth\"} %llu\n", ld(&im->rate_limited_auth));
    header(f, "iot_ingest_auth_failures_total", "counter", "Failed authentications.");
    fprintf(f, "iot_ingest_auth_failures_total %llu\n", ld(&im->auth_failures));
    header(f, "iot_ingest_readings_rejected_total", "counter", "Readings rejected, by reason.");
    for (int r = REJECT_UNKNOWN_SENSOR; r < REJECT_REASONS; r++)
        fprintf(f, "iot_ingest_readings_rejected_total{reason=\"%s\"} %llu\n",
                reject_reason_name((enum reject_reason)r), ld(&im->rejected[r]));
}

static void writer_section(FILE *f, struct writer *w)
{
    struct writer_stats ws;
    writer_get_stats(w, &ws);
    header(f, "iot_ingest_readings_stored_total", "counter", "Readings committed, by class.");
    for (int c = 0; c < CLASS_INVALID; c++)
        fprintf(f, "iot_ingest_readings_stored_total{class=\"%s\"} %llu\n",
                reading_class_name((enum reading_class)c),
                (unsigned long long)ws.router.by_class[c]);
    header(f, "iot_ingest_readings_late_total", "counter", "Late readings committed.");
    fprintf(f, "iot_ingest_readings_late_total %llu\n", (unsigned long long)ws.router.late);
    header(f, "iot_ingest_alert_transitions_total", "counter", "Alert transitions committed.");
    fprintf(f, "iot_ingest_alert_transitions_total{event=\"triggered\"} %llu\n",
            (unsigned long long)ws.router.alerts.opened);
    fprintf(f, "iot_ingest_alert_transitions_total{event=\"escalated\"} %llu\n",
            (unsigned long long)ws.router.alerts.escalated);
    fprintf(f, "iot_ingest_alert_transitions_total{event=\"resolved\"} %llu\n",
            (unsigned long long)ws.router.alerts.resolved);
    header(f, "iot_ingest_packets_deduplicated_total", "counter",
           "Packets answered from the packet_id memory.");
    fprintf(f, "iot_ingest_packets_deduplicated_total %llu\n", (unsigned long long)ws.duplicates);
    header(f, "iot_ingest_write_queue_depth", "gauge", "Jobs waiting for the writer.");
    fprintf(f, "iot_ingest_write_queue_depth %zu\n", ws.queue_depth);
    header(f, "iot_ingest_commits_total", "counter", "Transactions committed by the writer.");
    fprintf(f, "iot_ingest_commits_total %llu\n", (unsigned long long)ws.commits);
    header(f, "iot_ingest_db_errors_total", "counter", "Writer transactions that failed.");
    fprintf(f, "iot_ingest_db_errors_total %llu\n", (unsigned long long)ws.commit_failures);
    header(f, "iot_ingest_commit_duration_seconds", "histogram",
           "Time of each committed write transaction, begin to commit.");
    histogram(f, "iot_ingest_commit_duration_seconds", "", ws.commit_lat, writer_lat_bounds,
              WRITER_LAT_BUCKETS, (double)ws.commit_us_sum / 1e6);
    header(f, "iot_ingest_commit_batch_size", "histogram",
           "Packets (write jobs) per committed transaction.");
    histogram(f, "iot_ingest_commit_batch_size", "", ws.batch_size, writer_batch_bounds,
              WRITER_BATCH_BUCKETS, (double)ws.batch_jobs_sum);
}

static void cache_section(FILE *f, struct resolver *r)
{
    struct resolver_stats rs;
    resolver_get_stats(r, &rs);
    header(f, "iot_ingest_cache_requests_total", "counter",
           "Resolver lookups: hit, miss (a query), negative_hit (known unknown).");
    fprintf(f, "iot_ingest_cache_requests_total{result=\"hit\"} %llu\n",
            (unsigned long long)rs.hits);
    fprintf(f, "iot_ingest_cache_requests_total{result=\"miss\"} %llu\n",
            (unsigned long long)rs.misses);
    fprintf(f, "iot_ingest_cache_requests_total{result=\"negative_hit\"} %llu\n",
            (unsigned long long)rs.negative_hits);
    header(f, "iot_ingest_cache_entries", "gauge", "Devices held in the resolver cache.");
    fprintf(f, "iot_ingest_cache_entries %zu\n", rs.entries);
}

static void broker_section(FILE *f, struct broker *b)
{
    struct broker_stats bs = {0};
    if (b) broker_stats(b, &bs);
    header(f, "iot_ingest_broker_messages_total", "counter", "Broker publications by outcome.");
    fprintf(f, "iot_ingest_broker_messages_total{outcome=\"published\"} %llu\n",
            (unsigned long long)bs.published);
    fprintf(f, "iot_ingest_broker_messages_total{outcome=\"throttled\"} %llu\n",
            (unsigned long long)bs.throttled);
    fprintf(f, "iot_ingest_broker_messages_total{outcome=\"dropped\"} %llu\n",
            (unsigned long long)bs.dropped);
    header(f, "iot_ingest_broker_up", "gauge", "1 when the broker is healthy.");
    fprintf(f, "iot_ingest_broker_up %d\n", b && broker_health(b) == BROKER_OK);
}

/*
 * Batch jobs run in other processes (job ..., jobs, cron); they add each run
 * to the job_stats table, and every gateway exports it. Read at scrape time
 * through the shared reader connection.
 */
static void jobs_section(FILE *f, struct store_shared *db)
{
    /* The four jobs are always exported (zeros before their first run). */
    static const char *const known[] = {"baseline", "explain", "silence", "retention"};
    enum { NKNOWN = sizeof known / sizeof known[0] };
    struct store_job_stat st[16];
    size_t n = 0;
    struct store *s = store_shared_acquire(db);
    int rc = store_job_stats(s, st, 16 - NKNOWN, &n);
    store_shared_release(db);
    if (rc) {
        /* Exporting zeros would look like a counter reset: export nothing this scrape. */
        header(f, "iot_ingest_job_runs_total", "counter", "Batch job runs by job and result.");
        return;
    }
    for (size_t k = 0; k < NKNOWN; k++) {
        size_t i = 0;
        while (i < n && strcmp(st[i].job, known[k]) != 0)
            i++;
        if (i == n) {
            memset(&st[n], 0, sizeof st[n]);
            snprintf(st[n].job, sizeof st[n].job, "%s", known[k]);
            n++;
        }
    }
    header(f, "iot_ingest_job_runs_total", "counter", "Batch job runs by job and result.");
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "iot_ingest_job_runs_total{job=\"%s\",result=\"ok\"} %lld\n", st[i].job,
                (long long)st[i].runs_ok);
        fprintf(f, "iot_ingest_job_runs_total{job=\"%s\",result=\"failed\"} %lld\n", st[i].job,
                (long long)st[i].runs_failed);
    }
    header(f, "iot_ingest_job_duration_seconds", "histogram", "Batch job run durations.");
    for (size_t i = 0; i < n; i++) {
        long long count = (long long)(st[i].runs_ok + st[i].runs_failed);
        for (int b = 0; b < STORE_JOB_BUCKETS; b++)
            fprintf(f, "iot_ingest_job_duration_seconds_bucket{job=\"%s\",le=\"%g\"} %lld\n",
                    st[i].job, store_job_bounds_s[b], (long long)st[i].buckets[b]);
        fprintf(f, "iot_ingest_job_duration_seconds_bucket{job=\"%s\",le=\"+Inf\"} %lld\n",
                st[i].job, count);
        fprintf(f, "iot_ingest_job_duration_seconds_sum{job=\"%s\"} %.3f\n", st[i].job,
                (double)st[i].duration_sum_ms / 1000.0);
        fprintf(f, "iot_ingest_job_duration_seconds_count{job=\"%s\"} %lld\n", st[i].job, count);
    }
    header(f, "iot_ingest_job_last_success_timestamp_seconds", "gauge",
           "Unix time of each job's last successful run.");
    for (size_t i = 0; i < n; i++)
        if (st[i].last_success_at)
            fprintf(f, "iot_ingest_job_last_success_timestamp_seconds{job=\"%s\"} %.3f\n",
                    st[i].job, (double)st[i].last_success_at / 1000.0);
}

/*
 * Client connections of the daemon, 0 before it is stored (http_int.h). With
 * a thread pool, libmicrohttpd sums the workers' counts into a field of the
 * master daemon and returns a pointer to it: two scrapes on two workers
 * would write that field at once, so the call and the copy are serialized.
 */
/* One series: name{labels} v (labels without braces, "" for none). */
static void series(FILE *f, const char *name, const char *labels, uint64_t v)
{
    fprintf(f, *labels ? "%s{%s} %llu\n" : "%s%s %llu\n", name, labels, (unsigned long long)v);
}

/* The MQTT listener's counters (MQTT_PORT set); nothing when it is off. */
static void mqtt_section(FILE *f, struct mqtt_server *m)
{
    if (!m) return;
    struct mqtt_stats st;
    mqtt_server_get_stats(m, &st);
    const char *conn = "iot_ingest_mqtt_connections", *connects = "iot_ingest_mqtt_connects_total",
               *closed = "iot_ingest_mqtt_closed_total", *pubs = "iot_ingest_mqtt_publishes_total",
               *retries = "iot_ingest_mqtt_publish_retries_total",
               *dup = "iot_ingest_mqtt_dup_in_flight_total",
               *results = "iot_ingest_mqtt_results_total",
               *puback = "iot_ingest_mqtt_puback_seconds";
    header(f, conn, "gauge", "Open MQTT connections.");
    series(f, conn, "", st.connections);
    header(f, connects, "counter", "MQTT CONNECTs by result.");
    series(f, connects, "result=\"accepted\"", st.connects_accepted);
    series(f, connects, "result=\"refused\"", st.connects_refused);
    header(f, closed, "counter", "MQTT connections closed by the gateway, by reason.");
    series(f, closed, "reason=\"malformed\"", st.closed_malformed);
    series(f, closed, "reason=\"keep_alive\"", st.closed_keepalive);
    series(f, closed, "reason=\"connection_limit\"", st.refused_at_accept);
    header(f, pubs, "counter", "MQTT PUBLISHes by QoS and outcome.");
    for (int q = 0; q < 2; q++)
        for (int o = 0; o < MQTT_OUTCOMES; o++) {
            char labels[64];
            snprintf(labels, sizeof labels, "qos=\"%d\",outcome=\"%s\"", q,
                     mqtt_outcome_name((enum mqtt_outcome)o));
            series(f, pubs, labels, st.publishes[q][o]);
        }
    header(f, retries, "counter",
           "Held MQTT packets tried again (their PUBACK delayed), by cause.");
    series(f, retries, "cause=\"rate_limited\"", st.retries_rate_limited);
    series(f, retries, "cause=\"unavailable\"", st.retries_unavailable);
    header(f, dup, "counter",
           "QoS 1 PUBLISHes ignored as the retry of a packet identifier in flight.");
    series(f, dup, "", st.dup_in_flight);
    header(f, results, "counter",
           "Publications on devices/{uuid}/results, sent or dropped (QoS 0, client not reading).");
    series(f, results, "result=\"sent\"", st.results_sent);
    series(f, results, "result=\"dropped\"", st.results_dropped);
    header(f, puback, "histogram", "From a QoS 1 PUBLISH read to its PUBACK (after the commit).");
    histogram(f, puback, "", st.puback_lat, mqtt_lat_bounds, MQTT_LAT_BUCKETS,
              (double)st.puback_us_sum / 1e6);
}

static unsigned open_connections(struct http_server *s)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    struct MHD_Daemon *d = atomic_load(&s->mhd);
    unsigned n = 0;
    if (!d) return 0;
    pthread_mutex_lock(&lock);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    if (di) n = di->num_connections;
    pthread_mutex_unlock(&lock);
    return n;
}

static void process_section(FILE *f, struct http_server *s)
{
    long rss_pages = 0;
    FILE *st = fopen("/proc/self/statm", "r");
    if (st) {
        long size;
        if (fscanf(st, "%ld %ld", &size, &rss_pages) != 2) rss_pages = 0;
        fclose(st);
    }
    header(f, "iot_ingest_process_resident_memory_bytes", "gauge", "Resident set size.");
    fprintf(f, "iot_ingest_process_resident_memory_bytes %ld\n", rss_pages * sysconf(_SC_PAGESIZE));
    header(f, "iot_ingest_open_connections", "gauge", "Open client connections.");
    fprintf(f, "iot_ingest_open_connections %u\n", open_connections(s));
    header(f, "iot_ingest_build_info", "gauge", "Build information.");
    fprintf(f, "iot_ingest_build_info{version=\"%s\"} 1\n", IOT_VERSION);
}

int ep_metrics(struct request *rq)
{
    struct http_server *s = rq->srv;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return MHD_NO;
    http_section(f, &s->metrics, intake_metrics(s->d.intake));
    writer_section(f, s->d.writer);
    cache_section(f, s->d.resolver);
    broker_section(f, s->d.broker);
    jobs_section(f, s->d.db);
    mqtt_section(f, s->d.mqtt);
    process_section(f, s);
    if (fclose(f) != 0) {
        free(text);
        return MHD_NO;
    }
    return reply_text(rq, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
