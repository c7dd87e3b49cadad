"""
The NATS JetStream broker (BROKER_URL=nats://…) and `iot-ingest consume`.

Each test starts its own `nats-server -js` on loopback, on a port the server
picks (learned from its --ports_file_dir file), with its storage in the
test's temp dir, and stops it at the end, also on failure. Everything is
awaited by polling against a deadline; nothing sleeps for a fixed time.
"""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import conftest
from conftest import (BIN, Cli, Db, base_env, iso_ms, metric_value, now_ms, provision_device,
                      wait_until)

BACKEND = getattr(conftest, "BACKEND", "sqlite")
new_db = getattr(conftest, "new_db", lambda path: path)

NATS_BIN = shutil.which("nats-server") or "/usr/sbin/nats-server"
DEADLINE_S = 30


# --------------------------------------------------------------------------- engine


class NatsServer:
    """One nats-server with JetStream, on free loopback ports."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "nats"
        self.dir.mkdir(exist_ok=True)
        self.port = None
        self.mport = None
        self.proc = None
        self.runs = 0

    def start(self):
        """First start: ports chosen by the server; later starts reuse them."""
        self.runs += 1
        for f in self.dir.glob("*.ports"):
            f.unlink()
        port = str(self.port) if self.port else "-1"
        mport = str(self.mport) if self.mport else "-1"
        log = open(self.dir / f"nats-{self.runs}.log", "wb")
        try:
            self.proc = subprocess.Popen(
                [NATS_BIN, "-js", "-a", "127.0.0.1", "-p", port, "-m", mport,
                 "-sd", str(self.dir / "store"), "--ports_file_dir", str(self.dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()

        def ports():
            if self.proc.poll() is not None:
                raise AssertionError(f"nats-server exited {self.proc.returncode}: "
                                     f"{self.log_text()}")
            files = list(self.dir.glob("*.ports"))
            if not files:
                return None
            try:
                return json.loads(files[0].read_text())
            except ValueError:
                return None  # being written

        p = wait_until(ports, DEADLINE_S, what="nats-server ports file")
        self.port = int(p["nats"][0].rsplit(":", 1)[1])
        self.mport = int(p["monitoring"][0].rsplit(":", 1)[1])
        wait_until(lambda: self.monitor("healthz") is not None, DEADLINE_S,
                   what="nats-server healthz")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_text(self):
        return "\n".join(f.read_text(errors="replace") for f in sorted(self.dir.glob("*.log")))

    def url(self, subject="iot.readings"):
        return f"nats://127.0.0.1:{self.port}/{subject}"

    def monitor(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/{path}", timeout=5) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def stream_state(self, stream):
        """The stream's state (messages, first_seq, …), or None if it does not exist."""
        j = self.monitor("jsz?streams=true&consumers=true&config=true")
        for acc in (j or {}).get("account_details", []):
            for s in acc.get("stream_detail", []):
                if s["name"] == stream:
                    return s
        return None


@pytest.fixture
def nats(tmp_path):
    if not os.access(NATS_BIN, os.X_OK):
        pytest.fail("nats-server is not installed (sh scripts/deps.sh test)", pytrace=False)
    srv = NatsServer(tmp_path)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


# --------------------------------------------------------------------------- helpers


def metric(gw, outcome):
    r = gw.get("/metrics")
    assert r.status == 200
    v = metric_value(r.body.decode(), "iot_ingest_broker_messages_total", f'outcome="{outcome}"')
    assert v is not None and v >= 0 and v.is_integer(), r.body[:2000]
    return int(v)


def nats_env(nats, stream="IOT_TEST", **extra):
    env = {"BROKER_URL": nats.url(), "BROKER_STREAM": stream, "BROKER_THROTTLE_MS": "0",
           "BROKER_RECONNECT_WAIT_MS": "100"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def one_sensor_device(cli):
    dev = provision_device(cli, n_sensors=2)
    # sensor 0: warning above 50, critical above 100, so not every reading is normal
    for sev, mx in (("warning", 50), ("critical", 100)):
        p = cli.run("threshold", "set", "--sensor", dev.sensors[0].uuid, "--severity", sev,
                    "--max", mx)
        assert p.returncode == 0, p.stderr
    return dev


def post_series(gw, dev, n, start_ms, sensor=0, value=lambda i: 20.0 + (i % 5)):
    """n packets of one reading each, 1 s apart in reading time."""
    for i in range(n):
        r = gw.post_packet(dev.packet([(sensor, value(i), iso_ms(start_ms + i * 1000))]),
                           key=dev.key)
        assert r.status == 200, r


def wait_broker_ok(gw):
    """
    The stream is checked/created after serve starts listening; readings
    committed before that are dropped by design (docs/broker.md), so tests that
    count publications wait for it first.
    """
    wait_until(lambda: gw.get("/health").json()["broker"] == "ok", DEADLINE_S,
               what="broker ok in /health")


def normal_published_rows(db_path):
    return Db(db_path).scalar("SELECT count(*) FROM sensor_readings WHERE class = 'normal' "
                              "AND late = 0")


def q(db_path, sql, args=()):
    return [tuple(r) for r in Db(db_path).query(sql, args)]


class Consumer:
    """One `iot-ingest consume` process."""

    def __init__(self, db_path, workdir, name, env):
        self.name = name
        self.log = Path(workdir) / f"consume-{name}.log"
        self.out = Path(workdir) / f"consume-{name}.out"
        e = base_env(db_path, {"LOG_LEVEL": "info", **env})
        with open(self.log, "wb") as err, open(self.out, "wb") as out:
            self.proc = subprocess.Popen([BIN, "consume", "--name", name], env=e,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"consume {self.name} ignored signal {sig}: "
                                     f"{self.log.read_text(errors='replace')[-3000:]}")
        return self.proc.returncode

    def summary(self):
        text = self.out.read_text()
        assert "consume: " in text, f"no summary line: {text!r}"
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", text.split("consume: ")[-1])}

    def logs(self):
        return self.log.read_text(errors="replace")


@pytest.fixture
def consumers(tmp_path):
    started = []

    def make(db_path, name, env):
        c = Consumer(db_path, tmp_path, name, env)
        started.append(c)
        return c

    yield make
    for c in started:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait(10)


# --------------------------------------------------------------------------- publishing


def test_published_count_equals_normal_non_late_readings(nats, gateway_factory):
    gw, dev = gateway_factory(env=nats_env(nats), provision=one_sensor_device, name="pub")
    wait_until(lambda: gw.get("/health").json()["broker"] == "ok", DEADLINE_S,
               what="broker ok in /health")
    t0 = now_ms() - 3_600_000
    # normal, warning (60), alert (150) on sensor 0; normal on sensor 1; then late readings
    values = [20, 21, 60, 22, 150, 23, 24, 70, 25, 26]
    for i, v in enumerate(values):
        r = gw.post_packet(dev.packet([(0, v, iso_ms(t0 + i * 1000)),
                                       (1, 5.0 + i, iso_ms(t0 + i * 1000))]), key=dev.key)
        assert r.status == 200, r
    r = gw.post_packet(dev.packet([(0, 20, iso_ms(t0 - 5000)), (1, 5, iso_ms(t0 - 5000))]),
                       key=dev.key)
    assert r.status == 200 and r.json()["accepted"] == 2, r
    assert q(gw.db_path, "SELECT count(*) FROM sensor_readings WHERE late = 1")[0][0] == 2

    expected = normal_published_rows(gw.db_path)
    assert 0 < expected < len(values) * 2 + 2
    wait_until(lambda: metric(gw, "published") == expected, DEADLINE_S,
               what=f"published == {expected}")
    wait_until(lambda: (nats.stream_state("IOT_TEST") or {}).get("state", {}).get("messages")
               == expected, DEADLINE_S, what="stream holds every published reading")
    assert metric(gw, "dropped") == 0
    assert metric(gw, "published") == expected

    st = nats.stream_state("IOT_TEST")
    assert st["config"]["max_age"] == 86400 * 10**9
    assert st["config"]["max_bytes"] == 1073741824


def test_stream_limits_come_from_settings(nats, gateway_factory):
    gw, _ = gateway_factory(env=nats_env(nats, stream="LIMITED", BROKER_MAX_AGE_S=600,
                                         BROKER_MAX_BYTES=8 * 1048576),
                            provision=one_sensor_device, name="limits")
    st = wait_until(lambda: nats.stream_state("LIMITED"), DEADLINE_S, what="stream created")
    assert st["config"]["max_age"] == 600 * 10**9
    assert st["config"]["max_bytes"] == 8 * 1048576
    assert st["config"]["subjects"] == ["iot.readings"]


def test_engine_down_ingest_goes_on_and_recovers(nats, gateway_factory):
    gw, dev = gateway_factory(env=nats_env(nats), provision=one_sensor_device, name="down")
    wait_until(lambda: gw.get("/health").json()["broker"] == "ok", DEADLINE_S,
               what="broker ok")
    t0 = now_ms() - 3_600_000
    post_series(gw, dev, 5, t0)
    wait_until(lambda: metric(gw, "published") == 5, DEADLINE_S, what="5 published")

    nats.stop()

    def health_error():
        r = gw.get("/health")
        return r.status == 200 and r.json()["broker"] == "error" and r.json()["db"] == "ok"

    wait_until(health_error, DEADLINE_S, what='/health 200 with "broker":"error"')
    stored_before = gw.db.reading_count(dev.sensors[0].id)
    started = time.monotonic()
    post_series(gw, dev, 20, t0 + 10_000)  # asserts 200 for each
    assert time.monotonic() - started < 10, "ingest slowed down by the broker being down"
    assert gw.db.reading_count(dev.sensors[0].id) == stored_before + 20
    wait_until(lambda: metric(gw, "dropped") >= 20, DEADLINE_S, what="drops counted")
    assert metric(gw, "published") == 5
    assert gw.get("/health").status == 200

    nats.start()  # same port, same storage
    wait_until(lambda: gw.get("/health").json()["broker"] == "ok", DEADLINE_S,
               what="broker ok again after the engine returned")
    dropped = metric(gw, "dropped")
    post_series(gw, dev, 7, t0 + 40_000)
    wait_until(lambda: metric(gw, "published") == 12, DEADLINE_S, what="publishing resumed")
    assert metric(gw, "dropped") == dropped
    wait_until(lambda: nats.stream_state("IOT_TEST")["state"]["messages"] == 12, DEADLINE_S,
               what="stream has the 5 + 7 readings")
    assert gw.alive()


def test_gateway_starts_with_engine_down(tmp_path, gateway_factory):
    # a port nobody listens on: the gateway serves, reports the broker, drops
    env = {"BROKER_URL": "nats://127.0.0.1:1/iot.readings", "BROKER_RECONNECT_WAIT_MS": "100"}
    gw, dev = gateway_factory(env=env, provision=one_sensor_device, name="nostart")
    r = gw.get("/health")
    assert r.status == 200 and r.json()["broker"] == "error", r
    post_series(gw, dev, 3, now_ms() - 60_000)
    wait_until(lambda: metric(gw, "dropped") == 3, DEADLINE_S, what="3 dropped")


@pytest.mark.parametrize("url", ["nats://", "nats://127.0.0.1:4222/a.*",
                                 "nats://127.0.0.1:4222/a..b", "nats://h:1/x?y=1"])
def test_bad_nats_url_is_refused(tmp_path, url):
    cli = Cli(new_db(tmp_path / "bad.db"))
    cli.init()
    p = cli.run("serve", env={"BROKER_URL": url, "INGEST_PORT": "0"}, timeout=30)
    assert p.returncode != 0
    assert "BROKER_URL" in p.stderr, p.stderr


def test_password_in_url_never_logged(nats, gateway_factory):
    url = f"nats://user:s3cretpw@127.0.0.1:{nats.port}/iot.readings"
    gw, _ = gateway_factory(env={**nats_env(nats), "BROKER_URL": url}, name="pw")
    wait_until(lambda: "broker_stream_ready" in gw.log_text(), DEADLINE_S, what="stream ready")
    # The broker's own lines show the URL with the credential masked. (serve's
    # event=listening line prints BROKER_URL itself: cmd_serve.c's business.)
    mine = [ln for ln in gw.log_text().splitlines() if "event=broker_" in ln]
    assert mine and all("s3cretpw" not in ln for ln in mine), mine
    assert any("url=nats://***@127.0.0.1" in ln for ln in mine), mine


# --------------------------------------------------------------------------- consume


def consume_env(nats, **extra):
    env = nats_env(nats, BROKER_ACK_WAIT_S=2, BROKER_REDELIVERY_DELAY_MS=100,
                   ONLINE_PREDICT_EVERY=5, ONLINE_PRUNE_EVERY_S=0, DB_BUSY_TIMEOUT_MS=30000)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def applied_total(db_path):
    return q(db_path, "SELECT count(*) FROM consumer_applied")[0][0]


def test_two_consumers_split_the_stream_exactly_once(nats, gateway_factory, consumers):
    gw, dev = gateway_factory(env=nats_env(nats), provision=one_sensor_device, name="split")
    wait_broker_ok(gw)
    db_path = gw.db_path
    a = consumers(db_path, "a", consume_env(nats))
    b = consumers(db_path, "b", consume_env(nats))
    for c in (a, b):
        wait_until(lambda c=c: "consumer_ready" in c.logs(), DEADLINE_S,
                   what=f"consumer {c.name} ready")
    n0, n1 = 150, 100
    t0 = now_ms() - 3_600_000
    for i in range(max(n0, n1)):
        readings = []
        if i < n0:
            readings.append((0, 20.0 + (i % 7), iso_ms(t0 + i * 1000)))
        if i < n1:
            readings.append((1, 5.0 + (i % 3), iso_ms(t0 + i * 1000)))
        r = gw.post_packet(dev.packet(readings), key=dev.key)
        assert r.status == 200, r
    total = n0 + n1
    wait_until(lambda: metric(gw, "published") == total, DEADLINE_S, what="all published")
    wait_until(lambda: applied_total(db_path) == total, 60, what="every message applied")

    for c in (a, b):
        assert c.stop() == 0, c.logs()[-3000:]
    sa, sb = a.summary(), b.summary()
    assert sa["applied"] > 0 and sb["applied"] > 0, (sa, sb)  # the group shares the stream
    assert sa["applied"] + sb["applied"] == total, (sa, sb)
    assert sa["poison"] == sb["poison"] == 0

    # each message once: the applied marks, the model counts and the predictions agree
    by_consumer = dict(q(db_path, "SELECT consumer, count(*) FROM consumer_applied GROUP BY 1"))
    assert by_consumer == {"a": sa["applied"], "b": sb["applied"]}
    assert q(db_path, "SELECT count(DISTINCT seq), min(seq), max(seq) FROM consumer_applied")[0] \
        == (total, 1, total)
    counts = dict(q(db_path, "SELECT sensor_id, count FROM online_state"))
    assert counts == {dev.sensors[0].id: n0, dev.sensors[1].id: n1}
    model = q(db_path, "SELECT id, model_type FROM ml_models WHERE name = 'online_ewma'")
    assert len(model) == 1 and model[0][1] == "ewma"
    preds = dict(q(db_path, "SELECT sensor_id, count(*) FROM predictions WHERE model_id = ? "
                            "GROUP BY 1", (model[0][0],)))
    assert preds == {dev.sensors[0].id: n0 // 5, dev.sensors[1].id: n1 // 5}
    assert sa["predictions"] + sb["predictions"] == n0 // 5 + n1 // 5
    # sensor 1 cycles 5, 6, 7: its online mean settles near 6
    mean = q(db_path, "SELECT mean FROM online_state WHERE sensor_id = ?",
             (dev.sensors[1].id,))[0][0]
    assert 5.0 <= mean <= 7.0


def group_detail(nats, group):
    """The consumer group's monitoring record (num_ack_pending, num_redelivered, …)."""
    j = nats.monitor("jsz?consumers=true") or {}
    for acc in j.get("account_details", []):
        for st in acc.get("stream_detail", []):
            for c in st.get("consumer_detail", []):
                if c["name"] == group:
                    return c
    return None


def test_sigkill_mid_stream_loses_nothing(nats, gateway_factory, consumers, tmp_path):
    if BACKEND != "sqlite":
        pytest.skip("holds the SQLite write lock to catch the consumer mid-message")
    gw, dev = gateway_factory(env=nats_env(nats), provision=one_sensor_device, name="kill")
    wait_broker_ok(gw)
    # The consumers keep their state in a database of their own, so that the
    # test can hold its write lock while the gateway goes on storing readings.
    cdb = tmp_path / "consumers.db"
    Cli(cdb).init()
    env = consume_env(nats, ONLINE_PREDICT_EVERY=1000000)  # no prediction rows: no sensors here
    a = consumers(cdb, "a", env)
    wait_until(lambda: "consumer_ready" in a.logs(), DEADLINE_S, what="a ready")

    n = 100
    lock = sqlite3.connect(str(cdb), timeout=30, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # a will fetch a batch, then block on its first commit
        post_series(gw, dev, n, now_ms() - 3_600_000, sensor=1, value=lambda i: 1.0 + i % 4)
        wait_until(lambda: metric(gw, "published") == n, DEADLINE_S, what="all published")
        wait_until(lambda: (group_detail(nats, "online-ml") or {}).get("num_ack_pending", 0) > 0,
                   DEADLINE_S, what="a holds unacknowledged messages")
        held = group_detail(nats, "online-ml")["num_ack_pending"]
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        lock.execute("ROLLBACK")
    finally:
        lock.close()
    assert applied_total(cdb) == 0

    b = consumers(cdb, "b", env)
    wait_until(lambda: applied_total(cdb) == n, 60, what="b applies everything")
    assert b.stop() == 0, b.logs()[-3000:]
    assert b.summary()["applied"] == n
    assert q(cdb, "SELECT count(DISTINCT seq), min(seq), max(seq) FROM consumer_applied")[0] \
        == (n, 1, n)
    assert q(cdb, "SELECT count FROM online_state WHERE sensor_id = ?",
             (dev.sensors[1].id,))[0][0] == n
    # what a held came back, after the 2 s ack wait, to b
    assert b.summary()["redelivered"] == held > 0, (b.summary(), held)


def test_redelivered_message_is_skipped(nats, gateway_factory, consumers):
    """Messages applied once come back (a second group here) and are recognised."""
    gw, dev = gateway_factory(env=nats_env(nats), provision=one_sensor_device, name="redo")
    wait_broker_ok(gw)
    db_path = gw.db_path
    post_series(gw, dev, 10, now_ms() - 3_600_000, sensor=1)
    wait_until(lambda: metric(gw, "published") == 10, DEADLINE_S, what="published")
    a = consumers(db_path, "a", consume_env(nats))
    wait_until(lambda: applied_total(db_path) == 10, DEADLINE_S, what="applied")
    assert a.stop() == 0
    # A second group on the same stream gets every message again, with the same
    # stream sequences: each must be skipped, none applied twice.
    b = consumers(db_path, "b", consume_env(nats, BROKER_CONSUMER="second-group"))

    def second_group_done():
        return (group_detail(nats, "second-group") or {}).get("ack_floor", {}) \
            .get("stream_seq") == 10

    wait_until(second_group_done, DEADLINE_S, what="second group acknowledged all 10")
    assert b.stop() == 0
    sb = b.summary()
    assert (sb["applied"], sb["predictions"], sb["duplicates"], sb["poison"]) == (0, 0, 10, 0)
    assert q(db_path, "SELECT count FROM online_state")[0][0] == 10
    assert applied_total(db_path) == 10


def test_consume_needs_a_nats_url(tmp_path):
    cli = Cli(new_db(tmp_path / "c.db"))
    cli.init()
    p = cli.run("consume", env={"BROKER_URL": "memory"}, timeout=30)
    assert p.returncode == 2
    assert "nats://" in p.stderr
    p = cli.run("consume", "--help")
    assert p.returncode == 0 and "ONLINE_PREDICT_EVERY" in p.stdout


def test_consume_sigterm_while_engine_down(tmp_path, consumers):
    dbp = new_db(tmp_path / "c.db")
    cli = Cli(dbp)
    cli.init()
    c = consumers(dbp, "lonely",
                  {"BROKER_URL": "nats://127.0.0.1:1/x", "BROKER_RECONNECT_WAIT_MS": "100"})
    wait_until(lambda: "consume_started" in c.logs(), DEADLINE_S, what="started")
    assert c.stop() == 0, c.logs()
    assert c.summary()["applied"] == 0


def test_consumer_survives_an_engine_restart(nats, gateway_factory, consumers):
    gw, dev = gateway_factory(env=nats_env(nats), provision=one_sensor_device, name="restart")
    wait_broker_ok(gw)
    db_path = gw.db_path
    c = consumers(db_path, "a", consume_env(nats))
    t0 = now_ms() - 3_600_000
    post_series(gw, dev, 10, t0, sensor=1)
    wait_until(lambda: applied_total(db_path) == 10, DEADLINE_S, what="first 10 applied")

    nats.stop()
    wait_until(lambda: "consumer_disconnected" in c.logs(), DEADLINE_S, what="a sees the loss")
    nats.start()  # same port and storage: the stream and the group are still there
    wait_until(lambda: gw.get("/health").json()["broker"] == "ok", DEADLINE_S,
               what="gateway reconnected")
    post_series(gw, dev, 10, t0 + 60_000, sensor=1)
    wait_until(lambda: applied_total(db_path) == 20, DEADLINE_S, what="next 10 applied")
    assert c.proc.poll() is None
    assert c.stop() == 0, c.logs()[-3000:]
    assert c.summary()["applied"] == 20


def test_stream_of_another_subject_is_reported_not_changed(nats, gateway_factory):
    first, _ = gateway_factory(env=nats_env(nats, stream="SHARED"), name="first")
    wait_until(lambda: first.get("/health").json()["broker"] == "ok", DEADLINE_S, what="first ok")
    env = {**nats_env(nats, stream="SHARED"), "BROKER_URL": nats.url("other.subject")}
    second, _ = gateway_factory(env=env, name="second")
    wait_until(lambda: "does not take subject other.subject" in second.log_text(), DEADLINE_S,
               what="the mismatch logged")
    r = second.get("/health")
    assert r.status == 200 and r.json()["broker"] == "error", r
    assert second.log_text().count("broker_stream_unavailable") == 1  # once, not per retry
    assert nats.stream_state("SHARED")["config"]["subjects"] == ["iot.readings"]
