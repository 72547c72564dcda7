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
    arrives in many small segments costs time quadratic in its length, unless the framing
    also has ``waiting`` and ``mark`` (below; the built-in framings have them). It raises
    :class:`~fakepeer.FramingError` when the bytes cannot be right (a message over
    ``max_length``, a bad length prefix); the peer then fails the connection, prefixing the
    message with the connection (``"connection #1: ..."``).
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

``waiting(buffer, mark) -> int | None`` and ``mark(rest) -> int`` (optional, both or neither)
    Let :class:`Decoder` skip calling ``decode`` while a message is still arriving, so that a
    message sent in many small segments costs time linear in its length, not quadratic. A
    *mark* is what the framing remembers of the bytes it has scanned already: an ``int`` of
    the framing's own meaning (an offset, or several numbers packed), ``0`` meaning nothing
    is known. ``waiting(buffer, mark)`` is called, when new bytes arrived, with the whole
    buffer (a ``bytearray``: the connection's buffer itself, read it, never change it) and
    the mark it or ``mark`` returned last; it returns the new mark when
    ``decode(buffer, False)`` would return ``([], 0)`` and raise nothing, and ``None`` when
    ``decode`` must be called (a message may be complete, the bytes may be wrong, the buffer
    reached ``max_length``; ``None`` is always a safe answer). It looks only at the bytes
    after what ``mark`` says was scanned, or it is no faster than ``decode``. Any ``mark``
    it returned, and ``0``, may come back with more bytes appended. ``mark(rest)`` is the
    mark for the bytes ``decode`` just left unconsumed, which ``decode`` accepted as the
    start of a message (``0`` is always right; a framing that knows more saves ``waiting`` a
    rescan). At EOF, ``decode`` is always called. A subclass that overrides ``decode`` but
    not ``waiting`` is decoded without them (they were written for another ``decode``).
    :func:`fakepeer.testing.check_framing` checks that ``waiting`` agrees with ``decode``.

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
cuts one connection's messages with any framing (and skips work with ``waiting`` and
``mark``), and
:func:`check_framing`, which vets what a script passed. The built-in framings themselves are
in ``fakepeer._builtin_framings`` and ``fakepeer._lengthfield`` (exported from here too).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
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

    ``max_length``, ``waiting`` and ``mark`` are optional, so they are not part of the
    protocol class.
    """

    @property
    def streaming(self) -> bool: ...

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]: ...

    def encode(self, message: bytes) -> bytes: ...


#: Framings whose decoding :class:`Decoder` knows (see :class:`_Incremental`).
_BUILT_IN: Final = frozenset({Raw, Delimited, Lines, LengthPrefixed, LengthField, Fixed, StxEtx})

#: ``waiting(buffer, mark) -> mark | None``: see the module docstring.
_Waiting = Callable[[bytearray, int], "int | None"]
#: ``mark(rest) -> mark``: see the module docstring.
_Marking = Callable[[bytearray], int]


class _Incremental(Protocol):
    """What the built-in framings add to the protocol so that :class:`Decoder` can skip
    calling ``decode`` when the new bytes cannot complete a message: the optional
    ``waiting`` and ``mark`` of the module docstring, under private names (``_waiting``,
    ``_mark``), which only the exact built-in classes are trusted with."""

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]: ...

    def _waiting(self, buffer: bytearray, mark: int) -> int | None: ...

    def _mark(self, rest: bytearray) -> int: ...


def _incremental(framing: Framing) -> tuple[_Waiting, _Marking] | None:
    """The framing's ``waiting`` and ``mark`` (private for a built-in one), or None."""
    # Not for subclasses of the built-in framings: they may decode otherwise.
    if type(framing) in _BUILT_IN:
        built_in = cast(_Incremental, framing)
        return built_in._waiting, built_in._mark
    waiting, mark = getattr(framing, "waiting", None), getattr(framing, "mark", None)
    if not callable(waiting) or not callable(mark):
        return None
    # A subclass that overrides decode, not waiting: the waiting it inherits knows another.
    decode_owner, waiting_owner = _owner(framing, "decode"), _owner(framing, "waiting")
    if decode_owner is not waiting_owner and issubclass(decode_owner, waiting_owner):
        return None
    return waiting, mark


def _owner(framing: object, name: str) -> type:
    """The class that defines ``framing``'s attribute ``name`` (``object`` if none does:
    an attribute set on the instance)."""
    return next((cls for cls in type(framing).__mro__ if name in vars(cls)), object)


class Decoder:
    """Cuts the messages off one connection's buffer as its bytes arrive.

    Made per connection from its framing. :meth:`take` is handed the connection's buffer,
    the bytes received and not yet consumed, after new bytes were appended to it: it deletes
    the whole messages from the front of the buffer and returns them, and raises
    :class:`~fakepeer.FramingError` exactly when and as ``framing.decode`` would.

    For a framing with ``waiting`` and ``mark`` (all built-in framings have them, under
    private names; see the module docstring) it keeps the framing's mark, and calls
    ``decode`` (on a copy of the buffer) only when ``waiting`` says the new bytes can
    complete a message or break a rule (a delimiter, an ETX or ``max_length`` reached, the
    length a prefix declared arrived), so a message that arrives in many small segments
    costs time linear in its length. Another framing's ``decode`` is called every time, on
    the whole buffer; at EOF, every framing's ``decode`` is.

    Between two calls the buffer may only grow at its end; after taking bytes off it any
    other way, call :meth:`reset`.
    """

    __slots__ = ("_framing", "_mark", "_marking", "_waiting")

    def __init__(self, framing: Framing) -> None:
        self._framing = framing
        incremental = _incremental(framing)
        self._waiting: _Waiting | None = None
        self._marking: _Marking | None = None
        if incremental is not None:
            self._waiting, self._marking = incremental
        self._mark = 0

    def take(self, buffer: bytearray, eof: bool) -> list[bytes]:
        """Delete the whole messages at the front of ``buffer`` and return them.

        ``eof`` is true when the client will send nothing more (see the module docstring).
        """
        waiting = self._waiting
        if waiting is not None and not eof:
            mark = waiting(buffer, self._mark)
            if mark is not None:
                self._mark = mark
                return []
        self._mark = 0  # until decode says otherwise
        messages, consumed = self._framing.decode(bytes(buffer), eof)
        if consumed:
            del buffer[:consumed]
        if self._marking is not None:
            self._mark = self._marking(buffer)
        return messages

    def feed(self, buffer: bytearray, data: bytes) -> list[bytes]:
        """Append ``data`` to ``buffer``, then :meth:`take` (not at EOF).

        When ``buffer`` is empty, the common case, ``data`` itself is decoded, without a copy.
        """
        if buffer:
            buffer += data
            return self.take(buffer, False)
        self._mark = 0
        messages, consumed = self._framing.decode(data, False)
        if consumed < len(data):
            buffer += data[consumed:]
        if self._marking is not None:
            self._mark = self._marking(buffer)
        return messages

    def reset(self) -> None:
        """Forget what was scanned: bytes were taken off the buffer other than by :meth:`take`."""
        self._mark = 0


def check_framing(framing: object, keyword: str = "framing") -> Framing:
    """Return ``framing`` if it follows the protocol, else raise :class:`ScriptError` (which
    names the ``keyword`` it was given as when the mistake is the keyword's).

    ``None`` gives :class:`Raw`. A custom framing's optional ``max_length`` must be a whole
    number >= 1 (or ``None``); its optional ``waiting`` and ``mark`` come both or neither.
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
    has = [name for name in ("waiting", "mark") if callable(getattr(framing, name, None))]
    if len(has) == 1:
        missing = "mark(rest)" if has == ["waiting"] else "waiting(buffer, mark)"
        raise ScriptError(
            f"{framing!r} has {has[0]}() but no {missing}: a framing that decodes "
            "incrementally needs both (or neither)"
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
    ours = type(framing).__module__.startswith("fakepeer.")
    if ours and getattr(type(framing), "encode_cannot_fail", False):
        return  # Raw, Delimited, Lines: nothing to check, and a 20 MB reply not copied twice
    if not ours:
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
