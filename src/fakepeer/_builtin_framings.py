"""The built-in framings: :class:`Raw`, :class:`Lines`, :class:`Delimited`,
:class:`LengthPrefixed`, :class:`Fixed` and :class:`StxEtx`.

Each is a frozen dataclass that follows the framing protocol (``fakepeer._framing``, whose
docstring is the contract a custom framing follows too), checks its arguments where the
script writes them (:class:`~fakepeer.ScriptError`) and its bytes as they arrive
(:class:`~fakepeer.FramingError`, saying what is wrong). Besides the protocol, each has the
two private methods ``_waiting`` and ``_mark`` with which ``fakepeer._framing.Decoder`` skips
calling ``decode`` until the new bytes can complete a message (the optional ``waiting`` and
``mark`` of the protocol, private here: only the exact built-in classes are trusted with
them, not their subclasses). They are apart from the
protocol and the decoder, which the conversation uses for any framing, built-in or not.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, Literal

from ._errors import FramingError, ScriptError
from ._show import show

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "PREFIXED_MAX_LENGTH",
    "RAW_MAX_LENGTH",
    "Delimited",
    "Fixed",
    "LengthPrefixed",
    "Lines",
    "Raw",
    "StxEtx",
]

#: Default ``max_length`` of :class:`Lines`, :class:`Delimited` and :class:`StxEtx`.
DEFAULT_MAX_LENGTH: Final = 65536
#: Default ``max_length`` of :class:`Raw`: the most unmatched bytes.
RAW_MAX_LENGTH: Final = 1 << 20
#: :class:`LengthPrefixed` defaults to the largest message its prefix can declare, up to this.
PREFIXED_MAX_LENGTH: Final = 16 << 20

STX: Final = 0x02
ETX: Final = 0x03


def _check_max_length(owner: str, value: object, least: int = 1, why: str = "") -> int:
    """Return ``value`` if it is an int >= ``least``, else raise :class:`ScriptError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScriptError(
            f"{owner}(max_length=...) takes a whole number of bytes >= 1, got {value!r}"
        )
    if value < least:
        raise ScriptError(
            f"{owner}(max_length={value}) leaves no room for a message: the framing alone "
            f"({why}) takes {least} bytes"
        )
    return value


def _too_long(what: str, limit: int, framing: object, label: str, data: bytes) -> FramingError:
    name = type(framing).__name__
    return FramingError(
        f"{what}, over the limit of {limit} bytes of {framing!r}\n  {label:<10} {show(data)}"
        f"\n  hint:      if such a message is right, raise the limit: {name}(max_length=...)"
    )


# The dataclasses give __eq__ (same class, same fields) and __hash__; they are frozen so that
# the hash stays right. __init__ is written by hand to validate and normalise the arguments.


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Raw:
    """No framing: bytes accumulate, and each rule matches a prefix of what has arrived.

    ``peer.expect(b"HELLO")`` is met once the first five buffered bytes are ``HELLO``, however
    the client split them into segments; bytes after them stay buffered for the next rule.
    Replies are sent exactly as given. This is the default framing.

    ``max_length`` (default 1 MiB) is the most bytes that may wait unmatched: a client that
    sends more while no rule matches them fails with a :class:`~fakepeer.FramingError`. EOF
    with unmatched bytes is an incomplete message.
    """

    streaming: ClassVar[bool] = True
    #: ``encode`` never raises: a reply is not encoded early to check it (see ``encodable``).
    encode_cannot_fail: ClassVar[bool] = True
    max_length: int

    def __init__(self, *, max_length: int = RAW_MAX_LENGTH) -> None:
        object.__setattr__(self, "max_length", _check_max_length("Raw", max_length))

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        """Raw framing has no messages: returns ``([], 0)`` for any input (the peer matches
        rules against the buffer itself, and enforces ``max_length``)."""
        return [], 0

    def _waiting(self, buffer: bytearray, mark: int) -> int | None:
        return 0  # decode never gives anything: see Decoder

    def _mark(self, rest: bytearray) -> int:
        return 0

    def encode(self, message: bytes) -> bytes:
        """Return ``message`` unchanged."""
        return message

    def __repr__(self) -> str:
        if self.max_length == RAW_MAX_LENGTH:
            return "Raw()"
        return f"Raw(max_length={self.max_length})"


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Delimited:
    """Messages end with ``delimiter``, any non-empty bytes (a ``str`` is UTF-8); replies get it
    appended.

    The delimiter is not part of the message: with ``Delimited(b"\\0")`` the client's
    ``b"GET x\\0"`` is matched as ``b"GET x"``; ``b"\\0"`` alone is the empty message.
    Replies are sent with the delimiter appended and are not checked: a delimiter inside a
    reply reaches the client as two messages, which can be on purpose.

    ``max_length`` (default 65536) counts a message with its delimiter. A longer message, or
    ``max_length`` bytes without a delimiter, is a :class:`~fakepeer.FramingError` at once
    (messages before it in the same buffer are not delivered). An empty buffer gives no
    messages; at EOF, bytes after the last delimiter are left unconsumed and reported as an
    incomplete message, never silently dropped.
    """

    delimiter: bytes
    max_length: int
    streaming: ClassVar[bool] = False
    encode_cannot_fail: ClassVar[bool] = True

    def __init__(self, delimiter: bytes | str, *, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        name = type(self).__name__
        if isinstance(delimiter, str):
            delimiter = delimiter.encode()
        if not isinstance(delimiter, bytes) or not delimiter:
            raise ScriptError(f"{name}() needs a non-empty bytes delimiter, got {delimiter!r}")
        why = f"the delimiter {delimiter!r}"
        max_length = _check_max_length(name, max_length, len(delimiter), why)
        object.__setattr__(self, "delimiter", delimiter)
        object.__setattr__(self, "max_length", max_length)

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        """Split off every complete message; the bytes after the last delimiter stay buffered.

        Raises :class:`~fakepeer.FramingError` for a message longer than ``max_length`` with
        its delimiter, or ``max_length`` buffered bytes or more without a delimiter.
        """
        delimiter = self.delimiter
        limit = self.max_length
        if delimiter not in buffer:  # the common case of a partial message: be quick
            if len(buffer) >= limit:
                raise self._unterminated(buffer)
            return [], 0
        *messages, rest = buffer.split(delimiter)
        room = limit - len(delimiter)
        if len(buffer) > room and max(map(len, messages)) > room:
            message = next(message for message in messages if len(message) > room)
            raise _too_long(
                f"the client sent a message of {len(message) + len(delimiter)} bytes "
                "with its delimiter",
                limit,
                self,
                "message:",
                message,
            )
        if len(rest) >= limit:
            raise self._unterminated(rest)
        return messages, len(buffer) - len(rest)

    def _waiting(self, buffer: bytearray, mark: int) -> int | None:
        # ``buffer[:mark]`` holds no delimiter: look for one only in the new bytes (and the
        # ones before them that could start it).
        delimiter = self.delimiter
        if len(buffer) >= self.max_length:
            return None
        if buffer.find(delimiter, max(0, mark - len(delimiter) + 1)) >= 0:
            return None
        return len(buffer)

    def _mark(self, rest: bytearray) -> int:
        return len(rest)  # decode leaves no delimiter in the bytes it does not consume

    def _unterminated(self, rest: bytes) -> FramingError:
        # The message that starts with ``rest`` needs at least one more byte to end.
        return _too_long(
            f"the client sent {len(rest)} bytes without the delimiter {self.delimiter!r}: "
            "the message is longer than allowed",
            self.max_length,
            self,
            "buffered:",
            rest,
        )

    def encode(self, message: bytes) -> bytes:
        """Append the delimiter."""
        return message + self.delimiter

    def __repr__(self) -> str:
        limit = "" if self.max_length == DEFAULT_MAX_LENGTH else f", max_length={self.max_length}"
        return f"{type(self).__name__}({self.delimiter!r}{limit})"


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Lines(Delimited):
    """Lines: :class:`Delimited` with ``b"\\n"`` as the default delimiter.

    With ``Lines(b"\\r\\n")`` the client's ``b"EHLO me\\r\\n"`` is matched as ``b"EHLO me"``
    and the reply ``b"250 ok"`` is sent as ``b"250 ok\\r\\n"``. A ``b"\\r"`` before a
    ``b"\\n"`` delimiter stays in the message. A last line without a delimiter at EOF is
    reported as an incomplete message. ``max_length`` (default 65536) counts the delimiter.
    """

    def __init__(
        self, delimiter: bytes | str = b"\n", *, max_length: int = DEFAULT_MAX_LENGTH
    ) -> None:
        Delimited.__init__(self, delimiter, max_length=max_length)


def _prefixed_default(size: int, includes_prefix: bool) -> int:
    """The largest framed message a ``size``-byte prefix can declare, capped at 16 MiB."""
    largest = (1 << (8 * size)) - 1
    return min(largest if includes_prefix else largest + size, PREFIXED_MAX_LENGTH)


@dataclass(frozen=True, slots=True, init=False, repr=False)
class LengthPrefixed:
    """Each message follows its length: a ``size``-byte unsigned integer in ``byteorder``.

    ``LengthPrefixed()`` reads ``b"\\x00\\x00\\x00\\x04PING"`` as ``b"PING"``, and sends the
    reply ``b"PONG"`` as ``b"\\x00\\x00\\x00\\x04PONG"``. ``size`` is 1, 2, 4 or 8;
    ``byteorder`` is ``"big"`` (network order) or ``"little"``. With ``includes_prefix=True``
    the length counts the prefix too (``b"\\x00\\x00\\x00\\x08PING"``). A declared length of 0
    is the empty message.

    ``max_length`` counts a message with its prefix; it defaults to the largest the prefix can
    declare, at most 16 MiB. A prefix that declares more, or (with ``includes_prefix``) less
    than the prefix itself, is a :class:`~fakepeer.FramingError` as soon as the prefix has
    arrived, without waiting for the bytes. An empty buffer gives no messages; at EOF a
    partial prefix or message is left unconsumed and reported as an incomplete message.
    ``encode`` raises :class:`~fakepeer.ScriptError` for a reply too long for the prefix.
    """

    size: int
    byteorder: Literal["big", "little"]
    includes_prefix: bool
    max_length: int
    streaming: ClassVar[bool] = False

    def __init__(
        self,
        size: int = 4,
        byteorder: Literal["big", "little"] = "big",
        *,
        includes_prefix: bool = False,
        max_length: int | None = None,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size not in (1, 2, 4, 8):
            raise ScriptError(f"LengthPrefixed() takes a size of 1, 2, 4 or 8 bytes, got {size!r}")
        if byteorder not in ("big", "little"):
            raise ScriptError(
                f"LengthPrefixed() takes a byteorder of 'big' or 'little', got {byteorder!r}"
            )
        if not isinstance(includes_prefix, bool):
            raise ScriptError(
                f"LengthPrefixed(includes_prefix=...) takes True or False, got {includes_prefix!r}"
            )
        if max_length is None:
            max_length = _prefixed_default(size, includes_prefix)
        max_length = _check_max_length(
            "LengthPrefixed", max_length, size, f"the {size}-byte length prefix"
        )
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "byteorder", byteorder)
        object.__setattr__(self, "includes_prefix", includes_prefix)
        object.__setattr__(self, "max_length", max_length)

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        """Cut off every message whose prefix and bytes have all arrived.

        Raises :class:`~fakepeer.FramingError` as soon as a prefix declares a message over
        ``max_length`` (or, with ``includes_prefix``, shorter than the prefix).
        """
        size = self.size
        byteorder = self.byteorder
        overhead = 0 if self.includes_prefix else size
        messages = []
        position = 0
        end = len(buffer)
        while end - position >= size:
            prefix = buffer[position : position + size]
            declared = int.from_bytes(prefix, byteorder)
            framed = declared + overhead
            if framed > self.max_length:
                raise self._over_limit(prefix, declared)
            if framed < size:
                raise FramingError(
                    f"the length prefix declares {declared} bytes, less than the {size}-byte "
                    f"prefix itself, which {self!r} counts in the length\n"
                    f"  prefix:    {show(prefix)}"
                )
            if end - position < framed:
                break
            messages.append(buffer[position + size : position + framed])
            position += framed
        return messages, position

    def _waiting(self, buffer: bytearray, mark: int) -> int | None:
        # ``mark`` is how many bytes decode needs to do anything: the prefix, or the whole
        # message once decode checked its prefix (0 when unknown).
        return mark if len(buffer) < mark else None

    def _mark(self, rest: bytearray) -> int:
        size = self.size
        if len(rest) < size:
            return size
        # decode checked this prefix already: it is within the limits, and the message is
        # longer than ``rest``.
        declared = int.from_bytes(rest[:size], self.byteorder)
        return declared + (0 if self.includes_prefix else size)

    def _over_limit(self, prefix: bytes, declared: int) -> FramingError:
        if self.includes_prefix:
            what = f"a message of {declared} bytes with its prefix"
        else:
            what = f"a message of {declared} bytes ({declared + self.size} with its prefix)"
        return _too_long(
            f"the length prefix declares {what}", self.max_length, self, "prefix:", prefix
        )

    def encode(self, message: bytes) -> bytes:
        """Put the length prefix before ``message``; :class:`ScriptError` if it cannot fit."""
        size = self.size
        declared = len(message) + (size if self.includes_prefix else 0)
        largest = (1 << (8 * size)) - 1
        if declared > largest:
            counted = " (prefix included)" if self.includes_prefix else ""
            raise ScriptError(
                f"a reply of {len(message)} bytes is too long for {self!r}: a {size}-byte "
                f"length prefix declares at most {largest} bytes{counted}"
            )
        return declared.to_bytes(size, self.byteorder) + message

    def __repr__(self) -> str:
        arguments = []
        if self.size != 4:
            arguments.append(f"size={self.size}")
        if self.byteorder != "big":
            arguments.append(f"byteorder={self.byteorder!r}")
        if self.includes_prefix:
            arguments.append("includes_prefix=True")
        if self.max_length != _prefixed_default(self.size, self.includes_prefix):
            arguments.append(f"max_length={self.max_length}")
        return f"LengthPrefixed({', '.join(arguments)})"


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Fixed:
    """Every message is exactly ``n`` bytes, with no framing around it.

    ``Fixed(4)`` reads ``b"PINGPONG"`` as ``b"PING"``, ``b"PONG"``. ``encode`` sends a reply
    as is, and raises :class:`~fakepeer.ScriptError` unless it is exactly ``n`` bytes.
    ``max_length`` is ``n`` (no message can be longer, so it is not an argument). An empty
    buffer gives no messages; at EOF fewer than ``n`` bytes are left unconsumed and reported
    as an incomplete message.
    """

    n: int
    streaming: ClassVar[bool] = False

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ScriptError(f"Fixed() takes a message size as a whole number >= 1, got {n!r}")
        object.__setattr__(self, "n", n)

    @property
    def max_length(self) -> int:
        """Always ``n``."""
        return self.n

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        """Cut off every whole ``n`` bytes; fewer stay buffered. Never raises."""
        n = self.n
        consumed = len(buffer) - len(buffer) % n
        return [buffer[start : start + n] for start in range(0, consumed, n)], consumed

    def _waiting(self, buffer: bytearray, mark: int) -> int | None:
        return 0 if len(buffer) < self.n else None

    def _mark(self, rest: bytearray) -> int:
        return 0

    def encode(self, message: bytes) -> bytes:
        """Return ``message`` unchanged if it is ``n`` bytes, else raise :class:`ScriptError`."""
        if len(message) != self.n:
            raise ScriptError(
                f"{self!r} sends messages of exactly {self.n} bytes, got a reply of "
                f"{len(message)} bytes: {show(message)}"
            )
        return message

    def __repr__(self) -> str:
        return f"Fixed({self.n})"


@dataclass(frozen=True, slots=True, init=False, repr=False)
class StxEtx:
    """Each message is framed by STX (``0x02``) and ETX (``0x03``): ``b"\\x02PING\\x03"``.

    The message is what lies between an STX and the next ETX; it may hold STX bytes, but not
    ETX. Replies are wrapped in STX and ETX and are not checked: an ETX inside a reply ends
    the frame early for the client. Any byte outside a frame, where an STX must start the
    next one, is a :class:`~fakepeer.FramingError` at once, naming the stray bytes.

    ``max_length`` (default 65536) counts a message with its STX and ETX; a longer one, or
    ``max_length`` buffered bytes without ETX, is a :class:`~fakepeer.FramingError` at once.
    An empty buffer gives no messages; at EOF an unfinished frame is left unconsumed and
    reported as an incomplete message.
    """

    max_length: int
    streaming: ClassVar[bool] = False

    def __init__(self, *, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        max_length = _check_max_length("StxEtx", max_length, 2, "STX and ETX")
        object.__setattr__(self, "max_length", max_length)

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        """Cut off every complete frame; an unfinished one stays buffered.

        Raises :class:`~fakepeer.FramingError` for bytes outside a frame, a frame over
        ``max_length``, or ``max_length`` buffered bytes or more without ETX.
        """
        limit = self.max_length
        messages = []
        position = 0
        end = len(buffer)
        while position < end:
            if buffer[position] != STX:
                start = buffer.find(STX, position)
                stray = buffer[position : end if start < 0 else start]
                raise FramingError(
                    f"the client sent {len(stray)} byte(s) outside a frame, where {self!r} "
                    f"expects STX (0x02) to start a message\n  outside:   {show(stray)}"
                )
            stop = buffer.find(ETX, position + 1)
            if stop < 0:
                if end - position >= limit:
                    raise _too_long(
                        f"the client sent {end - position} bytes of a frame without ETX: "
                        "the message is longer than allowed",
                        limit,
                        self,
                        "buffered:",
                        buffer[position:],
                    )
                break
            if stop + 1 - position > limit:
                raise _too_long(
                    f"the client sent a message of {stop + 1 - position} bytes with its "
                    "STX and ETX",
                    limit,
                    self,
                    "message:",
                    buffer[position + 1 : stop],
                )
            messages.append(buffer[position + 1 : stop])
            position = stop + 1
        return messages, position

    def _waiting(self, buffer: bytearray, mark: int) -> int | None:
        # ``mark`` is 0 (unknown), or ``buffer`` starts with STX and ``buffer[1:mark]`` holds
        # no ETX: look for one only in the new bytes.
        if not mark or len(buffer) >= self.max_length or buffer.find(ETX, mark) >= 0:
            return None
        return len(buffer)

    def _mark(self, rest: bytearray) -> int:
        return len(rest)  # decode leaves nothing, or the STX of a frame without its ETX

    def encode(self, message: bytes) -> bytes:
        """Wrap ``message`` in STX and ETX."""
        return b"\x02" + message + b"\x03"

    def __repr__(self) -> str:
        if self.max_length == DEFAULT_MAX_LENGTH:
            return "StxEtx()"
        return f"StxEtx(max_length={self.max_length})"
