"""JSON for the ``json()`` matcher: a strict reader, an incremental one, and the subset rules.

:func:`~fakepeer.json` matches a UTF-8 JSON message of which the expected value is a subset.
What that takes is JSON's own business, apart from the matchers: :func:`parse` reads a whole
message strictly (no ``NaN``, no ``Infinity``), :func:`read_front` reads one value at the
front of a raw buffer that is still arriving (it tells an unfinished beginning, which waits,
from a mistake, which refuses), :func:`normalize` checks and copies what the script expects,
:func:`mismatch` says where a value is not a superset of it and :func:`score` how much of it
a value has. ``fakepeer._matchers`` turns these answers into a matcher's. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
from typing import Final, NamedTuple

from ._errors import ScriptError

__all__ = [
    "UNFINISHED",
    "Front",
    "dumps",
    "mismatch",
    "normalize",
    "parse",
    "read_front",
    "score",
]


class Front(NamedTuple):
    """A JSON value read at the front of a buffer, and the bytes it took."""

    value: object
    consumed: int


class _Unfinished:
    def __repr__(self) -> str:
        return "UNFINISHED"


#: What :func:`read_front` returns while the buffer could still become JSON.
UNFINISHED: Final = _Unfinished()


_JSON_WHITESPACE: Final = " \t\n\r"
_LITERALS: Final = ("true", "false", "null")
# What can follow the digits of a number that is cut short: "1." "1e" "1e-".
_NUMBER_TAIL: Final = re.compile(r"\.|[eE][-+]?")
_UNFINISHED_ESCAPE: Final = re.compile(r"(\\+)(u[0-9a-fA-F]{0,4})?\Z")
_UNFINISHED_UNICODE: Final = re.compile(r"u[0-9a-fA-F]{0,4}\Z")
#: How much of a value ``explain`` shows before cutting it.
_SHOWN: Final = 60

_Path = tuple[str | int, ...]


class _NotStrictJSON(ValueError):
    """``NaN``, ``Infinity`` and ``-Infinity``: Python reads them, JSON does not have them."""


def _reject_constant(name: str) -> object:
    raise _NotStrictJSON(f"{name} is not valid JSON")


_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def dumps(value: object) -> str:
    """``value`` as JSON text, with its non-ASCII characters as they are."""
    return json.dumps(value, ensure_ascii=False)


def _show_json(value: object) -> str:
    text = dumps(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}..."


def _show_path(path: _Path) -> str:
    parts = ["$"]
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif step.isidentifier():
            parts.append(f".{step}")
        else:
            parts.append(f"[{json.dumps(step, ensure_ascii=False)}]")
    return "".join(parts)


def normalize(value: object, path: _Path = ()) -> object:
    """A private copy of an expected JSON value (tuples become lists), or a ScriptError."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
    elif isinstance(value, list | tuple):
        return [normalize(item, (*path, index)) for index, item in enumerate(value)]
    elif isinstance(value, dict):
        copy: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ScriptError(
                    f"json(): the key {key!r} at {_show_path(path)} is not a str; "
                    "JSON object keys are strings"
                )
            copy[key] = normalize(item, (*path, key))
        return copy
    raise ScriptError(
        f"json(): cannot match {type(value).__name__} {value!r} at {_show_path(path)}: "
        "use dict, list, str, int, float (finite), bool or None"
    )


def _same_scalar(expected: object, actual: object) -> bool:
    # bool is an int in Python, not in JSON: true never equals 1. Numbers compare by value
    # (JSON has one number type, so 1 equals 1.0).
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected is actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    if expected is None:
        return actual is None
    return type(expected) is type(actual) and expected == actual


def mismatch(expected: object, actual: object, path: _Path = ()) -> str | None:
    """The first place where ``expected`` is not a subset of ``actual``, or None."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"differs at {_show_path(path)}: expected an object, got {_show_json(actual)}"
        for key, item in expected.items():
            if key not in actual:
                return f"has no key {_show_path((*path, key))}"
            difference = mismatch(item, actual[key], (*path, key))
            if difference is not None:
                return difference
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"differs at {_show_path(path)}: expected an array, got {_show_json(actual)}"
        if len(actual) != len(expected):
            return (
                f"differs at {_show_path(path)}: expected {len(expected)} item(s), "
                f"got {len(actual)}"
            )
        for index, (item, got) in enumerate(zip(expected, actual, strict=True)):
            difference = mismatch(item, got, (*path, index))
            if difference is not None:
                return difference
        return None
    if _same_scalar(expected, actual):
        return None
    return (
        f"differs at {_show_path(path)}: expected {_show_json(expected)}, got {_show_json(actual)}"
    )


def score(expected: object, actual: object) -> float:
    """The fraction of ``expected`` that ``actual`` has (1.0 exactly when it is a subset)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return 0.0
        if not expected:
            return 1.0
        return sum(
            score(item, actual[key]) for key, item in expected.items() if key in actual
        ) / len(expected)
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return 0.0
        if not expected and not actual:
            return 1.0
        pairs = zip(expected, actual, strict=False)
        return sum(score(item, got) for item, got in pairs) / max(len(expected), len(actual))
    return 1.0 if _same_scalar(expected, actual) else 0.0


def parse(data: bytes) -> tuple[object, str | None]:
    """The message as JSON: ``(value, None)``, or ``(None, why it is not JSON)``."""
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at byte {exc.start}"
    try:
        return _DECODER.decode(text), None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        return None, str(exc) if isinstance(exc, ValueError) else "nested too deeply"


def _skip_whitespace(text: str, index: int) -> int:
    while index < len(text) and text[index] in _JSON_WHITESPACE:
        index += 1
    return index


def _could_continue(text: str, error: json.JSONDecodeError) -> bool:
    """Whether more text could still make ``text`` start with a complete JSON value.

    The decoder stops at the first thing it cannot use, so ``text[:error.pos]`` is a valid
    beginning; the question is whether what is left is an unfinished token or a real mistake.
    """
    rest = text[error.pos :]
    if not rest.strip(_JSON_WHITESPACE):
        return True
    message = error.msg
    if message == "Expecting value":
        return rest == "-" or any(literal.startswith(rest) for literal in _LITERALS)
    if message.startswith("Unterminated string"):
        unfinished = _UNFINISHED_ESCAPE.search(rest)
        if unfinished is not None and len(unfinished.group(1)) % 2:
            rest = rest[: unfinished.end(1) - 1]
        try:
            _DECODER.decode(rest + '"')
        except ValueError:
            return False
        return True
    if message.startswith("Invalid \\uXXXX escape"):
        return _UNFINISHED_UNICODE.match(rest) is not None
    if message.startswith("Expecting") and error.pos > 0:  # a delimiter or a property name
        return text[error.pos - 1].isdigit() and _NUMBER_TAIL.fullmatch(rest) is not None
    return False


def read_front(data: bytes) -> Front | _Unfinished | None:
    """One complete JSON value at the front of a raw buffer: ``Front(value, consumed)``,
    with the whitespace after it that has arrived; :data:`UNFINISHED` while ``data`` is an
    unfinished beginning of JSON (a number at the very end too: ``12`` may become ``123``);
    ``None`` when no bytes that may still arrive can make it JSON.

    Bytes that are not UTF-8 are carried through the decoding as lone surrogates so that a
    multi-byte character cut by the chunking waits like any unfinished string.
    """
    text = data.decode("utf-8", "surrogateescape")
    start = _skip_whitespace(text, 0)
    if start == len(text):
        return UNFINISHED
    try:
        value, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        return UNFINISHED if _could_continue(text, exc) else None
    except (ValueError, RecursionError):  # NaN and friends, or absurd nesting
        return None
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (end == len(text) or _NUMBER_TAIL.fullmatch(text, end) is not None)
    ):
        return UNFINISHED  # a number at the very end may still grow: "12" -> "123"
    stop = _skip_whitespace(text, end)
    try:
        consumed = len(text[:stop].encode())
    except UnicodeEncodeError:
        return None  # invalid UTF-8 inside the value
    return Front(value, consumed)
