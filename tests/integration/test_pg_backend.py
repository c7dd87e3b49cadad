"""
PostgreSQL backend (DATABASE_URL=postgresql://..., docs/deployment.md): the
real binary against a real PostgreSQL server, a throwaway cluster that
scripts/pg-cluster.sh starts for this module's session and stops afterwards,
also when tests fail. The database is read with psycopg2 (python3-psycopg2),
with PostgreSQL's own types: timestamptz comes back as an aware datetime.

What only PostgreSQL has is tested here: the schema's types, N gateways on one
database (packet_id idempotency and alert transitions under concurrency), the
jobs on PostgreSQL, and a server that goes away and comes back while the
gateway runs (over HTTP and over MQTT). The outage tests stop the cluster: they
stay the last tests.
"""

import glob
import json
import math
import os
import random
import re
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import BACKEND

# PostgreSQL-specific behaviour, on a cluster of this module's own; it runs in the
# SQLite pass of scripts/run-integration.sh (the PostgreSQL pass runs the whole suite).
pytestmark = pytest.mark.skipif(BACKEND == "postgresql", reason="runs once, in the SQLite pass")

# The PostgreSQL schema version this binary creates (each backend numbers its own
# steps: SQLite has one more, the reading chain).
LATEST = int(re.search(r"#define PG_SCHEMA_LATEST (\d+)",
                       (Path(__file__).resolve().parents[2] / "src/store/pg_int.h")
                       .read_text()).group(1))

from conftest import (API_KEY, BIN, Cli, Gateway, base_env, iso_ms, now_ms,
                      post_unstamped_concurrently, provision_device, sha256_hex, uid, wait_until)

psycopg2 = pytest.importorskip(
    "psycopg2", reason="python3-psycopg2 is needed to read PostgreSQL (scripts/deps.sh test)")
from fake_explainer import FakeExplainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PG_CLUSTER = ROOT / "scripts" / "pg-cluster.sh"
DEADLINE_S = 30
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def utc(ms):
    return EPOCH + timedelta(milliseconds=ms)


def has_pg_server():
    return bool(os.environ.get("PG_BINDIR") or glob.glob("/usr/lib/postgresql/*/bin/initdb"))


# --------------------------------------------------------------------------- cluster


class Cluster:
    """The session's PostgreSQL cluster: fresh databases, SQL, stop/start the server."""

    def __init__(self, url):
        self.url = url  # its "iot" database; an admin connection for CREATE DATABASE
        self.n = 0

    def script(self, *args, timeout=120):
        p = subprocess.run(["sh", str(PG_CLUSTER), *args], capture_output=True, text=True,
                           timeout=timeout)
        assert p.returncode == 0, f"pg-cluster.sh {' '.join(args)}: {p.stderr}"
        return p.stdout

    def new_db(self):
        self.n += 1
        name = f"pgtest_{os.getpid()}_{self.n}"
        c = psycopg2.connect(self.url)
        c.autocommit = True
        try:
            c.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            c.close()
        return self.url.rpartition("/")[0] + "/" + name

    def down(self):
        """pg_ctl stop -m fast: connections are terminated, the data stays."""
        self.script("down", self.url)

    def up(self):
        self.script("up", self.url)


class Pg:
    """Reads one database with psycopg2 (a new autocommit connection per call)."""

    def __init__(self, url):
        self.url = url

    def query(self, sql, args=()):
        c = psycopg2.connect(self.url)
        c.autocommit = True
        try:
            cur = c.cursor()
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []
        finally:
            c.close()

    def scalar(self, sql, args=()):
        rows = self.query(sql, args)
        return rows[0][0] if rows else None

    def dicts(self, sql, args=()):
        c = psycopg2.connect(self.url)
        c.autocommit = True
        try:
            cur = c.cursor()
            cur.execute(sql, args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
        finally:
            c.close()


@pytest.fixture(scope="session")
def cluster(request):
    if not has_pg_server():
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    out = subprocess.run(["sh", str(PG_CLUSTER), "start"], capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, f"pg-cluster.sh start failed: {out.stderr}"
    url = out.stdout.strip().splitlines()[-1]
    assert url.startswith("postgresql://"), out.stdout

    def stop():
        subprocess.run(["sh", str(PG_CLUSTER), "stop", url], capture_output=True, timeout=120)

    request.addfinalizer(stop)
    return Cluster(url)


@pytest.fixture
def pgdb(cluster):
    """A fresh database, schema created by `db init`: (url, Cli, Pg)."""
    url = cluster.new_db()
    cli = Cli(url)
    cli.init()
    return url, cli, Pg(url)


@pytest.fixture
def gateways(tmp_path):
    """Starts gateways on a given database; stops them after the test."""
    started = []

    def start(url, env=None, name="pg-gw"):
        g = Gateway(url, tmp_path, env={"ALERT_CLEAR_AFTER": "1", **(env or {})},
                    name=f"{name}{len(started)}")
        started.append(g)
        return g.start()

    yield start
    for g in started:
        try:
            g.stop()
        except AssertionError:
            g.kill()


def post_ok(g, dev, readings, **extra):
    r = g.post_packet(dev.packet(readings, **extra), key=dev.key)
    assert r.status == 200, r
    return r.json()


# --------------------------------------------------------------------------- schema


def test_db_init_is_idempotent_and_versioned(cluster):
    url = cluster.new_db()
    cli = Cli(url)
    for _ in range(2):
        out = cli.json("db", "init")
        assert out == {"backend": "postgresql", "schema_version": LATEST}, out
    db = Pg(url)
    assert db.query("SELECT version FROM schema_version") == [(LATEST,)]
    tables = {r[0] for r in db.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    assert {"devices", "sensors", "sensor_readings", "alert_thresholds", "alerts",
            "alert_notifications", "ml_models", "predictions", "ml_events",
            "schema_version", "ingest_packets", "sensor_state"} <= tables, tables


def test_concurrent_db_init_applies_the_schema_once(cluster):
    url = cluster.new_db()
    procs = [subprocess.Popen([BIN, "db", "init"], env=base_env(url), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert json.loads(out) == {"backend": "postgresql", "schema_version": LATEST}
    assert Pg(url).query("SELECT version FROM schema_version") == [(LATEST,)]


def test_schema_uses_postgresql_types(pgdb):
    _, _, db = pgdb
    cols = {(t, c): (typ, ident) for t, c, typ, ident in db.query(
        "SELECT table_name, column_name, data_type, is_identity FROM information_schema.columns"
        " WHERE table_schema = 'public'")}
    for t in ("devices", "sensors", "alert_thresholds", "alerts",
              "alert_notifications", "ml_models", "predictions", "ml_events"):
        assert cols[(t, "id")] == ("bigint", "YES"), t
    # partitioned (schema 5): PostgreSQL 15 has no identity there, a sequence instead
    assert cols[("sensor_readings", "id")] == ("bigint", "NO")
    assert db.scalar("SELECT column_default FROM information_schema.columns WHERE"
                     " table_name = 'sensor_readings' AND column_name = 'id'") == (
        "nextval('sensor_readings_id_seq'::regclass)")
    for t, c in [("devices", "created_at"), ("devices", "last_seen_at"),
                 ("sensor_readings", "ts"), ("sensor_readings", "ingested_at"),
                 ("alerts", "triggered_at"), ("alerts", "last_seen_at"), ("alerts", "resolved_at"),
                 ("alert_notifications", "created_at"), ("predictions", "target_ts"),
                 ("predictions", "predicted_at"), ("ml_events", "created_at")]:
        assert cols[(t, c)][0] == "timestamp with time zone", (t, c)
    for t, c in [("sensor_readings", "value"), ("alerts", "first_value"),
                 ("predictions", "predicted_value"), ("alert_thresholds", "min_value")]:
        assert cols[(t, c)][0] == "double precision", (t, c)
    for t, c in [("devices", "is_active"), ("sensors", "is_active"), ("sensor_readings", "late"),
                 ("predictions", "is_anomaly"), ("alert_thresholds", "is_active")]:
        assert cols[(t, c)][0] == "integer", (t, c)  # flags 0/1: the same SQL on both backends
    for t, c in [("ml_models", "params"), ("predictions", "explanation"),
                 ("ml_events", "payload")]:
        assert cols[(t, c)][0] == "text", (t, c)  # JSON verbatim, not jsonb


# --------------------------------------------------------------------------- provisioning


def test_provisioning_writes_rows(pgdb):
    url, cli, db = pgdb
    key = "k-" + uid()
    before = datetime.now(timezone.utc)
    dev = provision_device(cli, n_sensors=2, key=key)
    after = datetime.now(timezone.utc)
    name, khash, active, created = db.query(
        "SELECT name, device_key_hash, is_active, created_at FROM devices WHERE id = %s",
        (dev.id,))[0]
    assert khash == sha256_hex(key) and active == 1
    assert before - timedelta(seconds=1) <= created <= after + timedelta(seconds=1)
    uuids = [r[0] for r in db.query(
        "SELECT sensor_uuid FROM sensors WHERE device_id = %s ORDER BY id", (dev.id,))]
    assert uuids == [s.uuid for s in dev.sensors]
    out = cli.json("threshold", "set", "--sensor", dev.sensors[0].uuid, "--severity", "warning",
                   "--max", "10.5", "--delta-max", "3")
    out2 = cli.json("threshold", "set", "--sensor", dev.sensors[0].uuid, "--severity", "warning",
                    "--min", "-1")
    assert db.query("SELECT id, min_value, max_value, delta_max, is_active FROM alert_thresholds"
                    " ORDER BY id") == [(out["threshold_id"], None, 10.5, 3.0, 0),
                                        (out2["threshold_id"], -1.0, None, None, 1)]
    p = cli.run("device", "add", "--uuid", dev.uuid, "--name", "again")
    assert p.returncode != 0 and "exists" in p.stderr, p.stderr
    assert cli.json("sensor", "disable", dev.sensors[1].uuid)["is_active"] is False
    assert db.scalar("SELECT is_active FROM sensors WHERE id = %s", (dev.sensors[1].id,)) == 0


# --------------------------------------------------------------------------- packets


def test_packets_stored_with_timestamptz(pgdb, gateways):
    url, cli, db = pgdb
    dev = provision_device(cli, n_sensors=2)
    g = gateways(url)
    t = now_ms() - 3_600_000 + 123
    before = datetime.now(timezone.utc)
    body = post_ok(g, dev, [(0, 21.5, iso_ms(t)), (1, -3.25, iso_ms(t + 1, offset_minutes=90)),
                            (0, 22.5, (t + 2) / 1000.0)], packet_id="p-1")
    after = datetime.now(timezone.utc)
    assert body == {"device_uuid": dev.uuid, "accepted": 3, "rejected": [], "duplicate": False}
    rows = db.query("SELECT sensor_id, value, ts, ingested_at, class, late,"
                    " (extract(epoch from ts) * 1000)::bigint FROM sensor_readings ORDER BY ts")
    assert [(r[0], r[1], r[2], r[4], r[5], r[6]) for r in rows] == [
        (dev.sensors[0].id, 21.5, utc(t), "normal", 0, t),
        (dev.sensors[1].id, -3.25, utc(t + 1), "normal", 0, t + 1),
        (dev.sensors[0].id, 22.5, utc(t + 2), "normal", 0, t + 2)]
    for r in rows:
        assert r[2].utcoffset() is not None, "timestamptz comes back time-zone aware"
        assert before - timedelta(seconds=1) <= r[3] <= after + timedelta(seconds=1)
    seen = db.scalar("SELECT last_seen_at FROM devices WHERE id = %s", (dev.id,))
    assert before - timedelta(seconds=1) <= seen <= after + timedelta(seconds=1)
    assert db.scalar("SELECT response FROM ingest_packets WHERE packet_id = 'p-1'") is not None

    # A retry is answered from the database; the status endpoint reads it back.
    r = g.post_packet(dev.packet([(0, 99.0)], packet_id="p-1"), key=dev.key)
    assert r.status == 200 and r.json() == {**body, "duplicate": True}, r
    assert db.scalar("SELECT count(*) FROM sensor_readings") == 3
    st = g.status(dev.uuid, key=dev.key).json()
    s0 = [x for x in st["sensors"] if x["sensor_uuid"] == dev.sensors[0].uuid][0]
    assert s0["last_ts"] == iso_ms(t + 2) and s0["last_value"] == 22.5 and s0["state"] == "normal"

    # One invalid reading: partial success; none valid: 422 and nothing stored.
    r = g.post_packet(dev.packet([(0, 1.0), (0, "x")]), key=dev.key)
    assert r.status == 200 and r.json()["accepted"] == 1, r
    r = g.post_packet(dev.packet([(0, "x")]), key=dev.key)
    assert r.status == 422, r
    assert db.scalar("SELECT count(*) FROM sensor_readings") == 4


def test_alert_lifecycle(pgdb, gateways):
    url, cli, db = pgdb
    dev = provision_device(cli, n_sensors=1)
    s = dev.sensors[0]
    w = cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "warning", "--min", "0",
                 "--max", "10")
    c = cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "critical", "--min", "-10",
                 "--max", "20", "--delta-max", "100")
    g = gateways(url)
    t = now_ms() - 600_000
    vals = [5, 15, 16, 25, 12, 5, 7]  # normal, warning x2, critical, warning, normal, normal
    classes = []
    for i, v in enumerate(vals):
        post_ok(g, dev, [(0, v, iso_ms(t + i * 1000))])
    classes = [r[0] for r in db.query("SELECT class FROM sensor_readings ORDER BY ts")]
    assert classes == ["normal", "warning", "warning", "alert", "warning", "normal", "normal"]
    [a] = db.dicts("SELECT * FROM alerts")
    assert a["kind"] == "threshold" and a["status"] == "resolved" and a["severity"] == "critical"
    assert a["hit_count"] == 4 and a["first_value"] == 15 and a["last_value"] == 12
    assert a["threshold_id"] == c["threshold_id"] and a["device_id"] == dev.id
    assert a["triggered_at"] == utc(t + 1000) and a["last_seen_at"] == utc(t + 4000)
    assert a["resolved_at"] == utc(t + 5000)
    assert [r[0] for r in db.query("SELECT event FROM alert_notifications WHERE alert_id = %s"
                                   " ORDER BY id", (a["id"],))] == [
        "triggered", "escalated", "resolved"]
    assert w["threshold_id"] != c["threshold_id"]
    st = db.query("SELECT last_ts, last_value, last_class, normal_run FROM sensor_state"
                  " WHERE sensor_id = %s", (s.id,))
    assert st == [(utc(t + 6000), 7.0, "normal", 2)]
    # A late reading: stored with its range class, changes nothing.
    post_ok(g, dev, [(0, 50, iso_ms(t - 1000))])
    assert db.query("SELECT class, late FROM sensor_readings WHERE ts = %s", (utc(t - 1000),)) == [
        ("alert", 1)]
    assert db.scalar("SELECT count(*) FROM alerts") == 1


# --------------------------------------------------------------------------- N gateways


def test_packet_id_stored_once_across_two_gateways(pgdb, gateways):
    url, cli, db = pgdb
    dev = provision_device(cli, n_sensors=3)
    g1, g2 = gateways(url), gateways(url)
    t = now_ms() - 60_000
    rounds = 25
    for k in range(rounds):
        pid = f"pkt-{k}"
        bodies = [dev.packet([(i, float(k * 10 + i), iso_ms(t + k)) for i in range(3)],
                             packet_id=pid),
                  # the id wins over the body: a different body with the same id
                  dev.packet([(0, 1000.0 + k, iso_ms(t + k))], packet_id=pid)]
        barrier = threading.Barrier(2)
        out = [None, None]

        def send(i, g, body):
            barrier.wait()
            out[i] = g.post_packet(body, key=dev.key)

        th = [threading.Thread(target=send, args=(i, g, bodies[(i + k) % 2]))
              for i, g in enumerate((g1, g2))]
        for x in th:
            x.start()
        for x in th:
            x.join(60)
        assert all(r is not None and r.status == 200 for r in out), out
        answers = [r.json() for r in out]
        assert sorted(a["duplicate"] for a in answers) == [False, True], answers
        first = [a for a in answers if not a["duplicate"]][0]
        assert [a for a in answers if a["duplicate"]][0] == {**first, "duplicate": True}
        stored = db.scalar("SELECT count(*) FROM sensor_readings WHERE ts = %s", (utc(t + k),))
        assert stored == first["accepted"], (k, stored, answers)
    assert db.scalar("SELECT count(*) FROM ingest_packets") == rounds
    assert g1.stop() == 0 and g2.stop() == 0


def range_class(v):
    if v < -10 or v > 20:
        return "alert"
    if v < 0 or v > 10:
        return "warning"
    return "normal"


def replay(readings):
    """
    The alert rules of SPEC §4 (ALERT_CLEAR_AFTER 1, no delta_max), applied to
    one sensor's readings in the order the gateways stored them (id order:
    each sensor's rows are written under its lock). Returns the alerts and
    the notification events they must have produced.
    """
    has_last, last_ts, run, active, alerts, events = False, None, 0, None, [], []
    for value, ts, cls, late in readings:
        want_late = has_last and ts < last_ts
        assert (late == 1) == want_late, (value, ts, cls, late, last_ts)
        assert cls == range_class(value), (value, cls)
        if want_late:
            continue
        if cls != "normal":
            sev = "critical" if cls == "alert" else "warning"
            if active is None:
                active = {"severity": sev, "status": "active", "first_value": value,
                          "last_value": value, "hit_count": 1}
                alerts.append(active)
                events.append("triggered")
            else:
                active["last_value"] = value
                active["hit_count"] += 1
                if sev == "critical" and active["severity"] == "warning":
                    active["severity"] = "critical"
                    events.append("escalated")
        run = run + 1 if cls == "normal" else 0
        if cls == "normal" and active is not None:
            active["status"] = "resolved"
            events.append("resolved")
            active = None
        has_last, last_ts = True, ts
    return alerts, events


def test_two_gateways_on_the_same_sensors_keep_alerts_exact(pgdb, gateways):
    url, cli, db = pgdb
    devs = [provision_device(cli, n_sensors=4) for _ in range(2)]
    for d in devs:
        for s in d.sensors:
            cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "warning", "--min", "0",
                     "--max", "10")
            cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "critical", "--min",
                     "-10", "--max", "20")
    gws = [gateways(url), gateways(url)]
    t0 = now_ms() - 3_600_000
    clock = iter(range(10**9))
    clock_lock = threading.Lock()
    errors, statuses = [], []

    def worker(seed, g):
        rnd = random.Random(seed)
        for k in range(40):
            d = devs[rnd.randrange(2)]
            idx = rnd.sample(range(4), rnd.randint(1, 4))
            with clock_lock:
                ts = t0 + next(clock)
            readings = [(i, rnd.choice([rnd.uniform(0, 10), rnd.uniform(0, 10), rnd.uniform(11, 19),
                                        rnd.uniform(-9, -1), rnd.uniform(21, 40)]),
                         iso_ms(ts + rnd.randint(-3, 3))) for i in idx]
            body = d.packet(readings, packet_id=f"w{seed}-{k}")
            for _ in range(20):  # a 503 (deadlock victim, lock timeout) is retried, like a device
                r = g.post_packet(body, key=d.key)
                statuses.append(r.status)
                if r.status != 503:
                    break
                time.sleep(0.05)
            if r.status != 200:
                errors.append(r)

    threads = [threading.Thread(target=worker, args=(n, gws[n % 2])) for n in range(8)]
    for x in threads:
        x.start()
    for x in threads:
        x.join(300)
    assert not errors, errors[:3]
    assert statuses.count(200) == 8 * 40

    for d in devs:
        for s in d.sensors:
            rows = db.query("SELECT value, (extract(epoch from ts) * 1000)::bigint, class, late"
                            " FROM sensor_readings WHERE sensor_id = %s ORDER BY id", (s.id,))
            want, want_events = replay(rows)
            got = db.dicts("SELECT severity, status, first_value, last_value, hit_count FROM"
                           " alerts WHERE sensor_id = %s AND kind = 'threshold' ORDER BY id",
                           (s.id,))
            assert got == want, s.uuid
            assert sum(a["status"] == "active" for a in got) <= 1
            violating = sum(1 for v, _, c, late in rows if late == 0 and c != "normal")
            assert sum(a["hit_count"] for a in got) == violating
            events = [r[0] for r in db.query(
                "SELECT n.event FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id"
                " WHERE a.sensor_id = %s ORDER BY n.id", (s.id,))]
            assert sorted(events) == sorted(want_events), s.uuid
    for g in gws:
        assert g.stop() == 0, g.log_tail()


def test_unstamped_readings_at_two_gateways_are_never_late(pgdb, gateways):
    url, cli, db = pgdb
    dev = provision_device(cli, n_sensors=1)
    s = dev.sensors[0]
    cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "critical", "--min", "-100",
             "--max", "50")
    env = {"RATE_LIMIT_IP_RPS": "0", "RATE_LIMIT_DEVICE_RPS": "0"}
    gws = [gateways(url, env=env), gateways(url, env=env)]
    statuses = post_unstamped_concurrently(gws, dev, 0, 60.0, threads=4, per_thread=40)
    assert statuses == [200] * 160, sorted(set(statuses))
    rows = db.query("SELECT (extract(epoch from ts) * 1000)::bigint, late FROM sensor_readings"
                    " WHERE sensor_id = %s", (s.id,))
    assert len(rows) == 160
    assert sum(late for _, late in rows) == 0, "a server-stamped reading was stored late"
    assert len({t for t, _ in rows}) == 160, "two readings of one sensor share a time"
    assert db.query("SELECT hit_count, status FROM alerts WHERE sensor_id = %s",
                    (s.id,)) == [(160, "active")]


def test_a_batch_touches_each_device_once_with_its_newest_packet(pgdb, gateways):
    """Within a transaction the writer buffers each device's last_seen_at and writes them in
    one statement: with several packets of each device per batch, every device ends with
    the time of its newest stored packet (its readings' ingested_at), never an older one."""
    url, cli, db = pgdb
    devs = [provision_device(cli, n_sensors=1) for _ in range(3)]
    g = gateways(url, env={"RATE_LIMIT_IP_RPS": "0", "RATE_LIMIT_DEVICE_RPS": "0"})
    for d in devs:
        assert post_unstamped_concurrently([g], d, 0, 1.0, threads=4, per_thread=15) == [200] * 60
    for d in devs:
        seen, newest = db.query(
            "SELECT d.last_seen_at, (SELECT max(r.ingested_at) FROM sensor_readings r"
            " WHERE r.sensor_id = %s) FROM devices d WHERE d.id = %s", (d.sensors[0].id, d.id))[0]
        assert seen == newest, (d.uuid, seen, newest)


# --------------------------------------------------------------------------- jobs


JOB_ENV = {"BASELINE_WINDOW": "10", "BASELINE_HORIZON_MIN": "10", "BASELINE_LOOKBACK_S": "86400",
           "ANOMALY_Z": "3", "ANOMALY_SCORE_THRESHOLD": "0.7", "NO_DATA_AFTER_S": "0",
           "LOG_LEVEL": "info"}


def run_job(url, job, **env):
    p = subprocess.run([BIN, "job", job], env=base_env(url, {**JOB_ENV, **env}),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    [line] = p.stdout.splitlines()
    name, _, rest = line.partition(": ")
    assert name == job, line
    return {k: int(v) for k, v in (tok.split("=") for tok in rest.split())}


def post_series(g, dev, idx, values, end_ms, step_ms=1000):
    ts = [end_ms - (len(values) - 1 - i) * step_ms for i in range(len(values))]
    post_ok(g, dev, [(idx, v, iso_ms(x)) for v, x in zip(values, ts)])
    return ts


def test_baseline_job_on_postgresql(pgdb, gateways):
    url, cli, db = pgdb
    dev = provision_device(cli, n_sensors=3)
    s0, s1, s2 = dev.sensors
    cli.json("threshold", "set", "--sensor", s2.uuid, "--severity", "critical", "--max", "100")
    g = gateways(url)
    end = now_ms() - 60_000
    ts = post_series(g, dev, 0, [float(x) for x in range(1, 13)], end)
    post_series(g, dev, 1, [20.0] * 24 + [95.0], end)
    post_series(g, dev, 2, [150.0] * 10, end)
    before = datetime.now(timezone.utc)
    kv = run_job(url, "baseline", BASELINE_HORIZON_MIN=15)
    assert kv["sensors"] == 3 and kv["predictions"] == 3 and kv["anomalies"] == 1, kv
    assert kv["events_opened"] == 1 and kv["failed"] == 0, kv
    p = {r["sensor_id"]: r for r in db.dicts("SELECT * FROM predictions")}
    assert p[s0.id]["predicted_value"] == 7.5 and p[s0.id]["horizon_minutes"] == 15
    assert p[s0.id]["target_ts"] == utc(ts[-1] + 15 * 60_000)
    assert p[s0.id]["predicted_at"] >= before - timedelta(seconds=1)
    assert p[s0.id]["confidence"] == pytest.approx(1 / (1 + math.sqrt(99 / 12) / 7.5), rel=1e-12)
    assert p[s1.id]["is_anomaly"] == 1 and p[s1.id]["anomaly_score"] > 0.9
    assert p[s0.id]["is_anomaly"] == 0 and p[s0.id]["explanation"] is None
    [m] = db.dicts("SELECT * FROM ml_models")
    assert {x["model_id"] for x in p.values()} == {m["id"]}
    assert json.loads(m["params"])["window"] == 10
    [e] = db.dicts("SELECT * FROM ml_events")
    assert e["sensor_id"] == s2.id and e["status"] == "active" and e["severity"] == "critical"
    assert e["prediction_id"] == p[s2.id]["id"] and json.loads(e["payload"])["bound"] == "max"
    # A second run: new predictions, the same model, no second event while one is active.
    kv = run_job(url, "baseline")
    assert kv["predictions"] == 3 and kv["events_opened"] == 0, kv
    assert db.scalar("SELECT count(*) FROM ml_models") == 1
    assert db.scalar("SELECT count(*) FROM ml_events") == 1


def test_device_delete_on_postgresql(pgdb, gateways):
    """`device delete --yes` on PostgreSQL: readings, state, thresholds, alerts, notifications,
    predictions, ML events and packet ids of the device go in one transaction (the foreign
    keys would refuse any leftover); the other device keeps every row; a gateway that still
    holds the device stores nothing more for it (the foreign keys refuse it)."""
    url, cli, db = pgdb
    gone, kept = provision_device(cli, n_sensors=2), provision_device(cli, n_sensors=1)
    for d in (gone, kept):
        cli.json("threshold", "set", "--sensor", d.sensors[0].uuid, "--severity", "critical",
                 "--max", "100")
    g = gateways(url)
    end = now_ms() - 60_000
    for d in (gone, kept):
        post_series(g, d, 0, [150.0] * 10, end)  # an alert, and a baseline ML event
        post_ok(g, d, [(0, 1.0)], packet_id="p-1")
    assert run_job(url, "baseline")["events_opened"] == 2

    def rows(dev):
        ids = [s.id for s in dev.sensors]
        out = {t: db.scalar(f"SELECT count(*) FROM {t} WHERE sensor_id = ANY(%s)", (ids,))
               for t in ("sensor_readings", "sensor_state", "alert_thresholds", "alerts",
                         "predictions", "ml_events")}
        out.update({f"{t}.device": db.scalar(f"SELECT count(*) FROM {t} WHERE device_id = %s",
                                             (dev.id,))
                    for t in ("sensors", "alerts", "ml_events", "ingest_packets")})
        out["alert_notifications"] = db.scalar(
            "SELECT count(*) FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id"
            " WHERE a.device_id = %s", (dev.id,))
        out["devices"] = db.scalar("SELECT count(*) FROM devices WHERE id = %s", (dev.id,))
        return out

    before_gone, before_kept = rows(gone), rows(kept)
    assert all(n > 0 for n in before_gone.values()), before_gone
    out = cli.json("device", "delete", gone.uuid, "--yes")
    assert out == {"device_id": gone.id, "device_uuid": gone.uuid, "deleted": True,
                   "sensors": 2, "readings": 11}
    assert all(n == 0 for n in rows(gone).values()), rows(gone)
    assert rows(kept) == before_kept
    assert db.scalar("SELECT count(*) FROM ml_models") == 1

    r = g.post_packet(gone.packet([(0, 5.0)]), key=gone.key)  # the gateway's cache: 60 s
    assert r.status == 401 and r.json()["detail"] == "this device no longer exists", r
    assert all(n == 0 for n in rows(gone).values()), rows(gone)
    post_ok(g, kept, [(0, 5.0)])
    p = cli.run("device", "delete", gone.uuid, "--yes")
    assert p.returncode == 1 and f"no device {gone.uuid}" in p.stderr, p.stderr


def writer_waits_for_a_lock(db):
    return db.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                     " 'iot-ingest' AND wait_event_type = 'Lock'")


def post_in_background(g, dev, readings, **extra):
    out = {}
    body = dev.packet(readings, **extra)
    t = threading.Thread(target=lambda: out.setdefault("r", g.post_packet(body, key=dev.key)))
    t.start()
    return t, out


def delete_device_while_its_packet_waits(g, db, url, dev, readings, **extra):
    """Deletes dev in a transaction that commits while the writer waits for it: the answer.
    Its readings and sensor states go first, as `device delete` does."""
    deleter = psycopg2.connect(url)
    try:
        cur = deleter.cursor()
        for table in ("sensor_readings", "sensor_state"):
            cur.execute(f"DELETE FROM {table} WHERE sensor_id IN"
                        " (SELECT id FROM sensors WHERE device_id = %s)", (dev.id,))
        cur.execute("DELETE FROM sensors WHERE device_id = %s", (dev.id,))
        cur.execute("DELETE FROM devices WHERE id = %s", (dev.id,))
        t, out = post_in_background(g, dev, readings, **extra)
        wait_until(lambda: writer_waits_for_a_lock(db), DEADLINE_S, what="the writer waiting")
        deleter.commit()
        t.join(DEADLINE_S)
        return out["r"]
    finally:
        deleter.close()


def test_writer_takes_the_foreign_keys_locks_once_per_batch(pgdb, gateways):
    """The writer's session skips the per-row foreign-key triggers (a superuser may set
    session_replication_role) and keeps the batch's sensors itself: the lock on a sensor's
    state row, or for a sensor without one (its first reading) the triggers' KEY SHARE lock.
    So nothing changes for anyone else: a new sensor held FOR UPDATE holds the packet back,
    and a device deleted while a packet waits for it leaves no row behind, whether its
    sensors had readings before or not."""
    url, cli, db = pgdb
    dev, doomed = provision_device(cli, n_sensors=2), provision_device(cli, n_sensors=1)
    g = gateways(url, env={"DB_BUSY_TIMEOUT_MS": "30000"})
    assert "event=pg_writer_session foreign_keys=per_batch" in g.log_text()

    holder = psycopg2.connect(url)
    try:
        holder.cursor().execute("SELECT id FROM sensors WHERE id = %s FOR UPDATE",
                                (dev.sensors[1].id,))
        t, out = post_in_background(g, dev, [(0, 1.0), (1, 2.0)])
        wait_until(lambda: writer_waits_for_a_lock(db), DEADLINE_S, what="the writer waiting")
        assert "r" not in out and db.scalar("SELECT count(*) FROM sensor_readings") == 0
        holder.rollback()
        t.join(DEADLINE_S)
        assert out["r"].status == 200 and out["r"].json()["accepted"] == 2, out
    finally:
        holder.close()

    # A device whose deletion is under way when its packet (with a packet id) comes: the
    # packet waits for the deleting transaction, finds the sensor gone and stores nothing.
    r = delete_device_while_its_packet_waits(g, db, url, doomed, [(0, 3.0)], packet_id="p-1")
    assert r.status in (401, 503), r
    sid = doomed.sensors[0].id
    for table in ("sensor_readings", "sensor_state", "alerts"):
        assert db.scalar(f"SELECT count(*) FROM {table} WHERE sensor_id = %s", (sid,)) == 0, table
    assert db.scalar("SELECT count(*) FROM ingest_packets") == 0
    assert db.scalar("SELECT count(*) FROM devices WHERE id = %s", (doomed.id,)) == 0

    # The same for a device whose sensor has a state row: the packet waits for that row's
    # lock, finds the row gone, and the sensor too (without the KEY SHARE of first readings
    # the writer would create the state row again and store the reading of a sensor that
    # no longer exists: no trigger checks it on its session).
    known = provision_device(cli, n_sensors=1)
    post_ok(g, known, [(0, 5.0)])
    r = delete_device_while_its_packet_waits(g, db, url, known, [(0, 6.0)])
    assert r.status in (401, 503), r
    sid = known.sensors[0].id
    for table in ("sensor_readings", "sensor_state", "alerts"):
        assert db.scalar(f"SELECT count(*) FROM {table} WHERE sensor_id = %s", (sid,)) == 0, table
    assert db.scalar("SELECT count(*) FROM sensors WHERE id = %s", (sid,)) == 0
    post_ok(g, dev, [(0, 4.0)])


def test_a_role_that_may_not_set_the_replication_role_keeps_per_row_checks(pgdb, gateways):
    """Without superuser or `GRANT SET ON PARAMETER session_replication_role`, the writer
    keeps PostgreSQL's per-row foreign-key checks and says so at start; with the grant it
    checks per batch. Ingest stores the same either way."""
    url, cli, db = pgdb
    dev = provision_device(cli, n_sensors=2)
    role = f"gw_{os.getpid()}_{uid()[:8]}".replace("-", "_")
    dbname = url.rpartition("/")[2]
    db.query(f"CREATE ROLE {role} LOGIN")
    db.query(f'GRANT ALL ON DATABASE "{dbname}" TO {role};'
             f" GRANT ALL ON SCHEMA public TO {role};"
             f" GRANT ALL ON ALL TABLES IN SCHEMA public TO {role};"
             f" GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role};"
             f" GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}")
    role_url = url.replace("://postgres@", f"://{role}@", 1)
    assert role_url != url, url
    g = gateways(role_url)
    assert ("event=pg_writer_session foreign_keys=per_row reason=\"this role may not set"
            in g.log_text()), g.log_tail()
    post_ok(g, dev, [(0, 1.0), (1, 2.0)])
    assert g.stop() == 0

    db.query(f"GRANT SET ON PARAMETER session_replication_role TO {role}")
    g = gateways(role_url)
    assert "event=pg_writer_session foreign_keys=per_batch" in g.log_text(), g.log_tail()
    post_ok(g, dev, [(0, 3.0), (1, 4.0)])
    assert db.scalar("SELECT count(*) FROM sensor_readings") == 4


def test_explain_job_stores_the_answer_verbatim(pgdb, gateways):
    url, cli, db = pgdb
    dev = provision_device(cli, n_sensors=1)
    g = gateways(url)
    post_series(g, dev, 0, [20.0] * 24 + [95.0], now_ms() - 10_000)
    assert run_job(url, "baseline")["anomalies"] == 1
    answer = b'{"z": 1,  "a": ["\\u00e9", 2.50],"k": {"b": null}}'  # key order and spacing kept
    with FakeExplainer(lambda req: (200, answer, 0)) as fx:
        kv = run_job(url, "explain", AI_EXPLAINER_URL=fx.url)
        assert kv["candidates"] == 1 and kv["stored"] == 1 and kv["failed"] == 0, kv
        [req] = fx.snapshot()
        assert req.json["sensor"]["uuid"] == dev.sensors[0].uuid
        assert len(req.json["recent_readings"]) == 20
    assert db.scalar("SELECT explanation FROM predictions") == answer.decode()
    with FakeExplainer(lambda req: (200, answer, 0)) as fx:
        assert run_job(url, "explain", AI_EXPLAINER_URL=fx.url)["candidates"] == 0


def test_silence_job_and_gateway_resolve_on_postgresql(pgdb, gateways):
    url, cli, db = pgdb
    dev = provision_device(cli, n_sensors=3)
    silent, fresh, never = dev.sensors
    g = gateways(url)
    t = now_ms()
    post_ok(g, dev, [(0, 1.0, iso_ms(t - 10_000)), (1, 1.0, iso_ms(t + 200_000))])
    created = db.scalar("SELECT created_at FROM sensors WHERE id = %s", (never.id,))
    wait_until(lambda: datetime.now(timezone.utc) - created > timedelta(seconds=1.5), 10,
               what="sensor created 1.5 s ago")
    before = datetime.now(timezone.utc)
    kv = run_job(url, "silence", NO_DATA_AFTER_S=1)
    assert kv["silent"] == 2 and kv["alerts_opened"] == 2, kv
    alerts = {r["sensor_id"]: r for r in db.dicts("SELECT * FROM alerts WHERE kind = 'no_data'")}
    assert set(alerts) == {silent.id, never.id}
    for a in alerts.values():
        assert a["status"] == "active" and a["severity"] == "warning"
        assert a["triggered_at"] >= before - timedelta(seconds=1) and a["threshold_id"] is None
    assert run_job(url, "silence", NO_DATA_AFTER_S=1)["alerts_opened"] == 0
    # The job locked the never-reported sensor's state row to open its alert, and
    # left no row behind: a sensor without a reading has no sensor_state row (as on
    # SQLite), never one of NULLs.
    assert db.query("SELECT sensor_id FROM sensor_state WHERE last_ts IS NULL") == []
    assert db.query("SELECT count(*) FROM sensor_state WHERE sensor_id = %s", (never.id,)) == [(0,)]
    # The running gateway honours the alerts the job opened: the next reading resolves them.
    t1 = now_ms()
    post_ok(g, dev, [(0, 2.0, iso_ms(t1)), (2, 3.0, iso_ms(t1))])
    for sid in (silent.id, never.id):
        assert db.query("SELECT status, resolved_at FROM alerts WHERE sensor_id = %s",
                        (sid,)) == [("resolved", utc(t1))]
        assert [r[0] for r in db.query(
            "SELECT n.event FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id"
            " WHERE a.sensor_id = %s ORDER BY n.id", (sid,))] == ["triggered", "resolved"]


# --------------------------------------------------------------------------- partitions

READING_COLS = "id, sensor_id, value, ts, ingested_at, class, late"
# Schema 5 and 4 taken back to the shape of version 3: sensor_readings a plain table
# with an identity id, no rollups (every row kept, in the same columns).
BACK_TO_3 = """
CREATE TABLE r3(id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  sensor_id bigint NOT NULL REFERENCES sensors(id), value double precision NOT NULL,
  ts timestamptz NOT NULL, ingested_at timestamptz NOT NULL,
  class text NOT NULL CHECK (class IN ('normal','warning','spike','alert')),
  late integer NOT NULL DEFAULT 0 CHECK (late IN (0, 1)));
INSERT INTO r3 SELECT {cols} FROM sensor_readings;
SELECT setval(pg_get_serial_sequence('r3', 'id'), (SELECT max(id) FROM r3));
DROP TABLE sensor_readings CASCADE;
DROP TABLE sensor_readings_hourly, rollup_state;
DROP FUNCTION sensor_readings_rolled_up(), sensor_readings_ensure_partitions(timestamptz, timestamptz),
  sensor_readings_detach_expired(timestamptz), sensor_readings_drop_detached(timestamptz),
  sensor_readings_empty_detached(timestamptz), sensor_readings_detached(timestamptz),
  sensor_readings_month_end(text);
ALTER TABLE r3 RENAME TO sensor_readings;
ALTER INDEX r3_pkey RENAME TO sensor_readings_pkey;
CREATE INDEX sensor_readings_sensor_ts ON sensor_readings(sensor_id, ts);
UPDATE schema_version SET version = 3;
""".format(cols=READING_COLS)


def partitions(db):
    return sorted(r[0] for r in db.query(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'sensor_readings'::regclass"))


def month_name(ms):
    d = utc(ms)
    return f"sensor_readings_p{d.year:04d}{d.month:02d}"


def test_upgrade_from_schema_3_keeps_every_row_and_partitions_by_month(pgdb, gateways):
    url, cli, db = pgdb
    dev = provision_device(cli, n_sensors=2)
    g = gateways(url, env={"MAX_PAST_AGE_S": 200 * 86400})
    rnd = random.Random(3)
    t = now_ms()
    for k in range(40):  # 2,000 readings over 150 days, a quarter of them late
        post_ok(g, dev, [(rnd.randrange(2), rnd.randint(0, 50),
                          iso_ms(t - rnd.randint(0, 150 * 86400_000))) for _ in range(50)])
    g.stop()
    c = psycopg2.connect(url)
    try:
        c.cursor().execute(BACK_TO_3)
        c.commit()
    finally:
        c.close()
    assert db.scalar("SELECT version FROM schema_version") == 3
    before = db.query(f"SELECT {READING_COLS} FROM sensor_readings ORDER BY id")
    assert len(before) == 2000 and sum(r[6] for r in before) > 100

    assert cli.json("db", "init") == {"backend": "postgresql", "schema_version": LATEST}
    assert db.query(f"SELECT {READING_COLS} FROM sensor_readings ORDER BY id") == before
    parts = partitions(db)
    assert "sensor_readings_default" in parts
    assert {month_name(t - d * 86400_000) for d in range(0, 151, 10)} <= set(parts)
    assert month_name(t + 80 * 86400_000) in parts, "three months ahead"
    assert db.scalar("SELECT count(*) FROM sensor_readings_default") == 0
    # ingest goes on: new ids after the old ones, a reading of a month without a
    # partition lands in the DEFAULT one
    g = gateways(url, env={"MAX_PAST_AGE_S": 3 * 365 * 86400})
    old = t - 2 * 365 * 86400_000
    post_ok(g, dev, [(0, 7, iso_ms(t)), (1, 8, iso_ms(old))])
    assert db.query("SELECT value FROM sensor_readings WHERE id > %s ORDER BY id",
                    (before[-1][0],)) == [(8.0,), (7.0,)]  # applied in reading-time order
    assert db.scalar("SELECT count(*) FROM sensor_readings_default") == 1

    # retention drops whole months below the cutoff, deletes the boundary month in chunks
    out = subprocess.run([BIN, "job", "retention"], env=base_env(url, {"RETENTION_DAYS": 60}),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cutoff = t - 60 * 86400_000
    gone = sum(1 for r in before if r[3] < utc(cutoff)) + 1  # and the one in DEFAULT
    assert f"readings_deleted={gone} " in out.stdout, out.stdout
    assert db.scalar("SELECT count(*) FROM sensor_readings WHERE ts < %s", (utc(cutoff),)) == 0
    left = set(partitions(db))
    assert month_name(t - 100 * 86400_000) not in left and month_name(cutoff) in left
    mark = db.scalar("SELECT rolled_until FROM rollup_state")
    rolled = sum(1 for r in before if r[3] < mark) + (utc(old) < mark) + (utc(t) < mark)
    assert db.scalar("SELECT sum(count) FROM sensor_readings_hourly") == rolled


def test_retention_drops_months_in_short_locks_and_finishes_when_refused(pgdb, gateways):
    """Each month is detached and dropped in its own short transactions: a month
    a crash left detached is dropped by the next run, and a month whose lock a
    reader holds (and the months after it) is deleted in chunks instead, without
    the job failing or waiting for the reader."""
    url, cli, db = pgdb
    dev = provision_device(cli, n_sensors=1)
    g = gateways(url, env={"MAX_PAST_AGE_S": 200 * 86400})
    t = now_ms()
    old = [t - (90 + k) * 86400_000 for k in range(0, 60, 3)]  # 20 readings, 90-147 days ago
    post_ok(g, dev, [(0, float(k), iso_ms(ts)) for k, ts in enumerate(old)])
    post_ok(g, dev, [(0, 1.0, iso_ms(t - 1000))])
    g.stop()
    db.query("SELECT sensor_readings_ensure_partitions(%s, now())", (utc(old[-1]),))
    months = sorted({month_name(ts) for ts in old})
    assert len(months) >= 3 and set(months) <= set(partitions(db))
    orphan, held = months[0], months[1]
    db.query(f"ALTER TABLE sensor_readings DETACH PARTITION {orphan}")
    reader = psycopg2.connect(url)
    try:
        reader.cursor().execute(f"LOCK TABLE {held} IN ACCESS SHARE MODE")
        out = subprocess.run([BIN, "job", "retention"], env=base_env(url, {"RETENTION_DAYS": 60}),
                             capture_output=True, text=True, timeout=120)
    finally:
        reader.close()
    assert out.returncode == 0, out.stderr
    assert f"readings_deleted={len(old)} " in out.stdout, out.stdout
    assert db.scalar("SELECT count(*) FROM pg_class WHERE relname = %s", (orphan,)) == 0
    # the months from the held one on are left attached (the next run drops them), emptied
    left = set(partitions(db))
    assert set(months[1:]) <= left
    for m in months[1:]:
        assert db.scalar(f"SELECT count(*) FROM {m}") == 0, m
    assert db.scalar("SELECT count(*) FROM sensor_readings") == 1


# --------------------------------------------------------------------------- outage (last)


def test_server_outage_503_then_recovers_without_restart(cluster, pgdb, gateways):
    url, cli, db = pgdb
    dev = provision_device(cli, n_sensors=2)
    g = gateways(url)
    post_ok(g, dev, [(0, 1.0), (1, 1.0)])
    n_readings = 4
    sent, stop = [], threading.Event()

    def packet(k):
        return dev.packet([(j % 2, 1000.0 * k + j) for j in range(n_readings)],
                          packet_id=f"o-{k}")

    def traffic():
        k = 0
        while not stop.is_set():
            k += 1
            try:
                r = g.post_packet(packet(k), key=dev.key, timeout=60)
                sent.append((k, r.status, r.headers.get("retry-after")))
            except Exception as e:  # noqa: BLE001 - recorded, checked below
                sent.append((k, repr(e), None))
            time.sleep(0.01)

    th = threading.Thread(target=traffic)
    th.start()
    try:
        wait_until(lambda: len(sent) >= 5, DEADLINE_S, what="traffic before the outage")
        cluster.down()
        r = wait_until(lambda: (lambda x: x if x.status == 503 else None)(
            g.post_packet(dev.packet([(0, 5.0)]), key=dev.key)), DEADLINE_S, what="503")
        assert r.json()["code"] == "db_unavailable", r
        assert int(r.headers["retry-after"]) >= 1, r.headers
        h = g.get("/health")
        assert h.status == 503 and h.json()["db"] == "error", h
        assert g.alive()
        time.sleep(0.5)
    finally:
        cluster.up()
    wait_until(lambda: g.post_packet(dev.packet([(0, 6.0)]), key=dev.key).status == 200,
               DEADLINE_S, what="ingest back after the server returned")
    wait_until(lambda: g.get("/health").status == 200, DEADLINE_S, what="health ok again")
    wait_until(lambda: sum(1 for x in sent if x[1] == 200) >= 3 + sum(
        1 for x in sent[:5] if x[1] == 200), DEADLINE_S, what="traffic flowing again")
    stop.set()
    th.join(60)

    statuses = [s for _, s, _ in sent]
    assert 503 in statuses and 200 in statuses, statuses
    assert set(statuses) <= {200, 503}, [x for x in sent if x[1] not in (200, 503)]
    assert all(ra is not None for _, s, ra in sent if s == 503)
    for k, status, _ in sent:
        n = db.scalar("SELECT count(*) FROM sensor_readings WHERE value >= %s AND value < %s",
                      (1000.0 * k, 1000.0 * k + n_readings))
        if status == 200:
            assert n == n_readings, (k, n)
        else:
            assert n in (0, n_readings), f"packet {k} half-stored: {n} of {n_readings}"
            # The device retries: stored once, whatever happened to the first try.
            r = g.post_packet(packet(k), key=dev.key)
            assert r.status == 200, r
            assert db.scalar("SELECT count(*) FROM sensor_readings WHERE value >= %s"
                             " AND value < %s", (1000.0 * k, 1000.0 * k + n_readings)) == n_readings
    assert g.status(dev.uuid, key=dev.key).status == 200
    assert g.stop() == 0, g.log_tail()


def test_server_outage_mqtt_puback_waits_then_arrives_stored_once(cluster, pgdb, gateways):
    """
    The MQTT twin of the test above: a paho client publishes QoS 1 while the
    server is down. No PUBACK (nothing committed), the connection stays open,
    the packet is tried again; once the server is back the PUBACK arrives on the
    same connection and the packet is stored once (no packet_id: only the
    gateway's holding of it keeps it single).
    """
    pytest.importorskip("paho.mqtt.client", reason="python3-paho-mqtt (scripts/deps.sh test)")
    from conftest import MqttDevice, metric_delta, scrape
    url, cli, db = pgdb
    dev = provision_device(cli, n_sensors=1)
    g = gateways(url, env={"MQTT_PORT": "-1"}, name="pg-mqtt-gw")
    topic = f"devices/{dev.uuid}/packets"

    def payload(v):
        return json.dumps({"readings": [{"sensor_uuid": dev.sensors[0].uuid, "value": v}]})

    def stored(v):
        return db.scalar("SELECT count(*) FROM sensor_readings WHERE value = %s", (v,))

    client = MqttDevice(g.mqtt_port, dev)
    try:
        first = client.publish(topic, payload(1.0))
        wait_until(lambda: first in client.acked, DEADLINE_S, what="the PUBACK before the outage")
        before = scrape(g)
        cluster.down()
        try:
            held = [client.publish(topic, payload(v)) for v in (2.0, 3.0)]
            # Held three times (tried again twice, 1 s apart) while down: no PUBACK meanwhile.
            wait_until(lambda: metric_delta(before, scrape(g), "iot_ingest_mqtt_publish_retries_total",
                                            'cause="unavailable"') >= 3,
                       DEADLINE_S, what="the held packets tried again")
            assert client.nacked() == 1, "a PUBACK while the server was down"
            assert client.disconnects == [] and g.alive()
        finally:
            cluster.up()
        wait_until(lambda: client.nacked() == 3, DEADLINE_S, what="the PUBACKs after the restart")
        assert client.disconnects == [], "the connection was lost"
        assert client.order == [first, *held]
    finally:
        client.close()
    assert [stored(v) for v in (1.0, 2.0, 3.0)] == [1, 1, 1]
    assert metric_delta(before, scrape(g), "iot_ingest_mqtt_publishes_total",
                        'qos="1",outcome="stored"') == 2
    assert g.stop() == 0, g.log_tail()
