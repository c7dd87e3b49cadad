/*
 * The whole request path below the HTTP library (http_harness_serve): real
 * endpoints, a real writer and a real SQLite file, no sockets.
 */
#include "core/clock.h"
#include "core/config.h"
#include "core/secret.h"
#include "support/http_harness.h"
#include "ingest/resolver.h"
#include "ingest/router.h"
#include "ingest/writer.h"
#include "store/store_shared.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define KEY "harness-key-0123456789"

static struct config cfg;
static struct store_shared shared;
static struct writer *writer;
static struct resolver *resolver;
static struct intake *intake;
static struct http_server *srv;
static char path[64];

static struct store *open_db(void)
{
    struct store_open_opts o = {.sync_full = 0, .busy_timeout_ms = 5000, .cache_mb = 2};
    struct store *s = NULL;
    char url[80], err[256];
    snprintf(url, sizeof url, "sqlite:%s", path);
    cr_assert_eq(store_open(url, &o, &s, err, sizeof err), 0, "%s", err);
    return s;
}

static void setup(void)
{
    snprintf(path, sizeof path, "/tmp/iot-harness-%d.db", (int)getpid());
    unlink(path);
    cr_assert_eq(config_init(&cfg), 0);
    cfg.rate_limit_ip_rps = 0;
    cfg.rate_limit_device_rps = 0;
    cfg.max_body_bytes = 4096;
    struct store *w = open_db();
    cr_assert_eq(store_schema_init(w), 0);
    unsigned char h[SECRET_HASH_LEN];
    int64_t id, sid, did;
    secret_hash(KEY, strlen(KEY), h);
    cr_assert_eq(store_device_add(w, "dev-1", "d", h, clock_now_ms(), &id), 0);
    cr_assert_eq(store_sensor_add(w, "dev-1", "sen-1", "s", NULL, NULL, clock_now_ms(), &sid, &did),
                 0);
    struct router *r;
    cr_assert_eq(router_create(1024, 1, &r), 0);
    struct writer_opts wo = {64, 16, 86400000};
    cr_assert_eq(writer_create(w, r, NULL, &wo, &writer), 0);
    cr_assert_eq(writer_start(writer), 0);
    store_shared_init(&shared, open_db());
    cr_assert_eq(resolver_create(&shared, 60000, 0, 64, &resolver), 0);
    cr_assert_eq(intake_create(&cfg, &intake), 0);
    struct http_deps d = {&cfg, writer, resolver, &shared, NULL, intake, NULL, NULL};
    char err[256];
    cr_assert_eq(http_server_create(&d, &srv, err, sizeof err), 0, "%s", err);
}

static void teardown(void)
{
    http_server_destroy(srv);
    intake_destroy(intake);
    writer_destroy(writer);
    resolver_destroy(resolver);
    store_shared_fini(&shared);
    config_fini(&cfg);
    unlink(path);
}

static unsigned post(const char *body, size_t len, const char *const *headers,
                     struct http_harness_reply *out)
{
    cr_assert_eq(
        http_harness_serve(srv, "POST", "/ingest/packets", headers, "10.0.0.1", body, len, out), 0);
    return out->status;
}

static long readings(void)
{
    struct store *s = open_db();
    struct store_reading rows[16];
    size_t n = 0;
    cr_assert_eq(store_recent_readings(s, 1, 16, rows, &n), 0);
    store_close(s);
    return (long)n;
}

static const char *const key_headers[] = {"X-Device-Key", KEY, NULL};

TestSuite(http_harness, .init = setup, .fini = teardown);

Test(http_harness, packet_is_stored_and_answered_after_commit)
{
    const char *b = "{\"device_uuid\":\"dev-1\",\"readings\":[{\"sensor_uuid\":\"sen-1\","
                    "\"value\":1.5},{\"sensor_uuid\":\"nope\",\"value\":2}]}";
    struct http_harness_reply r;
    cr_assert_eq(post(b, strlen(b), key_headers, &r), 200);
    cr_assert(strstr(r.body, "\"accepted\":1"), "%s", r.body);
    cr_assert(strstr(r.body, "unknown_sensor"), "%s", r.body);
    http_harness_reply_fini(&r);
    cr_assert_eq(readings(), 1);
}

Test(http_harness, bad_inputs_leave_the_store_untouched)
{
    struct http_harness_reply r;
    const char *cases[] = {"{", "[]", "{\"device_uuid\":1,\"readings\":[]}",
                           "{\"device_uuid\":\"dev-1\",\"readings\":[1]}",
                           "{\"device_uuid\":\"dev-1\",\"device_uuid\":\"dev-1\"}"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(post(cases[i], strlen(cases[i]), key_headers, &r), 400, "case %zu", i);
        cr_assert(strstr(r.body, "\"detail\""));
        http_harness_reply_fini(&r);
    }
    const char *const text[] = {"X-Device-Key", KEY, "Content-Type", "text/plain", NULL};
    cr_assert_eq(post("{}", 2, text, &r), 415);
    http_harness_reply_fini(&r);
    char big[5000];
    memset(big, ' ', sizeof big);
    cr_assert_eq(post(big, sizeof big, key_headers, &r), 413);
    http_harness_reply_fini(&r);
    const char *b =
        "{\"device_uuid\":\"dev-1\",\"readings\":[{\"sensor_uuid\":\"sen-1\",\"value\":1}]}";
    const char *const wrong[] = {"X-Device-Key", "not-the-key-at-all", NULL};
    cr_assert_eq(post(b, strlen(b), wrong, &r), 401);
    http_harness_reply_fini(&r);
    cr_assert_eq(readings(), 0);
}

Test(http_harness, gzip_body_and_gzip_bomb)
{
    const char *b =
        "{\"device_uuid\":\"dev-1\",\"readings\":[{\"sensor_uuid\":\"sen-1\",\"value\":3}]}";
    const char *const gz[] = {"X-Device-Key", KEY, "Content-Encoding", "gzip", NULL};
    unsigned char out[8192];
    z_stream z;
    memset(&z, 0, sizeof z);
    cr_assert_eq(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (unsigned char *)b;
    z.avail_in = (unsigned)strlen(b);
    z.next_out = out;
    z.avail_out = sizeof out;
    cr_assert_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t n = sizeof out - z.avail_out;
    deflateEnd(&z);
    struct http_harness_reply r;
    cr_assert_eq(post((const char *)out, n, gz, &r), 200);
    http_harness_reply_fini(&r);

    static char zeros[1 << 20];
    memset(&z, 0, sizeof z);
    cr_assert_eq(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (unsigned char *)zeros;
    z.avail_in = sizeof zeros;
    z.next_out = out;
    z.avail_out = sizeof out;
    cr_assert_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    n = sizeof out - z.avail_out;
    deflateEnd(&z);
    cr_assert_eq(post((const char *)out, n, gz, &r), 413);
    http_harness_reply_fini(&r);
    cr_assert_eq(readings(), 1);
}

Test(http_harness, routes_and_methods)
{
    struct http_harness_reply r;
    cr_assert_eq(http_harness_serve(srv, "GET", "/nope", NULL, NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 404);
    http_harness_reply_fini(&r);
    cr_assert_eq(http_harness_serve(srv, "GET", "/ingest/packets", NULL, NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 405);
    http_harness_reply_fini(&r);
    cr_assert_eq(http_harness_serve(srv, "GET", "/health", NULL, NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "\"db\":\"ok\""), "%s", r.body);
    http_harness_reply_fini(&r);
    cr_assert_eq(http_harness_serve(srv, "GET", "/metrics", NULL, NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "iot_ingest_http_requests_total"));
    http_harness_reply_fini(&r);
}
