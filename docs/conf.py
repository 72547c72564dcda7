"""Sphinx configuration of fakepeer's documentation site.

Build it with ``python -m sphinx -W --keep-going -n -b html docs docs/_build/html`` after
``pip install -e '.[docs]'``.

Why Sphinx with Furo and MyST-Parser, not MkDocs: fakepeer's docstrings are reST, with
about 250 Sphinx roles (``:class:``, ``:meth:``, ``:func:``, ``:data:``) and ````literals````.
Sphinx's autodoc renders them as written, and nitpicky mode (``-n``) reports every reference
that does not resolve. The hand-written pages stay Markdown (MyST), so tests/test_docs.py
keeps running their ``# test_<name>.py`` examples as tests.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from pygments.lexers.special import TextLexer
from sphinx.highlighting import lexers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # document this checkout, not an installed copy

import fakepeer  # noqa: E402
import fakepeer.faults  # noqa: E402  (for _public_name)

project = "fakepeer"
author = "The fakepeer developers"
copyright = "The fakepeer developers, MIT License"
release = version = fakepeer.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# MyST: GitHub-style anchors for the headings (``reference.md#the-loop-watchdog``), so a
# link works the same on GitHub and on the site.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

html_theme = "furo"
html_title = f"fakepeer {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_class_signature = "mixed"
autodoc_default_options = {"members": True}
add_module_names = False

# Strict: -n reports every reference that does not resolve. The network is closed on the
# build machines (no intersphinx to docs.python.org, pytest or trio), so references to
# those projects' names cannot resolve: they are ignored here, and only those. Every name
# of fakepeer must resolve.
nitpicky = True
EXTERNAL_MODULES = (
    "asyncio",
    "collections",
    "concurrent",
    "contextlib",
    "enum",
    "pytest",
    "_pytest",
    "os",
    "re",
    "signal",
    "socket",
    "ssl",
    "trio",
    "types",
    "typing",
)
nitpick_ignore_regex = [
    # Names of the standard library, pytest and trio, qualified by their module.
    (r"py:.*", rf"({'|'.join(re.escape(m) for m in EXTERNAL_MODULES)})(\..+)?"),
    # Builtins, which type hints name without a module.
    (
        r"py:.*",
        r"(bytes|bytearray|memoryview|str|int|float|bool|object|type|None|Ellipsis|"
        r"BaseException|Exception|ValueError|AssertionError|TimeoutError|EOFError|"
        r"RuntimeError|ConnectionError|OSError|KeyError|TypeError)",
    ),
    # The type variables of serve(): the peer or proxy served (FakePeer or Proxy).
    ("py:class", r"fakepeer\._host\._Self|fakepeer\._serving\._H_co"),
    # The type variables of Error.copy() (the error's own class) and of the fixtures' serve()
    # (FakePeer or Proxy), and their common base, the private Host (documented as "a peer
    # or a proxy").
    ("py:class", r"fakepeer\._errors\._E|fakepeer\.fixtures\._H|fakepeer\._host\.Host"),
]


# Private types whose only public instance is documented: a hint names the type, the site
# links to the instance.
PRIVATE_TYPES = {
    "fakepeer._matching._NeedMore": "fakepeer.NEED_MORE",
    "fakepeer._byte_matchers._Any": "fakepeer.ANY",
}


def _public_name(target: str) -> str | None:
    """``fakepeer._peer.FakePeer.serve`` -> ``fakepeer.FakePeer.serve``, if that is public.

    Type hints name classes by the private module that defines them; the site documents
    them where users import them from.
    """
    if target in PRIVATE_TYPES:
        return PRIVATE_TYPES[target]
    kit = re.fullmatch(r"fakepeer\.protocols\._([a-z0-9]+)_\w+\.(\w+)(\..*)?", target)
    if kit is not None:  # a kit's private module, fakepeer.protocols._mqtt_packets: its kit
        return f"fakepeer.protocols.{kit[1]}.{kit[2]}{kit[3] or ''}"
    match = re.fullmatch(r"fakepeer\._\w+\.(\w+)(\..*)?", target)
    if match is None:
        return None
    name, rest = match[1], match[2] or ""
    for module in ("fakepeer", "fakepeer.faults"):
        if name in getattr(sys.modules[module], "__all__", ()):
            return f"{module}.{name}{rest}"
    return None


# Markdown files outside docs/ that a page of the site includes, by their path in the
# repository: a link to one of them leads to that page on the site.
INCLUDED = {
    "README.md": "index.md",
    "CHANGELOG.md": "changelog.md",
    "benchmarks/README.md": "benchmarks.md",
}
LINK = re.compile(r"(\]\()([^)\s#]+)((?:#[^)\s]*)?\))")
FENCE = re.compile(r"^\s*(```|~~~)")


def _site_links(text: str, source: Path) -> str:
    """Rewrite the relative links of ``source`` (a Markdown file of the repository) for a
    page in docs/: the same link works on GitHub, in a clone and on the site.

    A link to a file that a page includes leads to that page; a link into docs/ to that
    page; a link to any other file of the repository (``tests/watchdog_seed.py``) to that
    file, which Sphinx copies into the site as a download. A target that does not exist is
    left alone, so the build still reports it.
    """

    def rewrite(match: re.Match[str]) -> str:
        target = match[2]
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, project: ...
            return match[0]
        path = (source.parent / target).resolve()
        if not path.exists() or not path.is_relative_to(ROOT):
            return match[0]
        in_repo = path.relative_to(ROOT).as_posix()
        if in_repo in INCLUDED:
            new = INCLUDED[in_repo]
        else:
            new = Path(os.path.relpath(path, ROOT / "docs")).as_posix()
        return match[1] + new + match[3]

    lines, fenced = [], False
    for line in text.splitlines(keepends=True):
        if FENCE.match(line):
            fenced = not fenced
        lines.append(line if fenced else LINK.sub(rewrite, line))
    return "".join(lines)


def _source_read(app: Any, docname: str, content: list[str]) -> None:
    path = Path(app.env.doc2path(docname))
    if path.suffix == ".md":
        content[0] = _site_links(content[0], path)


def _include_read(app: Any, relative_path: Path, parent_docname: str, content: list[str]) -> None:
    path = (Path(app.srcdir) / relative_path).resolve()
    if path.suffix == ".md":
        content[0] = _site_links(content[0], path)


def _resolve_private(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    public = _public_name(node["reftarget"])
    if public is None:
        return None
    domain = env.get_domain("py")
    reftype = "obj" if public in PRIVATE_TYPES.values() else node["reftype"]
    return domain.resolve_xref(env, node["refdoc"], app.builder, reftype, public, node, contnode)


def setup(app: Any) -> None:
    # The README's and the diagrams page's ```mermaid blocks render as diagrams on GitHub; the
    # site shows them as text next to the SVG the code made (Mermaid's renderer is JavaScript
    # fetched from a CDN, and the site is built and read offline).
    lexers["mermaid"] = TextLexer()
    app.connect("missing-reference", _resolve_private)
    app.connect("source-read", _source_read)
    app.connect("include-read", _include_read)
