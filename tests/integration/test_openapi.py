"""
docs/openapi.yaml against the real gateway.

- The description is valid OpenAPI 3.1 by @redocly/cli, pinned to an exact
  version in tests/openapi/package-lock.json and installed into build/openapi
  by tests/openapi/install.sh (`make openapi-deps`). Without npm the tests
  that need it are skipped, saying so.
- Every documented route, method and status is produced on real gateways
  (rate limits, a locked database, a full write queue, a broken schema),
  except the few listed in UNREACHABLE with the reason; and every response
  seen is documented: its status, its body (validated against the documented
  schema, error codes included) and its headers (X-Request-Id, Retry-After).
- Methods a path does not document get 405 with the matching Allow header.
"""

import json
import os
import re
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import (API_KEY, ROOT, Cli, Gateway, dumps, gz, iso_ms, now_ms, provision_device,
                      uid, wait_until)

SPEC = ROOT / "docs" / "openapi.yaml"
TOOLS = ROOT / "tests" / "openapi"
TOOLS_DIR = ROOT / "build" / "openapi"
REDOCLY = TOOLS_DIR / "node_modules" / ".bin" / "redocly"
PINNED = "2.77.0"

# Failed authentications would lock 127.0.0.1 out of the module's gateway;
# a small body limit makes 413 cheap.
GATEWAY_ENV = {"AUTH_FAIL_RPS": "0", "MAX_BODY_BYTES": "65536"}

# Documented on purpose, not produced here, and why.
UNREACHABLE = {
    ("GET", "/ingest/devices/{device_uuid}/status", 503):
        "needs the read connection to fail with a busy/I-O error; SQLite WAL readers never wait",
    ("HEAD", "/ingest/devices/{device_uuid}/status", 503): "as for GET",
    ("GET", "/ingest/devices/{device_uuid}/sensors/{sensor_uuid}/readings", 503):
        "as for the status: the shared read connection never waits on SQLite",
    ("HEAD", "/ingest/devices/{device_uuid}/sensors/{sensor_uuid}/readings", 503): "as for GET",
}
H = "/ingest/devices/{device_uuid}/sensors/{sensor_uuid}/readings"


def history_url(dev, sensor_uuid, query=""):
    return f"/ingest/devices/{dev.uuid}/sensors/{sensor_uuid}/readings{query}"

XFF = "X-Forwarded-For"
# Over MAX_BODY_BYTES (65536) in content, not in whitespace: test_prism.py sends
# the same requests through a proxy that parses and re-serializes JSON bodies.
BIG = dumps({"pad": "x" * 70_000})


def redocly_env():
    env = dict(os.environ)
    env.update(REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true", NO_COLOR="1",
               CI="true")
    return env


@pytest.fixture(scope="module")
def redocly():
    p = subprocess.run(["sh", str(TOOLS / "install.sh")], capture_output=True, text=True,
                       timeout=900)
    if p.returncode == 3:
        pytest.skip(f"npm is not available, so @redocly/cli@{PINNED} cannot be installed: "
                    f"{p.stderr.strip()}")
    assert p.returncode == 0, f"tests/openapi/install.sh failed ({p.returncode}):\n{p.stderr}"
    assert REDOCLY.exists(), f"{REDOCLY} missing after install"
    return REDOCLY


def run_redocly(exe, *args):
    return subprocess.run([str(exe), *map(str, args)], cwd=ROOT, env=redocly_env(),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def spec(redocly, tmp_path_factory):
    """The description with every $ref resolved, as JSON (bundled by redocly)."""
    out = tmp_path_factory.mktemp("openapi") / "openapi.json"
    p = run_redocly(redocly, "bundle", SPEC, "--dereferenced", "--ext", "json", "-o", out)
    assert p.returncode == 0 and out.exists(), p.stdout + p.stderr
    return json.loads(out.read_text())


# ------------------------------------------------------------------ the description itself


def test_redocly_is_pinned_exactly(redocly):
    pkg = json.loads((TOOLS / "package.json").read_text())
    assert pkg["devDependencies"]["@redocly/cli"] == PINNED, "pin an exact version"
    lock = json.loads((TOOLS / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@redocly/cli"]["version"] == PINNED
    p = run_redocly(redocly, "--version")
    assert PINNED in p.stdout, p.stdout + p.stderr


def test_openapi_lints_clean(redocly):
    p = run_redocly(redocly, "lint", "--config", TOOLS / "redocly.yaml", SPEC)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "valid" in (p.stdout + p.stderr).lower()


def test_openapi_is_3_1_and_names_every_error_code(spec):
    """The ErrorCode enum is exactly the set of codes src/http/ can send."""
    assert spec["openapi"].startswith("3.1")
    codes = set(spec["components"]["schemas"]["ErrorCode"]["enum"])
    # src/http, and the front door that writes the answers every transport sends
    src = "".join(p.read_text() for p in sorted((ROOT / "src" / "http").glob("*.c")))
    src += (ROOT / "src" / "ingest" / "intake.c").read_text()
    sent = set(re.findall(r'reply_(?:error|retry)\(\s*rq,\s*\d+,\s*(?:\w+,\s*)?"([a-z_]+)"', src))
    sent |= set(re.findall(r'"code",\s*json_string\("([a-z_]+)"\)', src))
    sent |= set(re.findall(r'\\"code\\":\\"([a-z_]+)\\"', src))  # written as text
    sent |= set(re.findall(r'#define DECODE_\w+\s+"([a-z_]+)"',
                           (ROOT / "src" / "ingest" / "packet_decode.h").read_text()))
    # reply_store_error picks its code in a conditional expression
    m = re.search(r"int reply_store_error\(.*?\n}\n", src, re.S)
    assert m, "reply_store_error not found in src/http"
    sent |= set(re.findall(r'"(overloaded|db_unavailable|internal_error)"', m.group(0)))
    assert {"invalid_json", "unauthorized", "rate_limited_auth", "overloaded"} <= sent, sent
    assert sorted(sent - codes) == [], "sent by src/http but not documented"
    assert sorted(codes - sent) == [], "documented but never sent by src/http"


def test_security_headers_are_documented(spec):
    schemes = spec["components"]["securitySchemes"]
    assert {(s["in"], s["name"]) for s in schemes.values()} == {
        ("header", "X-Device-Key"), ("header", "X-API-Key")}
    for path, item in spec["paths"].items():
        for method, op in operations(item):
            for status, resp in op["responses"].items():
                assert "X-Request-Id" in resp.get("headers", {}), (method, path, status)
                if status in ("429", "503") and path != "/health":
                    assert "Retry-After" in resp.get("headers", {}), (method, path, status)


# ------------------------------------------------------------------ a small JSON Schema check

JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def type_ok(v, t):
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool) or (
            isinstance(v, float) and v.is_integer())
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, JSON_TYPES[t])


def validate(v, s, where="$"):
    """The JSON Schema keywords docs/openapi.yaml uses; returns a list of problems."""
    errs = []
    for sub in s.get("allOf", []):
        errs += validate(v, sub, where)
    for key in ("oneOf", "anyOf"):
        if key in s and not any(not validate(v, sub, where) for sub in s[key]):
            errs.append(f"{where}: matches no {key} branch")
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(type_ok(v, t) for t in types):
            return errs + [f"{where}: {v!r} is not of type {types}"]
    if "const" in s and v != s["const"]:
        errs.append(f"{where}: {v!r} != const {s['const']!r}")
    if "enum" in s and v not in s["enum"]:
        errs.append(f"{where}: {v!r} not in {s['enum']}")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and "minimum" in s:
        if v < s["minimum"]:
            errs.append(f"{where}: {v} < minimum {s['minimum']}")
    if isinstance(v, str):
        if len(v) < s.get("minLength", 0) or len(v) > s.get("maxLength", 1 << 30):
            errs.append(f"{where}: length {len(v)} out of bounds")
        if "pattern" in s and not re.search(s["pattern"], v):
            errs.append(f"{where}: {v!r} does not match {s['pattern']}")
    if isinstance(v, dict):
        for r in s.get("required", []):
            if r not in v:
                errs.append(f"{where}: required {r!r} missing")
        for k, sub in s.get("properties", {}).items():
            if k in v:
                errs += validate(v[k], sub, f"{where}.{k}")
    if isinstance(v, list):
        if len(v) < s.get("minItems", 0) or len(v) > s.get("maxItems", 1 << 30):
            errs.append(f"{where}: {len(v)} items out of bounds")
        for i, item in enumerate(v):
            errs += validate(item, s.get("items", {}), f"{where}[{i}]")
    return errs


def test_validator_catches_mistakes():
    s = {"type": "object", "required": ["code"], "properties": {
        "code": {"type": "string", "enum": ["a"]}, "n": {"type": ["integer", "null"]}}}
    assert validate({"code": "a", "n": None}, s) == []
    assert validate({"code": "b"}, s) and validate({}, s) and validate({"code": "a", "n": 1.5}, s)


def operations(path_item):
    for m in ("get", "head", "post", "put", "patch", "delete", "options"):
        if m in path_item:
            yield m.upper(), path_item[m]


# ------------------------------------------------------------------ observations


class Observed:
    """Responses seen, keyed by (method, path template, status)."""

    def __init__(self):
        self.seen = {}
        self.lock = threading.Lock()

    def add(self, method, tpl, resp, request_body=None, note=""):
        with self.lock:
            self.seen.setdefault((method, tpl, resp.status), []).append(
                (resp, request_body, note))
        return resp


def start_gateway(tmp_path_factory, name, env, started):
    d = tmp_path_factory.mktemp(name)
    c = Cli(d / "iot.db")
    c.init()
    g = Gateway(d / "iot.db", d, env={"AUTH_FAIL_RPS": "0", **env}, name=name)
    g.cli = c
    started.append(g)
    g.start()
    return g


def api(extra=()):
    return [("X-API-Key", API_KEY), *extra]


def dev_key(dev, extra=()):
    return [("X-Device-Key", dev.key), *extra]


def scenario_main(gw, cli, obs):
    """Everything that one gateway with default limits can produce."""
    dev = provision_device(cli, 2)
    off = provision_device(cli, 1)
    cli.json("device", "disable", off.uuid)  # before any request: never cached as active
    t = now_ms() - 30_000
    P, R, B, S = ("/ingest/packets", "/ingest/readings", "/ingest/readings/bulk",
                  "/ingest/devices/{device_uuid}/status")
    status_url = lambda u: f"/ingest/devices/{u}/status"  # noqa: E731

    obs.add("GET", "/health", gw.get("/health"))
    obs.add("HEAD", "/health", gw.request("HEAD", "/health"))
    obs.add("GET", "/metrics", gw.get("/metrics"))
    obs.add("HEAD", "/metrics", gw.request("HEAD", "/metrics"))

    body = dev.packet([(0, 21.5, iso_ms(t)), (1, 48.0)], packet_id=uid("p-"), ts=iso_ms(t))
    obs.add("POST", P, gw.post_packet(body, key=dev.key, headers=[("X-Request-Id", "oa-1")]),
            body, "stored")
    obs.add("POST", P, gw.post_packet(body, key=dev.key), body, "duplicate")
    partial = dev.packet([(0, 22.0), {"sensor_uuid": "nope", "value": 1}, {"value": 2}])
    obs.add("POST", P, gw.post_packet(partial, api_key=API_KEY), None, "partial, API key")
    # Each reading is checked on its own: the description must take all of these.
    odd = dev.packet([(0, 22.5), {"sensor_uuid": "s" * 65, "value": 1},
                      {"sensor_uuid": dev.sensors[1].uuid, "value": "7"},
                      {"sensor_uuid": dev.sensors[1].uuid, "value": 1, "ts": "1795798800"},
                      {"sensor_uuid": 5, "value": None, "ts": True}])
    obs.add("POST", P, gw.post_packet(odd, key=dev.key, headers=[("X-Request-Id", "bad id!")]),
            None, "partial, odd readings, a request id to replace")
    obs.add("POST", P, gw.post_packet({"device_uuid": "\u00e9" * 64, "readings": [{}]},
                                      key=dev.key), None, "device_uuid outside the alphabet")
    obs.add("POST", P, gw.post_packet(raw=gz(dumps(dev.packet([(0, 23.0)]))), key=dev.key,
                                      headers=[("Content-Encoding", "gzip")]), None, "gzip")
    obs.add("POST", P, gw.post_packet(raw=b'{"device_uuid":', key=dev.key), None, "bad json")
    obs.add("POST", P, gw.post_packet({"device_uuid": dev.uuid, "readings": []}, key=dev.key),
            None, "empty readings")
    obs.add("POST", P, gw.post_packet(dev.packet([(0, 1.0)]), key="x" * 32), None, "wrong key")
    obs.add("POST", P, gw.post_packet(off.packet([(0, 1.0)]), key=off.key), None, "disabled")
    obs.add("POST", P, gw.post_packet(raw=BIG, key=dev.key), None, "big")
    obs.add("POST", P, gw.post_packet(dev.packet([(0, 1.0)]), key=dev.key,
                                      content_type="text/plain"), None, "415")
    obs.add("POST", P, gw.post_packet(dev.packet([(0, 1.0)]), key=dev.key,
                                      headers=[("Content-Encoding", "br")]), None, "415 br")
    future = dev.packet([(0, 1.0, iso_ms(now_ms() + 86_400_000))])
    obs.add("POST", P, gw.post_packet(future, key=dev.key), None, "422")

    single = {"sensor_id": dev.sensors[0].id, "value": 30.5, "timestamp": iso_ms(t + 1000)}
    obs.add("POST", R, gw.post(R, single, headers=api()), single, "201")
    obs.add("POST", R, gw.post(R, raw=b"[1,2", headers=api()), None, "400")
    obs.add("POST", R, gw.post(R, [1, 2], headers=api()), None, "400 not an object")
    obs.add("POST", R, gw.post(R, single), None, "401 no key")
    obs.add("POST", R, gw.post(R, raw=BIG, headers=api()), None, "413")
    obs.add("POST", R, gw.post(R, single, headers=api(), content_type="text/csv"), None, "415")
    obs.add("POST", R, gw.post(R, {"sensor_id": 10 ** 9, "value": 1}, headers=api()), None,
            "422")

    bulk = {"readings": [{"sensor_id": dev.sensors[1].id, "value": 1.5, "timestamp": t / 1000},
                         {"sensor_id": dev.sensors[1].id, "value": "x"}]}
    obs.add("POST", B, gw.post(B, bulk, headers=api()), None, "200 partial")
    odd_bulk = {"readings": [{"sensor_id": dev.sensors[1].id, "value": 2.5},
                             {"sensor_id": 0, "value": 1}, {"sensor_id": "3", "value": 1},
                             {"sensor_id": dev.sensors[1].id, "value": 1, "timestamp": "17"}]}
    obs.add("POST", B, gw.post(B, odd_bulk, headers=api()), None, "200 partial, odd readings")
    ok_bulk = {"readings": bulk["readings"][:1]}
    obs.add("POST", B, gw.post(B, ok_bulk, headers=api()), ok_bulk, "200")
    obs.add("POST", B, gw.post(B, {"readings": {}}, headers=api()), None, "400")
    obs.add("POST", B, gw.post(B, bulk, headers=[("X-API-Key", "wrong-api-key-123456")]), None,
            "401")
    obs.add("POST", B, gw.post(B, raw=BIG, headers=api()), None, "413")
    obs.add("POST", B, gw.post(B, bulk, headers=api(), content_type=""), None, "415 empty CT")
    obs.add("POST", B, gw.post(B, {"readings": [{"sensor_id": 0, "value": 1}]}, headers=api()),
            None, "422")

    obs.add("GET", S, gw.status(dev.uuid, key=dev.key), None, "own key")
    obs.add("GET", S, gw.status(off.uuid, api_key=API_KEY), None, "disabled, API key")
    obs.add("GET", S, gw.status(dev.uuid, key=off.key), None, "another device's key")
    obs.add("GET", S, gw.status(off.uuid, key=off.key), None, "disabled, own key")
    obs.add("GET", S, gw.status(uid("ghost-"), api_key=API_KEY), None, "unknown device")
    obs.add("GET", S, gw.get(status_url("u" * 65), headers=api()), None, "uuid too long")
    obs.add("HEAD", S, gw.request("HEAD", status_url(dev.uuid), headers=dev_key(dev)))
    obs.add("HEAD", S, gw.request("HEAD", status_url(dev.uuid)))
    obs.add("HEAD", S, gw.request("HEAD", status_url(off.uuid), headers=dev_key(off)))
    obs.add("HEAD", S, gw.request("HEAD", status_url(uid("ghost-")), headers=api()))

    s0 = dev.sensors[0].uuid
    obs.add("GET", H, gw.get(history_url(dev, s0, "?limit=1"), headers=dev_key(dev)), None,
            "raw page with next")
    obs.add("GET", H, gw.get(history_url(dev, s0, "?step=1h&agg=count&from=1700000000"),
                             headers=api()), None, "points, API key")
    obs.add("GET", H, gw.get(history_url(dev, s0, "?limit=0"), headers=dev_key(dev)), None,
            "bad limit")
    obs.add("GET", H, gw.get(history_url(dev, s0), headers=dev_key(off)), None,
            "another device's key")
    obs.add("GET", H, gw.get(history_url(off, off.sensors[0].uuid), headers=dev_key(off)), None,
            "disabled, own key")
    obs.add("GET", H, gw.get(history_url(dev, "nope"), headers=dev_key(dev)), None,
            "unknown sensor")
    obs.add("HEAD", H, gw.request("HEAD", history_url(dev, s0), headers=dev_key(dev)))
    obs.add("HEAD", H, gw.request("HEAD", history_url(dev, s0, "?step=1m"), headers=dev_key(dev)))
    obs.add("HEAD", H, gw.request("HEAD", history_url(dev, s0)))
    obs.add("HEAD", H, gw.request("HEAD", history_url(off, off.sensors[0].uuid),
                                  headers=dev_key(off)))
    obs.add("HEAD", H, gw.request("HEAD", history_url(dev, "nope"), headers=dev_key(dev)))


def scenario_limits(g, obs):
    """Per-device limit and the failed-authentication lockout (one IP per case)."""
    dev = provision_device(g.cli, 1)
    P = "/ingest/packets"
    first = g.post_packet(dev.packet([(0, 1.0)]), key=dev.key, headers=[(XFF, "10.0.0.1")])
    assert first.status == 200, first
    obs.add("POST", P, g.post_packet(dev.packet([(0, 2.0)]), key=dev.key,
                                     headers=[(XFF, "10.0.0.2")]), None, "device limit")
    cases = [
        ("POST", P, lambda h: g.post_packet(dev.packet([(0, 1.0)]), key="bad-key-0123456789",
                                            headers=h)),
        ("POST", "/ingest/readings", lambda h: g.post(
            "/ingest/readings", {"sensor_id": 1, "value": 1}, headers=h)),
        ("POST", "/ingest/readings/bulk", lambda h: g.post(
            "/ingest/readings/bulk", {"readings": [{"sensor_id": 1, "value": 1}]}, headers=h)),
        ("GET", "/ingest/devices/{device_uuid}/status", lambda h: g.get(
            f"/ingest/devices/{dev.uuid}/status", headers=h)),
        ("HEAD", "/ingest/devices/{device_uuid}/status", lambda h: g.request(
            "HEAD", f"/ingest/devices/{dev.uuid}/status", headers=h)),
        ("GET", H, lambda h: g.get(history_url(dev, dev.sensors[0].uuid), headers=h)),
    ]
    for i, (method, tpl, send) in enumerate(cases):
        h = [(XFF, f"10.1.0.{i + 1}")]
        assert send(h).status == 401
        obs.add(method, tpl, send(h), None, "auth lockout")


def scenario_ip_limit(g, obs):
    dev = provision_device(g.cli, 1)
    cases = [
        ("POST", "/ingest/packets", lambda h: g.post_packet(dev.packet([(0, 1.0)]),
                                                            key=dev.key, headers=h)),
        ("POST", "/ingest/readings", lambda h: g.post(
            "/ingest/readings", {"sensor_id": dev.sensors[0].id, "value": 1}, headers=api(h))),
        ("POST", "/ingest/readings/bulk", lambda h: g.post(
            "/ingest/readings/bulk", {"readings": [{"sensor_id": dev.sensors[0].id, "value": 1}]},
            headers=api(h))),
        ("GET", "/ingest/devices/{device_uuid}/status", lambda h: g.get(
            f"/ingest/devices/{dev.uuid}/status", headers=dev_key(dev, h))),
    ]
    for i, (method, tpl, send) in enumerate(cases):
        h = [(XFF, f"10.2.0.{i + 1}")]
        send(h)  # the IP's only token
        obs.add(method, tpl, send(h), None, "ip limit")
    # not limited: /health and /metrics
    for _ in range(3):
        assert g.get("/health", headers=[(XFF, "10.2.0.1")]).status == 200
        assert g.get("/metrics", headers=[(XFF, "10.2.0.1")]).status == 200


def locked(db_path):
    """A connection holding SQLite's write lock (readers go on: WAL)."""
    c = sqlite3.connect(str(db_path), timeout=10, isolation_level=None)
    c.execute("BEGIN IMMEDIATE")
    return c


def scenario_faults(g, obs):
    """503 db_unavailable (lock past the busy timeout), 500 (a table gone), /health 503."""
    dev = provision_device(g.cli, 1)
    P, R, B = "/ingest/packets", "/ingest/readings", "/ingest/readings/bulk"
    sid = dev.sensors[0].id
    assert g.post_packet(dev.packet([(0, 1.0)]), key=dev.key).status == 200  # warm the cache
    lk = locked(g.db_path)
    try:
        obs.add("POST", P, g.post_packet(dev.packet([(0, 2.0)]), key=dev.key), None, "locked")
        obs.add("POST", R, g.post(R, {"sensor_id": sid, "value": 2}, headers=api()), None,
                "locked")
        obs.add("POST", B, g.post(B, {"readings": [{"sensor_id": sid, "value": 2}]},
                                  headers=api()), None, "locked")
    finally:
        lk.execute("ROLLBACK")
        lk.close()

    c = sqlite3.connect(str(g.db_path), timeout=10, isolation_level=None)
    try:
        c.execute("ALTER TABLE sensor_readings RENAME TO sensor_readings_gone")
        obs.add("POST", P, g.post_packet(dev.packet([(0, 3.0)]), key=dev.key), None, "no table")
        obs.add("POST", R, g.post(R, {"sensor_id": sid, "value": 3}, headers=api()), None,
                "no table")
        obs.add("POST", B, g.post(B, {"readings": [{"sensor_id": sid, "value": 3}]},
                                  headers=api()), None, "no table")
        c.execute("ALTER TABLE sensor_readings_gone RENAME TO sensor_readings")
        c.execute("ALTER TABLE alerts RENAME TO alerts_gone")
        S = "/ingest/devices/{device_uuid}/status"
        obs.add("GET", S, g.status(dev.uuid, key=dev.key), None, "no table")
        obs.add("HEAD", S, g.request("HEAD", f"/ingest/devices/{dev.uuid}/status",
                                     headers=dev_key(dev)), None, "no table")
        c.execute("ALTER TABLE alerts_gone RENAME TO alerts")
        c.execute("ALTER TABLE rollup_state RENAME TO rollup_state_gone")
        obs.add("GET", H, g.get(history_url(dev, dev.sensors[0].uuid), headers=dev_key(dev)),
                None, "no table")
        obs.add("HEAD", H, g.request("HEAD", history_url(dev, dev.sensors[0].uuid),
                                     headers=dev_key(dev)), None, "no table")
        c.execute("ALTER TABLE rollup_state_gone RENAME TO rollup_state")
        # the health ping reads schema_version: a table of that name without the column
        c.execute("ALTER TABLE schema_version RENAME TO schema_version_gone")
        c.execute("CREATE TABLE schema_version(x)")
        obs.add("GET", "/health", g.get("/health"), None, "db error")
        obs.add("HEAD", "/health", g.request("HEAD", "/health"), None, "db error")
        c.execute("DROP TABLE schema_version")
        c.execute("ALTER TABLE schema_version_gone RENAME TO schema_version")
    finally:
        c.close()
    # recovers by itself
    wait_until(lambda: g.get("/health").status == 200, 10, what="health back")
    assert g.post_packet(dev.packet([(0, 4.0)]), key=dev.key).status == 200


def scenario_overload(g, obs):
    """503 overloaded: the writer waits on a lock, the one queue slot is taken."""
    dev = provision_device(g.cli, 1)
    assert g.post_packet(dev.packet([(0, 1.0)]), key=dev.key).status == 200
    results, threads = [], []

    def send(i):
        results.append(g.post_packet(dev.packet([(0, float(i))]), key=dev.key))

    lk = locked(g.db_path)
    try:
        deadline = time.monotonic() + 3
        i = 0
        while time.monotonic() < deadline and not any(r.code == "overloaded" for r in results):
            i += 1
            th = threading.Thread(target=send, args=(i,))
            th.start()
            threads.append(th)
            time.sleep(0.05)
    finally:
        lk.execute("ROLLBACK")
        lk.close()
        for th in threads:
            th.join(30)
    for r in results:
        obs.add("POST", "/ingest/packets", r, None, "overload")
    assert any(r.code == "overloaded" for r in results), results


@pytest.fixture(scope="module")
def observed(_module_gateway, cli, tmp_path_factory):
    obs = Observed()
    started = []
    try:
        scenario_main(_module_gateway, cli, obs)
        scenario_limits(start_gateway(tmp_path_factory, "oa-limits", {
            "RATE_LIMIT_DEVICE_RPS": "0.001", "RATE_LIMIT_BURST": "1",
            "AUTH_FAIL_RPS": "0.001", "AUTH_FAIL_BURST": "1",
            "TRUSTED_PROXIES": "127.0.0.1"}, started), obs)
        scenario_ip_limit(start_gateway(tmp_path_factory, "oa-iplimit", {
            "RATE_LIMIT_IP_RPS": "0.001", "RATE_LIMIT_BURST": "1",
            "TRUSTED_PROXIES": "127.0.0.1"}, started), obs)
        scenario_faults(start_gateway(tmp_path_factory, "oa-faults", {
            "DB_BUSY_TIMEOUT_MS": "200"}, started), obs)
        scenario_overload(start_gateway(tmp_path_factory, "oa-queue", {
            "DB_BUSY_TIMEOUT_MS": "3000", "WRITE_QUEUE_MAX": "1", "COMMIT_BATCH_MAX": "1"},
            started), obs)
    finally:
        obs.exit_codes = {}
        for g in started:
            try:
                obs.exit_codes[g.name] = g.stop()
            except AssertionError as e:
                obs.exit_codes[g.name] = str(e)
                g.kill()
    return obs


def documented(spec):
    out = {}
    for tpl, item in spec["paths"].items():
        for method, op in operations(item):
            for status, resp in op["responses"].items():
                out[(method, tpl, int(status))] = (op, resp)
    return out


def test_every_response_seen_is_documented(spec, observed):
    docs = documented(spec)
    problems = []
    for key, seen in sorted(observed.seen.items()):
        method, tpl, status = key
        if key not in docs:
            problems.append(f"{method} {tpl} -> {status} is not documented "
                            f"({seen[0][2]}: {seen[0][0]!r})")
            continue
        op, resp_doc = docs[key]
        for resp, req_body, note in seen:
            tag = f"{method} {tpl} {status} ({note})"
            for h, hdoc in resp_doc.get("headers", {}).items():
                v = resp.headers.get(h.lower())
                if v is None:
                    problems.append(f"{tag}: header {h} missing")
                    continue
                typ = hdoc.get("schema", {}).get("type")
                if typ == "integer" and not re.fullmatch(r"\d+", v):
                    problems.append(f"{tag}: header {h}={v!r} is not an integer")
                elif typ == "integer":
                    problems += [f"{tag}: {e}" for e in validate(int(v), hdoc["schema"], h)]
            content = resp_doc.get("content", {})
            if method == "HEAD":
                if resp.body:
                    problems.append(f"{tag}: HEAD answered with a body")
                continue
            if not content:
                continue
            ctype = resp.headers.get("content-type", "")
            media = next((m for m in content if m.split(";")[0] == ctype.split(";")[0]), None)
            if media is None:
                problems.append(f"{tag}: content-type {ctype!r} not in {list(content)}")
                continue
            if media == "application/json":
                try:
                    body = json.loads(resp.body)
                except ValueError:
                    problems.append(f"{tag}: body is not JSON: {resp.body[:200]!r}")
                    continue
                problems += [f"{tag}: {e}" for e in validate(body, content[media]["schema"])]
            if req_body is not None and 200 <= status < 300:
                rb = op["requestBody"]["content"]["application/json"]["schema"]
                problems += [f"{tag}: request {e}" for e in validate(req_body, rb, "request")]
    assert not problems, "\n".join(problems)


def test_every_documented_status_is_produced(spec, observed):
    docs = set(documented(spec))
    for key, why in UNREACHABLE.items():
        assert key in docs, f"UNREACHABLE names {key}, which is not documented"
        assert key not in observed.seen, f"{key} was produced after all: remove it from UNREACHABLE"
    missing = sorted(docs - set(observed.seen) - set(UNREACHABLE))
    assert not missing, "documented but never produced: " + ", ".join(
        f"{m} {p} {s}" for m, p, s in missing)


def test_gateways_survived_and_exited_cleanly(observed):
    """Locks, missing tables and a full queue: no crash, SIGTERM still exits 0."""
    assert observed.exit_codes and set(observed.exit_codes.values()) == {0}, observed.exit_codes


def test_request_ids_are_echoed(observed):
    resp = observed.seen[("POST", "/ingest/packets", 200)][0][0]
    assert resp.headers.get("x-request-id") == "oa-1", resp.headers


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
def test_undocumented_methods_get_405_with_allow(spec, gw, method):
    for tpl, item in spec["paths"].items():
        allowed = {m for m, _ in operations(item)}
        if method in allowed:
            continue
        path = tpl.replace("{device_uuid}", "some-device").replace("{sensor_uuid}", "some-sensor")
        r = gw.request(method, path, headers=api())
        assert r.status == 405, (method, path, r)
        assert r.code == "method_not_allowed", r
        assert {m.strip() for m in r.headers.get("allow", "").split(",")} == allowed, (
            method, path, r.headers)


def test_unknown_paths_are_404(gw):
    for path in ("/", "/ingest", "/ingest/packets/x", "/ingest/devices/a/b/status", "/v1/health"):
        r = gw.get(path)
        assert r.status == 404 and r.code == "not_found", (path, r)
