"""``peer.faults``: the faults in force on a peer, switched on and off mid-test.

:class:`Faults` holds no fault logic: its methods are made from the fault classes of
``_faults`` (``latency = _applying(Latency)``), so ``peer.faults.latency(0.2)`` takes the
parameters of :class:`~fakepeer.faults.Latency`, checked by mypy and shown in the docs, and is
``peer.faults.add(Latency(0.2))``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Concatenate, ParamSpec

from . import _tlsfaults
from ._datagramfaults import Drop, Duplicate, Reorder
from ._errors import ScriptError
from ._faultclasses import (
    Bandwidth,
    ClientCertificateRefused,
    Corrupt,
    ExpiredCertificate,
    HalfClose,
    HandshakeReset,
    HandshakeStall,
    Latency,
    LimitData,
    Refuse,
    ResetPeer,
    Slice,
    SlowClose,
    StopReading,
    Timeout,
    Truncate,
    UntrustedCertificate,
    WrongHostname,
    blackhole,
)
from ._faults import Fault, fault_name
from ._runtime import clock

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["ActiveFault", "Faults"]

P = ParamSpec("P")


class ActiveFault:
    """A fault applied to a peer: :meth:`remove` it, or use it as a context manager to
    apply it for a block only (``with peer.faults.latency(0.2): ...``)."""

    def __init__(self, faults: Faults, fault: Fault) -> None:
        self._faults = faults
        self.fault = fault

    def remove(self) -> None:
        """Stop applying the fault (to new writes on every connection). Idempotent."""
        self._faults._remove(self.fault)

    def __enter__(self) -> ActiveFault:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<ActiveFault {self.fault}>"


def _applying(make: Callable[P, Fault]) -> Callable[Concatenate[Faults, P], ActiveFault]:
    """A method of :class:`Faults` that applies the fault ``make`` makes (a fault class, or
    a function such as ``blackhole``), with ``make``'s parameters and first sentence."""

    name = fault_name(make) if isinstance(make, type) else make.__name__
    spelled = f"{getattr(make, '__name__', name)}.__init__()" if isinstance(make, type) else ""

    def apply(self: Faults, /, *args: P.args, **kwargs: P.kwargs) -> ActiveFault:
        try:
            fault = make(*args, **kwargs)
        except TypeError as error:  # wrong arguments: say them as the caller wrote them
            text = str(error)
            if spelled and text.startswith(spelled):
                raise TypeError(f"Faults.{name}(){text[len(spelled) :]}") from None
            raise
        return self.add(fault)

    signature = inspect.signature(make)
    receiver = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    apply.__name__, apply.__qualname__ = name, f"Faults.{name}"
    apply.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[receiver, *signature.parameters.values()], return_annotation="ActiveFault"
    )
    summary = (inspect.getdoc(make) or "").split("\n\n")[0]
    arguments = "..." if signature.parameters else ""
    apply.__doc__ = f"{summary}\n\nThe same as ``add(faults.{make.__name__}({arguments}))``."
    return apply


class Faults:
    """``peer.faults``: network faults on what the peer sends, switchable mid-test.

    Each method applies its fault at once and returns an :class:`ActiveFault`; ``with``
    limits it to a block. A fault applied before a client connects applies to it from its
    first byte. Faults on what is sent (latency, slicing, corruption, ``limit_data``...)
    also apply to connections already open; connection faults (``reset_peer`` after a
    delay, ``half_close``, ``stop_reading``, the close of ``timeout``) act as a connection
    opens, so only on new ones. Faults shape what the script sends; a handler's or the
    test's ``connection.send()`` and ``broadcast()`` are not shaped. Randomness (jitter,
    probabilities, corruption) comes from ``peer.seed``, so a run can be replayed exactly.
    """

    def __init__(self, peer: Host) -> None:
        self._peer = peer

    def add(self, fault: Fault) -> ActiveFault:
        """Apply ``fault`` (made by a class of :mod:`fakepeer.faults`, or its lowercase
        alias); :class:`~fakepeer.ScriptError` if it is not a fault, or shapes upstream bytes
        on a peer that has none (only a Proxy has)."""
        if not isinstance(fault, Fault):
            raise ScriptError(f"peer.faults.add() takes a fault, got {fault!r}")
        peer = self._peer
        if fault.direction != "downstream" and not peer._relays:
            raise ScriptError(
                f"{fault}: a FakePeer has no upstream (client to server) bytes to shape, "
                "only what it sends: an upstream fault needs a Proxy in front of a server"
            )
        _check_tls(peer, fault)
        peer._check_fault(fault)
        with peer._lock:
            peer._conversation.add_fault(fault, clock())
        if isinstance(fault, Refuse):
            peer._refuse(True)
        return ActiveFault(self, fault)

    def _remove(self, fault: Fault) -> None:
        peer = self._peer
        with peer._lock:
            conversation = peer._conversation
            if not conversation.remove_fault(fault, clock()):
                return
            refusing = any(isinstance(active, Refuse) for active in conversation.faults)
        if isinstance(fault, Refuse) and not refusing:
            peer._refuse(False)

    def clear(self) -> None:
        """Remove every fault."""
        for fault in list(self):
            self._remove(fault)

    def __iter__(self) -> Iterator[Fault]:
        with self._peer._lock:
            return iter(list(self._peer._conversation.faults))

    def __len__(self) -> int:
        return len(self._peer._conversation.faults)

    latency = _applying(Latency)
    bandwidth = _applying(Bandwidth)
    slice = _applying(Slice)
    limit_data = _applying(LimitData)
    truncate = _applying(Truncate)
    corrupt = _applying(Corrupt)
    reset_peer = _applying(ResetPeer)
    timeout = _applying(Timeout)
    blackhole = _applying(blackhole)
    slow_close = _applying(SlowClose)
    half_close = _applying(HalfClose)
    refuse = _applying(Refuse)
    stop_reading = _applying(StopReading)
    untrusted_certificate = _applying(UntrustedCertificate)
    wrong_hostname = _applying(WrongHostname)
    expired_certificate = _applying(ExpiredCertificate)
    handshake_reset = _applying(HandshakeReset)
    handshake_stall = _applying(HandshakeStall)
    client_certificate_refused = _applying(ClientCertificateRefused)
    drop = _applying(Drop)
    duplicate = _applying(Duplicate)
    reorder = _applying(Reorder)


def _check_tls(peer: Host, fault: Fault) -> None:
    """A TLS handshake fault needs a peer serving TLS (and mutual TLS, for some)."""
    if not getattr(fault, "tls_handshake", False):
        return
    tls = peer._tls
    if tls is None:
        raise ScriptError(
            f"peer.faults: {fault} is a TLS handshake fault, and this {type(peer).__name__} "
            f"serves plain TCP: {type(peer).__name__}(tls=True) serves TLS"
        )
    if getattr(fault, "needs_client_cert", False) and tls.client_cert is None:
        if peer._relays:  # a Proxy
            raise ScriptError(
                f"peer.faults: {fault} refuses the client's certificate, and a Proxy asks "
                "its clients for none (no mutual TLS): FakePeer(tls=True, "
                "tls_client_cert=True) does"
            )
        raise ScriptError(
            f"peer.faults: {fault} refuses the client's certificate, and this peer asks for "
            "none: FakePeer(tls=True, tls_client_cert=True) asks for one (mutual TLS)"
        )
    _tlsfaults.context(tls, fault)  # its certificates, made now rather than on the loop
