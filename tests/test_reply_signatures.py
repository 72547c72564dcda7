"""Which reply callables get the connection (issue 15, item 5): a second *required*
positional parameter, or a parameter named ``connection`` by keyword; a second parameter
with a default is the callable's own. Served for real, the client a blocking socket."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from fakepeer import Connection, FakePeer, Lines, ScriptError


def serve(reply: Callable[..., object]) -> bytes:
    peer = FakePeer(framing=Lines())
    peer.expect(b"PUBLISH").reply(reply)
    with peer.serve(), socket.create_connection(peer.address, timeout=5) as sock:
        sock.sendall(b"PUBLISH\n")
        return sock.recv(100)


def test_a_second_parameter_with_a_default_is_the_callables_own() -> None:
    # paho-style: def on_publish(message, qos=0): the connection used to land in qos
    def on_publish(message: bytes, qos: int = 0) -> str:
        return f"qos {qos + 1}"

    assert serve(on_publish) == b"qos 1\n"


def test_a_second_required_parameter_gets_the_connection_whatever_its_name() -> None:
    def answer(message: bytes, conn: Connection) -> str:
        return f"#{conn.id} {type(conn).__name__}"

    assert serve(answer) == b"#1 Connection\n"


@pytest.mark.parametrize("spelling", ["keyword-only", "with a default"])
def test_a_parameter_named_connection_gets_it_by_keyword(spelling: str) -> None:
    def keyword_only(message: bytes, *, connection: Connection) -> str:
        return f"#{connection.id}"

    def with_default(message: bytes, connection: Connection | None = None) -> str:
        assert connection is not None
        return f"#{connection.id}"

    assert serve(keyword_only if spelling == "keyword-only" else with_default) == b"#1\n"


def test_an_async_callable_follows_the_same_rule() -> None:
    async def answer(message: bytes, qos: int = 0, *, connection: Connection) -> str:
        return f"qos {qos} #{connection.id}"

    assert serve(answer) == b"qos 0 #1\n"


def test_a_signature_that_fits_neither_says_the_rule() -> None:
    peer = FakePeer(framing=Lines())
    with pytest.raises(ScriptError) as caught:
        peer.expect(b"PUBLISH").reply(lambda message, a, b: b"")
    assert str(caught.value).endswith(
        "must accept (match) or (match, connection): the connection goes to a second "
        "required positional parameter, or to one named connection"
    )
