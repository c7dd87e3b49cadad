/*
 * sim: the device simulator / load generator (the seed's iot_simulation).
 *
 * Provisions a fleet (N devices x M sensors with keys it chooses, written
 * through the store interface like `db demo`), or, with --device-uuids and
 * the API key, drives an existing fleet whose sensors it lists through the
 * status endpoint. Then POSTs realistic packets (src/sim/signal.c) to
 * /ingest/packets at a target rate over K keep-alive connections
 * (src/sim/loadgen.c) for a duration, printing a progress line each second
 * on stderr and a summary on stdout. With --emit it writes packet bodies
 * and keys to a file instead of sending them (the benchmark's wrk bodies).
 * With --cleanup it deletes the devices it provisioned when the run ends,
 * also after SIGINT or SIGTERM (which end the sending early).
 *
 * Exit: 0 the run completed and the gateway answered at least once; 1 it
 * could not run (provisioning failed, gateway never answered, out of
 * memory); 2 bad usage.
 */
#include "cli/cli.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/secret.h"
#include "sim/fleet.h"
#include "sim/loadgen.h"
#include "sim/packet.h"
#include "sim/source.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_DEVICES       1000000
#define MAX_SENSORS       1000
#define MAX_FLEET_SENSORS 10000000 /* devices x sensors */
#define MAX_CONNECTIONS   10000
#define UUID_LIST_MAX     (16u << 20) /* bytes of a --device-uuids @FILE */

static const char *f_devices, *f_sensors, *f_rpp, *f_connections, *f_rate, *f_duration, *f_url,
    *f_gzip, *f_late, *f_spike, *f_excursion, *f_seed, *f_prefix, *f_thresholds, *f_timestamps,
    *f_packet_ids, *f_device_uuids, *f_timeout, *f_emit, *f_emit_packets, *f_json, *f_progress,
    *f_demo, *f_cleanup;

/* Everything one run needs, built from the flags. */
struct sim_run {
    uint64_t devices, sensors, connections, timeout_ms, seed, emit_packets;
    double rate, duration;
    int gzip, thresholds, json, progress, demo, cleanup;
    const char *prefix, *emit;
    char prefix_buf[SIM_PREFIX_MAX + 1];
    char post_url[1024], base_url[1024];
    char **uuids; /* --device-uuids: API-key mode */
    size_t nuuids;
    char *uuid_text; /* storage behind uuids */
    struct sim_packet_opts popts;
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* SIGINT and SIGTERM set stop_flag from now on (the load loop stops early). 0, or -1. */
static int stop_on_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    (void)sigemptyset(&sa.sa_mask); /* cannot fail for a valid set */
    if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL)) {
        cli_error("cannot install signal handlers");
        return -1;
    }
    return 0;
}

static int parse_u64(const char *flag, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno || *s == '-' || v < min || v > max) {
        cli_error("%s must be an integer from %llu to %llu, got \"%.64s\"", flag,
                  (unsigned long long)min, (unsigned long long)max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_num(const char *flag, const char *s, double min, double max, double *out)
{
    if (cli_parse_double(flag, s, out)) return -1;
    if (*out < min || *out > max) {
        cli_error("%s must be from %g to %g, got \"%.64s\"", flag, min, max, s);
        return -1;
    }
    return 0;
}

static int parse_bool(const char *flag, const char *s, int *out)
{
    if (!strcmp(s, "1") || !strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "on"))
        *out = 1;
    else if (!strcmp(s, "0") || !strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "off"))
        *out = 0;
    else {
        cli_error("%s takes 1 or 0 (yes/no), got \"%.64s\"", flag, s);
        return -1;
    }
    return 0;
}

/* Reads a whole small file (malloc'ed, NUL-terminated) into *out. */
static int read_file(const char *path, char **out)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        cli_error("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct buf b = {0};
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, fp)) > 0)
        rc = b.len + n > UUID_LIST_MAX ? IOT_ETOOBIG : buf_put(&b, chunk, n);
    if (!rc && ferror(fp)) rc = IOT_EIO;
    fclose(fp);
    if (!rc) rc = buf_put(&b, "", 0);
    if (rc) {
        cli_error("cannot read %s: %s", path, iot_strerror(rc));
        buf_free(&b);
        return -1;
    }
    *out = b.p;
    return 0;
}

/* Splits --device-uuids (a comma list, or @FILE with uuids separated by commas or newlines). */
static int parse_uuids(struct sim_run *r, const char *arg)
{
    if (arg[0] == '@') {
        if (read_file(arg + 1, &r->uuid_text)) return -1;
    } else if (!(r->uuid_text = strdup(arg))) {
        cli_error("out of memory");
        return -1;
    }
    size_t cap = 16;
    r->uuids = malloc(cap * sizeof *r->uuids);
    if (!r->uuids) {
        cli_error("out of memory");
        return -1;
    }
    char *save = NULL;
    for (char *t = strtok_r(r->uuid_text, ",\r\n \t", &save); t;
         t = strtok_r(NULL, ",\r\n \t", &save)) {
        if (r->nuuids == MAX_DEVICES) {
            cli_error("more than %d device uuids", MAX_DEVICES);
            return -1;
        }
        if (r->nuuids == cap) {
            char **p = realloc(r->uuids, 2 * cap * sizeof *p);
            if (!p) {
                cli_error("out of memory");
                return -1;
            }
            r->uuids = p;
            cap *= 2;
        }
        r->uuids[r->nuuids++] = t;
    }
    if (r->nuuids == 0) {
        cli_error("--device-uuids names no device");
        return -1;
    }
    return 0;
}

/* The packets URL and the base URL (for the status endpoint) from --url or the settings. */
static int make_urls(struct sim_run *r, const struct config *cfg)
{
    static const char path[] = "/ingest/packets";
    char url[sizeof r->post_url - (sizeof path - 1)]; /* so that url + path always fits */
    if (f_url) {
        if (strlen(f_url) >= sizeof url - 32 ||
            (strncmp(f_url, "http://", 7) != 0 && strncmp(f_url, "https://", 8) != 0)) {
            cli_error("--url must be an http:// or https:// URL");
            return -1;
        }
        snprintf(url, sizeof url, "%s", f_url);
    } else {
        const char *h = cfg->ingest_host;
        if (!strcmp(h, "0.0.0.0") || !*h) h = "127.0.0.1";
        if (!strcmp(h, "::")) h = "::1";
        int v6 = strchr(h, ':') != NULL;
        if (strlen(h) > 256) return -1;
        snprintf(url, sizeof url, "http://%s%s%s:%lld", v6 ? "[" : "", h, v6 ? "]" : "",
                 (long long)cfg->ingest_port);
    }
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        url[--n] = 0;
    if (n >= sizeof path - 1 && strcmp(url + n - (sizeof path - 1), path) == 0)
        url[n - (sizeof path - 1)] = 0;
    snprintf(r->base_url, sizeof r->base_url, "%s", url);
    snprintf(r->post_url, sizeof r->post_url, "%s%s", url, path);
    return 0;
}

static int parse_flags(struct sim_run *r, const struct config *cfg)
{
    uint64_t rpp = 0;
    double rate = 100, duration = 10, late = 0.02, spike = 0.001, exc = 0.0005;
    memset(r, 0, sizeof *r);
    r->devices = 10;
    r->sensors = 5;
    r->connections = 4;
    r->timeout_ms = 10000;
    r->emit_packets = 1000;
    r->thresholds = r->progress = 1;
    int ts = -1;
    if ((f_devices && parse_u64("--devices", f_devices, 1, MAX_DEVICES, &r->devices)) ||
        (f_sensors && parse_u64("--sensors", f_sensors, 1, MAX_SENSORS, &r->sensors)) ||
        (f_rpp && parse_u64("--readings-per-packet", f_rpp, 1, 100000, &rpp)) ||
        (f_connections &&
         parse_u64("--connections", f_connections, 1, MAX_CONNECTIONS, &r->connections)) ||
        (f_rate && parse_num("--rate", f_rate, 0, 1e7, &rate)) ||
        (f_duration && parse_num("--duration", f_duration, 0.001, 86400.0 * 7, &duration)) ||
        (f_gzip && parse_bool("--gzip", f_gzip, &r->gzip)) ||
        (f_late && parse_num("--late-fraction", f_late, 0, 1, &late)) ||
        (f_spike && parse_num("--spike-fraction", f_spike, 0, 1, &spike)) ||
        (f_excursion && parse_num("--excursion-fraction", f_excursion, 0, 1, &exc)) ||
        (f_seed && parse_u64("--seed", f_seed, 0, UINT64_MAX, &r->seed)) ||
        (f_thresholds && parse_bool("--thresholds", f_thresholds, &r->thresholds)) ||
        (f_timestamps && parse_bool("--timestamps", f_timestamps, &ts)) ||
        (f_packet_ids && parse_bool("--packet-ids", f_packet_ids, &r->popts.packet_ids)) ||
        (f_timeout && parse_u64("--timeout-ms", f_timeout, 1, 3600000, &r->timeout_ms)) ||
        (f_emit_packets &&
         parse_u64("--emit-packets", f_emit_packets, 1, 100000000, &r->emit_packets)) ||
        (f_json && parse_bool("--json", f_json, &r->json)) ||
        (f_progress && parse_bool("--progress", f_progress, &r->progress)) ||
        (f_demo && parse_bool("--demo", f_demo, &r->demo)))
        return -1;
    if (r->demo && (f_devices || f_sensors || f_prefix || f_thresholds || f_device_uuids)) {
        cli_error("--demo drives the fleet of db demo: it takes no --devices, --sensors, "
                  "--prefix, --thresholds or --device-uuids");
        return -1;
    }
    r->cleanup = f_cleanup != NULL;
    if (r->cleanup && f_emit) {
        cli_error("--cleanup would delete the devices the --emit file's packets are for");
        return -1;
    }
    if (r->cleanup && (r->demo || f_device_uuids))
        fprintf(stderr, "sim: --cleanup: nothing to clean up, %s provisions nothing\n",
                r->demo ? "--demo" : "--device-uuids");
    if (r->devices * r->sensors > MAX_FLEET_SENSORS) {
        cli_error("--devices x --sensors must be at most %d", MAX_FLEET_SENSORS);
        return -1;
    }
    if (!f_seed) r->seed = (uint64_t)clock_now_ms() * 1000003u ^ (uint64_t)getpid();
    if (f_prefix) {
        if (cli_check_uuid("--prefix", f_prefix, SIM_PREFIX_MAX)) return -1;
        r->prefix = f_prefix;
    } else {
        /* A fresh prefix per run: device keys cannot be recovered, so never reuse devices. */
        char key[SECRET_KEY_HEX_LEN + 1];
        if (secret_generate(key)) {
            cli_error("no randomness available");
            return -1;
        }
        snprintf(r->prefix_buf, sizeof r->prefix_buf, "sim-%.8s", key);
        r->prefix = r->prefix_buf;
    }
    r->emit = f_emit;
    r->rate = rate;
    r->duration = duration;
    if (f_device_uuids && parse_uuids(r, f_device_uuids)) return -1;
    if (r->nuuids && !cfg->api_key[0]) {
        cli_error("--device-uuids needs the API key (API_KEY or --api-key)");
        return -1;
    }
    if (make_urls(r, cfg)) return -1;
    /* Emitted bodies are replayed later: by default they carry no time, the gateway stamps it. */
    r->popts.timestamps = ts >= 0 ? ts : !r->emit;
    r->popts.readings = rpp; /* 0: one reading per sensor of each device */
    r->popts.late_fraction = late;
    r->popts.sig.spike_prob = spike;
    r->popts.sig.excursion_prob = exc;
    return 0;
}

static void run_fini(struct sim_run *r)
{
    free(r->uuids);
    free(r->uuid_text);
}

static void on_tick(void *ud, const struct loadgen_tick *t)
{
    (void)ud;
    double iv = t->interval_s > 0 ? t->interval_s : 1;
    fprintf(stderr,
            "sim: t=%.0fs sent=%llu 2xx=%llu non2xx=%llu errors=%llu | %.0f packets/s %.0f "
            "readings/s p50=%.2fms p99=%.2fms max=%.2fms in_flight=%u\n",
            t->t_s, (unsigned long long)t->sent, (unsigned long long)t->ok,
            (unsigned long long)(t->answered - t->ok), (unsigned long long)t->errors,
            (double)t->i_ok / iv, (double)t->i_accepted / iv, (double)t->i_p50_us / 1000.0,
            (double)t->i_p99_us / 1000.0, (double)t->i_max_us / 1000.0, t->in_flight);
}

/* "1 device", "2 devices": the word for n. */
static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static void print_summary(const struct sim_run *r, const struct sim_source *src,
                          const struct loadgen_totals *t, size_t ndev, size_t nsensors)
{
    double el = t->elapsed_s > 0 ? t->elapsed_s : 1e-9;
    const struct lat_hist *h = &t->lat;
    /* Without --readings-per-packet each device sends one reading per sensor. */
    double rpp = r->popts.readings ? (double)r->popts.readings
                                   : (double)nsensors / (double)(ndev ? ndev : 1);
    if (r->json) {
        json_t *status = json_object(), *errors = json_object();
        char seed[24];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
        for (int i = 0; i < LOADGEN_STATUS_MAX; i++) {
            char k[8];
            snprintf(k, sizeof k, "%d", i);
            if (t->status[i])
                json_object_set_new(status, k, json_integer((json_int_t)t->status[i]));
        }
        for (int i = 0; i < LOADGEN_ERR_MAX; i++)
            if (t->curl_error[i])
                json_object_set_new(errors, loadgen_error_name(i),
                                    json_integer((json_int_t)t->curl_error[i]));
        json_t *o = json_pack(
            "{s:s, s:s, s:I, s:I, s:f, s:I, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, "
            "s:f, s:f, s:f, s:f, s:f, s:o, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:s}",
            "url", r->post_url, "prefix",
            r->nuuids ? ""
            : r->demo ? "demo-device"
                      : r->prefix,
            "devices", (json_int_t)ndev, "sensors", (json_int_t)nsensors, "readings_per_packet",
            rpp, "connections", (json_int_t)r->connections, "target_rate", r->rate, "elapsed_s", el,
            "sent", (json_int_t)t->sent, "answered", (json_int_t)t->answered, "ok",
            (json_int_t)t->ok, "errors", (json_int_t)t->errors, "unfinished",
            (json_int_t)t->unfinished, "behind", (json_int_t)t->behind, "accepted_readings",
            (json_int_t)t->accepted, "packets_per_s", (double)t->ok / el, "readings_per_s",
            (double)t->accepted / el, "p50_ms", ms(lat_hist_percentile(h, 50)), "p90_ms",
            ms(lat_hist_percentile(h, 90)), "p99_ms", ms(lat_hist_percentile(h, 99)), "max_ms",
            ms(h->max_us), "status", status, "transport_errors", errors, "generated", "packets",
            (json_int_t)src->st.packets, "readings", (json_int_t)src->st.readings, "late",
            (json_int_t)src->st.late, "spikes", (json_int_t)src->st.spikes, "warning_range",
            (json_int_t)src->st.warnings, "critical_range", (json_int_t)src->st.criticals, "seed",
            seed);
        if (o)
            cli_print_json(o);
        else
            cli_error("out of memory for the summary");
        return;
    }
    printf("sim: %zu %s, %zu %s, %.3g readings/packet, %llu %s, %s, gzip %s, seed %llu, %s\n", ndev,
           plural(ndev, "device", "devices"), nsensors, plural(nsensors, "sensor", "sensors"), rpp,
           (unsigned long long)r->connections, plural(r->connections, "connection", "connections"),
           r->rate > 0 ? "paced" : "unpaced (as fast as possible)", r->gzip ? "on" : "off",
           (unsigned long long)r->seed, r->post_url);
    if (r->rate > 0) printf("sim: target %.1f packets/s\n", r->rate);
    printf("sim: packets sent=%llu answered=%llu 2xx=%llu transport_errors=%llu unfinished=%llu "
           "behind_schedule=%llu in %.2f s\n",
           (unsigned long long)t->sent, (unsigned long long)t->answered, (unsigned long long)t->ok,
           (unsigned long long)t->errors, (unsigned long long)t->unfinished,
           (unsigned long long)t->behind, el);
    printf("sim: achieved %.1f packets/s, %.1f readings/s (2xx packets, readings the gateway "
           "accepted)\n",
           (double)t->ok / el, (double)t->accepted / el);
    printf("sim: latency ms p50=%.3f p90=%.3f p99=%.3f max=%.3f\n", ms(lat_hist_percentile(h, 50)),
           ms(lat_hist_percentile(h, 90)), ms(lat_hist_percentile(h, 99)), ms(h->max_us));
    printf("sim: http");
    int any = 0;
    for (int i = 0; i < LOADGEN_STATUS_MAX; i++)
        if (t->status[i]) {
            printf(" %d=%llu", i, (unsigned long long)t->status[i]);
            any = 1;
        }
    printf("%s\n", any ? "" : " (no answer)");
    for (int i = 0; i < LOADGEN_ERR_MAX; i++)
        if (t->curl_error[i])
            printf("sim: transport error \"%s\" x%llu\n", loadgen_error_name(i),
                   (unsigned long long)t->curl_error[i]);
    printf("sim: generated readings=%llu late=%llu spikes=%llu warning_range=%llu "
           "critical_range=%llu bytes=%llu\n",
           (unsigned long long)src->st.readings, (unsigned long long)src->st.late,
           (unsigned long long)src->st.spikes, (unsigned long long)src->st.warnings,
           (unsigned long long)src->st.criticals, (unsigned long long)t->bytes_sent);
    if (fflush(stdout) != 0) cli_error("cannot write the summary");
}

/* --emit: writes the bodies to a file instead of sending them. */
static int emit_bodies(const struct sim_run *r, struct sim_source *src, const char *api_key)
{
    FILE *fp = fopen(r->emit, "w");
    if (!fp) {
        cli_error("cannot create %s: %s", r->emit, strerror(errno));
        return 1;
    }
    int rc = sim_source_emit(src, fp, r->emit_packets, api_key);
    if (fclose(fp) != 0 && !rc) rc = IOT_EIO;
    if (rc) {
        cli_error("writing %s: %s", r->emit, iot_strerror(rc));
        return 1;
    }
    fprintf(stderr, "sim: wrote %llu packets (%llu readings) to %s\n",
            (unsigned long long)r->emit_packets, (unsigned long long)src->st.readings, r->emit);
    return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p, (void)ud;
    return size * n;
}

/*
 * GET /health before anything is provisioned, so that a run against a
 * gateway that is not there leaves no devices behind. Any HTTP answer will
 * do (503 while its database is down is still a gateway). 0, or -1 after a
 * one-line message.
 */
static int gateway_answers(const struct sim_run *r)
{
    char url[sizeof r->base_url + 8];
    snprintf(url, sizeof url, "%s/health", r->base_url);
    CURL *c = curl_easy_init();
    CURLcode cc = c ? curl_easy_setopt(c, CURLOPT_URL, url) : CURLE_OUT_OF_MEMORY;
    if (cc == CURLE_OK) cc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    if (cc == CURLE_OK) cc = curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
    if (cc == CURLE_OK) cc = curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (cc == CURLE_OK) cc = curl_easy_perform(c);
    if (c) curl_easy_cleanup(c);
    if (cc == CURLE_OK) return 0;
    cli_error("the gateway at %s did not answer %s (%s); nothing provisioned, nothing sent",
              r->base_url, "/health", curl_easy_strerror(cc));
    return -1;
}

/*
 * --cleanup: deletes the devices this run provisioned (f->dev[0 ..
 * f->provisioned)) with everything stored under them, each in its own
 * transaction (store_device_delete). One already gone is not an error.
 * 0, or -1 after a one-line message naming what is left.
 */
static int cleanup(const struct config *cfg, const struct sim_fleet *f)
{
    struct store *s = NULL;
    struct store_device_deleted d;
    int64_t t0 = clock_mono_us(), readings = 0;
    size_t i = 0;
    int rc = cli_open_store(cfg, &s);
    for (; !rc && i < f->provisioned; i++) {
        rc = store_device_delete(s, f->dev[i].uuid, &d);
        if (rc == IOT_ENOTFOUND) rc = 0;
        readings += rc ? 0 : d.readings;
    }
    if (rc && s)
        cli_error("--cleanup: deleting %s: %s: %s; %zu of %zu provisioned %s left", f->dev[i].uuid,
                  iot_strerror(rc), store_errmsg(s), f->provisioned - i, f->provisioned,
                  plural(f->provisioned, "device", "devices"));
    else if (rc)
        cli_error("--cleanup: the %zu provisioned %s are left", f->provisioned,
                  plural(f->provisioned, "device", "devices"));
    else
        fprintf(stderr, "sim: cleaned up %zu %s (%lld readings) in %.2f s\n", f->provisioned,
                plural(f->provisioned, "device", "devices"), (long long)readings,
                (double)(clock_mono_us() - t0) / 1e6);
    store_close(s);
    return rc ? -1 : 0;
}

/* Provisions the fleet through DATABASE_URL; with --cleanup, a failure deletes what it made. */
static int provision(const struct sim_run *r, const struct config *cfg, struct sim_rng *rng,
                     struct sim_fleet **out)
{
    struct store *s = NULL;
    struct sim_fleet *f = NULL;
    char err[IOT_ERRBUF] = "";
    int64_t t0 = clock_mono_us();
    int rc = cli_open_ready(cfg, 0, &s); /* a schema failure is reported below */
    if (!s) return 1;
    if (rc) snprintf(err, sizeof err, "schema: %s", store_errmsg(s));
    if (!rc && (rc = sim_fleet_create(r->devices, r->sensors, &f)))
        snprintf(err, sizeof err, "out of memory");
    if (!rc) rc = sim_fleet_provision(f, s, r->prefix, r->thresholds, rng, err, sizeof err);
    store_close(s);
    if (rc) {
        cli_error("%s", err);
        if (r->cleanup && f && f->provisioned) (void)cleanup(cfg, f);
        sim_fleet_destroy(f);
        return 1;
    }
    fprintf(stderr, "sim: provisioned %llu %s x %llu %s (%s-d000001 ..)%s in %.2f s\n",
            (unsigned long long)r->devices, plural(r->devices, "device", "devices"),
            (unsigned long long)r->sensors, plural(r->sensors, "sensor", "sensors"), r->prefix,
            r->thresholds ? " with thresholds" : "", (double)(clock_mono_us() - t0) / 1e6);
    *out = f;
    return 0;
}

static int run_sim(struct config *cfg, const char **pos)
{
    (void)pos;
    struct sim_run r;
    if (parse_flags(&r, cfg)) {
        run_fini(&r);
        return EXIT_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cli_error("libcurl could not start");
        run_fini(&r);
        return 1;
    }
    struct sim_source src = {.popts = &r.popts, .gzip = r.gzip};
    sim_rng_seed(&src.rng, r.seed);
    struct loadgen_totals *t = NULL;
    int ret = 1;
    if (!r.emit && gateway_answers(&r)) goto out;
    /* With --cleanup a stop signal during provisioning must not leave devices behind. */
    if (r.cleanup && stop_on_signals()) goto out;
    if (r.demo) {
        if (cli_demo_fleet(&src.rng, &src.fleet)) {
            cli_error("out of memory");
            goto out;
        }
    } else if (r.nuuids) {
        char err[IOT_ERRBUF] = "";
        int rc = sim_fleet_from_api(r.base_url, cfg->api_key, (const char *const *)r.uuids,
                                    r.nuuids, f_sensors ? r.sensors : 0, (long)r.timeout_ms,
                                    &src.rng, &src.fleet, err, sizeof err);
        if (rc) {
            cli_error("%s", err);
            goto out;
        }
    } else if (provision(&r, cfg, &src.rng, &src.fleet)) {
        goto out;
    }
    size_t nsensors = 0;
    for (size_t i = 0; i < src.fleet->ndev; i++)
        nsensors += src.fleet->dev[i].nsensors;
    if (r.emit) {
        ret = emit_bodies(&r, &src, cfg->api_key);
        goto out;
    }
    if (sim_source_headers(&src, cfg->api_key) || !(t = malloc(sizeof *t))) {
        cli_error("out of memory");
        goto out;
    }
    if (!r.cleanup && stop_on_signals()) goto out;
    struct loadgen_opts lo = {
        .url = r.post_url,
        .connections = (unsigned)r.connections,
        .rate = r.rate,
        .duration_s = r.duration,
        .timeout_ms = (long)r.timeout_ms,
        .stop = &stop_flag,
        .fill = sim_source_fill,
        .tick = r.progress ? on_tick : NULL,
        .ud = &src,
    };
    int rc = loadgen_run(&lo, t);
    if (rc && t->sent == 0) {
        cli_error("load loop failed: %s", iot_strerror(rc));
        goto out;
    }
    if (rc) cli_error("stopped early: %s", iot_strerror(rc));
    print_summary(&r, &src, t, src.fleet->ndev, nsensors);
    if (t->answered == 0) cli_error("the gateway at %s never answered", r.post_url);
    ret = t->answered > 0 ? 0 : 1;
out:
    if (r.cleanup && src.fleet && src.fleet->provisioned && cleanup(cfg, src.fleet)) ret = 1;
    free(t);
    sim_source_fini(&src);
    sim_fleet_destroy(src.fleet);
    curl_global_cleanup();
    run_fini(&r);
    return ret;
}

static struct cli_flag sim_flags[] = {
    {"--devices", &f_devices, 0, "devices to provision (default 10)"},
    {"--sensors", &f_sensors, 0,
     "sensors per device (default 5); with --device-uuids, most sensors used per device"},
    {"--readings-per-packet", &f_rpp, 0, "readings in each packet (default: one per sensor)"},
    {"--connections", &f_connections, 0, "keep-alive connections, requests in flight (default 4)"},
    {"--rate", &f_rate, 0, "packets per second in total; 0 = as fast as possible (default 100)"},
    {"--duration", &f_duration, 0, "seconds of sending (default 10)"},
    {"--url", &f_url, 0, "gateway base URL (default http://INGEST_HOST:INGEST_PORT)"},
    {"--gzip", &f_gzip, 0, "1: send bodies with Content-Encoding: gzip (default 0)"},
    {"--late-fraction", &f_late, 0,
     "share of readings sent late, older than their sensor's newest (default 0.02)"},
    {"--spike-fraction", &f_spike, 0, "share of readings that are spikes (default 0.001)"},
    {"--excursion-fraction", &f_excursion, 0,
     "per reading, odds of starting an excursion into the warning/critical range (default "
     "0.0005)"},
    {"--seed", &f_seed, 0, "random seed for the signals (default: from the clock; printed)"},
    {"--prefix", &f_prefix, 0,
     "uuid prefix of provisioned devices, 1-40 bytes of A-Z a-z 0-9 . _ : - (default "
     "sim-<random hex>)"},
    {"--thresholds", &f_thresholds, 0, "1: provision warning/critical thresholds (default 1)"},
    {"--timestamps", &f_timestamps, 0,
     "1: readings carry their time (default 1; 0 with --emit): 0 lets the gateway stamp them"},
    {"--packet-ids", &f_packet_ids, 0, "1: give each packet a packet_id (default 0)"},
    {"--device-uuids", &f_device_uuids, 0,
     "LIST or @FILE: drive these existing devices with the API key instead of provisioning"},
    {"--timeout-ms", &f_timeout, 0, "per-request timeout (default 10000)"},
    {"--emit", &f_emit, 0,
     "FILE: write HEADER<TAB>KEY<TAB>BODY lines (for wrk) instead of sending"},
    {"--emit-packets", &f_emit_packets, 0, "packets written by --emit (default 1000)"},
    {"--json", &f_json, 0, "1: print the summary as one JSON line (default 0)"},
    {"--progress", &f_progress, 0, "1: a progress line on stderr each second (default 1)"},
    {"--demo", &f_demo, 0,
     "1: drive the fleet of db demo (demo-device-1, -2) with its public keys; provisions "
     "nothing"},
    {"--cleanup", &f_cleanup, CLI_FLAG_SWITCH,
     "delete the devices this run provisioned, with all their rows, when it ends (also "
     "after Ctrl-C or SIGTERM)"},
    {0, 0, 0, 0},
};

const struct cli_cmd cmd_sim = {
    .name = "sim",
    .summary =
        "Simulates devices and generates load. Provisions N devices x M sensors in DATABASE_URL\n"
        "(or drives existing devices with --device-uuids and the API key, or the db demo fleet\n"
        "with --demo) once the gateway answered /health, then POSTs realistic\n"
        "packets to /ingest/packets at --rate over --connections keep-alive connections for\n"
        "--duration seconds; prints packets/s, readings/s, latency percentiles and HTTP statuses.\n"
        "With --cleanup it deletes the devices it provisioned when the run ends (also after\n"
        "Ctrl-C or SIGTERM), as `device delete` would.",
    .flags = sim_flags,
    .run = run_sim,
    .uses = CU_DB | CU_SIM,
};
