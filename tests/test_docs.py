"""The documentation's examples run as tests.

Every ```python block in README.md and docs/*.md whose first line is ``# test_<name>.py`` is
written to a scratch directory under that name and run with pytest; all its tests must pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trustme  # noqa: F401 - loaded here: an in-process pytester run that loads it first unloads it after, and trustme breaks

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(# (test_\w+\.py)\n.*?)^```", re.MULTILINE | re.DOTALL)


def examples() -> list[tuple[str, str, str]]:
    found = []
    for document in DOCUMENTS:
        for match in BLOCK.finditer(document.read_text(encoding="utf-8")):
            found.append((document.name, match[2], match[1]))
    return found


def test_the_docs_have_examples() -> None:
    names = [name for _, name, _ in examples()]
    assert "test_readme_example.py" in names
    assert "test_seed_rewritten.py" in names
    assert len(names) == len(set(names)), "two examples share a file name"


@pytest.mark.parametrize(
    ("document", "name", "source"), examples(), ids=[name for _, name, _ in examples()]
)
def test_example_passes(pytester: pytest.Pytester, document: str, name: str, source: str) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "addopts = -p no:hypothesispytest\n"
    )
    pytester.path.joinpath(name).write_text(source, encoding="utf-8")
    result = pytester.runpytest("-W", "error", name)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1, f"{document}: {name} ran no passing test"
    assert result.ret == pytest.ExitCode.OK, f"{document}: {name} failed:\n{result.stdout.str()}"
