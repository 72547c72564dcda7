"""Where a value of a script file is, and the errors that say so (``FILE:LINE: key path: ...``).

A :class:`Place` is the file's name, the lines of its keys (from :mod:`._scriptlines`) and
the path of one value in the parsed document. Everything the loader of script files finds
wrong is raised as :class:`~fakepeer.ScriptError` through a place, and what the Python API
raises while the loader builds a peer is re-raised with the place of the table that caused
it (:meth:`Place.building`).

Pure: no I/O.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from ._errors import ScriptError
from ._scriptlines import Path, line_of

__all__ = ["Place", "kind_of"]


def kind_of(value: object) -> str:
    """The TOML name of a value's type, as an error says what it got."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"  # dates and times


@dataclass(frozen=True)
class Place:
    """The value at ``path`` of the file ``source`` (its key lines in ``lines``)."""

    source: str
    lines: Mapping[Path, int]
    path: Path = ()

    def at(self, *more: str | int) -> Place:
        return Place(self.source, self.lines, (*self.path, *more))

    @property
    def line(self) -> int:
        return line_of(self.lines, self.path)

    @property
    def label(self) -> str:
        """``expect #3: reply``: keys by name, array elements by their number from 1."""
        parts: list[str] = []
        for item in self.path:
            if isinstance(item, int) and parts:
                parts[-1] = f"{parts[-1]} #{item + 1}"
            else:
                parts.append(str(item))
        return ": ".join(parts)

    def error(self, what: str) -> ScriptError:
        label = f"{self.label}: " if self.path else ""
        return ScriptError(f"{self.source}:{self.line}: {label}{what}")

    @contextmanager
    def building(self) -> Iterator[None]:
        """Re-raise what the Python API raises (``ScriptError``; ``TypeError`` and
        ``ValueError`` of a constructor) with this place."""
        try:
            yield
        except ScriptError as error:
            raise self.error(error.diagnosis) from None
        except (TypeError, ValueError) as error:
            raise self.error(str(error)) from None

    # -- checks --------------------------------------------------------------------------------

    def table(self, value: object, what: str = "a table") -> dict[str, object]:
        if not isinstance(value, dict):
            raise self.error(f"takes {what}, got {kind_of(value)} {value!r}")
        return value

    def keys(self, table: Mapping[str, object], known: Iterable[str], what: str = "key") -> None:
        """Each key of ``table`` must be one of ``known``, else an error at the first
        unknown one with the closest known key."""
        names = list(known)
        for key in table:
            if key not in names:
                raise self.at(key).error(unknown(key, names, what))

    def required(self, table: Mapping[str, object], key: str, why: str) -> object:
        if key not in table:
            raise self.error(f"{key!r} is missing: {why}")
        return table[key]

    def boolean(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.error(f"takes true or false, got {kind_of(value)} {value!r}")
        return value

    def string(self, value: object, what: str = "a string") -> str:
        if not isinstance(value, str):
            raise self.error(f"takes {what}, got {kind_of(value)} {value!r}")
        return value

    def integer(self, value: object, what: str = "an integer") -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"takes {what}, got {kind_of(value)} {value!r}")
        return value

    def number(self, value: object, what: str = "a number of seconds") -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"takes {what}, got {kind_of(value)} {value!r}")
        return value

    def choice(self, value: object, choices: Iterable[str], what: str) -> str:
        names = list(choices)
        text = self.string(value, f"a {what} name")
        if text not in names:
            raise self.error(unknown(text, names, what))
        return text


def unknown(name: str, known: list[str], what: str) -> str:
    """``unknown key 'rpely' (did you mean 'reply'?); known: match, reply, ...``."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {name!r}{hint}; known: {', '.join(known)}"
