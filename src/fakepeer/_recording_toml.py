"""A recorded conversation (:mod:`fakepeer._recording`) written as a script file.

Pure: returns text. The file follows the script format (``docs/api-script.md``):
``version = 1``, ``[framing]`` (the framing the client's bytes were cut with) and
``[reply_framing]``, then the rules: ``[[greeting]]`` for what the server sent first,
``[[expect]]`` per message of the client with its ``reply``, ``close = true`` on the last
rule when the server closed first. One connection recorded: top-level rules, which a
replay's every connection shares. Several: one ``[[connection]]`` table each (its
``number`` and its own ``[[connection.greeting]]`` and ``[[connection.expect]]``), so a
replay answers connection 1, 2, ... as the server did.

Bytes are written as text when they are printable UTF-8 (``\\r``, ``\\n`` and ``\\t``
escaped by TOML), else ``{ escaped = "..." }`` (Python's bytes-literal escapes) when they
are mostly text, else ``{ hex = "..." }``. Values go through ``tomli-w`` (the extra
``fakepeer[record]``); the tables are laid out here, one ``[[expect]]`` per rule (tomli-w
would inline short ones), with a header comment (TOML writers write none).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Final

from ._errors import ScriptError
from ._framing import Decoder, Framing
from ._recording import Recorded, conversations
from ._show import is_binary, show
from ._transcript import Event

__all__ = [
    "EXTRA",
    "KINDS",
    "bytes_value",
    "check_writer",
    "fitting",
    "framing_table",
    "http_match",
    "recording",
    "script_text",
    "table_text",
]

EXTRA: Final = "pip install 'fakepeer[record]'"

#: The script format's ``kind`` of each framing class, by the class's name.
KINDS: Final = {
    "Raw": "raw",
    "Lines": "lines",
    "Delimited": "delimited",
    "Fixed": "fixed",
    "LengthPrefixed": "length-prefixed",
    "LengthField": "length-field",
    "StxEtx": "stx-etx",
    "RESPFraming": "resp",
    "HTTPFraming": "http1",
    "MQTTFraming": "mqtt",
    "ModbusFraming": "modbus",
}

_ESCAPED: Final = [
    {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x5C: "\\\\"}.get(
        byte, chr(byte) if 0x20 <= byte < 0x7F else f"\\x{byte:02x}"
    )
    for byte in range(256)
]


def _tomli_w() -> Any:
    try:
        import tomli_w  # noqa: PLC0415 - an optional extra, imported when asked for
    except ImportError:
        raise ScriptError(
            f"writing a recording as a script file needs tomli-w, which is not installed: {EXTRA}"
        ) from None
    return tomli_w


def check_writer() -> None:
    """Raise the :class:`~fakepeer.ScriptError` of a missing tomli-w now, before a
    recording is made that could not be written."""
    _tomli_w()


def bytes_value(data: bytes) -> str | dict[str, str]:
    """``data`` as the script format's BYTES value: a string when it is printable UTF-8
    (tabs and line ends allowed), else ``{"escaped": ...}`` when it is mostly text, else
    ``{"hex": ...}`` (two digits a byte, a space between bytes)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        pass
    else:
        if all(char.isprintable() or char in "\t\r\n" for char in text):
            return text
    if is_binary(data):
        return {"hex": data.hex(" ")}
    return {"escaped": "".join([_ESCAPED[byte] for byte in data])}


def framing_table(framing: object, keyword: str = "framing") -> dict[str, object]:
    """The ``[framing]`` table that makes ``framing`` again: its ``kind`` and the keywords
    that differ from their defaults (bytes as BYTES values). A framing the format has no
    ``kind`` for (one of your own) is a :class:`~fakepeer.ScriptError` naming ``keyword``."""
    kind = KINDS.get(type(framing).__name__)
    if kind is None or not type(framing).__module__.startswith("fakepeer."):
        raise ScriptError(
            f"{keyword}={framing!r}: a script file names built-in framings only ("
            f"{', '.join(KINDS.values())}); record with the one closest to the client's "
            "protocol, or Raw()"
        )
    table: dict[str, object] = {"kind": kind}
    given: dict[str, object] = {}
    unsure: list[str] = []
    parameters = list(inspect.signature(type(framing).__init__).parameters.values())[1:]
    for parameter in parameters:
        value = getattr(framing, parameter.name)
        if value == parameter.default:
            continue
        given[parameter.name] = value
        if parameter.default is None:  # computed from the others when not given
            unsure.append(parameter.name)
    for name in unsure:
        rest = {key: value for key, value in given.items() if key != name}
        if type(framing)(**rest) == framing:
            del given[name]
    for name, value in given.items():
        table[name] = bytes_value(value) if isinstance(value, bytes) else value
    return table


def _with_max_length(framing: Framing, max_length: int) -> Framing | None:
    """``framing`` again with ``max_length`` (None: it has none, or cannot have this one)."""
    parameters = list(inspect.signature(type(framing).__init__).parameters.values())[1:]
    if "max_length" not in {parameter.name for parameter in parameters}:
        return None
    keywords = {parameter.name: getattr(framing, parameter.name) for parameter in parameters}
    keywords["max_length"] = max_length
    try:
        return type(framing)(**keywords)
    except (ScriptError, ValueError, TypeError):
        return None


def fitting(framing: Framing, events: Sequence[Event]) -> Framing:
    """``framing``, its ``max_length`` raised when a message the client sent in ``events``
    (a turn, under :class:`~fakepeer.Raw`) would not fit it, so the file replays what was
    recorded: the largest message's size (with its framing bytes), or when that is not
    enough for the framing's own count, every byte the client sent."""
    limit = getattr(framing, "max_length", None)
    if not isinstance(limit, int):
        return framing
    total = sum(len(event.data) for event in events if event.kind == "received")
    if total < limit:
        return framing  # no message can be over the limit
    roomy = _with_max_length(framing, total + 1)
    if roomy is None:
        return framing
    sizes = [
        len(framing.encode(exchange.message))
        for one in conversations(events, roomy)
        for exchange in one.exchanges
    ]
    needed = max(sizes, default=0)
    if needed <= limit:
        return framing
    tight = _with_max_length(framing, needed)
    if tight is not None:
        try:
            conversations(events, tight)
        except ScriptError:
            pass
        else:
            return tight
    return roomy


def _messages(data: bytes, framing: Framing, where: str) -> list[bytes]:
    """``data`` as whole messages of ``framing`` that it encodes back to ``data``, exactly;
    else a :class:`~fakepeer.ScriptError` saying where."""
    buffer = bytearray(data)
    try:
        messages = Decoder(framing).take(buffer, True)
        again = b"".join(framing.encode(message) for message in messages)
    except Exception as error:  # a FramingError, or a ScriptError of encode
        raise _unframed(framing, where, str(error)) from None
    if buffer or again != data:
        why = f"{show(bytes(buffer))} is no whole message" if buffer else "it frames otherwise"
        raise _unframed(framing, where, why)
    return messages


def _unframed(framing: Framing, where: str, why: str) -> ScriptError:
    return ScriptError(
        f"{where}: what the server sent does not fit reply_framing={framing!r} ({why}); "
        "record with reply_framing=None to keep the replies as the server sent them"
    )


def http_match(request: bytes) -> dict[str, object] | None:
    """An HTTP/1.1 request (as ``http1.framing()`` cuts it) as the script format's ``http``
    matcher: its method and target, and its body when it has one (not chunked), not its
    headers: they vary from run to run (``Host`` names the port the client connected to).
    None when it has no request line of three words (then it is matched exactly)."""
    head, _, body = request.partition(b"\r\n\r\n")
    words = head.split(b"\r\n", 1)[0].split(b" ")
    if len(words) != 3:
        return None
    try:
        method, target = words[0].decode("ascii"), words[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    match: dict[str, object] = {"http": [method, target]}
    if body and b"chunked" not in head.lower():
        match["body"] = bytes_value(body)
    return match


def _value(tomli_w: Any, value: object) -> str:
    """``value`` in TOML, inline (tables and arrays on one line)."""
    if isinstance(value, dict):
        inner = ", ".join(f"{key} = {_value(tomli_w, item)}" for key, item in value.items())
        return f"{{ {inner} }}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(tomli_w, item) for item in value) + "]"
    text: str = tomli_w.dumps({"v": value})
    return text[len("v = ") :].rstrip("\n")


def table_text(header: str, keys: dict[str, object]) -> str:
    """One table: its ``header`` line (``[[expect]]``), then a ``key = value`` line each."""
    tomli_w = _tomli_w()
    return "\n".join([header, *(f"{key} = {_value(tomli_w, item)}" for key, item in keys.items())])


class _Writer:
    """The script's text, table by table."""

    def __init__(self, framing: Framing, reply_framing: Framing | None) -> None:
        _tomli_w()
        self.http = KINDS.get(type(framing).__name__) == "http1"
        self.reply_framing = reply_framing
        self.lines: list[str] = []

    def table(self, header: str, keys: dict[str, object]) -> None:
        self.lines += ["", table_text(header, keys)]

    def replies(self, data: bytes, where: str) -> object:
        """A reply's value: one BYTES, or a list of them (messages of the reply framing)."""
        if self.reply_framing is None:
            return bytes_value(data)
        messages = [bytes_value(m) for m in _messages(data, self.reply_framing, where)]
        return messages[0] if len(messages) == 1 else messages

    def rules(self, recorded: Recorded, prefix: str) -> None:
        number = recorded.transcript_number  # as the user saw it, in the transcript
        end_at = len(recorded.exchanges) if recorded.end_at is None else recorded.end_at
        end_at = end_at if recorded.closed else -1  # the rule that ends it
        closing = end_at == 0  # the server closed before any message
        if recorded.greeting or closing:
            sends = self.replies(recorded.greeting, f"connection #{number}, greeting")
            sends = sends if isinstance(sends, list) else [sends] if recorded.greeting else []
            greeting: dict[str, object]
            if len(sends) > 1:  # several messages: a send step each
                steps: list[object] = [{"send": send} for send in sends]
                greeting = {"steps": steps + ([{recorded.end: True}] if closing else [])}
            else:
                greeting = {"send": sends[0]} if sends else {}
                if closing:
                    greeting[recorded.end] = True
            self.table(f"[[{prefix}greeting]]", greeting)
        for index, exchange in enumerate(recorded.exchanges, 1):
            match = http_match(exchange.message) if self.http else None
            rule: dict[str, object] = {"match": match or bytes_value(exchange.message)}
            if exchange.reply:
                where = f"connection #{number}, the reply to message #{index}"
                rule["reply"] = self.replies(exchange.reply, where)
            if index == end_at:
                rule[recorded.end] = True
            self.table(f"[[{prefix}expect]]", rule)


def script_text(
    recorded: Sequence[Recorded],
    *,
    framing: Framing,
    reply_framing: Framing | None = None,
    header: str = "",
) -> str:
    """The script file (TOML text) that replays ``recorded``.

    ``framing`` is what the client's messages were cut with (its ``[framing]`` table);
    ``reply_framing`` None keeps each reply as the server sent it (``[reply_framing]`` is
    ``none``), else a reply is written as that framing's messages (a list when several),
    and a reply that is not whole messages of it is a :class:`~fakepeer.ScriptError`.
    ``header`` is put first as comment lines. Raises :class:`~fakepeer.ScriptError` when
    tomli-w is missing (the extra ``fakepeer[record]``) or a framing has no ``kind`` in
    the format.
    """
    writer = _Writer(framing, reply_framing)
    writer.lines += [f"# {line}".rstrip() for line in header.splitlines()]
    writer.lines.append("version = 1")
    writer.table("[framing]", framing_table(framing))
    if reply_framing is not None:
        writer.table("[reply_framing]", framing_table(reply_framing, "reply_framing"))
    elif type(framing).__name__ != "Raw":  # (a Raw framing sends replies as they are)
        writer.table("[reply_framing]", {"kind": "none"})
    if len(recorded) == 1 and recorded[0].number == 1:
        writer.rules(recorded[0], "")
    else:
        for one in recorded:
            writer.table("[[connection]]", {"number": one.number})
            writer.rules(one, "connection.")
    return "\n".join(writer.lines) + "\n"


def recording(
    events: Sequence[Event], framing: Framing, reply_framing: Framing | None, by: str
) -> tuple[str, int, list[str]]:
    """The script file of a proxy's transcript ``events`` (checked: see
    :func:`~fakepeer._recording.refuse_cut_or_shaped`), under a header naming who recorded
    it from where (``by``); how many conversations it holds; and what it left out, a line
    per connection (also in the header). ``framing``'s ``max_length`` is raised to hold the
    largest message recorded (:func:`fitting`)."""
    framing = fitting(framing, events)
    recorded = conversations(events, framing)
    connections = len(recorded)
    silent = len({event.connection for event in events if event.connection}) - connections
    probes = (
        f" ({silent} more with nothing said either way {'is' if silent == 1 else 'are'} left out)"
        if silent
        else ""
    )
    notes = [
        f"connection #{one.transcript_number}: the client's last {one.left_out} bytes are "
        "left out: the server closed before they could be answered"
        for one in recorded
        if one.left_out
    ]
    header = "\n".join(
        [
            f"Recorded by {by}: {connections} connection{'' if connections == 1 else 's'}{probes}.",
            "Replay: fakepeer run FILE, or FakePeer.from_file(FILE) in a test; edit freely.",
            *notes,
        ]
    )
    text = script_text(recorded, framing=framing, reply_framing=reply_framing, header=header)
    return text, connections, notes
