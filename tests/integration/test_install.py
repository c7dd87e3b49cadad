"""
`make install`: packaging/install.sh (what the Makefile target runs) into a
temporary prefix, with and without DESTDIR. Checks the files and modes, that
the manual page and the environment file name every setting of the table
(src/core/config.h) and every command, that the page renders without groff
warnings, that every value of the environment file is accepted by the
binary, and that `systemd-analyze verify` accepts the units (offline; no
systemd needs to run).
"""

import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import BIN, ROOT, base_env

INSTALL_SH = ROOT / "packaging" / "install.sh"
FILES = {
    "bin/iot-ingest": 0o755,
    "share/man/man1/iot-ingest.1": 0o644,
    "lib/systemd/system/iot-ingest.service": 0o644,
    "lib/systemd/system/iot-ingest-jobs.service": 0o644,
    "share/doc/iot-ingest/iot-ingest.env.example": 0o644,
    "share/doc/iot-ingest/nginx-tls.conf": 0o644,
}
HARDENING = [
    "DynamicUser=yes", "ProtectSystem=strict", "StateDirectory=iot-ingest", "ProtectHome=yes",
    "NoNewPrivileges=yes", "PrivateTmp=yes", "PrivateDevices=yes", "RestrictNamespaces=yes",
    "SystemCallFilter=@system-service", "CapabilityBoundingSet=", "MemoryDenyWriteExecute=yes",
    "Environment=DATABASE_URL=sqlite:/var/lib/iot-ingest/iot-ingest.db",
    "EnvironmentFile=-/etc/iot-ingest/iot-ingest.env",
]


def settings_table():
    """(ENV, type) of every row of CONFIG_SETTINGS, read from the header itself."""
    text = (ROOT / "src" / "core" / "config.h").read_text()
    rows = re.findall(r'X\((INT|DBL|STR),\s*\w+,\s*"([A-Z0-9_]+)"', text)
    assert len(rows) > 20, "could not read CONFIG_SETTINGS from src/core/config.h"
    return [(env, typ) for typ, env in rows]


def commands():
    """Command names as `iot-ingest --help` lists them."""
    p = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    names = []
    for line in p.stdout.splitlines():
        m = re.match(r"^  (\S+(?: [a-z]+)?)\s{2,}\S", line)
        if m:
            names.append(m.group(1))
    assert "serve" in names and "db init" in names, p.stdout
    return names


def install(prefix, destdir=None):
    env = dict(os.environ, PREFIX=str(prefix))
    env.pop("DESTDIR", None)
    if destdir is not None:
        env["DESTDIR"] = str(destdir)
    p = subprocess.run(["sh", str(INSTALL_SH), BIN], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, f"install.sh failed: {p.stdout}{p.stderr}"
    return p


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """An install with DESTDIR, as a package build does it."""
    dest = tmp_path_factory.mktemp("destdir")
    prefix = "/opt/iot-ingest-itest"
    install(prefix, dest)
    return dest, prefix


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """An install straight into a prefix (no DESTDIR): ExecStart points at a real file."""
    prefix = tmp_path_factory.mktemp("prefix")
    install(prefix)
    return prefix


def test_make_install_runs_packaging_install_sh():
    p = subprocess.run(["make", "-n", "-o", "build/iot-ingest", "install", "PREFIX=/usr",
                        "DESTDIR=/tmp/stage"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert re.search(r'DESTDIR="/tmp/stage" PREFIX="/usr" SYSCONFDIR="/etc"', p.stdout), p.stdout
    assert "packaging/install.sh build/iot-ingest" in p.stdout, p.stdout


def test_files_and_modes_under_destdir(staged):
    dest, prefix = staged
    root = dest / prefix.lstrip("/")
    for rel, mode in FILES.items():
        f = root / rel
        assert f.is_file(), f"{rel} not installed"
        assert stat.S_IMODE(f.stat().st_mode) == mode, f"{rel}: mode {oct(f.stat().st_mode)}"
    assert not os.path.exists(prefix), "DESTDIR ignored: files written to the real prefix"
    # the installed binary is the built one and runs
    p = subprocess.run([str(root / "bin/iot-ingest"), "--version"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith("iot-ingest "), p


def test_units_point_at_the_prefix_not_destdir(staged):
    dest, prefix = staged
    for unit in ("iot-ingest.service", "iot-ingest-jobs.service"):
        text = (dest / prefix.lstrip("/") / "lib/systemd/system" / unit).read_text()
        assert "@" + "BINDIR@" not in text and "@SYSCONFDIR@" not in text, unit
        assert str(dest) not in text, f"{unit} mentions DESTDIR"
        cmd = "serve" if unit == "iot-ingest.service" else "jobs"
        assert f"ExecStart={prefix}/bin/iot-ingest {cmd}\n" in text, text
        for line in HARDENING:
            assert re.search(rf"^{re.escape(line)}$", text, re.M), f"{unit}: no {line}"
        assert re.search(r"^RestrictAddressFamilies=.*AF_INET6", text, re.M), unit


def test_man_page_names_every_setting_and_command(staged):
    dest, prefix = staged
    page = (dest / prefix.lstrip("/") / "share/man/man1/iot-ingest.1").read_text()
    assert page.startswith(".\\\" Generated by `iot-ingest man`"), page[:200]
    assert re.search(r'^\.TH IOT\\-INGEST 1 ', page, re.M)
    for sec in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "ENVIRONMENT", "EXIT STATUS"):
        assert f".SH {sec}\n" in page, sec
    for env, _ in settings_table():
        flag = "\\-\\-" + env.lower().replace("_", "\\-")
        assert f"\\fB{env}\\fR, \\fB{flag}\\fR" in page, f"{env} missing from the man page"
    for name in commands():
        assert f"\\fB{name.replace('-', chr(92) + '-')}\\fR" in page, f"command {name!r} missing"
    assert "\\fBman\\fR \\fI[env]\\fR" in page, "the man command is not documented"
    m = re.search(r'^\.TH IOT\\-INGEST 1 "(\d{4}-\d\d-\d\d)" ', page, re.M)
    assert m, "the .TH line carries no date"


def test_man_page_renders_cleanly(staged, tmp_path):
    dest, prefix = staged
    page = dest / prefix.lstrip("/") / "share/man/man1/iot-ingest.1"
    groff = shutil.which("groff")
    man = shutil.which("man")
    if not groff and not man:
        pytest.skip("neither groff nor man is installed")
    if groff:
        p = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0 and not p.stderr.strip(), p.stderr
    if man:
        env = dict(os.environ, MANWIDTH="80", LANG="C.UTF-8", MAN_KEEP_FORMATTING="0")
        p = subprocess.run([man, "-l", str(page)], capture_output=True, text=True, timeout=60,
                           env=env)
        assert p.returncode == 0, p.stderr
        text = re.sub(r".\x08", "", p.stdout)
        assert "iot-ingest - ingest gateway" in text
        assert "DATABASE_URL" in text and "db init" in text


def env_lines(text):
    return re.findall(r"^#([A-Z][A-Z0-9_]*)=(.*)$", text, re.M)


def test_env_example_has_every_setting_commented(staged):
    dest, prefix = staged
    text = (dest / prefix.lstrip("/") / "share/doc/iot-ingest/iot-ingest.env.example").read_text()
    pairs = env_lines(text)
    names = [n for n, _ in pairs]
    table = [env for env, _ in settings_table()]
    assert names == table, f"env example out of step with the table: {set(names) ^ set(table)}"
    live_lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert live_lines == [], f"settings must be commented out: {live_lines}"
    assert "sqlite:/var/lib/iot-ingest/iot-ingest.db" in text


def test_env_example_values_are_accepted(staged, tmp_path):
    """Uncommenting every line of the example gives a configuration the binary accepts."""
    dest, prefix = staged
    text = (dest / prefix.lstrip("/") / "share/doc/iot-ingest/iot-ingest.env.example").read_text()
    values = dict(env_lines(text))
    types = dict(settings_table())
    bad = [f"{n}={v}" for n, v in values.items()
           if types[n] == "INT" and not re.fullmatch(r"-?\d+", v)]
    assert not bad, f"integer settings whose default is not written as an integer: {bad}"
    values["DATABASE_URL"] = f"sqlite:{tmp_path / 'env.db'}"
    p = subprocess.run([BIN, "db", "init"], env=base_env(tmp_path / "env.db", values),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"the binary refuses the example's values: {p.stderr}"


def test_systemd_analyze_verify_accepts_the_units(live):
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    unitdir = live / "lib/systemd/system"
    units = [unitdir / "iot-ingest.service", unitdir / "iot-ingest-jobs.service"]
    for u in units:
        assert f"ExecStart={live}/bin/iot-ingest " in u.read_text()
    env = dict(os.environ, MANPATH=str(live / "share/man"), SYSTEMD_LOG_LEVEL="warning")
    p = subprocess.run([exe, "verify", *map(str, units)], capture_output=True, text=True,
                       timeout=120, env=env, cwd=unitdir)
    ours = [ln for ln in (p.stdout + p.stderr).splitlines() if "iot-ingest" in ln]
    assert p.returncode == 0 and not ours, (
        f"systemd-analyze verify exited {p.returncode}:\n{p.stdout}{p.stderr}")


def test_systemd_analyze_security_rates_the_gateway_ok(live):
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    unit = live / "lib/systemd/system/iot-ingest.service"
    p = subprocess.run([exe, "security", "--offline=true", "--no-pager", str(unit)],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout + p.stderr)
    if not m:
        pytest.skip(f"this systemd-analyze has no offline security check: {p.stderr.strip()}")
    assert float(m.group(1)) <= 2.0, p.stdout
