"""Where a proxy's upstream server is and how to reach it: :func:`check` checks the options
when the proxy is made, :func:`connect` opens one connection when a client comes.

The upstream is ``(host, port)`` (IPv4, IPv6 with or without brackets, or a name) or the path
of a Unix socket (a :class:`str` or :class:`os.PathLike`: what ``peer.address`` is for a
``unix=`` peer). With ``upstream_tls`` the proxy is a TLS client of it: ``True`` verifies the
server against the system's CAs (:func:`ssl.create_default_context`), an
:class:`ssl.SSLContext` is used as given (one that trusts a test server's CA, say);
``upstream_server_hostname`` is the name sent (SNI) and checked against the certificate
(default: the upstream's host).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import ssl
from collections.abc import Callable
from typing import Any

from ._errors import ScriptError
from ._tlsinfo import agreed as handshake

__all__ = ["Upstream", "check", "connect"]


@dataclasses.dataclass(frozen=True)
class Upstream:
    """The checked upstream: ``address`` (``(host, port)``, host without brackets, or a Unix
    socket's path), ``text`` as the transcript shows it, and for TLS the client ``context``
    and ``server_hostname`` ("" when the context checks no name)."""

    address: tuple[str, int] | str
    text: str
    context: ssl.SSLContext | None = None
    server_hostname: str | None = None

    @property
    def tls(self) -> bool:
        return self.context is not None


def _address(upstream: object) -> tuple[str, int] | str:
    if isinstance(upstream, str | os.PathLike):
        path = os.fspath(upstream)
        if isinstance(path, str) and "/" in path:
            return path
    elif (
        isinstance(upstream, tuple)
        and len(upstream) == 2
        and isinstance(upstream[0], str)
        and upstream[0].strip()
        and not isinstance(upstream[1], bool)
        and isinstance(upstream[1], int)
        and 0 < upstream[1] <= 65535
    ):
        host, port = upstream
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return (host, port)
    raise ScriptError(
        f"Proxy(upstream=...) takes a (host, port) tuple (host: an address such as "
        f"'127.0.0.1' or '::1', or a name; port: 1 to 65535) or a Unix socket's path (a str "
        f"or os.PathLike with a '/' in it: './name' for one in this directory); got "
        f"{upstream!r}"
    )


def _text(address: tuple[str, int] | str) -> str:
    if isinstance(address, str):
        return f"unix socket {address}"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _context(upstream_tls: object) -> ssl.SSLContext | None:
    if upstream_tls is False or upstream_tls is None:
        return None
    if upstream_tls is True:
        return ssl.create_default_context()
    if isinstance(upstream_tls, ssl.SSLContext):
        if upstream_tls.protocol is ssl.PROTOCOL_TLS_SERVER:
            raise ScriptError(
                "Proxy(upstream_tls=...) takes a client context (the proxy is the upstream's "
                "client): ssl.create_default_context(cafile=...), not a PROTOCOL_TLS_SERVER "
                "one; the client-facing TLS is tls=True"
            )
        return upstream_tls
    raise ScriptError(
        f"Proxy(upstream_tls=...) takes True (verify the server against the system's CAs), "
        f"an ssl.SSLContext (for a test server: one that trusts its CA), or False; "
        f"got {upstream_tls!r}"
    )


def check(upstream: object, upstream_tls: object, server_hostname: object) -> Upstream:
    """The checked options; :class:`~fakepeer.ScriptError` for a wrong one or combination."""
    __tracebackhide__ = True
    address = _address(upstream)
    text = _text(address)
    context = _context(upstream_tls)
    if server_hostname is not None and (
        not isinstance(server_hostname, str) or not server_hostname
    ):
        raise ScriptError(
            f"Proxy(upstream_server_hostname=...) takes the host name the upstream's "
            f"certificate is checked against, a non-empty str; got {server_hostname!r}"
        )
    if context is None:
        if server_hostname is not None:
            raise ScriptError(
                f"Proxy(upstream_server_hostname={server_hostname!r}) without upstream_tls: "
                f"the name is only sent in a TLS handshake; add upstream_tls=True (or a "
                f"context), or leave the name out for a plain upstream"
            )
        return Upstream(address, text)
    if server_hostname is None:
        if isinstance(address, tuple):
            server_hostname = address[0]
        elif context.check_hostname:
            raise ScriptError(
                f"Proxy(upstream={address!r}, upstream_tls=...): a Unix socket has no host "
                f"name to check the server's certificate against; give "
                f"upstream_server_hostname= (a name the certificate is valid for)"
            )
        else:
            server_hostname = ""
    return Upstream(address, text, context, server_hostname)


async def connect(
    protocol: Callable[[], asyncio.Protocol], upstream: Upstream
) -> asyncio.BaseTransport:
    """Open a connection to ``upstream`` (a TLS one: handshake done) for ``protocol``; raises
    what the loop raises (:class:`OSError`, :class:`ssl.SSLError` for a failed handshake)."""
    loop = asyncio.get_running_loop()
    address = upstream.address
    tls: dict[str, Any] = {}
    if upstream.context is not None:
        tls = {"ssl": upstream.context, "server_hostname": upstream.server_hostname}
    if isinstance(address, str):
        transport, _ = await loop.create_unix_connection(protocol, address, **tls)
    else:
        transport, _ = await loop.create_connection(protocol, *address, **tls)
    return transport


def agreed(transport: asyncio.BaseTransport, upstream: Upstream) -> str | None:
    """What the upstream handshake agreed (the ``tls`` event's note), or None for plain TCP."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    name = upstream.server_hostname
    try:
        ipaddress.ip_address(name or "")
        name = None  # an address is checked, but not sent as SNI
    except ValueError:
        pass
    return handshake(ssl_object, {ssl_object: name} if name else {}).describe()
