"""mountebank as a benchmark contender: install it, run it, time it against the PING/PONG cases.

mountebank (the npm package ``@mbtest/mountebank``) is a Node.js process driven through a REST
API. This module installs a pinned version into a cache directory outside the source tree
(:data:`CACHE`), starts ``mb`` on a free loopback port (:class:`Mountebank`) and measures the
runner's two cases on it, with the standard library only:

- :func:`lifecycle_sample`: per test, create a tcp imposter, connect, one ``PING``/``PONG``,
  close, delete the imposter;
- :func:`roundtrip_samples`: one ``PING``/``PONG`` on a connection that is already open.

How mountebank frames tcp requests matters here: without an ``endOfRequestResolver`` (which
needs ``--allowInjection``), every chunk one ``read`` on the server returns is one request. A
``PING\\n`` split over two packets, or two requests coalesced into one, match no predicate and
get the default response, which is *nothing*: the client then waits for its timeout. The
clients here send one request and wait for its whole reply (read up to ``\\n``) before the next,
with ``TCP_NODELAY``, so on loopback every request is one packet.

Run ``python benchmarks/_mountebank.py`` for a self-check: it installs mountebank if needed,
starts it and prints the medians of both cases.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Final

#: The mountebank release measured; :func:`install` installs exactly this one.
VERSION: Final = "2.9.2"
PACKAGE: Final = "@mbtest/mountebank"
#: Where mountebank is installed (``npm install --prefix``): outside git's view, reused by runs.
CACHE: Final = (
    Path(os.environ.get("FAKEPEER_BENCH_CACHE") or Path(__file__).resolve().parent / ".cache")
    / "mountebank"
)
HOST: Final = "127.0.0.1"
REQUEST: Final = b"PING\n"
RESPONSE: Final = b"PONG\n"
#: Bound on every blocking socket call of the PING/PONG clients.
SOCKET_TIMEOUT: Final = 5.0
#: Bound on every call to mountebank's REST API.
HTTP_TIMEOUT: Final = 10.0
#: Bound on ``npm install``.
INSTALL_TIMEOUT: Final = 600.0
#: Node.js's default keep-alive timeout is 5 s: an API connection idle for longer than this is
#: reopened before use instead of being found closed halfway through a request.
IDLE_REUSE: Final = 4.0
#: mountebank 2.9 needs Node.js 18 or later (``engines`` in its package.json).
NODE_MAJOR: Final = 18
#: Round trips run on a fresh connection before :func:`roundtrip_samples` starts timing. Node's
#: JIT needs this many: on a fresh ``mb`` a trip takes 3-5x its steady time for the first
#: ~1000-1500 trips.
WARMUP_TRIPS: Final = 1000

_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")
_INSTALL_HINT: Final = "run `python -m benchmarks --install`"


def _package_dir() -> Path:
    return CACHE / "node_modules" / "@mbtest" / "mountebank"


def _mb_script() -> Path:
    return _package_dir() / "bin" / "mb"


def installed_version() -> str | None:
    """The version of mountebank installed in :data:`CACHE`, or None if there is none."""
    try:
        data = json.loads((_package_dir() / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(_ANSI.sub("", text).rstrip().splitlines()[-lines:])


def install(log: Callable[[str], None] = print) -> None:
    """Install mountebank :data:`VERSION` into :data:`CACHE` with npm.

    Runs ``npm install --prefix CACHE @mbtest/mountebank@VERSION`` (quiet, no audit, no fund),
    bounded by :data:`INSTALL_TIMEOUT`. A no-op (logged) if that version is already there.
    Raises :class:`RuntimeError` if npm is missing, fails (with the tail of its output), times
    out, or leaves anything but the pinned version behind.
    """
    if installed_version() == VERSION:
        log(f"mountebank {VERSION} already installed in {CACHE}")
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found: install Node.js (18 or later) with npm")
    CACHE.mkdir(parents=True, exist_ok=True)
    command = [
        npm,
        "install",
        "--prefix",
        str(CACHE),
        "--no-audit",
        "--no-fund",
        "--no-update-notifier",
        "--loglevel=error",
        f"{PACKAGE}@{VERSION}",
    ]
    log(f"installing {PACKAGE}@{VERSION} into {CACHE} ...")
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        output = error.output.decode(errors="replace") if error.output else ""
        raise RuntimeError(
            f"npm install timed out after {INSTALL_TIMEOUT:.0f} s:\n{_tail(output)}"
        ) from None
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"npm install failed (exit {done.returncode}):\n{_tail(output)}")
    found = installed_version()
    if found != VERSION:
        raise RuntimeError(
            f"npm install left mountebank {found or 'nothing'} in {CACHE}, not {VERSION}:\n"
            f"{_tail(output)}"
        )
    log(f"mountebank {VERSION} installed in {time.perf_counter() - start:.1f} s")


def _node_major(node: str) -> int | None:
    try:
        done = subprocess.run(
            [node, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=HTTP_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"v(\d+)\.", done.stdout.decode(errors="replace").strip())
    return int(match.group(1)) if match else None


def unavailable() -> str | None:
    """None when mountebank can run here, else why not, to report the contender as skipped.

    Checks that ``node`` is on PATH and recent enough, and that :data:`VERSION` is installed
    in :data:`CACHE` (if not, the reason says how to install it, or that npm is missing).
    """
    node = shutil.which("node")
    if node is None:
        return "node not found"
    major = _node_major(node)
    if major is None:
        return f"cannot tell the version of {node}"
    if major < NODE_MAJOR:
        return f"node {major} is too old: mountebank {VERSION} needs {NODE_MAJOR} or later"
    found = installed_version()
    if found == VERSION:
        return None
    if shutil.which("npm") is None:
        return "npm not found"
    if found is None:
        return f"not installed: {_INSTALL_HINT}"
    return f"mountebank {found} installed, {VERSION} expected: {_INSTALL_HINT}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _config_cwd(body: bytes) -> str | None:
    """The working directory ``GET /config`` reports, if the body is mountebank's JSON."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    process = data.get("process") if isinstance(data, dict) else None
    cwd = process.get("cwd") if isinstance(process, dict) else None
    return os.path.realpath(cwd) if isinstance(cwd, str) else None


class Mountebank:
    """A running ``mb`` process, its REST API on a free loopback port; a context manager.

    ``__enter__`` starts ``node .../bin/mb start --port N --host 127.0.0.1 --localOnly
    --nologfile --pidfile TMP/mb.pid --loglevel LEVEL`` in a fresh temporary directory (its
    working directory, so nothing is read from or written to the caller's), with its output
    going to a file there, and waits until the API answers (``GET /config``, checked to come
    from this process), at most ``start_timeout`` seconds. If ``mb`` exits early (its port was
    taken meanwhile), it is started again on another port, up to three times; on failure or
    timeout it is stopped and :class:`RuntimeError` raised with its output.
    :attr:`startup_seconds` is the time from spawning to that answer.

    ``__exit__`` closes the API connection, stops ``mb`` (SIGTERM, a bounded wait, then
    SIGKILL) and removes the temporary directory: no process, file or socket is left behind.

    ``loglevel`` defaults to ``warn``: at mountebank's default (``info``) every request to an
    imposter writes a log line, and what is measured is serving, not logging. Every API call
    is bounded by ``http_timeout`` and goes over one keep-alive connection, reopened when
    mountebank has closed it.
    """

    def __init__(
        self,
        *,
        loglevel: str = "warn",
        start_timeout: float = 30.0,
        http_timeout: float = HTTP_TIMEOUT,
    ) -> None:
        self.loglevel = loglevel
        self.start_timeout = start_timeout
        self.http_timeout = http_timeout
        #: The API's port, once started.
        self.port = 0
        #: Seconds from spawning ``mb`` to its first answer on the API.
        self.startup_seconds = 0.0
        #: The command line ``mb`` was started with.
        self.command: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None
        self._output: IO[bytes] | None = None
        self._http: http.client.HTTPConnection | None = None
        self._last_used = 0.0
        self._started = 0.0

    # -- process ------------------------------------------------------------------------

    def __enter__(self) -> Mountebank:
        if self._process is not None:
            raise RuntimeError("mountebank is already running")
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(f"mountebank cannot run: {reason}")
        node = shutil.which("node")
        assert node is not None  # unavailable() checked
        try:
            # The free port found for mb can be taken by someone else before mb binds it. mb
            # 2.9 (Express 5) then logs "now taking orders" all the same and exits 0, without
            # a word about EADDRINUSE: so any early exit is tried again, on another port.
            for attempt in range(3):
                self._spawn(node)
                if self._wait_ready():
                    break
                assert self._process is not None
                code = self._process.poll()
                output = self._stop()
                if code is None or attempt == 2:
                    what = (
                        f"did not answer within {self.start_timeout:g} s"
                        if code is None
                        else f"exited with code {code}, {attempt + 1} times"
                        " (a taken port makes it exit 0 without a word)"
                    )
                    raise RuntimeError(
                        f"mountebank {what} ({' '.join(self.command)}):\n"
                        f"{_tail(output) or '(no output)'}"
                    )
        except BaseException:
            self._stop()
            raise
        self._http = http.client.HTTPConnection(HOST, self.port, timeout=self.http_timeout)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _spawn(self, node: str) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="fakepeer-mountebank-"))
        self._output = (self._tmp / "mb.out").open("wb")
        self.port = _free_port()
        self.command = [
            node,
            str(_mb_script()),
            "start",
            "--port",
            str(self.port),
            "--host",
            HOST,
            "--localOnly",
            "--nologfile",
            "--pidfile",
            str(self._tmp / "mb.pid"),
            "--loglevel",
            self.loglevel,
        ]
        self._started = time.perf_counter()
        self._process = subprocess.Popen(
            self.command,
            cwd=self._tmp,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    def _wait_ready(self) -> bool:
        """Poll ``GET /config`` until it answers 200 from *this* ``mb`` (True), or until the
        process exits or :attr:`start_timeout` passes (False).

        ``/config`` rather than ``/``: it reports the server's working directory, our fresh
        temporary directory, so a server someone else runs on the same port cannot pass.
        """
        assert self._process is not None
        assert self._tmp is not None
        expected = os.path.realpath(self._tmp)
        deadline = self._started + self.start_timeout
        while time.perf_counter() < deadline:
            if self._process.poll() is not None:
                return False
            probe = http.client.HTTPConnection(HOST, self.port, timeout=1.0)
            try:
                probe.request("GET", "/config", headers={"Accept": "application/json"})
                response = probe.getresponse()
                body = response.read()
                if response.status == 200 and _config_cwd(body) == expected:
                    self.startup_seconds = time.perf_counter() - self._started
                    return True
            except (OSError, http.client.HTTPException):
                pass
            finally:
                probe.close()
            time.sleep(0.005)
        return False

    def _stop(self) -> str:
        """Stop ``mb`` if it runs, remove the temporary directory; return what it printed."""
        if self._http is not None:
            self._http.close()
            self._http = None
        process, self._process = self._process, None
        output = ""
        try:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5.0)
        finally:
            if self._output is not None:
                self._output.close()
                self._output = None
            if self._tmp is not None:
                with contextlib.suppress(OSError):
                    output = (self._tmp / "mb.out").read_text(encoding="utf-8", errors="replace")
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None
        return output

    # -- REST API ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        """One API call on the keep-alive connection: (status, body).

        A connection idle for longer than :data:`IDLE_REUSE` is reopened first; a reused one
        that turns out closed by mountebank is reopened and the call sent once more. On any
        other failure the connection is closed, so the next call starts clean.
        """
        connection = self._http
        if connection is None:
            raise RuntimeError("mountebank is not running: use `with Mountebank() as mb:`")
        if time.perf_counter() - self._last_used > IDLE_REUSE:
            connection.close()
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for retry in (True, False):
            reused = connection.sock is not None
            try:
                connection.request(method, path, body=payload, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (
                http.client.RemoteDisconnected,
                ConnectionResetError,
                ConnectionAbortedError,
                BrokenPipeError,
            ):
                connection.close()
                if reused and retry:
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            self._last_used = time.perf_counter()
            return response.status, data
        raise AssertionError("unreachable")  # pragma: no cover

    def create_pingpong(self) -> tuple[str, int]:
        """``POST /imposters``: a tcp imposter in text mode, on a port mountebank picks (it binds
        port 0 when none is given and returns the port in the response body), with one stub
        answering data ``PING\\n`` (an ``equals`` predicate) with ``PONG\\n``.

        Returns ``(host, port)``; the imposter is listening when this returns (mountebank
        answers after the listening socket is bound). Raises :class:`RuntimeError` if
        mountebank refuses.
        """
        imposter = {
            "protocol": "tcp",
            "mode": "text",
            "host": HOST,
            "stubs": [
                {
                    "predicates": [{"equals": {"data": REQUEST.decode()}}],
                    "responses": [{"is": {"data": RESPONSE.decode()}}],
                }
            ],
        }
        status, body = self._call("POST", "/imposters", imposter)
        if status != 201:
            raise RuntimeError(
                f"POST /imposters answered {status}: {body.decode(errors='replace')}"
            )
        data = json.loads(body)
        port = data.get("port") if isinstance(data, dict) else None
        if not isinstance(port, int):
            raise RuntimeError(f"POST /imposters returned no port: {body.decode(errors='replace')}")
        return HOST, port

    def delete(self, port: int) -> None:
        """``DELETE /imposters/{port}``: stop that imposter and close its connections. Raises
        :class:`RuntimeError` unless mountebank answers 200."""
        status, body = self._call("DELETE", f"/imposters/{port}")
        if status != 200:
            raise RuntimeError(
                f"DELETE /imposters/{port} answered {status}: {body.decode(errors='replace')}"
            )


# -- the cases ------------------------------------------------------------------------------


def _connect(host: str, port: int) -> socket.socket:
    client = socket.create_connection((host, port), timeout=SOCKET_TIMEOUT)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def _exchange(client: socket.socket) -> None:
    """Send ``PING\\n``, read up to the first ``\\n`` (a reply may arrive in pieces) and check
    that it is ``PONG\\n``; raise :class:`AssertionError` otherwise."""
    client.sendall(REQUEST)
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = client.recv(64)
        if not chunk:
            raise AssertionError(f"mountebank closed the connection after {reply!r}")
        reply += chunk
    if reply != RESPONSE:
        raise AssertionError(f"expected {RESPONSE!r} from mountebank, got {reply!r}")


def lifecycle_sample(mb: Mountebank) -> float:
    """Seconds for one test's worth of fake server: create the PING/PONG imposter, connect a
    blocking client (``TCP_NODELAY``, :data:`SOCKET_TIMEOUT`), send ``PING``, read and check
    ``PONG`` (:class:`AssertionError` if not), close the client, delete the imposter.

    Timed with :func:`time.perf_counter_ns` around exactly that. The imposter is deleted even
    when the exchange fails.
    """
    start = time.perf_counter_ns()
    host, port = mb.create_pingpong()
    try:
        client = _connect(host, port)
        try:
            _exchange(client)
        finally:
            client.close()
    finally:
        mb.delete(port)
    return (time.perf_counter_ns() - start) / 1e9


@contextlib.contextmanager
def _open_pingpong(mb: Mountebank) -> Iterator[socket.socket]:
    """A client connected to a fresh PING/PONG imposter; closed and deleted on the way out."""
    host, port = mb.create_pingpong()
    try:
        client = _connect(host, port)
        try:
            yield client
        finally:
            client.close()
    finally:
        mb.delete(port)


def roundtrip_samples(
    mb: Mountebank, trips: int, samples: int, *, warmup: int = WARMUP_TRIPS
) -> list[float]:
    """Seconds per ``PING``/``PONG`` round trip on an open connection, ``samples`` values.

    Creates one imposter, opens one connection, runs ``warmup`` untimed trips, then, once per
    sample, times ``trips`` round trips (each reply read and checked, :class:`AssertionError`
    if wrong) and appends elapsed / ``trips``. Closes the connection and deletes the imposter
    afterwards, also on failure.
    """
    if trips < 1 or samples < 1 or warmup < 0:
        raise ValueError(f"bad trips={trips}, samples={samples} or warmup={warmup}")
    values: list[float] = []
    with _open_pingpong(mb) as client:
        for _ in range(warmup):
            _exchange(client)
        for _ in range(samples):
            start = time.perf_counter_ns()
            for _ in range(trips):
                _exchange(client)
            values.append((time.perf_counter_ns() - start) / 1e9 / trips)
    return values


def roundtrip_each(mb: Mountebank, n: int, *, warmup: int = 3) -> list[float]:
    """Seconds of each of ``n`` ``PING``/``PONG`` round trips on one open connection, each
    timed alone (what ``case_exchange`` asks of every contender).

    Like :func:`roundtrip_samples`: one fresh imposter and connection, ``warmup`` untimed
    trips first (3, as the other contenders do; the process-wide JIT warm-up that
    :data:`WARMUP_TRIPS` is about is left to the caller's warm-up rounds), every reply
    checked, connection closed and imposter deleted afterwards, also on failure.
    """
    if n < 1 or warmup < 0:
        raise ValueError(f"bad n={n} or warmup={warmup}")
    times: list[float] = []
    with _open_pingpong(mb) as client:
        for _ in range(warmup):
            _exchange(client)
        for _ in range(n):
            start = time.perf_counter_ns()
            _exchange(client)
            times.append((time.perf_counter_ns() - start) / 1e9)
    return times


def main() -> int:
    """Self-check: install if needed, start mb, print the medians of both cases."""
    reason = unavailable()
    if reason is not None and reason.startswith(("not installed", "mountebank ")):
        install()
        reason = unavailable()
    if reason is not None:
        print(f"mountebank skipped: {reason}")
        return 1
    with Mountebank() as mb:
        print(f"mountebank {VERSION}: {' '.join(mb.command)}")
        print(f"startup: {mb.startup_seconds * 1e3:.0f} ms")
        for _ in range(20):
            lifecycle_sample(mb)
        lifecycle = [lifecycle_sample(mb) for _ in range(50)]
        print(f"lifecycle: median {statistics.median(lifecycle) * 1e6:.0f} µs over 50 samples")
        trips = roundtrip_samples(mb, 100, 10)
        print(f"round trip: median {statistics.median(trips) * 1e6:.1f} µs (10 x 100 trips)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
