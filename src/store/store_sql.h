/*
 * SQL text shared by both backends: the columns and joins of a "job sensor"
 * (struct store_job_sensor), and the statements of device_delete. Standard
 * SQL, so SQLite and PostgreSQL read the same fragments; each backend adds
 * its own time column between them.
 */
#ifndef IOT_STORE_SQL_H
#define IOT_STORE_SQL_H

/* A sensor and its active thresholds, one row per threshold (struct store_sensor);
 * the caller appends WHERE. */
#define STORE_SQL_SENSOR_SELECT                                                                    \
    "SELECT s.id, s.device_id, s.sensor_uuid, s.is_active, t.id, t.severity, t.min_value,"         \
    " t.max_value, t.delta_max FROM sensors s LEFT JOIN alert_thresholds t"                        \
    " ON t.sensor_id = s.id AND t.is_active = 1"

/* Columns 0-6 of a job sensor; the caller appends column 7 (its time). */
#define STORE_SQL_SENSOR_COLS                                                                      \
    "s.id, s.device_id, s.sensor_uuid, d.device_uuid, s.name, coalesce(s.sensor_type, ''),"        \
    " coalesce(s.unit, ''), "
/* Columns 8-15 (critical, then warning threshold) and the joins. */
#define STORE_SQL_THRESHOLD_COLS                                                                   \
    ", c.id, c.min_value, c.max_value, c.delta_max, w.id, w.min_value, w.max_value, w.delta_max"   \
    " FROM sensors s JOIN devices d ON d.id = s.device_id"                                         \
    " LEFT JOIN alert_thresholds c ON c.sensor_id = s.id AND c.is_active = 1"                      \
    "   AND c.severity = 'critical'"                                                               \
    " LEFT JOIN alert_thresholds w ON w.sensor_id = s.id AND w.is_active = 1"                      \
    "   AND w.severity = 'warning'"                                                                \
    " LEFT JOIN sensor_state st ON st.sensor_id = s.id"

/*
 * store_ops.device_delete: the statements that delete a device with
 * everything under it, children before parents, as X(name, sql) rows; D is
 * an SQL expression for the device's id (SQLite binds it, PostgreSQL looks
 * it up by uuid). Every column that references a device or a sensor
 * (SPEC §3 and the bookkeeping tables: online_state and consumer_applied
 * have no foreign key, but their rows would pass to a sensor that reuses
 * the id) is named here; a new one must be added.
 */
#define STORE_SQL_SENSORS_OF(D) "(SELECT id FROM sensors WHERE device_id = " D ")"
#define STORE_SQL_DEVICE_DELETE(X, D)                                                              \
    X(STORE_DEL_NOTIFICATIONS,                                                                     \
      "DELETE FROM alert_notifications WHERE alert_id IN (SELECT id FROM alerts WHERE device_id "  \
      "= " D " OR sensor_id IN " STORE_SQL_SENSORS_OF(D) ")")                                      \
    X(STORE_DEL_ALERTS,                                                                            \
      "DELETE FROM alerts WHERE device_id = " D " OR sensor_id IN " STORE_SQL_SENSORS_OF(D))       \
    X(STORE_DEL_ML_EVENTS,                                                                         \
      "DELETE FROM ml_events WHERE device_id = " D " OR sensor_id IN " STORE_SQL_SENSORS_OF(D))    \
    X(STORE_DEL_PREDICTIONS,                                                                       \
      "DELETE FROM predictions WHERE sensor_id IN " STORE_SQL_SENSORS_OF(D))                       \
    X(STORE_DEL_THRESHOLDS,                                                                        \
      "DELETE FROM alert_thresholds WHERE sensor_id IN " STORE_SQL_SENSORS_OF(D))                  \
    X(STORE_DEL_READINGS,                                                                          \
      "DELETE FROM sensor_readings WHERE sensor_id IN " STORE_SQL_SENSORS_OF(D))                   \
    X(STORE_DEL_ROLLUPS,                                                                           \
      "DELETE FROM sensor_readings_hourly WHERE sensor_id IN " STORE_SQL_SENSORS_OF(D))            \
    X(STORE_DEL_STATE, "DELETE FROM sensor_state WHERE sensor_id IN " STORE_SQL_SENSORS_OF(D))     \
    X(STORE_DEL_ONLINE, "DELETE FROM online_state WHERE sensor_id IN " STORE_SQL_SENSORS_OF(D))    \
    X(STORE_DEL_APPLIED,                                                                           \
      "DELETE FROM consumer_applied WHERE sensor_id IN " STORE_SQL_SENSORS_OF(D))                  \
    X(STORE_DEL_PACKETS, "DELETE FROM ingest_packets WHERE device_id = " D)                        \
    X(STORE_DEL_SENSORS, "DELETE FROM sensors WHERE device_id = " D)                               \
    X(STORE_DEL_DEVICE, "DELETE FROM devices WHERE id = " D)

#define STORE_SQL_DEL_NAME(name, sql) name,
enum store_sql_del { STORE_SQL_DEVICE_DELETE(STORE_SQL_DEL_NAME, "") STORE_DEL_COUNT };
#undef STORE_SQL_DEL_NAME

#endif
