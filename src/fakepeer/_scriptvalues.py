"""The values of a script file: BYTES, MATCHER, FAULT and the framing tables.

Each function takes what ``tomllib`` parsed and a :class:`~._scriptplace.Place`, and builds
the object of the public API (``bytes``, a :class:`~fakepeer.Matcher`, a
:class:`~fakepeer.Fault`, a :class:`~fakepeer.Framing`), or raises a
:class:`~fakepeer.ScriptError` at the place (``FILE:LINE: key path: ...``). The reference is
docs/file-format.md; the JSON Schema (script.schema.json) says the same.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable
from typing import Final

from . import faults as _faults
from ._builtin_framings import Delimited, Fixed, LengthPrefixed, Lines, Raw, StxEtx
from ._errors import ScriptError
from ._faults import Fault
from ._framing import Framing
from ._lengthfield import LengthField
from ._matchers import ANY, Matcher, all_of, any_of, contains, exact, json, not_, prefix, regex
from ._scriptplace import Place, kind_of
from .protocols import http1, modbus, mqtt, resp

__all__ = [
    "BYTES_KEYS",
    "FAULT_KINDS",
    "FRAMINGS",
    "KIT_MATCHERS",
    "MATCHER_KEYS",
    "fault_keywords",
    "to_bytes",
    "to_fault",
    "to_framing",
    "to_matcher",
]

#: The keys of a BYTES table: exactly one of them.
BYTES_KEYS: Final = ("text", "escaped", "hex")
_ESCAPE = re.compile(r"\\(?:[\\'\"abfnrtv\n]|x[0-9A-Fa-f]{2}|[0-7]{1,3})")


def to_bytes(value: object, place: Place) -> bytes:
    """A string (UTF-8), or ``{text = ...}``, ``{escaped = ...}``, ``{hex = ...}``."""
    if isinstance(value, str):
        return value.encode()
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in BYTES_KEYS:
        raise place.error(
            f"takes bytes: a string (sent as UTF-8), or a table with one key, "
            f'{{ text = "..." }}, {{ escaped = "\\\\x00..." }} or {{ hex = "de ad" }}; '
            f"got {kind_of(value)} {value!r}"
        )
    ((key, text),) = value.items()
    inner = place.at(key)
    text = inner.string(text)
    if key == "text":
        return text.encode()
    if key == "hex":
        digits = re.sub(r"[\s:]", "", text)
        try:
            return bytes.fromhex(digits)
        except ValueError:
            raise inner.error(
                f"{text!r} is not hex: pairs of hex digits, spaces and ':' ignored "
                "('de ad be ef', 'de:ad')"
            ) from None
    return _unescape(text, inner)


def _unescape(text: str, place: Place) -> bytes:
    if not text.isascii():
        raise place.error(
            f"{text!r} has a character that is not ASCII: write it as \\\\xNN escapes, or use "
            "{ text = ... } for UTF-8 text"
        )
    position = 0
    while (start := text.find("\\", position)) >= 0:
        escape = _ESCAPE.match(text, start)
        if escape is None:
            bad = text[start : start + 2]
            raise place.error(
                f"{bad!r} is not a bytes escape; Python's are \\\\xNN, \\\\n, \\\\r, \\\\t, "
                "\\\\0, \\\\\\\\ and the like (in a TOML basic string each backslash is "
                "written twice; a literal 'string' takes them as they are)"
            )
        if text[start + 1] in "01234567" and int(escape[0][1:], 8) > 0o377:
            raise place.error(
                f"{escape[0]!r} is not a byte: an octal escape is at most \\\\377 (255)"
            )
        position = escape.end()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return text.encode("ascii").decode("unicode_escape").encode("latin-1")


# -- matchers ----------------------------------------------------------------------------------

#: The keys of a MATCHER table (one of them; ``regex`` may add ``flags``, a kit matcher its
#: own keywords).
MATCHER_KEYS: Final = (
    "exact",
    "prefix",
    "contains",
    "regex",
    "any",
    "json",
    "all_of",
    "any_of",
    "not",
    "resp",
    "http",
    "mqtt",
    "modbus",
    *BYTES_KEYS,
)
_BYTES_MATCHERS: Final[dict[str, Callable[[bytes], Matcher]]] = {
    "exact": exact,
    "prefix": prefix,
    "contains": contains,
}
#: The regex flags a file may name (those that mean something for a bytes pattern).
_FLAGS: Final = ("IGNORECASE", "MULTILINE", "DOTALL", "VERBOSE", "ASCII")
#: A kit matcher's functions, by kit: ``{ mqtt = "publish", topic = "a/b" }``.
KIT_MATCHERS: Final[dict[str, dict[str, Callable[..., Matcher]]]] = {
    "mqtt": {
        name: getattr(mqtt, name)
        for name in (
            "connect",
            "publish",
            "subscribe",
            "unsubscribe",
            "pingreq",
            "disconnect",
            "packet",
        )
    },
    "modbus": {
        name: getattr(modbus, name)
        for name in (
            "request",
            "read_coils",
            "read_discrete_inputs",
            "read_holding_registers",
            "read_input_registers",
            "write_single_coil",
            "write_single_register",
            "write_multiple_coils",
            "write_multiple_registers",
        )
    },
}


def to_matcher(value: object, place: Place) -> Matcher:
    """A MATCHER: BYTES means exact; else a table with one matcher key."""
    if isinstance(value, str):
        with place.building():
            return exact(value)
    if not isinstance(value, dict):
        raise place.error(
            f'takes a matcher: a string (exact), or a table such as {{ prefix = "GET " }}, '
            f'{{ regex = "..." }}, {{ any = true }}; got {kind_of(value)} {value!r}'
        )
    chosen = [key for key in value if key in MATCHER_KEYS]
    if len(chosen) != 1:
        if not chosen:
            place.keys(value, MATCHER_KEYS, "matcher key")
        raise place.error(
            f"takes one matcher key, got {len(chosen)} ({', '.join(chosen) or 'none'}); "
            f"the matcher keys: {', '.join(MATCHER_KEYS)}"
        )
    return _one_matcher(chosen[0], value, place)


def _one_matcher(key: str, value: dict[str, object], place: Place) -> Matcher:
    inner = place.at(key)
    if key in BYTES_KEYS:
        place.keys(value, [key], "key of a bytes table")
        with place.building():
            return exact(to_bytes(value, place))
    if key in KIT_MATCHERS:
        return _kit_matcher(key, value, place)
    if key == "http":
        return _http(value, place)
    if key == "regex":
        return _regex(value, place)
    place.keys(value, [key], "key beside " + repr(key))
    item = value[key]
    if key == "resp":
        return to_resp_matcher(item, inner)
    if key in _BYTES_MATCHERS:
        with inner.building():
            return _BYTES_MATCHERS[key](to_bytes(item, inner))
    if key == "any":
        if item is not True:
            raise inner.error(f"takes true (any message), got {kind_of(item)} {item!r}")
        return ANY
    if key == "json":
        with inner.building():
            return json(item)
    if key == "not":
        return not_(to_matcher(item, inner))
    if not isinstance(item, list) or not item:
        raise inner.error(f"takes an array of matchers, got {kind_of(item)} {item!r}")
    parts = [to_matcher(part, inner.at(index)) for index, part in enumerate(item)]
    with inner.building():
        return (all_of if key == "all_of" else any_of)(*parts)


def _regex(value: dict[str, object], place: Place) -> Matcher:
    place.keys(value, ["regex", "flags"], "key of a regex matcher")
    inner = place.at("regex")
    pattern = inner.string(value["regex"], "a regular expression")
    flags = 0
    names = value.get("flags", [])
    if not isinstance(names, list):
        raise place.at("flags").error(f"takes an array of flag names, got {kind_of(names)}")
    for index, name in enumerate(names):
        flag = place.at("flags", index).choice(name, _FLAGS, "regex flag")
        flags |= re.RegexFlag[flag]
    with inner.building():
        return regex(pattern.encode(), flags)


def _kit_value(value: object, place: Place) -> object:
    """A kit matcher's argument: ``"*"`` is ANY, a table a MATCHER, anything else as is."""
    if value == "*":
        return ANY
    if isinstance(value, dict):
        return to_matcher(value, place)
    return value


def _kit_matcher(kit: str, value: dict[str, object], place: Place) -> Matcher:
    functions = KIT_MATCHERS[kit]
    name = place.at(kit).choice(value[kit], functions, f"{kit} matcher")
    function = functions[name]
    keywords = list(inspect.signature(function).parameters)
    place.keys(value, [kit, *keywords], f"keyword of {kit}.{name}()")
    arguments = {key: _kit_value(item, place.at(key)) for key, item in value.items() if key != kit}
    if kit == "mqtt" and arguments.get("username") is False:
        arguments["username"] = None  # TOML has no null: a CONNECT without a user name
    with place.building():
        return function(**arguments)


def _http(value: dict[str, object], place: Place) -> Matcher:
    place.keys(value, ["http", "headers", "body"], "key of an http matcher")
    inner = place.at("http")
    words = value["http"]
    if isinstance(words, str):
        words = [words]
    if not isinstance(words, list) or len(words) > 2:
        raise inner.error(f'takes ["METHOD", "target"] (either may be "*" for any), got {words!r}')
    parts = [_kit_value(word, inner.at(index)) for index, word in enumerate(words)]
    headers = None
    if "headers" in value:
        table = place.at("headers").table(value["headers"])
        headers = {
            name: _kit_value(item, place.at("headers", name)) for name, item in table.items()
        }
    body: object = ANY
    if "body" in value:
        body = _kit_value(value["body"], place.at("body"))
        if isinstance(body, str):
            body = body.encode()
    with place.building():
        return http1.request(*parts, headers=headers, body=body)  # type: ignore[arg-type]


def to_resp_matcher(value: object, place: Place) -> Matcher:
    """``{ resp = ["SET", "k", "*"] }``: ``resp.command("SET", "k", ANY)``; a last ``"..."``
    stands for any further arguments."""
    words = value
    if not isinstance(words, list) or not words:
        raise place.error(f'takes ["COMMAND", "arg", ...] ("*": any one), got {words!r}')
    name = place.at(0).string(words[0], "a command name")
    args: list[object] = []
    for index, word in enumerate(words[1:], 1):
        if word == "..." and index == len(words) - 1:
            args.append(Ellipsis)
        else:
            args.append(_kit_value(word, place.at(index)))
    with place.building():
        return resp.command(name, *args)


# -- faults ------------------------------------------------------------------------------------

#: The fault kinds: the methods of ``peer.faults``, each the lowercase alias in
#: :mod:`fakepeer.faults` of the class that makes it.
FAULT_KINDS: Final[dict[str, Callable[..., Fault]]] = {
    name: getattr(_faults, name)
    for name in sorted(_faults.__all__)
    if name[0].islower() and name != "blackhole"
} | {"blackhole": _faults.blackhole}


def fault_keywords(kind: str) -> dict[str, bool]:
    """The keywords of a fault kind, each with whether it is required."""
    signature = inspect.signature(FAULT_KINDS[kind])
    return {
        name: parameter.default is inspect.Parameter.empty
        for name, parameter in signature.parameters.items()
    }


def to_fault(value: object, place: Place, *, extra: tuple[str, ...] = ()) -> Fault:
    """A FAULT: ``{ kind = "<peer.faults method>", <its keywords> }``. ``extra`` keys of the
    table (a schedule's) are left to the caller."""
    table = place.table(value, 'a fault: { kind = "latency", seconds = 0.1 }')
    kind = place.at("kind").choice(
        place.required(table, "kind", "a fault says its kind, a method of peer.faults"),
        FAULT_KINDS,
        "fault kind",
    )
    keywords = fault_keywords(kind)
    place.keys(table, ["kind", *keywords, *extra], f"keyword of the {kind} fault")
    for name, required in keywords.items():
        if required and name not in table:
            raise place.error(f"the {kind} fault needs {name!r}")
    arguments = {key: item for key, item in table.items() if key in keywords}
    with place.building():
        return FAULT_KINDS[kind](**arguments)


# -- framings ----------------------------------------------------------------------------------


#: The framing kinds: the constructor, and its keywords that take BYTES.
FRAMINGS: Final[dict[str, tuple[Callable[..., Framing], tuple[str, ...]]]] = {
    "raw": (Raw, ()),
    "lines": (Lines, ("delimiter",)),
    "delimited": (Delimited, ("delimiter",)),
    "fixed": (Fixed, ()),
    "length-prefixed": (LengthPrefixed, ()),
    "length-field": (LengthField, ()),
    "stx-etx": (StxEtx, ()),
    "resp": (resp.framing, ()),
    "http1": (http1.framing, ()),
    "mqtt": (mqtt.framing, ()),
    "modbus": (modbus.framing, ()),
}


def framing_keywords(kind: str) -> list[str]:
    return list(inspect.signature(FRAMINGS[kind][0]).parameters)


def to_framing(value: object, place: Place, *, replies: bool = False) -> Framing:
    """A framing table: ``kind`` and the framing's own keywords. For replies, ``kind =
    "none"`` means replies sent as written (``Raw()``)."""
    table = place.table(value, 'a framing table: { kind = "lines" }')
    kinds = [*FRAMINGS, "none"] if replies else list(FRAMINGS)
    kind = place.at("kind").choice(
        place.required(table, "kind", f"a framing says its kind: {', '.join(kinds)}"),
        kinds,
        "framing kind",
    )
    if kind == "none":
        place.keys(table, ["kind"], "key of reply_framing kind 'none'")
        return Raw()
    make, byte_keys = FRAMINGS[kind]
    keywords = framing_keywords(kind)
    place.keys(table, ["kind", *keywords], f"keyword of the {kind} framing")
    arguments: dict[str, object] = {}
    for key, item in table.items():
        if key == "kind":
            continue
        arguments[key] = to_bytes(item, place.at(key)) if key in byte_keys else item
    if kind in ("fixed",) and "n" not in arguments:
        raise place.error("the fixed framing needs 'n', the size of each message in bytes")
    try:
        return make(**arguments)
    except (ScriptError, TypeError, ValueError) as error:  # at the key the error names
        text = error.diagnosis if isinstance(error, ScriptError) else str(error)
        named = [key for key in arguments if re.search(rf"\b{key}=", text)]
        raise (place.at(named[0]) if named else place).error(text) from None
