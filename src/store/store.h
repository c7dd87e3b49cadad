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
    int has_last;      /* 0 until the first non-late reading */
    int64_t last_ts;   /* newest reading time seen */
    double last_value; /* value of that reading */
    enum reading_class last_class;
    int64_t normal_run; /* consecutive normal readings (non-late) */
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
    int present[ALERT_KINDS];
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

struct store_ops {
    const char *name;
    void (*close)(struct store *s);
    const char *(*errmsg)(struct store *s);
    int (*ping)(struct store *s);
    int (*schema_init)(struct store *s); /* create or upgrade; idempotent */
    int (*schema_version)(struct store *s, int *out);

    /* Lookups (resolver, auth, status). */
    int (*device_get)(struct store *s, const char *uuid, struct store_device *out);
    int (*device_get_by_id)(struct store *s, int64_t id, struct store_device *out);
    /* *out is malloc'ed (caller frees), sorted by uuid. */
    int (*device_sensors)(struct store *s, int64_t device_id, struct store_sensor **out, size_t *n);
    int (*sensor_get)(struct store *s, int64_t sensor_id, struct store_sensor *out);
    int (*device_status)(struct store *s, int64_t device_id, store_status_cb cb, void *ud);

    /* Provisioning. */
    int (*device_add)(struct store *s, const char *uuid, const char *name,
                      const unsigned char key_hash[STORE_KEY_HASH_LEN], int64_t now, int64_t *id);
    int (*device_set_active)(struct store *s, const char *uuid, int active);
    /*
     * Deletes the device and everything stored under it (see struct
     * store_device_deleted) in one transaction of its own: not to be called
     * inside one. IOT_ENOTFOUND for an unknown device (nothing changed).
     */
    int (*device_delete)(struct store *s, const char *uuid, struct store_device_deleted *out);
    int (*sensor_add)(struct store *s, const char *device_uuid, const char *uuid, const char *name,
                      const char *type, const char *unit, int64_t now, int64_t *id,
                      int64_t *device_id);
    int (*sensor_set_active)(struct store *s, const char *uuid, int active);
    int (*threshold_set)(struct store *s, const char *sensor_uuid, enum severity sev,
                         const struct store_threshold *t, int64_t now, int64_t *id);
    /* IOT_ENOTFOUND for an unknown sensor; 0 also when it had no active threshold of sev. */
    int (*threshold_clear)(struct store *s, const char *sensor_uuid, enum severity sev);

    /* Transactions and savepoints (the writer nests one savepoint per packet). */
    int (*tx_begin)(struct store *s);
    int (*tx_commit)(struct store *s);
    int (*tx_rollback)(struct store *s);
    int (*savepoint)(struct store *s);
    int (*savepoint_release)(struct store *s);
    int (*savepoint_rollback)(struct store *s);
    /*
     * A number that changes whenever another connection or process may
     * have changed sensor state or alerts; cached state read before a change
     * must be dropped. Called inside a transaction.
     */
    int (*change_epoch)(struct store *s, uint64_t *out);
    /*
     * Housekeeping that must not run on the request path (SQLite: WAL
     * checkpoints); called periodically on a connection of its own. May be
     * a no-op.
     */
    int (*maintain)(struct store *s);

    /* Idempotency: ENOTFOUND if unknown; *response malloc'ed. */
    int (*packet_get)(struct store *s, int64_t device_id, const char *packet_id, int64_t since,
                      char **response);
    /*
     * IOT_EEXIST if (device, packet_id) is recorded at or after expired_before;
     * an older (expired, not yet purged) record is replaced.
     */
    int (*packet_put)(struct store *s, int64_t device_id, const char *packet_id,
                      const char *response, int64_t now, int64_t expired_before);
    int (*packets_purge)(struct store *s, int64_t before);

    /* Sensor state and alerts; within the writer's transaction. */
    int (*state_get)(struct store *s, int64_t sensor_id, struct store_sensor_state *out);
    int (*state_put)(struct store *s, const struct store_sensor_state *st);
    /* Fills out[kind] for each active alert; present[kind] set to 1. */
    int (*alerts_active)(struct store *s, int64_t sensor_id, struct store_alert out[ALERT_KINDS],
                         int present[ALERT_KINDS]);
    /*
     * Batch forms used by the writer: one round trip for all the sensors of
     * a packet. ids are distinct and ascending (the lock order on backends
     * shared by several gateways, which lock each sensor's state row until
     * the transaction ends); out[i] belongs to ids[i].
     */
    int (*states_load)(struct store *s, const int64_t *ids, size_t n,
                       struct store_sensor_snapshot *out);
    int (*states_put)(struct store *s, const struct store_sensor_state *const *st, size_t n);
    int (*alert_insert)(struct store *s, struct store_alert *a); /* sets a->id */
    int (*alert_update)(struct store *s, const struct store_alert *a);
    int (*notification_insert)(struct store *s, int64_t alert_id, enum alert_event ev,
                               enum severity sev, int64_t now);
    int (*readings_insert)(struct store *s, struct store_reading *rows, size_t n);
    int (*device_touch)(struct store *s, int64_t device_id, int64_t last_seen);

    /* Batch jobs: keyset pages (id > after_id, ordered by id, at most limit rows). */
    int (*job_sensors)(struct store *s, int64_t since, int64_t after_id, size_t limit,
                       struct store_job_sensor *out, size_t *n);
    int (*silent_sensors)(struct store *s, int64_t before, int64_t after_id, size_t limit,
                          struct store_job_sensor *out, size_t *n);
    /* Newest first, by reading time. */
    int (*job_sensor_get)(struct store *s, int64_t sensor_id, struct store_job_sensor *out);
    int (*recent_readings)(struct store *s, int64_t sensor_id, size_t limit,
                           struct store_reading *out, size_t *n);
    /* Finds or creates the ml_models row (name, version). */
    int (*model_ensure)(struct store *s, const char *name, const char *type, const char *version,
                        const char *params, int64_t now, int64_t *id);
    int (*prediction_insert)(struct store *s, struct store_prediction *p); /* sets p->id */
    int (*ml_event_active)(struct store *s, int64_t sensor_id, const char *event_type,
                           int64_t *id);                               /* IOT_ENOTFOUND when none */
    int (*ml_event_insert)(struct store *s, struct store_ml_event *e); /* sets e->id */
    int (*ml_event_resolve)(struct store *s, int64_t id);
    /* Anomalous predictions without an explanation, score >= min_score. */
    int (*unexplained)(struct store *s, double min_score, int64_t after_id, size_t limit,
                       struct store_prediction *out, size_t *n);
    int (*prediction_explain)(struct store *s, int64_t id, const char *json);

    /*
     * Online ML consumer (iot-ingest consume, docs/broker.md). Both run
     * inside a transaction the caller opened with tx_begin; a shared backend
     * locks the sensor's online_state row in online_load (FOR UPDATE), so two
     * consumers never apply to one sensor at once.
     *
     * online_load: *applied = 1 when (stream, seq) was already applied (the
     * rest of *out is then unspecified); else *applied = 0 and *out is the
     * sensor's model state (count 0 when it has none yet).
     * online_apply: upserts st, inserts pred when not NULL (sets pred->id),
     * and records (stream, seq) as applied by consumer; IOT_EEXIST when
     * (stream, seq) is already recorded. seq <= INT64_MAX.
     * online_prune: forgets the applied sequences <= upto of stream (those the
     * engine will never redeliver); *removed gets the row count.
     */
    int (*online_load)(struct store *s, const char *stream, uint64_t seq, int64_t sensor_id,
                       struct store_online_state *out, int *applied);
    int (*online_apply)(struct store *s, const char *stream, uint64_t seq, const char *consumer,
                        const struct store_online_state *st, struct store_prediction *pred);
    int (*online_prune)(struct store *s, const char *stream, uint64_t upto, int64_t *removed);

    /* Job statistics: adds one run (autocommit), and reads every job's row. */
    int (*job_stat_record)(struct store *s, const char *job, int ok, int64_t duration_ms,
                           int64_t now);
    int (*job_stats)(struct store *s, struct store_job_stat *out, size_t cap, size_t *n);

    /*
     * Retention and hourly rollups (job retention, SPEC §12, docs/jobs.md).
     * Each runs its own short transaction: call them outside one.
     * rollup_step: rolls up the first hour that has readings at or after the
     * rollup mark (rollup_state.rolled_until) and starts before `until` (an
     * hour boundary): one sensor_readings_hourly row per sensor of that hour,
     * the mark moved to its end. Without such an hour the mark moves to
     * until (never back). *mark gets the mark, *rollups the rows written (0
     * when only the mark moved). Hours below the mark are kept up to date by
     * the insert trigger of the schema, in the writer's own transaction.
     * readings_expire: deletes up to max_rows of the oldest readings with
     * ts < before and below the mark (a reading not rolled up is never
     * deleted); *deleted gets the count. rollups_expire: the same for rollups
     * with hour < before.
     */
    int (*rollup_step)(struct store *s, int64_t until, int64_t *mark, int64_t *rollups);
    int (*readings_expire)(struct store *s, int64_t before, int64_t max_rows, int64_t *deleted);
    int (*rollups_expire)(struct store *s, int64_t before, int64_t max_rows, int64_t *deleted);

    /*
     * History of one sensor (GET .../sensors/{uuid}/readings, SPEC §12).
     * readings_range: its readings with from <= ts < to that come after
     * (after_ts, after_id) in (ts, id) order (after_ts = from, after_id = 0
     * for the first page), in that order, at most limit; id is set, prev_id
     * and ingested_at are not.
     * readings_buckets: one bucket per step_ms (aligned to the epoch, UTC)
     * with readings in [from, to) (both multiples of step_ms, itself a
     * multiple of an hour): from the rollups below the rollup mark, from raw
     * readings above it (a rollup equals its hour's raw aggregate, so this is
     * the same answer, only cheaper), ascending, at most cap.
     */
    int (*readings_range)(struct store *s, int64_t sensor_id, int64_t from, int64_t to,
                          int64_t after_ts, int64_t after_id, size_t limit,
                          struct store_reading *out, size_t *n);
    int (*readings_buckets)(struct store *s, int64_t sensor_id, int64_t from, int64_t to,
                            int64_t step_ms, size_t cap, struct store_bucket *out, size_t *n);
};

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
static inline int store_ping(struct store *s)
{
    return s->ops->ping(s);
}
static inline int store_schema_init(struct store *s)
{
    return s->ops->schema_init(s);
}
static inline int store_schema_version(struct store *s, int *v)
{
    return s->ops->schema_version(s, v);
}
static inline int store_device_get(struct store *s, const char *uuid, struct store_device *d)
{
    return s->ops->device_get(s, uuid, d);
}
static inline int store_device_get_by_id(struct store *s, int64_t id, struct store_device *d)
{
    return s->ops->device_get_by_id(s, id, d);
}
static inline int store_device_sensors(struct store *s, int64_t device_id,
                                       struct store_sensor **out, size_t *n)
{
    return s->ops->device_sensors(s, device_id, out, n);
}
static inline int store_sensor_get(struct store *s, int64_t id, struct store_sensor *out)
{
    return s->ops->sensor_get(s, id, out);
}
static inline int store_device_status(struct store *s, int64_t device_id, store_status_cb cb,
                                      void *ud)
{
    return s->ops->device_status(s, device_id, cb, ud);
}
static inline int store_device_add(struct store *s, const char *uuid, const char *name,
                                   const unsigned char h[STORE_KEY_HASH_LEN], int64_t now,
                                   int64_t *id)
{
    return s->ops->device_add(s, uuid, name, h, now, id);
}
static inline int store_device_set_active(struct store *s, const char *uuid, int active)
{
    return s->ops->device_set_active(s, uuid, active);
}
static inline int store_device_delete(struct store *s, const char *uuid,
                                      struct store_device_deleted *out)
{
    return s->ops->device_delete(s, uuid, out);
}
static inline int store_sensor_add(struct store *s, const char *device_uuid, const char *uuid,
                                   const char *name, const char *type, const char *unit,
                                   int64_t now, int64_t *id, int64_t *device_id)
{
    return s->ops->sensor_add(s, device_uuid, uuid, name, type, unit, now, id, device_id);
}
static inline int store_sensor_set_active(struct store *s, const char *uuid, int active)
{
    return s->ops->sensor_set_active(s, uuid, active);
}
static inline int store_threshold_set(struct store *s, const char *sensor_uuid, enum severity sev,
                                      const struct store_threshold *t, int64_t now, int64_t *id)
{
    return s->ops->threshold_set(s, sensor_uuid, sev, t, now, id);
}
static inline int store_threshold_clear(struct store *s, const char *sensor_uuid, enum severity sev)
{
    return s->ops->threshold_clear(s, sensor_uuid, sev);
}
static inline int store_tx_begin(struct store *s)
{
    return s->ops->tx_begin(s);
}
static inline int store_tx_commit(struct store *s)
{
    return s->ops->tx_commit(s);
}
static inline int store_tx_rollback(struct store *s)
{
    return s->ops->tx_rollback(s);
}
static inline int store_savepoint(struct store *s)
{
    return s->ops->savepoint(s);
}
static inline int store_savepoint_release(struct store *s)
{
    return s->ops->savepoint_release(s);
}
static inline int store_savepoint_rollback(struct store *s)
{
    return s->ops->savepoint_rollback(s);
}
static inline int store_change_epoch(struct store *s, uint64_t *out)
{
    return s->ops->change_epoch(s, out);
}
static inline int store_maintain(struct store *s)
{
    return s->ops->maintain(s);
}
static inline int store_packet_get(struct store *s, int64_t device_id, const char *packet_id,
                                   int64_t since, char **response)
{
    return s->ops->packet_get(s, device_id, packet_id, since, response);
}
static inline int store_packet_put(struct store *s, int64_t device_id, const char *packet_id,
                                   const char *response, int64_t now, int64_t expired_before)
{
    return s->ops->packet_put(s, device_id, packet_id, response, now, expired_before);
}
static inline int store_packets_purge(struct store *s, int64_t before)
{
    return s->ops->packets_purge(s, before);
}
static inline int store_state_get(struct store *s, int64_t sensor_id, struct store_sensor_state *o)
{
    return s->ops->state_get(s, sensor_id, o);
}
static inline int store_state_put(struct store *s, const struct store_sensor_state *st)
{
    return s->ops->state_put(s, st);
}
static inline int store_alerts_active(struct store *s, int64_t sensor_id,
                                      struct store_alert out[ALERT_KINDS], int present[ALERT_KINDS])
{
    return s->ops->alerts_active(s, sensor_id, out, present);
}
static inline int store_states_load(struct store *s, const int64_t *ids, size_t n,
                                    struct store_sensor_snapshot *out)
{
    return s->ops->states_load(s, ids, n, out);
}
static inline int store_states_put(struct store *s, const struct store_sensor_state *const *st,
                                   size_t n)
{
    return s->ops->states_put(s, st, n);
}
static inline int store_alert_insert(struct store *s, struct store_alert *a)
{
    return s->ops->alert_insert(s, a);
}
static inline int store_alert_update(struct store *s, const struct store_alert *a)
{
    return s->ops->alert_update(s, a);
}
static inline int store_notification_insert(struct store *s, int64_t alert_id, enum alert_event ev,
                                            enum severity sev, int64_t now)
{
    return s->ops->notification_insert(s, alert_id, ev, sev, now);
}
static inline int store_readings_insert(struct store *s, struct store_reading *rows, size_t n)
{
    return s->ops->readings_insert(s, rows, n);
}
static inline int store_device_touch(struct store *s, int64_t device_id, int64_t last_seen)
{
    return s->ops->device_touch(s, device_id, last_seen);
}

static inline int store_job_sensors(struct store *s, int64_t since, int64_t after_id, size_t limit,
                                    struct store_job_sensor *out, size_t *n)
{
    return s->ops->job_sensors(s, since, after_id, limit, out, n);
}
static inline int store_silent_sensors(struct store *s, int64_t before, int64_t after_id,
                                       size_t limit, struct store_job_sensor *out, size_t *n)
{
    return s->ops->silent_sensors(s, before, after_id, limit, out, n);
}
static inline int store_job_sensor_get(struct store *s, int64_t id, struct store_job_sensor *out)
{
    return s->ops->job_sensor_get(s, id, out);
}
static inline int store_recent_readings(struct store *s, int64_t sensor_id, size_t limit,
                                        struct store_reading *out, size_t *n)
{
    return s->ops->recent_readings(s, sensor_id, limit, out, n);
}
static inline int store_model_ensure(struct store *s, const char *name, const char *type,
                                     const char *version, const char *params, int64_t now,
                                     int64_t *id)
{
    return s->ops->model_ensure(s, name, type, version, params, now, id);
}
static inline int store_prediction_insert(struct store *s, struct store_prediction *p)
{
    return s->ops->prediction_insert(s, p);
}
static inline int store_ml_event_active(struct store *s, int64_t sensor_id, const char *type,
                                        int64_t *id)
{
    return s->ops->ml_event_active(s, sensor_id, type, id);
}
static inline int store_ml_event_insert(struct store *s, struct store_ml_event *e)
{
    return s->ops->ml_event_insert(s, e);
}
static inline int store_ml_event_resolve(struct store *s, int64_t id)
{
    return s->ops->ml_event_resolve(s, id);
}
static inline int store_unexplained(struct store *s, double min_score, int64_t after_id,
                                    size_t limit, struct store_prediction *out, size_t *n)
{
    return s->ops->unexplained(s, min_score, after_id, limit, out, n);
}
static inline int store_prediction_explain(struct store *s, int64_t id, const char *json)
{
    return s->ops->prediction_explain(s, id, json);
}

static inline int store_online_load(struct store *s, const char *stream, uint64_t seq,
                                    int64_t sensor_id, struct store_online_state *out, int *applied)
{
    return s->ops->online_load(s, stream, seq, sensor_id, out, applied);
}
static inline int store_online_apply(struct store *s, const char *stream, uint64_t seq,
                                     const char *consumer, const struct store_online_state *st,
                                     struct store_prediction *pred)
{
    return s->ops->online_apply(s, stream, seq, consumer, st, pred);
}
static inline int store_online_prune(struct store *s, const char *stream, uint64_t upto,
                                     int64_t *removed)
{
    return s->ops->online_prune(s, stream, upto, removed);
}

/* Backend constructors, used by store_open. */
int store_sqlite_open(const char *path, const struct store_open_opts *opts, struct store **out,
                      char *err, size_t errlen);

static inline int store_job_stat_record(struct store *s, const char *job, int ok,
                                        int64_t duration_ms, int64_t now)
{
    return s->ops->job_stat_record(s, job, ok, duration_ms, now);
}
static inline int store_job_stats(struct store *s, struct store_job_stat *out, size_t cap,
                                  size_t *n)
{
    return s->ops->job_stats(s, out, cap, n);
}

static inline int store_rollup_step(struct store *s, int64_t until, int64_t *mark, int64_t *rollups)
{
    return s->ops->rollup_step(s, until, mark, rollups);
}
static inline int store_readings_expire(struct store *s, int64_t before, int64_t max_rows,
                                        int64_t *deleted)
{
    return s->ops->readings_expire(s, before, max_rows, deleted);
}
static inline int store_rollups_expire(struct store *s, int64_t before, int64_t max_rows,
                                       int64_t *deleted)
{
    return s->ops->rollups_expire(s, before, max_rows, deleted);
}
static inline int store_readings_range(struct store *s, int64_t sensor_id, int64_t from, int64_t to,
                                       int64_t after_ts, int64_t after_id, size_t limit,
                                       struct store_reading *out, size_t *n)
{
    return s->ops->readings_range(s, sensor_id, from, to, after_ts, after_id, limit, out, n);
}
static inline int store_readings_buckets(struct store *s, int64_t sensor_id, int64_t from,
                                         int64_t to, int64_t step_ms, size_t cap,
                                         struct store_bucket *out, size_t *n)
{
    return s->ops->readings_buckets(s, sensor_id, from, to, step_ms, cap, out, n);
}

#endif
