"""Classification, alerts and late data seen through HTTP + SQLite (SPEC §4).
Thresholds are set with the CLI before the sensor's first reading, so no cache
TTL is involved."""

from conftest import iso_ms, now_ms, provision_device


def _post_seq(gw, dev, seq, sensor=0):
    for ts, v in seq:
        r = gw.post_packet(dev.packet([(sensor, v, iso_ms(ts))]), key=dev.key)
        assert r.status == 200, r
        assert r.json()["accepted"] == 1, r


def _classes(db, sensor_id):
    return [(row[0], row[3], row[4]) for row in db.readings(sensor_id)]


def _alerts(db, sensor_id):
    return db.query("SELECT id, kind, severity, status, first_value, last_value, hit_count, "
                    "triggered_at, last_seen_at, resolved_at FROM alerts WHERE sensor_id=? "
                    "ORDER BY id", (sensor_id,))


def _events(db, alert_id):
    return [tuple(r) for r in db.query("SELECT event, severity FROM alert_notifications "
                                       "WHERE alert_id=? ORDER BY id", (alert_id,))]


def test_threshold_alert_escalates_and_resolves(gw, db, cli, make_device):
    dev = make_device(1)
    s = dev.sensors[0]
    cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "warning", "--min", "0",
             "--max", "50")
    cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "critical", "--min", "-10",
             "--max", "100")
    t = now_ms() - 600_000
    _post_seq(gw, dev, [(t, 20.0), (t + 1000, 70.0)])
    st = gw.status(dev.uuid, key=dev.key).json()["sensors"][0]
    assert st["state"] == "warning" and st["active_alerts"] == 1, st
    _post_seq(gw, dev, [(t + 2000, 150.0), (t + 3000, 160.0)])
    st = gw.status(dev.uuid, key=dev.key).json()["sensors"][0]
    assert st["state"] == "alert" and st["active_alerts"] == 1 and st["last_value"] == 160.0, st
    (a,) = _alerts(db, s.id)
    assert a[1:] == ("threshold", "critical", "active", 70.0, 160.0, 3, t + 1000, t + 3000,
                     None), a
    _post_seq(gw, dev, [(t + 4000, 20.0)])
    assert _classes(db, s.id) == [(20.0, "normal", 0), (70.0, "warning", 0),
                                  (150.0, "alert", 0), (160.0, "alert", 0), (20.0, "normal", 0)]
    (a,) = _alerts(db, s.id)
    assert a[1:] == ("threshold", "critical", "resolved", 70.0, 160.0, 3, t + 1000, t + 3000,
                     t + 4000), a
    assert _events(db, a[0]) == [("triggered", "warning"), ("escalated", "critical"),
                                 ("resolved", "critical")]
    st = gw.status(dev.uuid, key=dev.key).json()["sensors"][0]
    assert st["state"] == "normal" and st["active_alerts"] == 0, st


def test_spike_opens_delta_alert(gw, db, cli, make_device):
    dev = make_device(1)
    s = dev.sensors[0]
    cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "warning", "--delta-max", "10")
    t = now_ms() - 600_000
    _post_seq(gw, dev, [(t, 20.0), (t + 1000, 25.0), (t + 2000, 40.0), (t + 3000, 41.0)])
    assert _classes(db, s.id) == [(20.0, "normal", 0), (25.0, "normal", 0), (40.0, "spike", 0),
                                  (41.0, "normal", 0)]
    (a,) = _alerts(db, s.id)
    assert a[1:4] == ("delta_spike", "warning", "resolved"), a
    assert a[7] == t + 2000 and a[9] == t + 3000, a
    assert [e for e, _ in _events(db, a[0])] == ["triggered", "resolved"]


def test_late_reading_stored_but_changes_nothing(gw, db, cli, make_device):
    dev = make_device(1)
    s = dev.sensors[0]
    cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "critical", "--max", "100",
             "--delta-max", "5")
    t = now_ms() - 600_000
    _post_seq(gw, dev, [(t, 20.0)])
    # older than the newest: late, classified by range only, no alert, no spike
    _post_seq(gw, dev, [(t - 60_000, 500.0), (t - 30_000, 60.0)])
    # same time as the newest is not late
    _post_seq(gw, dev, [(t, 21.0)])
    rows = db.query("SELECT value, class, late FROM sensor_readings WHERE sensor_id=? "
                    "ORDER BY id", (s.id,))
    assert rows == [(20.0, "normal", 0), (500.0, "alert", 1), (60.0, "normal", 1),
                    (21.0, "normal", 0)], rows
    assert _alerts(db, s.id) == []
    st = gw.status(dev.uuid, key=dev.key).json()["sensors"][0]
    assert st["last_ts"] == iso_ms(t) and st["state"] == "normal", st


def test_packet_applied_in_reading_time_order(gw, db, make_device):
    dev = make_device(1)
    t = now_ms() - 600_000
    r = gw.post_packet(dev.packet([(0, 3.0, iso_ms(t + 2000)), (0, 1.0, iso_ms(t)),
                                   (0, 2.0, iso_ms(t + 1000))]), key=dev.key)
    assert r.status == 200 and r.json()["accepted"] == 3, r
    rows = db.query("SELECT value, late FROM sensor_readings WHERE sensor_id=? ORDER BY ts",
                    (dev.sensors[0].id,))
    assert rows == [(1.0, 0), (2.0, 0), (3.0, 0)], rows


def test_state_stays_alert_while_critical_alert_active(gw, db, cli, make_device):
    dev = make_device(1)
    s = dev.sensors[0]
    cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "warning", "--max", "50")
    crit = cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "critical",
                    "--max", "100")
    t = now_ms() - 600_000
    _post_seq(gw, dev, [(t, 150.0), (t + 1000, 70.0)])
    st = gw.status(dev.uuid, key=dev.key).json()["sensors"][0]
    # newest reading is a warning, but a critical alert is active: state is raised
    assert st["state"] == "alert" and st["last_value"] == 70.0 and st["active_alerts"] == 1, st
    (a,) = db.query("SELECT severity, status, hit_count, threshold_id FROM alerts "
                    "WHERE sensor_id=?", (s.id,))
    assert a == ("critical", "active", 2, crit["threshold_id"]), a


def test_alert_clear_after_counts_consecutive_normals(gateway_factory):
    def provision(c):
        dev = provision_device(c, 1)
        c.json("threshold", "set", "--sensor", dev.sensors[0].uuid, "--severity", "critical",
               "--max", "100")
        return dev

    gw, dev = gateway_factory({"ALERT_CLEAR_AFTER": "3"}, provision=provision, name="clear3")
    sid = dev.sensors[0].id
    t = now_ms() - 600_000
    seq = [150.0, 10.0, 10.0, 120.0, 10.0, 10.0]
    _post_seq(gw, dev, [(t + i * 1000, v) for i, v in enumerate(seq)])
    status = gw.db.query("SELECT status, hit_count FROM alerts WHERE sensor_id=?", (sid,))
    assert status == [("active", 2)], status
    _post_seq(gw, dev, [(t + 6000, 10.0)])
    rows = gw.db.query("SELECT status, hit_count, resolved_at FROM alerts WHERE sensor_id=?",
                       (sid,))
    assert rows == [("resolved", 2, t + 6000)], rows
