"""The RESP kit (fakepeer.protocols.resp) against redis-py, sync and asyncio, and by itself."""

from __future__ import annotations

import asyncio
import inspect
import socket
from typing import Any

import pytest
import redis
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from _segments import SIZES, counting_decode, feed_all, per_segment, segments, through_decoder
from fakepeer import (
    ANY,
    FakePeer,
    FramingError,
    Matched,
    Raw,
    ScriptError,
    UnexpectedData,
    prefix,
)
from fakepeer.protocols import resp
from fakepeer.testing import check_framing


def redis_client(peer: FakePeer, **options: object) -> redis.Redis:
    host, port = peer.address
    no_retry = Retry(NoBackoff(), 0)  # a failed command fails the test, not a new connection
    return redis.Redis(host=host, port=port, socket_timeout=5, retry=no_retry, **options)  # type: ignore[arg-type]


# -- redis-py, sync ----------------------------------------------------------------------------


def test_the_handshake_and_a_get_in_three_lines() -> None:
    peer = FakePeer(framing=resp.framing())
    resp.handshake(peer)
    peer.expect(resp.command("GET", "k")).reply(resp.bulk_string("v"))
    with peer.serve():
        client = redis_client(peer)
        assert client.get("k") == b"v"
        client.close()
    names = [resp.parse(message).name for message in peer.received]
    assert names == ["HELLO", "CLIENT", "CLIENT", "CLIENT", "GET"]


def test_set_get_and_a_pipeline_on_one_connection() -> None:
    peer = FakePeer(framing=resp.framing())
    resp.handshake(peer)
    peer.expect(resp.command("set", "k", ANY)).reply(resp.simple_string("OK"))
    peer.expect(resp.command("GET", "k")).reply(resp.bulk_string(b"\x00bytes\r\n"))
    peer.expect(resp.command("INCRBY", "n", 1)).reply(resp.integer(1)).times(2)
    peer.expect(resp.command("LRANGE", "l", 0, -1)).reply(
        resp.array(resp.bulk_string("a"), resp.null(), resp.integer(7))
    )
    with peer.serve():
        client = redis_client(peer)
        assert client.set("k", "value") is True
        assert client.get("k") == b"\x00bytes\r\n"
        pipe = client.pipeline(transaction=False)
        pipe.incr("n")
        pipe.incr("n")
        pipe.lrange("l", 0, -1)
        assert pipe.execute() == [1, 1, [b"a", None, 7]]
        client.close()
    assert len(peer.connections) == 1
    assert resp.parse(peer.received[4]) == resp.Command("SET", (b"k", b"value"))


def test_an_error_reply_raises_response_error() -> None:
    peer = FakePeer(framing=resp.framing())
    resp.handshake(peer)
    peer.expect(resp.command("GET", "h")).reply(
        resp.error("WRONGTYPE Operation against a key holding the wrong kind of value")
    )
    with peer.serve():
        client = redis_client(peer)
        with pytest.raises(
            redis.ResponseError, match=r"^WRONGTYPE Operation against a key holding"
        ):
            client.get("h")
        client.close()


def test_resp3_map_boolean_double_and_the_hello_reply() -> None:
    peer = FakePeer(framing=resp.framing())
    resp.handshake(peer, version="7.2.4")
    peer.expect(resp.command("HGETALL", "h")).reply(
        resp.map({resp.bulk_string("a"): resp.bulk_string("1")})
    )
    peer.expect(resp.command("ZSCORE", "z", "m")).reply(resp.double(1.5))
    peer.expect(resp.command("GET", "none")).reply(resp.null())
    with peer.serve():
        client = redis_client(peer)
        assert client.hgetall("h") == {b"a": b"1"}
        assert client.zscore("z", "m") == 1.5
        assert client.get("none") is None
        metadata: Any = client.connection_pool.get_connection().handshake_metadata
        assert metadata[b"proto"] == 3
        assert metadata[b"version"] == b"7.2.4"
        client.close()


def test_a_resp2_client_sends_no_hello_and_replies_follow_its_protocol() -> None:
    peer = FakePeer(framing=resp.framing())
    resp.handshake(peer)
    peer.always(resp.command("HGETALL", ANY)).reply(
        lambda sent, connection: resp.map(
            {resp.bulk_string("a"): resp.bulk_string("1")}, protocol=resp.protocol_of(connection)
        )
    )
    peer.always(resp.command("GET", ANY)).reply(
        lambda sent, connection: resp.null(protocol=resp.protocol_of(connection))
    )
    with peer.serve():
        for protocol in (2, 3):
            client = redis_client(peer, protocol=protocol)
            assert client.hgetall("h") == {b"a": b"1"}
            assert client.get("k") is None
            client.close()
    first, second = peer.connections
    assert [resp.parse(m).name for m in first.received] == ["CLIENT", "CLIENT", "HGETALL", "GET"]
    assert resp.protocol_of(first) == 2
    assert resp.protocol_of(second) == 3


def test_hello_with_an_unknown_version_gets_noproto() -> None:
    peer = FakePeer(framing=resp.framing())
    resp.handshake(peer)
    with peer.serve():
        client = redis_client(peer, protocol=2)
        with pytest.raises(redis.ResponseError, match="unsupported protocol version"):
            client.execute_command("HELLO", 4)  # type: ignore[no-untyped-call]
        hello = client.execute_command("HELLO", 2)  # type: ignore[no-untyped-call]  # RESP2: a flat array of keys and values
        assert hello[hello.index(b"proto") + 1] == 2
        client.close()


def test_a_command_no_rule_expects_fails_with_the_argument_that_differs() -> None:
    peer = FakePeer(framing=resp.framing())
    resp.handshake(peer)
    peer.expect(resp.command("GET", "k"))
    with pytest.raises(UnexpectedData) as excinfo, peer.serve():  # noqa: PT012  # leaving serve() raises
        client = redis_client(peer)
        with pytest.raises(redis.ConnectionError):
            client.get("j")
        client.close()
    assert "has an argument 1 ('j') that differs at byte 0" in str(excinfo.value)
    assert "command('GET', 'k')" in str(excinfo.value)


# -- redis-py, asyncio -------------------------------------------------------------------------


def test_asyncio_client_set_get_and_pipeline() -> None:
    peer = FakePeer(framing=resp.framing())
    resp.handshake(peer)
    peer.expect(resp.command("SET", "k", "v")).reply(resp.simple_string("OK"))
    peer.expect(resp.command("GET", "k")).reply(resp.bulk_string("v"))
    peer.expect(resp.command("HGETALL", "h")).reply(
        resp.map({resp.bulk_string("f"): resp.bulk_string("x")})
    )
    peer.expect(resp.command("EXISTS", "k")).reply(resp.integer(1))
    peer.expect(resp.command("GET", "gone")).reply(resp.error("ERR gone"))

    async def talk(host: str, port: int) -> None:
        no_retry = AsyncRetry(NoBackoff(), 0)
        client = redis.asyncio.Redis(host=host, port=port, socket_timeout=5, retry=no_retry)
        assert await client.set("k", "v") is True
        assert await client.get("k") == b"v"
        async with client.pipeline(transaction=False) as pipe:
            pipe.hgetall("h")
            pipe.exists("k")
            assert await pipe.execute() == [{b"f": b"x"}, 1]
        with pytest.raises(redis.ResponseError, match="gone"):
            await client.get("gone")
        await client.aclose()

    with peer.serve():
        asyncio.run(talk(*peer.address))


# -- inline commands and bad bytes, on a socket --------------------------------------------------


def test_inline_commands_are_commands_too() -> None:
    peer = FakePeer(framing=resp.framing())
    peer.expect(resp.command("PING")).reply(resp.simple_string("PONG"))
    peer.expect(resp.command("ECHO", "hi")).reply(lambda sent: resp.bulk_string(sent.args[0]))
    with peer.serve(), socket.create_connection(peer.address, timeout=5) as sock:
        sock.sendall(b"ping\r\n\r\nECHO  hi\n")
        reader = sock.makefile("rb")
        assert reader.readline() == b"+PONG\r\n"
        assert reader.read(8) == b"$2\r\nhi\r\n"
        reader.close()


def test_bad_bytes_fail_the_connection_with_a_framing_error() -> None:
    peer = FakePeer(framing=resp.framing())
    peer.otherwise()
    with (  # noqa: PT012  # leaving serve() raises the error
        pytest.raises(FramingError) as excinfo,
        peer.serve(),
        socket.create_connection(peer.address, timeout=5) as sock,
    ):
        sock.sendall(b"*1\r\n+PING\r\n")
        assert sock.recv(10) == b""  # the peer closed the connection
    assert str(excinfo.value).startswith(
        "connection #1: RESP: element 1 of the command is not a bulk string: "
        "expected '$', received '+PING\\r\\n'"
    )


# -- the framing -------------------------------------------------------------------------------


def multibulk(words: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


NAMES = st.text("abcxyzGETSE", min_size=1, max_size=8).map(str.encode)
WORDS = st.builds(
    lambda name, args: [name, *args], NAMES, st.lists(st.binary(max_size=12), max_size=3)
)
#: Words an inline command can carry (no whitespace, no '*' first).
INLINE_WORDS = [[b"GET", b"k"], [b"PING"], [b"set", b"x1", b"2"]]
INLINE = st.sampled_from(INLINE_WORDS)


@settings(max_examples=60, deadline=None)
@given(commands=st.lists(st.tuples(st.booleans(), st.one_of(WORDS, INLINE)), max_size=5))
def test_the_same_commands_however_the_bytes_are_split(
    commands: list[tuple[bool, list[bytes]]],
) -> None:
    messages = [
        b" ".join(words) + b"\r\n" if inline and words in INLINE_WORDS else multibulk(words)
        for inline, words in commands
    ]
    assert check_framing(resp.framing(), b"".join(messages), messages) == messages
    for message, (_, words) in zip(messages, commands, strict=True):
        sent = resp.parse(message)
        assert (sent.name.encode(), sent.args) == (words[0].upper(), tuple(words[1:]))


@settings(max_examples=150, deadline=None)
@given(
    commands=st.lists(st.tuples(st.booleans(), st.one_of(WORDS, INLINE)), max_size=5),
    junk=st.one_of(st.none(), st.tuples(st.integers(0, 1000), st.binary(min_size=1, max_size=3))),
    sizes=SIZES,
    way=st.sampled_from(["feed", "take"]),
    limit=st.sampled_from([24, 64, resp.MAX_LENGTH]),
)
def test_through_the_decoder_in_any_segments_as_decode_on_every_segment(
    *,
    commands: list[tuple[bool, list[bytes]]],
    junk: tuple[int, bytes] | None,
    sizes: list[int],
    way: str,
    limit: int,
) -> None:
    """The framing's waiting and mark skip decode only when it would cut nothing and raise
    nothing: the same commands, leftover and FramingError (its text, at the same segment),
    in segments of any sizes (1 byte too), fed or taken, with junk inserted anywhere; and the same
    commands as one decode of the whole stream."""
    stream = b"".join(
        b" ".join(words) + b"\r\n" if inline and words in INLINE_WORDS else multibulk(words)
        for inline, words in commands
    )
    if junk is not None:
        at = junk[0] % (len(stream) + 1)
        stream = stream[:at] + junk[1] + stream[at:]
    framing = resp.framing(max_length=limit)
    chunks = segments(stream, sizes)
    expected = per_segment(framing, chunks)
    assert through_decoder(framing, chunks, way) == expected
    whole = per_segment(framing, [stream])
    if whole[2] is None:
        assert expected == whole
    assert (expected[2] is None) == (whole[2] is None)


@pytest.mark.parametrize(
    "command",
    [
        b"*40001\r\n$4\r\nSADD\r\n" + b"".join(b"$5\r\n%05d\r\n" % i for i in range(40000)),
        b"*2\r\n$3\r\nSET\r\n$500000\r\n" + b"v" * 500_000 + b"\r\n",
        b"SET k " + b"v" * 500_000 + b"\r\n",
    ],
    ids=["many-arguments", "long-argument", "long-inline"],
)
def test_a_long_command_in_small_segments_is_decoded_in_linear_time(
    monkeypatch: pytest.MonkeyPatch, command: bytes
) -> None:
    """Not a timing: decode is handed each byte about once, not once per segment."""
    framing = resp.framing()
    handed = counting_decode(monkeypatch, framing)
    assert feed_all(framing, command + b"PING\r\n", 300) == ([command, b"PING\r\n"], b"")
    assert sum(handed) < 2 * len(command)
    assert len(handed) <= 3


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"*x\r\n", "RESP: invalid multibulk length 'x': expected a whole number from 1"),
        (b"*0\r\n", "RESP: invalid multibulk length '0'"),
        (b"*1\r\n$-1\r\n", "RESP: invalid bulk length '-1': expected a whole number from 0"),
        (b"*1\r\n$2\r\nabcd\r\n", "the bulk string of 2 byte(s) at element 1 is not followed"),
        (b"*1\r\n:1\r\n", "element 1 of the command is not a bulk string: expected '$'"),
        (b"*1\r\n$100\r\n", "RESP: a command of 112 bytes or more, over the limit of 64 "),
        (b"GET " + b"k" * 70, "(resp.framing(max_length=...) raises it)"),
        (b"\x16\x03\x01", "RESP: '\\x16\\x03\\x01' is no command: a command is an array"),
    ],
)
def test_bytes_that_are_no_command_raise_a_framing_error(data: bytes, text: str) -> None:
    with pytest.raises(FramingError) as excinfo:
        check_framing(resp.framing(max_length=64), data, eof=False)
    assert text in str(excinfo.value)


def test_the_framing_sends_replies_unchanged_and_checks_its_limit() -> None:
    assert resp.framing().encode(b"+OK\r\n") == b"+OK\r\n"
    assert resp.framing() == resp.framing()
    assert repr(resp.framing(max_length=100)) == "resp.framing(max_length=100)"
    assert resp.framing().max_length == 1024 * 1024
    with pytest.raises(ScriptError, match=r"resp.framing\(max_length=0\): the limit is"):
        resp.framing(max_length=0)


#: What a reply of the kit's framing that is no RESP reply says after its reason.
BUILDERS = (
    "build replies with the kit: resp.simple_string('OK'), resp.error('ERR ...'), "
    "resp.integer(1), resp.bulk_string(b'...'), resp.array(...), resp.null()... (to send "
    "malformed bytes on purpose, pass FakePeer(framing=resp.framing(), reply_framing=Raw()))"
)


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (b"OK", "'OK' starts with no RESP type byte ('+', '-', ':', '$', '*', '_', '%'...)"),
        (b"+OK", "'+OK' has no '\\r\\n' to end its line"),
        (b"*2\r\n+a\r\n", "it ends before a value the ones before it announce"),
        (b"$3\r\nab\r\n", "the 3 byte(s) after '$3\\r\\n' are not followed by '\\r\\n'"),
        (b"*x\r\n", "the length 'x' of '*' is no number >= 0"),
        (b"", "it is empty (a reply callable returns None to send nothing)"),
    ],
)
def test_a_reply_that_is_no_resp_reply_names_the_builders(reply: bytes, why: str) -> None:
    rule = FakePeer(framing=resp.framing()).expect(resp.command("GET", "k"))
    with pytest.raises(ScriptError) as error:
        rule.reply(reply)
    assert str(error.value) == (
        f".reply() on {rule.describe()}: resp.framing(): the reply {resp_show(reply)} is no "
        f"whole RESP reply: {why}; {BUILDERS}"
    )


def resp_show(data: bytes) -> str:
    return "'" + repr(data)[2:-1] + "'"


@pytest.mark.parametrize(
    "reply",
    [
        b"+OK\r\n+QUEUED\r\n",  # two replies: a pipeline's
        b"$-1\r\n",
        b"*-1\r\n",
        b"%1\r\n+a\r\n*1\r\n:1\r\n",
        b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",  # an attribute, then the reply
        b">2\r\n+message\r\n$0\r\n\r\n",
    ],
)
def test_whole_resp_replies_go_out_unchanged(reply: bytes) -> None:
    assert resp.framing().encode(reply) == reply


def test_redis_py_gets_what_reply_framing_raw_sends_on_purpose() -> None:
    peer = FakePeer(framing=resp.framing(), reply_framing=Raw())
    resp.handshake(peer)
    peer.expect(resp.command("GET", "k")).reply("?bad\r\n")  # malformed on purpose
    with peer.serve():
        client = redis_client(peer)
        with pytest.raises(redis.exceptions.InvalidResponse):
            client.get("k")
        client.close()


def test_a_reply_callable_that_returns_no_resp_reply_fails_as_it_replies() -> None:
    peer = FakePeer(framing=resp.framing())
    resp.handshake(peer)
    rule = peer.expect(resp.command("GET", "k")).reply(lambda _: "OK")
    with pytest.raises(ScriptError) as error, peer.serve():  # noqa: PT012 - client, then stop
        client = redis_client(peer)
        with pytest.raises(redis.exceptions.ConnectionError):  # the peer closed
            client.get("k")
        client.close()
    assert error.value.diagnosis.startswith(
        f"{rule.describe()}: resp.framing(): the reply 'OK' is no whole RESP reply"
    )


# -- the matcher -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "description"),
    [
        (resp.command("get", "k"), "command('GET', 'k')"),
        (resp.command("SET", "k", ANY), "command('SET', 'k', ANY)"),
        (resp.command("CLIENT SETINFO", ...), "command('CLIENT SETINFO', ...)"),
        (resp.command("EXPIRE", prefix("user:"), 10), "command('EXPIRE', prefix 'user:', '10')"),
    ],
)
def test_a_command_describes_itself(matcher: object, description: str) -> None:
    assert str(matcher) == description


def test_a_command_matches_whole_commands_and_says_why_not() -> None:
    matcher = resp.command("SET", "k", ANY)
    sent = multibulk([b"set", b"k", b"v"])
    outcome = matcher.match(sent, stream=False)
    assert isinstance(outcome, Matched)
    assert outcome.value == resp.Command("SET", (b"k", b"v"))
    assert str(outcome.value) == "SET 'k' 'v'"
    assert matcher.match(multibulk([b"SET", b"k"]), stream=False) is None
    assert matcher.match(sent, stream=True) is None  # a kit's matchers need the kit's framing
    assert matcher.explain(multibulk([b"GET", b"k"])) == "is the command 'GET', not 'SET'"
    assert matcher.explain(multibulk([b"SET", b"k"])) == "has 1 argument(s) after the name, not 2"
    assert matcher.explain(b"*1\r\n") == (
        "is not a RESP command (RESP: '*1\\r\\n' is no whole command)"
    )
    rest = resp.command("CLIENT SETINFO", ...)
    assert rest.match(multibulk([b"client", b"setinfo", b"LIB-VER", b"1"]), stream=False)
    assert rest.match(multibulk([b"CLIENT", b"SETNAME", b"x"]), stream=False) is None


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda: resp.command("GET", 1.5), "command(): argument 1 is float 1.5; an argument is"),
        (lambda: resp.command(""), "the name is a command, optionally with a subcommand"),
        (lambda: resp.command("CLIENT A B"), "the name is a command, optionally with a subcommand"),
        (
            lambda: resp.command("GET k"),
            "command('GET k'): 'GET' takes no subcommand: pass each argument on its own, "
            "command('GET', 'k') (a name of two words is a container command and its "
            "subcommand: 'CLIENT SETINFO', 'CONFIG GET'...)",
        ),
        (lambda: resp.simple_string("a\r\nb"), "a line end cannot be in it"),
        (lambda: resp.error(""), "an error needs a message"),
        (lambda: resp.integer(2**63), "RESP integers are signed 64-bit"),
        (lambda: resp.array(b"a"), "b'a' is not an encoded reply; build each item"),
        (lambda: resp.null(protocol=4), "null(protocol=4): the protocol is 2 or 3"),
        (lambda: resp.boolean(1), "boolean() takes True or False"),  # type: ignore[arg-type]
        (lambda: resp.bulk_string(None), "bulk_string() takes bytes or str"),  # type: ignore[arg-type]
    ],
)
def test_script_mistakes_raise_script_error(call: object, text: str) -> None:
    assert callable(call)
    with pytest.raises(ScriptError) as excinfo:
        call()
    assert text in str(excinfo.value)


@pytest.mark.parametrize(
    ("reply", "wire"),
    [
        (resp.simple_string("OK"), b"+OK\r\n"),
        (resp.error("ERR x"), b"-ERR x\r\n"),
        (resp.integer(-3), b":-3\r\n"),
        (resp.bulk_string("é"), b"$2\r\n\xc3\xa9\r\n"),
        (resp.null(), b"_\r\n"),
        (resp.null(protocol=2), b"$-1\r\n"),
        (resp.array(), b"*0\r\n"),
        (resp.map([(resp.integer(1), resp.null())]), b"%1\r\n:1\r\n_\r\n"),
        (
            resp.map({resp.bulk_string("a"): resp.integer(1)}, protocol=2),
            b"*2\r\n$1\r\na\r\n:1\r\n",
        ),
        (resp.boolean(True), b"#t\r\n"),
        (resp.boolean(False, protocol=2), b":0\r\n"),
        (resp.double(float("-inf")), b",-inf\r\n"),
        (resp.double(2, protocol=2), b"$3\r\n2.0\r\n"),
    ],
)
def test_reply_builders(reply: bytes, wire: bytes) -> None:
    assert reply == wire


def test_the_handshake_returns_its_rules() -> None:
    peer = FakePeer(framing=resp.framing())
    rules = resp.handshake(peer.on_connection(1))
    assert len(rules) == 5
    with pytest.raises(ScriptError, match="the Redis version is a str"):
        resp.handshake(peer, version="")


def test_a_presets_rules_are_located_at_its_call_in_the_test() -> None:
    """The transcript and the diagnoses say where a rule was written: for a preset's rules,
    the test's line that called the preset, not the kit's own source."""
    peer = FakePeer(framing=resp.framing())
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    rules = resp.handshake(peer)
    assert {rule.where for rule in rules} == {f"test_protocol_resp.py:{line}"}
