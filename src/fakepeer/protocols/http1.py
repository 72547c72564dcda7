"""HTTP/1.1: stand in for a web server, one request a message, kept-alive connections too.

The message syntax is RFC 9112 (HTTP/1.1), the semantics RFC 9110 (methods, status codes,
fields). A request is a request line (``GET /path HTTP/1.1``), header fields, an empty line,
then a body whose length the head gives: ``Content-Length``, or ``Transfer-Encoding:
chunked`` (chunks, each with its size in hex, until a chunk of size 0), or no body at all.
On a kept-alive connection the next request follows the last::

    from fakepeer import FakePeer
    from fakepeer.protocols import http1

    peer = FakePeer(framing=http1.framing())
    peer.expect(http1.request("GET", "/health")).reply(http1.response(200, b"ok"))

The kit, built of fakepeer's public API only (a model for a kit of your own):

:func:`framing` (``max_length=1 MiB``)
    Cuts what the client sends into requests, one message each (head and body, as sent on
    the wire). Empty lines before a request line are skipped (RFC 9112 section 2.2). The
    client's bytes raise :class:`~fakepeer.FramingError` when they are no HTTP/1.x request:
    a bad request line (or one that ends with a bare LF), a header line without a colon,
    whitespace before the colon or a line folded onto the one before (RFC 9112 section 5),
    a ``Content-Length`` that is not one decimal number, ``Content-Length`` and
    ``Transfer-Encoding`` both, a transfer coding other than ``chunked`` last, a bad chunk
    size, or a request over ``max_length`` bytes (head and body). Its ``encode`` sends a
    reply unchanged if it starts with a status line (:func:`response` builds whole
    responses), else raises :class:`~fakepeer.ScriptError`; other bytes on purpose need
    ``FakePeer(framing=http1.framing(), reply_framing=Raw())``. ``Expect: 100-continue`` is
    not answered: the framing waits for the body.
:func:`request` ``(method=ANY, target=ANY, *, headers=None, body=ANY)``
    A :class:`~fakepeer.Matcher` of requests: ``request("POST", "/items",
    body=json({"name": "x"}))``. ``method`` and ``target`` are a str (exactly that; methods
    are case-sensitive, RFC 9110 section 9.1), :data:`~fakepeer.ANY` or a matcher
    (``prefix("/api/")``); ``headers`` maps field names (any case) to a value (str, exactly
    the field's value, repeated fields joined with ``", "``), a matcher, or ``ANY`` (the
    field is present); ``body`` is bytes or str (exactly; chunked bodies are joined first),
    a matcher such as ``json(...)``, or ``ANY``. A reply callable receives the
    :class:`Request`. A wrong argument is a :class:`~fakepeer.ScriptError`. It judges the
    messages of :func:`framing` (with ``Raw()`` it matches nothing).
:func:`parse` ``(message) -> Request``
    The request in one message, for handlers: ``parse(await connection.receive())``.
:func:`response` ``(status=200, body=b"", headers=None, *, reason=None) -> bytes``
    A whole response: the status line (``reason`` defaults to the status code's phrase in
    RFC 9110), the ``headers`` (a mapping or pairs, in order) and a ``Content-Length``
    unless they give one or a ``Transfer-Encoding``, then the body (a str is UTF-8).
    ``Connection: close`` in ``headers``, then the rule's ``.close()``, ends a kept-alive
    connection as a server does. A status outside 100-599, a body for a status that has
    none (1xx, 204, 304) or a line end in a field is a :class:`~fakepeer.ScriptError`.

HTTP has no handshake, so this kit has no preset: a client's first bytes are a request.
"""

from __future__ import annotations

import json as _json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from fakepeer import ANY, FramingError, Matched, Matcher, ScriptError, exact

from . import _http1_scan
from ._http1_response import response

__all__ = ["HTTPFraming", "Request", "RequestMatcher", "framing", "parse", "request", "response"]

#: The default ``max_length``: the most bytes one request (head and body) may take.
MAX_LENGTH: Final = 1024 * 1024
_CRLF: Final = b"\r\n"
#: A token (RFC 9110 section 5.6.2): a method or a field name.
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION: Final = re.compile(rb"HTTP/1\.[01]")
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
#: The start of a response: its status line (RFC 9112 section 4), a reason phrase optional.
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] [1-5][0-9][0-9](?: [^\r\n]*)?\r\n")


def _show(data: bytes, limit: int = 60) -> str:
    return f"'{repr(data[:limit])[2:-1]}'" + ("..." if len(data) > limit else "")


# -- the client's requests -----------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A request as the client sent it: ``method`` (``"GET"``), ``target`` (``"/a?b=1"``),
    ``version`` (``"HTTP/1.1"``), ``headers`` (name and value pairs, in order, names as
    sent) and ``body`` (chunked bodies joined; ``b""`` for none)."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of the field ``name`` (any case), repeated fields joined with ``", "``
        (RFC 9110 section 5.3); None when the request has no such field."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def path(self) -> str:
        """The target without its query: ``"/a"`` for ``"/a?b=1"``."""
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        """The query of the target, without the ``?``: ``"b=1"`` for ``"/a?b=1"``."""
        return self.target.partition("?")[2]

    def json(self) -> object:
        """The body parsed as JSON (``json.JSONDecodeError`` if it is not)."""
        return _json.loads(self.body)


@dataclass(frozen=True)
class _Head:
    method: bytes
    target: bytes
    version: bytes
    headers: tuple[tuple[bytes, bytes], ...]

    def field(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name]


def _head(head: bytes) -> _Head:
    """The request line and fields of a head (without its empty line)."""
    line, *fields = head.split(_CRLF)
    parts = line.split(b" ")
    if (
        len(parts) != 3
        or not _TOKEN.fullmatch(parts[0])
        or not parts[1]
        or not _VERSION.fullmatch(parts[2])
    ):
        raise FramingError(
            f"HTTP: {_show(line)} is no request line: expected a method, a target and "
            "HTTP/1.1, separated by single spaces (RFC 9112 section 3)"
        )
    headers = []
    for field in fields:
        name, colon, value = field.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            why = (
                "is folded onto the line before"
                if field[:1] in (b" ", b"\t")
                else ("has no colon" if not colon else "has a bad field name before its colon")
            )
            raise FramingError(f"HTTP: the header line {_show(field)} {why} (RFC 9112 section 5)")
        if b"\r" in value or b"\n" in value:
            raise FramingError(
                f"HTTP: the header line {_show(field)} holds a bare CR or LF: a line ends "
                "with CRLF (RFC 9112 section 2.2; a server rejects it, section 5.5)"
            )
        headers.append((name, value.strip(b" \t")))
    return _Head(parts[0], parts[1], parts[2], tuple(headers))


def _chunked(buffer: bytes, position: int) -> tuple[bytes, int] | None:
    """The body in chunks from ``position`` and where it ends (trailers included); None
    while incomplete (RFC 9112 section 7.1)."""
    chunks = []
    while True:
        end = buffer.find(_CRLF, position)
        if end < 0:
            return None
        size = buffer[position:end].split(b";")[0].strip(b" \t")
        if not _HEX.fullmatch(size):
            raise FramingError(
                f"HTTP: invalid chunk size {_show(buffer[position:end])}: expected hex digits"
            )
        if int(size, 16) == 0:
            break
        stop = end + 2 + int(size, 16)
        if stop + 2 > len(buffer):
            return None
        if buffer[stop : stop + 2] != _CRLF:
            raise FramingError(
                f"HTTP: the chunk of {int(size, 16)} byte(s) is not followed by '\\r\\n' "
                f"but by {_show(buffer[stop : stop + 2])}"
            )
        chunks.append(buffer[end + 2 : stop])
        position = stop + 2
    position = end + 2
    while True:  # the trailer section, up to its empty line
        end = buffer.find(_CRLF, position)
        if end < 0:
            return None
        if end == position:
            return b"".join(chunks), end + 2
        position = end + 2


def _body(
    head: _Head, buffer: bytes, start: int, request: tuple[int, int]
) -> tuple[bytes, int] | None:
    """The body that starts at ``start`` and where it ends; None while incomplete.
    ``request`` is where the request starts and its limit: a ``Content-Length`` that makes
    it longer raises at once."""
    fields = head.field(b"transfer-encoding")
    codings = b",".join(fields)
    lengths = head.field(b"content-length")
    if fields:  # an empty one is no coding, and not chunked either
        if lengths:
            raise FramingError(
                "HTTP: a request with both Content-Length and Transfer-Encoding "
                "(RFC 9112 section 6.1: a server rejects it)"
            )
        if codings.split(b",")[-1].strip(b" \t").lower() != b"chunked":
            raise FramingError(
                f"HTTP: Transfer-Encoding {_show(codings)} does not end with chunked: "
                "the body has no length (RFC 9112 section 6.3)"
            )
        return _chunked(buffer, start)
    if not lengths:
        return b"", start
    if len(set(lengths)) != 1 or not lengths[0].isdigit():
        raise FramingError(
            f"HTTP: invalid Content-Length {_show(b', '.join(lengths))}: "
            "expected one decimal number (RFC 9112 section 6.3)"
        )
    # Leading zeros off first (1*DIGIT allows them): int() refuses more than 4300 digits.
    digits = lengths[0].lstrip(b"0") or b"0"
    request_start, limit = request
    if len(digits) > 20:  # more than any limit
        raise _too_long(start - request_start + 10**20, limit)
    end = start + int(digits)
    if end - request_start > limit:
        raise _too_long(end - request_start, limit)
    return (buffer[start:end], end) if end <= len(buffer) else None


def _request_at(buffer: bytes, start: int, limit: int) -> tuple[Request, int] | None:
    """The request at ``buffer[start:]`` and where it ends; None while incomplete. Raises
    FramingError as soon as the request is known to be bad or over ``limit`` bytes."""
    head_end = buffer.find(b"\r\n\r\n", start)
    if head_end < 0:
        line_end = buffer.find(_CRLF, start)
        if line_end >= 0:  # check the request line as soon as it is whole
            _head(buffer[start:line_end])
        elif (bare := buffer.find(b"\n", start)) >= 0:
            raise FramingError(
                f"HTTP: the request line {_show(buffer[start:bare])} ends with a bare LF: "
                "HTTP/1.1 lines end with CRLF (RFC 9112 section 2.2)"
            )
        return None
    head = _head(buffer[start:head_end])
    found = _body(head, buffer, head_end + 4, (start, limit))
    if found is None:
        return None
    body, end = found
    headers = tuple(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers
    )
    request = Request(
        head.method.decode("ascii"),
        head.target.decode("latin-1"),
        head.version.decode("ascii"),
        headers,
        body,
    )
    return request, end


def _too_long(size: int, limit: int) -> FramingError:
    return FramingError(
        f"HTTP: a request of {size} bytes or more, over the limit of {limit} "
        "(http1.framing(max_length=...) raises it)"
    )


class HTTPFraming:
    """The framing of what an HTTP/1.1 client sends: one message per request (see the module
    docstring). Responses go out unchanged. Immutable; equal when the limits are."""

    streaming = False

    def __init__(self, *, max_length: int = MAX_LENGTH) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 16:
            raise ScriptError(
                f"http1.framing(max_length={max_length!r}): the limit is a whole number of "
                "bytes >= 16"
            )
        self._max_length = max_length

    @property
    def max_length(self) -> int:
        """The most bytes one request, head and body, may take on the wire."""
        return self._max_length

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        """Cut the whole requests off ``buffer``; an incomplete one stays."""
        messages: list[bytes] = []
        start, limit = 0, self._max_length
        while start < len(buffer):
            if buffer.startswith(b"\r\n", start):  # an empty line before a request
                start += 2
                continue
            if start == len(buffer) - 1 and buffer[start] == 0x0D:  # a lone CR: wait
                break
            found = _request_at(buffer, start, limit)
            end = len(buffer) if found is None else found[1]
            if end - start > limit or (found is None and end - start >= limit):
                raise _too_long(end - start, limit)
            if found is None:
                break
            messages.append(buffer[start:end])
            start = end
        return messages, start

    def waiting(self, buffer: bytearray, mark: int) -> int | None:
        """The framing protocol's optional ``waiting``: a long request is scanned once."""
        return _http1_scan.waiting(buffer, mark, self._max_length)

    def mark(self, rest: bytearray) -> int:
        """The framing protocol's optional ``mark``, for what :meth:`decode` left."""
        return _http1_scan.mark(rest)

    def encode(self, message: bytes) -> bytes:
        """``message`` unchanged, if it starts with a status line (``HTTP/1.1 200 OK``, as
        :func:`response` builds it); else a :class:`~fakepeer.ScriptError` naming
        :func:`response` (raised as the rule is written, for a constant reply). Bytes that
        are no response on purpose (a body sent in parts, garbage) go out with
        ``FakePeer(framing=http1.framing(), reply_framing=Raw())``. A response whose head
        has no ending blank line (``\\r\\n\\r\\n``) is a ScriptError too: the client would
        wait for more headers."""
        if _STATUS_LINE.match(message):
            if b"\r\n\r\n" in message:
                return message
            raise ScriptError(
                f"{self!r}: the reply {_show(message)} has a status line, but no blank line "
                "('\\r\\n\\r\\n') ends its head, so the client waits for more headers; build "
                "it with http1.response(200, b'body', headers={...}) (to send other bytes on "
                "purpose, pass FakePeer(framing=http1.framing(), reply_framing=Raw()))"
            )
        raise ScriptError(
            f"{self!r}: the reply {_show(message)} is no HTTP/1.x response: a response starts "
            "with a status line such as 'HTTP/1.1 200 OK\\r\\n'; build it with "
            "http1.response(200, b'body', headers={...}) (to send other bytes on purpose, "
            "pass FakePeer(framing=http1.framing(), reply_framing=Raw()))"
        )

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._max_length == self._max_length

    def __hash__(self) -> int:
        return hash((type(self), self._max_length))

    def __repr__(self) -> str:
        if self._max_length == MAX_LENGTH:
            return "http1.framing()"
        return f"http1.framing(max_length={self._max_length})"


def framing(*, max_length: int = MAX_LENGTH) -> HTTPFraming:
    """The framing of HTTP/1.1 requests; ``max_length`` is the most bytes one may take."""
    return HTTPFraming(max_length=max_length)


def parse(message: bytes) -> Request:
    """The :class:`Request` in ``message``, one message of :func:`framing`.

    Raises :class:`~fakepeer.FramingError` when ``message`` is not exactly one request.
    """
    message = bytes(message)
    found = _request_at(message, 0, len(message)) if message else None
    if found is None or found[1] != len(message):
        raise FramingError(f"HTTP: {_show(message)} is not exactly one whole request")
    return found[0]


# -- the request matcher ---------------------------------------------------------------------


def _part(spec: object, what: str, *, text: bool) -> Matcher:
    if isinstance(spec, Matcher):  # ANY included
        return spec
    if isinstance(spec, str) or (not text and isinstance(spec, bytes)):
        return exact(spec)
    kinds = "a str" if text else "bytes, a str"
    raise ScriptError(
        f"request(): {what} is {type(spec).__name__} {spec!r}; it is {kinds}, fakepeer.ANY "
        "or a matcher"
    )


def _judge(matcher: Matcher, value: bytes) -> bool:
    return isinstance(matcher.match(value, stream=False), Matched)


class RequestMatcher(Matcher):
    """Requests with a method, a target, fields and a body that match; see :func:`request`."""

    def __init__(
        self,
        method: Matcher,
        target: Matcher,
        headers: tuple[tuple[str, Matcher], ...],
        body: Matcher,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body

    def _why_not(self, sent: Request) -> str | None:
        """Why ``sent`` does not match (a verb phrase), or None when it does."""
        method, target = sent.method.encode(), sent.target.encode("latin-1")
        if not _judge(self.method, method):
            return f"is a {sent.method} request: its method {self.method.explain(method)}"
        if not _judge(self.target, target):
            return f"is a request for {sent.target!r}: its target {self.target.explain(target)}"
        for name, matcher in self.headers:
            value = sent.header(name)
            if value is None:
                return f"has no {name} field"
            if not _judge(matcher, value.encode("latin-1")):
                explained = matcher.explain(value.encode("latin-1"))
                return f"has a {name} field {value!r} that {explained}"
        if not _judge(self.body, sent.body):
            return f"has a body of {len(sent.body)} byte(s) that {self.body.explain(sent.body)}"
        return None

    def match(self, data: bytes, *, stream: bool) -> Matched | None:
        if stream:  # a kit's matchers judge the messages of the kit's framing, not a stream
            return None
        try:
            sent = parse(data)
        except FramingError:
            return None
        return None if self._why_not(sent) is not None else Matched(sent, len(data))

    def describe(self) -> str:
        parts = [self.method.describe(), self.target.describe()]
        if self.headers:
            fields = ", ".join(f"'{name}': {matcher.describe()}" for name, matcher in self.headers)
            parts.append(f"headers={{{fields}}}")
        if self.body is not ANY:
            parts.append(f"body={self.body.describe()}")
        return f"request({', '.join(parts)})"

    def explain(self, data: bytes) -> str:
        try:
            sent = parse(data)
        except FramingError as exc:
            return f"is not an HTTP request ({exc.diagnosis})"
        return self._why_not(sent) or f"matches {self.describe()}"

    def _closeness(self, data: bytes, stream: bool) -> float:
        try:
            sent = parse(data)
        except FramingError:
            return 0.0
        checks = [
            _judge(self.method, sent.method.encode()),
            _judge(self.target, sent.target.encode("latin-1")),
            _judge(self.body, sent.body),
        ]
        return 0.9 * sum(checks) / len(checks)


def request(
    method: str | Matcher = ANY,
    target: str | Matcher = ANY,
    *,
    headers: Mapping[str, str | Matcher] | None = None,
    body: bytes | str | Matcher = ANY,
) -> Matcher:
    """A matcher of requests: see the module docstring. Raises
    :class:`~fakepeer.ScriptError` for a wrong argument."""
    fields: list[tuple[str, Matcher]] = []
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise ScriptError(f"request(headers={headers!r}): the headers are a mapping")
        for name, value in headers.items():
            if not isinstance(name, str) or not _TOKEN.fullmatch(name.encode()):
                raise ScriptError(f"request(headers=...): {name!r} is no field name")
            fields.append((name, _part(value, f"the {name} field", text=True)))
    return RequestMatcher(
        _part(method, "the method", text=True),
        _part(target, "the target", text=True),
        tuple(fields),
        _part(body, "the body", text=False),
    )
