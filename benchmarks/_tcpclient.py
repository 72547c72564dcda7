"""pytest-tcpclient as a contender of the suite case, in its own virtual environment.

pytest-tcpclient (PyPI ``pytest-tcpclient``, dormant since 0.7.29) is the closest existing
pytest plugin to fakepeer: a ``tcpserver`` fixture scripted with ``expect_connect()``,
``expect_bytes()``, ``send_bytes()`` and ``expect_disconnect()``. It pins ``pytest<8`` and is
reported to hang on Python 3.12 and later, so it cannot share fakepeer's environment: it gets a
virtual environment of its own, on a CPython 3.11, under :data:`VENV`, with the versions in
:data:`REQUIREMENTS` (the newest that resolve for it: pytest 7.4, the last pytest-asyncio that
accepts pytest 7, and pytest-xdist, which still supports pytest 7).

``python benchmarks/_tcpclient.py`` installs it (a no-op when it is there) and prints the
versions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

#: Where the optional contenders live, outside the package (``FAKEPEER_BENCH_CACHE`` moves it).
CACHE: Final = Path(
    os.environ.get("FAKEPEER_BENCH_CACHE") or Path(__file__).resolve().parent / ".cache"
)
#: pytest-tcpclient's own virtual environment.
VENV: Final = CACHE / "tcpclient-venv"
#: What goes into :data:`VENV`, pinned so that every run measures the same code.
REQUIREMENTS: Final = (
    "pytest-tcpclient==0.7.29",
    "pytest==7.4.4",  # pytest-tcpclient requires pytest>=7.1.3,<8
    "pytest-asyncio==0.23.8",  # the last release for pytest 7 (0.24 needs pytest>=8.2)
    "pytest-mock==3.17.0",  # pytest-tcpclient patches the client's streams with mocker
    "pytest-xdist==3.8.0",  # for the -n 2 run (the same as in fakepeer's environment)
)
#: The distributions whose versions the suite case reports.
REPORTED: Final = ("pytest", "pytest-asyncio", "pytest-tcpclient", "pytest-xdist")
#: Written into :data:`VENV` once everything is installed: what was installed, with what.
MARKER: Final = VENV / "fakepeer-bench.json"
#: Bound on ``python -m venv`` and on the interpreter probes.
QUICK_TIMEOUT: Final = 120.0
#: Bound on ``pip install``.
INSTALL_TIMEOUT: Final = 900.0
#: The Python it needs: 3.11 (not 3.12+, where it is reported to hang).
WANTED: Final = (3, 11)


def python() -> Path:
    """The interpreter of :data:`VENV` (it may not exist yet)."""
    if os.name == "nt":  # pragma: no cover - the benchmarks run on POSIX
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _is_wanted(interpreter: str) -> bool:
    """Whether ``interpreter`` runs and is a CPython :data:`WANTED`."""
    probe = "import platform, sys; print(platform.python_implementation(), *sys.version_info[:2])"
    try:
        done = subprocess.run(
            [interpreter, "-c", probe],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=QUICK_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.split() == ["CPython", *map(str, WANTED)]


def _version_key(path: Path) -> tuple[int, ...]:
    """``.../versions/3.11.7/bin/python3`` -> ``(3, 11, 7)``, to try the newest first."""
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name))


def find_python() -> str | None:
    """A CPython 3.11 to build :data:`VENV` with, or None.

    In order: this interpreter if it is 3.11, ``python3.11`` on PATH, then the newest
    ``$PYENV_ROOT/versions/3.11*/bin/python3`` (``~/.pyenv`` without ``PYENV_ROOT``). Each
    candidate is run once to check that it works and is 3.11 (a pyenv shim may not be).
    """
    candidates: list[str] = []
    if sys.implementation.name == "cpython" and sys.version_info[:2] == WANTED:
        candidates.append(sys.executable)
    on_path = shutil.which("python3.11")
    if on_path:
        candidates.append(on_path)
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = sorted(root.glob("versions/3.11*/bin/python3"), key=_version_key, reverse=True)
    candidates += [str(path) for path in found]
    for candidate in candidates:
        if _is_wanted(candidate):
            return candidate
    return None


def _installed() -> bool:
    """Whether :data:`VENV` holds exactly :data:`REQUIREMENTS`, completely installed."""
    try:
        data = json.loads(MARKER.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and data.get("requirements") == list(REQUIREMENTS)
        and python().exists()
    )


def _run(command: list[str], what: str, timeout: float) -> None:
    """Run an install step; RuntimeError with the tail of its output if it fails."""
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        output = error.output or b""
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        raise RuntimeError(f"{what} timed out after {timeout:g} s:\n{_tail(text)}") from None
    except OSError as error:
        raise RuntimeError(f"{what} could not start: {error}") from None
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{_tail(done.stdout)}")


def install(log: Callable[[str], None] = print) -> None:
    """Create :data:`VENV` with a CPython 3.11 and ``pip install`` :data:`REQUIREMENTS`.

    A no-op (logged) if they are already installed there. An older or broken :data:`VENV` is
    replaced. Every step is bounded by a timeout. Raises :class:`RuntimeError` if no Python
    3.11 is found, or if a step fails (with the tail of its output); a failed install leaves
    no venv behind.
    """
    if _installed():
        log(f"pytest-tcpclient already installed in {VENV}")
        return
    interpreter = find_python()
    if interpreter is None:
        raise RuntimeError(_NO_PYTHON)
    start = time.perf_counter()
    if VENV.exists():
        shutil.rmtree(VENV)
    CACHE.mkdir(parents=True, exist_ok=True)
    ignore = CACHE / ".gitignore"  # the cache is no part of the source tree
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    log(f"installing {', '.join(REQUIREMENTS)} into {VENV} (with {interpreter}) ...")
    try:
        _run([interpreter, "-m", "venv", str(VENV)], "python -m venv", QUICK_TIMEOUT)
        pip = [str(python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        _run([*pip, *REQUIREMENTS], "pip install", INSTALL_TIMEOUT)
        MARKER.write_text(
            json.dumps({"requirements": list(REQUIREMENTS), "python": interpreter}, indent=1),
            encoding="utf-8",
        )
    except BaseException:
        shutil.rmtree(VENV, ignore_errors=True)
        raise
    log(f"pytest-tcpclient installed in {time.perf_counter() - start:.1f} s")


_NO_PYTHON: Final = (
    "no Python 3.11 found (pytest-tcpclient pins pytest<8 and is reported to hang on 3.12+): "
    "none as this interpreter, python3.11 on PATH, or $PYENV_ROOT/versions/3.11*"
)


def unavailable() -> str | None:
    """None when pytest-tcpclient is installed in :data:`VENV`, else why not (to report the
    contender as skipped, saying how to install it)."""
    if _installed():
        return None
    if find_python() is None:
        return _NO_PYTHON
    return "not installed: run `python -m benchmarks --install`"


def versions() -> dict[str, str]:
    """The versions of Python and of :data:`REPORTED` in :data:`VENV` (empty if it cannot
    tell), e.g. ``{"Python": "3.11.7", "pytest": "7.4.4", ...}``."""
    probe = (
        "import json, platform, importlib.metadata as m\n"
        "found = {'Python': platform.python_version()}\n"
        f"for name in {list(REPORTED)!r}:\n"
        "    try:\n"
        "        found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(found))\n"
    )
    try:
        done = subprocess.run(
            [str(python()), "-c", probe],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=QUICK_TIMEOUT,
            check=False,
        )
        data = json.loads(done.stdout) if done.returncode == 0 else {}
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


if __name__ == "__main__":
    install()
    print(versions())
