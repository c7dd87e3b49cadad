"""The provisioning CLI (SPEC §8): --help, bad flags, JSON output, schema."""

import json
import re

import pytest

from conftest import (Cli, Db, Gateway, iso_ms, provision_device, sha256_hex, uid, now_ms,
                      wait_until)

SUBCOMMANDS = [
    [],
    ["serve"],
    ["db", "init"],
    ["device", "add"],
    ["device", "disable"],
    ["device", "delete"],
    ["sensor", "add"],
    ["sensor", "disable"],
    ["threshold", "set"],
    ["threshold", "clear"],
    ["job", "baseline"],
    ["job", "explain"],
    ["job", "silence"],
    ["job", "retention"],
    ["jobs"],
    ["sim"],
]

# SPEC §3: column names are a contract for other readers.
SCHEMA = {
    "devices": ["id", "device_uuid", "name", "device_key_hash", "is_active", "created_at",
                "last_seen_at"],
    "sensors": ["id", "sensor_uuid", "device_id", "name", "sensor_type", "unit", "is_active",
                "created_at"],
    "sensor_readings": ["id", "sensor_id", "value", "ts", "ingested_at", "class", "late"],
    "alert_thresholds": ["id", "sensor_id", "severity", "min_value", "max_value", "delta_max",
                         "is_active", "created_at"],
    "alerts": ["id", "sensor_id", "device_id", "threshold_id", "severity", "kind", "status",
               "first_value", "last_value", "hit_count", "triggered_at", "last_seen_at",
               "resolved_at", "message"],
    "alert_notifications": ["id", "alert_id", "event", "severity", "created_at", "delivered_at"],
    "ml_models": ["id", "name", "model_type", "version", "params", "is_active", "created_at"],
    "predictions": ["id", "sensor_id", "model_id", "predicted_value", "confidence",
                    "horizon_minutes", "target_ts", "predicted_at", "is_anomaly", "anomaly_score",
                    "explanation"],
    "ml_events": ["id", "sensor_id", "device_id", "prediction_id", "event_type", "severity",
                  "title", "message", "status", "created_at", "payload"],
}


@pytest.fixture
def fresh(tmp_path):
    c = Cli(tmp_path / "cli.db")
    c.init()
    return c, Db(tmp_path / "cli.db")


def one_line_error(p):
    assert p.returncode != 0, f"expected a non-zero exit, got 0; stdout={p.stdout!r}"
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {p.stderr!r}"
    return lines[0]


@pytest.mark.parametrize("sub", SUBCOMMANDS, ids=lambda s: "-".join(s) or "top")
def test_help_exits_zero(tmp_path, sub):
    p = Cli(tmp_path / "h.db").run(*sub, "--help")
    assert p.returncode == 0, f"{sub} --help exited {p.returncode}: {p.stderr!r}"
    assert len((p.stdout + p.stderr).strip()) > 20, "help text is empty"


GROUPS = {"db": ["db init", "db demo"], "device": ["device add", "device disable", "device delete"],
          "sensor": ["sensor add", "sensor disable"],
          "threshold": ["threshold set", "threshold clear"],
          "job": ["job baseline", "job explain", "job silence", "job retention"]}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_group_lists_its_subcommands(tmp_path, group):
    """Like git: `db --help` lists the db commands (exit 0), a bare `db` does so on stderr
    (exit 2), and an unknown subcommand is one line naming the group (exit 2)."""
    c = Cli(tmp_path / "g.db")
    for flag in ("--help", "-h"):
        p = c.run(group, flag)
        assert p.returncode == 0, p.stderr
        listed = re.findall(r"^  ([a-z]+ [a-z]+)\s{2,}", p.stdout, re.M)
        assert listed == GROUPS[group], p.stdout
        assert p.stderr == ""
    p = c.run(group)
    assert p.returncode == 2 and p.stdout == ""
    assert re.findall(r"^  ([a-z]+ [a-z]+)\s{2,}", p.stderr, re.M) == GROUPS[group], p.stderr
    line = one_line_error(c.run(group, "frobnicate"))
    assert line.startswith(f"iot-ingest {group}: ") and '"frobnicate"' in line, line
    assert not (tmp_path / "g.db").exists()


def test_serve_help_lists_settings(tmp_path):
    p = Cli(tmp_path / "h.db").run("serve", "--help")
    assert p.returncode == 0
    text = p.stdout + p.stderr
    for flag in ("--rate-limit-ip-rps", "--max-body-bytes", "--ingest-port", "--database-url"):
        assert flag in text, f"serve --help does not mention {flag}"


SETTING_LINE = re.compile(r"^\s+--[a-z0-9-]+\s+([A-Z][A-Z0-9_]+)\s", re.M)


def _settings_of(help_text):
    """The settings a command's --help lists (after its "Settings it reads" heading)."""
    head, _, tail = help_text.partition("\nSettings it reads")
    assert tail, f"no settings section in:\n{help_text}"
    return SETTING_LINE.findall(tail)


def _help_text(*args):
    p = Cli("/nonexistent/h.db").run(*args)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_command_help_shows_its_own_flags_and_settings_only():
    """`device add --help` was 69 lines, 3 of them its own: now its flags, the settings it
    reads, and a pointer to `help settings` for the rest."""
    every = SETTING_LINE.findall(_help_text("help", "settings"))
    assert len(every) > 40 and len(set(every)) == len(every), every
    text = _help_text("device", "add", "--help")
    assert len(text.splitlines()) < 30, text
    for want in ("--uuid", "--name", "--key", "DATABASE_URL", "iot-ingest help settings",
                 f"all {len(every)} settings"):
        assert want in text, f"device add --help lacks {want!r}:\n{text}"
    assert set(_settings_of(text)) <= {"DATABASE_URL", "DB_SYNC", "DB_BUSY_TIMEOUT_MS",
                                               "SQLITE_CACHE_MB", "LOG_LEVEL", "LOG_FORMAT"}
    baseline = set(_settings_of(_help_text("job", "baseline", "--help")))
    assert {"BASELINE_WINDOW", "ANOMALY_Z", "DATABASE_URL"} <= baseline, baseline
    assert "RATE_LIMIT_IP_RPS" not in baseline and "AI_EXPLAINER_URL" not in baseline
    assert {"INGEST_PORT", "API_KEY"} <= set(_settings_of(_help_text("sim", "--help")))
    # `help COMMAND` is the command's --help
    assert _help_text("help", "device", "add") == text


def test_every_setting_is_read_by_some_command():
    """The union of the commands' --help settings is every setting: none is hidden."""
    every = set(SETTING_LINE.findall(_help_text("help", "settings")))
    top = _help_text("--help")
    cmds = re.findall(r"^  ([a-z]+(?: [a-z]+)?)\s{2,}", top, re.M)
    shown = set()
    for c in cmds:
        if not c.startswith("help"):
            shown |= set(_settings_of(_help_text(*c.split(), "--help")))
    assert shown == every, f"read by no command: {sorted(every - shown)}"


@pytest.mark.parametrize("args,expected", [
    # Everything else on these lines is valid (DEV and SEN exist), so only the
    # bad flag or value can make them fail, and the error line must name it.
    (["device", "add", "--uuid", "u-bad-flag", "--name", "n", "--bogus-flag", "x"],
     "unknown flag --bogus-flag"),
    (["sensor", "add", "--device", "DEV", "--uuid", "u-frob", "--name", "n", "--frobnicate"],
     "unknown flag --frobnicate"),
    (["threshold", "set", "--sensor", "SEN", "--severity", "extreme", "--max", "1"],
     "--severity must be warning or critical"),
    (["threshold", "set", "--sensor", "SEN", "--severity", "warning", "--max", "notanumber"],
     '--max must be a number, got "notanumber"'),
], ids=["device-add-unknown-flag", "sensor-add-unknown-flag", "threshold-set-bad-severity",
        "threshold-set-bad-max"])
def test_bad_flag_or_value_on_a_valid_line_names_it(fresh, args, expected):
    c, db = fresh
    dev = uid("dev-")
    c.json("device", "add", "--uuid", dev, "--name", "cli device")
    sen = uid("sen-")
    c.json("sensor", "add", "--device", dev, "--uuid", sen, "--name", "cli sensor")
    before = db.counts()
    args = [{"DEV": dev, "SEN": sen}.get(a, a) for a in args]
    line = one_line_error(c.run(*args, timeout=30))
    assert expected in line, f"the error should name the bad flag or value: {line!r}"
    assert db.counts() == before


@pytest.mark.parametrize("args", [
    ["serve", "--ingest-port", "70000"],
    ["serve", "--rate-limit-ip-rps", "fast"],
    ["serve", "--log-level", "loud"],
    ["no-such-subcommand"],
    ["device", "add", "--name", "missing-uuid"],
    ["device", "add", "--uuid"],
], ids=lambda a: "_".join(a)[:50])
def test_bad_flag_or_value_one_line_error(fresh, args):
    c, _ = fresh
    one_line_error(c.run(*args, timeout=30))


def test_bad_env_value_one_line_error(fresh):
    c, _ = fresh
    one_line_error(c.run("serve", env={"INGEST_PORT": "abc"}, timeout=30))
    one_line_error(c.run("serve", env={"DATABASE_URL": "mysql://nope"}, timeout=30))


def test_db_init_idempotent_and_schema(tmp_path):
    c = Cli(tmp_path / "idem.db")
    for _ in range(3):
        p = c.run("db", "init")
        assert p.returncode == 0, p.stderr
    db = Db(tmp_path / "idem.db")
    for table, cols in SCHEMA.items():
        have = {r[1] for r in db.query(f'PRAGMA table_info("{table}")')}
        missing = [x for x in cols if x not in have]
        assert not missing, f"table {table} lacks columns {missing} (has {sorted(have)})"
    # data survives a second init
    dev = uid("dev-")
    c.json("device", "add", "--uuid", dev, "--name", "keep me")
    assert c.run("db", "init").returncode == 0
    assert db.scalar("SELECT count(*) FROM devices WHERE device_uuid=?", (dev,)) == 1


def test_flag_overrides_env(tmp_path):
    # env points at one file, the flag at another: the flag wins
    c = Cli(tmp_path / "env.db")
    target = tmp_path / "flag.db"
    p = c.run("db", "init", "--database-url", f"sqlite:{target}")
    assert p.returncode == 0, p.stderr
    assert target.exists()
    assert "devices" in Db(target).tables()


def test_device_add_random_key(tmp_path):
    c = Cli(tmp_path / "k.db")
    c.init()
    db = Db(tmp_path / "k.db")
    outs = []
    for _ in range(2):
        d = uid("dev-")
        p = c.run("device", "add", "--uuid", d, "--name", "rand key")
        assert p.returncode == 0, p.stderr
        lines = p.stdout.strip().splitlines()
        assert len(lines) == 1, p.stdout
        out = json.loads(lines[0])
        assert set(out) >= {"device_id", "device_uuid", "device_key"}, out
        assert isinstance(out["device_id"], int) and out["device_id"] > 0
        assert out["device_uuid"] == d
        key = out["device_key"]
        assert re.fullmatch(r"[0-9a-fA-F]{32,}", key), f"key is not >= 32 hex chars: {key!r}"
        row = db.query("SELECT device_key_hash, is_active, name FROM devices WHERE device_uuid=?",
                       (d,))
        assert row, "device row missing"
        assert row[0][0].lower() == sha256_hex(key), "device_key_hash is not SHA-256(key) hex"
        assert row[0][1] == 1 and row[0][2] == "rand key"
        outs.append(out)
    assert outs[0]["device_key"] != outs[1]["device_key"]
    assert outs[0]["device_id"] != outs[1]["device_id"]
    # the key itself is stored nowhere in the database
    dump = "\n".join(sqlite_dump(tmp_path / "k.db"))
    for o in outs:
        assert o["device_key"] not in dump


def sqlite_dump(path):
    import sqlite3
    c = sqlite3.connect(str(path))
    try:
        return list(c.iterdump())
    finally:
        c.close()


def test_random_key_authenticates(tmp_path):
    c = Cli(tmp_path / "auth.db")
    c.init()
    d = uid("dev-")
    out = c.json("device", "add", "--uuid", d, "--name", "auth")
    s = uid("sen-")
    c.json("sensor", "add", "--device", d, "--uuid", s, "--name", "t")
    g = Gateway(tmp_path / "auth.db", tmp_path, name="cli-auth")
    g.start()
    try:
        r = g.post_packet({"device_uuid": d, "readings": [{"sensor_uuid": s, "value": 1.0}]},
                          key=out["device_key"])
        assert r.status == 200, r
        assert r.json()["accepted"] == 1
        bad = g.post_packet({"device_uuid": d, "readings": [{"sensor_uuid": s, "value": 1.0}]},
                            key=out["device_key"][:-1] + ("0" if out["device_key"][-1] != "0"
                                                          else "1"))
        assert bad.status == 401, bad
    finally:
        assert g.stop() == 0


def test_device_add_explicit_key_and_length_rule(fresh):
    c, db = fresh
    d = uid("dev-")
    key16 = "abcdefghijklmnop"
    out = c.json("device", "add", "--uuid", d, "--name", "k16", "--key", key16)
    assert out["device_key"] == key16
    assert db.scalar("SELECT device_key_hash FROM devices WHERE device_uuid=?",
                     (d,)).lower() == sha256_hex(key16)
    d2 = uid("dev-")
    one_line_error(c.run("device", "add", "--uuid", d2, "--name", "k15", "--key",
                         "abcdefghijklmno"))
    assert db.scalar("SELECT count(*) FROM devices WHERE device_uuid=?", (d2,)) == 0


def test_device_add_duplicate_uuid_refused(fresh):
    c, db = fresh
    d = uid("dev-")
    c.json("device", "add", "--uuid", d, "--name", "first")
    one_line_error(c.run("device", "add", "--uuid", d, "--name", "second"))
    assert db.scalar("SELECT count(*) FROM devices WHERE device_uuid=?", (d,)) == 1


def test_sensor_add(fresh):
    c, db = fresh
    d = uid("dev-")
    dev = c.json("device", "add", "--uuid", d, "--name", "dev")
    s = uid("sen-")
    out = c.json("sensor", "add", "--device", d, "--uuid", s, "--name", "boiler",
                 "--type", "temperature", "--unit", "C")
    assert out["sensor_uuid"] == s and out["device_uuid"] == d
    assert isinstance(out["sensor_id"], int) and out["sensor_id"] > 0
    row = db.query("SELECT id, device_id, name, sensor_type, unit, is_active FROM sensors "
                   "WHERE sensor_uuid=?", (s,))
    assert row == [(out["sensor_id"], dev["device_id"], "boiler", "temperature", "C", 1)]
    # minimal form (no type/unit)
    s2 = uid("sen-")
    out2 = c.json("sensor", "add", "--device", d, "--uuid", s2, "--name", "plain")
    assert out2["sensor_id"] != out["sensor_id"]
    # unknown device and duplicate sensor uuid are refused
    one_line_error(c.run("sensor", "add", "--device", uid("nodev-"), "--uuid", uid("sen-"),
                         "--name", "x"))
    one_line_error(c.run("sensor", "add", "--device", d, "--uuid", s, "--name", "dup"))


def test_threshold_set_replace_and_clear(fresh):
    c, db = fresh
    d = uid("dev-")
    c.json("device", "add", "--uuid", d, "--name", "dev")
    s = uid("sen-")
    so = c.json("sensor", "add", "--device", d, "--uuid", s, "--name", "t")
    t1 = c.json("threshold", "set", "--sensor", s, "--severity", "warning", "--min", "10",
                "--max", "30")
    assert isinstance(t1["threshold_id"], int)
    t2 = c.json("threshold", "set", "--sensor", s, "--severity", "critical", "--max", "50",
                "--delta-max", "5")
    rows = db.query("SELECT id, severity, min_value, max_value, delta_max, is_active "
                    "FROM alert_thresholds WHERE sensor_id=? AND is_active=1 ORDER BY severity",
                    (so["sensor_id"],))
    assert rows == [(t2["threshold_id"], "critical", None, 50.0, 5.0, 1),
                    (t1["threshold_id"], "warning", 10.0, 30.0, None, 1)], rows
    # setting again replaces: one active per (sensor, severity)
    t3 = c.json("threshold", "set", "--sensor", s, "--severity", "warning", "--min", "0",
                "--max", "40")
    rows = db.query("SELECT id, min_value, max_value FROM alert_thresholds "
                    "WHERE sensor_id=? AND severity='warning' AND is_active=1",
                    (so["sensor_id"],))
    assert rows == [(t3["threshold_id"], 0.0, 40.0)], rows
    # clear
    p = c.run("threshold", "clear", "--sensor", s, "--severity", "critical")
    assert p.returncode == 0, p.stderr
    assert db.scalar("SELECT count(*) FROM alert_thresholds WHERE sensor_id=? AND "
                     "severity='critical' AND is_active=1", (so["sensor_id"],)) == 0
    assert db.scalar("SELECT count(*) FROM alert_thresholds WHERE sensor_id=? AND "
                     "severity='warning' AND is_active=1", (so["sensor_id"],)) == 1
    # unknown sensor
    one_line_error(c.run("threshold", "set", "--sensor", uid("nosen-"), "--severity",
                         "warning", "--max", "1"))


def test_device_and_sensor_disable(fresh):
    c, db = fresh
    d = uid("dev-")
    c.json("device", "add", "--uuid", d, "--name", "dev")
    s = uid("sen-")
    c.json("sensor", "add", "--device", d, "--uuid", s, "--name", "t")
    p = c.run("sensor", "disable", s)
    assert p.returncode == 0, p.stderr
    assert db.scalar("SELECT is_active FROM sensors WHERE sensor_uuid=?", (s,)) == 0
    p = c.run("device", "disable", d)
    assert p.returncode == 0, p.stderr
    assert db.scalar("SELECT is_active FROM devices WHERE device_uuid=?", (d,)) == 0
    one_line_error(c.run("device", "disable", uid("nodev-")))
    one_line_error(c.run("sensor", "disable", uid("nosen-")))


def test_provisioning_timestamps_are_ms(fresh):
    c, db = fresh
    before = now_ms()
    d = uid("dev-")
    c.json("device", "add", "--uuid", d, "--name", "ts")
    after = now_ms()
    created, typ = db.query("SELECT created_at, typeof(created_at) FROM devices "
                            "WHERE device_uuid=?", (d,))[0]
    assert typ == "integer", f"devices.created_at should be INTEGER ms, is {typ}"
    assert before - 2000 <= created <= after + 2000, (before, created, after)


@pytest.mark.parametrize("args", [
    ["device", "add", "--uuid", "d1", "--name", "n"],
    ["device", "disable", "d1"],
    ["sensor", "add", "--device", "d1", "--uuid", "s1", "--name", "n"],
    ["sensor", "disable", "s1"],
    ["threshold", "set", "--sensor", "s1", "--severity", "warning", "--max", "1"],
    ["threshold", "clear", "--sensor", "s1", "--severity", "warning"],
    ["db", "demo"],
    ["job", "baseline"],
    ["job", "explain"],
    ["sim", "--emit", "bodies.tsv", "--devices", "1", "--sensors", "1"],
], ids=lambda a: "-".join(a[:2]))
def test_only_db_init_creates_a_database(tmp_path, args):
    """A provisioning command (or a one-off job, or sim) run in the wrong folder used to
    create an empty iot-ingest.db there silently; now it names the path and db init."""
    path = tmp_path / "missing.db"
    p = Cli(path).run(*[str(tmp_path / a) if a == "bodies.tsv" else a for a in args])
    line = one_line_error(p)
    assert p.returncode == 1, p
    assert line.startswith(f"iot-ingest {' '.join(args[:2]) if args[0] != 'sim' else 'sim'}: "), line
    assert str(path) in line and "iot-ingest db init" in line, line
    assert not path.exists() and not (tmp_path / "bodies.tsv").exists()
    assert Cli(path).run("db", "init").returncode == 0 and path.exists()


@pytest.mark.parametrize("uuid", ["a b/c", "dev/1", "dév", "x?y", "a%20b", "", "u" * 65])
def test_new_uuids_must_fit_a_url_path(fresh, uuid):
    """"a b/c" could post but never reach its status URL: new uuids are refused outside
    [A-Za-z0-9._:-] and beyond 64 bytes, for devices and sensors alike."""
    c, db = fresh
    before = db.counts()
    line = one_line_error(c.run("device", "add", "--uuid", uuid, "--name", "n"))
    assert line.startswith("iot-ingest device add: --uuid "), line
    assert ("A-Z a-z 0-9 . _ : -" in line) or ("1 to 64 bytes" in line), line
    dev = uid("dev-")
    c.json("device", "add", "--uuid", dev, "--name", "n")
    before = db.counts()
    line = one_line_error(c.run("sensor", "add", "--device", dev, "--uuid", uuid, "--name", "n"))
    assert line.startswith("iot-ingest sensor add: --uuid "), line
    assert db.counts() == before


def test_uuid_and_name_limits_count_bytes(fresh):
    c, db = fresh
    ok = "A-z.0_9:x-" + "u" * 54
    assert len(ok) == 64
    c.json("device", "add", "--uuid", ok, "--name", "é" * 64)  # 128 bytes
    line = one_line_error(c.run("device", "add", "--uuid", uid("d-"), "--name", "é" * 65))
    assert "--name must be 1 to 128 bytes, got 130" in line, line
    c.json("device", "add", "--uuid", uid("d-"), "--name", "n", "--key", "ü" * 8)  # 16 bytes
    line = one_line_error(c.run("device", "add", "--uuid", uid("d-"), "--name", "n",
                                "--key", "ü" * 7 + "x"))  # 15 bytes
    assert "--key must be 16 to 256 bytes" in line, line
    assert db.scalar("SELECT count(*) FROM devices") == 2


def test_sim_prefix_must_fit_a_uuid(fresh):
    c, _ = fresh
    p = c.run("sim", "--prefix", "a b", "--emit", "/dev/null")
    line = one_line_error(p)
    assert p.returncode == 2 and line.startswith("iot-ingest sim: --prefix may hold only"), line


def test_every_error_has_the_command_prefix(fresh):
    """One prefix, `iot-ingest COMMAND: `, for every message (some said just `iot-ingest:`)."""
    c, _ = fresh
    dev = uid("dev-")
    c.json("device", "add", "--uuid", dev, "--name", "n")
    sen = uid("sen-")
    c.json("sensor", "add", "--device", dev, "--uuid", sen, "--name", "n")
    cases = [
        (["device", "add", "--uuid", dev, "--name", "again"], "already exists"),
        (["device", "add", "--uuid", uid("d-"), "--name", "n", "--key", "short"], "--key"),
        (["device", "disable", uid("nodev-")], "no device"),
        (["sensor", "add", "--device", uid("nodev-"), "--uuid", uid("s-"), "--name", "n"],
         "no device"),
        (["sensor", "disable", uid("nosen-")], "no sensor"),
        (["threshold", "set", "--sensor", sen, "--severity", "warning", "--min", "x"], "--min"),
        (["threshold", "set", "--sensor", sen, "--severity", "warning"], "at least one"),
        (["threshold", "set", "--sensor", sen, "--severity", "warning", "--min", "2", "--max",
          "1"], "--min"),
        (["threshold", "set", "--sensor", sen, "--severity", "warn", "--max", "1"], "--severity"),
        (["threshold", "clear", "--sensor", uid("nosen-"), "--severity", "warning"], "no sensor"),
        (["sim", "--rate", "fast"], "--rate"),
        (["serve", "--database-url", "mysql://x"], "DATABASE_URL"),
        (["device", "add", "--uuid", "u", "--name", "n", "--database-url", "sqlite:"],
         "DATABASE_URL"),
    ]
    for args, what in cases:
        line = one_line_error(c.run(*args, timeout=30))
        name = " ".join(args[:1] if args[0] in ("sim", "serve") else args[:2])
        assert line.startswith(f"iot-ingest {name}: ") and what in line, (args, line)


def test_threshold_clear_unknown_sensor_exits_1(fresh):
    c, db = fresh
    before = db.counts()
    p = c.run("threshold", "clear", "--sensor", "no-such-sensor", "--severity", "critical")
    line = one_line_error(p)
    assert p.returncode == 1 and line == "iot-ingest threshold clear: no sensor no-such-sensor"
    assert p.stdout == "" and db.counts() == before
    # a known sensor without an active threshold: still 0 (clearing is idempotent)
    dev = uid("dev-")
    c.json("device", "add", "--uuid", dev, "--name", "n")
    sen = uid("sen-")
    c.json("sensor", "add", "--device", dev, "--uuid", sen, "--name", "n")
    out = c.json("threshold", "clear", "--sensor", sen, "--severity", "critical")
    assert out == {"sensor_uuid": sen, "severity": "critical", "is_active": False}


def test_sensor_add_on_a_disabled_device_says_so(fresh):
    c, db = fresh
    dev = uid("dev-")
    c.json("device", "add", "--uuid", dev, "--name", "n")
    c.json("device", "disable", dev)
    before = db.counts()
    p = c.run("sensor", "add", "--device", dev, "--uuid", uid("sen-"), "--name", "n")
    line = one_line_error(p)
    assert p.returncode == 1 and p.stdout == ""
    assert line == f"iot-ingest sensor add: device {dev} is disabled (its packets are " \
                   "refused); no sensor added", line
    assert db.counts() == before


def test_ingest_host_may_be_a_name(tmp_path):
    """INGEST_HOST=localhost (what people type) listens on the loopback address."""
    c = Cli(tmp_path / "lh.db")
    c.init()
    g = Gateway(tmp_path / "lh.db", tmp_path, env={"INGEST_HOST": "localhost"}, name="lh")
    g.start()
    try:
        assert g.get("/health").status == 200
        assert "event=ingest_host_resolved name=localhost address=127.0.0.1" in g.log_text()
    finally:
        assert g.stop() == 0
    p = c.run("serve", env={"INGEST_HOST": "no-such-host.invalid", "INGEST_PORT": "0"},
              timeout=60)
    line = one_line_error(p)
    assert p.returncode == 1 and line.startswith(
        'iot-ingest serve: INGEST_HOST "no-such-host.invalid" is neither an IP address'), line


def test_make_run_checks_the_port_first(tmp_path):
    """`make run` (scripts/demo.sh) with its port taken printed the banner and the curl,
    then failed: now it says so first, with the INGEST_PORT=8001 hint, and creates nothing."""
    import shutil
    import socket
    import subprocess
    from conftest import ROOT, BIN, base_env
    if not shutil.which("ss"):
        pytest.skip("ss (iproute2) is not installed")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        port = blocker.getsockname()[1]
        env = base_env(tmp_path / "demo.db", {"INGEST_PORT": port})
        p = subprocess.run(["sh", str(ROOT / "scripts" / "demo.sh"), BIN], env=env,
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    finally:
        blocker.close()
    assert p.returncode == 1 and p.stdout == "", p
    assert p.stderr.strip() == (f"make run: port {port} is already in use (another iot-ingest?); "
                                "pick another: INGEST_PORT=8001 make run"), p.stderr
    assert not (tmp_path / "demo.db").exists()


def test_401_names_the_wrong_header_and_the_access_log_names_the_code(tmp_path):
    """A wrong X-API-Key was answered "missing or invalid device key"; and the access log
    line of a 4xx said status=401 but not which error it was."""
    from conftest import API_KEY, provision_device, wait_until
    c = Cli(tmp_path / "a.db")
    c.init()
    dev = provision_device(c, 1)
    g = Gateway(tmp_path / "a.db", tmp_path, name="auth401")
    g.start()
    try:
        pkt = {"device_uuid": dev.uuid, "readings": [{"sensor_uuid": dev.sensors[0].uuid,
                                                      "value": 1}]}
        cases = [
            ({"api_key": "wrong-api-key-0123456789"}, "invalid X-API-Key"),
            ({"key": "f" * 32}, "missing or invalid device key (X-Device-Key)"),
            ({"key": "f" * 32, "api_key": "wrong"}, "invalid X-Device-Key and X-API-Key"),
            ({}, "missing device key: send X-Device-Key (or X-API-Key)"),
        ]
        for kw, detail in cases:
            r = g.post_packet(pkt, **kw)
            assert r.status == 401 and r.json() == {"detail": detail, "code": "unauthorized"}, r
        r = g.post_packet({**pkt, "device_uuid": uid("nodev-")}, api_key=API_KEY)
        assert r.status == 401 and "X-API-Key is valid" in r.json()["detail"], r
        # without the API key an unknown device reads like a wrong key (nothing leaks)
        r = g.post_packet({**pkt, "device_uuid": uid("nodev-")}, key="f" * 32)
        assert r.json()["detail"] == "missing or invalid device key (X-Device-Key)", r
        r = g.status(dev.uuid, api_key="wrong-api-key-0123456789")
        assert r.status == 401 and r.json()["detail"] == "invalid X-API-Key", r
        assert g.post_packet({"readings": []}, key=dev.key).status == 400
        log = wait_until(lambda: ("status=400 code=invalid_request" in g.log_text()) and
                         g.log_text(), 10, what="the 400's access line")
        assert re.search(r"event=request .* status=401 code=unauthorized duration_ms=", log), log
    finally:
        assert g.stop() == 0
    ok = [ln for ln in g.log_text().splitlines() if "event=request" in ln and "status=2" in ln]
    assert all("code=" not in ln for ln in ok), ok


# Every table that references a device (by device_id) or a sensor (by sensor_id).
BY_DEVICE = ["sensors", "alerts", "ml_events", "ingest_packets"]
BY_SENSOR = ["sensor_readings", "sensor_readings_hourly", "sensor_state", "alert_thresholds",
             "alerts", "predictions", "ml_events", "online_state", "consumer_applied"]


def rows_under(db, dev):
    """Row counts of everything stored under dev (a conftest Device), table by table."""
    sids = ",".join(str(s.id) for s in dev.sensors)
    out = {f"{t}.device_id": db.scalar(f"SELECT count(*) FROM {t} WHERE device_id = ?", (dev.id,))
           for t in BY_DEVICE}
    out.update({f"{t}.sensor_id": db.scalar(f"SELECT count(*) FROM {t} WHERE sensor_id IN ({sids})")
                for t in BY_SENSOR})
    out["alert_notifications"] = db.scalar(
        "SELECT count(*) FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id"
        " WHERE a.device_id = ?", (dev.id,))
    out["devices"] = db.scalar("SELECT count(*) FROM devices WHERE id = ?", (dev.id,))
    return out


def test_device_delete_needs_yes_and_removes_everything_under_the_device(gateway_factory):
    """`device delete UUID --yes`: one JSON line, every row of the device and its sensors gone,
    the other device untouched; without --yes (like git clean without -f) nothing happens."""
    def provision(c):
        devs = (provision_device(c, 2), provision_device(c, 1))
        for d in devs:
            c.json("threshold", "set", "--sensor", d.sensors[0].uuid, "--severity", "warning",
                   "--max", "10")
        return devs

    g, (gone, kept) = gateway_factory(env={"SENSOR_CACHE_TTL_S": "1"}, provision=provision)
    db, c = g.db, g.cli
    t = now_ms() - 2 * 3600_000  # an hour that job retention can roll up
    for d in (gone, kept):
        for i, v in enumerate((5, 50, 6)):  # normal, an alert, normal again
            r = g.post_packet(d.packet([(k, v, iso_ms(t + i * 1000)) for k in range(len(d.sensors))],
                                       packet_id=uid("p-")), key=d.key)
            assert r.status == 200, r
    p = c.run("job", "retention")
    assert p.returncode == 0, p.stderr
    before_gone, before_kept = rows_under(db, gone), rows_under(db, kept)
    assert before_gone["sensor_readings_hourly.sensor_id"] >= 2, before_gone
    assert before_gone["sensor_readings.sensor_id"] == 6 and before_gone["alerts.device_id"] == 1
    assert before_gone["alert_notifications"] >= 1 and before_gone["ingest_packets.device_id"] == 3

    p = c.run("device", "delete", gone.uuid)
    line = one_line_error(p)
    assert p.returncode == 2 and p.stdout == "" and "--yes" in line, line
    assert line.startswith(f"iot-ingest device delete: this deletes device {gone.uuid} "), line
    assert rows_under(db, gone) == before_gone
    p = c.run("device", "delete", gone.uuid, "--yes=1")
    assert p.returncode == 2 and "takes no value" in one_line_error(p)

    out = c.json("device", "delete", gone.uuid, "--yes")
    assert out == {"device_id": gone.id, "device_uuid": gone.uuid, "deleted": True, "sensors": 2,
                   "readings": 6}
    assert all(n == 0 for n in rows_under(db, gone).values()), rows_under(db, gone)
    assert rows_under(db, kept) == before_kept

    # The gateway may still hold the device for SENSOR_CACHE_TTL_S (1 s here, so which of
    # the two answers comes first depends on timing): its packets are refused by the writer
    # then (nothing is stored for sensors that are gone), and as unknown after. The writer's
    # answer alone: test_pg_backend.py (60 s cache) and the unit test
    # writer_refuses_a_deleted_sensor.
    late = gone.packet([(0, 1.0)])
    r = g.post_packet(late, key=gone.key)
    assert r.status == 401 and r.json()["detail"] in (
        "this device no longer exists", "missing or invalid device key (X-Device-Key)"), r
    wait_until(lambda: g.post_packet(late, key=gone.key).status == 401, timeout=15,
               what="the gateway forgets the deleted device")
    assert all(n == 0 for n in rows_under(db, gone).values()), rows_under(db, gone)
    r = g.post_packet(kept.packet([(0, 7.0)]), key=kept.key)
    assert r.status == 200, r

    p = c.run("device", "delete", gone.uuid, "--yes")
    assert p.returncode == 1 and p.stdout == ""
    assert one_line_error(p) == f"iot-ingest device delete: no device {gone.uuid}"
