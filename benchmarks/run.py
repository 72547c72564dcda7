"""fakepeer's benchmarks: every case, every contender, side by side in one run.

``python -m benchmarks`` (from the repository's root) or ``python benchmarks/run.py``. See
``benchmarks/README.md`` for the cases and contenders and ``docs/performance.md`` for a run.

Each case measures each contender that applies in the same process run, interleaved over
several rounds, and reports medians, min and max, and the ratio to the case's baseline. The
tables are printed and written as Markdown and JSON, with a PNG chart when matplotlib is
installed. A contender that is not installed is reported as skipped, with the reason; one that
should run and crashes is reported as an error and makes the exit status 1. Targets missed
(MISS) do not: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the cases import each other as top-level modules
    sys.path.insert(0, str(HERE))

from _results import Measurement, Plan, Table  # noqa: E402

import fakepeer  # noqa: E402

#: Every case, in the order they run, and what runs it.
CASES: dict[str, str] = {
    "lifecycle": "1. per-test lifecycle: start a server, connect, one exchange, stop",
    "roundtrip": "2. round trip on an open connection (p50, p99)",
    "bulk": "3. bulk throughput, echo and sink, 64 KiB writes",
    "scale": "4. scale: 10,000 concurrent connections, accept rate and memory",
    "suite": "5. a pytest suite of 500 tests, serial and under pytest-xdist -n 2",
    "watchdog": "6a. the loop watchdog's overhead",
    "proxy": "6b. the proxy's throughput, against socat",
    "hostile": "7. hostile input: peak memory under floods, input in small segments",
    "tls": "8. a TLS connection: connect, handshake, one exchange, close",
    "udp": "9. a UDP round trip, against a bare asyncio DatagramProtocol echo",
}


def _exchange(only: set[str]) -> Callable[[Plan], list[Table]]:
    def run(plan: Plan) -> list[Table]:
        import case_exchange  # noqa: PLC0415

        return case_exchange.run(plan, lifecycle="lifecycle" in only, roundtrip="roundtrip" in only)

    return run


def _module(name: str, function: str = "run") -> Callable[[Plan], list[Table]]:
    def run(plan: Plan) -> list[Table]:
        module = __import__(name)
        result: list[Table] = getattr(module, function)(plan)
        return result

    return run


def runners(only: set[str]) -> list[tuple[str, Callable[[Plan], list[Table]]]]:
    """The cases to run, as (name, function) pairs; lifecycle and round trip share one."""
    plan: list[tuple[str, Callable[[Plan], list[Table]]]] = []
    if only & {"lifecycle", "roundtrip"}:
        plan.append(("lifecycle+roundtrip", _exchange(only)))
    for name, module in (("bulk", "case_bulk"), ("scale", "case_scale"), ("suite", "case_suite")):
        if name in only:
            plan.append((name, _module(module)))
    if "watchdog" in only:
        plan.append(("watchdog", _module("case_scripts", "watchdog_tables")))
    if "proxy" in only:
        plan.append(("proxy", _module("case_scripts", "proxy_tables")))
    if "hostile" in only:
        plan.append(("hostile", _module("case_hostile")))
    if "tls" in only:
        plan.append(("tls", _module("case_tls")))
    if "udp" in only:
        plan.append(("udp", _module("case_udp")))
    return plan


# -- rendering ------------------------------------------------------------------------------------


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _rows(table: Table) -> tuple[list[str], list[list[str]]]:
    head = ["contender", "median", "min", "max", *table.extra_columns, f"x {table.baseline}"]
    rows = []
    for m in table.measurements:
        if not m.measured:
            why = f"skipped: {m.skipped}" if m.skipped else f"ERROR: {m.error}"
            rows.append([m.contender, why.splitlines()[0]])
            continue
        ratio = table.ratio(m.contender)
        rows.append(
            [
                m.contender,
                _number(m.median),
                _number(m.low),
                _number(m.high),
                *(_number(m.extra[c]) if c in m.extra else "" for c in table.extra_columns),
                "" if ratio is None else f"{ratio:.2f}",
            ]
        )
    return head, rows


def _direction(table: Table) -> str:
    better = "lower" if table.lower_is_better else "higher"
    return f"{table.unit}, {better} is better"


def render_text(table: Table) -> str:
    head, rows = _rows(table)
    full = [head, *(r for r in rows if len(r) > 2)]
    widths = [max(len(r[i]) for r in full) for i in range(len(head))]
    lines = [f"{table.title} ({_direction(table)})"]
    for row in [head, *rows]:
        if len(row) == 2 and row is not head:
            lines.append(f"  {row[0]:<{widths[0]}}  {row[1]}")
        else:
            cells = [row[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  " + "  ".join(cells))
    for target in table.targets:
        shown = "not measured" if target.value is None else f"{target.value:.2f}"
        lines.append(f"  {target.verdict}  {target.claim}: {shown}")
    return "\n".join(lines)


def render_markdown(table: Table) -> str:
    head, rows = _rows(table)
    lines = [f"### {table.title}", "", f"{_direction(table)}; ratios to `{table.baseline}`.", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |")
    for row in rows:
        cells = [row[0], row[1], *[""] * (len(head) - 2)] if len(row) == 2 else row
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    if table.targets:
        lines.append("")
        for target in table.targets:
            shown = "not measured" if target.value is None else f"{target.value:.2f}"
            lines.append(f"- **{target.verdict}** {target.claim}: {shown}")
    if table.notes:
        lines.append("")
        lines.extend(f"- {note}" for note in table.notes)
    return "\n".join(lines)


def environment(plan: Plan, argv: Sequence[str], seconds: float) -> dict[str, object]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python -m benchmarks", *argv]),
        "mode": "quick" if plan.quick else "full",
        "fakepeer": fakepeer.__version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "seconds": round(seconds, 1),
    }


def render_document(tables: Sequence[Table], env: dict[str, object]) -> str:
    lines = [
        "# fakepeer benchmark results",
        "",
        f"`{env['command']}` on {env['date']}: fakepeer {env['fakepeer']}, "
        f"{env['implementation']} {env['python']}, {env['platform']}, {env['cpus']} CPUs; "
        f"{env['mode']} run, {env['seconds']} s.",
        "",
        "Absolute figures vary with the machine and its load; the ratios, measured in the "
        "same run, are the claim.",
    ]
    for table in tables:
        lines += ["", render_markdown(table)]
    return "\n".join(lines) + "\n"


#: Where the chart's ratio axes may have labelled ticks.
TICKS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10, 20, 30, 50, 100, 200, 500)

# -- the chart ------------------------------------------------------------------------------------


def draw_chart(tables: Sequence[Table], path: Path) -> str | None:
    """One panel per table with a baseline: each contender's ratio to it, on a log scale.
    Returns None, or why there is no chart."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - a benchmark-only dependency

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return "matplotlib is not installed (pip install 'fakepeer[bench]')"
    panels = [
        t
        for t in tables
        if t.case in {"lifecycle", "roundtrip", "bulk", "scale", "suite"}
        and any(m.measured for m in t.measurements)
    ]
    if not panels:
        return "no table to draw"
    columns = 2
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(12, 2.6 * rows), squeeze=False)
    ticker = mpl.ticker
    for ax, table in zip(axes.flat, panels, strict=False):
        names = [m.contender for m in table.measurements][::-1]
        ratios = [table.ratio(n) for n in names]
        shown = [r for r in ratios if r is not None]
        low, high = min([*shown, 1.0]) / 1.6, max([*shown, 1.0]) * 1.6
        for y, (name, ratio) in enumerate(zip(names, ratios, strict=True)):
            if ratio is None:
                ax.text(
                    1.0,
                    y,
                    "  not measured (see the table)",
                    va="center",
                    fontsize=7,
                    color="#7f8c8d",
                )
                continue
            colour = "#d35400" if name.startswith("fakepeer") else "#7f8c8d"
            ax.plot([1.0, ratio], [y, y], color=colour, linewidth=2.5)
            ax.plot([ratio], [y], "o", color=colour)
            ax.text(ratio, y + 0.28, f"{ratio:.2f}", ha="center", fontsize=7)
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.set_xscale("log")
        ax.set_xlim(low, high)
        ax.set_xticks([t for t in TICKS if low <= t <= high])
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.axvline(1.0, color="black", linewidth=0.8)
        better = "lower" if table.lower_is_better else "higher"
        ax.set_title(f"{table.title}\n(x {table.baseline}, {better} is better)", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None


# -- main -----------------------------------------------------------------------------------------


def install(log: Callable[[str], None] = print) -> list[str]:
    """Install the optional contenders (mountebank with npm, pytest-tcpclient in its own
    virtual environment), unless what they need is missing. Returns what failed."""
    failed = []
    for name in ("_mountebank", "_tcpclient"):
        module = __import__(name)
        reason = module.unavailable()
        if reason is not None and "--install" not in reason:
            # What it needs is missing (npm, a Python 3.11): reported as skipped, not an error.
            log(f"not installing {name.lstrip('_')}: {reason}; it will be reported as skipped")
            continue
        try:
            module.install(log)
        except Exception as error:
            failed.append(f"{name.lstrip('_')}: {error}")
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark fakepeer against bare asyncio and other tools, in one run.",
        epilog="cases: " + "; ".join(f"{k}: {v}" for k, v in CASES.items()),
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, one or two rounds: a smoke test"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(CASES),
        metavar="CASE",
        help="run only this case (repeatable): " + ", ".join(CASES),
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write results.md, results.json and chart.png "
        "(default: benchmarks/results, or benchmarks/results/quick with --quick)",
    )
    parser.add_argument(
        "--install",
        action="store_true",
        help="first install the optional contenders: mountebank (npm) and pytest-tcpclient "
        "(its own virtual environment), under benchmarks/.cache",
    )
    args = parser.parse_args(args_list)
    plan = Plan(quick=args.quick)
    only = set(args.only or CASES)
    out: Path = args.out or (HERE / "results" / ("quick" if args.quick else ""))

    if args.install:
        failed = install()
        for message in failed:
            print(f"install failed: {message}", file=sys.stderr)
        if failed:
            return 1

    print(
        f"fakepeer {fakepeer.__version__}, Python {platform.python_version()}, "
        f"{'quick' if args.quick else 'full'} run of: {', '.join(c for c in CASES if c in only)}",
        flush=True,
    )
    begun = time.perf_counter()
    tables: list[Table] = []
    for name, run in runners(only):
        started = time.perf_counter()
        try:
            produced = run(plan)
        except Exception:
            produced = [
                Table(
                    case=name,
                    title=f"{name}: the case crashed",
                    unit="",
                    baseline=None,
                    measurements=[Measurement(name, error=traceback.format_exc())],
                )
            ]
        produced = [t for t in produced if t.case in only or t.case == name]
        for table in produced:
            print("\n" + render_text(table), flush=True)
        print(f"  ({name}: {time.perf_counter() - started:.1f} s)", flush=True)
        tables.extend(produced)
    env = environment(plan, args_list, time.perf_counter() - begun)

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(render_document(tables, env))
    (out / "results.json").write_text(
        json.dumps({"environment": env, "tables": [t.to_json() for t in tables]}, indent=1) + "\n"
    )
    why_not = draw_chart(tables, out / "chart.png")
    written = ["results.md", "results.json"] + ([] if why_not else ["chart.png"])
    print(f"\nwrote {', '.join(str(out / w) for w in written)}")
    if why_not:
        print(f"no chart: {why_not}")

    errors = [e for t in tables for e in t.errors]
    misses = [f"{t.title}: {x.claim}" for t in tables for x in t.targets if x.verdict == "MISS"]
    print(f"{len(tables)} tables in {env['seconds']} s; targets missed: {len(misses)}")
    for miss in misses:
        print(f"  MISS {miss}")
    if errors:
        print(f"{len(errors)} contender(s) crashed:", file=sys.stderr)
        for error in errors:
            print(f"  {error.splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
