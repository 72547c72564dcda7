"""TLS for a peer: :class:`TLS`, the test's certificates and the server's context.

``FakePeer(tls=True)`` makes a certificate authority for the test (with trustme, the
optional extra ``fakepeer[tls]``) and a server certificate it signs for the peer's host
names; the server context serves it, the client context trusts it. What a handshake agreed
(version, cipher, the name the client sent, the application protocol) is what
:func:`describe` says, for the transcript's ``tls`` event.
"""

from __future__ import annotations

import re
import shutil
import ssl
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ._errors import ScriptError

__all__ = ["EXTRA", "TLS", "configure", "describe", "reason"]

#: What installs what ``tls=True`` needs.
EXTRA: Final = "pip install 'fakepeer[tls]'"


def _trustme(owner: str) -> Any:
    try:
        import trustme  # noqa: PLC0415 - an optional extra, imported when asked for
    except ImportError:
        raise ScriptError(
            f"{owner}(tls=True) makes the test's certificates with trustme, which is not "
            f"installed: {EXTRA}"
        ) from None
    return trustme


def _version(value: object, what: str, owner: str) -> ssl.TLSVersion | None:
    if value is None or isinstance(value, ssl.TLSVersion):
        return value
    raise ScriptError(f"{owner}({what}=...) takes an ssl.TLSVersion or None, got {value!r}")


def _alpn(value: object, owner: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ScriptError(
            f"{owner}(tls_alpn=...) takes a list of protocol names, such as ['h2', "
            f"'http/1.1'], got {value!r}"
        )
    names = list(value)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ScriptError(
            f"{owner}(tls_alpn=...) takes a non-empty list of protocol names (str), got {value!r}"
        )
    return names


def _hostnames(value: object, hosts: Sequence[str], owner: str) -> list[str]:
    if value is None:
        names = [*hosts, "localhost"]
    elif isinstance(value, str) or not isinstance(value, Sequence):
        raise ScriptError(
            f"{owner}(tls_hostnames=...) takes a list of host names or addresses, got {value!r}"
        )
    else:
        names = list(value)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ScriptError(
            f"{owner}(tls_hostnames=...) takes a non-empty list of host names (str), got {value!r}"
        )
    return list(dict.fromkeys(names))


class TLS:
    """The test's certificate authority, the peer's certificate and both contexts.

    ``hostnames`` (default: the addresses listened on, ``hosts``, and ``"localhost"``) are
    the names and addresses the certificate is valid for; ``min_version``/``max_version``
    bound the versions the server accepts; ``alpn`` lists the application protocols it
    offers. Raises :class:`~fakepeer.ScriptError` for a wrong option, or when trustme is
    not installed.
    """

    def __init__(
        self,
        hosts: Sequence[str],
        *,
        hostnames: Sequence[str] | None = None,
        min_version: ssl.TLSVersion | None = None,
        max_version: ssl.TLSVersion | None = None,
        alpn: Sequence[str] | None = None,
        owner: str = "FakePeer",
    ) -> None:
        self.hostnames = _hostnames(hostnames, hosts, owner)
        low = _version(min_version, "tls_min_version", owner)
        high = _version(max_version, "tls_max_version", owner)
        self.alpn = _alpn(alpn, owner)
        self.ca = _trustme(owner).CA()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert(*self.hostnames).configure_cert(context)
        if low is not None:
            context.minimum_version = low
        if high is not None:
            context.maximum_version = high
        if self.alpn:
            context.set_alpn_protocols(self.alpn)
        # the name each handshake's client sent (SNI), by its SSLObject
        self.names: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()
        context.sni_callback = self._sni
        self.server_context = context
        self.ca_pem: bytes = self.ca.cert_pem.bytes()
        self._directory: str | None = None
        self._cleanup: weakref.finalize[Any, Any] | None = None
        self.removed = False

    def _sni(self, ssl_object: object, name: str | None, _context: ssl.SSLContext) -> None:
        if name is not None:
            self.names[ssl_object] = name

    def client_context(self) -> ssl.SSLContext:
        """A new client context that trusts the test's CA (and nothing else), checks the
        host name, and offers the peer's ALPN protocols."""
        context = ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))
        if self.alpn:
            context.set_alpn_protocols(self.alpn)
        return context

    def ca_path(self) -> str:
        """The CA certificate as a PEM file in a private directory, made on first use."""
        if self.removed:
            raise ScriptError(
                "ca_path: the file was removed when the peer stopped; ask for it while the "
                "peer serves (ca_pem, the same certificate as bytes, stays)"
            )
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="fakepeer-tls-")
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._directory, True)
            (Path(self._directory) / "ca.pem").write_bytes(self.ca_pem)
        return str(Path(self._directory) / "ca.pem")

    def remove(self) -> None:
        """Remove the CA file and its directory (the peer stopped); idempotent."""
        self.removed = True
        if self._cleanup is not None:
            self._cleanup()


def configure(
    tls: object,
    hosts: Sequence[str],
    *,
    owner: str,
    hostnames: Sequence[str] | None = None,
    min_version: ssl.TLSVersion | None = None,
    max_version: ssl.TLSVersion | None = None,
    alpn: Sequence[str] | None = None,
) -> TLS | None:
    """The :class:`TLS` a server of ``owner`` (``"FakePeer"``, ``"Proxy"``) serves for its
    ``tls=`` and ``tls_*=`` options, or None for plain TCP; :class:`~fakepeer.ScriptError`
    for a wrong option, or ``tls_*`` options without ``tls=True``."""
    if not isinstance(tls, bool):
        raise ScriptError(f"{owner}(tls=...) takes True or False, got {tls!r}")
    if tls:
        return TLS(
            hosts,
            hostnames=hostnames,
            min_version=min_version,
            max_version=max_version,
            alpn=alpn,
            owner=owner,
        )
    if any(option is not None for option in (hostnames, min_version, max_version, alpn)):
        raise ScriptError(f"{owner}(tls_...=...) options need tls=True")
    return None


def reason(exc: BaseException) -> str:
    """Why a handshake failed, without the line of CPython's C source it was raised at (the
    same transcript on every Python)."""
    return re.sub(r" \(_ssl\.c:\d+\)$", "", str(exc)) or type(exc).__name__


def describe(ssl_object: Any, names: Mapping[Any, str]) -> str:
    """What a finished handshake agreed, as the transcript's ``tls`` event says it
    (``names``: the name each handshake's client sent, by its SSL object)."""
    parts = [str(ssl_object.version())]
    cipher = ssl_object.cipher()
    if cipher:
        parts.append(str(cipher[0]))
    name = names.get(ssl_object)
    parts.append(f"sni {name!r}" if name else "no sni")
    protocol = ssl_object.selected_alpn_protocol()
    if protocol:
        parts.append(f"alpn {protocol!r}")
    return ", ".join(parts)
