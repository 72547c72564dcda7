"""Case 6: the loop watchdog's overhead and the proxy's throughput, from their own scripts.

``bench_watchdog.py`` and ``bench_proxy.py`` (see the README) each run in a fresh interpreter
(the watchdog swaps the default selector class while installed; the proxy case starts
``socat``), with ``--json``; their samples become tables like the other cases'.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _results import Measurement, Plan, Table, Target

HERE = Path(__file__).resolve().parent
#: Bound on one script's run (the full proxy run takes about 90 s on a 2-core VM).
SCRIPT_TIMEOUT = 600.0

WATCHDOG_VARIANTS = {"plain": "plain loop", "watched": "watched loop", "control": "plain again"}
PROXY_CONTENDERS = {
    "direct": "no forwarder",
    "bare": "bare asyncio forwarder",
    "fakepeer": "fakepeer Proxy",
    "socat": "socat",
}


def _run_script(name: str, plan: Plan) -> dict[str, Any]:
    """Run ``benchmarks/<name>`` and return its JSON report; raise RuntimeError with the
    output's tail if it fails."""
    with tempfile.TemporaryDirectory(prefix="fakepeer-bench-") as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, str(HERE / name), "--json", str(report)]
        if plan.quick:
            command.append("--quick")
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise RuntimeError(f"{name} did not finish within {SCRIPT_TIMEOUT:g} s") from error
        if done.returncode != 0 or not report.exists():
            tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
            raise RuntimeError(f"{name} exited {done.returncode}:\n" + "\n".join(tail))
        data: dict[str, Any] = json.loads(report.read_text())
        return data


def watchdog_tables(plan: Plan) -> list[Table]:
    try:
        report = _run_script("bench_watchdog.py", plan)
    except RuntimeError as error:
        return [
            Table(
                case="watchdog",
                title="Loop watchdog overhead",
                unit="µs",
                baseline="plain loop",
                measurements=[
                    Measurement(label, error=str(error)) for label in WATCHDOG_VARIANTS.values()
                ],
            )
        ]
    tables = []
    for row in report["rows"]:
        table = Table(
            case="watchdog",
            title=f"Loop watchdog overhead: {row['label']} ({row['description']})",
            unit="µs",
            baseline="plain loop",
            measurements=[
                Measurement(label, values=list(row[key]["values_us"]))
                for key, label in WATCHDOG_VARIANTS.items()
            ],
            notes=[
                "watched = while the watchdog is installed and watching (limit "
                f"{report['watchdog_limit']} s){_watched_how(row['label'], report)}; plain "
                "again = the A/A control. "
                f"Alarms during the run: {report['alarms']} (0 expected). "
                f"Paired ratio (median of per-round ratios): {row['paired_ratio']:.3f}."
            ],
        )
        table.targets = [
            Target(
                f"watched loop at most {row['target']}x the plain loop",
                table.ratio("watched loop"),
                float(row["target"]),
            )
        ]
        tables.append(table)
    for row in report.get("skipped", []):
        table = Table(
            case="watchdog",
            title=f"Loop watchdog overhead: {row['label']} ({row['description']})",
            unit="µs",
            baseline="plain loop",
            measurements=[
                Measurement(label, skipped=row["skipped"]) for label in WATCHDOG_VARIANTS.values()
            ],
        )
        table.targets = [
            Target(
                f"watched loop at most {report['target']}x the plain loop",
                None,
                float(report["target"]),
            )
        ]
        tables.append(table)
    return tables


def _watched_how(label: str, report: dict[str, Any]) -> str:
    """How a watched sample of the row's loop is watched, beyond the watched selector."""
    if label.startswith("trio"):
        return ", so trio.run adds the watchdog's instrument (before/after every task step)"
    if label.startswith("uvloop"):
        return (
            f", with a heartbeat every {report.get('heartbeat_interval', 0):g} s in the loop "
            "(uvloop has no selector to watch)"
        )
    return ""


def proxy_tables(plan: Plan) -> list[Table]:
    try:
        report = _run_script("bench_proxy.py", plan)
    except RuntimeError as error:
        return [
            Table(
                case="proxy",
                title="Proxy throughput",
                unit="MB/s",
                baseline="socat",
                lower_is_better=False,
                measurements=[
                    Measurement(label, error=str(error)) for label in PROXY_CONTENDERS.values()
                ],
            )
        ]
    tables = []
    for row in report["rows"]:
        measurements = []
        for key, label in PROXY_CONTENDERS.items():
            if key == "socat" and row["socat"] != "measured":
                measurements.append(Measurement(label, skipped=row["socat"]))
            else:
                measurements.append(
                    Measurement(label, values=list(row["mb_per_s"][key]["values_mb_per_s"]))
                )
        table = Table(
            case="proxy",
            title=f"Proxy throughput: {row['label']}",
            unit="MB/s",
            baseline="socat",
            lower_is_better=False,
            measurements=measurements,
            notes=[
                f"{report['plan']['mib']} MiB per sample in "
                f"{report['chunk_bytes'] // 1024} KiB writes, through the forwarder to an "
                "upstream in the script; socat forks a child per connection, default buffer."
            ],
        )
        table.targets = [
            Target(
                f"fakepeer Proxy at least {row['target']}x socat's throughput",
                table.ratio("fakepeer Proxy", "socat"),
                float(row["target"]),
                at_most=False,
            )
        ]
        tables.append(table)
    return tables


def run(plan: Plan) -> list[Table]:
    return [*watchdog_tables(plan), *proxy_tables(plan)]
