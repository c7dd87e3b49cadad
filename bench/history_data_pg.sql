-- bench/history_data.sql for PostgreSQL: the same device, sensors and
-- readings with generate_series. Replace the same placeholders (@NOW@,
-- @START@, @SPAN@ in UTC ms; @TOTAL@ readings, a multiple of 19) and pipe
-- this into `psql -v ON_ERROR_STOP=1 URL` on a database that `iot-ingest db
-- init` created.
--
-- The monthly partitions of the whole range are created first, as a gateway
-- that ran through those months would have them (a fresh schema only has the
-- current month and three ahead; without this every old reading would land in
-- the DEFAULT partition and retention could not drop whole months).
-- sensor_state gets each sensor's newest reading, as the gateway keeps it.
SET synchronous_commit = off;
SELECT sensor_readings_ensure_partitions(timestamptz 'epoch' + @START@ * interval '1 millisecond',
                                         now() + interval '3 months');
BEGIN;
INSERT INTO devices(device_uuid, name, device_key_hash, is_active, created_at)
VALUES ('histbench-d1', 'history benchmark device',
        '8c6976e5b5410415bde908bd4dee15dfb167a9c873fc4bb8a81f6f2ab448a918', 1,
        timestamptz 'epoch' + @NOW@ * interval '1 millisecond')
ON CONFLICT (device_uuid) DO NOTHING;
INSERT INTO sensors(sensor_uuid, device_id, name, sensor_type, unit, is_active, created_at)
SELECT format('histbench-s%s', lpad(i::text, 2, '0')), d.id, 'sensor ' || i, 'temperature', 'C',
       1, timestamptz 'epoch' + @NOW@ * interval '1 millisecond'
FROM generate_series(1, 10) i, devices d WHERE d.device_uuid = 'histbench-d1'
ON CONFLICT (sensor_uuid) DO NOTHING;
-- Slot k is sensor 1 when k % 19 < 10, else sensor k % 19 - 8.
WITH hb AS (SELECT substr(sensor_uuid, 12)::int AS n, id FROM sensors
            WHERE sensor_uuid ~ '^histbench-s[0-9]{2}$')
INSERT INTO sensor_readings(sensor_id, value, ts, ingested_at, class, late)
SELECT hb.id, 20 + (j % 1000) / 100.0,
       timestamptz 'epoch' + (@START@ + j * @SPAN@ / @TOTAL@) * interval '1 millisecond',
       timestamptz 'epoch' + @NOW@ * interval '1 millisecond', 'normal', 0
FROM generate_series(0::bigint, @TOTAL@ - 1) j
JOIN hb ON hb.n = CASE WHEN j % 19 < 10 THEN 1 ELSE j % 19 - 8 END
ORDER BY j;
INSERT INTO sensor_state(sensor_id, last_ts, last_value, last_class, normal_run)
SELECT s.id, r.ts, r.value, 'normal', 1
FROM sensors s
CROSS JOIN LATERAL (SELECT ts, value FROM sensor_readings WHERE sensor_id = s.id
                    ORDER BY ts DESC LIMIT 1) r
WHERE s.sensor_uuid ~ '^histbench-s[0-9]{2}$'
ON CONFLICT (sensor_id) DO UPDATE SET last_ts = excluded.last_ts,
    last_value = excluded.last_value, last_class = excluded.last_class
    WHERE sensor_state.last_ts IS NULL OR sensor_state.last_ts < excluded.last_ts;
COMMIT;
ANALYZE sensors;
ANALYZE sensor_readings;
ANALYZE sensor_state;
