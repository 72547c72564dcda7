"""Learn mode: a peer that answers from its script, and forwards to a real server what the
script does not know, recording the new exchanges (``fakepeer learn``).

:class:`Learner` gives a :class:`~fakepeer.FakePeer` (made from a script file) an
``otherwise()`` rule whose reply is an ``async`` callable: it sends the message to the
upstream server on a connection of its own for that client connection (made at the first
message the script does not know; what the server sends first, its greeting, is read and
set aside: the script greeted already), reads the server's answer until it has been quiet
for ``settle`` seconds, and replies with it. Each new exchange is kept, and
:meth:`Learner.learned_text` gives them as ``[[always]]`` rules to append to the script.

What this cannot do, by design: the server sees only the messages the script does not
answer, so it fits protocols whose requests stand alone (HTTP, most RPC, a lookup); a
conversation whose state builds up (a login, SMTP) is better recorded again whole
(``fakepeer record``). The end of an answer is found by quiet, not by the protocol: an answer
slower than ``settle`` between its parts is cut, and its rest goes with the next one; a
greeting the server sends later than ``settle`` after the connection is made is taken for
the first answer. The script needs a framing of messages: under :class:`~fakepeer.Raw` a
request is whatever bytes one read brought (half a request, or two).

A server that closed its connection after an answer gets a new one for the next message. A
server that cannot be reached, or closes without answering, fails the client's connection
with an :class:`~fakepeer.UpstreamError` naming it; one that does not answer in time gives
an empty reply, learned as such and noted in :attr:`Learner.notes`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ._connection import Connection
from ._errors import ScriptError, UpstreamError
from ._framing import Decoder, Framing
from ._peer import FakePeer
from ._recording_toml import KINDS, bytes_value, check_writer, http_match, table_text
from ._show import show
from ._transcript import Event

__all__ = ["Learner"]

#: The events after which a client's connection is over: its upstream one is closed.
_OVER = frozenset({"eof", "closed", "reset", "lost"})


def _wire(framing: Framing) -> Callable[[bytes], bytes]:
    """How a message the framing cut is sent on: its encoding, when that is what the framing
    cuts back into the same message (``Lines``: the line end again), else as it is (a
    protocol kit's messages, a request of ``http1``, a turn of ``Raw``, are the whole)."""

    def wire(message: bytes) -> bytes:
        try:
            data = framing.encode(message)
        except Exception:  # a kit's encode checks replies: a request is no reply
            return message
        buffer = bytearray(data)
        return data if Decoder(framing).take(buffer, True) == [message] else message

    return wire


class Learner:
    """Teach ``peer`` to forward what its script does not know to ``upstream`` (``(host,
    port)``), learning the answers.

    ``settle`` (seconds, default 0.2) is how long the server must stay quiet for its answer
    (and its greeting) to be over; ``timeout`` (seconds, default 5) how long to wait for a
    connection and the first byte of an answer (none: the reply is empty, and a line of
    :attr:`notes` says so). All of it fits within the peer's own ``timeout`` for a reply
    callable: a message is answered (or found unanswered) before the peer gives up on it.
    Raises :class:`~fakepeer.ScriptError` when the peer's replies are framed (they must go
    out as written, ``[reply_framing] kind = "none"``, as ``fakepeer record`` writes them: a
    server's answer is already framed), when its framing is :class:`~fakepeer.Raw` (it has
    no messages to forward), when its script has an ``otherwise()`` rule of its own (it
    would answer what the server should), or tomli-w is missing.
    """

    def __init__(
        self,
        peer: FakePeer,
        upstream: tuple[str, int],
        *,
        settle: float = 0.2,
        timeout: float = 5.0,
    ) -> None:
        check_writer()
        replies = peer.reply_framing
        if replies.encode(b"x") != b"x":
            raise ScriptError(
                f"learning needs a script whose replies go out as written, and its "
                f'reply_framing is {replies!r}: add [reply_framing] kind = "none" (as '
                "fakepeer record writes)"
            )
        if peer.framing.streaming:
            raise ScriptError(
                f"learning forwards the client's messages, and the script's framing is "
                f"{peer.framing!r}, which has none (a request would be whatever one read "
                "brought: half of it, or two): set [framing] to the client's protocol "
                '(kind = "lines", "http1", "resp"...)'
            )
        own = peer._conversation.script_for(None).fallbacks
        if own:
            raise ScriptError(
                f"the script has an [[otherwise]] rule ({own[0].where}): it answers every "
                "message no other rule expects, so nothing would reach the server and "
                "nothing would be learned; remove it to learn"
            )
        self.peer = peer
        self.upstream = upstream
        self.settle = settle
        self.timeout = timeout
        #: What the server is called in errors: ``HOST:PORT``.
        self.server = f"{upstream[0]}:{upstream[1]}"
        self._wire = _wire(peer.framing)
        self._http = KINDS.get(type(peer.framing).__name__) == "http1"
        self._links: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        #: The new exchanges, in order: (connection number, message, answer).
        self.learned: list[tuple[int, bytes, bytes]] = []
        #: What the user should know of them: a message the server did not answer in time.
        self.notes: list[str] = []
        rule = peer.otherwise()
        rule.where = f"forwarded to {self.server}"  # not this module's line: the user's words
        rule.reply(self._forward)
        self._unwatch = peer.transcript._watch(self._watch)

    async def _forward(self, message: bytes, connection: Connection) -> bytes:
        number = connection.id
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Within the peer's own bound on a reply callable, with room to reply.
        deadline = start + max(0.05, self.peer.timeout - max(0.1, self.peer.timeout / 10))
        first = min(start + self.timeout, deadline)
        link = self._links.get(number)
        if link is not None and link[0].at_eof():  # the server closed after its last answer
            link[1].close()
            link = None
        if link is None:
            link = await self._connect(number, first, deadline)
            self._links[number] = link
        reader, writer = link
        try:
            writer.write(self._wire(message))
            await writer.drain()
            answer, answered = await self._answer(reader, first, deadline)
        except OSError as exc:
            raise self._problem(number, f"failed: {type(exc).__name__}: {exc}") from exc
        if not answered and reader.at_eof():
            raise self._problem(number, f"closed the connection without answering {show(message)}")
        if not answered:
            self.notes.append(
                f"connection #{number}: the upstream server {self.server} did not answer "
                f"{show(message)} within {first - start:.1f} s: learned with no reply"
            )
        self.learned.append((number, message, answer))
        return answer

    async def _connect(
        self, number: int, first: float, deadline: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new connection to the server, its greeting (if any) read and set aside."""
        try:
            async with asyncio.timeout_at(first):
                link = await asyncio.open_connection(*self.upstream)
        except TimeoutError:
            raise self._problem(number, "did not accept the connection in time") from None
        except ConnectionRefusedError as exc:
            raise self._problem(number, "refused the connection") from exc
        except OSError as exc:
            raise self._problem(number, f"could not be reached: {exc.strerror or exc}") from exc
        loop = asyncio.get_running_loop()
        await self._answer(link[0], min(loop.time() + self.settle, deadline), deadline)
        return link

    def _problem(self, number: int, what: str) -> UpstreamError:
        return UpstreamError(
            f"connection #{number}: the upstream server {self.server} {what}", connection=number
        )

    async def _answer(
        self, reader: asyncio.StreamReader, first: float, deadline: float
    ) -> tuple[bytes, bool]:
        """What the server sends until it is quiet for ``settle`` seconds (the first byte by
        ``first``, the loop's time), or closes, or ``deadline`` comes; and whether it sent
        anything."""
        loop = asyncio.get_running_loop()
        data = bytearray()
        until = first
        while True:
            try:
                async with asyncio.timeout_at(until):
                    chunk = await reader.read(65536)
            except TimeoutError:
                return bytes(data), bool(data)
            if not chunk:
                return bytes(data), bool(data)
            data += chunk
            until = min(loop.time() + self.settle, deadline)

    def _watch(self, event: Event) -> None:
        """Close the upstream connection of a client connection that is over."""
        if event.kind in _OVER:
            link = self._links.pop(event.connection, None)
            if link is not None:
                with contextlib.suppress(RuntimeError):  # its loop is gone
                    link[1].close()

    def close(self) -> None:
        """Close what is left of the upstream connections, and stop watching the peer."""
        self._unwatch()
        for number in list(self._links):
            self._watch(Event(0.0, number, "closed"))

    def learned_text(self, source: str) -> str:
        """The new exchanges as ``[[always]]`` rules (one per message, its first answer),
        under a comment naming ``source`` and the server, to append to the script."""
        lines = [f"\n# Learned by fakepeer from {self.upstream[0]}:{self.upstream[1]}"]
        lines.append(f"# (what {source} did not know)")
        seen: set[bytes] = set()
        for _, message, answer in self.learned:
            if message in seen:
                continue
            seen.add(message)
            match = (http_match(message) if self._http else None) or bytes_value(message)
            lines += ["", table_text("[[always]]", {"match": match, "reply": bytes_value(answer)})]
        return "\n".join(lines) + "\n"
