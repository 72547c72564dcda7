"""``fakepeer proxy --upstream HOST:PORT``: a fault-injecting proxy as a process.

A subcommand module of the command line: :func:`add_parser` and :func:`run` (see
``fakepeer._cli``). What it prints and writes is in docs/cli.md; the fault syntax in
``fakepeer._cli_faults``.
"""

from __future__ import annotations

import argparse
from typing import Any

from . import _cli_faults
from ._cli_common import (
    add_output_options,
    add_where_options,
    option_error,
    serve_command,
    where_overrides,
)
from ._cli_options import add_upstream_options, upstream_tls
from ._errors import ScriptError
from ._proxy import Proxy

__all__ = ["add_parser", "run"]

_EPILOG = """\
Each client's connection is relayed to the upstream server; the faults shape what passes
(what the server sends back, or with direction=upstream what the client sends). The first
line says where it listens, then each event as it happens. It serves until --timeout, or
Ctrl-C (SIGINT), SIGTERM or SIGHUP.

a fault (--fault SPEC, repeatable):
  KIND                              blackhole, reset_peer, half_close, refuse, ...
  KIND=VALUE[,KEY=VALUE...]         latency=0.2   (VALUE: its first parameter)
  KIND:KEY=VALUE[,KEY=VALUE...]     latency:seconds=0.2,jitter=0.05,direction=upstream
  KIND is a method of peer.faults (see the faults' reference); the keys are its keywords,
  and the schedule's after, lasting, first, per (seconds, seconds, a count,
  connection|request); reset_peer's own after is fault_after. VALUEs are TOML values
  (0.2, 3, true, "text") or plain words.
  --faults FILE reads [[faults]] tables of the same keys, as in a script file.

examples:
  fakepeer proxy --upstream 127.0.0.1:6379 --port 16379 --fault latency=0.2
  fakepeer proxy --upstream db.internal:5432 --fault slice:size=1,delay=0.01 --timeout 60
  fakepeer proxy --upstream 127.0.0.1:8080 --fault reset_peer:first=1 --journal proxy.jsonl
  fakepeer proxy --upstream example.org:443 --upstream-tls --tls --ca-file ca.pem

exit status:
  0  stopped, and the proxy saw no error
  1  it saw an error (the upstream server could not be reached...); its text is printed
  2  it could not start: a wrong option or fault, an address it cannot listen on
"""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``proxy`` to the ``fakepeer`` command's subparsers (``add_subparsers()``)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "proxy",
        help="relay to a real server, with network faults, and show the traffic",
        description="Relay clients to a real server through network faults (latency, "
        "slicing, resets...), printing the traffic as it happens.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_upstream_options(parser)
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="a fault, as below (repeatable)",
    )
    parser.add_argument("--faults", metavar="FILE", help="faults from a TOML file")
    add_where_options(parser, "the proxy", file=False)
    add_output_options(parser)
    return parser


def upstream_address(text: str) -> tuple[str, int] | str:
    """``--upstream``: ``(host, port)`` from ``HOST:PORT`` or ``[IPv6]:PORT``; a text with
    a ``/`` and no port is a Unix socket's path."""
    host, colon, port = text.rpartition(":")
    if colon and port.isdigit() and host:
        return host, int(port)
    if "/" in text:
        return text
    raise ScriptError(
        f"--upstream {text!r}: expected HOST:PORT (such as 127.0.0.1:8080 or [::1]:8080) "
        "or the path of a Unix socket"
    )


def _make(args: argparse.Namespace) -> Proxy:
    proxy = Proxy(
        upstream_address(args.upstream), upstream_tls=upstream_tls(args), **where_overrides(args)
    )
    if args.faults:
        _cli_faults.apply_file(proxy, args.faults)
    for spec in args.fault:
        _cli_faults.apply(proxy, _cli_faults.parse_spec(spec), f"--fault {spec!r}")
    return proxy


def run(args: argparse.Namespace) -> int:
    """``fakepeer proxy``: the exit status (see the epilog)."""
    try:
        proxy = _make(args)
    except ScriptError as exc:
        return option_error(exc, args)
    upstream = proxy.transcript.upstream
    return serve_command(
        proxy,
        args,
        ended=lambda: None,
        line=lambda address: f"proxy {proxy.name!r} on {address}{proxy._over()} to {upstream}",
        fields={"name": proxy.name, "upstream": upstream},
    )
