"""Faults from the command line: ``--fault SPEC`` and ``--faults FILE`` (``fakepeer proxy``).

A SPEC is one fault, written as a ``[[faults]]`` table of a script file is, on one line::

    KIND                          reset_peer, blackhole, half_close, ...
    KIND=VALUE[,KEY=VALUE...]     latency=0.1   (VALUE: the fault's first parameter)
    KIND:KEY=VALUE[,KEY=VALUE...] latency:seconds=0.1,direction=upstream

KIND is a method of ``peer.faults`` (``-`` may stand for ``_``); the keys are its keywords,
and the schedule's ``after``, ``lasting``, ``first`` and ``per`` (``peer.faults.add``);
``reset_peer``'s own ``after`` is ``fault_after``, as in a script file. A VALUE is read as a
TOML value (``0.1``, ``3``, ``true``, ``"a,b"``); anything else is a string
(``direction=upstream``). A ``--faults`` file has ``[[faults]]`` tables, read as a script
file's are (``fakepeer._scriptfile``), with their ``FILE:LINE`` errors.
"""

from __future__ import annotations

import difflib
import inspect
import re
import tomllib
from collections.abc import Callable

from ._errors import ScriptError
from ._faults import Fault
from ._host import Host
from ._scriptfile import (
    MAX_FILE,
    SCHEDULE_KEYS,
    VERSION,
    apply_faults,
    deepest_line,
    syntax_error,
)
from ._scriptlines import locate
from ._scriptplace import Place
from ._scriptvalues import FAULT_KINDS, fault_keywords

__all__ = ["apply", "apply_file", "parse_spec"]


def _value(text: str) -> object:
    """``text`` as a TOML value if it is one, else the string itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _make(kind: str, where: str) -> Callable[..., Fault]:
    makers = FAULT_KINDS
    name = kind.replace("-", "_")
    if name not in makers:
        close = difflib.get_close_matches(name, makers, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ScriptError(
            f"{where}: no fault named {kind!r}{hint}; the faults: {', '.join(sorted(makers))}"
        )
    return makers[name]


def parse_spec(spec: str) -> dict[str, object]:
    """A ``--fault`` SPEC (see the module docstring) as a fault table:
    ``{"kind": ..., KEY: VALUE...}``; :class:`~fakepeer.ScriptError` naming the SPEC if it
    is not one."""
    where = f"--fault {spec!r}"
    found = re.fullmatch(r"\s*([A-Za-z][\w-]*)\s*(?:([=:])(.*))?", spec, re.DOTALL)
    if found is None:
        raise ScriptError(f"{where}: write KIND, KIND=VALUE or KIND:KEY=VALUE,... (KIND: a fault)")
    kind, sign, rest = found[1], found[2], found[3] or ""
    table: dict[str, object] = {"kind": kind}
    if sign == "=":  # KIND=VALUE[,KEY=VALUE...]: VALUE is the first parameter's
        first, _, rest = rest.partition(",")
        parameters = list(inspect.signature(_make(kind, where)).parameters)
        if not parameters:
            raise ScriptError(f"{where}: {kind}() takes no value; write {kind}")
        name = parameters[0]  # reset_peer's after is fault_after: after is the schedule's
        table[f"fault_{name}" if name in SCHEDULE_KEYS else name] = _value(first.strip())
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ScriptError(f"{where}: expected KEY=VALUE, got {item!r}")
        key = key.strip()
        if key in table or f"fault_{key}" in table:
            raise ScriptError(f"{where}: {key} is given twice; give each key once")
        table[key] = _value(value.strip())
    return table


def apply(host: Host, table: dict[str, object], where: str) -> None:
    """Apply the fault ``table`` (``{"kind": ..., keywords and schedule...}``) to ``host``;
    :class:`~fakepeer.ScriptError` starting ``where`` if it is wrong."""
    rest = dict(table)
    kind = str(rest.pop("kind"))
    make = _make(kind, where)
    schedule = {key: rest.pop(key) for key in SCHEDULE_KEYS if key in rest}
    takes = inspect.signature(make).parameters
    if "fault_after" in rest and "after" in takes:  # reset_peer's own after=
        rest["after"] = rest.pop("fault_after")
    unknown = [key for key in rest if key not in takes]
    if unknown:
        words = [*takes, *SCHEDULE_KEYS]
        close = difflib.get_close_matches(unknown[0], words, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ScriptError(
            f"{where}: {kind} has no key {unknown[0]!r}{hint}; it takes "
            f"{', '.join(takes) or 'no keyword'}, and the schedule's {', '.join(SCHEDULE_KEYS)}"
        )
    required = fault_keywords(kind.replace("-", "_")).items()
    missing = [name for name, needed in required if needed and name not in rest]
    if missing:
        name = missing[0]
        first = next(iter(takes)) == name
        short = f"{kind}={name.upper()} or " if first else ""
        raise ScriptError(f"{where}: {kind} needs its {name}: write {short}{kind}:{name}=...")
    try:
        host.faults.add(make(**rest), **schedule)  # type: ignore[arg-type]  # checked there
    except ScriptError as exc:
        raise ScriptError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ScriptError(f"{where}: {kind}: {exc}") from None


def apply_file(host: Host, path: str) -> None:
    """Apply the ``[[faults]]`` of the TOML file at ``path`` (and an optional
    ``version = 1``) to ``host``; :class:`~fakepeer.ScriptError` with ``FILE:LINE`` if it is
    wrong, as for a script file."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE + 1)
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read the faults: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE:
        raise ScriptError(f"{path}: not a faults file: longer than {MAX_FILE:,} bytes")
    text = data.decode("utf-8", errors="replace")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise syntax_error(error, path) from None
    except RecursionError:
        raise ScriptError(
            f"{path}:{deepest_line(text)}: nested too deeply for the TOML reader"
        ) from None
    place = Place(path, locate(text))
    place.keys(document, ("version", "faults"))
    version = document.get("version", VERSION)
    if version != VERSION or isinstance(version, bool):
        raise place.at("version").error(
            f"this fakepeer reads version {VERSION} of the format, got {version!r}"
        )
    apply_faults(host, document, place)
