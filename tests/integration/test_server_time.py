"""Readings without timestamps (SPEC §5): the server stamps them in the order the
writer applies them, so concurrent packets never make one of them late. Runs on
both backends (scripts/run-integration.sh); two gateways on one PostgreSQL are
in test_pg_backend.py."""

from conftest import post_unstamped_concurrently

# Four clients post as fast as they can: no rate limit in the way.
GATEWAY_ENV = {"RATE_LIMIT_IP_RPS": "0", "RATE_LIMIT_DEVICE_RPS": "0"}


def test_concurrent_unstamped_readings_are_never_late(gw, db, cli, make_device):
    dev = make_device(1)
    s = dev.sensors[0]
    cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "critical", "--min", "-100",
             "--max", "50")
    statuses = post_unstamped_concurrently([gw], dev, 0, 60.0, threads=4, per_thread=40)
    assert statuses == [200] * 160, sorted(set(statuses))

    rows = db.query("SELECT ts, late, class FROM sensor_readings WHERE sensor_id=? ORDER BY id",
                    (s.id,))
    assert len(rows) == 160
    assert [r for r in rows if r[1] != 0] == [], "a server-stamped reading was stored late"
    assert {r[2] for r in rows} == {"alert"}
    times = [r[0] for r in rows]
    assert len(set(times)) == 160, "two readings of one sensor share a time"
    assert times == sorted(times), "times follow the order the writer stored them"
    [(hits, status)] = db.query("SELECT hit_count, status FROM alerts WHERE sensor_id=?", (s.id,))
    assert (hits, status) == (160, "active")
    st = gw.status(dev.uuid, key=dev.key).json()["sensors"][0]
    assert st["state"] == "alert" and st["last_value"] == 60.0, st
