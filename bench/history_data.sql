-- Data for the history and retention benchmarks (bench/run.sh, steps history
-- and retention_load; docs/BENCHMARKS.md, "History API"), generated in SQL.
-- Replace the placeholders and pipe this into sqlite3 on a database that
-- `iot-ingest db init` created (bench/history_data_pg.sql is the same for
-- PostgreSQL):
--   @NOW@    UTC ms, an hour boundary: created_at and ingested_at
--   @START@  UTC ms of the first reading
--   @SPAN@   ms the readings cover from @START@ (the last one is before
--            @START@ + @SPAN@)
--   @TOTAL@  readings, a multiple of 19
-- The issue's figures (by hand): @START@ = @NOW@ - 31536000000, @SPAN@ =
-- 31536000000, @TOTAL@ = 19000000: sensor 1 with 10,000,000 readings over
-- the year before @NOW@ (one every 3.15 s), sensors 2-10 with 1,000,000 each.
--
-- One device (histbench-d1, device key "admin") with 10 sensors; of every 19
-- readings, 10 are sensor 1's and one each is sensor 2-10's, evenly spread
-- over the span and interleaved by time as a gateway would store them (ids in
-- time order, no reading chain: schema step 4's trigger marks each sensor's
-- head unknown and keeps sensor_state). The device and its sensors are
-- created once: run it again with another range to add readings, also into a
-- database that holds another fleet (ids are not fixed).
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
INSERT OR IGNORE INTO devices(device_uuid, name, device_key_hash, is_active, created_at)
VALUES ('histbench-d1', 'history benchmark device',
        '8c6976e5b5410415bde908bd4dee15dfb167a9c873fc4bb8a81f6f2ab448a918', 1, @NOW@);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)
INSERT OR IGNORE INTO sensors(sensor_uuid, device_id, name, sensor_type, unit, is_active,
                              created_at)
SELECT printf('histbench-s%02d', i), d.id, printf('sensor %d', i), 'temperature', 'C', 1, @NOW@
FROM n, devices d WHERE d.device_uuid = 'histbench-d1';
CREATE TEMP TABLE hb(n INTEGER PRIMARY KEY, id INTEGER NOT NULL);
INSERT INTO hb SELECT CAST(substr(sensor_uuid, 12) AS INTEGER), id FROM sensors
WHERE sensor_uuid GLOB 'histbench-s[0-9][0-9]';
-- Slot k is sensor 1 when k % 19 < 10, else sensor k % 19 - 8.
WITH RECURSIVE k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < @TOTAL@ - 1)
INSERT INTO sensor_readings(sensor_id, value, ts, ingested_at, class, late, prev_id)
SELECT (SELECT id FROM hb WHERE n = CASE WHEN j % 19 < 10 THEN 1 ELSE j % 19 - 8 END),
       20 + (j % 1000) / 100.0, @START@ + j * @SPAN@ / @TOTAL@, @NOW@, 'normal', 0, NULL
FROM k;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
