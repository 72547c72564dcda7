"""The network fault vocabulary: one frozen class per fault, each knowing what it does.

A stream fault reshapes each batch of writes it applies to (``_shape``); a connection
fault acts as a connection opens (``_on_connect``). See :mod:`fakepeer._faults` for the
contract and how they are applied; ``fakepeer.faults`` is the public face of this module.

Faults act on what the peer sends (downstream), except :class:`StopReading` (the peer stops
reading what the client sends), and :class:`ResetPeer`, :class:`Timeout` and
:class:`HalfClose`, which act on the connection, and :class:`Refuse`, on the server. The
TLS handshake faults (:class:`UntrustedCertificate`...) act on a TLS peer's handshakes, in
the runtime (``_tlsfaults``): here they are values that shape nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import ClassVar, Final

from . import _actions
from ._actions import Close, Dropped, Later, Reset, Stop, Wait, Write
from ._faults import (
    Fault,
    FaultState,
    checked_count,
    checked_number,
    checked_probability,
    drawn,
)

__all__ = [
    "Bandwidth",
    "ClientCertificateRefused",
    "Corrupt",
    "ExpiredCertificate",
    "HalfClose",
    "HandshakeReset",
    "HandshakeStall",
    "Latency",
    "LimitData",
    "Refuse",
    "ResetPeer",
    "Slice",
    "SlowClose",
    "StopReading",
    "Timeout",
    "Truncate",
    "UntrustedCertificate",
    "WrongHostname",
    "blackhole",
]


def _writes(actions: list[object], reshape: Callable[[bytes], list[object]]) -> list[object]:
    """``actions`` with each ``Write`` replaced by what ``reshape(data)`` returns."""
    out: list[object] = []
    for action in actions:
        out.extend(reshape(action.data) if isinstance(action, Write) else [action])
    return out


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)] or [data]


@dataclass(frozen=True, slots=True)
class Latency(Fault):
    """Delay each batch of writes by ``seconds`` (a number >= 0), plus or minus up to
    ``jitter`` seconds (drawn for each batch), never below 0. ``probability`` (0 to 1) is the
    chance that it delays each batch; ``direction``: see
    :attr:`Fault.direction <fakepeer.Fault.direction>`."""

    seconds: float
    jitter: float = 0.0
    _: KW_ONLY
    probability: float = 1.0
    direction: str = "downstream"

    def _checked(self) -> dict[str, object]:
        return {
            "seconds": checked_number(self.seconds, "latency()"),
            "jitter": checked_number(self.jitter, "latency(jitter=)"),
        }

    def _chance(self) -> float:
        return self.probability

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        jitter = self.jitter
        delay = max(0.0, self.seconds + (state.rng.uniform(-jitter, jitter) if jitter else 0.0))
        first = next(
            (i for i, action in enumerate(actions) if isinstance(action, Write | Close)), 0
        )
        return [*actions[:first], Wait(delay), *actions[first:]]


@dataclass(frozen=True, slots=True)
class Bandwidth(Fault):
    """Send at most ``bytes_per_second`` (a whole number >= 1), in tenth-of-a-second chunks:
    a tenth of the rate every 0.1 s. ``probability``: the chance that it slows each batch of
    writes."""

    bytes_per_second: int
    _: KW_ONLY
    probability: float = 1.0
    direction: str = "downstream"

    def _checked(self) -> dict[str, object]:
        return {"bytes_per_second": checked_count(self.bytes_per_second, "bandwidth()", minimum=1)}

    def _chance(self) -> float:
        return self.probability

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        rate = self.bytes_per_second

        def trickle(data: bytes) -> list[object]:
            out: list[object] = []
            for chunk in _chunks(data, max(1, rate // 10)):
                out.extend([Write(chunk), Wait(len(chunk) / rate)])
            return out

        return _writes(actions, trickle)


@dataclass(frozen=True, slots=True)
class Slice(Fault):
    """Split each write into chunks of ``size`` bytes (a whole number >= 1), ``delay``
    seconds apart: the client's framing must put messages back together. ``probability``:
    the chance that it splits each batch of writes."""

    size: int
    delay: float = 0.0
    _: KW_ONLY
    probability: float = 1.0
    direction: str = "downstream"

    def _checked(self) -> dict[str, object]:
        return {
            "size": checked_count(self.size, "slice()", minimum=1),
            "delay": checked_number(self.delay, "slice(delay=)"),
        }

    def _chance(self) -> float:
        return self.probability

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        def split(data: bytes) -> list[object]:
            out: list[object] = []
            for number, chunk in enumerate(_chunks(data, self.size)):
                if number and self.delay:
                    out.append(Wait(self.delay))
                out.append(Write(chunk))
            return out

        return _writes(actions, split)


@dataclass(frozen=True, slots=True)
class LimitData(Fault):
    """Close the connection once ``n`` bytes (a whole number >= 0) were sent on it, counting
    what was sent before the fault, and cutting the write that crosses the limit; what the
    script sends afterwards is dropped."""

    n: int
    _: KW_ONLY
    direction: str = "downstream"

    def _checked(self) -> dict[str, object]:
        return {"n": checked_count(self.n, "limit_data()", minimum=0)}

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        out: list[object] = []
        for action in actions:
            if not isinstance(action, Write):
                out.append(action)
                continue
            data = action.data
            if state.limited:
                out.append(Dropped(data, "limit_data"))
                continue
            written = state.sent + sum(len(a.data) for a in out if isinstance(a, Write))
            room = max(0, self.n - written)
            if len(data) <= room:
                out.append(action)
                continue
            if room:
                out.append(Write(data[:room]))
            out.extend([Dropped(data[room:], "limit_data"), Close()])
            state.limited = True
        return out


@dataclass(frozen=True, slots=True)
class Truncate(Fault):
    """Cut each write to its first ``n`` bytes (a whole number >= 0); the connection stays
    open. ``probability``: the chance that it cuts each batch of writes."""

    n: int
    _: KW_ONLY
    probability: float = 1.0
    direction: str = "downstream"

    def _checked(self) -> dict[str, object]:
        return {"n": checked_count(self.n, "truncate()", minimum=0)}

    def _chance(self) -> float:
        return self.probability

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        return _writes(actions, lambda data: [Write(data[: self.n])])


@dataclass(frozen=True, slots=True)
class Corrupt(Fault):
    """Flip each byte sent with ``probability`` (0 to 1), to a different random value."""

    probability: float
    _: KW_ONLY
    direction: str = "downstream"

    def _checked(self) -> dict[str, object]:
        return {"probability": checked_probability(self.probability)}

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        probability, rng = self.probability, state.rng
        return _writes(
            actions,
            lambda data: [
                Write(
                    bytes(
                        byte ^ rng.randrange(1, 256) if rng.random() < probability else byte
                        for byte in data
                    )
                )
            ],
        )


@dataclass(frozen=True, slots=True)
class ResetPeer(Fault):
    """Reset each connection with a TCP RST ``after`` seconds (a number >= 0; 0: instead of
    its first write, so the client never gets an answer). ``probability``: the chance that it
    resets each connection."""

    connection_fault: ClassVar[bool] = True

    after: float = 0.0
    _: KW_ONLY
    probability: float = 1.0

    def _checked(self) -> dict[str, object]:
        return {"after": checked_number(self.after, "reset_peer()")}

    @property
    def per_rule(self) -> bool:
        return not self.after  # a reset after a delay is the connection's timer

    def _chance(self) -> float:
        return self.probability

    def _applies(self, actions: Sequence[object], state: FaultState) -> bool:
        return not self.after and drawn(self, state)

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        out: list[object] = []
        for action in actions:
            if isinstance(action, Write):
                out.append(Reset())
                break  # nothing happens on a reset connection
            out.append(action)
        return out

    def _on_connect(self, state: FaultState) -> list[object]:
        return [Later(self.after, Reset())] if self.after else []


@dataclass(frozen=True, slots=True)
class Timeout(Fault):
    """Stop sending anything (what the script sends is dropped, and so is its close,
    half-close or reset: a silent network passes nothing on); close the connection
    ``seconds`` (a number >= 0) after it opens; ``None``: never."""

    connection_fault: ClassVar[bool] = True

    seconds: float | None

    def _checked(self) -> dict[str, object]:
        return {
            "seconds": None if self.seconds is None else checked_number(self.seconds, "timeout()")
        }

    @property
    def per_rule(self) -> bool:
        return False

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        out: list[object] = []
        for action in actions:
            if isinstance(action, Write):
                out.append(Dropped(action.data, "timeout"))
            elif isinstance(action, Close | _actions.HalfClose | Reset):
                what = _HELD[type(action).__name__]
                out.append(Dropped(b"", f"{self.describe()}: the {what} held back"))
            else:
                out.append(action)
        return out

    def _on_connect(self, state: FaultState) -> list[object]:
        return [] if self.seconds is None else [Later(self.seconds, Close())]


#: What the script's closes are called when a silent network holds them back.
_HELD: Final = {"Close": "close", "HalfClose": "half-close", "Reset": "reset"}


def blackhole() -> Timeout:
    """Accept connections and never answer, nor close (the script's close is held back):
    ``timeout(None)``."""
    return Timeout(None)


@dataclass(frozen=True, slots=True)
class SlowClose(Fault):
    """Wait ``seconds`` (a number >= 0) before each close of the script."""

    seconds: float

    def _checked(self) -> dict[str, object]:
        return {"seconds": checked_number(self.seconds, "slow_close()")}

    def _shape(self, actions: list[object], state: FaultState) -> list[object]:
        out: list[object] = []
        for action in actions:
            out.extend([Wait(self.seconds), action] if isinstance(action, Close) else [action])
        return out


@dataclass(frozen=True, slots=True)
class Refuse(Fault):
    """Stop listening: new connections are refused (``ConnectionRefusedError``); open ones
    go on. Removing the fault listens again on the same port."""

    server_fault: ClassVar[bool] = True

    @property
    def per_rule(self) -> bool:
        return False

    def _applies(self, actions: Sequence[object], state: FaultState) -> bool:
        return False  # it acts on the server: the peer stops and resumes listening


@dataclass(frozen=True, slots=True)
class HalfClose(Fault):
    """Send FIN as each connection opens, right after its greeting (the client reads EOF),
    but keep reading; what the script sends afterwards is dropped."""

    connection_fault: ClassVar[bool] = True

    def _applies(self, actions: Sequence[object], state: FaultState) -> bool:
        return False  # once it sent FIN, shape() drops every write

    def _on_connect(self, state: FaultState) -> list[object]:
        state.half_closed = True
        return [_actions.HalfClose()]


@dataclass(frozen=True, slots=True)
class StopReading(Fault):
    """Stop reading what the client sends on each connection: once the buffers fill, its
    writes block."""

    connection_fault: ClassVar[bool] = True

    def _applies(self, actions: Sequence[object], state: FaultState) -> bool:
        return False  # it acts on what the client sends

    def _on_connect(self, state: FaultState) -> list[object]:
        return [Stop()]


# -- the TLS handshake faults (a TLS peer only) ---------------------------------------------------


class InTheHandshake:
    """What the TLS handshake faults share: they act on a TLS peer's handshakes (each drawn
    with ``probability`` once per connection), never on what is sent, nor on one rule."""

    __slots__ = ()
    #: The fault acts on TLS handshakes: ``peer.faults`` takes it on a TLS peer only.
    tls_handshake: ClassVar[bool] = True
    #: It needs mutual TLS (``tls_client_cert=True``).
    needs_client_cert: ClassVar[bool] = False
    probability: float

    @property
    def per_rule(self) -> bool:
        return False

    def _chance(self) -> float:
        return self.probability

    def _applies(self, actions: Sequence[object], state: FaultState) -> bool:
        return False  # it acts on the handshake, before the connection exists


@dataclass(frozen=True, slots=True)
class UntrustedCertificate(InTheHandshake, Fault):
    """Serve a certificate signed by another CA, one the client does not trust: its
    handshake fails (``ssl.SSLCertVerificationError``, "unable to get local issuer
    certificate"). ``probability``: the chance for each connection. A TLS peer only."""

    _: KW_ONLY
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class WrongHostname(InTheHandshake, Fault):
    """Serve a certificate of the test's CA issued for another name
    (``wrong-host.invalid``): the client's host name check fails
    (``ssl.SSLCertVerificationError``, "Hostname mismatch"). A TLS peer only."""

    _: KW_ONLY
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class ExpiredCertificate(InTheHandshake, Fault):
    """Serve a certificate of the test's CA that expired yesterday: the client's handshake
    fails (``ssl.SSLCertVerificationError``, "certificate has expired"). A TLS peer only."""

    _: KW_ONLY
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class HandshakeReset(InTheHandshake, Fault):
    """Reset the connection (a TCP RST) as the client's ClientHello arrives: its handshake
    fails with ``ConnectionResetError``. A TLS peer only."""

    _: KW_ONLY
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class HandshakeStall(InTheHandshake, Fault):
    """Read the client's ClientHello and never answer: the client's own timeout ends its
    handshake. The peer keeps the connection until the client closes it or the peer stops.
    A TLS peer only."""

    _: KW_ONLY
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class ClientCertificateRefused(InTheHandshake, Fault):
    """Refuse the client's certificate (the peer trusts another CA): the handshake fails
    with the alert a real server sends, "unknown ca" (with TLS 1.3, the client reads it
    as an ``ssl.SSLError`` on its first read). Mutual TLS only
    (``FakePeer(tls=True, tls_client_cert=True)``)."""

    needs_client_cert: ClassVar[bool] = True

    _: KW_ONLY
    probability: float = 1.0
