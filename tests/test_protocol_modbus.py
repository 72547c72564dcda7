"""Tests of ``fakepeer.protocols.modbus``: requests parsed and responses built as the Modbus
specifications lay them out (tables, no sockets), the framing however the bytes are split
(Hypothesis), and the kit against pymodbus 3 (``ModbusTcpClient`` and
``AsyncModbusTcpClient``), exception responses included.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException

from fakepeer import (
    ANY,
    FakePeer,
    FramingError,
    Matched,
    Matcher,
    Raw,
    ReplyFailed,
    ScriptError,
    UnexpectedData,
)
from fakepeer._framing import _incremental
from fakepeer.protocols import modbus
from fakepeer.testing import Rehearsal, check_framing

TIMEOUT = 5.0


def frame(transaction: int, unit: int, pdu: bytes) -> bytes:
    """A Modbus/TCP frame: the MBAP header, then ``pdu``."""
    return (
        transaction.to_bytes(2, "big")
        + b"\x00\x00"
        + (len(pdu) + 1).to_bytes(2, "big")
        + (bytes([unit]) + pdu)
    )


READ_HOLDING = frame(1, 1, b"\x03\x00\x00\x00\x02")  # as pymodbus sends it


# -- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pdu", "fields"),
    [
        (b"\x01\x00\x05\x00\x0a", (1, 5, 10, None)),
        (b"\x02\x00\x00\x00\x01", (2, 0, 1, None)),
        (b"\x03\x00\x00\x00\x02", (3, 0, 2, None)),
        (b"\x04\x00\x64\x00\x01", (4, 100, 1, None)),
        (b"\x05\x00\x01\xff\x00", (5, 1, 1, (True,))),
        (b"\x05\x00\x01\x00\x00", (5, 1, 1, (False,))),
        (b"\x06\x00\x07\x00\x63", (6, 7, 1, (99,))),
        (b"\x0f\x00\x02\x00\x03\x01\x05", (15, 2, 3, (True, False, True))),
        (b"\x10\x00\x08\x00\x02\x04\x00\x01\xff\xff", (16, 8, 2, (1, 65535))),
        (b"\x2b\x0e\x01\x00", (0x2B, None, None, None)),  # read device identification
    ],
)
def test_parse_requests(pdu: bytes, fields: tuple[object, ...]) -> None:
    request = modbus.parse(frame(0x1234, 17, pdu))
    assert (request.transaction, request.unit, request.data) == (0x1234, 17, pdu[1:])
    assert (request.function, request.address, request.count, request.values) == fields
    if request.function in modbus.Function._value2member_map_:
        assert isinstance(request.function, modbus.Function)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"\x00\x01\x00\x00\x00\x01\x01", "not a Modbus/TCP request: 7 bytes, fewer than"),
        (READ_HOLDING + b"\x00", "its MBAP length says 12 bytes in all, and it is 13"),
        (b"\x00\x01\x00\x07" + READ_HOLDING[4:], "its protocol identifier is 7, not 0"),
        (frame(1, 1, b"\x03\x00\x00"), "read_holding_registers request: its PDU has 2 bytes"),
        (frame(1, 1, b"\x05\x00\x00\x12\x34"), "its coil value is 0x1234, not 0xff00 (on)"),
        (
            frame(1, 1, b"\x10\x00\x00\x00\x02\x02\x00\x01"),
            "for 2 registers it needs a byte count of 4 and 4 bytes of values; it has 02 "
            "byte count and 2 bytes",
        ),
    ],
)
def test_parse_says_what_is_wrong(data: bytes, text: str) -> None:
    with pytest.raises(FramingError) as caught:
        modbus.parse(data)
    assert text in str(caught.value)


# -- responses -----------------------------------------------------------------------------------


def test_responses_echo_the_transaction_unit_and_function() -> None:
    read = frame(0xBEEF, 9, b"\x04\x00\x00\x00\x02")
    assert modbus.registers([1, 0xFFFF])(read) == frame(0xBEEF, 9, b"\x04\x04\x00\x01\xff\xff")
    coils = frame(5, 1, b"\x01\x00\x00\x00\x0a")
    assert modbus.coils([1, 0, 1, 1, 0, 0, 0, 0, 1, 1])(modbus.parse(coils)) == frame(
        5, 1, b"\x01\x02\x0d\x03"
    )
    single = frame(6, 1, b"\x06\x00\x07\x00\x63")
    assert modbus.written()(single) == single
    multiple = frame(7, 1, b"\x10\x00\x08\x00\x02\x04\x00\x01\x00\x02")
    assert modbus.written()(multiple) == frame(7, 1, b"\x10\x00\x08\x00\x02")
    assert modbus.exception(modbus.ILLEGAL_DATA_ADDRESS)(read) == frame(0xBEEF, 9, b"\x84\x02")
    assert modbus.response(b"\x01\x02")(frame(8, 1, b"\x2b\x0e")) == frame(8, 1, b"\x2b\x01\x02")


def test_a_response_that_does_not_fit_its_request_fails_the_reply() -> None:
    with pytest.raises(ScriptError, match=r"registers\(\) has 1 values for a request of 2"):
        modbus.registers([1])(READ_HOLDING)
    with pytest.raises(
        ScriptError,
        match=r"coils\(\) answers function 1 or 2, and the request is "
        r"read_holding_registers \(function 3\)",
    ):
        modbus.coils([True, False])(READ_HOLDING)
    with pytest.raises(ScriptError, match=r"written\(\) answers a write"):
        modbus.written()(READ_HOLDING)
    with pytest.raises(ScriptError, match=r"answers a Modbus request, and got 'x'"):
        modbus.registers([1])("x")


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (
            lambda: modbus.registers([70000]),
            "modbus.registers(values=...) takes whole numbers from 0 to 65535, got 70000",
        ),
        (lambda: modbus.registers([]), "modbus.registers(values=...) takes a non-empty list"),
        (lambda: modbus.coils([2]), "modbus.coils(values=...) takes True, False, 0 or 1, got 2"),
        (lambda: modbus.registers(ANY), "a reply needs values; ANY is for matchers"),  # type: ignore[arg-type]
        (lambda: modbus.coils([ANY, False]), "has ANY in (ANY, False): a reply needs values"),  # type: ignore[list-item]
        (lambda: modbus.exception(0), "modbus.exception() takes an exception code from 1"),
        (lambda: modbus.read_coils(-1), "modbus.read_coils(address=...) takes a whole number"),
        (lambda: modbus.read_holding_registers(0, 2, unit=256), "(unit=...) takes a whole"),
        (lambda: modbus.write_single_coil(1, 2), "takes True, False, 0, 1 or ANY, got 2"),
        (lambda: modbus.response("x"), "modbus.response() takes the data as bytes"),  # type: ignore[arg-type]
        (lambda: modbus.framing(max_length=7), "modbus.framing(max_length=...) takes"),
        (lambda: modbus.device(object()), "takes a FakePeer or a ConnectionScript"),  # type: ignore[arg-type]
        (
            lambda: modbus.device(FakePeer(), holding_registers={0: -1}),
            "modbus.device(holding_registers=...) has the value -1 at address 0: registers",
        ),
    ],
)
def test_wrong_arguments_are_script_errors(call: Callable[[], object], text: str) -> None:
    with pytest.raises(ScriptError) as caught:
        call()
    assert text in str(caught.value)


# -- matchers ------------------------------------------------------------------------------------


def matched(matcher: Matcher, data: bytes) -> object:
    outcome = matcher.match(data, stream=False)
    return outcome.value if isinstance(outcome, Matched) else None


def test_matchers_by_unit_function_and_address() -> None:
    assert matched(modbus.read_holding_registers(0, 2), READ_HOLDING) == modbus.parse(READ_HOLDING)
    assert matched(modbus.read_holding_registers(0, 2, unit=1), READ_HOLDING) is not None
    assert matched(modbus.read_holding_registers(0, 2, unit=2), READ_HOLDING) is None
    assert matched(modbus.read_holding_registers(1), READ_HOLDING) is None
    assert matched(modbus.read_input_registers(), READ_HOLDING) is None
    assert matched(modbus.request(3, transaction=1), READ_HOLDING) is not None
    assert matched(modbus.request(address=ANY, count=2), READ_HOLDING) is not None
    write = frame(2, 1, b"\x10\x00\x08\x00\x02\x04\x00\x01\x00\x02")
    assert matched(modbus.write_multiple_registers(8, [1, 2]), write) is not None
    assert matched(modbus.write_multiple_registers(8, [1, 3]), write) is None
    assert matched(modbus.request(16, values=[1, 2]), write) is not None
    assert matched(modbus.write_single_coil(1, True), frame(3, 1, b"\x05\x00\x01\xff\x00"))
    # 1 and 0 are accepted as in coils() and write_multiple_coils()
    assert matched(modbus.write_single_coil(1, 1), frame(3, 1, b"\x05\x00\x01\xff\x00"))
    assert matched(modbus.write_single_coil(1, 0), frame(3, 1, b"\x05\x00\x01\xff\x00")) is None
    assert matched(modbus.write_single_register(7, 99), frame(3, 1, b"\x06\x00\x07\x00\x63"))
    coils = frame(4, 1, b"\x0f\x00\x02\x00\x03\x01\x05")
    assert matched(modbus.write_multiple_coils(2, [1, 0, 1]), coils) is not None
    assert matched(modbus.read_coils(), b"\x00\x01\x00\x09\x00\x02\x01\x01") is None


def test_descriptions_and_explanations() -> None:
    read = modbus.read_holding_registers(0, 2, unit=1)
    assert read.describe() == (
        "Modbus read_holding_registers (function 3) address 0 count 2 unit 1"
    )
    assert modbus.request().describe() == "Modbus request"
    other = frame(1, 1, b"\x03\x00\x05\x00\x02")
    assert read.explain(other) == (
        "is a Modbus read_holding_registers (function 3) request that has address 5, not 0"
    )
    assert read.explain(frame(1, 1, b"\x06\x00\x07\x00\x63")) == (
        "is a Modbus write_single_register (function 6) request, not "
        "read_holding_registers (function 3)"
    )
    assert read.explain(b"\x00\x01\x00\x07" + READ_HOLDING[4:]) == (
        "is not a Modbus/TCP request: its protocol identifier is 7, not 0"
    )


def test_matchers_take_frames_off_a_raw_stream() -> None:
    peer = FakePeer(framing=Raw())
    peer.expect(modbus.read_holding_registers(0, 2)).reply(modbus.registers([7, 8]))
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    assert rehearsal.send(client, READ_HOLDING[:5]) == []
    assert rehearsal.send(client, READ_HOLDING[5:]) == [frame(1, 1, b"\x03\x04\x00\x07\x00\x08")]
    rehearsal.verify()


# -- the framing: the same frames however the bytes are split -------------------------------------

FRAMES = st.builds(
    frame,
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    st.binary(min_size=1, max_size=253),
)


@settings(max_examples=40, deadline=None)
@given(frames=st.lists(FRAMES, min_size=1, max_size=4))
def test_the_framing_cuts_the_same_frames_however_split(frames: list[bytes]) -> None:
    assert check_framing(modbus.framing(), b"".join(frames)) == frames
    for data in frames:
        assert modbus.framing().encode(data) == data  # a response is a whole frame, unchanged


def test_the_framing_decodes_incrementally_and_names_itself() -> None:
    assert _incremental(modbus.framing()) is not None
    assert repr(modbus.framing()) == "modbus.framing()"
    assert modbus.framing().max_length == 260
    with pytest.raises(
        ScriptError, match=r"^modbus.framing\(\): a reply of 2 bytes .* modbus.registers"
    ):
        modbus.framing().encode(b"OK")


def test_a_frame_over_max_length_names_the_keyword() -> None:
    with pytest.raises(FramingError, match=r"max_length") as caught:
        modbus.framing().decode(frame(1, 1, bytes(254)), False)
    assert "260" in str(caught.value)


# -- real clients: pymodbus ------------------------------------------------------------------------


@contextlib.contextmanager
def client(peer: FakePeer) -> Iterator[ModbusTcpClient]:
    """A connected pymodbus client that does not retry."""
    sync: Any = ModbusTcpClient(peer.host, port=peer.port, timeout=TIMEOUT, retries=0)
    assert sync.connect()  # pymodbus leaves connect() and close() unannotated
    try:
        yield sync
    finally:
        sync.close()


def test_pymodbus_reads_holding_registers() -> None:
    peer = FakePeer(framing=modbus.framing())
    peer.expect(modbus.read_holding_registers(0, 2)).reply(modbus.registers([1, 2]))
    with peer.serve(), client(peer) as sync:
        assert sync.read_holding_registers(0, count=2).registers == [1, 2]


def test_pymodbus_reads_writes_and_exceptions() -> None:
    peer = FakePeer(framing=modbus.framing())
    peer.expect(modbus.read_coils(5, 10, unit=3)).reply(
        modbus.coils([1, 0, 1, 1, 0, 0, 0, 0, 1, 1])
    )
    peer.expect(modbus.read_input_registers(100, 1)).reply(modbus.exception(2))
    peer.expect(modbus.write_single_register(7, 99)).reply(modbus.written())
    peer.expect(modbus.write_multiple_registers(8, [1, 2, 3])).reply(modbus.written())
    peer.expect(modbus.write_single_coil(1, True)).reply(modbus.written())
    peer.expect(modbus.write_multiple_coils(2, [True, False, True])).reply(modbus.written())
    with peer.serve(), client(peer) as sync:
        bits = sync.read_coils(5, count=10, device_id=3).bits
        assert bits[:10] == [True, False, True, True, False, False, False, False, True, True]
        failed = sync.read_input_registers(100, count=1)
        assert failed.isError()
        assert failed.exception_code == modbus.ILLEGAL_DATA_ADDRESS
        assert not sync.write_register(7, 99).isError()
        assert not sync.write_registers(8, [1, 2, 3]).isError()
        assert sync.write_coil(1, True).bits[0] is True
        assert sync.write_coils(2, [True, False, True]).count == 3
    transactions = [modbus.parse(m).transaction for m in peer.connections[0].received]
    assert transactions == sorted(set(transactions))  # each response echoed its own


@pytest.mark.asyncio
async def test_async_pymodbus_against_a_device() -> None:
    peer = FakePeer(framing=modbus.framing())
    holding = {0: 10, 1: 11, 2: 12}
    modbus.device(peer, holding_registers=holding, coils=[True, False], unit=1)
    async with peer.serve():
        async_client = AsyncModbusTcpClient(peer.host, port=peer.port, timeout=TIMEOUT, retries=0)
        assert await async_client.connect()
        assert (await async_client.read_holding_registers(1, count=2)).registers == [11, 12]
        assert not (await async_client.write_register(2, 42)).isError()
        assert (await async_client.read_holding_registers(2, count=1)).registers == [42]
        assert (await async_client.read_coils(0, count=2)).bits[:2] == [True, False]
        beyond = await async_client.read_holding_registers(2, count=2)
        assert beyond.exception_code == modbus.ILLEGAL_DATA_ADDRESS
        async_client.close()
    assert holding == {0: 10, 1: 11, 2: 42}  # the client's write, in the test's own dict


def test_a_read_of_the_wrong_address_fails_with_a_diagnosis() -> None:
    peer = FakePeer(framing=modbus.framing())
    peer.expect(modbus.read_holding_registers(0, 2)).reply(modbus.registers([1, 2]))

    def run() -> None:
        # the peer closes the connection on data it did not expect
        with peer.serve(), client(peer) as sync, pytest.raises(ConnectionException):
            sync.read_holding_registers(5, count=2)

    with pytest.raises(UnexpectedData) as caught:
        run()
    text = str(caught.value)
    assert "Modbus read_holding_registers (function 3) address 0 count 2" in text
    assert "request that has address 5, not 0" in text


def test_a_response_of_the_wrong_size_fails_the_reply() -> None:
    peer = FakePeer(framing=modbus.framing())
    peer.expect(modbus.read_holding_registers(0)).reply(modbus.registers([1, 2]))

    def run() -> None:
        with peer.serve(), client(peer) as sync, pytest.raises(ConnectionException):
            sync.read_holding_registers(0, count=3)

    with pytest.raises(ReplyFailed, match=r"registers\(\) has 2 values for a request of 3"):
        run()


def test_a_device_answers_a_read_out_of_bounds_with_an_exception() -> None:
    peer = FakePeer(framing=modbus.framing())
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    (rule, *refused) = modbus.device(peer, input_registers=list(range(200)))
    assert rule.where == f"test_protocol_modbus.py:{line}"  # the test's line, not the kit's
    assert rule.matcher is not None
    assert rule.matcher.describe() == "Modbus read_input_registers (function 4)"
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    too_many = frame(1, 1, b"\x04\x00\x00\x00\x7e")  # 126 registers
    assert rehearsal.send(client, too_many) == [frame(1, 1, b"\x84\x03")]
    none = frame(2, 1, b"\x04\x00\x00\x00\x00")
    assert rehearsal.send(client, none) == [frame(2, 1, b"\x84\x03")]
    beyond = frame(3, 1, b"\x04\x00\xc7\x00\x02")  # 199 and 200
    assert rehearsal.send(client, beyond) == [frame(3, 1, b"\x84\x02")]
    rehearsal.verify()
    assert len(refused) == 7  # functions 1, 2, 3, 5, 6, 15, 16: tables not given


def test_a_device_refuses_a_table_it_was_not_given_and_writes_into_a_list() -> None:
    peer = FakePeer(framing=modbus.framing())
    coils = [False] * 4
    modbus.device(peer, coils=coils, unit=1)
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    holding = frame(1, 1, b"\x03\x00\x00\x00\x01")  # no holding registers: function 3
    assert rehearsal.send(client, holding) == [frame(1, 1, b"\x83\x01")]  # ILLEGAL_FUNCTION
    write = frame(2, 1, b"\x05\x00\x02\xff\x00")  # coil 2 on
    assert rehearsal.send(client, write) == [write]
    assert coils == [False, False, True, False]  # the list itself, updated in place
    read = frame(3, 1, b"\x01\x00\x00\x00\x04")
    assert rehearsal.send(client, read) == [frame(3, 1, b"\x01\x01\x04")]
    beyond = frame(4, 1, b"\x01\x00\x03\x00\x02")  # coils 3 and 4: 4 is not there
    assert rehearsal.send(client, beyond) == [frame(4, 1, b"\x81\x02")]
    rehearsal.verify()
