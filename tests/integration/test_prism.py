"""
docs/openapi.yaml as a validating proxy sees it: Stoplight Prism (pinned in
tests/openapi/package-lock.json) in proxy mode in front of real gateways.

test_openapi.py's scenarios (every route and documented status: limits,
lockouts, a locked database, a missing table, a full write queue) run twice,
each time on fresh gateways behind their own Prism:

- request validation on: a request Prism finds against the description must
  be one the gateway refuses as input (400, 413 or 415). Everything the
  gateway takes (a 2xx, partial success included) or answers for a reason
  other than the request's shape (401, 404, 422, 429, 5xx) must pass clean;
- request validation off, so hostile requests reach the gateway untouched.

In both passes no response may break the description (Prism's
`sl-violations` header names any broken status, header or body). Requests
Prism cannot forward faithfully go straight to the gateway and keep their
direct checks in test_openapi.py: HEAD (Prism answers 500), bodies that are
not JSON (Prism never answers), gzip bodies, and requests without a
Content-Type (Prism sends its own). Prism parses a JSON body and forwards it
re-serialized, so the scenarios make their oversized bodies big in content,
not in whitespace.
"""

import json
import os
import socket
import subprocess
import time

import pytest

from conftest import ROOT, Gateway, wait_until
from test_openapi import (GATEWAY_ENV, UNREACHABLE, Observed, documented, redocly,  # noqa: F401
                          scenario_faults, scenario_ip_limit, scenario_limits, scenario_main,
                          scenario_overload, spec, start_gateway)

SPEC = ROOT / "docs" / "openapi.yaml"
TOOLS = ROOT / "tests" / "openapi"
PRISM = ROOT / "build" / "openapi" / "node_modules" / ".bin" / "prism"
PINNED = "5.16.0"
INPUT_ERRORS = (400, 413, 415)  # the statuses of a request the gateway refuses as input
AUTH_ERRORS = (401, 429)  # no key: 401, or 429 once the address is locked out


@pytest.fixture(scope="module")
def prism_exe():
    p = subprocess.run(["sh", str(TOOLS / "install.sh")], capture_output=True, text=True,
                       timeout=900)
    if p.returncode == 3:
        pytest.skip("npm is not installed: cannot install @stoplight/prism-cli")
    assert p.returncode == 0, p.stderr
    lock = json.loads((TOOLS / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@stoplight/prism-cli"]["version"] == PINNED
    return PRISM


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prism:
    """`prism proxy` in front of one gateway."""

    def __init__(self, exe, upstream_port, validate_request, log_path):
        self.port = free_port()
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [str(exe), "proxy", str(SPEC), f"http://127.0.0.1:{upstream_port}",
             "-h", "127.0.0.1", "-p", str(self.port), "--errors", "false",
             "--validate-request", "true" if validate_request else "false",
             "-v", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"})

        def listening():
            assert self.proc.poll() is None, f"prism exited: {self.log_tail()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(listening, 60, what="prism listening")

    def log_tail(self):
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def json_body(body):
    try:
        json.loads(body)
        return True
    except ValueError:
        return False


class Front:
    """
    A gateway reached through its Prism: the same request helpers as
    conftest.Gateway (the scenarios cannot tell), everything else (db_path,
    cli, name) delegated. Every answer is recorded with the way it went.
    """

    def __init__(self, gw, prism, sent):
        self._gw, self._prism, self._sent = gw, prism, sent
        self.port = prism.port

    def __getattr__(self, name):
        return getattr(self._gw, name)

    def request(self, method, path, body=b"", headers=(), content_type="application/json",
                chunked=False, **kw):
        raw = body.encode() if isinstance(body, str) else body
        hdrs = list(headers)
        direct = (method == "HEAD" or content_type is None or chunked
                  or any(k.lower() == "content-encoding" and v.lower() != "identity"
                         for k, v in hdrs)
                  or (method == "POST" and content_type == "application/json"
                      and not json_body(raw)))
        target = self._gw if direct else self
        r = Gateway.request(target, method, path, body=raw, headers=hdrs,
                            content_type=content_type, chunked=chunked, **kw)
        self._sent.append((method, path, r, direct))
        return r

    get, post, post_packet, status = Gateway.get, Gateway.post, Gateway.post_packet, Gateway.status


def violations(resp):
    v = resp.headers.get("sl-violations")
    return json.loads(v) if v else []


def run_pass(exe, tmp_path_factory, validate_request):
    """test_openapi's scenarios on fresh gateways, each behind a Prism."""
    tag = "on" if validate_request else "off"
    obs, started, prisms, sent = Observed(), [], [], []

    def front(name, env):
        g = start_gateway(tmp_path_factory, f"prism-{tag}-{name}", env, started)
        p = Prism(exe, g.port, validate_request, g.workdir / "prism.log")
        prisms.append(p)
        return Front(g, p, sent)

    try:
        main = front("main", GATEWAY_ENV)
        scenario_main(main, main.cli, obs)
        scenario_limits(front("limits", {
            "RATE_LIMIT_DEVICE_RPS": "0.001", "RATE_LIMIT_BURST": "1",
            "AUTH_FAIL_RPS": "0.001", "AUTH_FAIL_BURST": "1",
            "TRUSTED_PROXIES": "127.0.0.1"}), obs)
        scenario_ip_limit(front("iplimit", {
            "RATE_LIMIT_IP_RPS": "0.001", "RATE_LIMIT_BURST": "1",
            "TRUSTED_PROXIES": "127.0.0.1"}), obs)
        scenario_faults(front("faults", {"DB_BUSY_TIMEOUT_MS": "200"}), obs)
        scenario_overload(front("queue", {
            "DB_BUSY_TIMEOUT_MS": "3000", "WRITE_QUEUE_MAX": "1", "COMMIT_BATCH_MAX": "1"}),
            obs)
    finally:
        for p in prisms:
            p.stop()
        for g in started:
            try:
                g.stop()
            except AssertionError:
                g.kill()
    return obs, sent


@pytest.fixture(scope="module")
def validated(prism_exe, tmp_path_factory):
    return run_pass(prism_exe, tmp_path_factory, True)


@pytest.fixture(scope="module")
def unvalidated(prism_exe, tmp_path_factory):
    return run_pass(prism_exe, tmp_path_factory, False)


def describe(method, path, r, v):
    return f"{method} {path} -> {r.status} {r.body[:200]!r}: {json.dumps(v)[:600]}"


def test_prism_is_pinned_exactly(prism_exe):
    out = subprocess.run([str(prism_exe), "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == PINNED, (out.stdout, out.stderr)


def test_no_response_breaks_the_description(validated, unvalidated):
    bad = []
    for _, sent in (validated, unvalidated):
        for method, path, r, direct in sent:
            v = [x for x in violations(r) if x["location"][:1] == ["response"]]
            if v:
                bad.append(describe(method, path, r, v))
    assert not bad, "\n".join(bad)


def test_described_requests_are_the_ones_the_gateway_takes(validated):
    """
    With request validation on: a request outside the description is refused
    by the gateway as input, and nothing the gateway takes is outside it.
    """
    _, sent = validated
    bad, refused_seen, keyless_seen = [], 0, 0
    for method, path, r, direct in sent:
        v = [x for x in violations(r) if x["location"][:1] == ["request"]]
        # Prism's code 401: no credential of the operation's security schemes was sent.
        keyless = [x for x in v if x["code"] == 401]
        shape = [x for x in v if x["code"] != 401]
        if shape and r.status not in INPUT_ERRORS or keyless and r.status not in AUTH_ERRORS:
            bad.append(describe(method, path, r, v))
        refused_seen += bool(shape) and r.status in INPUT_ERRORS
        keyless_seen += bool(keyless)
    assert not bad, "\n".join(bad)
    # Prism did validate requests: the scenarios send several that break the description.
    assert refused_seen >= 3 and keyless_seen >= 1, (refused_seen, keyless_seen)


def test_hostile_requests_reach_the_gateway_without_violations(unvalidated):
    """Request validation off: nothing is reported but a missing key on a 401 or 429."""
    _, sent = unvalidated
    bad = [describe(m, p, r, violations(r)) for m, p, r, _ in sent
           if any(x["code"] != 401 or r.status not in AUTH_ERRORS for x in violations(r))]
    assert not bad, "\n".join(bad)


def test_every_route_and_status_went_through_prism(spec, validated, unvalidated):  # noqa: F811
    """Every documented (method, route, status) but HEAD's was answered through Prism."""
    want = {k for k in documented(spec) if k[0] != "HEAD" and k not in UNREACHABLE}
    seen = set()
    for obs, sent in (validated, unvalidated):
        proxied = {id(r) for _, _, r, direct in sent if not direct}
        for key, items in obs.seen.items():
            if any(id(resp) in proxied for resp, _, _ in items):
                seen.add(key)
    missing = sorted(want - seen)
    assert not missing, missing
