"""``peer.faults``: the faults in force on a peer, switched on and off mid-test.

:class:`Faults` holds no fault logic: its methods are made from the fault classes of
``_faults`` (``latency = _applying(Latency)``), so ``peer.faults.latency(0.2)`` takes the
parameters of :class:`~fakepeer.faults.Latency`, checked by mypy and shown in the docs, and is
``peer.faults.add(Latency(0.2))``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Concatenate, ParamSpec

from . import _tlsfaults
from ._acceptfaults import AcceptDelay, AcceptQueueFull, ResetOnAccept
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
from ._faultschedule import Schedule, in_force
from ._runtime import clock

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["ActiveFault", "Faults"]

P = ParamSpec("P")


class ActiveFault:
    """A fault applied to a peer: :meth:`remove` it, or use it as a context manager to
    apply it for a block only (``with peer.faults.latency(0.2): ...``).

    Each ``add()`` makes its own: removing one (by hand, at the end of its ``with`` block,
    by ``clear()`` or by its ``lasting`` timer) never removes the same fault value added
    again by another ``add()``."""

    def __init__(self, faults: Faults, fault: Fault) -> None:
        self._faults = faults
        self.fault = fault
        self._timers: list[asyncio.TimerHandle] = []  # its schedule's, on the serving loop
        self._gone = False  # removed: its timers do nothing
        self._counted = False  # added with first=: the conversation may switch it off

    def remove(self) -> None:
        """Stop applying the fault (to new writes on every connection). Idempotent."""
        self._faults._remove(self)

    def __enter__(self) -> ActiveFault:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<ActiveFault {self.fault}>"


def _not_a_fault(faults: Faults, got: object) -> str:
    """Why ``peer.faults.add(got)`` takes no ``got``; an :class:`ActiveFault` of ``faults``
    (``add(peer.faults.reset_peer())``: that call applied the fault) is removed first."""
    text = f"peer.faults.add() takes a fault, got {got!r}"
    if not isinstance(got, ActiveFault):
        return text
    name, built = str(got.fault).partition("(")[0], f"fakepeer.faults.{got.fault}"
    if got._faults is faults:
        got.remove()  # the test meant to apply it on a schedule, not for good
        done = "applied it at once, for good (it is removed now)"
    else:
        done = "applied it at once to another peer (call .remove() on what it returned)"
    return (
        f"{text}: the call peer.faults.{name}(...) {done}; pass {built}, which only builds "
        f"the fault: peer.faults.add({built}, first=...)"
    )


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
        self._pending: list[ActiveFault] = []  # added with after=, not on yet
        self._on: list[ActiveFault] = []  # on (a counted one may have been spent since)
        self._unarmed: list[tuple[float, ActiveFault, Callable[[], None]]] = []  # on clock()

    def add(
        self,
        fault: Fault,
        *,
        after: float = 0.0,
        lasting: float | None = None,
        first: int | None = None,
        per: str | None = None,
    ) -> ActiveFault:
        """Apply ``fault`` (made by a class of :mod:`fakepeer.faults`, or its lowercase
        alias), now or on a schedule that switches it on and off by itself:

        - ``after``: seconds (>= 0) from now before it is on (default: at once);
        - ``lasting``: seconds (> 0) it stays on, then it is off (default: until removed);
        - ``first``: a whole number >= 1: it applies to the first ``first`` connections that
          open (or are accepted, for a connect-phase fault) while it is on, each for its
          whole life, then is off for the connections to come; with ``per="request"``, to
          the first ``first`` replies (batches of writes) sent while it is on, on any
          connection. ``per`` is ``"connection"`` (the default) or ``"request"``.

        Times count from this call, even before the peer serves; whichever of ``lasting``
        and ``first`` ends first switches it off. The transcript shows it go on and off
        (``fault + ...``, ``fault - ... (after 2 s)``).

        :class:`~fakepeer.ScriptError`, naming the keyword, for a bad schedule, ``first``
        on a fault that counts no connections (``refuse()``, ``accept_queue_full()``, the
        TLS handshake faults), ``per="request"`` on a fault on whole connections; also if
        ``fault`` is not a fault, or shapes upstream bytes on a peer that has none (only a
        Proxy has)."""
        if not isinstance(fault, Fault):
            raise ScriptError(_not_a_fault(self, fault))
        peer = self._peer
        if fault.direction != "downstream" and not peer._relays:
            raise ScriptError(
                f"{fault}: a FakePeer has no upstream (client to server) bytes to shape, "
                "only what it sends: an upstream fault needs a Proxy in front of a server"
            )
        _check_tls(peer, fault)
        peer._check_fault(fault)
        schedule = Schedule.checked(fault, after=after, lasting=lasting, first=first, per=per)
        active = ActiveFault(self, fault)
        active._counted = schedule.counted
        if schedule.after:
            with peer._lock:
                self._pending.append(active)
                on = f"on in {schedule.after:g} s{schedule.describe()}"
                peer._conversation.note_peer(clock(), "fault", f"{fault}: {on}")
            self._later(active, schedule.after, lambda: self._start(active, schedule))
        else:
            self._switch_on(active, schedule)
        if schedule.lasting is not None:
            why = f"(after {schedule.lasting:g} s)"
            self._later(
                active, schedule.after + schedule.lasting, lambda: self._remove(active, why)
            )
        return active

    def _switch_on(self, active: ActiveFault, schedule: Schedule) -> None:
        peer, fault = self._peer, active.fault
        shown = schedule if schedule.counted or schedule.lasting is not None else None
        with peer._lock:
            peer._conversation.add_fault(fault, clock(), shown)
            if schedule.counted:  # (its count is this add()'s: see _remove)
                peer._conversation.counters[id(fault)].token = active
            self._on.append(active)
        if isinstance(fault, Refuse):
            peer._refuse(True)
        elif isinstance(fault, AcceptQueueFull):
            peer._queue_full(True)

    def _start(self, active: ActiveFault, schedule: Schedule) -> None:
        """A timer: ``active``, added with ``after``, is on (unless removed before)."""
        with self._peer._lock:  # (one step: a remove() now finds it pending, or on)
            if _take(self._pending, active):
                self._switch_on(active, schedule)

    def _remove(self, active: ActiveFault, why: str = "") -> None:
        """``active`` is off, if it still was on: its timers are cancelled, and a stale
        one (removed before) is nothing to do, the same fault added again left on."""
        peer, fault = self._peer, active.fault
        with peer._lock:
            conversation = peer._conversation
            if _take(self._pending, active):  # removed before it was on
                self._retire(active)
                note = f"{fault}: removed before it was on"
                conversation.note_peer(clock(), "fault", note)
                return
            if not _take(self._on, active):  # removed already
                return
            self._retire(active)
            counter = conversation.counters.get(id(fault))
            if active._counted and (counter is None or counter.token is not active):
                return  # it reached its count: off already
            if not conversation.remove_fault(fault, clock(), why):
                return
            still = {type(on) for on in conversation.faults}
        if isinstance(fault, Refuse) and Refuse not in still:
            peer._refuse(False)
        elif isinstance(fault, AcceptQueueFull) and AcceptQueueFull not in still:
            peer._queue_full(False)

    def _retire(self, active: ActiveFault) -> None:
        """With the lock held: ``active`` is removed; cancel its timers, armed or not."""
        active._gone = True
        self._unarmed = [entry for entry in self._unarmed if entry[1] is not active]
        timers, active._timers = active._timers, []
        loop = self._peer._loop
        if loop is not None and timers:
            with contextlib.suppress(RuntimeError):  # the loop closed: they are gone
                loop.call_soon_threadsafe(_cancel, timers)

    # -- the timers of a schedule, on the serving loop -------------------------------------------

    def _later(self, active: ActiveFault, delay: float, what: Callable[[], None]) -> None:
        """Do ``what`` on the serving loop ``delay`` seconds from now (armed when the peer
        serves), a timer of ``active``'s; nothing once it is removed or the peer stopped."""
        when = clock() + delay
        with self._peer._lock:
            if active._gone:
                return
            if self._peer._state != "serving":
                self._unarmed.append((when, active, what))
                return
        self._arm_one(when, active, what)

    def _arm(self) -> None:
        """The peer serves: arm the timers asked for before."""
        with self._peer._lock:
            unarmed, self._unarmed = self._unarmed, []
        for when, active, what in unarmed:
            self._arm_one(when, active, what)

    def _arm_one(self, when: float, active: ActiveFault, what: Callable[[], None]) -> None:
        peer = self._peer
        loop = peer._loop
        if loop is None:  # pragma: no cover - serving means a loop
            return

        def fire() -> None:
            if peer._state == "serving":
                what()

        def arm() -> None:
            with peer._lock:  # (a stop or a remove() came first: no timer to leave behind)
                if peer._state != "serving" or active._gone:
                    return
                active._timers.append(loop.call_later(max(0.0, when - clock()), fire))

        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            arm()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing serves
                loop.call_soon_threadsafe(arm)

    def _disarm(self) -> None:
        """The peer stopped: cancel the timers (each also does nothing from now on)."""
        loop = self._peer._loop
        self._unarmed.clear()  # (no lock: a script's code blocking the hub holds it)
        timers: list[asyncio.TimerHandle] = []
        for active in [*self._pending, *self._on]:
            while active._timers:
                timers.append(active._timers.pop())
        if loop is not None and timers:
            with contextlib.suppress(RuntimeError):  # the loop closed: they are gone
                loop.call_soon_threadsafe(_cancel, timers)

    def clear(self) -> None:
        """Remove every fault, those added with ``after`` and not on yet too."""
        with self._peer._lock:
            actives = [*self._pending, *self._on]
        for active in actives:
            self._remove(active)

    def __iter__(self) -> Iterator[Fault]:
        with self._peer._lock:
            return iter(in_force(self._peer._conversation))

    def __len__(self) -> int:
        with self._peer._lock:
            return len(in_force(self._peer._conversation))

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
    accept_delay = _applying(AcceptDelay)
    reset_on_accept = _applying(ResetOnAccept)
    accept_queue_full = _applying(AcceptQueueFull)


def _cancel(timers: list[asyncio.TimerHandle]) -> None:
    for timer in timers:
        timer.cancel()


def _take(actives: list[ActiveFault], active: ActiveFault) -> bool:
    """Take ``active`` (this very one) out of ``actives``; False if it was not there."""
    for index, listed in enumerate(actives):
        if listed is active:
            del actives[index]
            return True
    return False


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
