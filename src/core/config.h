/*
 * Settings: one declarative table (CONFIG_SETTINGS below). Each row gives the
 * type, the struct field, the environment variable, default, bounds and help.
 * The flag is derived from the variable: RATE_LIMIT_IP_RPS -> --rate-limit-ip-rps.
 * Environment is read first, flags override it. --help text is generated
 * from the same table, so it cannot drift.
 */
#ifndef IOT_CONFIG_H
#define IOT_CONFIG_H

#include <stdint.h>
#include <stdio.h>

/*
 * Who reads a setting (the `uses` column): each command's --help lists the
 * settings of its mask, `iot-ingest help settings` all of them.
 */
enum config_use {
    CU_DB = 1 << 0,        /* every command that opens the database */
    CU_SERVE = 1 << 1,     /* serve */
    CU_SIM = 1 << 2,       /* sim */
    CU_BASELINE = 1 << 3,  /* job baseline, jobs */
    CU_EXPLAIN = 1 << 4,   /* job explain, jobs */
    CU_SILENCE = 1 << 5,   /* job silence, jobs */
    CU_SCHED = 1 << 6,     /* jobs */
    CU_CONSUME = 1 << 7,   /* consume */
    CU_RETENTION = 1 << 8, /* job retention, jobs */
    CU_ALL = 0x1ff,        /* every command */
};

/*
 * X(type, field, ENV, default, min, max, uses, help); STR rows ignore
 * min/max; uses is a mask of enum config_use.
 */
#define CONFIG_SETTINGS(X)                                                                         \
    X(STR, database_url, "DATABASE_URL", "sqlite:iot-ingest.db", 0, 0, CU_DB,                      \
      "Database: sqlite:PATH or postgresql://URI")                                                 \
    X(STR, api_key, "API_KEY", "", 0, 0, CU_SERVE | CU_SIM,                                        \
      "Global API key (X-API-Key); empty disables it and the legacy endpoints")                    \
    X(STR, ingest_host, "INGEST_HOST", "127.0.0.1", 0, 0, CU_SERVE | CU_SIM,                       \
      "Address to listen on (a name such as localhost is resolved, IPv4 first)")                   \
    X(INT, ingest_port, "INGEST_PORT", 8000, 0, 65535, CU_SERVE | CU_SIM,                          \
      "TCP port to listen on (0 = any free port)")                                                 \
    X(INT, max_body_bytes, "MAX_BODY_BYTES", 1048576, 256, 67108864, CU_SERVE,                     \
      "Largest request body, also after gzip inflation")                                           \
    X(INT, max_readings_per_packet, "MAX_READINGS_PER_PACKET", 1000, 1, 100000, CU_SERVE,          \
      "Most readings in one packet")                                                               \
    X(INT, max_future_skew_s, "MAX_FUTURE_SKEW_S", 300, 0, 86400 * 365, CU_SERVE,                  \
      "Readings further in the future are rejected")                                               \
    X(INT, max_past_age_s, "MAX_PAST_AGE_S", 604800, 1, 86400 * 3650, CU_SERVE,                    \
      "Readings older than this are rejected")                                                     \
    X(DBL, rate_limit_ip_rps, "RATE_LIMIT_IP_RPS", 500, 0, 1e9, CU_SERVE,                          \
      "Requests per second per client IP on /ingest/ (0 = off)")                                   \
    X(DBL, rate_limit_device_rps, "RATE_LIMIT_DEVICE_RPS", 50, 0, 1e9, CU_SERVE,                   \
      "Requests per second per device (0 = off)")                                                  \
    X(DBL, rate_limit_burst, "RATE_LIMIT_BURST", 100, 1, 1e9, CU_SERVE, "Token bucket size")       \
    X(DBL, auth_fail_rps, "AUTH_FAIL_RPS", 1, 0, 1e9, CU_SERVE,                                    \
      "Failed authentications per second per client address and claimed identity (0 = off)")       \
    X(DBL, auth_fail_burst, "AUTH_FAIL_BURST", 20, 1, 1e9, CU_SERVE,                               \
      "Failed authentications one address and identity may make in a burst")                       \
    X(INT, auth_fail_addr_factor, "AUTH_FAIL_ADDR_FACTOR", 10, 0, 1000000, CU_SERVE,               \
      "Per-address failed-auth budget as a multiple of the per-identity one (0 = off)")            \
    X(INT, rate_limit_ipv6_prefix, "RATE_LIMIT_IPV6_PREFIX", 64, 1, 128, CU_SERVE,                 \
      "Per-address limits key an IPv6 client by this many leading bits")                           \
    X(INT, rate_limit_max_buckets, "RATE_LIMIT_MAX_BUCKETS", 65536, 16, 16777216, CU_SERVE,        \
      "Most rate-limit buckets kept per limit (least recently used are evicted)")                  \
    X(STR, trusted_proxies, "TRUSTED_PROXIES", "", 0, 0, CU_SERVE,                                 \
      "Comma-separated CIDRs whose X-Forwarded-For is believed")                                   \
    X(INT, sensor_cache_ttl_s, "SENSOR_CACHE_TTL_S", 60, 0, 86400, CU_SERVE,                       \
      "Seconds a cached device/sensor/threshold lookup is trusted")                                \
    X(INT, sensor_cache_negative_ttl_s, "SENSOR_CACHE_NEGATIVE_TTL_S", 5, 0, 86400, CU_SERVE,      \
      "Seconds an unknown device_uuid is remembered (at most SENSOR_CACHE_TTL_S; 0 = off)")        \
    X(INT, sensor_cache_max, "SENSOR_CACHE_MAX", 100000, 16, 100000000, CU_SERVE,                  \
      "Most devices kept in the resolver cache")                                                   \
    X(INT, state_cache_max, "STATE_CACHE_MAX", 1000000, 16, 100000000, CU_SERVE,                   \
      "Most sensors whose classification state is kept in memory")                                 \
    X(INT, alert_clear_after, "ALERT_CLEAR_AFTER", 1, 1, 1000000, CU_SERVE,                        \
      "Consecutive normal readings that resolve an alert")                                         \
    X(STR, broker_url, "BROKER_URL", "memory", 0, 0, CU_SERVE | CU_CONSUME,                        \
      "Broker: memory, none, or an engine URL")                                                    \
    X(INT, broker_throttle_ms, "BROKER_THROTTLE_MS", 0, 0, 86400000, CU_SERVE,                     \
      "At most one publication per sensor per this many ms (0 = off)")                             \
    X(INT, broker_queue_max, "BROKER_QUEUE_MAX", 65536, 1, 1048576, CU_SERVE,                      \
      "Capacity of the in-memory broker queue")                                                    \
    X(INT, http_threads, "HTTP_THREADS", 2, 1, 256, CU_SERVE, "HTTP worker threads")               \
    X(INT, http_max_connections, "HTTP_MAX_CONNECTIONS", 4096, 16, 1000000, CU_SERVE,              \
      "Most open client connections")                                                              \
    X(INT, http_idle_timeout_s, "HTTP_IDLE_TIMEOUT_S", 30, 1, 86400, CU_SERVE,                     \
      "Idle or stalled connections are closed after this many seconds")                            \
    X(INT, http_header_timeout_s, "HTTP_HEADER_TIMEOUT_S", 20, 1, 86400, CU_SERVE,                 \
      "A request's headers must arrive within this many seconds of its first byte")                \
    X(DBL, http_body_min_rate, "HTTP_BODY_MIN_RATE", 500, 0, 1e9, CU_SERVE,                        \
      "Slowest request body in bytes/s, averaged from the headers on, checked after "              \
      "HTTP_HEADER_TIMEOUT_S (0 = off)")                                                           \
    X(INT, http_max_connections_per_ip, "HTTP_MAX_CONNECTIONS_PER_IP", 256, 0, 1000000, CU_SERVE,  \
      "Most open connections from one address (IPv6: one RATE_LIMIT_IPV6_PREFIX) (0 = off)")       \
    X(STR, tls_cert_file, "TLS_CERT_FILE", "", 0, 0, CU_SERVE,                                     \
      "PEM certificate chain: when set, INGEST_PORT speaks only HTTPS (reloaded on SIGHUP)")       \
    X(STR, tls_key_file, "TLS_KEY_FILE", "", 0, 0, CU_SERVE,                                       \
      "PEM private key of TLS_CERT_FILE (both or neither; reloaded on SIGHUP)")                    \
    X(STR, tls_client_ca_file, "TLS_CLIENT_CA_FILE", "", 0, 0, CU_SERVE,                           \
      "PEM CA that issues device certificates (needed when TLS_CLIENT_AUTH is not off)")           \
    X(STR, tls_client_auth, "TLS_CLIENT_AUTH", "off", 0, 0, CU_SERVE,                              \
      "Device certificates: off, optional (a certificate or a key) or required")                   \
    X(INT, mqtt_port, "MQTT_PORT", 0, -1, 65535, CU_SERVE,                                         \
      "MQTT listener port on INGEST_HOST (0 = off, -1 = any free port)")                           \
    X(INT, mqtt_tls_port, "MQTT_TLS_PORT", 0, -1, 65535, CU_SERVE,                                 \
      "MQTT over TLS on INGEST_HOST at this port, with TLS_CERT_FILE (0 = off, -1 = any free "     \
      "port)")                                                                                     \
    X(INT, mqtt_max_connections, "MQTT_MAX_CONNECTIONS", 4096, 1, 1000000, CU_SERVE,               \
      "Most open MQTT connections")                                                                \
    X(INT, mqtt_max_connections_per_ip, "MQTT_MAX_CONNECTIONS_PER_IP", 256, 0, 1000000, CU_SERVE,  \
      "Most open MQTT connections from one address (IPv6: one RATE_LIMIT_IPV6_PREFIX) (0 = off)")  \
    X(INT, mqtt_connect_timeout_s, "MQTT_CONNECT_TIMEOUT_S", 10, 1, 3600, CU_SERVE,                \
      "An MQTT client must send its CONNECT within this many seconds of connecting")               \
    X(INT, write_queue_max, "WRITE_QUEUE_MAX", 4096, 1, 1000000, CU_SERVE,                         \
      "Packets waiting for the writer before new ones get 503")                                    \
    X(INT, commit_batch_max, "COMMIT_BATCH_MAX", 128, 1, 100000, CU_SERVE,                         \
      "Most packets committed in one transaction")                                                 \
    X(STR, db_sync, "DB_SYNC", "full", 0, 0, CU_DB,                                                \
      "full: a 2xx survives power loss; normal: survives a process crash only")                    \
    X(INT, db_busy_timeout_ms, "DB_BUSY_TIMEOUT_MS", 5000, 0, 600000, CU_DB,                       \
      "How long a write waits for a lock before giving up (503)")                                  \
    X(INT, sqlite_cache_mb, "SQLITE_CACHE_MB", 2, 1, 65536, CU_DB,                                 \
      "SQLite page cache per connection")                                                          \
    X(INT, baseline_lookback_s, "BASELINE_LOOKBACK_S", 86400, 1, 86400 * 3650, CU_BASELINE,        \
      "Baseline: sensors with a reading this recent get a prediction")                             \
    X(INT, baseline_window, "BASELINE_WINDOW", 10, 2, 10000, CU_BASELINE,                          \
      "Baseline: readings in the moving average and in the z-score reference")                     \
    X(INT, baseline_horizon_min, "BASELINE_HORIZON_MIN", 10, 0, 525600, CU_BASELINE,               \
      "Baseline: minutes ahead of the newest reading that a prediction is for")                    \
    X(DBL, anomaly_z, "ANOMALY_Z", 3, 0.1, 1000, CU_BASELINE | CU_CONSUME,                         \
      "Baseline: z-score at which a reading is anomalous")                                         \
    X(DBL, anomaly_score_threshold, "ANOMALY_SCORE_THRESHOLD", 0.7, 0, 1, CU_EXPLAIN,              \
      "Explainer: least anomaly_score sent for explanation")                                       \
    X(STR, ai_explainer_url, "AI_EXPLAINER_URL", "http://localhost:8003", 0, 0, CU_EXPLAIN,        \
      "Explainer service base URL (POST {url}/explain)")                                           \
    X(INT, explain_connect_timeout_ms, "EXPLAIN_CONNECT_TIMEOUT_MS", 2000, 1, 600000, CU_EXPLAIN,  \
      "Explainer: connection timeout")                                                             \
    X(INT, explain_timeout_ms, "EXPLAIN_TIMEOUT_MS", 30000, 1, 3600000, CU_EXPLAIN,                \
      "Explainer: total time allowed for one request")                                             \
    X(INT, explain_max_per_run, "EXPLAIN_MAX_PER_RUN", 500, 1, 1000000, CU_EXPLAIN,                \
      "Explainer: most predictions sent in one run")                                               \
    X(INT, no_data_after_s, "NO_DATA_AFTER_S", 0, 0, 86400 * 3650, CU_SILENCE,                     \
      "Silence check: seconds without a reading that open a no_data alert (0 = off)")              \
    X(INT, retention_days, "RETENTION_DAYS", 0, 0, 36500, CU_RETENTION,                            \
      "Retention: readings older than this many days are deleted, after their hour is rolled up "  \
      "(0 = keep forever)")                                                                        \
    X(INT, rollup_retention_days, "ROLLUP_RETENTION_DAYS", 0, 0, 36500, CU_RETENTION,              \
      "Retention: hourly rollups older than this many days are deleted, never before their "       \
      "readings (0 = keep forever)")                                                               \
    X(INT, baseline_every_s, "BASELINE_EVERY_S", 300, 1, 86400 * 7, CU_SCHED,                      \
      "Scheduler: baseline interval")                                                              \
    X(INT, explain_every_s, "EXPLAIN_EVERY_S", 60, 1, 86400 * 7, CU_SCHED,                         \
      "Scheduler: explainer interval")                                                             \
    X(INT, no_data_every_s, "NO_DATA_EVERY_S", 60, 1, 86400 * 7, CU_SCHED,                         \
      "Scheduler: silence check interval")                                                         \
    X(INT, retention_every_s, "RETENTION_EVERY_S", 3600, 1, 86400 * 7, CU_SCHED,                   \
      "Scheduler: retention (rollups and deletion) interval")                                      \
    X(STR, broker_stream, "BROKER_STREAM", "IOT_READINGS", 0, 0, CU_SERVE | CU_CONSUME,            \
      "NATS broker: JetStream stream holding the readings (created if missing)")                   \
    X(INT, broker_max_age_s, "BROKER_MAX_AGE_S", 86400, 1, 86400 * 3650, CU_SERVE,                 \
      "NATS broker: readings older than this leave the stream")                                    \
    X(INT, broker_max_bytes, "BROKER_MAX_BYTES", 1073741824, 1048576, 1099511627776, CU_SERVE,     \
      "NATS broker: stream size cap; the oldest readings go first")                                \
    X(INT, broker_max_pending, "BROKER_MAX_PENDING", 1024, 1, 1000000, CU_SERVE,                   \
      "NATS broker: publications awaiting the engine's ack; past it readings are dropped")         \
    X(INT, broker_reconnect_wait_ms, "BROKER_RECONNECT_WAIT_MS", 1000, 10, 600000, CU_SERVE,       \
      "NATS broker: pause between reconnect attempts (they never stop)")                           \
    X(STR, broker_consumer, "BROKER_CONSUMER", "online-ml", 0, 0, CU_CONSUME,                      \
      "consume: durable consumer group shared by every consume process")                           \
    X(INT, broker_ack_wait_s, "BROKER_ACK_WAIT_S", 30, 1, 86400, CU_CONSUME,                       \
      "consume: a message not acknowledged this long goes to another consumer")                    \
    X(INT, broker_redelivery_delay_ms, "BROKER_REDELIVERY_DELAY_MS", 1000, 0, 3600000, CU_CONSUME, \
      "consume: delay before a message that failed (database busy) is redelivered")                \
    X(INT, online_predict_every, "ONLINE_PREDICT_EVERY", 10, 1, 1000000, CU_CONSUME,               \
      "consume: one online prediction row per this many readings of a sensor")                     \
    X(DBL, online_alpha, "ONLINE_ALPHA", 0.1, 0.0001, 1, CU_CONSUME,                               \
      "consume: weight of the newest reading in the online mean and variance")                     \
    X(INT, online_horizon_min, "ONLINE_HORIZON_MIN", 10, 0, 525600, CU_CONSUME,                    \
      "consume: minutes ahead of the reading that an online prediction is for")                    \
    X(INT, online_prune_every_s, "ONLINE_PRUNE_EVERY_S", 60, 0, 86400, CU_CONSUME,                 \
      "consume: how often acknowledged message ids are forgotten (0 = never)")                     \
    X(STR, log_level, "LOG_LEVEL", "info", 0, 0, CU_ALL, "debug, info, warn, error or off")        \
    X(STR, log_format, "LOG_FORMAT", "logfmt", 0, 0, CU_ALL, "logfmt or json")                     \
    X(STR, log_requests, "LOG_REQUESTS", "errors", 0, 0, CU_SERVE,                                 \
      "Access log at info level: all, errors (status >= 400) or none (debug only)")

enum config_type { CONFIG_INT, CONFIG_DBL, CONFIG_STR };

struct config {
#define CONFIG_FIELD_INT(f)                            int64_t f;
#define CONFIG_FIELD_DBL(f)                            double f;
#define CONFIG_FIELD_STR(f)                            char *f;
#define X(type, field, env, def, min, max, uses, help) CONFIG_FIELD_##type(field)
    CONFIG_SETTINGS(X)
#undef X
};

/* Fills cfg with defaults. Strings are owned by cfg (config_fini frees). */
int config_init(struct config *cfg);
void config_fini(struct config *cfg);

/*
 * Reads every setting from the environment, then from argv flags
 * (--flag VALUE or --flag=VALUE). Arguments that are not settings are left,
 * in order, in rest[] (borrowed pointers into argv, *nrest set). Returns 0, or
 * IOT_EINVAL with a one-line message in err.
 */
int config_load(struct config *cfg, int argc, char **argv, char **rest, int *nrest, char *err,
                size_t errlen);

/* Checks cross-field rules (enums, formats). 0 or IOT_EINVAL + message. */
int config_validate(const struct config *cfg, char *err, size_t errlen);

/*
 * Prints one line (flag, env, help, default) per setting whose uses column
 * shares a bit with uses (CU_ALL: every setting); returns how many.
 */
int config_print_help(FILE *out, unsigned uses);

/* Formats the flag for an env name: "RATE_LIMIT_BURST" -> "--rate-limit-burst". */
void config_flag_name(const char *env, char *out, size_t outlen);

/* Iteration for documentation generators (man page). */
struct config_row {
    enum config_type type;
    const char *env;
    const char *def;
    double min, max;
    unsigned uses; /* enum config_use mask */
    const char *help;
};
int config_rows(const struct config_row **rows);

#endif
