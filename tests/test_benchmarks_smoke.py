"""The benchmark script runs (quick mode) and reports every row; its numbers are not judged."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_peer.py"
ROWS = ("A in-loop", "A hub", "B in-loop", "B hub")


def test_bench_peer_quick(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for row in ROWS:
        pattern = rf"^{row}\s+.*\d\.\d\d\s+\d\.\d\d\s+(PASS|MISS)$"
        assert re.search(pattern, done.stdout, re.MULTILINE), f"no {row!r} row in:\n{done.stdout}"
    results = json.loads(report.read_text())
    assert [row["label"] for row in results["rows"]] == list(ROWS)
    assert all(row["ratio"] > 0 for row in results["rows"])
