"""RESP, the Redis serialization protocol: stand in for a Redis server.

The protocol is RESP2 and RESP3 as the Redis documentation specifies it
(https://redis.io/docs/latest/develop/reference/protocol-spec/). A client sends commands,
each an array of bulk strings (``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``) or an inline
command (a line, ``GET k\\r\\n``); the server answers each with one reply. A client chooses
RESP3 with ``HELLO 3``; until then the connection speaks RESP2. redis-py 8 sends ``HELLO 3``
on connect, then ``CLIENT MAINT_NOTIFICATIONS ON ...`` and ``CLIENT SETINFO`` twice::

    from fakepeer import FakePeer
    from fakepeer.protocols import resp

    peer = FakePeer(framing=resp.framing())
    resp.handshake(peer)                       # HELLO, CLIENT SETINFO, ... answered
    peer.expect(resp.command("GET", "k")).reply(resp.bulk_string("v"))

The kit, built of fakepeer's public API only (a model for a kit of your own):

:func:`framing` (``max_length=1 MiB``)
    Cuts what the client sends into commands, one message each, as sent on the wire (the
    transcript shows them so). A client's bytes that are no RESP command raise
    :class:`~fakepeer.FramingError`: a first byte that is neither ``*`` nor text (a TLS
    handshake, say), a multibulk length that is not a count of 1 to 1048576,
    an element that is not a bulk string, a bulk string not followed by ``\\r\\n``, a command
    over ``max_length`` bytes. Empty inline lines are skipped, as Redis does; inline
    commands are split at whitespace (quotes are not interpreted). Its ``encode`` sends a
    reply unchanged if it is one or more whole RESP replies (the builders below return
    them), else raises :class:`~fakepeer.ScriptError` (``.reply("OK")`` where
    ``.reply(resp.simple_string("OK"))`` was meant); malformed replies on purpose need
    ``FakePeer(framing=resp.framing(), reply_framing=Raw())``.
:func:`command` ``(name, *args)``
    A :class:`~fakepeer.Matcher` of commands: ``command("SET", "k", ANY)``. The name matches
    whatever its case; a name of two words is a container command and its subcommand,
    ``command("CLIENT SETINFO", ...)``: only Redis's containers (``ACL``, ``CLIENT``,
    ``CLUSTER``, ``COMMAND``, ``CONFIG``, ``FUNCTION``, ``LATENCY``, ``MEMORY``, ``MODULE``,
    ``OBJECT``, ``PUBSUB``, ``SCRIPT``, ``SLOWLOG``, ``XGROUP``, ``XINFO``) take one, so
    ``command("GET k")`` is a :class:`~fakepeer.ScriptError` that points to
    ``command("GET", "k")``. Each argument is bytes or str (exactly those bytes),
    an int (its decimal digits, as clients send numbers), :data:`~fakepeer.ANY` (any one
    argument) or a matcher (``prefix("user:")``, judging the argument as a whole message);
    ``...`` last accepts any further arguments. Otherwise the number of arguments must be
    equal. A reply callable receives the :class:`Command`. Anything else as an argument is
    a :class:`~fakepeer.ScriptError`. It judges the messages of :func:`framing` (with
    ``Raw()`` it matches nothing).
:func:`parse` ``(message) -> Command``
    The command in one message, for handlers: ``parse(await connection.receive())``.
Reply builders, each returning the bytes of one reply:
    :func:`simple_string`, :func:`error`, :func:`integer`, :func:`bulk_string`,
    :func:`null`, :func:`array`, :func:`map`, :func:`boolean`, :func:`double`. Those whose
    encoding differs between RESP2 and RESP3 (``null``, ``map``, ``boolean``, ``double``)
    take ``protocol=3`` (the default: what redis-py 8 and every client that sends
    ``HELLO 3`` speak) or ``protocol=2`` (``null`` is ``$-1``, a map a flat array, a boolean
    the integer 1 or 0, a double a bulk string). A reply callable can choose per connection
    with :func:`protocol_of`. A wrong argument (a line end in a simple string, an array item
    that is not an encoded reply) is a :class:`~fakepeer.ScriptError`.
:func:`handshake` ``(script, *, version="7.4.0")``
    The preset: ``always`` rules that answer what redis-py sends on connect (``HELLO``,
    ``CLIENT SETINFO``, ``CLIENT SETNAME``, ``CLIENT MAINT_NOTIFICATIONS``, ``SELECT``).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from fakepeer import (
    ANY,
    Connection,
    ConnectionScript,
    FakePeer,
    FramingError,
    Matched,
    Matcher,
    Rule,
    ScriptError,
    exact,
)

from . import _resp_scan
from ._resp_wire import CONTAINERS as _CONTAINERS
from ._resp_wire import CRLF as _CRLF
from ._resp_wire import REPLY_TYPES as _REPLY_TYPES
from ._resp_wire import command_at as _command_at
from ._resp_wire import reply_problem as _reply_problem
from ._resp_wire import show as _show
from ._resp_wire import too_long as _too_long

__all__ = [
    "Command",
    "CommandMatcher",
    "RESPFraming",
    "array",
    "boolean",
    "bulk_string",
    "command",
    "double",
    "error",
    "framing",
    "handshake",
    "integer",
    "map",
    "null",
    "parse",
    "protocol_of",
    "simple_string",
]

#: The default ``max_length``: the most bytes one command may take on the wire.
MAX_LENGTH: Final = 1024 * 1024


# -- the client's commands -------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A command as the client sent it: ``name`` upper-cased (``"GET"``; UTF-8, an invalid
    byte replaced), ``args`` the arguments after it, as bytes (``(b"k",)``)."""

    name: str
    args: tuple[bytes, ...]

    def __str__(self) -> str:
        return " ".join([self.name, *(repr(arg)[1:] for arg in self.args)])


class RESPFraming:
    """The framing of what a RESP client sends: one message per command (see the module
    docstring). Replies go out unchanged. Immutable; equal when the limits are."""

    streaming = False

    def __init__(self, *, max_length: int = MAX_LENGTH) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 16:
            raise ScriptError(
                f"resp.framing(max_length={max_length!r}): the limit is a whole number of "
                "bytes >= 16"
            )
        self._max_length = max_length

    @property
    def max_length(self) -> int:
        """The most bytes one command may take on the wire."""
        return self._max_length

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        """Cut the whole commands off ``buffer``; an incomplete one stays (see the module
        docstring for the errors)."""
        messages: list[bytes] = []
        start, limit = 0, self._max_length
        while start < len(buffer):
            found = _command_at(buffer, start, limit)
            if found is None:
                if len(buffer) - start >= limit:
                    raise _too_long(len(buffer) - start, limit)
                break
            words, end = found
            if end - start > limit:
                raise _too_long(end - start, limit)
            if words:
                messages.append(buffer[start:end])
            start = end
        return messages, start

    def waiting(self, buffer: bytearray, mark: int) -> int | None:
        """The framing protocol's optional ``waiting``: a long command is scanned once."""
        return _resp_scan.waiting(buffer, mark, self._max_length)

    def mark(self, rest: bytearray) -> int:
        """The framing protocol's optional ``mark``, for what :meth:`decode` left."""
        return _resp_scan.mark(rest)

    def encode(self, message: bytes) -> bytes:
        """``message`` unchanged, if it is one or more whole RESP replies (as this kit's
        builders make them); else a :class:`~fakepeer.ScriptError` naming the builders (raised
        as the rule is written, for a constant reply). Bytes malformed on purpose go out
        with ``FakePeer(framing=resp.framing(), reply_framing=Raw())``."""
        problem = _reply_problem(message)
        if problem is None:
            return message
        text = message.decode(errors="replace")
        text = text[1:] if text.startswith("+") else text  # '+OK' without its line end
        example = text if text.isprintable() and 0 < len(text) <= 40 else "OK"
        raise ScriptError(
            f"{self!r}: the reply {_show(message)} is no whole RESP reply: {problem}; build "
            f"replies with the kit: resp.simple_string({example!r}), resp.error('ERR ...'), "
            "resp.integer(1), resp.bulk_string(b'...'), resp.array(...), resp.null()... (to "
            "send malformed bytes on purpose, pass FakePeer(framing=resp.framing(), "
            "reply_framing=Raw()))"
        )

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._max_length == self._max_length

    def __hash__(self) -> int:
        return hash((type(self), self._max_length))

    def __repr__(self) -> str:
        return (
            "resp.framing()"
            if self._max_length == MAX_LENGTH
            else (f"resp.framing(max_length={self._max_length})")
        )


def framing(*, max_length: int = MAX_LENGTH) -> RESPFraming:
    """The framing of RESP commands; ``max_length`` is the most bytes one may take (>= 16)."""
    return RESPFraming(max_length=max_length)


def _words(message: bytes) -> list[bytes]:
    found = _command_at(message, 0, len(message) + 1) if message else None
    if found is None or not found[0]:
        raise FramingError(f"RESP: {_show(message)} is no whole command")
    words, end = found
    if end != len(message):
        raise FramingError(f"RESP: {_show(message)} holds more than one command")
    return words


def parse(message: bytes) -> Command:
    """The :class:`Command` in ``message``, one message of :func:`framing`.

    Raises :class:`~fakepeer.FramingError` when ``message`` is not exactly one command.
    """
    words = _words(bytes(message))
    return Command(words[0].decode("utf-8", "replace").upper(), tuple(words[1:]))


# -- the command matcher ---------------------------------------------------------------------


def _argument(spec: object, index: int) -> Matcher:
    if isinstance(spec, Matcher):  # ANY included
        return spec
    if isinstance(spec, bool) or not isinstance(spec, bytes | str | int):
        raise ScriptError(
            f"command(): argument {index} is {type(spec).__name__} {spec!r}; an argument is "
            "bytes, str, an int, fakepeer.ANY, a matcher, or ... (last: any further ones)"
        )
    return exact(str(spec) if isinstance(spec, int) else spec)


class CommandMatcher(Matcher):
    """Commands of one name (and subcommand) with arguments that match; see :func:`command`."""

    def __init__(self, name: tuple[bytes, ...], args: tuple[Matcher, ...], rest: bool) -> None:
        self.name = name
        self.args = args
        self.rest = rest

    def _judge(self, words: list[bytes]) -> str | None:
        """Why ``words`` are not such a command (a verb phrase), or None when they are."""
        size = len(self.name)
        name = b" ".join(word.upper() for word in words[:size])
        if name != b" ".join(self.name):
            return f"is the command {_show(name)}, not {_show(b' '.join(self.name))}"
        args, wanted = words[size:], len(self.args)
        if len(args) < wanted or (len(args) > wanted and not self.rest):
            return f"has {len(args)} argument(s) after the name, not {wanted}"
        for index, (arg, matcher) in enumerate(zip(args, self.args, strict=False), 1):
            if not isinstance(matcher.match(arg, stream=False), Matched):
                return f"has an argument {index} ({_show(arg)}) that {matcher.explain(arg)}"
        return None

    def match(self, data: bytes, *, stream: bool) -> Matched | None:
        if stream:  # a kit's matchers judge the messages of the kit's framing, not a stream
            return None
        try:
            words = _words(data)
        except FramingError:
            return None
        if self._judge(words) is not None:
            return None
        return Matched(
            Command(words[0].decode("utf-8", "replace").upper(), tuple(words[1:])), len(data)
        )

    def describe(self) -> str:
        parts = [f"'{b' '.join(self.name).decode()}'"]
        parts += [matcher.describe() for matcher in self.args]
        return f"command({', '.join(parts + ['...'] * self.rest)})"

    def explain(self, data: bytes) -> str:
        try:
            words = _words(data)
        except FramingError as exc:
            return f"is not a RESP command ({exc.diagnosis})"
        return self._judge(words) or f"matches {self.describe()}"

    def _closeness(self, data: bytes, stream: bool) -> float:
        try:
            words = _words(data)
        except FramingError:
            return 0.0
        size = len(self.name)
        if [word.upper() for word in words[:size]] != list(self.name):
            return 0.0
        args = words[size:]
        agree = sum(
            isinstance(matcher.match(arg, stream=False), Matched)
            for arg, matcher in zip(args, self.args, strict=False)
        )
        return 0.5 + 0.5 * agree / max(len(self.args), len(args), 1)


def command(name: str | bytes, *args: object) -> Matcher:
    """A matcher of the command ``name`` (and subcommand) with ``args``: see the module
    docstring. Raises :class:`~fakepeer.ScriptError` for an empty name or a wrong argument."""
    if not isinstance(name, str | bytes):
        raise ScriptError(f"command(): the name is a str, not {type(name).__name__} {name!r}")
    spelled = (name.encode() if isinstance(name, str) else name).split()
    if not name.isascii():  # every Redis command is named in ASCII
        raise ScriptError(f"command({name!r}): a command's name is ASCII, such as 'GET'")
    words = tuple(word.upper() for word in spelled)
    if len(words) > 1 and words[0] not in _CONTAINERS:  # "GET k": a command and an argument
        each = ", ".join(repr(word.decode(errors="replace")) for word in spelled)
        raise ScriptError(
            f"command({name!r}): {_show(words[0])} takes no subcommand: pass each argument on "
            f"its own, command({each}) (a name of two words is a container command and its "
            "subcommand: 'CLIENT SETINFO', 'CONFIG GET'...)"
        )
    if not 1 <= len(words) <= 2:
        raise ScriptError(
            f"command({name!r}): the name is a command, optionally with a subcommand "
            "('CLIENT SETINFO')"
        )
    rest = bool(args) and args[-1] is Ellipsis
    specs = args[:-1] if rest else args
    return CommandMatcher(words, tuple(_argument(s, i) for i, s in enumerate(specs, 1)), rest)


# -- replies ---------------------------------------------------------------------------------


def _bytes(data: object, builder: str) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise ScriptError(f"{builder}() takes bytes or str, not {type(data).__name__} {data!r}")


def _check_protocol(protocol: object, builder: str) -> int:
    if protocol not in (2, 3) or not isinstance(protocol, int) or isinstance(protocol, bool):
        raise ScriptError(f"{builder}(protocol={protocol!r}): the protocol is 2 or 3")
    return protocol


def _line(kind: bytes, text: object, builder: str) -> bytes:
    data = _bytes(text, builder)
    if b"\r" in data or b"\n" in data:
        raise ScriptError(
            f"{builder}({text!r}): a line end cannot be in it (use bulk_string() for any bytes)"
        )
    return kind + data + _CRLF


def simple_string(text: str | bytes) -> bytes:
    """``+text``: a short status such as ``simple_string("OK")``; no line end in ``text``."""
    return _line(b"+", text, "simple_string")


def error(message: str | bytes) -> bytes:
    """``-message``, an error reply: redis-py raises ``ResponseError`` (or a subclass chosen
    by the first word). By convention it starts with a code: ``error("ERR no such key")``,
    ``error("WRONGTYPE Operation against a key holding the wrong kind of value")``."""
    if not message:
        raise ScriptError("error(''): an error needs a message, such as 'ERR something'")
    return _line(b"-", message, "error")


def integer(value: int) -> bytes:
    """``:value``, a signed 64-bit integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScriptError(f"integer() takes an int, not {type(value).__name__} {value!r}")
    if not -(2**63) <= value < 2**63:
        raise ScriptError(f"integer({value}): RESP integers are signed 64-bit")
    return b":%d\r\n" % value


def bulk_string(data: str | bytes) -> bytes:
    """``$len`` then the bytes (a str is UTF-8): any bytes, line ends included."""
    value = _bytes(data, "bulk_string")
    return b"$%d\r\n%s\r\n" % (len(value), value)


def null(*, protocol: int = 3) -> bytes:
    """No value: RESP3's ``_``, RESP2's null bulk string ``$-1`` (redis-py gives ``None``)."""
    return b"_\r\n" if _check_protocol(protocol, "null") == 3 else b"$-1\r\n"


def _replies(items: Iterable[object], builder: str) -> list[bytes]:
    replies = []
    for item in items:
        if not (
            isinstance(item, bytes) and item[:1] and item[0] in _REPLY_TYPES and item[-2:] == _CRLF
        ):
            raise ScriptError(
                f"{builder}(): {item!r} is not an encoded reply; build each item with this "
                "kit, e.g. resp.bulk_string(b'a')"
            )
        replies.append(item)
    return replies


def array(*items: bytes) -> bytes:
    """``*n`` then ``n`` replies, each built by this kit: ``array(bulk_string("a"),
    integer(1))``. A null array is :func:`null`."""
    replies = _replies(items, "array")
    return b"*%d\r\n" % len(replies) + b"".join(replies)


def map(  # the spec's name for the type (this module never uses the builtin map)
    pairs: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]], *, protocol: int = 3
) -> bytes:
    """``%n`` then ``n`` key and value replies, each built by this kit (redis-py gives a
    dict); with ``protocol=2`` the flat array of keys and values RESP2 uses instead."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    flat = _replies((part for pair in items for part in pair), "map")
    kind = b"%" if _check_protocol(protocol, "map") == 3 else b"*"
    return kind + b"%d\r\n" % (len(flat) // 2 if kind == b"%" else len(flat)) + b"".join(flat)


def boolean(value: bool, *, protocol: int = 3) -> bytes:
    """RESP3's ``#t`` or ``#f``; with ``protocol=2`` the integer 1 or 0."""
    if not isinstance(value, bool):
        raise ScriptError(f"boolean() takes True or False, not {value!r}")
    if _check_protocol(protocol, "boolean") == 2:
        return integer(int(value))
    return b"#t\r\n" if value else b"#f\r\n"


def double(value: float, *, protocol: int = 3) -> bytes:
    """RESP3's ``,value`` (``inf``, ``-inf`` and ``nan`` included); with ``protocol=2`` a
    bulk string of the number, as Redis sends scores."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScriptError(f"double() takes a float, not {type(value).__name__} {value!r}")
    text = "nan" if math.isnan(value) else repr(float(value))
    if _check_protocol(protocol, "double") == 2:
        return bulk_string(text)
    return f",{text}\r\n".encode()


# -- the handshake ---------------------------------------------------------------------------


def protocol_of(connection: Connection) -> int:
    """The RESP version the client chose on ``connection``: the version of its last
    ``HELLO 2`` or ``HELLO 3``, else 2 (every connection starts with RESP2). Each call reads
    only the messages that arrived since the last call on the same connection.

    ``fakepeer run`` keeps a bounded window of what a connection received (the oldest
    dropped): the last message read is found again by identity, not by its index."""
    seen, last, protocol = _PROTOCOLS.get(connection, (0, None, 2))
    received = connection.received
    start = _resume(received, seen, last)
    for message in received[start:]:
        if b"HELLO" not in message[:24].upper():  # the name comes first: skip the parse
            continue
        try:
            sent = parse(message)
        except FramingError:
            continue
        if sent.name == "HELLO" and sent.args and sent.args[0] in (b"2", b"3"):
            protocol = int(sent.args[0])
    _PROTOCOLS[connection] = (len(received), received[-1] if received else None, protocol)
    return protocol


def _resume(received: list[bytes], seen: int, last: bytes | None) -> int:
    """Where to go on reading ``received``: after ``last``, the message that was at index
    ``seen - 1`` when it was last read (still there unless older messages were dropped);
    from the start if it was dropped too."""
    if last is None or (seen <= len(received) and received[seen - 1] is last):
        return seen if last is not None else 0
    for index in range(min(seen, len(received)) - 1, -1, -1):  # it can only have moved down
        if received[index] is last:
            return index + 1
    return 0


#: What :func:`protocol_of` read of each connection: (messages read, the last of them, the
#: version).
_PROTOCOLS: weakref.WeakKeyDictionary[Connection, tuple[int, bytes | None, int]] = (
    weakref.WeakKeyDictionary()
)


def _hello(server_version: str) -> Callable[[Command, Connection], bytes]:
    def hello(sent: Command, connection: Connection) -> bytes:
        """HELLO [protover [AUTH user pass] [SETNAME name]]: the server's properties, in the
        protocol asked for (Redis's ``NOPROTO`` error for a version other than 2 or 3)."""
        if sent.args and sent.args[0] not in (b"2", b"3"):
            return error("NOPROTO unsupported protocol version")
        protocol = protocol_of(connection)  # this HELLO's (read: it is the last received)
        return map(
            {
                bulk_string("server"): bulk_string("redis"),
                bulk_string("version"): bulk_string(server_version),
                bulk_string("proto"): integer(protocol),
                bulk_string("id"): integer(connection.id),
                bulk_string("mode"): bulk_string("standalone"),
                bulk_string("role"): bulk_string("master"),
                bulk_string("modules"): array(),
            },
            protocol=protocol,
        )

    return hello


def handshake(script: FakePeer | ConnectionScript, *, version: str = "7.4.0") -> list[Rule]:
    """Add to ``script`` the ``always`` rules that answer what redis-py sends on connect.

    ``HELLO [2|3 ...]`` gets the server's properties (``version`` is the Redis version it
    claims) in the protocol asked for, with any ``AUTH`` credentials; ``CLIENT SETINFO``,
    ``CLIENT SETNAME``, ``CLIENT MAINT_NOTIFICATIONS`` and ``SELECT`` get ``+OK``. Returns
    the rules, in that order. Being ``always`` rules, they answer on every connection and
    need not come: ``expect`` rules written for these commands are tried first.
    """
    if not isinstance(version, str) or not version:
        raise ScriptError(f"handshake(version={version!r}): the Redis version is a str")
    ok = simple_string("OK")
    return [
        script.always(command("HELLO", ...)).reply(_hello(version)),
        script.always(command("CLIENT SETINFO", ANY, ANY)).reply(ok),
        script.always(command("CLIENT SETNAME", ANY)).reply(ok),
        script.always(command("CLIENT MAINT_NOTIFICATIONS", ...)).reply(ok),
        script.always(command("SELECT", ANY)).reply(ok),
    ]
