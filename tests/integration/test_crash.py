"""Crash safety under load (SPEC §9: "kill -9 of the gateway at any moment loses
no reading that was answered 2xx"; §5: one packet is all-or-nothing; §4/§10: a
rollback leaves no trace, state is rebuilt from the database).

Concurrent clients, one device each, post packets of 2-5 readings with a
packet_id and retry every packet until it is answered 2xx, as a device would.
The gateway (DB_SYNC=full) is killed with SIGKILL at a random moment under
load, CRASH_ROUNDS times (default 3); after each kill, with the gateway down:

- every packet answered 2xx is stored, with all its readings and their values;
- no packet is torn or stored twice: the readings of each packet number (it
  is encoded in the reading times) are exactly the packet's readings;
- every active alert's last_value/last_seen_at and first_value/triggered_at
  are a stored reading of its sensor; every alert has its `triggered`
  notification and every resolved alert its `resolved` one; every sensor_state
  row is a stored reading; SQLite's integrity_check passes;

then the gateway is restarted on the same file and must start cleanly (health
ok, no error in its log) and serve the retries. Thresholds make the readings
cycle through normal, warning, alert and spike, so alerts open, escalate and
resolve all the time.

CRASH_ROUNDS=N and CRASH_SEED=S (default 1) are read from the environment;
`make check-all` runs 10 rounds.
"""

import http.client
import os
import random
import signal
import threading
import time

from conftest import NoResponse, iso_ms, now_ms, provision_device, wait_until

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "3"))
SEED = int(os.environ.get("CRASH_SEED", "1"))
CLIENTS = 6
SENSORS = 3
SLOT_MS = 8  # reading times of packet number p: BASE + p * SLOT_MS + i, i < 5
# Value levels against the thresholds below: normal, warning, critical, and jumps
# larger than delta_max (spikes). The fraction carries the packet number.
LEVELS = [50, 50, 95, 150, 50, 50, -20, 50, 20, 85, 50, 50]


def provision(cli):
    devs = []
    for _ in range(CLIENTS):
        d = provision_device(cli, SENSORS)
        for s in d.sensors:
            cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "critical",
                     "--min", "0", "--max", "100")
            cli.json("threshold", "set", "--sensor", s.uuid, "--severity", "warning",
                     "--min", "10", "--max", "90", "--delta-max", "50")
        devs.append(d)
    return devs


class Ledger:
    """What the clients sent and what was acknowledged, by packet number."""

    def __init__(self, base_ms):
        self.base = base_ms
        self.lock = threading.Lock()
        self.sent = {}      # packet number -> [(sensor_id, ts, value)]
        self.acked = set()  # packet numbers answered 2xx
        self.unexpected = []

    def packet(self, dev, client, seq, rng):
        p = seq * CLIENTS + client
        n = rng.randint(2, 5)
        readings, rows = [], []
        for i in range(n):
            s = dev.sensors[(seq + i) % SENSORS]
            ts = self.base + p * SLOT_MS + i
            value = LEVELS[(seq + i) % len(LEVELS)] + (seq % 997) / 1000.0
            readings.append({"sensor_uuid": s.uuid, "value": value, "ts": iso_ms(ts)})
            rows.append((s.id, ts, value))
        with self.lock:
            self.sent[p] = rows
        body = {"device_uuid": dev.uuid, "packet_id": f"c{client}-{seq}", "readings": readings}
        return p, body


def client_loop(gw, dev, client, ledger, up, stop, rng):
    seq = 0
    pending = None
    while not stop.is_set():
        if pending is None:
            seq += 1
            pending = ledger.packet(dev, client, seq, rng)
        p, body = pending
        if not up.is_set():
            up.wait(0.5)
            continue
        try:
            r = gw.post_packet(body, key=dev.key, timeout=20)
        except (OSError, NoResponse, http.client.HTTPException):
            continue  # killed under us, or not up yet: retry the same packet
        if r.status == 200:
            j = r.json()
            if j.get("accepted") != len(body["readings"]) or j.get("rejected"):
                with ledger.lock:
                    ledger.unexpected.append((p, r.status, r.body[:300]))
            with ledger.lock:
                ledger.acked.add(p)
            pending = None
        elif r.status != 503:
            with ledger.lock:
                ledger.unexpected.append((p, r.status, r.body[:300]))
            pending = None


def check_database(db, ledger):
    """All the invariants, on the database of a dead gateway. Returns a summary."""
    if not db.pg:
        assert db.scalar("PRAGMA integrity_check") == "ok"
    with ledger.lock:
        sent = dict(ledger.sent)
        acked = set(ledger.acked)
    sensor_ids = {sid for rows in sent.values() for sid, _, _ in rows}
    marks = ",".join("?" * len(sensor_ids))
    stored = {}
    for sid, ts, value in db.query(
            f"SELECT sensor_id, ts, value FROM sensor_readings WHERE sensor_id IN ({marks})",
            tuple(sensor_ids)):
        p = (ts - ledger.base) // SLOT_MS
        stored.setdefault(p, []).append((sid, ts, value))

    for p, rows in stored.items():
        assert p in sent, f"stored readings of a packet nobody sent: {p} {rows}"
        assert sorted(rows) == sorted(sent[p]), (
            f"packet {p} is torn or stored twice: stored {sorted(rows)}, sent {sorted(sent[p])}")
    missing = sorted(acked - stored.keys())
    assert not missing, f"{len(missing)} packets answered 200 are not stored: {missing[:10]}"

    by_sensor = {}
    for rows in stored.values():
        for sid, ts, value in rows:
            by_sensor.setdefault(sid, set()).add((ts, value))
    alerts = db.query(
        f"SELECT id, sensor_id, kind, status, first_value, triggered_at, last_value, "
        f"last_seen_at FROM alerts WHERE sensor_id IN ({marks})", tuple(sensor_ids))
    active = 0
    for aid, sid, kind, status, fv, tat, lv, lsa in alerts:
        seen = by_sensor.get(sid, set())
        assert (lsa, lv) in seen, (
            f"alert {aid} ({kind}, {status}): last_value {lv} at {lsa} is no stored reading")
        assert (tat, fv) in seen, (
            f"alert {aid} ({kind}, {status}): first_value {fv} at {tat} is no stored reading")
        events = {e for (e,) in db.query(
            "SELECT event FROM alert_notifications WHERE alert_id=?", (aid,))}
        assert "triggered" in events, f"alert {aid} has no triggered notification: {events}"
        if status == "resolved":
            assert "resolved" in events, f"resolved alert {aid} without its notification"
        else:
            assert status == "active", status
            active += 1
            assert "resolved" not in events, f"active alert {aid} has a resolved notification"
    for sid, last_ts, last_value in db.query(
            f"SELECT sensor_id, last_ts, last_value FROM sensor_state WHERE sensor_id IN ({marks})",
            tuple(sensor_ids)):
        assert (last_ts, last_value) in by_sensor.get(sid, set()), (
            f"sensor_state of {sid} ({last_value} at {last_ts}) is no stored reading")
    return {"sent": len(sent), "acked": len(acked), "stored": len(stored),
            "alerts": len(alerts), "active": active}


def test_kill9_under_load_loses_nothing_answered(gateway_factory):
    rng = random.Random(SEED)
    gw, devs = gateway_factory({"DB_SYNC": "full", "HTTP_THREADS": "4"}, provision=provision,
                               name="crash")
    ledger = Ledger(now_ms() - 3_600_000)
    up, stop = threading.Event(), threading.Event()
    up.set()
    threads = [threading.Thread(target=client_loop,
                                args=(gw, d, c, ledger, up, stop, random.Random(SEED * 100 + c)),
                                daemon=True)
               for c, d in enumerate(devs)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    try:
        for rnd in range(1, ROUNDS + 1):
            # Kill after a random amount of progress: no fixed sleep, a random moment.
            with ledger.lock:
                target = len(ledger.acked) + rng.randint(50, 400)
            wait_until(lambda: len(ledger.acked) >= target or not gw.alive(), timeout=60,
                       interval=0.005, what=f"{target} acknowledged packets")
            assert gw.alive(), f"gateway died by itself; log tail:\n{gw.log_tail()}"
            up.clear()
            gw.proc.send_signal(signal.SIGKILL)
            gw.proc.wait(20)
            summary = check_database(gw.db, ledger)
            print(f"round {rnd}/{ROUNDS} (seed {SEED}): {summary}")
            assert not ledger.unexpected, ledger.unexpected[:5]

            gw.start()
            h = gw.get("/health")
            assert h.status == 200 and h.json()["db"] == "ok", h
            log = gw.log_text()
            assert "level=error" not in log, f"errors at start-up:\n{gw.log_tail()}"
            up.set()
        # the retries of the last round go through the restarted gateway
        with ledger.lock:
            target = len(ledger.acked) + 20
        wait_until(lambda: len(ledger.acked) >= target, timeout=60, what="traffic after restart")
    finally:
        stop.set()
        up.set()
        for t in threads:
            t.join(30)
    assert gw.stop() == 0, gw.log_tail()
    summary = check_database(gw.db, ledger)
    assert not ledger.unexpected, ledger.unexpected[:5]
    assert summary["alerts"] > 0, f"the thresholds opened no alert: {summary}"
    print(f"{ROUNDS} kill -9 rounds in {time.monotonic() - t0:.1f}s; final: {summary}")
