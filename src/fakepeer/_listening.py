"""Where a peer listens: :func:`where` checks the options when the peer is made, :func:`bind`
makes the listening sockets when it serves, :func:`release` removes what it made on disk.

TCP: ``host`` is a literal address (``127.0.0.1``, ``::1``, ``[::1]``) or a name
(``localhost``), which listens on every address the name resolves to (IPv4 first; for
``localhost``, both ``127.0.0.1`` and ``::1`` whatever the hosts file says), on one port:
the first address is bound with ``port`` (0: the OS chooses), the others with the port it
got, so a client that resolves the name to any of them is served. An address of a name the
machine cannot bind (``::1`` with IPv6 off) is left out; a literal one is an error.

Unix: ``unix=True`` listens on a fresh path in a private directory (made with
:mod:`tempfile`, removed with the directory at the end); ``unix=PATH`` on that path, the
socket file removed at the end. An existing file there is refused, unless it is a socket
nothing listens on (left over by a run that crashed): that one is replaced.

Every failure to listen is a :class:`~fakepeer.ScriptError` naming the address and the
reason, never a raw :class:`OSError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import os
import shutil
import socket
import stat
import sys
import tempfile
from typing import Final

from ._errors import ScriptError

__all__ = ["Where", "bind", "describe", "release", "where"]

#: How many times a name's port is chosen again when another of its addresses has it taken.
_ATTEMPTS: Final = 8
#: Why an address of a name is left out: the machine cannot bind it (no IPv6, say).
_UNAVAILABLE: Final = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT)


@dataclasses.dataclass
class Where:
    """Where to listen, as checked: ``hosts`` (literal addresses, in binding order) and
    ``port``, or ``path`` (a Unix socket; None until bound for a ``private`` one).
    ``named``: ``hosts`` came from a name (addresses it cannot bind are left out).
    ``spelled`` is the option as given, for error messages."""

    owner: str
    spelled: str
    hosts: tuple[str, ...] = ()
    port: int = 0
    named: bool = False
    unix: bool = False
    path: str | None = None
    private: bool = False
    made: bool = False  # a socket file (or a private directory) of ours is on disk

    @property
    def directory(self) -> str | None:
        """The private directory of a ``unix=True`` socket, once made."""
        return os.path.dirname(self.path) if self.private and self.path else None


# -- checking the options ----------------------------------------------------------------------


def where(
    host: object, port: object, unix: object, *, external: bool, owner: str = "FakePeer"
) -> Where:
    """The checked options; :class:`~fakepeer.ScriptError` for a wrong one or combination
    (``unix`` with a ``host`` or ``port`` other than the defaults, or with ``external``)."""
    __tracebackhide__ = True
    if not isinstance(external, bool):
        raise ScriptError(f"{owner}(external=...) takes True or False, got {external!r}")
    if unix is None or unix is False:
        hosts, named = check_host(host, external=external, owner=owner)
        return Where(owner, f"host={host!r}", hosts, _check_port(port, owner), named)
    if host != "127.0.0.1" or port != 0 or external:
        given = [f"host={host!r}"] if host != "127.0.0.1" else []
        given += [f"port={port!r}"] if port != 0 else []
        given += ["external=True"] if external else []
        raise ScriptError(
            f"{owner}(unix=..., {', '.join(given)}): a Unix socket peer listens on a path, "
            f"not on a host and port; give unix= or host=/port=, not both"
        )
    if unix is True:
        return Where(owner, "unix=True", unix=True, private=True)
    try:
        path = os.fspath(unix)  # type: ignore[call-overload]
    except TypeError:
        path = None
    if not isinstance(path, str) or not path:
        raise ScriptError(
            f"{owner}(unix=...) takes True (a fresh path in a private directory) or the "
            f"socket's path, a non-empty str or os.PathLike; got {unix!r}"
        )
    return Where(owner, f"unix={path!r}", unix=True, path=path)


def _check_port(port: object, owner: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ScriptError(
            f"{owner}(port=...) takes a port number from 0 to 65535 (0: the OS chooses a "
            f"free one), got {port!r}"
        )
    return port


def check_host(
    host: object, *, external: bool, owner: str = "FakePeer"
) -> tuple[tuple[str, ...], bool]:
    """The literal addresses to listen on for ``host``, and whether it was a name;
    :class:`~fakepeer.ScriptError` if it is empty, not a string, cannot be resolved, or is
    not loopback without ``external``.

    A name is resolved now, to every address it has (IPv4 first); ``localhost`` is both
    ``127.0.0.1`` and ``::1`` whatever the hosts file says (clients differ in which they
    try first). A wildcard
    (``0.0.0.0``, ``::``) or another interface's address listens beyond loopback: other hosts
    can reach the peer, which needs ``external=True`` said out loud.
    """
    __tracebackhide__ = True
    if not isinstance(host, str) or not host.strip():
        raise ScriptError(
            f"{owner}(host=...) takes the address to listen on, such as '127.0.0.1' or "
            f"'::1'; got {host!r}. An empty host would listen on every interface: for that, "
            f"say host='0.0.0.0' and external=True"
        )
    if "/" in host or host.startswith("~"):
        raise ScriptError(
            f"{owner}(host={host!r}): a host is an address or a name, and this looks like a "
            f"path; a Unix domain socket peer is {owner}(unix={host!r})"
        )
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        addresses = [ipaddress.ip_address(literal)]
        named = False
    except ValueError:
        addresses = _resolve(host, owner)
        named = True
    for address in addresses:
        if not address.is_loopback and not external:
            what = "every interface" if address.is_unspecified else "a non-loopback address"
            raise ScriptError(
                f"{owner}(host={host!r}) listens on {what}, so other hosts could reach the "
                f"peer; say external=True if that is meant (the default, '127.0.0.1', is "
                f"loopback only)"
            )
    return tuple(str(address) for address in addresses), named


def _resolve(host: str, owner: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        hint = ""
        if host.startswith("[") or host.endswith("]") or host.count(":") > 1:
            hint = "; an IPv6 address is written '::1' or '[::1]'"
        elif ":" in host:
            name, _, port = host.rpartition(":")
            hint = f"; the port is a keyword of its own: host={name!r}, port={port}"
        raise ScriptError(f"{owner}(host={host!r}): cannot resolve it: {exc}{hint}") from None
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if host.lower().rstrip(".") == "localhost":  # either loopback, whatever the hosts file
        addresses += [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    for address in addresses:
        if address not in found:
            found.append(address)
    return sorted(found, key=lambda address: address.version)  # IPv4 first, else in order


# -- listening ----------------------------------------------------------------------------------


def bind(where: Where, backlog: int) -> list[socket.socket]:
    """Non-blocking sockets listening where ``where`` says (one for a Unix socket or a
    literal host, one per address of a name); ``where.port`` (and ``where.path`` for
    ``unix=True``) is set to what was bound. :class:`~fakepeer.ScriptError` if nothing can
    listen there, naming the address and the reason."""
    __tracebackhide__ = True
    if where.unix:
        return [_bind_unix(where, backlog)]
    for _attempt in range(_ATTEMPTS):
        sockets = _bind_hosts(where, backlog)
        if sockets is not None:
            return sockets
    raise _failed(where, where.hosts[-1], where.port, OSError(errno.EADDRINUSE, "taken"))


def _bind_hosts(where: Where, backlog: int) -> list[socket.socket] | None:
    """Bind every address of ``where`` on one port; None to try again with another port
    (another address of a name had the port the first one got)."""
    sockets: list[socket.socket] = []
    port = where.port
    try:
        for index, host in enumerate(where.hosts):
            try:
                sock = _tcp(host, port, backlog)
            except OSError as exc:
                if where.named and index and exc.errno in _UNAVAILABLE:
                    continue  # the name has an address this machine cannot bind
                if where.named and index and where.port == 0 and exc.errno == errno.EADDRINUSE:
                    _close(sockets)
                    return None
                raise _failed(where, host, port, exc) from None
            sockets.append(sock)
            port = int(sock.getsockname()[1])
    except BaseException:
        _close(sockets)
        raise
    where.port = port
    return sockets


def _tcp(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


def _bind_unix(where: Where, backlog: int) -> socket.socket:
    if where.path is None:  # unix=True: a fresh path in a private directory
        where.path = os.path.join(tempfile.mkdtemp(prefix="fakepeer-"), "peer.sock")
        where.made = True
    path = where.path
    _clear(where, path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        where.made = True
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if where.private:
            release(where)
        raise _failed(where, path, None, exc) from None
    return sock


def _clear(where: Where, path: str) -> None:
    """Make room for a socket at ``path``: nothing there, or a socket nobody listens on
    (removed); :class:`~fakepeer.ScriptError` for anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _failed(where, path, None, exc) from None
    if not stat.S_ISSOCK(mode):
        raise ScriptError(
            f"{where.owner}({where.spelled}): cannot listen on {path}: a file that is not a "
            f"socket is there; the peer does not replace it (remove it, or choose another path)"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:  # nothing listens: a socket file left over, replaced
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
    raise ScriptError(
        f"{where.owner}({where.spelled}): cannot listen on {path}: a server listens on it already"
    )


def _failed(where: Where, host: str, port: int | None, exc: OSError) -> ScriptError:
    address = host if port is None else describe(((host, port),))
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if port is None and "too long" in reason:
        # sun_path holds 108 bytes on Linux (104 on macOS and the BSDs), the NUL included
        reason += (
            f" ({len(os.fsencode(host))} bytes; a Unix socket's path holds at most 107 on "
            f"Linux, 103 on macOS: choose a shorter one, or unix=True for a fresh short path)"
        )
    return ScriptError(f"{where.owner}({where.spelled}): cannot listen on {address}: {reason}")


def _close(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def release(where: Where) -> None:
    """Remove what listening made on disk: the private directory of ``unix=True``, or the
    socket file of ``unix=PATH`` (if it is still a socket). Idempotent."""
    if not where.made or where.path is None:
        return
    where.made = False
    directory = where.directory
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
        return
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.lstat(where.path).st_mode):
            os.unlink(where.path)


def describe(addresses: tuple[tuple[str, int] | str, ...]) -> str:
    """The addresses as a transcript shows them: ``127.0.0.1:80``, ``[::1]:80``, a path."""
    shown = []
    for address in addresses:
        if isinstance(address, str):
            shown.append(f"unix socket {address}")
        else:
            host, port = address
            shown.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return ", ".join(shown)


def format_address(address: object) -> str:
    """A peer's or client's address as a transcript shows it: ``host:port``, ``[::1]:port``,
    a Unix socket's path (``unix socket client`` when unnamed)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, str | bytes):  # a Unix socket client: usually unnamed
        return os.fsdecode(address) or "unix socket client"
    return str(address) if address else "?"


def unsent(sock: socket.socket | None) -> int:
    """Bytes in ``sock``'s send queue the other end has not acknowledged (Linux's
    ``SIOCOUTQ``), 0 where the system cannot say."""
    if sock is None:
        return 0
    try:
        import fcntl  # noqa: PLC0415 - not on Windows
        import termios  # noqa: PLC0415

        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (ImportError, OSError, AttributeError):
        return 0
    return int.from_bytes(queued, sys.byteorder, signed=True)
