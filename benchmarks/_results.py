"""What every case of the runner returns: measurements per contender, ratios, targets.

A case (``case_*.py``) measures each contender that applies, in the same run, interleaved, and
returns one or more :class:`Table`. The runner (``run.py``) prints them, writes them as
Markdown and JSON, and draws the chart. Nothing here measures anything.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Measurement:
    """One contender's samples in one table, in the table's unit.

    ``skipped`` (a reason) means the contender was not measured, on purpose: not installed,
    does not apply. ``error`` means it should have run and crashed; the runner then exits 1.
    Either way it stays in the table, so nothing is silently dropped.
    """

    contender: str
    values: list[float] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None
    #: Extra figures worth a column (``p99``...), in the table's unit.
    extra: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def measured(self) -> bool:
        return bool(self.values) and self.skipped is None and self.error is None

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"contender": self.contender}
        if self.measured:
            data |= {
                "n": len(self.values),
                "median": self.median,
                "min": self.low,
                "max": self.high,
                "values": self.values,
            }
        data |= {"extra": self.extra, "skipped": self.skipped, "error": self.error}
        if self.note:
            data["note"] = self.note
        return data


@dataclass
class Target:
    """A claim from the issue, checked against this run: ``value`` at most (or at least)
    ``limit``."""

    claim: str
    value: float | None
    limit: float
    at_most: bool = True

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "SKIP"
        ok = self.value <= self.limit if self.at_most else self.value >= self.limit
        return "PASS" if ok else "MISS"

    def to_json(self) -> dict[str, object]:
        return {
            "claim": self.claim,
            "value": self.value,
            "limit": self.limit,
            "at_most": self.at_most,
            "verdict": self.verdict,
        }


@dataclass
class Table:
    """One case (or one part of a case), one unit, every contender that applies.

    ``ratio`` of a contender is ``median(contender) / median(baseline)`` in ``unit``; whether
    lower is better says how to read it.
    """

    case: str
    title: str
    unit: str
    baseline: str | None
    measurements: list[Measurement]
    lower_is_better: bool = True
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The names of ``Measurement.extra`` keys to show as columns, in order.
    extra_columns: Sequence[str] = ()

    def get(self, contender: str) -> Measurement | None:
        for measurement in self.measurements:
            if measurement.contender == contender:
                return measurement
        return None

    def ratio(self, contender: str, baseline: str | None = None) -> float | None:
        """``median(contender) / median(baseline)``, or None if either was not measured."""
        base = self.get(baseline or self.baseline or "")
        this = self.get(contender)
        if base is None or this is None or not base.measured or not this.measured:
            return None
        if base.median == 0:
            return None
        return this.median / base.median

    @property
    def errors(self) -> list[str]:
        return [f"{self.title}: {m.contender}: {m.error}" for m in self.measurements if m.error]

    def to_json(self) -> dict[str, object]:
        return {
            "case": self.case,
            "title": self.title,
            "unit": self.unit,
            "baseline": self.baseline,
            "lower_is_better": self.lower_is_better,
            "measurements": [
                m.to_json() | {"ratio": self.ratio(m.contender)} for m in self.measurements
            ],
            "targets": [t.to_json() for t in self.targets],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Plan:
    """How hard to measure: ``quick`` is a smoke test (tiny sizes, few rounds), not a result."""

    quick: bool

    def pick(self, full: int, quick: int) -> int:
        return quick if self.quick else full
