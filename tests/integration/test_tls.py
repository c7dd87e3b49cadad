"""
HTTPS on the gateway itself (SPEC §13) with real clients: curl, `openssl
s_client` and Python's ssl module, against certificates the `openssl` CLI
makes for each run (a CA, the server's pair, device certificates: valid, for
another device, expired, from another CA, without the client purpose).

What is checked: TLS_CERT_FILE/TLS_KEY_FILE make INGEST_PORT speak only
HTTPS, TLS 1.2 and 1.3 with AEAD ciphers only (1.1 and 1.0 refused); device
keys work over it; with TLS_CLIENT_AUTH a device certificate (CN or SAN URI
urn:device:<uuid>) authenticates its device without a key, a certificate for
another device, an expired one, one from another CA or one not for client
authentication is 401 with a detail saying which, and `required` refuses a
key alone; SIGHUP swaps the certificate for new connections without dropping
an open one, and a bad file keeps the pair in use; bad settings are refused
at start.
"""

import http.client
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading

import pytest

from conftest import BIN, Gateway, base_env, provision_device, uid, wait_until

if not shutil.which("openssl"):
    pytest.skip("the openssl CLI is not installed (scripts/deps.sh test)",
                allow_module_level=True)

TIMEOUT_S = 20


def sh(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)


class Pki:
    """A throwaway CA and the certificates a test needs, made by the openssl CLI."""

    def __init__(self, d):
        self.d = d
        self.ca = self._ca("ca", "/CN=iot-ingest test CA")
        self.server_pem, self.server_key = self.issue("server", "/CN=localhost", server=True)

    def path(self, name):
        return str(self.d / name)

    def _key(self, name):
        sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-out", f"{name}.key", cwd=self.d)
        return self.path(f"{name}.key")

    def _ca(self, name, subj):
        self._key(name)
        sh("openssl", "req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem",
           "-days", "30", "-subj", subj, cwd=self.d)
        return name

    def issue(self, name, subj, server=False, ca=None, san=None, purpose="clientAuth",
              expired=False):
        """A certificate for name's own new key, signed by ca (default: the test CA)."""
        ca = ca or self.ca
        self._key(name)
        sh("openssl", "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", subj,
           cwd=self.d)
        ext = ["subjectAltName=DNS:localhost,IP:127.0.0.1", "extendedKeyUsage=serverAuth"] \
            if server else [f"extendedKeyUsage={purpose}"] + ([f"subjectAltName={san}"] if san else [])
        (self.d / f"{name}.ext").write_text("[e]\n" + "\n".join(ext) + "\n")
        if expired:
            # openssl ca is the CLI that sets both dates (x509 -req cannot, in OpenSSL 3.0)
            (self.d / f"{name}.cnf").write_text(
                "[ca]\ndefault_ca = c\n[c]\ndatabase = index.txt\nnew_certs_dir = .\n"
                "serial = serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
                "[p]\ncommonName = supplied\n")
            (self.d / "index.txt").write_text("")
            (self.d / "serial").write_text("01\n")
            sh("openssl", "ca", "-batch", "-config", f"{name}.cnf", "-cert", f"{ca}.pem",
               "-keyfile", f"{ca}.key", "-in", f"{name}.csr", "-out", f"{name}.pem",
               "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
               "-extfile", f"{name}.ext", "-extensions", "e", "-notext", cwd=self.d)
        else:
            sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
               f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "30",
               "-extfile", f"{name}.ext", "-extensions", "e", cwd=self.d)
        return self.path(f"{name}.pem"), self.path(f"{name}.key")


@pytest.fixture(scope="module")
def pki(module_dir):
    d = module_dir / "pki"
    d.mkdir(exist_ok=True)
    return Pki(d)


def tls_env(pki, auth="optional"):
    env = {"TLS_CERT_FILE": pki.server_pem, "TLS_KEY_FILE": pki.server_key}
    if auth != "off":
        env.update(TLS_CLIENT_CA_FILE=pki.path("ca.pem"), TLS_CLIENT_AUTH=auth)
    return env


@pytest.fixture(scope="module")
def tgw(module_db_path, module_dir, cli, pki):
    g = Gateway(module_db_path, module_dir, env=tls_env(pki), name="tls")
    g.start()
    yield g
    assert g.stop() == 0, g.log_tail()


def context(pki, cert=None, version=None):
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    if cert:
        ctx.load_cert_chain(*cert)
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def post(port, ctx, dev, body=None, key=True, conn=None):
    """POSTs a packet over HTTPS; returns (status, json). Reuses conn when given."""
    c = conn or http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=TIMEOUT_S)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["X-Device-Key"] = dev.key
    payload = body or dev.packet([(0, 21.5)])
    c.request("POST", "/ingest/packets", json.dumps(payload), headers)
    r = c.getresponse()
    out = (r.status, json.loads(r.read() or b"{}"))
    if not conn:
        c.close()
    return out


def stored(db, dev):
    return db.scalar("SELECT count(*) FROM sensor_readings r JOIN sensors s ON s.id = r.sensor_id"
                     " WHERE s.device_id = ?", (dev.id,))


def curl(port, pki, *args):
    p = subprocess.run(["curl", "-sS", "--max-time", str(TIMEOUT_S), "--cacert",
                        pki.path("ca.pem"), *args, f"https://127.0.0.1:{port}/ingest/packets"],
                       capture_output=True, text=True, timeout=TIMEOUT_S + 5)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def s_client(port, *args):
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                       input="", capture_output=True, text=True, timeout=TIMEOUT_S)
    return p.returncode, p.stdout + p.stderr


def server_serial(port, pki):
    rc, out = s_client(port, "-CAfile", pki.path("ca.pem"), "-showcerts")
    assert rc == 0, out
    pem = out[out.index("-----BEGIN CERTIFICATE-----"):out.index("-----END CERTIFICATE-----") + 25]
    p = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem, capture_output=True,
                       text=True, check=True)
    return p.stdout.strip()


# ---------------------------------------------------------------- HTTPS itself


def test_device_key_over_https_with_curl_is_stored(tgw, cli, db, pki):
    dev = provision_device(cli, 1)
    out = curl(tgw.port, pki, "-H", "Content-Type: application/json", "-H",
               f"X-Device-Key: {dev.key}", "--data-binary", json.dumps(dev.packet([(0, 1.5)])))
    assert out["accepted"] == 1, out
    assert stored(db, dev) == 1


def test_plain_http_on_the_https_port_gets_no_answer(tgw):
    with socket.create_connection(("127.0.0.1", tgw.port), timeout=TIMEOUT_S) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
    assert not data.startswith(b"HTTP/"), data[:80]


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_tls_below_1_2_is_refused(tgw, flag):
    # SECLEVEL=0 lets this client offer the old protocol: the refusal is the server's
    rc, out = s_client(tgw.port, flag, "-cipher", "DEFAULT@SECLEVEL=0")
    # connected, offered the old protocol, and the server refused it
    assert rc != 0 and "CONNECTED(" in out and "no protocols available" not in out, out


@pytest.mark.parametrize("flag,proto", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_with_aead_ciphers(tgw, pki, flag, proto):
    rc, out = s_client(tgw.port, flag, "-CAfile", pki.path("ca.pem"))
    assert rc == 0 and (f"Protocol  : {proto}" in out or f"New, {proto}" in out), out
    assert "Verify return code: 0 (ok)" in out
    cipher = next(line for line in out.splitlines() if "Cipher is" in line)
    assert any(a in cipher for a in ("GCM", "CHACHA20")), cipher
    assert "Compression: NONE" in out or proto == "TLSv1.3", out


def test_cbc_and_static_rsa_ciphers_are_refused(tgw):
    rc, out = s_client(tgw.port, "-tls1_2", "-cipher", "AES128-SHA:AES256-SHA256:ECDHE-ECDSA-AES128-SHA")
    assert rc != 0, out


# ---------------------------------------------------------------- device certificates


def test_a_device_certificate_authenticates_without_a_key(tgw, cli, db, pki):
    dev = provision_device(cli, 1)
    cert = pki.issue(uid("cn-"), f"/CN={dev.uuid}")
    assert post(tgw.port, context(pki, cert), dev, key=False)[0] == 200
    out = curl(tgw.port, pki, "--cert", cert[0], "--key", cert[1], "-H",
               "Content-Type: application/json", "--data-binary",
               json.dumps(dev.packet([(0, 2.5)])))
    assert out["accepted"] == 1, out
    assert stored(db, dev) == 2


def test_a_san_uri_names_the_device(tgw, cli, pki):
    dev = provision_device(cli, 1)
    cert = pki.issue(uid("san-"), "/CN=not-a-device name", san=f"URI:urn:device:{dev.uuid}")
    assert post(tgw.port, context(pki, cert), dev, key=False)[0] == 200


@pytest.mark.parametrize("kind,detail", [
    ("other_device", "names device"),
    ("expired", "has expired"),
    ("other_ca", "not issued by TLS_CLIENT_CA_FILE"),
    ("server_purpose", "not for client authentication"),
])
def test_a_wrong_certificate_is_401_even_with_the_right_key(tgw, cli, db, pki, kind, detail):
    dev, other = provision_device(cli, 1), provision_device(cli, 1)
    name = uid(kind + "-")
    if kind == "other_device":
        cert = pki.issue(name, f"/CN={other.uuid}")
    elif kind == "expired":
        cert = pki.issue(name, f"/CN={dev.uuid}", expired=True)
    elif kind == "other_ca":
        ca2 = pki._ca(uid("ca2-"), "/CN=another CA")
        cert = pki.issue(name, f"/CN={dev.uuid}", ca=ca2)
    else:
        cert = pki.issue(name, f"/CN={dev.uuid}", purpose="serverAuth")
    status, body = post(tgw.port, context(pki, cert), dev, key=True)
    assert status == 401 and detail in body["detail"], body
    assert stored(db, dev) == 0


def test_required_refuses_a_key_alone_and_takes_a_certificate(module_db_path, module_dir, cli,
                                                              db, pki):
    dev = provision_device(cli, 1)
    g = Gateway(module_db_path, module_dir, name="tls-req",
                env={**tls_env(pki, "required"), "SENSOR_CACHE_TTL_S": "0"})
    g.start()
    try:
        status, body = post(g.port, context(pki), dev, key=True)
        assert status == 401 and "client certificate" in body["detail"], body
        cert = pki.issue(uid("req-"), f"/CN={dev.uuid}")
        assert post(g.port, context(pki, cert), dev, key=False)[0] == 200
        assert stored(db, dev) == 1
        # revocation: disabling the device refuses its certificate (here at once: TTL 0)
        cli.run("device", "disable", dev.uuid)
        status, body = post(g.port, context(pki, cert), dev, key=False)
        assert status == 403 and body["code"] == "device_inactive", body
    finally:
        assert g.stop() == 0, g.log_tail()


# ---------------------------------------------------------------- reload and settings


def test_sighup_swaps_the_certificate_and_keeps_open_connections(module_db_path, module_dir,
                                                                 cli, pki, tmp_path):
    dev = provision_device(cli, 1)
    cert, key = tmp_path / "srv.pem", tmp_path / "srv.key"
    cert.write_text(open(pki.server_pem).read())
    key.write_text(open(pki.server_key).read())
    env = {"TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key)}
    g = Gateway(module_db_path, module_dir, env=env, name="tls-hup")
    g.start()
    try:
        before = server_serial(g.port, pki)
        open_conn = http.client.HTTPSConnection("127.0.0.1", g.port, context=context(pki),
                                                timeout=TIMEOUT_S)
        assert post(g.port, None, dev, conn=open_conn)[0] == 200
        new_pem, new_key = pki.issue(uid("srv2-"), "/CN=localhost", server=True)
        cert.write_text(open(new_pem).read())
        key.write_text(open(new_key).read())
        g.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "event=tls_reloaded" in g.log_text(), TIMEOUT_S, what="tls_reloaded")
        after = server_serial(g.port, pki)
        assert after != before
        assert post(g.port, None, dev, conn=open_conn)[0] == 200  # the old connection goes on
        # a bad file keeps the pair in use, and the log says why
        cert.write_text("not a certificate\n")
        g.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "event=tls_reload_failed" in g.log_text(), TIMEOUT_S,
                   what="tls_reload_failed")
        assert "TLS_CERT_FILE" in g.log_text()
        assert server_serial(g.port, pki) == after
        open_conn.close()
    finally:
        assert g.stop() == 0, g.log_tail()


def test_sighup_under_load_fails_no_request(module_db_path, module_dir, cli, db, pki, tmp_path):
    """Clients posting over new and kept-alive HTTPS connections while the pair is
    rotated five times: every request is answered 200."""
    dev = provision_device(cli, 1)
    cert, key = tmp_path / "srv.pem", tmp_path / "srv.key"
    cert.write_text(open(pki.server_pem).read())
    key.write_text(open(pki.server_key).read())
    g = Gateway(module_db_path, module_dir, name="tls-hup-load",
                env={"TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key),
                     "RATE_LIMIT_IP_RPS": "0", "RATE_LIMIT_DEVICE_RPS": "0"})
    g.start()
    stop, results, lock = threading.Event(), [], threading.Lock()

    def client(keep_alive):
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection("127.0.0.1", g.port, context=context(pki),
                                                       timeout=TIMEOUT_S)
                status = post(g.port, None, dev, conn=conn)[0]
            except Exception as e:  # a failed request is what this test looks for
                status = repr(e)
            with lock:
                results.append(status)
            if not keep_alive:
                conn.close()
                conn = None

    threads = [threading.Thread(target=client, args=(ka,)) for ka in (True, True, False, False)]
    for t in threads:
        t.start()
    try:
        pairs = [pki.issue(uid(f"rot{i}-"), "/CN=localhost", server=True) for i in range(5)]
        for i, (pem, k) in enumerate(pairs):
            wait_until(lambda: len(results) >= 20 * (i + 1), TIMEOUT_S, what="requests flowing")
            cert.write_text(open(pem).read())
            key.write_text(open(k).read())
            g.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: g.log_text().count("event=tls_reloaded") == i + 1, TIMEOUT_S,
                       what=f"reload {i + 1}")
        n = len(results)
        wait_until(lambda: len(results) >= n + 20, TIMEOUT_S, what="requests after the last reload")
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT_S)
        rc = g.stop()
    failed = [r for r in results if r != 200]
    assert not failed, failed[:5]
    assert rc == 0, g.log_tail()
    assert stored(db, dev) == len(results)


@pytest.mark.parametrize("env,msg", [
    ({"TLS_CERT_FILE": "x.pem"}, "set both or neither"),
    ({"TLS_CLIENT_AUTH": "sometimes"}, "TLS_CLIENT_AUTH must be"),
    ({"TLS_CLIENT_AUTH": "required"}, "needs TLS_CLIENT_CA_FILE"),
    ({"TLS_CERT_FILE": "/nonexistent.pem", "TLS_KEY_FILE": "/nonexistent.key"},
     "cannot read TLS_CERT_FILE"),
])
def test_bad_tls_settings_are_refused_at_start(module_db_path, env, msg):
    p = subprocess.run([BIN, "serve"], env=base_env(module_db_path, {"INGEST_PORT": "0", **env}),
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    assert p.returncode != 0 and msg in p.stderr, p.stderr


def test_a_key_that_is_not_the_certificates_is_refused_at_start(module_db_path, pki):
    other_key = pki._key(uid("stray-"))
    env = {"INGEST_PORT": "0", "TLS_CERT_FILE": pki.server_pem, "TLS_KEY_FILE": other_key}
    p = subprocess.run([BIN, "serve"], env=base_env(module_db_path, env), capture_output=True,
                       text=True, timeout=TIMEOUT_S)
    assert p.returncode != 0 and "is not the key of TLS_CERT_FILE" in p.stderr, p.stderr


# ---------------------------------------------------------------- MQTT over TLS (MQTT_TLS_PORT)


def mqtt_tls_port(g):
    line = next(ln for ln in g.log_text().splitlines() if "event=listening" in ln)
    port = int(re.search(r"\bmqtt_tls_port=(\d+)", line).group(1))
    assert port > 0, line
    return port


@pytest.fixture(scope="module")
def mgw(module_db_path, module_dir, cli, pki):
    env = {**tls_env(pki), "MQTT_PORT": "-1", "MQTT_TLS_PORT": "-1"}
    g = Gateway(module_db_path, module_dir, env=env, name="tls-mqtt")
    g.start()
    g.tls_port = mqtt_tls_port(g)
    yield g
    assert g.stop() == 0, g.log_tail()


def mosquitto_pub(port, dev, pki, *args, password=True):
    cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-u", dev.uuid,
           "-t", f"devices/{dev.uuid}/packets", "-m", json.dumps(dev.packet([(0, 3.5)])),
           "--cafile", pki.path("ca.pem"), *args]
    if password:
        cmd += ["-P", dev.key]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)


needs_mosquitto = pytest.mark.skipif(not shutil.which("mosquitto_pub"),
                                     reason="mosquitto-clients is not installed")


@needs_mosquitto
def test_mosquitto_pub_over_tls_with_a_key_is_stored(mgw, cli, db, pki):
    dev = provision_device(cli, 1)
    p = mosquitto_pub(mgw.tls_port, dev, pki)
    assert p.returncode == 0, p.stderr
    assert stored(db, dev) == 1


@needs_mosquitto
def test_mosquitto_pub_with_a_device_certificate_and_no_password(mgw, cli, db, pki):
    dev = provision_device(cli, 1)
    cert = pki.issue(uid("mq-"), f"/CN={dev.uuid}")
    p = mosquitto_pub(mgw.tls_port, dev, pki, "--cert", cert[0], "--key", cert[1],
                      password=False)
    assert p.returncode == 0, p.stderr
    assert stored(db, dev) == 1


@needs_mosquitto
@pytest.mark.parametrize("kind", ["other_device", "other_ca"])
def test_a_wrong_certificate_refuses_the_connect_even_with_the_key(mgw, cli, db, pki, kind):
    dev, other = provision_device(cli, 1), provision_device(cli, 1)
    if kind == "other_device":
        cert = pki.issue(uid("mqo-"), f"/CN={other.uuid}")
    else:
        cert = pki.issue(uid("mqc-"), f"/CN={dev.uuid}", ca=pki._ca(uid("ca3-"), "/CN=CA 3"))
    p = mosquitto_pub(mgw.tls_port, dev, pki, "--cert", cert[0], "--key", cert[1])
    assert p.returncode != 0 and "refused" in (p.stderr + p.stdout).lower(), p.stderr
    assert stored(db, dev) == 0


def test_paho_over_tls_qos1_is_acknowledged_after_commit(mgw, cli, db, pki):
    paho = pytest.importorskip("paho.mqtt.client")
    dev = provision_device(cli, 1)
    c = paho.Client(client_id=uid("tls-"), protocol=paho.MQTTv311)
    c.tls_set(ca_certs=pki.path("ca.pem"))
    c.username_pw_set(dev.uuid, dev.key)
    c.connect("127.0.0.1", mgw.tls_port, keepalive=30)
    c.loop_start()
    try:
        info = c.publish(f"devices/{dev.uuid}/packets", json.dumps(dev.packet([(0, 4.5)])), qos=1)
        info.wait_for_publish(TIMEOUT_S)
        assert info.is_published()
        assert stored(db, dev) == 1  # PUBACK came after the commit
    finally:
        c.disconnect()
        c.loop_stop()


def test_mqtt_tls_refuses_tls_1_1(mgw):
    rc, out = s_client(mgw.tls_port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0 and "CONNECTED(" in out and "no protocols available" not in out, out
    rc, out = s_client(mgw.tls_port, "-tls1_3")
    assert rc == 0 and "TLSv1.3" in out, out


@needs_mosquitto
def test_required_refuses_a_key_alone_on_both_mqtt_ports(module_db_path, module_dir, cli, db,
                                                         pki):
    dev = provision_device(cli, 1)
    env = {**tls_env(pki, "required"), "MQTT_PORT": "-1", "MQTT_TLS_PORT": "-1"}
    g = Gateway(module_db_path, module_dir, env=env, name="tls-mqtt-req")
    g.start()
    try:
        assert mosquitto_pub(mqtt_tls_port(g), dev, pki).returncode != 0
        plain = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(g.mqtt_port), "-q",
                                "1", "-u", dev.uuid, "-P", dev.key, "-t",
                                f"devices/{dev.uuid}/packets", "-m", "{}"],
                               capture_output=True, text=True, timeout=TIMEOUT_S)
        assert plain.returncode != 0
        cert = pki.issue(uid("mqr-"), f"/CN={dev.uuid}")
        p = mosquitto_pub(mqtt_tls_port(g), dev, pki, "--cert", cert[0], "--key", cert[1],
                          password=False)
        assert p.returncode == 0, p.stderr
        assert stored(db, dev) == 1
    finally:
        assert g.stop() == 0, g.log_tail()


def test_sighup_keeps_an_open_mqtt_tls_connection_and_new_ones_get_the_new_pair(
        module_db_path, module_dir, cli, db, pki, tmp_path):
    paho = pytest.importorskip("paho.mqtt.client")
    dev = provision_device(cli, 1)
    cert, key = tmp_path / "srv.pem", tmp_path / "srv.key"
    cert.write_text(open(pki.server_pem).read())
    key.write_text(open(pki.server_key).read())
    g = Gateway(module_db_path, module_dir, name="tls-mqtt-hup",
                env={"TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key), "MQTT_TLS_PORT": "-1"})
    g.start()
    port = mqtt_tls_port(g)
    c = paho.Client(client_id=uid("hup-"), protocol=paho.MQTTv311)
    c.tls_set(ca_certs=pki.path("ca.pem"))
    c.username_pw_set(dev.uuid, dev.key)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    try:
        def publish(v):
            info = c.publish(f"devices/{dev.uuid}/packets", json.dumps(dev.packet([(0, v)])), qos=1)
            info.wait_for_publish(TIMEOUT_S)
            assert info.is_published()

        publish(1.0)
        before = server_serial(port, pki)
        new_pem, new_key = pki.issue(uid("msrv-"), "/CN=localhost", server=True)
        cert.write_text(open(new_pem).read())
        key.write_text(open(new_key).read())
        g.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "event=tls_reloaded" in g.log_text(), TIMEOUT_S, what="tls_reloaded")
        assert server_serial(port, pki) != before  # a new connection gets the new pair
        publish(2.0)  # the open one goes on
        assert stored(db, dev) == 2
    finally:
        c.disconnect()
        c.loop_stop()
        assert g.stop() == 0, g.log_tail()
