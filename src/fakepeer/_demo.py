"""``fakepeer demo``: what fakepeer is for, in three short acts (about two screens).

1. A sample client (a tiny blocking key-value client, the kind of code fakepeer is for) talks
   to a fake peer that plays its server from a four-line script; the peer's transcript.
2. The same script against a client with a bug: the failure a test would see.
3. The story fakepeer grew from: a pytest-asyncio fixture whose blocking ``accept()`` loop hung
   its test run. The seed's test runs under pytest with fakepeer's loop watchdog, which fails it
   at once naming the line; then the same test with the ``fake_peer`` fixture passes.

Each act says what it is about to show, shows it, and says what to take from it. The output
is pinned by ``tests/test_demo.py`` (its golden file is ``tests/demo_output.txt``).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Final, TextIO

from ._errors import ConversationError
from ._framing import Lines
from ._peer import FakePeer
from ._watchdog import Watchdog


def _script(peer: FakePeer) -> None:
    peer.on_connect().send("+ kv-server ready")
    peer.expect("SET colour blue").reply("OK")
    peer.expect("GET colour").reply("VALUE blue")
    peer.expect("QUIT").reply("BYE").close()


class KVClient:
    """A line-protocol client: ``SET k v``, ``GET k``, ``QUIT``; reads a banner first."""

    def __init__(self, address: tuple[str, int]) -> None:
        self._sock = socket.create_connection(address, timeout=5)
        self._file = self._sock.makefile("rb")
        self.banner = self._readline()

    def _readline(self) -> str:
        return self._file.readline().decode().rstrip("\r\n")

    def _call(self, line: str) -> str:
        self._sock.sendall(line.encode() + b"\r\n")
        return self._readline()

    def set(self, key: str, value: str) -> None:
        if self._call(f"SET {key} {value}") != "OK":
            raise RuntimeError("SET failed")

    def get(self, key: str) -> str:
        return self._call(f"GET {key}").removeprefix("VALUE ")

    def close(self, polite: bool = True) -> None:
        if polite:
            self._call("QUIT")
        self._file.close()
        self._sock.close()


#: The output's width in columns: longer lines (an error's first line) are wrapped.
WIDTH: Final = 100
#: Where quoted material (code, transcripts, reports) starts.
QUOTE: Final = " " * 7
#: A label of aligned columns (``hint:        ...``): wrapped lines hang under its value.
_LABEL: Final = re.compile(r"\s*[a-z][a-z ]{0,20}:\s{2,}(?=\S)")
#: Stands for a space that is not a place to break a line, while wrapping.
_GLUE: Final = "\x00"


def _fit(line: str) -> list[str]:
    """``line`` wrapped to :data:`WIDTH`, continuation lines hanging under its label's value
    (``hint:        ...``), or else indented four more than the line; a number stays with the
    word after it (``0.5 s``, ``1 message(s)``)."""
    if len(line) <= WIDTH:
        return [line]
    label = _LABEL.match(line)
    width = label.end() if label is not None else len(line) - len(line.lstrip()) + 4
    hang = " " * width
    glued = re.sub(r"(?<=\d) (?=\S)", _GLUE, line)
    wrapped = textwrap.wrap(
        glued, WIDTH, subsequent_indent=hang, break_long_words=False, break_on_hyphens=False
    )
    return [part.replace(_GLUE, " ") for part in wrapped]


def _quote(out: TextIO, lines: Iterable[str]) -> None:
    """Write ``lines`` indented by :data:`QUOTE`, each fitted to the width, then a blank line."""
    for line in lines:
        for part in _fit(QUOTE + line if line else ""):
            out.write(part + "\n")
    out.write("\n")


def _say(out: TextIO, text: str, indent: str = "   ") -> None:
    """Write ``text`` (dedented, its first newline dropped) indented by ``indent``."""
    out.write(textwrap.indent(textwrap.dedent(text).lstrip("\n"), indent))


def _script_lines() -> list[str]:
    """The body of :func:`_script`, as written, each line with its number in this file."""
    lines, first = inspect.getsourcelines(_script)
    body = textwrap.dedent("".join(lines[1:])).splitlines()
    return [f"{first + 1 + n:>2}  {line}" for n, line in enumerate(body)]


def run(out: TextIO) -> int:
    """Run the three acts, writing to ``out``; return the exit status: 0, or 1 if the third
    act's pytest runs did not go as it says (their whole output is shown)."""
    _say(
        out,
        """
        fakepeer stands in for the server while you test a network client. In three acts:

        """,
        indent="",
    )
    act_one(out)
    act_two(out)
    as_told = act_three(out)
    out.write(
        'Next: the README\'s "Ten lines" example, then docs/guides.md (guides and reference).\n'
    )
    return 0 if as_told else 1


def act_one(out: TextIO) -> None:
    """A well-behaved client against the script: the transcript."""
    out.write("1. A client and its fake server\n")
    _say(
        out,
        """
        The code under test: a key-value client (SET, GET, QUIT over a line protocol). No real
        server runs: a fake peer plays one from this script (the transcript names its lines):

        """,
    )
    _quote(out, _script_lines())
    peer = FakePeer(framing=Lines(b"\r\n"), name="kv")
    _script(peer)
    with peer.serve():
        client = KVClient(peer.address)
        client.set("colour", "blue")
        value = client.get("colour")
        client.close()
    _say(
        out,
        f"""
        The client stored colour = blue, read back {value!r} and quit. The peer's transcript:

        """,
    )
    _quote(out, peer.render_transcript().splitlines())
    _say(
        out,
        """
        Take away: the peer answers what the script says, checks each line the client sends
        against it, and records who sent what, when.

        """,
    )


def act_two(out: TextIO) -> None:
    """A client that hangs up early: what a test sees."""
    out.write("2. A client with a bug\n")
    _say(
        out,
        """
        Same script; this client sends SET, then hangs up without GET or QUIT. Leaving serve()
        (in a test: when the test ends) raises, because the script was not played to its end:

        """,
    )
    peer = FakePeer(framing=Lines(b"\r\n"), name="kv")
    _script(peer)
    try:
        with peer.serve():
            client = KVClient(peer.address)
            client.set("colour", "blue")
            client.close(polite=False)  # the bug: forgets GET and QUIT
    except ConversationError as error:
        _quote(out, f"{type(error).__name__}: {error}".splitlines())
    else:  # pragma: no cover - the peer's contract
        out.write("   (Unexpected: leaving serve() raised nothing.)\n\n")
    _say(
        out,
        """
        Take away: a client that sends the wrong thing, or stops short, fails its test with
        what the script expected, on which line of it, and what really happened.

        """,
    )


# -- the third act: the seed ------------------------------------------------------------------

#: The seed's test file (tests/watchdog_seed.py in the repository), line for line as its author
#: wrote it; only the Japanese docstrings, comment and prints are translated (a test checks).
SEED: Final = '''\
"""Minimal test code to check how pytest-asyncio behaves"""
import asyncio
import socket
from typing import AsyncGenerator, Tuple
import pytest
import pytest_asyncio
@pytest_asyncio.fixture
async def simple_server() -> AsyncGenerator[Tuple[socket.socket, bool], None]:
    """A TCP server fixture with the bare minimum of features"""
    print("Server: fixture start")
    server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server_socket.bind(("localhost", 12346))
    server_socket.listen(1)
    server_socket.settimeout(0.1)
    print("Server: socket set up")
    async def handle_client():
        print("Server: handle_client start")
        while True:
            try:
                print("Server: waiting for a connection")
                client, _ = server_socket.accept()
                print("Server: client connected")
                client.close()
            except socket.timeout:
                print("Server: timeout")
                continue
    print("Server: before creating the task")
    server_task = asyncio.create_task(handle_client())
    print("Server: task created")
    try:
        yield server_socket, True
    finally:
        print("Server: cleanup start")
        server_task.cancel()
        server_socket.close()
        print("Server: cleanup done")
@pytest.mark.asyncio
@pytest.mark.timeout(1, method="thread")
async def test_simple_server(simple_server):
    """Test of the server fixture"""
    print("Test: test start")
    server_socket, is_ready = simple_server
    print("Test: got the fixture")
    # A simple connection test
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await asyncio.sleep(0.1)
    print("Test: trying to connect")
    client.connect(("localhost", 12346))
    print("Test: connected")
    client.close()
    print("Test: test done")
'''

#: The same test with the fake_peer fixture: no server code, no fixed port, no sleep.
FIXED: Final = """\
import socket
import pytest


@pytest.mark.asyncio
@pytest.mark.timeout(1, method="thread")
async def test_simple_server(fake_peer):
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.connect(fake_peer.address)  # blocking, like the seed's: fine here
    client.close()
    await fake_peer.wait_for_connections_async(1)
"""

SEED_PORT: Final = 12346
TIMEOUT_MARKER: Final = '@pytest.mark.timeout(1, method="thread")\n'
#: The plugins the subprocess loads, and only these (no other installed plugin changes the
#: output, and none slows it down): pytest-asyncio, pytest-timeout, fakepeer.
PLUGINS: Final = ("pytest_asyncio.plugin", "pytest_timeout", "fakepeer.pytest_plugin")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("localhost", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("localhost", 0))
        return int(probe.getsockname()[1])


#: The lines of the seed that tell its story, as they begin (stripped): the fixture, its port,
#: the accept() loop in a task, the yield that never ran.
EXCERPT: Final = (
    "@pytest_asyncio.fixture",
    "async def simple_server()",
    "server_socket.bind(",
    "server_socket.settimeout(",
    "async def handle_client():",
    "while True:",
    "try:",
    "client, _ = server_socket.accept()",
    "except socket.timeout:",
    "continue",
    "server_task = asyncio.create_task(",
    "yield server_socket",
)


def seed_excerpt() -> list[str]:
    """The lines of :data:`SEED` named by :data:`EXCERPT`, up to its ``yield``, each numbered
    as in the file."""
    lines = SEED.splitlines()
    last = next(i for i, line in enumerate(lines) if line.lstrip().startswith("yield "))
    return [
        f"{number:>2}  {line}"
        for number, line in enumerate(lines[: last + 1], start=1)
        if line.lstrip().startswith(EXCERPT)
    ]


class _Pytest:
    """Runs pytest in a subprocess in a scratch folder, with only :data:`PLUGINS` loaded."""

    def __init__(self, folder: Path, plugins: list[str]) -> None:
        self.folder = folder
        self.command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
        for plugin in plugins:
            self.command += ["-p", plugin]
        # Plain text to read back (PY_COLORS=0 wins over FORCE_COLOR and a terminal), and
        # none of the user's own pytest settings.
        self.env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PY_COLORS="0")
        for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "FAKEPEER_LOOP_WATCHDOG", "FORCE_COLOR"):
            self.env.pop(name, None)

    def __call__(self, name: str) -> str | None:
        """pytest's output for the file ``name``, or None if it ran over a minute."""
        try:
            done = subprocess.run(
                [*self.command, name],
                cwd=self.folder,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None
        # Paths into the scratch folder are shown relative to it, where pytest ran.
        output = done.stdout
        for prefix in {str(self.folder), str(self.folder.resolve())}:
            output = output.replace(prefix + os.sep, "")
        return output


def diagnosis(output: str) -> list[str] | None:
    """The ``LoopBlocked`` report in pytest's ``output``, trimmed to what matters: the error,
    the task, the blocked line and call, the hint (not the samples, the stack or the captured
    output); None if there is none."""
    lines = output.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if line.startswith("E   fakepeer.LoopBlocked:")), None
    )
    if start is None:
        return None
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith(" ") or line.strip().startswith("stack (innermost last)"):
            break
        if not line.strip().startswith("samples:"):
            block.append(line)
    return block


def _summary(output: str) -> str:
    """pytest's last line (``1 error in 0.58s``), without its ``=`` rules."""
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else "(no output)"


def act_three(out: TextIO) -> bool:
    """The seed's hanging test, failed at once by the loop watchdog; the fixed test passes.
    False if pytest did not do what the act says (shown whole), True otherwise (skipped too:
    the reason is said)."""
    out.write("3. The hang fakepeer was born from\n")
    _say(
        out,
        """
        A blog post's test stood up its TCP server in a pytest-asyncio fixture (docs/story.md
        tells the story). The lines that matter, from tests/watchdog_seed.py:

        """,
    )
    _quote(out, seed_excerpt())
    _say(
        out,
        """
        accept() blocks, in a coroutine that never awaits: once handle_client runs, the loop's
        one thread runs nothing else. Setup never ended, the test never ran; pytest-timeout
        killed it. With fakepeer installed, pytest fails a test whose event loop is stuck 0.5 s:

        """,
    )
    if not Watchdog.available():
        out.write(
            "   Skipped: the loop watchdog is not available here (it needs POSIX signals).\n\n"
        )
        return True
    if not _installed("pytest_asyncio"):
        out.write(
            "   Skipped: the seed's test needs pytest-asyncio, which is not installed\n"
            "   (pip install 'fakepeer[demo]').\n\n"
        )
        return True
    seed, fixed = SEED, FIXED
    plugins = list(PLUGINS)
    if not _installed("pytest_timeout"):
        seed, fixed = seed.replace(TIMEOUT_MARKER, ""), fixed.replace(TIMEOUT_MARKER, "")
        plugins.remove("pytest_timeout")
        out.write(
            "   (pytest-timeout is not installed: both tests run without their\n"
            "   @pytest.mark.timeout line; the watchdog does not need it.)\n\n"
        )
    with tempfile.TemporaryDirectory(prefix="fakepeer-demo-") as directory:
        folder = Path(directory)
        (folder / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )
        (folder / "test_fixed.py").write_text(fixed)
        pytest = _Pytest(folder, plugins)
        port, note = SEED_PORT, ""
        for attempt in range(2):
            if attempt or not _port_free(port):
                port = _free_port()
                note = f"   # port {SEED_PORT} is taken here: it runs on {port}"
            (folder / "test_seed.py").write_text(seed.replace(str(SEED_PORT), str(port)))
            output = pytest("test_seed.py")
            if output is None or "Address already in use" not in output:
                break
        if not _show(out, "test_seed.py", output, expect="error", note=note):
            return False
        _say(
            out,
            """
            The same test with the fake_peer fixture: no server code, no fixed port, no sleep.
            The peer listens before the test starts, on its own thread, and is checked at the end:

            """,
        )
        _quote(out, FIXED.splitlines()[4:])
        if not _show(out, "test_fixed.py", pytest("test_fixed.py"), expect="passed"):
            return False
    _say(
        out,
        """
        Take away: a blocked event loop fails the test as soon as the limit is up, naming the
        line, instead of hanging the run; and a server in a test is one fixture argument away.

        """,
    )
    return True


def _show(out: TextIO, name: str, output: str | None, *, expect: str, note: str = "") -> bool:
    """Write the command that ran ``name`` (and ``note``, on its line: the demo's length
    holds) and what matters of its ``output``: the ``LoopBlocked`` report if ``expect`` is
    ``"error"``, then pytest's summary line. Return False (having said so, and shown all of
    pytest's output) if it did not go as expected."""
    out.write(f"   $ python -m pytest -q {name}{note}\n")
    if output is None:
        out.write("   pytest did not finish within 60 s: the act was stopped.\n")
        return False
    summary = _summary(output)
    report = diagnosis(output) if expect == "error" else []
    if report is None or not re.fullmatch(rf"1 {expect} in [\d.]+s", summary):
        out.write("   Unexpected outcome. pytest's output:\n\n")
        _quote(out, output.splitlines())
        return False
    _quote(out, [*report, summary])
    return True
