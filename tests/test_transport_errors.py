"""Where a peer listens, said wrong: each mistake a new user makes is a ScriptError that
names what was given and the spelling that works (issue 14's "clear errors")."""

from __future__ import annotations

import pytest

from fakepeer import FakePeer, ScriptError


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"host": "/tmp/app.sock"},
            "FakePeer(host='/tmp/app.sock'): a host is an address or a name, and this looks "
            "like a path; a Unix domain socket peer is FakePeer(unix='/tmp/app.sock')",
        ),
        (
            {"host": "[::1"},
            "an IPv6 address is written '::1' or '[::1]'",
        ),
        (
            {"host": "localhost:8080"},
            "FakePeer(host='localhost:8080'): cannot resolve it: ",
        ),
        (
            {"host": "localhost:8080"},
            "the port is a keyword of its own: host='localhost', port=8080",
        ),
        (
            {"tls_hostnames": ["example.test"], "tls_alpn": ["h2"]},
            "FakePeer(tls_hostnames=..., tls_alpn=...) applies to a TLS peer: add tls=True",
        ),
    ],
)
def test_a_wrong_address_names_the_spelling_that_works(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ScriptError) as caught:
        FakePeer(**options)  # type: ignore[arg-type]
    assert message in str(caught.value)
