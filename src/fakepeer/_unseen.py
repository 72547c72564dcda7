"""Exceptions nobody saw: what asyncio only logs ("Task exception was never retrieved", a
loop callback that raised), collected during a phase of a test so that the phase fails
with :class:`~fakepeer.TaskDied`."""

from __future__ import annotations

import logging
import traceback

from ._errors import TaskDied
from ._watchdog import Interrupt

__all__ = ["UnseenErrors"]


class UnseenErrors(logging.Handler):
    """Collects what asyncio logs about exceptions nobody retrieved, during one phase."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, Interrupt):
            return  # the watchdog's own interruption: already reported as LoopBlocked
        text = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        self.found.append(text)

    def __enter__(self) -> UnseenErrors:
        logging.getLogger("asyncio").addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger("asyncio").removeHandler(self)

    def verdict(self, where: str) -> TaskDied | None:
        if not self.found:
            return None
        more = f"\n\n(and {len(self.found) - 1} more)" if len(self.found) > 1 else ""
        return TaskDied(
            f"an exception in the event loop went unseen {where}: asyncio only logged it\n"
            f"{self.found[0]}{more}"
        )
