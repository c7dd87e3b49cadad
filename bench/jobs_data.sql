-- Data for the baseline-job benchmark, generated in SQL (seconds, not
-- minutes of HTTP). bench/run.sh replaces @NOW@ (UTC ms), @SENSORS@ and
-- @READINGS@, and pipes this into sqlite3 on a database that `iot-ingest db
-- init` just created.
--
-- @SENSORS@ sensors, 10 per device, each with @READINGS@ readings one minute
-- apart ending now (all within BASELINE_LOOKBACK_S), a warning band [0, 35]
-- and a critical band [-10, 45]. Values: 20 + (id % 7) + noise in [-1, 1].
-- Two kinds of special sensors so that every code path of the job runs:
--   id % 100 = 0: the newest reading is +30 (an anomaly: z-score far above 3);
--   id % 250 = 0: every reading is about 50 (the prediction breaches the
--                 critical band: one PRED_THRESHOLD_BREACH event each).
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < (@SENSORS@ + 9) / 10)
INSERT INTO devices(id, device_uuid, name, device_key_hash, is_active, created_at)
SELECT i, printf('jobbench-d%06d', i), 'jobs benchmark device', hex(randomblob(32)), 1, @NOW@
FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @SENSORS@)
INSERT INTO sensors(id, sensor_uuid, device_id, name, sensor_type, unit, is_active, created_at)
SELECT i, printf('jobbench-s%07d', i), (i - 1) / 10 + 1, printf('sensor %d', i), 'temperature',
       'C', 1, @NOW@
FROM n;
INSERT INTO alert_thresholds(sensor_id, severity, min_value, max_value, delta_max, is_active,
                             created_at)
SELECT id, 'warning', 0, 35, NULL, 1, @NOW@ FROM sensors
UNION ALL
SELECT id, 'critical', -10, 45, NULL, 1, @NOW@ FROM sensors;
WITH RECURSIVE k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < @READINGS@ - 1)
-- Rows go in sensor by sensor into an empty table, so reading ids are
-- (sensor - 1) * @READINGS@ + j + 1 and each links to the one before it, as the
-- gateway's writer would link them (prev_id, schema step 4).
INSERT INTO sensor_readings(sensor_id, value, ts, ingested_at, class, late, prev_id)
SELECT s.id,
       CASE
         WHEN s.id % 250 = 0 THEN 50 + (abs(random()) % 2000) / 1000.0 - 1
         WHEN s.id % 100 = 0 AND k.j = @READINGS@ - 1 THEN 50 + (s.id % 7)
         ELSE 20 + (s.id % 7) + (abs(random()) % 2000) / 1000.0 - 1
       END,
       @NOW@ - (@READINGS@ - 1 - k.j) * 60000, @NOW@, 'normal', 0,
       CASE WHEN k.j = 0 THEN 0 ELSE (s.id - 1) * @READINGS@ + k.j END
FROM sensors s, k
ORDER BY s.id, k.j;
INSERT INTO sensor_state(sensor_id, last_ts, last_value, last_class, normal_run, last_reading_id)
SELECT r.sensor_id, r.ts, r.value, 'normal', 1, r.id
FROM sensor_readings r
WHERE r.ts = @NOW@;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
