"""``fakepeer learn SCRIPT --upstream HOST:PORT -o UPDATED``: a peer that answers from its
script and forwards to a real server what the script does not know, then writes the script
with what it learned (see :mod:`fakepeer._learning`).

A subcommand module of the command line: :func:`add_parser` and :func:`run` (see
``fakepeer._cli``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._cli_common import (
    FAILED,
    USAGE,
    add_output_options,
    add_where_options,
    option_error,
    seconds,
    serve_command,
    usage_error,
    where_overrides,
)
from ._cli_proxy import upstream_address
from ._cli_record import Gone
from ._errors import ScriptError
from ._learning import Learner
from ._peer import FakePeer

__all__ = ["add_parser", "run"]

_EPILOG = """\
It serves SCRIPT as `fakepeer run` does, with one rule more: a message no rule of the script
expects is sent to the server at --upstream (on a connection of its own for each client
connection, its greeting set aside), and the server's answer, once it has been quiet for
--settle seconds, is the reply. A server that closed after an answer is connected to again
for the next message; one that cannot be reached or closes without answering fails the
client's connection (exit status 1, naming the server); one that does not answer in time
gives an empty reply, learned, and said so. SCRIPT needs a framing of messages (not raw)
and no [[otherwise]] rule of its own. When it stops (--connections N clients came and went,
--timeout, Ctrl-C, SIGTERM or SIGHUP) it writes SCRIPT to -o with each new exchange appended
as an [[always]] rule. The server sees only what the script does not answer: this fits requests
that stand alone (HTTP, lookups, most RPC); record a conversation with state anew.

examples:
  fakepeer learn web.toml --upstream 127.0.0.1:8080 -o web-more.toml --connections 3
  fakepeer learn time.toml --upstream 127.0.0.1:7000 -o time.toml --timeout 60

exit status:
  0  the file is written
  1  the peer saw a problem (it is printed), or the file could not be written
  2  it could not start: a wrong option, the script file, tomli-w missing
"""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``learn`` to the ``fakepeer`` command's subparsers (``add_subparsers()``)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "learn",
        help="serve a script, forwarding to a real server what it does not know, and write "
        "what it learned",
        description="Serve a script file; what it does not know is answered by a real "
        "server, and the new exchanges are written to a copy of the script.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("script", metavar="SCRIPT", help="the script file (TOML)")
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT", help="the server")
    parser.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="the script with what it learned"
    )
    parser.add_argument(
        "--settle",
        type=seconds,
        default=0.2,
        metavar="SECONDS",
        help="the server's answer (and greeting) is over once it is quiet this long "
        "(default 0.2); a greeting later than this after connecting is taken for the first "
        "answer: raise it for a server that greets slowly",
    )
    parser.add_argument(
        "--connections", type=int, metavar="N", help="stop once N clients have come and gone"
    )
    add_where_options(parser, "the peer")
    add_output_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """``fakepeer learn``: the exit status (see the epilog)."""
    try:
        text = Path(args.script).read_text(encoding="utf-8")
        peer = FakePeer.from_file(args.script, **where_overrides(args))
        upstream = upstream_address(args.upstream)
        if isinstance(upstream, str):
            raise ScriptError("--upstream: learning forwards to HOST:PORT (not a Unix socket)")
        learner = Learner(peer, upstream, settle=args.settle)
    except OSError as exc:
        return usage_error(f"cannot read {args.script}: {exc.strerror or exc}")
    except ScriptError as exc:
        return option_error(exc, args)
    gone = Gone(args.connections)
    unwatch = peer.transcript._watch(gone.watch)
    try:
        status = serve_command(
            peer,
            args,
            ended=gone.ended,
            line=lambda address: f"learning on {address} from {args.upstream}",
            fields={"name": peer.name, "upstream": args.upstream},
            outputs=(("-o", args.output),),
        )
    finally:
        unwatch()
        learner.close()
    if status == USAGE:
        return status
    try:
        Path(args.output).write_text(text + learner.learned_text(args.script), encoding="utf-8")
    except OSError as exc:
        print(f"fakepeer: error: cannot write {args.output}: {exc.strerror or exc}")
        return FAILED
    for note in learner.notes:
        print(f"fakepeer: {note}")
    print(f"fakepeer: wrote {args.output} ({len(learner.learned)} exchange(s) learned)")
    return status
