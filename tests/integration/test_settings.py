"""Settings reach the gateway, from the environment and from the derived flags
(the flag wins) (SPEC §5 limits, §8)."""

from conftest import assert_error, dumps, iso_ms, now_ms, provision_device


def test_limits_from_env(gateway_factory):
    gw, dev = gateway_factory({"MAX_READINGS_PER_PACKET": "5", "MAX_BODY_BYTES": "4096",
                               "MAX_FUTURE_SKEW_S": "10", "MAX_PAST_AGE_S": "60"},
                              provision=lambda c: provision_device(c, 1), name="limits")
    before = gw.db.counts()
    r = gw.post_packet(dev.packet([(0, float(i)) for i in range(6)]), key=dev.key)
    assert_error(r, 400, "invalid_request", detail_contains="readings")
    big = dumps(dev.packet([(0, 1.0)])) + b" " * 4096
    assert_error(gw.post_packet(raw=big, key=dev.key), 413, "body_too_large")
    now = now_ms()
    r = gw.post_packet(dev.packet([(0, 1.0, iso_ms(now - 120_000)),
                                   (0, 2.0, iso_ms(now + 60_000))]), key=dev.key)
    body = assert_error(r, 422, "no_valid_readings")
    assert [x["reason"] for x in body["rejected"]] == ["stale_timestamp", "future_timestamp"]
    assert gw.db.counts() == before
    r = gw.post_packet(dev.packet([(0, float(i), iso_ms(now - 30_000 + i)) for i in range(5)]),
                       key=dev.key)
    assert r.status == 200 and r.json()["accepted"] == 5, r


def test_flags_override_env(tmp_path):
    from conftest import Cli, Gateway
    c = Cli(tmp_path / "f.db")
    c.init()
    dev = provision_device(c, 1)
    g = Gateway(tmp_path / "f.db", tmp_path,
                env={"RATE_LIMIT_IP_RPS": "0", "MAX_READINGS_PER_PACKET": "1000"},
                name="flags")
    g.start(extra_args=["--rate-limit-ip-rps", "0.1", "--rate-limit-burst=2",
                        "--max-readings-per-packet", "2"])
    try:
        r = g.post_packet(dev.packet([(0, 1.0), (0, 2.0), (0, 3.0)]), key=dev.key)
        assert_error(r, 400, "invalid_request", detail_contains="readings")
        r = g.post_packet(dev.packet([(0, 1.0)]), key=dev.key)
        assert r.status == 200, r
        r = g.post_packet(dev.packet([(0, 1.0)]), key=dev.key)
        assert_error(r, 429, "rate_limited_ip")
    finally:
        assert g.stop() == 0
