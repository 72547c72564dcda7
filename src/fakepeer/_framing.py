"""Framing: how a byte stream is cut into messages, and how replies are framed.

A framing is any object with these members (see :class:`Framing`):

``streaming``
    ``True`` for :class:`Raw`: there are no messages, rules match a *prefix* of the bytes
    buffered so far and consume what they matched. ``False`` for message framings.
``decode(buffer, eof) -> (messages, consumed)``
    Cut whole messages off the front of ``buffer``. Returns the messages (without their
    framing) and how many bytes of ``buffer`` they used; the rest stays buffered until more
    bytes arrive. ``eof`` is true when the client will send nothing more: a framing may then
    return a final message that has no terminator, or leave the bytes unconsumed (they are
    reported as an incomplete message). Must not raise for any input.
``encode(message) -> bytes``
    Frame one outgoing message (a reply or a send).

All framings are pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ._errors import ScriptError

__all__ = ["Framing", "Lines", "Raw"]


@runtime_checkable
class Framing(Protocol):
    """The framing protocol; see the module docstring for the contract."""

    @property
    def streaming(self) -> bool: ...

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]: ...

    def encode(self, message: bytes) -> bytes: ...


class Raw:
    """No framing: bytes accumulate, and each rule matches a prefix of what has arrived.

    ``peer.expect(b"HELLO")`` is met once the first five buffered bytes are ``HELLO``, however
    the client split them into segments; bytes after them stay buffered for the next rule.
    Replies are sent exactly as given. This is the default framing.
    """

    streaming = True

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        """Raw framing has no messages: returns ``([], 0)``."""
        return [], 0

    def encode(self, message: bytes) -> bytes:
        """Return ``message`` unchanged."""
        return message

    def __repr__(self) -> str:
        return "Raw()"

    def __eq__(self, other: object) -> bool:
        return type(other) is Raw

    def __hash__(self) -> int:
        return hash(Raw)


class Lines:
    """Messages end with ``delimiter`` (default ``b"\\n"``); replies get it appended.

    The delimiter is not part of the message: with ``Lines(b"\\r\\n")`` the client's
    ``b"EHLO me\\r\\n"`` is matched as ``b"EHLO me"``. A last line without a delimiter at EOF
    is reported as an incomplete message, never silently dropped.
    """

    streaming = False

    def __init__(self, delimiter: bytes | str = b"\n") -> None:
        if isinstance(delimiter, str):
            delimiter = delimiter.encode()
        if not isinstance(delimiter, bytes) or not delimiter:
            raise ScriptError(f"Lines() needs a non-empty bytes delimiter, got {delimiter!r}")
        self.delimiter = delimiter

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        """Split off every complete line; the bytes after the last delimiter stay buffered."""
        delimiter = self.delimiter
        if delimiter not in buffer:
            return [], 0
        *messages, _rest = buffer.split(delimiter)
        consumed = len(buffer) - len(_rest)
        return messages, consumed

    def encode(self, message: bytes) -> bytes:
        """Append the delimiter."""
        return message + self.delimiter

    def __repr__(self) -> str:
        return f"Lines({self.delimiter!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lines) and other.delimiter == self.delimiter

    def __hash__(self) -> int:
        return hash((Lines, self.delimiter))


def check_framing(framing: object) -> Framing:
    """Return ``framing`` if it follows the protocol, else raise :class:`ScriptError`."""
    if framing is None:
        return Raw()
    if type(framing) in (Raw, Lines):  # fast path: isinstance on a Protocol is slow
        return framing  # type: ignore[return-value]  # both follow the protocol
    if isinstance(framing, type):
        raise ScriptError(f"framing must be an instance, not the class: use {framing.__name__}()")
    if not isinstance(framing, Framing):
        raise ScriptError(
            f"{framing!r} is not a framing: it needs .streaming, .decode(buffer, eof) "
            "and .encode(message)"
        )
    return framing
