/*
 * SQL text shared by both backends: the columns and joins of a "job sensor"
 * (struct store_job_sensor). Standard SQL, so SQLite and PostgreSQL read the
 * same fragments; each backend adds its own time column between them.
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

#endif
