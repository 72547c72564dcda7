"""The script: rules the test writes, each a matcher and a chain of steps.

Four kinds of rule, tried in this order for each message:

``on_connect()``
    runs its steps on every new connection, before anything is read (a greeting).
``expect(matcher)``
    ordered: the script waits for the expectations one after another, across all connections,
    each consumed once (or ``times(n)``). Unmet ones fail the test when the peer stops.
``always(matcher)``
    permanent: matches any time the next expectation does not, as often as needed
    (or at most ``times(n)``). Never required.
``otherwise()``
    the fallback for a message nothing else matched: without one, such a message fails the
    test; with one, it is answered and counted (``peer.assert_no_unmatched()`` fails).

A rule can require a state with ``.when("state")`` (the connection's) or ``.when(peer=...)``
(the peer's, shared), and ``.goto(...)`` moves to another as the rule matches (from ``"start"``).

Steps run in the order written, like a sentence::

    peer.expect(b"SLOW").after(0.2).reply(b"OK")      # wait 0.2 s, then reply
    peer.expect(b"PING").reply(b"PONG").close()        # reply, then close

Every method validates at once: a mistake (a negative delay, a reply after ``hang()``,
``times(0)``, a reply the reply framing cannot encode...) is a ScriptError at its line.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Final, TypeAlias

from ._actions import Close, HalfClose, Reset, StartTLS
from ._errors import ScriptError
from ._faults import Fault
from ._framing import Framing, encodable
from ._matchers import Matcher

__all__ = [
    "After",
    "Close",
    "Echo",
    "Goto",
    "HalfClose",
    "HandlerFunction",
    "Hang",
    "Reply",
    "ReplyFunction",
    "Reset",
    "Rule",
    "Script",
    "Send",
    "StartTLS",
    "Step",
]

#: Why ``.start_tls()`` cannot be, on a rule whose peer did not say it can (the default).
NO_STARTTLS: Final = (
    "this peer has no TLS certificate to upgrade with: FakePeer(tls='starttls') (or "
    "@pytest.mark.fakepeer(tls='starttls') for the fixture) makes the test's certificates and "
    "serves plain text until .start_tls()"
)

#: The state connections and the peer start in.
START: Final = "start"

#: A reply callable: ``f(match)`` or ``f(match, connection)`` returning bytes, str or None,
#: or an awaitable of one (``async def``). ``match`` is the ``re.Match`` for a regex rule,
#: else the message bytes.
ReplyFunction: TypeAlias = Callable[..., object]
#: A connection handler: ``async def handler(connection) -> None``.
HandlerFunction: TypeAlias = Callable[..., Awaitable[None]]

_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__))
#: The modules a script call passes through on its way in; the frame after them wrote it.
_PLUMBING: Final = frozenset(
    os.path.join(_PACKAGE_DIR, name) for name in ("_script.py", "_peer.py", "_conversation.py")
)
#: A kit's preset (``resp.handshake(peer)``) writes rules located at its call in the test.
_KITS: Final = os.path.join(_PACKAGE_DIR, "protocols") + os.sep


@functools.lru_cache(maxsize=256)
def _plumbing(filename: str) -> bool:
    return (path := os.path.abspath(filename)) in _PLUMBING or path.startswith(_KITS)


@functools.lru_cache(maxsize=256)
def _basename(filename: str) -> str:
    return os.path.basename(filename)


def caller_location() -> str:
    """``file:line`` of the first frame outside fakepeer (where the script was written)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _plumbing(filename):
            return f"{_basename(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def to_bytes(data: object, what: str) -> bytes:
    """bytes as is, str as UTF-8; anything else is a :class:`ScriptError`."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise ScriptError(f"{what} takes bytes or str, got {type(data).__name__} {data!r}")


@dataclass(frozen=True, slots=True)
class Reply:
    """Write framed ``data``, or what ``function`` returns for the match."""

    data: bytes | None
    function: ReplyFunction | None = None
    wants_connection: bool = False


@dataclass(frozen=True, slots=True)
class Send:
    """Write framed ``data``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class After:
    """Wait ``seconds`` before the next step."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Hang:
    """Keep the connection open and answer nothing more on it."""


@dataclass(frozen=True, slots=True)
class Echo:
    """Write the matched message back (framed)."""


@dataclass(frozen=True, slots=True)
class Goto:
    """Move the connection and/or the peer to a state (when the rule matches)."""

    connection: str | None
    peer: str | None


Step: TypeAlias = Reply | Send | After | Close | HalfClose | Reset | Hang | Echo | Goto | StartTLS


class _Rotation:
    """A reply that cycles through fixed answers: A, B, C, A, B, ..."""

    def __init__(self, choices: Sequence[bytes]) -> None:
        self.choices = tuple(choices)
        self.index = 0
        self.__qualname__ = f"rotation of {len(self.choices)}"

    def __call__(self, match: object) -> bytes:
        choice = self.choices[self.index % len(self.choices)]
        self.index += 1
        return choice


def _state_name(value: object, method: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ScriptError(f".{method}() takes a state name as a non-empty str, got {value!r}")
    return value


_ENDINGS: Final = (Close, Reset, Hang)


class _ByKeyword:
    """A reply callable that takes the connection by its keyword ``connection``, called as
    the runtime calls a two-parameter one: ``(match, connection)``."""

    __slots__ = ("__qualname__", "function")

    def __init__(self, function: Callable[..., object]) -> None:
        self.function = function
        self.__qualname__ = getattr(function, "__qualname__", repr(function))

    def __call__(self, match: object, connection: object) -> object:
        return self.function(match, connection=connection)


def _reply_arity(function: Callable[..., object]) -> tuple[Callable[..., object], bool]:
    """How the runtime calls ``function`` (see :meth:`Rule.reply`): ``(function, True)``
    with ``(match, connection)``, ``(function, False)`` with ``(match)``; else ScriptError."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have no signature: give them the match
        return function, False
    positional = [
        parameter
        for parameter in signature.parameters.values()
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    ]
    named = signature.parameters.get("connection")
    if len(positional) >= 2 and positional[1].default is positional[1].empty:
        if _binds(signature, 0, None):
            return function, True
    elif named is not None and named.kind is not named.POSITIONAL_ONLY:
        if _binds(signature, 0, connection=None):
            return _ByKeyword(function), True
    elif _binds(signature, 0):
        return function, False
    raise ScriptError(
        f"reply callable {getattr(function, '__qualname__', function)!r} must accept "
        "(match) or (match, connection): the connection goes to a second required "
        "positional parameter, or to one named connection"
    )


def _binds(signature: inspect.Signature, *args: object, **kwargs: object) -> bool:
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


class Rule:
    """One rule of the script; its methods add steps and return the rule, so they chain.

    ``kind`` is ``"connect"``, ``"expect"``, ``"always"`` or ``"otherwise"``; ``number``
    counts rules of the same kind from 1; ``where`` is the ``file:line`` that wrote it;
    ``scope`` is ``""`` for the peer's script, ``"connection #N "`` for a per-connection one,
    whose number is ``connection`` (else None). How often it matched is the conversation's
    business, not the rule's: a rule is what the test wrote, nothing more.
    """

    def __init__(
        self,
        kind: str,
        matcher: Matcher | None,
        number: int,
        where: str,
        scope: str = "",
        *,
        connection: int | None = None,
    ) -> None:
        self.kind = kind
        self.matcher = matcher
        self.number = number
        self.where = where
        self.scope = scope
        self.connection = connection
        self.steps: list[Step] = []
        self.limit: int | None = 1 if kind == "expect" else None
        self.faults: list[Fault] = []  # network faults on this rule's writes only
        self.state: str | None = None  # the connection state the rule requires
        self.peer_state: str | None = None  # the peer state the rule requires
        self.no_starttls: str | None = NO_STARTTLS  # why .start_tls() cannot be (None: it can)
        self.framing: Framing | None = None  # the peer's reply framing: checks constant replies
        self._description: str | None = None

    # -- description -------------------------------------------------------------------------

    def describe(self) -> str:
        """``expect #2 'PING' (test_x.py:14)``."""
        if self._description is not None:
            return self._description
        if self.kind == "connect":
            what = "on_connect"
        elif self.kind == "otherwise":
            what = "otherwise"
        else:
            what = f"{self.kind} #{self.number}"
        hidden = self.matcher is None or self.kind == "otherwise"
        matcher = "" if hidden or self.matcher is None else f" {self.matcher.describe()}"
        times = f" x{self.limit}" if self.limit not in (None, 1) else ""
        states = []
        if self.state is not None:
            states.append(f"when {self.state!r}")
        if self.peer_state is not None:
            states.append(f"when peer {self.peer_state!r}")
        when = f" [{', '.join(states)}]" if states else ""
        self._description = f"{self.scope}{what}{matcher}{times}{when} ({self.where})"
        return self._description

    def __repr__(self) -> str:
        return f"<Rule {self.describe()}>"

    # -- steps -------------------------------------------------------------------------------

    def _half_closed(self) -> bool:
        """After .half_close(): it comes after the last write (none may follow it)."""
        for step in reversed(self.steps):  # no scan of every reply of a long .reply([...])
            if isinstance(step, HalfClose | Reply | Send | Echo):
                return isinstance(step, HalfClose)
        return False

    def _add(self, step: Step, method: str) -> Rule:
        if self.steps and isinstance(self.steps[-1], _ENDINGS):
            ended = type(self.steps[-1]).__name__.lower()
            raise ScriptError(
                f".{method}() after .{ended}() on {self.describe()}: "
                f"nothing can happen on a connection after {ended}()"
            )
        if isinstance(step, Reply | Send | Echo) and self._half_closed():
            raise ScriptError(
                f".{method}() after .half_close() on {self.describe()}: "
                "the peer can no longer write on that connection"
            )
        if self.framing is not None and isinstance(step, Reply | Send):
            rotation = getattr(step, "function", None)  # .reply([a, b]): each is a constant
            for data in rotation.choices if isinstance(rotation, _Rotation) else (step.data,):
                encodable(self.framing, data, f".{method}() on {self.describe()}")
        self.steps.append(step)
        return self

    def reply(self, data: bytes | str | Sequence[bytes | str] | ReplyFunction) -> Rule:
        """Answer with ``data`` (framed), or with what ``data(match[, connection])`` returns.

        A callable gets the ``re.Match`` for a regex rule, else the matched bytes; it may
        return bytes, str, or None (no reply). Its exceptions fail the test as
        :class:`~fakepeer.ReplyFailed` (an :class:`~fakepeer.UpstreamError` as it is). It gets
        the :class:`~fakepeer.Connection` too when it declares a second *required* positional
        parameter, or one named ``connection`` (passed by keyword); a second with a default
        is its own. Any other signature is a :class:`~fakepeer.ScriptError`.
        """
        if self.matcher is None:
            raise ScriptError(
                f".reply() on {self.describe()}: a connect rule has no message to reply to; "
                "use .send()"
            )
        if isinstance(data, list | tuple):
            if not data:
                raise ScriptError(".reply() of an empty sequence: give at least one answer")
            rotation = _Rotation([to_bytes(item, ".reply()") for item in data])
            return self._add(Reply(None, rotation, False), "reply")
        if callable(data) and not isinstance(data, bytes | str):
            function, wants = _reply_arity(data)
            return self._add(Reply(None, function, wants), "reply")
        return self._add(Reply(to_bytes(data, ".reply()")), "reply")

    def fault(self, fault: Fault) -> Rule:
        """Apply a network fault to what this rule sends only, e.g.
        ``peer.expect(b"GET").reply(big).fault(fakepeer.faults.slice(3))``."""
        if not isinstance(fault, Fault):
            raise ScriptError(f".fault() takes a fault such as slice(3), got {fault!r}")
        if not fault.per_rule:
            raise ScriptError(
                f".fault({fault}) acts on the connection or the server, not on what one "
                "rule sends: use peer.faults instead"
            )
        self.faults.append(fault)
        return self

    def echo(self) -> Rule:
        """Answer with the message that matched (framed again)."""
        if self.matcher is None:
            raise ScriptError(f".echo() on {self.describe()}: a connect rule has nothing to echo")
        return self._add(Echo(), "echo")

    def when(self, state: str | None = None, *, peer: str | None = None) -> Rule:
        """Apply the rule only while the connection is in ``state`` (and/or the peer in
        ``peer``). Every connection and the peer start in ``"start"``."""
        state = _state_name(state, "when")
        peer = _state_name(peer, "when")
        if state is None and peer is None:
            raise ScriptError(".when() needs a state: .when('ready') or .when(peer='ready')")
        self.state, self.peer_state = state, peer
        self._description = None
        return self

    def goto(self, state: str | None = None, *, peer: str | None = None) -> Rule:
        """When the rule matches, move the connection to ``state`` (and/or the peer to
        ``peer``). It takes effect at once, for the very next message."""
        state = _state_name(state, "goto")
        peer = _state_name(peer, "goto")
        if state is None and peer is None:
            raise ScriptError(".goto() needs a state: .goto('ready') or .goto(peer='ready')")
        return self._add(Goto(state, peer), "goto")

    def send(self, data: bytes | str) -> Rule:
        """Write ``data`` (framed) to the connection."""
        return self._add(Send(to_bytes(data, ".send()")), "send")

    def after(self, seconds: float) -> Rule:
        """Wait ``seconds`` before the next step (the connection keeps reading meanwhile)."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ScriptError(f".after() takes seconds as a number, got {seconds!r}")
        if not math.isfinite(seconds) or seconds < 0:
            raise ScriptError(f".after() takes a finite number of seconds >= 0, got {seconds!r}")
        return self._add(After(float(seconds)), "after")

    def close(self) -> Rule:
        """Close the connection (FIN) once everything before is written."""
        return self._add(Close(), "close")

    def half_close(self) -> Rule:
        """Shut down the peer's sending side (the client reads EOF) but keep reading."""
        return self._add(HalfClose(), "half_close")

    def reset(self) -> Rule:
        """Abort the connection with a TCP RST (the client sees ``ConnectionResetError``)."""
        return self._add(Reset(), "reset")

    def start_tls(self) -> Rule:
        """Upgrade the connection to TLS once everything before is written (STARTTLS: SMTP,
        IMAP, POP3, FTP's ``AUTH TLS``, PostgreSQL's ``SSLRequest``...): the peer does the
        handshake as the server, with the certificate of ``FakePeer(tls="starttls")``, and
        the rules after it match what the client sends inside TLS.

        The handshake is a ``tls`` event of the connection (``upgraded: TLSv1.3, ...``);
        ``connection.tls`` says what it agreed. A client byte after the matched message and
        before the handshake is an :class:`~fakepeer.UnexpectedData` problem. A handshake
        that fails (a client that does not trust the CA, say) is a ``tls`` event of the
        connection, which closes: the client sees its own error. :class:`~fakepeer.ScriptError`
        on a peer without ``tls="starttls"``, or after ``.half_close()``.
        """
        if self.no_starttls is not None:
            raise ScriptError(f".start_tls() on {self.describe()}: {self.no_starttls}")
        if self._half_closed():
            raise ScriptError(
                f".start_tls() after .half_close() on {self.describe()}: a TLS handshake "
                "needs both directions"
            )
        return self._add(StartTLS(), "start_tls")

    def hang(self) -> Rule:
        """Keep the connection open and never answer on it again (until the peer stops)."""
        return self._add(Hang(), "hang")

    def times(self, n: int) -> Rule:
        """``expect``: must be met ``n`` times in a row. ``always``: may match at most ``n``."""
        if self.matcher is None:
            raise ScriptError(".times() on an on_connect rule: it runs once per connection")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ScriptError(f".times() takes a whole number >= 1, got {n!r}")
        self.limit = n
        self._description = None
        return self


class Script:
    """The rules of the peer, or of one connection: greetings, expectations, permanent
    rules, fallbacks, or a handler that takes the connection over.

    ``connection``: the connection it is for (None: the peer's script); ``file``: the file it
    was read from ("": Python; hints speak its terms). The conversation keeps the counts.

    A connection's script that :meth:`inherits` the peer's (``on_connection(n,
    inherit=True)``) adds to it: its messages are tried against its own next expectation,
    its own ``always`` rules, the peer's ``always`` rules, its own ``otherwise`` rules, then
    the peer's (``tried_permanent``, ``tried_fallbacks``: kept up to date as rules are added
    to either); it greets with the peer's ``on_connect`` rules unless it has its own
    (:attr:`greeting`). The peer's expectations are one sequence over the connections that
    follow the peer's script, and its handler serves those: neither is inherited.
    """

    def __init__(self, connection: int | None = None) -> None:
        self.connection = connection
        self.scope = "" if connection is None else f"connection #{connection} "
        self.connect_rules: list[Rule] = []
        self.expectations: list[Rule] = []
        self.permanent: list[Rule] = []
        self.fallbacks: list[Rule] = []
        self.handler: HandlerFunction | None = None
        self.handler_where, self.file = "", ""
        self.parent: Script | None = None  # the peer's script, if this one inherits it
        self.heirs: list[Script] = []  # the connections' scripts that inherit this one
        # The rules tried after the next expectation (the same lists unless it inherits).
        self.tried_permanent = self.permanent
        self.tried_fallbacks = self.fallbacks

    def inherits(self, parent: Script) -> None:
        """Add to ``parent``'s rules (the peer's script) from now on; see the class."""
        if self.parent is None:
            self.parent = parent
            parent.heirs.append(self)
            self._refresh()

    def _refresh(self) -> None:
        parent = self.parent
        if parent is not None:
            self.tried_permanent = [*self.permanent, *parent.permanent]
            self.tried_fallbacks = [*self.fallbacks, *parent.fallbacks]

    @property
    def greeting(self) -> list[Rule]:
        """The ``connect`` rules a connection of this script runs: its own, or, if it has
        none and inherits, the peer's."""
        if self.connect_rules or self.parent is None:
            return self.connect_rules
        return self.parent.connect_rules

    def add(self, kind: str, matcher: Matcher | None, where: str) -> Rule:
        """Append a rule of ``kind`` and return it."""
        rules = {
            "connect": self.connect_rules,
            "expect": self.expectations,
            "always": self.permanent,
            "otherwise": self.fallbacks,
        }[kind]
        rule = Rule(kind, matcher, len(rules) + 1, where, self.scope, connection=self.connection)
        rules.append(rule)
        if kind in ("always", "otherwise"):
            self._refresh()
            for heir in self.heirs:
                heir._refresh()
        return rule

    def set_handler(self, handler: HandlerFunction, where: str) -> None:
        """Let ``handler`` take over the connections of this script."""
        if not inspect.iscoroutinefunction(handler):
            raise ScriptError(
                f"a handler must be an 'async def' function taking the connection, got {handler!r}"
            )
        if self.handler is not None:
            raise ScriptError(
                f"this script already has a handler ({self.handler_where}); one is enough"
            )
        self.handler, self.handler_where = handler, where

    def rules(self) -> list[Rule]:
        """Every rule that matches messages, in the order they are tried (the inherited
        ones too)."""
        return [*self.expectations, *self.tried_permanent, *self.tried_fallbacks]
