"""The TLS benchmark case runs (quick mode) and reports its four rows and its two targets;
its numbers are not judged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
CONTENDERS = [
    "asyncio streams TLS",
    "fakepeer TLS (in-loop)",
    "asyncio streams TLS (thread)",
    "fakepeer TLS (hub)",
]


def test_runner_quick_tls(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "tls", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=BENCHMARKS.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (table,) = json.loads((tmp_path / "results.json").read_text())["tables"]
    assert table["case"] == "tls"
    assert [m["contender"] for m in table["measurements"]] == CONTENDERS
    for m in table["measurements"]:
        assert m["error"] is None, m
        assert m["skipped"] is None, m
        assert 0 < m["min"] <= m["median"] <= m["max"], m
        assert m["ratio"] > 0, m
    assert [t["claim"] for t in table["targets"]] == [
        "fakepeer TLS (in-loop) at most 1.3x asyncio streams TLS",
        "fakepeer TLS (hub) at most 1.3x asyncio streams TLS (thread)",
    ]
    assert all(t["verdict"] in ("PASS", "MISS") for t in table["targets"])
    assert "A TLS connection: connect, handshake, one exchange, close" in done.stdout
