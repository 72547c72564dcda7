"""Modbus/TCP requests as values: what :mod:`fakepeer.protocols.modbus` parses and matches.

The MBAP header is that of the *Modbus Messaging on TCP/IP Implementation Guide V1.0b*
(§3.1.3), the function codes and their PDUs those of the *Modbus Application Protocol
Specification V1.1b3* (§6, §7). :class:`RequestMatcher` follows the public
:class:`~fakepeer.Matcher` protocol only, as a matcher of a user's own kit would. Pure.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from fakepeer import ANY, NEED_MORE, FramingError, Matched, Matcher, MatchOutcome

__all__ = [
    "BITS",
    "MAX_FRAME",
    "ExceptionCode",
    "Function",
    "Request",
    "RequestMatcher",
    "frame_length",
    "parse",
    "shown",
]


class Function(enum.IntEnum):
    """The public function codes this kit parses (Modbus Application Protocol §6)."""

    READ_COILS = 1
    READ_DISCRETE_INPUTS = 2
    READ_HOLDING_REGISTERS = 3
    READ_INPUT_REGISTERS = 4
    WRITE_SINGLE_COIL = 5
    WRITE_SINGLE_REGISTER = 6
    WRITE_MULTIPLE_COILS = 15
    WRITE_MULTIPLE_REGISTERS = 16


class ExceptionCode(enum.IntEnum):
    """The exception codes of an exception response (Modbus Application Protocol §7)."""

    ILLEGAL_FUNCTION = 1
    ILLEGAL_DATA_ADDRESS = 2
    ILLEGAL_DATA_VALUE = 3
    SERVER_DEVICE_FAILURE = 4
    ACKNOWLEDGE = 5
    SERVER_DEVICE_BUSY = 6
    MEMORY_PARITY_ERROR = 8
    GATEWAY_PATH_UNAVAILABLE = 10
    GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND = 11


#: The largest Modbus/TCP frame: a 253-byte PDU and the 7-byte MBAP header.
MAX_FRAME: Final = 260
_READS: Final = frozenset({1, 2, 3, 4})
#: The functions on coils and discrete inputs (bits, not registers).
BITS: Final = frozenset({1, 2, 5, 15})


@dataclass(frozen=True)
class Request:
    """A Modbus/TCP request, parsed: the match value of the kit's matchers.

    ``transaction`` and ``unit`` are the MBAP header's transaction and unit identifiers,
    ``function`` the function code (a :class:`Function` when the kit knows it), ``data`` the
    PDU after the function code. For the functions of :class:`Function`: ``address`` is the
    starting address (0-based, as on the wire), ``count`` the quantity of coils or
    registers, and ``values`` what a write writes (registers as ints 0 to 65535, coils as
    bools), ``None`` for a read; a single write has ``count`` 1 and one value.
    """

    transaction: int
    unit: int
    function: int
    data: bytes = b""
    address: int | None = None
    count: int | None = None
    values: tuple[int, ...] | None = None


def frame_length(data: bytes) -> int | None:
    return 6 + int.from_bytes(data[4:6], "big") if len(data) >= 6 else None


def parse(data: bytes) -> Request:
    """The request ``data`` (one whole frame, MBAP header included), parsed.

    :class:`~fakepeer.FramingError` when it is not a well-formed Modbus/TCP request: shorter
    than a header and a function code, a length field that disagrees with its length, a
    protocol identifier other than 0, a PDU of the wrong size for its function.
    """
    data = bytes(data)
    if len(data) < 8:
        raise FramingError(
            f"not a Modbus/TCP request: {len(data)} bytes, fewer than the 7-byte MBAP header "
            "and a function code"
        )
    if frame_length(data) != len(data):
        raise FramingError(
            f"not a Modbus/TCP request: its MBAP length says {frame_length(data)} bytes in "
            f"all, and it is {len(data)}"
        )
    protocol = int.from_bytes(data[2:4], "big")
    if protocol != 0:
        raise FramingError(
            f"not a Modbus/TCP request: its protocol identifier is {protocol}, not 0"
        )
    transaction, unit, code, pdu = int.from_bytes(data[:2], "big"), data[6], data[7], data[8:]
    if code not in Function._value2member_map_:
        return Request(transaction, unit, code, pdu)
    function = Function(code)
    try:
        address, count, values = _fields(function, pdu)
    except ValueError as error:
        raise FramingError(
            f"not a well-formed Modbus {function.name.lower()} request: {error}"
        ) from None
    return Request(transaction, unit, function, pdu, address, count, values)


def _fields(function: Function, pdu: bytes) -> tuple[int, int, tuple[int, ...] | None]:
    """Address, count and values of a request; ValueError saying what is wrong."""
    if len(pdu) < 4:
        raise ValueError(f"its PDU has {len(pdu)} bytes after the function code, fewer than 4")
    address, second = int.from_bytes(pdu[:2], "big"), int.from_bytes(pdu[2:4], "big")
    if function in _READS:
        _exactly(pdu, 4)
        return address, second, None
    if function is Function.WRITE_SINGLE_COIL:
        _exactly(pdu, 4)
        if second not in (0x0000, 0xFF00):
            raise ValueError(f"its coil value is {second:#06x}, not 0xff00 (on) or 0x0000 (off)")
        return address, 1, (second == 0xFF00,)
    if function is Function.WRITE_SINGLE_REGISTER:
        _exactly(pdu, 4)
        return address, 1, (second,)
    size = (second + 7) // 8 if function in BITS else 2 * second
    if len(pdu) < 5 or pdu[4] != size or len(pdu) != 5 + size:
        raise ValueError(
            f"for {second} {'coils' if function in BITS else 'registers'} it needs a byte "
            f"count of {size} and {size} bytes of values; it has {pdu[4:5].hex() or 'no'} "
            f"byte count and {max(len(pdu) - 5, 0)} bytes"
        )
    payload = pdu[5:]
    if function in BITS:
        return address, second, tuple(bool(payload[i // 8] >> (i % 8) & 1) for i in range(second))
    words = tuple(int.from_bytes(payload[i : i + 2], "big") for i in range(0, size, 2))
    return address, second, words


def _exactly(pdu: bytes, size: int) -> None:
    if len(pdu) != size:
        raise ValueError(f"its PDU has {len(pdu)} bytes after the function code, not {size}")


# -- matchers ----------------------------------------------------------------------------------


class RequestMatcher(Matcher):
    """Modbus/TCP requests whose fields have the values given (:data:`~fakepeer.ANY`: any)."""

    def __init__(self, fields: Mapping[str, object]) -> None:
        self.fields = {name: value for name, value in fields.items() if value is not ANY}

    def match(self, data: bytes, *, stream: bool) -> MatchOutcome:
        if stream:  # Raw framing: the frame at the front of the buffer, once it is all there
            length = frame_length(data)
            if length is None or len(data) < length:
                return NEED_MORE
            data = data[:length]
        try:
            parsed = parse(data)
        except FramingError:
            return None
        return Matched(parsed, len(data)) if self._mismatch(parsed) is None else None

    def _mismatch(self, parsed: Request) -> str | None:
        for name, wanted in self.fields.items():
            got = getattr(parsed, name)
            if got != wanted:
                return f"has {name} {shown(name, got)}, not {shown(name, wanted)}"
        return None

    def describe(self) -> str:
        words = ["Modbus request"]
        function = self.fields.get("function")
        if function is not None:
            words = [f"Modbus {shown('function', function)}"]
        words += [f"{k} {shown(k, v)}" for k, v in self.fields.items() if k != "function"]
        return " ".join(words)

    def explain(self, data: bytes) -> str:
        length = frame_length(data)
        try:
            parsed = parse(data[:length] if length is not None else data)
        except FramingError as error:
            return f"is {error}"
        what = f"is a Modbus {shown('function', parsed.function)} request"
        wanted = self.fields.get("function", parsed.function)
        if parsed.function != wanted:
            return f"{what}, not {shown('function', wanted)}"
        why = self._mismatch(parsed)
        return f"matches {self.describe()}" if why is None else f"{what} that {why}"

    def _closeness(self, data: bytes, stream: bool) -> float:
        length = frame_length(data)
        try:
            parsed = parse(data[:length] if length is not None else data)
        except FramingError:
            return 0.0
        if parsed.function != self.fields.get("function", parsed.function):
            return 0.2
        right = sum(bool(getattr(parsed, k) == v) for k, v in self.fields.items())
        return 0.5 + 0.45 * right / (len(self.fields) or 1)


def shown(name: str, value: object) -> str:
    if name == "function" and isinstance(value, int):
        known = Function(value).name.lower() if value in Function._value2member_map_ else ""
        return f"{known} (function {int(value)})" if known else f"function {int(value)}"
    return repr(value)
