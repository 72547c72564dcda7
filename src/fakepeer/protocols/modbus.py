"""Modbus/TCP, the server's side: a framing, request matchers, responses, a device preset.

The formats are those of the *Modbus Messaging on TCP/IP Implementation Guide V1.0b* (the
MBAP header, §3.1.3) and the *Modbus Application Protocol Specification V1.1b3* (the function
codes, §6, and exception responses, §7). A frame is the 7-byte MBAP header (transaction
identifier, protocol identifier 0, a length that counts the unit identifier and the PDU, the
unit identifier), then the PDU: a function code and its data. A fake device in two lines, for
pymodbus or any Modbus/TCP client::

    from fakepeer import FakePeer
    from fakepeer.protocols import modbus

    peer = FakePeer(framing=modbus.framing())
    peer.expect(modbus.read_holding_registers(0, 2)).reply(modbus.registers([1, 2]))

**Framing.** :func:`framing` decodes as :class:`~fakepeer.LengthField` ``(offset=4, size=2)``:
a rule sees each whole frame, MBAP header included, and a reply must be a whole frame, as the
builders make them (the framing checks its length field, naming the builders if it is
wrong). A frame over ``max_length`` (260 bytes, the largest Modbus/TCP ADU, by default)
fails the connection with a :class:`~fakepeer.FramingError`.

**Matchers** (:func:`request` and one per common function: :func:`read_coils`,
:func:`read_discrete_inputs`, :func:`read_holding_registers`, :func:`read_input_registers`,
:func:`write_single_coil`, :func:`write_single_register`, :func:`write_multiple_coils`,
:func:`write_multiple_registers`) return a :class:`~fakepeer.Matcher` whose match value, what a
reply callable receives, is the parsed frozen :class:`Request`. Each argument is a value the
request must have, or :data:`fakepeer.ANY` (the default) for any. A frame that is not a
well-formed request (a protocol identifier other than 0, a PDU too short for its function)
matches none of them, and the failure says why. They also work with
:class:`~fakepeer.Raw` framing (each takes one frame off the front of the stream).

**Responses** are reply callables for :meth:`~fakepeer.Rule.reply`: each takes the parsed
request (or its bytes) and answers with its transaction identifier, unit identifier and
function code: :func:`registers` (function 3 or 4), :func:`coils` (1 or 2), :func:`written`
(5, 6, 15, 16: the echo of a write), :func:`exception` (any: the function code with its high
bit set, and an :class:`ExceptionCode`), :func:`response` (any: the data as given).

**Errors.** A wrong argument is a :class:`~fakepeer.ScriptError` where the script is written;
a response that does not fit its request (3 register values for a read of 2, ``coils()`` for
a register read) raises :class:`~fakepeer.ScriptError` when it answers, which the peer reports
as a :class:`~fakepeer.ReplyFailed`. :func:`parse` raises :class:`~fakepeer.FramingError` for
bytes that are not a well-formed Modbus/TCP request.
"""

from __future__ import annotations

from collections.abc import MutableMapping, MutableSequence, Sequence
from typing import Final

from fakepeer import (
    ANY,
    ConnectionScript,
    FakePeer,
    LengthField,
    Matcher,
    Rule,
    ScriptError,
)

from ._kit_framing import KitFraming
from ._modbus_replies import (
    Response,
    answering,
    coils,
    exception,
    registers,
    response,
    sequence,
    written,
)
from ._modbus_requests import (
    BITS,
    MAX_FRAME,
    ExceptionCode,
    Function,
    Request,
    RequestMatcher,
    parse,
)

__all__ = [
    "ILLEGAL_DATA_ADDRESS",
    "ILLEGAL_DATA_VALUE",
    "ILLEGAL_FUNCTION",
    "SERVER_DEVICE_BUSY",
    "SERVER_DEVICE_FAILURE",
    "ExceptionCode",
    "Function",
    "ModbusFraming",
    "Request",
    "coils",
    "device",
    "exception",
    "framing",
    "parse",
    "read_coils",
    "read_discrete_inputs",
    "read_holding_registers",
    "read_input_registers",
    "registers",
    "request",
    "response",
    "write_multiple_coils",
    "write_multiple_registers",
    "write_single_coil",
    "write_single_register",
    "written",
]


#: 1: the device does not have this function.
ILLEGAL_FUNCTION: Final = ExceptionCode.ILLEGAL_FUNCTION
#: 2: an address the device does not have (or a range that goes past its last).
ILLEGAL_DATA_ADDRESS: Final = ExceptionCode.ILLEGAL_DATA_ADDRESS
#: 3: a value the request may not hold (a count of 0, or over the most a read may ask).
ILLEGAL_DATA_VALUE: Final = ExceptionCode.ILLEGAL_DATA_VALUE
#: 4: the device failed while serving the request.
SERVER_DEVICE_FAILURE: Final = ExceptionCode.SERVER_DEVICE_FAILURE
#: 6: the device is busy with a long request: try again later.
SERVER_DEVICE_BUSY: Final = ExceptionCode.SERVER_DEVICE_BUSY


class ModbusFraming(KitFraming):
    """The framing :func:`framing` returns: it decodes as
    ``LengthField(offset=4, size=2, max_length=max_length)`` (a frame that arrives in many
    small segments costs time linear in its length), and its ``encode`` checks that a reply is
    one whole frame, raising a :class:`~fakepeer.ScriptError` that names the builders (where a
    constant reply is written). ``length_field`` is that LengthField. Immutable; equal when
    the limits are."""

    def __init__(self, *, max_length: int = MAX_FRAME) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
            raise ScriptError(
                "modbus.framing(max_length=...) takes a whole number of bytes >= 8, got "
                f"{max_length!r}"
            )
        inner = LengthField(offset=4, size=2, max_length=max_length)
        super().__init__(inner, kit="modbus.framing", default=MAX_FRAME, builders=_BUILDERS)


#: What a reply check that fails says.
_BUILDERS: Final = (
    "build replies with the kit: modbus.registers([...]), modbus.coils([...]), "
    "modbus.written(), modbus.exception(modbus.ILLEGAL_DATA_ADDRESS), modbus.response(b'...') "
    "(to send bytes as written, pass FakePeer(reply_framing=Raw()))"
)


def framing(*, max_length: int = MAX_FRAME) -> ModbusFraming:
    """The framing of what a Modbus/TCP client sends: it decodes as
    ``LengthField(offset=4, size=2)``, and checks that a reply is one whole frame (a
    :class:`~fakepeer.ScriptError` naming the builders, raised where a constant reply is
    written; bytes malformed on purpose go out with ``reply_framing=Raw()``).

    ``max_length``: the most bytes one frame may take, its header included (default 260, the
    largest the specification allows); a client that sends more fails the connection with a
    :class:`~fakepeer.FramingError` that names this keyword.
    """
    return ModbusFraming(max_length=max_length)


def _number(function: str, keyword: str, value: object, largest: int) -> object:
    if value is ANY:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= largest:
        raise ScriptError(
            f"modbus.{function}({keyword}=...) takes a whole number from 0 to {largest} or "
            f"ANY, got {value!r}"
        )
    return value


def _values(function: str, values: object, coils: bool) -> object:
    if values is ANY:
        return values
    values = sequence(function, values)
    for value in values:
        if not (coils and isinstance(value, bool)):
            _number(function, "values", value, 1 if coils else 0xFFFF)
    return tuple(bool(v) for v in values) if coils else tuple(values)


def request(
    function: object = ANY,
    *,
    unit: object = ANY,
    address: object = ANY,
    count: object = ANY,
    values: object = ANY,
    transaction: object = ANY,
) -> Matcher:
    """A request with these fields (see :class:`Request`): for any function code, known to
    the kit or not (``function`` 1 to 127, a :class:`Function`)."""
    fields = {
        "function": _number("request", "function", function, 127),
        "unit": _number("request", "unit", unit, 255),
        "address": _number("request", "address", address, 0xFFFF),
        "count": _number("request", "count", count, 0xFFFF),
        "values": values if values is ANY else sequence("request", values),
        "transaction": _number("request", "transaction", transaction, 0xFFFF),
    }
    return RequestMatcher(fields)


def _read(function: Function, address: object, count: object, unit: object) -> Matcher:
    name = function.name.lower()
    return RequestMatcher(
        {
            "function": function,
            "address": _number(name, "address", address, 0xFFFF),
            "count": _number(name, "count", count, 0xFFFF),
            "unit": _number(name, "unit", unit, 255),
        }
    )


def read_coils(address: object = ANY, count: object = ANY, unit: object = ANY) -> Matcher:
    """A read coils request (function 1) from ``address`` (0-based), for ``count`` coils, to
    ``unit``."""
    return _read(Function.READ_COILS, address, count, unit)


def read_discrete_inputs(address: object = ANY, count: object = ANY, unit: object = ANY) -> Matcher:
    """A read discrete inputs request (function 2) from ``address``, for ``count`` inputs,
    to ``unit``."""
    return _read(Function.READ_DISCRETE_INPUTS, address, count, unit)


def read_holding_registers(
    address: object = ANY, count: object = ANY, unit: object = ANY
) -> Matcher:
    """A read holding registers request (function 3) from ``address``, for ``count``
    registers, to ``unit``."""
    return _read(Function.READ_HOLDING_REGISTERS, address, count, unit)


def read_input_registers(address: object = ANY, count: object = ANY, unit: object = ANY) -> Matcher:
    """A read input registers request (function 4) from ``address``, for ``count``
    registers, to ``unit``."""
    return _read(Function.READ_INPUT_REGISTERS, address, count, unit)


def write_single_coil(address: object = ANY, value: object = ANY, unit: object = ANY) -> Matcher:
    """A write single coil request (function 5) setting the coil at ``address`` to
    ``value`` (True or False, or 1 or 0, as in :func:`coils`)."""
    if value is not ANY and not isinstance(value, bool) and value not in (0, 1):
        raise ScriptError(
            f"modbus.write_single_coil(value=...) takes True, False, 0, 1 or ANY, got {value!r}"
        )
    return _write(
        Function.WRITE_SINGLE_COIL, address, ANY if value is ANY else (bool(value),), unit
    )


def write_single_register(
    address: object = ANY, value: object = ANY, unit: object = ANY
) -> Matcher:
    """A write single register request (function 6) setting the register at ``address`` to
    ``value`` (0 to 65535)."""
    value = _number("write_single_register", "value", value, 0xFFFF)
    return _write(Function.WRITE_SINGLE_REGISTER, address, ANY if value is ANY else (value,), unit)


def write_multiple_coils(
    address: object = ANY, values: object = ANY, unit: object = ANY
) -> Matcher:
    """A write multiple coils request (function 15) from ``address``, of ``values`` (a list
    of bools, or of 0 and 1)."""
    values = _values("write_multiple_coils", values, coils=True)
    return _write(Function.WRITE_MULTIPLE_COILS, address, values, unit)


def write_multiple_registers(
    address: object = ANY, values: object = ANY, unit: object = ANY
) -> Matcher:
    """A write multiple registers request (function 16) from ``address``, of ``values`` (a
    list of ints 0 to 65535)."""
    values = _values("write_multiple_registers", values, coils=False)
    return _write(Function.WRITE_MULTIPLE_REGISTERS, address, values, unit)


def _write(function: Function, address: object, values: object, unit: object) -> Matcher:
    name = function.name.lower()
    return RequestMatcher(
        {
            "function": function,
            "address": _number(name, "address", address, 0xFFFF),
            "values": values,
            "unit": _number(name, "unit", unit, 255),
        }
    )


# -- presets -----------------------------------------------------------------------------------

#: The most items one read or multiple write may ask for (Modbus Application Protocol §6.1
#: to §6.4, §6.11, §6.12).
_MOST: Final = {1: 2000, 2: 2000, 3: 125, 4: 125, 15: 1968, 16: 123}
#: Which table each function reads or writes.
_TABLES: Final = {
    1: "coils",
    2: "discrete_inputs",
    3: "holding_registers",
    4: "input_registers",
    5: "coils",
    6: "holding_registers",
    15: "coils",
    16: "holding_registers",
}

#: A table of a :func:`device`: address -> value, or the values from address 0.
Table = MutableMapping[int, int] | Sequence[int]
#: A table as :func:`device` keeps it: the dict or list it was given (updated in place), or
#: a dict made from another sequence (a tuple).
_Kept = MutableMapping[int, int] | MutableSequence[int]


def _table(keyword: str, table: Table | None, coils: bool) -> _Kept | None:
    if table is None:
        return None
    kept: _Kept
    if isinstance(table, MutableMapping):
        items, kept = list(table.items()), table
    elif isinstance(table, MutableSequence) and not isinstance(table, bytearray):
        items, kept = list(enumerate(table)), table
    elif isinstance(table, Sequence) and not isinstance(table, bytes | bytearray | str):
        items, kept = list(enumerate(table)), {}
    else:
        raise ScriptError(
            f"modbus.device({keyword}=...) takes a dict (address -> value) or a list (the "
            f"values from address 0), got {table!r}"
        )
    largest = 1 if coils else 0xFFFF
    for address, value in items:
        if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address <= 0xFFFF:
            raise ScriptError(
                f"modbus.device({keyword}=...) has the address {address!r}: addresses are "
                "whole numbers from 0 to 65535"
            )
        if not (coils and isinstance(value, bool)) and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= largest
        ):
            raise ScriptError(
                f"modbus.device({keyword}=...) has the value {value!r} at address {address}: "
                f"{'coils are True or False' if coils else 'registers are 0 to 65535'}"
            )
        if isinstance(kept, MutableMapping):
            kept[address] = bool(value) if coils else value
    return kept


def device(
    script: FakePeer | ConnectionScript,
    *,
    holding_registers: Table | None = None,
    input_registers: Table | None = None,
    coils: Table | None = None,
    discrete_inputs: Table | None = None,
    unit: object = ANY,
) -> list[Rule]:
    """Add to ``script`` (a :class:`~fakepeer.FakePeer` or a
    :class:`~fakepeer.ConnectionScript`) permanent rules that answer as a device with these
    tables: reads (functions 1 to 4) from them, writes (5, 6, 15, 16) into the holding
    registers and coils.

    Each table is a dict (address -> value: ints 0 to 65535 for registers, bools for coils and
    discrete inputs) or a list (the values from address 0); a dict or a list is updated in
    place by the writes, so the test can read what the client wrote (another sequence, a
    tuple, is copied). A request for an address a table does not hold is answered with
    ``ILLEGAL_DATA_ADDRESS``, a read or a multiple write of more than the specification allows
    (reads: 125 registers, 2000 coils; writes: 123 registers, 1968 coils) or of none with
    ``ILLEGAL_DATA_VALUE``. A request for a table not given is answered with
    ``ILLEGAL_FUNCTION``, as a device without that table answers it (Modbus Application
    Protocol §6: a function code the device does not support is exception 1), so the client
    sees a Modbus exception and the transcript shows it; its rule is an ``always`` rule like
    the others, so to script such requests yourself, use ``expect`` rules (tried first) or
    write your ``always`` rules before calling :func:`device`. Requests for another ``unit``
    are left to the rest of the script. Returns the rules it added: one per function it
    answers from a table, then one per function of a table not given.
    """
    if not isinstance(script, FakePeer | ConnectionScript):
        raise ScriptError(f"modbus.device() takes a FakePeer or a ConnectionScript, got {script!r}")
    tables = {
        "holding_registers": _table("holding_registers", holding_registers, False),
        "input_registers": _table("input_registers", input_registers, False),
        "coils": _table("coils", coils, True),
        "discrete_inputs": _table("discrete_inputs", discrete_inputs, True),
    }
    unit = _number("device", "unit", unit, 255)
    served = [
        script.always(request(function, unit=unit)).reply(_serve(table, function in BITS))
        for function, name in _TABLES.items()
        if (table := tables[name]) is not None
    ]
    refused = [
        script.always(request(function, unit=unit)).reply(exception(ILLEGAL_FUNCTION))
        for function, name in _TABLES.items()
        if tables[name] is None
    ]
    return served + refused


def _holds(table: _Kept, address: int) -> bool:
    if isinstance(table, MutableMapping):
        return address in table
    return 0 <= address < len(table)


def _serve(table: _Kept, bits: bool) -> Response:
    """A response that reads ``table``, or writes into it."""

    def answer(request: object) -> bytes:
        parsed = answering(request, "device")
        address, count = parsed.address or 0, parsed.count or 0
        if parsed.function in _MOST and not 1 <= count <= _MOST[parsed.function]:
            return exception(ILLEGAL_DATA_VALUE)(parsed)
        addresses = range(address, address + count)
        if not all(_holds(table, a) for a in addresses):
            return exception(ILLEGAL_DATA_ADDRESS)(parsed)
        if parsed.values is None:
            values = [table[a] for a in addresses]
            return (coils if bits else registers)(values)(parsed)
        for at, value in zip(addresses, parsed.values, strict=True):
            table[at] = value
        return written()(parsed)

    return answer
