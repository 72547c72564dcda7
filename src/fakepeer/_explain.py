"""Diagnosis: the words of a failure, apart from the bookkeeping.

Why a message did not match a rule, which rules were close, what a connection's leftover
bytes wait for, the verdict on expectations not met, and what the peer would report if it
stopped now. Pure functions of the facts the conversation hands them (rules, counts,
states, bytes): no state of their own, tested with tables (``tests/test_explain.py``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Final

from . import _matchers
from ._errors import ConversationError, UnexpectedData, UnmetExpectations
from ._framing import Delimited, Fixed, Framing, LengthField, LengthPrefixed, Lines, StxEtx
from ._matchers import NEED_MORE, Matched, Matcher, explain
from ._script import Rule, Script
from ._show import show_value
from ._state import ConnectionRecord
from ._transcript import INLINE_LIMIT, show

__all__ = [
    "SIMILAR",
    "SIMILARITY",
    "closeness",
    "framing_hint",
    "line_hint",
    "looks_like_tls",
    "no_line_end_hint",
    "outlook",
    "still_sending",
    "tls_hint",
    "unexpected",
    "unmet_verdict",
    "waits",
    "waits_for",
    "why_not",
]

#: How many similar rules an unexpected-data failure lists.
SIMILAR: Final = 3
#: How close (0 to 1, see :func:`closeness`) a rule must be to be listed as similar.
SIMILARITY: Final = 0.6

#: How many times a rule matched so far (the conversation keeps the counts).
Counts = Callable[[Rule], int]

#: Where a value shown under a label (``  received:  ``) starts: a hexdump's indent.
VALUE_INDENT: Final = " " * 13

#: The line ends :func:`line_hint` looks for, the longer first.
_LINE_ENDS: Final = (b"\r\n", b"\n")

#: What the ``hint:`` of an empty script says.
EMPTY_SCRIPT_HINT: Final = (
    "\n  hint:      write the script before the client connects and sends: before "
    "serve(), or before starting the client (a rule added while the client talks races "
    "with its bytes)"
)


def exhausted(rule: Rule, count: int) -> bool:
    """True once ``rule`` matched ``count`` times, as often as it may."""
    return rule.limit is not None and count >= rule.limit


def why_not(
    rule: Rule,
    record: ConnectionRecord,
    data: bytes,
    *,
    stream: bool,
    count: int,
    peer_state: str,
    head: Rule | None,
) -> str:
    """Why ``rule`` (matched ``count`` times so far) did not take ``data`` on ``record``,
    in words: what its matcher says, or which condition kept a matching rule out."""
    assert rule.matcher is not None
    try:
        outcome = rule.matcher.match(data, stream=stream)
    except Exception:  # called again by the diagnosis: it must not hide the real failure
        outcome = None  # explain() says what it raised
    if outcome is None or outcome is NEED_MORE:
        return explain(rule.matcher, data, stream=stream)
    if exhausted(rule, count):
        return f"matches, but it was already met {count} time(s)"
    if rule.state is not None and rule.state != record.state:
        return (
            f"matches, but needs connection state {rule.state!r} "
            f"(connection #{record.id} is in {record.state!r})"
        )
    if rule.peer_state is not None and rule.peer_state != peer_state:
        return f"matches, but needs peer state {rule.peer_state!r} (the peer is in {peer_state!r})"
    if rule.kind == "expect" and head is not None and head is not rule:
        return f"matches, but the script waits for {head.kind} #{head.number} first"
    # A matching, applicable rule would have matched: the matcher answered otherwise when
    # the peer asked (a predicate with side effects, or one that reads a clock).
    return (
        "did not match when the peer judged it, but matches when the diagnosis asks again: "
        "a matcher must give the same answer for the same bytes (a pure predicate)"
    )


def looks_like_tls(data: bytes) -> bool:
    """True if ``data`` starts like a TLS handshake record (content type 22, version 3.x:
    RFC 8446 section 5.1), as a ClientHello does."""
    return len(data) >= 3 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04


def tls_hint(data: bytes) -> str:
    """A hint line for a failure on ``data`` when it starts like TLS, else ``""``."""
    if not looks_like_tls(data):
        return ""
    return (
        "\n  hint:      these bytes look like a TLS ClientHello: the client speaks TLS here; "
        "serve TLS with FakePeer(tls=True), or upgrade the connection with a .start_tls() step"
    )


def _text(data: bytes) -> bool:
    """True when ``data`` is UTF-8 text with no control character but tab, CR and LF."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return False
    return all((char >= " " and char != "\x7f") or char in "\t\r\n" for char in text)


def line_hint(data: bytes, rules: Sequence[Rule], *, stream: bool) -> str:
    """A hint line for a failure of a :class:`~fakepeer.Raw` peer (``stream``) on ``data``
    that looks like lines, else ``""``: text that starts with a line end (the end of a line
    whose start a rule took), or in which a literal of ``rules`` is followed by one. The
    hint names :class:`~fakepeer.Lines` with that line end. Binary data never gets it."""
    if not stream or not data or not _text(data):
        return ""
    end = next((end for end in _LINE_ENDS if data.startswith(end)), None)
    if end is None:
        # The literals of exact() and prefix() (a wrapper that forwards ``expected`` too)
        literals = [getattr(rule.matcher, "expected", None) for rule in rules]
        end = next(
            (
                end
                for end in _LINE_ENDS
                for literal in literals
                if isinstance(literal, bytes) and literal and literal + end in data
            ),
            None,
        )
    if end is None:
        return ""
    framing = 'Lines(b"\\r\\n")' if end == b"\r\n" else "Lines()"
    return (
        f"\n  hint:      the client seems to send lines ending in {show(end)}, which Raw() "
        "(the default framing) leaves to the next rule to match: use "
        f"FakePeer(framing={framing}), which cuts the bytes into lines (a rule then matches "
        f"a line without its end) and ends each reply with {show(end)}"
    )


def framing_hint(data: bytes, rules: Sequence[Rule], *, stream: bool) -> str:
    """A hint line for a failure of a streaming (Raw) peer on ``data`` that a rule's matcher
    judging whole messages only (a protocol kit's, whose class keeps
    :meth:`~fakepeer.Matcher._explain`) would take as a whole message, else ``""``: the test
    forgot its kit's framing. Never raises: a matcher that raises counts as no match."""
    if not stream:
        return ""
    for rule in rules:
        matcher = rule.matcher
        if matcher is None or type(matcher)._explain is not Matcher._explain:
            continue
        try:
            whole = isinstance(matcher.match(data, stream=False), Matched)
            if not whole or isinstance(matcher.match(data, stream=True), Matched):
                continue
        except Exception:  # the diagnosis must not hide the real failure
            continue
        return (
            f"\n  hint:      {rule.describe()} would take these bytes as a whole message, but "
            "the framing is Raw(), which gives a matcher the front of a byte stream: a "
            "protocol kit's matcher needs its kit's framing, "
            "FakePeer(framing=<kit>.framing()) (e.g. resp.framing(), mqtt.framing())"
        )
    return ""


#: The events of a connection that carry the client's bytes (Raw framing records some as
#: they arrive, some as they match; ``unexpected`` ones fail the connection).
_FROM_CLIENT: Final = frozenset({"received", "matched", "unexpected"})


def no_line_end_hint(records: Sequence[ConnectionRecord], *, stream: bool) -> str:
    """A hint line for expectations a :class:`~fakepeer.Raw` peer (``stream``) waited for
    in vain, when the last bytes it sent on a connection are text with no line end after
    them (``.send("220 ready")``) and the client sent nothing since: a client of a line
    protocol (SMTP, FTP, POP3...) waits for the end of that line. Else ``""``; binary bytes
    never get it."""
    if not stream:
        return ""
    for record in records:
        events = [
            event
            for event in record.transcript.for_connection(record.id)
            if event.kind == "sent" or event.kind in _FROM_CLIENT
        ]
        if not events or events[-1].kind != "sent":
            continue
        data = events[-1].data
        if data and _text(data) and not data.endswith(b"\n"):
            return (
                f"\n  hint:      the peer's last bytes on connection #{record.id}, {show(data)}, "
                "end in no line end, and the client sent nothing after them: a client of a "
                "line protocol (SMTP, FTP, POP3...) waits for the end of the line; use "
                'FakePeer(framing=Lines(b"\\r\\n")), which ends each reply and .send() with '
                "'\\r\\n' (or end the text with \"\\r\\n\" yourself)"
            )
    return ""


def closeness(rule: Rule, data: bytes, stream: bool) -> float:
    """How close ``data`` is to what ``rule`` wants, in [0, 1]; 1 when it matches."""
    matcher = rule.matcher
    assert matcher is not None
    if rule.kind == "otherwise":
        return 0.0  # a fallback matches anything: naming it as "similar" says nothing
    measure = getattr(_matchers, "closeness", None)
    if measure is not None:  # in the framing's mode; 1.0 when it matches, 0 when it raises
        return float(measure(matcher, data, stream=stream))
    try:
        outcome = matcher.match(data, stream=stream)
    except Exception:  # a predicate that raises: the diagnosis must not hide the real failure
        return 0.0
    if outcome is not None and outcome is not NEED_MORE:
        return 1.0
    target = matcher.describe().encode(errors="replace")
    return difflib.SequenceMatcher(None, data, target).ratio()


def unexpected(
    record: ConnectionRecord,
    data: bytes,
    *,
    stream: bool,
    counts: Counts,
    peer_state: str,
    head: Rule | None,
    met: int,
    peer: Script | None = None,
    own: tuple[int, ...] = (),
) -> UnexpectedData:
    """The failure for ``data`` that no rule of ``record``'s script took: what came, what
    the script waited for and why that did not match, and up to :data:`SIMILAR` close rules
    (``met``: how many expectations of the script were met); for a connection's own
    script, which scripts were tried (``peer``: the peer's script); for a connection that
    follows the peer's script, which connections have their own (``own``: their numbers)."""
    script = record.script
    own = () if script.connection is not None else own  # a connection's own: not these

    def because(rule: Rule) -> str:
        return why_not(
            rule, record, data, stream=stream, count=counts(rule), peer_state=peer_state, head=head
        )

    lines = [f"connection #{record.id} received data that no rule expected"]
    lines.append(f"  received:  {show_value(data, VALUE_INDENT)}")
    hint = ""
    if head is not None:
        lines.append(f"  expected:  {head.describe()}")
        lines.append(f"             the data {because(head)}")
    else:
        lines.append(f"  expected:  {nothing_more(script, met, record.id, own)}")
        if not script.rules():
            hint = no_script_hint(record.id) if own and not met else EMPTY_SCRIPT_HINT
    similar = []
    for rule in script.rules():
        if rule is head:
            continue
        score = closeness(rule, data, stream)
        if score >= 1.0 or (score >= SIMILARITY and not exhausted(rule, counts(rule))):
            similar.append((score, rule))

    def takes(rule: Rule) -> bool:  # the rule would have taken the data, as things stand
        return (
            closeness(rule, data, stream) >= 1.0
            and rule.state in (None, record.state)
            and rule.peer_state in (None, peer_state)
            and not exhausted(rule, counts(rule))
        )

    lines.extend(_scripts(script, peer, takes))
    if own and script.rules():
        have = "has its" if len(own) == 1 else "have their"
        lines.append(
            f"  scripts:   connection #{record.id} follows the peer's script; "
            f"{_connections(own)} {have} own"
        )
    if similar:
        similar.sort(key=lambda pair: -pair[0])
        lines.append("  similar rules:")
        lines.extend(f"    {rule.describe()}: {because(rule)}" for _, rule in similar[:SIMILAR])
        if len(similar) > SIMILAR:
            lines.append(f"    ... and {len(similar) - SIMILAR} more")
    hints = (
        tls_hint(data)
        or framing_hint(data, script.rules(), stream=stream)
        or line_hint(data, script.rules(), stream=stream)
    )
    return UnexpectedData(
        "\n".join(lines) + hint + hints,
        connection=record.id,
        received=data,
        expected=head.describe() if head else None,
    )


def _connections(numbers: tuple[int, ...]) -> str:
    """``connection #2``, ``connections #2, #3``."""
    listed = ", ".join(f"#{number}" for number in numbers)
    return f"connection{'s' if len(numbers) > 1 else ''} {listed}"


def no_script_hint(connection: int) -> str:
    """The ``hint:`` for data on ``connection``, which has no script while others do."""
    return (
        "\n  hint:      every connection counts, a client's port probe or retry too: script "
        f"connection #{connection} as well, or the rules every connection follows "
        "(peer.expect(...), a file's top-level rules)"
    )


def nothing_more(script: Script, met: int, connection: int = 0, own: tuple[int, ...] = ()) -> str:
    """What ``script`` expected when no expectation was left: ``met`` of them were met;
    ``own``: the connections with a script of their own, when ``connection`` (its number)
    follows the peer's script."""
    if met == 1:
        return "nothing more: the script's one expectation was met"
    if met:
        return f"nothing more: all {met} expectations were met"
    if script.rules():
        return "nothing: the script has no expectations, and none of its other rules took the data"
    if script.connect_rules:
        return "nothing: the script had no rule for messages when these bytes arrived"
    if own:
        calls = ", ".join(f"on_connection({number})" for number in own)
        tables = ", ".join(f"[[connection]] number = {number}" for number in own)
        return (
            f"nothing: connection #{connection} has no script: the script has rules only for "
            f"{_connections(own)} ({calls}, a file's {tables})"
        )
    return "nothing: the script was empty when these bytes arrived"


def _scripts(script: Script, peer: Script | None, takes: Callable[[Rule], bool]) -> list[str]:
    """For a connection's own script: the scripts its message was tried against, and a hint
    when a rule of the peer's script, which it replaces, would have taken it (``takes``)."""
    number = script.connection
    if number is None or peer is None:
        return []
    if script.parent is not None:
        lines = [
            f"  scripts:   connection #{number}'s own, then the peer's always and otherwise "
            f"rules (on_connection({number}, inherit=True))"
        ]
        taker = next((r for r in peer.expectations if takes(r)), None)
        if taker is not None:
            lines.append(
                f"  hint:      the peer's {taker.describe()} would take it, but expect rules "
                f"are not inherited (they are one sequence over the connections that follow "
                f"the peer's script): write it on connection #{number}'s script too"
            )
        return lines
    lines = [
        f"  scripts:   connection #{number}'s own only (on_connection({number}) replaces the "
        "peer's script)"
    ]
    taker = next((r for r in peer.permanent if takes(r)), None)
    if taker is None and peer.fallbacks:
        taker = peer.fallbacks[0]
    if taker is not None:
        lines.append(
            f"  hint:      the peer's {taker.describe()} would take it: "
            f"on_connection({number}, inherit=True) adds the peer's always and otherwise rules"
        )
    return lines


def unmet_verdict(
    unmet: Sequence[Rule],
    counts: Counts,
    *,
    connections: int,
    received: int,
    datagrams: bool = False,
    file: bool = False,
    hint: str = "",
) -> UnmetExpectations:
    """The failure for expectations not met when the peer stopped, after ``connections``
    connections (client addresses, for ``datagrams``) that sent ``received`` messages;
    ``file``: the peer was read from a script file (the hints say its words, not Python's);
    ``hint``: lines that end it (:func:`no_line_end_hint`)."""
    lines = []
    for rule in unmet:
        count = counts(rule)
        if count:
            lines.append(f"{rule.describe()}: met {count} of {rule.limit} times")
        elif rule.connection is not None and rule.connection > connections:
            lines.append(f"{rule.describe()}: never met (that connection never came)")
        else:
            lines.append(f"{rule.describe()}: never met")
    count = len(unmet)
    noun = "expectation was" if count == 1 else "expectations were"
    if connections:
        waiting = f"{connections} connection(s), {received} message(s) received"
    elif datagrams:
        needs = 'no [peer] transport = "udp"' if file else "FakePeer() (transport='tcp')"
        waiting = f"no datagram came; a TCP client needs {needs}"
    else:  # a UDP client's datagrams go to a port nobody listens on with UDP
        needs = '[peer] transport = "udp"' if file else "FakePeer(transport='udp')"
        waiting = f"no client ever connected; a UDP client needs {needs}"
    diagnosis = f"{count} {noun} not met when the peer stopped ({waiting}):\n" + "\n".join(
        f"  {line}" for line in lines
    )
    return UnmetExpectations(diagnosis + hint, unmet=lines)


def waits_for(framing: Framing, buffer: bytes | bytearray) -> str:
    """What ``framing`` needs before the bytes ``buffer`` holds (no whole message) make one,
    in words: for a built-in framing, what is missing; for another, that it cut nothing."""
    kind = type(framing)
    count = len(buffer)
    if kind is Lines or kind is Delimited:
        return f"{framing!r} waits for {framing.delimiter!r}"  # type: ignore[attr-defined]
    if kind is LengthPrefixed:
        size: int = framing.size  # type: ignore[attr-defined]
        if count < size:
            return (
                f"{framing!r} waits for the rest of its {size}-byte length prefix "
                f"({count} of {size} bytes here)"
            )
        declared = int.from_bytes(buffer[:size], framing.byteorder)  # type: ignore[attr-defined]
        framed = declared + (0 if framing.includes_prefix else size)  # type: ignore[attr-defined]
        return (
            f"the length prefix {show(bytes(buffer[:size]))} of {framing!r} declares "
            f"{declared} bytes ({framed} with the prefix): {count} here, {framed - count} "
            "more to come"
        )
    if kind is Fixed:
        n: int = framing.n  # type: ignore[attr-defined]
        return f"{framing!r} waits for {n - count} more of its {n} bytes"
    if kind is StxEtx:
        return f"{framing!r} waits for ETX (0x03) to end the frame"
    if kind is LengthField:
        words: str = framing._waits_for(buffer)  # type: ignore[attr-defined]
        return words
    return f"{framing!r} cut no whole message from them"


def waits(record: ConnectionRecord, framing: Framing, *, head: Rule | None) -> str:
    """Why the bytes buffered on ``record`` are no message yet (``head``: the expectation
    its script waits for)."""
    if record.handled:
        return "not read by the connection's handler yet"
    if not record.answering:
        return f"not answered: connection {record.why_not_answering()}"
    if framing.streaming:
        waiting = f": {head.describe()} needs more bytes" if head is not None else ""
        return f"no rule matched them yet{waiting}"
    return f"no whole message yet: {waits_for(framing, record.buffer)}"


def outlook(
    records: Sequence[ConnectionRecord],
    framing: Framing,
    *,
    head: Callable[[ConnectionRecord], Rule | None],
    unmet: Sequence[Rule],
    counts: Counts,
    problem: bool,
) -> str:
    """What the peer would report if it stopped now, while it still serves: each
    connection whose bytes are no whole message yet (an :class:`~fakepeer.IncompleteMessage`
    at the stop) and the expectations in ``unmet`` (empty when the report shows a problem,
    ``problem``, or lists them already). Empty when there is none of either."""
    lines = []
    for record in records:
        buffer = record.buffer
        if not buffer or record.ended or not record.answering or record.handled:
            continue  # (a handler may still read them)
        count = len(buffer)
        noun = "byte" if count == 1 else "bytes"
        waiting = head(record)
        lines.append(
            f"  connection #{record.id} holds {count:,} {noun}, "
            f"{waits(record, framing, head=waiting)}"
        )
        shown = show(bytes(buffer[:INLINE_LIMIT]))
        if count > INLINE_LIMIT:
            shown += f"... ({count:,} bytes in all)"
        lines.append(f"    pending:   {shown}")
        if waiting is not None and not framing.streaming:
            lines.append(f"    expected:  {waiting.describe()}")
    incomplete = bool(lines)
    if unmet:
        count = len(unmet)
        noun = "expectation" if count == 1 else "expectations"
        lines.append(f"  {count} {noun} not met yet:")
        for rule in unmet:
            met = counts(rule)
            lines.append(
                f"    {rule.describe()}" + (f" (met {met} of {rule.limit} times)" if met else "")
            )
    if not lines:
        return ""
    if problem:
        verdict = "also report"
    else:
        verdict = "report " + ("IncompleteMessage" if incomplete else "UnmetExpectations")
    return f"still serving; stopped now, the peer would {verdict}:\n" + "\n".join(lines)


def still_sending(connection: int, timeout: float) -> ConversationError:
    """The problem of a client still sending when the stop's reading ran out of time."""
    return ConversationError(
        f"connection #{connection}: the client was still sending when the peer stopped: the "
        f"stop read what came for {timeout:g} s (the peer's timeout=) and left the rest "
        "unread; stop the client's sending before the peer stops, or give the stop more time "
        "with timeout=...",
        connection=connection,
    )
