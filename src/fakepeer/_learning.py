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
slower than ``settle`` between its parts is cut, and its rest goes with the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ._connection import Connection
from ._errors import ScriptError
from ._framing import Decoder, Framing
from ._peer import FakePeer
from ._recording_toml import KINDS, bytes_value, check_writer, http_match, table_text
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
    to be over; ``timeout`` (seconds, default 5) how long to wait for a connection and the
    first byte of an answer (none: the reply is empty). Raises
    :class:`~fakepeer.ScriptError` when the peer's replies are framed (they must go out as
    written, ``[reply_framing] kind = "none"``, as ``fakepeer record`` writes them: a
    server's answer is already framed) or tomli-w is missing.
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
        self.peer = peer
        self.upstream = upstream
        self.settle = settle
        self.timeout = timeout
        self._wire = _wire(peer.framing)
        self._http = KINDS.get(type(peer.framing).__name__) == "http1"
        self._links: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        #: The new exchanges, in order: (connection number, message, answer).
        self.learned: list[tuple[int, bytes, bytes]] = []
        rule = peer.otherwise()
        rule.where = "learning: asks the server"  # not this module's line: the user's words
        rule.reply(self._forward)
        self._unwatch = peer.transcript._watch(self._watch)

    async def _forward(self, message: bytes, connection: Connection) -> bytes:
        number = connection.id
        link = self._links.get(number)
        if link is None:
            async with asyncio.timeout(self.timeout):
                link = await asyncio.open_connection(*self.upstream)
            self._links[number] = link
            await self._answer(link[0], first=self.settle)  # its greeting: the script's is sent
        reader, writer = link
        writer.write(self._wire(message))
        await writer.drain()
        answer = await self._answer(reader, first=self.timeout)
        self.learned.append((number, message, answer))
        return answer

    async def _answer(self, reader: asyncio.StreamReader, *, first: float) -> bytes:
        """What the server sends until it is quiet for ``settle`` seconds (the first byte
        within ``first`` seconds), or closes."""
        data = bytearray()
        wait = first
        while True:
            try:
                async with asyncio.timeout(wait):
                    chunk = await reader.read(65536)
            except TimeoutError:
                return bytes(data)
            if not chunk:
                return bytes(data)
            data += chunk
            wait = self.settle

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
