"""The responses of :mod:`fakepeer.protocols.modbus`: reply callables that answer a parsed
request (or its bytes) with a whole Modbus/TCP frame (*Modbus Application Protocol
Specification V1.1b3*, §6 and §7; the MBAP header of the *Modbus Messaging on TCP/IP
Implementation Guide V1.0b*, §3.1.3). Made of the public library only. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from fakepeer import ANY, FramingError, ScriptError

from ._modbus_requests import Request, parse, shown

__all__ = [
    "Response",
    "answering",
    "coils",
    "exception",
    "registers",
    "response",
    "sequence",
    "written",
]


def sequence(function: str, values: object) -> tuple[object, ...]:
    if isinstance(values, bytes | str) or not isinstance(values, Sequence) or not values:
        raise ScriptError(f"modbus.{function}(values=...) takes a non-empty list, got {values!r}")
    return tuple(values)


def _reply_values(function: str, values: object, coils: bool) -> tuple[int, ...]:
    """The values of a reply builder: concrete ones (no ANY, which is for matchers)."""
    if values is ANY:
        raise ScriptError(
            f"modbus.{function}(values=...): a reply needs values; ANY is for matchers"
        )
    values = sequence(function, values)
    for value in values:
        if value is ANY:
            raise ScriptError(
                f"modbus.{function}(values=...) has ANY in {values!r}: a reply needs values; "
                "ANY is for matchers"
            )
        if coils and not isinstance(value, bool) and value not in (0, 1):
            raise ScriptError(
                f"modbus.{function}(values=...) takes True, False, 0 or 1, got {value!r}"
            )
        if not coils and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF
        ):
            raise ScriptError(
                f"modbus.{function}(values=...) takes whole numbers from 0 to 65535, got {value!r}"
            )
    return tuple(int(cast(int, v)) for v in values)


#: A response of the kit: a reply callable taking the parsed request (or its bytes).
Response = Callable[[object], bytes]


def answering(request: object, builder: str) -> Request:
    if isinstance(request, bytes | bytearray):
        try:
            return parse(bytes(request))
        except FramingError as error:
            raise ScriptError(f"modbus.{builder}() answers a request, and got {error}") from None
    if not isinstance(request, Request):
        raise ScriptError(
            f"modbus.{builder}() answers a Modbus request, and got {request!r}: use it in the "
            ".reply() of a rule with a modbus matcher"
        )
    return request


def _frame(request: Request, pdu: bytes) -> bytes:
    """A response frame: the request's transaction and unit identifiers, then ``pdu``."""
    header = request.transaction.to_bytes(2, "big") + b"\x00\x00"
    return header + (len(pdu) + 1).to_bytes(2, "big") + bytes([request.unit]) + pdu


def _for(request: Request, builder: str, functions: frozenset[int], count: int) -> None:
    if request.function not in functions:
        wanted = " or ".join(str(f) for f in sorted(functions))
        raise ScriptError(
            f"modbus.{builder}() answers function {wanted}, and the request is "
            f"{shown('function', request.function)}"
        )
    if request.count != count:
        raise ScriptError(
            f"modbus.{builder}() has {count} values for a request of {request.count}, from "
            f"address {request.address}"
        )


def registers(values: Sequence[int]) -> Response:
    """A response to a read of holding or input registers (function 3 or 4): ``values``,
    ints from 0 to 65535, as many as the request's count."""
    words = _reply_values("registers", values, coils=False)

    def answer(request: object) -> bytes:
        parsed = answering(request, "registers")
        _for(parsed, "registers", frozenset({3, 4}), len(words))
        data = b"".join(word.to_bytes(2, "big") for word in words)
        return _frame(parsed, bytes([parsed.function, len(data)]) + data)

    return answer


def coils(values: Sequence[bool | int]) -> Response:
    """A response to a read of coils or discrete inputs (function 1 or 2): ``values``, bools
    (or 0 and 1), as many as the request's count, packed 8 a byte from the lowest bit."""
    bits = _reply_values("coils", values, coils=True)

    def answer(request: object) -> bytes:
        parsed = answering(request, "coils")
        _for(parsed, "coils", frozenset({1, 2}), len(bits))
        data = bytearray((len(bits) + 7) // 8)
        for index, bit in enumerate(bits):
            data[index // 8] |= bit << (index % 8)
        return _frame(parsed, bytes([parsed.function, len(data)]) + data)

    return answer


def written() -> Response:
    """The normal response to a write (function 5, 6, 15 or 16): the request's address and
    value for a single write, its address and count for a multiple write."""

    def answer(request: object) -> bytes:
        parsed = answering(request, "written")
        if parsed.function not in (5, 6, 15, 16):
            raise ScriptError(
                "modbus.written() answers a write (function 5, 6, 15 or 16), and the request "
                f"is {shown('function', parsed.function)}"
            )
        return _frame(parsed, bytes([parsed.function]) + parsed.data[:4])

    return answer


def exception(code: int) -> Response:
    """An exception response to any request: its function code with the high bit set, then
    ``code`` (an :class:`ExceptionCode`, or any number from 1 to 255), e.g.
    ``exception(ExceptionCode.ILLEGAL_DATA_ADDRESS)``."""
    if isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= 255:
        raise ScriptError(
            f"modbus.exception() takes an exception code from 1 to 255 (an ExceptionCode), "
            f"got {code!r}"
        )

    def answer(request: object) -> bytes:
        parsed = answering(request, "exception")
        return _frame(parsed, bytes([parsed.function | 0x80, code]))

    return answer


def response(data: bytes) -> Response:
    """A response to any request: its function code, then ``data`` as given (for functions
    the kit has no builder for)."""
    if not isinstance(data, bytes | bytearray):
        raise ScriptError(f"modbus.response() takes the data as bytes, got {data!r}")

    def answer(request: object) -> bytes:
        parsed = answering(request, "response")
        return _frame(parsed, bytes([parsed.function]) + bytes(data))

    return answer
