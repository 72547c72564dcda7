"""Case 8: a TLS handshake and one exchange, against a bare asyncio TLS server.

One sample: connect to a server already serving, the TLS handshake, one ``PING``/``PONG``,
close the client. The servers serve for the whole case (what a sample measures is the
connection, not the server's start and stop: the ``lifecycle`` case has those).

Contenders, each with the client a test of that kind would use, all four serving the same
kind of certificate (trustme's default, issued by the peer's own test CA for ``127.0.0.1``
and ``localhost``) to one client context that trusts that CA:

- ``asyncio streams TLS`` (the baseline): ``asyncio.start_server(ssl=...)``, a readline/write
  handler, in the test's loop; ``fakepeer TLS (in-loop)``: ``FakePeer(tls=True)`` and
  ``async with peer.serve()``; an asyncio streams client with ``ssl=``;
- ``asyncio streams TLS (thread)`` (the same bare server on a background loop thread) and
  ``fakepeer TLS (hub)`` (``with peer.serve()``): a blocking ``socket`` client wrapped with
  ``SSLContext.wrap_socket`` in the main thread.

Samples of every contender alternate, cycling through every order, in one process.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from _common import LoopThread, interleaved
from _results import Measurement, Plan, Table, Target
from _servers import HOST, REQUEST, RESPONSE, TIMEOUT, Address, StreamsServer, async_trip

from fakepeer import FakePeer, Lines

now = time.perf_counter_ns

BASELINE = "asyncio streams TLS"
IN_LOOP = (BASELINE, "fakepeer TLS (in-loop)")
THREADED = ("asyncio streams TLS (thread)", "fakepeer TLS (hub)")
#: The issue's target, as for the plain exchange.
AT_MOST = 1.3


@dataclass
class Contender:
    """``sample()`` returns the seconds of one connection (maybe as an awaitable)."""

    name: str
    sample: Callable[[], float | Awaitable[float]]


class TLSStreamsServer(StreamsServer):
    """The baseline's server, serving TLS with ``context``."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__("pingpong")
        self.context = context

    async def start(self) -> Address:
        self.server = await asyncio.start_server(self._handle, HOST, 0, ssl=self.context)
        sockname = self.server.sockets[0].getsockname()
        return (str(sockname[0]), int(sockname[1]))


def tls_peer() -> FakePeer:
    peer = FakePeer(framing=Lines(), name="tls", tls=True)
    peer.always(b"PING").reply(b"PONG")
    return peer


def bare_context(peer: FakePeer) -> ssl.SSLContext:
    """A server context with a certificate of the peer's CA, as trustme issues it: the bare
    server's certificate is the peer's kind, trusted by the same client context."""
    tls = peer._tls
    assert tls is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.ca.issue_cert(HOST, "localhost").configure_cert(context)
    return context


# -- the clients ----------------------------------------------------------------------------------


async def async_sample(address: Address, context: ssl.SSLContext) -> float:
    start = now()
    reader, writer = await asyncio.open_connection(*address, ssl=context)
    await async_trip(reader, writer)
    writer.close()
    await writer.wait_closed()
    return (now() - start) / 1e9


def blocking_sample(address: Address, context: ssl.SSLContext) -> float:
    start = now()
    raw = socket.create_connection(address, timeout=TIMEOUT)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
    with context.wrap_socket(raw, server_hostname=address[0]) as sock:
        sock.sendall(REQUEST)
        data = b""
        while not data.endswith(b"\n"):
            more = sock.recv(64)
            if not more:
                break
            data += more
        if data != RESPONSE:
            raise AssertionError(f"the server answered {data!r}, not PONG")
    return (now() - start) / 1e9


# -- measuring ------------------------------------------------------------------------------------


@contextmanager
def contenders(runner: asyncio.Runner) -> Iterator[list[Contender]]:
    """The four contenders, their servers serving until the block ends."""
    with ExitStack() as stack:
        in_loop = tls_peer()
        hub = tls_peer()
        client = in_loop.client_ssl_context()
        hub_client = hub.client_ssl_context()
        # in the test's loop: the runner's, kept open across samples
        bare = TLSStreamsServer(bare_context(in_loop))
        bare_address = runner.run(bare.start())
        stack.callback(lambda: runner.run(bare.stop()))
        serving = in_loop.serve()
        runner.run(serving.__aenter__())
        stack.callback(lambda: runner.run(serving.__aexit__(None, None, None)))
        # on a thread
        loop_thread = LoopThread(10.0)
        stack.callback(loop_thread.close)
        threaded = TLSStreamsServer(bare_context(hub))
        threaded_address = loop_thread.run(threaded.start())
        stack.callback(lambda: loop_thread.run(threaded.stop()))
        stack.enter_context(hub.serve())
        yield [
            Contender(BASELINE, lambda: async_sample(bare_address, client)),
            Contender("fakepeer TLS (in-loop)", lambda: async_sample(in_loop.address, client)),
            Contender(
                "asyncio streams TLS (thread)",
                lambda: blocking_sample(threaded_address, hub_client),
            ),
            Contender("fakepeer TLS (hub)", lambda: blocking_sample(hub.address, hub_client)),
        ]


def run(plan: Plan) -> list[Table]:
    """Measure every contender; see the module docstring."""
    with asyncio.Runner() as runner, contenders(runner) as every:
        values, errors = interleaved(
            runner,
            every,
            lambda c: c.name,
            lambda c: c.sample(),
            rounds=plan.pick(400, 10),
            warmup=plan.pick(20, 2),
        )
    measurements = []
    for name in (*IN_LOOP, *THREADED):
        if name in errors:
            measurements.append(Measurement(name, error=errors[name]))
        else:
            measurements.append(Measurement(name, values=[v * 1e6 for v in values[name]]))
    table = Table(
        case="tls",
        title="A TLS connection: connect, handshake, one exchange, close",
        unit="µs",
        baseline=BASELINE,
        measurements=measurements,
        notes=[
            "The servers serve for the whole case; each sample is one client connection. "
            "The first two share the test's event loop and an asyncio streams client; the "
            "last two use a blocking socket client wrapped by SSLContext.wrap_socket.",
            "Every server's certificate is issued by the peer's test CA (trustme's default "
            "key type); TLS 1.3, no session resumption.",
        ],
    )
    table.targets = [
        Target(
            f"fakepeer TLS (in-loop) at most {AT_MOST}x {BASELINE}",
            table.ratio("fakepeer TLS (in-loop)", BASELINE),
            AT_MOST,
        ),
        Target(
            f"fakepeer TLS (hub) at most {AT_MOST}x asyncio streams TLS (thread)",
            table.ratio("fakepeer TLS (hub)", "asyncio streams TLS (thread)"),
            AT_MOST,
        ),
    ]
    return [table]


if __name__ == "__main__":  # the same as: python -m benchmarks --only tls
    from run import main

    sys.exit(main(["--only", "tls", *sys.argv[1:]]))
