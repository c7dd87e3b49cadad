/*
 * serve: wires the gateway together (store connections, broker, router,
 * writer, resolver, HTTP, MQTT when MQTT_PORT is set) and runs until SIGTERM
 * or SIGINT, then stops
 * accepting, answers what is in flight after its commit, and exits 0.
 */
#include "cli/cli.h"
#include "broker/broker.h"
#include "core/err.h"
#include "core/log.h"
#include "http/server.h"
#include "ingest/resolver.h"
#include "ingest/router.h"
#include "ingest/writer.h"
#include "mqtt/mqtt_server.h"
#include "store/store_maintainer.h"
#include "store/store_shared.h"
#include "tls/tls_keys.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PACKET_WINDOW_MS (24LL * 3600 * 1000)
#define DRAIN_TIMEOUT_MS 15000
/*
 * How often the store maintainer checkpoints (SQLite). Short, so that each
 * checkpoint's fsync of the database file is small: the writer's WAL fsync
 * waits behind it (one filesystem journal), and at 200 ms a commit now and
 * then took 13-20 ms, which was the p99 of the whole ingest path
 * (docs/BENCHMARKS.md). A checkpoint with nothing to copy costs nothing.
 */
#define MAINTAIN_EVERY_MS 50

/*
 * INGEST_HOST may be a name ("localhost", a name in /etc/hosts): it is
 * resolved once here, IPv4 first as curl and most clients try it, and
 * cfg->ingest_host becomes the numeric address the HTTP server binds (a name
 * of another host then fails at bind, "not permitted"). 0, or -1 after a
 * one-line message.
 */
static int resolve_ingest_host(struct config *cfg)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, cfg->ingest_host, buf) == 1 ||
        inet_pton(AF_INET6, cfg->ingest_host, buf) == 1)
        return 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(cfg->ingest_host, NULL, &hints, &res);
    if (rc) {
        cli_error("INGEST_HOST \"%.64s\" is neither an IP address nor a name that resolves: %s",
                  cfg->ingest_host, gai_strerror(rc));
        return -1;
    }
    const struct addrinfo *pick = res;
    for (const struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    char text[INET6_ADDRSTRLEN] = "";
    const void *in = pick->ai_family == AF_INET
                         ? (const void *)&((struct sockaddr_in *)pick->ai_addr)->sin_addr
                         : (const void *)&((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr;
    inet_ntop(pick->ai_family, in, text, sizeof text);
    freeaddrinfo(res);
    char *copy = strdup(text);
    if (!copy) {
        cli_error("out of memory");
        return -1;
    }
    LOG(LOG_INFO, "ingest_host_resolved", "name=%s address=%s", cfg->ingest_host, copy);
    free(cfg->ingest_host);
    cfg->ingest_host = copy;
    return 0;
}

/*
 * Waits for SIGTERM or SIGINT and returns it; SIGHUP meanwhile reloads the
 * TLS certificate and key (a bad file keeps the pair in use, and says why).
 */
static int wait_stop_signal(const sigset_t *sigs, struct tls_keys *tls)
{
    for (;;) {
        int sig = 0;
        sigwait(sigs, &sig);
        if (sig != SIGHUP) return sig;
        char err[IOT_ERRBUF] = "";
        if (!tls)
            LOG(LOG_INFO, "sighup", "%s", "nothing to reload (TLS is off)");
        else if (tls_keys_reload(tls, err, sizeof err))
            LOG(LOG_ERROR, "tls_reload_failed", "err=\"%s\" kept=previous", err);
        else
            LOG(LOG_INFO, "tls_reloaded", "%s", "");
    }
}

static int run_serve(struct config *cfg, const char **pos)
{
    (void)pos;
    char err[IOT_ERRBUF] = "";
    struct store *wdb = NULL, *rdb = NULL;
    struct store_shared shared;
    int shared_ready = 0, rc, status = 1;
    struct broker *broker = NULL;
    struct router *router = NULL;
    struct writer *writer = NULL;
    struct resolver *resolver = NULL;
    struct intake *intake = NULL;
    struct http_server *http = NULL;
    struct mqtt_server *mqtt = NULL;
    struct store_maintainer *maint = NULL;
    struct tls_keys *tls = NULL;

    /* Signals are taken by sigwait in this thread only; block them before any thread starts. */
    sigset_t sigs;
    cli_block_stop_signals(&sigs);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (resolve_ingest_host(cfg) || cli_open_ready_bg(cfg, 1, 1, &wdb)) goto out;
    struct store *mdb = NULL;
    if (cli_open_store(cfg, &mdb)) goto out; /* it printed why */
    if ((rc = store_maintainer_create(mdb, MAINTAIN_EVERY_MS, &maint))) goto fail_rc;
    if (store_maintainer_start(maint, err, sizeof err)) {
        cli_error("cannot start the store maintainer: %s", err);
        goto out;
    }
    if (cli_open_store(cfg, &rdb)) goto out;
    store_shared_init(&shared, rdb);
    rdb = NULL;
    shared_ready = 1;
    if (broker_create(cfg, &broker, err, sizeof err)) {
        cli_error("%s", err);
        goto out;
    }
    if ((rc = router_create((size_t)cfg->state_cache_max, cfg->alert_clear_after, &router)))
        goto fail_rc;
    struct writer_opts wo = {(size_t)cfg->write_queue_max, (size_t)cfg->commit_batch_max,
                             PACKET_WINDOW_MS};
    rc = writer_create(wdb, router, broker, &wo, &writer);
    wdb = NULL;
    router = NULL;
    if (rc || (rc = writer_start(writer))) goto fail_rc;
    if ((rc = resolver_create(&shared, cfg->sensor_cache_ttl_s * 1000,
                              cfg->sensor_cache_negative_ttl_s * 1000,
                              (size_t)cfg->sensor_cache_max, &resolver)))
        goto fail_rc;
    if ((rc = intake_create(cfg, &intake))) goto fail_rc;
    if (tls_keys_create(cfg, &tls, err, sizeof err)) {
        cli_error("%s", err);
        goto out;
    }
    struct mqtt_deps mdeps = {cfg, writer, resolver, intake, tls};
    if ((cfg->mqtt_port || cfg->mqtt_tls_port) &&
        (mqtt_server_create(&mdeps, &mqtt, err, sizeof err) ||
         mqtt_server_start(mqtt, err, sizeof err))) {
        cli_error("%s", err);
        goto out;
    }
    struct http_deps deps = {cfg, writer, resolver, &shared, broker, intake, mqtt, tls};
    if (http_server_create(&deps, &http, err, sizeof err) ||
        http_server_start(http, err, sizeof err)) {
        cli_error("%s", err);
        goto out;
    }
    char shown[256];
    broker_url_redact(cfg->broker_url, shown, sizeof shown);
    LOG(LOG_INFO, "listening",
        "host=%s port=%d tls=%s mqtt_port=%d mqtt_tls_port=%d db=%s broker=%s version=%s",
        cfg->ingest_host, http_server_port(http), tls ? "on" : "off",
        mqtt ? mqtt_server_port(mqtt) : 0, mqtt ? mqtt_server_tls_port(mqtt) : 0,
        store_backend(shared.s), shown, IOT_VERSION);

    int sig = wait_stop_signal(&sigs, tls);
    LOG(LOG_INFO, "stopping", "signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    http_server_quiesce(http);
    mqtt_server_quiesce(mqtt);
    http_server_drain(http, DRAIN_TIMEOUT_MS);
    mqtt_server_drain(mqtt, DRAIN_TIMEOUT_MS);
    status = 0;
    goto out;
fail_rc:
    cli_error("%s", iot_strerror(rc));
out:
    writer_stop(writer);
    http_server_stop(http);
    mqtt_server_stop(mqtt); /* after writer_stop: every job's done() has run */
    http_server_destroy(http);
    mqtt_server_destroy(mqtt); /* after the HTTP server: /metrics reads its counters */
    intake_destroy(intake);    /* after the servers: their threads use it */
    tls_keys_destroy(tls);     /* after the servers: their handshakes use it */
    writer_destroy(writer);
    store_maintainer_stop(maint); /* after the writer: the last pass checkpoints all it wrote */
    store_maintainer_destroy(maint);
    resolver_destroy(resolver);
    broker_destroy(broker);
    router_destroy(router);
    store_close(wdb);
    store_close(rdb);
    if (shared_ready) store_shared_fini(&shared);
    if (status == 0) LOG(LOG_INFO, "stopped", "%s", "");
    return status;
}

const struct cli_cmd cmd_serve = {
    .name = "serve",
    .summary = "Runs the HTTP ingest gateway on INGEST_HOST:INGEST_PORT until SIGTERM/SIGINT.\n"
               "Also MQTT on MQTT_PORT and MQTT_TLS_PORT when set, HTTPS with TLS_CERT_FILE;\n"
               "SIGHUP reloads the certificate. Creates or upgrades the schema first.",
    .run = run_serve,
    .uses = CU_DB | CU_SERVE,
    .creates_db = 1,
};
