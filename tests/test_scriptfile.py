"""Script files (``FakePeer.from_file``): every key, every value form, every error, with
real clients on loopback."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest
import redis

from fakepeer import ANY, FakePeer, Lines, Raw, ScriptError, StxEtx, faults, json
from fakepeer._scriptfile import load_text
from fakepeer.protocols import http1, modbus, mqtt, resp
from fakepeer.testing import Rehearsal


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


# -- every error, with its file and line ---------------------------------------------------------

ERRORS = [
    (
        "version = 1\n[framing]\nkind = 'length-field'\nsize = 5\n",
        "s.toml:4: framing: size: LengthField(size=...) takes 1, 2, 3, 4 or 8 (bytes), or "
        "'varint', got 5",
    ),
    (
        "version = 1\n[framing]\nkind = 'fixed'\n",
        "s.toml:2: framing: the fixed framing needs 'n', the size of each message in bytes",
    ),
    (
        "version = 1\n[framing]\nkind = 'lines'\ndelim = ';'\n",
        "s.toml:4: framing: delim: unknown keyword of the lines framing 'delim' (did you mean "
        "'delimiter'?); known: kind, delimiter, max_length",
    ),
    (
        "version = 1\n[peer]\nport = 'x'\n",
        "s.toml:3: peer: port: takes a port number, got a string 'x'",
    ),
    (
        "version = 1\n[peer]\ntls_min_version = 'TLSv1_2'\n",
        "s.toml:3: peer: tls_min_version: ",
    ),
    (
        "version = 1\n[peer]\ntls = true\ntls_min_version = 'TLS12'\n",
        "s.toml:4: peer: tls_min_version: unknown ssl.TLSVersion 'TLS12'",
    ),
    (
        "version = 1\n[[expect]]\nmatch = 'a'\nreply = { escaped = '\\q' }\n",
        "s.toml:4: expect #1: reply: escaped: '\\\\q' is not a bytes escape",
    ),
    (
        "version = 1\n[[expect]]\nmatch = 'a'\nreply = { escaped = 'é' }\n",
        "s.toml:4: expect #1: reply: escaped: 'é' has a character that is not ASCII",
    ),
    (
        "version = 1\n[[expect]]\nmatch = 'a'\nsteps = [\n  { close = true },\n"
        "  { reply = 'x' },\n]\n",
        "s.toml:6: expect #1: steps #2: reply: .reply() after .close() on expect #1 'a' (s.toml:2)",
    ),
    (
        "version = 1\n[[expect]]\nmatch = 'a'\nreply = 'b'\nsteps = [{ close = true }]\n",
        "s.toml:4: expect #1: reply: a rule takes its steps either as keys or as 'steps'",
    ),
    (
        "version = 1\n[[expect]]\nmatch = 'a'\nstart_tls = true\n",
        "s.toml:4: expect #1: start_tls: .start_tls() on expect #1 'a' (s.toml:2)",
    ),
    (
        "version = 1\n[[expect]]\nmatch = { prefix = 'a', contains = 'b' }\n",
        "s.toml:3: expect #1: match: takes one matcher key, got 2 (prefix, contains)",
    ),
    (
        "version = 1\n[[expect]]\nmatch = { prefx = 'a' }\n",
        "s.toml:3: expect #1: match: prefx: unknown matcher key 'prefx' (did you mean 'prefix'?)",
    ),
    (
        "version = 1\n[[expect]]\nmatch = { regex = 'a', flags = ['IGNORCASE'] }\n",
        "s.toml:3: expect #1: match: flags #1: unknown regex flag 'IGNORCASE' (did you mean "
        "'IGNORECASE'?)",
    ),
    (
        "version = 1\n[[expect]]\nmatch = { mqtt = 'publsh' }\n",
        "s.toml:3: expect #1: match: mqtt: unknown mqtt matcher 'publsh' (did you mean 'publish'?)",
    ),
    (
        "version = 1\n[[expect]]\nmatch = { modbus = 'read_coils', adress = 1 }\n",
        "s.toml:3: expect #1: match: adress: unknown keyword of modbus.read_coils() 'adress' "
        "(did you mean 'address'?)",
    ),
    (
        "version = 1\n[[expect]]\nmatch = 'a'\nfault = { kind = 'refuse' }\n",
        "s.toml:4: expect #1: fault: .fault(refuse()) acts on the connection or the server",
    ),
    (
        "version = 1\n\n[[faults]]\nkind = 'latency'\nseconds = -1\n",
        "s.toml:3: faults #1: ",
    ),
    (
        "version = 1\n[[faults]]\nkind = 'slice'\nsize = 2\nfault_after = 1\n",
        "s.toml:5: faults #1: fault_after: only the reset_peer fault takes fault_after",
    ),
    (
        "version = 1\n[[connection]]\nnumber = 1\n[[connection.expect]]\nmatch = 3\n",
        "s.toml:5: connection #1: expect #1: match: takes a matcher",
    ),
    (
        "version = 1\n[[connection]]\nnumber = 0\n",
        "s.toml:2: connection #1: on_connection() takes a connection number >= 1, got 0",
    ),
    (
        "version = 1\n[[kit]]\npreset = 'mqtt.handshake'\ncode = 'x'\n",
        "s.toml:2: kit #1: ",
    ),
    ("version = 1\nexpect = 3\n", "s.toml:2: expect: takes an array of tables ([[expect]])"),
    ("version = 1\n[[expect]]\nmatch = 'a'\ntimes = 1.5\n", "s.toml:4: expect #1: times: "),
    ("version = true\n", "s.toml:1: version: this fakepeer reads version 1"),
    ("version = 1\n[peer\n", "s.toml:2: not valid TOML: "),
]


@pytest.mark.parametrize(("text", "words"), ERRORS)
def test_every_error_names_the_file_line_and_key(text: str, words: str) -> None:
    assert _error(text).startswith(words)


def test_a_file_that_cannot_be_read_or_is_not_utf8(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ScriptError, match=r"missing\.toml: cannot read the script: No such"):
        FakePeer.from_file(missing)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"version = 1\n# caf\xe9\n")
    with pytest.raises(ScriptError, match=r"latin\.toml:2: a TOML file is UTF-8"):
        FakePeer.from_file(str(latin))


# -- every value form, rehearsed without sockets -------------------------------------------------


def _answers(text: str, sent: bytes) -> list[bytes]:
    peer = load_text(textwrap.dedent(text), "r.toml")
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    return rehearsal.send(client, sent)


@pytest.mark.parametrize(
    ("match", "sent"),
    [
        ('"PING"', b"PING\n"),
        ('{ text = "PING" }', b"PING\n"),
        ('{ hex = "50:49:4e:47" }', b"PING\n"),
        ("{ escaped = '\\x50ING' }", b"PING\n"),
        ('{ exact = { hex = "50494e47" } }', b"PING\n"),
        ('{ prefix = "PI" }', b"PING\n"),
        ('{ contains = "IN" }', b"PING\n"),
        ('{ regex = "p.ng", flags = ["IGNORECASE"] }', b"PING\n"),
        ("{ any = true }", b"PING\n"),
        ("{ json = { a = [1, 2] } }", b'{"a": [1, 2], "b": 3}\n'),
        ('{ all_of = [{ prefix = "P" }, { contains = "NG" }] }', b"PING\n"),
        ('{ any_of = ["X", "PING"] }', b"PING\n"),
        ('{ not = "PONG" }', b"PING\n"),
    ],
)
def test_every_matcher_form(match: str, sent: bytes) -> None:
    text = f"version = 1\n[framing]\nkind = 'lines'\n[[expect]]\nmatch = {match}\nreply = 'OK'\n"
    assert _answers(text, sent) == [b"OK\n"]


def test_steps_states_cycle_echo_and_reply_arrays() -> None:
    text = """\
        version = 1
        [framing]
        kind = "lines"
        [[greeting]]
        send = { hex = "48 49" }
        [[always]]
        match = "N"
        cycle = ["one", "two"]
        [[always]]
        match = { prefix = "E" }
        when = "on"
        echo = true
        [[expect]]
        match = "ON"
        reply = ["A", "B"]
        goto = "on"
        [[otherwise]]
        steps = [{ send = "?" }, { reply = "!" }]
    """
    peer = load_text(textwrap.dedent(text), "r.toml")
    rehearsal = Rehearsal(peer)
    client = rehearsal.connect()
    assert rehearsal.send(client, b"N\nEX\nON\nEX\nN\nN\n") == [
        b"one\n",
        b"?\n",
        b"!\n",
        b"A\n",
        b"B\n",
        b"EX\n",
        b"two\n",
        b"one\n",
    ]


def test_kit_matchers_are_the_kits() -> None:
    text = """\
        version = 1
        [[always]]
        match = { mqtt = "publish", topic = "a/+", qos = 1, payload = { json = { t = 1 } } }
        [[always]]
        match = { mqtt = "connect", username = false }
        [[always]]
        match = { modbus = "read_holding_registers", address = 0, count = "*", unit = 1 }
        [[always]]
        match = { http = ["GET", "*"], headers = { Host = "x" }, body = "" }
        [[always]]
        match = { resp = ["CLIENT SETINFO", "*", "..."] }
    """
    peer = load_text(textwrap.dedent(text), "k.toml")
    described = [rule.describe() for rule in peer._conversation.script.permanent]
    assert [text.split(" (k.toml")[0] for text in described] == [
        "always #1 " + mqtt.publish("a/+", json({"t": 1}), 1).describe(),
        "always #2 " + mqtt.connect(username=None).describe(),
        "always #3 " + modbus.read_holding_registers(0, unit=1).describe(),
        "always #4 " + http1.request("GET", headers={"Host": "x"}, body=b"").describe(),
        "always #5 " + resp.command("CLIENT SETINFO", ANY, ...).describe(),
    ]


def test_peer_keys_reach_the_peer(tmp_path: Path) -> None:
    text = f"""\
        version = 1
        [peer]
        name = "p"
        unix = "{tmp_path / "s.sock"}"
        timeout = 1
        seed = 3
        transcript_budget = false
        max_send_buffer = 1000
        [reply_framing]
        kind = "none"
        [framing]
        kind = "stx-etx"
    """
    peer = load_text(textwrap.dedent(text))
    assert (peer.seed, peer.reply_framing) == (3, Raw())
    assert peer.framing == StxEtx()


def test_faults_with_a_schedule_and_a_reset_after() -> None:
    text = """\
        version = 1
        [[faults]]
        kind = "reset_peer"
        fault_after = 0.5
        first = 1
        [[faults]]
        kind = "latency"
        seconds = 0.1
        after = 10
    """
    peer = load_text(textwrap.dedent(text))
    assert [str(fault) for fault in peer.faults] == [str(faults.reset_peer(after=0.5))]


def test_redis_py_talks_to_a_file_with_the_kits_handshake(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        version = 1
        [framing]
        kind = "resp"
        [[kit]]
        preset = "resp.handshake"
        [[expect]]
        match = { resp = ["INCRBY", "n", "1"] }
        reply = ":5\\r\\n"
        """,
    )
    peer = FakePeer.from_file(path)
    with peer.serve():
        host, port = peer.address
        client = redis.Redis(host=host, port=port, socket_timeout=5)
        try:
            assert client.incr("n") == 5
        finally:
            client.close()
    assert "resp.handshake" not in peer.transcript.render()
    assert "(conversation.toml:4)" in peer.transcript.render()
