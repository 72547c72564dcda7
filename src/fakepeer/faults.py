"""The network fault vocabulary, for ``rule.fault(...)`` and ``peer.faults.add(...)``.

::

    from fakepeer import faults

    peer.expect(b"GET").reply(big).fault(faults.slice(3))   # on one rule's replies
    peer.faults.add(faults.latency(0.2, jitter=0.05))        # same as peer.faults.latency()

Each function returns a :class:`~fakepeer.Fault` and checks its parameters at once
(:class:`~fakepeer.ScriptError`). See ``peer.faults`` for what each does.
"""

from __future__ import annotations

from ._faults import (
    Fault,
    bandwidth,
    blackhole,
    corrupt,
    half_close,
    latency,
    limit_data,
    refuse,
    reset_peer,
    slice,
    slow_close,
    stop_reading,
    timeout,
    truncate,
)

__all__ = [
    "Fault",
    "bandwidth",
    "blackhole",
    "corrupt",
    "half_close",
    "latency",
    "limit_data",
    "refuse",
    "reset_peer",
    "slice",
    "slow_close",
    "stop_reading",
    "timeout",
    "truncate",
]
