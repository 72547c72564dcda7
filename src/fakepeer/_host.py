"""The host: what a :class:`~fakepeer.FakePeer` and a :class:`~fakepeer.Proxy` share.

A :class:`Host` listens, serves (``serve()``, on the hub or in the caller's loop), keeps the
record (connections, transcript, report), gives the verdict (``check()``, ``verify()``),
waits for connections, applies ``faults`` and refuses or stops. It writes no script: a
:class:`~fakepeer.FakePeer` adds the script's methods, a :class:`~fakepeer.Proxy` a relay
(its own runtime server class, :meth:`Host._make_server`).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

from . import _accepting, _hosting, _listening
from ._acceptfaults import AcceptQueueFull
from ._closes import Closes
from ._connection import Connection
from ._conversation import Conversation
from ._errors import (
    HubBlocked,
    ScriptError,
    WaitTimeout,
)
from ._faultclasses import Refuse
from ._faults import Fault
from ._faultset import Faults
from ._framing import Framing, check_framing
from ._hub import hub
from ._inspection import Inspection, _reading
from ._runtime import MAX_SEND_BUFFER, PeerServer, clock
from ._serving import Serving
from ._tls import TLS
from ._transcript import DEFAULT_BUDGET
from ._wait import Waiters, current_async_library

__all__ = ["STOP_TIMEOUT", "Host"]

_Self = TypeVar("_Self", bound="Host")

#: How long leaving ``serve()`` may wait for clients to take what the peer wrote.
STOP_TIMEOUT: Final = 1.0


async def _refused(server: PeerServer) -> None:
    server.refuse()


async def _run(act: Callable[[PeerServer], None], server: PeerServer) -> None:
    act(server)


class Host(Closes, Inspection):
    """A server on loopback, served, recorded and judged; see the module docstring.

    ``title`` heads the transcript; the other keywords are :class:`~fakepeer.FakePeer`'s.
    """

    #: True for a Proxy: it relays client bytes upstream, which faults can shape too.
    _relays = False
    #: The TLS the peer serves (``FakePeer(tls=True)``), or None for plain TCP.
    _tls: TLS | None = None

    def __init__(
        self,
        *,
        title: str,
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
    ) -> None:
        self.framing: Framing = check_framing(framing)
        #: What frames the peer's writes: ``framing`` unless ``reply_framing`` was given.
        self.reply_framing: Framing = (
            self.framing if reply_framing is None else check_framing(reply_framing, "reply_framing")
        )
        self.name = name
        owner = type(self).__name__
        self._where = _listening.where(host, port, unix, external=external, owner=owner)
        self.external = external
        #: Every address listened on, once bound (``(host, port)`` or a Unix socket's path).
        self._addresses: tuple[tuple[str, int] | str, ...] = ()
        if (
            isinstance(max_send_buffer, bool)
            or not isinstance(max_send_buffer, int)
            or max_send_buffer < 1
        ):
            raise ScriptError(
                f"{owner}(max_send_buffer=...) takes a whole number of bytes >= 1, "
                f"got {max_send_buffer!r}"
            )
        self.max_send_buffer = max_send_buffer
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ScriptError(
                f"{type(self).__name__}(timeout=...) takes a positive number of seconds, "
                f"got {timeout!r}"
            )
        self.timeout = timeout
        self._lock = threading.RLock()
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ScriptError(f"{owner}(seed=...) takes a whole number, got {seed!r}")
        self._conversation = Conversation(
            self.framing,
            title,
            transcript_budget=transcript_budget,
            seed=random.getrandbits(32) if seed is None else seed,
            reply_framing=self.reply_framing,
        )
        self._handles: list[Connection] = []  # the user's handles, kept after the stop
        #: Network faults on what the peer sends; see :class:`Faults`.
        self.faults = Faults(self)
        self._waiters = Waiters(self._lock)
        self._server: PeerServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = "new"  # new -> (listening ->) serving -> stopped
        self._background: set[asyncio.Task[None]] = set()  # re-listening after refuse()

    @property
    def seed(self) -> int:
        """The seed of the faults' randomness (give it back as ``FakePeer(seed=...)`` to
        replay a run)."""
        return self._conversation.seed

    # -- serving -----------------------------------------------------------------------------

    def serve(self: _Self) -> Serving[_Self]:
        """Serve the script: ``with`` on the hub thread, ``async with`` in this loop."""
        return Serving(self)

    def _claim(self) -> None:
        if self._state != "new":
            raise RuntimeError(f"{self!r} already served; a FakePeer serves once, make a new one")
        self._state = "starting"

    def _check_fault(self, fault: Fault) -> None:
        """:class:`~fakepeer.ScriptError` if ``fault`` does not apply to this peer (a
        FakePeer checks its transport's)."""

    def _make_server(self, server: type[PeerServer] = PeerServer, **extra: Any) -> PeerServer:
        """The runtime server of this peer (a Proxy passes its own class and upstream)."""

        def changed() -> None:
            if self._waiters:
                self._waiters.notify()

        return server(
            self._conversation,
            self._lock,
            changed,
            self._where,
            timeout=self.timeout,
            max_send_buffer=self.max_send_buffer,
            handles=self._handles,
            tls=self._tls,
            **extra,
        )

    def _listen(self) -> PeerServer:
        """Bind and listen now, serving nothing yet (the kernel queues the clients)."""
        if self._state == "listening" and self._server is not None:
            return self._server
        self._claim()
        server = self._make_server()
        try:
            self._addresses = server.listen()
        except BaseException:
            self._state = "stopped"
            raise
        self._server = server
        self._state = "listening"
        return server

    def _over(self) -> str:
        """What the transcript's first line says after the address: the transport, unless
        plain TCP (or a plain Unix socket)."""
        if getattr(self, "_udp", False):
            return " over UDP"
        if self._tls is None:
            return ""
        return " (plain text, then TLS by STARTTLS)" if self._tls.starttls else " over TLS"

    def _started(self, server: PeerServer) -> None:
        assert server.loop is not None
        self._server, self._loop = server, server.loop
        address = _listening.describe(self._addresses) + self._over()
        if self.external:
            address += " (external=True: reachable beyond loopback)"
        self._conversation.started(address, clock(), time.time())
        self._state = "serving"
        if any(isinstance(fault, Refuse) for fault in self._conversation.faults):
            self._refuse(True)
        if any(isinstance(fault, AcceptQueueFull) for fault in self._conversation.faults):
            self._queue_full(True)
        self.faults._arm()  # the timers of the faults on a schedule

    def _start_on_hub(self) -> None:
        server = self._listen()
        _hosting.attach_to_hub(server)
        self._started(server)

    def _stopped(self) -> None:
        self._state = "stopped"
        self.faults._disarm()
        if self._tls is not None:
            self._tls.remove()  # the CA file, if a client asked for it

    def _stop_on_hub(self, *, wait: bool = True) -> None:
        server, self._server = self._server, None
        self._stopped()
        if server is not None:
            try:
                _hosting.stop(server, STOP_TIMEOUT, wait=wait)
            except HubBlocked as blocked:  # the verdict raises it, first, with the rest
                # (no lock: the blocked hub holds it; its record is frozen now)
                self._conversation.hub_blocked(blocked)
            finally:
                _listening.release(self._where)

    async def _start_in_loop(self) -> None:
        server = self._listen()
        _hosting.attach_here(server)
        self._started(server)

    async def _stop_in_loop(self) -> None:
        server, self._server = self._server, None
        self._stopped()
        if server is not None:
            try:
                await _hosting.stop_in_loop(server, STOP_TIMEOUT)
            finally:
                _listening.release(self._where)

    def _settle(self, *, closes: bool = False) -> None:
        """Let the hub read what clients already sent before judging (hub-hosted peers);
        ``closes``: their closes too."""
        server = self._server
        loop = self._loop
        if (
            server is not None
            and loop is not None
            and not hub.in_hub_thread()
            and (loop is hub.loop() or hub.given_up(loop))
        ):
            _hosting.settle(server, closes=closes)

    def _refuse(self, refusing: bool) -> None:
        """Stop or resume listening, on the loop that serves. Listening resumes at once (the
        socket listens before this returns); accepting follows on the loop."""
        server, loop = self._server, self._loop
        if server is None or loop is None:
            return  # not serving yet: _started() applies it
        on_hub = not hub.in_hub_thread() and (loop is hub.loop() or hub.given_up(loop))
        if refusing:
            if on_hub:
                _hosting.call(server, _refused(server), "stop listening (a refuse fault)")
            else:
                server.refuse()
            return
        socks = server.listen_again()
        if socks is None:
            return
        if on_hub:
            _hosting.call(server, server.accept_again(socks), "listen again")
        else:  # in the serving loop itself: accepting starts on its next turn
            task = loop.create_task(server.accept_again(socks))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _queue_full(self, full: bool) -> None:
        """Leave the accept queue full (an ``accept_queue_full`` fault), or accept again, on
        the loop that serves, before this returns (see :mod:`~fakepeer._accepting`)."""
        server, loop = self._server, self._loop
        if server is None or loop is None:
            return  # not serving yet: _started() applies it
        act = _accepting.fill if full else _accepting.drain
        if not hub.in_hub_thread() and (loop is hub.loop() or hub.given_up(loop)):
            what = "fill the accept queue" if full else "accept again"
            _hosting.call(server, _run(act, server), f"{what} (an accept_queue_full fault)")
        else:  # in the serving loop itself
            act(server)

    def _conclude(self, exc: BaseException | None) -> None:
        """After stopping: raise the verdict, or note it on the exception already raised."""
        __tracebackhide__ = True
        problem = self._verdict(final=True)
        if problem is None or problem is exc:  # a wait or check() already raised it
            return
        if exc is None:
            raise problem
        if isinstance(exc, Exception):
            exc.add_note(f"\nfakepeer: the peer also saw a problem:\n{problem}")

    # -- TLS (FakePeer(tls=True), Proxy(tls=True)) ---------------------------------------------

    def _tls_only(self, what: str) -> TLS:
        if self._tls is None:
            owner = type(self).__name__
            upgrade = ", FakePeer(tls='starttls') upgrades to it with .start_tls()"
            noun = "peer" if owner == "FakePeer" else owner.lower()
            raise ScriptError(
                f"{what}: this {noun} serves plain TCP; {owner}(tls=True) serves TLS"
                + (upgrade if owner == "FakePeer" else "")
            )
        return self._tls

    def client_ssl_context(self) -> ssl.SSLContext:
        """A new :class:`ssl.SSLContext` for a client of this peer (or proxy): it trusts the
        test's CA (and nothing else) and checks the host name (one of ``tls_hostnames``: give
        it as ``server_hostname``, or connect to it); it offers ``tls_alpn``'s protocols.
        Raises :class:`~fakepeer.ScriptError` unless it serves TLS (``tls=True``)."""
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

    # -- where --------------------------------------------------------------------------------

    @property
    def address(self) -> Any:
        """Where the peer listens: ``(host, port)``, for
        ``socket.create_connection(peer.address)`` (with ``host='localhost'``, the first of
        the addresses it listens on: 127.0.0.1); for a ``unix=`` peer, the socket's path, a
        :class:`str`, for ``sock.connect(peer.address)``. Typed :data:`~typing.Any` for
        that reason."""
        self._require_serving("address")
        return self._addresses[0]

    @property
    def host(self) -> str:
        """The host the peer listens on (``127.0.0.1`` unless set; with a name, the first
        address it resolved to). :class:`RuntimeError` for a ``unix=`` peer."""
        return self._tcp_address("host")[0]

    @property
    def port(self) -> int:
        """The port the peer listens on (chosen by the OS unless set; one port for every
        address of a name). :class:`RuntimeError` for a ``unix=`` peer."""
        return self._tcp_address("port")[1]

    def _tcp_address(self, what: str) -> tuple[str, int]:
        self._require_serving(what)
        address = self._addresses[0]
        if isinstance(address, str):
            raise RuntimeError(
                f"peer.{what}: this peer listens on a Unix socket ({address}), which has no "
                f"host or port; peer.address is its path"
            )
        return address

    def _where_text(self) -> str:
        """Where the peer listens, as its transcript says it ("" before it listens)."""
        return _listening.describe(self._addresses)

    def _require_serving(self, what: str) -> None:
        if self._state not in ("listening", "serving", "stopped"):
            raise RuntimeError(f"peer.{what} is known once the peer serves: use peer.serve()")

    # -- sync points --------------------------------------------------------------------------

    def _connected(self, count: int) -> Callable[[], bool]:
        conversation = self._conversation
        return lambda: bool(conversation.problems) or len(conversation.connections) >= count

    def _after_wait(self, ok: bool, what: str, timeout: float) -> None:
        __tracebackhide__ = True
        self.check()
        if not ok:
            with _reading(self._lock, self._conversation):
                unmet = self._conversation.unmet()
                transcript = self._now().render()
            waiting = "".join(f"\n  still expected: {rule.describe()}" for rule in unmet)
            error = WaitTimeout(f"timed out after {timeout} s waiting for {what}{waiting}")
            raise error.with_transcript(transcript)

    def _blocking_ok(self, method: str) -> None:
        if self._state != "serving":
            raise RuntimeError(f"peer.{method}() needs a serving peer: use peer.serve()")
        if hub.in_hub_thread():
            raise RuntimeError(f"peer.{method}() called from the hub thread would deadlock")
        if (
            self._loop is not None
            and current_async_library() == "asyncio"
            and asyncio.get_running_loop() is self._loop
        ):
            raise RuntimeError(
                f"peer.{method}() would block the event loop that serves this peer; "
                f"use 'await peer.{method}_async()'"
            )

    def wait_for_connections(self, count: int = 1, *, timeout: float | None = None) -> None:
        """Block until ``count`` connections have arrived in all (or a problem was seen).

        Raises :class:`~fakepeer.WaitTimeout` after ``timeout`` (default: the peer's timeout);
        :class:`~fakepeer.ScriptError` if ``timeout`` is not a finite number of seconds > 0.
        """
        limit = self._wait_limit("wait_for_connections", timeout)
        self._blocking_ok("wait_for_connections")
        ok = self._waiters.wait(self._connected(count), limit)
        self._after_wait(ok, f"{count} connection(s)", limit)

    async def wait_for_connections_async(
        self, count: int = 1, *, timeout: float | None = None
    ) -> None:
        """:meth:`wait_for_connections` for asyncio and trio code."""
        limit = self._wait_limit("wait_for_connections_async", timeout)
        ok = await self._waiters.wait_async(self._connected(count), limit)
        self._after_wait(ok, f"{count} connection(s)", limit)

    def _finished(self) -> Callable[[], bool]:
        conversation = self._conversation
        return lambda: bool(conversation.problems) or conversation.done

    def wait_until_done(self, *, timeout: float | None = None) -> None:
        """Block until every ``expect`` was met (or a problem was seen).

        Raises :class:`~fakepeer.WaitTimeout` naming the unmet expectations after ``timeout``
        (default: the peer's timeout); :class:`~fakepeer.ScriptError` if ``timeout`` is not
        a finite number of seconds > 0.
        """
        limit = self._wait_limit("wait_until_done", timeout)
        self._blocking_ok("wait_until_done")
        ok = self._waiters.wait(self._finished(), limit)
        self._after_wait(ok, "the script to be done", limit)

    async def wait_until_done_async(self, *, timeout: float | None = None) -> None:
        """:meth:`wait_until_done` for asyncio and trio code."""
        limit = self._wait_limit("wait_until_done_async", timeout)
        ok = await self._waiters.wait_async(self._finished(), limit)
        self._after_wait(ok, "the script to be done", limit)
