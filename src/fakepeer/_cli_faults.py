"""Faults from the command line: ``--fault SPEC`` and ``--faults FILE`` (``fakepeer proxy``).

A SPEC is one fault, written as a ``[[faults]]`` table of a script file is, on one line::

    KIND                         reset_peer, blackhole, half_close, ...
    KIND=VALUE[,KEY=VALUE...]    latency=0.1   (VALUE: the fault's first parameter)
    KIND:KEY=VALUE[,KEY=VALUE...] latency:seconds=0.1,direction=upstream

KIND is a method of ``peer.faults`` (``-`` may stand for ``_``); the keys are its keywords,
and the schedule's ``after``, ``lasting``, ``first`` and ``per`` (``peer.faults.add``),
unless the fault has a keyword of that name (``reset_peer:after=0.5`` is the fault's). A
VALUE is read as a TOML value (``0.1``, ``3``, ``true``, ``"a,b"``); anything else is a
string (``direction=upstream``).
"""

from __future__ import annotations

import difflib
import inspect
import tomllib
from collections.abc import Callable
from typing import Final

from . import faults as _faults
from ._errors import ScriptError
from ._faults import Fault
from ._host import Host

__all__ = ["SCHEDULE", "apply", "fault_kinds", "load_faults", "parse_spec"]

#: The keys of a fault's schedule (``peer.faults.add``'s keywords).
SCHEDULE: Final = ("after", "lasting", "first", "per")


def fault_kinds() -> dict[str, Callable[..., Fault]]:
    """The faults by name: ``peer.faults``' methods (the lowercase names of
    :mod:`fakepeer.faults`)."""
    return {
        name: getattr(_faults, name)
        for name in _faults.__all__
        if name[0].islower() and callable(getattr(_faults, name))
    }


def _value(text: str) -> object:
    """``text`` as a TOML value if it is one, else the string itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _make(kind: str, where: str) -> Callable[..., Fault]:
    makers = fault_kinds()
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
    kind, sep, rest = spec.partition(":")
    first = None
    if "=" in kind:  # KIND=VALUE[,KEY=VALUE...]
        kind, _, rest = spec.partition("=")
        first, _, rest = rest.partition(",")
    elif not sep and "," in kind:
        raise ScriptError(f"{where}: write KIND:KEY=VALUE,... (a ':' after the fault's name)")
    kind = kind.strip()
    if not kind:
        raise ScriptError(f"{where}: no fault named; write KIND, KIND=VALUE or KIND:KEY=VALUE")
    table: dict[str, object] = {"kind": kind}
    if first is not None:
        parameters = list(inspect.signature(_make(kind, where)).parameters)
        if not parameters:
            raise ScriptError(f"{where}: {kind}() takes no value; write {kind}")
        table[parameters[0]] = _value(first.strip())
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ScriptError(f"{where}: expected KEY=VALUE, got {item!r}")
        table[key.strip()] = _value(value.strip())
    return table


def apply(host: Host, table: dict[str, object], where: str) -> None:
    """Apply the fault ``table`` (``{"kind": ..., keywords and schedule...}``) to ``host``;
    :class:`~fakepeer.ScriptError` starting ``where`` if it is wrong."""
    rest = dict(table)
    kind = rest.pop("kind", None)
    if not isinstance(kind, str):
        raise ScriptError(f"{where}: a fault needs kind = the name of one, such as 'latency'")
    make = _make(kind, where)
    takes = inspect.signature(make).parameters
    schedule = {key: rest.pop(key) for key in SCHEDULE if key in rest and key not in takes}
    unknown = [key for key in rest if key not in takes]
    if unknown:
        close = difflib.get_close_matches(unknown[0], [*takes, *SCHEDULE], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = ", ".join([*takes, *(key for key in SCHEDULE if key not in takes)])
        raise ScriptError(
            f"{where}: {make.__name__}() has no keyword {unknown[0]!r}{hint}; it takes {known}"
        )
    try:
        host.faults.add(make(**rest), **schedule)  # type: ignore[arg-type]
    except ScriptError as exc:
        raise ScriptError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ScriptError(f"{where}: {make.__name__}(): {exc}") from None


def load_faults(path: str) -> list[tuple[dict[str, object], str]]:
    """The fault tables of a ``--faults`` file (``[[faults]]`` tables, and an optional
    ``version = 1``), each with where it is for an error; :class:`~fakepeer.ScriptError`
    naming the file if it is not one."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScriptError(f"{path}: not TOML: {exc}") from None
    extra = sorted(set(document) - {"version", "faults"})
    if extra:
        raise ScriptError(f"{path}: unknown key {extra[0]!r}: a faults file has [[faults]] only")
    tables = document.get("faults", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ScriptError(f"{path}: faults: expected [[faults]] tables")
    return [(table, f"{path}: faults #{n}") for n, table in enumerate(tables, 1)]
