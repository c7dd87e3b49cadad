/*
 * Fuzzes the whole request handler below the HTTP library: method, path,
 * headers and body from the input go through http_harness_serve, that is
 * request.c, the endpoints, the resolver, the writer and its commit, on a
 * real SQLite file in a temporary directory (removed at exit).
 *
 * Input format (text, so that the seeds in corpus/request/ read like HTTP):
 *
 *   [@directive LF]...
 *   METHOD SP URL LF
 *   [Name: value LF]...
 *   LF
 *   body (the rest of the input, any bytes)
 *
 * A CR before an LF is dropped. Directives, all optional:
 *   @ip ADDR            the client address (default 127.0.0.1)
 *   @gzip               the body is gzip-compressed and Content-Encoding: gzip added
 *   @fault OP NTH ERR   arm a one-shot fault on the writer's store: the NTH call
 *   @rfault OP NTH ERR  of OP (a store_fault_op_name, e.g. tx_commit, any) fails
 *                       with ERR (busy, unavail, db, io, nomem, full); @rfault
 *                       does the same on the read connection (resolver, status)
 * Faults are cleared after each input.
 *
 * The database: device fz-dev-1 (key KEY1) with sensors fz-sen-1 (critical
 * range [-50, 100], warning range [0, 50], delta_max 20), fz-sen-2 (no
 * thresholds) and fz-sen-3 (disabled); device fz-dev-2 (KEY2, disabled) with
 * fz-sen-4; device fz-dev-3 (KEY3) with fz-sen-5. Sensor ids are 1..5 in that
 * order. API key: APIKEY. The wall clock is fixed at 2026-06-01T00:00:00Z so
 * that the timestamps of the seeds stay inside the accepted window.
 *
 * Invariants, for every input:
 * - there is an answer (status 0 means the connection would have been
 *   dropped without one), and its status is one of SPEC §5: 200 201 400 401
 *   403 404 405 413 415 422 429 503, or 500 only when a fault was injected;
 * - every body except /metrics is a JSON object; every error (>= 400) has a
 *   non-empty string "detail" and "code"; 429 and 503 carry Retry-After;
 * - nothing is stored for a 4xx or 5xx, for a duplicate, or for a GET/HEAD
 *   (a fingerprint of every table the write path touches is unchanged);
 * - a 2xx that stores (packets, legacy) adds exactly "accepted" readings.
 *
 * The gateway logs at debug level, so that the log formatting runs on
 * hostile data too, into /dev/null (the stderr FILE is re-pointed; glibc
 * allows it; libFuzzer and the sanitizers write to fd 2 directly).
 * FUZZ_LOG_LEVEL=off skips the formatting, FUZZ_LOG_STDERR=1 shows the lines.
 */
#include "core/clock.h"
#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/secret.h"
#include "support/http_harness.h"
#include "ingest/resolver.h"
#include "ingest/router.h"
#include "ingest/writer.h"
#include "support/store_fault.h"
#include "store/store_shared.h"

#include "fuzz_util.h"

#include <jansson.h>
#include <sqlite3.h>
#include <strings.h>
#include <unistd.h>
#include <zlib.h>

#define NOW_MS      1780272000000LL /* 2026-06-01T00:00:00Z */
#define KEY1        "fuzz-key-one-0123456789abcdef"
#define KEY2        "fuzz-key-two-0123456789abcdef"
#define KEY3        "fuzz-key-three-0123456789abcd"
#define APIKEY      "fuzz-api-key-0123456789abcdef"
#define MAX_HEADERS 32
#define MAX_BODY    65536
#define PRUNE_AT    50000 /* readings; past it the table is emptied between inputs */

static struct config cfg;
static struct store_shared shared;
static struct store *wstore, *rstore; /* fault wrappers; wstore is owned by the writer */
static struct writer *writer;
static struct resolver *resolver;
static struct http_server *srv;
static sqlite3 *check_db;
static char dir[64], path[96];

static int64_t fixed_wall(void)
{
    return NOW_MS;
}

static void die(const char *what, int rc)
{
    dprintf(2, "fuzz_request: setup failed: %s (%d)\n", what, rc);
    exit(1);
}

static struct store *open_store(void)
{
    struct store_open_opts o = {.sync_full = 0, .busy_timeout_ms = 5000, .cache_mb = 4};
    struct store *s = NULL;
    char url[128], err[256];
    snprintf(url, sizeof url, "sqlite:%s", path);
    int rc = store_open(url, &o, &s, err, sizeof err);
    if (rc) die(err, rc);
    return s;
}

static void provision(struct store *s)
{
    static const struct {
        const char *uuid, *key;
        int active;
    } devs[] = {{"fz-dev-1", KEY1, 1}, {"fz-dev-2", KEY2, 0}, {"fz-dev-3", KEY3, 1}};
    static const struct {
        const char *dev, *uuid;
        int active;
    } sens[] = {{"fz-dev-1", "fz-sen-1", 1},
                {"fz-dev-1", "fz-sen-2", 1},
                {"fz-dev-1", "fz-sen-3", 0},
                {"fz-dev-2", "fz-sen-4", 1},
                {"fz-dev-3", "fz-sen-5", 1}};
    int rc = store_schema_init(s);
    if (rc) die("schema", rc);
    int64_t id, did;
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) {
        unsigned char h[SECRET_HASH_LEN];
        secret_hash(devs[i].key, strlen(devs[i].key), h);
        if ((rc = store_device_add(s, devs[i].uuid, "fuzz device", h, NOW_MS - 86400000, &id)))
            die("device_add", rc);
    }
    for (size_t i = 0; i < sizeof sens / sizeof sens[0]; i++)
        if ((rc = store_sensor_add(s, sens[i].dev, sens[i].uuid, "fuzz sensor", "temperature", "C",
                                   NOW_MS - 86400000, &id, &did)))
            die("sensor_add", rc);
    struct store_threshold crit = {.min = -50, .max = 100, .has_min = 1, .has_max = 1};
    struct store_threshold warn = {
        .min = 0, .max = 50, .delta_max = 20, .has_min = 1, .has_max = 1, .has_delta = 1};
    if ((rc = store_threshold_set(s, "fz-sen-1", SEV_CRITICAL, &crit, NOW_MS - 86400000, &id)) ||
        (rc = store_threshold_set(s, "fz-sen-1", SEV_WARNING, &warn, NOW_MS - 86400000, &id)))
        die("threshold_set", rc);
    if ((rc = store_sensor_set_active(s, "fz-sen-3", 0)) ||
        (rc = store_device_set_active(s, "fz-dev-2", 0)))
        die("set_active", rc);
}

static void teardown(void)
{
    http_server_destroy(srv);
    writer_destroy(writer);
    resolver_destroy(resolver);
    store_shared_fini(&shared);
    sqlite3_close(check_db);
    config_fini(&cfg);
    static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
    char f[128];
    for (size_t i = 0; i < 4; i++) {
        snprintf(f, sizeof f, "%s%s", path, sfx[i]);
        unlink(f);
    }
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *lvl = getenv("FUZZ_LOG_LEVEL");
    enum log_level ll = LOG_DEBUG;
    if (lvl && log_level_parse(lvl, &ll)) ll = LOG_DEBUG;
    log_min_level = ll;
    if (!getenv("FUZZ_LOG_STDERR")) {
        FILE *devnull = fopen("/dev/null", "w");
        if (devnull) stderr = devnull;
    }
    clock_set_source(fixed_wall, NULL);

    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/iot-fuzz-XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (!mkdtemp(dir)) die("mkdtemp", 0);
    snprintf(path, sizeof path, "%s/fuzz.db", dir);

    if (config_init(&cfg)) die("config", 0);
    /* Limits on, but far away: their code runs, and the outcome stays deterministic. */
    cfg.rate_limit_ip_rps = 1e9;
    cfg.rate_limit_device_rps = 1e9;
    cfg.rate_limit_burst = 1e9;
    cfg.auth_fail_rps = 1e9;
    cfg.auth_fail_burst = 1e9;
    cfg.rate_limit_max_buckets = 16; /* distinct @ip values exercise the eviction */
    cfg.max_body_bytes = MAX_BODY;
    cfg.max_readings_per_packet = 64;
    free(cfg.api_key);
    cfg.api_key = strdup(APIKEY);
    if (!cfg.api_key) die("strdup", 0);

    struct store *w = open_store();
    provision(w);
    int rc = store_fault_wrap(w, &wstore);
    if (rc) die("fault wrap", rc);
    struct router *r;
    if ((rc = router_create(1024, cfg.alert_clear_after, &r))) die("router", rc);
    struct writer_opts wo = {64, 16, 86400000};
    if ((rc = writer_create(wstore, r, NULL, &wo, &writer))) die("writer", rc);
    if ((rc = writer_start(writer))) die("writer_start", rc);
    if ((rc = store_fault_wrap(open_store(), &rstore))) die("fault wrap", rc);
    store_shared_init(&shared, rstore);
    if ((rc = resolver_create(&shared, 60000, 5000, 64, &resolver))) die("resolver", rc);
    static struct intake *intake; /* lives as long as the fuzzer (as the server) */
    if ((rc = intake_create(&cfg, &intake))) die("intake", rc);
    struct http_deps d = {&cfg, writer, resolver, &shared, NULL, intake, NULL, NULL};
    char err[256] = "";
    if ((rc = http_server_create(&d, &srv, err, sizeof err))) die(err, rc);
    if (sqlite3_open_v2(path, &check_db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        die("sqlite3_open", 0);
    sqlite3_busy_timeout(check_db, 5000);
    atexit(teardown);
    return 0;
}

/* ------------------------------------------------------------------ input */

struct fuzz_req {
    char *method, *url;
    const char *headers[2 * MAX_HEADERS + 3];
    char *body;
    size_t len;
    char ip[64];
    int gzip;
};

/* The next line of [*p, end), NUL-terminated in place (its LF, and a CR before it, cut off). */
static char *next_line(char **p, char *end)
{
    if (*p >= end) return NULL;
    char *s = *p;
    char *nl = memchr(s, '\n', (size_t)(end - s));
    char *e = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    if (e > s && e[-1] == '\r') e--;
    *e = '\0';
    return s;
}

static int parse_err(const char *name, int *err)
{
    static const struct {
        const char *name;
        int err;
    } errs[] = {{"busy", IOT_EBUSY}, {"unavail", IOT_EUNAVAIL}, {"db", IOT_EDB},
                {"io", IOT_EIO},     {"nomem", IOT_ENOMEM},     {"full", IOT_EFULL}};
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
        if (strcmp(name, errs[i].name) == 0) {
            *err = errs[i].err;
            return 1;
        }
    return 0;
}

static void directive(struct fuzz_req *q, char *line)
{
    char a[48], b[48], n[48], c[48];
    if (strncmp(line, "@ip ", 4) == 0) {
        snprintf(q->ip, sizeof q->ip, "%s", line + 4);
    } else if (strcmp(line, "@gzip") == 0) {
        q->gzip = 1;
    } else if (sscanf(line, "%47s %47s %47s %47s", a, b, n, c) == 4 &&
               (strcmp(a, "@fault") == 0 || strcmp(a, "@rfault") == 0)) {
        int reader = a[1] == 'r', err;
        char *end;
        long nth = strtol(n, &end, 10);
        if (*end || !parse_err(c, &err) || nth < 1 || nth > 64) return;
        for (int op = 0; op < STORE_FAULT_OPS; op++)
            if (strcmp(store_fault_op_name((enum store_fault_op)op), b) == 0) {
                store_fault_set(reader ? rstore : wstore, (enum store_fault_op)op, (int)nth, err);
            }
    }
}

/* gzip of body (caller frees), or NULL. */
static char *gzip_body(const char *body, size_t len, size_t *outlen)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    uLong cap = deflateBound(&z, (uLong)len) + 32;
    char *out = malloc(cap);
    if (out) {
        z.next_in = (Bytef *)body;
        z.avail_in = (uInt)len;
        z.next_out = (Bytef *)out;
        z.avail_out = (uInt)cap;
        if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
            free(out);
            out = NULL;
        } else {
            *outlen = cap - z.avail_out;
        }
    }
    deflateEnd(&z);
    return out;
}

/* Splits the input (buf is a private, NUL-terminated copy) into a request. 0 if unusable. */
static int parse_input(char *buf, size_t size, struct fuzz_req *q)
{
    char *p = buf, *end = buf + size, *line;
    memset(q, 0, sizeof *q);
    snprintf(q->ip, sizeof q->ip, "127.0.0.1");
    while ((line = next_line(&p, end)) && line[0] == '@')
        directive(q, line);
    if (!line) return 0;
    char *sp = strchr(line, ' ');
    if (!sp) return 0;
    *sp = '\0';
    q->method = line;
    q->url = sp + 1;
    size_t nh = 0;
    while ((line = next_line(&p, end)) && line[0] != '\0') {
        char *colon = strchr(line, ':');
        if (!colon || nh == MAX_HEADERS) continue;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        q->headers[2 * nh] = line;
        q->headers[2 * nh + 1] = v;
        nh++;
    }
    if (q->gzip) {
        q->headers[2 * nh] = "Content-Encoding";
        q->headers[2 * nh + 1] = "gzip";
        nh++;
    }
    q->headers[2 * nh] = NULL;
    q->body = p;
    q->len = (size_t)(end - p);
    return 1;
}

/* ------------------------------------------------------------- invariants */

#define FP_N 10
struct fingerprint {
    sqlite3_int64 v[FP_N];
};

static void fingerprint(struct fingerprint *f)
{
    static const char sql[] =
        "SELECT (SELECT count(*) FROM sensor_readings), (SELECT coalesce(max(id), 0) FROM "
        "sensor_readings), (SELECT count(*) FROM alerts), (SELECT coalesce(sum(hit_count), 0) FROM "
        "alerts), (SELECT count(*) FROM alerts WHERE status = 'active'), (SELECT count(*) FROM "
        "alert_notifications), (SELECT count(*) FROM ingest_packets), (SELECT count(*) FROM "
        "sensor_state), (SELECT coalesce(sum(normal_run + last_ts % 1000003), 0) FROM "
        "sensor_state), (SELECT coalesce(sum(last_seen_at % 1000003), 0) FROM devices)";
    sqlite3_stmt *st = NULL;
    FUZZ_CHECK(sqlite3_prepare_v2(check_db, sql, -1, &st, NULL) == SQLITE_OK, "prepare: %s",
               sqlite3_errmsg(check_db));
    FUZZ_CHECK(sqlite3_step(st) == SQLITE_ROW, "fingerprint: %s", sqlite3_errmsg(check_db));
    for (int i = 0; i < FP_N; i++)
        f->v[i] = sqlite3_column_int64(st, i);
    sqlite3_finalize(st);
}

static int status_documented(unsigned s, int faulted)
{
    static const unsigned ok[] = {200, 201, 400, 401, 403, 404, 405, 413, 415, 422, 429, 503};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (s == ok[i]) return 1;
    return s == 500 && faulted;
}

static int is_write_route(const char *method, const char *url)
{
    return strcmp(method, "POST") == 0 &&
           (strcmp(url, "/ingest/packets") == 0 || strcmp(url, "/ingest/readings") == 0 ||
            strcmp(url, "/ingest/readings/bulk") == 0);
}

static void check_reply(const struct fuzz_req *q, const struct http_harness_reply *r, int faulted,
                        const struct fingerprint *before, const struct fingerprint *after)
{
    unsigned s = r->status;
    FUZZ_CHECK(s != 0, "no answer to %.16s %.80s", q->method, q->url);
    FUZZ_CHECK(status_documented(s, faulted), "status %u to %.16s %.80s: %.300s", s, q->method,
               q->url, r->body ? r->body : "");
    FUZZ_CHECK(r->body && r->len > 0, "status %u without a body", s);

    int metrics = strcmp(q->url, "/metrics") == 0 && s == 200;
    json_t *j = NULL;
    if (!metrics) {
        json_error_t e;
        j = json_loadb(r->body, r->len, 0, &e);
        FUZZ_CHECK(j && json_is_object(j), "status %u body is not a JSON object: %.300s", s,
                   r->body);
    }
    int unchanged = memcmp(before, after, sizeof *before) == 0;
    int health = strcmp(q->url, "/health") == 0 && (s == 200 || s == 503);
    if (health) {
        /* SPEC §5: /health answers with its own document, 503 when the DB is unreachable. */
        json_t *db = json_object_get(j, "db");
        FUZZ_CHECK(json_is_string(db) &&
                       strcmp(json_string_value(db), s == 200 ? "ok" : "error") == 0,
                   "/health %u: %.300s", s, r->body);
        FUZZ_CHECK(unchanged, "/health changed the database");
    } else if (s >= 400) {
        if (s == 429 || s == 503) FUZZ_CHECK(r->retry_after_s > 0, "%u without Retry-After", s);
        json_t *d = json_object_get(j, "detail"), *c = json_object_get(j, "code");
        FUZZ_CHECK(json_is_string(d) && json_string_length(d) > 0, "%u without detail: %.300s", s,
                   r->body);
        FUZZ_CHECK(json_is_string(c) && json_string_length(c) > 0, "%u without code: %.300s", s,
                   r->body);
        FUZZ_CHECK(unchanged, "status %u (%s) but the database changed", s, json_string_value(c));
    } else if (!is_write_route(q->method, q->url) ||
               json_is_true(json_object_get(j, "duplicate"))) {
        FUZZ_CHECK(unchanged, "status %u to %.16s %.80s (no write) but the database changed", s,
                   q->method, q->url);
    } else {
        json_t *acc = json_object_get(j, "accepted");
        FUZZ_CHECK(json_is_integer(acc) && json_integer_value(acc) >= 1, "%u accepted: %.300s", s,
                   r->body);
        sqlite3_int64 added = after->v[0] - before->v[0];
        FUZZ_CHECK(added == json_integer_value(acc), "accepted %lld, stored %lld",
                   (long long)json_integer_value(acc), (long long)added);
    }
    json_decref(j);
}

static void prune(void)
{
    sqlite3_stmt *st = NULL;
    sqlite3_int64 n = 0;
    if (sqlite3_prepare_v2(check_db, "SELECT count(*) FROM sensor_readings", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (n > PRUNE_AT)
        sqlite3_exec(check_db, "DELETE FROM sensor_readings; DELETE FROM ingest_packets", NULL,
                     NULL, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned long runs;
    if (++runs % 1024 == 0) prune();

    char *buf = fuzz_cstr(data, size);
    if (!buf) return 0;
    struct fuzz_req q;
    if (!parse_input(buf, size, &q)) {
        free(buf);
        return -1; /* not a request: keep it out of the corpus */
    }
    char *gz = NULL;
    if (q.gzip) {
        size_t n = 0;
        if ((gz = gzip_body(q.body, q.len, &n))) {
            q.body = gz;
            q.len = n;
        }
    }

    struct fingerprint before, after;
    fingerprint(&before);
    uint64_t injected = store_fault_injected(wstore) + store_fault_injected(rstore);
    struct http_harness_reply r;
    int rc = http_harness_serve(srv, q.method, q.url, q.headers, q.ip, q.body, q.len, &r);
    FUZZ_CHECK(rc == 0 || rc == IOT_ENOMEM, "http_harness_serve: %d", rc);
    store_fault_clear_all(wstore);
    store_fault_clear_all(rstore);
    int faulted = store_fault_injected(wstore) + store_fault_injected(rstore) != injected;
    if (rc == 0) {
        fingerprint(&after);
        check_reply(&q, &r, faulted, &before, &after);
        http_harness_reply_fini(&r);
    }
    free(gz);
    free(buf);
    return 0;
}
