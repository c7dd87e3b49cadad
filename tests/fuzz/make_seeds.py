#!/usr/bin/env python3
"""
Writes the seed corpora of tests/fuzz/corpus/<harness>/ (committed; rerun
after changing a seed here). Small, realistic inputs: what devices, legacy
clients and proxies really send, plus the classic edge cases of each format.

    python3 tests/fuzz/make_seeds.py
"""

import gzip
import json
import os
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

KEY1 = "fuzz-key-one-0123456789abcdef"
KEY2 = "fuzz-key-two-0123456789abcdef"
KEY3 = "fuzz-key-three-0123456789abcd"
APIKEY = "fuzz-api-key-0123456789abcdef"
# fuzz_request.c fixes the wall clock at 2026-06-01T00:00:00Z; seeds stay inside the window.
T0 = "2026-05-31T23:50:00.000Z"


def dumps(o):
    return json.dumps(o, separators=(",", ":"))


def write(harness, name, data):
    d = CORPUS / harness
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def packet_bodies():
    s1, s2 = "fz-sen-1", "fz-sen-2"
    return {
        "minimal": {"device_uuid": "fz-dev-1", "readings": [{"sensor_uuid": s1, "value": 21.5}]},
        "full": {"device_uuid": "fz-dev-1", "ts": T0, "packet_id": "pkt-000001",
                 "readings": [{"sensor_uuid": s1, "value": 21.5, "ts": "2026-05-31T23:49:00Z"},
                              {"sensor_uuid": s1, "value": 75, "ts": "2026-05-31T23:49:10.5Z"},
                              {"sensor_uuid": s1, "value": 150.25},
                              {"sensor_uuid": s2, "value": -3e2, "ts": 1780271900.123}]},
        "epoch_and_offsets": {
            "device_uuid": "fz-dev-1", "ts": 1780271000,
            "readings": [{"sensor_uuid": s1, "value": 1, "ts": "2026-06-01T01:40:00+02:00"},
                         {"sensor_uuid": s1, "value": 2, "ts": "2026-05-31 19:40:00.9995-04:00"},
                         {"sensor_uuid": s2, "value": 3, "ts": 1780271000.0005}]},
        "rejects": {"device_uuid": "fz-dev-1",
                    "readings": [{"sensor_uuid": "nope", "value": 1},
                                 {"sensor_uuid": s1, "value": "12"},
                                 {"sensor_uuid": s1, "value": 1, "ts": "yesterday"},
                                 {"sensor_uuid": s1, "value": 1, "ts": "2030-01-01T00:00:00Z"},
                                 {"sensor_uuid": s1, "value": 1, "ts": "2020-01-01T00:00:00Z"},
                                 {"value": 1}, {"sensor_uuid": 7, "value": 1},
                                 {"sensor_uuid": "fz-sen-3", "value": 1},
                                 {"sensor_uuid": "fz-sen-5", "value": 1},
                                 {"sensor_uuid": s2, "value": None},
                                 {"sensor_uuid": s2, "value": 1e400}]},
        "spike_series": {"device_uuid": "fz-dev-1", "packet_id": "série-é-✓",
                         "readings": [{"sensor_uuid": s1, "value": v,
                                       "ts": "2026-05-31T23:5%d:00Z" % i}
                                      for i, v in enumerate([10, 45, 5, 60, 30, 30, 30, 120])]},
        "unknown_fields": {"device_uuid": "fz-dev-1", "fw": {"v": [1, 2, {"x": None}]},
                           "readings": [{"sensor_uuid": s2, "value": 0, "unit": "C", "q": True}]},
    }


def seeds_packet_decode():
    for name, b in packet_bodies().items():
        write("packet_decode", name + ".json", dumps(b))
    write("packet_decode", "pretty.json", json.dumps(packet_bodies()["full"], indent=2))
    write("packet_decode", "not_object.json", "[1,2,3]")
    write("packet_decode", "dup_key.json",
          '{"device_uuid":"a","device_uuid":"b","readings":[{"sensor_uuid":"s","value":1}]}')
    write("packet_decode", "escapes.json",
          '{"device_uuid":"d\\u00e9v\\n","packet_id":"\\ud83d\\ude00","readings":'
          '[{"sensor_uuid":"s\\"1","value":-0.0,"ts":null}]}')
    write("packet_decode", "long_uuid.json",
          dumps({"device_uuid": "d" * 64, "packet_id": "p" * 64,
                 "readings": [{"sensor_uuid": "s" * 65, "value": 1}]}))
    write("packet_decode", "truncated.json", dumps(packet_bodies()["full"])[:57])


def seeds_legacy_decode():
    write("legacy_decode", "single.json", dumps({"sensor_id": 1, "value": 21.5}))
    write("legacy_decode", "single_ts.json",
          dumps({"sensor_id": 2, "value": -4, "timestamp": "2026-05-31T23:59:59.999+00:00"}))
    write("legacy_decode", "single_epoch.json",
          dumps({"sensor_id": 1.0, "value": 3.25e1, "timestamp": 1780271999.5}))
    write("legacy_decode", "bulk.json", dumps({"readings": [
        {"sensor_id": 1, "value": 1}, {"sensor_id": 2, "value": 2, "timestamp": T0},
        {"sensor_id": 9007199254740993, "value": 3}, {"sensor_id": -1, "value": 4},
        {"sensor_id": "1", "value": 5}, {"sensor_id": 1.5, "value": 6}]}))
    write("legacy_decode", "bulk_bad_item.json", '{"readings":[{"sensor_id":1,"value":1},7]}')
    write("legacy_decode", "empty_object.json", "{}")


def seeds_timefmt():
    texts = ["2026-11-27T17:00:00.123Z", "2026-11-27t17:00:00z", "2026-11-27 17:00:00+02:00",
             "2026-05-31T19:40:00.123456789-04:00", "1969-12-31T23:59:59.9995Z",
             "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59.999Z",
             "9999-12-31T23:59:59.9995Z", "2024-02-29T12:00:00-23:59", "2023-02-29T12:00:00Z",
             "2026-12-31T23:59:60Z", "2026-01-01T00:00:00.Z", "1780272000", "1780272000.5",
             "-0.0005", "-62135596800", "253402300799.999", "1e300", "nan", "0x1p3"]
    for i, t in enumerate(texts):
        write("timefmt", "text_%02d" % i, t)
    for i, d in enumerate([1780272000.123, -0.0005, float("nan"), float("inf"), 2.5e14,
                           -62135596800.0, 5e-324]):
        write("timefmt", "double_%02d" % i, struct.pack("<d", d))
    for i, v in enumerate([0, -1, 2 ** 63 - 1, -2 ** 63, 253402300799999]):
        write("timefmt", "int64_%02d" % i, struct.pack("<q", v))


def gz_member(data, **kw):
    return gzip.compress(data, **kw)


def seeds_gunzip():
    def put(name, cap, data):
        write("gunzip", name, struct.pack(">H", cap - 1) + data)

    body = dumps(packet_bodies()["full"]).encode()
    g = gz_member(body)
    put("packet", 4096, g)
    put("exact_fit", len(body), g)
    put("one_over", len(body) - 1, g)
    put("empty_member", 16, gz_member(b""))
    put("bomb", 65536, gz_member(b"\0" * (1 << 20), compresslevel=9))
    put("bomb_small_cap", 1, gz_member(b" " * 5000, compresslevel=9))
    put("truncated", 4096, g[:-5])
    bad_crc = bytearray(g)
    bad_crc[-8] ^= 0xFF
    put("bad_crc", 4096, bytes(bad_crc))
    put("two_members", 4096, g + gz_member(b"{}"))
    put("trailing_zeros", 4096, g + b"\0" * 8)
    put("zlib_not_gzip", 4096, zlib.compress(body))
    # FTEXT|FHCRC|FEXTRA|FNAME|FCOMMENT header, hand-built
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = raw.compress(b'{"a":1}') + raw.flush()
    hdr = b"\x1f\x8b\x08\x1f" + b"\0\0\0\0" + b"\0\x03" + b"\x04\0ab\0\0" + b"name\0" + b"note\0"
    hdr += struct.pack("<H", zlib.crc32(hdr) & 0xFFFF)
    put("all_header_flags", 64, hdr + deflated + struct.pack("<II", zlib.crc32(b'{"a":1}'), 7))
    write("gunzip", "ct_json_charset", b"application/json; charset=utf-8")
    write("gunzip", "ce_gzip_spaces", b" \tGZip \t")


def seeds_client_ip():
    write("client_ip", "proxy_chain", "127.0.0.0/8, ::1/128\n203.0.113.7, 198.51.100.2, 127.0.0.1")
    write("client_ip", "v6_chain", "::1/128,2001:db8::/32\n2001:db8::1, [2001:db8::2]:443, ::1")
    write("client_ip", "no_spec_garbage", "unknown, 192.0.2.1 , ,,, 256.1.1.1, ::ffff:192.0.2.9")
    write("client_ip", "bad_cidr", "10.0.0.0/33, 1.2.3.4/-1, ::/129, 1.2.3/8\n1.2.3.4")
    write("client_ip", "all_trusted", "0.0.0.0/0, ::/0\n192.0.2.1, 198.51.100.1")


def http(method, url, headers=(), body=b"", directives=()):
    lines = list(directives) + [f"{method} {url}"] + [f"{k}: {v}" for k, v in headers] + [""]
    head = "\n".join(lines) + "\n"
    if isinstance(body, str):
        body = body.encode()
    return head.encode() + body


def seeds_request():
    b = {k: dumps(v) for k, v in packet_bodies().items()}
    ct = ("Content-Type", "application/json")
    k1 = ("X-Device-Key", KEY1)
    api = ("X-API-Key", APIKEY)
    w = lambda n, *a, **k: write("request", n, http(*a, **k))  # noqa: E731
    w("packet_minimal", "POST", "/ingest/packets", [ct, k1], b["minimal"])
    w("packet_full", "POST", "/ingest/packets", [ct, k1, ("Content-Length", str(len(b["full"])))],
      b["full"])
    w("packet_spikes", "POST", "/ingest/packets", [k1], b["spike_series"])
    w("packet_rejects", "POST", "/ingest/packets", [k1], b["rejects"])
    w("packet_offsets", "POST", "/ingest/packets", [ct, k1], b["epoch_and_offsets"])
    w("packet_api_key", "POST", "/ingest/packets", [api], b["unknown_fields"])
    w("packet_wrong_key", "POST", "/ingest/packets", [("X-Device-Key", KEY3)], b["minimal"])
    w("packet_disabled_device", "POST", "/ingest/packets", [("X-Device-Key", KEY2)],
      dumps({"device_uuid": "fz-dev-2", "readings": [{"sensor_uuid": "fz-sen-4", "value": 1}]}))
    w("packet_all_rejected_422", "POST", "/ingest/packets", [k1],
      dumps({"device_uuid": "fz-dev-1", "packet_id": "p-422",
             "readings": [{"sensor_uuid": "fz-sen-5", "value": 1}]}))
    w("packet_gzip", "POST", "/ingest/packets", [ct, k1], b["full"], directives=["@gzip"])
    w("packet_charset", "POST", "/ingest/packets",
      [("Content-Type", "application/json; charset=utf-8"), k1, ("X-Request-Id", "req-1.a:b_c")],
      b["minimal"])
    w("packet_415", "POST", "/ingest/packets", [("Content-Type", "text/plain"), k1], b["minimal"])
    w("packet_415_encoding", "POST", "/ingest/packets", [("Content-Encoding", "br"), k1],
      b["minimal"])
    w("packet_413_length", "POST", "/ingest/packets", [k1, ("Content-Length", "99999999999")],
      b["minimal"])
    w("packet_from_ip", "POST", "/ingest/packets", [k1], b["minimal"],
      directives=["@ip 192.0.2.44"])
    w("packet_fault_commit", "POST", "/ingest/packets", [k1], b["full"],
      directives=["@fault tx_commit 1 busy"])
    w("packet_fault_alert", "POST", "/ingest/packets", [k1], b["spike_series"],
      directives=["@fault alert_insert 1 db"])
    w("packet_fault_any", "POST", "/ingest/packets", [k1], b["full"],
      directives=["@fault any 5 unavail"])
    w("packet_fault_reader", "POST", "/ingest/packets", [k1], b["minimal"],
      directives=["@rfault device_get 1 unavail"])
    w("legacy_single", "POST", "/ingest/readings", [ct, api],
      dumps({"sensor_id": 1, "value": 42.5, "timestamp": T0}))
    w("legacy_bulk", "POST", "/ingest/readings/bulk", [api],
      dumps({"readings": [{"sensor_id": 1, "value": 1}, {"sensor_id": 2, "value": 99,
                                                          "timestamp": 1780271990},
                          {"sensor_id": 3, "value": 1}, {"sensor_id": 4, "value": 1},
                          {"sensor_id": 77, "value": 1}]}))
    w("legacy_no_key", "POST", "/ingest/readings", [], dumps({"sensor_id": 1, "value": 1}))
    w("legacy_fault", "POST", "/ingest/readings", [api], dumps({"sensor_id": 2, "value": 1}),
      directives=["@rfault sensor_get 1 busy"])
    w("status_device_key", "GET", "/ingest/devices/fz-dev-1/status", [k1])
    w("status_api_key_unknown", "GET", "/ingest/devices/nobody/status", [api])
    w("status_other_device_key", "GET", "/ingest/devices/fz-dev-3/status", [k1])
    w("status_disabled_api", "HEAD", "/ingest/devices/fz-dev-2/status", [api])
    w("health", "GET", "/health")
    w("health_fault", "GET", "/health", directives=["@rfault ping 1 unavail"])
    w("metrics", "GET", "/metrics")
    w("not_found", "GET", "/ingest/devices/a/b/status")
    w("method_405", "DELETE", "/ingest/packets", [k1])


def mqtt_varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def mqtt_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def mqtt_frame(first, body):
    return bytes([first]) + mqtt_varint(len(body)) + body


def mqtt_props(*props):
    body = b"".join(props)
    return mqtt_varint(len(body)) + body


def mqtt_connect(level, client_id, flags=0x02, props=b"", will=b"", user=None, password=None):
    if user is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = mqtt_str("MQTT") + bytes([level, flags]) + struct.pack(">H", 60)
    if level == 5:
        body += mqtt_props(props)
    body += mqtt_str(client_id) + will
    if user is not None:
        body += mqtt_str(user)
    if password is not None:
        body += mqtt_str(password)
    return mqtt_frame(0x10, body)


# Frames recorded from mosquitto_pub/mosquitto_sub 2.0.11 (see tests/unit/test_mqtt_codec.c).
MQTT_CAPTURES = {
    "mosquitto_pub_v311_q1": "103000044d51545404c2003c00096465762d6361702d31000d64656d6f2d6465"
    "766963652d31000a64656d6f2d6b65792d313261001d646576696365732f64656d6f2d6465766963652d312f70"
    "61636b65747300017b2272656164696e6773223a5b7b2273656e736f725f75756964223a2264656d6f2d646576"
    "6963652d312d74656d70222c2276616c7565223a32312e357d5d7de000",
    "mosquitto_pub_v5_props": "107500044d51545405c6001e171100000e10270001000026000266770003312e"
    "3221001400096465762d6361702d3305180000000a001c646576696365732f64656d6f2d6465766963652d312f"
    "73746174757300076f66666c696e65000d64656d6f2d6465766963652d31000a64656d6f2d6b65792d31324500"
    "1d646576696365732f64656d6f2d6465766963652d312f7061636b6574730001210300106170706c6963617469"
    "6f6e2f6a736f6e020000001e01012600016b0001767b7de000",
    "mosquitto_sub_v5": "103400044d51545405c2003c0321001400096465762d6361702d31000d64656d6f2d64"
    "65766963652d31000a64656d6f2d6b65792d318223000100001d646576696365732f64656d6f2d646576696365"
    "2d312f726573756c747301e00104",
}


def seeds_mqtt_codec():
    # byte 0: state (0 before CONNECT, 1 = 3.1.1, 2 = 5) and bound (bit 7); byte 1: split seed
    for name, hx in MQTT_CAPTURES.items():
        write("mqtt_codec", name, b"\x00\x2a" + bytes.fromhex(hx))
    topic, payload = "devices/fz-dev-1/packets", dumps(packet_bodies()["minimal"])
    user = b"\x26" + mqtt_str("k") + mqtt_str("v")
    pub_props = mqtt_props(b"\x01\x01", b"\x02" + struct.pack(">I", 30),
                           b"\x03" + mqtt_str("application/json"),
                           b"\x08" + mqtt_str("devices/fz-dev-1/results"),
                           b"\x09" + mqtt_str(b"\x00\x01"), user)
    v311 = (mqtt_frame(0x30, mqtt_str(topic) + payload.encode())
            + mqtt_frame(0x32, mqtt_str(topic) + b"\x00\x01" + payload.encode())
            + mqtt_frame(0x40, b"\x00\x01")
            + mqtt_frame(0x82, b"\x00\x02" + mqtt_str("devices/fz-dev-1/results") + b"\x01"
                         + mqtt_str("a/+/#") + b"\x00")
            + mqtt_frame(0xA2, b"\x00\x03" + mqtt_str("a/+/#"))
            + b"\xc0\x00\xe0\x00")
    write("mqtt_codec", "v311_session", b"\x01\x07" + v311)
    v5 = (mqtt_frame(0x3b, mqtt_str(topic) + b"\x00\x09" + pub_props + payload.encode())
          + mqtt_frame(0x30, mqtt_str(topic) + b"\x00")
          + mqtt_frame(0x40, b"\x00\x09\x80" + mqtt_props(b"\x1f" + mqtt_str("db"), user))
          + mqtt_frame(0x40, b"\x00\x0a\x10")
          + mqtt_frame(0x82, b"\x00\x02" + mqtt_props(b"\x0b\x05", user)
                       + mqtt_str("devices/fz-dev-1/results") + b"\x2d")
          + mqtt_frame(0xA2, b"\x00\x03" + mqtt_props(user) + mqtt_str("a/b"))
          + b"\xc0\x00"
          + mqtt_frame(0xE0, b"\x04" + mqtt_props(b"\x11\x00\x00\x00\x00",
                                                 b"\x1f" + mqtt_str("bye"), user)))
    write("mqtt_codec", "v5_session", b"\x02\x63" + v5)
    connect_props = (b"\x11\x00\x00\x0e\x10", b"\x21\x00\x14", b"\x22\x00\x00",
                     b"\x27\x00\x01\x00\x00", b"\x17\x01", b"\x19\x00",
                     b"\x15" + mqtt_str("none"), b"\x16" + mqtt_str(b"\x01"), user)
    will = (mqtt_props(b"\x18\x00\x00\x00\x0a", b"\x01\x01", b"\x03" + mqtt_str("text/plain"),
                       user) + mqtt_str("devices/fz-dev-1/status") + mqtt_str("offline"))
    write("mqtt_codec", "v5_connect_all_properties",
          b"\x00\x01" + mqtt_connect(5, "fz-dev-1", 0x2e, b"".join(connect_props), will,
                                     "fz-dev-1", KEY1))
    write("mqtt_codec", "v311_connect_will",
          b"\x00\x02" + mqtt_connect(4, "", 0x0e, will=mqtt_str("w/t") + mqtt_str("x"),
                                     user="fz-dev-1", password=KEY1))
    write("mqtt_codec", "v5_small_bound", b"\x86\x00" + mqtt_frame(0x30, mqtt_str("a") + b"\x00")
          + mqtt_frame(0x30, mqtt_str("ab") + b"\x00"))
    write("mqtt_codec", "v311_length_boundary",
          b"\x01\x10" + mqtt_frame(0x30, mqtt_str("t") + b"x" * 124)
          + mqtt_frame(0x30, mqtt_str("t") + b"x" * 125))
    write("mqtt_codec", "v5_qos2_refused", b"\x02\x00" + mqtt_frame(0x34, mqtt_str("a") + b"\x00\x01\x00"))


def dicts():
    common = ['"device_uuid"', '"readings"', '"sensor_uuid"', '"value"', '"ts"', '"packet_id"',
              '"sensor_id"', '"timestamp"', '"fz-dev-1"', '"fz-dev-2"', '"fz-dev-3"', '"fz-sen-1"',
              '"fz-sen-2"', '"fz-sen-3"', '"fz-sen-5"', '"2026-05-31T23:50:00Z"', '"+02:00"',
              '"1780271990.5"', '"null"', '"true"', '"1e308"', '"-0.0"', '"\\\\u0000"',
              '"\\\\ud800"', '"{"', '"}"', '"["', '"]"', '":"', '","']
    (HERE / "packet_decode.dict").write_text("\n".join(common) + "\n")
    (HERE / "legacy_decode.dict").write_text("\n".join(common) + "\n")
    req = common + ['"POST"', '"GET"', '"HEAD"', '"/ingest/packets"', '"/ingest/readings"',
                    '"/ingest/readings/bulk"', '"/ingest/devices/"', '"/status"', '"/health"',
                    '"/metrics"', '"X-Device-Key: "', '"X-API-Key: "', '"Content-Type: "',
                    '"Content-Encoding: "', '"Content-Length: "', '"X-Request-Id: "',
                    '"application/json"', '"gzip"', '"identity"',
                    '"%s"' % KEY1, '"%s"' % KEY2, '"%s"' % KEY3, '"%s"' % APIKEY,
                    '"@gzip\\x0a"', '"@ip "', '"@fault "', '"@rfault "', '" tx_commit 1 busy"',
                    '" readings_insert 1 db"', '" states_load 1 unavail"', '" any 3 io"',
                    '" savepoint_release 1 nomem"', '" packet_put 1 full"', '"\\x0a\\x0a"']
    (HERE / "request.dict").write_text("\n".join(req) + "\n")
    tf = ['"T"', '"Z"', '"z"', '"+00:00"', '"-23:59"', '"."', '"9995"', '"0001-01-01"',
          '"9999-12-31"', '"02-29"', '"23:59:59"', '"e+"', '"e-"']
    (HERE / "timefmt.dict").write_text("\n".join(tf) + "\n")
    mq = ['"\\x00\\x04MQTT\\x04"', '"\\x00\\x04MQTT\\x05"', '"\\x00\\x06MQIsdp"',
          '"\\xff\\xff\\xff\\x7f"', '"\\x80\\x80\\x80\\x80"', '"\\x00\\x00"',
          '"\\x00\\x01"', '"\\xc0\\x00"', '"\\xe0\\x00"', '"\\x40\\x02"', '"\\x82"',
          '"\\xa2"', '"\\x32"', '"\\x30"', '"\\x10"', '"devices/"', '"/packets"', '"/results"',
          '"+"', '"#"', '"/#"', '"$share/"', '"\\xed\\xa0\\x80"', '"\\xf4\\x90\\x80\\x80"',
          '"\\xc0\\xaf"']
    # every MQTT 5 property identifier with a value of its type
    mq += ['"\\x01\\x01"', '"\\x02\\x00\\x00\\x00\\x1e"', '"\\x03\\x00\\x01a"',
           '"\\x08\\x00\\x01a"', '"\\x09\\x00\\x01\\x00"', '"\\x0b\\x01"',
           '"\\x11\\x00\\x00\\x00\\x00"', '"\\x12\\x00\\x01a"', '"\\x13\\x00\\x0a"',
           '"\\x15\\x00\\x01a"', '"\\x16\\x00\\x01a"', '"\\x17\\x01"',
           '"\\x18\\x00\\x00\\x00\\x0a"', '"\\x19\\x01"', '"\\x1a\\x00\\x01a"',
           '"\\x1c\\x00\\x01a"', '"\\x1f\\x00\\x01a"', '"\\x21\\x00\\x14"',
           '"\\x22\\x00\\x00"', '"\\x23\\x00\\x01"', '"\\x24\\x01"', '"\\x25\\x00"',
           '"\\x26\\x00\\x01k\\x00\\x01v"', '"\\x27\\x00\\x10\\x00\\x00"', '"\\x28\\x00"',
           '"\\x29\\x00"', '"\\x2a\\x00"']
    (HERE / "mqtt_codec.dict").write_text("\n".join(mq) + "\n")


def main():
    for h in ("packet_decode", "legacy_decode", "timefmt", "gunzip", "client_ip", "request",
              "mqtt_codec"):
        d = CORPUS / h
        if d.exists():
            for f in d.iterdir():
                f.unlink()
    seeds_packet_decode()
    seeds_legacy_decode()
    seeds_timefmt()
    seeds_gunzip()
    seeds_client_ip()
    seeds_request()
    seeds_mqtt_codec()
    dicts()
    for h in sorted(os.listdir(CORPUS)):
        n = len(os.listdir(CORPUS / h))
        size = sum(f.stat().st_size for f in (CORPUS / h).iterdir())
        print(f"{h}: {n} seeds, {size} bytes")


if __name__ == "__main__":
    main()
