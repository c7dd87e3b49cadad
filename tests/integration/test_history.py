"""
History API (SPEC §12): GET /ingest/devices/{uuid}/sensors/{sensor_uuid}/readings,
raw pages and steps, through the real gateway on the module's backend (SQLite,
or PostgreSQL in the PostgreSQL pass). Every answer is compared with plain SQL
over the same database; steps are checked before and after retention deleted
the raw readings under them (they then come from the hourly rollups).
"""

import random
import subprocess
from urllib.parse import quote

from conftest import (API_KEY, BIN, Db, assert_error, base_env, iso_ms, now_ms,
                      provision_device)

HOUR = 3_600_000
DAY = 24 * HOUR
GATEWAY_ENV = {"MAX_PAST_AGE_S": 40 * 86400, "RATE_LIMIT_IP_RPS": 0, "RATE_LIMIT_DEVICE_RPS": 0}
AGGS = {"avg": "avg(value)", "min": "min(value)", "max": "max(value)", "count": "count(*)",
        "sum": "sum(value)"}


def url(dev, sensor, **q):
    qs = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in q.items())
    return f"/ingest/devices/{dev.uuid}/sensors/{sensor.uuid}/readings" + (f"?{qs}" if qs else "")


def get(g, dev, sensor, key=None, **q):
    return g.get(url(dev, sensor, **q), headers=[("X-Device-Key", key or dev.key)])


def run_retention(db_path, days):
    p = subprocess.run([BIN, "job", "retention"], stdin=subprocess.DEVNULL,
                       env=base_env(db_path, {"RETENTION_DAYS": days, "LOG_LEVEL": "warn"}),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def post_history(g, dev, rnd, start, end, n):
    """n readings over [start, end), a quarter of them late by up to 3 hours, 50 a packet."""
    t, batch = start, []
    step = (end - start) // n
    for _ in range(n):
        t += rnd.randint(1, 2 * step - 1)
        ts = t - rnd.randint(1, 3 * HOUR) if rnd.random() < 0.25 else t
        batch.append((rnd.randrange(len(dev.sensors)), rnd.randint(-20, 40), iso_ms(min(ts, end))))
        if len(batch) == 50 or _ == n - 1:
            r = g.post_packet(dev.packet(batch), key=dev.key)
            assert r.status == 200 and not r.json()["rejected"], r
            batch = []


def all_pages(g, dev, sensor, limit, **q):
    out, nxt, pages = [], None, 0
    while True:
        r = get(g, dev, sensor, limit=limit, **q, **({"next": nxt} if nxt else {}))
        assert r.status == 200, r
        body = r.json()
        assert body["device_uuid"] == dev.uuid and body["sensor_uuid"] == sensor.uuid
        assert len(body["readings"]) <= limit
        out += body["readings"]
        pages += 1
        nxt = body["next"]
        if nxt is None:
            return out, pages
        assert len(body["readings"]) == limit


def sql_raw(db, sensor, frm, to):
    return [{"ts": iso_ms(ts), "value": float(v), "class": c, "late": bool(late)}
            for ts, v, c, late in db.query(
                "SELECT ts, value, class, late FROM sensor_readings WHERE sensor_id = ? "
                "AND ts >= ? AND ts < ? ORDER BY ts, id", (sensor.id, frm, to))]


def sql_points(db, sensor, step, agg, frm, to):
    rows = db.query(f"SELECT ts - ts % {step} AS b, {AGGS[agg]} FROM sensor_readings "
                    "WHERE sensor_id = ? AND ts >= ? AND ts < ? GROUP BY 1 ORDER BY 1",
                    (sensor.id, frm, to))
    return [{"ts": iso_ms(b), "value": v} for b, v in rows]


def same_points(got, want):
    assert [p["ts"] for p in got] == [p["ts"] for p in want]
    for a, b in zip(got, want):
        assert abs(a["value"] - b["value"]) <= 1e-9 * max(1.0, abs(b["value"])), (a, b)


def test_history_matches_sql_before_and_after_retention(gateway_factory):
    g, dev = gateway_factory(env=GATEWAY_ENV, provision=lambda c: provision_device(c, 3))
    db = Db(g.db_path)
    rnd = random.Random(12)
    now = now_ms()
    start = now - 30 * DAY
    post_history(g, dev, rnd, start, now - 1000, 4000)
    run_retention(g.db_path, 0)
    post_history(g, dev, rnd, now - 6 * HOUR, now - 1000, 200)  # above and below the mark
    s = dev.sensors[1]

    # Raw: every page through `next` is exactly the SQL answer, in several ranges.
    for frm, to, limit in [(start - DAY, now + DAY, 97), (now - 10 * DAY, now - 9 * DAY, 7),
                           (now - 2 * HOUR, now, 1000)]:
        got, pages = all_pages(g, dev, s, limit, **{"from": iso_ms(frm), "to": iso_ms(to)})
        want = sql_raw(db, s, frm, to)
        assert got == want and len(want) > 0
        assert pages == max(1, -(-len(want) // limit))
    # from/to as epoch seconds; defaults cover everything
    got, _ = all_pages(g, dev, s, 10000, **{"from": (now - 5 * DAY) / 1000, "to": now / 1000})
    assert got == sql_raw(db, s, now - 5 * DAY, now)
    got, _ = all_pages(g, dev, s, 10000)
    assert got == sql_raw(db, s, -2**62, 2**62)

    # Steps: one point per hour/day with readings, every aggregate.
    wanted = {}
    for step, ms in (("1h", HOUR), ("1d", DAY)):
        for agg in AGGS:
            r = get(g, dev, s, step=step, agg=agg)
            assert r.status == 200, r
            b = r.json()
            assert (b["step"], b["agg"]) == (step, agg) and b["device_uuid"] == dev.uuid
            want = sql_points(db, s, ms, agg, -2**62, 2**62)
            same_points(b["points"], want)
            wanted[step, agg] = want
    # a range is rounded out to whole steps
    r = get(g, dev, s, step="1d", agg="count", **{"from": iso_ms(now - 3 * DAY),
                                                  "to": iso_ms(now - 2 * DAY)})
    d0 = (now - 3 * DAY) - (now - 3 * DAY) % DAY
    same_points(r.json()["points"], sql_points(db, s, DAY, "count", d0, d0 + 2 * DAY))

    # After retention the deleted hours come from the rollups: the same points.
    run_retention(g.db_path, 7)
    assert db.scalar("SELECT min(ts) FROM sensor_readings") >= now - 7 * DAY - 60_000
    for (step, agg), want in wanted.items():
        r = get(g, dev, s, step=step, agg=agg)
        assert r.status == 200, r
        same_points(r.json()["points"], want)
    got, _ = all_pages(g, dev, s, 500)
    assert got == sql_raw(db, s, -2**62, 2**62) and got[0]["ts"] >= iso_ms(now - 7 * DAY - 60_000)


def test_history_auth_like_status(gateway_factory):
    g, (dev, other) = gateway_factory(
        env=GATEWAY_ENV, provision=lambda c: (provision_device(c, 1), provision_device(c, 1)))
    s = dev.sensors[0]
    r = g.post_packet(dev.packet([(0, 5, iso_ms(now_ms() - 1000))]), key=dev.key)
    assert r.status == 200
    assert get(g, dev, s).json()["readings"][0]["value"] == 5.0
    assert_error(get(g, dev, s, key=other.key), 401, "unauthorized")
    assert_error(g.get(url(dev, s)), 401, "unauthorized")
    r = g.get(url(dev, s), headers=[("X-API-Key", API_KEY)])
    assert r.status == 200 and len(r.json()["readings"]) == 1
    # another device's sensor, an unknown sensor, an unknown device with the API key: 404
    assert_error(get(g, dev, other.sensors[0]), 404, "not_found")
    r = g.get(f"/ingest/devices/{dev.uuid}/sensors/nope/readings",
              headers=[("X-Device-Key", dev.key)])
    assert_error(r, 404, "not_found", "nope")
    assert_error(g.get("/ingest/devices/nope/sensors/x/readings",
                       headers=[("X-API-Key", API_KEY)]), 404, "not_found")
    assert_error(g.request("POST", url(dev, s)), 405, "method_not_allowed")
    g.cli.json("device", "disable", dev.uuid)
    # the resolver cache honours a disable within SENSOR_CACHE_TTL_S; the API key still reads
    r = g.get(url(dev, s), headers=[("X-API-Key", API_KEY)])
    assert r.status == 200


def test_every_bad_parameter_is_a_400_naming_it(gateway_factory):
    g, dev = gateway_factory(env={**GATEWAY_ENV, "MAX_PAST_AGE_S": 3650 * 86400,
                                  "MAX_READINGS_PER_PACKET": 500},
                             provision=lambda c: provision_device(c, 1))
    s = dev.sensors[0]
    cases = [({"from": "yesterday"}, "from"), ({"to": "2026-13-01T00:00:00Z"}, "to"),
             ({"from": "nan"}, "from"), ({"to": "0x10"}, "to"), ({"from": ""}, "from"),
             ({"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "from"),
             ({"limit": "0"}, "limit"), ({"limit": "10001"}, "limit"), ({"limit": "ten"}, "limit"),
             ({"step": "1m"}, "step"), ({"step": "1h", "agg": "median"}, "agg"),
             ({"agg": "avg"}, "agg"), ({"next": "abc"}, "next"),
             ({"next": "A" * 22}, "next"),
             ({"step": "1d", "next": "AAABogc4h7gAAAAAAAAABQ"}, "next")]
    for q, name in cases:
        r = get(g, dev, s, **q)
        assert_error(r, 400, "invalid_request")
        assert r.json()["detail"].startswith(name + " "), (q, r.json())
    # More than 10000 points with data: one reading an hour for 10001 hours.
    first = now_ms() - 10_001 * HOUR
    for k in range(0, 10_001, 500):
        r = g.post_packet(dev.packet([(0, 1, iso_ms(first + i * HOUR))
                                      for i in range(k, min(k + 500, 10_001))]), key=dev.key)
        assert r.status == 200 and not r.json()["rejected"], r
    r = get(g, dev, s, step="1h")
    assert_error(r, 400, "invalid_request", "more than 10000 points")
    assert r.json()["detail"].startswith("from and to ")
    r = get(g, dev, s, step="1h", **{"from": iso_ms(first + 5000 * HOUR)})
    assert r.status == 200 and len(r.json()["points"]) == 5001 and r.json()["agg"] == "avg"
