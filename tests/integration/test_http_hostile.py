"""Hostile and malformed input: bad JSON, wrong shapes, huge and deep documents,
invalid UTF-8, body limits (413), media types (415), broken HTTP. After each,
the stored data must be unchanged and the gateway alive (SPEC §5, §9)."""

import gzip
import http.client
import json
import socket
import time

import pytest

from conftest import API_KEY, assert_error, dumps, now_ms, raw_exchange, read_response, split

MAX_BODY = 1048576  # default MAX_BODY_BYTES


def valid(dev, **extra):
    return {"device_uuid": dev.uuid,
            "readings": [{"sensor_uuid": dev.sensors[0].uuid, "value": 1.0}], **extra}


def valid_text(dev):
    return dumps(valid(dev)).decode()


def reading_text(dev):
    return '{"sensor_uuid":"%s","value":1.0}' % dev.sensors[0].uuid


INVALID_JSON = "invalid_json"
INVALID_REQUEST = "invalid_request"
EITHER = (INVALID_JSON, INVALID_REQUEST)

# name -> (builder(dev) -> bytes, expected codes, field named in detail or None)
CASES = {
    "empty_body": (lambda d: b"", INVALID_JSON, None),
    "whitespace_body": (lambda d: b"  \r\n\t ", INVALID_JSON, None),
    "truncated": (lambda d: valid_text(d)[:-7].encode(), INVALID_JSON, None),
    "truncated_in_string": (lambda d: ('{"device_uuid":"%s' % d.uuid).encode(), INVALID_JSON,
                            None),
    "trailing_garbage": (lambda d: (valid_text(d) + " xyz").encode(), INVALID_JSON, None),
    "two_documents": (lambda d: (valid_text(d) + valid_text(d)).encode(), INVALID_JSON, None),
    "nan_literal": (lambda d: ('{"device_uuid":"%s","readings":[{"sensor_uuid":"%s",'
                               '"value":NaN}]}' % (d.uuid, d.sensors[0].uuid)).encode(),
                    INVALID_JSON, None),
    "single_quotes": (lambda d: ("{'device_uuid':'%s'}" % d.uuid).encode(), INVALID_JSON, None),
    "body_array": (lambda d: b"[]", EITHER, None),
    "body_array_of_packet": (lambda d: ("[" + valid_text(d) + "]").encode(), EITHER, None),
    "body_number": (lambda d: b"42", EITHER, None),
    "body_string": (lambda d: b'"hello"', EITHER, None),
    "body_null": (lambda d: b"null", EITHER, None),
    "device_uuid_missing": (lambda d: dumps({"readings": [json.loads(reading_text(d))]}),
                            INVALID_REQUEST, "device_uuid"),
    "device_uuid_number": (lambda d: dumps({**valid(d), "device_uuid": 123}), INVALID_REQUEST,
                           "device_uuid"),
    "device_uuid_null": (lambda d: dumps({**valid(d), "device_uuid": None}), INVALID_REQUEST,
                         "device_uuid"),
    "device_uuid_array": (lambda d: dumps({**valid(d), "device_uuid": [d.uuid]}),
                          INVALID_REQUEST, "device_uuid"),
    "device_uuid_object": (lambda d: dumps({**valid(d), "device_uuid": {"id": d.uuid}}),
                           INVALID_REQUEST, "device_uuid"),
    "device_uuid_bool": (lambda d: dumps({**valid(d), "device_uuid": True}), INVALID_REQUEST,
                         "device_uuid"),
    "readings_missing": (lambda d: dumps({"device_uuid": d.uuid}), INVALID_REQUEST, "readings"),
    "readings_string": (lambda d: dumps({**valid(d), "readings": "x"}), INVALID_REQUEST,
                        "readings"),
    "readings_object": (lambda d: dumps({**valid(d), "readings": json.loads(reading_text(d))}),
                        INVALID_REQUEST, "readings"),
    "readings_null": (lambda d: dumps({**valid(d), "readings": None}), INVALID_REQUEST,
                      "readings"),
    "readings_number": (lambda d: dumps({**valid(d), "readings": 5}), INVALID_REQUEST,
                        "readings"),
    "readings_empty": (lambda d: dumps({**valid(d), "readings": []}), INVALID_REQUEST,
                       "readings"),
    "readings_over_max": (lambda d: dumps({**valid(d), "readings": [
        {"sensor_uuid": d.sensors[0].uuid, "value": i} for i in range(1001)]}),
        INVALID_REQUEST, "readings"),
    "reading_is_number": (lambda d: dumps({**valid(d), "readings": [1]}), INVALID_REQUEST,
                          "readings"),
    "reading_is_string": (lambda d: dumps({**valid(d), "readings": ["x"]}), INVALID_REQUEST,
                          "readings"),
    "reading_is_null": (lambda d: dumps({**valid(d), "readings": [None]}), INVALID_REQUEST,
                        "readings"),
    "reading_is_array": (lambda d: dumps({**valid(d), "readings": [[d.sensors[0].uuid, 1]]}),
                         INVALID_REQUEST, "readings"),
    "second_reading_not_object": (lambda d: dumps({**valid(d), "readings": [
        json.loads(reading_text(d)), 5]}), INVALID_REQUEST, "readings"),
    "packet_id_number": (lambda d: dumps(valid(d, packet_id=7)), INVALID_REQUEST, "packet_id"),
    "packet_id_65": (lambda d: dumps(valid(d, packet_id="z" * 65)), INVALID_REQUEST,
                     "packet_id"),
    "packet_id_huge": (lambda d: dumps(valid(d, packet_id="z" * 900_000)), INVALID_REQUEST,
                       "packet_id"),
    "dup_key_top": (lambda d: ('{"device_uuid":"%s","device_uuid":"%s","readings":[%s]}'
                               % (d.uuid, d.uuid, reading_text(d))).encode(), INVALID_JSON,
                    None),
    "dup_key_readings": (lambda d: ('{"device_uuid":"%s","readings":[%s],"readings":[%s]}'
                                    % (d.uuid, reading_text(d), reading_text(d))).encode(),
                         INVALID_JSON, None),
    "dup_key_in_reading": (lambda d: ('{"device_uuid":"%s","readings":[{"sensor_uuid":"%s",'
                                      '"value":1,"value":2}]}'
                                      % (d.uuid, d.sensors[0].uuid)).encode(), INVALID_JSON,
                           None),
    "dup_key_in_unknown_field": (lambda d: ('{"device_uuid":"%s","readings":[%s],'
                                            '"meta":{"a":1,"a":2}}'
                                            % (d.uuid, reading_text(d))).encode(), INVALID_JSON,
                                 None),
    "utf8_invalid_bytes": (lambda d: b'{"device_uuid":"\xff\xfe","readings":[]}', INVALID_JSON,
                           None),
    "utf8_invalid_in_value_field": (lambda d: ('{"device_uuid":"%s","readings":[%s],"x":"'
                                               % (d.uuid, reading_text(d))).encode()
                                    + b'\xc3\x28"}', INVALID_JSON, None),
    "utf8_overlong": (lambda d: ('{"device_uuid":"%s","readings":[%s],"x":"'
                                 % (d.uuid, reading_text(d))).encode() + b'\xc0\xaf"}',
                      INVALID_JSON, None),
    "utf8_truncated_multibyte": (lambda d: ('{"device_uuid":"%s","readings":[%s],"x":"'
                                            % (d.uuid, reading_text(d))).encode()
                                 + b'\xe2\x82"}', INVALID_JSON, None),
    "utf8_encoded_surrogate": (lambda d: ('{"device_uuid":"%s","readings":[%s],"x":"'
                                          % (d.uuid, reading_text(d))).encode()
                               + b'\xed\xa0\x80"}', INVALID_JSON, None),
    "utf8_in_sensor_uuid": (lambda d: ('{"device_uuid":"%s","readings":[{"sensor_uuid":"'
                                       % d.uuid).encode() + b'\xf8\x88\x80\x80\x80'
                            + b'","value":1}]}', INVALID_JSON, None),
    "lone_surrogate_escape": (lambda d: ('{"device_uuid":"%s","readings":[%s],"x":"\\ud800"}'
                                         % (d.uuid, reading_text(d))).encode(), EITHER, None),
    "raw_control_char_in_string": (lambda d: ('{"device_uuid":"%s\x01","readings":[%s]}'
                                              % (d.uuid, reading_text(d))).encode(),
                                   INVALID_JSON, None),
    "deep_arrays": (lambda d: b"[" * 10000, EITHER, None),
    "deep_arrays_closed": (lambda d: b"[" * 10000 + b"]" * 10000, EITHER, None),
    "deep_objects": (lambda d: b'{"a":' * 10000 + b"1" + b"}" * 10000, EITHER, None),
    "deep_in_unknown_field": (lambda d: ('{"device_uuid":"%s","readings":[%s],"x":'
                                         % (d.uuid, reading_text(d))).encode()
                              + b"[" * 10000 + b"]" * 10000 + b"}", EITHER, None),
    "deep_in_reading": (lambda d: ('{"device_uuid":"%s","readings":[{"sensor_uuid":"%s",'
                                   '"value":' % (d.uuid, d.sensors[0].uuid)).encode()
                        + b"[" * 10000 + b"]" * 10000 + b"}]}", EITHER, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_packet_400(gw, db, hdev, case):
    build, code, field = CASES[case]
    body = build(hdev)
    assert len(body) <= MAX_BODY, f"test bug: {case} body too large ({len(body)})"
    before = db.counts()
    r = gw.post_packet(raw=body, key=hdev.key)
    assert_error(r, 400, code, detail_contains=field)
    assert db.counts() == before
    # and the gateway still serves
    assert gw.get("/health").status == 200


def test_huge_device_uuid(gw, db, hdev):
    # 900 KB device_uuid: a string, so the shape is valid; it matches no device
    before = db.counts()
    body = dumps({"device_uuid": "d" * 900_000,
                  "readings": [{"sensor_uuid": hdev.sensors[0].uuid, "value": 1}]})
    r = gw.post_packet(raw=body, key=hdev.key)
    assert r.status in (400, 401), r
    assert_error(r, r.status, "invalid_request" if r.status == 400 else "unauthorized")
    r = gw.post_packet(raw=body, api_key=API_KEY)
    assert r.status in (400, 401, 404, 422), r
    assert r.json().get("code"), r
    assert db.counts() == before


def test_huge_sensor_uuid(gw, db, hdev):
    before = db.counts()
    body = dumps({"device_uuid": hdev.uuid,
                  "readings": [{"sensor_uuid": "s" * 900_000, "value": 1}]})
    r = gw.post_packet(raw=body, key=hdev.key)
    b = assert_error(r, r.status, None)
    if r.status == 422:
        assert b["code"] == "no_valid_readings"
        assert b["rejected"][0]["reason"] == "unknown_sensor"
        assert b["rejected"][0]["index"] == 0
    else:
        assert r.status == 400 and b["code"] == "invalid_request", r
    assert db.counts() == before


def test_max_readings_exactly_allowed(gw, db, make_device):
    dev = make_device(1)
    base = now_ms() - 3_000_000
    readings = [{"sensor_uuid": dev.sensors[0].uuid, "value": float(i),
                 "ts": (base + i) / 1000} for i in range(1000)]
    r = gw.post_packet({"device_uuid": dev.uuid, "readings": readings}, key=dev.key)
    assert r.status == 200, r
    assert r.json()["accepted"] == 1000
    assert db.reading_count(dev.sensors[0].id) == 1000


# --------------------------------------------------------------------- media types / encodings

@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "application/json;charset=UTF-8", "APPLICATION/JSON",
                                   None])
def test_json_content_types_accepted(gw, db, make_device, ctype):
    dev = make_device(1)
    r = gw.post_packet(valid(dev), key=dev.key, content_type=ctype)
    assert r.status == 200, r
    assert db.reading_count(dev.sensors[0].id) == 1


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml",
                                   "application/x-www-form-urlencoded", "multipart/form-data",
                                   "application/jsonx", "text/json"])
def test_other_content_types_415(gw, db, hdev, ctype):
    before = db.counts()
    r = gw.post_packet(valid(hdev), key=hdev.key, content_type=ctype)
    assert_error(r, 415, "unsupported_media_type")
    assert db.counts() == before


@pytest.mark.parametrize("enc", ["br", "deflate", "compress", "zstd", "gzip, br"])
def test_other_content_encodings_415(gw, db, hdev, enc):
    before = db.counts()
    r = gw.post_packet(raw=gzip.compress(dumps(valid(hdev))), key=hdev.key,
                       headers=[("Content-Encoding", enc)])
    assert_error(r, 415, "unsupported_media_type")
    assert db.counts() == before


@pytest.mark.parametrize("enc", ["gzip", "GZIP", "identity"])
def test_accepted_content_encodings(gw, db, make_device, enc):
    dev = make_device(1)
    body = dumps(valid(dev))
    if enc.lower() == "gzip":
        body = gzip.compress(body)
    r = gw.post_packet(raw=body, key=dev.key, headers=[("Content-Encoding", enc)])
    assert r.status == 200, r
    assert r.json()["accepted"] == 1
    assert db.reading_count(dev.sensors[0].id) == 1


def test_corrupt_gzip_400(gw, db, hdev):
    before = db.counts()
    good = gzip.compress(dumps(valid(hdev)))
    for body in (b"definitely not gzip", good[:-6], good[:10] + bytes(20) + good[30:]):
        r = gw.post_packet(raw=body, key=hdev.key, headers=[("Content-Encoding", "gzip")])
        assert_error(r, 400, None)
    assert db.counts() == before


# --------------------------------------------------------------------- 413

def padded(dev, total):
    """A valid packet padded with trailing whitespace to exactly total bytes."""
    b = dumps(valid(dev))
    assert len(b) <= total
    return b + b" " * (total - len(b))


def test_body_exactly_max_accepted(gw, db, make_device):
    dev = make_device(1)
    r = gw.post_packet(raw=padded(dev, MAX_BODY), key=dev.key)
    assert r.status == 200, r
    assert db.reading_count(dev.sensors[0].id) == 1


def test_content_length_over_limit_413(gw, db, hdev):
    before = db.counts()
    r = gw.post_packet(raw=padded(hdev, MAX_BODY + 1), key=hdev.key)
    assert_error(r, 413, "body_too_large")
    # a huge declared length is refused without waiting for the body
    r = gw.post_packet(raw=b"{}", key=hdev.key, content_length=str(50 * 1024 ** 3))
    assert_error(r, 413, "body_too_large")
    assert db.counts() == before


def test_chunked_body_accepted(gw, db, make_device):
    dev = make_device(1)
    r = gw.post_packet(raw=padded(dev, 200_000), key=dev.key, chunked=True, content_length=None)
    assert r.status == 200, r
    assert db.reading_count(dev.sensors[0].id) == 1


def test_chunked_body_over_limit_413(gw, db, hdev):
    before = db.counts()
    r = gw.post_packet(raw=padded(hdev, MAX_BODY + 70_000), key=hdev.key, chunked=True,
                       content_length=None)
    assert_error(r, 413, "body_too_large")
    assert db.counts() == before


def test_gzip_inflating_past_limit_413(gw, db, hdev):
    before = db.counts()
    for size in (MAX_BODY + 1, 64 * MAX_BODY):
        body = gzip.compress(padded(hdev, size), 9)
        assert len(body) < MAX_BODY // 4
        t0 = time.monotonic()
        r = gw.post_packet(raw=body, key=hdev.key, headers=[("Content-Encoding", "gzip")])
        print(f"gzip bomb {size} bytes inflated: {r.status} in {time.monotonic() - t0:.3f}s")
        assert_error(r, 413, "body_too_large")
    assert db.counts() == before


def test_gzip_inflating_to_exactly_max_accepted(gw, db, make_device):
    dev = make_device(1)
    r = gw.post_packet(raw=gzip.compress(padded(dev, MAX_BODY)), key=dev.key,
                       headers=[("Content-Encoding", "gzip")])
    assert r.status == 200, r
    assert db.reading_count(dev.sensors[0].id) == 1


# --------------------------------------------------------------------- broken HTTP

@pytest.mark.parametrize("name", ["garbage", "bad_version", "huge_header", "many_headers",
                                  "huge_url", "bad_content_length", "negative_content_length",
                                  "conflicting_lengths"])
def test_broken_http_gets_4xx_or_close(gw, db, hdev, name):
    body = dumps(valid(hdev))
    head = (b"POST /ingest/packets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nX-Device-Key: " + hdev.key.encode() + b"\r\n")
    data = {
        "garbage": b"GARBAGE\r\n\r\n",
        "bad_version": b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
        "huge_header": head + b"X-Big: " + b"a" * 200_000 + b"\r\nContent-Length: %d\r\n\r\n"
                       % len(body) + body,
        "many_headers": head + b"".join(b"X-H%d: v\r\n" % i for i in range(20_000))
                        + b"Content-Length: %d\r\n\r\n" % len(body) + body,
        "huge_url": b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "bad_content_length": head + b"Content-Length: abc\r\n\r\n" + body,
        "negative_content_length": head + b"Content-Length: -5\r\n\r\n" + body,
        "conflicting_lengths": head + b"Content-Length: 5\r\nContent-Length: %d\r\n\r\n"
                               % len(body) + body,
    }[name]
    before = db.counts()
    r = raw_exchange(gw.port, data)
    if r is not None:
        assert 400 <= r.status < 500 or r.status == 505, r
    assert db.counts() == before
    assert gw.get("/health").status == 200


# The request line and headers share libmicrohttpd's 16 KiB per connection
# (HTTP_CONN_MEMORY in src/http/http_int.h) with its read buffer: a 12,000-byte
# header is served, a 20,000-byte one or URL gets 431/414 and nothing is stored.
@pytest.mark.parametrize("size,want", [(12_000, 200), (20_000, 431)])
def test_header_block_bound(gw, db, hdev, size, want):
    body = dumps(valid(hdev))
    before = db.counts()
    head = (b"POST /ingest/packets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nX-Device-Key: " + hdev.key.encode()
            + b"\r\nX-Note: " + b"a" * size + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        # the body only after a 200 is possible: a refused header block is
        # answered and closed while a body would still be on its way (a reset)
        s.sendall(head if want != 200 else head + body)
        r = read_response(s, "POST")
    assert r.status == want, r
    if want == 200:
        assert db.reading_count(hdev.sensors[0].id) == 1
    else:
        assert db.counts() == before


def test_url_bound(gw):
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(b"GET /health?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).status == 414
    assert gw.get("/health?" + "a" * 12_000).status == 200


def test_body_shorter_than_content_length_then_close(gw, db, hdev):
    before = db.counts()
    body = dumps(valid(hdev))
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall(b"POST /ingest/packets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"X-Device-Key: " + hdev.key.encode() + b"\r\nContent-Length: %d\r\n\r\n"
              % (len(body) + 100) + body)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(10)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()
    assert db.counts() == before
    assert gw.get("/health").status == 200


def test_keep_alive_pipelined_requests(gw, db, make_device):
    dev = make_device(1)
    body = dumps(valid(dev))
    one = (b"POST /ingest/packets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"X-Device-Key: " + dev.key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
           + body)
    last = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=20)
    try:
        s.sendall(one + one + last)
        f = s.makefile("rb")

        class KeepOpen:
            # HTTPResponse closes its file after the body; the next response
            # is read from the same buffered file, so ignore that close.
            def __getattr__(self, name):
                return getattr(f, name)

            def close(self):
                pass

        class Shim:
            def makefile(self, *a, **k):
                return KeepOpen()

        statuses = []
        for method in ("POST", "POST", "GET"):
            resp = http.client.HTTPResponse(Shim(), method=method)
            resp.begin()
            resp.read()
            statuses.append(resp.status)
        assert statuses == [200, 200, 200], statuses
    finally:
        s.close()
    assert db.reading_count(dev.sensors[0].id) == 2


def test_read_response_helper_sanity(gw):
    # guards the harness itself: a plain GET works over a raw socket
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = read_response(s)
        assert r.status == 200 and r.json()["status"] == "ok"
    finally:
        s.close()


def test_split_helper():
    assert split(b"abc", 2) == [b"ab", b"c"]


def test_expect_100_continue(gw, db, make_device):
    # curl sends Expect: 100-continue for bodies over 1 KiB and waits for it
    dev = make_device(1)
    body = padded(dev, 4096)
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        s.sendall(b"POST /ingest/packets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                  b"X-Device-Key: " + dev.key.encode() + b"\r\nContent-Length: %d\r\n\r\n"
                  % len(body))
        s.settimeout(3)
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        s.settimeout(10)
        s.sendall(body)
        r = read_response(s, "POST")
        assert r.status == 200, r
    finally:
        s.close()
    assert db.reading_count(dev.sensors[0].id) == 1


def test_expect_100_continue_too_large_refused_early(gw, db, hdev):
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        s.sendall(b"POST /ingest/packets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                  b"X-Device-Key: " + hdev.key.encode() + b"\r\nContent-Length: %d\r\n\r\n"
                  % (MAX_BODY * 4))
        r = read_response(s, "POST")
        assert_error(r, 413, "body_too_large")
    finally:
        s.close()


def test_http10_request(gw):
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    try:
        s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        r = read_response(s)
        assert r.status == 200 and r.json()["status"] == "ok"
    finally:
        s.close()


def test_gzip_over_max_readings_400(gw, db, hdev):
    before = db.counts()
    body = gzip.compress(dumps({"device_uuid": hdev.uuid, "readings": [
        {"sensor_uuid": hdev.sensors[0].uuid, "value": i} for i in range(1001)]}))
    r = gw.post_packet(raw=body, key=hdev.key, headers=[("Content-Encoding", "gzip")])
    assert_error(r, 400, "invalid_request", detail_contains="readings")
    assert db.counts() == before
