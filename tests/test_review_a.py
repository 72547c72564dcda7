"""Hostile review (issue 15), reviewer a: each test reproduces a bug and FAILS until fixed."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
import redis

from fakepeer import (
    ANY,
    FakePeer,
    FramingError,
    LengthField,
    Lines,
    ScriptError,
    UnexpectedData,
)
from fakepeer._framing import Decoder
from fakepeer.protocols import http1, resp

TIMEOUT = 5


def send_and_drain(peer: FakePeer, data: bytes) -> None:
    """Send ``data``, then read until the peer closes (bounded by TIMEOUT)."""
    with socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        sock.sendall(data)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


# -- 1. numbers of more than 4300 digits: ValueError, not FramingError -------------------------


def test_http_content_length_of_5000_digits_is_a_length() -> None:
    """Content-Length is 1*DIGIT (RFC 9110 8.6): leading zeros are legal. int() of more
    than 4300 digits raises ValueError (sys.int_info.str_digits_check_threshold): today a
    ConversationError "handling an event raised ValueError" instead of an answer."""
    peer = FakePeer(framing=http1.framing())
    peer.expect(http1.request("POST", "/", body=b"hello")).reply(http1.response(200, b"ok"))
    with peer.serve(), socket.create_connection(peer.address, timeout=TIMEOUT) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: " + b"0" * 5000 + b"5\r\n\r\nhello")
        assert sock.recv(100).endswith(b"\r\n\r\nok")


def test_resp_multibulk_count_of_5000_digits_is_a_framing_error() -> None:
    peer = FakePeer(framing=resp.framing())
    peer.otherwise()
    with pytest.raises(FramingError), peer.serve():
        send_and_drain(peer, b"*" + b"0" * 5000 + b"1\r\n$4\r\nPING\r\n")


def test_resp_bulk_length_of_5000_digits_decodes_to_a_framing_error() -> None:
    with pytest.raises(FramingError):  # today: ValueError out of decode
        resp.framing().decode(b"*1\r\n$" + b"9" * 5000 + b"\r\n", False)


# -- 2. the diagnosis calls predicates again, unguarded ----------------------------------------


def test_a_later_expectation_s_predicate_that_raises_does_not_replace_unexpected_data() -> None:
    """Strict order: expect #2 is never tried on the message; only the "similar rules"
    scan of the diagnosis calls it (fakepeer/_explain.py closeness: matcher.match unguarded),
    and its exception replaces the real failure."""
    peer = FakePeer(framing=Lines())
    peer.expect(b"HELLO")
    peer.expect(lambda message: message.decode() == "x")
    with pytest.raises(UnexpectedData), peer.serve():
        send_and_drain(peer, b"\xff\xfe\n")


def test_a_predicate_that_raises_only_when_called_again_does_not_replace_the_failure() -> None:
    calls: list[bytes] = []

    def first_no_then_raise(message: bytes) -> bool:
        calls.append(message)
        if len(calls) > 1:
            raise RuntimeError("called again")
        return False

    peer = FakePeer(framing=Lines())
    peer.expect(first_no_then_raise)
    with pytest.raises(UnexpectedData), peer.serve():
        send_and_drain(peer, b"abc\n")


def test_the_diagnosis_never_says_matches_of_a_message_that_did_not_match() -> None:
    calls: list[bytes] = []

    def no_then_yes(message: bytes) -> bool:
        calls.append(message)
        return len(calls) > 1

    peer = FakePeer(framing=Lines())
    peer.expect(no_then_yes)
    with pytest.raises(UnexpectedData) as failure, peer.serve():
        send_and_drain(peer, b"abc\n")
    assert "the data matches" not in str(failure.value)
    assert (
        "the data did not match when the peer judged it, but matches when the diagnosis asks "
        "again: a matcher must give the same answer for the same bytes (a pure predicate)"
    ) in str(failure.value)


# -- 3. the kits' framings re-parse the whole buffer on every segment: quadratic time ----------


def feed(framing: object, data: bytes, segment: int) -> int:
    decoder = Decoder(framing)  # type: ignore[arg-type]
    buffer = bytearray()
    count = 0
    for start in range(0, len(data), segment):
        count += len(decoder.feed(buffer, data[start : start + segment]))
    return count


def growth(work: Callable[[int], object], n: int, factor: int = 4) -> float:
    """How much longer ``work(factor * n)`` takes than ``work(n)``: about ``factor`` when the
    work is linear, about ``factor**2`` when it is quadratic. CPU time of the whole process
    (the hub's thread too), the least of three tries of each, interleaved: a ratio, not a
    duration, so a loaded machine slows both sizes alike and cannot fail the test."""
    small: list[float] = []
    large: list[float] = []
    for _ in range(3):
        for size, times in ((n, small), (factor * n, large)):
            started = time.process_time()
            work(size)
            times.append(time.process_time() - started)
    return min(large) / max(min(small), 1e-6)


def test_a_chunked_body_in_small_segments_is_decoded_in_about_linear_time() -> None:
    """120 KB of 1-byte chunks (well under max_length) in 300-byte segments: each segment
    re-parses every chunk so far (http1._chunked from the request's start)."""

    def work(chunks: int) -> None:
        body = b"1\r\na\r\n" * chunks + b"0\r\n\r\n"
        request = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body
        assert feed(http1.framing(), request, 300) == 1

    assert growth(work, 5000) < 8  # quadratic: about 16


def test_a_command_with_many_arguments_in_small_segments_is_decoded_in_about_linear_time() -> None:
    """440 KB, 40000 arguments (under max_length) in 3000-byte segments: each segment
    re-parses every bulk string so far (resp._multibulk from the command's start)."""

    def work(arguments: int) -> None:
        head = b"*%d\r\n$4\r\nSADD\r\n" % (arguments + 1)
        command = head + b"".join(b"$5\r\n%05d\r\n" % i for i in range(arguments))
        assert feed(resp.framing(), command, 3000) == 1

    assert growth(work, 10000) < 8  # quadratic: about 16


# -- 4. script mistakes that are not ScriptError -----------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: http1.response(200, b"", {"Content-Disposition": 'attachment; filename="€.txt"'}),
        lambda: http1.response(200, reason="Très bien ✓"),
    ],
    ids=["header-value", "reason"],
)
def test_a_response_field_that_latin_1_cannot_encode_is_a_script_error(build: object) -> None:
    """docs/api-protocols.md: "a wrong argument in the script raises ScriptError where it is
    written"; today UnicodeEncodeError from http1.response's final .encode("latin-1")."""
    with pytest.raises(ScriptError):
        build()  # type: ignore[operator]


def test_a_command_named_in_bytes_that_are_not_utf8_describes_itself_or_is_refused() -> None:
    """command() takes the name as bytes; describe() decodes it as UTF-8 and raises, in
    every transcript line and failure that names the rule (resp.CommandMatcher.describe)."""
    try:
        matcher = resp.command(b"\xffGET")
    except ScriptError:
        return  # refused where it is written: fine
    assert "GET" in matcher.describe()  # today: UnicodeDecodeError


# -- 5. similar rules under Raw are ranked in message mode -------------------------------------


def test_under_raw_a_near_miss_is_listed_as_a_similar_rule() -> None:
    """_matching.closeness(exact(b"PING"), data, stream=True) is 0.75 (the front is "PONG"),
    but fakepeer/_explain.py closeness calls measure(matcher, data) without stream=: 0.15 in
    message mode, under SIMILARITY, so the near miss is not listed."""
    peer = FakePeer()
    peer.expect(b"HELLO")
    peer.always(b"PING").reply(b"PONG")
    with pytest.raises(UnexpectedData) as failure, peer.serve():
        send_and_drain(peer, b"PONG and then some more bytes, a lot")
    assert "similar rules:" in str(failure.value)


def test_pipelined_requests_in_one_buffer_are_decoded_in_about_linear_time() -> None:
    """HTTPFraming.decode compared buffer[start:] == b"\\r" per request: a copy of the rest
    of the buffer for each request, quadratic in the requests one segment holds."""

    def work(count: int) -> None:
        requests = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n" * count
        messages, consumed = http1.framing(max_length=1 << 21).decode(requests, False)
        assert (len(messages), consumed) == (count, len(requests))

    assert growth(work, 10000) < 8  # quadratic: about 16


# -- 6. LengthField(size=2.0) is accepted, then fails at the first bytes ---------------------


def test_a_float_size_is_a_script_error_naming_the_keyword() -> None:
    """2.0 in (1, 2, 3, 4, 8) is True: LengthField(size=2.0) is built, and its decode raises
    TypeError (slice indices) at the client's first bytes, far from where it was written."""
    with pytest.raises(ScriptError, match="size="):
        LengthField(size=2.0)  # type: ignore[arg-type]


# -- 7. resp.protocol_of re-parses every message of the connection: quadratic -------------------


def test_protocol_of_in_every_reply_as_the_howto_writes_it_stays_fast() -> None:
    """docs/howto-redis.md's get() calls resp.protocol_of(connection) for each missing key;
    protocol_of parses every message the connection received so far, so a pipeline of
    n GETs costs O(n^2) parses on the hub's loop: LoopBlocked (the watchdog) or a
    very slow test, for a few thousand GETs."""
    peer = FakePeer(framing=resp.framing())
    resp.handshake(peer)
    peer.always(resp.command("GET", ANY)).reply(
        lambda command, connection: resp.null(protocol=resp.protocol_of(connection))
    )
    with peer.serve():
        host, port = peer.address
        client = redis.Redis(host, port, socket_timeout=30)
        try:

            def work(gets: int) -> None:
                pipeline = client.pipeline(transaction=False)
                for index in range(gets):
                    pipeline.get(f"k{index}")
                assert pipeline.execute() == [None] * gets

            assert growth(work, 1500) < 8  # quadratic: about 16
        finally:
            client.close()


# -- 8. HTTP: smuggling-shaped heads the framing neither rejects nor normalises ------------------


@pytest.mark.parametrize(
    "head",
    [
        # a bare LF inside a field: RFC 9112 5.5 "MUST either reject the message or replace
        # each CR, LF or NUL with SP"; today one field Host = 'a\nContent-Length: 5'
        b"GET / HTTP/1.1\r\nHost: a\nContent-Length: 5\r\n\r\n",
        # an empty Transfer-Encoding is taken as none (b",".join([b""]) is falsy)
        b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
    ],
    ids=["bare-LF-in-a-field", "empty-transfer-encoding"],
)
def test_heads_that_a_server_must_reject_are_framing_errors(head: bytes) -> None:
    with pytest.raises(FramingError):
        http1.framing().decode(head, False)
