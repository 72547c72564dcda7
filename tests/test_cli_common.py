"""The pieces of the command line without a process: the transcript's watch seam, a
``--fault`` SPEC, an event's data in the journal, the address file."""

from __future__ import annotations

import base64
import importlib.resources
import json
import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakepeer import FakePeer, Lines, ScriptError
from fakepeer._cli import main
from fakepeer._cli_common import _data, write_whole
from fakepeer._cli_faults import parse_spec
from fakepeer._transcript import Event, Transcript


def test_a_watcher_sees_every_event_whole_in_order_until_unwatched() -> None:
    transcript = Transcript(budget=1024)
    seen: list[Event] = []
    unwatch = transcript._watch(seen.append)
    big = Event(1.0, 1, "received", b"x" * 5000)
    transcript.add(Event(0.5, 1, "connected", note="from here"))
    transcript.add(big)
    assert seen == [Event(0.5, 1, "connected", note="from here"), big]  # whole, not cut
    assert transcript.events[-1].size == 5000  # the transcript kept a cut copy
    unwatch()
    unwatch()  # idempotent
    transcript.add(Event(2.0, 1, "eof"))
    assert len(seen) == 2


def test_watchers_added_from_another_thread_see_the_peers_events() -> None:
    peer = FakePeer(framing=Lines())
    peer.expect("PING").reply("PONG")
    lines: list[str] = []
    done = threading.Event()

    def watch(event: Event) -> None:  # in the hub's thread
        lines.extend(peer.transcript._lines(event, times=False))
        if event.kind == "sent":
            done.set()

    unwatch = peer.transcript._watch(watch)
    with peer.serve(), socket.create_connection(peer.address, timeout=5) as sock:
        sock.sendall(b"PING\n")
        assert sock.makefile("rb").readline() == b"PONG\n"
        assert done.wait(5)
    unwatch()
    assert lines[0].startswith("  #1 connected  from 127.0.0.1:")
    assert lines[1].startswith("  #1 received   'PING' -> expect #1 'PING' (test_cli_common.py:")
    assert lines[2] == "  #1 sent       'PONG\\n'"
    # the same lines as the transcript's rendering
    assert peer.transcript.render(times=False).splitlines()[1:4] == lines[:3]


@pytest.mark.parametrize(
    ("spec", "table"),
    [
        ("blackhole", {"kind": "blackhole"}),
        ("latency=0.1", {"kind": "latency", "seconds": 0.1}),
        (
            "latency=0.1,direction=upstream",
            {"kind": "latency", "seconds": 0.1, "direction": "upstream"},
        ),
        (
            "latency:seconds=0.1,jitter=0.02,after=1,lasting=2",
            {"kind": "latency", "seconds": 0.1, "jitter": 0.02, "after": 1, "lasting": 2},
        ),
        ("reset_peer=0.5", {"kind": "reset_peer", "fault_after": 0.5}),
        ("reset-peer:first=1", {"kind": "reset-peer", "first": 1}),
        (
            'corrupt:probability=1,direction="up"',
            {"kind": "corrupt", "probability": 1, "direction": "up"},
        ),
        ("slice:size=1,per=request", {"kind": "slice", "size": 1, "per": "request"}),
    ],
)
def test_a_fault_spec_is_a_fault_table(spec: str, table: dict[str, object]) -> None:
    assert parse_spec(spec) == table


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("", "--fault '': write KIND, KIND=VALUE or KIND:KEY=VALUE,... (KIND: a fault)"),
        ("latency,seconds=1", "--fault 'latency,seconds=1': write KIND, KIND=VALUE or "),
        ("latency:=1", "--fault 'latency:=1': expected KEY=VALUE, got '=1'"),
        ("nothing=1", "--fault 'nothing=1': no fault named 'nothing'; the faults: "),
    ],
)
def test_a_wrong_fault_spec(spec: str, error: str) -> None:
    with pytest.raises(ScriptError) as raised:
        parse_spec(spec)
    assert str(raised.value).startswith(error)


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (b"", {"data": ""}),
        (b"HELO me\r\n\t", {"data": "HELO me\r\n\t"}),
        ("café".encode(), {"data": "café"}),
        (b"\x00\x01", {"data": "AAE=", "encoding": "base64"}),
        (b"\xff", {"data": "/w==", "encoding": "base64"}),
        (b"bell\x07", {"data": "YmVsbAc=", "encoding": "base64"}),
    ],
)
def test_an_events_data_in_the_journal(data: bytes, fields: dict[str, str]) -> None:
    assert _data(data) == fields


@given(st.binary(max_size=64))
def test_the_journals_data_gives_the_bytes_back(data: bytes) -> None:
    fields = _data(data)
    back = (
        base64.b64decode(fields["data"])
        if fields.get("encoding") == "base64"
        else fields["data"].encode()
    )
    assert back == data


def test_the_address_file_is_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "addr"
    path.write_text("stale")
    write_whole(str(path), "127.0.0.1:1\n")
    assert path.read_text() == "127.0.0.1:1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["addr"]  # no temporary file left


def test_schema_prints_the_packaged_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    packaged = importlib.resources.files("fakepeer").joinpath("script.schema.json").read_text()
    assert printed == json.loads(packaged)
    assert printed["$id"] == "urn:fakepeer:script:1"
