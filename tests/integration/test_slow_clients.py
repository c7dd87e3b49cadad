"""Slow clients cannot hold the server (SPEC §5, issue 14): trickled headers and
bodies are closed at HTTP_HEADER_TIMEOUT_S / HTTP_BODY_MIN_RATE however slowly
their bytes arrive, one address holds at most HTTP_MAX_CONNECTIONS_PER_IP
connections, and meanwhile another address is answered at once. Deadlines are
scaled down (HTTP_HEADER_TIMEOUT_S=2) to keep the file fast; the trickle pacing
is the only sleeping, everything else polls against a deadline."""

import http.client
import json
import os
import resource
import select
import socket
import threading
import time

import pytest

from conftest import dumps, provision_device, wait_until

ATTACKER = "127.0.0.1"
HONEST = "127.0.0.2"
TRICKLERS = 2000
HEADER_TIMEOUT_S = 2
CLOSE_SLACK_S = 3.0     # past its deadline, a trickler must be closed within this
# Every honest request, while the tricklers hold their connections; IOT_TEST_TIME_SCALE
# stretches it for slow builds (make tsan sets 5), as test_connections.py's bound.
ANSWER_BOUND_S = 0.200 * float(os.environ.get("IOT_TEST_TIME_SCALE", "1"))
TRICKLE_HEAD = b"POST /ingest/packets HTTP/1.1\r\nHost: x\r\nX-Slow: "


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = TRICKLERS + 512
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} too low")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(gw, source, timeout=10):
    return socket.create_connection(("127.0.0.1", gw.port), timeout=timeout,
                                    source_address=(source, 0))


def timed_request(gw, source, method, path, body=None, headers=None):
    """One request on a fresh connection from source; (status, parsed body, seconds)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10, source_address=(source, 0))
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, data, time.monotonic() - t0
    finally:
        c.close()


def post_packet_from(gw, source, dev, value):
    body = dumps(dev.packet([(0, value)]))
    return timed_request(gw, source, "POST", "/ingest/packets", body,
                         {"Content-Type": "application/json", "X-Device-Key": dev.key})


def server_closed(sock):
    """
    Non-blocking: None while the connection is open, else what the server
    sent before closing (b"" for a bare close or a reset).
    """
    got = b""
    timeout = sock.gettimeout()
    sock.settimeout(0)  # a socket with a timeout would wait for data despite MSG_DONTWAIT
    try:
        while True:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                return got or None  # an answer counts: the close follows it
            except (ConnectionResetError, BrokenPipeError):
                return got
            if not chunk:
                return got
            got += chunk
    finally:
        sock.settimeout(timeout)


def assert_408(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), raw[:200]
    doc = json.loads(body)
    assert doc["code"] == "request_timeout" and doc["detail"], doc


def test_tricklers_are_closed_while_another_address_is_served(many_fds, gateway_factory):
    # Per-address cap off: here the deadlines alone must cope with 2,000 tricklers.
    # DB_SYNC=normal: the 200 ms bound is about being served among the tricklers,
    # not about this machine's fsync latency, which the bound must not depend on.
    gw, dev = gateway_factory({"HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
                               "HTTP_MAX_CONNECTIONS_PER_IP": "0", "DB_SYNC": "normal",
                               "HTTP_IDLE_TIMEOUT_S": "60"},
                              provision=lambda c: provision_device(c, 1), name="trickle")
    socks, opened, closed, answers = [], [], {}, []
    stop = threading.Event()
    try:
        t0 = time.monotonic()
        for _ in range(TRICKLERS):
            s = connect(gw, ATTACKER)
            s.sendall(TRICKLE_HEAD)
            socks.append(s)
            opened.append(time.monotonic())
        print(f"opened {TRICKLERS} tricklers in {time.monotonic() - t0:.2f}s")

        def trickle():  # one header byte every 0.5 s on every open trickler
            while not stop.wait(0.5):
                for i, s in enumerate(socks):
                    if i not in closed:
                        try:
                            s.send(b"a")
                        except OSError:
                            pass

        th = threading.Thread(target=trickle, daemon=True)
        th.start()
        poller = select.poll()
        fd_index = {s.fileno(): i for i, s in enumerate(socks)}
        for s in socks:
            poller.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
        deadline = opened[-1] + HEADER_TIMEOUT_S + CLOSE_SLACK_S
        seq = 0
        while len(closed) < TRICKLERS and time.monotonic() < deadline:
            for fd, _ in poller.poll(50):
                i = fd_index[fd]
                got = server_closed(socks[i])
                if got is not None:
                    closed[i] = (time.monotonic(), got)
                    poller.unregister(fd)
            if len(closed) < TRICKLERS * 0.9:  # while most tricklers still hold their slot
                status, body, secs = post_packet_from(gw, HONEST, dev, float(seq))
                assert status == 200, body
                answers.append(secs)
                seq += 1
        stop.set()
        th.join(5)
        late = [i for i in range(TRICKLERS) if i not in closed]
        assert not late, f"{len(late)} tricklers still open {CLOSE_SLACK_S}s past their deadline"
        worst_close = max(closed[i][0] - opened[i] for i in range(TRICKLERS))
        with_408 = [got for _, got in closed.values() if got]
        print(f"{len(answers)} honest packets while tricklers held: worst "
              f"{max(answers) * 1000:.1f} ms (median {sorted(answers)[len(answers) // 2] * 1000:.1f} ms); tricklers closed at most {worst_close:.2f}s after "
              f"their first byte (deadline {HEADER_TIMEOUT_S}s); {len(with_408)} read a 408")
        assert answers, "no honest request was made while the tricklers held their connections"
        assert max(answers) < ANSWER_BOUND_S, sorted(answers)
        assert worst_close <= HEADER_TIMEOUT_S + CLOSE_SLACK_S
        assert min(closed[i][0] - opened[i] for i in range(TRICKLERS)) >= HEADER_TIMEOUT_S - 0.1
        assert with_408, "no trickler received the 408"
        for got in with_408[:20]:
            assert_408(got)
        assert gw.db.reading_count(dev.sensors[0].id) == seq
    finally:
        stop.set()
        for s in socks:
            s.close()
    assert gw.alive(), gw.log_tail()
    assert "event=slow_clients" in gw.log_text() or "slow_clients" in gw.log_text()


def hold(gw, source, n):
    """n keep-alive connections from source, each proven accepted by one answered request."""
    held = []
    for _ in range(n):
        s = connect(gw, source)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        r = http.client.HTTPResponse(s, method="GET")
        r.begin()
        r.read()
        assert r.status == 200
        held.append(s)
    return held


def refused(gw, source):
    """True if a new connection from source is closed without an answer."""
    s = connect(gw, source)
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        try:
            return s.recv(1024) == b""
        except ConnectionResetError:
            return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        s.close()


@pytest.mark.parametrize("env,cap", [
    ({"HTTP_MAX_CONNECTIONS_PER_IP": "10"}, 10),
    # The default cap (256) over HTTP_MAX_CONNECTIONS=40 is lowered to half of it.
    ({"HTTP_MAX_CONNECTIONS": "40"}, 20),
], ids=["set", "lowered"])
def test_per_address_cap(gateway_factory, env, cap):
    gw, _ = gateway_factory(env, name="cap")
    held = []
    try:
        held = hold(gw, ATTACKER, cap)
        assert refused(gw, ATTACKER), f"connection {cap + 1} from one address was accepted"
        status, _, secs = timed_request(gw, HONEST, "GET", "/health")
        assert status == 200 and secs < ANSWER_BOUND_S, (status, secs)
        more = hold(gw, HONEST, 3)  # another address is not counted against the first
        held += more
        held.pop(0).close()  # a slot given back is taken again
        wait_until(lambda: not refused(gw, ATTACKER), 5, what="the freed slot")
    finally:
        for s in held:
            s.close()
    if env.get("HTTP_MAX_CONNECTIONS"):
        assert "HTTP_MAX_CONNECTIONS_PER_IP=256 lowered to 20" in gw.log_text()


def send_paced(sock, data, rate, piece=256):
    """Sends data at about rate bytes/s (pieces of `piece` bytes); stops if the server closed."""
    t0 = time.monotonic()
    for off in range(0, len(data), piece):
        wait = t0 + off / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # the pacing itself
        try:
            sock.sendall(data[off:off + piece])
        except (BrokenPipeError, ConnectionResetError):
            return False
    return True


def test_slow_honest_body_succeeds_and_slower_gets_408(gateway_factory):
    # Scaled from the defaults (a 200 KiB packet at 2 KiB/s, HTTP_BODY_MIN_RATE=500, 20 s of
    # grace): the same rate ratio, a 2 s grace, a body that takes 10 s.
    gw, dev = gateway_factory({"HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
                               "HTTP_BODY_MIN_RATE": "500"},
                              provision=lambda c: provision_device(c, 1), name="body")
    pkt = dev.packet([(0, 1.5)])
    pkt["pad"] = ""
    size = 20 * 1024
    pkt["pad"] = "x" * (size - len(dumps(pkt)))
    body = dumps(pkt)
    assert len(body) == size
    result = {}

    def honest():
        s = connect(gw, HONEST, timeout=30)
        try:
            s.sendall(b"POST /ingest/packets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nX-Device-Key: " + dev.key.encode()
                      + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
            t0 = time.monotonic()
            send_paced(s, body, 2048)
            r = http.client.HTTPResponse(s, method="POST")
            r.begin()
            result["honest"] = (r.status, r.read(), time.monotonic() - t0)
        finally:
            s.close()

    th = threading.Thread(target=honest)
    th.start()
    s = connect(gw, ATTACKER)
    try:
        s.sendall(b"POST /ingest/packets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                  b"\r\nX-Device-Key: " + dev.key.encode() + b"\r\nContent-Length: 10000\r\n\r\n")
        t0 = time.monotonic()
        sent = 0
        got = None
        while got is None and time.monotonic() < t0 + HEADER_TIMEOUT_S + CLOSE_SLACK_S + 1:
            try:
                s.send(b" " * 10)  # 100 bytes/s, under HTTP_BODY_MIN_RATE
                sent += 10
            except (BrokenPipeError, ConnectionResetError):
                got = b""
                break
            select.select([s], [], [], 0.1)
            got = server_closed(s)
        elapsed = time.monotonic() - t0
        assert got is not None, f"a {sent}-byte trickle was still open after {elapsed:.1f}s"
        print(f"too slow body: closed after {elapsed:.2f}s ({sent} bytes), answer {got[:12]!r}")
        assert HEADER_TIMEOUT_S - 0.1 <= elapsed <= HEADER_TIMEOUT_S + CLOSE_SLACK_S
        if got:
            assert_408(got)
    finally:
        s.close()
    th.join(30)
    status, answer, secs = result["honest"]
    print(f"honest {size}-byte body at 2 KiB/s: HTTP {status} after {secs:.2f}s")
    assert status == 200, answer
    assert json.loads(answer)["accepted"] == 1
    assert gw.db.reading_count(dev.sensors[0].id) == 1
