"""
docs/grafana-dashboard.json against a real gateway: every metric name that the
dashboard's PromQL expressions (and its template variables) select is
exported by /metrics (a _bucket series needs a histogram family, _sum/_count
a histogram or summary), every expression parses (promtool check rules), and
the dashboard covers what the operations issue asks for.
"""

import json
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, Exposition, scrape

DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"

# Grafana's own variables, replaced by what Grafana would substitute.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
                "$instance": ".*", "${instance}": ".*"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan", "atan2"}


def load_dashboard():
    return json.loads(DASHBOARD.read_text())


def all_panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])  # collapsed rows keep their panels inside


def all_exprs(dash):
    """(panel title, expr) for every PromQL target."""
    out = []
    for p in all_panels(dash):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append((p.get("title", "?"), t["expr"]))
    return out


def template_metrics(dash):
    """Metric names used by query variables (label_values(metric, label))."""
    names = set()
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        names |= set(re.findall(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,", q))
        if re.search(r"\b(query_result|metrics)\(", q):
            names |= promql_metric_names(re.search(r"\((.*)\)", q).group(1))
    return names


def promql_metric_names(expr):
    """
    The metric names a PromQL expression selects: identifiers that are not
    functions or aggregations (followed by '('), keywords, label names (in
    {...} matchers or by/without/on/ignoring lists), strings or durations.
    """
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    e = re.sub(r"\{[^{}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        tok = m.group(0)
        if e[m.end():].lstrip().startswith("(") or tok.lower() in PROMQL_WORDS:
            continue
        names.add(tok)
    return names


def substitute(expr):
    for k, v in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(k, v)
    assert "$" not in expr, f"unknown Grafana variable left in {expr!r}"
    return expr


@pytest.fixture(scope="module")
def exported(_module_gateway):
    return Exposition(scrape(_module_gateway))


def test_extractor_understands_promql():
    e = ('histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket{route="/x",'
         'le=~"1e9|x"}[5m]))) / ignoring(x) group_left sum(b_total offset 1h) * 1e9 > bool c')
    assert promql_metric_names(e) == {"a_seconds_bucket", "b_total", "c"}
    assert promql_metric_names("sum(rate(x{instance=~\"$instance\"}[$__rate_interval])) by (y)") \
        == {"x"}


def test_dashboard_is_well_formed():
    dash = load_dashboard()
    assert dash.get("uid") and dash.get("title"), "uid and title are required for import"
    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    names = [v["name"] for v in dash["templating"]["list"]]
    assert "datasource" in names, "a datasource variable lets the import pick a Prometheus"
    for p in all_panels(dash):
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        ds = p.get("datasource", {})
        assert ds.get("uid") == "${datasource}", f"panel {p['title']!r} datasource: {ds}"
        for t in p["targets"]:
            assert t.get("expr"), f"panel {p['title']!r}: target without expr"


def test_every_metric_the_dashboard_uses_is_exported(exported):
    dash = load_dashboard()
    available = exported.sample_names()
    missing = []
    for title, expr in all_exprs(dash):
        names = promql_metric_names(substitute(expr))
        assert names, f"panel {title!r}: no metric in {expr!r}"
        for n in sorted(names):
            if n in available:
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", n)
            fam_type = exported.types.get(base)
            why = (f"{base} is a {fam_type}, it has no {n[len(base):]} series" if fam_type
                   else "no such family in /metrics")
            missing.append(f"panel {title!r}: {n} ({why})")
    for n in sorted(template_metrics(dash)):
        if n not in available:
            missing.append(f"template variable: {n} (no such series in /metrics)")
    assert not missing, "the dashboard uses metrics /metrics does not export:\n" + "\n".join(
        missing)


def test_every_metric_name_has_the_product_prefix():
    dash = load_dashboard()
    names = set(template_metrics(dash))
    for _, expr in all_exprs(dash):
        names |= promql_metric_names(substitute(expr))
    assert {n for n in names if not n.startswith("iot_ingest_")} == set()


def test_quantiles_come_from_histogram_buckets():
    dash = load_dashboard()
    n = 0
    for title, expr in all_exprs(dash):
        for m in re.finditer(r"histogram_quantile\(\s*([0-9.]+)\s*,(.*)", expr):
            n += 1
            q, rest = float(m.group(1)), m.group(2)
            assert 0 < q < 1, (title, expr)
            assert re.search(r"_bucket\{", rest), f"{title}: quantile not over _bucket: {expr}"
            assert re.search(r"\bby\s*\([^)]*\ble\b", rest), f"{title}: `le` not kept: {expr}"
            assert "rate(" in rest, f"{title}: quantile of raw counters: {expr}"
    assert n >= 3, "latency quantiles (histogram_quantile) are missing"


def test_dashboard_covers_the_operations_issue():
    dash = load_dashboard()
    used = set()
    for _, expr in all_exprs(dash):
        used |= promql_metric_names(substitute(expr))
    wanted = {
        "request rates": "iot_ingest_http_requests_total",
        "latency quantiles": "iot_ingest_http_request_duration_seconds_bucket",
        "readings by class": "iot_ingest_readings_stored_total",
        "rejections": "iot_ingest_readings_rejected_total",
        "queue depth": "iot_ingest_write_queue_depth",
        "commit latency": "iot_ingest_commit_duration_seconds_bucket",
        "DB errors": "iot_ingest_db_errors_total",
        "broker": "iot_ingest_broker_messages_total",
        "RSS": "iot_ingest_process_resident_memory_bytes",
        "rate limits": "iot_ingest_rate_limited_total",
        "cache": "iot_ingest_cache_requests_total",
    }
    assert not {k: v for k, v in wanted.items() if v not in used}


def test_every_expression_parses(tmp_path):
    """promtool check rules parses PromQL: each expression becomes a recording rule."""
    exe = shutil.which("promtool")
    if not exe:
        pytest.skip("promtool not installed (Debian package prometheus; scripts/deps.sh test)")
    dash = load_dashboard()
    rules = [{"record": f"dashboard:expr_{i}:check", "expr": substitute(expr)}
             for i, (_, expr) in enumerate(all_exprs(dash))]
    f = tmp_path / "rules.yml"
    f.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    p = subprocess.run([exe, "check", "rules", str(f)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def alert_rules_block():
    """The ```yaml block with `groups:` in docs/operations.md (the suggested alerts)."""
    text = (ROOT / "docs" / "operations.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if b.startswith("groups:")]
    assert len(blocks) == 1, "docs/operations.md should have one alert-rules block"
    return blocks[0]


def test_documented_alert_rules_parse_and_use_exported_metrics(exported, tmp_path):
    block = alert_rules_block()
    exprs = re.findall(r"^\s+expr: (.*)$", block, re.M)
    assert len(exprs) >= 5, block
    missing = []
    for e in exprs:
        for n in promql_metric_names(e) - {"up"}:  # up: Prometheus's own
            if n not in exported.sample_names():
                missing.append(f"{n} in {e}")
    assert not missing, "\n".join(missing)
    exe = shutil.which("promtool")
    if not exe:
        pytest.skip("promtool not installed (Debian package prometheus; scripts/deps.sh test)")
    f = tmp_path / "alerts.yml"
    f.write_text(block)
    p = subprocess.run([exe, "check", "rules", str(f)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
