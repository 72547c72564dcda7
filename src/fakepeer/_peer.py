"""FakePeer: the object a test scripts, serves, inspects and waits on."""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Sequence

from . import _assertions, _datagram
from ._conversation import Conversation
from ._errors import ConversationError, ScriptError, UnexpectedData
from ._faults import Fault
from ._framing import Framing
from ._host import Host
from ._inspection import _reading
from ._matchers import ANY, Exact, as_matcher
from ._runtime import MAX_SEND_BUFFER, PeerServer
from ._script import HandlerFunction, Rule, Script, caller_location
from ._tls import TLS
from ._transcript import DEFAULT_BUDGET
from ._udpserver import MAX_CLIENTS, UdpServer
from ._wait import Waiters

__all__ = ["ConnectionScript", "FakePeer"]


class _Scripting:
    """The script-writing methods shared by :class:`FakePeer` and :class:`ConnectionScript`."""

    _lock: threading.RLock
    _conversation: Conversation
    _waiters: Waiters
    _number: int | None = None

    def _rule(self, kind: str, matcher: object) -> Rule:
        where = caller_location()
        built = as_matcher(ANY if kind == "otherwise" else matcher) if kind != "connect" else None
        if isinstance(built, Exact) and not built.expected and self._conversation.stream:
            raise ScriptError(
                f"{kind}(b'') can never be met with {self._conversation.framing!r}: a byte "
                "stream has no empty message (with Lines() and the like, b'' is a blank line; "
                "use fakepeer.ANY to accept anything)"
            )
        with self._lock:
            rule = self._conversation.add_rule(kind, built, where, self._number)
            self._waiters.notify()
        return rule

    def on_connect(self) -> Rule:
        """A rule run on every new connection before anything is read: ``.send()`` a greeting."""
        return self._rule("connect", None)

    def expect(self, matcher: object) -> Rule:
        """The next ordered expectation: met once (or ``.times(n)``), in order, over all
        connections. ``matcher`` is bytes, str, a compiled regex, a predicate, a matcher such
        as ``prefix(b"GET ")``, or ``ANY``."""
        return self._rule("expect", matcher)

    def always(self, matcher: object) -> Rule:
        """A permanent rule, tried whenever the next expectation does not match."""
        return self._rule("always", matcher)

    def otherwise(self) -> Rule:
        """The fallback for a message no other rule matches, instead of failing the test.

        Such messages count as unmatched: ``peer.assert_no_unmatched()`` fails on them.
        """
        return self._rule("otherwise", None)

    def handler(self, function: HandlerFunction) -> HandlerFunction:
        """Decorator: ``async def handler(connection)`` takes over each connection of this
        script, for logic no rule expresses. It awaits ``connection.receive()`` for messages and
        calls ``connection.send()`` to reply; it runs in the loop that serves the peer; when it
        returns, the connection is closed; if it raises, the test fails with the transcript.
        """
        where = caller_location()
        with self._lock:
            self._conversation.script_for(self._number).set_handler(function, where)
        return function


class ConnectionScript(_Scripting):
    """The own script of one connection: see :meth:`FakePeer.on_connection`."""

    def __init__(self, peer: FakePeer, number: int, script: Script) -> None:
        self._peer = peer
        self._number = number
        self._script = script
        self._lock = peer._lock
        self._conversation = peer._conversation
        self._waiters = peer._waiters

    def __repr__(self) -> str:
        return f"<ConnectionScript of connection #{self._number} of {self._peer!r}>"


class FakePeer(Host, _Scripting):
    """A scripted fake TCP server on loopback for testing a client.

    Script it with :meth:`on_connect`, :meth:`expect` and :meth:`always`, then serve it::

        peer = FakePeer(framing=Lines())
        peer.expect(b"PING").reply(b"PONG")
        with peer.serve():                  # on the background hub thread
            client_under_test(peer.address)
        # leaving serve() raised ConversationError if the client misbehaved

    ``async with peer.serve():`` serves in the running asyncio loop instead (under trio it
    uses the hub). Either way the peer listens on ``host`` (default ``127.0.0.1``), port 0
    unless ``port`` is given, before ``serve()`` returns, and leaving ``serve()`` closes every
    connection within about one second, then raises the first problem, if any, with the
    transcript.

    ``timeout`` is the default bound, in seconds, of the ``wait_*`` methods and of a
    handler's ``receive()``; leaving ``serve()`` also reads what clients are still sending
    for at most that long. A peer serves once; make a new one for another conversation.

    ``host`` must be a loopback address (or a name that resolves to one, like
    ``localhost``), unless ``external=True`` says that listening beyond loopback (a wildcard
    such as ``0.0.0.0``, or another interface) is meant; an empty or ``None`` host is a
    :class:`~fakepeer.ScriptError`; so is an address that cannot be bound (in use, not of
    this machine), raised when the peer starts to listen, naming the address and the
    reason. ``max_send_buffer`` (bytes, default 4 MiB) bounds what
    may wait to be sent to one client: a push over it raises
    :class:`~fakepeer.ClientNotReading`; replies apply backpressure instead (the peer stops
    reading a client that does not read its replies). ``transcript_budget`` (bytes per
    connection, default 64 KiB; ``None`` for no limit) bounds the transcript: past it, the
    first and the latest events of a connection are kept and the rest counted.

    The parameters, all keyword-only:

    - ``framing``: how the client's bytes are cut into messages; ``None`` means
      :class:`~fakepeer.Raw`.
    - ``name``: shown in transcripts and failure reports.
    - ``host``, ``port``: where to listen; port 0 lets the OS choose a free port. ``host``
      is a literal address (``'::1'`` and ``'[::1]'`` alike) or a name, resolved once: the
      peer listens on every address of the name on one port (for ``localhost``, on
      ``127.0.0.1`` and ``::1`` whatever the hosts file says; ``::1`` is left out if the
      machine has no IPv6), and :attr:`address` is the first.
    - ``unix``: ``True`` listens on a Unix domain socket at a fresh path in a private
      temporary directory (removed with it when the peer stops); a path (``str`` or
      ``os.PathLike``) listens there, the socket file removed when the peer stops (a file
      there that is not a socket, or a socket a server listens on, is a
      :class:`~fakepeer.ScriptError`). :attr:`address` is then the path (a ``str``), and
      :attr:`host` and :attr:`port` raise :class:`RuntimeError`. Giving ``unix`` with
      ``host``, ``port`` or ``external=True`` is a :class:`~fakepeer.ScriptError`.
    - ``external``: ``True`` allows a wildcard or another interface's address; the
      transcript's first line then says ``(external=True: reachable beyond loopback)``.
    - ``timeout``: seconds, as above.
    - ``seed``: the seed of the network faults' random choices; ``None`` draws one, and
      :attr:`seed` is the seed in use.
    - ``max_send_buffer``, ``transcript_budget``: bytes, as above.
    - ``tls``: ``True`` serves TLS, with a certificate made for the test by trustme (the
      optional extra: ``pip install 'fakepeer[tls]'``; without it, ``tls=True`` raises
      :class:`~fakepeer.ScriptError`). The client gets what it needs to trust it from
      :meth:`client_ssl_context`, :attr:`ca_pem` or :attr:`ca_path`. Each handshake is one
      ``tls`` event in the transcript: version, cipher, the name the client sent (SNI) and
      the application protocol (ALPN); a failed handshake (a client that does not trust the
      CA, say) is recorded as a ``tls`` event of the peer, not a problem of the test (the
      client sees its own error). A handshake is bounded by ``timeout``.
    - ``tls_hostnames``: the host names and addresses the certificate is valid for
      (default: ``host`` and ``"localhost"``).
    - ``tls_min_version``, ``tls_max_version``: :class:`ssl.TLSVersion` bounds of the
      versions the peer accepts (default: those of :mod:`ssl`).
    - ``tls_alpn``: the application protocols the peer offers (ALPN), such as
      ``["h2", "http/1.1"]``; :meth:`client_ssl_context` offers them too.

    The ``tls_*`` options without ``tls=True`` are a :class:`~fakepeer.ScriptError`.

    - ``transport``: ``"tcp"`` (the default: a byte stream, or a Unix socket's) or
      ``"udp"``: a datagram peer (see the UDP how-to). Each datagram is one message, each
      reply one datagram to the sender's address; a "connection" is a client address, in
      the order of their first datagram. UDP takes no ``framing``, ``unix``, ``tls``,
      greeting, handler, ``.close()``/``.half_close()``/``.reset()`` or stream fault: each
      is a :class:`~fakepeer.ScriptError` naming the combination. :attr:`address` is
      ``(host, port)`` of the UDP socket.
    - ``max_clients``: UDP only, the most client addresses served (default 1024): a
      datagram from one more is dropped, and fails the verdict naming this keyword.
    """

    def __init__(
        self,
        *,
        framing: Framing | None = None,
        name: str = "fake peer",
        host: str = "127.0.0.1",
        port: int = 0,
        unix: bool | str | os.PathLike[str] | None = None,
        timeout: float = 5.0,
        seed: int | None = None,
        external: bool = False,
        max_send_buffer: int = MAX_SEND_BUFFER,
        transcript_budget: int | None = DEFAULT_BUDGET,
        tls: bool = False,
        tls_hostnames: Sequence[str] | None = None,
        tls_min_version: ssl.TLSVersion | None = None,
        tls_max_version: ssl.TLSVersion | None = None,
        tls_alpn: Sequence[str] | None = None,
        transport: str = "tcp",
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        datagrams = _datagram.check_options(transport, framing=framing, unix=unix, tls=tls)
        self._udp = datagrams is not None
        if isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1:
            raise ScriptError(
                f"FakePeer(max_clients=...) takes a whole number >= 1, got {max_clients!r}"
            )
        self.max_clients = max_clients
        #: ``"tcp"`` or ``"udp"``, as given.
        self.transport = transport
        super().__init__(
            title=f"fake peer {name!r}",
            framing=framing if datagrams is None else datagrams,
            name=name,
            host=host,
            port=port,
            unix=unix,
            timeout=timeout,
            seed=seed,
            external=external,
            max_send_buffer=max_send_buffer,
            transcript_budget=transcript_budget,
        )
        options = (tls_hostnames, tls_min_version, tls_max_version, tls_alpn)
        if not isinstance(tls, bool):
            raise ScriptError(f"FakePeer(tls=...) takes True or False, got {tls!r}")
        if tls:
            self._tls = TLS(
                self._where.hosts,
                hostnames=tls_hostnames,
                min_version=tls_min_version,
                max_version=tls_max_version,
                alpn=tls_alpn,
            )
        elif any(option is not None for option in options):
            raise ScriptError("FakePeer(tls_...=...) options need tls=True")

    def _check_fault(self, fault: Fault) -> None:
        _datagram.check_fault(fault, self._udp)

    def _make_server(self, server: type[PeerServer] = PeerServer, **extra: object) -> PeerServer:
        with self._lock:
            _datagram.check_script(self._conversation, self._udp)
        if self._udp:
            return super()._make_server(UdpServer, max_clients=self.max_clients, **extra)
        return super()._make_server(server, **extra)

    def __repr__(self) -> str:
        serving = self._state in ("listening", "serving")
        where = f" on {self._where_text()}" if serving else ""
        return f"<FakePeer {self.name!r} {self._state}{where} framing={self.framing!r}>"

    # -- TLS ---------------------------------------------------------------------------------

    def _tls_only(self, what: str) -> TLS:
        if self._tls is None:
            raise ScriptError(f"{what}: this peer serves plain TCP; FakePeer(tls=True) serves TLS")
        return self._tls

    def client_ssl_context(self) -> ssl.SSLContext:
        """A new :class:`ssl.SSLContext` for a client of this peer: it trusts the test's CA
        (and nothing else) and checks the host name (one of ``tls_hostnames``: give it as
        ``server_hostname``, or connect to it); it offers ``tls_alpn``'s protocols. Raises
        :class:`~fakepeer.ScriptError` unless the peer serves TLS."""
        return self._tls_only("client_ssl_context()").client_context()

    @property
    def ca_pem(self) -> bytes:
        """The test's CA certificate, PEM-encoded (``tls=True`` only; else
        :class:`~fakepeer.ScriptError`)."""
        return self._tls_only("ca_pem").ca_pem

    @property
    def ca_path(self) -> str:
        """The path of a file holding :attr:`ca_pem`, for clients that take a path (such as
        ``cafile=``). It is made on first use in a private temporary directory, removed when
        the peer stops; asking for it after the stop is a :class:`~fakepeer.ScriptError`."""
        return self._tls_only("ca_path").ca_path()

    # -- the script --------------------------------------------------------------------------

    def on_connection(self, number: int) -> ConnectionScript:
        """The own script of the ``number``-th connection (counting from 1).

        That connection follows this script *instead of* the peer's: its greetings, its
        expectations, its permanent rules, or its handler. Its unmet expectations fail the
        test like the peer's (also when that connection never comes).
        """
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ScriptError(f"on_connection() takes a connection number >= 1, got {number!r}")
        with self._lock:
            if number <= len(self._conversation.connections):
                raise ScriptError(
                    f"on_connection({number}): connection #{number} has already arrived; "
                    "script it before the client connects"
                )
            script = self._conversation.script_for(number)
        return ConnectionScript(self, number, script)

    # -- assertions ----------------------------------------------------------------------------

    def _assertion(self, diagnosis: str | None) -> None:
        __tracebackhide__ = True
        if diagnosis is not None:
            raise ConversationError(diagnosis).with_transcript(self.render_transcript())

    def assert_received(self, matcher: object, *, times: int | None = None) -> None:
        """Fail unless the client sent a message matching ``matcher`` (exactly ``times``
        times, if given), on any connection."""
        __tracebackhide__ = True
        if times is not None and (isinstance(times, bool) or not isinstance(times, int)):
            raise ScriptError(f"assert_received(times=...) takes a whole number, got {times!r}")
        built = as_matcher(matcher)
        self._assertion(_assertions.received(built, self.received, times))

    def assert_received_in_order(self, *matchers: object) -> None:
        """Fail unless messages matching ``matchers`` arrived in this order (other messages
        may come between them)."""
        __tracebackhide__ = True
        if not matchers:
            raise ScriptError("assert_received_in_order() needs at least one matcher")
        built = [as_matcher(matcher) for matcher in matchers]
        self._assertion(_assertions.received_in_order(built, self.received))

    def assert_no_unmatched(self) -> None:
        """Fail if any message matched no rule but ``otherwise()`` (or none at all)."""
        __tracebackhide__ = True
        with _reading(self._lock, self._conversation):
            unanswered = list(self._conversation.unmatched)
            unexpected = sum(
                1 for problem in self._conversation.problems if isinstance(problem, UnexpectedData)
            )
        self._assertion(_assertions.unmatched(unanswered, unexpected))
