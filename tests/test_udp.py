"""``FakePeer(transport="udp")``: a datagram peer, tested with real stdlib clients on
loopback: a statsd-style client (fire and forget), a DNS-style one (a connected socket, an
id echoed, timeouts and retries), an asyncio ``DatagramProtocol`` one; the datagram faults
(drop, duplicate, reorder, the ICMP refusal), seeded replay, the flood limit, and the
combinations a UDP peer refuses, with their words."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import socket
import struct
from collections.abc import Callable, Iterator

import pytest

from _hosts import Host, hosted
from fakepeer import (
    ANY,
    ConversationError,
    FakePeer,
    Lines,
    ScriptError,
    faults,
    prefix,
    regex,
)

HOSTS: list[Host] = ["hub", "loop"]
#: Bounds every client-side wait that is not itself the point of the test.
CLIENT_TIMEOUT = 5.0


@contextlib.contextmanager
def udp_client(
    address: tuple[str, int], timeout: float = CLIENT_TIMEOUT
) -> Iterator[socket.socket]:
    """A connected UDP socket (it gets ICMP errors, and datagrams from ``address`` only)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        yield sock


# -- statsd: fire and forget --------------------------------------------------------------------


def statsd_client(address: tuple[str, int], lines: list[bytes]) -> None:
    """What a statsd client does: one unconnected ``sendto`` per metric, no answer read."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for line in lines:
            sock.sendto(line, address)


METRICS = [b"page.views:1|c", b"page.views:1|c", b"login.time:320|ms"]


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_a_statsd_client_is_checked_by_the_assertions(host: Host) -> None:
    peer = FakePeer(transport="udp")
    peer.expect(regex(rb"^[a-z.]+:\d+\|(c|ms)$")).times(3)
    async with hosted(peer, host):
        await asyncio.to_thread(statsd_client, peer.address, METRICS)
        await peer.wait_until_done_async()
    peer.assert_received(b"page.views:1|c", times=2)
    peer.assert_received_in_order(b"page.views:1|c", prefix(b"login.time:"))
    assert peer.received == METRICS  # one message per datagram: nothing split or joined
    assert len(peer.connections) == 1  # one client address
    text = peer.render_transcript()
    assert "#1 received   'login.time:320|ms'" in text
    assert "#1 closed     (the peer stopped)" in text


def test_a_metric_the_script_did_not_expect_fails_at_stop_with_the_transcript() -> None:
    peer = FakePeer(transport="udp")
    peer.expect(b"page.views:1|c")
    peer.expect(b"never.sent:1|c")
    with pytest.raises(ConversationError) as info, peer.serve():
        statsd_client(peer.address, [b"page.views:1|c"])
    text = str(info.value)
    assert "never.sent" in text
    assert "#1 received   'page.views:1|c'" in text


def test_a_statsd_client_of_a_refused_port_gets_connection_refused() -> None:
    """The refuse fault closes the socket for real: the kernel answers ICMP port
    unreachable, which a connected client's next call raises; removing it binds the port
    again."""
    peer = FakePeer(transport="udp")
    peer.always(ANY).reply(lambda message: b"ack " + message)
    with peer.serve(), udp_client(peer.address) as sock:
        sock.send(b"one")
        assert sock.recv(100) == b"ack one"
        with peer.faults.refuse():
            sock.send(b"two")  # the port is closed: ICMP comes back
            with pytest.raises(ConnectionRefusedError):
                sock.recv(100)
        sock.send(b"three")  # the same port, bound again
        assert sock.recv(100) == b"ack three"
    assert peer.received == [b"one", b"three"]
    text = peer.render_transcript()
    assert "fault      + refuse()" in text
    assert "the port is closed (datagrams get ICMP port unreachable)" in text


# -- DNS: a request, its answer, an id ----------------------------------------------------------


def query(ident: int, name: bytes) -> bytes:
    return struct.pack("!H", ident) + b"Q " + name


def answer(match: bytes) -> bytes:
    """The peer's reply callable: the request's id (its first 2 bytes), then the answer."""
    return match[:2] + b"A " + match[4:] + b" 192.0.2.1"


def resolve(sock: socket.socket, ident: int, name: bytes, tries: int = 3) -> bytes:
    """What a DNS stub resolver does: send, wait a little, send again, up to ``tries``."""
    for _ in range(tries):
        sock.send(query(ident, name))
        try:
            reply = sock.recv(512)
        except TimeoutError:
            continue
        assert struct.unpack("!H", reply[:2])[0] == ident
        return reply[2:]
    raise TimeoutError(f"no answer for {name!r} after {tries} tries")


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_a_dns_client_gets_its_id_back(host: Host) -> None:
    peer = FakePeer(transport="udp")
    peer.always(lambda message: message[2:4] == b"Q ").reply(answer)

    def client() -> list[bytes]:
        with udp_client(peer.address) as sock:
            return [resolve(sock, 7, b"example.org"), resolve(sock, 8, b"example.net")]

    async with hosted(peer, host):
        replies = await asyncio.to_thread(client)
    assert replies == [b"A example.org 192.0.2.1", b"A example.net 192.0.2.1"]


def test_a_dropped_answer_makes_the_client_retry() -> None:
    peer = FakePeer(transport="udp")
    peer.expect(query(1, b"example.org")).reply(answer).fault(faults.drop())
    peer.expect(query(1, b"example.org")).reply(answer)  # the retry is answered
    with peer.serve(), udp_client(peer.address, timeout=0.2) as sock:
        assert resolve(sock, 1, b"example.org") == b"A example.org 192.0.2.1"
    text = peer.render_transcript()
    assert re.search(r"#1 dropped    '\\x00\\x01A example.org 192.0.2.1' \(by drop\)", text)
    assert len(re.findall(r"#1 received", text)) == 2


def test_a_reordered_pair_arrives_the_other_way_round() -> None:
    peer = FakePeer(transport="udp")
    peer.expect(query(1, b"first.example")).reply(answer).fault(faults.reorder(0.2))
    peer.expect(query(2, b"second.example")).reply(answer)
    with peer.serve(), udp_client(peer.address) as sock:
        sock.send(query(1, b"first.example"))
        sock.send(query(2, b"second.example"))
        ids = [struct.unpack("!H", sock.recv(512)[:2])[0] for _ in range(2)]
    assert ids == [2, 1]
    text = peer.render_transcript()
    assert "(held back: reorder)" in text
    assert text.index("second.example 192.0.2.1") < text.index("first.example 192.0.2.1")


def test_a_duplicated_answer_comes_twice() -> None:
    peer = FakePeer(transport="udp")
    peer.always(ANY).reply(b"pong")
    peer.faults.duplicate()
    with peer.serve(), udp_client(peer.address) as sock:
        sock.send(b"ping")
        assert [sock.recv(10), sock.recv(10)] == [b"pong", b"pong"]
    assert "#1 sent       'pong' (a copy: duplicate)" in peer.render_transcript()


@pytest.mark.parametrize(
    ("fault", "received"),
    [(faults.truncate(2), b"po"), (faults.latency(0.05, 0.02), b"pong")],
    ids=str,
)
def test_the_stream_faults_that_mean_something_for_a_datagram(
    fault: faults.Fault, received: bytes
) -> None:
    peer = FakePeer(transport="udp")
    peer.always(ANY).reply(b"pong")
    peer.faults.add(fault)
    with peer.serve(), udp_client(peer.address) as sock:
        sock.send(b"ping")
        assert sock.recv(10) == received


def dropped_payloads(seed: int) -> list[str]:
    peer = FakePeer(transport="udp", seed=seed)
    peer.expect(ANY).times(40).reply(lambda message: b"re " + message)
    peer.faults.drop(0.5)
    with peer.serve():
        with udp_client(peer.address) as sock:
            for number in range(40):
                sock.send(b"%d" % number)
        peer.wait_until_done()
    return re.findall(r"dropped    '(re \d+)'", peer.render_transcript())


def test_the_same_seed_drops_the_same_datagrams() -> None:
    first = dropped_payloads(1234)
    assert 5 < len(first) < 35  # about half
    assert dropped_payloads(1234) == first
    assert dropped_payloads(4321) != first


# -- clients as "connections" -------------------------------------------------------------------


def test_each_client_address_is_a_connection_with_its_own_script() -> None:
    peer = FakePeer(transport="udp")
    peer.always(b"hello").reply(b"hi, whoever you are")
    peer.on_connection(2).always(b"hello").reply(b"hi, number two")
    with peer.serve(), udp_client(peer.address) as one, udp_client(peer.address) as two:
        ports = [one.getsockname()[1], two.getsockname()[1]]
        one.send(b"hello")
        assert one.recv(100) == b"hi, whoever you are"
        two.send(b"hello")
        assert two.recv(100) == b"hi, number two"
        one.send(b"hello")  # the same address: the same connection
        assert one.recv(100) == b"hi, whoever you are"
    assert [c.client for c in peer.connections] == [f"127.0.0.1:{port}" for port in ports]


def test_states_and_ipv6() -> None:
    peer = FakePeer(transport="udp", host="::1")
    peer.expect(b"LOGIN").reply(b"OK").goto("in")
    peer.always(b"GET").when("in").reply(b"VALUE")
    with peer.serve(), udp_client(peer.address) as sock:
        assert peer.address == ("::1", peer.port)
        sock.send(b"LOGIN")
        assert sock.recv(10) == b"OK"
        sock.send(b"GET")
        assert sock.recv(10) == b"VALUE"
    assert peer.connections[0].client.startswith("[::1]:")


def test_a_flood_from_many_addresses_is_bounded_and_names_the_keyword() -> None:
    peer = FakePeer(transport="udp", max_clients=3)
    peer.always(ANY)

    def flood() -> None:
        with peer.serve():
            for number in range(6):  # each from a socket of its own: 6 addresses
                statsd_client(peer.address, [b"flood:%d|c" % number])

    with pytest.raises(ConversationError) as info:
        flood()
    assert len(peer.connections) == 3
    assert "the peer already serves 3 client addresses" in str(info.value)
    assert "FakePeer(max_clients=...) raises it" in str(info.value)


# -- an asyncio client ---------------------------------------------------------------------------


class EchoClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.replies.put_nowait(data)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", HOSTS)
async def test_an_asyncio_datagram_protocol_client(host: Host) -> None:
    peer = FakePeer(transport="udp")
    peer.always(regex(rb"^PING (\d+)$")).reply(lambda match: b"PONG " + match[1])
    async with hosted(peer, host):
        loop = asyncio.get_running_loop()
        transport, client = await loop.create_datagram_endpoint(
            EchoClient, remote_addr=peer.address
        )
        try:
            for number in range(3):
                transport.sendto(b"PING %d" % number)
                async with asyncio.timeout(CLIENT_TIMEOUT):
                    assert await client.replies.get() == b"PONG %d" % number
        finally:
            transport.close()
    assert len(peer.received) == 3


# -- what a UDP peer refuses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: FakePeer(transport="udp", tls=True),
            "FakePeer(transport='udp', tls=True): TLS runs over a byte stream, not over "
            "datagrams (DTLS is not supported); use transport='tcp' with tls=True, or plain UDP",
        ),
        (
            lambda: FakePeer(transport="udp", unix=True),
            "FakePeer(transport='udp', unix=...): a UDP peer listens on a host and port; "
            "leave unix= out (a Unix socket peer is transport='tcp')",
        ),
        (
            lambda: FakePeer(transport="udp", framing=Lines()),
            "FakePeer(transport='udp', framing=Lines(b'\\n')): each datagram is one message "
            "already, so a UDP peer takes no framing; leave framing= out (match a datagram "
            "with a matcher: prefix(), regex...)",
        ),
        (
            lambda: FakePeer(transport="sctp"),
            "FakePeer(transport=...) takes 'tcp' or 'udp', got 'sctp'",
        ),
        (
            lambda: FakePeer(transport="udp", max_clients=0),
            "FakePeer(max_clients=...) takes a whole number >= 1, got 0",
        ),
    ],
)
def test_options_a_udp_peer_does_not_take(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ScriptError) as info:
        make()
    assert str(info.value) == message


def test_stream_faults_on_a_udp_peer_and_datagram_faults_on_a_stream_are_script_errors() -> None:
    with pytest.raises(ScriptError) as info:
        FakePeer(transport="udp").faults.slice(3)
    assert str(info.value).startswith(
        "slice(3, 0) on a UDP peer (transport='udp'): it acts on a byte stream or a "
        "connection, which datagrams do not have; a UDP peer takes drop(), duplicate(), "
        "reorder(), latency(), truncate(), corrupt(), refuse() and blackhole()"
    )
    with pytest.raises(ScriptError, match=r"^drop\(1\) on a stream peer: it is a datagram fault"):
        FakePeer().faults.drop()
    peer = FakePeer()
    peer.always(b"x").fault(faults.duplicate())
    with pytest.raises(ScriptError, match=r"^duplicate\(1\) on a stream peer"), peer.serve():
        pass


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (
            lambda peer: peer.on_connect().send(b"hi"),
            r"^on_connect \(.*\): a UDP peer has no connect to greet on \(a client's first "
            r"datagram is its first message\); reply to it instead$",
        ),
        (
            lambda peer: peer.expect(b"bye").reply(b"ok").close(),
            r"^expect #1 'bye' \(.*\): \.close\(\) on a UDP peer \(transport='udp'\): "
            r"datagrams have no connection to end; leave it out \(the stop judges the "
            r"conversation\), or use transport='tcp'$",
        ),
        (
            lambda peer: peer.always(b"x").reset(),
            r"^always #1 'x' \(.*\): \.reset\(\) on a UDP peer",
        ),
        (
            lambda peer: peer.always(b"x").half_close(),
            r"^always #1 'x' \(.*\): \.half_close\(\) on a UDP peer",
        ),
        (
            lambda peer: peer.handler(_handler),
            r"^handler\(\) \(.*\) on a UDP peer: a handler reads a byte stream; with "
            r"transport='udp' use rules with a reply callable \(\.reply\(function\)\), which "
            r"see one datagram each$",
        ),
        (
            lambda peer: peer.always(b"x").fault(faults.reset_peer()),
            r"^reset_peer\(0\) on a UDP peer",
        ),
    ],
)
def test_stream_steps_on_a_udp_peer_are_script_errors_at_serve(
    script: Callable[[FakePeer], object], message: str
) -> None:
    peer = FakePeer(transport="udp")
    script(peer)
    with pytest.raises(ScriptError, match=message), peer.serve():
        pass


async def _handler(connection: object) -> None:
    pass  # pragma: no cover - never served


def test_the_peer_socket_is_closed_at_stop() -> None:
    peer = FakePeer(transport="udp")
    peer.always(ANY).reply(b"x")
    with peer.serve():
        address = peer.address
    with udp_client(address, timeout=1.0) as sock:  # nothing listens there any more
        sock.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            sock.recv(10)


# -- the fixture -----------------------------------------------------------------------------


def test_the_fixture_marker_serves_udp(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import socket

        import pytest

        @pytest.mark.fakepeer(transport="udp")
        def test_marker(fake_peer):
            fake_peer.always(b"PING").reply(b"PONG")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(5)
                sock.sendto(b"PING", fake_peer.address)
                assert sock.recv(4) == b"PONG"

        def test_factory(fake_peer_factory):
            peer = fake_peer_factory(transport="udp", max_clients=1)
            peer.expect(b"hello")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"hello", peer.address)
            peer.wait_until_done()
            assert peer.transport == "udp"
        """
    )
    result = pytester.runpytest("-W", "error", "-p", "no:asyncio")
    result.assert_outcomes(passed=2)


def test_uvloop_serves_from_the_first_datagram_and_rebinds_after_a_refusal() -> None:
    """uvloop reads before ``create_datagram_endpoint`` returns, and lets go of a closed
    socket only on its next turn: neither loses a reply nor fails the rebind."""
    uvloop = pytest.importorskip("uvloop")

    def exchange(address: tuple[str, int]) -> bytes | OSError:
        with udp_client(address, timeout=2) as sock:
            sock.send(b"one")
            try:
                return sock.recv(100)
            except OSError as error:
                return error

    async def main() -> list[object]:
        peer = FakePeer(transport="udp")
        peer.always(ANY).reply(b"ack")
        async with peer.serve():
            first = await asyncio.to_thread(exchange, peer.address)
            with peer.faults.refuse():
                refused = await asyncio.to_thread(exchange, peer.address)
            again = await asyncio.to_thread(exchange, peer.address)
        return [first, type(refused), again]

    assert uvloop.run(main()) == [b"ack", ConnectionRefusedError, b"ack"]


def test_refuse_toggled_in_the_running_loop_leaves_no_task_error_behind() -> None:
    # refuse() closes the socket that a re-attach task (after a remove) may be about to serve:
    # a race, run 300 times, with a client sending all along.
    errors: list[dict[str, object]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        peer = FakePeer(transport="udp")
        peer.always(ANY).reply(b"ok")
        async with peer.serve():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.setblocking(False)
                client.connect(peer.address)
                for _ in range(300):
                    with contextlib.suppress(OSError):
                        client.send(b"x")
                    active = peer.faults.refuse()
                    await asyncio.sleep(0)
                    active.remove()
                    await asyncio.sleep(0)
        assert len(peer.faults) == 0

    asyncio.run(main())
    gc.collect()  # an unretrieved task error is logged when the task is collected
    assert errors == []
