"""Script files: a TOML document that describes one :class:`~fakepeer.FakePeer`.

:func:`load_file` (``FakePeer.from_file``) and :func:`load_text` read a script with the
standard library's ``tomllib`` and build the peer by calling the public API, one key to one
keyword or method: ``[peer]`` is ``FakePeer(...)``, ``[[expect]]`` is ``peer.expect(...)``
and its keys the rule's methods, ``[[faults]]`` is ``peer.faults.add(...)``. The reference is
docs/file-format.md, the JSON Schema ``script.schema.json`` beside this module.

Every problem is a :class:`~fakepeer.ScriptError` whose message starts ``FILE:LINE: key
path: `` (see :mod:`._scriptplace`); rules built from a file are located at their table's
line (``expect #2 'PING' (conversation.toml:12)``) in transcripts and diagnoses.
"""

from __future__ import annotations

import inspect
import os
import re
import ssl
import tomllib
from collections.abc import Callable
from typing import Any, Final

from ._errors import ScriptError
from ._host import Host
from ._peer import ConnectionScript, FakePeer
from ._script import Rule
from ._scriptlines import locate
from ._scriptplace import Place, kind_of
from ._scriptrules import RULE_TABLES, add_rule
from ._scriptvalues import to_fault, to_framing
from .protocols import mqtt, resp

__all__ = [
    "CONNECTION_KEYS",
    "FAULT_TABLE_KEYS",
    "KIT_PRESETS",
    "PEER_KEYS",
    "TOP_KEYS",
    "load_file",
    "load_text",
]

#: The version of the format this loader reads.
VERSION: Final = 1
#: The longest script file read, in bytes (a recording of a long conversation is far less).
MAX_FILE: Final = 256 << 20
TOP_KEYS: Final = (
    "version",
    "peer",
    "framing",
    "reply_framing",
    *RULE_TABLES,
    "connection",
    "faults",
    "kit",
)
CONNECTION_KEYS: Final = ("number", "inherit", *RULE_TABLES, "kit")
SCHEDULE_KEYS: Final = ("after", "lasting", "first", "per")
FAULT_TABLE_KEYS: Final = SCHEDULE_KEYS
#: A kit's preset, by the name the kit gives it, and its keywords.
KIT_PRESETS: Final[dict[str, Callable[..., list[Rule]]]] = {
    "resp.handshake": resp.handshake,
    "mqtt.handshake": mqtt.handshake,
}


def _strings(value: object, place: Place) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise place.error(f"takes an array of strings, got {kind_of(value)} {value!r}")
    return list(value)


def _tls_version(value: object, place: Place) -> ssl.TLSVersion:
    names = [version.name for version in ssl.TLSVersion]
    return ssl.TLSVersion[place.choice(value, names, "ssl.TLSVersion")]


def _tls(value: object, place: Place) -> bool | str:
    if value == "starttls" or isinstance(value, bool):
        return value
    raise place.error(f'takes true, false or "starttls", got {kind_of(value)} {value!r}')


def _unix(value: object, place: Place) -> bool | str:
    if isinstance(value, bool | str):
        return value
    raise place.error(f"takes true (a fresh path) or a path string, got {kind_of(value)}")


def _budget(value: object, place: Place) -> int | None:
    if value is False:
        return None
    return place.integer(value, "a number of bytes, or false for no limit")


#: The keys of ``[peer]``: FakePeer's keywords, each with what checks and converts it.
PEER_KEYS: Final[dict[str, Callable[[object, Place], object]]] = {
    "name": lambda value, place: place.string(value),
    "host": lambda value, place: place.string(value),
    "port": lambda value, place: place.integer(value, "a port number"),
    "unix": _unix,
    "external": lambda value, place: place.boolean(value),
    "transport": lambda value, place: place.choice(value, ("tcp", "udp"), "transport"),
    "timeout": lambda value, place: place.number(value),
    "seed": lambda value, place: place.integer(value, "an integer seed"),
    "tls": _tls,
    "tls_hostnames": _strings,
    "tls_min_version": _tls_version,
    "tls_max_version": _tls_version,
    "tls_alpn": _strings,
    "tls_client_cert": lambda value, place: place.boolean(value),
    "transcript_budget": _budget,
    "max_clients": lambda value, place: place.integer(value, "a whole number of clients"),
    "max_send_buffer": lambda value, place: place.integer(value, "a number of bytes"),
}


def load_file(path: str | os.PathLike[str], **overrides: object) -> FakePeer:
    """The peer the script file at ``path`` describes: see ``FakePeer.from_file``."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = file.read(MAX_FILE + 1)
    except OSError as error:
        raise ScriptError(f"{source}: cannot read the script: {error.strerror}") from None
    if len(data) > MAX_FILE:
        raise ScriptError(f"{source}: not a script file: longer than {MAX_FILE:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ScriptError(f"{source}:{line}: a TOML file is UTF-8: {error.reason}") from None
    return load_text(text, source, **overrides)


def load_text(text: str, source: str = "<string>", **overrides: object) -> FakePeer:
    """The peer the script ``text`` describes; ``source`` names it in errors (``FILE:LINE``)
    and in the rules' locations. ``overrides`` are FakePeer keywords that win over the file's
    ``[peer]`` (a keyword FakePeer does not take is a :class:`TypeError`)."""
    keywords = set(inspect.signature(FakePeer).parameters)
    for key in overrides:
        if key not in keywords:
            raise TypeError(f"FakePeer.from_file() got an unexpected keyword argument {key!r}")
    try:
        return _load(text, source, overrides)
    except RecursionError:  # tomllib (and the matchers' builders) recurse once a level
        raise ScriptError(
            f"{source}:{deepest_line(text)}: nested too deeply: its values (tables in "
            "tables, arrays in arrays, { not = { not = ... } }) go more levels deep than the "
            "TOML reader can take; a script needs a few"
        ) from None


def _load(text: str, source: str, overrides: dict[str, object]) -> FakePeer:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise syntax_error(error, source) from None
    place = Place(source, locate(text))
    place.keys(document, TOP_KEYS)
    if "version" not in document:
        raise ScriptError(
            f"{source}:1: 'version' is missing: a script file starts with version = {VERSION}"
        )
    version = document["version"]
    if version != VERSION or isinstance(version, bool):
        raise place.at("version").error(
            f"this fakepeer reads version {VERSION} of the format, got {version!r}"
        )
    peer = _peer(document, place, overrides)
    peer._conversation.script.file = source
    _rules(peer, document, place, os.path.basename(source))
    _connections(peer, document, place, os.path.basename(source))
    apply_faults(peer, document, place)
    return peer


def deepest_line(text: str) -> int:
    """The line (from 1) where the brackets and braces of ``text`` nest deepest (those in
    quotes too: a hint for an error message, not a parse)."""
    depth = deepest = 0
    line = where = 1
    for char in text:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, line
        elif char in "]}":
            depth -= 1
        elif char == "\n":
            line += 1
    return where


def syntax_error(error: tomllib.TOMLDecodeError, source: str) -> ScriptError:
    text = str(error)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", text)
    if found:
        what = text[: found.start()]
        return ScriptError(f"{source}:{found[1]}: not valid TOML: {what} (column {found[2]})")
    return ScriptError(f"{source}:1: not valid TOML: {text}")


def _peer(document: dict[str, object], place: Place, overrides: dict[str, object]) -> FakePeer:
    table = place.at("peer")
    given = table.table(document.get("peer", {}))
    table.keys(given, PEER_KEYS, "FakePeer keyword")
    keywords = {key: PEER_KEYS[key](value, table.at(key)) for key, value in given.items()}
    for key in ("framing", "reply_framing"):
        if key in document:
            keywords[key] = to_framing(document[key], place.at(key), replies=key != "framing")
    keywords.update(overrides)
    try:
        return FakePeer(**keywords)  # type: ignore[arg-type]
    except (ScriptError, TypeError, ValueError) as error:
        text = error.diagnosis if isinstance(error, ScriptError) else str(error)
        named = [key for key in given if re.search(rf"\b{key}\b", text)]
        if not named and any(re.search(rf"\b{key}=", text) for key in overrides):
            raise ScriptError(text) from None  # the caller's keyword, not the file, is wrong
        at = table.at(named[0]) if named else table if "peer" in document else place
        raise at.error(text) from None


def _ordered(document: dict[str, object], place: Place, keys: tuple[str, ...]) -> list[Place]:
    """The places of the rule tables and kit presets of ``document``, in file order."""
    places: list[Place] = []
    for key in keys:
        if key not in document:
            continue
        tables = document[key]
        if not isinstance(tables, list):
            raise place.at(key).error(
                f"takes an array of tables ([[{'.'.join(map(str, (*place.path, key)))}]]), "
                f"got {kind_of(tables)}"
            )
        places.extend(place.at(key, index) for index in range(len(tables)))
    return sorted(places, key=lambda where: where.line)


def _rules(
    script: FakePeer | ConnectionScript, document: dict[str, object], place: Place, name: str
) -> None:
    for where in _ordered(document, place, (*RULE_TABLES, "kit")):
        kind, index = where.path[-2], where.path[-1]
        assert isinstance(kind, str)
        assert isinstance(index, int)
        value = document[kind]
        assert isinstance(value, list)
        if kind == "kit":
            _kit(script, value[index], where, name)
        else:
            add_rule(script, kind, value[index], where, name)


def _kit(script: FakePeer | ConnectionScript, value: object, place: Place, name: str) -> None:
    table = place.table(value)
    preset = place.at("preset").choice(
        place.required(table, "preset", "a kit table names its preset"), KIT_PRESETS, "preset"
    )
    function = KIT_PRESETS[preset]
    keywords = list(inspect.signature(function).parameters)[1:]
    place.keys(table, ["preset", *keywords], f"keyword of {preset}()")
    arguments = {key: item for key, item in table.items() if key != "preset"}
    with place.building():
        rules = function(script, **arguments)
    for rule in rules:
        rule.where = f"{name}:{place.line}"
        rule._description = None  # the kit's reply check described it at the kit's own line


def _connections(peer: FakePeer, document: dict[str, object], place: Place, name: str) -> None:
    tables = document.get("connection", [])
    if not isinstance(tables, list):
        raise place.at("connection").error("takes an array of tables ([[connection]])")
    for index, value in enumerate(tables):
        where = place.at("connection", index)
        table = where.table(value)
        where.keys(table, CONNECTION_KEYS, "key of a connection table")
        number = where.at("number").integer(
            where.required(table, "number", "the connection it scripts, counting from 1"),
            "a connection number (1 is the first)",
        )
        inherit = where.at("inherit").boolean(table.get("inherit", False))
        with where.building():
            script = peer.on_connection(number, inherit=inherit)
        _rules(script, table, where, name)


def apply_faults(host: Host, document: dict[str, object], place: Place) -> None:
    """Apply the ``[[faults]]`` tables of ``document`` to ``host`` (a peer or a proxy; the
    command line's ``--faults FILE`` too), each with its schedule keys."""
    tables = document.get("faults", [])
    if not isinstance(tables, list):
        raise place.at("faults").error("takes an array of tables ([[faults]])")
    for index, value in enumerate(tables):
        where = place.at("faults", index)
        table = where.table(value)
        fault_table = {key: item for key, item in table.items() if key not in SCHEDULE_KEYS}
        if "fault_after" in fault_table:  # reset_peer's own after=, beside the schedule's
            if table.get("kind") != "reset_peer":
                raise where.at("fault_after").error(
                    "only the reset_peer fault takes fault_after (its own after=, the seconds "
                    "from a connection's start to its reset)"
                )
            fault_table["after"] = fault_table.pop("fault_after")
        fault = to_fault(fault_table, where, extra=SCHEDULE_KEYS)
        schedule: dict[str, Any] = {key: table[key] for key in SCHEDULE_KEYS if key in table}
        with where.building():
            host.faults.add(fault, **schedule)  # its own checks, at the table's line
