"""
`iot-ingest sim` against a real gateway: it provisions a small fleet in the
gateway's database, sends for 2 s, exits 0, prints its summary, and every
reading it counts as accepted is in the database. Also: driving existing
devices with the API key (gzip, JSON summary), --cleanup (also after SIGINT),
and usage errors.
"""

import json
import re
import signal
import subprocess

from conftest import API_KEY, BIN, base_env, uid, wait_until


def sim(cli, gw, *args, env=None):
    return cli.run("sim", "--url", f"http://127.0.0.1:{gw.port}", *args, env=env, timeout=120)


def test_sim_provisions_sends_and_readings_are_stored(cli, gw, db):
    prefix = uid("simt-")[:30]
    p = sim(cli, gw, "--devices", "2", "--sensors", "3", "--duration", "2", "--rate", "50",
            "--connections", "2", "--prefix", prefix, "--seed", "7", "--late-fraction", "0.1")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for field in ("packets/s", "readings/s", "p50=", "p90=", "p99=", "max=", "200="):
        assert field in out, f"summary lacks {field!r}: {out}"
    assert re.search(r"t=1s sent=\d+", p.stderr), p.stderr  # one progress line a second

    devices = db.query("SELECT id, device_uuid FROM devices WHERE device_uuid LIKE ?",
                       (prefix + "-%",))
    assert len(devices) == 2
    assert db.scalar("SELECT count(*) FROM sensors s JOIN devices d ON d.id = s.device_id "
                     "WHERE d.device_uuid LIKE ?", (prefix + "-%",)) == 6
    assert db.scalar("SELECT count(*) FROM alert_thresholds t JOIN sensors s ON s.id = "
                     "t.sensor_id WHERE s.sensor_uuid LIKE ?", (prefix + "-%",)) == 12

    accepted = int(re.search(r"packets sent=\d+ answered=\d+ 2xx=(\d+)", out).group(1))
    assert accepted > 50, out  # about 100 packets at 50/s
    stored = db.scalar("SELECT count(*) FROM sensor_readings r JOIN sensors s ON s.id = "
                       "r.sensor_id WHERE s.sensor_uuid LIKE ?", (prefix + "-%",))
    # Each packet carries one reading per sensor (3); every 2xx was committed before it.
    assert stored == 3 * accepted, (stored, accepted, out)
    # Some readings were sent late on purpose; the gateway flagged them.
    assert db.scalar("SELECT count(*) FROM sensor_readings r JOIN sensors s ON s.id = "
                     "r.sensor_id WHERE s.sensor_uuid LIKE ? AND r.late = 1",
                     (prefix + "-%",)) > 0


def test_sim_drives_existing_devices_with_api_key_gzip_json(cli, gw, db, make_device):
    dev = make_device(n_sensors=2)
    p = sim(cli, gw, "--device-uuids", dev.uuid, "--duration", "1", "--rate", "0",
            "--connections", "3", "--gzip", "1", "--json", "1", "--progress", "0",
            env={"API_KEY": API_KEY})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, p.stdout
    s = json.loads(lines[0])
    assert s["devices"] == 1 and s["sensors"] == 2
    assert s["ok"] > 0 and s["status"].get("200") == s["ok"], s
    assert s["errors"] == 0 and s["unfinished"] == 0
    assert s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert db.scalar("SELECT count(*) FROM sensor_readings WHERE sensor_id IN (?, ?)",
                     (dev.sensors[0].id, dev.sensors[1].id)) == s["accepted_readings"]


def test_sim_usage_errors(cli, gw):
    p = sim(cli, gw, "--devices", "0")
    assert p.returncode == 2 and "--devices" in p.stderr
    p = sim(cli, gw, "--device-uuids", "x", env={"API_KEY": None})
    assert p.returncode == 2 and "API" in p.stderr
    p = sim(cli, gw, "--device-uuids", uid("nope-"), "--duration", "1",
            env={"API_KEY": API_KEY})
    assert p.returncode == 1 and "not found" in p.stderr
    p = cli.run("sim", "--help")
    assert p.returncode == 0 and "--connections" in p.stdout


def test_sim_emit_writes_replayable_bodies_for_wrk(cli, gw, db, tmp_path):
    out = tmp_path / "bodies.tsv"
    p = cli.run("sim", "--emit", str(out), "--emit-packets", "6", "--devices", "3",
                "--sensors", "2", "--readings-per-packet", "4")
    assert p.returncode == 0, p.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 6
    replayed = set()
    for line in lines[:3]:
        header, key, body = line.split("\t")
        assert header == "X-Device-Key"
        packet = json.loads(body)
        assert len(packet["readings"]) == 4
        assert all("ts" not in r for r in packet["readings"])  # the gateway stamps them
        replayed |= {r["sensor_uuid"] for r in packet["readings"]}
        for _ in range(2):  # replayed bodies are accepted again, never late
            r = gw.post_packet(raw=body.encode(), key=key)
            assert r.status == 200 and r.json()["accepted"] == 4, r
    marks = ",".join("?" * len(replayed))
    rows = db.query("SELECT s.sensor_uuid, r.late FROM sensor_readings r JOIN sensors s "
                    f"ON s.id = r.sensor_id WHERE s.sensor_uuid IN ({marks})", sorted(replayed))
    assert len(rows) == 3 * 2 * 4, rows  # 3 bodies, each stored twice, 4 readings each
    late = [u for u, is_late in rows if is_late]
    assert not late, f"replayed readings stored as late: {late}"


def test_sim_provisions_nothing_when_the_gateway_does_not_answer(cli, db):
    """It used to add sim-<hex> devices for good even when nothing listened."""
    import socket
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefix = uid("gone-")[:30]
    before = db.counts()
    p = cli.run("sim", "--url", f"http://127.0.0.1:{port}", "--prefix", prefix,
                "--duration", "1", timeout=60)
    assert p.returncode == 1 and p.stdout == "", p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"iot-ingest sim: the gateway at http://127.0.0.1:{port} did not answer /health"), p.stderr
    assert "nothing provisioned" in lines[0]
    assert db.counts() == before


def test_sim_demo_drives_the_db_demo_fleet(cli, gw, db):
    assert cli.run("db", "demo").returncode == 0
    before = db.scalar("SELECT count(*) FROM devices")
    p = sim(cli, gw, "--demo", "1", "--duration", "1", "--rate", "20", "--progress", "0",
            "--json", "1")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["devices"] == 2 and s["sensors"] == 6 and s["prefix"] == "demo-device", s
    assert s["ok"] > 0 and s["status"] == {"200": s["ok"]}, s
    assert db.scalar("SELECT count(*) FROM devices") == before  # nothing provisioned
    stored = db.scalar("SELECT count(*) FROM sensor_readings r JOIN sensors s ON s.id = "
                       "r.sensor_id WHERE s.sensor_uuid LIKE 'demo-device-%'")
    assert stored == s["accepted_readings"] > 0, (stored, s)
    p = sim(cli, gw, "--demo", "1", "--devices", "3")
    assert p.returncode == 2 and "--demo drives the fleet of db demo" in p.stderr, p.stderr


def test_sim_banner_words(cli, gw):
    """"1 devices" and "rate limited" (meaning paced) read as errors."""
    p = sim(cli, gw, "--devices", "1", "--sensors", "1", "--connections", "1", "--duration",
            "0.5", "--rate", "10", "--progress", "0", "--prefix", uid("w-")[:30])
    assert p.returncode == 0, p.stderr
    first = p.stdout.splitlines()[0]
    assert first.startswith("sim: 1 device, 1 sensor, 1 readings/packet, 1 connection, paced,"), first
    assert "provisioned 1 device x 1 sensor " in p.stderr, p.stderr
    assert "limited" not in p.stdout
    p = sim(cli, gw, "--devices", "2", "--sensors", "2", "--duration", "0.5", "--rate", "0",
            "--progress", "0", "--prefix", uid("w-")[:30])
    assert p.returncode == 0 and "sim: 2 devices, 4 sensors," in p.stdout, p.stdout
    assert "unpaced (as fast as possible)" in p.stdout


def test_sim_cleanup_deletes_what_the_run_provisioned(cli, gw, db):
    """--cleanup: the run's sim-<hex> devices, sensors, thresholds, readings and alerts are
    gone afterwards; every table holds as many rows as before."""
    before = db.counts()
    p = sim(cli, gw, "--devices", "2", "--sensors", "2", "--duration", "1", "--rate", "40",
            "--progress", "0", "--cleanup")
    assert p.returncode == 0, p.stderr
    prefix = re.search(r"\((sim-[0-9a-f]{8})-d000001 \.\.\)", p.stderr).group(1)
    assert re.search(r"sim: cleaned up 2 devices \(\d+ readings\)", p.stderr), p.stderr
    accepted = int(re.search(r"2xx=(\d+)", p.stdout).group(1))
    assert accepted > 0, p.stdout
    assert db.scalar("SELECT count(*) FROM devices WHERE device_uuid LIKE ?",
                     (prefix + "-%",)) == 0
    assert db.scalar("SELECT count(*) FROM sensors WHERE sensor_uuid LIKE ?",
                     (prefix + "-%",)) == 0
    assert db.counts() == before


def test_sim_cleanup_after_sigint(cli, gw, db):
    """Ctrl-C ends the sending early; the devices are deleted all the same, exit 0."""
    prefix = uid("sigc-")[:30]
    before = db.counts()
    proc = subprocess.Popen([BIN, "sim", "--url", f"http://127.0.0.1:{gw.port}", "--devices", "2",
                             "--sensors", "1", "--duration", "600", "--rate", "50",
                             "--progress", "0", "--prefix", prefix, "--cleanup"],
                            env=base_env(cli.db_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: db.scalar(
            "SELECT count(*) FROM sensor_readings r JOIN sensors s ON s.id = r.sensor_id"
            " WHERE s.sensor_uuid LIKE ?", (prefix + "-%",)), timeout=30,
            what="the sim's first stored readings")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "sim: cleaned up 2 devices" in err, err
    assert "packets sent=" in out, out
    assert db.scalar("SELECT count(*) FROM devices WHERE device_uuid LIKE ?",
                     (prefix + "-%",)) == 0
    assert db.counts() == before


def test_sim_cleanup_usage(cli, gw, db):
    p = cli.run("sim", "--emit", "/dev/null", "--cleanup")
    assert p.returncode == 2 and "--emit" in p.stderr, p.stderr
    p = sim(cli, gw, "--cleanup=1")
    assert p.returncode == 2 and "takes no value" in p.stderr, p.stderr
    assert cli.run("db", "demo").returncode == 0
    before = db.scalar("SELECT count(*) FROM devices")
    p = sim(cli, gw, "--demo", "1", "--duration", "0.5", "--progress", "0", "--cleanup")
    assert p.returncode == 0, p.stderr
    assert "sim: --cleanup: nothing to clean up, --demo provisions nothing" in p.stderr
    assert db.scalar("SELECT count(*) FROM devices") == before
