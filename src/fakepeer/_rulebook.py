"""The rule book: the run state of a peer's scripts, kept apart from the rules themselves.

The rules a test wrote (:class:`~fakepeer._script.Rule`, in :class:`~fakepeer._script.Script`
objects) say what may happen; this says what did: how often each rule matched, which
expectation each script waits for next, and the peer's state (``goto(peer=...)``). The
:class:`~fakepeer._conversation.Conversation` owns one and asks it which rules may take the
next message of a connection (:meth:`RuleBook.applies`, :meth:`RuleBook.candidates`) and what
is still unmet. It does no I/O and reads no clock.
"""

from __future__ import annotations

from ._matchers import Matcher
from ._script import START, Rule, Script
from ._state import ConnectionRecord

__all__ = ["RuleBook"]


class RuleBook:
    """The scripts of one peer and their run state: counts, each script's next expectation,
    the peer's state. ``script`` is the peer's own; ``scripts`` those of single connections
    (by connection number), made on first use by :meth:`script_for`."""

    __slots__ = ("_next", "counts", "peer_state", "script", "scripts")

    def __init__(self) -> None:
        self.script = Script()
        self.scripts: dict[int, Script] = {}  # per-connection scripts, by connection number
        self.counts: dict[Rule, int] = {}  # how often each rule matched
        self._next: dict[Script, int] = {}  # the index of each script's next expectation
        self.peer_state = START

    def script_for(self, connection: int | None) -> Script:
        """The peer's script, or the own script of the ``connection``-th connection."""
        if connection is None:
            return self.script
        script = self.scripts.get(connection)
        if script is None:
            script = self.scripts[connection] = Script(connection)
        return script

    def add_rule(
        self, kind: str, matcher: Matcher | None, where: str, connection: int | None = None
    ) -> Rule:
        """Append a rule of ``kind`` to the peer's script, or to ``connection``'s."""
        return self.script_for(connection).add(kind, matcher, where)

    def count(self, rule: Rule) -> int:
        """How often ``rule`` matched so far."""
        return self.counts.get(rule, 0)

    def matched(self, rule: Rule) -> None:
        """``rule`` matched (or, for a ``connect`` rule, ran) once more."""
        self.counts[rule] = self.counts.get(rule, 0) + 1

    def exhausted(self, rule: Rule) -> bool:
        """True once ``rule`` matched as often as it may."""
        return rule.limit is not None and self.counts.get(rule, 0) >= rule.limit

    def head(self, script: Script | None = None) -> Rule | None:
        """The expectation ``script`` (default: the peer's) waits for now, or None."""
        script = self.script if script is None else script
        expectations = script.expectations
        start = index = self._next.get(script, 0)
        while index < len(expectations) and self.exhausted(expectations[index]):
            index += 1
        if index != start:
            self._next[script] = index
        return expectations[index] if index < len(expectations) else None

    def unmet(self) -> list[Rule]:
        """Expectations not (fully) met yet, in script order, the peer's first."""
        unmet: list[Rule] = []
        for script in (self.script, *(self.scripts[n] for n in sorted(self.scripts))):
            self.head(script)
            start = self._next.get(script, 0)
            unmet.extend(r for r in script.expectations[start:] if not self.exhausted(r))
        return unmet

    def applies(self, rule: Rule, record: ConnectionRecord) -> bool:
        """True if ``rule`` may match on ``record`` now: not exhausted, and in its states."""
        limit = rule.limit
        return (
            (limit is None or self.counts.get(rule, 0) < limit)
            and (rule.state is None or rule.state == record.state)
            and (rule.peer_state is None or rule.peer_state == self.peer_state)
        )

    def candidates(self, record: ConnectionRecord) -> list[Rule]:
        """The rules that may match the next message of ``record``, in order: its script's
        head, then its ``always`` rules, then its ``otherwise`` rules (with those its
        script inherits: see :class:`~fakepeer._script.Script`)."""
        script = record.script
        head = self.head(script)
        applies = self.applies
        rules = [head] if head is not None and applies(head, record) else []
        rules.extend(rule for rule in script.tried_permanent if applies(rule, record))
        rules.extend(rule for rule in script.tried_fallbacks if applies(rule, record))
        return rules
