/*
 * The storage interface. Everything above src/store/ talks to the database
 * through these wrappers only; backends (SQLite, PostgreSQL) provide an
 * ops table and are found by the DATABASE_URL scheme (store_open).
 *
 * One struct store is one database connection: it is NOT thread-safe; each
 * thread that needs the database (the writer, the readers, a job) opens its
 * own or serialises access. All times are UTC ms since the epoch.
 *
 * Every function returns 0 or a negative code from core/err.h. IOT_EBUSY and
 * IOT_EUNAVAIL are retryable (locked past the busy timeout, disk full,
 * server gone); the caller answers 503 and may retry later. Error details go
 * to the store's last-error text (store_errmsg), never to stdout.
 */
#ifndef IOT_STORE_H
#define IOT_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_UUID_MAX        64  /* longest device/sensor uuid accepted */
#define STORE_NAME_MAX        128 /* longest name, type or unit */
#define STORE_PACKET_ID_MAX   64  /* characters (UTF-8 code points) */
#define STORE_PACKET_ID_BYTES (4 * STORE_PACKET_ID_MAX)
#define STORE_KEY_HASH_LEN    32 /* SHA-256 */

enum severity { SEV_WARNING = 0, SEV_CRITICAL = 1 };
enum alert_kind { ALERT_THRESHOLD = 0, ALERT_DELTA_SPIKE = 1, ALERT_NO_DATA = 2, ALERT_KINDS = 3 };
enum alert_event { EVENT_TRIGGERED = 0, EVENT_ESCALATED = 1, EVENT_RESOLVED = 2 };
/* Reading classes, in the order SPEC §4 tests them; CLASS_INVALID is never stored. */
enum reading_class { CLASS_NORMAL = 0, CLASS_WARNING, CLASS_SPIKE, CLASS_ALERT, CLASS_INVALID };

const char *severity_name(enum severity s);
const char *alert_kind_name(enum alert_kind k);
const char *alert_event_name(enum alert_event e);
const char *reading_class_name(enum reading_class c);
/* Parses a stored class name; returns CLASS_INVALID if unknown. */
enum reading_class reading_class_parse(const char *s);
/* Stored names back to enums (NULL-safe): anything but "critical" is a warning,
 * an unknown kind a threshold alert. */
enum severity severity_parse(const char *s);
enum alert_kind alert_kind_parse(const char *s);
/* Index of id in the ascending ids[0..n) that states_load takes, or n when absent. */
size_t store_id_index(const int64_t *ids, size_t n, int64_t id);

struct store_sensor;
/*
 * A backend's array of n sensors, grown while rows were read, cut to n
 * (the resolver keeps it for as long as it holds the device: a device of 10
 * sensors kept 16 slots, 282 bytes per sensor instead of 176). NULL when n
 * is 0; arr unchanged if the allocator cannot shrink it.
 */
struct store_sensor *store_sensors_fit(struct store_sensor *arr, size_t n);

struct store_threshold {
    int64_t id; /* 0 = no active threshold of this severity */
    double min, max, delta_max;
    unsigned char has_min, has_max, has_delta;
};

struct store_device {
    int64_t id;
    char uuid[STORE_UUID_MAX + 1];
    unsigned char key_hash[STORE_KEY_HASH_LEN];
    int is_active;
};

struct store_sensor {
    int64_t id, device_id;
    char uuid[STORE_UUID_MAX + 1];
    int is_active;
    struct store_threshold thr[2]; /* indexed by enum severity */
};

/* A reading chain link that is not known (see struct store_reading). */
#define STORE_READING_UNKNOWN (-1)

/* Per-sensor classification state (table sensor_state). */
struct store_sensor_state {
    int64_t sensor_id;
    int64_t last_ts;    /* newest reading time seen */
    double last_value;  /* value of that reading */
    int64_t normal_run; /* consecutive normal readings (non-late) */
    int has_last;       /* 0 until the first non-late reading */
    enum reading_class last_class;
    /*
     * Head of the sensor's reading chain (backends that keep one: SQLite): id
     * of its most recently stored reading, 0 when none, STORE_READING_UNKNOWN
     * for rows written before the chain existed or by hand. The writer carries
     * it from readings_insert to states_put; see struct store_reading.
     */
    int64_t last_reading_id;
};

struct store_alert {
    int64_t id;                                 /* 0 until inserted */
    int64_t sensor_id, device_id, threshold_id; /* threshold_id 0 = NULL */
    enum severity severity;
    enum alert_kind kind;
    int active; /* status: 1 active, 0 resolved */
    double first_value, last_value;
    int64_t hit_count;
    int64_t triggered_at, last_seen_at, resolved_at; /* resolved_at 0 = NULL */
    char message[200];
};

/* A sensor's state and active alerts, as the writer caches them. */
struct store_sensor_snapshot {
    struct store_sensor_state st;
    struct store_alert alerts[ALERT_KINDS];
    unsigned char present[ALERT_KINDS];
};

struct store_reading {
    int64_t sensor_id;
    double value;
    int64_t ts, ingested_at;
    enum reading_class cls;
    int late;
    /*
     * The reading chain (SQLite; other backends ignore it and leave id 0):
     * each stored reading points to its sensor's previously stored one, so a
     * sensor's newest readings are found without a per-sensor index. prev_id
     * is that reading's id (0: none, STORE_READING_UNKNOWN: not known); when
     * prev_row > 0 it is rows[prev_row - 1] of the same readings_insert call
     * instead, whose id is not known yet. readings_insert sets id.
     */
    int64_t prev_id;
    size_t prev_row;
    int64_t id;
};

/* One row of the device status endpoint. */
struct store_sensor_status {
    int64_t sensor_id;
    char uuid[STORE_UUID_MAX + 1];
    char name[STORE_NAME_MAX + 1];
    int has_reading;
    double last_value;
    int64_t last_ts;
    enum reading_class last_class;
    int64_t active_alerts;
    int critical_active, no_data_active;
};
typedef int (*store_status_cb)(const struct store_sensor_status *row, void *ud);

/* A sensor as the batch jobs see it (one row of a keyset page). */
struct store_job_sensor {
    int64_t id, device_id;
    char uuid[STORE_UUID_MAX + 1];
    char device_uuid[STORE_UUID_MAX + 1];
    char name[STORE_NAME_MAX + 1], type[STORE_NAME_MAX + 1], unit[STORE_NAME_MAX + 1];
    int64_t last_ts; /* newest reading time; for silent sensors: newest reading or creation */
    struct store_threshold thr[2];
};

struct store_prediction {
    int64_t id, sensor_id, model_id;
    double predicted_value, confidence, anomaly_score;
    int64_t horizon_minutes, target_ts, predicted_at;
    int is_anomaly;
};

struct store_ml_event {
    int64_t id, sensor_id, device_id, prediction_id;
    const char *event_type, *severity, *title, *message, *payload; /* borrowed */
    int64_t created_at;
};

/* A sensor's online model (table online_state), see jobs/online_model.h. */
struct store_online_state {
    int64_t sensor_id;
    double mean, var;   /* exponentially weighted mean and variance */
    int64_t count;      /* readings applied; 0 = no state yet */
    int64_t last_ts;    /* reading time of the last applied reading */
    int64_t updated_at; /* server time of the last update */
};

/*
 * Aggregate statistics of one batch job (table job_stats, one row per job):
 * monotonic counters, so /metrics of any gateway can export them.
 */
#define STORE_JOB_BUCKETS 10
extern const double store_job_bounds_s[STORE_JOB_BUCKETS]; /* histogram bounds, seconds */
struct store_job_stat {
    char job[32];
    int64_t runs_ok, runs_failed;
    int64_t duration_sum_ms;
    int64_t buckets[STORE_JOB_BUCKETS]; /* cumulative: runs with duration <= bound */
    int64_t last_duration_ms, last_run_at, last_success_at; /* last_success_at 0 = never */
};

/* One step of a sensor's history (readings_buckets). */
struct store_bucket {
    int64_t start; /* ms, a multiple of the step */
    int64_t count;
    double min, max, sum;
};

struct store_open_opts {
    int sync_full; /* 1: durable across power loss (FULL / synchronous_commit=on) */
    int64_t busy_timeout_ms;
    int64_t cache_mb;
    int background_checkpoint; /* the owner calls store_maintain; no checkpoint at commit */
    int ingest_writer;         /* the gateway's one writer, which links every reading itself */
};

/*
 * What device_delete removed: the device, its sensors with their readings,
 * sensor state, thresholds, alerts and their notifications, predictions, ML
 * events and online model state, and the device's packet ids. Row counts.
 */
struct store_device_deleted {
    int64_t device_id;
    int64_t sensors, readings;
};

struct store;

/*
 * The operations, one X-macro list, grouped by who calls them. Each row is
 * X(name, NAME, (parameters), (arguments)): the op's name in struct
 * store_ops, its name in capitals, its parameter list and the same names as
 * an argument list. Every op returns 0 or a negative code from core/err.h,
 * and its first parameter is the store, named s. The list makes the members
 * of struct store_ops and the inline store_name() wrappers below, and the
 * fault injector of the test-support library (tests/support/store_fault.h)
 * its op enum, names and forwarders. close and errmsg, which return no error
 * code, are written out by hand.
 */

/* The connection, for every command: health, schema, transactions, upkeep. */
#define STORE_OPS_CONN(X)                                                                          \
    X(ping, PING, (struct store * s), (s))                                                         \
    /* Creates or upgrades the schema; idempotent. */                                              \
    X(schema_init, SCHEMA_INIT, (struct store * s), (s))                                           \
    X(schema_version, SCHEMA_VERSION, (struct store * s, int *out), (s, out))                      \
    X(tx_begin, TX_BEGIN, (struct store * s), (s))                                                 \
    X(tx_commit, TX_COMMIT, (struct store * s), (s))                                               \
    X(tx_rollback, TX_ROLLBACK, (struct store * s), (s))                                           \
    /*                                                                                             \
     * Housekeeping that must not run on the request path (SQLite: WAL                             \
     * checkpoints); called periodically on a connection of its own. May be                        \
     * a no-op.                                                                                    \
     */                                                                                            \
    X(maintain, MAINTAIN, (struct store * s), (s))

/*
 * The gateway's ingest path: the resolver's lookups, and the writer (router,
 * sensor state cache, alert engine) inside its transaction.
 */
#define STORE_OPS_INGEST(X)                                                                        \
    X(device_get, DEVICE_GET, (struct store * s, const char *uuid, struct store_device *out),      \
      (s, uuid, out))                                                                              \
    /* *out is malloc'ed (caller frees), sorted by uuid. */                                        \
    X(device_sensors, DEVICE_SENSORS,                                                              \
      (struct store * s, int64_t device_id, struct store_sensor * *out, size_t * n),               \
      (s, device_id, out, n))                                                                      \
    /* Savepoints: the writer nests one per packet when it isolates a failure. */                  \
    X(savepoint, SAVEPOINT, (struct store * s), (s))                                               \
    X(savepoint_release, SAVEPOINT_RELEASE, (struct store * s), (s))                               \
    X(savepoint_rollback, SAVEPOINT_ROLLBACK, (struct store * s), (s))                             \
    /*                                                                                             \
     * A number that changes whenever another connection or process may                            \
     * have changed sensor state or alerts; cached state read before a change                      \
     * must be dropped. Called inside a transaction.                                               \
     */                                                                                            \
    X(change_epoch, CHANGE_EPOCH, (struct store * s, uint64_t * out), (s, out))                    \
    /* Idempotency: ENOTFOUND if unknown; *response malloc'ed. */                                  \
    X(packet_get, PACKET_GET,                                                                      \
      (struct store * s, int64_t device_id, const char *packet_id, int64_t since,                  \
       char **response),                                                                           \
      (s, device_id, packet_id, since, response))                                                  \
    /*                                                                                             \
     * IOT_EEXIST if (device, packet_id) is recorded at or after expired_before;                   \
     * an older (expired, not yet purged) record is replaced.                                      \
     */                                                                                            \
    X(packet_put, PACKET_PUT,                                                                      \
      (struct store * s, int64_t device_id, const char *packet_id, const char *response,           \
       int64_t now, int64_t expired_before),                                                       \
      (s, device_id, packet_id, response, now, expired_before))                                    \
    X(packets_purge, PACKETS_PURGE, (struct store * s, int64_t before), (s, before))               \
    /*                                                                                             \
     * Sensor state and active alerts, one round trip for all the sensors of a                     \
     * packet. ids are distinct and ascending (the lock order on backends                          \
     * shared by several gateways, which lock each sensor's state row until                        \
     * the transaction ends); out[i] belongs to ids[i]: its state (has_last 0                      \
     * when none) and, for each active alert, alerts[kind] with present[kind]                      \
     * set to 1. states_put writes the states of distinct sensors that                             \
     * states_load loaded in the same transaction (PostgreSQL updates the                          \
     * rows it locked or created, and fails if one is missing).                                    \
     */                                                                                            \
    X(states_load, STATES_LOAD,                                                                    \
      (struct store * s, const int64_t *ids, size_t n, struct store_sensor_snapshot *out),         \
      (s, ids, n, out))                                                                            \
    X(states_put, STATES_PUT,                                                                      \
      (struct store * s, const struct store_sensor_state *const *st, size_t n), (s, st, n))        \
    /* Sets a->id. */                                                                              \
    X(alert_insert, ALERT_INSERT, (struct store * s, struct store_alert * a), (s, a))              \
    X(alert_update, ALERT_UPDATE, (struct store * s, const struct store_alert *a), (s, a))         \
    X(notification_insert, NOTIFICATION_INSERT,                                                    \
      (struct store * s, int64_t alert_id, enum alert_event ev, enum severity sev, int64_t now),   \
      (s, alert_id, ev, sev, now))                                                                 \
    X(readings_insert, READINGS_INSERT, (struct store * s, struct store_reading * rows, size_t n), \
      (s, rows, n))                                                                                \
    X(device_touch, DEVICE_TOUCH, (struct store * s, int64_t device_id, int64_t last_seen),        \
      (s, device_id, last_seen))

/* The gateway's reads: status, legacy, history and /metrics (the shared connection). */
#define STORE_OPS_READ(X)                                                                          \
    X(device_get_by_id, DEVICE_GET_BY_ID,                                                          \
      (struct store * s, int64_t id, struct store_device * out), (s, id, out))                     \
    X(sensor_get, SENSOR_GET, (struct store * s, int64_t sensor_id, struct store_sensor * out),    \
      (s, sensor_id, out))                                                                         \
    X(device_status, DEVICE_STATUS,                                                                \
      (struct store * s, int64_t device_id, store_status_cb cb, void *ud), (s, device_id, cb, ud)) \
    /* Every job's statistics row (see job_stat_record). */                                        \
    X(job_stats, JOB_STATS,                                                                        \
      (struct store * s, struct store_job_stat * out, size_t cap, size_t * n), (s, out, cap, n))   \
    /*                                                                                             \
     * History of one sensor (GET .../sensors/{uuid}/readings, SPEC §12).                         \
     * readings_range: its readings with from <= ts < to that come after                           \
     * (after_ts, after_id) in (ts, id) order (after_ts = from, after_id = 0                       \
     * for the first page), in that order, at most limit; id is set, prev_id                       \
     * and ingested_at are not.                                                                    \
     * readings_buckets: one bucket per step_ms (aligned to the epoch, UTC)                        \
     * with readings in [from, to) (both multiples of step_ms, itself a                            \
     * multiple of an hour): from the rollups below the rollup mark, from raw                      \
     * readings above it (a rollup equals its hour's raw aggregate, so this is                     \
     * the same answer, only cheaper), ascending, at most cap.                                     \
     */                                                                                            \
    X(readings_range, READINGS_RANGE,                                                              \
      (struct store * s, int64_t sensor_id, int64_t from, int64_t to, int64_t after_ts,            \
       int64_t after_id, size_t limit, struct store_reading * out, size_t * n),                    \
      (s, sensor_id, from, to, after_ts, after_id, limit, out, n))                                 \
    X(readings_buckets, READINGS_BUCKETS,                                                          \
      (struct store * s, int64_t sensor_id, int64_t from, int64_t to, int64_t step_ms, size_t cap, \
       struct store_bucket * out, size_t * n),                                                     \
      (s, sensor_id, from, to, step_ms, cap, out, n))

/* Provisioning: the CLI (device, sensor, threshold, db demo) and sim's fleet. */
#define STORE_OPS_PROVISION(X)                                                                     \
    X(device_add, DEVICE_ADD,                                                                      \
      (struct store * s, const char *uuid, const char *name,                                       \
       const unsigned char key_hash[STORE_KEY_HASH_LEN], int64_t now, int64_t *id),                \
      (s, uuid, name, key_hash, now, id))                                                          \
    X(device_set_active, DEVICE_SET_ACTIVE, (struct store * s, const char *uuid, int active),      \
      (s, uuid, active))                                                                           \
    /*                                                                                             \
     * Deletes the device and everything stored under it (see struct                               \
     * store_device_deleted) in one transaction of its own: not to be called                       \
     * inside one. IOT_ENOTFOUND for an unknown device (nothing changed).                          \
     */                                                                                            \
    X(device_delete, DEVICE_DELETE,                                                                \
      (struct store * s, const char *uuid, struct store_device_deleted *out), (s, uuid, out))      \
    X(sensor_add, SENSOR_ADD,                                                                      \
      (struct store * s, const char *device_uuid, const char *uuid, const char *name,              \
       const char *type, const char *unit, int64_t now, int64_t *id, int64_t *device_id),          \
      (s, device_uuid, uuid, name, type, unit, now, id, device_id))                                \
    X(sensor_set_active, SENSOR_SET_ACTIVE, (struct store * s, const char *uuid, int active),      \
      (s, uuid, active))                                                                           \
    X(threshold_set, THRESHOLD_SET,                                                                \
      (struct store * s, const char *sensor_uuid, enum severity sev,                               \
       const struct store_threshold *t, int64_t now, int64_t *id),                                 \
      (s, sensor_uuid, sev, t, now, id))                                                           \
    /* IOT_ENOTFOUND for an unknown sensor; 0 also when it had no active threshold of sev. */      \
    X(threshold_clear, THRESHOLD_CLEAR,                                                            \
      (struct store * s, const char *sensor_uuid, enum severity sev), (s, sensor_uuid, sev))

/* The batch jobs (baseline, explain, silence, retention) and their statistics. */
#define STORE_OPS_JOBS(X)                                                                          \
    /* Keyset pages: id > after_id, ordered by id, at most limit rows. */                          \
    X(job_sensors, JOB_SENSORS,                                                                    \
      (struct store * s, int64_t since, int64_t after_id, size_t limit,                            \
       struct store_job_sensor * out, size_t * n),                                                 \
      (s, since, after_id, limit, out, n))                                                         \
    X(silent_sensors, SILENT_SENSORS,                                                              \
      (struct store * s, int64_t before, int64_t after_id, size_t limit,                           \
       struct store_job_sensor * out, size_t * n),                                                 \
      (s, before, after_id, limit, out, n))                                                        \
    X(job_sensor_get, JOB_SENSOR_GET,                                                              \
      (struct store * s, int64_t sensor_id, struct store_job_sensor * out), (s, sensor_id, out))   \
    /* Newest first, by reading time. */                                                           \
    X(recent_readings, RECENT_READINGS,                                                            \
      (struct store * s, int64_t sensor_id, size_t limit, struct store_reading * out, size_t * n), \
      (s, sensor_id, limit, out, n))                                                               \
    /* Finds or creates the ml_models row (name, version). */                                      \
    X(model_ensure, MODEL_ENSURE,                                                                  \
      (struct store * s, const char *name, const char *type, const char *version,                  \
       const char *params, int64_t now, int64_t *id),                                              \
      (s, name, type, version, params, now, id))                                                   \
    /* Sets p->id. */                                                                              \
    X(prediction_insert, PREDICTION_INSERT, (struct store * s, struct store_prediction * p),       \
      (s, p))                                                                                      \
    /* IOT_ENOTFOUND when none. */                                                                 \
    X(ml_event_active, ML_EVENT_ACTIVE,                                                            \
      (struct store * s, int64_t sensor_id, const char *event_type, int64_t *id),                  \
      (s, sensor_id, event_type, id))                                                              \
    /* Sets e->id. */                                                                              \
    X(ml_event_insert, ML_EVENT_INSERT, (struct store * s, struct store_ml_event * e), (s, e))     \
    X(ml_event_resolve, ML_EVENT_RESOLVE, (struct store * s, int64_t id), (s, id))                 \
    /* Anomalous predictions without an explanation, score >= min_score. */                        \
    X(unexplained, UNEXPLAINED,                                                                    \
      (struct store * s, double min_score, int64_t after_id, size_t limit,                         \
       struct store_prediction *out, size_t *n),                                                   \
      (s, min_score, after_id, limit, out, n))                                                     \
    X(prediction_explain, PREDICTION_EXPLAIN, (struct store * s, int64_t id, const char *json),    \
      (s, id, json))                                                                               \
    /* Adds one run to the job's statistics row (autocommit). */                                   \
    X(job_stat_record, JOB_STAT_RECORD,                                                            \
      (struct store * s, const char *job, int ok, int64_t duration_ms, int64_t now),               \
      (s, job, ok, duration_ms, now))                                                              \
    /*                                                                                             \
     * Retention and hourly rollups (job retention, SPEC §12, docs/jobs.md).                      \
     * Each runs its own short transaction: call them outside one.                                 \
     * rollup_step: rolls up the first hour that has readings at or after the                      \
     * rollup mark (rollup_state.rolled_until) and starts before `until` (an                       \
     * hour boundary): one sensor_readings_hourly row per sensor of that hour,                     \
     * the mark moved to its end. Without such an hour the mark moves to                           \
     * until (never back). *mark gets the mark, *rollups the rows written (0                       \
     * when only the mark moved). Hours below the mark are kept up to date by                      \
     * the insert trigger of the schema, in the writer's own transaction.                          \
     * readings_expire: deletes up to max_rows of the oldest readings with                         \
     * ts < before and below the mark (a reading not rolled up is never                            \
     * deleted); *deleted gets the count. rollups_expire: the same for rollups                     \
     * with hour < before.                                                                         \
     */                                                                                            \
    X(rollup_step, ROLLUP_STEP,                                                                    \
      (struct store * s, int64_t until, int64_t * mark, int64_t * rollups),                        \
      (s, until, mark, rollups))                                                                   \
    X(readings_expire, READINGS_EXPIRE,                                                            \
      (struct store * s, int64_t before, int64_t max_rows, int64_t * deleted),                     \
      (s, before, max_rows, deleted))                                                              \
    X(rollups_expire, ROLLUPS_EXPIRE,                                                              \
      (struct store * s, int64_t before, int64_t max_rows, int64_t * deleted),                     \
      (s, before, max_rows, deleted))

/*
 * The online ML consumer (iot-ingest consume, docs/broker.md). online_load
 * and online_apply run inside a transaction the caller opened with tx_begin;
 * a shared backend locks the sensor's online_state row in online_load (FOR
 * UPDATE), so two consumers never apply to one sensor at once.
 */
#define STORE_OPS_CONSUME(X)                                                                       \
    /*                                                                                             \
     * *applied = 1 when (stream, seq) was already applied (the rest of *out                       \
     * is then unspecified); else *applied = 0 and *out is the sensor's model                      \
     * state (count 0 when it has none yet).                                                       \
     */                                                                                            \
    X(online_load, ONLINE_LOAD,                                                                    \
      (struct store * s, const char *stream, uint64_t seq, int64_t sensor_id,                      \
       struct store_online_state *out, int *applied),                                              \
      (s, stream, seq, sensor_id, out, applied))                                                   \
    /*                                                                                             \
     * Upserts st, inserts pred when not NULL (sets pred->id), and records                         \
     * (stream, seq) as applied by consumer; IOT_EEXIST when (stream, seq) is                      \
     * already recorded. seq <= INT64_MAX.                                                         \
     */                                                                                            \
    X(online_apply, ONLINE_APPLY,                                                                  \
      (struct store * s, const char *stream, uint64_t seq, const char *consumer,                   \
       const struct store_online_state *st, struct store_prediction *pred),                        \
      (s, stream, seq, consumer, st, pred))                                                        \
    /*                                                                                             \
     * Forgets the applied sequences <= upto of stream (those the engine will                      \
     * never redeliver); *removed gets the row count.                                              \
     */                                                                                            \
    X(online_prune, ONLINE_PRUNE,                                                                  \
      (struct store * s, const char *stream, uint64_t upto, int64_t *removed),                     \
      (s, stream, upto, removed))

#define STORE_OPS(X)                                                                               \
    STORE_OPS_CONN(X)                                                                              \
    STORE_OPS_INGEST(X)                                                                            \
    STORE_OPS_READ(X)                                                                              \
    STORE_OPS_PROVISION(X)                                                                         \
    STORE_OPS_JOBS(X)                                                                              \
    STORE_OPS_CONSUME(X)

#define STORE_OP_MEMBER_(name, NAME, params, args) int(*name) params;
struct store_ops {
    const char *name;
    void (*close)(struct store *s);
    const char *(*errmsg)(struct store *s);
    STORE_OPS(STORE_OP_MEMBER_)
};
#undef STORE_OP_MEMBER_

/* Every backend's connection struct begins with this. */
struct store {
    const struct store_ops *ops;
};

/*
 * Opens the database named by url ("sqlite:PATH" or "postgresql://..."). On
 * failure returns the error and a one-line reason in err; *out is NULL.
 */
int store_open(const char *url, const struct store_open_opts *opts, struct store **out, char *err,
               size_t errlen);
/* Backend constructors, used by store_open. */
int store_sqlite_open(const char *path, const struct store_open_opts *opts, struct store **out,
                      char *err, size_t errlen);

static inline void store_close(struct store *s)
{
    if (s) s->ops->close(s);
}
static inline const char *store_errmsg(struct store *s)
{
    return s->ops->errmsg(s);
}
static inline const char *store_backend(struct store *s)
{
    return s->ops->name;
}

/* store_ping(s), store_tx_commit(s), ...: one inline wrapper per op of STORE_OPS. */
#define STORE_OP_WRAPPER_(name, NAME, params, args)                                                \
    static inline int store_##name params                                                          \
    {                                                                                              \
        return s->ops->name args;                                                                  \
    }
STORE_OPS(STORE_OP_WRAPPER_)
#undef STORE_OP_WRAPPER_

#endif
