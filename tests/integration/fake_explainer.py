"""
A stand-in for the external ai-explainer service (SPEC §6.2), for the job
tests. An http.server on 127.0.0.1, on an ephemeral port, served from a
thread. Standard library only.

    with FakeExplainer(lambda req: (200, b'{"ok":true}', 0)) as fx:
        ... AI_EXPLAINER_URL=fx.url ...
        fx.requests   # every request received: method, path, headers, body, json

The responder gets the recorded request and returns (status, body bytes,
delay seconds). The delay is the only sleep in the tests: it simulates a
slow service. Replies to a client that has given up (timeout) are dropped.
"""

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict  # lower-case name -> value
    body: bytes
    started: float  # time.monotonic() when the request was read
    finished: float = None  # when the answer was written (or abandoned)
    json: object = field(default=None)


def ok(body=b'{"explanation":"ok"}', delay=0.0):
    """A responder that always answers 200 with body."""
    return lambda req: (200, body, delay)


def status(code, body=b'{"detail":"boom"}', delay=0.0):
    return lambda req: (code, body, delay)


class FakeExplainer:
    def __init__(self, responder=None):
        self.responder = responder or ok()
        self.requests = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self._server = None
        self._thread = None

    # -- lifecycle
    def start(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                req = Request(self.command, self.path,
                              {k.lower(): v for k, v in self.headers.items()}, body,
                              time.monotonic())
                try:
                    req.json = json.loads(body) if body else None
                except ValueError:
                    req.json = None
                with outer.lock:
                    outer.requests.append(req)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    code, payload, delay = outer.responder(req)
                    if delay:
                        time.sleep(delay)  # a slow service
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout)
                finally:
                    self.close_connection = True
                    with outer.lock:
                        outer.in_flight -= 1
                        req.finished = time.monotonic()

            do_POST = _handle
            do_GET = _handle
            do_PUT = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True  # a sleeping handler never blocks stop()

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- info
    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self):
        with self.lock:
            return list(self.requests)


def closed_port():
    """A local port that nothing listens on (bound, then closed: connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
