"""Job runs happen in other processes; each run is added to job_stats and every
gateway exports it in /metrics (runs by result, duration histogram, last success)."""

from conftest import metric_value, provision_device, sqlite_only


def test_job_runs_are_exported_by_the_gateway(gateway_factory):
    g, dev = gateway_factory(provision=lambda c: provision_device(c, 1), name="jobmetrics")
    assert g.post_packet(dev.packet([(0, 5.0)]), key=dev.key).status == 200
    for _ in range(2):
        p = g.cli.run("job", "baseline")
        assert p.returncode == 0, p.stderr
    p = g.cli.run("job", "explain", env={"AI_EXPLAINER_URL": "http://127.0.0.1:9"})
    assert p.returncode == 0, p.stderr
    text = g.get("/metrics").body.decode()
    assert metric_value(text, "iot_ingest_job_runs_total", 'job="baseline",result="ok"') == 2
    assert metric_value(text, "iot_ingest_job_runs_total", 'job="baseline",result="failed"') == 0
    assert metric_value(text, "iot_ingest_job_runs_total", 'job="explain",result="ok"') == 1
    assert metric_value(text, "iot_ingest_job_duration_seconds_count", 'job="baseline"') == 2
    assert metric_value(text, "iot_ingest_job_duration_seconds_bucket",
                        'job="baseline",le="+Inf"') == 2
    last = metric_value(text, "iot_ingest_job_last_success_timestamp_seconds", 'job="baseline"')
    assert last is not None and last > 1.7e9


def test_a_job_that_cannot_run_is_counted_failed(gateway_factory, tmp_path):
    sqlite_only("edits schema_version in the SQLite file directly")
    g, _ = gateway_factory(name="jobfail")
    # A database newer than the binary makes the job refuse to run after opening it.
    import sqlite3
    c = sqlite3.connect(str(g.db_path), isolation_level=None)
    c.execute("INSERT INTO schema_version VALUES (999)")
    c.close()
    p = g.cli.run("job", "baseline")
    assert p.returncode != 0
    c = sqlite3.connect(str(g.db_path), isolation_level=None)
    c.execute("DELETE FROM schema_version WHERE version = 999")
    c.close()
    text = g.get("/metrics").body.decode()
    assert metric_value(text, "iot_ingest_job_runs_total", 'job="baseline",result="failed"') == 1
