"""The benchmarks run (quick mode) and report every row; their numbers are not judged."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
RUNNER_CONTENDERS = (
    "asyncio streams",
    "asyncio Protocol",
    "fakepeer (in-loop)",
    "asyncio streams (thread)",
    "fakepeer (hub)",
    "mountebank",
)
FAKEPEER_SUITE = "fakepeer"
BASELINE_SUITE = "hand-written fixture"
WATCHDOG_SCRIPT = BENCHMARKS / "bench_watchdog.py"
WATCHDOG_ROWS = (
    "echo",
    "writes",
    "loop",
    "trio echo",
    "trio steps",
    "uvloop echo",
    "uvloop writes",
)
PROXY_SCRIPT = BENCHMARKS / "bench_proxy.py"
PROXY_ROWS = ("sink hub", "sink in-loop", "echo hub", "echo in-loop")


def run_runner(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=BENCHMARKS.parent,
    )


def test_runner_quick_writes_every_table(tmp_path: Path) -> None:
    """``python -m benchmarks --quick`` prints, and writes as Markdown and JSON, a table per
    case with every contender: measured, or skipped with its reason."""
    done = run_runner(
        "--only", "lifecycle", "--only", "roundtrip", "--only", "bulk", "--out", str(tmp_path)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    tables = {table["title"]: table for table in results["tables"]}
    assert [table["case"] for table in results["tables"]] == [
        "lifecycle",
        "roundtrip",
        "bulk",
        "bulk",
    ]
    for table in tables.values():
        names = [m["contender"] for m in table["measurements"]]
        assert names == [*RUNNER_CONTENDERS], table["title"]
        for m in table["measurements"]:
            assert m["error"] is None, m
            if m["contender"] == "mountebank":
                assert m["skipped"] or m["median"] > 0
            else:
                assert m["skipped"] is None
                assert 0 < m["min"] <= m["median"] <= m["max"]
                assert m["ratio"] > 0
    for bulk in results["tables"][2:]:
        assert [t["claim"] for t in bulk["targets"]] == [
            "fakepeer (in-loop) at least 0.8x asyncio streams"
        ]
        assert bulk["targets"][0]["verdict"] in ("PASS", "MISS")
    lifecycle = results["tables"][0]
    assert [t["claim"] for t in lifecycle["targets"]] == [
        "fakepeer (in-loop) at most 1.3x asyncio streams",
        "fakepeer (hub) at most 1.3x asyncio streams (thread)",
        "mountebank at least 5x slower than fakepeer (hub)",
        "mountebank at least 5x slower than fakepeer (in-loop)",
    ]
    assert results["environment"]["mode"] == "quick"
    markdown = (tmp_path / "results.md").read_text()
    assert "### Per-test lifecycle: start, connect, one exchange, stop" in markdown
    assert re.search(r"^\| fakepeer \(hub\) \| [\d.,]+ \|", markdown, re.MULTILINE), markdown
    assert "Per-test lifecycle" in done.stdout
    assert re.search(r"^  (PASS|MISS)  fakepeer \(in-loop\) at most 1.3x", done.stdout, re.M)


def every_row_measured_or_skipped(table: dict[str, Any]) -> None:
    for m in table["measurements"]:
        assert m["error"] is None, (table["title"], m)
        if m["skipped"] is not None:
            assert m["skipped"].strip(), m  # a reason
        else:
            assert 0 < m["min"] <= m["median"] <= m["max"], (table["title"], m)
            assert m["ratio"] > 0, (table["title"], m)


def test_runner_quick_hostile_and_suite(tmp_path: Path) -> None:
    """The hostile case (floods' peak memory, segmented input) and the suite case (whole
    runs, per-test pairs with hub hand-overs, -n 2) write every table, every row measured or
    skipped with its reason, and their targets judged."""
    done = run_runner("--only", "suite", "--only", "hostile", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    tables = results["tables"]
    assert [table["case"] for table in tables] == ["suite"] * 3 + ["hostile"] * 4
    for table in tables:
        every_row_measured_or_skipped(table)

    whole, paired, _ = tables[:3]
    suite_rows = [
        FAKEPEER_SUITE,
        "fakepeer, async with serve()",
        BASELINE_SUITE,
        "pytest-tcpclient",
    ]
    assert [m["contender"] for m in paired["measurements"]] == suite_rows
    assert [m["contender"] for m in whole["measurements"]] == suite_rows
    assert paired["unit"] == "ms"
    assert [t["claim"] for t in paired["targets"]] == [
        f"{FAKEPEER_SUITE} (the fake_peer fixture, on the hub) per test at most 1.3x the "
        f"{BASELINE_SUITE} (median of paired per-test ratios)",
        f"fakepeer, async with serve() per test at most 1.3x the {BASELINE_SUITE} (median of "
        "paired per-test ratios)",
    ]
    by_name = {m["contender"]: m for m in paired["measurements"]}
    if by_name[FAKEPEER_SUITE]["skipped"] is None:
        assert paired["targets"][0]["verdict"] in ("PASS", "MISS")
        extra = by_name[FAKEPEER_SUITE]["extra"]
        assert 0 < extra["p10"] <= extra["paired"] <= extra["p90"]
        assert 0 <= extra["hand-overs"] <= 3  # one connection per test: settle and stop at most
        assert by_name[BASELINE_SUITE]["extra"]["paired"] == 1.0
        assert "hand-overs" not in by_name[BASELINE_SUITE]["extra"]  # no fakepeer plugin there

    floods, *segments = tables[3:]
    names = [m["contender"] for m in floods["measurements"]]
    assert names[0] == "interpreter (python + fakepeer)"
    assert [name[:4] for name in names[1:]] == ["(a) ", "(b) ", "(c) ", "(d) "]
    assert floods["unit"] == "MiB"
    assert len(floods["targets"]) == 5
    if sys.platform == "linux":
        assert all(m["skipped"] is None for m in floods["measurements"])
        assert all(t["verdict"] in ("PASS", "MISS") for t in floods["targets"])
        assert floods["targets"][-1]["claim"].endswith("growth under 32 MiB")
    assert [t["title"].split(":")[1].split(",")[0].strip() for t in segments] == [
        "Raw()",
        "Lines()",
        "LengthPrefixed()",
    ]
    for table in segments:
        contenders = [m["contender"] for m in table["measurements"]]
        assert contenders[0] == "one segment"
        assert re.fullmatch(r"\d+-byte segments", contenders[1]), contenders
        (target,) = table["targets"]
        assert target["verdict"] in ("PASS", "MISS")
        assert table["measurements"][1]["extra"]["paired"] > 0
    assert re.search(r"^  (PASS|MISS)  \(a\) .*: peak under 64 MiB", done.stdout, re.M)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node, to run a broken mb")
def test_runner_fails_when_an_installed_contender_crashes(tmp_path: Path) -> None:
    """A contender that is installed, so should run, and crashes is an error in its table
    and makes the exit status 1; the other contenders are still measured and written."""
    package = tmp_path / "cache" / "mountebank" / "node_modules" / "@mbtest" / "mountebank"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text('{"name": "@mbtest/mountebank", "version": "2.9.2"}')
    (package / "bin" / "mb").write_text("console.error('mb is broken'); process.exit(3);\n")
    env = {**os.environ, "FAKEPEER_BENCH_CACHE": str(tmp_path / "cache")}
    done = run_runner("--only", "lifecycle", "--out", str(tmp_path / "out"), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 contender(s) crashed:" in done.stderr
    assert "mountebank" in done.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    (table,) = results["tables"]
    by_name = {m["contender"]: m for m in table["measurements"]}
    assert "mb is broken" in by_name["mountebank"]["error"]
    assert by_name["fakepeer (hub)"]["median"] > 0


def test_runner_rejects_an_unknown_case(tmp_path: Path) -> None:
    done = run_runner("--only", "everything", "--out", str(tmp_path))
    assert done.returncode == 2
    assert "argument --only: invalid choice: 'everything'" in done.stderr
    assert not list(tmp_path.iterdir())


def test_bench_watchdog_quick(tmp_path: Path) -> None:
    """Every row is measured, or skipped with its reason when trio or uvloop is missing, and
    every sample's loop was watched (or not) as its variant says."""
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(WATCHDOG_SCRIPT), "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    missing = {
        family: f"skipped: {family} is not installed"
        for family in ("trio", "uvloop")
        if importlib.util.find_spec(family) is None
    }
    skipped = [row for row in WATCHDOG_ROWS if row.split()[0] in missing]
    for row in WATCHDOG_ROWS:
        if row in skipped:
            pattern = rf"^{re.escape(row)}\s+.*\s{missing[row.split()[0]]}$"
        else:
            pattern = (
                rf"^{re.escape(row)}\s+.*\d\.\d{{3}}\s+\d\.\d{{3}}\s+\d\.\d{{3}}\s+(PASS|MISS)$"
            )
        assert re.search(pattern, done.stdout, re.MULTILINE), f"no {row!r} row in:\n{done.stdout}"
    results = json.loads(report.read_text())
    measured = [row for row in WATCHDOG_ROWS if row not in skipped]
    assert [row["label"] for row in results["rows"]] == measured
    assert [row["label"] for row in results["skipped"]] == skipped
    assert all(row["ratio"] > 0 and row["control_ratio"] > 0 for row in results["rows"])
    # Both variants measured what they claim: plain loops on the plain default selector,
    # watched ones on the watchdog's, and no sample ever blocked its loop.
    assert not any(name.startswith("Watched") for name in results["selectors"]["plain"])
    assert all(name.startswith("Watched") for name in results["selectors"]["watched"])
    assert results["alarms"] == 0
    # Every sample checked, inside its loop, that the watchdog saw it (a source on its thread
    # with a mark: the watched selector, trio's instrument, uvloop's heartbeat) or did not.
    families = ["asyncio"] + [family for family in ("trio", "uvloop") if family not in missing]
    assert sorted(results["sources"]) == sorted(families)
    for family in families:
        assert results["sources"][family]["plain"] == [], family
        assert results["sources"][family]["watched"], family


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
    # The transcript keeps a bounded record (its byte budget, 64 KiB a connection), not
    # what the proxy relayed; the bare forwarder keeps nothing.
    memory = results["memory"]
    kept = {(m["workload"], m["host"], m["contender"]): m["kept"] / m["mib"] for m in memory}
    assert kept[("sink", "hub", "fakepeer")] < 0.1 * 2**20
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
