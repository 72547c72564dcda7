"""The ``fakepeer`` command line.

Each command but ``demo`` is a private module of its own with two functions:
``add_parser(commands)`` adds its parser to the subparsers (``add_subparsers()``'s result)
and returns it; ``run(args)`` runs it and returns the exit status. Adding a command is one
entry in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, Final, Protocol

from . import _cli_learn, _cli_proxy, _cli_record, _cli_run, _cli_schema
from ._cli_common import INTERNAL, remove_stale
from ._demo import run as demo
from ._version import __version__


class Command(Protocol):
    """A command's module: see the module docstring."""

    def add_parser(self, commands: Any) -> argparse.ArgumentParser: ...  # pragma: no cover

    def run(self, args: argparse.Namespace) -> int: ...  # pragma: no cover


#: The commands after ``demo``, in the order ``fakepeer --help`` lists them.
COMMANDS: Final[tuple[Command, ...]] = (
    _cli_run,
    _cli_proxy,
    _cli_record,
    _cli_learn,
    _cli_schema,
)


def _demo(args: argparse.Namespace) -> int:
    try:
        return demo(sys.stdout)
    except BrokenPipeError:  # `fakepeer demo | head`: the reader left, not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fakepeer`` and ``python -m fakepeer``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="fakepeer",
        description="Scripted fake TCP peers for testing network clients.",
        epilog="'fakepeer COMMAND --help' says more of each, with examples.",
    )
    parser.add_argument("--version", action="version", version=f"fakepeer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="show what fakepeer is for, in three short acts (a scripted peer and its transcript, "
        "a client's failure, the loop watchdog catching a hang)",
    ).set_defaults(run=_demo)
    for command in COMMANDS:
        command.add_parser(commands).set_defaults(run=command.run)
    _printable_anywhere()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    remove_stale(getattr(args, "address_file", None))  # even if it cannot start: not ours
    try:
        status: int = args.run(args)
    except Exception:  # a bug: never the status of a verdict, and never said as one
        print(
            "fakepeer: internal error: a bug in fakepeer, please report it with this:\n"
            + traceback.format_exc().rstrip(),
            file=sys.stderr,
        )
        return INTERNAL
    return status


def _printable_anywhere() -> None:
    """Let a console that cannot encode every character (``PYTHONIOENCODING=ascii``, a C
    locale) show it as an escape (``\\xe9``) rather than fail on it."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
