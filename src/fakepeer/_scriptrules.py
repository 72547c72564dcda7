"""The rule tables of a script file: ``[[greeting]]``, ``[[expect]]``, ``[[always]]``,
``[[otherwise]]`` (also nested in ``[[connection]]``), each one rule of the public API.

A table's keys are the rule's methods: ``match`` (the matcher ``expect()``/``always()``
take), ``when``/``when_peer``, ``times`` and ``fault`` (the rule's own settings), then its
steps, either as keys, run in a fixed order (``echo``, ``reply``, ``cycle``, ``goto``,
``goto_peer``, ``after``, ``send``, ``start_tls``, ``half_close``, then one of ``close``,
``reset``, ``hang``), or as ``steps``, an array of one-key tables run in the order written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ._peer import ConnectionScript, FakePeer
from ._script import Rule
from ._scriptplace import Place, kind_of
from ._scriptvalues import to_bytes, to_fault, to_matcher

__all__ = ["RULE_KEYS", "RULE_TABLES", "STEP_KEYS", "add_rule"]

#: The rule tables, and the method of the peer each calls.
RULE_TABLES: Final = {
    "greeting": "on_connect",
    "expect": "expect",
    "always": "always",
    "otherwise": "otherwise",
}
#: The steps, in the order they run when given as keys of a rule table.
STEP_KEYS: Final = (
    "echo",
    "reply",
    "cycle",
    "goto",
    "goto_peer",
    "after",
    "send",
    "start_tls",
    "half_close",
    "close",
    "reset",
    "hang",
)
#: Every key of a rule table.
RULE_KEYS: Final = ("match", "when", "when_peer", "times", "fault", *STEP_KEYS, "steps")
_FLAGS: Final = ("echo", "start_tls", "half_close", "close", "reset", "hang")
_NO_MATCH: Final = ("greeting", "otherwise")


def _step(rule: Rule, key: str, value: object, place: Place) -> None:
    """Add the step ``key`` (a key of :data:`STEP_KEYS`) with ``value`` to ``rule``."""
    if key in _FLAGS:
        if not place.boolean(value):
            return  # false: the step is not taken
        with place.building():
            getattr(rule, key)()
        return
    if key == "reply":
        items = value if isinstance(value, list) else [value]
        if not items:
            raise place.error("takes bytes, or an array of them (each sent, in order)")
        replies = [
            to_bytes(item, place.at(index) if value is items else place)
            for index, item in enumerate(items)
        ]
        for data in replies:
            with place.building():
                rule.reply(data)
        return
    if key == "cycle":
        if not isinstance(value, list) or not value:
            raise place.error(
                f"takes an array of answers (one per match, in turn), got {kind_of(value)}"
            )
        answers = [to_bytes(item, place.at(index)) for index, item in enumerate(value)]
        with place.building():
            rule.reply(answers)
        return
    if key == "send":
        data = to_bytes(value, place)
        with place.building():
            rule.send(data)
        return
    if key == "after":
        seconds = place.number(value)
        with place.building():
            rule.after(seconds)
        return
    state = place.string(value, "a state name")
    with place.building():
        if key == "goto":
            rule.goto(state)
        else:
            rule.goto(peer=state)


def _steps(rule: Rule, value: object, place: Place) -> None:
    if not isinstance(value, list):
        raise place.error(
            f'takes an array of one-key tables, [{{ reply = "A" }}, {{ after = 0.2 }}], got '
            f"{kind_of(value)}"
        )
    for index, item in enumerate(value):
        where = place.at(index)
        table = where.table(item, 'a one-key table such as { reply = "A" }')
        where.keys(table, STEP_KEYS, "step")
        if len(table) != 1:
            raise where.error(
                f"takes one step, got {len(table)} ({', '.join(table) or 'none'}): write each "
                "step as its own table"
            )
        ((key, step),) = table.items()
        _step(rule, key, step, where.at(key))


def _settings(rule: Rule, table: dict[str, object], place: Place) -> None:
    when, when_peer = table.get("when"), table.get("when_peer")
    if when is not None or when_peer is not None:
        state = None if when is None else place.at("when").string(when, "a state name")
        peer = (
            None if when_peer is None else place.at("when_peer").string(when_peer, "a state name")
        )
        with place.at("when" if when is not None else "when_peer").building():
            rule.when(state, peer=peer)
    if "times" in table:
        where = place.at("times")
        times = where.integer(table["times"], "a whole number >= 1")
        with where.building():
            rule.times(times)
    if "fault" in table:
        where = place.at("fault")
        given = table["fault"]
        items = given if isinstance(given, list) else [given]
        for index, item in enumerate(items):
            at = where.at(index) if isinstance(given, list) else where
            fault = to_fault(item, at)
            with at.building():
                rule.fault(fault)


def add_rule(
    script: FakePeer | ConnectionScript,
    kind: str,
    value: object,
    place: Place,
    name: str,
) -> Rule:
    """Add the rule that the table ``value`` of ``[[kind]]`` describes to ``script``;
    ``name`` (the file's base name) locates it in diagnoses."""
    table = place.table(value)
    known = [key for key in RULE_KEYS if not (key == "match" and kind in _NO_MATCH)]
    place.keys(table, known, f"key of {'a' if kind == 'greeting' else 'an'} {kind} rule")
    method: Callable[..., Rule] = getattr(script, RULE_TABLES[kind])
    if kind in _NO_MATCH:
        with place.building():
            rule = method()
    else:
        given = place.required(table, "match", f"an {kind} rule says what it matches")
        matcher = to_matcher(given, place.at("match"))
        with place.building():
            rule = method(matcher)
    rule.where = f"{name}:{place.line}"
    _settings(rule, table, place)
    steps = [key for key in STEP_KEYS if key in table]
    if "steps" in table:
        if steps:
            raise place.at(steps[0]).error(
                f"a rule takes its steps either as keys or as 'steps', not both: move "
                f"{steps[0]!r} into 'steps' where it should run"
            )
        _steps(rule, table["steps"], place.at("steps"))
    for key in steps:
        _step(rule, key, table[key], place.at(key))
    return rule
