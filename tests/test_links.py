"""Every relative link of the documentation resolves in a fresh clone.

The Markdown files of the repository (README.md, CHANGELOG.md, docs/*.md and
benchmarks/README.md) link to each other and to files of the repository. Each such link must
name a file that exists, and a ``#anchor`` into a Markdown file must name one of its
headings, slugged as GitHub does. The docs site (docs/conf.py) rewrites the same links for
its pages, and its strict build checks them again there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "benchmarks" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+).*?\1")
# [text](target) and ![alt](target); the text may hold `code` and nested brackets.
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings; a repeated one gets ``-1``, ``-2``..."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match is None:
            continue
        slug = github_slug(match[2])
        count = counts.get(slug, 0)
        counts[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(document: Path) -> list[str]:
    """``file:line: target: why`` for each relative link of ``document`` that does not
    resolve."""
    broken = []
    for number, line in prose_lines(document.read_text(encoding="utf-8")):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            target = match[1]
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
    links = sum(
        len(LINK.findall(INLINE_CODE.sub("", line)))
        for document in DOCUMENTS
        for _, line in prose_lines(document.read_text(encoding="utf-8"))
    )
    assert links >= 30


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
