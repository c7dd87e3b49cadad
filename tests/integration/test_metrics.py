"""
/metrics as an operator's Prometheus sees it: after real traffic (stored,
rejected and refused requests, a duplicate, a rate-limited device, a legacy
call), the scrape passes `promtool check metrics` (Debian package prometheus)
and exposes every family the operations issue names, with the type, labels
and naming conventions Prometheus expects (iot_ingest_ prefix, _total on
counters, base units such as _seconds and _bytes).
"""

import re
import shutil
import subprocess

import pytest

from conftest import API_KEY, Exposition, iso_ms, now_ms, provision_device, scrape, uid

# Each device may send RATE_LIMIT_BURST packets before its bucket (0.001/s) is
# empty; the IP limit stays off (conftest default) and so does the
# failed-authentication lockout, which would otherwise refuse the 401 probes.
GATEWAY_ENV = {
    "RATE_LIMIT_DEVICE_RPS": "0.001",
    "RATE_LIMIT_BURST": "3",
    "AUTH_FAIL_RPS": "0",
}


def promtool():
    exe = shutil.which("promtool")
    if not exe:
        pytest.skip("promtool not installed (Debian package prometheus; `make test` installs it "
                    "through scripts/deps.sh test)")
    return exe


# The families the operations issue asks for: name -> (type, label that must
# carry these values, or None). Counters end in _total, durations in _seconds.
REQUIRED = {
    "iot_ingest_http_requests_total": ("counter", ("route", "code")),
    "iot_ingest_http_request_duration_seconds": ("histogram", ("route",)),
    "iot_ingest_readings_stored_total": ("counter", ("class",)),
    "iot_ingest_readings_late_total": ("counter", ()),
    "iot_ingest_readings_rejected_total": ("counter", ("reason",)),
    "iot_ingest_packets_deduplicated_total": ("counter", ()),
    "iot_ingest_rate_limited_total": ("counter", ("limit",)),
    "iot_ingest_auth_failures_total": ("counter", ()),
    "iot_ingest_alert_transitions_total": ("counter", ("event",)),
    "iot_ingest_write_queue_depth": ("gauge", ()),
    "iot_ingest_commits_total": ("counter", ()),
    "iot_ingest_commit_duration_seconds": ("histogram", ()),
    "iot_ingest_commit_batch_size": ("histogram", ()),
    "iot_ingest_db_errors_total": ("counter", ()),
    "iot_ingest_cache_requests_total": ("counter", ("result",)),
    "iot_ingest_broker_messages_total": ("counter", ("outcome",)),
    "iot_ingest_broker_up": ("gauge", ()),
    "iot_ingest_process_resident_memory_bytes": ("gauge", ()),
    "iot_ingest_open_connections": ("gauge", ()),
    "iot_ingest_build_info": ("gauge", ("version",)),
}


@pytest.fixture(scope="module")
def traffic(_module_gateway, cli):
    """
    Sends one of each kind of request through the module's gateway and returns
    what was sent, so the tests can check the counters moved by at least that.
    """
    gw = _module_gateway
    dev = provision_device(cli, n_sensors=3)
    s_warn, s_crit = dev.sensors[1], dev.sensors[2]
    cli.json("threshold", "set", "--sensor", s_warn.uuid, "--severity", "warning", "--max", "50")
    cli.json("threshold", "set", "--sensor", s_crit.uuid, "--severity", "critical", "--max", "90")
    t = now_ms() - 60_000
    sent = {}

    # 1: stored, one reading of each class but spike; one rejected reading
    r = gw.post_packet(dev.packet([(0, 20.0, iso_ms(t)), (1, 60.0, iso_ms(t)),
                                   (2, 99.0, iso_ms(t)),
                                   {"sensor_uuid": "no-such-sensor", "value": 1.0}]),
                       key=dev.key)
    assert r.status == 200 and r.json()["accepted"] == 3, r
    # 2: a late reading, with a packet_id; 3: the same packet again (duplicate)
    pkt = dev.packet([(0, 21.0, iso_ms(t - 10_000))], packet_id=uid("pkt-"))
    assert gw.post_packet(pkt, key=dev.key).status == 200
    dup = gw.post_packet(pkt, key=dev.key)
    assert dup.status == 200 and dup.json()["duplicate"] is True, dup
    # 4: this device's bucket (burst 3) is empty now
    limited = gw.post_packet(dev.packet([(0, 22.0)]), key=dev.key)
    assert limited.status == 429 and limited.code == "rate_limited_device", limited

    other = provision_device(cli, n_sensors=1)
    # 422: nothing valid (future timestamp), 401, 400, 415, 404
    r = gw.post_packet(other.packet([(0, 1.0, iso_ms(now_ms() + 3_600_000))]), key=other.key)
    assert r.status == 422, r
    assert gw.post_packet(other.packet([(0, 1.0)]), key="wrong-key-0123456789").status == 401
    assert gw.post_packet(raw=b"{not json", key=other.key).status == 400
    assert gw.post_packet(other.packet([(0, 1.0)]), key=other.key,
                          content_type="text/plain").status == 415
    assert gw.get("/no/such/route").status == 404
    # legacy (201) and status (200)
    r = gw.post("/ingest/readings", {"sensor_id": other.sensors[0].id, "value": 2.0},
                headers=[("X-API-Key", API_KEY)])
    assert r.status == 201, r
    assert gw.status(other.uuid, key=other.key).status == 200
    sent.update(stored={"normal": 2, "warning": 1, "alert": 1}, late=1, rejected_unknown=1,
                rejected_future=1, dedup=1, device_limited=1, auth_failures=1)
    return sent


@pytest.fixture(scope="module")
def exposition(_module_gateway, traffic):
    return Exposition(scrape(_module_gateway))


def test_promtool_check_metrics_accepts_the_scrape(_module_gateway, traffic):
    exe = promtool()
    text = scrape(_module_gateway)
    p = subprocess.run([exe, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    problems = (p.stdout + p.stderr).strip()
    assert p.returncode == 0 and not problems, (
        f"promtool check metrics exited {p.returncode}:\n{problems}\n--- scrape ---\n{text}")


def test_promtool_accepts_an_idle_gateway(gateway_factory):
    """Families without samples yet (no request served) are still well formed."""
    exe = promtool()
    gw, _ = gateway_factory(name="idle-metrics")
    text = scrape(gw)
    p = subprocess.run([exe, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stdout + p.stderr


@pytest.mark.parametrize("family", sorted(REQUIRED))
def test_required_family_is_exported(exposition, family):
    typ, labels = REQUIRED[family]
    assert family in exposition.types, (
        f"{family} is missing from /metrics; exported families: {sorted(exposition.types)}")
    assert exposition.types[family] == typ, f"{family} is a {exposition.types[family]}, want {typ}"
    assert exposition.helps.get(family), f"{family} has no HELP text"
    sample_name = family + "_bucket" if typ == "histogram" else family
    for label in labels:
        assert exposition.label_values(sample_name, label), (
            f"{sample_name} has no sample with a {label!r} label")


def test_every_family_follows_prometheus_naming(exposition):
    bad = []
    for fam, typ in exposition.types.items():
        if not fam.startswith("iot_ingest_"):
            bad.append(f"{fam}: no iot_ingest_ prefix")
        if typ == "counter" and not fam.endswith("_total"):
            bad.append(f"{fam}: a counter without _total")
        if typ != "counter" and fam.endswith("_total"):
            bad.append(f"{fam}: a {typ} named like a counter")
        if re.search(r"_(ms|milliseconds|us|microseconds|ns|minutes|hours|kb|mb|kib|mib)(_|$)",
                     fam):
            bad.append(f"{fam}: not in a base unit (seconds, bytes)")
        if re.search(r"(duration|latency|time)(?!.*_seconds)", fam) and typ != "counter":
            bad.append(f"{fam}: a duration without _seconds")
    # every sample belongs to a declared family
    for name, _, _ in exposition.samples:
        if exposition.family_of(name) is None:
            bad.append(f"sample {name} has no # TYPE")
    assert not bad, "\n".join(bad)


def test_histograms_are_cumulative_and_complete(exposition):
    for fam, typ in exposition.types.items():
        if typ != "histogram":
            continue
        series = {}
        for name, labels, v in exposition.samples:
            if name == fam + "_bucket":
                key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
                series.setdefault(key, []).append((labels["le"], v))
        assert series, f"{fam} has no buckets"
        for key, buckets in series.items():
            les = [float(le) for le, _ in buckets]
            assert les == sorted(les) and les[-1] == float("inf"), (fam, key, les)
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), f"{fam}{dict(key)} buckets not cumulative: {counts}"
            assert exposition.value(fam + "_count", **dict(key)) == counts[-1], (fam, key)


def test_counters_moved_with_the_traffic(exposition, traffic):
    e = exposition
    by = lambda name, **lb: sum(e.values(name, **lb))  # noqa: E731
    for status in ("200", "201", "400", "401", "404", "415", "422", "429"):
        assert by("iot_ingest_http_requests_total", code=status) >= 1, status
    assert by("iot_ingest_http_requests_total", route="/ingest/packets", code="200") >= 3
    assert by("iot_ingest_http_request_duration_seconds_count", route="/ingest/packets") >= 3
    for cls, n in traffic["stored"].items():
        assert by("iot_ingest_readings_stored_total", **{"class": cls}) >= n, cls
    assert e.label_values("iot_ingest_readings_stored_total", "class") >= {
        "normal", "warning", "spike", "alert"}
    assert by("iot_ingest_readings_late_total") >= traffic["late"]
    assert e.label_values("iot_ingest_readings_rejected_total", "reason") >= {
        "unknown_sensor", "invalid_value", "invalid_timestamp", "future_timestamp",
        "stale_timestamp"}
    assert by("iot_ingest_readings_rejected_total", reason="unknown_sensor") >= 1
    assert by("iot_ingest_readings_rejected_total", reason="future_timestamp") >= 1
    assert by("iot_ingest_packets_deduplicated_total") >= traffic["dedup"]
    assert e.label_values("iot_ingest_rate_limited_total", "limit") >= {"ip", "device"}
    assert by("iot_ingest_rate_limited_total", limit="device") >= traffic["device_limited"]
    assert by("iot_ingest_auth_failures_total") >= traffic["auth_failures"]
    assert by("iot_ingest_alert_transitions_total", event="triggered") >= 2
    assert by("iot_ingest_commits_total") >= 1
    assert by("iot_ingest_commit_duration_seconds_count") >= 1
    assert by("iot_ingest_commit_batch_size_count") >= 1
    assert by("iot_ingest_commit_batch_size_sum") >= by("iot_ingest_commit_batch_size_count")
    assert by("iot_ingest_db_errors_total") == 0
    assert by("iot_ingest_cache_requests_total", result="hit") >= 1
    assert by("iot_ingest_cache_requests_total", result="miss") >= 1
    assert e.label_values("iot_ingest_cache_requests_total", "result") == {
        "hit", "miss", "negative_hit"}
    assert e.label_values("iot_ingest_broker_messages_total", "outcome") >= {
        "published", "throttled", "dropped"}
    assert by("iot_ingest_broker_messages_total", outcome="published") >= 1
    # every request above was answered after its commit, and the writer takes a
    # job off the queue before committing it: nothing is waiting now
    assert e.value("iot_ingest_write_queue_depth") == 0
    assert e.value("iot_ingest_broker_up") == 1
    assert e.value("iot_ingest_process_resident_memory_bytes") > 1 << 20
    assert e.value("iot_ingest_open_connections") >= 1  # the scrape itself


def test_job_runs_and_durations_are_exported(exposition):
    assert exposition.types.get("iot_ingest_job_runs_total") == "counter"
    assert exposition.types.get("iot_ingest_job_duration_seconds") == "histogram"
