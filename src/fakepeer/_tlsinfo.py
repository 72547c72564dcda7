"""What a TLS handshake agreed: :class:`TLSInfo`, and the assertions on it.

The runtime reads a finished handshake's :class:`ssl.SSLObject` once (:func:`agreed`); the
core keeps the record on the connection (``connection.tls``) and says it in the transcript's
``tls`` event (:meth:`TLSInfo.describe`). :func:`check` is the pure part of
``peer.assert_tls()``. No I/O: the SSL object is only read.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from ._errors import ScriptError

__all__ = ["TLSInfo", "agreed", "check", "client_subject", "reason", "version"]


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What the TLS handshake of one connection agreed (``connection.tls``).

    - ``version``: the protocol version, an :class:`ssl.TLSVersion` (such as
      ``ssl.TLSVersion.TLSv1_3``).
    - ``cipher``: the cipher suite's OpenSSL name, such as ``"TLS_AES_256_GCM_SHA384"``.
    - ``sni``: the server name the client asked for (SNI), or None if it sent none (clients
      send no IP address as a name).
    - ``alpn``: the application protocol agreed (ALPN), such as ``"h2"``, or None.
    - ``client_subject``: the subject of the client's certificate (mutual TLS), or None when
      the client showed none.
    - ``starttls``: True if the connection was upgraded in the middle (``.start_tls()``),
      False if it was TLS from its first byte (``FakePeer(tls=True)``).
    """

    version: ssl.TLSVersion | None
    cipher: str | None
    sni: str | None
    alpn: str | None
    client_subject: str | None = None
    starttls: bool = False

    def describe(self) -> str:
        """The transcript's words: ``TLSv1.3, TLS_AES_256_GCM_SHA384, sni 'localhost'``."""
        parts = [_version_name(self.version)]
        if self.cipher:
            parts.append(self.cipher)
        parts.append(f"sni {self.sni!r}" if self.sni else "no sni")
        if self.alpn:
            parts.append(f"alpn {self.alpn!r}")
        if self.client_subject:
            parts.append(f"client cert {self.client_subject!r}")
        return ", ".join(parts)


def _version_name(version: ssl.TLSVersion | None) -> str:
    if version is None:
        return "unknown version"
    return version.name.replace("_", ".")  # TLSv1_3 -> TLSv1.3, as OpenSSL says it


def _version(name: object) -> ssl.TLSVersion | None:
    if not isinstance(name, str):
        return None
    return ssl.TLSVersion.__members__.get(name.replace(".", "_"))


def agreed(ssl_object: Any, names: Mapping[object, str], *, starttls: bool = False) -> TLSInfo:
    """What the finished handshake of ``ssl_object`` agreed; ``names``: the SNI each
    handshake's client sent, by its SSL object (see :class:`fakepeer._tls.TLS`)."""
    cipher = ssl_object.cipher()
    return TLSInfo(
        version=_version(ssl_object.version()),
        cipher=str(cipher[0]) if cipher else None,
        sni=names.get(ssl_object),
        alpn=ssl_object.selected_alpn_protocol(),
        client_subject=client_subject(ssl_object) if ssl_object.server_side else None,
        starttls=starttls,
    )


def client_subject(ssl_object: Any) -> str | None:
    """The common name of the client's certificate (mutual TLS), or its whole subject when
    it has none; None when the client sent none."""
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    pairs = [pair for rdn in cert.get("subject", ()) for pair in rdn]
    names = [value for key, value in pairs if key == "commonName"]
    return str(names[0]) if names else ", ".join(f"{key}={value}" for key, value in pairs)


def check(
    infos: Sequence[tuple[int, TLSInfo | None]], expected: Mapping[str, object]
) -> str | None:
    """Did every connection of ``infos`` (its number, its TLS record or None for plain
    text) agree on every field of ``expected``? None if so, else the diagnosis."""
    if not infos:
        return "expected TLS connections, but no client connected"
    names = {field.name for field in fields(TLSInfo)}
    lines: list[str] = []
    for number, info in infos:
        if info is None:
            lines.append(f"  connection #{number}: plain text (no TLS handshake finished)")
            continue
        for name, want in expected.items():
            assert name in names, name
            got = getattr(info, name)
            if got != want:
                lines.append(f"  connection #{number}: {name} is {_show(got)}, not {_show(want)}")
    if not lines:
        return None
    wanted = ", ".join(f"{name}={_show(value)}" for name, value in expected.items())
    return f"expected TLS with {wanted or 'any parameters'}\n" + "\n".join(lines)


def _show(value: object) -> str:
    if isinstance(value, ssl.TLSVersion):
        return f"ssl.TLSVersion.{value.name}"
    return repr(value)


def reason(exc: BaseException) -> str:
    """Why a handshake failed, without the line of CPython's C source it was raised at (the
    same transcript on every Python)."""
    return re.sub(r" \(_ssl\.c:\d+\)$", "", str(exc)) or type(exc).__name__


def version(name: str) -> ssl.TLSVersion:
    """The :class:`ssl.TLSVersion` named ``name`` as OpenSSL and the transcript say it
    (``"TLSv1.3"``) or as the enum does (``"TLSv1_3"``); :class:`~fakepeer.ScriptError`
    for another name."""
    found = _version(name)
    if found is None or found in (
        ssl.TLSVersion.MINIMUM_SUPPORTED,
        ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ):
        known = ", ".join(
            repr(_version_name(v)) for v in ssl.TLSVersion if v.name.startswith(("SSL", "TLS"))
        )
        raise ScriptError(
            f"assert_tls(version={name!r}): not a TLS version; one of {known}, or an ssl.TLSVersion"
        )
    return found
