"""What the benchmark scripts share: samples, the order of rounds, a loop on a thread."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import threading
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Samples:
    """Timings of one variant, in seconds (per trip, per write, per test...)."""

    name: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def summary(self) -> dict[str, float | int | list[float]]:
        values = sorted(self.values)
        deciles = statistics.quantiles(values, n=10) if len(values) >= 2 else [values[0]] * 9
        return {
            "n": len(values),
            "median_us": self.median * 1e6,
            "p10_us": deciles[0] * 1e6,
            "p90_us": deciles[-1] * 1e6,
            "min_us": values[0] * 1e6,
            "values_us": [value * 1e6 for value in self.values],
        }


def orders(variants: Sequence[T], count: int) -> Iterator[Sequence[T]]:
    """``count`` rounds of every variant, cycling through every order of them (for two:
    AB, BA, AB, ...), so a slow spell of the machine hits each variant alike."""
    cycle = itertools.cycle(list(itertools.permutations(variants)))
    for _ in range(count):
        yield next(cycle)


class LoopThread:
    """A bare event loop on a background thread: what fakepeer's hub is, without fakepeer."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(self.timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(self.timeout)
        self.loop.close()
