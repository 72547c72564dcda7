"""What a failing test's report shows of its fake peers, for any test runner: the sequence
diagram of each peer as a self-contained HTML page, headed by the failure and the peer's
problem, and its conversation as a pcapng capture for Wireshark, written to a folder under
a name made from the test's id.

fakepeer's pytest plugin writes them with ``--fakepeer-diagrams=DIR`` and
``--fakepeer-pcapng=DIR``; its other report sections come from
:meth:`FakePeer.report() <fakepeer.FakePeer.report>`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, MutableSet
from typing import Final

from ._host import Host

__all__ = ["IN_LOOP_HINT", "diagram_name", "diagram_page", "write_diagram", "write_pcapng"]

#: The end of a :class:`~fakepeer.LoopBlocked` report of a test whose peer is served in the
#: test's own loop (``serve_in='loop'``).
IN_LOOP_HINT: Final = (
    "\n  fakepeer:    this test's fake_peer is served in the test's own event loop "
    "(serve_in='loop'), so it cannot answer while that loop is blocked: a blocking client "
    "needs the peer on the hub (@pytest.mark.fakepeer(serve_in='hub')) or an async client "
    "instead, and the script's reply callables and handlers must not block either"
)


def diagram_page(peer: Host, failure: str, message: str) -> str:
    """``peer``'s sequence diagram as an HTML page (:meth:`~fakepeer.FakePeer.to_html`),
    headed by ``failure`` (``"<test> failed (<phase>): "``) and ``message`` (the failure's
    own), then the peer's problem less its transcript (the diagram shows that), said once
    when the failure is that problem, or, while the peer serves, its outlook."""
    diagnosis = (failure + message).strip()
    problem = peer.problem()
    if problem is not None:
        text = str(problem)
        if problem.transcript:
            text = text[: -len(problem.transcript)]
        first = problem.diagnosis.split("\n", 1)[0]
        if first and first in message:  # the failure is this problem: say it once
            diagnosis = failure + message[: message.index(first)] + text.rstrip()
        else:
            diagnosis += f"\n\n{text.rstrip()}"
    else:
        outlook = peer.outlook()
        if outlook:
            diagnosis += f"\n\n{outlook}"
    return peer.to_html(diagnosis=diagnosis)


def diagram_name(
    test: str,
    when: str,
    peer: str,
    number: int,
    peers: int,
    *,
    used: MutableSet[str],
    suffix: str = ".html",
) -> str:
    """The file name of a diagram (or, with ``suffix=".pcapng"``, a capture) of the peer
    named ``peer``, the ``number``-th (from 0) of ``peers``, for phase ``when`` of ``test``
    (its id): the id made safe (shortened) and a hash of the whole of it, the phase unless
    ``call``, the peer's number and name if the test had several, then ``suffix``; not in
    ``used`` (lowercased names less the suffix, some file systems ignore case), to which it
    is added."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", test).strip("_.")[:100] or "test"
    digest = hashlib.sha256(test.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    name += f"-{digest}"
    if when != "call":
        name += f"-{when}"
    if peers > 1:
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", peer).strip("_.")[:40] or "peer"
        name += f"-peer{number + 1}-{label}"
    unique, again = name, 1
    while unique.lower() in used:  # the same test reported twice (a rerun plugin)
        again += 1
        unique = f"{name}-{again}"
    used.add(unique.lower())
    return f"{unique}{suffix}"


def write_diagram(folder: str, name: str, peer: Host, failure: str, message: str) -> str:
    """Write :func:`diagram_page` into ``folder`` (made if need be) as ``name``: the path
    written, relative to the current directory if under it, or why it could not be (a
    diagram that cannot be written must not hide the failure: this raises nothing)."""
    return _write(folder, name, lambda: diagram_page(peer, failure, message).encode())


def write_pcapng(folder: str, name: str, peer: Host) -> str:
    """Write ``peer``'s conversation as a pcapng capture (:meth:`~fakepeer.FakePeer.to_pcapng`)
    into ``folder`` (made if need be) as ``name``: the path written, relative to the current
    directory if under it, or why it could not be (this raises nothing, as
    :func:`write_diagram`)."""
    return _write(folder, name, peer.to_pcapng)


def _write(folder: str, name: str, content: Callable[[], bytes]) -> str:
    path = os.path.join(folder, name)
    try:
        data = content()
        os.makedirs(folder, exist_ok=True)
        with open(path, "wb") as file:
            file.write(data)
    except Exception as exc:
        return f"not written to {path}: {type(exc).__name__}: {exc}"
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
