"""One version everywhere: `iot-ingest --version`, `iot-ingest version`,
GET /health, iot_ingest_build_info in /metrics, the man page, the Makefile's
VERSION and info.version of docs/openapi.yaml."""

import re
import subprocess

from conftest import BIN, ROOT


def cli_version():
    p = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    m = re.fullmatch(r"iot-ingest (\d+\.\d+\.\d+\S*)\n", p.stdout)
    assert m, f"--version printed {p.stdout!r}"
    return m.group(1)


def test_version_flag_and_subcommand_agree():
    v = cli_version()
    p = subprocess.run([BIN, "version"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout == f"iot-ingest {v}\n", p


def test_health_reports_the_binary_version(gw):
    r = gw.get("/health")
    assert r.status == 200, r
    assert r.json()["version"] == cli_version()


def test_metrics_build_info_reports_the_binary_version(gw):
    text = gw.get("/metrics").body.decode()
    assert f'iot_ingest_build_info{{version="{cli_version()}"}} 1' in text


def test_man_page_reports_the_binary_version():
    p = subprocess.run([BIN, "man"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    th = re.search(r'^\.TH .*"iot\\-ingest ([^"]+)"', p.stdout, re.M)
    assert th and th.group(1) == cli_version(), th and th.group(0)


def test_makefile_and_openapi_carry_the_same_version():
    v = cli_version()
    mk = re.search(r"^VERSION\s*[:?]?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert mk and mk.group(1) == v, "Makefile VERSION differs from the binary (stale build?)"
    spec = (ROOT / "docs" / "openapi.yaml").read_text()
    info = re.search(r"^info:\n(?:  .*\n)*?  version: (\S+)$", spec, re.M)
    assert info and info.group(1) == v, "info.version in docs/openapi.yaml"
