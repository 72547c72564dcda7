"""Assertions on what the client sent: pure functions from the record to a diagnosis.

Each returns ``None`` when the assertion holds, else the diagnosis text; the peer raises it
as a :class:`~fakepeer.ConversationError` with the transcript.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ._matching import NEED_MORE, Matcher
from ._show import show

__all__ = ["received", "received_in_order", "unmatched"]

#: How many messages a diagnosis lists before it cuts.
LISTED: Final = 10


def _matches(matcher: Matcher, message: bytes) -> bool:
    outcome = matcher.match(message, stream=False)
    return outcome is not None and outcome is not NEED_MORE


def _listing(messages: Sequence[bytes]) -> str:
    if not messages:
        return "\n  received:  nothing"
    lines = [f"\n  received:  {len(messages)} message(s)"]
    lines.extend(f"    {number}. {show(m)}" for number, m in enumerate(messages[:LISTED], 1))
    if len(messages) > LISTED:
        lines.append(f"    ... and {len(messages) - LISTED} more")
    return "\n".join(lines)


def received(matcher: Matcher, messages: Sequence[bytes], times: int | None) -> str | None:
    """Did a message match ``matcher`` (exactly ``times`` times, if given)?"""
    count = sum(1 for message in messages if _matches(matcher, message))
    if (count >= 1) if times is None else (count == times):
        return None
    wanted = "at least once" if times is None else f"exactly {times} time(s)"
    return (
        f"expected the client to send {matcher.describe()} {wanted}, "
        f"but it did {count} time(s)" + _listing(messages)
    )


def received_in_order(matchers: Sequence[Matcher], messages: Sequence[bytes]) -> str | None:
    """Did messages matching ``matchers`` arrive in this order (others may come between)?"""
    position = 0
    found: list[str] = []
    for matcher in matchers:
        while position < len(messages) and not _matches(matcher, messages[position]):
            position += 1
        if position == len(messages):
            after = f" after {', then '.join(found)}" if found else ""
            return (
                "expected the client to send, in this order: "
                + ", ".join(m.describe() for m in matchers)
                + f"\n  missing:   {matcher.describe()}{after}"
                + _listing(messages)
            )
        found.append(f"{matcher.describe()} (message {position + 1})")
        position += 1
    return None


def unmatched(unanswered: Sequence[tuple[int, bytes]], unexpected: int) -> str | None:
    """Were all messages matched by a rule other than ``otherwise()``?"""
    if not unanswered and not unexpected:
        return None
    lines = [
        f"{len(unanswered) + unexpected} message(s) matched no rule"
        + (" (answered by otherwise())" if unanswered else "")
    ]
    lines.extend(f"  connection #{number}: {show(m)}" for number, m in unanswered[:LISTED])
    if unexpected:
        lines.append(f"  and {unexpected} unexpected message(s), see the transcript")
    return "\n".join(lines)
