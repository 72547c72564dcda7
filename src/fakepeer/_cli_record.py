"""``fakepeer record --upstream HOST:PORT -o FILE``: a conversation with a real server,
written as a script file that replays it.

A subcommand module of the command line: :func:`add_parser` and :func:`run` (see
``fakepeer._cli``). It serves a :class:`~fakepeer.Proxy` with no faults and no transcript
budget (nothing is cut) until ``--connections N`` clients came and went, ``--timeout``, or
Ctrl-C/SIGTERM/SIGHUP, then writes :meth:`Proxy.record` to the file.
"""

from __future__ import annotations

import argparse
import tomllib
from collections import Counter
from typing import Any, Final

from ._builtin_framings import Raw
from ._cli_common import (
    FAILED,
    USAGE,
    add_output_options,
    add_where_options,
    option_error,
    serve_command,
    where_overrides,
    write_whole,
)
from ._cli_options import add_upstream_options, upstream_tls
from ._cli_proxy import upstream_address
from ._errors import ScriptError
from ._framing import Framing
from ._proxy import Proxy
from ._recording_toml import check_writer
from ._scriptplace import Place
from ._scriptvalues import to_framing
from ._transcript import Event

__all__ = ["Gone", "add_parser", "parse_framing", "run"]

_EPILOG = """\
It relays each client to the server, printing the traffic as it happens, and stops when
--connections N clients have come and gone, at --timeout, or on Ctrl-C (SIGINT), SIGTERM or
SIGHUP. Then it writes the conversation to the -o file: what each client sent, cut into messages by
--framing, as [[expect]] rules; what the server answered after each, as its reply; what the
server sent first, as a [[greeting]]; its close, as close = true. One connection: top-level
rules; several: a [[connection]] table each (a client that connected and said nothing, such
as a port probe, is left out). Nothing is written when nothing was said, or when the proxy
saw an error: an existing file stays as it was. Replay it with `fakepeer run FILE` or
FakePeer.from_file(FILE) in a test; edit it as you like.

the framing (--framing SPEC, the client's protocol; default raw):
  raw                      one rule per turn: what the client sent until the server answered
  lines                    one rule per line ending in \\n (the line end is not in the match)
  lines:delimiter="\\r\\n"   KIND:KEY=VALUE,...: the framing's keywords, TOML values
  http1, resp, mqtt, modbus, fixed:n=12, length-field:offset=4,size=2, ...
  (the kinds and keywords of a script file's [framing] table). --reply-framing SPEC writes
  each reply as messages of SPEC (a list when several), such as lines:delimiter="\\r\\n";
  by default a reply is the server's bytes as they came.

examples:
  fakepeer record --upstream 127.0.0.1:8080 -o web.toml --framing http1 --connections 1
  fakepeer record --upstream mail.test:25 -o smtp.toml --framing 'lines:delimiter="\\r\\n"'
  fakepeer record --upstream 127.0.0.1:6379 --port 16379 -o redis.toml --framing resp

exit status:
  0  the file is written
  1  nothing is written: the proxy saw an error (the server could not be reached...), or
     no client said anything; or the conversation does not fit --framing (then the file
     is written with raw, and it says so)
  2  it could not start: a wrong option, an address it cannot listen on, tomli-w missing
"""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``record`` to the ``fakepeer`` command's subparsers (``add_subparsers()``)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "record",
        help="relay to a real server and write the conversation as a script that replays it",
        description="Relay clients to a real server, then write what they said to each "
        "other as a script file (TOML) that `fakepeer run` replays.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_upstream_options(parser)
    parser.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="the script file to write"
    )
    parser.add_argument(
        "--framing", default="raw", metavar="SPEC", help="how the client's bytes are cut"
    )
    parser.add_argument(
        "--reply-framing", metavar="SPEC", help="write replies as messages of this framing"
    )
    parser.add_argument(
        "--connections",
        type=int,
        metavar="N",
        help="stop once N clients have come and gone (connected, then closed)",
    )
    add_where_options(parser, "the proxy", file=False, seed=False)
    add_output_options(parser)
    return parser


def _value(text: str) -> object:
    """A TOML value (``"\\r\\n"``, ``12``, ``true``), or else the text as it is."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_framing(spec: str, option: str = "--framing") -> Framing:
    """A framing from ``KIND`` or ``KIND:KEY=VALUE,...`` (the kinds and keywords of a script
    file's ``[framing]``); :class:`~fakepeer.ScriptError` naming the option and ``spec``."""
    where = f"{option} {spec!r}"
    kind, _, rest = spec.partition(":")
    table: dict[str, object] = {"kind": kind.strip()}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ScriptError(f"{where}: expected KIND:KEY=VALUE,..., got {item!r}")
        table[key.strip()] = _value(value.strip())
    try:
        return to_framing(table, Place(option, {}))
    except ScriptError as error:
        why = str(error).removeprefix(f"{option}:1: ")
        raise ScriptError(f"{where}: {why}") from None


def _make(args: argparse.Namespace) -> tuple[Proxy, Framing, Framing | None]:
    check_writer()
    if args.connections is not None and args.connections < 1:
        raise ScriptError(f"--connections {args.connections}: a number of clients >= 1")
    framing = parse_framing(args.framing)
    replies = None if args.reply_framing is None else parse_framing(args.reply_framing)
    proxy = Proxy(
        upstream_address(args.upstream),
        name="record",
        upstream_tls=upstream_tls(args),
        transcript_budget=None,
        **where_overrides(args),
    )
    return proxy, framing, replies


#: The events after which a connection is over: the last of it, or the second side's EOF.
_OVER: Final = frozenset({"closed", "reset", "lost"})


class Gone:
    """Counts the connections that came and went, from the proxy's events as they come: a
    connection is gone once it closed, or once both sides sent their EOF."""

    def __init__(self, wanted: int | None) -> None:
        self.wanted = wanted
        self.eofs: Counter[int] = Counter()
        self.gone: set[int] = set()

    def watch(self, event: Event) -> None:
        if event.kind in _OVER:
            self.gone.add(event.connection)
        elif event.kind in ("eof", "half-closed"):
            self.eofs[event.connection] += 1
            if self.eofs[event.connection] == 2:
                self.gone.add(event.connection)

    def ended(self) -> str | None:
        if self.wanted is not None and len(self.gone) >= self.wanted:
            return f"{self.wanted} client(s) came and went (--connections)"
        return None


def run(args: argparse.Namespace) -> int:
    """``fakepeer record``: the exit status (see the epilog)."""
    try:
        proxy, framing, replies = _make(args)
    except ScriptError as exc:
        return option_error(exc, args)
    gone = Gone(args.connections)
    unwatch = proxy.transcript._watch(gone.watch)
    upstream = proxy.transcript.upstream
    try:
        status = serve_command(
            proxy,
            args,
            ended=gone.ended,
            line=lambda address: f"recording on {address}{proxy._over()} from {upstream}",
            fields={"name": proxy.name, "upstream": upstream},
            outputs=(("-o", args.output),),
        )
    finally:
        unwatch()
    if status == USAGE:
        return status
    return max(status, _write(proxy, args.output, framing, replies, status == FAILED))


def _write(
    proxy: Proxy, output: str, framing: Framing, replies: Framing | None, failed: bool
) -> int:
    """Write the recording; if it does not fit the framings named, write it with raw.
    Nothing is written (an existing file is left as it is) when the proxy saw an error
    (``failed``) or nothing was said: the exit status is then :data:`FAILED`."""
    if failed:
        print(
            f"fakepeer: error: the proxy saw an error, so {output} is not written (a recording "
            "is of what the server said): record again once the server is reached"
        )
        return FAILED
    status = 0
    try:
        try:
            text, connections = proxy._recording(framing, replies)
        except ScriptError as error:
            if type(framing) is Raw and replies is None:
                raise
            print(f"fakepeer: {error}\nfakepeer: so it is written with --framing raw")
            status = FAILED
            text, connections = proxy._recording(None, None)
        if not connections:
            print(
                "fakepeer: error: nothing was recorded (no client talked to the server): "
                f"{output} is not written"
            )
            return FAILED
        write_whole(output, text)
    except ScriptError as error:
        print(f"fakepeer: error: {error}")
        return FAILED
    except OSError as exc:
        print(f"fakepeer: error: cannot write {output}: {exc.strerror or exc}")
        return FAILED
    for line in proxy._left_out:
        print(f"fakepeer: {line}")
    print(f"fakepeer: wrote {output} ({connections} connection{'' if connections == 1 else 's'})")
    return status
