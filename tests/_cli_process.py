"""What the command line's tests share: ``fakepeer`` run as a process of its own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakepeer

#: The directory that holds the package under test, for the processes' PYTHONPATH.
SRC = str(Path(fakepeer.__file__).resolve().parent.parent)

#: The bound of every wait on a process (its start, its end, its address file).
WAIT = 30.0


def environment() -> dict[str, str]:
    """The environment of a ``fakepeer`` process: this package first on its path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def command(*args: str) -> list[str]:
    """The command line of ``fakepeer ARGS``, as ``python -m fakepeer``."""
    return [sys.executable, "-m", "fakepeer", *args]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``fakepeer ARGS`` to its end (bounded); its status and output."""
    return subprocess.run(
        command(*args),
        env=environment(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


@contextlib.contextmanager
def started(*args: str, address_file: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``fakepeer ARGS --address-file FILE``; yield the process and its address once
    the file is there. The process is killed at the end if it still runs."""
    process = subprocess.Popen(
        command(*args, "--address-file", str(address_file)),
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT
        while not address_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                out, err = process.communicate(timeout=WAIT)
                raise AssertionError(f"no address file; status {process.returncode}\n{out}\n{err}")
            time.sleep(0.02)  # polling a file, as a shell script does: no event to wait on
        yield process, address_file.read_text().strip()
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=WAIT)


def finish(process: subprocess.Popen[str], sig: int | None = None) -> tuple[int, str, str]:
    """Send ``sig`` (if any) and wait (bounded) for the process's end: status, out, err."""
    if sig is not None:
        process.send_signal(sig)
    out, err = process.communicate(timeout=WAIT)
    return process.returncode, out, err


def journal(path: Path) -> list[dict[str, Any]]:
    """The lines of a journal file, parsed."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def kinds(lines: list[dict[str, Any]]) -> list[str]:
    """The kinds of a journal's lines, connection-numbered (``#1 sent``)."""
    return [f"#{line['connection']} {line['kind']}" if "connection" in line else line["kind"]
            for line in lines]  # fmt: skip


__all__ = ["SIGNALS", "command", "environment", "finish", "journal", "kinds", "run", "started"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
