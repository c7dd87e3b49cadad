"""
Debian's nginx terminating TLS in front of the gateway (issue 19, SPEC §13):
the sample configuration packaging/nginx-tls.conf, which docs/operations.md
("Behind a TLS-terminating proxy") shows verbatim, run as it is in front of a
gateway with TRUSTED_PROXIES=127.0.0.1/32, with clients that speak HTTPS
only to nginx (curl --cacert, Python's ssl module, openssl s_client).

The sample is changed only where a test has to (SAMPLE_EDITS): its port 443
becomes a free loopback port, the two certificate paths under /etc/ssl/ a
throwaway server certificate (made with the openssl CLI, issued by a
throwaway CA), and the upstream 127.0.0.1:8000 the test gateway. Each of
those strings must occur exactly once in the sample, so an edit of the sample
that the test cannot follow fails here instead of testing something else.
nginx runs as an unprivileged child (`-p DIR -c CONF -e stderr`, `daemon
off;`) inside the http block of Debian's /etc/nginx/nginx.conf with its paths
moved to a temporary directory (wrapper_conf).

Distinct client addresses come from one machine by binding the client socket
to 127.0.0.x (curl --interface, source_address): nginx appends that peer to
X-Forwarded-For, and the gateway, whose peer is nginx at 127.0.0.1, keys its
limits and logs on it. Each test takes its own addresses (client_addr), so
the per-address budgets of the module's gateway never meet.

Skipped, saying why, when nginx or openssl is absent (`make test` installs
both: scripts/deps.sh test).
"""

import http.client
import itertools
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess

import pytest

from conftest import (ROOT, START_TIMEOUT_S, dumps, metric_value, raw_exchange, uid,
                      wait_until)

SAMPLE = ROOT / "packaging" / "nginx-tls.conf"
OPERATIONS = ROOT / "docs" / "operations.md"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl")
SERVER_NAME = "iot.example.com"    # the sample's server_name; the test certificate's name
MAX_BODY_BYTES = 1048576           # the gateway's default, the sample's client_max_body_size 1m
BURST = 3
TIMEOUT_S = 20

# The gateway's per-IP budget: RATE_LIMIT_BURST requests, then (at 0.01/s) none
# for the rest of the run. The device limit is off (the suite's default).
GATEWAY_ENV = {"TRUSTED_PROXIES": "127.0.0.1/32", "LOG_REQUESTS": "all",
               "RATE_LIMIT_IP_RPS": "0.01", "RATE_LIMIT_BURST": str(BURST)}

_client_seq = itertools.count(10)


def client_addr():
    """A loopback address no other test of this module uses (127.0.0.10, .11, …)."""
    n = next(_client_seq)
    assert n < 255
    return f"127.0.0.{n}"


def sample_edits(port, cert, key, upstream_port):
    """(text of the sample, what the test runs instead): the only changes made."""
    return [("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
            ("/etc/ssl/certs/iot-ingest.pem", str(cert)),
            ("/etc/ssl/private/iot-ingest.key", str(key)),
            ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")]


def wrapper_conf(d, site):
    """
    Debian's /etc/nginx/nginx.conf (nginx 1.22, bookworm) with its paths in d,
    its http block kept (including its ssl_protocols TLSv1 TLSv1.1, which the
    sample's own must override), the sample included where conf.d/ would be.
    """
    # as root, workers would run as nobody and could not write the body
    # buffers under d (pytest's directories are 0700)
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    mime = "include /etc/nginx/mime.types;" if os.path.isfile("/etc/nginx/mime.types") else ""
    return f"""daemon off;
{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 256; }}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    {mime}
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log {d}/access.log;
    gzip on;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {site};
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docs_sample():
    """The ```nginx block of docs/operations.md's "Behind a TLS-terminating proxy"."""
    text = OPERATIONS.read_text()
    m = re.search(r"^### Behind a TLS-terminating proxy\n(.*?)(?=^#{2,3} |\Z)", text, re.S | re.M)
    assert m, "docs/operations.md has no section 'Behind a TLS-terminating proxy'"
    blocks = re.findall(r"^```nginx\n(.*?)^```$", m.group(1), re.S | re.M)
    assert len(blocks) == 1, f"expected one ```nginx block in that section, found {len(blocks)}"
    return blocks[0]


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def pki(module_dir):
    """A throwaway CA and a server certificate for SERVER_NAME and 127.0.0.1 (P-256)."""
    if not OPENSSL:
        pytest.skip("openssl is not installed (scripts/deps.sh test)")
    d = module_dir / "pki"
    d.mkdir()
    common = ["-new", "-nodes", "-days", "2", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-256"]
    for args in (["-keyout", d / "ca.key", "-out", d / "ca.pem", "-subj", "/CN=itest TLS proxy CA",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                 ["-keyout", d / "server.key", "-out", d / "server.pem",
                  "-subj", f"/CN={SERVER_NAME}", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
                  "-addext", "basicConstraints=critical,CA:FALSE",
                  "-addext", "extendedKeyUsage=serverAuth",
                  "-addext", f"subjectAltName=DNS:{SERVER_NAME},IP:127.0.0.1"]):
        p = subprocess.run([OPENSSL, "req", "-x509", *common, *map(str, args)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"openssl req failed: {p.stderr}"
    return d


class Nginx:
    """nginx running the sample in front of one gateway."""

    def __init__(self, d, pki, upstream_port):
        self.d, self.pki, self.upstream_port = d, pki, upstream_port
        self.proc = self.port = None

    def start(self, tries=5):
        sample = SAMPLE.read_text()
        for _ in range(tries):
            self.port = free_port()
            site = sample
            for old, new in sample_edits(self.port, self.pki / "server.pem",
                                         self.pki / "server.key", self.upstream_port):
                assert sample.count(old) == 1, f"{SAMPLE.name} should hold {old!r} once"
                site = site.replace(old, new)
            (self.d / "iot-ingest.conf").write_text(site)
            (self.d / "nginx.conf").write_text(wrapper_conf(self.d, self.d / "iot-ingest.conf"))
            with open(self.d / "stderr.log", "wb") as err:
                self.proc = subprocess.Popen(
                    [NGINX, "-p", str(self.d), "-c", str(self.d / "nginx.conf"), "-e", "stderr"],
                    stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            if self._wait_ready():
                return self
            if "Address already in use" not in self.stderr():   # another process took the port
                break
        raise AssertionError(f"nginx did not start; stderr:\n{self.stderr()}")

    def _wait_ready(self):
        """True once GET /health through nginx is 200; False if nginx exited."""
        def ready():
            if self.proc.poll() is not None:
                return "exited"
            try:
                return https_request(self, "GET", "/health", timeout=2).status == 200
            except (OSError, http.client.HTTPException):
                return False
        return wait_until(ready, START_TIMEOUT_S, what="nginx to proxy /health") is True

    def stderr(self):
        return (self.d / "stderr.log").read_text(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()   # nginx: fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def proxy(gw, pki, tmp_path):
    """nginx with the sample in front of the module's gateway, stopped after the test."""
    if not (os.path.isfile(NGINX) and os.access(NGINX, os.X_OK)):
        pytest.skip("nginx is not installed (scripts/deps.sh test)")
    n = Nginx(tmp_path, pki, gw.port)
    try:
        yield n.start()
    finally:
        n.stop()


def tls_context(pki, version=None):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if version is not None:
        # below TLS 1.2 OpenSSL 3 needs security level 0 to offer it at all
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def https_request(nginx, method, path, body=None, headers=None, source=None, timeout=TIMEOUT_S,
                  conn=None):
    """One request over HTTPS to nginx (on conn if given: keep-alive); returns the response
    with .body read."""
    c = conn or https_conn(nginx, source, timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        r.body = r.read()
        return r
    finally:
        if conn is None:
            c.close()


def https_conn(nginx, source=None, timeout=TIMEOUT_S):
    """A keep-alive HTTPS connection to nginx from source (127.0.0.x), checking the
    certificate against the test CA and 127.0.0.1."""
    return http.client.HTTPSConnection("127.0.0.1", nginx.port, timeout=timeout,
                                       context=tls_context(nginx.pki),
                                       source_address=(source, 0) if source else None)


def packet_headers(dev, **extra):
    return {"Content-Type": "application/json", "X-Device-Key": dev.key, **extra}


def curl(nginx, source, *args):
    """curl over HTTPS to https://SERVER_NAME:port/…, verified with the test CA; returns
    (status, headers text, body text)."""
    p = subprocess.run(
        ["curl", "-sS", "--max-time", str(TIMEOUT_S), "--cacert", str(nginx.pki / "ca.pem"),
         "--resolve", f"{SERVER_NAME}:{nginx.port}:127.0.0.1", "--interface", source,
         "-D", "-", "-w", "\n%{http_code}", *args],
        capture_output=True, text=True, timeout=TIMEOUT_S + 10)
    assert p.returncode == 0, f"curl exited {p.returncode}: {p.stderr}"
    head, _, rest = p.stdout.partition("\n\n")    # text=True: \r\n read as \n
    body, _, status = rest.rpartition("\n")
    return int(status), head, body


def access_line(gw, request_id):
    """The gateway's access-log line of request_id, once written."""
    def find():
        for line in gw.log_text().splitlines():
            if "event=request" in line and f"request_id={request_id} " in line:
                return line
        return None
    return wait_until(find, TIMEOUT_S, what=f"access line of {request_id}")


# ------------------------------------------------------------------ tests


def test_docs_show_the_sample_this_file_runs():
    assert docs_sample() == SAMPLE.read_text(), (
        "the ```nginx block of docs/operations.md differs from packaging/nginx-tls.conf")
    text = SAMPLE.read_text()
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert f"client_max_body_size {MAX_BODY_BYTES // 1048576}m;" in text


def test_packet_over_https_is_stored_and_logged_with_the_client_address(proxy, gw, db,
                                                                        make_device):
    dev = make_device(1)
    me = client_addr()
    for forged in (None, "203.0.113.9"):     # a client's own X-Forwarded-For names nobody
        rid = uid("tls-")
        hdrs = ["-H", f"X-Device-Key: {dev.key}", "-H", "Content-Type: application/json",
                "-H", f"X-Request-Id: {rid}"]
        if forged:
            hdrs += ["-H", f"X-Forwarded-For: {forged}"]
        status, head, body = curl(proxy, me, *hdrs, "--data-binary",
                                  dumps(dev.packet([(0, 21.5)])).decode(),
                                  f"https://{SERVER_NAME}:{proxy.port}/ingest/packets")
        assert status == 200, body
        assert '"accepted":1' in body, body
        assert re.search(rf"^x-request-id: {rid}$", head, re.I | re.M), head
        line = access_line(gw, rid)
        assert f" ip={me} " in line + " ", line
        assert "status=200" in line and f"device={dev.uuid}" in line, line
        if forged:
            assert forged not in line, line
    assert db.reading_count(dev.sensors[0].id) == 2


def test_per_ip_rate_limit_keys_on_the_forwarded_client(proxy, gw, make_device):
    dev = make_device(1)
    noisy, quiet = client_addr(), client_addr()
    pkt = dumps(dev.packet([(0, 1.0)]))
    c = https_conn(proxy, noisy)      # one keep-alive connection, like a device
    try:
        statuses = [https_request(proxy, "POST", "/ingest/packets", pkt, packet_headers(dev),
                                  conn=c).status for _ in range(BURST)]
        assert statuses == [200] * BURST, statuses
        r = https_request(proxy, "POST", "/ingest/packets", pkt, packet_headers(dev), conn=c)
        assert r.status == 429 and b'"rate_limited_ip"' in r.body, (r.status, r.body)
        assert r.getheader("Retry-After"), r.getheaders()
    finally:
        c.close()
    # a new connection, and an X-Forwarded-For of its own, do not make a new client
    r = https_request(proxy, "POST", "/ingest/packets", pkt,
                      packet_headers(dev, **{"X-Forwarded-For": "198.51.100.7"}), source=noisy)
    assert r.status == 429, (r.status, r.body)
    # another address behind the same nginx has its own budget
    for _ in range(BURST):
        r = https_request(proxy, "POST", "/ingest/packets", pkt, packet_headers(dev),
                          source=quiet)
        assert r.status == 200, (r.status, r.body)
    logged = re.findall(r"event=request .*route=/ingest/packets status=(\d+).* ip=(\S+)",
                        gw.log_text())
    assert ("429", noisy) in logged and ("200", quiet) in logged
    assert not [ip for _, ip in logged if ip == "127.0.0.1"], "nginx's address was the client"


def test_body_limit_is_the_gateways(proxy, gw, db, make_device):
    """client_max_body_size 1m: a body of MAX_BODY_BYTES reaches the gateway, one more byte
    is refused by nginx (413, its own page, nothing forwarded)."""
    dev = make_device(1)
    base = dumps(dev.packet([(0, 7.0)]))
    body = base[:-1] + b" " * (MAX_BODY_BYTES - len(base)) + b"}"
    assert len(body) == MAX_BODY_BYTES
    r = https_request(proxy, "POST", "/ingest/packets", body, packet_headers(dev),
                      source=client_addr())
    assert r.status == 200, (r.status, r.body[:300])
    rid = uid("big-")
    r = https_request(proxy, "POST", "/ingest/packets", body + b" ",
                      packet_headers(dev, **{"X-Request-Id": rid}), source=client_addr())
    assert r.status == 413, (r.status, r.body[:300])
    assert b"nginx" in r.body, r.body[:300]
    assert db.reading_count(dev.sensors[0].id) == 1
    assert f"request_id={rid}" not in gw.log_text()


def test_plain_http_to_the_tls_port_is_refused(proxy, gw, db, make_device):
    dev = make_device(1)
    body = dumps(dev.packet([(0, 3.0)]))
    rid = uid("plain-")
    raw = (f"POST /ingest/packets HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n"
           f"Content-Type: application/json\r\nX-Device-Key: {dev.key}\r\n"
           f"X-Request-Id: {rid}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    r = raw_exchange(proxy.port, raw)
    assert r is not None and r.status == 400, r
    assert b"plain HTTP request was sent to HTTPS port" in r.body, r
    assert db.reading_count(dev.sensors[0].id) == 0
    assert f"request_id={rid}" not in gw.log_text()


@pytest.mark.parametrize("version", ["tls1_1", "tls1_2", "tls1_3"])
def test_openssl_s_client_protocol_versions(proxy, version):
    """TLS 1.1 is refused for its version (alert 70, protocol_version: the sample's
    ssl_protocols; without that line Debian's http block lets the hello through and
    it fails later, on the cipher list, with alert 40). 1.2 and 1.3 complete with a
    verified chain."""
    p = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{proxy.port}", f"-{version}",
         "-cipher", "DEFAULT:@SECLEVEL=0", "-servername", SERVER_NAME,
         "-CAfile", str(proxy.pki / "ca.pem"), "-verify_return_error"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT_S)
    out = p.stdout + p.stderr
    if version == "tls1_1":
        assert p.returncode != 0, out
        assert "alert protocol version" in out, out
    else:
        assert p.returncode == 0, out
        want = {"tls1_2": "TLSv1.2", "tls1_3": "TLSv1.3"}[version]
        assert re.search(rf"^New, {want}, Cipher is ", out, re.M), out
        assert "Verify return code: 0 (ok)" in out, out


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_python_ssl_below_tls_1_2_is_refused(proxy):
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT_S) as s:
            with pytest.raises(ssl.SSLError) as e:
                tls_context(proxy.pki, version).wrap_socket(s, server_hostname=SERVER_NAME)
        assert e.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", (version, e.value)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT_S) as s:
        with tls_context(proxy.pki, ssl.TLSVersion.TLSv1_2).wrap_socket(
                s, server_hostname=SERVER_NAME) as t:
            assert t.version() == "TLSv1.2"


def test_metrics_only_from_allowed_addresses(proxy):
    r = https_request(proxy, "GET", "/metrics", source=client_addr())
    assert r.status == 403, (r.status, r.body[:200])
    r = https_request(proxy, "GET", "/metrics", source="127.0.0.1")
    assert r.status == 200, (r.status, r.body[:200])
    assert metric_value(r.body.decode(), "iot_ingest_open_connections") is not None, r.body[:200]
    assert https_request(proxy, "GET", "/health", source=client_addr()).status == 200
