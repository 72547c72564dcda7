"""Script files (``FakePeer.from_file``): every key, every value form, every error, with
real clients on loopback."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest

from fakepeer import FakePeer, Lines, ScriptError
from fakepeer._scriptfile import load_text


def _write(tmp_path: Path, text: str, name: str = "conversation.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _error(text: str, source: str = "s.toml") -> str:
    with pytest.raises(ScriptError) as info:
        load_text(textwrap.dedent(text), source)
    return info.value.diagnosis


SMTP = """\
    version = 1
    [peer]
    name = "smtp"
    [framing]
    kind = "lines"
    delimiter = "\\r\\n"

    [[greeting]]
    send = "220 ready"

    [[expect]]
    match = "HELO me"
    reply = "250 hi"

    [[expect]]
    match = { prefix = "QUIT" }
    reply = { hex = "32 32 31" }
    close = true
"""


def test_a_file_is_served_to_a_real_client(tmp_path: Path) -> None:
    peer = FakePeer.from_file(_write(tmp_path, SMTP))
    assert peer.framing == Lines(b"\r\n")
    with peer.serve(), socket.create_connection(peer.address, timeout=5) as client:
        stream = client.makefile("rwb")
        assert stream.readline() == b"220 ready\r\n"
        stream.write(b"HELO me\r\nQUIT\r\n")
        stream.flush()
        assert stream.readline() == b"250 hi\r\n"
        assert stream.readline() == b"221\r\n"
        assert stream.read() == b""
        stream.close()
    assert peer.received == [b"HELO me", b"QUIT"]
    assert "expect #2 prefix 'QUIT' (conversation.toml:15)" in peer.transcript.render()


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    peer = FakePeer.from_file(_write(tmp_path, SMTP), name="other", timeout=2.0)
    assert "'other'" in repr(peer)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nmae'"):
        FakePeer.from_file(_write(tmp_path, SMTP), nmae="x")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[peer]\n", "s.toml:1: 'version' is missing: a script file starts with version = 1"),
        ("version = 2\n", "s.toml:1: version: this fakepeer reads version 1 of the format, got 2"),
        (
            'version = 1\n\n[[expect]]\nmatch = "A"\nrpely = "B"\n',
            "s.toml:5: expect #1: rpely: unknown key of an expect rule 'rpely' (did you mean "
            "'reply'?)",
        ),
        (
            "version = 1\nx = = 1\n",
            "s.toml:2: not valid TOML: Invalid value (column 5)",
        ),
        (
            'version = 1\n[[expect]]\nmatch = { regex = "a[b" }\n',
            "s.toml:3: expect #1: match: regex: regex b'a[b' does not compile",
        ),
    ],
)
def test_errors_name_the_file_and_line(text: str, words: str) -> None:
    assert _error(text).startswith(words)
