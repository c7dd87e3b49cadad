-- Data for the history benchmark (docs/BENCHMARKS.md, "History API"),
-- generated in SQL. Replace @NOW@ (UTC ms, an hour boundary) and pipe into
-- sqlite3 on a database that `iot-ingest db init` just created.
--
-- One device with 10 sensors over the year before @NOW@: sensor 1 has
-- 10,000,000 readings (one every 3.15 s), sensors 2-10 1,000,000 each,
-- interleaved by time as a gateway would store them (ids in time order, each
-- reading linked to its sensor's previous one, schema step 4).
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
INSERT INTO devices(id, device_uuid, name, device_key_hash, is_active, created_at)
VALUES (1, 'histbench-d1', 'history benchmark device',
        '8c6976e5b5410415bde908bd4dee15dfb167a9c873fc4bb8a81f6f2ab448a918', 1, @NOW@);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)
INSERT INTO sensors(id, sensor_uuid, device_id, name, sensor_type, unit, is_active, created_at)
SELECT i, printf('histbench-s%02d', i), 1, printf('sensor %d', i), 'temperature', 'C', 1, @NOW@
FROM n;
-- 19,000,000 slots k; slot k is sensor 1 when k % 19 < 10, else sensor k % 19 - 8.
WITH RECURSIVE k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < 18999999)
INSERT INTO sensor_readings(id, sensor_id, value, ts, ingested_at, class, late, prev_id)
SELECT j + 1, CASE WHEN j % 19 < 10 THEN 1 ELSE j % 19 - 8 END,
       20 + (j % 1000) / 100.0,
       @NOW@ - 31536000000 + j * 31536000000 / 19000000, @NOW@, 'normal', 0, NULL
FROM k;
INSERT INTO sensor_state(sensor_id, last_ts, last_value, last_class, normal_run, last_reading_id)
SELECT sensor_id, max(ts), 20, 'normal', 1, NULL FROM sensor_readings GROUP BY sensor_id;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
