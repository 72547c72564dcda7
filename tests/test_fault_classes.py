"""The fault classes: what each does to a batch of actions (tables, no sockets), and the
three spellings of the vocabulary (``faults.Latency``, ``faults.latency``,
``peer.faults.latency``) taking the same parameters."""

from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import TYPE_CHECKING, cast

import pytest

import fakepeer
from fakepeer import ActiveFault, FakePeer, Fault, ScriptError, faults
from fakepeer._actions import Close, Dropped, HalfClose, Later, Reset, Stop, Wait, Write
from fakepeer._datagramfaults import Copied, HeldBack
from fakepeer._faults import FaultState, fault_name, on_connect, shape


def classes() -> list[type[Fault]]:
    """The fault classes ``fakepeer.faults`` exports."""
    return [
        value
        for name, value in ((name, getattr(faults, name)) for name in faults.__all__)
        if isinstance(value, type) and issubclass(value, Fault) and value.__name__ == name
        if value is not Fault
    ]


def every_subclass(cls: type[Fault]) -> set[type[Fault]]:
    """The subclasses of ``cls`` its module defines (``dataclass(slots=True)`` leaves the
    class it replaced among them until it is collected)."""
    found: set[type[Fault]] = set()
    for sub in cls.__subclasses__():
        if getattr(sys.modules[sub.__module__], sub.__name__, None) is sub:
            found |= {sub} | every_subclass(sub)
    return found


# -- what each class does to a batch of writes ----------------------------------------------------

A, B = Write(b"abcde"), Write(b"fg")

SHAPES: list[tuple[Fault, list[object], list[object]]] = [
    (faults.Latency(0.2), [A, Close()], [Wait(0.2), A, Close()]),
    (faults.Latency(0.2), [Stop(), A], [Stop(), Wait(0.2), A]),  # before the first write
    (faults.Latency(0.2), [Wait(1.0)], [Wait(1.0)]),  # nothing sent: nothing to delay
    (faults.Latency(0.2, probability=0), [A], [A]),
    (
        faults.Bandwidth(20),  # 2 bytes every 0.1 s
        [A],
        [Write(b"ab"), Wait(0.1), Write(b"cd"), Wait(0.1), Write(b"e"), Wait(0.05)],
    ),
    (faults.Slice(2), [A, B], [Write(b"ab"), Write(b"cd"), Write(b"e"), B]),
    (faults.Slice(4, 0.01), [A, Close()], [Write(b"abcd"), Wait(0.01), Write(b"e"), Close()]),
    (faults.Slice(3), [Write(b"")], [Write(b"")]),
    (faults.Slice(1, direction="upstream"), [A], [A]),  # shapes the other way only
    (faults.Truncate(2), [A, B, Close()], [Write(b"ab"), B, Close()]),
    (
        faults.LimitData(6),
        [A, B, Write(b"h")],
        [A, Write(b"f"), Dropped(b"g", "limit_data"), Close(), Dropped(b"h", "limit_data")],
    ),
    (faults.LimitData(7), [A, B], [A, B]),
    (faults.Corrupt(0), [A], [A]),
    (faults.ResetPeer(), [Wait(1.0), A, B, Close()], [Wait(1.0), Reset()]),
    (faults.ResetPeer(0.5), [A], [A]),  # its timer resets the connection
    (
        faults.Timeout(None),  # a blackhole passes no close on either (nor a reset)
        [A, Close()],
        [Dropped(b"abcde", "timeout"), Dropped(b"", "timeout(None): the close held back")],
    ),
    (
        faults.Timeout(2),
        [HalfClose(), Reset()],
        [
            Dropped(b"", "timeout(2): the half-close held back"),
            Dropped(b"", "timeout(2): the reset held back"),
        ],
    ),
    (faults.AcceptDelay(0.5), [A, Close()], [A, Close()]),  # they act before serving
    (faults.ResetOnAccept(), [A], [A]),
    (faults.AcceptQueueFull(), [A], [A]),
    (faults.Timeout(1), [A], [Dropped(b"abcde", "timeout")]),
    (faults.SlowClose(0.3), [A, Close()], [A, Wait(0.3), Close()]),
    (faults.Refuse(), [A], [A]),
    (faults.HalfClose(), [A], [A]),  # its FIN goes as the connection opens (below)
    (faults.StopReading(), [A], [A]),
    # the TLS handshake faults act on the handshake, before anything is sent
    (faults.UntrustedCertificate(), [A], [A]),
    (faults.WrongHostname(), [A], [A]),
    (faults.ExpiredCertificate(), [A], [A]),
    (faults.HandshakeReset(), [A, Close()], [A, Close()]),
    (faults.HandshakeStall(probability=0.5), [A], [A]),
    (faults.ClientCertificateRefused(), [A], [A]),
    # the datagram faults (UDP): each write is one datagram, drawn on its own
    (faults.Drop(), [A, B], [Dropped(b"abcde", "drop"), Dropped(b"fg", "drop")]),
    (faults.Drop(0), [A], [A]),
    (faults.Duplicate(), [A], [A, Copied(b"abcde")]),
    (faults.Reorder(0.1), [A, Wait(1.0)], [Later(0.1, HeldBack(b"abcde")), Wait(1.0)]),
]


@pytest.mark.parametrize(("fault", "actions", "shaped"), SHAPES, ids=str)
def test_each_fault_shapes_a_batch(
    fault: Fault, actions: list[object], shaped: list[object]
) -> None:
    state = FaultState.seeded(1, 1)
    assert shape([fault], actions, state) == shaped
    assert state.sent == sum(len(a.data) for a in shaped if isinstance(a, Write))


def test_corrupt_changes_every_byte_it_picks() -> None:
    data = bytes(range(256))
    (written,) = shape([faults.Corrupt(1)], [Write(data)], FaultState.seeded(1, 1))
    assert isinstance(written, Write)
    assert len(written.data) == len(data)
    assert all(before != after for before, after in zip(data, written.data, strict=True))


OPENINGS: list[tuple[Fault, list[object]]] = [
    (faults.ResetPeer(), []),  # instead of the first write (above)
    (faults.ResetPeer(0.5), [Later(0.5, Reset())]),
    (faults.ResetPeer(0.5, probability=0), []),
    (faults.Timeout(2), [Later(2.0, Close())]),
    (faults.Timeout(None), []),
    (faults.HalfClose(), [HalfClose()]),
    (faults.StopReading(), [Stop()]),
    (faults.Latency(0.1), []),
    (faults.Refuse(), []),  # it acts on the server, not on a connection
]


@pytest.mark.parametrize(("fault", "actions"), OPENINGS, ids=str)
def test_what_each_fault_does_as_a_connection_opens(fault: Fault, actions: object) -> None:
    assert on_connect([fault], FaultState.seeded(1, 1)) == actions


def test_after_half_close_every_write_is_dropped() -> None:
    state = FaultState.seeded(1, 1)
    on_connect([faults.HalfClose()], state)
    assert shape([], [A, Close()], state) == [Dropped(b"abcde", "half_close"), Close()]


def test_every_fault_class_has_rows_in_the_tables() -> None:
    shaped = {type(fault) for fault, _, _ in SHAPES}
    opened = {type(fault) for fault, _ in OPENINGS if fault.connection_fault}
    assert shaped == set(classes())
    assert opened == {cls for cls in classes() if cls.connection_fault}


@pytest.mark.parametrize(
    ("fault", "per_rule"),
    [
        (faults.Latency(0.1), True),
        (faults.Corrupt(0.5), True),
        (faults.ResetPeer(), True),
        (faults.ResetPeer(0.5), False),
        (faults.Timeout(1), False),
        (faults.HalfClose(), False),
        (faults.StopReading(), False),
        (faults.Refuse(), False),
        (faults.ExpiredCertificate(), False),
        (faults.HandshakeReset(), False),
    ],
    ids=str,
)
def test_which_faults_a_rule_takes(fault: Fault, per_rule: bool) -> None:
    assert fault.per_rule is per_rule
    rule = FakePeer().always(b"X")
    if per_rule:
        assert rule.fault(fault) is rule
    else:
        with pytest.raises(ScriptError, match=r"acts on the connection or the server"):
            rule.fault(fault)


# -- values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "text"),
    [
        (faults.latency(0.2), "latency(0.2, 0)"),
        (faults.latency(1, jitter=0.5, probability=0.25), "latency(1, 0.5, probability=0.25)"),
        (faults.corrupt(0.3, direction="upstream"), "corrupt(0.3, direction='upstream')"),
        (faults.reset_peer(), "reset_peer(0)"),
        (faults.blackhole(), "timeout(None)"),
        (faults.limit_data(10, direction="both"), "limit_data(10, direction='both')"),
        (faults.refuse(), "refuse()"),
    ],
)
def test_a_fault_shows_how_it_was_made(fault: Fault, text: str) -> None:
    assert fault.describe() == str(fault) == text


def test_faults_are_frozen_values() -> None:
    fault = faults.Slice(3, 0.01)
    assert fault == faults.slice(3, delay=0.01)
    assert hash(fault) == hash(faults.Slice(3, 0.01))
    assert faults.blackhole() == faults.Timeout(None)
    assert cast(object, faults.Truncate(3)) != faults.LimitData(3)
    assert fault.size == 3
    assert fault.delay == 0.01
    assert isinstance(faults.Latency(1).seconds, float)  # numbers are kept as floats
    with pytest.raises(dataclasses.FrozenInstanceError):
        fault.size = 4  # type: ignore[misc]
    with pytest.raises(ScriptError, match=r"^Fault is the base of the faults"):
        Fault()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: faults.Bandwidth(0), "bandwidth() takes a whole number >= 1, got 0"),
        (lambda: faults.Slice(2, -1), "slice(delay=) takes a number >= 0, got -1"),
        (lambda: faults.LimitData(True), "limit_data() takes a whole number >= 0, got True"),
        (
            lambda: faults.Truncate(1.5),  # type: ignore[arg-type]
            "truncate() takes a whole number >= 0, got 1.5",
        ),
        (
            lambda: faults.ResetPeer("1"),  # type: ignore[arg-type]
            "reset_peer() takes a finite number, got '1'",
        ),
        (lambda: faults.SlowClose(float("inf")), "slow_close() takes a finite number, got inf"),
        (
            lambda: faults.Latency(0.1, probability=-0.5),
            "probability takes a number >= 0, got -0.5",
        ),
        (
            lambda: faults.Latency(-1, probability=5),  # the parameters are checked first
            "latency() takes a number >= 0, got -1",
        ),
        (
            lambda: faults.Corrupt(0.1, direction="up"),
            "direction takes 'downstream', 'upstream' or 'both', got 'up'",
        ),
    ],
)
def test_bad_parameters_are_script_errors(make: object, message: str) -> None:
    with pytest.raises(ScriptError) as info:
        make()  # type: ignore[operator]
    assert str(info.value) == message


# -- three spellings, one vocabulary --------------------------------------------------------------


def test_every_fault_class_is_exported() -> None:
    assert set(classes()) == every_subclass(Fault)
    assert fakepeer.Fault is faults.Fault


@pytest.mark.parametrize("cls", classes(), ids=lambda cls: cls.__name__)
def test_each_fault_has_three_spellings_with_one_signature(cls: type[Fault]) -> None:
    name = fault_name(cls)
    assert getattr(faults, name) is cls  # faults.latency is faults.Latency
    peer = FakePeer()
    method = getattr(peer.faults, name)
    assert inspect.signature(method).parameters == inspect.signature(cls).parameters
    assert inspect.signature(method).return_annotation == "ActiveFault"
    assert (inspect.getdoc(cls) or "").split("\n\n")[0] in (inspect.getdoc(method) or "")
    assert method.__qualname__ == f"Faults.{name}"


DOWNSTREAM = [fault for fault, _, _ in SHAPES if fault.direction == "downstream"]


@pytest.mark.parametrize("fault", DOWNSTREAM, ids=str)  # a FakePeer has no upstream bytes
def test_the_three_spellings_make_the_same_fault(fault: Fault) -> None:
    arguments = {item.name: getattr(fault, item.name) for item in dataclasses.fields(fault)}
    name = fault_name(type(fault))
    assert type(fault)(**arguments) == fault
    assert getattr(faults, name)(**arguments) == fault
    tls = getattr(fault, "tls_handshake", False)  # on a TLS peer only
    udp = isinstance(fault, faults.Drop | faults.Duplicate | faults.Reorder)  # on UDP only
    if tls:
        peer = FakePeer(tls=True, tls_client_cert=True)
    else:
        peer = FakePeer(transport="udp" if udp else "tcp")
    active = getattr(peer.faults, name)(**arguments)
    assert isinstance(active, ActiveFault)
    assert active.fault == fault


def test_blackhole_is_a_function_with_its_method() -> None:
    peer = FakePeer()
    assert inspect.signature(peer.faults.blackhole).parameters == {}
    assert peer.faults.blackhole().fault == faults.Timeout(None)
    assert list(peer.faults) == [faults.Timeout(None)]


def test_the_methods_are_typed_as_the_classes() -> None:
    peer = FakePeer()
    active: ActiveFault = peer.faults.latency(0.1, jitter=0.05, probability=0.5)
    assert active.fault == faults.Latency(0.1, 0.05, probability=0.5)
    if TYPE_CHECKING:  # mypy --strict checks these calls: each ignore must be needed
        peer.faults.latency("slow")  # type: ignore[arg-type]
        peer.faults.limit_data(3, probability=0.5)  # type: ignore[call-arg]
        peer.faults.slice(3, 0.1, 1.0)  # type: ignore[call-arg]
        faults.latency(0.1, 0.2, 0.3)  # type: ignore[call-arg]


def test_a_wrong_call_names_the_method_the_test_called() -> None:
    peer = FakePeer()
    with pytest.raises(TypeError, match=r"^Faults\.half_close\(\) takes 1 positional argument"):
        peer.faults.half_close(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^Faults\.reset_peer\(\) got an unexpected keyword"):
        peer.faults.reset_peer(nope=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^Faults\.latency\(\) missing 1 required positional"):
        peer.faults.latency()  # type: ignore[call-arg]
