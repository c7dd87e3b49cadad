"""Process lifecycle: SIGTERM/SIGINT exit 0, kill -9 loses no answered reading,
restart keeps packet ids and state, WAL lets readers in (SPEC §3, §9)."""

import signal
import socket
import subprocess
import time

import pytest

from conftest import (BIN, Gateway, base_env, iso_ms, now_ms, provision_device, sqlite_only, uid,
                      wait_until)


def port_closed(port):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_zero(gateway_factory, sig):
    gw, dev = gateway_factory(provision=lambda c: provision_device(c, 1), name="sig")
    r = gw.post_packet(dev.packet([(0, 1.0)]), key=dev.key)
    assert r.status == 200, r
    t0 = time.monotonic()
    rc = gw.stop(sig, timeout=20)
    print(f"exit after {sig.name}: rc={rc} in {time.monotonic() - t0:.2f}s")
    assert rc == 0, f"exit code {rc}; log tail:\n{gw.log_tail()}"
    assert port_closed(gw.port)
    assert gw.db.reading_count(dev.sensors[0].id) == 1


def test_sigterm_with_open_idle_connections(gateway_factory):
    gw, dev = gateway_factory(provision=lambda c: provision_device(c, 1), name="sig-idle")
    # one connection that finished a request and stays open (keep-alive), one that
    # sent half a request
    ka = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    ka.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b" 200 " in ka.recv(65536)
    half = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    half.sendall(b"POST /ingest/packets HTTP/1.1\r\nHost: x\r\n")
    try:
        t0 = time.monotonic()
        rc = gw.stop(signal.SIGTERM, timeout=20)
        took = time.monotonic() - t0
        print(f"SIGTERM with open connections: rc={rc} in {took:.2f}s")
        assert rc == 0, gw.log_tail()
        assert took < 15
    finally:
        ka.close()
        half.close()


def test_kill9_loses_no_answered_reading(gateway_factory):
    gw, dev = gateway_factory(provision=lambda c: provision_device(c, 2), name="kill9")
    base = now_ms() - 600_000
    answered = 0
    for i in range(30):
        r = gw.post_packet(dev.packet([(0, float(i), iso_ms(base + i)),
                                       (1, float(i), iso_ms(base + i))]), key=dev.key)
        assert r.status == 200, r
        answered += r.json()["accepted"]
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(10)
    stored = gw.db.reading_count(dev.sensors[0].id) + gw.db.reading_count(dev.sensors[1].id)
    assert stored == answered == 60


def test_restart_keeps_packet_ids_and_status(gateway_factory):
    gw, dev = gateway_factory(provision=lambda c: provision_device(c, 1), name="restart")
    pid = uid("pkt-")
    t = now_ms() - 30_000
    r1 = gw.post_packet(dev.packet([(0, 17.25, iso_ms(t))], packet_id=pid), key=dev.key)
    assert r1.status == 200, r1
    assert gw.stop() == 0
    gw.start()
    r2 = gw.post_packet(dev.packet([(0, 17.25, iso_ms(t))], packet_id=pid), key=dev.key)
    assert r2.status == 200, r2
    assert r2.json() == {**r1.json(), "duplicate": True}
    assert gw.db.reading_count(dev.sensors[0].id) == 1
    st = gw.status(dev.uuid, key=dev.key)
    assert st.status == 200, st
    (e,) = st.json()["sensors"]
    assert e["state"] == "normal" and e["last_value"] == 17.25 and e["last_ts"] == iso_ms(t), e


def test_wal_and_readers_while_serving(gateway_factory):
    sqlite_only()
    gw, dev = gateway_factory(provision=lambda c: provision_device(c, 1), name="wal")
    assert gw.db.scalar("PRAGMA journal_mode") == "wal"
    # a reader holding a read transaction open does not block ingest
    import sqlite3
    c = sqlite3.connect(str(gw.db_path), timeout=5, isolation_level=None)
    try:
        c.execute("BEGIN")
        c.execute("SELECT count(*) FROM sensor_readings").fetchone()
        t0 = time.monotonic()
        r = gw.post_packet(dev.packet([(0, 1.0)]), key=dev.key)
        assert r.status == 200, r
        assert time.monotonic() - t0 < 5
        c.execute("COMMIT")
    finally:
        c.close()
    assert gw.db.reading_count(dev.sensors[0].id) == 1


def test_port_in_use_fails_cleanly(tmp_path):
    from conftest import Cli
    c = Cli(tmp_path / "p.db")
    c.init()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        env = base_env(tmp_path / "p.db", {"INGEST_HOST": "127.0.0.1", "INGEST_PORT": str(port)})
        p = subprocess.run([BIN, "serve"], env=env, capture_output=True, text=True, timeout=30)
        assert p.returncode != 0, p
        assert p.stderr.strip(), "no message about the busy port"
    finally:
        blocker.close()


def test_idle_connection_closed_after_timeout(gateway_factory):
    gw, _ = gateway_factory({"HTTP_IDLE_TIMEOUT_S": "1"}, name="idle")
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        t0 = time.monotonic()
        s.settimeout(10)
        try:
            data = s.recv(1024)
        except (ConnectionResetError, TimeoutError, socket.timeout) as e:
            data = e
        took = time.monotonic() - t0
        print(f"idle connection closed after {took:.2f}s (timeout 1s)")
        assert data == b"" or isinstance(data, ConnectionResetError), data
        assert took < 6, took
    finally:
        s.close()
    assert gw.get("/health").status == 200


def test_listening_log_line_and_startup(gateway_factory):
    gw, _ = gateway_factory(name="startup")
    lines = [ln for ln in gw.log_text().splitlines() if "event=listening" in ln]
    assert len(lines) == 1, gw.log_text()
    assert f"port={gw.port}" in lines[0]
    # a second gateway on the same database also starts (no exclusive lock)
    g2 = Gateway(gw.db_path, gw.workdir, name="startup-2")
    g2.start()
    try:
        assert g2.port != gw.port
        assert g2.get("/health").status == 200
    finally:
        assert g2.stop() == 0
    wait_until(lambda: gw.get("/health").status == 200, 5, what="first gateway healthy")


def test_db_locked_gives_503_then_recovers(gateway_factory):
    sqlite_only()
    import sqlite3
    gw, dev = gateway_factory({"DB_BUSY_TIMEOUT_MS": "300"},
                              provision=lambda c: provision_device(c, 1), name="locked")
    assert gw.post_packet(dev.packet([(0, 1.0)]), key=dev.key).status == 200
    pid = uid("pkt-")
    t = now_ms() - 10_000
    pkt = dev.packet([(0, 2.0, iso_ms(t))], packet_id=pid)
    locker = sqlite3.connect(str(gw.db_path), timeout=5, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # holds the write lock (WAL: readers still fine)
        t0 = time.monotonic()
        r = gw.post_packet(pkt, key=dev.key, timeout=60)
        print(f"answer while the DB is locked: {r.status} after {time.monotonic() - t0:.2f}s")
        assert r.status == 503, r
        assert r.json().get("code"), r
        assert int(r.headers["retry-after"]) >= 1, r.headers
        assert gw.alive()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    # recovers by itself; the refused packet left no trace (its packet_id is free)
    r = wait_until(lambda: (lambda x: x if x.status != 503 else None)(
        gw.post_packet(pkt, key=dev.key)), timeout=15, interval=0.2, what="recovery")
    assert r.status == 200, r
    assert r.json()["duplicate"] is False and r.json()["accepted"] == 1
    assert sorted(row[0] for row in gw.db.readings(dev.sensors[0].id)) == [1.0, 2.0]


def test_restart_keeps_sensor_state(gateway_factory):
    """After a restart the previous value and open alerts are rebuilt from the DB:
    no missed spike, no reopened alert (SPEC §4)."""
    def provision(c):
        dev = provision_device(c, 2)
        c.json("threshold", "set", "--sensor", dev.sensors[0].uuid, "--severity", "warning",
               "--delta-max", "10")
        c.json("threshold", "set", "--sensor", dev.sensors[1].uuid, "--severity", "critical",
               "--max", "100")
        return dev

    gw, dev = gateway_factory(provision=provision, name="state")
    t = now_ms() - 600_000
    for sensor, v, ts in ((0, 20.0, t), (1, 150.0, t)):
        r = gw.post_packet(dev.packet([(sensor, v, iso_ms(ts))]), key=dev.key)
        assert r.status == 200, r
    assert gw.stop() == 0
    gw.start()
    for sensor, v, ts in ((0, 40.0, t + 1000), (1, 160.0, t + 1000)):
        r = gw.post_packet(dev.packet([(sensor, v, iso_ms(ts))]), key=dev.key)
        assert r.status == 200, r
    db = gw.db
    assert [r[3] for r in db.readings(dev.sensors[0].id)] == ["normal", "spike"]
    alerts = db.query("SELECT kind, status, hit_count, last_value FROM alerts WHERE sensor_id=?",
                      (dev.sensors[1].id,))
    assert alerts == [("threshold", "active", 2, 160.0)], alerts
    n = db.scalar("SELECT count(*) FROM alert_notifications n JOIN alerts a ON a.id=n.alert_id "
                  "WHERE a.sensor_id=?", (dev.sensors[1].id,))
    assert n == 1, f"expected only the 'triggered' notification, got {n}"
