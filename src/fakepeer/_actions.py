"""Every action: what the core asks the runtime to do, in one place.

The conversation (and the relay, and the fault plans) return lists of these; the runtime
executes them in order, per connection, and reports back what it did with an event of the
core (the third column):

===============  ========================================================  ====================
action           the runtime must                                          then report
===============  ========================================================  ====================
``Write(b)``     write ``b`` (already framed)                              ``sent``
``Push(b)``      the same, for bytes pushed from outside the script        ``sent``
                 (``connection.send()``, ``broadcast()``); skipped on a
                 failed connection
``Wait(s)``      wait ``s`` seconds before the next action of the          (nothing)
                 connection
``Close()``      close gracefully (FIN) once what was written is sent      ``closed``
``HalfClose()``  shut down writing (send EOF), keep reading                ``closed``
``Reset()``      abort with a TCP RST                                      ``closed``
``Hold()``       nothing: the connection hangs from now on                 ``held``
``Stop()``       stop reading from the client (a ``stop_reading`` fault)   ``note``
``StartTLS()``   upgrade the connection to TLS (``.start_tls()``): the     ``secured`` (or
                 handshake, as the server, after what was written before;  ``note`` if it
                 later actions wait for it                                 failed)
``Later(s, a)``  run action ``a`` after ``s`` seconds, apart from the      (as for ``a``)
                 connection's queue (a fault's timer)
``Call(...)``    call the reply callable with the match and the user's     ``replied``, then
                 connection handle, right away (before any other action    run what it returns
                 of the list); it is always the last action of its list:   before the rest
                 the conversation waits for ``replied``
``Await(a)``     await ``a`` (what an ``async`` reply callable returned)   ``awaited``, then
                                                                           run what it returns
                                                                           before the rest
===============  ========================================================  ====================

``Dropped`` is no action: the fault plans return it for bytes they kept from being sent,
and the core records it in the transcript.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

if TYPE_CHECKING:
    from ._script import Rule

__all__ = [
    "Action",
    "Await",
    "Call",
    "Close",
    "Dropped",
    "HalfClose",
    "Hold",
    "Later",
    "Push",
    "Reset",
    "StartTLS",
    "Stop",
    "Wait",
    "Write",
]


class Write(NamedTuple):
    """Write these (already framed) bytes."""

    data: bytes


class Push(Write):
    """A write pushed from outside the script (``connection.send()``, ``broadcast()``)."""


class Wait(NamedTuple):
    """Wait before the next action of the connection."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Hold:
    """The connection hangs from now on: answer nothing more."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop reading from the client (its writes block once the buffers fill)."""


class Later(NamedTuple):
    """Run ``action`` after ``seconds``, apart from the connection's queue (a fault's timer)."""

    seconds: float
    action: object


class Dropped(NamedTuple):
    """Bytes a fault kept from being sent: recorded in the transcript, not written."""

    data: bytes
    why: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection gracefully (FIN) after what was written is sent."""


@dataclass(frozen=True, slots=True)
class HalfClose:
    """Send EOF (shut down writing) but keep reading."""


@dataclass(frozen=True, slots=True)
class Reset:
    """Abort the connection with a TCP RST."""


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Upgrade the connection to TLS (as the server) once what was written before is
    sent; the actions after it go over TLS."""


class Call(NamedTuple):
    """Call ``function(value)`` (or ``function(value, connection)`` when ``wants_connection``)
    now, and report what it returned or raised with ``Conversation.replied``."""

    function: Callable[..., object]
    value: object
    wants_connection: bool


class Await(NamedTuple):
    """Await what a reply callable returned, then report it with ``Conversation.awaited``.

    ``writable``: the connection could still be written when the rule matched (a later
    ``.half_close()`` of the same rule comes after this reply, in the order written)."""

    awaitable: Awaitable[object]
    rule: Rule
    name: str
    writable: bool = True


Action: TypeAlias = (
    Write | Wait | Close | HalfClose | Reset | Hold | Await | Stop | Later | Call | StartTLS
)
