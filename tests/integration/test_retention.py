"""
Retention and hourly rollups (SPEC §12, docs/jobs.md): `job retention` and its
place in `jobs`, as the real binary against the module's backend (SQLite, or
PostgreSQL in the PostgreSQL pass). Readings go in through the real gateway
(POST /ingest/packets with explicit, partly late timestamps over the last
weeks); every rollup row is checked against the aggregate of its hour's raw
readings computed with plain SQL, on the same database.
"""

import random
import re
import signal
import subprocess
import time

from conftest import BIN, Db, base_env, iso_ms, now_ms, provision_device, wait_until

HOUR = 3_600_000
DAY = 24 * HOUR
SUMMARY_RE = re.compile(
    r"^retention: hours_rolled_up=(\d+) rollups_written=(\d+) readings_deleted=(\d+) "
    r"rollups_deleted=(\d+) rolled_until=(\S+) duration_ms=(\d+)$")
GATEWAY_ENV = {"MAX_PAST_AGE_S": 40 * 86400, "RATE_LIMIT_IP_RPS": 0, "RATE_LIMIT_DEVICE_RPS": 0}
# Rollups whose hour holds raw readings from `since` on, against the raw aggregate,
# both ways (EXCEPT on both backends; values are integers, so sums are exact).
RAW = ("SELECT sensor_id, ts - ts % 3600000 AS hour, count(*), min(value), max(value), "
       "sum(value), min(ts), max(ts) FROM sensor_readings "
       "WHERE ts < (SELECT rolled_until FROM rollup_state) AND ts >= ? GROUP BY 1, 2")
ROLLED = ("SELECT sensor_id, hour, count, min, max, sum, first_ts, last_ts "
          "FROM sensor_readings_hourly WHERE hour >= ?")


def mismatches(db, since=0):
    return (db.scalar(f"SELECT count(*) FROM ({RAW} EXCEPT {ROLLED}) x", (since, since)) +
            db.scalar(f"SELECT count(*) FROM ({ROLLED} EXCEPT {RAW}) x", (since, since)))


def others(db):
    """Row counts of every table but the readings (and, on PostgreSQL, their partitions)."""
    return {t: n for t, n in db.counts().items()
            if not t.startswith("sensor_readings") or t == "sensor_readings_hourly"}


def retention(db_path, **env):
    e = base_env(db_path, {"LOG_LEVEL": "warn", "RETENTION_DAYS": 0, "ROLLUP_RETENTION_DAYS": 0,
                           **env})
    p = subprocess.run([BIN, "job", "retention"], env=e, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout
    m = SUMMARY_RE.match(lines[0])
    assert m, lines[0]
    return [int(x) for x in m.groups()[:4]], m.group(5)


def post_history(g, dev, rnd, start, end, n, late_fraction=0.25, late_ms=3 * HOUR):
    """n readings over [start, end) in time order, some late by up to late_ms; 50 a packet."""
    step = (end - start) // n
    t, batch = start, []
    for _ in range(n):
        t += rnd.randint(1, step * 2 - 1) if step > 1 else 1
        ts = t - rnd.randint(1, late_ms) if rnd.random() < late_fraction else t
        batch.append((rnd.randrange(len(dev.sensors)), rnd.randint(0, 40), iso_ms(min(ts, end))))
        if len(batch) == 50:
            r = g.post_packet(dev.packet(batch), key=dev.key)
            assert r.status == 200 and not r.json()["rejected"], r
            batch = []
    if batch:
        r = g.post_packet(dev.packet(batch), key=dev.key)
        assert r.status == 200 and not r.json()["rejected"], r


def test_rollups_equal_raw_aggregates_and_retention_keeps_everything_else(gateway_factory):
    g, dev = gateway_factory(env=GATEWAY_ENV, provision=lambda c: provision_device(c, 3))
    db = Db(g.db_path)
    g.cli.json("threshold", "set", "--sensor", dev.sensors[0].uuid, "--severity", "warning",
               "--min", "5", "--max", "30")
    rnd = random.Random(16)
    now = now_ms()
    post_history(g, dev, rnd, now - 20 * DAY, now - 2 * HOUR, 3000)

    (hours, rollups, deleted, _), mark = retention(g.db_path)
    assert hours >= 100 and rollups >= hours and deleted == 0
    assert mark.endswith(":00:00.000Z")
    assert db.scalar("SELECT sum(count) FROM sensor_readings_hourly") == db.scalar(
        "SELECT count(*) FROM sensor_readings WHERE ts < (SELECT rolled_until FROM rollup_state)")
    assert mismatches(db) == 0

    # Late readings into hours already rolled up: the writer adds them to their rollups.
    before = db.scalar("SELECT sum(count) FROM sensor_readings_hourly")
    post_history(g, dev, rnd, now - 15 * DAY, now - 3 * HOUR, 400, late_fraction=0.5,
                 late_ms=2 * DAY)
    assert db.scalar("SELECT sum(count) FROM sensor_readings_hourly") > before
    assert mismatches(db) == 0
    (hours, _, _, _), _ = retention(g.db_path)
    assert mismatches(db) == 0

    # Retention: readings older than 10 days go, in chunks; rollups and every other table stay.
    kept = others(db)
    assert kept["alerts"] > 0 and kept["alert_notifications"] > 0
    state = db.query("SELECT * FROM sensor_state ORDER BY sensor_id")
    old = db.scalar("SELECT count(*) FROM sensor_readings WHERE ts < ?", (now - 10 * DAY,))
    total = db.scalar("SELECT count(*) FROM sensor_readings")
    (_, _, deleted, _), _ = retention(g.db_path, RETENTION_DAYS=10)
    assert deleted == old > 1000
    assert db.scalar("SELECT count(*) FROM sensor_readings") == total - old
    assert db.scalar("SELECT min(ts) FROM sensor_readings") >= now - 10 * DAY
    assert others(db) == kept
    assert db.query("SELECT * FROM sensor_state ORDER BY sensor_id") == state
    whole = now - 10 * DAY + 2 * HOUR
    assert mismatches(db, whole - whole % HOUR) == 0

    # Rollups never go before their readings: with readings kept forever, they stay too.
    (_, _, _, rdel), _ = retention(g.db_path, RETENTION_DAYS=0, ROLLUP_RETENTION_DAYS=1)
    assert rdel == 0

    # Rollups older than ROLLUP_RETENTION_DAYS go too.
    old_rollups = db.scalar("SELECT count(*) FROM sensor_readings_hourly WHERE hour < ?",
                            (now - 15 * DAY,))
    (_, _, _, rdel), _ = retention(g.db_path, RETENTION_DAYS=10, ROLLUP_RETENTION_DAYS=15)
    assert rdel == old_rollups > 0
    assert db.scalar("SELECT min(hour) FROM sensor_readings_hourly") >= now - 15 * DAY - HOUR

    text = g.get("/metrics").body.decode()
    assert 'iot_ingest_job_runs_total{job="retention",result="ok"} 5' in text


def test_jobs_runs_retention_on_its_interval_and_stops(gateway_factory, tmp_path):
    g, dev = gateway_factory(env=GATEWAY_ENV, provision=lambda c: provision_device(c, 1))
    now = now_ms()
    r = g.post_packet(dev.packet([(0, 1, iso_ms(now - 5 * HOUR)), (0, 3, iso_ms(now - 4 * HOUR))]),
                      key=dev.key)
    assert r.status == 200, r
    env = base_env(g.db_path, {"BASELINE_EVERY_S": 3600, "EXPLAIN_EVERY_S": 3600,
                               "NO_DATA_EVERY_S": 3600, "RETENTION_EVERY_S": 1,
                               "AI_EXPLAINER_URL": "http://127.0.0.1:9", "LOG_LEVEL": "warn"})
    out = tmp_path / "jobs.out"
    with open(out, "w") as f:
        p = subprocess.Popen([BIN, "jobs"], env=env, stdout=f, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: out.read_text().count("retention: ") >= 2, 20,
                   what="two retention runs")
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    first = [ln for ln in out.read_text().splitlines() if ln.startswith("retention: ")]
    assert SUMMARY_RE.match(first[0]) and "hours_rolled_up=2 " in first[0], first
    assert "hours_rolled_up=0 " in first[1], first
    assert Db(g.db_path).scalar("SELECT sum(count) FROM sensor_readings_hourly") == 2


def test_bad_retention_setting_exits_2(tmp_path):
    dbp = tmp_path / "bad.db"
    p = subprocess.run([BIN, "job", "retention"], env=base_env(dbp, {"RETENTION_DAYS": "-1"}),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "RETENTION_DAYS" in p.stderr, p
    assert not dbp.exists()
    t0 = time.monotonic()
    p = subprocess.run([BIN, "job", "retention", "--help"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0 and "--retention-days" in p.stdout
    assert "--rollup-retention-days" in p.stdout and time.monotonic() - t0 < 10
