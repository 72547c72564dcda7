"""The settings of fakepeer's pytest plugin, as data: each option's ini key, command-line
flag and help text, and the readers of their values. Nothing here needs pytest.

Every reader raises :class:`ValueError` with a message that names where the value came from
(``source``: ``"--loop-watchdog"``, ``"ini task_died"``, ...) and what was expected: the value
is the user's mistake, and the message is meant for them (the plugin shows it as a usage
error).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import random
import ssl
from collections.abc import Mapping, Sequence
from typing import Final, Literal, Protocol

from ._framing import Framing
from ._peer import FakePeer
from ._proxy import Proxy
from ._runtime import MAX_SEND_BUFFER
from ._transcript import DEFAULT_BUDGET
from ._udpserver import MAX_CLIENTS

__all__ = [
    "MARKERS",
    "ON",
    "OPTIONS",
    "SERVE_IN",
    "Option",
    "PeerFactory",
    "PeerOptions",
    "ProxyFactory",
    "seconds",
    "serve_in",
    "switch",
]

#: Where the ``fake_peer`` fixture may serve (``serve_in``).
SERVE_IN: Final = ("hub", "loop")
#: The words :func:`switch` reads as on; ``off``, ``false``, ``no`` and ``0`` are off.
ON: Final = ("on", "true", "yes", "1")
_OFF: Final = ("off", "false", "no", "0")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Option:
    """One setting of the plugin: ``name`` is its ini key (and the option's ``dest``),
    ``flag`` its command-line option, ``help`` the text both show; ``metavar`` names its
    value in ``--help``, ``choices`` lists the values it takes (None: any), and ``ini`` is
    False for an option of the command line only."""

    name: str
    flag: str
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    ini: bool = True


#: Every setting, in the order ``pytest --help`` lists them.
OPTIONS: Final = (
    Option(
        name="fakepeer_timeout",
        flag="--fakepeer-timeout",
        metavar="SECONDS",
        help="default timeout in seconds of fakepeer's wait_* sync points (default: 5)",
    ),
    Option(
        name="loop_watchdog",
        flag="--loop-watchdog",
        metavar="SECONDS",
        help="seconds an event loop of a test (asyncio on any thread, uvloop, trio, or the hub "
        "serving its fake peers) may go without getting back to its I/O wait before the loop "
        "watchdog fails that test (default: 0.5; 0 turns it off; also FAKEPEER_LOOP_WATCHDOG and "
        "@pytest.mark.loop_watchdog(seconds), which win in the order ini < environment < "
        "command line < marker)",
    ),
    Option(
        name="loop_watchdog_signal",
        flag="--loop-watchdog-signal",
        metavar="SIGNAL",
        help="the signal with which the loop watchdog interrupts the test's thread (default: "
        "SIGUSR2); signals it did not send go on to the handler that was there before",
    ),
    Option(
        name="loop_watchdog_exit",
        flag="--loop-watchdog-exit",
        metavar="SECONDS",
        help="seconds after which the loop watchdog ends the whole run when a test's code "
        "swallows its interruption (default: never; the test is interrupted again every limit, "
        "and pytest-timeout, if used, has the last word)",
    ),
    Option(
        name="fakepeer_serve_in",
        flag="--fakepeer-serve-in",
        choices=SERVE_IN,
        help="where the fake_peer fixture serves: 'hub' (a background thread, for any test and "
        "any client; the default) or 'loop' (an asyncio test's own event loop, for suites whose "
        "clients are all async: cheaper, but a blocking client would block its own peer)",
    ),
    Option(
        name="task_died",
        flag="--task-died",
        metavar="on|off",
        help="on or off: whether an exception in a task that nobody retrieves within the loop "
        "watchdog's limit (or in a loop callback) fails the test with TaskDied (default: on)",
    ),
    Option(
        name="fakepeer_diagrams",
        flag="--fakepeer-diagrams",
        metavar="DIR",
        help="write the sequence diagram of each fake peer (and proxy) of each failing test to "
        "DIR, as a self-contained HTML page named after the test and the peer, and name the "
        "file in the failure's report (default: off; relative to the current directory)",
    ),
    Option(
        name="fakepeer_pcapng",
        flag="--fakepeer-pcapng",
        metavar="DIR",
        help="write the conversation of each fake peer (and proxy) of each failing test to DIR "
        "as a pcapng capture for Wireshark, named after the test and the peer, and name the "
        "file in the failure's report (default: off; relative to the current directory)",
    ),
    Option(
        name="fakepeer_seed",
        flag="--fakepeer-seed",
        metavar="N",
        ini=False,
        help="seed of the network faults' randomness, to replay a run (default: a new one each "
        "session, shown in the report header)",
    ),
)


#: The markers, as ``pytest --markers`` shows them.
MARKERS: Final = (
    "fakepeer(framing=None, reply_framing=None, name='fake peer', host='127.0.0.1', port=0, "
    "unix=None, transport='tcp', timeout=5.0, external=False, max_send_buffer=4194304, "
    "transcript_budget=65536, max_clients=1024, serve_in='hub', tls=False, "
    "tls_hostnames=None, tls_min_version=None, tls_max_version=None, tls_alpn=None, "
    "tls_client_cert=False): "
    "options of the fake_peer fixture for this test",
    "loop_watchdog(seconds): the loop watchdog's limit for this test (0 turns it off)",
    "task_died(on): False turns TaskDied off for this test, True on (whatever the "
    "task_died option says)",
)


def seconds(value: object, source: str, *, zero: bool = False) -> float:
    """``value`` (a number, or its text) as a number of seconds: positive, or also 0 with
    ``zero``; finite. :class:`ValueError` otherwise, naming ``source``."""
    try:
        number = float(value)  # type: ignore[arg-type]  # validated right here
    except (TypeError, ValueError):
        raise ValueError(f"{source}: expected a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        kind = "a number of seconds >= 0" if zero else "a positive number of seconds"
        raise ValueError(f"{source}: expected {kind}, got {value!r}")
    return number


def switch(value: object, source: str) -> bool:
    """``value`` as on or off: a bool, 0 or 1, or a word of :data:`ON` (or ``off``,
    ``false``, ``no``, ``0``), in any case. :class:`ValueError` otherwise, naming
    ``source``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # task_died(0), as the docs allow
        return bool(value)
    word = value.strip().lower() if isinstance(value, str) else None
    if word in ON:
        return True
    if word in _OFF:
        return False
    raise ValueError(f"{source}: expected on or off (true or false), got {value!r}")


def serve_in(value: object, source: str) -> str:
    """``value`` if it is one of :data:`SERVE_IN`; :class:`ValueError` otherwise, naming
    ``source``."""
    if value not in SERVE_IN:
        raise ValueError(f"{source}: expected 'hub' or 'loop', got {value!r}")
    return str(value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PeerOptions:
    """Options of a peer made by the fixtures; marker keywords replace fields by name."""

    framing: Framing | None = None
    reply_framing: Framing | None = None
    name: str = "fake peer"
    host: str = "127.0.0.1"
    port: int = 0
    unix: bool | str | os.PathLike[str] | None = None
    transport: str = "tcp"
    timeout: float = 5.0
    seed: int | None = None
    external: bool = False
    max_send_buffer: int = MAX_SEND_BUFFER
    transcript_budget: int | None = DEFAULT_BUDGET
    max_clients: int = MAX_CLIENTS
    serve_in: str = "hub"
    tls: bool | Literal["starttls"] = False
    tls_hostnames: Sequence[str] | None = None
    tls_min_version: ssl.TLSVersion | None = None
    tls_max_version: ssl.TLSVersion | None = None
    tls_alpn: Sequence[str] | None = None
    tls_client_cert: bool = False

    @classmethod
    def configure(
        cls, *, ini: Mapping[str, object], command_line: Mapping[str, object], seed: object
    ) -> PeerOptions:
        """The options the settings ask for: ``fakepeer_timeout`` (seconds) and
        ``fakepeer_serve_in`` (see :data:`SERVE_IN`), keys of ``ini`` and
        ``command_line`` (the latter winning; a missing key, None or ``""`` is unset),
        with the session's fault ``seed`` (a whole number or its text, as
        ``--fakepeer-seed`` gives it; None draws one). :class:`ValueError` for a wrong
        value."""
        try:
            chosen = random.SystemRandom().randrange(1 << 32) if seed is None else int(seed)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise ValueError(f"--fakepeer-seed: expected a whole number, got {seed!r}") from None
        options = cls(seed=chosen)
        for value, where in (
            (ini.get("fakepeer_timeout"), "ini fakepeer_timeout"),
            (command_line.get("fakepeer_timeout"), "--fakepeer-timeout"),
        ):
            if value not in (None, ""):
                options = dataclasses.replace(options, timeout=seconds(value, where))
        for value, where in (
            (ini.get("fakepeer_serve_in"), "ini fakepeer_serve_in"),
            (command_line.get("fakepeer_serve_in"), "--fakepeer-serve-in"),
        ):
            if value not in (None, ""):
                options = dataclasses.replace(options, serve_in=serve_in(value, where))
        return options

    def but(self, given: Mapping[str, object], allowed: tuple[str, ...] = ()) -> PeerOptions:
        """These options with the ``given`` keywords replaced (only the fields named in
        ``allowed``, all by default): :class:`TypeError` naming the unknown ones and the
        choices. The values are checked where they are used (:meth:`peer`)."""
        __tracebackhide__ = True
        allowed = allowed or tuple(field.name for field in dataclasses.fields(self))
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise TypeError(
                f"unknown fakepeer option(s): {', '.join(unknown)}; "
                f"the options are: {', '.join(allowed)}"
            )
        return dataclasses.replace(self, **given)  # type: ignore[arg-type]

    def seed_for(self, test: str, number: int) -> int:
        """The seed of the ``number``-th peer (from 0) a fixture makes for ``test`` (its
        id): one that follows from the session's seed, the test and the number, so the
        session's seed replays it wherever it runs."""
        digest = hashlib.sha256(f"{self.seed}/{test}/{number}".encode())
        return int.from_bytes(digest.digest()[:4], "big")

    def peer(self) -> FakePeer:
        """A :class:`~fakepeer.FakePeer` with these options (``serve_in`` aside)."""
        return FakePeer(
            seed=self.seed,
            framing=self.framing,
            reply_framing=self.reply_framing,
            name=self.name,
            host=self.host,
            port=self.port,
            unix=self.unix,
            timeout=self.timeout,
            external=self.external,
            max_send_buffer=self.max_send_buffer,
            transcript_budget=self.transcript_budget,
            tls=self.tls,
            tls_hostnames=self.tls_hostnames,
            tls_min_version=self.tls_min_version,
            tls_max_version=self.tls_max_version,
            tls_alpn=self.tls_alpn,
            transport=self.transport,
            max_clients=self.max_clients,
            tls_client_cert=self.tls_client_cert,
        )

    def proxy(
        self,
        upstream: tuple[str, int] | str | os.PathLike[str],
        *,
        upstream_tls: bool | ssl.SSLContext = False,
        upstream_server_hostname: str | None = None,
    ) -> Proxy:
        """A :class:`~fakepeer.Proxy` in front of ``upstream`` with these options
        (``framing``, ``reply_framing``, ``serve_in`` and the UDP ones aside; ``tls`` must be
        a bool)."""
        return Proxy(
            upstream,
            seed=self.seed,
            name=self.name,
            host=self.host,
            port=self.port,
            unix=self.unix,
            timeout=self.timeout,
            external=self.external,
            max_send_buffer=self.max_send_buffer,
            transcript_budget=self.transcript_budget,
            tls=self.tls,  # type: ignore[arg-type]  # "starttls": the Proxy's ScriptError
            tls_hostnames=self.tls_hostnames,
            tls_min_version=self.tls_min_version,
            tls_max_version=self.tls_max_version,
            tls_alpn=self.tls_alpn,
            upstream_tls=upstream_tls,
            upstream_server_hostname=upstream_server_hostname,
            tls_client_cert=self.tls_client_cert,
        )


class PeerFactory(Protocol):
    """The type of the ``fake_peer_factory`` fixture."""

    def __call__(
        self,
        *,
        framing: Framing | None = ...,
        reply_framing: Framing | None = ...,
        name: str = ...,
        host: str = ...,
        port: int = ...,
        unix: bool | str | os.PathLike[str] | None = ...,
        transport: str = ...,
        timeout: float = ...,
        seed: int | None = ...,
        external: bool = ...,
        max_send_buffer: int = ...,
        transcript_budget: int | None = ...,
        max_clients: int = ...,
        serve_in: str = ...,
        tls: bool | Literal["starttls"] = ...,
        tls_hostnames: Sequence[str] | None = ...,
        tls_min_version: ssl.TLSVersion | None = ...,
        tls_max_version: ssl.TLSVersion | None = ...,
        tls_alpn: Sequence[str] | None = ...,
        tls_client_cert: bool = ...,
    ) -> FakePeer: ...


class ProxyFactory(Protocol):
    """The type of the ``fake_proxy_factory`` fixture."""

    def __call__(
        self,
        upstream: tuple[str, int] | str | os.PathLike[str],
        *,
        name: str = ...,
        host: str = ...,
        port: int = ...,
        unix: bool | str | os.PathLike[str] | None = ...,
        timeout: float = ...,
        seed: int | None = ...,
        external: bool = ...,
        max_send_buffer: int = ...,
        transcript_budget: int | None = ...,
        tls: bool = ...,
        tls_hostnames: Sequence[str] | None = ...,
        tls_min_version: ssl.TLSVersion | None = ...,
        tls_max_version: ssl.TLSVersion | None = ...,
        tls_alpn: Sequence[str] | None = ...,
        upstream_tls: bool | ssl.SSLContext = ...,
        upstream_server_hostname: str | None = ...,
    ) -> Proxy: ...
