"""The benchmark scripts run (quick mode) and report every row; their numbers are not judged."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "bench_peer.py"
ROWS = ("A in-loop", "A hub", "B in-loop", "B hub")
WATCHDOG_SCRIPT = BENCHMARKS / "bench_watchdog.py"
WATCHDOG_ROWS = ("echo", "writes", "loop")
PROXY_SCRIPT = BENCHMARKS / "bench_proxy.py"
PROXY_ROWS = ("sink hub", "sink in-loop", "echo hub", "echo in-loop")


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


def run_bench_proxy(report: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(PROXY_SCRIPT), "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_bench_proxy_quick(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    stdout = run_bench_proxy(report)
    verdicts = "PASS|MISS" if shutil.which("socat") else "SKIP"
    for row in PROXY_ROWS:
        pattern = rf"^{row}\s+.*\d\.\d\d\s+\d\.\d\d\s+({verdicts})$"
        assert re.search(pattern, stdout, re.MULTILINE), f"no {row!r} row in:\n{stdout}"
    results = json.loads(report.read_text())
    assert [row["label"] for row in results["rows"]] == list(PROXY_ROWS)
    for row in results["rows"]:
        assert row["fakepeer_over_bare"] > 0
        assert {"direct", "bare", "fakepeer"} <= set(row["mb_per_s"])
        if shutil.which("socat"):
            assert row["fakepeer_over_socat"] > 0
    # The transcript keeps what the proxy relayed: about 1 MiB per MiB each way, the bare
    # forwarder nothing.
    memory = results["memory"]
    kept = {(m["workload"], m["host"], m["contender"]): m["kept"] / m["mib"] for m in memory}
    assert kept[("sink", "hub", "fakepeer")] > 0.5 * 2**20
    assert kept[("sink", "hub", "bare")] < 0.1 * 2**20


def test_bench_proxy_reports_missing_socat(tmp_path: Path) -> None:
    """Without the socat binary, socat is reported as skipped, never silently left out."""
    report = tmp_path / "bench.json"
    stdout = run_bench_proxy(report, env={**os.environ, "PATH": str(tmp_path)})
    assert "skipped: socat not installed" in stdout
    for row in PROXY_ROWS:
        assert re.search(rf"^{row}\s+.*\sskipped\s.*SKIP$", stdout, re.MULTILINE), stdout
    results = json.loads(report.read_text())
    assert results["socat"] == "skipped: socat not installed"
    assert all(row["verdict"] == "SKIP" for row in results["rows"])
