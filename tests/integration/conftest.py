"""
Integration-test harness for iot-ingest.

Everything here talks to the real binary (IOT_INGEST_BIN, default
build/iot-ingest) through its CLI and through real HTTP, against a real SQLite
file in a temporary directory. Standard library only.

Pieces:
- Cli:      runs `iot-ingest <subcommand>` against one database.
- Db:       reads the SQLite file with the sqlite3 module (the gateway runs WAL,
            so reading while it runs is fine).
- Gateway:  starts `iot-ingest serve` on INGEST_PORT=0, learns the port from the
            `event=listening ... port=N` log line (and `mqtt_port=N` with MQTT_PORT set), offers HTTP helpers with raw
            header control, stops with SIGTERM.
- fixtures: module-scoped database + gateway (`gw`), a per-test device factory
            (`make_device`), a factory for gateways with special settings
            (`gateway_factory`), a module-wide device for hostile input (`hdev`).
- /metrics: Exposition (a validating parser of the Prometheus text format),
            scrape, metric_value (one exported line read by regex), metric_delta.
- raw HTTP: raw_exchange (raw bytes in, a Response or None for a close out).
- MQTT:     MqttDevice (a paho-mqtt client connected as one device, recording
            each PUBACK's time and every disconnect); paho is imported on use.
"""

import atexit
import gzip
import hashlib
import http.client
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN_SOURCE = os.environ.get("IOT_INGEST_BIN") or str(ROOT / "build" / "iot-ingest")


def _snapshot_binary(src):
    """
    Runs the suite on a private copy of the binary, so that a `make` during the
    run (the binary relinked under us) cannot mix two builds in one run.
    IOT_TEST_NO_SNAPSHOT=1 uses the binary in place.
    """
    if os.environ.get("IOT_TEST_NO_SNAPSHOT") or not os.path.isfile(src):
        return src
    d = tempfile.mkdtemp(prefix="iot-ingest-bin-")
    atexit.register(shutil.rmtree, d, True)
    dst = os.path.join(d, "iot-ingest")
    shutil.copy2(src, dst)
    return dst


BIN = _snapshot_binary(BIN_SOURCE)

API_KEY = "itest-global-api-key-7f3a9c2e41d8"
START_TIMEOUT_S = float(os.environ.get("IOT_TEST_START_TIMEOUT_S", "20"))
HTTP_TIMEOUT_S = 30.0

# Settings that must not leak from the developer's shell into the binary.
_STATIC_SETTING_VARS = {
    "DATABASE_URL", "API_KEY", "INGEST_HOST", "INGEST_PORT", "MAX_BODY_BYTES",
    "MAX_READINGS_PER_PACKET", "MAX_FUTURE_SKEW_S", "MAX_PAST_AGE_S", "RATE_LIMIT_IP_RPS",
    "RATE_LIMIT_DEVICE_RPS", "RATE_LIMIT_BURST", "RATE_LIMIT_MAX_BUCKETS", "TRUSTED_PROXIES",
    "SENSOR_CACHE_TTL_S", "SENSOR_CACHE_MAX", "STATE_CACHE_MAX", "ALERT_CLEAR_AFTER",
    "BROKER_URL", "BROKER_THROTTLE_MS", "BROKER_QUEUE_MAX", "HTTP_THREADS",
    "HTTP_MAX_CONNECTIONS", "HTTP_IDLE_TIMEOUT_S", "WRITE_QUEUE_MAX", "COMMIT_BATCH_MAX",
    "DB_SYNC", "DB_BUSY_TIMEOUT_MS", "SQLITE_CACHE_MB", "LOG_LEVEL", "LOG_FORMAT", "MQTT_PORT",
}


def _binary_setting_vars():
    """Every setting the binary knows, read from its generated `help settings`."""
    try:
        out = subprocess.run([BIN, "help", "settings"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return set(re.findall(r"^\s+--[a-z0-9-]+\s+([A-Z][A-Z0-9_]+)\s", out, re.M))


SETTING_VARS = _STATIC_SETTING_VARS | _binary_setting_vars()

# Defaults for every gateway the tests start: rate limits off (the suite sends
# many requests from 127.0.0.1), ephemeral port, loopback only.
GATEWAY_DEFAULT_ENV = {
    "INGEST_HOST": "127.0.0.1",
    "INGEST_PORT": "0",
    "API_KEY": API_KEY,
    "RATE_LIMIT_IP_RPS": "0",
    "RATE_LIMIT_DEVICE_RPS": "0",
    "LOG_LEVEL": "info",
}

RFC3339_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# --------------------------------------------------------------------------- helpers


def now_ms():
    return int(time.time() * 1000)


def uid(prefix=""):
    """A unique id for this test run (uuid4 text, optionally prefixed)."""
    return f"{prefix}{uuid.uuid4()}"


def iso_ms(ms, offset_minutes=0):
    """RFC 3339 text for UTC ms, rendered in the given UTC offset."""
    local = ms + offset_minutes * 60_000
    secs, frac = divmod(local, 1000)
    t = time.gmtime(secs)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{frac:03d}"
    if offset_minutes == 0:
        return base + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    h, m = divmod(abs(offset_minutes), 60)
    return f"{base}{sign}{h:02d}:{m:02d}"


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Polls pred() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")
        time.sleep(interval)


# ------------------------------------------------------------------ backends
#
# The suite runs against SQLite (the default) or, with IOT_TEST_BACKEND=postgresql
# and IOT_TEST_PG_URL (an admin URL of a throwaway cluster, see
# scripts/run-integration.sh), against PostgreSQL: every "database path" is then
# a fresh PostgreSQL database's URL, and Db reads it through views that show
# timestamptz columns as epoch milliseconds, so the same SQL and assertions work.

BACKEND = os.environ.get("IOT_TEST_BACKEND", "sqlite")
PG_ADMIN_URL = os.environ.get("IOT_TEST_PG_URL", "")


def is_pg(target):
    return str(target).startswith(("postgresql://", "postgres://"))


def db_url(target):
    return str(target) if is_pg(target) else f"sqlite:{target}"


def as_target(target):
    return str(target) if is_pg(target) else Path(target)


_pg_seq = [0]


def new_db(path):
    """A fresh, empty database: the SQLite file `path`, or a new PostgreSQL database."""
    if BACKEND != "postgresql":
        return Path(path)
    import psycopg2
    _pg_seq[0] += 1
    name = f"itest_{os.getpid()}_{_pg_seq[0]}"
    c = psycopg2.connect(PG_ADMIN_URL)
    c.autocommit = True
    try:
        c.cursor().execute(f'CREATE DATABASE "{name}"')
    finally:
        c.close()
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def sqlite_only(reason="reads or locks the SQLite file directly"):
    if BACKEND != "sqlite":
        pytest.skip(f"SQLite only: {reason}")


def base_env(db_path, extra=None):
    env = {k: v for k, v in os.environ.items() if k not in SETTING_VARS}
    env["DATABASE_URL"] = db_url(db_path)
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
    return env


def require_binary():
    if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
        pytest.fail(f"iot-ingest binary not found or not executable at {BIN_SOURCE} "
                    f"(build it with `make`, or set IOT_INGEST_BIN)", pytrace=False)


# --------------------------------------------------------------------------- CLI


class Cli:
    """Runs the provisioning CLI against one SQLite database."""

    def __init__(self, db_path, env=None):
        self.db_path = as_target(db_path)
        self.env = dict(env or {})

    def run(self, *args, env=None, timeout=60):
        e = base_env(self.db_path, {**self.env, **(env or {})})
        return subprocess.run([BIN, *map(str, args)], env=e, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def json(self, *args, env=None):
        """Runs a provisioning command that must succeed and print one JSON line."""
        p = self.run(*args, env=env)
        assert p.returncode == 0, (f"`iot-ingest {' '.join(map(str, args))}` exited "
                                   f"{p.returncode}; stderr={p.stderr!r}")
        lines = p.stdout.strip().splitlines()
        assert len(lines) == 1, f"expected one JSON line on stdout, got {p.stdout!r}"
        return json.loads(lines[0])

    def init(self):
        p = self.run("db", "init")
        assert p.returncode == 0, f"db init failed: {p.stderr!r}"


# --------------------------------------------------------------------------- DB


class Db:
    """Read-mostly access to the database (a new connection per call)."""

    def __init__(self, path):
        self.path = str(path)
        self.pg = is_pg(self.path)

    def _conn(self):
        if self.pg:
            return _PgConn(self.path)
        c = sqlite3.connect(self.path, timeout=15, isolation_level=None)
        return c

    def query(self, sql, args=()):
        c = self._conn()
        try:
            return c.execute(sql, args).fetchall()
        finally:
            c.close()

    def scalar(self, sql, args=()):
        rows = self.query(sql, args)
        return rows[0][0] if rows else None

    def _table_names(self, c):
        if self.pg:
            return [r[0] for r in c.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema='public' "
                "AND table_type='BASE TABLE' ORDER BY table_name").fetchall()]
        return [r[0] for r in c.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name").fetchall()]

    def tables(self):
        c = self._conn()
        try:
            return self._table_names(c)
        finally:
            c.close()

    def counts(self):
        """Row count of every table: the 'nothing changed' snapshot."""
        c = self._conn()
        try:
            names = self._table_names(c)
            return {n: c.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
        finally:
            c.close()

    def readings(self, sensor_id):
        if self.pg:
            rows = self.query("SELECT value, ts, ingested_at, class, late FROM sensor_readings "
                              "WHERE sensor_id=? ORDER BY ts, id", (sensor_id,))
            return [(*r, "integer", "integer") for r in rows]
        return self.query(
            "SELECT value, ts, ingested_at, class, late, typeof(ts), typeof(ingested_at) "
            "FROM sensor_readings WHERE sensor_id=? ORDER BY ts, id", (sensor_id,))

    def reading_count(self, sensor_id):
        return self.scalar("SELECT count(*) FROM sensor_readings WHERE sensor_id=?", (sensor_id,))


class _PgConn:
    """
    A psycopg2 connection that looks like sqlite3 to the tests: `?` placeholders,
    conn.execute(...).fetchall(), and timestamptz columns read as epoch ms
    through views in a schema first on the search_path.
    """

    def __init__(self, url):
        import psycopg2
        self.c = psycopg2.connect(url)
        self.c.autocommit = True
        cur = self.c.cursor()
        cur.execute("SELECT to_regnamespace('itest_ms') IS NOT NULL")
        if not cur.fetchone()[0]:
            self._make_views(cur)
        cur.execute("SET search_path = itest_ms, public")

    @staticmethod
    def _make_views(cur):
        cur.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema='public' ORDER BY table_name, ordinal_position")
        tables = {}
        for t, col, typ in cur.fetchall():
            expr = (f'(extract(epoch from "{col}") * 1000)::bigint AS "{col}"'
                    if typ.startswith("timestamp") else f'"{col}"')
            tables.setdefault(t, []).append(expr)
        if not tables:
            return  # schema not created yet: read the tables themselves
        cur.execute("CREATE SCHEMA IF NOT EXISTS itest_ms")
        for t, cols in tables.items():
            cur.execute(f'CREATE OR REPLACE VIEW itest_ms."{t}" AS SELECT {", ".join(cols)} '
                        f'FROM public."{t}"')

    def execute(self, sql, args=()):
        cur = self.c.cursor()
        cur.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(args))
        return cur

    def close(self):
        self.c.close()


# --------------------------------------------------------------------------- HTTP


class Response:
    def __init__(self, status, reason, headers, body, elapsed):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> value
        self.body = body
        self.elapsed = elapsed

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"body is not JSON ({e}): {self.body[:300]!r}") from None

    @property
    def code(self):
        try:
            return json.loads(self.body).get("code")
        except (ValueError, AttributeError):
            return None

    def __repr__(self):
        return f"<Response {self.status} {self.body[:400]!r}>"


class NoResponse(AssertionError):
    pass


def read_response(sock, method="GET", started=None):
    started = started if started is not None else time.monotonic()
    resp = http.client.HTTPResponse(sock, method=method)
    try:
        resp.begin()
        body = resp.read()
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError) as e:
        raise NoResponse(f"connection closed without an HTTP response ({e!r})") from None
    headers = {k.lower(): v for k, v in resp.getheaders()}
    return Response(resp.status, resp.reason, headers, body, time.monotonic() - started)


def send_and_read(port, head, body_pieces=(), method="GET", timeout=HTTP_TIMEOUT_S):
    """
    Sends head (bytes) then body pieces, stopping early if the server already
    answered (a 413 before the body is read), and returns the Response.
    """
    started = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(head)
            poller = select.poll()  # not select(): fds may exceed FD_SETSIZE
            poller.register(s, select.POLLIN)
            for piece in body_pieces:
                if poller.poll(0):
                    break
                s.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_response(s, method, started)
    finally:
        s.close()


def split(data, size=65536):
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


def raw_exchange(port, data, timeout=15, cut_short_is_close=False):
    """
    Sends raw bytes; returns the Response, or None if the server closed without
    one. A reset or a response cut short raises, unless cut_short_is_close
    (then it counts as a close too).
    """
    try:
        return send_and_read(port, data, (), "POST", timeout)
    except (NoResponse, http.client.BadStatusLine, http.client.LineTooLong):
        return None
    except (ConnectionResetError, BrokenPipeError, http.client.IncompleteRead):
        if cut_short_is_close:
            return None
        raise


class Gateway:
    """One `iot-ingest serve` process."""

    _seq = 0

    def __init__(self, db_path, workdir, env=None, name="gw"):
        self.db_path = as_target(db_path)
        self.workdir = Path(workdir)
        self.env = {**GATEWAY_DEFAULT_ENV, **(env or {})}
        self.name = name
        self.proc = None
        self.port = None
        self.mqtt_port = None  # the MQTT listener's port (MQTT_PORT set), else None
        self.log_path = None
        self.db = Db(db_path)

    # -- lifecycle
    def start(self, timeout=START_TIMEOUT_S, extra_args=()):
        Gateway._seq += 1
        self.log_path = self.workdir / f"{self.name}-{Gateway._seq}.log"
        logf = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen([BIN, "serve", *extra_args],
                                         env=base_env(self.db_path, self.env),
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        pat = re.compile(rb"event=listening\b.*?\bport=(\d+)")
        while True:
            m = None
            for line in self.log_path.read_bytes().splitlines():
                if b"event=listening" in line:
                    m = pat.search(line) or re.search(rb"\bport=(\d+)", line)
                    if m:
                        break
            if m:
                self.port = int(m.group(1))
                assert self.port > 0, f"gateway reported port {self.port}"
                mq = re.search(rb"\bmqtt_port=(\d+)", line)
                self.mqtt_port = int(mq.group(1)) if mq and int(mq.group(1)) > 0 else None
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode} before "
                                     f"listening; log:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"gateway did not log event=listening within {timeout}s; "
                                     f"log:\n{self.log_text()}")
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signals the gateway and returns its exit code (kills it on timeout)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"gateway did not exit within {timeout}s of signal {sig}; "
                                     f"log tail:\n{self.log_tail()}")
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    # -- HTTP
    def request(self, method, path, body=b"", headers=(), content_length="auto",
                content_type="application/json", chunked=False, timeout=HTTP_TIMEOUT_S,
                close=True):
        """
        Builds the request by hand. headers: list of (name, value). content_type
        None omits the header. content_length "auto" sends len(body), None omits
        it, anything else is sent verbatim. chunked sends the body as 64 KiB chunks.
        """
        if isinstance(body, str):
            body = body.encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        if close:
            lines.append("Connection: close")
        if content_type is not None and method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Type: {content_type}")
        hdrs = list(headers)
        if chunked:
            lines.append("Transfer-Encoding: chunked")
            pieces = [b"%x\r\n%s\r\n" % (len(p), p) for p in split(body) if p] + [b"0\r\n\r\n"]
        else:
            if content_length == "auto":
                if body or method in ("POST", "PUT", "PATCH"):
                    lines.append(f"Content-Length: {len(body)}")
            elif content_length is not None:
                lines.append(f"Content-Length: {content_length}")
            pieces = split(body) if body else []
        for k, v in hdrs:
            lines.append(f"{k}: {v}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return send_and_read(self.port, head, pieces, method, timeout)

    def get(self, path, headers=(), **kw):
        return self.request("GET", path, headers=headers, **kw)

    def post(self, path, obj=None, raw=None, headers=(), **kw):
        body = raw if raw is not None else dumps(obj)
        return self.request("POST", path, body=body, headers=headers, **kw)

    def post_packet(self, obj=None, key=None, api_key=None, raw=None, headers=(), **kw):
        h = list(headers)
        if key is not None:
            h.append(("X-Device-Key", key))
        if api_key is not None:
            h.append(("X-API-Key", api_key))
        return self.post("/ingest/packets", obj, raw=raw, headers=h, **kw)

    def status(self, device_uuid, key=None, api_key=None):
        h = []
        if key is not None:
            h.append(("X-Device-Key", key))
        if api_key is not None:
            h.append(("X-API-Key", api_key))
        return self.get(f"/ingest/devices/{device_uuid}/status", headers=h)


# --------------------------------------------------------------------------- /metrics

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
METRIC_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
METRIC_LINE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?P<labels>\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*,?)?\})?'
    r' (?P<value>[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|NaN|[-+]?Inf))'
    r'(?: -?\d+)?$')
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')


class Exposition:
    """
    A Prometheus text exposition (format 0.0.4), validated while parsed: HELP
    names a valid metric, TYPE has 4 fields, a known type and no repeat, every
    other non-comment line is a well-formed sample.
    """

    def __init__(self, text):
        self.text = text
        self.types = {}      # family -> counter|gauge|histogram|summary|untyped
        self.helps = {}      # family -> help text
        self.samples = []    # (sample name, {label: value}, float value)
        for n, line in enumerate(text.split("\n"), 1):
            if not line:
                continue
            if line.startswith("# HELP "):
                parts = line.split(" ", 3)
                assert len(parts) >= 3 and METRIC_NAME.fullmatch(parts[2]), (
                    f"line {n}: bad HELP line {line!r}")
                self.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            elif line.startswith("# TYPE "):
                parts = line.split(" ")
                assert len(parts) == 4, f"line {n}: bad TYPE line {line!r}"
                assert parts[3] in METRIC_TYPES, f"line {n}: unknown type in {line!r}"
                assert parts[2] not in self.types, f"line {n}: duplicate TYPE for {parts[2]}"
                self.types[parts[2]] = parts[3]
            elif line.startswith("#"):
                continue
            else:
                m = METRIC_LINE.match(line)
                assert m, f"line {n}: not a valid sample line: {line!r}"
                labels = dict(LABEL_PAIR.findall(m.group("labels") or ""))
                self.samples.append((m.group("name"), labels, float(m.group("value"))))

    def family_of(self, sample_name):
        """The family a sample belongs to (histogram samples end in _bucket/_sum/_count)."""
        if sample_name in self.types:
            return sample_name
        for suffix in ("_bucket", "_sum", "_count"):
            base = sample_name[: -len(suffix)]
            if sample_name.endswith(suffix) and self.types.get(base) in ("histogram", "summary"):
                if suffix == "_bucket" and self.types[base] != "histogram":
                    continue
                return base
        return None

    def sample_names(self):
        """Every series name a PromQL query can select, whether or not it has samples yet."""
        names = set()
        for fam, typ in self.types.items():
            if typ == "histogram":
                names |= {fam + "_bucket", fam + "_sum", fam + "_count"}
            elif typ == "summary":
                names |= {fam, fam + "_sum", fam + "_count"}
            else:
                names.add(fam)
        return names

    def values(self, name, **labels):
        return [v for n, lb, v in self.samples
                if n == name and all(lb.get(k) == str(x) for k, x in labels.items())]

    def value(self, name, **labels):
        vs = self.values(name, **labels)
        assert len(vs) == 1, f"expected one sample {name}{labels}, found {vs}"
        return vs[0]

    def label_values(self, name, label):
        return {lb[label] for n, lb, _ in self.samples if n == name and label in lb}


def scrape(gw):
    """GET /metrics: 200, text/plain version 0.0.4; returns the text."""
    r = gw.get("/metrics")
    assert r.status == 200, r
    ctype = r.headers.get("content-type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    return r.body.decode()


def metric_value(text, name, labels=""):
    """
    The value of the line `name{labels} value` (labels exactly as exported, in
    their order; none: `name value`), or None when there is no such line.
    """
    series = f"{name}{{{labels}}}" if labels else name
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def metric_delta(before, after, name, labels=""):
    """How much the series name{labels} rose between two scrapes (absent counts as 0)."""
    return (metric_value(after, name, labels) or 0) - (metric_value(before, name, labels) or 0)


# --------------------------------------------------------------------------- fleet


@dataclass
class Sensor:
    uuid: str
    id: int
    name: str


@dataclass
class Device:
    uuid: str
    id: int
    key: str
    sensors: list = field(default_factory=list)

    def packet(self, readings, **extra):
        """readings: list of (sensor_index_or_uuid, value[, ts]) or dicts."""
        out = []
        for r in readings:
            if isinstance(r, dict):
                out.append(r)
                continue
            s = r[0]
            item = {"sensor_uuid": self.sensors[s].uuid if isinstance(s, int) else s,
                    "value": r[1]}
            if len(r) > 2:
                item["ts"] = r[2]
            out.append(item)
        return {"device_uuid": self.uuid, "readings": out, **extra}


def provision_device(cli, n_sensors=2, key=None, name="itest device"):
    d_uuid = uid("dev-")
    args = ["device", "add", "--uuid", d_uuid, "--name", name]
    if key is not None:
        args += ["--key", key]
    out = cli.json(*args)
    assert out["device_uuid"] == d_uuid
    dev = Device(uuid=d_uuid, id=out["device_id"], key=out["device_key"])
    for i in range(n_sensors):
        s_uuid = uid("sen-")
        so = cli.json("sensor", "add", "--device", d_uuid, "--uuid", s_uuid, "--name",
                      f"sensor {i}", "--type", "temperature", "--unit", "C")
        assert so["sensor_uuid"] == s_uuid
        dev.sensors.append(Sensor(uuid=s_uuid, id=so["sensor_id"], name=f"sensor {i}"))
    return dev


# --------------------------------------------------------------------------- MQTT


class MqttDevice:
    """
    A device connected over MQTT 3.1.1 with paho-mqtt (Debian's
    python3-paho-mqtt), its network loop in paho's thread. publish() returns the
    message id; acked maps the id of each QoS 1 message to the time.monotonic()
    of its PUBACK (QoS 0: of its sending), order lists the ids in that order;
    disconnects lists every loss of the connection (paho would reconnect and
    resend behind the test's back). 3.1.1 because the gateway can refuse a PUBLISH there only by
    closing: a refusal or an internal error shows up in disconnects.
    """

    def __init__(self, port, dev, inflight=64, timeout=20):
        import paho.mqtt.client as paho
        self.lock = threading.Lock()
        self.acked, self.order, self.disconnects = {}, [], []
        self.connack = []
        self.c = paho.Client(client_id=uid("paho-"), clean_session=True,
                             protocol=paho.MQTTv311)
        self.c.username_pw_set(dev.uuid, dev.key)
        self.c.max_inflight_messages_set(inflight)
        self.c.on_connect = lambda _c, _u, _f, rc: self.connack.append(rc)
        self.c.on_publish = self._on_publish
        self.c.on_disconnect = lambda _c, _u, rc: self.disconnects.append(rc)
        self.c.connect("127.0.0.1", port, keepalive=60)
        self.c.loop_start()
        try:
            wait_until(lambda: self.connack, timeout, what="CONNACK")
        except AssertionError:
            self.close()
            raise
        assert self.connack == [0], f"CONNACK refused: {self.connack}"

    def _on_publish(self, _c, _u, mid):
        t = time.monotonic()
        with self.lock:
            self.acked[mid] = t
            self.order.append(mid)

    def publish(self, topic, payload, qos=1):
        info = self.c.publish(topic, payload, qos=qos)
        assert info.rc == 0, f"paho could not send: rc={info.rc}"
        return info.mid

    def nacked(self):
        with self.lock:
            return len(self.acked)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def sha256_hex(s):
    return hashlib.sha256(s.encode()).hexdigest()


def random_key():
    return secrets.token_hex(16)


def assert_error(resp, status, code=None, detail_contains=None):
    assert resp.status == status, f"expected HTTP {status}, got {resp!r}"
    body = resp.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("detail"), str) and body["detail"], f"no detail in {body}"
    if code is not None:
        if isinstance(code, (tuple, list, set)):
            assert body.get("code") in code, f"expected code in {code}, got {body}"
        else:
            assert body.get("code") == code, f"expected code {code!r}, got {body}"
    if detail_contains is not None:
        assert detail_contains in body["detail"], (
            f"detail should name {detail_contains!r}: {body['detail']!r}")
    return body


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    require_binary()


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory, request):
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def module_db_path(module_dir):
    return new_db(module_dir / "itest.db")


@pytest.fixture(scope="module")
def cli(module_db_path):
    require_binary()
    c = Cli(module_db_path)
    c.init()
    return c


@pytest.fixture(scope="module")
def db(module_db_path, cli):
    return Db(module_db_path)


@pytest.fixture(scope="module")
def _module_gateway(module_db_path, module_dir, cli, request):
    env = getattr(request.module, "GATEWAY_ENV", {})
    g = Gateway(module_db_path, module_dir, env=env, name="module-gw")
    g.start()
    yield g
    g.stop()


@pytest.fixture
def gw(_module_gateway):
    """The module's gateway; restarted if an earlier test killed it, checked after."""
    g = _module_gateway
    if not g.alive():
        g.start()
    yield g
    if not g.alive():
        rc = g.proc.returncode
        pytest.fail(f"gateway died during this test (exit {rc}); log tail:\n{g.log_tail()}",
                    pytrace=False)


@pytest.fixture
def make_device(cli):
    def make(n_sensors=2, key=None):
        return provision_device(cli, n_sensors=n_sensors, key=key)
    return make


@pytest.fixture(scope="module")
def hdev(cli):
    """A device with two sensors, shared by a module's hostile-input tests."""
    return provision_device(cli, 2)


@pytest.fixture
def gateway_factory(tmp_path):
    """Starts gateways with special settings, each on its own fresh database."""
    started = []

    def make(env=None, provision=None, name="gw"):
        dbp = new_db(tmp_path / f"{name}-{len(started)}.db")
        c = Cli(dbp)
        c.init()
        ctx = provision(c) if provision else None
        g = Gateway(dbp, tmp_path, env=env, name=name)
        g.cli = c
        started.append(g)
        g.start()
        return g, ctx

    yield make
    for g in started:
        try:
            g.stop()
        except AssertionError:
            g.kill()


def post_unstamped_concurrently(gateways, dev, sensor, value, threads=4, per_thread=40):
    """
    `threads` clients (spread over `gateways`) each post `per_thread` packets of
    one reading without any timestamp, so every reading is stamped by the
    server. Returns the statuses; a 503 is retried like a device would.
    """
    statuses, lock = [], threading.Lock()

    def worker(n):
        g = gateways[n % len(gateways)]
        for _ in range(per_thread):
            for _ in range(50):
                r = g.post_packet(dev.packet([(sensor, value)]), key=dev.key)
                if r.status != 503:
                    break
                time.sleep(0.02)
            with lock:
                statuses.append(r.status)

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return statuses
