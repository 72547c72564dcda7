"""The general length-field framing: :class:`LengthField`.

In the terms of Netty's ``LengthFieldBasedFrameDecoder`` (``io.netty.handler.codec``), whose
javadoc draws the same cases: a frame holds ``offset`` bytes (``lengthFieldOffset``), a length
field of ``size`` bytes (``lengthFieldLength``), then the bytes the field declares plus
``adjustment`` (``lengthAdjustment``); ``strip`` bytes (``initialBytesToStrip``) are cut off
the front of each frame before a rule sees it. ``size="varint"`` reads a variable-length
integer instead, as MQTT's fixed header (MQTT 5.0 §1.5.5, 3.1.1 §2.2.3) and protobuf's
length-delimited streams do (Netty's ``ProtobufVarint32FrameDecoder``).

Frozen like the other built-in framings (``fakepeer._builtin_framings``), with their
``_waiting`` and ``_mark`` so that ``fakepeer._framing.Decoder`` decodes a frame that arrives
in many small segments in linear time. Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Final, Literal

from ._builtin_framings import PREFIXED_MAX_LENGTH, _check_max_length, _too_long
from ._errors import FramingError, ScriptError
from ._show import show

__all__ = ["VARINT_BYTES", "LengthField"]

#: The most bytes of a ``size="varint"`` length field: MQTT's limit (values up to
#: 268,435,455, 256 MiB); a fifth byte is a malformed length, as in MQTT.
VARINT_BYTES: Final = 4
#: The largest value such a field holds.
VARINT_LARGEST: Final = (1 << (7 * VARINT_BYTES)) - 1

_SIZES: Final = (1, 2, 3, 4, 8)

#: What a header parse gives: ``None`` (the field has not all arrived), or the field's value
#: and the number of bytes it took.
_Field = tuple[int, int] | None


def varint(value: int) -> bytes:
    """``value`` (0 to :data:`VARINT_LARGEST`) as a variable-length integer: 7 bits a byte,
    the least significant group first, the high bit set on every byte but the last."""
    out = bytearray()
    while True:
        group = value & 0x7F
        value >>= 7
        if not value:
            out.append(group)
            return bytes(out)
        out.append(group | 0x80)


@dataclass(frozen=True, slots=True, init=False, repr=False)
class LengthField:
    """Frames that carry their length in a field: ``offset`` bytes, the length field, the rest.

    The terms are those of Netty's ``LengthFieldBasedFrameDecoder``. A frame on the wire is
    ``offset`` bytes (anything: a type byte, a transaction id), then the length field, an
    unsigned integer of ``size`` bytes (1, 2, 3, 4 or 8) in ``byteorder``, then the bytes it
    declares plus ``adjustment`` (which may be negative: a length that counts itself, or the
    whole frame)::

        frame length = offset + size + value + adjustment

    A rule sees the frame without its first ``strip`` bytes (at most the header: ``offset`` plus
    the field; ``strip="header"`` strips it all). Some protocols it expresses:

    ==========================  =================================================
    Modbus/TCP MBAP             ``LengthField(offset=4, size=2)``
    MQTT fixed header           ``LengthField(offset=1, size="varint")``
    DNS over TCP (RFC 1035)     ``LengthField(size=2, strip=2)``
    PostgreSQL v3 messages      ``LengthField(offset=1, size=4, adjustment=-4)``
    TPKT (RFC 1006)             ``LengthField(offset=2, size=2, adjustment=-4)``
    Kafka                       ``LengthField(size=4, strip=4)``
    protobuf, length-delimited  ``LengthField(size="varint", strip="header")``
    ==========================  =================================================

    ``size="varint"`` is a variable-length integer: 7 bits a byte, the least significant group
    first, the high bit set while more bytes follow (MQTT's Variable Byte Integer, protobuf's
    varint). It takes at most 4 bytes (values up to 268,435,455), MQTT's limit: a fifth byte
    is a :class:`~fakepeer.FramingError`. Longer encodings than needed are accepted, as
    protobuf does (MQTT 5 forbids them). A varint has no byte order: ``byteorder`` stays
    ``"big"``.

    ``max_length`` is the most bytes of one frame the client sends, its header included (the
    script's replies are not held to it); it defaults to the largest frame the field can
    declare, at most 16 MiB. A frame over it, one
    shorter than its own header (a value below ``-adjustment``), or a malformed varint is a
    :class:`~fakepeer.FramingError` as soon as the header has arrived, without waiting for the
    bytes. An empty buffer gives no messages; at EOF a partial frame is left unconsumed and
    reported as an incomplete message.

    ``encode`` (for replies): with ``strip=0`` a reply is a whole frame, sent unchanged once
    its length field is checked against its length (a :class:`~fakepeer.ScriptError` if they
    disagree); when the whole header is stripped and ``offset`` is 0 (Kafka, DNS, protobuf),
    the length field is put back before the reply. Any other ``strip`` cannot be undone (the
    stripped bytes are gone): ``encode`` raises :class:`~fakepeer.ScriptError`, and the peer
    takes a ``reply_framing=`` for its replies.

    Wrong arguments are a :class:`~fakepeer.ScriptError` naming the keyword.
    """

    offset: int
    size: int | Literal["varint"]
    byteorder: Literal["big", "little"]
    adjustment: int
    strip: int | Literal["header"]
    max_length: int
    streaming: ClassVar[bool] = False

    def __init__(
        self,
        *,
        offset: int = 0,
        size: int | Literal["varint"] = 4,
        byteorder: Literal["big", "little"] = "big",
        adjustment: int = 0,
        strip: int | Literal["header"] = 0,
        max_length: int | None = None,
    ) -> None:
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ScriptError(
                f"LengthField(offset=...) takes the length field's position in the frame, a "
                f"whole number of bytes >= 0, got {offset!r}"
            )
        if size != "varint" and (
            isinstance(size, bool) or not isinstance(size, int) or size not in _SIZES
        ):
            raise ScriptError(
                f"LengthField(size=...) takes 1, 2, 3, 4 or 8 (bytes), or 'varint', got {size!r}"
            )
        if byteorder not in ("big", "little"):
            raise ScriptError(
                f"LengthField(byteorder=...) takes 'big' or 'little', got {byteorder!r}"
            )
        if size == "varint" and byteorder != "big":
            raise ScriptError(
                "LengthField(size='varint', byteorder='little'): a varint has its own order "
                "(the least significant 7 bits first); leave byteorder= out"
            )
        if isinstance(adjustment, bool) or not isinstance(adjustment, int):
            raise ScriptError(
                f"LengthField(adjustment=...) takes a whole number of bytes (added to the "
                f"field's value), got {adjustment!r}"
            )
        largest = _largest(size)
        if largest + adjustment < 0:
            raise ScriptError(
                f"LengthField(adjustment={adjustment}) leaves no frame possible: the length "
                f"field declares at most {largest} bytes, so every frame would end before "
                "its own header"
            )
        strip = _check_strip(offset, size, strip)
        least = _least(offset, size, adjustment)
        if max_length is None:
            max_length = _default_max_length(offset, size, adjustment)
        why = _header_words(offset, 1 if size == "varint" else size, size == "varint")
        if adjustment > 0:
            why += f" + adjustment={adjustment}"
        max_length = _check_max_length("LengthField", max_length, least, why)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "byteorder", byteorder)
        object.__setattr__(self, "adjustment", adjustment)
        object.__setattr__(self, "strip", strip)
        object.__setattr__(self, "max_length", max_length)

    # -- decoding ------------------------------------------------------------------------------

    def _field(self, buffer: bytes | bytearray, start: int, limited: bool) -> _Field:
        """The length field of the frame at ``start``: its value and its bytes, or ``None`` if
        it has not all arrived. :class:`FramingError` for a varint longer than
        :data:`VARINT_BYTES`, or (if ``limited``) a header that alone goes over
        ``max_length``."""
        at = start + self.offset
        size = self.size
        if size != "varint":
            if len(buffer) - at < size:
                return None
            return int.from_bytes(buffer[at : at + size], self.byteorder), size
        value = 0
        for index in range(VARINT_BYTES):
            if at + index >= len(buffer):
                if limited and self.offset + index + 1 > self.max_length:  # longer still
                    raise self._over_limit(buffer[start : at + index], self.offset + index + 1)
                return None
            byte = buffer[at + index]
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                return value, index + 1
        raise FramingError(
            f"the length field at offset {self.offset} of {self!r} is a malformed varint: "
            f"all its {VARINT_BYTES} bytes have the continuation bit (0x80) set, and it takes "
            f"at most {VARINT_BYTES} (values up to {VARINT_LARGEST:,}, as MQTT's Variable Byte "
            "Integer)"
            f"\n  header:    {show(bytes(buffer[start : at + VARINT_BYTES]))}"
        )

    def _frame(
        self, buffer: bytes | bytearray, start: int, limited: bool = True
    ) -> tuple[int, int] | None:
        """The length of the frame at ``start`` and of its header, checked, or ``None`` if
        its header has not all arrived; :class:`FramingError` for a frame that cannot be
        (over ``max_length`` only if ``limited``: the limit is the client's, not a reply's)."""
        field = self._field(buffer, start, limited)
        if field is None:
            return None
        value, width = field
        header = self.offset + width
        framed = header + value + self.adjustment
        if limited and header > self.max_length:  # a long varint: the frame is longer still
            raise self._over_limit(buffer[start : start + header], header + 1)
        if limited and framed > self.max_length:
            raise self._over_limit(buffer[start : start + header], framed, value)
        if framed < header:
            parts = _header_words(self.offset, width, self.size == "varint")
            raise FramingError(
                f"the length field declares {value} bytes, and with adjustment="
                f"{self.adjustment} the frame would be {framed} bytes, shorter than its own "
                f"{header}-byte header ({parts}) of {self!r}"
                f"\n  header:    {show(bytes(buffer[start : start + header]))}"
            )
        return framed, header

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        """Cut off every frame whose header and bytes have all arrived, less ``strip`` bytes.

        Raises :class:`~fakepeer.FramingError` as soon as a header declares a frame over
        ``max_length`` or shorter than the header, or a varint runs over 4 bytes.
        """
        messages = []
        position = 0
        end = len(buffer)
        while position < end:
            frame = self._frame(buffer, position)
            if frame is None or end - position < frame[0]:
                break
            framed, header = frame
            strip = header if self.strip == "header" else self.strip
            messages.append(buffer[position + strip : position + framed])
            position += framed
        return messages, position

    def waiting(self, buffer: bytearray, mark: int) -> int | None:
        """The optional incremental member of the framing protocol (see ``fakepeer._framing``),
        public so that a framing that wraps this one (a protocol kit's) stays linear too."""
        # ``mark`` is how many bytes decode needs to do anything: the header (or one more
        # byte of a varint), or the whole frame once decode checked its header.
        return mark if len(buffer) < mark else None

    def mark(self, rest: bytearray) -> int:
        """The optional incremental member of the framing protocol: see :meth:`waiting`."""
        return self._mark(rest)

    _waiting = waiting  # what fakepeer._framing.Decoder calls on a built-in framing

    def _mark(self, rest: bytearray) -> int:
        # decode checked the header in ``rest`` if it is all there: no error to raise here.
        frame = self._frame(rest, 0)
        if frame is not None:
            return frame[0]
        if self.size == "varint":
            return max(len(rest), self.offset) + 1
        return self.offset + self.size

    def _over_limit(self, header: bytes | bytearray, framed: int, value: int = -1) -> FramingError:
        if value < 0:  # a varint that is not over yet
            what = f"the varint length field runs on: a frame of at least {framed} bytes"
        else:
            what = f"the length field declares {value} bytes, a frame of {framed} bytes"
        return _too_long(
            what,
            self.max_length,
            self,
            "header:",
            bytes(header),
        )

    def _waits_for(self, buffer: bytes | bytearray) -> str:
        """What the bytes ``buffer`` holds (less than a frame) wait for, in words."""
        try:
            frame = self._frame(buffer, 0)
        except FramingError:  # not here: decode raised it first
            return f"{self!r} cannot frame them"
        if frame is None:
            field = "varint " if self.size == "varint" else f"{self.size}-byte "
            return (
                f"{self!r} waits for the rest of its {field}length field at offset "
                f"{self.offset} ({len(buffer)} bytes here)"
            )
        framed, header = frame
        return (
            f"the length field of {self!r} declares a frame of {framed} bytes (header "
            f"{show(bytes(buffer[:header]))}): {len(buffer)} here, {framed - len(buffer)} more "
            "to come"
        )

    # -- encoding ------------------------------------------------------------------------------

    def encode(self, message: bytes) -> bytes:
        """Frame a reply: see the class docstring. :class:`~fakepeer.ScriptError` for a whole
        frame (``strip=0``) whose length field disagrees with its length, a reply too long for
        the field, or a framing whose ``strip`` cannot be undone."""
        if self.strip == 0:
            return self._whole(message)
        if self.offset == 0 and self.strip in ("header", self.size):
            value = len(message) - self.adjustment
            largest = _largest(self.size)
            if not 0 <= value <= largest:
                raise ScriptError(
                    f"a reply of {len(message)} bytes cannot be framed by {self!r}: its length "
                    f"field would declare {value}, and it holds 0 to {largest}"
                )
            if self.size == "varint":
                return varint(value) + message
            return value.to_bytes(self.size, self.byteorder) + message
        whole = dataclasses.replace(self, strip=0)
        stripped = (
            "the header (offset and length field)"
            if self.strip == "header"
            else f"{self.strip} bytes"
        )
        raise ScriptError(
            f"{self!r} cannot frame a reply: it strips {stripped} off the front of each "
            "frame, which a reply does not give back; write whole frames and pass "
            f"FakePeer(reply_framing={whole!r}), or reply_framing=Raw() to send replies as "
            "written"
        )

    def _whole(self, message: bytes) -> bytes:
        """``message`` if it is a whole frame whose length field says its length."""
        try:
            frame = self._frame(message, 0, limited=False)
        except FramingError as error:
            raise ScriptError(
                f"a reply is not a frame of {self!r} (strip=0: a reply is a whole frame): "
                f"{error.diagnosis.partition(chr(10))[0]}\n  reply:     {show(message)}"
            ) from None
        if frame is None:
            raise ScriptError(
                f"a reply of {len(message)} bytes is shorter than the header of {self!r} "
                "(strip=0: a reply is a whole frame, length field included)"
                f"\n  reply:     {show(message)}"
            )
        framed, header = frame
        if framed != len(message):
            raise ScriptError(
                f"a reply of {len(message)} bytes is not the frame its length field declares: "
                f"{show(message[self.offset : header])} at offset {self.offset} says a frame of "
                f"{framed} bytes for {self!r} (strip=0: a reply is a whole frame, length field "
                f"included)\n  reply:     {show(message)}"
            )
        return message

    def __repr__(self) -> str:
        arguments = []
        if self.offset:
            arguments.append(f"offset={self.offset}")
        if self.size != 4:
            arguments.append(f"size={self.size!r}")
        if self.byteorder != "big":
            arguments.append(f"byteorder={self.byteorder!r}")
        if self.adjustment:
            arguments.append(f"adjustment={self.adjustment}")
        if self.strip:
            arguments.append(f"strip={self.strip!r}")
        if self.max_length != _default_max_length(self.offset, self.size, self.adjustment):
            arguments.append(f"max_length={self.max_length}")
        return f"LengthField({', '.join(arguments)})"


def _check_strip(offset: int, size: int | str, strip: object) -> int | Literal["header"]:
    """``strip`` if it leaves each frame's header or cuts at most all of it; for a fixed
    ``size``, ``"header"`` as its number of bytes."""
    if strip == "header":
        return "header" if size == "varint" else offset + int(size)
    if isinstance(strip, bool) or not isinstance(strip, int) or strip < 0:
        raise ScriptError(
            f"LengthField(strip=...) takes a whole number of bytes >= 0 or 'header', got {strip!r}"
        )
    if size == "varint":
        if strip > offset:
            raise ScriptError(
                f"LengthField(offset={offset}, size='varint', strip={strip}): a varint has no "
                f"fixed size, so strip may cut the {offset} byte(s) before it, or the whole "
                "header with strip='header', not a number of bytes into the field"
            )
    elif strip > offset + int(size):
        raise ScriptError(
            f"LengthField(strip={strip}) strips more than the header "
            f"({_header_words(offset, int(size), False)}: {offset + int(size)} bytes): a "
            "frame's body is the rules' to match; strip at most the header"
        )
    return strip


def _largest(size: int | str) -> int:
    """The largest value of a length field of ``size``."""
    return VARINT_LARGEST if size == "varint" else (1 << (8 * int(size))) - 1


def _least(offset: int, size: int | str, adjustment: int) -> int:
    """The fewest bytes of a frame: its header (a varint of one byte), and a positive
    ``adjustment``."""
    return offset + (1 if size == "varint" else int(size)) + max(adjustment, 0)


def _default_max_length(offset: int, size: int | str, adjustment: int) -> int:
    """The largest frame the field can declare, at most 16 MiB (as ``LengthPrefixed``)."""
    field = VARINT_BYTES if size == "varint" else int(size)
    most = offset + field + _largest(size) + adjustment
    return max(_least(offset, size, adjustment), min(most, PREFIXED_MAX_LENGTH))


def _header_words(offset: int, width: int, is_varint: bool) -> str:
    """The parts of a header, in words: ``"offset 4 + a 2-byte length field"``."""
    field = f"a {width}-byte varint" if is_varint else f"a {width}-byte length field"
    return f"offset {offset} + {field}" if offset else field
