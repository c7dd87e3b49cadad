"""POST /ingest/packets: success, partial success, per-reading reasons, timestamps,
packet_id idempotency, atomicity (SPEC §5)."""

import threading
import time

import pytest

from conftest import API_KEY, assert_error, iso_ms, now_ms, uid

SUCCESS_KEYS = {"device_uuid", "accepted", "rejected", "duplicate"}


def test_packet_stored(gw, db, make_device):
    dev = make_device(2)
    t = now_ms() - 60_000
    before = now_ms()
    r = gw.post_packet(dev.packet([(0, 21.5, iso_ms(t)), (1, -3, iso_ms(t + 1))]), key=dev.key)
    after = now_ms()
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert r.json() == {"device_uuid": dev.uuid, "accepted": 2, "rejected": [],
                        "duplicate": False}
    rows0 = db.readings(dev.sensors[0].id)
    rows1 = db.readings(dev.sensors[1].id)
    assert len(rows0) == 1 and len(rows1) == 1, (rows0, rows1)
    value, ts, ingested, cls, late, ts_type, ing_type = rows0[0]
    assert (value, ts, cls, late, ts_type, ing_type) == (21.5, t, "normal", 0, "integer",
                                                         "integer")
    assert before - 5 <= ingested <= after + 5, (before, ingested, after)
    assert rows1[0][0] == -3.0 and rows1[0][1] == t + 1


def test_device_last_seen_updated(gw, db, make_device):
    dev = make_device(1)
    before = now_ms()
    assert gw.post_packet(dev.packet([(0, 1.0)]), key=dev.key).status == 200
    after = now_ms()
    if db.pg:  # timestamptz, read through the test views as epoch ms
        (seen,) = db.query("SELECT last_seen_at FROM devices WHERE device_uuid=?", (dev.uuid,))[0]
    else:
        seen, typ = db.query("SELECT last_seen_at, typeof(last_seen_at) FROM devices "
                             "WHERE device_uuid=?", (dev.uuid,))[0]
        assert typ == "integer", f"last_seen_at should be INTEGER ms, is {typ} ({seen!r})"
    assert before - 5 <= seen <= after + 5, (before, seen, after)


def test_api_key_may_post_packets(gw, db, make_device):
    dev = make_device(1)
    r = gw.post_packet(dev.packet([(0, 7.25)]), api_key=API_KEY)
    assert r.status == 200, r
    assert r.json()["accepted"] == 1
    assert db.reading_count(dev.sensors[0].id) == 1


def test_partial_success(gw, db, make_device):
    dev = make_device(2)
    other = uid("sen-nope-")
    t = now_ms() - 10_000
    pkt = dev.packet([(0, 1.0, iso_ms(t)), (other, 2.0), (1, "3.0"), (1, 4.0, iso_ms(t))])
    r = gw.post_packet(pkt, key=dev.key)
    assert r.status == 200, r
    body = r.json()
    assert body["accepted"] == 2 and body["duplicate"] is False
    assert body["device_uuid"] == dev.uuid
    assert body["rejected"] == [
        {"index": 1, "sensor_uuid": other, "reason": "unknown_sensor"},
        {"index": 2, "sensor_uuid": dev.sensors[1].uuid, "reason": "invalid_value"},
    ], body
    assert [row[0] for row in db.readings(dev.sensors[0].id)] == [1.0]
    assert [row[0] for row in db.readings(dev.sensors[1].id)] == [4.0]


def test_unknown_json_fields_ignored(gw, db, make_device):
    dev = make_device(1)
    pkt = dev.packet([{"sensor_uuid": dev.sensors[0].uuid, "value": 5, "unit": "C",
                       "extra": {"nested": [1, 2]}}], firmware="1.2.3", meta={"a": None})
    r = gw.post_packet(pkt, key=dev.key)
    assert r.status == 200, r
    assert r.json()["accepted"] == 1
    assert db.readings(dev.sensors[0].id)[0][0] == 5.0


# --------------------------------------------------------------------- per-reading reasons

def _bad_reading_cases():
    now = lambda: now_ms()  # noqa: E731
    return {
        "unknown_sensor_uuid": (lambda d, o: {"sensor_uuid": uid("sen-unknown-"), "value": 1},
                                "unknown_sensor"),
        "missing_sensor_uuid": (lambda d, o: {"value": 1}, "unknown_sensor"),
        "numeric_sensor_uuid": (lambda d, o: {"sensor_uuid": 123, "value": 1}, "unknown_sensor"),
        "null_sensor_uuid": (lambda d, o: {"sensor_uuid": None, "value": 1}, "unknown_sensor"),
        "other_devices_sensor": (lambda d, o: {"sensor_uuid": o.sensors[0].uuid, "value": 1},
                                 "unknown_sensor"),
        "inactive_sensor": (lambda d, o: {"sensor_uuid": d.sensors[1].uuid, "value": 1},
                            "unknown_sensor"),
        "missing_value": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid}, "invalid_value"),
        "string_value": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": "12.5"},
                         "invalid_value"),
        "null_value": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": None},
                       "invalid_value"),
        "bool_value": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": True},
                       "invalid_value"),
        "array_value": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": [1]},
                        "invalid_value"),
        "object_value": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": {"v": 1}},
                         "invalid_value"),
        "garbage_ts": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": 1,
                                     "ts": "yesterday"}, "invalid_timestamp"),
        "impossible_date_ts": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": 1,
                                             "ts": "2026-13-45T25:61:00Z"}, "invalid_timestamp"),
        "empty_ts": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": 1, "ts": ""},
                     "invalid_timestamp"),
        "bool_ts": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": 1, "ts": True},
                    "invalid_timestamp"),
        "future_ts_rfc3339": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": 1,
                                            "ts": iso_ms(now() + 3_600_000)}, "future_timestamp"),
        "future_ts_epoch": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": 1,
                                          "ts": now() / 1000 + 3600}, "future_timestamp"),
        "stale_ts_rfc3339": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": 1,
                                           "ts": iso_ms(now() - 8 * 86_400_000)},
                             "stale_timestamp"),
        "stale_ts_epoch": (lambda d, o: {"sensor_uuid": d.sensors[0].uuid, "value": 1,
                                         "ts": now() / 1000 - 8 * 86400}, "stale_timestamp"),
    }


BAD_CASES = _bad_reading_cases()


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_single_bad_reading_gives_422_and_stores_nothing(gw, db, cli, make_device, case):
    make_reading, reason = BAD_CASES[case]
    dev = make_device(2)
    other = make_device(1)
    p = cli.run("sensor", "disable", dev.sensors[1].uuid)
    assert p.returncode == 0, p.stderr
    reading = make_reading(dev, other)
    before = db.counts()
    r = gw.post_packet({"device_uuid": dev.uuid, "readings": [reading]}, key=dev.key)
    body = assert_error(r, 422, "no_valid_readings")
    assert body["device_uuid"] == dev.uuid
    assert body["accepted"] == 0 and body["duplicate"] is False
    assert len(body["rejected"]) == 1, body
    rej = body["rejected"][0]
    assert rej["index"] == 0 and rej["reason"] == reason, body
    if isinstance(reading.get("sensor_uuid"), str):
        assert rej["sensor_uuid"] == reading["sensor_uuid"]
    assert db.counts() == before


def test_mixed_reasons_in_one_packet(gw, db, make_device):
    dev = make_device(1)
    s = dev.sensors[0].uuid
    now = now_ms()
    readings = [
        {"sensor_uuid": s, "value": None},
        {"sensor_uuid": s, "value": 1, "ts": "nope"},
        {"sensor_uuid": s, "value": 1, "ts": iso_ms(now + 7_200_000)},
        {"sensor_uuid": s, "value": 1, "ts": iso_ms(now - 30 * 86_400_000)},
        {"sensor_uuid": uid("x-"), "value": 1},
        {"sensor_uuid": s, "value": 99.5, "ts": iso_ms(now - 1000)},
    ]
    r = gw.post_packet({"device_uuid": dev.uuid, "readings": readings}, key=dev.key)
    assert r.status == 200, r
    body = r.json()
    assert body["accepted"] == 1
    assert [(x["index"], x["reason"]) for x in body["rejected"]] == [
        (0, "invalid_value"), (1, "invalid_timestamp"), (2, "future_timestamp"),
        (3, "stale_timestamp"), (4, "unknown_sensor")], body
    assert [row[0] for row in db.readings(dev.sensors[0].id)] == [99.5]


def test_all_bad_multi_reading_packet_stores_nothing(gw, db, make_device):
    dev = make_device(2)
    before = db.counts()
    r = gw.post_packet(dev.packet([(0, "x"), (1, None), (uid("u-"), 1)]), key=dev.key)
    body = assert_error(r, 422, "no_valid_readings")
    assert body["accepted"] == 0
    assert [x["index"] for x in body["rejected"]] == [0, 1, 2]
    assert db.counts() == before


def test_timestamp_window_edges_accepted(gw, db, make_device):
    dev = make_device(1)
    now = now_ms()
    near_future = now + 60_000          # inside MAX_FUTURE_SKEW_S=300
    six_days = now - 6 * 86_400_000     # inside MAX_PAST_AGE_S=7d
    r = gw.post_packet(dev.packet([(0, 1, iso_ms(near_future)), (0, 2, iso_ms(six_days))]),
                       key=dev.key)
    assert r.status == 200, r
    assert r.json()["accepted"] == 2
    assert sorted(row[1] for row in db.readings(dev.sensors[0].id)) == [six_days, near_future]


def test_value_types(gw, db, make_device):
    dev = make_device(1)
    t = now_ms() - 100_000
    vals = [0, -1, 42, 1.5e300, -2.25e-5]
    r = gw.post_packet(dev.packet([(0, v, iso_ms(t + i)) for i, v in enumerate(vals)]),
                       key=dev.key)
    assert r.status == 200, r
    assert r.json()["accepted"] == len(vals)
    assert [row[0] for row in db.readings(dev.sensors[0].id)] == [float(v) for v in vals]


def test_overflowing_number_not_stored(gw, db, make_device):
    # 1e999 is a JSON number but not a finite double: that reading is
    # rejected as invalid_value (never stored as inf); the packet is not
    # malformed, so its other readings are stored.
    dev = make_device(1)
    before = db.counts()
    raw = ('{"device_uuid":"%s","readings":[{"sensor_uuid":"%s","value":1e999}]}'
           % (dev.uuid, dev.sensors[0].uuid)).encode()
    body = assert_error(gw.post_packet(raw=raw, key=dev.key), 422, "no_valid_readings")
    assert body["rejected"] == [{"index": 0, "sensor_uuid": dev.sensors[0].uuid,
                                 "reason": "invalid_value"}], body
    assert db.counts() == before
    t = now_ms() - 1000
    raw = ('{"device_uuid":"%s","readings":[{"sensor_uuid":"%s","value":-1E400,"ts":%.3f},'
           '{"sensor_uuid":"%s","value":2.5,"ts":%.3f}]}'
           % (dev.uuid, dev.sensors[0].uuid, t / 1000, dev.sensors[0].uuid, (t + 1) / 1000)).encode()
    r = gw.post_packet(raw=raw, key=dev.key)
    assert r.status == 200, r
    assert r.json()["accepted"] == 1, r.json()
    assert [(x["index"], x["reason"]) for x in r.json()["rejected"]] == [(0, "invalid_value")]
    assert [row[0] for row in db.readings(dev.sensors[0].id)] == [2.5]


# --------------------------------------------------------------------- timestamps

def test_rfc3339_offsets_stored_as_utc_ms(gw, db, make_device):
    dev = make_device(1)
    t = now_ms() - 3_600_000
    readings = [(0, 1, iso_ms(t, 120)), (0, 2, iso_ms(t + 1, -330)), (0, 3, iso_ms(t + 2, 0)),
                (0, 4, iso_ms(t + 3, 5 * 60 + 45))]
    r = gw.post_packet(dev.packet(readings), key=dev.key)
    assert r.status == 200, r
    assert r.json()["accepted"] == 4
    got = [(row[0], row[1]) for row in db.readings(dev.sensors[0].id)]
    assert got == [(1.0, t), (2.0, t + 1), (3.0, t + 2), (4.0, t + 3)]


def test_fractions_rounded_to_ms(gw, db, make_device):
    dev = make_device(1)
    base_s = (now_ms() - 7_200_000) // 1000
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base_s))
    readings = [
        {"sensor_uuid": dev.sensors[0].uuid, "value": 1, "ts": base_s},                  # int
        {"sensor_uuid": dev.sensors[0].uuid, "value": 2, "ts": base_s + 10.1237},        # up
        {"sensor_uuid": dev.sensors[0].uuid, "value": 3, "ts": base_s + 20.0004},        # down
        {"sensor_uuid": dev.sensors[0].uuid, "value": 4, "ts": stamp + ".123789Z"},      # up
        {"sensor_uuid": dev.sensors[0].uuid, "value": 5, "ts": stamp[:-2] + "30.5Z"},    # .500
        {"sensor_uuid": dev.sensors[0].uuid, "value": 6, "ts": stamp[:-2] + "40Z"},      # none
    ]
    r = gw.post_packet({"device_uuid": dev.uuid, "readings": readings}, key=dev.key)
    assert r.status == 200, r
    assert r.json()["accepted"] == 6, r.json()
    by_value = {row[0]: row[1] for row in db.readings(dev.sensors[0].id)}
    minute_base = base_s - base_s % 60
    assert by_value == {
        1.0: base_s * 1000,
        2.0: base_s * 1000 + 10_124,
        3.0: base_s * 1000 + 20_000,
        4.0: base_s * 1000 + 124,
        5.0: minute_base * 1000 + 30_500,
        6.0: minute_base * 1000 + 40_000,
    }, by_value


def test_reading_without_ts_takes_packet_ts(gw, db, make_device):
    dev = make_device(2)
    p = now_ms() - 600_000
    own = p - 5_000
    r = gw.post_packet(dev.packet([(0, 1.0), (1, 2.0, iso_ms(own))], ts=iso_ms(p, 60)),
                       key=dev.key)
    assert r.status == 200, r
    assert db.readings(dev.sensors[0].id)[0][1] == p
    assert db.readings(dev.sensors[1].id)[0][1] == own
    # packet ts as epoch seconds
    p2 = (now_ms() - 500_000) // 1000
    r = gw.post_packet(dev.packet([(0, 3.0)], ts=p2), key=dev.key)
    assert r.status == 200, r
    assert [row[1] for row in db.readings(dev.sensors[0].id)] == [p, p2 * 1000]


def test_reading_without_any_ts_takes_server_time(gw, db, make_device):
    dev = make_device(1)
    before = now_ms()
    r = gw.post_packet(dev.packet([(0, 1.0)]), key=dev.key)
    after = now_ms()
    assert r.status == 200, r
    (row,) = db.readings(dev.sensors[0].id)
    assert before - 5 <= row[1] <= after + 5, (before, row[1], after)
    assert before - 5 <= row[2] <= after + 5


def test_stale_packet_ts_inherited_by_readings(gw, db, make_device):
    dev = make_device(1)
    before = db.counts()
    r = gw.post_packet(dev.packet([(0, 1.0)], ts=iso_ms(now_ms() - 9 * 86_400_000)),
                       key=dev.key)
    body = assert_error(r, 422, "no_valid_readings")
    assert body["rejected"][0]["reason"] == "stale_timestamp"
    assert db.counts() == before


# --------------------------------------------------------------------- packet_id

def test_packet_id_retry_returns_first_answer(gw, db, make_device):
    dev = make_device(2)
    pid = uid("pkt-")
    t = now_ms() - 5_000
    pkt = dev.packet([(0, 1.0, iso_ms(t)), (1, 2.0, iso_ms(t)), (uid("u-"), 3.0)], packet_id=pid)
    r1 = gw.post_packet(pkt, key=dev.key)
    assert r1.status == 200, r1
    b1 = r1.json()
    assert b1["duplicate"] is False and b1["accepted"] == 2 and len(b1["rejected"]) == 1
    after_first = db.counts()
    r2 = gw.post_packet(pkt, key=dev.key)
    assert r2.status == 200, r2
    assert r2.json() == {**b1, "duplicate": True}
    assert db.counts() == after_first
    assert db.reading_count(dev.sensors[0].id) == 1
    assert db.reading_count(dev.sensors[1].id) == 1


def test_packet_id_wins_over_body(gw, db, make_device):
    dev = make_device(1)
    pid = uid("pkt-")
    t = now_ms() - 5_000
    r1 = gw.post_packet(dev.packet([(0, 1.0, iso_ms(t))], packet_id=pid), key=dev.key)
    assert r1.status == 200, r1
    before = db.counts()
    r2 = gw.post_packet(dev.packet([(0, 50.0, iso_ms(t + 1)), (0, 60.0, iso_ms(t + 2))],
                                   packet_id=pid), key=dev.key)
    assert r2.status == 200, r2
    assert r2.json() == {**r1.json(), "duplicate": True}
    assert db.counts() == before
    assert [row[0] for row in db.readings(dev.sensors[0].id)] == [1.0]


def test_packet_id_scoped_per_device(gw, db, make_device):
    a, b = make_device(1), make_device(1)
    pid = uid("shared-")
    ra = gw.post_packet(a.packet([(0, 1.0)], packet_id=pid), key=a.key)
    rb = gw.post_packet(b.packet([(0, 2.0)], packet_id=pid), key=b.key)
    assert ra.status == 200 and rb.status == 200, (ra, rb)
    assert ra.json()["duplicate"] is False and rb.json()["duplicate"] is False
    assert db.reading_count(a.sensors[0].id) == 1 and db.reading_count(b.sensors[0].id) == 1


def test_packet_id_not_remembered_after_422(gw, db, make_device):
    dev = make_device(1)
    pid = uid("pkt-")
    r1 = gw.post_packet(dev.packet([(0, "bad")], packet_id=pid), key=dev.key)
    assert_error(r1, 422, "no_valid_readings")
    r2 = gw.post_packet(dev.packet([(0, 8.0)], packet_id=pid), key=dev.key)
    assert r2.status == 200, r2
    assert r2.json()["duplicate"] is False and r2.json()["accepted"] == 1
    assert db.reading_count(dev.sensors[0].id) == 1


def test_packet_id_length_limits(gw, db, make_device):
    dev = make_device(1)
    ok = gw.post_packet(dev.packet([(0, 1.0)], packet_id="p" * 64), key=dev.key)
    assert ok.status == 200, ok
    one = gw.post_packet(dev.packet([(0, 1.0)], packet_id="q"), key=dev.key)
    assert one.status == 200, one
    before = db.counts()
    for bad in ("x" * 65, "", 123, 1.5, ["a"], {"id": "a"}, True):
        r = gw.post_packet(dev.packet([(0, 1.0)], packet_id=bad), key=dev.key)
        assert_error(r, 400, "invalid_request", detail_contains="packet_id")
    assert db.counts() == before


def test_packet_id_concurrent_copies_stored_once(gw, db, make_device):
    dev = make_device(3)
    pid = uid("race-")
    t = now_ms() - 1000
    pkt = dev.packet([(0, 1.0, iso_ms(t)), (1, 2.0, iso_ms(t)), (2, 3.0, iso_ms(t))],
                     packet_id=pid)
    n = 8
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        barrier.wait(10)
        try:
            results[i] = gw.post_packet(pkt, key=dev.key)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    statuses = [getattr(r, "status", r) for r in results]
    assert all(s == 200 for s in statuses), statuses
    bodies = [r.json() for r in results]
    assert sum(1 for b in bodies if b["duplicate"] is False) == 1, bodies
    assert all(b["accepted"] == 3 for b in bodies), bodies
    for s in dev.sensors:
        assert db.reading_count(s.id) == 1, f"sensor {s.uuid} stored {db.reading_count(s.id)}x"


# --------------------------------------------------------------------- atomicity

def test_no_reader_sees_half_a_packet(gw, db, make_device):
    dev = make_device(1)
    sid = dev.sensors[0].id
    per_packet = 10
    seen = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            seen.add(db.reading_count(sid))

    th = threading.Thread(target=reader)
    th.start()
    try:
        base = now_ms() - 300_000
        for p in range(20):
            pkt = dev.packet([(0, float(i), iso_ms(base + p * 100 + i))
                              for i in range(per_packet)])
            r = gw.post_packet(pkt, key=dev.key)
            assert r.status == 200, r
            # a 2xx is sent only after the commit: the reading is visible now
            assert db.reading_count(sid) == (p + 1) * per_packet
    finally:
        stop.set()
        th.join(30)
    assert all(c % per_packet == 0 for c in seen), sorted(seen)


def test_packet_id_race_across_two_gateways(gw, db, make_device):
    from conftest import Gateway
    g2 = Gateway(gw.db_path, gw.workdir, env=gw.env, name="second-gw")
    g2.start()
    try:
        dev = make_device(2)
        pid = uid("race2-")
        pkt = dev.packet([(0, 1.0), (1, 2.0)], packet_id=pid, ts=iso_ms(now_ms() - 2000))
        n = 8
        barrier = threading.Barrier(n)
        results = [None] * n

        def worker(i):
            target = gw if i % 2 == 0 else g2
            barrier.wait(10)
            try:
                results[i] = target.post_packet(pkt, key=dev.key)
            except Exception as e:  # noqa: BLE001
                results[i] = e

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        statuses = [getattr(r, "status", r) for r in results]
        assert all(s == 200 for s in statuses), statuses
        bodies = [r.json() for r in results]
        assert sum(1 for b in bodies if b["duplicate"] is False) == 1, bodies
        assert db.reading_count(dev.sensors[0].id) == 1
        assert db.reading_count(dev.sensors[1].id) == 1
    finally:
        assert g2.stop() == 0, g2.log_tail()


def test_concurrent_devices_all_stored(gw, db, make_device):
    devs = [make_device(1) for _ in range(6)]
    per = 15
    errors = []
    base = now_ms() - 900_000

    def worker(dev):
        for i in range(per):
            r = gw.post_packet(dev.packet([(0, float(i), iso_ms(base + i * 10)),
                                           (0, float(i) + 0.5, iso_ms(base + i * 10 + 1))]),
                               key=dev.key)
            if r.status != 200 or r.json()["accepted"] != 2:
                errors.append(r)

    threads = [threading.Thread(target=worker, args=(d,)) for d in devs]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors[:3]
    for d in devs:
        rows = db.readings(d.sensors[0].id)
        assert len(rows) == 2 * per
        assert all(r[4] == 0 for r in rows), "no reading of an in-order stream is late"
