"""Every relative link of the documentation resolves in a fresh clone.

The Markdown files of the repository (README.md, CHANGELOG.md, docs/*.md and
benchmarks/README.md) link to each other and to files of the repository. Each such link must
name a file that exists, and a ``#anchor`` into a Markdown file must name one of its
headings, slugged as GitHub does. The docs site (docs/conf.py) rewrites the same links for
its pages, and its strict build checks them again there.
"""

from __future__ import annotations

import html.parser
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "benchmarks" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
#: CommonMark, as GitHub and MyST read it: inline and reference-style links, images, fences
#: of any length, and raw HTML (whose ``href`` and ``src`` are links too).
MARKDOWN = MarkdownIt("commonmark")


class _HtmlLinks(html.parser.HTMLParser):
    """The ``href`` of ``<a>`` and the ``src`` of ``<img>`` in a piece of raw HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"a": "href", "img": "src"}.get(tag)
        self.found += [value for name, value in attrs if name == wanted and value]


def _html_links(text: str) -> list[str]:
    parser = _HtmlLinks()
    parser.feed(text)
    parser.close()
    return parser.found


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _text(inline: Token) -> str:
    """The text of an inline token as a reader sees it (code spans without backticks)."""
    return "".join(child.content for child in inline.children or [] if child.content)


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings; a repeated one gets ``-1``, ``-2``..."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    tokens = MARKDOWN.parse(path.read_text(encoding="utf-8"))
    for token, inline in itertools.pairwise(tokens):
        if token.type != "heading_open":
            continue
        slug = github_slug(_text(inline))
        count = counts.get(slug, 0)
        counts[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    """``(line, target)`` of each link and image of a Markdown text, as CommonMark reads it
    (code spans and blocks hold none), raw HTML's included; the line is the first of the
    block that holds it on which the target is written, counted from 1."""
    lines = text.splitlines()
    for token in MARKDOWN.parse(text):
        if token.map is None:
            continue
        first, last = token.map
        targets: list[str] = []
        if token.type == "html_block":
            targets = _html_links(token.content)
        elif token.type == "inline":
            for child in token.children or []:
                if child.type == "link_open":
                    targets.append(str(child.attrs.get("href", "")))
                elif child.type == "image":
                    targets.append(str(child.attrs.get("src", "")))
                elif child.type == "html_inline":
                    targets += _html_links(child.content)
        for target in targets:
            raw = target.split("#")[0] or target
            number = next(
                (n for n in range(first, last) if raw in lines[n] or "]:" in lines[n]),
                first,
            )
            yield number + 1, target


def broken_links(document: Path) -> list[str]:
    """``file:line: target: why`` for each relative link of ``document`` that does not
    resolve."""
    broken = []
    for number, target in links(document.read_text(encoding="utf-8")):
        if SCHEME.match(target):
            continue  # https:, mailto: ... are not checked (no network here)
        path_part, _, anchor = target.partition("#")
        path = (document.parent / path_part).resolve() if path_part else document
        where = f"{document.relative_to(ROOT)}:{number}: {target}"
        if not path.is_relative_to(ROOT):
            broken.append(f"{where}: outside the repository")
        elif not path.exists():
            broken.append(f"{where}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{where}: no heading with the anchor #{anchor} in {path.name}")
    return broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(d.relative_to(ROOT)) for d in DOCUMENTS])
def test_relative_links_resolve(document: Path) -> None:
    broken = broken_links(document)
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_documents_have_links() -> None:
    found = sum(len(list(links(document.read_text(encoding="utf-8")))) for document in DOCUMENTS)
    assert found >= 30


def test_a_broken_link_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# A guide\n\n## Set `it` up, then go!\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "seed.py").write_text("")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n"
        "[ok](docs/guide.md), [ok too](docs/guide.md#set-it-up-then-go), [seed](tests/seed.py)\n"
        "[here](#title), [web](https://example.org/x.md), `[not a link](nowhere.md)`\n"
        "```\n[in a code block](nowhere.md)\n```\n"
        "[gone](docs/gone.md) and ![chart](docs/chart.png)\n"
        "[bad anchor](docs/guide.md#setup) [up](../../outside.md) [self](#nope)\n"
    )
    assert broken_links(readme) == [
        "README.md:8: docs/gone.md: no such file",
        "README.md:8: docs/chart.png: no such file",
        "README.md:9: docs/guide.md#setup: no heading with the anchor #setup in guide.md",
        "README.md:9: ../../outside.md: outside the repository",
        "README.md:9: #nope: no heading with the anchor #nope in README.md",
    ]


def test_github_slugs() -> None:
    assert github_slug("The loop watchdog") == "the-loop-watchdog"
    assert github_slug("Tasks that die unseen: `TaskDied`") == "tasks-that-die-unseen-taskdied"
    assert github_slug("In front of a real server: the proxy") == (
        "in-front-of-a-real-server-the-proxy"
    )
    assert github_slug("Segmented input: Raw(), a 1,048,576-byte expect") == (
        "segmented-input-raw-a-1048576-byte-expect"
    )


#: Links that a line-by-line reading misses or invents, each in a README of its own.
FORMS = {
    "html a href": '<a href="docs/gone.md">gone</a>',
    "html img src": '<p><img src="docs/images/gone.svg" alt="picture"></p>',
    "inline html": 'See <a href="docs/gone.md">this</a>.',
    "reference-style link": "[the guide][g]\n\n[g]: docs/gone.md",
    "reference-style anchor": "[the guide][h]\n\n[h]: docs/guide.md#no-such-heading",
    "after a ``` line inside a ~~~ fence": "~~~text\n```\n~~~\n[gone](docs/gone.md)\n```\n",
    "after a 4-backtick fence holding ```": "````md\n```\n````\n[gone](docs/gone.md)\n",
    "an anchor to a heading inside a code block": "[x](docs/guide2.md#not-a-heading)",
    "a target with a space, in angle brackets": "[x](<docs/gone file.md>)",
    "link text over two lines": "[a long\nlink text](docs/gone.md)",
    "the destination on the next line": "[text](\ndocs/gone.md)",
}


@pytest.mark.parametrize("form", FORMS)
def test_every_form_of_link_is_read(
    form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# A guide\n\n## Setup\n")
    (tmp_path / "docs" / "guide2.md").write_text("# Guide 2\n\n```\n# not-a-heading\n```\n")
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\n" + FORMS[form] + "\n")
    broken = broken_links(readme)
    assert len(broken) == 1, broken
    assert broken[0].startswith("README.md:")


def test_links_in_code_are_not_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n`[a](gone.md)` and ``[b](gone.md)``\n\n"
        "~~~\n[c](gone.md)\n```\n[d](gone.md)\n~~~\n\n    [e](gone.md)\n"
    )
    assert broken_links(readme) == []
