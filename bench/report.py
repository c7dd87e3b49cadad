#!/usr/bin/env python3
"""
Renders the results of bench/run.sh (its work directory) as Markdown.

Usage: bench/report.py WORKDIR OUT.md

The hand-written analysis between the markers
    <!-- analysis:begin --> ... <!-- analysis:end -->
in an existing OUT.md is kept as it is, so rerunning the benchmark refreshes
the numbers without losing the notes (which say which run they were written
for); so is every section measured by hand, between
    <!-- manual:begin --> ... <!-- manual:end -->
(the history API), which the report appends unchanged.
"""

import json
import re
import sys
from pathlib import Path

BEGIN, END = "<!-- analysis:begin -->", "<!-- analysis:end -->"
MANUAL_BEGIN, MANUAL_END = "<!-- manual:begin -->", "<!-- manual:end -->"


def read(path, default=""):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return default


def kv_file(path):
    out = {}
    for line in read(path).splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def parse_results(path):
    rows = []
    for line in read(path).splitlines():
        parts = line.split("\t")
        if len(parts) < 5:
            continue
        name, backend, sync, conns, rest = parts[0], parts[1], parts[2], int(parts[3]), parts[4]
        row = {"name": name, "backend": backend, "sync": sync, "conns": conns,
               "variant": "standard"}
        if "skipped=" in rest:
            head, _, reason = rest.partition("skipped=")
            row["skipped"] = reason
            m = re.search(r"variant=(\S+)", head)
            if m:
                row["variant"] = m.group(1)
        else:
            for tok in rest.split():
                k, _, v = tok.partition("=")
                row[k] = int(v) if v.lstrip("-").isdigit() else v
        rows.append(row)
    return rows


def fmt(x, nd=0):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def derived(r, meta):
    """Per-row figures: packets/s, readings/s, CPU and disk per packet, writer stats."""
    clk = int(meta.get("clk_tck", "100"))
    readings = int(r.get("readings") or meta.get("readings", "10"))
    secs = r["duration_us"] / 1e6
    req = r["requests"]
    d = {"pps": req / secs,
         "rps": (req - r["non2xx"]) * readings / secs if r["name"] not in NOT_STORED else None,
         "cpu": r["cpu_ticks"] / clk / req * 1e6 if req else None,
         "errs": r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"],
         "disk": r.get("disk_bytes", 0) / req / 1024 if req else None}
    d["db_cpu"] = r.get("db_ticks", 0) / clk / req * 1e6 if req and r.get("db_ticks") else None
    d["db_disk"] = (r.get("db_disk_bytes", 0) / req / 1024 if req and r.get("db_ticks")
                    else None)
    commits = r.get("commits", 0)
    d["commits_s"] = commits / secs if commits else None
    d["batch"] = r.get("batch_sum", 0) / commits if commits else None
    d["busy"] = r.get("tx_ms", 0) / 1000 / secs * 100 if commits else None
    return d


# Rows with a table of their own (mqtt_section, tls_section), next to their HTTP rows.
OWN_TABLE = ("mqtt", "https", "https-close")
# Rows that answer without storing anything: no readings/s.
NOT_STORED = ("nginx", "mhd-direct", "mhd-suspend")
LABEL = {"nginx": "nginx `return 204`", "gateway": "iot-ingest", "mqtt": "iot-ingest, MQTT QoS 1",
         "mhd-direct": "libmicrohttpd alone, 204 from the callback",
         "mhd-suspend": "libmicrohttpd alone, 204 after suspend/resume",
         "influxdb": "InfluxDB `/write` (line protocol)",
         "victoriametrics": "VictoriaMetrics `/write` (line protocol)",
         "seed": "the seed's design (FastAPI + SQLite)"}
VARIANT = {"-r1": "1 reading per packet", "-r100": "100 readings per packet (10 devices × 100 sensors)",
           "-batch1": "group commit off (`COMMIT_BATCH_MAX=1`)",
           "-sensorindex": "schema 3's per-sensor index `(sensor_id, ts)` added back",
           "-noindex": "index `sensor_readings(ts, sensor_id)` dropped",
           "-growth": "growth: 100× the fleet (10,000 devices × 10 sensors)"}


def ingest_section(meta, rows, work):
    # The MQTT rows have a table of their own (mqtt_section), next to their HTTP rows.
    std = [r for r in rows if r["variant"] == "standard" and r["name"] not in OWN_TABLE]
    nginx = {r["conns"]: derived(r, meta)["pps"] for r in std
             if r["name"] == "nginx" and "skipped" not in r}
    out = ["| server | database | DB_SYNC | conns | packets/s | readings/s | vs nginx | "
           "p50 ms | p99 ms | non-2xx / socket errors | server CPU µs/packet | "
           "idle RSS MiB | peak RSS MiB |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in std:
        db = "–" if r["backend"] == "-" else r["backend"]
        sync = "–" if r["sync"] == "-" else r["sync"]
        if "skipped" in r:
            out.append(f"| {LABEL[r['name']]} | {db} | {sync} | {r['conns']} | skipped: "
                       f"{r['skipped'][:120]} | | | | | | | | |")
            continue
        d = derived(r, meta)
        ref = nginx.get(r["conns"])
        out.append(
            f"| {LABEL[r['name']]} | {db} | {sync} | {r['conns']} | {fmt(d['pps'])} | "
            f"{fmt(d['rps'])} | {fmt(d['pps'] / ref if ref else None, 3)} | "
            f"{r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} | {r['non2xx']} / {d['errs']} | "
            f"{fmt(d['cpu'], 1)} | {r['idle_kb'] / 1024:.1f} | {r['peak_kb'] / 1024:.1f} |")
    out += ["", "Inside the gateway during the same runs (writer counters from `/metrics`; disk "
            "writes from `/proc/PID/io` `write_bytes`):", "",
            "| database | DB_SYNC | conns | variant | packets/s | gateway CPU µs/packet | "
            "gateway disk KiB written/packet | PostgreSQL server CPU µs/packet | PostgreSQL "
            "disk KiB/packet | commits/s | packets/commit | writer in a transaction |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["name"] not in ("gateway", "mqtt") or "skipped" in r:
            continue
        d = derived(r, meta)
        var = "standard" if r["variant"] == "standard" else VARIANT.get(r["variant"], r["variant"])
        if r["name"] == "mqtt":
            var = "MQTT QoS 1 (`mqtt_load`)"
        out.append(f"| {r['backend']} | {r['sync']} | {r['conns']} | {var} | {fmt(d['pps'])} | "
                   f"{fmt(d['cpu'], 1)} | {fmt(d['disk'], 1)} | {fmt(d['db_cpu'], 1)} | "
                   f"{fmt(d['db_disk'], 1)} | {fmt(d['commits_s'])} | "
                   f"{fmt(d['batch'], 1)} | {fmt(d['busy'])}% |")
    for r in rows:
        if r["variant"] != "standard" and "skipped" in r:
            out.append(f"| {r['backend']} | {r['sync']} | {r['conns']} | "
                       f"{VARIANT.get(r['variant'], r['variant'])} | skipped: {r['skipped'][:80]} "
                       f"| | | | | | | |")
    notes = []
    for r in std:
        if r["name"] == "seed" and "skipped" not in r:
            mix = read(Path(work) / f"mix-seed-{r['conns']}.txt").strip()
            if mix:
                notes.append(f"- the seed's design, stored readings by `class/late`, c={r['conns']} "
                             f"(warm-up included): {mix}")
    for r in rows:
        if r["name"] not in ("gateway", "mqtt") or "skipped" in r:
            continue
        suffix = "" if r["variant"] == "standard" else r["variant"]
        mqtt = "mqtt-" if r["name"] == "mqtt" else ""
        tag = f"{mqtt}{r['backend']}-{r['sync']}-{r['conns']}{suffix}"
        label = (f"{'MQTT ' if mqtt else ''}{r['sync']} c={r['conns']}"
                 f"{(' ' + suffix.lstrip('-')) if suffix else ''}")
        mix = read(Path(work) / f"mix-{tag}.txt").strip()
        if mix:
            notes.append(f"- stored readings by `class/late`, {label} (warm-up included): {mix}")
        warn = read(Path(work) / f"gwwarn-{tag}.txt").strip()
        if warn:
            notes.append(f"- gateway warnings, {label}: `{warn.splitlines()[0][:200]}`")
    return "\n".join(out), notes


def mqtt_section(meta, rows):
    """Issue 17: each MQTT row under the HTTP row of the same backend, DB_SYNC and connections."""
    mq = [r for r in rows if r["name"] == "mqtt"]
    if not mq:
        return "_No MQTT row in this run (`BENCH_MQTT=0`, or not asked for)._\n"
    k = meta.get("mqtt_inflight", "1")
    out = ["`bench/peers/mqtt_load.c` publishes the same bodies (`bench/gen_bodies.sh`, the same "
           "fleet size and packets) at QoS 1 to `devices/{device_uuid}/packets`: N MQTT 3.1.1 "
           "connections from one thread (epoll), each CONNECTed as one device of the fleet "
           "(user name `device_uuid`, password its key; connection i is device i, so N "
           "connections use min(N, devices) devices) and publishing that device's bodies with "
           f"{k} PUBLISH{'es' if k != '1' else ''} in flight, a closed loop like wrk's keep-alive "
           "connections; the same warm-up and duration, on a fresh gateway and database, right "
           "after the HTTP row of the same settings. packets/s counts PUBACKs; latency is "
           "PUBLISH written → PUBACK read (a PUBACK leaves after the commit); errors: "
           "non-success PUBACKs / connection errors (refused CONNECTs, connections the gateway "
           "closed, PUBLISHes unacknowledged after 10 s). \"vs HTTP\" = packets/s ÷ the HTTP "
           "row's. Server CPU as above (the gateway's user+system time ÷ packets).", "",
           "| transport | database | DB_SYNC | conns | packets/s | readings/s | vs HTTP | "
           "p50 ms | p99 ms | errors | server CPU µs/packet | peak RSS MiB |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in mq:
        http = find(rows, "gateway", m["backend"], m["sync"], m["conns"])
        ref = derived(http, meta)["pps"] if http else None
        for r, label in ((http, "HTTP `POST` (wrk)"), (m, "MQTT QoS 1 (`mqtt_load`)")):
            head = f"| {label} | {m['backend']} | {m['sync']} | {m['conns']} |"
            out.append(pair_row(meta, head, r, ref, readings=True)[0])
    return "\n".join(out) + "\n"


def pair_row(meta, head, r, ref, readings):
    """One row of a table that compares a transport with the HTTP row (ref: its packets/s);
    returns (the line, the ratio or None)."""
    cols = 8 if readings else 7
    if r is None:
        return f"{head} not run |" + " |" * (cols - 1), None
    if "skipped" in r:
        return f"{head} skipped: {r['skipped'][:120]} |" + " |" * (cols - 1), None
    d = derived(r, meta)
    ratio = d["pps"] / ref if ref else None
    rps = f" {fmt(d['rps'])} |" if readings else ""
    return (f"{head} {fmt(d['pps'])} |{rps} {fmt(ratio, 3)} | {r['p50_us'] / 1000:.2f} | "
            f"{r['p99_us'] / 1000:.2f} | {r['non2xx']} / {d['errs']} | {fmt(d['cpu'], 1)} | "
            f"{r['peak_kb'] / 1024:.1f} |"), ratio


def tls_section(meta, rows):
    """Issue 19: HTTPS keep-alive and one connection per request, under the HTTP row."""
    tl = [r for r in rows if r["name"] in ("https", "https-close")]
    if not tl:
        return "_No HTTPS row in this run (`BENCH_TLS=0`, or not asked for)._\n"
    out = ["The same gateway, bodies and wrk load with `TLS_CERT_FILE` set (an ECDSA P-256 "
           "certificate made for the run; TLS 1.3 with the gateway's `TLS_PRIORITIES`), on a "
           "fresh gateway and database each, right after the HTTP row of the same settings: "
           "keep-alive connections, then `Connection: close` on every request (wrk opens a new "
           "connection, and a new TLS handshake, for each). \"vs HTTP\" = packets/s ÷ the "
           "HTTP row's. Target (issue 19): keep-alive HTTPS at least 0.8× plain HTTP.", "",
           "| transport | database | DB_SYNC | conns | packets/s | vs HTTP | p50 ms | p99 ms | "
           "non-2xx / socket errors | server CPU µs/packet | peak RSS MiB |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for key in sorted({(r["backend"], r["sync"], r["conns"]) for r in tl}):
        http = find(rows, "gateway", *key)
        ref = derived(http, meta)["pps"] if http else None
        for name, label in (("gateway", "HTTP, keep-alive"), ("https", "HTTPS, keep-alive"),
                            ("https-close", "HTTPS, a new connection per request")):
            r = http if name == "gateway" else next(
                (x for x in tl if x["name"] == name and (x["backend"], x["sync"], x["conns"]) == key),
                None)
            head = f"| {label} | {key[0]} | {key[1]} | {key[2]} |"
            line, ratio = pair_row(meta, head, r, ref, readings=False)
            out.append(line)
            if name == "https" and ratio is not None:
                verdicts.append(f"- {key[0]} c={key[2]}: keep-alive HTTPS at {ratio:.3f}× plain "
                                f"HTTP: **{'met' if ratio >= 0.8 else 'missed'}** (≥ 0.8×).")
    return "\n".join(out + [""] + verdicts) + "\n"


def find(rows, name, backend=None, sync=None, conns=None, variant="standard"):
    """The one measured row that matches, or None (also when it was skipped)."""
    for r in rows:
        if (r["name"] == name and r["variant"] == variant and "skipped" not in r
                and (backend is None or r["backend"] == backend)
                and (sync is None or r["sync"] == sync)
                and (conns is None or r["conns"] == conns)):
            return r
    return None


def readings_section(meta, rows):
    """CPU per reading of the SQLite DB_SYNC=full row at 1, 10 and 100 readings per packet."""
    gw = [r for r in rows if r["name"] == "gateway" and r["backend"] == "sqlite"
          and r["sync"] == "full" and "skipped" not in r
          and (r["variant"] == "standard" or re.fullmatch(r"-r\d+", r["variant"]))]
    if not gw:
        return ""
    c = max(r["conns"] for r in gw)
    gw = sorted((r for r in gw if r["conns"] == c), key=lambda r: r.get("readings", 0))
    if len(gw) < 2:
        return ""
    out = [f"Readings per packet, iot-ingest on SQLite `DB_SYNC=full` at {c} connections (same run; "
           "100 readings: the same 1,000 sensors as 10 devices × 100 sensors):", "",
           "| readings/packet | packets/s | readings/s | server CPU µs/packet | "
           "server CPU µs/reading | p99 ms |", "|---:|---:|---:|---:|---:|---:|"]
    for r in gw:
        d = derived(r, meta)
        n = int(r.get("readings") or meta.get("readings", "10"))
        out.append(f"| {n} | {fmt(d['pps'])} | {fmt(d['rps'])} | {fmt(d['cpu'], 1)} | "
                   f"{fmt(d['cpu'] / n if d['cpu'] is not None else None, 2)} | "
                   f"{r['p99_us'] / 1000:.2f} |")
    return "\n".join(out) + "\n"


def targets_section(meta, rows):
    """Issue 13's targets, each as a ratio or figure of this run, met or missed."""
    conns = [r["conns"] for r in rows if r["name"] == "gateway" and r["variant"] == "standard"]
    if not conns:
        return "_No iot-ingest row in this run: no targets._\n"
    c = 64 if 64 in conns else max(conns)
    sq = find(rows, "gateway", "sqlite", "full", c)
    pg = find(rows, "gateway", "postgresql", "full", c)
    peer = {n: find(rows, n, conns=c) for n in ("nginx", "victoriametrics", "influxdb", "seed")}
    pps = {k: derived(r, meta)["pps"] for k, r in peer.items() if r}
    sqd = derived(sq, meta) if sq else None
    pgd = derived(pg, meta) if pg else None
    out = [f"Issue 13's targets, from the rows of this run at {c} connections "
           f"({'as the targets say' if c == 64 else 'the largest run here; the targets say 64'}). "
           "\"not run\": a row this needs was skipped or not asked for. The peers' rows are in the "
           "table above, with their \"vs nginx\".", "",
           "| target | goal | measured | ratio | verdict |", "|---|---|---|---:|---|"]

    def row(target, goal, measured, ratio, ok, absent="not run"):
        verdict = absent if ok is None else ("**met**" if ok else "**missed**")
        out.append(f"| {target} | {goal} | {measured} | {ratio} | {verdict} |")

    def vs(label, key, factor, strict=False):
        goal = f"{'>' if strict else '≥'} {factor:g}× {label}"
        if not sqd or key not in pps:
            return row(f"SQLite `full` vs {label}", goal, "–", "–", None)
        ratio = sqd["pps"] / pps[key]
        ok = ratio > factor if strict else ratio >= factor
        row(f"SQLite `full` vs {label}", goal,
            f"{fmt(sqd['pps'])} vs {fmt(pps[key])} packets/s", f"{ratio:.3f}×", ok)

    vs("nginx `return 204`", "nginx", 0.25)
    vs("VictoriaMetrics `/write`", "victoriametrics", 1, strict=True)
    vs("InfluxDB `/write`", "influxdb", 1.5)
    vs("the seed's design", "seed", 10)
    if sqd:
        row("SQLite `full` server CPU", "≤ 30 µs/packet", f"{sqd['cpu']:.1f} µs/packet",
            f"{sqd['cpu'] / 30:.2f}× the goal", sqd["cpu"] <= 30)
        p99 = sq["p99_us"] / 1000
        row(f"SQLite `full` p99 at {c} connections", "< 10 ms", f"{p99:.2f} ms",
            f"{p99 / 10:.2f}× the goal", p99 < 10)
    else:
        row("SQLite `full` server CPU", "≤ 30 µs/packet", "–", "–", None)
        row("SQLite `full` p99", "< 10 ms", "–", "–", None)
    if pgd and sqd:
        ratio = pgd["pps"] / sqd["pps"]
        row("PostgreSQL `full` vs SQLite `full`", "≥ 0.5×",
            f"{fmt(pgd['pps'])} vs {fmt(sqd['pps'])} packets/s", f"{ratio:.3f}×", ratio >= 0.5)
    else:
        row("PostgreSQL `full` vs SQLite `full`", "≥ 0.5×", "– (not run)", "–", None)
    if pgd and pgd["db_cpu"] is not None:
        tot = pgd["cpu"] + pgd["db_cpu"]
        row("PostgreSQL `full` gateway + server CPU", "≤ 150 µs/packet",
            f"{pgd['cpu']:.1f} + {pgd['db_cpu']:.1f} = {tot:.1f} µs/packet",
            f"{tot / 150:.2f}× the goal", tot <= 150)
    else:
        why = ("– (PostgreSQL server not local: its CPU was not read)" if pgd
               else "– (not run)")
        row("PostgreSQL `full` gateway + server CPU", "≤ 150 µs/packet", why, "–", None)
    sensors = int(meta.get("sensors", "10"))
    gr = find(rows, "gateway", "sqlite", "full", c, variant="-growth")
    grd = derived(gr, meta) if gr else None
    gn = int(meta.get("growth_devices", "10000")) * sensors
    if grd and sqd:
        ratio = grd["pps"] / sqd["pps"]
        row(f"{fmt(gn)}-sensor fleet vs {fmt(int(meta.get('devices', '100')) * sensors)} sensors",
            "≥ 0.9× the rate", f"{fmt(grd['pps'])} vs {fmt(sqd['pps'])} packets/s",
            f"{ratio:.3f}×", ratio >= 0.9)
    else:
        row("100,000-sensor fleet vs 1,000 sensors", "≥ 0.9× the rate", "– (not run)", "–", None)
    for r, n in ((sq, int(meta.get("devices", "100")) * sensors), (gr, gn)):
        if not r:
            continue
        goal_mib = 16 + 400 * n / 1048576
        peak = r["peak_kb"] / 1024
        row(f"peak RSS, SQLite `full`, {fmt(n)} sensors", f"≤ 16 MiB + 400 B × {fmt(n)} = "
            f"{goal_mib:.1f} MiB", f"{peak:.1f} MiB", f"{peak / goal_mib:.2f}× the goal",
            peak <= goal_mib)
    if not sq:
        row("peak RSS with N sensors", "≤ 16 MiB + 400 B × N", "–", "–", None)
    out.append("")
    rd = readings_section(meta, rows)
    if rd:
        out.append(rd)
    return "\n".join(out)


def step_files(work, step):
    """The kv files of an issue-16 step by backend (sqlite, postgresql)."""
    return {b: kv_file(Path(work) / f"{step}-{b}.txt") for b in ("sqlite", "postgresql")
            if (Path(work) / f"{step}-{b}.txt").exists()}


def num(d, key):
    try:
        return float(d[key])
    except (KeyError, ValueError):
        return None


HIST_TARGET_MS = 200
HIST_TARGET_READINGS = 10_000_000


def history_section(meta, work):
    runs = step_files(work, "history")
    if not runs:
        return "_The history step did not run (`BENCH_HISTORY=0`, or not asked for)._\n"
    out = [f"`bench/history_data.sql` (SQLite) and `bench/history_data_pg.sql` (PostgreSQL, "
           "`generate_series`; the monthly partitions of the range created first) on a fresh "
           f"database: one device, sensor 1 with {fmt(int(meta.get('history_readings', 0)))} "
           f"readings over the {meta.get('history_days')} days before the current hour and "
           "sensors 2–10 with a tenth of that each, interleaved by time; then `iot-ingest job "
           "retention` with `RETENTION_DAYS=0` (every complete hour rolled up, nothing "
           "deleted); then `serve` (`API_KEY` set) and `curl -w %{time_total}` from the same "
           f"machine with `X-API-Key`, each query {meta.get('history_warm')} times unmeasured "
           "(PostgreSQL settles a prepared statement's plan after 5 calls), then "
           f"{meta.get('history_runs')} times measured: the median, and the range.", "",
           "| database | readings | generated in | size | roll-up (job retention) |",
           "|---|---:|---:|---:|---|"]
    for b, d in runs.items():
        if "skipped" in d:
            out.append(f"| {b} | skipped: {d['skipped'][:120]} | | | |")
            continue
        out.append(f"| {b} | {fmt(int(d['readings']))} | {float(d['gen_s']):.1f} s | "
                   f"{int(d['db_bytes']) / 1048576:,.0f} MiB | {float(d['rollup_s']):.1f} s: "
                   f"`{d.get('rollup_summary', '')}` |")
    out += ["", "| query (sensor 1) | " + " | ".join(f"{b} ms (min–max)" for b in runs) + " |",
            "|---|" + "---:|" * len(runs)]
    days = meta.get("history_days")
    raw_days = next((d.get("raw_days") for d in runs.values() if d.get("raw_days")), "?")
    for q, label in (("day", f"`step=1d&agg=avg`, the {days} days"),
                     ("hour", f"`step=1h&agg=avg`, the {days} days"),
                     ("raw", f"raw page, `limit=1000`, from {raw_days} days ago")):
        cells = []
        for d in runs.values():
            ms = num(d, f"q_{q}_ms")
            if ms is None:
                cells.append("–")
                continue
            bad = int(d.get(f"q_{q}_non200", "0"))
            cells.append(f"{ms:.1f} ({float(d[f'q_{q}_min_ms']):.1f}–"
                         f"{float(d[f'q_{q}_max_ms']):.1f}), {fmt(int(d[f'q_{q}_items']))} "
                         f"{'readings' if q == 'raw' else 'points'}"
                         + (f", **{bad} answers not 200**" if bad else ""))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    warns = [f"- gateway warning, {b}: `{d['gw_warning'][:200]}`" for b, d in runs.items()
             if d.get("gw_warning")]
    return "\n".join(out + ([""] + warns if warns else [])) + "\n"


def ret_figures(d):
    """packets/s and p99 ms without and with the job, or None."""
    try:
        f = {}
        for k in ("base", "job"):
            f[k + "_pps"] = int(d[k + "_requests"]) / (int(d[k + "_duration_us"]) / 1e6)
            f[k + "_p99"] = int(d[k + "_p99_us"]) / 1000
            f[k + "_p50"] = int(d[k + "_p50_us"]) / 1000
            f[k + "_bad"] = int(d[k + "_non2xx"]) + sum(
                int(d[k + e]) for e in ("_connect_errors", "_read_errors", "_write_errors",
                                        "_timeouts"))
        return f
    except (KeyError, ValueError, ZeroDivisionError):
        return None


def ret_deleted(d):
    m = re.search(r"readings_deleted=(\d+)", d.get("job_summary", ""))
    return int(m.group(1)) if m else None


def ret_finished(d):
    """The job ended by itself, without error, and no reading older than the cutoff is left."""
    return d.get("job_rc") == "0" and d.get("old_left") == "0" and ret_deleted(d) is not None


def retention_section(meta, work):
    runs = step_files(work, "retention")
    if not runs:
        return "_The retention step did not run (`BENCH_RETENTION=0`, or not asked for)._\n"
    keep = meta.get("retention_keep_days")
    out = [f"A fresh database per backend: the standard fleet (`bench/gen_bodies.sh`), "
           f"{fmt(int(meta.get('retention_readings', 0)))} readings older than {keep} days "
           f"(over the {meta.get('retention_span_days')} days before that) and "
           f"{fmt(int(meta.get('retention_recent', 0)))} newer ones, generated by the history "
           "step's SQL (`bench/history_data*.sql`), every complete hour rolled up beforehand "
           "(`job retention` with `RETENTION_DAYS=0`, as the hourly scheduler would have). Then "
           "`serve` (`DB_SYNC=full`) under the standard load (`wrk`, `bench/packets.lua`, "
           f"{meta.get('warmup')} s warm-up): {meta.get('retention_duration')} s without the "
           f"job, then {meta.get('retention_duration')} s with `iot-ingest job retention` "
           f"(`RETENTION_DAYS={keep}`) started with the load. A job that outlasts the load is "
           "left to finish (up to `BENCH_RETENTION_TIMEOUT` s) and shows \"after the load\": "
           "that whole load then ran under the job. \"finished\": exit 0 and no reading older "
           "than the cutoff left.", "",
           "| database | conns | without the job: packets/s, p50, p99 ms | with the job: "
           "packets/s, p50, p99 ms | p99 ratio | job | readings deleted | finished |",
           "|---|---:|---|---|---:|---:|---:|---|"]
    notes = []
    for b, d in runs.items():
        if "skipped" in d:
            out.append(f"| {b} | | skipped: {d['skipped'][:120]} | | | | | |")
            continue
        f = ret_figures(d)
        if not f:
            out.append(f"| {b} | {d.get('conns')} | wrk failed (see the work directory) "
                       "| | | | | |")
            continue
        errs = "".join(f", **{f[k + '_bad']} errors/non-2xx**" if f[k + "_bad"] else ""
                       for k in ("base",))
        errj = f", **{f['job_bad']} errors/non-2xx**" if f["job_bad"] else ""
        deleted = ret_deleted(d)
        fin = ("yes, within the load" if d.get("job_in_load") == "1" else "yes, after the load") \
            if ret_finished(d) else f"**no** (exit {d.get('job_rc')}, {d.get('old_left')} old left)"
        out.append(f"| {b} | {d['conns']} | {fmt(f['base_pps'])}, {f['base_p50']:.2f}, "
                   f"{f['base_p99']:.2f}{errs} | {fmt(f['job_pps'])}, {f['job_p50']:.2f}, "
                   f"{f['job_p99']:.2f}{errj} | {f['job_p99'] / f['base_p99']:.2f}× | "
                   f"{float(d['job_s']):.1f} s | {fmt(deleted)} of {fmt(int(d['old']))} | {fin} |")
        notes.append(f"- {b}: data generated in {float(d['gen_s']):.1f} s "
                     f"({int(d['db_bytes']) / 1048576:,.0f} MiB), rolled up in "
                     f"{float(d['rollup_s']):.1f} s; the job's summary: "
                     f"`{d.get('job_summary') or d.get('job_error') or '–'}`")
        if d.get("gw_warning"):
            notes.append(f"- gateway warning, {b}: `{d['gw_warning'][:200]}`")
    return "\n".join(out + [""] + notes) + "\n"


def targets16_section(meta, work):
    """Issue 16's two performance targets, each met, missed or not run, per backend."""
    hist, ret = step_files(work, "history"), step_files(work, "retention")
    out = ["Issue 16's targets, from the history and retention steps of this run. A run at "
           "other sizes than the target's (`BENCH_QUICK=1`, `BENCH_HISTORY_READINGS`, "
           "`BENCH_RETENTION_READINGS`) says so in \"measured\": its verdict is for those "
           "sizes.", "", "| target | goal | measured | ratio | verdict |",
           "|---|---|---|---:|---|"]

    def row(target, goal, measured, ratio, ok):
        verdict = "not run" if ok is None else ("**met**" if ok else "**missed**")
        out.append(f"| {target} | {goal} | {measured} | {ratio} | {verdict} |")

    for b in ("sqlite", "postgresql"):
        name = "SQLite" if b == "sqlite" else "PostgreSQL"
        d = hist.get(b, {})
        ms = num(d, "q_day_ms")
        goal = f"< {HIST_TARGET_MS} ms"
        target = f"{name}: a year at `step=1d`, a sensor of 10 million readings"
        if ms is None or int(d.get("q_day_non200", "1")):
            why = d.get("skipped", "not run")
            row(target, goal, f"– ({why})" if why != "not run" else "–", "–", None)
        else:
            n, days = int(d["readings_sensor"]), int(d["days"])
            size = ("" if n >= HIST_TARGET_READINGS and days >= 365 else
                    f" (at {fmt(n)} readings over {days} days, not the target's size)")
            row(target, goal, f"{ms:.1f} ms, median of {meta.get('history_runs')}{size}",
                f"{ms / HIST_TARGET_MS:.3f}× the goal", ms < HIST_TARGET_MS)
    for b in ("sqlite", "postgresql"):
        name = "SQLite" if b == "sqlite" else "PostgreSQL"
        d = ret.get(b, {})
        f = ret_figures(d) if d and "skipped" not in d else None
        target = f"{name}: ingest p99 while `job retention` deletes 10 million readings"
        goal = "≤ 2× the p99 without the job, and the job finishes"
        if not f:
            why = d.get("skipped", "not run")
            row(target, goal, f"– ({why})" if why != "not run" else "–", "–", None)
            continue
        ratio = f["job_p99"] / f["base_p99"]
        deleted = ret_deleted(d) or 0
        size = ("" if deleted >= 10_000_000 else
                f"; {fmt(deleted)} readings deleted, not the target's 10 million")
        fin = ret_finished(d)
        row(target, goal, f"{f['job_p99']:.2f} vs {f['base_p99']:.2f} ms; the job "
            f"{'finished' if fin else 'did not finish'} in {float(d['job_s']):.1f} s"
            f"{' (after the load)' if fin and d.get('job_in_load') != '1' else ''}{size}",
            f"{ratio:.2f}×", ratio <= 2 and fin)
    return "\n".join(out) + "\n"


def thread_cpu(work, clk):
    before = {}
    for line in read(Path(work) / "threads-before.txt").splitlines():
        p = line.split()
        if len(p) == 3:
            before[p[0]] = int(p[2])
    rows = []
    for line in read(Path(work) / "threads-after.txt").splitlines():
        p = line.split()
        if len(p) == 3:
            d = int(p[2]) - before.get(p[0], 0)
            rows.append((p[0], p[1], d / clk))
    rows.sort(key=lambda x: -x[2])
    return rows


def trace_summary(work):
    """Per thread, the syscalls that matter from `perf trace -s`: calls and total ms."""
    text = read(Path(work) / "perf-trace.txt")
    keep = ("fdatasync", "fsync", "pwrite64", "pread64", "futex", "epoll_wait", "sendmsg",
            "recvfrom", "write", "read")
    out, thread = [], None
    for line in text.splitlines():
        m = re.match(r"\s*(\S+) \((\d+)\), (\d+) events", line)
        if m:
            thread = f"{m.group(1)} {m.group(2)}"
            continue
        p = line.split()
        if thread and len(p) >= 4 and p[0] in keep and p[1].isdigit():
            out.append(f"| {thread} | {p[0]} | {p[1]} | {float(p[3]):.0f} |")
    if not out:
        return ""
    return ("Syscalls during 3 s of the same load under `perf trace -s` (which slows the "
            "gateway, so only the proportions matter):\n\n| thread | syscall | calls | "
            "total ms |\n|---|---|---:|---:|\n" + "\n".join(out) + "\n")


def profile_section(meta, work):
    sym = read(Path(work) / "perf-sym.txt").rstrip()
    if not sym:
        return "_No profile in this run (perf missing or BENCH_PROFILE=0)._\n"
    clk = int(meta.get("clk_tck", "100"))
    secs = int(meta.get("profile_secs", "10"))
    out = []
    w = read(Path(work) / "profile-writer.txt").split()
    if len(w) == 7:
        wall = float(w[6])  # the window the counters and thread times cover
        commits = int(w[3]) - int(w[0])
        batch = (int(w[4]) - int(w[1])) / commits if commits else 0
        busy = (float(w[5]) - float(w[2])) / wall * 100
        out.append(f"Gateway with DB_SYNC={meta.get('profile_sync')} under the standard load at "
                   f"the largest connection count, `perf record -F 499 --call-graph dwarf` for "
                   f"{secs} s ({wall:.1f} s between the counter readings, perf's start and "
                   f"stop included): {commits / wall:,.0f} commits/s of {batch:.1f} packets on "
                   f"average ({commits / wall * batch:,.0f} packets/s while profiled); the writer "
                   f"was inside a transaction {busy:.0f}% of the time.\n")
    else:
        wall = float(secs)
    threads = thread_cpu(work, clk)
    if threads:
        out += ["CPU per gateway thread (from /proc/PID/task over the same "
                f"{wall:.1f} s; 100% = one core):\n",
                "| thread id | name | CPU s | share of one core |", "|---|---|---:|---:|"]
        for tid, name, s in threads[:8]:
            out.append(f"| {tid} | {name} | {s:.2f} | {s / wall * 100:.0f}% |")
        out.append("")
    comm = read(Path(work) / "perf-comm.txt").rstrip()
    if comm:
        out += ["Samples by thread name and shared object (self time; the writer and the "
                "broker's delivery thread are both named iot-ingest):\n",
                "```\n" + comm + "\n```\n"]
    ch = read(Path(work) / "perf-children.txt").rstrip()
    if ch:
        out += ["Inclusive time (children) of the program's own functions and of SQLite's "
                "phases, % of all samples:\n", "```\n" + ch + "\n```\n"]
    out += ["Top symbols by self time:\n", "```\n" + sym + "\n```\n"]
    tr = trace_summary(work)
    if tr:
        out.append(tr)
    return "\n".join(out)


def jobs_section(meta, work):
    hf = read(Path(work) / "jobs-hyperfine.json")
    if not hf:
        return "_No jobs benchmark in this run (BENCH_JOBS=0)._\n"
    j = json.loads(hf)["results"][0]
    info = kv_file(Path(work) / "jobs.txt")
    rss = re.search(r"rss_kb=(\d+)", read(Path(work) / "jobs-time.txt"))
    summary = read(Path(work) / "jobs-summary.txt").strip()
    summary2 = read(Path(work) / "jobs-summary2.txt").strip()
    sensors = int(meta.get("job_sensors", "0"))
    out = [
        f"`job baseline` on a fresh SQLite file with {fmt(sensors)} sensors × "
        f"{meta.get('job_readings')} readings ({fmt(int(info.get('rows', '0')))} rows, "
        f"{info.get('db_mb', '?')} MiB; generated with SQL in {float(info.get('gen_s', '0')):.1f} s "
        f"by `bench/jobs_data.sql`). hyperfine, {len(j['times'])} runs, each on a fresh copy:\n",
        "| mean s | σ s | min s | max s | sensors/s | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {j['mean']:.3f} | {j['stddev'] or 0:.3f} | {j['min']:.3f} | {j['max']:.3f} | "
        f"{fmt(sensors / j['mean'])} | "
        f"{int(rss.group(1)) / 1024:.1f} |" if rss else
        f"| {j['mean']:.3f} | {j['stddev'] or 0:.3f} | {j['min']:.3f} | {j['max']:.3f} | "
        f"{fmt(sensors / j['mean'])} | – |",
        "",
        f"The job's own summary: `{summary}`",
        "",
        f"A second run on the same data (no duplicate events while one is active): `{summary2}`",
    ]
    return "\n".join(out) + "\n"


def main():
    work, out_path = sys.argv[1], Path(sys.argv[2])
    meta = kv_file(Path(work) / "meta.env")
    rows = parse_results(Path(work) / "results.tsv")
    old = read(out_path)
    analysis = ""
    if BEGIN in old and END in old:
        analysis = old[old.index(BEGIN):old.index(END) + len(END)]
    else:
        analysis = (f"{BEGIN}\n_No analysis written yet for this run._\n{END}")
    manual = ""
    if MANUAL_BEGIN in old and MANUAL_END in old:
        manual = "\n\n" + old[old.index(MANUAL_BEGIN):old.index(MANUAL_END) + len(MANUAL_END)] + "\n"
    table, notes = ingest_section(meta, rows, work)
    load = (f"Load average at start {meta.get('loadavg_start')}, at end {meta.get('loadavg_end')} "
            "(other work on the machine shows up here).")
    settings = [f"`{k[len('setting_'):]}={v}`" for k, v in meta.items() if k.startswith("setting_")]
    pg = ("PostgreSQL rows use `DATABASE_URL_PG`." if meta.get("pg") == "given" else
          "PostgreSQL rows: a throwaway PostgreSQL 15 cluster that `make bench` started on"
          " loopback (`scripts/pg-cluster.sh`, `fsync` and `synchronous_commit` on)."
          if meta.get("pg") == "own" else
          "PostgreSQL: not run (`BENCH_PG=0`, or no cluster could be started).")
    if meta.get("seed_stack"):
        peers = (f"The peers, each fresh per row on loopback with a temporary data directory, "
                 f"measured like the gateway (CPU and RSS of the server process): InfluxDB "
                 f"{meta.get('influxdb')} and VictoriaMetrics {meta.get('victoriametrics')} "
                 "(Debian packages) get the same readings as InfluxDB line protocol on "
                 "`POST /write`, one packet = one request of one line per reading "
                 "(`readings,device=…,sensor=… value=…`, no timestamp, "
                 "`bench/peers/lineproto.py`); InfluxDB keeps its default "
                 "`wal-fsync-delay = \"0s\"` (an fsync per write), VictoriaMetrics does not "
                 "fsync per request. The seed's design, `bench/peers/seed_app.py` "
                 f"({meta.get('seed_stack')}, one worker, SQLite WAL `synchronous="
                 f"{meta.get('seed_sync', 'full').upper()}`, one commit per packet), gets the nginx "
                 "row's JSON bodies and keys, its database provisioned with that fleet.")
    else:
        peers = "Peers (InfluxDB, VictoriaMetrics, the seed's design): not run (`BENCH_PEERS=0`)."
    doc = f"""# Benchmarks

Generated by `make bench` (`bench/run.sh`, see `bench/README.md` to rerun) on
{meta.get('date')}, commit `{meta.get('commit')}`, {meta.get('binary')}.

Machine: **{meta.get('cores')} cores** ({meta.get('cpu') or 'unknown CPU'}), {meta.get('mem_gb')} GiB RAM,
Linux {meta.get('kernel')}. Tools: wrk {meta.get('wrk')}, nginx {meta.get('nginx')},
SQLite {meta.get('sqlite')} (CLI), hyperfine {meta.get('hyperfine')}. These machines are noisy
(±35% between runs, see `/work/shared/BASELINES.md`): compare rows of the same run,
and prefer server CPU µs/packet, which moves less than packets/s. {load}

## Ingest: the standard workload

- `POST /ingest/packets`, {meta.get('readings')} readings per packet (~{meta.get('body_bytes')} bytes
  of JSON, no timestamps, so the gateway stamps them and replays are never late),
  {meta.get('devices')} devices × {meta.get('sensors')} sensors with warning and critical
  thresholds, {meta.get('bodies')} pre-generated bodies rotated by `bench/packets.lua`, each
  with its device's `X-Device-Key`.
- Rate limits off (`RATE_LIMIT_IP_RPS=0 RATE_LIMIT_DEVICE_RPS=0`), `LOG_LEVEL={meta.get('log_level')}`,
  every other setting at its default{(' except ' + ', '.join(settings)) if settings else ''}.
  A fresh gateway and database for every row.
- `wrk -t{meta.get('wrk_threads')} -cN -d{meta.get('duration')}s`, keep-alive, after a
  {meta.get('warmup')} s warm-up on the same gateway. wrk runs on the same machine and takes
  most of one core, so the ceiling is partly wrk's.
- The reference: nginx {meta.get('nginx')} answering `return 204` to the same POSTs (reads and
  discards the body), `worker_processes auto`, in the same run. "vs nginx" = packets/s ÷
  nginx's packets/s at the same connection count.
- libmicrohttpd alone (`bench/peers/mhd204.c`, the gateway's HTTP library with its daemon
  flags and thread count): the same POSTs answered 204 from the request callback, then
  answered only after each request was suspended and resumed from another thread in
  batches, as the gateway does around a commit. The two rows price the library and its
  suspend/resume hand-off against nginx.
- packets/s counts every answer; readings/s counts readings of 2xx answers. Latency is wrk's
  (p50/p99 over all requests). Server CPU = user+system time of the server process(es)
  during the measured {meta.get('duration')} s ÷ packets. Idle RSS: `VmRSS` before any load;
  peak RSS: `VmHWM` after the run (nginx: master + workers).
- {pg}
- {peers}

{table}

""" + ("\n".join(notes) + "\n" if notes else "") + f"""
### MQTT next to HTTP (issue 17)

{mqtt_section(meta, rows)}
### HTTPS next to HTTP (issue 19)

{tls_section(meta, rows)}
## Targets (issue 13)

{targets_section(meta, rows)}
## Targets (issue 16)

{targets16_section(meta, work)}
## Where the gateway's CPU goes

{profile_section(meta, work)}
## Analysis

{analysis}

## Jobs: baseline predictor

{jobs_section(meta, work)}
## History API (`make bench`)

{history_section(meta, work)}
## Retention under load (`make bench`)

{retention_section(meta, work)}{manual}"""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(doc)


if __name__ == "__main__":
    main()
