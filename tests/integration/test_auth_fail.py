"""Credential guessing: failed authentications count against a stricter budget
per pair of client address and claimed identity (AUTH_FAIL_RPS /
AUTH_FAIL_BURST; the identity is the device named, or the API key). Once a
pair has spent it, that pair gets 429 whatever key it sends, so guessing
learns nothing; other pairs of the same address (other devices behind one
NAT) and other addresses are unaffected. A looser budget per address
(AUTH_FAIL_ADDR_FACTOR times) caps how many fresh identities one address can
try, without ever refusing a correct key."""
from conftest import (API_KEY, assert_error, metric_value, provision_device, scrape, uid)


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


def _provision_two(cli):
    return provision_device(cli, n_sensors=1), provision_device(cli, n_sensors=1)


def test_a_locked_pair_does_not_lock_out_other_devices_of_the_address(gateway_factory):
    # issue 14: 25 wrong keys from one address locked every device behind it out
    g, (a, b) = gateway_factory(env={"AUTH_FAIL_RPS": "0.01", "AUTH_FAIL_BURST": "3",
                                     "RATE_LIMIT_IP_RPS": "0", "RATE_LIMIT_DEVICE_RPS": "0"},
                                provision=_provision_two)
    for _ in range(3):
        assert_error(g.post_packet(a.packet([(0, 1.0)]), key="f" * 32), 401, "unauthorized")
    # the pair (address, A) is locked: A's own key is refused, on every route
    r = g.post_packet(a.packet([(0, 1.0)]), key=a.key)
    assert_error(r, 429, "rate_limited_auth")
    assert int(r.headers["retry-after"]) >= 1
    assert_error(g.status(a.uuid, key=a.key), 429, "rate_limited_auth")
    # and it stays locked while the bad actor keeps trying
    assert_error(g.post_packet(a.packet([(0, 1.0)]), key="f" * 32), 429, "rate_limited_auth")
    # another device behind the same address is served, with its budget intact
    for i in range(3):
        r = g.post_packet(b.packet([(0, float(i))]), key=b.key)
        assert r.status == 200, r
    assert g.status(b.uuid, key=b.key).status == 200
    assert_error(g.post_packet(b.packet([(0, 1.0)]), key="e" * 32), 401, "unauthorized")
    assert g.post_packet(b.packet([(0, 9.0)]), key=b.key).status == 200
    assert g.db.reading_count(a.sensors[0].id) == 0
    assert g.db.reading_count(b.sensors[0].id) == 4


def test_the_api_key_is_one_identity_apart_from_the_devices(gateway_factory):
    g, (a, b) = gateway_factory(env={"AUTH_FAIL_RPS": "0.01", "AUTH_FAIL_BURST": "2",
                                     "RATE_LIMIT_IP_RPS": "0", "RATE_LIMIT_DEVICE_RPS": "0"},
                                provision=_provision_two)
    # lock the pair (address, A) with wrong device keys
    for _ in range(2):
        assert_error(g.post_packet(a.packet([(0, 1.0)]), key="f" * 32), 401)
    assert_error(g.post_packet(a.packet([(0, 1.0)]), key=a.key), 429, "rate_limited_auth")
    # the API key is another identity: it still writes for A
    assert g.post_packet(a.packet([(0, 1.0)]), api_key=API_KEY).status == 200
    # wrong API keys spend the API key's budget, whatever device they name
    assert_error(g.post_packet(b.packet([(0, 1.0)]), api_key="x" * 32), 401, "unauthorized")
    assert_error(g.post("/ingest/readings", {"sensor_id": b.sensors[0].id, "value": 1.0},
                        headers=[("X-API-Key", "y" * 32)]), 401, "unauthorized")
    for send in (lambda: g.post_packet(b.packet([(0, 1.0)]), api_key=API_KEY),
                 lambda: g.post_packet({**b.packet([(0, 1.0)]), "device_uuid": uid("new-")},
                                       api_key=API_KEY),
                 lambda: g.post("/ingest/readings", {"sensor_id": b.sensors[0].id, "value": 1.0},
                                headers=[("X-API-Key", API_KEY)]),
                 lambda: g.status(b.uuid, api_key=API_KEY),
                 # sending a device key too claims both identities: no fresh budget
                 lambda: g.post_packet(b.packet([(0, 1.0)]), key="z" * 32, api_key=API_KEY)):
        assert_error(send(), 429, "rate_limited_auth")
    # ... and leave every device's own key alone
    assert g.post_packet(b.packet([(0, 2.0)]), key=b.key).status == 200
    assert g.status(b.uuid, key=b.key).status == 200
    assert g.db.reading_count(a.sensors[0].id) == 1
    assert g.db.reading_count(b.sensors[0].id) == 1


def test_the_address_budget_caps_fresh_identities_never_a_correct_key(gateway_factory):
    # AUTH_FAIL_BURST 2 per pair; 2 x 3 = 6 failures per address, all identities together
    g, dev = gateway_factory(env={"AUTH_FAIL_RPS": "0.01", "AUTH_FAIL_BURST": "2",
                                  "AUTH_FAIL_ADDR_FACTOR": "3", "RATE_LIMIT_IP_RPS": "0",
                                  "RATE_LIMIT_DEVICE_RPS": "0"}, provision=_provision)

    def ghost(u):
        return {"device_uuid": u, "readings": [{"sensor_uuid": dev.sensors[0].uuid, "value": 1}]}

    for _ in range(6):
        assert_error(g.post_packet(ghost(uid("ghost-")), key="f" * 32), 401, "unauthorized")
    # past the address budget: a fresh made-up device gets one try, answered 429 ...
    past = uid("ghost-")
    r = g.post_packet(ghost(past), key="f" * 32)
    assert_error(r, 429, "rate_limited_auth")
    assert int(r.headers["retry-after"]) >= 1
    # ... which emptied that pair's budget: it is refused before any lookup now
    assert_error(g.post_packet(ghost(past), key="f" * 32), 429, "rate_limited_auth")
    # a correct key is still accepted (the address budget never refuses one)
    for i in range(3):
        r = g.post_packet(dev.packet([(0, float(i))]), key=dev.key)
        assert r.status == 200, r
    # a wrong key for the real device past the budget is 429 like an unknown device
    # (existence does not leak), and it uses up that pair at once
    wrong = g.post_packet(dev.packet([(0, 1.0)]), key="e" * 32)
    unknown = g.post_packet(ghost(uid("ghost-")), key="e" * 32)
    assert_error(wrong, 429, "rate_limited_auth")
    assert wrong.json() == unknown.json()
    assert_error(g.post_packet(dev.packet([(0, 1.0)]), key=dev.key), 429, "rate_limited_auth")
    assert g.db.reading_count(dev.sensors[0].id) == 3
    m = scrape(g)
    assert metric_value(m, "iot_ingest_auth_failures_total") == 9
    assert metric_value(m, "iot_ingest_rate_limited_total", 'limit="auth"') == 5


def test_address_budget_off(gateway_factory):
    g, dev = gateway_factory(env={"AUTH_FAIL_RPS": "0.01", "AUTH_FAIL_BURST": "1",
                                  "AUTH_FAIL_ADDR_FACTOR": "0", "RATE_LIMIT_IP_RPS": "0"},
                             provision=_provision)
    for _ in range(30):
        r = g.post_packet({"device_uuid": uid("ghost-"), "readings": [
            {"sensor_uuid": dev.sensors[0].uuid, "value": 1}]}, key="f" * 32)
        assert_error(r, 401, "unauthorized")
