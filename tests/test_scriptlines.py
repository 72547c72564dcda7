"""The locator of script files: the line of every key of a TOML document (``tomllib`` gives
none), on tricky layouts and on documents Hypothesis writes."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from fakepeer._scriptlines import Path, line_of, locate

TRICKY = '''\
version = 1            # a comment with [[expect]] and key = 1
title = """
[[expect]]
match = "not a key"
"""
literal = \'\'\'
reply = "not a key either" \'\'\'
quoted."dotted.key" = 2
[[expect]]
match = { regex = "a{2}[}]", flags = ["DOTALL"] }
steps = [
  { reply = "A" },   # first

  # a comment between items
  { after = 0.2 }, { send = 'B#' },
]
[[expect]]

  [expect.nested]
  x = 1
[[connection]]
number = 2
[[connection.expect]]
match = "P"
[[connection]]
[[connection.always]]
match = "Q"
"escaped \\" key" = 3
'''

EXPECTED: dict[Path, int] = {
    ("version",): 1,
    ("title",): 2,
    ("literal",): 6,
    ("quoted", "dotted.key"): 8,
    ("expect", 0): 9,
    ("expect", 0, "match"): 10,
    ("expect", 0, "match", "regex"): 10,
    ("expect", 0, "match", "flags", 0): 10,
    ("expect", 0, "steps"): 11,
    ("expect", 0, "steps", 0, "reply"): 12,
    ("expect", 0, "steps", 1, "after"): 15,
    ("expect", 0, "steps", 2, "send"): 15,
    ("expect", 1): 17,
    ("expect", 1, "nested", "x"): 20,
    ("connection", 0, "number"): 22,
    ("connection", 0, "expect", 0, "match"): 24,
    ("connection", 1): 25,
    ("connection", 1, "always", 0, "match"): 27,
    ("connection", 1, "always", 0, 'escaped " key'): 28,
}


def _paths(value: object, path: Path = ()) -> list[Path]:
    """Every path of a parsed document, in document order of the dicts and lists."""
    found: list[Path] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*path, key))
            found.extend(_paths(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*path, index))
            found.extend(_paths(item, (*path, index)))
    return found


def test_the_lines_of_a_tricky_layout() -> None:
    lines = locate(TRICKY)
    assert {path: lines.get(path) for path in EXPECTED} == EXPECTED
    assert set(lines) == set(_paths(tomllib.loads(TRICKY)))


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("expect", 0, "steps", 0, "reply", "hex"), 12),  # not in the file: its parent's
        (("expect", 5), 9),  # the array's first line
        (("nothing",), 1),
        ((), 1),
    ],
)
def test_a_path_not_found_takes_its_nearest_ancestors_line(path: Path, line: int) -> None:
    assert line_of(locate(TRICKY), path) == line


def test_windows_line_ends_count_the_same() -> None:
    text = "version = 1\r\n[[expect]]\r\nmatch = 'a'\r\n"
    assert locate(text)[("expect", 0, "match")] == 3


KEYS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
SCALARS = st.one_of(
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=20),  # newlines, quotes, '[[x]]' and 'k = v' in strings
    st.sampled_from(["[[expect]]\nmatch = 1", '"""', "'''", "a # b", "\\", 'x = "y"']),
)
TABLES: Any = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(KEYS, inner, max_size=4),
        st.lists(st.dictionaries(KEYS, inner, min_size=1, max_size=3), min_size=1, max_size=3),
    ),
    max_leaves=20,
)
DOCUMENTS = st.dictionaries(KEYS, TABLES, max_size=6)


@settings(max_examples=200, deadline=None)
@given(DOCUMENTS, st.booleans())
def test_every_path_is_found_on_a_line_that_names_it(
    document: dict[str, Any], multiline: bool
) -> None:
    text = tomli_w.dumps(document, multiline_strings=multiline)
    lines = locate(text)
    assert set(lines) == set(_paths(tomllib.loads(text)))
    source = text.split("\n")  # TOML's lines (str.splitlines also splits at U+0085)
    for path, line in lines.items():
        assert 1 <= line <= len(source)
        key = path[-1]
        if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_-]+", key):
            assert key in source[line - 1], (path, line, text)
