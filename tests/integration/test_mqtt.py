"""
MQTT device ingest (SPEC §11) with real third-party clients: mosquitto_pub /
mosquitto_sub (Debian's mosquitto-clients) and Python's paho-mqtt, plus a raw
socket where the test needs bytes no client sends (a DUP retry in the same
write as the original, a malformed frame).

What is checked: QoS 1 is stored and PUBACKed, QoS 0 is stored, a wrong
password is refused (CONNACK 5 / 0x87), another device's topic is refused
(MQTT 5 PUBACK 0x87, 3.1.1 closes), the results topic carries the verdict an
HTTP client would get, a retried DUP is stored once, a malformed frame closes
only its own connection, and after kill -9 during a paho QoS 1 run every
PUBACKed packet is in the database. Held packets: past the device rate limit
(QoS 1 and 0) and with the write queue full the PUBACK waits, nothing is
lost, each packet is stored once; 64 packets in flight keep the keep-alive
(the database-away twin is in test_pg_backend.py).
"""

import json
import re
import select
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import Gateway, provision_device, uid, wait_until

paho = pytest.importorskip("paho.mqtt.client")

GATEWAY_ENV = {"MQTT_PORT": "-1"}
TIMEOUT_S = 20

if not shutil.which("mosquitto_pub"):
    pytest.skip("mosquitto-clients is not installed (scripts/deps.sh test)",
                allow_module_level=True)


# ---------------------------------------------------------------- raw MQTT 3.1.1


def _remaining(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack(">H", len(b)) + b


def connect_frame(user, password, client_id="raw", keep_alive=60):
    body = _s("MQTT") + bytes([4, 0xC2]) + struct.pack(">H", keep_alive)
    body += _s(client_id) + _s(user) + _s(password)
    return bytes([0x10]) + _remaining(len(body)) + body


def publish_frame(topic, payload, qos=1, packet_id=1, dup=False):
    payload = payload.encode() if isinstance(payload, str) else payload
    body = _s(topic) + (struct.pack(">H", packet_id) if qos else b"") + payload
    first = 0x30 | (qos << 1) | (0x08 if dup else 0)
    return bytes([first]) + _remaining(len(body)) + body


PINGREQ = bytes([0xC0, 0])
DISCONNECT = bytes([0xE0, 0])


class Raw:
    """A socket that speaks just enough MQTT 3.1.1 to send frames by hand."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def frame(self, timeout=TIMEOUT_S):
        """The next frame as (type, flags, body), or None when the server closed."""
        f = self.poll(timeout)
        assert f is not False, "no frame from the gateway in time"
        return f

    def poll(self, timeout):
        """As frame(), but False when no frame came within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                n, mult, i = 0, 1, 1
                while i < len(self.buf):
                    b = self.buf[i]
                    n += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        break
                if len(self.buf) >= i + n and not self.buf[i - 1] & 0x80:
                    t, body = self.buf[0], self.buf[i:i + n]
                    self.buf = self.buf[i + n:]
                    return t >> 4, t & 15, body
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.s], [], [], left)
            if not r:
                continue
            try:
                data = self.s.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.buf += data

    def connect(self, dev):
        self.send(connect_frame(dev.uuid, dev.key))
        f = self.frame()
        assert f and f[0] == 2 and f[2] == b"\x00\x00", f"CONNACK refused or missing: {f}"
        return self

    def close(self):
        self.s.close()


# ------------------------------------------------------------------- helpers


def packets_topic(dev):
    return f"devices/{dev.uuid}/packets"


def results_topic(dev):
    return f"devices/{dev.uuid}/results"


def mosquitto_pub(gw, dev, payload, qos=1, key=None, topic=None, version="mqttv311"):
    return subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(gw.mqtt_port), "-V", version, "-d",
         "-u", dev.uuid, "-P", key if key is not None else dev.key,
         "-t", topic or packets_topic(dev), "-q", str(qos), "-m", payload],
        capture_output=True, text=True, timeout=TIMEOUT_S)


def body(dev, values, **extra):
    return json.dumps({"readings": [{"sensor_uuid": dev.sensors[i].uuid, "value": v}
                                    for i, v in enumerate(values)], **extra})


def values_of(db, sensor):
    return sorted(r[0] for r in db.readings(sensor.id))


# --------------------------------------------------------------------- tests


def test_the_listening_line_names_the_mqtt_port(gw):
    assert gw.mqtt_port and gw.mqtt_port != gw.port


def test_qos1_is_stored_before_its_puback(gw, make_device, db):
    dev = make_device(2)
    p = mosquitto_pub(gw, dev, body(dev, [21.5, 40]), qos=1)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "received PUBACK" in p.stdout, p.stdout
    # The PUBACK left after the commit: the rows are there without waiting.
    assert values_of(db, dev.sensors[0]) == [21.5]
    assert values_of(db, dev.sensors[1]) == [40]


def test_each_publish_is_logged_with_a_request_id(gateway_factory):
    """LOG_REQUESTS=all: one access-log line per PUBLISH, in HTTP's request-id style."""
    g, dev = gateway_factory(env={**GATEWAY_ENV, "LOG_REQUESTS": "all"},
                             provision=lambda c: provision_device(c, 1))
    assert mosquitto_pub(g, dev, body(dev, [1.5]), qos=1).returncode == 0
    assert mosquitto_pub(g, dev, body(dev, [2.5]), qos=0).returncode == 0
    pat = re.compile(r"event=mqtt_publish request_id=([0-9a-f]{20}) qos=(\d) packet_id=(\d+) "
                     r"outcome=(\w+) duration_ms=[0-9.]+ ip=127\.0\.0\.1 device=(\S+)")
    wait_until(lambda: len(pat.findall(g.log_text())) == 2, TIMEOUT_S, what="two publish lines")
    lines = pat.findall(g.log_text())
    assert [(q, o, d) for _, q, _, o, d in lines] == [("1", "stored", dev.uuid),
                                                      ("0", "stored", dev.uuid)], lines
    assert lines[0][0] != lines[1][0] and lines[0][0][:8] == lines[1][0][:8]  # one prefix, a sequence


def test_qos0_is_stored(gw, make_device, db):
    dev = make_device(1)
    p = mosquitto_pub(gw, dev, body(dev, [7.25]), qos=0)
    assert p.returncode == 0, p.stdout + p.stderr
    wait_until(lambda: values_of(db, dev.sensors[0]) == [7.25], TIMEOUT_S, what="QoS 0 row")


def test_the_body_may_name_its_device_but_not_another(gw, make_device, db):
    dev, other = make_device(1), make_device(1)
    ok = json.dumps({"device_uuid": dev.uuid,
                     "readings": [{"sensor_uuid": dev.sensors[0].uuid, "value": 1}]})
    assert mosquitto_pub(gw, dev, ok).returncode == 0
    bad = json.dumps({"device_uuid": other.uuid,
                      "readings": [{"sensor_uuid": other.sensors[0].uuid, "value": 2}]})
    p = mosquitto_pub(gw, dev, bad, version="mqttv5")
    assert "Payload format invalid" in p.stderr or "RC:153" in p.stdout, p.stdout + p.stderr
    assert values_of(db, dev.sensors[0]) == [1]
    assert values_of(db, other.sensors[0]) == []


@pytest.mark.parametrize("version,code", [("mqttv311", 5), ("mqttv5", 135)])
def test_a_wrong_password_is_refused(gw, make_device, db, version, code):
    dev = make_device(1)
    p = mosquitto_pub(gw, dev, body(dev, [1]), key="not-the-key", version=version)
    assert p.returncode != 0
    assert f"received CONNACK ({code})" in p.stdout, p.stdout + p.stderr
    assert values_of(db, dev.sensors[0]) == []


def test_the_api_key_is_not_a_password(gw, make_device):
    from conftest import API_KEY
    dev = make_device(1)
    p = mosquitto_pub(gw, dev, body(dev, [1]), key=API_KEY)
    assert "received CONNACK (5)" in p.stdout, p.stdout + p.stderr


def test_another_devices_topic_is_refused(gw, make_device, db):
    dev, other = make_device(1), make_device(1)
    payload = body(other, [3])
    v5 = mosquitto_pub(gw, dev, payload, topic=packets_topic(other), version="mqttv5")
    assert "received PUBACK (Mid: 1, RC:135)" in v5.stdout, v5.stdout + v5.stderr
    v311 = mosquitto_pub(gw, dev, payload, topic=packets_topic(other))
    assert "received PUBACK" not in v311.stdout
    assert v311.returncode != 0, "3.1.1 cannot refuse a PUBLISH but by closing"
    assert values_of(db, other.sensors[0]) == []


def test_the_results_topic_carries_the_verdict(gw, make_device):
    dev = make_device(1)
    sub = subprocess.Popen(  # stdbuf: its debug lines (SUBACK) line by line through the pipe
        ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(gw.mqtt_port), "-d", "-u", dev.uuid,
         "-P", dev.key, "-t", results_topic(dev), "-C", "2", "-W", str(TIMEOUT_S)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + TIMEOUT_S
        while not any("received SUBACK" in x for x in lines):
            assert time.monotonic() < deadline, f"no SUBACK: {lines}"
            lines.append(sub.stdout.readline())
        assert mosquitto_pub(gw, dev, json.dumps({"packet_id": uid(), "readings": [
            {"sensor_uuid": dev.sensors[0].uuid, "value": 5},
            {"sensor_uuid": "no-such-sensor", "value": 1}]})).returncode == 0
        assert mosquitto_pub(gw, dev, "{not json", qos=0).returncode == 0
        out, _ = sub.communicate(timeout=TIMEOUT_S)
    finally:
        if sub.poll() is None:
            sub.kill()
    answers = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert len(answers) == 2, out
    assert answers[0]["device_uuid"] == dev.uuid
    assert answers[0]["accepted"] == 1 and answers[0]["duplicate"] is False
    assert answers[0]["rejected"] == [{"index": 1, "sensor_uuid": "no-such-sensor",
                                       "reason": "unknown_sensor"}]
    assert answers[1]["code"] == "invalid_json" and answers[1]["detail"]


def test_a_subscription_to_another_topic_is_refused(gw, make_device):
    dev, other = make_device(1), make_device(1)
    p = subprocess.run(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(gw.mqtt_port), "-d", "-u", dev.uuid,
         "-P", dev.key, "-t", results_topic(other), "-C", "1", "-W", "2", "-V", "mqttv5"],
        capture_output=True, text=True, timeout=TIMEOUT_S)
    assert "received SUBACK" in p.stdout, p.stdout + p.stderr
    assert "Subscribed (mid: 1): 135" in p.stdout, p.stdout


def test_a_payload_refused_whole_is_still_acknowledged_on_3_1_1(gw, make_device, db):
    """A 400 is final (resending will not help): 3.1.1, which has no reason codes, gets
    a plain PUBACK and keeps its connection; the results topic says why."""
    dev = make_device(1)
    c = Raw(gw.mqtt_port).connect(dev)
    try:
        c.send(publish_frame(packets_topic(dev), "{", packet_id=2))
        assert c.frame() == (4, 0, b"\x00\x02")
        c.send(publish_frame(packets_topic(dev), body(dev, [4]), packet_id=3))
        assert c.frame() == (4, 0, b"\x00\x03")
    finally:
        c.close()
    assert values_of(db, dev.sensors[0]) == [4]


def test_a_dup_retry_in_flight_is_stored_once(gw, make_device, db):
    dev = make_device(1)
    c = Raw(gw.mqtt_port).connect(dev)
    try:
        payload = body(dev, [11])  # no packet_id: only the MQTT packet identifier protects it
        first = publish_frame(packets_topic(dev), payload, packet_id=7)
        retry = publish_frame(packets_topic(dev), payload, packet_id=7, dup=True)
        c.send(first + retry)  # one write: the retry arrives while the first is in flight
        assert c.frame() == (4, 0, b"\x00\x07")
        c.send(PINGREQ)  # a second PUBACK would come before the PINGRESP
        assert c.frame() == (13, 0, b"")
    finally:
        c.close()
    assert values_of(db, dev.sensors[0]) == [11]


def test_a_malformed_frame_closes_only_its_connection(gw, make_device, db):
    dev = make_device(1)
    good = Raw(gw.mqtt_port).connect(dev)
    bad = Raw(gw.mqtt_port).connect(dev)
    try:
        bad.send(bytes([0x36, 3, 0, 1, 0x41]))  # PUBLISH with QoS 3
        assert bad.frame() is None, "the malformed connection must be closed"
        garbage = Raw(gw.mqtt_port)
        garbage.send(b"GET / HTTP/1.1\r\n\r\n")
        assert garbage.frame() is None
        garbage.close()
        good.send(publish_frame(packets_topic(dev), body(dev, [99]), packet_id=3))
        assert good.frame() == (4, 0, b"\x00\x03")
        good.send(PINGREQ)
        assert good.frame() == (13, 0, b"")
    finally:
        good.close()
        bad.close()
    assert values_of(db, dev.sensors[0]) == [99]


def test_a_client_silent_past_its_keep_alive_is_dropped(gw, make_device):
    dev = make_device(1)
    c = Raw(gw.mqtt_port)
    try:
        c.send(connect_frame(dev.uuid, dev.key, keep_alive=1))
        assert c.frame()[0] == 2
        t0 = time.monotonic()
        assert c.frame(timeout=10) is None, "still open after its keep-alive"
        assert 1.4 <= time.monotonic() - t0 < 5
    finally:
        c.close()


def test_puback_after_kill_9_every_acknowledged_packet_is_stored(gateway_factory):
    """
    A paho client (persistent session) publishes QoS 1 packets as fast as its
    PUBACKs come; the gateway is killed with SIGKILL in the middle. After a
    restart on the same database every PUBACKed packet is there.
    """
    from conftest import provision_device
    gw, dev = gateway_factory(env={**GATEWAY_ENV, "DB_SYNC": "full"},
                              provision=lambda c: provision_device(c, 1))
    acked, lock, sent = set(), threading.Lock(), {}
    client = paho.Client(client_id=uid("paho-"), clean_session=False,
                         protocol=paho.MQTTv311)
    client.username_pw_set(dev.uuid, dev.key)
    client.max_inflight_messages_set(16)

    def on_publish(_c, _u, mid):
        with lock:
            acked.add(mid)

    client.on_publish = on_publish
    client.connect("127.0.0.1", gw.mqtt_port, keepalive=30)
    client.loop_start()
    try:
        for n in range(400):
            info = client.publish(packets_topic(dev), body(dev, [n], packet_id=f"p{n}"), qos=1)
            sent[info.mid] = n
            if n == 150:
                wait_until(lambda: len(acked) >= 20, TIMEOUT_S, what="first PUBACKs")
                gw.proc.kill()  # SIGKILL
                gw.proc.wait(10)
                break
    finally:
        client.loop_stop()
        client.disconnect()
    with lock:
        acked_values = sorted(sent[m] for m in acked if m in sent)
    assert len(acked_values) >= 20
    restarted = Gateway(gw.db_path, gw.workdir, env=gw.env, name="gw-restarted").start()
    try:
        stored = set(values_of(restarted.db, dev.sensors[0]))
        missing = [v for v in acked_values if v not in stored]
        assert not missing, f"PUBACKed but not stored: {missing[:10]}"
        assert len(stored) == len(restarted.db.query(
            "SELECT value FROM sensor_readings WHERE sensor_id=?", (dev.sensors[0].id,)))
    finally:
        restarted.stop()


def test_metrics_count_connections_publishes_and_puback_latency(gw, make_device):
    from conftest import Exposition, metric_value, scrape
    dev = make_device(1)
    before = scrape(gw)

    def val(text, name, labels=""):
        return metric_value(text, name, labels) or 0

    c = Raw(gw.mqtt_port).connect(dev)
    try:
        wait_until(lambda: val(scrape(gw), "iot_ingest_mqtt_connections") >= 1, TIMEOUT_S,
                   what="the connections gauge")
        c.send(publish_frame(packets_topic(dev), body(dev, [1]), packet_id=1))
        assert c.frame() == (4, 0, b"\x00\x01")
        c.send(publish_frame(packets_topic(dev), "{", packet_id=2))
        assert c.frame() == (4, 0, b"\x00\x02")  # 3.1.1: a 400 is a plain PUBACK
    finally:
        c.close()
    after = scrape(gw)
    Exposition(after)  # validates the whole text
    for labels, n in [('qos="1",outcome="stored"', 1), ('qos="1",outcome="rejected"', 1)]:
        assert val(after, "iot_ingest_mqtt_publishes_total", labels) - val(
            before, "iot_ingest_mqtt_publishes_total", labels) == n, labels
    assert val(after, "iot_ingest_mqtt_puback_seconds_count") - val(
        before, "iot_ingest_mqtt_puback_seconds_count") == 2
    assert val(after, "iot_ingest_mqtt_connects_total", 'result="accepted"') > val(
        before, "iot_ingest_mqtt_connects_total", 'result="accepted"')


def test_no_mqtt_metrics_without_the_listener(gateway_factory):
    from conftest import scrape
    g, _ = gateway_factory()
    assert g.mqtt_port is None
    assert "iot_ingest_mqtt_" not in scrape(g)


def test_sigterm_with_mqtt_clients_connected_exits_0(gateway_factory):
    """Shutdown order: the listener quiesces, the writer finishes, the loop closes every
    connection; serve exits 0 (under ASan: no leak, no use after free)."""
    from conftest import provision_device
    g, dev = gateway_factory(env=GATEWAY_ENV, provision=lambda c: provision_device(c, 1))
    idle, busy = Raw(g.mqtt_port).connect(dev), Raw(g.mqtt_port).connect(dev)
    try:
        busy.send(b"".join(publish_frame(packets_topic(dev), body(dev, [n]), packet_id=n + 1)
                           for n in range(30)))
        assert busy.frame()[0] == 4
        assert g.stop() == 0, g.log_tail()
    finally:
        idle.close()
        busy.close()
    assert "event=stopped" in g.log_text()


# ------------------------------------------- held, not dropped: rate limit, full queue
#
# Past the device's rate limit, with the write queue full or the database away
# (test_pg_backend.py), a packet is held and tried again; its PUBACK waits.

RPS, BURST = 2, 2  # the rate-limited gateway's RATE_LIMIT_DEVICE_RPS and RATE_LIMIT_BURST
RETRIES = "iot_ingest_mqtt_publish_retries_total"
PUBLISHES = "iot_ingest_mqtt_publishes_total"
CLOCK_SLACK_S = 0.01  # the limiter counts whole milliseconds


@pytest.fixture(scope="module")
def limited(module_dir):
    """A gateway of its own whose devices may send RPS packets/s after a burst of BURST."""
    from conftest import Cli, new_db
    path = new_db(module_dir / "limited.db")
    c = Cli(path)
    c.init()
    g = Gateway(path, module_dir, name="limited-gw",
                env={**GATEWAY_ENV, "RATE_LIMIT_DEVICE_RPS": RPS, "RATE_LIMIT_BURST": BURST})
    g.cli = c
    g.start()
    yield g
    g.stop()


def earliest_s(k):
    """The soonest the k-th packet (from 1) of a fresh device may pass the limit."""
    return (k - BURST) / RPS - CLOCK_SLACK_S


def test_past_the_rate_limit_the_puback_is_delayed_not_dropped(limited):
    from conftest import MqttDevice, metric_delta, provision_device, scrape
    g, n = limited, 8
    dev = provision_device(g.cli, 1)
    before = scrape(g)
    client = MqttDevice(g.mqtt_port, dev)
    try:
        t0 = time.monotonic()  # before the first PUBLISH leaves: the bucket is full here
        mids = [client.publish(packets_topic(dev), body(dev, [v])) for v in range(n)]
        wait_until(lambda: client.nacked() == n, TIMEOUT_S + n / RPS, what="every PUBACK")
        assert client.disconnects == [], "the connection was lost"
    finally:
        client.close()
    assert client.order == mids, "PUBACKs in the order of the PUBLISHes"
    for k, mid in enumerate(mids, 1):
        assert client.acked[mid] - t0 >= earliest_s(k), (k, client.acked[mid] - t0)
    assert values_of(g.db, dev.sensors[0]) == list(range(n))  # each once
    after = scrape(g)
    assert metric_delta(before, after, PUBLISHES, 'qos="1",outcome="stored"') == n
    assert metric_delta(before, after, RETRIES, 'cause="rate_limited"') >= 1


def test_qos0_past_the_rate_limit_is_held_too_while_its_connection_is_open(limited):
    from conftest import MqttDevice, metric_delta, provision_device, scrape
    g, n = limited, BURST + 3
    dev = provision_device(g.cli, 1)
    before = scrape(g)
    client = MqttDevice(g.mqtt_port, dev)
    try:
        t0 = time.monotonic()
        for v in range(n):
            client.publish(packets_topic(dev), body(dev, [v]), qos=0)
        wait_until(lambda: values_of(g.db, dev.sensors[0]) == list(range(n)),
                   TIMEOUT_S + n / RPS, what="every QoS 0 packet stored")
        assert time.monotonic() - t0 >= earliest_s(n)
        assert client.disconnects == []
    finally:
        client.close()
    after = scrape(g)
    assert metric_delta(before, after, PUBLISHES, 'qos="0",outcome="stored"') == n
    assert metric_delta(before, after, PUBLISHES, 'qos="0",outcome="dropped"') == 0
    assert metric_delta(before, after, RETRIES, 'cause="rate_limited"') >= 1


def test_qos0_held_past_the_rate_limit_is_lost_when_its_connection_closes(limited):
    """What mosquitto_pub -q 0 does past the limit: it sends and disconnects at once."""
    from conftest import metric_delta, provision_device, scrape
    g = limited
    dev = provision_device(g.cli, 1)
    before = scrape(g)
    c = Raw(g.mqtt_port).connect(dev)
    try:  # one write: the held packets are still held (>= 1 s) at the DISCONNECT
        c.send(b"".join(publish_frame(packets_topic(dev), body(dev, [v]), qos=0)
                        for v in range(BURST + 2)) + DISCONNECT)
        assert c.frame() is None
    finally:
        c.close()

    def outcomes():
        now = scrape(g)
        return [metric_delta(before, now, PUBLISHES, f'qos="0",outcome="{o}"')
                for o in ("stored", "dropped")]

    wait_until(lambda: outcomes() == [BURST, 2], TIMEOUT_S, what="2 stored, 2 dropped")
    assert values_of(g.db, dev.sensors[0]) == list(range(BURST))


def test_a_full_write_queue_delays_the_puback_and_loses_nothing(gateway_factory):
    """
    WRITE_QUEUE_MAX=1 and COMMIT_BATCH_MAX=1: the writer holds one packet and the
    queue one more. The test takes SQLite's write lock, so the writer waits
    (DB_BUSY_TIMEOUT_MS is long) and a third packet finds the queue full: held,
    tried again every 200 ms, no PUBACK, until the lock is released.
    """
    import sqlite3
    from conftest import MqttDevice, metric_delta, metric_value, provision_device, scrape, \
        sqlite_only
    sqlite_only("stalls the writer with SQLite's write lock")
    g, dev = gateway_factory(env={**GATEWAY_ENV, "WRITE_QUEUE_MAX": 1, "COMMIT_BATCH_MAX": 1,
                                  "DB_BUSY_TIMEOUT_MS": 120000},
                             provision=lambda cli: provision_device(cli, 1))
    n = 3
    client = MqttDevice(g.mqtt_port, dev)
    lock = sqlite3.connect(str(g.db_path), timeout=TIMEOUT_S, isolation_level=None)
    try:
        before = scrape(g)
        lock.execute("BEGIN IMMEDIATE")
        try:
            mids = [client.publish(packets_topic(dev), body(dev, [v])) for v in range(n)]

            def held_at_a_full_queue():
                now = scrape(g)
                return (metric_delta(before, now, RETRIES, 'cause="unavailable"') >= 1
                        and metric_value(now, "iot_ingest_write_queue_depth") == 1)

            wait_until(held_at_a_full_queue, TIMEOUT_S, what="a packet held at the full queue")
            assert client.nacked() == 0, "a PUBACK before the commit"
        finally:
            lock.execute("ROLLBACK")
        wait_until(lambda: client.nacked() == n, TIMEOUT_S, what="every PUBACK")
        assert client.order == mids and client.disconnects == []
    finally:
        lock.close()
        client.close()
    assert values_of(g.db, dev.sensors[0]) == list(range(n))  # each once
    assert metric_delta(before, scrape(g), PUBLISHES, 'qos="1",outcome="stored"') == n


def frames_while_pinging(c, done, limit_s, every_s=0.5):
    """
    The frames read while sending a PINGREQ every every_s, as a client keeping
    its keep-alive does, until done(frames), a close (None, last) or limit_s.
    """
    frames, deadline, next_ping = [], time.monotonic() + limit_s, 0.0
    while not done(frames) and None not in frames:
        now = time.monotonic()
        if now >= deadline:
            break
        if now >= next_ping:
            try:
                c.send(PINGREQ)
            except OSError:
                frames.append(None)
                break
            next_ping = now + every_s
        f = c.poll(min(next_ping, deadline) - now)
        if f is not False:
            frames.append(f)
    return frames


def test_a_connection_at_its_in_flight_cap_keeps_its_keep_alive(gateway_factory):
    """
    64 packets in flight (the Receive Maximum) while the writer waits for
    SQLite's write lock: a PINGREQ behind them is still answered. A 65th
    PUBLISH stops the reading until one finishes, but the client, which keeps
    pinging every half keep-alive, is not dropped for silence while its frames
    wait unread. Once the lock goes: every PUBACK, in order, each packet once.
    """
    import sqlite3
    from conftest import provision_device, sqlite_only
    sqlite_only("stalls the writer with SQLite's write lock")
    g, dev = gateway_factory(env={**GATEWAY_ENV, "DB_BUSY_TIMEOUT_MS": 120000},
                             provision=lambda cli: provision_device(cli, 1))
    n, cap = 65, 64
    pubacks = [(4, 0, struct.pack(">H", v + 1)) for v in range(n)]
    c = Raw(g.mqtt_port)
    lock = sqlite3.connect(str(g.db_path), timeout=TIMEOUT_S, isolation_level=None)
    try:
        c.send(connect_frame(dev.uuid, dev.key, keep_alive=1))
        assert c.frame()[0] == 2
        lock.execute("BEGIN IMMEDIATE")
        try:
            c.send(b"".join(publish_frame(packets_topic(dev), body(dev, [v]), packet_id=v + 1)
                            for v in range(cap)) + PINGREQ)
            assert c.frame() == (13, 0, b""), "the PINGREQ behind 64 packets in flight"
            c.send(publish_frame(packets_topic(dev), body(dev, [cap]), packet_id=cap + 1))
            seen = frames_while_pinging(c, lambda fr: [f for f in fr if f[0] == 4],
                                        3.0)  # twice 1.5x the keep-alive
            assert None not in seen, "dropped for silence while its frames waited unread"
            assert not [f for f in seen if f[0] == 4], "a PUBACK before the commit"
        finally:
            lock.execute("ROLLBACK")
        seen = frames_while_pinging(c, lambda fr: [f for f in fr if f[0] == 4] == pubacks,
                                    TIMEOUT_S)
        assert None not in seen, "closed"
        assert [f for f in seen if f[0] == 4] == pubacks
    finally:
        lock.close()
        c.close()
    assert values_of(g.db, dev.sensors[0]) == list(range(n))


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_make_run_banner_mosquitto_pub_stores_a_demo_packet(tmp_path):
    """The mosquitto_pub line `make run` (scripts/demo.sh) prints stores a packet of the demo fleet."""
    import re
    import signal
    from conftest import BIN, ROOT, Db, base_env, sqlite_only
    sqlite_only("scripts/demo.sh makes a SQLite file")
    env = base_env(tmp_path / "demo.db", {"INGEST_PORT": _free_port(),
                                          "MQTT_PORT": _free_port()})
    log = open(tmp_path / "demo.log", "wb")
    p = subprocess.Popen(["sh", str(ROOT / "scripts" / "demo.sh"), BIN], env=env,
                         stdout=subprocess.PIPE, stderr=log, cwd=tmp_path, text=True)
    try:
        wait_until(lambda: b"event=listening" in (tmp_path / "demo.log").read_bytes(), TIMEOUT_S,
                   what="the demo gateway")
        banner = []
        while "Stop with Ctrl-C." not in "".join(banner):
            banner.append(p.stdout.readline())
        text = "".join(banner)
        m = re.search(r"^ *(mosquitto_pub .*?)\n\n", text, re.S | re.M)
        assert m, text
        cmd = m.group(1).replace("\\\n", " ")
        r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=TIMEOUT_S)
        assert r.returncode == 0, (cmd, r.stderr)
        rows = Db(tmp_path / "demo.db").query(
            "SELECT r.value FROM sensor_readings r JOIN sensors s ON s.id = r.sensor_id "
            "WHERE s.sensor_uuid = 'demo-device-1-co2'")
        assert rows == [(640.0,)], rows
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(TIMEOUT_S)
        log.close()
