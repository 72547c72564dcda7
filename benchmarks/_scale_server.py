"""The server side of the scale case (``case_scale.py``): one contender, alone in a process.

Run as ``python _scale_server.py CONTENDER`` (one of :data:`CONTENDERS`). It raises its own
``RLIMIT_NOFILE`` soft limit to the hard one, starts the contender on ``127.0.0.1``, port 0,
and then speaks a line protocol with its parent on stdin/stdout:

- when it listens, it prints the port;
- ``rss``: it runs ``gc.collect()`` and prints its resident memory (``VmRSS`` of
  ``/proc/self/status``) in bytes;
- ``quit`` (or end of input: the parent is gone): it stops the server and exits 0. A fakepeer
  contender leaves ``serve()``, which judges the conversation and raises (exit status 1, the
  traceback on stderr) if it saw a problem.

Every contender answers ``PING\\n`` with ``PONG\\n`` on every connection and keeps it open
until the client closes it. The parent (``case_scale.py``) also imports the constants and
helpers here, so both sides agree on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Final

HOST: Final = "127.0.0.1"
REQUEST: Final = b"PING\n"
RESPONSE: Final = b"PONG\n"
#: The listen backlog of every contender: fakepeer's own (``BACKLOG`` in
#: ``src/fakepeer/_peerserver.py``, capped by the system's ``net.core.somaxconn``), which a
#: caller cannot change; the bare baselines are given the same (``asyncio.start_server``'s
#: own default is 100), so all queue alike. Written out, not imported: a baseline's process
#: never loads fakepeer (case_scale checks that the two agree).
BACKLOG: Final = 4096
#: The table labels, in the order the case lists them.
CONTENDERS: Final = ("asyncio streams", "asyncio Protocol", "fakepeer (in-loop)", "fakepeer (hub)")
#: How long the bare baselines wait for their handlers when told to quit.
STOP_TIMEOUT: Final = 5.0


def raise_fd_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; return the soft limit
    in force afterwards (unchanged if the system refuses)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # Linux caps it at fs.nr_open, 1,048,576 unless raised
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def resident_bytes() -> int:
    """This process's resident memory (``VmRSS``), in bytes, after a full collection."""
    gc.collect()
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                value, unit = line.split()[1:3]
                if unit != "kB":
                    raise RuntimeError(f"VmRSS in {unit!r}, not kB")
                return int(value) * 1024
    raise RuntimeError("no VmRSS line in /proc/self/status")


def answer(text: object) -> None:
    """One line to the parent."""
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def obey(command: str) -> bool:
    """Carry out a command that needs no server; False when it says to stop."""
    command = command.strip()
    if command in ("", "quit"):  # "" is the end of input: the parent is gone
        return False
    if command == "rss":
        answer(resident_bytes())
        return True
    raise SystemExit(f"_scale_server: unknown command {command!r}")


# -- the bare baselines ---------------------------------------------------------------------------


class PongProtocol(asyncio.Protocol):
    """The lower bound: ``PONG`` written from ``data_received``, no streams or tasks."""

    __slots__ = ("transport",)

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if lines := data.count(b"\n"):
            self.transport.write(RESPONSE * lines)


class StreamsServer:
    """The baseline: ``asyncio.start_server`` with a readline/write handler."""

    def __init__(self) -> None:
        self.handlers: set[asyncio.Task[Any]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while line := await reader.readline():
                if line == REQUEST:
                    writer.write(RESPONSE)
        except ConnectionError:
            pass
        finally:
            writer.close()
            self.handlers.discard(task)

    async def finish(self) -> None:
        """Let the handlers see their clients' EOF and end (bounded)."""
        if self.handlers:
            await asyncio.wait(list(self.handlers), timeout=STOP_TIMEOUT)


async def settle() -> None:
    """One turn of the loop, for the transports' last callbacks."""
    await asyncio.sleep(0)


# -- hosting ------------------------------------------------------------------------------------


async def read_commands(on_command: Callable[[str], bool]) -> None:
    """Feed stdin's lines to ``on_command`` without blocking the loop, until it says stop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while on_command((await reader.readline()).decode("ascii", "replace")):
            pass
    finally:
        transport.close()


async def serve_in_loop(contender: str) -> None:
    """An in-loop contender: serve in this loop while reading commands."""
    loop = asyncio.get_running_loop()
    if contender == "fakepeer (in-loop)":
        # Imported here, so that the bare baselines' processes never load fakepeer (or pytest).
        from fakepeer import FakePeer, Lines  # noqa: PLC0415

        peer = FakePeer(framing=Lines())
        peer.always(b"PING").reply(b"PONG")
        async with peer.serve():
            answer(peer.address[1])
            await read_commands(obey)
        return
    if contender == "asyncio streams":
        streams = StreamsServer()
        server = await asyncio.start_server(streams.handle, HOST, 0, backlog=BACKLOG)
        after: Callable[[], Awaitable[object]] = streams.finish
    elif contender == "asyncio Protocol":
        server = await loop.create_server(PongProtocol, HOST, 0, backlog=BACKLOG)
        after = settle
    else:
        raise SystemExit(f"_scale_server: unknown contender {contender!r}")
    async with server:
        answer(server.sockets[0].getsockname()[1])
        await read_commands(obey)
    await after()


def serve_on_hub() -> None:
    """fakepeer on its hub thread; this (main) thread reads the commands."""
    from fakepeer import FakePeer, Lines  # noqa: PLC0415  (see serve_in_loop)

    peer = FakePeer(framing=Lines())
    peer.always(b"PING").reply(b"PONG")
    with peer.serve():
        answer(peer.address[1])
        while obey(sys.stdin.readline()):
            pass


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CONTENDERS:
        print(f"usage: _scale_server.py {{{' | '.join(CONTENDERS)}}}", file=sys.stderr)
        return 2
    raise_fd_limit()
    if argv[0] == "fakepeer (hub)":
        serve_on_hub()
    else:
        asyncio.run(serve_in_loop(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
