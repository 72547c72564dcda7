"""The ``fakepeer`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._demo import run
from ._version import __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fakepeer`` and ``python -m fakepeer``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="fakepeer",
        description="Scripted fake TCP peers for testing network clients.",
    )
    parser.add_argument("--version", action="version", version=f"fakepeer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="show what fakepeer is for, in three short acts (a scripted peer and its transcript, "
        "a client's failure, the loop watchdog catching a hang)",
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        try:
            return run(sys.stdout)
        except BrokenPipeError:  # `fakepeer demo | head`: the reader left, not an error
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit
            return 0
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
