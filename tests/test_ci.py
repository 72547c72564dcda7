"""``.ci/run`` runs the README's test command: the two name the same pytest arguments."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(
        r"^python3 -m venv \.venv && \.venv/bin/pip install -e '\.\[test\]' && "
        r"\.venv/bin/python -m pytest(.*)$",
        readme,
        re.MULTILINE,
    )
    assert len(commands) == 1, commands
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    arrays = re.findall(r"^readme_pytest=\((.*)\)$", ci, re.MULTILINE)
    assert arrays == [commands[0].strip()]
    assert '-m pytest "${readme_pytest[@]}"' in ci


def test_ci_installs_tshark_for_the_pcapng_tests() -> None:
    """tests/test_pcapng_tshark.py needs Debian's tshark: .ci/run installs it as root, with
    no question asked (the debconf one about capturing as non-root is answered first), before
    the tests run."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = ci.index("DEBIAN_FRONTEND=noninteractive apt-get install -y -q tshark")
    assert "wireshark-common/install-setuid boolean false" in ci[:install]
    called = ci.index('install_tshark || fail "tshark install"')
    assert called < ci.index('run_pytest "Python $version: pytest"')
