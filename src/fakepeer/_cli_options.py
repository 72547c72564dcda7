"""The options the serving commands share (``fakepeer run``, ``proxy``, ``record``,
``learn``), and their errors in the options' words.

:func:`add_where_options` (where it listens) and :func:`add_output_options` (the timeout and
the files it writes), their argparse types (:func:`port`, :func:`seconds`), the keywords they
give a FakePeer or a Proxy (:func:`where_overrides`), the check of a file's path before
serving (:func:`unwritable`), and :func:`in_option_terms`: an error of FakePeer or Proxy
about a keyword the user gave as an option, said with that option.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import ssl
from pathlib import Path
from typing import Any, Final

from ._errors import ScriptError

__all__ = [
    "add_output_options",
    "add_upstream_options",
    "add_where_options",
    "in_option_terms",
    "port",
    "seconds",
    "unwritable",
    "upstream_tls",
    "where_overrides",
]


def port(text: str) -> int:
    """An argparse type: a port number from 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"takes a port number from 0 to 65535 (0: the OS chooses a free one), got {text!r}"
        )
    return value


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"takes a number of seconds > 0, got {text!r}")
    return value


def add_where_options(
    parser: argparse.ArgumentParser, what: str, *, file: bool = True, seed: bool = True
) -> None:
    """``--host``, ``--port``, ``--unix``, ``--external``, ``--tls``, and with ``seed``
    ``--seed``: where and how ``what`` listens; with ``file``, given ones win over the
    script file's ``[peer]`` table (the heading says so)."""
    heading = "where it listens (given ones win over the file's)" if file else "where it listens"
    where = parser.add_argument_group(heading)
    where.add_argument("--host", help=f"the address {what} listens on (default 127.0.0.1)")
    where.add_argument("--port", type=port, help="the port (default 0: the OS chooses a free one)")
    where.add_argument(
        "--unix",
        nargs="?",
        const=True,
        metavar="PATH",
        help="listen on a Unix socket at PATH (without PATH: a fresh path in a private "
        "directory) instead of a host and port",
    )
    where.add_argument(
        "--external",
        action="store_true",
        default=None,
        help="allow a --host beyond loopback (0.0.0.0, a LAN address): other machines can "
        "then reach it",
    )
    where.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help="serve TLS with a certificate made for the run (needs fakepeer[tls]); the "
        "clients trust its CA, written to --ca-file",
    )
    if seed:
        where.add_argument("--seed", type=int, help="the seed of the faults' randomness")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--timeout``, ``--address-file``, ``--ca-file``, ``--journal``, ``--pcapng``,
    ``--quiet``."""
    out = parser.add_argument_group("running and output")
    out.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="stop after this long in all (default: no limit)",
    )
    out.add_argument(
        "--address-file",
        metavar="FILE",
        help="write the address (HOST:PORT, or a Unix socket's path) to FILE once it "
        "listens (written whole: poll for it); removed when the command ends",
    )
    out.add_argument(
        "--ca-file",
        metavar="FILE",
        help="with --tls: write the CA certificate (PEM) the clients trust to FILE, before "
        "the address file",
    )
    out.add_argument(
        "--journal",
        metavar="FILE",
        help="write every event as a JSON line to FILE ('-': standard output, the console "
        "then goes to standard error)",
    )
    out.add_argument(
        "--pcapng",
        metavar="FILE",
        help="at the end, write the transcript to FILE as a pcapng capture, for Wireshark "
        "or tshark (see docs/howto-wireshark.md)",
    )
    out.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="print no transcript: only the address and the verdict",
    )


def where_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of the where options the user gave, as a FakePeer or Proxy takes them.
    A Unix socket or a host/port given wins whole over the other form in the file."""
    overrides: dict[str, Any] = {}
    if args.unix is not None:
        overrides.update(unix=args.unix, host="127.0.0.1", port=0)
    elif args.host is not None or args.port is not None:
        overrides["unix"] = None
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    for key in ("external", "tls", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    return overrides


def unwritable(option: str, path: str) -> str | None:
    """Why the file ``path`` of ``option`` cannot be written (its directory is missing,
    it is a directory), or None: checked before serving, so that a mistake is said at once
    and not after a run (or a recording) is over."""
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        return f"{option} {path}: cannot write it: no directory {parent}"
    if target.is_dir():
        return f"{option} {path}: cannot write it: it is a directory"
    if not os.access(parent, os.W_OK):
        return f"{option} {path}: cannot write it: the directory {parent} is not writable"
    return None


#: An error of FakePeer or Proxy about a keyword a where option gives: its first words.
_KEYWORD: Final = re.compile(r"(?:FakePeer|Proxy)\((host|port|unix|tls|external)=[^)]*\)")

#: The options that stand for the keyword an error names.
_OPTIONS: Final = {
    "host": ("host", "port"),
    "port": ("host", "port"),
    "unix": ("unix",),
    "tls": ("tls",),
    "external": ("host", "external"),
}


def in_option_terms(text: str, args: argparse.Namespace) -> str:
    """``text``, an error of FakePeer or Proxy about a keyword the user gave as an option
    (``FakePeer(host='10.0.0.1') ... say external=True``), said with the options the user
    typed (``--host 10.0.0.1 ... add --external``). Any other error is as it is: a script
    file's own mistakes keep their ``FILE:LINE``."""
    found = _KEYWORD.match(text)
    if found is None:
        return text
    given = {key: getattr(args, key, None) for key in ("host", "port", "unix", "tls", "external")}
    named = [key for key in _OPTIONS[found[1]] if given[key] is not None]
    if not named:
        return text
    spelled = " ".join(
        f"--{key}" if given[key] is True else f"--{key} {given[key]}" for key in named
    )
    return spelled + text[found.end() :].replace("say external=True", "add --external")


def add_upstream_options(parser: argparse.ArgumentParser) -> None:
    """``--upstream``, ``--upstream-tls`` and ``--upstream-ca``: the real server of a
    proxy (``proxy``, ``record``)."""
    parser.add_argument(
        "--upstream",
        required=True,
        metavar="HOST:PORT",
        help="the real server: HOST:PORT, [IPv6]:PORT, or a Unix socket's path",
    )
    parser.add_argument(
        "--upstream-tls",
        action="store_true",
        help="connect to the server over TLS, trusting the system's CAs (or --upstream-ca)",
    )
    parser.add_argument(
        "--upstream-ca", metavar="FILE", help="with --upstream-tls: trust this CA (PEM) only"
    )


def upstream_tls(args: argparse.Namespace) -> bool | ssl.SSLContext:
    """``Proxy(upstream_tls=...)`` from ``--upstream-tls`` and ``--upstream-ca``;
    :class:`~fakepeer.ScriptError` naming the option if they are wrong."""
    if not args.upstream_ca:
        return bool(args.upstream_tls)
    if not args.upstream_tls:
        raise ScriptError("--upstream-ca: add --upstream-tls (the CA is for its handshake)")
    try:
        return ssl.create_default_context(cafile=args.upstream_ca)
    except (OSError, ssl.SSLError) as exc:
        raise ScriptError(f"--upstream-ca {args.upstream_ca}: {exc}") from None
