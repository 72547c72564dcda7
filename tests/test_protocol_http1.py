"""The HTTP/1.1 kit (fakepeer.protocols.http1) against http.client and urllib, and by itself."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from fakepeer import json as json_matcher
from fakepeer.protocols import http1
from fakepeer.testing import check_framing


def connect(peer: FakePeer) -> http.client.HTTPConnection:
    host, port = peer.address
    return http.client.HTTPConnection(host, port, timeout=5)


# -- http.client and urllib --------------------------------------------------------------------


def test_keep_alive_then_close() -> None:
    peer = FakePeer(framing=http1.framing())
    peer.expect(http1.request("GET", "/a")).reply(http1.response(200, b"first"))
    peer.expect(http1.request("GET", "/b", headers={"host": ANY})).reply(
        http1.response(200, "second", {"Connection": "close"})
    ).close()
    with peer.serve():
        client = connect(peer)
        client.request("GET", "/a")
        first = client.getresponse()
        assert (first.status, first.reason, first.read()) == (200, "OK", b"first")
        client.request("GET", "/b")
        second = client.getresponse()
        assert (second.status, second.read(), second.will_close) == (200, b"second", True)
        client.close()
    assert len(peer.connections) == 1
    assert http1.parse(peer.received[0]).header("Host") == f"{peer.address[0]}:{peer.address[1]}"


def test_post_with_a_body_and_a_reply_that_echoes_it() -> None:
    peer = FakePeer(framing=http1.framing())
    peer.expect(http1.request("POST", "/shout", body=b"hello")).reply(
        lambda sent: http1.response(201, sent.body.upper(), {"Content-Type": "text/plain"})
    )
    with peer.serve():
        client = connect(peer)
        client.request("POST", "/shout", body=b"hello")
        answer = client.getresponse()
        assert (answer.status, answer.reason, answer.read()) == (201, "Created", b"HELLO")
        assert answer.getheader("Content-Type") == "text/plain"
        client.close()


def test_a_chunked_upload_is_one_request_with_the_chunks_joined() -> None:
    peer = FakePeer(framing=http1.framing())
    peer.expect(
        http1.request("PUT", prefix("/files/"), headers={"Transfer-Encoding": "chunked"})
    ).reply(lambda sent: http1.response(200, b"%d bytes" % len(sent.body)))
    peer.expect(http1.request("GET", "/next")).reply(http1.response(204))

    def parts() -> Iterator[bytes]:
        yield b"first part, "
        yield b"second part"

    with peer.serve():
        client = connect(peer)
        client.request("PUT", "/files/x", body=parts(), encode_chunked=True)
        assert client.getresponse().read() == b"23 bytes"
        client.request("GET", "/next")
        empty = client.getresponse()
        assert (empty.status, empty.read()) == (204, b"")
        client.close()
    assert http1.parse(peer.received[0]).body == b"first part, second part"
    assert b"\r\nC\r\nfirst part, \r\n" in peer.received[0]  # the message is what was sent


def test_urllib_get_json_post_and_an_error_status() -> None:
    peer = FakePeer(framing=http1.framing())
    peer.expect(http1.request("GET", "/items?page=2")).reply(
        http1.response(200, b'["a"]', {"Content-Type": "application/json"})
    )
    peer.expect(http1.request("POST", "/items", body=json_matcher({"name": "b"}))).reply(
        lambda sent: http1.response(201, json.dumps({"created": sent.json()}))
    )
    peer.expect(http1.request("DELETE", "/items/1")).reply(http1.response(404))
    with peer.serve():
        base = "http://{}:{}".format(*peer.address)
        with urllib.request.urlopen(base + "/items?page=2", timeout=5) as answer:
            assert json.load(answer) == ["a"]
        posted = urllib.request.Request(
            base + "/items", data=b'{"name": "b", "size": 1}', method="POST"
        )
        with urllib.request.urlopen(posted, timeout=5) as answer:
            assert json.load(answer) == {"created": {"name": "b", "size": 1}}
        deleted = urllib.request.Request(base + "/items/1", method="DELETE")
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(deleted, timeout=5)
        assert (excinfo.value.code, excinfo.value.reason) == (404, "Not Found")
        excinfo.value.close()
    sent = http1.parse(peer.received[0])
    assert (sent.method, sent.path, sent.query, sent.version) == (
        "GET",
        "/items",
        "page=2",
        "HTTP/1.1",
    )


def test_a_request_no_rule_expects_fails_with_what_differs() -> None:
    peer = FakePeer(framing=http1.framing())
    peer.expect(http1.request("GET", "/a"))
    with pytest.raises(UnexpectedData) as excinfo, peer.serve():  # noqa: PT012  # leaving serve() raises
        client = connect(peer)
        client.request("GET", "/b")
        with pytest.raises(http.client.RemoteDisconnected):
            client.getresponse()
        client.close()
    assert "expect #1 request('GET', '/a')" in str(excinfo.value)
    assert (
        "the data is a request for '/b': its target differs at byte 1: expected 'a', "
        "received 'b'" in str(excinfo.value)
    )


def test_bad_bytes_fail_the_connection_with_a_framing_error() -> None:
    peer = FakePeer(framing=http1.framing())
    peer.otherwise()
    with (  # noqa: PT012  # leaving serve() raises the error
        pytest.raises(FramingError) as excinfo,
        peer.serve(),
        socket.create_connection(peer.address, timeout=5) as sock,
    ):
        sock.sendall(b"GET /a HTTP/1.1\r\nHost : x\r\n\r\n")
        assert sock.recv(10) == b""
    assert str(excinfo.value).startswith(
        "connection #1: HTTP: the header line 'Host : x' has a bad field name before its colon"
    )


def test_a_chunked_upload_in_small_segments_is_one_request() -> None:
    """A slow client: 1-byte chunks, sent 300 bytes at a time with no delay (TCP_NODELAY),
    the request decoded incrementally as the segments arrive."""
    body = b"1\r\na\r\n" * 5000 + b"0\r\n\r\n"
    sent = b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    peer = FakePeer(framing=http1.framing())
    peer.expect(http1.request("POST", "/up", body=b"a" * 5000)).reply(http1.response(201))
    with peer.serve(), socket.create_connection(peer.address, timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(sent), 300):
            sock.sendall(sent[start : start + 300])
        assert sock.makefile("rb").readline() == b"HTTP/1.1 201 Created\r\n"
    assert peer.received == [sent]


# -- the framing -------------------------------------------------------------------------------


def chunked(body: bytes, cuts: list[int]) -> bytes:
    pieces, start = [], 0
    for cut in sorted({c % (len(body) + 1) for c in cuts} | {len(body)}):
        if cut > start:
            pieces.append(b"%x;ext=1\r\n%s\r\n" % (cut - start, body[start:cut]))
            start = cut
    return b"".join(pieces) + b"0\r\nTrailer: t\r\n\r\n"


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    body = draw(st.binary(max_size=20))
    kind = draw(st.sampled_from(["none", "length", "chunked"]))
    head = b"POST /x HTTP/1.1\r\nHost: h\r\n"
    if kind == "none":
        return b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    if kind == "length":
        return head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    cuts = draw(st.lists(st.integers(0, 20), max_size=3))
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, cuts)


@settings(max_examples=60, deadline=None)
@given(sent=st.lists(requests(), max_size=4), blank=st.booleans())
def test_the_same_requests_however_the_bytes_are_split(sent: list[bytes], blank: bool) -> None:
    data = b"".join((b"\r\n" if blank else b"") + request for request in sent)
    assert check_framing(http1.framing(), data, sent) == sent


#: Bytes that make a request wrong, or another one, wherever they land.
JUNK = st.one_of(
    st.binary(min_size=1, max_size=3),
    st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"0\r\n", b"zz", b";", b"\r\n0\r\n\r\n"]),
)


@settings(max_examples=150, deadline=None)
@given(
    sent=st.lists(requests(), max_size=4),
    blank=st.booleans(),
    junk=st.one_of(st.none(), st.tuples(st.integers(0, 1000), JUNK)),
    sizes=SIZES,
    way=st.sampled_from(["feed", "take"]),
    limit=st.sampled_from([40, 90, http1.MAX_LENGTH]),
)
def test_through_the_decoder_in_any_segments_as_decode_on_every_segment(
    *,
    sent: list[bytes],
    blank: bool,
    junk: tuple[int, bytes] | None,
    sizes: list[int],
    way: str,
    limit: int,
) -> None:
    """The framing's waiting and mark skip decode only when it would cut nothing and raise
    nothing: the same requests, leftover and FramingError (its text, at the same segment),
    in segments of any sizes (1 byte too), fed or taken, with junk inserted anywhere; and the same
    requests as one decode of the whole stream."""
    stream = b"".join((b"\r\n" if blank else b"") + request for request in sent)
    if junk is not None:
        at = junk[0] % (len(stream) + 1)
        stream = stream[:at] + junk[1] + stream[at:]
    framing = http1.framing(max_length=limit)
    chunks = segments(stream, sizes)
    expected = per_segment(framing, chunks)
    assert through_decoder(framing, chunks, way) == expected
    whole = per_segment(framing, [stream])
    if whole[2] is None:
        assert expected == whole
    assert (expected[2] is None) == (whole[2] is None)


@pytest.mark.parametrize(
    ("more", "waits"),
    [
        (b"\r\nX: 1", True),
        (b"\r", True),  # a CRLF may be arriving
        (b"\nX: 1", False),  # a bare LF
        (b"\rX: 1", False),  # a bare CR
        (b"\0", False),
        (b"\r\n\r\n", False),  # the head is whole
    ],
)
def test_the_framing_waits_in_a_head_only_for_plain_field_bytes(more: bytes, waits: bool) -> None:
    """decode judges a bare CR or LF, or a NUL, in a field (RFC 9112 section 5.5) as soon
    as it arrives: waiting does not skip it."""
    framing = http1.framing()
    buffer = bytearray(b"GET / HTTP/1.1\r\nHost: a")
    mark = framing.waiting(buffer, framing.mark(buffer))
    assert mark is not None
    buffer += more
    after = framing.waiting(buffer, mark)
    assert (after is not None) == waits
    if after is not None and more == b"\r":
        buffer += b"\nX"  # the CR was a CRLF's
        assert framing.waiting(buffer, after) is not None


BIG = b"b" * 500_000


@pytest.mark.parametrize(
    "request_",
    [
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"1\r\na\r\n" * 20000
        + b"0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x;ext=1\r\n%s\r\n0\r\n" % (len(BIG), BIG)
        + b"T: 1\r\n" * 10000
        + b"\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(BIG), BIG),
        b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 60000 + b"\r\n",
        b"GET /" + BIG + b" HTTP/1.1\r\n\r\n",
    ],
    ids=["1-byte-chunks", "long-chunk-and-trailers", "content-length", "long-head", "long-line"],
)
def test_a_long_request_in_small_segments_is_decoded_in_linear_time(
    monkeypatch: pytest.MonkeyPatch, request_: bytes
) -> None:
    """Not a timing: decode is handed each byte about once, not once per segment."""
    framing = http1.framing()
    handed = counting_decode(monkeypatch, framing)
    after = b"GET / HTTP/1.1\r\n\r\n"
    assert feed_all(framing, request_ + after, 300) == ([request_, after], b"")
    assert sum(handed) < 4 * len(request_)
    assert len(handed) <= 5


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"GET /a\r\n", "HTTP: 'GET /a' is no request line: expected a method, a target and"),
        (b"GET /a HTTP/2\r\n\r\n", "'GET /a HTTP/2' is no request line"),
        (b"GET / HTTP/1.1\nHost: x\n\n", "the request line 'GET / HTTP/1.1' ends with a bare LF"),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "the header line 'NoColon' has no colon"),
        (b"GET / HTTP/1.1\r\nA: 1\r\n b\r\n\r\n", "' b' is folded onto the line before"),
        (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", "invalid Content-Length 'x'"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "invalid Content-Length '1, 2': expected one decimal number",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "both Content-Length and Transfer-Encoding",
        ),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "does not end with chunked"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            "the chunk of 1 byte(s) is not followed by '\\r\\n' but by 'b\\r'",
        ),
        (b"GET /" + b"a" * 100, "over the limit of 64 (http1.framing(max_length=...) raises it)"),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n",
            "HTTP: a request of 140 bytes or more, over the limit of 64",
        ),
    ],
)
def test_bytes_that_are_no_request_raise_a_framing_error(data: bytes, text: str) -> None:
    with pytest.raises(FramingError) as excinfo:
        check_framing(http1.framing(max_length=64), data, eof=False)
    assert text in str(excinfo.value)


def test_the_framing_sends_responses_unchanged_and_checks_its_limit() -> None:
    assert http1.framing().encode(b"HTTP/1.1 200 OK\r\n\r\n") == b"HTTP/1.1 200 OK\r\n\r\n"
    assert http1.framing() == http1.framing()
    assert repr(http1.framing(max_length=100)) == "http1.framing(max_length=100)"
    with pytest.raises(ScriptError, match=r"http1.framing\(max_length=1\): the limit is"):
        http1.framing(max_length=1)
    with pytest.raises(FramingError, match="is not exactly one whole request"):
        http1.parse(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")


@pytest.mark.parametrize(
    "reply",
    [b"OK", b"200 OK\r\n\r\n", b"HTTP/2 200\r\n\r\n", b"HTTP/1.1 200 OK", b""],
)
def test_a_reply_that_is_no_response_names_the_builder(reply: bytes) -> None:
    rule = FakePeer(framing=http1.framing()).expect(http1.request("GET", "/"))
    with pytest.raises(ScriptError) as error:
        rule.reply(reply)
    shown = "'" + repr(reply)[2:-1] + "'"
    assert str(error.value) == (
        f".reply() on {rule.describe()}: http1.framing(): the reply {shown} is no HTTP/1.x "
        "response: a response starts with a status line such as 'HTTP/1.1 200 OK\\r\\n'; "
        "build it with http1.response(200, b'body', headers={...}) (to send other bytes on "
        "purpose, pass FakePeer(framing=http1.framing(), reply_framing=Raw()))"
    )


@pytest.mark.parametrize(
    "reply", [b"HTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.0 404\r\n\r\n", b"HTTP/1.1 599 \r\n\r\n"]
)
def test_a_status_line_is_enough(reply: bytes) -> None:
    assert http1.framing().encode(reply) == reply


def test_a_body_sent_in_parts_needs_reply_framing_raw() -> None:
    peer = FakePeer(framing=http1.framing(), reply_framing=Raw())
    head = http1.response(200, headers={"Transfer-Encoding": "chunked"})
    peer.expect(http1.request("GET", "/")).reply(head).send(b"2\r\nok\r\n").send(b"0\r\n\r\n")
    with peer.serve():
        client = connect(peer)
        client.request("GET", "/")
        assert client.getresponse().read() == b"ok"
        client.close()


def test_response_says_what_its_arguments_are() -> None:
    doc = http1.response.__doc__ or ""
    assert "see the module docstring" not in doc
    assert "``status`` is the status code, an int from 100 to 599" in doc
    with pytest.raises(ScriptError) as error:
        http1.response("200")  # type: ignore[arg-type]
    assert str(error.value) == (
        "response(status='200'): the status code is an int, such as 200, not str"
    )
    with pytest.raises(ScriptError, match=r"^response\(status=99\): a status code is from 100"):
        http1.response(99)


# -- the matcher -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "description"),
    [
        (http1.request(), "request(ANY, ANY)"),
        (http1.request("GET", "/a"), "request('GET', '/a')"),
        (
            http1.request("POST", prefix("/api/"), headers={"X-Id": ANY}, body=b"x"),
            "request('POST', prefix '/api/', headers={'X-Id': ANY}, body='x')",
        ),
    ],
)
def test_a_request_describes_itself(matcher: object, description: str) -> None:
    assert str(matcher) == description


GET = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nAccept: a\r\naccept: b\r\n\r\n"


@pytest.mark.parametrize(
    ("matcher", "why"),
    [
        (http1.request("POST"), "is a GET request: its method differs at byte 0"),
        (http1.request(ANY, "/a"), "is a request for '/a?x=1': its target has 4 extra byte(s)"),
        (http1.request(headers={"X": ANY}), "has no X field"),
        (http1.request(headers={"Accept": "a"}), "has a Accept field 'a, b' that has 3 extra"),
        (http1.request(body=b"x"), "has a body of 0 byte(s) that is 1 byte(s) short"),
    ],
)
def test_a_request_says_why_it_does_not_match(matcher: http1.RequestMatcher, why: str) -> None:
    assert matcher.match(GET, stream=False) is None
    assert matcher.explain(GET).startswith(why)


def test_a_request_matches_whole_requests() -> None:
    outcome = http1.request("GET", "/a?x=1", headers={"ACCEPT": "a, b"}).match(GET, stream=False)
    assert isinstance(outcome, Matched)
    assert outcome.value == http1.Request(
        "GET", "/a?x=1", "HTTP/1.1", (("Host", "h"), ("Accept", "a"), ("accept", "b")), b""
    )
    assert http1.request().match(GET, stream=True) is None  # the kit's framing is needed
    assert http1.request().explain(b"nonsense") == (
        "is not an HTTP request (HTTP: 'nonsense' is not exactly one whole request)"
    )


# -- responses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("built", "wire"),
    [
        (http1.response(), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        (http1.response(404, "no"), b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"),
        (http1.response(204), b"HTTP/1.1 204 No Content\r\n\r\n"),
        (http1.response(299, reason="Fine"), b"HTTP/1.1 299 Fine\r\nContent-Length: 0\r\n\r\n"),
        (http1.response(599), b"HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n"),
        (
            http1.response(200, b"ab", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]),
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nab",
        ),
        (
            http1.response(200, b"2\r\nab\r\n0\r\n\r\n", {"Transfer-Encoding": "chunked"}),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
        ),
    ],
)
def test_response(built: bytes, wire: bytes) -> None:
    assert built == wire


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda: http1.response(99), "response(status=99): a status code is from 100 to 599"),
        (lambda: http1.response(204, b"x"), "response(204): a 204 response has no body"),
        (lambda: http1.response(headers={"A": "1\r\nB: 2"}), "the A field's value '1\\r\\nB: 2'"),
        (lambda: http1.response(headers={"A B": "1"}), "('A B', '1') is no (name, value) field"),
        (lambda: http1.response(reason="a\nb"), "the reason is a str, one line"),
        (lambda: http1.request(method=1), "request(): the method is int 1; it is a str"),  # type: ignore[arg-type]
        (lambda: http1.request(body=None), "the body is NoneType None; it is bytes, a str"),  # type: ignore[arg-type]
        (lambda: http1.request(headers={"a b": "x"}), "'a b' is no field name"),
    ],
)
def test_script_mistakes_raise_script_error(call: Callable[[], object], text: str) -> None:
    with pytest.raises(ScriptError) as excinfo:
        call()
    assert text in str(excinfo.value)
