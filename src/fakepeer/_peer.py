"""FakePeer: the object a test scripts, serves, inspects and waits on."""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Sequence
from typing import Literal

from . import _assertions, _datagram
from ._conversation import Conversation
from ._errors import ConversationError, ScriptError, UnexpectedData
from ._faults import Fault
from ._framing import Framing
from ._host import Host
from ._inspection import _reading
from ._matchers import ANY, Exact, as_matcher
from ._runtime import MAX_SEND_BUFFER, PeerServer
from ._script import NO_STARTTLS, HandlerFunction, Rule, Script, caller_location
from ._tls import configure
from ._tlsinfo import check as check_tls
from ._tlsinfo import version as tls_version
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
    _no_starttls: str | None = NO_STARTTLS  # why a rule cannot .start_tls() (None: it can)

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
            rule.no_starttls = self._no_starttls
            rule.framing = self._conversation.reply_framing
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
        self._no_starttls = peer._no_starttls

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
    - ``reply_framing``: how what the peer sends is framed (replies, greetings, sends,
      pushes, :meth:`broadcast`, ``connection.send()`` in handlers): its ``encode``;
      ``None`` (the default) means the same as ``framing``. For replies framed otherwise
      than requests: ``FakePeer(framing=Fixed(12), reply_framing=Raw())`` cuts 12-byte
      requests and sends replies as written. :attr:`reply_framing` is the one in use.
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
    - ``tls``: ``True`` serves TLS from the first byte, with a certificate made for the test
      by trustme (the optional extra: ``pip install 'fakepeer[tls]'``; without it,
      ``tls=True`` raises :class:`~fakepeer.ScriptError`). The client gets what it needs
      to trust it from :meth:`client_ssl_context`, :attr:`ca_pem` or :attr:`ca_path`. Each
      handshake is one ``tls`` event in the transcript: version, cipher, the name the
      client sent (SNI) and the application protocol (ALPN); a failed handshake (a client
      that does not trust the CA, say) is recorded as a ``tls`` event of the peer, not a
      problem of the test (the client sees its own error). A handshake is bounded by
      ``timeout``. ``"starttls"`` makes the same certificates but serves plain text until
      a rule's :meth:`Rule.start_tls() <fakepeer.Rule.start_tls>` upgrades the connection
      (STARTTLS); ``.start_tls()`` on any other peer is a :class:`~fakepeer.ScriptError`.
      :attr:`Connection.tls <fakepeer.Connection.tls>` and :meth:`assert_tls` say what a
      handshake agreed.
    - ``tls_hostnames``: the host names and addresses the certificate is valid for
      (default: ``host`` and ``"localhost"``).
    - ``tls_min_version``, ``tls_max_version``: :class:`ssl.TLSVersion` bounds of the
      versions the peer accepts, ``TLSv1_2`` or ``TLSv1_3`` (default: those of :mod:`ssl`;
      TLS 1.0 and 1.1, deprecated by RFC 8996, and a minimum above the maximum are a
      :class:`~fakepeer.ScriptError`).
    - ``tls_alpn``: the application protocols the peer offers (ALPN), such as
      ``["h2", "http/1.1"]``; :meth:`client_ssl_context` offers them too.
    - ``tls_client_cert``: ``True`` asks for mutual TLS: the peer requires a client
      certificate signed by the test's CA, and makes one (common name
      ``"fakepeer client"``) that :meth:`client_ssl_context` presents, also given as
      :attr:`client_cert_pem`/:attr:`client_key_pem` and
      :attr:`client_cert_path`/:attr:`client_key_path`. The transcript's ``tls`` event
      names it (``client cert 'fakepeer client'``); a client with no certificate fails its
      handshake (recorded as a ``tls`` event of the peer).

    The ``tls_*`` options without ``tls=True`` (or ``"starttls"``) are a
    :class:`~fakepeer.ScriptError`.

    - ``transport``: ``"tcp"`` (the default: a byte stream, or a Unix socket's) or
      ``"udp"``: a datagram peer (see the UDP how-to). Each datagram is one message, each
      reply one datagram to the sender's address; a "connection" is a client address, in
      the order of their first datagram. UDP takes no ``framing``, ``reply_framing``,
      ``unix``, ``tls``, greeting, handler, ``.close()``/``.half_close()``/``.reset()`` or
      stream fault: each is a :class:`~fakepeer.ScriptError` naming the combination.
      :attr:`address` is ``(host, port)`` of the UDP socket.
    - ``max_clients``: UDP only, the most client addresses served (default 1024): a
      datagram from one more is dropped, and fails the verdict naming this keyword. Given
      to a TCP peer, it is a :class:`~fakepeer.ScriptError`.
    """

    def __init__(
        self,
        *,
        framing: Framing | None = None,
        reply_framing: Framing | None = None,
        name: str = "fake peer",
        host: str = "127.0.0.1",
        port: int = 0,
        unix: bool | str | os.PathLike[str] | None = None,
        timeout: float = 5.0,
        seed: int | None = None,
        external: bool = False,
        max_send_buffer: int = MAX_SEND_BUFFER,
        transcript_budget: int | None = DEFAULT_BUDGET,
        tls: bool | Literal["starttls"] = False,
        tls_hostnames: Sequence[str] | None = None,
        tls_min_version: ssl.TLSVersion | None = None,
        tls_max_version: ssl.TLSVersion | None = None,
        tls_alpn: Sequence[str] | None = None,
        tls_client_cert: bool = False,
        transport: str = "tcp",
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        datagrams = _datagram.check_options(
            transport, framing=framing, reply_framing=reply_framing, unix=unix, tls=tls
        )
        self._udp = datagrams is not None
        if isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1:
            raise ScriptError(
                f"FakePeer(max_clients=...) takes a whole number >= 1, got {max_clients!r}"
            )
        if max_clients != MAX_CLIENTS and not self._udp:
            raise ScriptError(
                f"FakePeer(max_clients={max_clients!r}) bounds the client addresses of a UDP "
                "peer: add transport='udp' (a TCP peer's clients are its connections, bounded "
                "by the kernel's accept queue)"
            )
        self.max_clients = max_clients
        #: ``"tcp"`` or ``"udp"``, as given.
        self.transport = transport
        super().__init__(
            title=f"fake peer {name!r}",
            framing=framing if datagrams is None else datagrams,
            reply_framing=reply_framing,
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
        self._tls = configure(
            tls,
            self._where.hosts,
            owner="FakePeer",
            hostnames=tls_hostnames,
            min_version=tls_min_version,
            max_version=tls_max_version,
            alpn=tls_alpn,
            client_cert=tls_client_cert,
            starttls=True,
        )
        if tls:
            self._no_starttls = (
                None
                if tls == "starttls"
                else "FakePeer(tls=True) serves TLS from the first byte already; "
                "FakePeer(tls='starttls') serves plain text until .start_tls()"
            )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **overrides: object) -> FakePeer:
        """The peer a script file describes (TOML: see the file format's reference page).

        ``overrides`` are keywords of this class that win over the file's ``[peer]`` table
        (and its ``[framing]``), such as ``port=8025``; one it does not take is a
        :class:`TypeError`. The rules are located at their table's line in diagnoses
        (``expect #2 'PING' (conversation.toml:12)``).

        Every problem of the file is a :class:`~fakepeer.ScriptError` whose message starts
        with ``FILE:LINE:`` (the path as given, the line of the key or table at fault) and
        the key path (``expect #3: reply``), and says what is accepted: a file that cannot
        be read, TOML syntax, an unknown key (with the closest known one), a wrong type or
        value, and what the Python API refuses as the peer is built.
        """
        from ._scriptfile import load_file  # noqa: PLC0415  # _scriptfile imports this module

        return load_file(path, **overrides)

    def _check_fault(self, fault: Fault) -> None:
        _datagram.check_fault(fault, self._udp)

    def _make_server(self, server: type[PeerServer] = PeerServer, **extra: object) -> PeerServer:
        with self._lock:
            _datagram.check_script(self._conversation, self._udp)
        if self._udp:
            return super()._make_server(UdpServer, max_clients=self.max_clients, **extra)
        return super()._make_server(server, **extra)

    def __repr__(self) -> str:
        if "_state" not in vars(self):  # its constructor raised (a ScriptError, shown by pytest)
            return "<FakePeer, not made>"
        serving = self._state in ("listening", "serving")
        where = f" on {self._where_text()}" if serving else ""
        replies = (
            "" if self.reply_framing == self.framing else f" reply_framing={self.reply_framing!r}"
        )
        return f"<FakePeer {self.name!r} {self._state}{where} framing={self.framing!r}{replies}>"

    # -- mutual TLS --------------------------------------------------------------------------

    @property
    def client_cert_pem(self) -> bytes:
        """Mutual TLS (``tls_client_cert=True``): the client certificate, PEM-encoded, signed
        by the test's CA; :class:`~fakepeer.ScriptError` without mutual TLS."""
        return self._tls_only("client_cert_pem").client_pem("cert")

    @property
    def client_key_pem(self) -> bytes:
        """Mutual TLS: the private key of :attr:`client_cert_pem`, PEM-encoded."""
        return self._tls_only("client_key_pem").client_pem("key")

    @property
    def client_cert_path(self) -> str:
        """Mutual TLS: the path of a file holding :attr:`client_cert_pem`, for clients that
        take ``certfile=``; made on first use next to :attr:`ca_path`, removed when the peer
        stops (asking after the stop is a :class:`~fakepeer.ScriptError`)."""
        tls = self._tls_only("client_cert_path")
        return tls.path(
            "client_cert_path", "client.pem", tls.client_pem("cert", "client_cert_path")
        )

    @property
    def client_key_path(self) -> str:
        """Mutual TLS: the path of a file holding :attr:`client_key_pem` (``keyfile=``),
        removed when the peer stops, like :attr:`client_cert_path`."""
        tls = self._tls_only("client_key_path")
        return tls.path("client_key_path", "client.key", tls.client_pem("key", "client_key_path"))

    # -- the script --------------------------------------------------------------------------

    def on_connection(self, number: int, *, inherit: bool = False) -> ConnectionScript:
        """The own script of the ``number``-th connection (counting from 1).

        By default that connection follows this script *instead of* the peer's: its
        greetings, its expectations, its permanent rules, or its handler. With
        ``inherit=True`` it *adds to* the peer's script: a message is tried against the
        connection's next expectation, its ``always`` rules, the peer's ``always`` rules,
        its ``otherwise`` rules, then the peer's; it is greeted by its own ``on_connect``
        rules, or the peer's if it has none. The peer's expectations (one ordered sequence
        over the connections that follow the peer's script) and its handler are not
        inherited. Its unmet expectations fail the test like the peer's (also when that
        connection never comes). ``inherit=True`` holds once given: ``on_connection(n)``
        later returns the same script; ``inherit`` not a bool is a
        :class:`~fakepeer.ScriptError`.
        """
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ScriptError(f"on_connection() takes a connection number >= 1, got {number!r}")
        if not isinstance(inherit, bool):
            raise ScriptError(
                f"on_connection({number}, inherit=...) takes True (add to the peer's script) "
                f"or False (replace it), got {inherit!r}"
            )
        with self._lock:
            if number <= len(self._conversation.connections):
                raise ScriptError(
                    f"on_connection({number}): connection #{number} has already arrived; "
                    "script it before the client connects"
                )
            script = self._conversation.script_for(number)
            if inherit:
                script.inherits(self._conversation.script)
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

    def assert_tls(
        self,
        *,
        connection: int | None = None,
        version: ssl.TLSVersion | str | None = None,
        cipher: str | None = None,
        sni: str | None = None,
        alpn: str | None = None,
        client_subject: str | None = None,
    ) -> None:
        """Fail unless every connection (or only the ``connection``-th, counting from 1) finished a
        TLS handshake that agreed on each value given: ``version`` (an :class:`ssl.TLSVersion`, or
        its name as the transcript shows it: ``"TLSv1.3"``; another name is a
        :class:`~fakepeer.ScriptError`), ``cipher`` (OpenSSL's name), ``sni`` (the name the client
        asked for), ``alpn`` (the application protocol) and ``client_subject`` (the client
        certificate's subject). A value left None is not checked; to check that one is absent (no
        SNI, say), read ``connection.tls`` (:class:`~fakepeer.TLSInfo`) of :attr:`connections`. A
        plain-text connection (not upgraded yet, or not at all) fails it, and so does a peer no
        client connected to. The failure shows the transcript. :class:`~fakepeer.ScriptError` for a
        ``connection`` number that did not arrive."""
        __tracebackhide__ = True
        given = {
            "version": version,
            "cipher": cipher,
            "sni": sni,
            "alpn": alpn,
            "client_subject": client_subject,
        }
        if isinstance(version, str):
            given["version"] = tls_version(version)
        expected = {name: value for name, value in given.items() if value is not None}
        with _reading(self._lock, self._conversation):
            records = [(record.id, record.tls) for record in self._conversation.connections]
        if self._udp:
            raise ScriptError("assert_tls(): a UDP peer (transport='udp') has no TLS")
        if connection is not None:
            if isinstance(connection, bool) or not isinstance(connection, int):
                raise ScriptError(
                    f"assert_tls(connection=...) takes a connection's number (an int, from 1), "
                    f"got {connection!r}"
                )
            chosen = [item for item in records if item[0] == connection]
            if not chosen:
                raise ScriptError(
                    f"assert_tls(connection={connection!r}): {len(records)} connection(s) "
                    "arrived (they count from 1)"
                )
            records = chosen
        self._assertion(check_tls(records, expected))
