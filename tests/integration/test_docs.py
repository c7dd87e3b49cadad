"""The documentation cannot drift from the binary or the tree: every setting
the binary knows (from its generated `help settings`) is described in
docs/configuration.md, every subcommand in --help is in the README or docs,
and docs/architecture.md names every file of src/ and no file that is gone."""
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


def _named_files(text):
    """File names in `backticks`: `a.c`, `src/x/a.c`, and `a.h/.c` (a.h and a.c)."""
    names = set()
    for tok in re.findall(r"`([^`\s]+)`", text):
        m = re.fullmatch(r"(.*\w)\.h/\.c", tok)
        if m:
            names |= {m.group(1) + ".h", m.group(1) + ".c"}
        elif "*" not in tok and re.search(r"\w\.(c|h|py|sh|lua|in)$", tok):
            names.add(tok)
    return names


def test_architecture_names_every_src_file_and_only_real_files():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    named = _named_files(doc)
    tree = [p.relative_to(ROOT) for d in ("src", "tests", "bench", "scripts", "packaging")
            for p in (ROOT / d).rglob("*") if p.is_file()]
    basenames = {p.name for p in tree}
    gone = sorted(n for n in named
                  if not ((ROOT / n).is_file() if "/" in n else n in basenames))
    assert not gone, f"docs/architecture.md names files that do not exist: {gone}"
    unnamed = sorted(str(p) for p in tree if p.parts[0] == "src" and p.suffix in (".c", ".h")
                     and p.name not in named and str(p) not in named)
    assert not unnamed, f"src/ files docs/architecture.md does not name: {unnamed}"


def test_docs_carry_no_commit_stamps():
    """ "Checked against commit …" went stale within days; the tests above guard instead."""
    for page in ("configuration.md", "architecture.md", "jobs.md"):
        text = (ROOT / "docs" / page).read_text()
        assert not re.search(r"(checked against|on top of) commit", text, re.I), page
