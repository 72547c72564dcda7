"""Framing: how a byte stream is cut into messages, and how replies are framed.

Built-in framings, and what one message looks like on the wire:

==============================  ==============================================================
:class:`Raw`                    no messages: each rule matches a prefix of the bytes buffered
:class:`Lines`                  the message, then a delimiter (default: a newline)
:class:`Delimited`              the message, then a delimiter (any bytes, no default)
:class:`LengthPrefixed`         an unsigned length (1, 2, 4 or 8 bytes), then the message
:class:`LengthField`            a header with a length field at an offset (or a varint),
                                then the bytes it declares, adjusted (Netty's terms)
:class:`Fixed`                  exactly ``n`` bytes
:class:`StxEtx`                 STX (``0x02``), the message, ETX (``0x03``)
==============================  ==============================================================

A custom framing is any object with these members (see :class:`Framing`):

``streaming``
    ``True`` for :class:`Raw`: there are no messages, rules match a *prefix* of the bytes
    buffered so far and consume what they matched. ``False`` for message framings.
``decode(buffer, eof) -> (messages, consumed)``
    Cut whole messages off the front of ``buffer``. Returns the messages (without their
    framing) and how many bytes of ``buffer`` they used; the rest stays buffered and is
    passed again, with more bytes after it, on the next call. ``eof`` is true when the client
    will send nothing more: a framing may then return a final message that has no
    terminator, or leave the bytes unconsumed (they are reported as an incomplete message).
    ``decode`` is called once per segment received, so it must give the same messages
    however the stream was split; it is handed the whole buffer each time, so a message that
    arrives in many small segments costs a custom framing time quadratic in its length (the
    built-in framings are called only when the new bytes can complete a message: see
    :class:`Decoder`). It raises :class:`~fakepeer.FramingError` when the bytes
    cannot be right (a message over ``max_length``, a bad length prefix); the peer then fails
    the connection, prefixing the message with the connection (``"connection #1: ..."``).
    Any other exception is a bug of the framing; it is reported too, never lost.
``encode(message) -> bytes``
    Frame one outgoing message (a reply or a send). Raises :class:`~fakepeer.ScriptError`
    when the message cannot be framed (too long for a length prefix, wrong size for
    :class:`Fixed`). It must be pure: one framing object serves every connection, and the
    peer may call ``encode`` once more, as a rule is written, to check a constant reply
    (for a framing of your own, on a ``copy.deepcopy`` of it, so a counter in it is left
    alone; a framing that cannot be copied is not checked early).
``max_length`` (optional)
    The most bytes one message may take *on the wire, its framing included* (for
    :class:`Raw`: the most unmatched bytes). The peer fails a connection whose buffered,
    unconsumed bytes exceed it, with a generic diagnosis; without the attribute the limit is
    1 MiB. Built-in framings check it in ``decode`` first, so their diagnosis says what is
    wrong, and never leave ``max_length`` bytes or more unconsumed.

A custom framing, for example C strings (each ends at a NUL byte), with at most 32 bytes
waiting for their NUL::

    class CStrings:
        streaming = False
        max_length = 32

        def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
            *messages, rest = buffer.split(b"\\0")
            return messages, len(buffer) - len(rest)

        def encode(self, message: bytes) -> bytes:
            return message + b"\\0"

(the built-in ``Delimited(b"\\0", max_length=32)`` is the better version: it also rejects a
whole message over the limit, with a diagnosis that says which).

All framings are pure: no I/O, no clock. Built-in framings are immutable (frozen
dataclasses: ``dataclasses.replace`` works), equal when they are of the same class with the
same arguments, and their ``repr`` is the call that makes them.

This module holds the contract: the :class:`Framing` protocol, the :class:`Decoder` that
cuts one connection's messages with any framing (and skips work for the built-in ones), and
:func:`check_framing`, which vets what a script passed. The built-in framings themselves are
in ``fakepeer._builtin_framings`` and ``fakepeer._lengthfield`` (exported from here too).
"""

from __future__ import annotations

import copy
from typing import Final, Protocol, cast, runtime_checkable

from ._builtin_framings import Delimited, Fixed, LengthPrefixed, Lines, Raw, StxEtx
from ._errors import ScriptError
from ._lengthfield import LengthField

__all__ = [
    "Decoder",
    "Delimited",
    "Fixed",
    "Framing",
    "LengthField",
    "LengthPrefixed",
    "Lines",
    "Raw",
    "StxEtx",
    "check_framing",
    "encodable",
]


@runtime_checkable
class Framing(Protocol):
    """The framing protocol; see the module docstring for the contract.

    ``max_length`` is optional, so it is not part of the protocol class.
    """

    @property
    def streaming(self) -> bool: ...

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]: ...

    def encode(self, message: bytes) -> bytes: ...


#: Framings whose decoding :class:`Decoder` knows (see :class:`_Incremental`).
_BUILT_IN: Final = frozenset({Raw, Delimited, Lines, LengthPrefixed, LengthField, Fixed, StxEtx})


class _Incremental(Protocol):
    """What the built-in framings add to the protocol so that :class:`Decoder` can skip
    calling ``decode`` when the new bytes cannot complete a message.

    ``mark`` is what the framing remembers of the bytes it scanned already (its meaning is
    the framing's own; 0 means nothing is known). ``_waiting(buffer, mark)`` returns the
    mark to keep when ``decode(buffer)`` would give ``([], 0)`` and raise nothing, and
    ``None`` when ``decode`` must be called; it looks only at the bytes added since ``mark``.
    ``_mark(rest)`` is the mark for the bytes ``decode`` left unconsumed.
    """

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]: ...

    def _waiting(self, buffer: bytearray, mark: int) -> int | None: ...

    def _mark(self, rest: bytearray) -> int: ...


class Decoder:
    """Cuts the messages off one connection's buffer as its bytes arrive.

    Made per connection from its framing. :meth:`take` is handed the connection's buffer,
    the bytes received and not yet consumed, after new bytes were appended to it: it deletes
    the whole messages from the front of the buffer and returns them, and raises
    :class:`~fakepeer.FramingError` exactly when and as ``framing.decode`` would.

    For a built-in framing it remembers how far it scanned the buffer, and calls ``decode``
    (on a copy of the buffer) only when the new bytes can complete a message or break a
    rule (a delimiter, an ETX or ``max_length`` reached, the length a prefix declared
    arrived), so a message that arrives in many small segments costs time linear in its
    length. A custom framing's ``decode`` is called every time, on the whole buffer.

    Between two calls the buffer may only grow at its end; after taking bytes off it any
    other way, call :meth:`reset`.
    """

    __slots__ = ("_framing", "_incremental", "_mark")

    def __init__(self, framing: Framing) -> None:
        self._framing = framing
        # Not for subclasses of the built-in framings: they may decode otherwise.
        self._incremental = cast(_Incremental, framing) if type(framing) in _BUILT_IN else None
        self._mark = 0

    def take(self, buffer: bytearray, eof: bool) -> list[bytes]:
        """Delete the whole messages at the front of ``buffer`` and return them.

        ``eof`` is true when the client will send nothing more (see the module docstring).
        """
        incremental = self._incremental
        if incremental is not None:
            mark = incremental._waiting(buffer, self._mark)
            if mark is not None:
                self._mark = mark
                return []
            self._mark = 0  # until decode says otherwise
        messages, consumed = self._framing.decode(bytes(buffer), eof)
        if consumed:
            del buffer[:consumed]
        if incremental is not None:
            self._mark = incremental._mark(buffer)
        return messages

    def feed(self, buffer: bytearray, data: bytes) -> list[bytes]:
        """Append ``data`` to ``buffer``, then :meth:`take` (not at EOF).

        When ``buffer`` is empty, the common case, ``data`` itself is decoded, without a copy.
        """
        if buffer:
            buffer += data
            return self.take(buffer, False)
        incremental = self._incremental
        self._mark = 0
        messages, consumed = self._framing.decode(data, False)
        if consumed < len(data):
            buffer += data[consumed:]
        if incremental is not None:
            self._mark = incremental._mark(buffer)
        return messages

    def reset(self) -> None:
        """Forget what was scanned: bytes were taken off the buffer other than by :meth:`take`."""
        self._mark = 0


def check_framing(framing: object, keyword: str = "framing") -> Framing:
    """Return ``framing`` if it follows the protocol, else raise :class:`ScriptError` (which
    names the ``keyword`` it was given as when the mistake is the keyword's).

    ``None`` gives :class:`Raw`. A custom framing's optional ``max_length`` must be a whole
    number >= 1 (or ``None``).
    """
    if framing is None:
        return Raw()
    if type(framing) in _BUILT_IN:  # fast path: isinstance on a Protocol is slow
        return framing  # type: ignore[return-value]  # they all follow the protocol
    if isinstance(framing, type):
        raise ScriptError(f"{keyword} must be an instance, not the class: use {framing.__name__}()")
    if not isinstance(framing, Framing):
        raise ScriptError(
            f"{framing!r} is not a framing: it needs .streaming, .decode(buffer, eof) "
            "and .encode(message)"
        )
    limit = getattr(framing, "max_length", None)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ScriptError(
            f"{framing!r} has a max_length of {limit!r}: it must be a whole number of bytes "
            ">= 1, or None for the default"
        )
    return framing


def encodable(framing: Framing, data: bytes | None, step: str) -> None:
    """Check, as a rule is written, that ``framing`` can encode the constant reply ``data``
    (None: a reply callable, checked as it replies): the :class:`ScriptError` its ``encode``
    raises, after ``step`` (``".reply() on expect #1 ... (test_x.py:9)"``). Only a
    ScriptError: a framing of your own that raises anything else is left to the send.

    A framing of your own is checked on a ``copy.deepcopy`` of it, so an ``encode`` that
    keeps state (against the contract) still numbers the replies it sends from the first;
    one that cannot be copied is not checked here, only as it sends."""
    if data is None:
        return
    if not type(framing).__module__.startswith("fakepeer."):
        try:
            framing = copy.deepcopy(framing)
        except Exception:
            return
    try:
        framing.encode(data)
    except ScriptError as error:
        raise ScriptError(f"{step}: {error.diagnosis}") from None
    except Exception:
        pass
