"""The framing of the length-prefixed kits (MQTT, Modbus/TCP): a :class:`~fakepeer.LengthField`
whose reply check names the kit's builders.

A wrapper, not a subclass (``LengthField`` is a frozen slots dataclass): it delegates
``decode``, ``max_length`` and ``streaming``, and the incremental ``waiting``/``mark`` pair
(``fakepeer._framing.Decoder`` trusts only the exact built-in classes with their private
names, and uses these public members for any other framing), so a packet that arrives in many
small segments still costs time linear in its length. Pure.
"""

from __future__ import annotations

from typing import ClassVar

from fakepeer import LengthField, ScriptError

__all__ = ["KitFraming"]


class KitFraming:
    """``inner`` (a LengthField), with ``encode`` errors that name ``builders`` (a sentence
    such as ``"build replies with the kit: mqtt.connack(), ..."``). ``kit`` is the function
    that made it (``"mqtt.framing"``) and ``default`` its default ``max_length``, for its repr.
    Immutable; equal when ``inner`` and ``kit`` are."""

    streaming: ClassVar[bool] = False
    __slots__ = ("_builders", "_default", "_inner", "_kit")

    def __init__(self, inner: LengthField, *, kit: str, default: int, builders: str) -> None:
        self._inner, self._kit, self._default, self._builders = inner, kit, default, builders

    @property
    def max_length(self) -> int:
        """The most bytes one frame may take, its header included."""
        return self._inner.max_length

    @property
    def length_field(self) -> LengthField:
        """The :class:`~fakepeer.LengthField` it decodes with."""
        return self._inner

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        """As :meth:`fakepeer.LengthField.decode`."""
        return self._inner.decode(buffer, eof)

    def waiting(self, buffer: bytearray, mark: int) -> int | None:
        """The framing protocol's optional ``waiting``, as the LengthField's."""
        return self._inner.waiting(buffer, mark)

    def mark(self, rest: bytearray) -> int:
        """The framing protocol's optional ``mark``, as the LengthField's."""
        return self._inner.mark(rest)

    def encode(self, message: bytes) -> bytes:
        """``message`` unchanged, if it is one whole frame; else a
        :class:`~fakepeer.ScriptError` that says why and names the kit's builders."""
        try:
            return self._inner.encode(message)
        except ScriptError as error:
            text = str(error)
            head, newline, rest = text.partition("\n")
            raise ScriptError(f"{self!r}: {head}; {self._builders}{newline}{rest}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KitFraming):
            return NotImplemented
        return self._inner == other._inner and self._kit == other._kit

    def __hash__(self) -> int:
        return hash((self._inner, self._kit))

    def __repr__(self) -> str:
        if self.max_length == self._default:
            return f"{self._kit}()"
        return f"{self._kit}(max_length={self.max_length})"
