"""``fakepeer schema``: print the JSON Schema of script files, for an editor to check and
complete them (Taplo, VS Code's Even Better TOML: ``#:schema ./script.schema.json``)."""

from __future__ import annotations

import argparse
import importlib.resources
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``schema`` to the subparsers ``commands``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "schema",
        help="print the JSON Schema of script files (for an editor to check and complete them)",
        description="Print the JSON Schema (draft 2020-12) of fakepeer's script files, the "
        "one FakePeer.from_file and 'fakepeer run' read, to standard output.",
        epilog="example:\n  fakepeer schema > script.schema.json\n"
        "  then, as a script's first line:  #:schema ./script.schema.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the schema; 0."""
    text = importlib.resources.files("fakepeer").joinpath("script.schema.json").read_text()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
