"""What the benchmark scripts share: samples, the order of rounds, a loop on a thread."""

from __future__ import annotations

import asyncio
import gc
import itertools
import statistics
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
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


def interleaved(
    runner: asyncio.Runner,
    contenders: Sequence[T],
    name: Callable[[T], str],
    take: Callable[[T], object],
    *,
    rounds: int,
    warmup: int,
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Take one sample of every contender per round, cycling through every order, after
    ``warmup`` rounds whose samples are dropped.

    ``take(contender)`` returns a float, a list of floats (several samples at once), or a
    coroutine of either, which runs on ``runner`` (the test's loop, for in-loop contenders).
    Returns the samples by name, and the error of each contender that raised (it is not
    sampled again). ``gc.collect()`` runs before every sample, outside its timed region.
    """
    values: dict[str, list[float]] = {name(c): [] for c in contenders}
    errors: dict[str, str] = {}
    for index, order in enumerate(orders(contenders, warmup + rounds)):
        for contender in order:
            key = name(contender)
            if key in errors:
                continue
            gc.collect()
            try:
                result = take(contender)
                if asyncio.iscoroutine(result):
                    result = runner.run(result)
            except Exception as error:
                errors[key] = f"{type(error).__name__}: {error}"
                continue
            if index < warmup:
                continue
            if isinstance(result, list):
                values[key].extend(result)
            else:
                assert isinstance(result, float), result
                values[key].append(result)
    return values, errors


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
