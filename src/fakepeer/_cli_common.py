"""What the serving commands (``fakepeer run``, ``fakepeer proxy``) share.

The listening options (from :mod:`fakepeer._cli_options`), the console and the journal (the live
transcript), the address file, and :func:`serve`: a peer or a proxy served in this
process's own asyncio loop until it ends (the script is done, ``--timeout``, SIGINT,
SIGTERM or SIGHUP), then its verdict as an exit status (:data:`PASSED`, :data:`FAILED`,
:data:`USAGE`). See docs/cli.md for what a user sees of it.

Serving runs in ``asyncio.run`` with ``async with``-style start and stop, not on the hub: the
command is the only thing in the process, so one thread does everything. The signals are
the loop's (``loop.add_signal_handler``: no handler runs in the middle of a lock), the live
transcript is written as each event is added, in that same thread (nothing is queued: a
slow reader slows the peer down, memory stays bounded), and the wake-up of the wait for the
end is a plain :class:`asyncio.Event`. What the peer keeps of the messages it received is a
bounded window (:mod:`fakepeer._keeping`): the process serves for long.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import codecs
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import IO, Any, Final

from ._cli_options import (
    add_output_options,
    add_where_options,
    in_option_terms,
    port,
    seconds,
    unwritable,
    where_overrides,
)
from ._errors import Error, ScriptError
from ._host import Host
from ._keeping import bound
from ._runtime import clock
from ._transcript import Event

__all__ = [
    "FAILED",
    "INTERNAL",
    "PASSED",
    "USAGE",
    "Output",
    "add_output_options",
    "add_where_options",
    "in_option_terms",
    "option_error",
    "port",
    "seconds",
    "serve",
    "serve_command",
    "unwritable",
    "where_overrides",
]

#: Exit statuses: the verdict passed; it failed (or the proxy saw an error, or a file it
#: writes as it serves could not be written); the command could not start (its options, the
#: script file, the address to listen on); a bug in fakepeer (an exception it did not expect).
PASSED: Final = 0
FAILED: Final = 1
USAGE: Final = 2
INTERNAL: Final = 3

#: Why serving ended, as the console says it (the journal's verdict line has the key).
_ENDED: Final = {
    "done": "the script is done: every expect was met and every connection is closed",
    "failed": "the peer saw a problem and every connection is closed",
    "timeout": "the --timeout was reached",
    "SIGINT": "interrupted (SIGINT)",
    "SIGTERM": "terminated (SIGTERM)",
    "SIGHUP": "hung up (SIGHUP)",
}

#: The signals that stop serving, as Ctrl-C does: a closed terminal or ssh session
#: (SIGHUP) too, so that the address file, the journal's verdict and a --unix private
#: directory are seen to on every way out.
STOPS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def address_text(host: Host) -> str:
    """Where ``host`` listens, for a client: ``127.0.0.1:40123``, ``[::1]:40123``, a path."""
    address = host.address
    if isinstance(address, str):
        return address
    name, port = address[0], address[1]
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def write_whole(path: str, data: str | bytes) -> None:
    """Write ``data`` (text: UTF-8) to ``path`` so that a reader sees it whole or not at
    all: a temporary file in the same directory, renamed over it. An :class:`OSError`
    names ``path``, never the temporary file."""
    target = Path(path)
    content = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, path) from None
        raise


def option_error(error: ScriptError, args: argparse.Namespace) -> int:
    """Say ``error`` (in the options' terms: :func:`in_option_terms`); :data:`USAGE`."""
    return usage_error(in_option_terms(str(error), args))


def _data(data: bytes) -> dict[str, str]:
    """An event's data for JSON: text if it is printable UTF-8 (tabs and line ends
    allowed), else base64 with ``"encoding": "base64"``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and (text.isprintable() or text.translate(_WHITE).isprintable()):
        return {"data": text}
    return {"data": base64.b64encode(data).decode("ascii"), "encoding": "base64"}


_WHITE: Final = str.maketrans("", "", "\t\r\n")


class Output:
    """The console (the live transcript, then the verdict) and the journal (JSON lines).

    Events are written as they are added (see :meth:`Transcript._watch`), from the serving
    loop's thread; they are held back until :meth:`serving` says where the host listens, so
    the address is always the console's first line.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.quiet: bool = args.quiet
        self._journal_name: str | None = args.journal
        self.journal: IO[str] | None = None
        # None: closed (`>&-`): the console is then silent, and serving goes on.
        self.console: IO[str] | None = sys.stdout
        self.broken = ""  # why the journal could not be written, if it could not
        self._ascii = False  # the journal's JSON escapes all but ASCII (a file is UTF-8)
        if args.journal == "-":
            self.journal, self.console = sys.stdout, sys.stderr
            if self.journal is None:
                self.broken = "standard output is closed"
            else:
                self._ascii = not _utf8(self.journal)
        self._host: Host | None = None
        self._held: list[Event] | None = []  # until serving(): then None

    @contextlib.contextmanager
    def opened(self) -> Iterator[Output]:
        """Open the journal file (``--journal FILE``) for the command's duration."""
        name = self._journal_name
        if name is None or name == "-":
            yield self
            return
        journal = open(name, "w", encoding="utf-8")  # noqa: SIM115 - errors: the caller's (USAGE)
        self.journal = journal
        try:
            yield self
        finally:
            self.journal = None
            # Each line was flushed: a failed close is a line that failed (said already).
            with contextlib.suppress(OSError):
                journal.close()

    def say(self, line: str) -> None:
        """A line of the command's own (``fakepeer: ...``) on the console."""
        self._print(f"fakepeer: {line}")

    def _print(self, text: str) -> None:
        console = self.console
        if console is None:
            return
        # A reader gone (`| head`), a console closed under it: nothing to do, serving goes on.
        with contextlib.suppress(OSError, ValueError):
            console.write(text + "\n")
            console.flush()

    def record(self, fields: dict[str, Any]) -> None:
        """One line of the journal, flushed."""
        journal = self.journal
        if journal is None or self.broken:
            return
        try:
            journal.write(json.dumps(fields, ensure_ascii=self._ascii) + "\n")
            journal.flush()
        except (OSError, ValueError) as exc:  # ValueError: closed
            self.broken = str(exc) or type(exc).__name__

    def event(self, event: Event) -> None:
        """A transcript watcher: show ``event`` on the console and in the journal."""
        host = self._host
        if self._held is not None or host is None:
            if self._held is not None:
                self._held.append(event)
            return
        transcript = host.transcript
        if not self.quiet:
            self._print("\n".join(transcript._lines(event)))
        if self.journal is not None:
            zero = transcript.started or 0.0
            fields: dict[str, Any] = {"t": round(event.at - zero, 6)}
            fields.update(connection=event.connection, kind=event.kind)
            if event.kind == "matched":  # raw: the next bytes of its received lines, again
                fields.update(size=len(event.data), note=event.note)
            else:
                fields.update(_data(event.data), note=event.note)
            self.record(fields)

    def serving(self, host: Host, line: str, extra: dict[str, Any]) -> None:
        """``host`` listens: say ``line`` first, then the events held back."""
        self._host = host
        self.say(line)
        self.record({"t": 0.0, "kind": "serving", **extra})
        held, self._held = self._held or [], None
        for event in held:
            self.event(event)

    def verdict(self, problem: Error | None, ended: str) -> int:
        """Say why serving ended and the verdict; the exit status."""
        self.say(f"stopped: {_ENDED.get(ended, ended)}")
        start = (self._host.transcript.started if self._host else None) or 0.0
        t = round(max(0.0, clock() - start), 6)
        passed = problem is None
        diagnosis = None if problem is None else problem.diagnosis
        verdict = {"passed": passed, "ended": ended, "diagnosis": diagnosis}
        self.record({"t": t, "kind": "verdict", **verdict})
        if problem is None:
            self.say("passed")
        else:
            self._print(f"fakepeer: failed:\n{problem}")
        if self.broken:
            print(f"fakepeer: the journal could not be written: {self.broken}", file=sys.stderr)
            return FAILED
        return PASSED if passed else FAILED


def _utf8(stream: IO[str]) -> bool:
    """True if ``stream`` writes UTF-8 (a journal file does; standard output may not)."""
    return codecs.lookup(getattr(stream, "encoding", None) or "ascii").name == "utf-8"


def usage_error(text: str) -> int:
    """Say ``text`` on standard error; :data:`USAGE`."""
    print(f"fakepeer: error: {text}", file=sys.stderr)
    return USAGE


#: Why serving ends now ("done", "failed"), or None to go on.
Ended = Callable[[], str | None]


async def serve(
    host: Host,
    output: Output,
    *,
    timeout: float | None,
    ended: Ended,
    listening: Callable[[], None],
) -> tuple[Error | None, str]:
    """Serve ``host`` in this loop until ``ended()`` says why (checked after each event),
    ``timeout`` seconds pass or a signal of :data:`STOPS` comes; the verdict and why it ended.

    Once it listens, ``listening()`` (the command's: :meth:`Output.serving`, then the
    address file...). The live transcript runs from before the start to after the stop."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    thread = threading.get_ident()
    why: list[str] = []

    def watch(event: Event) -> None:
        output.event(event)
        if threading.get_ident() == thread:
            wake.set()
        else:  # pragma: no cover - every event of an in-loop host is added in its loop
            loop.call_soon_threadsafe(wake.set)

    def stop(name: str) -> None:
        why.append(name)
        wake.set()

    transcript = host.transcript
    unwatch = transcript._watch(watch)
    for event in transcript.events:  # added before serving (the file's faults)
        output.event(event)
    signals = STOPS
    for number in signals:
        loop.add_signal_handler(number, stop, number.name)
    serving = host.serve()
    try:
        await serving.start_async()
        try:
            listening()
            deadline = None if timeout is None else loop.time() + timeout
            while not why:
                reason = ended()
                if reason is not None:
                    why.append(reason)
                    break
                wake.clear()
                try:
                    async with asyncio.timeout_at(deadline):
                        await wake.wait()
                except TimeoutError:
                    why.append("timeout")
        finally:
            await serving.stop_async()
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
        unwatch()
    return host.problem(), why[0]


def run_command(
    main: Callable[[], Coroutine[Any, Any, int]], cleanup: list[str], args: argparse.Namespace
) -> int:
    """Run ``main()`` in a new loop, its status; a :class:`ScriptError` (an address it
    cannot listen on...: said in the options' terms) or an :class:`OSError` (a file it
    cannot write) is a usage error (:data:`USAGE`), said on standard error. Then, whatever
    the way out, remove the files in ``cleanup`` (the address file...)."""
    try:
        return asyncio.run(main())
    except ScriptError as exc:
        return option_error(exc, args)
    except OSError as exc:
        return usage_error(f"cannot write {exc.filename}: {exc.strerror or exc}")
    finally:
        for name in cleanup:
            with contextlib.suppress(OSError):
                os.unlink(name)


def remove_stale(path: str | None) -> None:
    """Remove an address file left by an earlier run, so that a poller waits for ours (as
    the command starts, before it reads its script). One it cannot remove is said when it
    is written."""
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)


def serve_command(
    host: Host,
    args: argparse.Namespace,
    *,
    ended: Ended,
    line: Callable[[str], str],
    fields: dict[str, Any],
    outputs: tuple[tuple[str, str], ...] = (),
) -> int:
    """A serving command from the start to its exit status: serve ``host`` (see
    :func:`serve`) with the output options of ``args``. Once it listens: the console's
    first line, ``line(address)``; the journal's, ``fields`` and the address; the CA file
    (``--ca-file``), the address file (``--address-file``), both removed at the end; after
    the verdict, the ``--pcapng`` capture. Every file named, and the command's own
    ``outputs`` (``(option, path)``), is checked before serving (:func:`unwritable`)."""
    tls = host._tls is not None
    if args.ca_file and not tls:
        noun = "proxy" if host._relays else "peer"
        return usage_error(f"--ca-file: the {noun} serves no TLS (give --tls)")
    files = [
        ("--address-file", args.address_file),
        ("--ca-file", args.ca_file),
        ("--journal", None if args.journal == "-" else args.journal),
        ("--pcapng", args.pcapng),
        *outputs,
    ]
    for option, path in files:
        why = path and unwritable(option, path)
        if why:
            return usage_error(why)
    output = Output(args)
    written: list[str] = []
    if not host._conversation.received:
        bound(host._conversation)

    def listening() -> None:
        address = address_text(host)
        ca = (args.ca_file or host.ca_path) if tls else None
        extra = {**fields, "address": address} | ({"ca": ca} if tls else {})
        output.serving(host, line(address), extra)
        if tls:
            if args.ca_file:
                written.append(args.ca_file)
                write_whole(args.ca_file, host.ca_pem.decode("ascii"))
            output.say(f"clients trust the CA certificate in {ca}")
        if args.address_file:
            written.append(args.address_file)
            write_whole(args.address_file, address + "\n")

    async def main() -> int:
        with output.opened():
            problem, why = await serve(
                host, output, timeout=args.timeout, ended=ended, listening=listening
            )
            status = output.verdict(problem, why)
        if args.pcapng:
            try:
                write_whole(args.pcapng, host.transcript.to_pcapng())
            except OSError as exc:
                print(f"fakepeer: error: --pcapng {args.pcapng}: cannot write it: {exc.strerror}")
                return FAILED
            output.say(f"wrote {args.pcapng} (pcapng)")
        return status

    return run_command(main, written, args)
