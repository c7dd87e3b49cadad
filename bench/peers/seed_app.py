#!/usr/bin/env python3
"""
The seed's design, rebuilt compactly as a benchmark peer: FastAPI + pydantic +
SQLite (WAL), one commit per packet, uvicorn with one worker.

What one POST /ingest/packets does, as the seed's ingest_api does it
(/work/shared/seed, "Flujo real de POST /ingest/packets"):
  1. pydantic validates the body;
  2. the device is authenticated by X-Device-Key (SHA-256 of the key against
     devices.device_key_hash, read from the database on every request);
  3. each sensor_uuid is mapped to its sensor_id through a cache with a TTL
     (checking that the sensor belongs to the device and is active);
  4. the sensors' active thresholds are read from the database, and every
     reading is classified (SPEC §4: alert, spike, warning, normal; a reading
     older than its sensor's newest is late and changes nothing);
  5. in ONE transaction: the readings are inserted, the sensors' state rows
     upserted, threshold and delta_spike alerts opened / refreshed /
     escalated / resolved with their notifications, the device's
     last_seen_at touched; then COMMIT (synchronous=FULL by default, so one
     fsync per packet);
  6. the normal readings go to an in-memory broker (a bounded deque), and the
     answer is {"device_uuid","accepted","rejected","duplicate":false}.
Not here (off or absent in the benchmark either way): rate limiting,
packet_id idempotency, the legacy endpoints.

The endpoint is `async def` with one SQLite connection, so requests run one
at a time on the event loop: the best case for this design (a `def` endpoint
in uvicorn's thread pool would make the threads fight over SQLite's write
lock).

Usage:
  seed_app.py provision FLEET_DB SEED_DB   copy devices, sensors and thresholds
                                           (keys included) from an iot-ingest
                                           SQLite database into a new seed DB
  seed_app.py serve SEED_DB PORT           serve on 127.0.0.1:PORT
Environment: SEED_SYNC (full|normal, default full), SEED_ALERT_CLEAR_AFTER (1).
"""

import collections
import hashlib
import hmac
import math
import os
import sqlite3
import sys
import time
from datetime import datetime
from typing import List, Optional, Union

SCHEMA = """
CREATE TABLE devices(id INTEGER PRIMARY KEY, device_uuid TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
  device_key_hash TEXT NOT NULL, is_active INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL,
  last_seen_at INTEGER);
CREATE TABLE sensors(id INTEGER PRIMARY KEY, sensor_uuid TEXT NOT NULL UNIQUE,
  device_id INTEGER NOT NULL REFERENCES devices(id), name TEXT NOT NULL, sensor_type TEXT, unit TEXT,
  is_active INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL);
CREATE TABLE sensor_readings(id INTEGER PRIMARY KEY, sensor_id INTEGER NOT NULL REFERENCES sensors(id),
  value REAL NOT NULL, ts INTEGER NOT NULL, ingested_at INTEGER NOT NULL, class TEXT NOT NULL,
  late INTEGER NOT NULL DEFAULT 0);
CREATE INDEX sensor_readings_sensor_ts ON sensor_readings(sensor_id, ts);
CREATE TABLE alert_thresholds(id INTEGER PRIMARY KEY, sensor_id INTEGER NOT NULL REFERENCES sensors(id),
  severity TEXT NOT NULL, min_value REAL, max_value REAL, delta_max REAL,
  is_active INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL);
CREATE INDEX alert_thresholds_sensor ON alert_thresholds(sensor_id);
CREATE TABLE alerts(id INTEGER PRIMARY KEY, sensor_id INTEGER NOT NULL REFERENCES sensors(id),
  device_id INTEGER NOT NULL REFERENCES devices(id), threshold_id INTEGER REFERENCES alert_thresholds(id),
  severity TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, first_value REAL, last_value REAL,
  hit_count INTEGER NOT NULL DEFAULT 1, triggered_at INTEGER NOT NULL, last_seen_at INTEGER NOT NULL,
  resolved_at INTEGER, message TEXT);
CREATE UNIQUE INDEX alerts_one_active ON alerts(sensor_id, kind) WHERE status = 'active';
CREATE TABLE alert_notifications(id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL REFERENCES alerts(id),
  event TEXT NOT NULL, severity TEXT NOT NULL, created_at INTEGER NOT NULL, delivered_at INTEGER);
CREATE TABLE sensor_state(sensor_id INTEGER PRIMARY KEY REFERENCES sensors(id), last_ts INTEGER,
  last_value REAL, normal_run INTEGER NOT NULL DEFAULT 0);
"""


def provision(fleet_db, seed_db):
    """A fresh seed database holding the fleet (and device key hashes) of FLEET_DB."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(seed_db + suffix):
            os.remove(seed_db + suffix)
    db = sqlite3.connect(seed_db)
    db.executescript(SCHEMA)
    db.execute("ATTACH DATABASE ? AS fleet", (fleet_db,))
    db.executescript("""
        INSERT INTO devices SELECT id, device_uuid, name, device_key_hash, is_active, created_at, NULL
          FROM fleet.devices;
        INSERT INTO sensors SELECT id, sensor_uuid, device_id, name, sensor_type, unit, is_active, created_at
          FROM fleet.sensors;
        INSERT INTO alert_thresholds SELECT id, sensor_id, severity, min_value, max_value, delta_max,
          is_active, created_at FROM fleet.alert_thresholds WHERE is_active = 1;
    """)
    db.commit()
    n = db.execute("SELECT (SELECT count(*) FROM devices), (SELECT count(*) FROM sensors)").fetchone()
    db.close()
    print(f"seed: provisioned {n[0]} devices, {n[1]} sensors in {seed_db}")


def make_app(seed_db):
    from fastapi import FastAPI, Header
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel

    class ReadingIn(BaseModel):
        sensor_uuid: Optional[str] = None
        value: Optional[float] = None
        ts: Optional[Union[float, str]] = None

    class PacketIn(BaseModel):
        device_uuid: str
        ts: Optional[Union[float, str]] = None
        packet_id: Optional[str] = None
        readings: List[ReadingIn]

    sync = os.environ.get("SEED_SYNC", "full")
    clear_after = int(os.environ.get("SEED_ALERT_CLEAR_AFTER", "1"))
    db = sqlite3.connect(seed_db, isolation_level=None, check_same_thread=False)
    db.executescript(f"PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; "
                     "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;")
    sensor_cache = {}                          # (device_id, sensor_uuid) -> (sensor_id, expires)
    state = {}                                 # sensor_id -> [last_ts, last_value, normal_run]
    broker = collections.deque(maxlen=10000)   # the in-memory ReadingBroker
    app = FastAPI()

    def err(status, detail, code):
        return JSONResponse({"detail": detail, "code": code}, status_code=status)

    def to_ms(ts, default):
        if ts is None:
            return default
        if isinstance(ts, (int, float)):
            return round(ts * 1000)
        return round(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)

    def resolve(device_id, sensor_uuid, now):
        hit = sensor_cache.get((device_id, sensor_uuid))
        if hit and hit[1] > now:
            return hit[0]
        row = db.execute("SELECT id, device_id, is_active FROM sensors WHERE sensor_uuid = ?",
                         (sensor_uuid,)).fetchone()
        sid = row[0] if row and row[1] == device_id and row[2] == 1 else None
        sensor_cache[(device_id, sensor_uuid)] = (sid, now + 60)
        return sid

    def sensor_state(sid):
        st = state.get(sid)
        if st is None:
            row = db.execute("SELECT last_ts, last_value, normal_run FROM sensor_state WHERE sensor_id = ?",
                             (sid,)).fetchone()
            st = state[sid] = list(row) if row else [None, None, 0]
        return st

    def outside(t, v):
        return (t[1] is not None and v < t[1]) or (t[2] is not None and v > t[2])

    def classify(v, ths, prev, late):
        """(class, most severe violated threshold id) per SPEC §4."""
        crit = [t for t in ths if t[0] == "critical" and outside(t, v)]
        if crit:
            return "alert", crit[0][4]
        if not late and prev is not None and any(
                t[3] is not None and abs(v - prev) > t[3] for t in ths):
            return "spike", None
        warn = [t for t in ths if t[0] == "warning" and outside(t, v)]
        if warn:
            return "warning", warn[0][4]
        return "normal", None

    def raise_alert(active, sid, device_id, kind, severity, th_id, v, ts, now):
        a = active.get((sid, kind))
        if a is None:
            cur = db.execute(
                "INSERT INTO alerts(sensor_id, device_id, threshold_id, severity, kind, status, first_value,"
                " last_value, hit_count, triggered_at, last_seen_at, message)"
                " VALUES (?,?,?,?,?,'active',?,?,1,?,?,?)",
                (sid, device_id, th_id, severity, kind, v, v, ts, ts, f"{kind} {severity} value={v}"))
            active[(sid, kind)] = [cur.lastrowid, severity]
            db.execute("INSERT INTO alert_notifications(alert_id, event, severity, created_at)"
                       " VALUES (?,'triggered',?,?)", (cur.lastrowid, severity, now))
            return
        escalate = a[1] == "warning" and severity == "critical"
        if escalate:
            a[1] = "critical"
            db.execute("INSERT INTO alert_notifications(alert_id, event, severity, created_at)"
                       " VALUES (?,'escalated','critical',?)", (a[0], now))
        db.execute("UPDATE alerts SET last_value = ?, last_seen_at = ?, hit_count = hit_count + 1,"
                   " threshold_id = COALESCE(?, threshold_id), severity = ? WHERE id = ?",
                   (v, ts, th_id, a[1], a[0]))

    def resolve_alerts(active, sid, ts, now):
        for kind in ("threshold", "delta_spike", "no_data"):
            a = active.pop((sid, kind), None)
            if a:
                db.execute("UPDATE alerts SET status = 'resolved', resolved_at = ? WHERE id = ?", (ts, a[0]))
                db.execute("INSERT INTO alert_notifications(alert_id, event, severity, created_at)"
                           " VALUES (?,'resolved',?,?)", (a[0], a[1], now))

    @app.get("/health")
    async def health():
        return {"status": "ok", "db": "ok", "broker": "ok"}

    @app.post("/ingest/packets")
    async def ingest(packet: PacketIn, x_device_key: Optional[str] = Header(None)):
        now_s = time.time()
        now = int(now_s * 1000)
        dev = db.execute("SELECT id, device_key_hash, is_active FROM devices WHERE device_uuid = ?",
                         (packet.device_uuid,)).fetchone()
        given = hashlib.sha256((x_device_key or "").encode()).hexdigest()
        if dev is None or not x_device_key or not hmac.compare_digest(given, dev[1]):
            return err(401, "missing or wrong device key", "unauthorized")
        if not dev[2]:
            return err(403, "device is inactive", "device_inactive")
        device_id = dev[0]
        if not packet.readings:
            return err(400, "readings is empty", "invalid_request")
        rejected, valid = [], []
        try:
            pts = to_ms(packet.ts, now)
        except ValueError:
            return err(400, "ts is not a timestamp", "invalid_request")
        for i, r in enumerate(packet.readings):
            sid = resolve(device_id, r.sensor_uuid, now_s) if r.sensor_uuid else None
            if sid is None:
                rejected.append({"index": i, "sensor_uuid": r.sensor_uuid, "reason": "unknown_sensor"})
            elif r.value is None or not math.isfinite(r.value):
                rejected.append({"index": i, "sensor_uuid": r.sensor_uuid, "reason": "invalid_value"})
            else:
                try:
                    valid.append((sid, r.value, to_ms(r.ts, pts)))
                except ValueError:
                    rejected.append({"index": i, "sensor_uuid": r.sensor_uuid,
                                     "reason": "invalid_timestamp"})
        body = {"device_uuid": packet.device_uuid, "accepted": len(valid), "rejected": rejected,
                "duplicate": False}
        if not valid:
            return JSONResponse(body, status_code=422)
        valid.sort(key=lambda x: x[2])  # applied in reading-time order
        ids = sorted({v[0] for v in valid})
        marks = ",".join("?" * len(ids))
        ths = collections.defaultdict(list)
        for sid, sev, lo, hi, dmax, tid in db.execute(
                "SELECT sensor_id, severity, min_value, max_value, delta_max, id FROM alert_thresholds"
                f" WHERE is_active = 1 AND sensor_id IN ({marks}) ORDER BY severity = 'warning'", ids):
            ths[sid].append((sev, lo, hi, dmax, tid))
        pending = {sid: list(sensor_state(sid)) for sid in ids}  # applied to `state` after COMMIT
        rows, clean = [], []
        db.execute("BEGIN IMMEDIATE")
        try:
            active = {(sid, kind): [aid, sev] for aid, sid, kind, sev in db.execute(
                f"SELECT id, sensor_id, kind, severity FROM alerts WHERE status = 'active'"
                f" AND sensor_id IN ({marks})", ids)}
            for sid, v, ts in valid:
                st = pending[sid]
                late = st[0] is not None and ts < st[0]
                cls, th_id = classify(v, ths[sid], st[1], late)
                rows.append((sid, v, ts, now, cls, int(late)))
                if late:
                    continue
                st[0], st[1] = ts, v
                if cls == "normal":
                    st[2] += 1
                    clean.append((sid, v, ts))
                    if st[2] >= clear_after:
                        resolve_alerts(active, sid, ts, now)
                else:
                    st[2] = 0
                    if cls == "spike":
                        raise_alert(active, sid, device_id, "delta_spike", "warning", None, v, ts, now)
                    else:
                        raise_alert(active, sid, device_id, "threshold",
                                    "critical" if cls == "alert" else "warning", th_id, v, ts, now)
            db.executemany("INSERT INTO sensor_readings(sensor_id, value, ts, ingested_at, class, late)"
                           " VALUES (?,?,?,?,?,?)", rows)
            db.executemany(
                "INSERT INTO sensor_state(sensor_id, last_ts, last_value, normal_run) VALUES (?,?,?,?)"
                " ON CONFLICT(sensor_id) DO UPDATE SET last_ts = excluded.last_ts,"
                " last_value = excluded.last_value, normal_run = excluded.normal_run",
                [(sid, st[0], st[1], st[2]) for sid, st in pending.items()])
            db.execute("UPDATE devices SET last_seen_at = ? WHERE id = ?", (now, device_id))
            db.execute("COMMIT")
        except Exception:
            db.execute("ROLLBACK")
            return err(503, "database error", "db_unavailable")
        state.update(pending)
        broker.extend(clean)
        return body

    return app


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "provision":
        provision(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "serve":
        import uvicorn
        uvicorn.run(make_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[3]), workers=1,
                    log_level="warning", access_log=False)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
