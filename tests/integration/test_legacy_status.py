"""Legacy endpoints, device status, /health, /metrics, routing (404/405), API_KEY
unset (SPEC §5)."""

import re

import pytest

from conftest import (API_KEY, RFC3339_MS_UTC, Exposition, assert_error, iso_ms, now_ms,
                      provision_device, uid)

# --------------------------------------------------------------------- /health, /metrics


def test_health(gw):
    r = gw.get("/health")
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert body["status"] == "ok" and body["db"] == "ok" and body["broker"] == "ok", body
    assert isinstance(body["version"], str)
    assert re.match(r"^\d+\.\d+\.\d+", body["version"]), body["version"]


def test_metrics_prometheus_format(gw, make_device):
    dev = make_device(1)
    assert gw.post_packet(dev.packet([(0, 1.0)]), key=dev.key).status == 200
    r = gw.get("/metrics")
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("text/plain"), r.headers
    text = r.body.decode("utf-8")
    assert text.endswith("\n"), "exposition must end with a newline"
    e = Exposition(text)
    assert e.types, "no # TYPE lines"
    assert e.helps, "no # HELP lines"
    assert len(e.samples) >= 3, e.samples
    for name, _, _ in e.samples:
        assert e.family_of(name), f"sample {name} has no # TYPE line"
    for fam, typ in e.types.items():
        if typ == "counter":
            vals = [v for n, _, v in e.samples if e.family_of(n) == fam]
            assert all(v >= 0 for v in vals), (fam, vals)


def _counter_values(text):
    e = Exposition(text)
    return {(n, tuple(sorted(lab.items()))): v for n, lab, v in e.samples
            if e.types.get(e.family_of(n)) == "counter"}


def _packet_requests(counters, status=None):
    """iot_ingest_http_requests_total of route /ingest/packets (one status, or all)."""
    return sum(v for (n, lab), v in counters.items()
               if n == "iot_ingest_http_requests_total" and ("route", "/ingest/packets") in lab
               and (status is None or ("code", status) in lab))


def test_metrics_counters_move_with_traffic(gw, make_device):
    dev = make_device(1)
    before = _counter_values(gw.get("/metrics").body.decode())
    n_ok, n_422 = 3, 1
    for i in range(n_ok):
        assert gw.post_packet(dev.packet([(0, float(i))]), key=dev.key).status == 200
    for _ in range(n_422):
        assert gw.post_packet(dev.packet([(0, "x")]), key=dev.key).status == 422
    after = _counter_values(gw.get("/metrics").body.decode())
    assert before, "no counters exposed"
    # the requests sent are counted under their route and status, and nowhere else
    # on that route (a sample is absent until its first request: 0 before)
    for status, n in (("200", n_ok), ("422", n_422), (None, n_ok + n_422)):
        b, a = _packet_requests(before, status), _packet_requests(after, status)
        assert a - b == n, (f'iot_ingest_http_requests_total{{route="/ingest/packets",'
                            f'code={status or "any"}}} went {b} -> {a}, expected +{n}')
    shrank = [k for k in before if k in after and after[k] < before[k]]
    assert not shrank, f"counters went down: {shrank}"


def test_query_string_ignored_for_routing(gw, make_device):
    dev = make_device(1)
    assert gw.get("/health?probe=1").status == 200
    r = gw.post("/ingest/packets?source=test", dev.packet([(0, 1.0)]),
                headers=[("X-Device-Key", dev.key)])
    assert r.status == 200, r


# --------------------------------------------------------------------- routing

@pytest.mark.parametrize("method,path", [
    ("GET", "/nope"),
    ("GET", "/"),
    ("POST", "/ingest/unknown"),
    ("GET", "/ingest/devices/x/other"),
    ("GET", "/ingest/devices//status/extra"),
    ("GET", "/healthz"),
])
def test_unknown_route_404(gw, method, path):
    r = gw.request(method, path, body=b"{}" if method == "POST" else b"")
    assert_error(r, 404, "not_found")


@pytest.mark.parametrize("method,path", [
    ("GET", "/ingest/packets"),
    ("PUT", "/ingest/packets"),
    ("DELETE", "/ingest/packets"),
    ("GET", "/ingest/readings"),
    ("GET", "/ingest/readings/bulk"),
    ("POST", "/health"),
    ("DELETE", "/health"),
    ("POST", "/metrics"),
    ("POST", "/ingest/devices/some-device/status"),
])
def test_wrong_method_405(gw, db, method, path):
    before = db.counts()
    r = gw.request(method, path, body=b"{}" if method in ("POST", "PUT") else b"")
    assert_error(r, 405, "method_not_allowed")
    assert db.counts() == before


# --------------------------------------------------------------------- status

def _sensor_entry(body, sensor):
    got = [s for s in body["sensors"] if s["sensor_uuid"] == sensor.uuid]
    assert len(got) == 1, body
    return got[0]


def test_status_before_and_after_readings(gw, make_device):
    dev = make_device(2)
    r = gw.status(dev.uuid, key=dev.key)
    assert r.status == 200, r
    body = r.json()
    assert body["device_uuid"] == dev.uuid
    assert len(body["sensors"]) == 2, body
    for s in dev.sensors:
        e = _sensor_entry(body, s)
        assert e == {"sensor_uuid": s.uuid, "sensor_id": s.id, "name": s.name,
                     "state": "no_data", "last_value": None, "last_ts": None,
                     "active_alerts": 0}, e
    t = now_ms() - 120_000
    assert gw.post_packet(dev.packet([(0, 21.5, iso_ms(t))]), key=dev.key).status == 200
    # an older reading arriving later does not become the "last" one
    assert gw.post_packet(dev.packet([(0, 99.0, iso_ms(t - 60_000))]), key=dev.key).status == 200
    body = gw.status(dev.uuid, key=dev.key).json()
    e0 = _sensor_entry(body, dev.sensors[0])
    assert e0["state"] == "normal" and e0["last_value"] == 21.5, e0
    assert RFC3339_MS_UTC.match(e0["last_ts"]), e0["last_ts"]
    assert e0["last_ts"] == iso_ms(t)
    assert e0["active_alerts"] == 0
    e1 = _sensor_entry(body, dev.sensors[1])
    assert e1["state"] == "no_data" and e1["last_value"] is None and e1["last_ts"] is None
    # the API key sees the same thing
    r2 = gw.status(dev.uuid, api_key=API_KEY)
    assert r2.status == 200 and r2.json() == body


def test_status_auth(gw, make_device):
    dev, other = make_device(1), make_device(1)
    assert_error(gw.status(dev.uuid), 401, "unauthorized")
    assert_error(gw.status(dev.uuid, key=other.key), 401, "unauthorized")
    assert_error(gw.status(dev.uuid, key="1" * 32), 401, "unauthorized")
    assert_error(gw.status(dev.uuid, api_key="not-the-key"), 401, "unauthorized")
    ghost = uid("ghost-")
    assert_error(gw.status(ghost, api_key=API_KEY), 404, "not_found")
    # with a device key, an unknown device looks like a wrong key (no existence leak)
    a = gw.status(ghost, key=dev.key)
    b = gw.status(dev.uuid, key=other.key)
    assert a.status == b.status == 401 and a.json() == b.json()


def test_status_inactive_device_403(gw, cli, make_device):
    dev = make_device(1)
    assert cli.run("device", "disable", dev.uuid).returncode == 0
    assert_error(gw.status(dev.uuid, key=dev.key), 403, "device_inactive")


# --------------------------------------------------------------------- legacy

def test_legacy_single(gw, db, make_device):
    dev = make_device(1)
    s = dev.sensors[0]
    t = now_ms() - 30_000
    r = gw.post("/ingest/readings", {"sensor_id": s.id, "value": 12.5, "timestamp": iso_ms(t)},
                headers=[("X-API-Key", API_KEY)])
    assert r.status == 201, r
    assert r.json() == {"accepted": 1, "class": "normal"}
    rows = db.readings(s.id)
    assert [(x[0], x[1], x[3], x[4]) for x in rows] == [(12.5, t, "normal", 0)]
    # epoch timestamp and no timestamp
    r = gw.post("/ingest/readings", {"sensor_id": s.id, "value": 1, "timestamp": t / 1000 + 1},
                headers=[("X-API-Key", API_KEY)])
    assert r.status == 201, r
    before = now_ms()
    r = gw.post("/ingest/readings", {"sensor_id": s.id, "value": 2},
                headers=[("X-API-Key", API_KEY)])
    after = now_ms()
    assert r.status == 201, r
    rows = db.readings(s.id)
    assert rows[1][1] == t + 1000
    assert before - 5 <= rows[2][1] <= after + 5


@pytest.mark.parametrize("reading,reason", [
    ({"sensor_id": 987654321, "value": 1.0}, "unknown_sensor"),
    ({"sensor_id": "SELF", "value": "1.0"}, "invalid_value"),
    ({"sensor_id": "SELF", "value": None}, "invalid_value"),
    ({"sensor_id": "SELF"}, "invalid_value"),
    ({"sensor_id": "SELF", "value": 1.0, "timestamp": "not-a-time"}, "invalid_timestamp"),
    ({"sensor_id": "SELF", "value": 1.0, "timestamp": "FUTURE"}, "future_timestamp"),
    ({"sensor_id": "SELF", "value": 1.0, "timestamp": "STALE"}, "stale_timestamp"),
    ({"sensor_id": "INACTIVE", "value": 1.0}, "unknown_sensor"),
])
def test_legacy_single_rejected_422(gw, db, cli, make_device, reading, reason):
    dev = make_device(2)
    assert cli.run("sensor", "disable", dev.sensors[1].uuid).returncode == 0
    reading = dict(reading)
    if reading["sensor_id"] == "SELF":
        reading["sensor_id"] = dev.sensors[0].id
    elif reading["sensor_id"] == "INACTIVE":
        reading["sensor_id"] = dev.sensors[1].id
    if reading.get("timestamp") == "FUTURE":
        reading["timestamp"] = iso_ms(now_ms() + 3_600_000)
    elif reading.get("timestamp") == "STALE":
        reading["timestamp"] = iso_ms(now_ms() - 10 * 86_400_000)
    before = db.counts()
    r = gw.post("/ingest/readings", reading, headers=[("X-API-Key", API_KEY)])
    body = assert_error(r, 422, "no_valid_readings")
    assert body["accepted"] == 0
    assert body["rejected"] == [{"index": 0, "sensor_id": reading["sensor_id"],
                                 "reason": reason}], body
    assert db.counts() == before


def test_legacy_bulk(gw, db, make_device):
    dev = make_device(2)
    t = now_ms() - 40_000
    readings = [
        {"sensor_id": dev.sensors[0].id, "value": 1.0, "timestamp": iso_ms(t)},
        {"sensor_id": dev.sensors[1].id, "value": "bad"},
        {"sensor_id": dev.sensors[1].id, "value": 3.0, "timestamp": iso_ms(t + 5)},
        {"sensor_id": 987654322, "value": 4.0},
    ]
    r = gw.post("/ingest/readings/bulk", {"readings": readings},
                headers=[("X-API-Key", API_KEY)])
    assert r.status == 200, r
    body = r.json()
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {"index": 1, "sensor_id": dev.sensors[1].id, "reason": "invalid_value"},
        {"index": 3, "sensor_id": 987654322, "reason": "unknown_sensor"},
    ], body
    assert [(x[0], x[1]) for x in db.readings(dev.sensors[0].id)] == [(1.0, t)]
    assert [(x[0], x[1]) for x in db.readings(dev.sensors[1].id)] == [(3.0, t + 5)]


def test_legacy_bulk_nothing_valid_422(gw, db, make_device):
    dev = make_device(1)
    before = db.counts()
    r = gw.post("/ingest/readings/bulk",
                {"readings": [{"sensor_id": dev.sensors[0].id, "value": None},
                              {"sensor_id": 987654323, "value": 1}]},
                headers=[("X-API-Key", API_KEY)])
    body = assert_error(r, 422, "no_valid_readings")
    assert body["accepted"] == 0 and len(body["rejected"]) == 2
    assert db.counts() == before


@pytest.mark.parametrize("path,raw,code,field", [
    ("/ingest/readings", b'{"sensor_id": 1, "value": ', "invalid_json", None),
    ("/ingest/readings", b'[1,2]', ("invalid_json", "invalid_request"), None),
    ("/ingest/readings/bulk", b'{"readings": "x"}', "invalid_request", "readings"),
    ("/ingest/readings/bulk", b'{"readings": []}', "invalid_request", "readings"),
    ("/ingest/readings/bulk", b'{}', "invalid_request", "readings"),
    ("/ingest/readings/bulk", b'{"readings": [5]}', "invalid_request", "readings"),
    ("/ingest/readings/bulk", b'{"readings": [], "readings": []}', "invalid_json", None),
])
def test_legacy_malformed_400(gw, db, path, raw, code, field):
    before = db.counts()
    r = gw.post(path, raw=raw, headers=[("X-API-Key", API_KEY)])
    assert_error(r, 400, code, detail_contains=field)
    assert db.counts() == before


def test_legacy_auth(gw, db, make_device):
    dev = make_device(1)
    before = db.counts()
    reading = {"sensor_id": dev.sensors[0].id, "value": 1.0}
    for headers in ([], [("X-API-Key", "wrong")], [("X-Device-Key", dev.key)],
                    [("X-API-Key", "")]):
        assert_error(gw.post("/ingest/readings", reading, headers=headers), 401, "unauthorized")
        assert_error(gw.post("/ingest/readings/bulk", {"readings": [reading]}, headers=headers),
                     401, "unauthorized")
    assert db.counts() == before


# --------------------------------------------------------------------- API_KEY unset

def test_api_key_unset(gateway_factory):
    gw, dev = gateway_factory({"API_KEY": None, "BROKER_URL": "none"},
                              provision=lambda c: provision_device(c, 1), name="nokey")
    db = gw.db
    before = db.counts()
    reading = {"sensor_id": dev.sensors[0].id, "value": 1.0}
    for k in ("", API_KEY, "anything-at-all-1234"):
        assert_error(gw.post("/ingest/readings", reading, headers=[("X-API-Key", k)]), 401,
                     "unauthorized")
        assert_error(gw.post("/ingest/readings/bulk", {"readings": [reading]},
                             headers=[("X-API-Key", k)]), 401, "unauthorized")
        assert_error(gw.post_packet(dev.packet([(0, 1.0)]), api_key=k), 401, "unauthorized")
        assert_error(gw.status(dev.uuid, api_key=k), 401, "unauthorized")
    assert_error(gw.post("/ingest/readings", reading), 401, "unauthorized")
    assert db.counts() == before
    # device keys keep working
    r = gw.post_packet(dev.packet([(0, 1.0)]), key=dev.key)
    assert r.status == 200, r
    # broker "none" is reported as disabled
    h = gw.get("/health").json()
    assert h["status"] == "ok" and h["broker"] == "disabled", h
