"""The loop watchdog's signal helpers: naming, parsing and choosing the signal that
interrupts the test, finding handlers installed outside Python, and passing on signals the
watchdog did not send.

Apart from :mod:`._watchdog` because none of it needs a watchdog: the settings
(:mod:`fakepeer.watchdog`) parse and choose the signal before one is made, and these
functions only read or restore the process's signal dispositions.
"""

from __future__ import annotations

import signal
import types
from typing import Any, Final

__all__ = [
    "DEFAULT_SIGNAL",
    "default_signal",
    "free_signal",
    "parse_signal",
    "pass_on",
    "signal_name",
    "taken_outside_python",
]

#: The signal that interrupts the main thread, unless configured otherwise.
DEFAULT_SIGNAL: Final = "SIGUSR2"


def parse_signal(value: str) -> signal.Signals:
    """A signal from its name (``"SIGUSR1"``, ``"USR1"``) or number; ``ValueError`` names
    the choices when there is no such signal, or it cannot be caught."""
    text = value.strip().upper()
    try:
        number = int(text)
    except ValueError:
        name = text if text.startswith("SIG") else f"SIG{text}"
        chosen = getattr(signal.Signals, name, None)
        if chosen is None:
            raise ValueError(f"no signal {value!r} (e.g. SIGUSR1, SIGUSR2)") from None
    else:
        try:
            chosen = signal.Signals(number)
        except ValueError:
            raise ValueError(f"no signal number {number}") from None
    if chosen in (getattr(signal, "SIGKILL", None), getattr(signal, "SIGSTOP", None)):
        raise ValueError(f"{chosen.name} cannot be caught; use SIGUSR1 or SIGUSR2")
    return chosen


def _c_handler(signum: int) -> int | None:
    """The address of the handler the C level has for ``signum`` (``sigaction``), or None
    where it cannot be read. Python's ``signal.getsignal`` says ``SIG_DFL`` for a handler
    installed outside Python (``faulthandler.register``, a C library): replacing it would
    lose it for good."""
    try:
        import ctypes  # noqa: PLC0415 - only when the watchdog installs
        import ctypes.util  # noqa: PLC0415

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        action = ctypes.create_string_buffer(512)  # larger than any struct sigaction
        if libc.sigaction(signum, None, action) != 0:
            return None
        # sa_handler (a union with sa_sigaction) comes first in glibc's, musl's and BSD's
        return ctypes.c_void_p.from_buffer(action).value or 0
    except (OSError, AttributeError, ValueError):
        return None


def taken_outside_python(signum: int) -> bool:
    """True if ``signum`` has a handler that Python does not know about (see
    :func:`_c_handler`): Python sees the default, the C level a function."""
    if signal.getsignal(signum) not in (signal.SIG_DFL, None):
        return False
    address = _c_handler(signum)
    return address is not None and address not in (0, 1)  # SIG_DFL, SIG_IGN


def free_signal(preferred: int) -> int | None:
    """``preferred``, or, when a handler outside Python has it, the first signal of
    SIGUSR1 and the real-time signals (from SIGRTMAX down) that nobody handles."""
    if not taken_outside_python(preferred):
        return preferred
    candidates = [getattr(signal, "SIGUSR1", None)]
    top = getattr(signal, "SIGRTMAX", None)
    if top is not None:
        candidates += [int(top) - k for k in range(8)]
    for candidate in candidates:
        if candidate is None or candidate == preferred:
            continue
        if signal.getsignal(candidate) == signal.SIG_DFL and not taken_outside_python(candidate):
            return int(candidate)
    return None


def signal_name(signum: int) -> str:
    """``SIGUSR2``, ``SIGRTMAX-1``: a signal's name, real-time ones counted from SIGRTMAX."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        top = getattr(signal, "SIGRTMAX", None)
        return f"SIGRTMAX-{int(top) - signum}" if top is not None else f"signal {signum}"


def default_signal() -> int | None:
    """The number of :data:`DEFAULT_SIGNAL`, or None where there is no such signal."""
    return getattr(signal, DEFAULT_SIGNAL, None)


def pass_on(previous: Any, signum: int, frame: types.FrameType | None) -> None:
    """Hand a signal the watchdog did not send to the handler that was there before."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:  # what would have happened: the default action
        ours = signal.signal(signum, signal.SIG_DFL)
        try:
            signal.raise_signal(signum)  # for SIGUSR1/2: the end of the process, as before
        finally:
            signal.signal(signum, ours)
    # SIG_IGN, or None (set outside Python): ignored, as before
