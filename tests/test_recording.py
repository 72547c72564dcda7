"""The recording core (``_recording``, ``_recording_toml``): pure, no sockets. Tables for what
a conversation becomes, Hypothesis for any split of the bytes."""

from __future__ import annotations

import itertools
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakepeer import Delimited, Fixed, LengthField, Lines, Raw, ScriptError
from fakepeer._framing import Framing
from fakepeer._recording import Exchange, Recorded, conversations, refuse_cut_or_shaped
from fakepeer._recording_toml import bytes_value, fitting, framing_table, script_text
from fakepeer._scriptplace import Place
from fakepeer._scriptvalues import to_bytes
from fakepeer._transcript import Event
from fakepeer.protocols import http1


def _events(*items: tuple[int, str, bytes]) -> list[Event]:
    return [Event(0.0, number, kind, data) for number, kind, data in items]


def _bytes(value: object) -> bytes:
    """A BYTES value of the script format, read back as the loader reads it."""
    return to_bytes(value, Place("recorded.toml", {}))


SMTP = _events(
    (1, "connected", b""),
    (1, "sent", b"220 ready\r\n"),
    (1, "received", b"HE"),
    (1, "received", b"LO me\r\n"),
    (1, "sent", b"250 hi\r\n"),
    (1, "received", b"QUIT\r\n"),
    (1, "sent", b"221 bye\r\n"),
    (1, "half-closed", b""),
)


def test_messages_by_the_framing_replies_until_the_next_message() -> None:
    (recorded,) = conversations(SMTP, Lines(b"\r\n"))
    assert recorded == Recorded(
        1,
        b"220 ready\r\n",
        (Exchange(b"HELO me", b"250 hi\r\n"), Exchange(b"QUIT", b"221 bye\r\n")),
        closed=True,
    )
    assert recorded.replies == b"220 ready\r\n250 hi\r\n221 bye\r\n"


def test_under_raw_a_message_is_a_turn() -> None:
    (recorded,) = conversations(SMTP, Raw())
    assert [e.message for e in recorded.exchanges] == [b"HELO me\r\n", b"QUIT\r\n"]
    pipelined = _events((1, "received", b"A\n"), (1, "received", b"B\n"), (1, "sent", b"a\nb\n"))
    (recorded,) = conversations(pipelined, Raw())
    assert recorded.exchanges == (Exchange(b"A\nB\n", b"a\nb\n"),)
    (recorded,) = conversations(pipelined, Lines())
    assert recorded.exchanges == (Exchange(b"A"), Exchange(b"B", b"a\nb\n"))


def test_what_the_client_sends_after_a_server_half_close_is_kept() -> None:
    """The server closed its side and read on (the client's bytes went without a reset)."""
    events = _events((1, "received", b"A\n"), (1, "half-closed", b""), (1, "received", b"late\n"))
    (recorded,) = conversations(events, Lines())
    assert recorded == Recorded(
        1, b"", (Exchange(b"A"), Exchange(b"late")), closed=True, end="half_close", end_at=1
    )
    (raw,) = conversations([*events, *_events((1, "eof", b""))], Raw())
    assert raw.exchanges == (Exchange(b"A\n"), Exchange(b"late\n"))
    assert (raw.end, raw.end_at) == ("half_close", 1)


def test_what_the_client_sends_after_the_server_closed_for_good_is_left_out() -> None:
    """The server reset what came after its EOF: it had closed whole; and a server's EOF
    with nothing after it is a close."""
    events = _events(
        (1, "received", b"A\n"),
        (1, "half-closed", b""),
        (1, "received", b"la"),
        (1, "received", b"te\n"),
        (1, "reset", b""),
    )
    (recorded,) = conversations(events, Lines())
    assert recorded == Recorded(1, b"", (Exchange(b"A"),), closed=True, left_out=5)
    (closed,) = conversations(events[:2], Lines())
    assert closed == Recorded(1, b"", (Exchange(b"A"),), closed=True)


def test_a_server_reset_or_loss_ends_the_recording_so() -> None:
    events = _events((1, "received", b"A\n"), (1, "sent", b"a\n"), (1, "reset", b""))
    (recorded,) = conversations(events, Lines())
    assert recorded == Recorded(1, b"", (Exchange(b"A", b"a\n"),), closed=True, end="reset")
    lost = [*events[:2], *_events((1, "closed", b""))]
    assert not conversations(lost, Lines())[0].closed  # the proxy's own close, both sides done
    lost = [*events[:2], Event(0.0, 1, "closed", b"", "(after the error)")]
    assert conversations(lost, Lines())[0] == Recorded(
        1, b"", (Exchange(b"A", b"a\n"),), closed=True
    )


def test_a_framing_that_does_not_fit_is_a_script_error() -> None:
    events = _events((1, "received", b"HELO"), (1, "eof", b""))
    with pytest.raises(ScriptError) as info:
        conversations(events, Lines(b"\r\n"))
    assert str(info.value) == (
        "connection #1: what the client sent does not fit Lines(b'\\r\\n'): the client's last "
        "4 bytes 'HELO' are no whole message; record with the framing of the client's "
        "protocol, or with Raw() (one rule per turn of the conversation)"
    )
    with pytest.raises(ScriptError, match=r"connection #2: .* does not fit Lines\(b'\\n', "):
        conversations(_events((2, "received", b"x" * 20)), Lines(max_length=10))


def test_a_fault_or_a_cut_transcript_is_refused() -> None:
    with pytest.raises(ScriptError, match=r"a fault acted on it .* with no faults"):
        refuse_cut_or_shaped([Event(0.0, 0, "fault", b"", "+ latency(0.1)")], 0)
    with pytest.raises(ScriptError, match=r"Proxy\(\.\.\., transcript_budget=None\)"):
        refuse_cut_or_shaped([Event(0.0, 1, "sent", b"ab", size=10)], 0)
    with pytest.raises(ScriptError, match="cut to fit its budget"):
        refuse_cut_or_shaped([], 3)


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"PING\r\n", "PING\r\n"),
        ("caf\u00e9\t1\n".encode(), "caf\u00e9\t1\n"),
        (b"\x00\x01\x02\xff", {"hex": "00 01 02 ff"}),
        (b"OK\x00 ready\\\r\n", {"escaped": "OK\\x00 ready\\\\\\r\\n"}),
        (b"", ""),
    ],
)
def test_bytes_values(data: bytes, value: object) -> None:
    assert bytes_value(data) == value
    assert _bytes(value) == data


@pytest.mark.parametrize(
    ("framing", "table"),
    [
        (Raw(), {"kind": "raw"}),
        (Lines(b"\r\n"), {"kind": "lines", "delimiter": "\r\n"}),
        (
            Delimited(b"\0", max_length=32),
            {"kind": "delimited", "delimiter": {"hex": "00"}} | {"max_length": 32},
        ),
        (Fixed(12), {"kind": "fixed", "n": 12}),
        (LengthField(offset=4, size=2), {"kind": "length-field", "offset": 4, "size": 2}),
        (http1.framing(), {"kind": "http1"}),
    ],
)
def test_framing_tables(framing: Framing, table: dict[str, object]) -> None:
    assert framing_table(framing) == table


def test_a_framing_of_your_own_has_no_table() -> None:
    class CStrings(Delimited):
        pass

    with pytest.raises(ScriptError, match="a script file names built-in framings only"):
        framing_table(CStrings(b"\0"))


def test_the_script_text() -> None:
    text = script_text(conversations(SMTP, Lines(b"\r\n")), framing=Lines(b"\r\n"), header="hi")
    assert text == (
        "# hi\nversion = 1\n\n"
        '[framing]\nkind = "lines"\ndelimiter = "\\r\\n"\n\n'
        '[reply_framing]\nkind = "none"\n\n'
        '[[greeting]]\nsend = "220 ready\\r\\n"\n\n'
        '[[expect]]\nmatch = "HELO me"\nreply = "250 hi\\r\\n"\n\n'
        '[[expect]]\nmatch = "QUIT"\nreply = "221 bye\\r\\n"\nclose = true\n'
    )


def test_replies_as_messages_of_a_reply_framing() -> None:
    events = SMTP[:4] + _events((1, "sent", b"250-hi\r\n250 OK\r\n"))
    lines = Lines(b"\r\n")
    document = tomllib.loads(
        script_text(conversations(events, lines), framing=lines, reply_framing=lines)
    )
    assert document["reply_framing"] == {"kind": "lines", "delimiter": "\r\n"}
    assert document["greeting"] == [{"send": "220 ready"}]
    assert document["expect"] == [{"match": "HELO me", "reply": ["250-hi", "250 OK"]}]
    cut = _events((1, "sent", b"220 rea"))
    with pytest.raises(ScriptError) as info:
        script_text(conversations(cut, lines), framing=lines, reply_framing=lines)
    assert str(info.value) == (
        "connection #1, greeting: what the server sent does not fit "
        "reply_framing=Lines(b'\\r\\n') ('220 rea' is no whole message); record with "
        "reply_framing=None to keep the replies as the server sent them"
    )


def test_several_connections_have_a_table_each() -> None:
    events = SMTP + _events(
        (2, "received", b"\x00\x01"), (2, "sent", b"\xff"), (3, "connected", b"")
    )
    document = tomllib.loads(script_text(conversations(events, Raw()), framing=Raw()))
    assert "expect" not in document
    assert "reply_framing" not in document
    first, second = document["connection"]
    assert first["number"] == 1
    assert first["greeting"] == [{"send": "220 ready\r\n"}]
    assert second == {"number": 2, "expect": [{"match": {"hex": "00 01"}, "reply": {"hex": "ff"}}]}


def test_a_server_that_closes_at_once() -> None:
    events = _events((1, "connected", b""), (1, "sent", b"busy\n"), (1, "half-closed", b""))
    document = tomllib.loads(script_text(conversations(events, Lines()), framing=Lines()))
    assert document["greeting"] == [{"send": "busy\n", "close": True}]
    several = Lines()
    text = script_text(
        conversations(
            events[:1] + _events((1, "sent", b"a\nb\n"), (1, "half-closed", b"")), several
        ),
        framing=several,
        reply_framing=several,
    )
    steps = [{"send": "a"}, {"send": "b"}, {"close": True}]
    assert tomllib.loads(text)["greeting"] == [{"steps": steps}]


# -- any split of the bytes ----------------------------------------------------------------------

_lines = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=6)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@given(
    messages=_lines,
    server=st.binary(max_size=60),
    client_cuts=st.lists(st.integers(0, 200), max_size=8),
    server_cuts=st.lists(st.integers(0, 200), max_size=8),
    order=st.lists(st.booleans(), max_size=30),
    framing=st.sampled_from([Lines(), Raw()]),
)
def test_any_split_records_the_same_messages_and_the_server_bytes(
    *,
    messages: list[bytes],
    server: bytes,
    client_cuts: list[int],
    server_cuts: list[int],
    order: list[bool],
    framing: Framing,
) -> None:
    """However both sides' bytes were split and interleaved, the expects are the client's
    messages (for Raw: its bytes) and the replies, greeting first, are the server's bytes;
    and the TOML text reads back to the same."""
    client = b"".join(message + b"\n" for message in messages)
    ups, downs = _split(client, client_cuts), _split(server, server_cuts)
    events: list[Event] = []
    turns = iter(order)
    while ups or downs:
        take_up = bool(ups) and (not downs or next(turns, True))
        events.append(
            Event(0.0, 1, "received" if take_up else "sent", (ups if take_up else downs).pop(0))
        )
    recorded = conversations(events, framing)
    if not recorded:
        assert not client
        assert not server
        return
    (one,) = recorded
    sent = [exchange.message for exchange in one.exchanges]
    assert (b"".join(sent) == client) if framing.streaming else (sent == messages)
    assert one.replies == server
    document = tomllib.loads(script_text(recorded, framing=framing))
    rules = document.get("expect", [])
    assert [_bytes(rule["match"]) for rule in rules] == sent
    greeting = [_bytes(rule["send"]) for rule in document.get("greeting", [])]
    assert b"".join(greeting + [_bytes(rule.get("reply", "")) for rule in rules]) == server


@given(st.lists(st.tuples(_lines.filter(bool), st.binary(max_size=20)), max_size=5))
def test_in_turns_each_reply_is_the_one_after_its_message(
    turns: list[tuple[list[bytes], bytes]],
) -> None:
    events: list[Event] = []
    expected: list[Exchange] = []
    for messages, reply in turns:
        for message in messages:
            events.append(Event(0.0, 1, "received", message + b"\n"))
            expected.append(Exchange(message))
        events.append(Event(0.0, 1, "sent", reply))
        expected[-1] = Exchange(expected[-1].message, reply)
    recorded = conversations(events, Lines())
    assert [exchange for one in recorded for exchange in one.exchanges] == expected


def test_a_message_over_the_framing_limit_raises_it_to_fit() -> None:
    events = _events((1, "received", b"0123456789"), (1, "sent", b"ok"))
    assert fitting(Raw(max_length=4), events) == Raw(max_length=10)
    assert fitting(Raw(max_length=10), events) == Raw(max_length=10)  # it fits: unchanged
    lines = _events((1, "received", b"ab\n0123456"), (1, "received", b"78\n"))
    assert fitting(Lines(max_length=4), lines) == Lines(max_length=10)  # with its delimiter
    assert fitting(Fixed(5), events) == Fixed(5)  # no max_length
