"""Credential guessing: failed authentications count against a stricter per-IP
budget (AUTH_FAIL_RPS / AUTH_FAIL_BURST). Once it is spent the IP gets 429
whatever key it sends, so guessing learns nothing; other IPs are unaffected."""
from conftest import assert_error, provision_device


def _provision(cli):
    return provision_device(cli, n_sensors=1)


def test_guessing_is_refused_even_with_the_right_key(gateway_factory):
    g, dev = gateway_factory(env={"AUTH_FAIL_RPS": "0.01", "AUTH_FAIL_BURST": "3",
                                  "RATE_LIMIT_IP_RPS": "0"}, provision=_provision)
    pkt = dev.packet([(0, 1.0)])
    for _ in range(3):
        assert_error(g.post_packet(pkt, key="f" * 32), 401, "unauthorized")
    # Budget spent: the correct key is refused too, with a Retry-After.
    r = g.post_packet(pkt, key=dev.key)
    assert_error(r, 429, "rate_limited_auth")
    assert int(r.headers["retry-after"]) >= 1
    r = g.status(dev.uuid, key=dev.key)
    assert_error(r, 429, "rate_limited_auth")
    assert g.db.reading_count(dev.sensors[0].id) == 0
    metrics = g.get("/metrics").body.decode()
    assert 'iot_ingest_rate_limited_total{limit="auth"} 2' in metrics


def test_successful_requests_do_not_spend_the_budget(gateway_factory):
    g, dev = gateway_factory(env={"AUTH_FAIL_RPS": "0.01", "AUTH_FAIL_BURST": "2",
                                  "RATE_LIMIT_IP_RPS": "0", "RATE_LIMIT_DEVICE_RPS": "0"},
                             provision=_provision)
    for i in range(10):
        r = g.post_packet(dev.packet([(0, float(i))]), key=dev.key)
        assert r.status == 200, r
    assert_error(g.post_packet(dev.packet([(0, 1.0)]), key="0" * 32), 401, "unauthorized")
    r = g.post_packet(dev.packet([(0, 20.0)]), key=dev.key)
    assert r.status == 200, r


def test_budget_off(gateway_factory):
    g, dev = gateway_factory(env={"AUTH_FAIL_RPS": "0", "RATE_LIMIT_IP_RPS": "0"},
                             provision=_provision)
    for _ in range(50):
        assert_error(g.post_packet(dev.packet([(0, 1.0)]), key="e" * 32), 401, "unauthorized")
    assert g.post_packet(dev.packet([(0, 1.0)]), key=dev.key).status == 200
