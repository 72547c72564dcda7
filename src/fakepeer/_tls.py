"""TLS for a peer: :class:`TLS`, the test's certificates and the server's context.

``FakePeer(tls=True)`` makes a certificate authority for the test (with trustme, the
optional extra ``fakepeer[tls]``) and a server certificate it signs for the peer's host
names; the server context serves it, the client context trusts it. With mutual TLS
(``tls_client_cert=True``) the CA also signs a client certificate, which the server requires
and the client context presents. What a handshake agreed (version, cipher, the name the
client sent, the application protocol, the client's certificate) is a
:class:`~fakepeer.TLSInfo` (``_tlsinfo``), for ``connection.tls`` and the transcript's ``tls``
event.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ._errors import ScriptError
from ._tlsfaults import Alerting

__all__ = ["CLIENT_NAME", "EXTRA", "TLS", "configure"]

#: What installs what ``tls=True`` needs.
EXTRA: Final = "pip install 'fakepeer[tls]'"
#: The common name of the client certificate of mutual TLS (``tls_client_cert=True``).
CLIENT_NAME: Final = "fakepeer client"


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


#: The versions a peer may be bounded to: what OpenSSL still speaks, by name.
_VERSIONS: Final = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


def _versions(
    low: object, high: object, owner: str
) -> tuple[ssl.TLSVersion | None, ssl.TLSVersion | None]:
    checked = (_version(low, "tls_min_version", owner), _version(high, "tls_max_version", owner))
    for what, version in zip(("tls_min_version", "tls_max_version"), checked, strict=True):
        if version is not None and version not in _VERSIONS:
            raise ScriptError(
                f"{owner}({what}=ssl.TLSVersion.{version.name}): a peer serves TLSv1_2 or "
                "TLSv1_3 (TLS 1.0 and 1.1 are deprecated by RFC 8996 and refused by OpenSSL's "
                "default security level, SSLv3 long before; the MINIMUM/MAXIMUM_SUPPORTED "
                "aliases are not versions)"
            )
    minimum, maximum = checked
    if minimum is not None and maximum is not None and minimum > maximum:
        raise ScriptError(
            f"{owner}(tls_min_version=ssl.TLSVersion.{minimum.name}, "
            f"tls_max_version=ssl.TLSVersion.{maximum.name}): the minimum is above the "
            "maximum, so no version is left for a handshake; swap them"
        )
    return checked


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
    if sum(len(name.encode()) + 1 for name in names) > 65535:  # the list's 2-byte length
        raise ScriptError(
            f"{owner}(tls_alpn=...): the protocol names take over 65,535 bytes, more than "
            "the ALPN extension holds (RFC 7301 section 3.1)"
        )
    for name in names:
        if len(name.encode()) > 255:  # RFC 7301 section 3.1: a ProtocolName is 1 to 255 bytes
            raise ScriptError(
                f"{owner}(tls_alpn=...): a protocol name is 1 to 255 bytes (RFC 7301), and "
                f"{name[:20]!r}... is {len(name.encode())}"
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
    offers; ``client_cert`` (mutual TLS) makes a client certificate the CA signs, and the
    server requires one; ``starttls``: the peer serves plain text until a rule's
    ``.start_tls()``. Raises :class:`~fakepeer.ScriptError` for a wrong option, or when
    trustme is not installed.
    """

    def __init__(
        self,
        hosts: Sequence[str],
        *,
        hostnames: Sequence[str] | None = None,
        min_version: ssl.TLSVersion | None = None,
        max_version: ssl.TLSVersion | None = None,
        alpn: Sequence[str] | None = None,
        client_cert: bool = False,
        owner: str = "FakePeer",
        starttls: bool = False,
    ) -> None:
        #: Serve plain text first, and TLS only from a rule's ``.start_tls()`` on.
        self.starttls = starttls
        self.hostnames = _hostnames(hostnames, hosts, owner)
        self.versions = _versions(min_version, max_version, owner)
        self.alpn = _alpn(alpn, owner)
        if not isinstance(client_cert, bool):
            raise ScriptError(
                f"{owner}(tls_client_cert=...) takes True or False, got {client_cert!r}"
            )
        self.trustme = _trustme(owner)
        self.ca = self.trustme.CA()
        self.ca_pem: bytes = self.ca.cert_pem.bytes()
        # mutual TLS: the client's certificate, signed by the test's CA
        self.client_cert = self.ca.issue_cert(common_name=CLIENT_NAME) if client_cert else None
        # the name each handshake's client sent (SNI), by its SSLObject
        self.names: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()
        self.leaf = self.ca.issue_cert(*self.hostnames)  # the peer's certificate
        self.server_context = self.context_for(self.leaf)
        self.faulty: dict[str, ssl.SSLContext] = {}  # by fault name (see _tlsfaults)
        self.draws = 0  # handshakes that drew whether a handshake fault applies
        self._directory: str | None = None
        self._cleanup: weakref.finalize[Any, Any] | None = None
        self.removed = False

    def context_for(self, leaf: Any, trusted: bytes | None = None) -> ssl.SSLContext:
        """A server context serving ``leaf`` (a trustme certificate) with the peer's options;
        with mutual TLS, it requires a client certificate signed by ``trusted`` (PEM; default:
        the test's CA)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.configure_cert(context)
        low, high = self.versions
        if low is not None:
            context.minimum_version = low
        if high is not None:
            context.maximum_version = high
        if self.alpn:
            context.set_alpn_protocols(self.alpn)
        if self.client_cert is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=(trusted or self.ca_pem).decode("ascii"))
        context.sni_callback = self._sni
        context.sslobject_class = Alerting  # a failed handshake's alert reaches the client
        return context

    def _sni(self, ssl_object: object, name: str | None, _context: ssl.SSLContext) -> None:
        if name is not None:
            self.names[ssl_object] = name

    def client_context(self) -> ssl.SSLContext:
        """A new client context that trusts the test's CA (and nothing else), checks the
        host name, and offers the peer's ALPN protocols."""
        context = ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))
        if self.alpn:
            context.set_alpn_protocols(self.alpn)
        if self.client_cert is not None:
            self.client_cert.configure_cert(context)
        return context

    def client_pem(self, what: str, asked: str = "") -> bytes:
        """The client certificate (``what``: ``"cert"``) or its private key (``"key"``),
        PEM-encoded; :class:`~fakepeer.ScriptError` without mutual TLS."""
        leaf = self.client_cert
        if leaf is None:
            raise ScriptError(
                f"{asked or f'client_{what}_pem'}: this peer asks for no client certificate; "
                "FakePeer(tls=True, tls_client_cert=True) makes one (mutual TLS)"
            )
        blob = leaf.cert_chain_pems[0] if what == "cert" else leaf.private_key_pem
        return bytes(blob.bytes())

    def ca_path(self) -> str:
        """The CA certificate as a PEM file in a private directory, made on first use."""
        return self.path("ca_path", "ca.pem", self.ca_pem)

    def path(self, what: str, name: str, data: bytes) -> str:
        """``data`` as the file ``name`` in a private directory, made on first use (``what``
        names it in the error once the peer stopped)."""
        if self.removed:
            raise ScriptError(
                f"{what}: the file was removed when the peer stopped; ask for it while the "
                f"peer serves ({what.removesuffix('_path')}_pem, the same as bytes, stays)"
            )
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="fakepeer-tls-")
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._directory, True)
        file = Path(self._directory) / name
        if not file.exists():
            file.write_bytes(data)
        return str(file)

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
    client_cert: bool = False,
    starttls: bool = False,
) -> TLS | None:
    """The :class:`TLS` a server of ``owner`` (``"FakePeer"``, ``"Proxy"``) serves for its
    ``tls=`` and ``tls_*=`` options, or None for plain TCP. ``tls`` is True, False, or
    ``"starttls"`` where ``starttls`` says the server can upgrade (a peer's ``.start_tls()``).
    :class:`~fakepeer.ScriptError` for a wrong option, or ``tls_*`` options without TLS."""
    choices = "True, False or 'starttls'" if starttls else "True or False"
    if not isinstance(tls, bool) and not (starttls and tls == "starttls"):
        raise ScriptError(f"{owner}(tls=...) takes {choices}, got {tls!r}")
    if tls:
        return TLS(
            hosts,
            hostnames=hostnames,
            min_version=min_version,
            max_version=max_version,
            alpn=alpn,
            client_cert=client_cert,
            starttls=tls == "starttls",
            owner=owner,
        )
    options = {
        "tls_hostnames": hostnames,
        "tls_min_version": min_version,
        "tls_max_version": max_version,
        "tls_alpn": alpn,
        "tls_client_cert": client_cert,
    }
    given = [f"{name}=..." for name, value in options.items() if value not in (None, False)]
    if given:
        also = " (or tls='starttls')" if starttls else ""
        noun = "peer" if owner == "FakePeer" else owner.lower()
        raise ScriptError(
            f"{owner}({', '.join(given)}) applies to a TLS {noun}: add tls=True{also}"
        )
    return None
