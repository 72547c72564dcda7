"""The network fault vocabulary, for ``rule.fault(...)`` and ``peer.faults.add(...)``.

::

    from fakepeer import faults

    peer.expect(b"GET").reply(big).fault(faults.slice(3))   # on one rule's replies
    peer.faults.add(faults.Latency(0.2, jitter=0.05))        # same as peer.faults.latency()

Each fault is a class (:class:`Latency`, :class:`Slice`...), a frozen
:class:`~fakepeer.Fault` that checks its parameters as it is made
(:class:`~fakepeer.ScriptError`). Each has a lowercase alias, the name it is shown by
(``faults.latency`` is ``faults.Latency``), and a method of ``peer.faults`` with the same
parameters (``peer.faults.latency(0.2)``). :func:`blackhole` is ``Timeout(None)``.

The TLS handshake faults (:class:`UntrustedCertificate`, :class:`WrongHostname`,
:class:`ExpiredCertificate`, :class:`HandshakeReset`, :class:`HandshakeStall`,
:class:`ClientCertificateRefused`) apply to a TLS peer only (``FakePeer(tls=True)``; the
last one with ``tls_client_cert=True``): on another peer, ``peer.faults`` raises
:class:`~fakepeer.ScriptError`.

The connect-phase faults (:class:`AcceptDelay`, :class:`ResetOnAccept`,
:class:`AcceptQueueFull`) act before the peer serves a connection: on a TCP or Unix socket
peer, or a Proxy.
"""

from __future__ import annotations

from ._acceptfaults import AcceptDelay, AcceptQueueFull, ResetOnAccept
from ._datagramfaults import Drop, Duplicate, Reorder
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
from ._faults import Fault

__all__ = [
    "AcceptDelay",
    "AcceptQueueFull",
    "Bandwidth",
    "ClientCertificateRefused",
    "Corrupt",
    "Drop",
    "Duplicate",
    "ExpiredCertificate",
    "Fault",
    "HalfClose",
    "HandshakeReset",
    "HandshakeStall",
    "Latency",
    "LimitData",
    "Refuse",
    "Reorder",
    "ResetOnAccept",
    "ResetPeer",
    "Slice",
    "SlowClose",
    "StopReading",
    "Timeout",
    "Truncate",
    "UntrustedCertificate",
    "WrongHostname",
    "accept_delay",
    "accept_queue_full",
    "bandwidth",
    "blackhole",
    "client_certificate_refused",
    "corrupt",
    "drop",
    "duplicate",
    "expired_certificate",
    "half_close",
    "handshake_reset",
    "handshake_stall",
    "latency",
    "limit_data",
    "refuse",
    "reorder",
    "reset_on_accept",
    "reset_peer",
    "slice",
    "slow_close",
    "stop_reading",
    "timeout",
    "truncate",
    "untrusted_certificate",
    "wrong_hostname",
]

# The names faults are shown by (``latency(0.2, 0)``): the classes themselves.
latency = Latency
bandwidth = Bandwidth
slice = Slice  # shadows the builtin only in this module
limit_data = LimitData
truncate = Truncate
corrupt = Corrupt
reset_peer = ResetPeer
timeout = Timeout
slow_close = SlowClose
half_close = HalfClose
refuse = Refuse
stop_reading = StopReading
untrusted_certificate = UntrustedCertificate
wrong_hostname = WrongHostname
expired_certificate = ExpiredCertificate
handshake_reset = HandshakeReset
handshake_stall = HandshakeStall
client_certificate_refused = ClientCertificateRefused
drop = Drop
duplicate = Duplicate
reorder = Reorder
accept_delay = AcceptDelay
reset_on_accept = ResetOnAccept
accept_queue_full = AcceptQueueFull
