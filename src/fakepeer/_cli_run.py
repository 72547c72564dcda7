"""``fakepeer run SCRIPT``: a script file served by a process of its own, until it is done.

A subcommand module of the command line: :func:`add_parser` adds its parser to the
``fakepeer`` command's subparsers, :func:`run` runs it and returns the exit status (see
``fakepeer._cli``). What it prints and writes is in docs/cli.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._cli_common import (
    Ended,
    add_output_options,
    add_where_options,
    option_error,
    serve_command,
    where_overrides,
)
from ._errors import ScriptError
from ._peer import FakePeer

__all__ = ["add_parser", "run"]

_EPILOG = """\
The first line says where it listens; then each event of the transcript as it happens; then
why it stopped and the verdict:

  fakepeer: serving 'smtp' on 127.0.0.1:40123
       0.512 ms  #1 connected  from 127.0.0.1:51234
       0.601 ms  #1 sent       '220 ready\\r\\n'
       ...
  fakepeer: stopped: the script is done: every expect was met and every connection is closed
  fakepeer: passed

It stops when the script is done (every expect met and no connection open), when the peer
saw a problem and no connection is open any more, at --timeout, or on Ctrl-C (SIGINT),
SIGTERM or SIGHUP. A script of `always` rules only is never done: it serves until --timeout
or a signal.

examples:
  fakepeer run smtp.toml
  fakepeer run smtp.toml --port 2525 --timeout 30 --journal smtp.jsonl
  fakepeer run smtp.toml --tls --ca-file ca.pem --address-file addr

  # in a shell script: start it in the background, wait for its address, run the client
  fakepeer run smtp.toml --quiet --address-file addr --timeout 60 &
  peer=$!
  rm -f addr   # not an earlier run's
  while [ ! -s addr ]; do kill -0 $peer || exit 2; sleep 0.05; done
  ./my-client --server "$(cat addr)"
  wait $peer   # the peer's verdict: 0 passed, 1 failed

exit status:
  0  the verdict passed
  1  it failed; the diagnosis is printed (what a pytest test would show); or the
     --journal or --pcapng file could not be written (standard error says so)
  2  it could not start: a wrong option, the script file (FILE:LINE: what is wrong),
     an address it cannot listen on
  3  a bug in fakepeer (an internal error, with its traceback: please report it)
"""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``run`` to the ``fakepeer`` command's subparsers (``add_subparsers()``)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "run",
        help="serve a script file until the conversation is done; exit 0 if it passed",
        description="Serve the conversation of a script file (TOML) as a fake peer, print "
        "its transcript as it happens, and exit with its verdict.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("script", metavar="SCRIPT", help="the script file (TOML)")
    add_where_options(parser, "the peer")
    add_output_options(parser)
    return parser


def _ended(peer: FakePeer) -> Ended:
    """When serving ``peer`` ends by itself: ``"done"`` once every expect was met and no
    connection is open (never, for a script of no expect); ``"failed"`` once it saw a
    problem and no connection is open. A UDP peer's clients never close: only the rest
    counts."""
    conversation = peer._conversation
    expecting = bool(conversation.unmet())
    udp = bool(getattr(peer, "_udp", False))

    def ended() -> str | None:
        if not udp and any(not record.ended for record in conversation.connections):
            return None
        if conversation.problems:
            return "failed"
        if expecting and conversation.done:
            return "done"
        return None

    return ended


def _load(args: argparse.Namespace) -> FakePeer:
    try:
        return FakePeer.from_file(args.script, **where_overrides(args))
    except OSError as exc:
        raise ScriptError(f"{args.script}: cannot read it: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    """``fakepeer run``: the exit status (see the epilog)."""
    try:
        peer = _load(args)
    except ScriptError as exc:
        return option_error(exc, args)
    return serve_command(
        peer,
        args,
        ended=_ended(peer),
        line=lambda address: f"serving {peer.name!r} on {address}{peer._over()}",
        fields={"name": peer.name},
    )
