"""What a UDP peer (``FakePeer(transport="udp")``) means for a script (pure).

:class:`DatagramFraming` makes each datagram one message; the checks say, as
:class:`~fakepeer.ScriptError`, what a datagram peer cannot do (greetings, closes, handlers,
stream faults, TLS, Unix sockets, another framing), naming the combination and what to do
instead. The runtime is :mod:`fakepeer._udpserver`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Final

from ._datagramfaults import DATAGRAM_FAULTS
from ._errors import ScriptError
from ._faultclasses import Corrupt, Latency, Refuse, Timeout, Truncate
from ._faults import Fault, fault_name

if TYPE_CHECKING:
    from ._conversation import Conversation

__all__ = [
    "TRANSPORTS",
    "UDP_FAULTS",
    "DatagramFraming",
    "check_fault",
    "check_options",
    "check_script",
]

#: The transports a FakePeer takes.
TRANSPORTS: Final = ("tcp", "udp")
#: The faults a UDP peer takes: the datagram faults, and those of the stream faults that
#: mean something for a datagram (``timeout(None)``, that is ``blackhole()``, too).
UDP_FAULTS: Final = (*DATAGRAM_FAULTS, Latency, Truncate, Corrupt, Refuse)
#: The largest UDP payload (IPv4: 65,535 less the IP and UDP headers).
MAX_DATAGRAM: Final = 65507


class DatagramFraming:
    """One datagram, one message: what a UDP peer frames its clients' bytes with (each
    ``receive`` is handed one whole datagram, so the buffer holds exactly one). Replies
    are sent as given, one datagram each. An empty datagram is an empty message."""

    streaming: ClassVar[bool] = False
    #: Each ``receive`` of the conversation is one whole datagram, so one whole message: the
    #: conversation takes it as it is, without :meth:`decode` (the same outcome, faster).
    datagrams: ClassVar[bool] = True
    max_length: ClassVar[int] = MAX_DATAGRAM

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        """The whole of ``buffer`` as one message."""
        return [bytes(buffer)], len(buffer)

    def encode(self, message: bytes) -> bytes:
        """``message`` unchanged: a datagram carries its own length. A
        :class:`~fakepeer.ScriptError` over :data:`MAX_DATAGRAM`, IPv4's limit (65,507 bytes),
        for a peer of either family: the framing does not know the peer's addresses, and a
        script meant to run over both must fit the smaller (IPv6 would carry 65,527)."""
        if len(message) > MAX_DATAGRAM:
            raise ScriptError(
                f"a reply of {len(message)} bytes is more than one UDP datagram carries "
                f"({MAX_DATAGRAM:,} bytes, the largest UDP payload over IPv4): split it into "
                "several replies, one datagram each"
            )
        return message

    def __repr__(self) -> str:
        return "one message per datagram (transport='udp')"


def check_options(
    transport: object, *, framing: object, reply_framing: object = None, unix: object, tls: object
) -> DatagramFraming | None:
    """The framing of a peer of ``transport``: ``None`` for TCP (its own), a
    :class:`DatagramFraming` for UDP. :class:`~fakepeer.ScriptError` for a transport not
    in :data:`TRANSPORTS`, or an option UDP does not take."""
    if transport not in TRANSPORTS:
        raise ScriptError(f"FakePeer(transport=...) takes 'tcp' or 'udp', got {transport!r}")
    if transport == "tcp":
        return None
    if tls:
        raise ScriptError(
            f"FakePeer(transport='udp', tls={tls!r}): TLS runs over a byte stream, not over "
            "datagrams (DTLS is not supported); use transport='tcp' with tls=True, or plain UDP"
        )
    if unix is not None and unix is not False:
        raise ScriptError(
            "FakePeer(transport='udp', unix=...): a UDP peer listens on a host and port; "
            "leave unix= out (a Unix socket peer is transport='tcp')"
        )
    if framing is not None:
        raise ScriptError(
            f"FakePeer(transport='udp', framing={framing!r}): each datagram is one message "
            "already, so a UDP peer takes no framing; leave framing= out (match a datagram "
            "with a matcher: prefix(), regex...)"
        )
    if reply_framing is not None:
        raise ScriptError(
            f"FakePeer(transport='udp', reply_framing={reply_framing!r}): each reply is one "
            "datagram, sent as given, so a UDP peer takes no reply framing; leave "
            "reply_framing= out (build each reply's bytes whole)"
        )
    return DatagramFraming()


def check_fault(fault: Fault, udp: bool) -> None:
    """:class:`~fakepeer.ScriptError` if ``fault`` does not apply to the peer's transport."""
    if udp:
        if isinstance(fault, UDP_FAULTS) or (isinstance(fault, Timeout) and fault.seconds is None):
            return
        names = ", ".join(f"{fault_name(cls)}()" for cls in UDP_FAULTS)
        raise ScriptError(
            f"{fault} on a UDP peer (transport='udp'): it acts on a byte stream or a "
            f"connection, which datagrams do not have; a UDP peer takes {names} and "
            "blackhole()"
        )
    if isinstance(fault, DATAGRAM_FAULTS):
        raise ScriptError(
            f"{fault} on a stream peer: it is a datagram fault (a byte stream loses, repeats "
            "and reorders nothing); use FakePeer(transport='udp'), or for a stream "
            "blackhole(), latency() or reset_peer()"
        )


_STREAM_STEPS: Final = {"Close": "close", "HalfClose": "half_close", "Reset": "reset"}


def check_script(conversation: Conversation, udp: bool) -> None:
    """:class:`~fakepeer.ScriptError` for what the scripts (the peer's and each connection's)
    or the active faults ask that the transport cannot do: on UDP a greeting, a close, a
    half-close, a reset or a handler; on either, a fault of the other transport."""
    for fault in conversation.faults:
        check_fault(fault, udp)
    scripts = [conversation.script, *conversation.scripts.values()]
    for script in scripts:
        rules = [*script.connect_rules, *script.expectations, *script.permanent]
        for rule in [*rules, *script.fallbacks]:
            for fault in rule.faults:
                check_fault(fault, udp)
        if not udp:
            continue
        if script.connect_rules:
            raise ScriptError(
                f"{script.connect_rules[0].describe()}: a UDP peer has no connect to greet "
                "on (a client's first datagram is its first message); reply to it instead"
            )
        if script.handler is not None:
            raise ScriptError(
                f"handler() ({script.handler_where}) on a UDP peer: a handler reads a byte "
                "stream; with transport='udp' use rules with a reply callable "
                "(.reply(function)), which see one datagram each"
            )
        for rule in [*rules, *script.fallbacks]:
            for step in rule.steps:
                name = _STREAM_STEPS.get(type(step).__name__)
                if name is not None:
                    raise ScriptError(
                        f"{rule.describe()}: .{name}() on a UDP peer (transport='udp'): "
                        "datagrams have no connection to end; leave it out (the stop "
                        "judges the conversation), or use transport='tcp'"
                    )
