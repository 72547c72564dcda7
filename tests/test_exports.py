"""The public surface: a sorted, complete __all__ of names defined behind it."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import types
from pathlib import Path

import fakepeer
from fakepeer import faults


def isort_style(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: CONSTANTS, then Classes, then everything else."""
    if name.isupper():
        return (0, name)
    return (1 if name[0].isupper() else 2, name)


def test_all_is_sorted_and_unique() -> None:
    assert len(set(fakepeer.__all__)) == len(fakepeer.__all__)
    assert fakepeer.__all__ == sorted(fakepeer.__all__, key=isort_style)


def test_all_names_exist_and_nothing_else_is_public() -> None:
    public = {
        name
        for name, value in vars(fakepeer).items()
        if not name.startswith(("_", "@"))  # "@py_builtins": pytest's assertion rewriting
        and not isinstance(value, types.ModuleType)  # fakepeer.pytest_plugin, a submodule
        and name != "annotations"  # from __future__
    }
    assert set(fakepeer.__all__) - {"__version__"} == public


def test_exceptions_show_their_public_module() -> None:
    for name in fakepeer.__all__:
        value = getattr(fakepeer, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert value.__module__ == "fakepeer", name


def test_exception_tree() -> None:
    assert issubclass(fakepeer.ScriptError, fakepeer.Error)
    assert issubclass(fakepeer.ScriptError, ValueError)
    assert issubclass(fakepeer.ConversationError, fakepeer.Error)
    assert issubclass(fakepeer.ConversationError, AssertionError)
    for name in ("UnexpectedData", "IncompleteMessage", "UnmetExpectations", "ReplyFailed"):
        assert issubclass(getattr(fakepeer, name), fakepeer.ConversationError), name
    assert issubclass(fakepeer.WaitTimeout, TimeoutError)


def test_importing_starts_no_thread() -> None:
    code = (
        "import threading, fakepeer, fakepeer.pytest_plugin;"
        "print(sorted(t.name for t in threading.enumerate()))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert output.strip() == "['MainThread']"


def test_cli_version_and_help() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "fakepeer", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert version.stdout.strip() == f"fakepeer {fakepeer.__version__}"
    bare = subprocess.run(
        [sys.executable, "-m", "fakepeer"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bare.returncode == 2
    assert "demo" in bare.stdout


def test_the_faults_namespace() -> None:
    assert faults.__all__ == sorted(faults.__all__, key=isort_style)
    for name in faults.__all__:
        assert hasattr(faults, name), name
    assert isinstance(faults.slice(3), fakepeer.Fault)


PUBLIC_MODULES = ("faults", "fixtures", "reports", "settings", "watchdog")


def test_the_public_modules_have_sorted_complete_all() -> None:
    for name in PUBLIC_MODULES:
        module = importlib.import_module(f"fakepeer.{name}")
        assert module.__all__ == sorted(module.__all__, key=isort_style), name
        for public in module.__all__:
            assert hasattr(module, public), (name, public)


def test_the_plugin_uses_the_public_library_only() -> None:
    """``fakepeer.pytest_plugin`` wires pytest to the public library: it imports no private
    module of fakepeer (``fakepeer._x``, or ``._x`` relatively) and stays short."""
    source = Path(fakepeer.__file__).with_name("pytest_plugin.py").read_text(encoding="utf-8")
    imported: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            imported += [base] if node.module else [f"{base}{a.name}" for a in node.names]
    ours = [name for name in imported if name.startswith((".", "fakepeer"))]
    assert ours, imported  # the check reads the imports at all
    private = [name for name in ours if "._" in name or name.startswith("._")]
    assert not private, f"pytest_plugin imports private modules: {private}"
    assert all(name.startswith("fakepeer") for name in ours), ours  # no relative imports
    assert len(source.splitlines()) < 300
