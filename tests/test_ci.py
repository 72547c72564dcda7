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
