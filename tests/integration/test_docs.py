"""The documentation cannot drift from the binary: every setting the binary
knows (from its generated `help settings`) is described in docs/configuration.md, and
every subcommand in --help is in the README or docs."""
import re
import subprocess
from pathlib import Path

from conftest import BIN, ROOT


def _help(*args):
    p = subprocess.run([BIN, *args, "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_every_setting_is_documented():
    p = subprocess.run([BIN, "help", "settings"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    envs = re.findall(r"^\s+--[a-z0-9-]+\s+([A-Z][A-Z0-9_]+)\s", p.stdout, re.M)
    assert len(envs) > 30, envs
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = [e for e in envs if f"`{e}`" not in doc]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"


def test_every_subcommand_is_documented():
    top = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=30).stdout
    cmds = re.findall(r"^  ([a-z]+(?: [a-z]+)?)\s{2,}", top, re.M)
    assert "serve" in cmds and "job baseline" in cmds, cmds
    docs = (ROOT / "docs" / "configuration.md").read_text() + (ROOT / "README.md").read_text()
    missing = [c for c in cmds if c not in docs]
    assert not missing, f"subcommands missing from README.md/docs/configuration.md: {missing}"
