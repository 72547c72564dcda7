"""The benchmark scripts run (quick mode) and report every row; their numbers are not judged."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "bench_peer.py"
ROWS = ("A in-loop", "A hub", "B in-loop", "B hub")
WATCHDOG_SCRIPT = BENCHMARKS / "bench_watchdog.py"
WATCHDOG_ROWS = ("echo", "writes", "loop")


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


def test_bench_watchdog_quick(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(WATCHDOG_SCRIPT), "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for row in WATCHDOG_ROWS:
        pattern = rf"^{row}\s+.*\d\.\d{{3}}\s+\d\.\d{{3}}\s+\d\.\d{{3}}\s+(PASS|MISS)$"
        assert re.search(pattern, done.stdout, re.MULTILINE), f"no {row!r} row in:\n{done.stdout}"
    results = json.loads(report.read_text())
    assert [row["label"] for row in results["rows"]] == list(WATCHDOG_ROWS)
    assert all(row["ratio"] > 0 for row in results["rows"])
    # Both variants measured what they claim: plain loops on the plain default selector,
    # watched ones on the watchdog's, and no sample ever blocked its loop.
    assert not any(name.startswith("Watched") for name in results["selectors"]["plain"])
    assert all(name.startswith("Watched") for name in results["selectors"]["watched"])
    assert results["alarms"] == 0
