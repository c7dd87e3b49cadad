"""Connection pressure: 1000 idle TCP connections plus 50 slow-header clients must
not stop a normal client from being served promptly (SPEC §9)."""

import os
import resource
import socket
import threading
import time

import pytest

from conftest import provision_device

IDLE = 1000
SLOW = 50
SLOW_BODY = 20
# Asserted (generous, against flakiness); IOT_TEST_TIME_SCALE stretches it for
# slow builds (ThreadSanitizer runs everything several times slower).
BOUND_S = 2.0 * float(os.environ.get("IOT_TEST_TIME_SCALE", "1"))
TARGET_S = 0.100    # the goal; printed for the record


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if new < IDLE + SLOW + SLOW_BODY + 200:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} too low")
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_and_slow_clients_do_not_starve_others(many_fds, gateway_factory):
    # All from 127.0.0.1: the per-address cap (test_slow_clients.py) is off here, to
    # measure the event loop alone under that many connections.
    gw, dev = gateway_factory({"HTTP_IDLE_TIMEOUT_S": "60", "HTTP_MAX_CONNECTIONS_PER_IP": "0"},
                              provision=lambda c: provision_device(c, 1), name="conns")
    idle, slow = [], []
    stop = threading.Event()
    try:
        t0 = time.monotonic()
        for _ in range(IDLE):
            idle.append(socket.create_connection(("127.0.0.1", gw.port), timeout=10))
        print(f"opened {IDLE} idle connections in {time.monotonic() - t0:.2f}s")
        for _ in range(SLOW):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            s.sendall(b"POST /ingest/packets HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(s)

        # and some that finished the headers but trickle the body
        for _ in range(SLOW_BODY):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            s.sendall(b"POST /ingest/packets HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nX-Device-Key: " + dev.key.encode()
                      + b"\r\nContent-Length: 100000\r\n\r\n{")
            slow.append(s)

        def trickle():
            while not stop.wait(0.1):
                for s in slow:
                    try:
                        s.send(b" ")
                    except OSError:
                        pass

        th = threading.Thread(target=trickle, daemon=True)
        th.start()
        times = []
        for i in range(5):
            r = gw.get("/health")
            assert r.status == 200, r
            times.append(r.elapsed)
            r = gw.post_packet(dev.packet([(0, float(i))]), key=dev.key)
            assert r.status == 200, r
            times.append(r.elapsed)
        worst = max(times)
        print(f"with {IDLE} idle + {SLOW} slow-header + {SLOW_BODY} slow-body clients: request times "
              f"{', '.join(f'{t * 1000:.1f}ms' for t in times)}; worst {worst * 1000:.1f} ms "
              f"(target {TARGET_S * 1000:.0f} ms, bound {BOUND_S * 1000:.0f} ms)")
        assert worst < BOUND_S
        assert gw.db.reading_count(dev.sensors[0].id) == 5
    finally:
        stop.set()
        for s in idle + slow:
            s.close()
    assert gw.alive(), gw.log_tail()
    r = gw.get("/health")
    assert r.status == 200, r
