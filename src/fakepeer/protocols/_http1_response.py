"""The responses of :mod:`fakepeer.protocols.http1`: :func:`response` (RFC 9112 section 4).

Part of the kit, made of the public library only; import it from ``http1``.
"""

from __future__ import annotations

import http
import re
from collections.abc import Iterable, Mapping
from typing import Final

from fakepeer import ScriptError

__all__ = ["response"]

#: A field name: a token (RFC 9110 section 5.6.2).
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _fields(headers: object) -> list[tuple[str, str]]:
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    if not isinstance(pairs, Iterable) or isinstance(pairs, str | bytes):
        raise ScriptError(f"response(headers={headers!r}): a mapping or (name, value) pairs")
    fields = []
    for pair in pairs:
        name, value = pair if isinstance(pair, tuple) and len(pair) == 2 else (None, None)
        if not isinstance(name, str) or not _TOKEN.fullmatch(name.encode()):
            raise ScriptError(f"response(headers=...): {pair!r} is no (name, value) field")
        if not isinstance(value, str | int) or re.search(r"[\r\n]", str(value)):
            raise ScriptError(
                f"response(headers=...): the {name} field's value {value!r} is a str "
                "without line ends"
            )
        fields.append((name, str(value)))
    return fields


def response(
    status: int = 200,
    body: bytes | str = b"",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    *,
    reason: str | None = None,
) -> bytes:
    """A whole HTTP/1.1 response, as bytes to reply with (RFC 9112 section 4).

    ``status`` is the status code, an int from 100 to 599; ``body`` bytes, or a str sent
    as UTF-8; ``headers`` a mapping or (name, value) pairs, sent in order; ``reason`` the
    reason phrase (default: the status code's phrase in RFC 9110, ``""`` for a code it
    does not name). A ``Content-Length`` is added unless ``headers`` has one or a
    ``Transfer-Encoding`` (or the status has no body: 1xx, 204, 304)::

        http1.response(200, b"ok")  # b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"
        http1.response(503, headers={"Retry-After": "1"})

    ``Connection: close`` in ``headers``, then the rule's ``.close()``, ends a kept-alive
    connection as a server does. :class:`~fakepeer.ScriptError` for a status that is no
    int or outside 100-599, a body for a status that has none, a body that is no bytes or
    str, a line end in the reason or a field."""
    if isinstance(status, bool) or not isinstance(status, int):
        raise ScriptError(
            f"response(status={status!r}): the status code is an int, such as 200, not "
            f"{type(status).__name__}"
        )
    if not 100 <= status <= 599:
        raise ScriptError(f"response(status={status!r}): a status code is from 100 to 599")
    if not isinstance(body, bytes | str):
        raise ScriptError(f"response(body=...) takes bytes or str, not {type(body).__name__}")
    data = body.encode() if isinstance(body, str) else body
    if data and (status < 200 or status in (204, 304)):  # RFC 9110 sections 15.2, 15.3.5, 15.4.5
        raise ScriptError(f"response({status}): a {status} response has no body (RFC 9110)")
    if reason is None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    if not isinstance(reason, str) or re.search(r"[\r\n]", reason):
        raise ScriptError(f"response(reason={reason!r}): the reason is a str, one line")
    fields = _fields(headers)
    names = {name.lower() for name, _ in fields}
    bodiless = status < 200 or status in (204, 304)  # these have no Content-Length to send
    if not names & {"content-length", "transfer-encoding"} and not bodiless:
        fields.append(("Content-Length", str(len(data))))
    head = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in fields)]
    try:
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data
    except UnicodeEncodeError as exc:  # RFC 9110 section 5.5: a field value is octets
        raise ScriptError(
            f"response(): {exc.object[exc.start : exc.end]!r} in the reason or a field is not "
            "latin-1, which is all a field of HTTP/1.1 can carry (RFC 9110 section 5.5): "
            "encode it, e.g. RFC 8187's filename*=UTF-8''%E2%82%AC.txt"
        ) from None
