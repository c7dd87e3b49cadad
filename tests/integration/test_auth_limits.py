"""Authentication (401/403), rate limits (429), X-Forwarded-For, cache TTL of
disable, keys kept out of logs (SPEC §5, §8)."""

import time

from conftest import (API_KEY, assert_error, iso_ms, metric_value, now_ms, provision_device,
                      random_key, scrape, uid, wait_until)


# --------------------------------------------------------------------- 401 / 403

def test_missing_and_wrong_keys_are_401(gw, db, make_device):
    dev = make_device(1)
    other = make_device(1)
    pkt = dev.packet([(0, 1.0)])
    before = db.counts()
    cases = {
        "no key": gw.post_packet(pkt),
        "wrong device key": gw.post_packet(pkt, key="f" * 32),
        "empty device key": gw.post_packet(pkt, key=""),
        "other device's key": gw.post_packet(pkt, key=other.key),
        "wrong api key": gw.post_packet(pkt, api_key=API_KEY + "x"),
        "api key prefix": gw.post_packet(pkt, api_key=API_KEY[:-1]),
        "device key in api header": gw.post_packet(pkt, api_key=dev.key),
    }
    for name, r in cases.items():
        assert r.status == 401, f"{name}: {r!r}"
        assert_error(r, 401, "unauthorized")
    assert db.counts() == before


def test_odd_key_headers_are_401(gw, db, make_device):
    dev = make_device(1)
    pkt = dev.packet([(0, 1.0)])
    before = db.counts()
    for key in ("k" * 10_000, dev.key.upper() + "\u00e9", dev.key[:16], dev.key + dev.key,
                dev.key[:-1], "\u00ff" * 40):
        r = gw.post_packet(pkt, headers=[("X-Device-Key", key.encode("utf-8")
                                          .decode("latin-1"))])
        assert_error(r, 401, "unauthorized")
    assert db.counts() == before


def test_key_header_surrounding_whitespace_ignored(gw, db, make_device):
    # RFC 9110 5.5: a field value excludes leading and trailing whitespace
    dev = make_device(1)
    for key in (" " + dev.key, dev.key + " ", dev.key + "\t"):
        r = gw.post_packet(dev.packet([(0, 1.0)]), headers=[("X-Device-Key", key)])
        assert r.status == 200, f"key {key!r}: {r!r}"
    assert db.reading_count(dev.sensors[0].id) == 3


def test_unknown_device_and_wrong_key_same_answer(gw, make_device):
    dev = make_device(1)
    wrong = gw.post_packet(dev.packet([(0, 1.0)]), key="0" * 32)
    unknown = gw.post_packet({"device_uuid": uid("ghost-"),
                              "readings": [{"sensor_uuid": dev.sensors[0].uuid, "value": 1.0}]},
                             key="0" * 32)
    assert wrong.status == unknown.status == 401, (wrong, unknown)
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "unauthorized"
    # the real key of an existing device used for an unknown device: same answer too
    stolen = gw.post_packet({"device_uuid": uid("ghost-"),
                             "readings": [{"sensor_uuid": dev.sensors[0].uuid, "value": 1.0}]},
                            key=dev.key)
    assert stolen.status == 401 and stolen.json() == wrong.json()


def test_inactive_device_403(gw, db, cli, make_device):
    dev = make_device(1)
    assert cli.run("device", "disable", dev.uuid).returncode == 0
    before = db.counts()
    r = gw.post_packet(dev.packet([(0, 1.0)]), key=dev.key)
    assert_error(r, 403, "device_inactive")
    # a wrong key for an inactive device must not reveal that it exists
    r2 = gw.post_packet(dev.packet([(0, 1.0)]), key="e" * 32)
    assert_error(r2, 401, "unauthorized")
    assert db.counts() == before


# --------------------------------------------------------------------- rate limits

def _provision_two(c):
    return provision_device(c, 1), provision_device(c, 1)


def test_ip_rate_limit(gateway_factory):
    gw, (dev, _) = gateway_factory({"RATE_LIMIT_IP_RPS": "0.5", "RATE_LIMIT_BURST": "3",
                                    "RATE_LIMIT_DEVICE_RPS": "0", "DB_SYNC": "normal"},
                                   provision=_provision_two, name="iprl")
    pkt = {"device_uuid": dev.uuid, "readings": [{"sensor_uuid": dev.sensors[0].uuid,
                                                  "value": 1}]}
    # the IP bucket is taken before auth: wrong-key requests drain it
    statuses = [gw.post_packet(pkt, key="bad" * 8) for _ in range(8)]
    codes = [r.status for r in statuses]
    assert codes[:3] == [401, 401, 401], codes
    limited = [r for r in statuses if r.status == 429]
    assert len(limited) >= 3, codes
    r = limited[0]
    assert_error(r, 429, "rate_limited_ip")
    assert "retry-after" in r.headers, r.headers
    assert int(r.headers["retry-after"]) >= 1
    # legacy calls count against the IP bucket too
    lr = gw.post("/ingest/readings", {"sensor_id": 1, "value": 1.0},
                 headers=[("X-API-Key", API_KEY)])
    assert_error(lr, 429, "rate_limited_ip")
    # /health and /metrics are never limited
    for _ in range(15):
        assert gw.get("/health").status == 200
        assert gw.get("/metrics").status == 200
    # the bucket refills: a valid request gets through again
    ok = wait_until(lambda: (lambda x: x if x.status == 200 else None)(
        gw.post_packet(pkt, key=dev.key)), timeout=10, interval=0.3, what="bucket refill")
    assert ok.json()["accepted"] == 1


def test_device_rate_limit_only_after_auth(gateway_factory):
    gw, (dev, other) = gateway_factory({"RATE_LIMIT_IP_RPS": "0", "RATE_LIMIT_BURST": "3",
                                        "RATE_LIMIT_DEVICE_RPS": "0.5", "DB_SYNC": "normal"},
                                       provision=_provision_two, name="devrl")

    def pkt(d):
        return {"device_uuid": d.uuid, "readings": [{"sensor_uuid": d.sensors[0].uuid,
                                                     "value": 1}]}

    # nobody without the key can drain the device's budget
    wrong = [gw.post_packet(pkt(dev), key="0" * 32).status for _ in range(10)]
    assert wrong == [401] * 10, wrong
    good = [gw.post_packet(pkt(dev), key=dev.key) for _ in range(6)]
    codes = [r.status for r in good]
    assert codes[:3] == [200, 200, 200], codes
    assert 429 in codes[3:], codes
    r = next(x for x in good if x.status == 429)
    assert_error(r, 429, "rate_limited_device")
    assert int(r.headers["retry-after"]) >= 1
    # a limited device does not affect another device
    assert gw.post_packet(pkt(other), key=other.key).status == 200
    # and a wrong key for the limited device is still just 401
    assert gw.post_packet(pkt(dev), key="0" * 32).status == 401
    assert gw.db.reading_count(dev.sensors[0].id) == codes.count(200)


def test_x_forwarded_for_ignored_without_trusted_proxies(gateway_factory):
    gw, (dev, _) = gateway_factory({"RATE_LIMIT_IP_RPS": "0.1", "RATE_LIMIT_BURST": "2"},
                                   provision=_provision_two, name="xff-untrusted")
    pkt = {"device_uuid": dev.uuid, "readings": [{"sensor_uuid": dev.sensors[0].uuid,
                                                  "value": 1}]}
    s = [gw.post_packet(pkt, key="x" * 32, headers=[("X-Forwarded-For", f"10.0.0.{i}")]).status
         for i in range(1, 5)]
    assert s[:2] == [401, 401] and s[2:] == [429, 429], s


def test_x_forwarded_for_honoured_from_trusted_proxy(gateway_factory):
    gw, (dev, _) = gateway_factory({"RATE_LIMIT_IP_RPS": "0.1", "RATE_LIMIT_BURST": "2",
                                    "TRUSTED_PROXIES": "127.0.0.1/32"},
                                   provision=_provision_two, name="xff-trusted")
    pkt = {"device_uuid": dev.uuid, "readings": [{"sensor_uuid": dev.sensors[0].uuid,
                                                  "value": 1}]}

    def send(xff=None):
        h = [("X-Forwarded-For", xff)] if xff is not None else []
        return gw.post_packet(pkt, key="x" * 32, headers=h)

    assert [send("10.0.0.1").status for _ in range(3)] == [401, 401, 429]
    r = send("10.0.0.1")
    assert_error(r, 429, "rate_limited_ip")
    assert send("10.0.0.2").status == 401                 # another client, own bucket
    assert send("10.0.0.9, 10.0.0.1").status == 429       # last untrusted address is .1
    assert send("10.0.0.1, 10.0.0.7").status == 401       # last untrusted address is .7
    assert send("10.0.0.1, 127.0.0.1").status == 429      # trusted hops are skipped
    assert send().status == 401                           # no header: the peer itself


# --------------------------------------------------------------------- IPv6 prefixes
# Every per-address limit keys an IPv6 client by its RATE_LIMIT_IPV6_PREFIX
# (default 64): a host that owns a /64 must not mint fresh budgets, nor flush
# its own lockout out of the bucket table, by changing its interface id.

def _xff_send(gw, pkt, key):
    def send(addr, k=key):
        return gw.post_packet(pkt, key=k, headers=[("X-Forwarded-For", addr)])
    return send


def test_ipv6_addresses_of_one_prefix_share_the_ip_bucket(gateway_factory):
    gw, (dev, _) = gateway_factory({"RATE_LIMIT_IP_RPS": "0.01", "RATE_LIMIT_BURST": "2",
                                    "AUTH_FAIL_RPS": "0", "TRUSTED_PROXIES": "127.0.0.1/32"},
                                   provision=_provision_two, name="v6-ip")
    send = _xff_send(gw, dev.packet([(0, 1.0)]), dev.key)
    assert send("2001:db8:1:2::1").status == 200
    assert send("2001:db8:1:2:a:b:c:d").status == 200
    r = send("2001:db8:1:2:ffff:ffff:ffff:ffff")       # same /64: its bucket is spent
    assert_error(r, 429, "rate_limited_ip")
    assert send("2001:db8:1:3::1").status == 200        # the next /64 has its own
    assert send("10.0.0.1").status == 200                # IPv4 is keyed as it is
    assert send("10.0.0.1").status == 200
    assert_error(send("10.0.0.1"), 429, "rate_limited_ip")
    assert send("10.0.0.2").status == 200


def test_ipv6_addresses_of_one_prefix_share_the_failed_auth_budget(gateway_factory):
    # 16 buckets: were every address its own key, 40 addresses would evict the lockout
    gw, (dev, _) = gateway_factory({"AUTH_FAIL_RPS": "0.01", "AUTH_FAIL_BURST": "2",
                                    "RATE_LIMIT_MAX_BUCKETS": "16",
                                    "TRUSTED_PROXIES": "127.0.0.1/32"},
                                   provision=_provision_two, name="v6-auth")
    send = _xff_send(gw, dev.packet([(0, 1.0)]), "0" * 32)
    assert send("2001:db8:5:6::1").status == 401
    assert send("2001:db8:5:6::2").status == 401
    for i in range(40):
        assert_error(send(f"2001:db8:5:6:{i:x}::{i + 7:x}"), 429, "rate_limited_auth")
    assert_error(send("2001:db8:5:6::99", dev.key), 429, "rate_limited_auth")
    assert send("2001:db8:5:7::1", dev.key).status == 200     # another /64
    assert send("2001:db8:5:6::1", None).status == 429        # still locked


def test_ipv6_prefix_128_keys_every_address_alone(gateway_factory):
    gw, (dev, _) = gateway_factory({"RATE_LIMIT_IP_RPS": "0.01", "RATE_LIMIT_BURST": "2",
                                    "AUTH_FAIL_RPS": "0.01", "AUTH_FAIL_BURST": "1",
                                    "RATE_LIMIT_IPV6_PREFIX": "128",
                                    "TRUSTED_PROXIES": "127.0.0.1/32"},
                                   provision=_provision_two, name="v6-128")
    send = _xff_send(gw, dev.packet([(0, 1.0)]), dev.key)
    assert send("2001:db8:1:2::1", "0" * 32).status == 401
    assert_error(send("2001:db8:1:2::1"), 429, "rate_limited_auth")
    assert send("2001:db8:1:2::2").status == 200
    assert send("2001:db8:1:2::2").status == 200
    assert_error(send("2001:db8:1:2::2"), 429, "rate_limited_ip")
    assert send("2001:db8:1:2::3").status == 200


# --------------------------------------------------------------------- cache TTL

def test_disable_takes_effect_within_cache_ttl(gateway_factory):
    gw, dev = gateway_factory({"SENSOR_CACHE_TTL_S": "1"},
                              provision=lambda c: provision_device(c, 2), name="ttl")
    cli = gw.cli
    r = gw.post_packet(dev.packet([(0, 1.0), (1, 1.0)]), key=dev.key)
    assert r.status == 200 and r.json()["accepted"] == 2, r
    # warm the cache again, then disable the sensor behind the gateway's back
    assert gw.post_packet(dev.packet([(0, 2.0)]), key=dev.key).status == 200
    t0 = time.monotonic()
    assert cli.run("sensor", "disable", dev.sensors[0].uuid).returncode == 0

    def sensor_rejected():
        x = gw.post_packet(dev.packet([(0, 3.0), (1, 3.0)]), key=dev.key)
        assert x.status == 200, x
        rej = x.json()["rejected"]
        return rej if rej else None

    rej = wait_until(sensor_rejected, timeout=10, interval=0.1, what="sensor disable")
    took = time.monotonic() - t0
    print(f"sensor disable honoured after {took:.2f}s (TTL 1s)")
    assert rej == [{"index": 0, "sensor_uuid": dev.sensors[0].uuid, "reason": "unknown_sensor"}]
    assert took < 5, took

    t0 = time.monotonic()
    assert cli.run("device", "disable", dev.uuid).returncode == 0

    def device_refused():
        x = gw.post_packet(dev.packet([(1, 4.0)]), key=dev.key)
        return x if x.status == 403 else None

    r = wait_until(device_refused, timeout=10, interval=0.1, what="device disable")
    took = time.monotonic() - t0
    print(f"device disable honoured after {took:.2f}s (TTL 1s)")
    assert_error(r, 403, "device_inactive")
    assert took < 5, took
    before = gw.db.counts()
    assert gw.post_packet(dev.packet([(1, 5.0)]), key=dev.key).status == 403
    assert gw.db.counts() == before


# --------------------------------------------------------------------- secrets

def test_no_key_in_logs(gateway_factory):
    gw, dev = gateway_factory({"LOG_LEVEL": "debug"},
                              provision=lambda c: provision_device(c, 1), name="logkeys")
    wrong = "WRONGKEY" + uid().replace("-", "")
    bad_api = "BADAPI" + uid().replace("-", "")
    assert gw.post_packet(dev.packet([(0, 1.0)]), key=dev.key).status == 200
    assert gw.post_packet(dev.packet([(0, 1.0)]), key=wrong).status == 401
    assert gw.post_packet(dev.packet([(0, 1.0)]), api_key=API_KEY).status == 200
    assert gw.post_packet(dev.packet([(0, 1.0)]), api_key=bad_api).status == 401
    assert gw.status(dev.uuid, key=dev.key).status == 200
    assert gw.post("/ingest/readings", {"sensor_id": dev.sensors[0].id, "value": 2.0,
                                        "timestamp": iso_ms(now_ms() - 1000)},
                   headers=[("X-API-Key", API_KEY)]).status == 201
    assert gw.stop() == 0
    log = gw.log_text()
    assert log.strip(), "gateway wrote no log at all at LOG_LEVEL=debug"
    for secret in (dev.key, wrong, API_KEY, bad_api):
        assert secret not in log, f"a key appears in the log: {secret[:6]}..."


def test_device_added_after_a_miss_is_seen_within_the_negative_ttl(gateway_factory):
    gw, _ = gateway_factory({"SENSOR_CACHE_NEGATIVE_TTL_S": "2", "AUTH_FAIL_RPS": "0"},
                            name="negttl")
    cli = gw.cli
    d_uuid, s_uuid, key = uid("late-"), uid("sen-"), random_key()
    pkt = {"device_uuid": d_uuid, "readings": [{"sensor_uuid": s_uuid, "value": 1.0}]}

    def cache(result):
        return metric_value(scrape(gw), "iot_ingest_cache_requests_total", f'result="{result}"')

    # a device that sends before it is provisioned: one query, then the negative entry
    assert_error(gw.post_packet(pkt, key=key), 401, "unauthorized")
    misses = cache("miss")
    for _ in range(5):
        assert_error(gw.post_packet(pkt, key=key), 401, "unauthorized")
    assert cache("miss") == misses, "an unknown device queried the database again"
    assert cache("negative_hit") >= 5

    t0 = time.monotonic()
    assert cli.run("device", "add", "--uuid", d_uuid, "--name", "late", "--key", key
                   ).returncode == 0
    assert cli.run("sensor", "add", "--device", d_uuid, "--uuid", s_uuid, "--name", "s",
                   "--type", "temperature", "--unit", "C").returncode == 0
    r = wait_until(lambda: (lambda x: x if x.status == 200 else None)(
        gw.post_packet(pkt, key=key)), timeout=10, interval=0.1, what="device visible")
    took = time.monotonic() - t0
    print(f"device added after a miss visible after {took:.2f}s (negative TTL 2s)")
    assert r.json()["accepted"] == 1
    assert took < 2 + 1.5, took
