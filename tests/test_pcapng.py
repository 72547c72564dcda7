"""Transcript.to_pcapng() without sockets: hand-made transcripts in, the packets read back
(tests/_pcap_reader.py, a reader apart from the writer) and compared; a Hypothesis property
that the blocks are well formed and the sequence numbers add up for any events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from _pcap_reader import Capture, Packet, read
from fakepeer import Event, Lines, Transcript
from fakepeer.protocols import resp


def transcript(
    *events: Event, address: str = "127.0.0.1:7000", budget: int | None = None
) -> Transcript:
    record = Transcript("fake peer 'kv'", budget=budget)
    record.address = address
    for event in events:
        record.add(event)
    return record


def connected(at: float = 0.0, client: str = "127.0.0.1:5000", number: int = 1) -> Event:
    return Event(at, number, "connected", note=f"from {client}")


def capture(record: Transcript) -> Capture:
    return read(record.to_pcapng())


def flags(packets: list[Packet]) -> list[str]:
    side = {5000: "c", 7000: "p"}
    return [f"{side.get(p.sport, p.sport)}:{p.flags}:{len(p.payload)}" for p in packets]


def test_a_conversation_with_its_handshake_data_and_closes() -> None:
    record = transcript(
        connected(1.0),
        Event(1.001, 1, "sent", b"HELLO\n"),
        Event(1.002, 1, "received", b"PING\n", "-> upstream"),
        Event(1.003, 1, "state", note="connection 'start' -> 'ready'"),
        Event(1.004, 1, "eof"),
        Event(1.005, 1, "closed"),
    )
    result = capture(record)
    assert result.linktype == 101
    assert result.application.startswith("fakepeer ")
    assert result.comments == ["fake peer 'kv' on 127.0.0.1:7000"]
    assert flags(result.packets) == [
        "c:S:0", "p:SA:0", "c:A:0",
        "p:PA:6", "c:PA:5",
        "c:FA:0", "p:A:0", "p:FA:0", "c:A:0",
    ]  # fmt: skip
    syn, synack, ack, hello, ping, *_ = result.packets
    assert (syn.source, syn.sport, syn.destination, syn.dport) == (
        "127.0.0.1",
        5000,
        "127.0.0.1",
        7000,
    )
    assert synack.ack == syn.seq + 1
    assert ack.ack == synack.seq + 1
    assert hello.seq == synack.seq + 1
    assert hello.ack == syn.seq + 1
    assert ping.seq == syn.seq + 1
    assert ping.ack == hello.seq + 6
    assert hello.payload == b"HELLO\n"
    assert ping.payload == b"PING\n"
    # comments: the connected note on the SYN; a state change on the packet before it
    assert syn.comments == ["#1 connected from 127.0.0.1:5000"]
    assert ping.comments == ["#1 received -> upstream", "#1 state connection 'start' -> 'ready'"]
    # times: the events' own (no Unix time: the transcript never served)
    assert [p.at for p in result.packets[:5]] == [1_000_000] * 3 + [1_001_000, 1_002_000]


def test_reset_by_the_peer_and_by_the_client() -> None:
    peer_reset = transcript(connected(), Event(0.1, 1, "reset"), Event(0.2, 1, "closed"))
    assert flags(capture(peer_reset).packets)[3:] == ["p:RA:0"]
    client_reset = transcript(
        connected(), Event(0.1, 1, "lost", note="[Errno 104] Connection reset by peer")
    )
    packets = capture(client_reset).packets
    assert flags(packets)[3:] == ["c:RA:0"]
    assert packets[-1].comments == ["#1 lost [Errno 104] Connection reset by peer"]


def test_a_half_close_then_the_clients_eof() -> None:
    record = transcript(
        connected(),
        Event(0.1, 1, "half-closed"),
        Event(0.2, 1, "received", b"late", "-> upstream"),
        Event(0.3, 1, "eof"),
        Event(0.4, 1, "closed", note="(the peer stopped)"),
    )
    packets = capture(record).packets
    assert flags(packets)[3:] == ["p:FA:0", "c:A:0", "c:PA:4", "c:FA:0", "p:A:0"]
    assert packets[-1].comments == ["#1 closed (the peer stopped)"]  # nothing left to send


def test_an_event_larger_than_a_segment_is_split() -> None:
    data = bytes(range(256)) * 800  # 204,800 bytes
    packets = capture(transcript(connected(), Event(0.1, 1, "sent", data))).packets[3:]
    assert [len(p.payload) for p in packets] == [65495, 65495, 65495, 8315]
    assert [p.flags for p in packets] == ["A", "A", "A", "PA"]
    assert b"".join(p.payload for p in packets) == data
    assert [p.seq - packets[0].seq for p in packets] == [0, 65495, 130990, 196485]


def test_ipv6_addresses() -> None:
    record = transcript(
        connected(client="[::1]:5000"),
        Event(0.1, 1, "sent", b"hi"),
        address="127.0.0.1:7001, [::1]:7000",
    )
    packets = capture(record).packets
    assert {(p.version, p.source, p.destination) for p in packets} == {(6, "::1", "::1")}
    assert flags(packets) == ["c:S:0", "p:SA:0", "c:A:0", "p:PA:2"]


def test_a_unix_socket_stands_as_127_0_0_1_with_made_up_ports() -> None:
    record = transcript(
        connected(client="unix socket client"),
        connected(client="unix socket client", number=2),
        Event(0.1, 2, "sent", b"hi"),
        address="unix socket /tmp/fakepeer-x/peer.sock",
    )
    result = capture(record)
    ends = {(p.source, p.sport, p.destination, p.dport) for p in result.packets if p.flags == "S"}
    assert ends == {
        ("127.0.0.1", 50000, "127.0.0.1", 40000),
        ("127.0.0.1", 50001, "127.0.0.1", 40000),
    }
    assert result.comments[1] == (
        "a Unix socket has no IP address: 127.0.0.1 stands for both ends, port 40000 for the "
        "peer, 50000 + n - 1 for connection n"
    )


def test_udp_events_are_datagrams() -> None:
    record = transcript(
        connected(client="127.0.0.1:5000"),
        Event(0.1, 1, "received", b"PING", "-> expect #1 'PING' (test.py:3)"),
        Event(0.2, 1, "sent", b"PONG"),
        Event(0.3, 1, "dropped", b"LOST", "(by drop())"),
        Event(0.4, 1, "closed", note="(the peer stopped)"),
    )
    record.datagrams = True
    packets = capture(record).packets
    assert [(p.protocol, p.sport, p.payload) for p in packets] == [
        ("udp", 5000, b"PING"),
        ("udp", 7000, b"PONG"),
    ]
    assert packets[0].comments == [
        "#1 connected from 127.0.0.1:5000",
        "#1 received -> expect #1 'PING' (test.py:3)",
    ]
    assert packets[1].comments == ["#1 dropped 'LOST' (by drop())", "#1 closed (the peer stopped)"]


def test_a_framed_message_gets_its_framing_back() -> None:
    record = transcript(
        connected(),
        Event(0.1, 1, "received", b"PING", "-> expect #1 'PING' (test.py:3)"),
        Event(0.2, 1, "unexpected", b"PONG"),
        Event(0.3, 1, "received", b"HALF", "(incomplete)"),  # raw bytes, no message
    )
    record.framing = Lines(b"\r\n")
    payloads = [p.payload for p in capture(record).packets[3:]]
    assert payloads == [b"PING\r\n", b"PONG\r\n", b"HALF"]
    record.unframed.add(1)  # a handler's connection: the bytes as they came
    assert [p.payload for p in capture(record).packets[3:]] == [b"PING", b"PONG", b"HALF"]


def test_a_kits_framing_keeps_whole_messages() -> None:
    command = b"*1\r\n$4\r\nPING\r\n"
    record = transcript(connected(), Event(0.1, 1, "received", command, "-> expect #1"))
    record.framing = resp.framing()
    assert capture(record).packets[3].payload == command


def test_an_event_cut_by_the_budget_leaves_a_gap_with_a_comment() -> None:
    kept = b"a" * 32 + b"z" * 32
    record = transcript(
        connected(), Event(0.1, 1, "sent", kept, size=1000), Event(0.2, 1, "closed")
    )
    packets = capture(record).packets[3:]
    assert [(len(p.payload), p.flags) for p in packets] == [
        (32, "PA"),
        (32, "PA"),
        (0, "FA"),
        (0, "A"),
    ]
    assert packets[1].seq - packets[0].seq == 1000 - 32
    assert packets[2].seq - packets[0].seq == 1000
    assert packets[1].comments == [
        "#1 936 bytes of 1,000 not kept here: over the transcript budget"
    ]


def test_events_left_out_by_the_budget_are_a_gap_of_their_bytes() -> None:
    record = transcript(connected(), budget=2048)
    for index in range(40):
        record.add(Event(0.1 + index, 1, "received", b"Q" * 10, "-> upstream"))
        record.add(Event(0.1 + index, 1, "sent", b"A" * 30))
    assert record.omitted_events > 0
    packets = capture(record).packets
    client = [p for p in packets if p.sport == 5000 and p.payload]
    peer = [p for p in packets if p.sport == 7000 and p.payload]
    # the sequence numbers count every byte sent, kept or not
    assert client[-1].seq + 10 - (packets[0].seq + 1) == 400
    assert peer[-1].seq + 30 - (packets[1].seq + 1) == 1200
    noted = [c for p in packets for c in p.comments if "not kept" in c]
    assert len(noted) == 1
    assert "events (" in noted[0]
    assert "transcript_budget=" in noted[0]


def test_the_peers_own_events_are_comments_on_the_next_packet() -> None:
    record = transcript(
        Event(0.0, 0, "fault", note="latency(0.1) on"),
        connected(0.1),
        Event(0.2, 0, "fault", note="latency(0.1) off"),
    )
    packets = capture(record).packets
    assert packets[0].comments == ["peer fault latency(0.1) on", "#1 connected from 127.0.0.1:5000"]
    assert packets[-1].comments == ["peer fault latency(0.1) off"]  # no packet after it
    assert capture(transcript(Event(0.0, 0, "fault", note="x"))).comments[-1] == "peer fault x"


def test_times_are_unix_times_once_the_peer_served() -> None:
    record = transcript(connected(100.5))
    record.started, record.wall = 100.0, 1_700_000_000.0
    assert capture(record).packets[0].at == 1_700_000_000_500_000


# -- any events: the blocks are well formed, the numbers add up ---------------------------------

_KINDS = ("received", "sent", "eof", "half-closed", "closed", "reset", "lost", "state", "tls")


@st.composite
def _events(draw: st.DrawFn) -> list[Event]:
    events = []
    for index in range(draw(st.integers(0, 25))):
        number = draw(st.integers(1, 3))
        kind = draw(st.sampled_from(_KINDS))
        size = draw(st.sampled_from([0, 1, 7, 70_000]))
        data = bytes([index % 256]) * size if kind in ("received", "sent") else b""
        note = draw(st.sampled_from(["", "-> upstream", "[Errno 104] Connection reset by peer"]))
        events.append(Event(float(index), number, kind, data, note))
    return events


@settings(max_examples=60, deadline=None)
@given(_events(), st.booleans())
def test_any_events_make_a_well_formed_capture(events: list[Event], v6: bool) -> None:
    host = "[::1]" if v6 else "127.0.0.1"
    record = transcript(
        *[connected(client=f"{host}:{5000 + n}", number=n) for n in (1, 2, 3)],
        *events,
        address="127.0.0.1:7000, [::1]:7000",
    )
    result = read(record.to_pcapng())  # checks every block's lengths and every checksum
    following: dict[tuple[int, int], int] = {}  # (connection, side) -> its next sequence number
    payload: dict[tuple[int, int], int] = {}
    for packet in result.packets:
        side = int(packet.sport == 7000)
        number = (packet.dport if side else packet.sport) - 5000
        key, other = (number, side), (number, 1 - side)
        if "S" in packet.flags:
            following[key] = packet.seq
        # each packet starts where the one before it on its side ended...
        assert packet.seq == following[key] % 2**32
        following[key] += len(packet.payload) + ("S" in packet.flags) + ("F" in packet.flags)
        payload[key] = payload.get(key, 0) + len(packet.payload)
        if "A" in packet.flags:  # ...and acknowledges all the other side sent before it
            assert packet.ack == following[other] % 2**32
    closed = {
        e.connection for e in events if e.kind in ("eof", "half-closed", "closed", "reset", "lost")
    }
    for number in (1, 2, 3):
        for side, kinds in ((0, ("received",)), (1, ("sent",))):
            sent = sum(len(e.data) for e in events if e.connection == number and e.kind in kinds)
            assert payload.get((number, side), 0) <= sent
            if number not in closed:  # open: every byte of its events is on the wire
                assert payload.get((number, side), 0) == sent
    assert all(p.at >= q.at for p, q in zip(result.packets[1:], result.packets, strict=False))
