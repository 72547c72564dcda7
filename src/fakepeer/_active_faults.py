"""``peer.faults``: the network faults applied to a peer or a proxy, switchable mid-test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import _faults
from ._errors import ScriptError
from ._faults import Fault
from ._runtime import clock

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["ActiveFault", "Faults"]


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
        """Apply ``fault`` (made by one of the functions of this module's vocabulary)."""
        if not isinstance(fault, Fault):
            raise ScriptError(f"peer.faults.add() takes a fault, got {fault!r}")
        peer = self._peer
        if fault.direction != "downstream" and not peer._relays:
            raise ScriptError(
                f"{fault}: a FakePeer has no upstream (client to server) bytes to shape, "
                "only what it sends: an upstream fault needs a Proxy in front of a server"
            )
        with peer._lock:
            conversation = peer._conversation
            conversation.faults.append(fault)
            conversation.note_peer(clock(), "fault", f"+ {fault}")
            conversation.transcript.seed = conversation.seed
        if fault.kind == "refuse":
            peer._refuse(True)
        return ActiveFault(self, fault)

    def _remove(self, fault: Fault) -> None:
        peer = self._peer
        with peer._lock:
            faults = peer._conversation.faults
            for index, active in enumerate(faults):
                if active is fault:
                    del faults[index]
                    peer._conversation.note_peer(clock(), "fault", f"- {fault}")
                    break
            else:
                return
            refusing = any(active.kind == "refuse" for active in faults)
        if fault.kind == "refuse" and not refusing:
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

    def latency(
        self,
        seconds: float,
        jitter: float = 0.0,
        *,
        probability: float = 1.0,
        direction: str = "downstream",
    ) -> ActiveFault:
        """Delay each batch of writes by ``seconds`` (plus or minus up to ``jitter``)."""
        return self.add(
            _faults.latency(seconds, jitter, probability=probability, direction=direction)
        )

    def bandwidth(
        self, bytes_per_second: int, *, probability: float = 1.0, direction: str = "downstream"
    ) -> ActiveFault:
        """Send at most ``bytes_per_second``."""
        return self.add(
            _faults.bandwidth(bytes_per_second, probability=probability, direction=direction)
        )

    def slice(
        self,
        size: int,
        delay: float = 0.0,
        *,
        probability: float = 1.0,
        direction: str = "downstream",
    ) -> ActiveFault:
        """Split each write into ``size``-byte chunks, ``delay`` seconds apart."""
        return self.add(_faults.slice(size, delay, probability=probability, direction=direction))

    def limit_data(self, n: int, *, direction: str = "downstream") -> ActiveFault:
        """Close each connection once ``n`` bytes were sent on it."""
        return self.add(_faults.limit_data(n, direction=direction))

    def truncate(
        self, n: int, *, probability: float = 1.0, direction: str = "downstream"
    ) -> ActiveFault:
        """Cut each write to its first ``n`` bytes."""
        return self.add(_faults.truncate(n, probability=probability, direction=direction))

    def corrupt(self, probability: float, *, direction: str = "downstream") -> ActiveFault:
        """Flip each byte sent with ``probability``."""
        return self.add(_faults.corrupt(probability, direction=direction))

    def reset_peer(self, after: float = 0.0, *, probability: float = 1.0) -> ActiveFault:
        """Reset each new connection with a TCP RST ``after`` seconds (0: instead of its
        first write)."""
        return self.add(_faults.reset_peer(after, probability=probability))

    def timeout(self, seconds: float | None) -> ActiveFault:
        """Send nothing more; close new connections after ``seconds`` (``None``: never)."""
        return self.add(_faults.timeout(seconds))

    def blackhole(self) -> ActiveFault:
        """Accept and never answer: ``timeout(None)``."""
        return self.add(_faults.blackhole())

    def slow_close(self, seconds: float) -> ActiveFault:
        """Wait ``seconds`` before each close."""
        return self.add(_faults.slow_close(seconds))

    def half_close(self) -> ActiveFault:
        """Send FIN on each new connection, right after its greeting; keep reading."""
        return self.add(_faults.half_close())

    def refuse(self) -> ActiveFault:
        """Stop listening: new connections are refused (``ConnectionRefusedError``) until
        the fault is removed; accepted connections go on (one still waiting to be accepted
        is reset: ``wait_for_connections()`` first)."""
        return self.add(_faults.refuse())

    def stop_reading(self) -> ActiveFault:
        """Stop reading from each new connection: the client's writes block once the
        buffers fill."""
        return self.add(_faults.stop_reading())
