"""Fixes of reviewer C's findings (issue 15): early reply checks, RESP nesting, UDP size,
MQTT PUBREL and the 3.1.1/5 PUBLISH ambiguity. Every wait is bounded."""

from __future__ import annotations

import socket
import threading

import pytest

from fakepeer import Error, FakePeer, Lines, ScriptError
from fakepeer.protocols import http1, resp

TIMEOUT = 5.0


def _exchange(address: tuple[str, int], data: bytes) -> bytes:
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    return received


class Limited:
    """A custom framing refusing long messages with a ScriptError; holds a lock (no copy)."""

    streaming = False

    def __init__(self, lock: bool = False) -> None:
        self.lock = threading.Lock() if lock else None

    def decode(self, buffer: bytes, eof: bool) -> tuple[list[bytes], int]:
        return Lines().decode(buffer, eof)

    def encode(self, message: bytes) -> bytes:
        if len(message) > 3:
            raise ScriptError(f"{len(message)} bytes: at most 3")
        return message + b"\n"


def test_a_custom_framings_script_error_still_fails_at_the_rule() -> None:
    peer = FakePeer(framing=Limited())
    with pytest.raises(ScriptError, match=r"\.reply\(\) on expect #1 .*: 4 bytes: at most 3"):
        peer.expect(b"a").reply(b"xxxx")


def test_a_custom_framing_that_cannot_be_copied_is_checked_as_it_sends() -> None:
    peer = FakePeer(framing=Limited(lock=True))
    peer.expect(b"a").reply(b"xxxx")  # no early check: a lock cannot be deep-copied
    with pytest.raises(Error, match="4 bytes: at most 3"), peer.serve():
        assert _exchange(peer.address, b"a\n") == b""


def test_a_deeply_nested_resp_reply_is_sent_whole() -> None:
    nested = b"*1\r\n" * 3000 + b":1\r\n"
    peer = FakePeer(framing=resp.framing())
    peer.expect(resp.command("GET", "k")).reply(nested)
    with peer.serve():
        assert _exchange(peer.address, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") == nested


def test_a_deeply_nested_resp_reply_missing_its_last_value_is_a_script_error() -> None:
    peer = FakePeer(framing=resp.framing())
    with pytest.raises(ScriptError, match="ends before a value the ones before it announce"):
        peer.expect(resp.command("GET", "k")).reply(b"*2\r\n" * 3000 + b":1\r\n")


def test_a_udp_constant_reply_too_big_for_a_datagram_fails_at_its_line() -> None:
    peer = FakePeer(transport="udp")
    peer.expect(b"hi").reply(b"x" * 65507)  # the largest UDP payload over IPv4: fine
    with pytest.raises(ScriptError) as caught:
        peer.expect(b"hi").reply(b"x" * 65508)
    assert caught.value.diagnosis.endswith(
        "a reply of 65508 bytes is more than one UDP datagram carries (65,507 bytes, the "
        "largest UDP payload over IPv4): split it into several replies, one datagram each"
    ), caught.value.diagnosis


def test_a_udp_reply_callable_too_big_for_a_datagram_fails_the_test() -> None:
    peer = FakePeer(transport="udp")
    peer.expect(b"hi").reply(lambda data: b"x" * 70000)
    too_big = "a reply of 70000 bytes is more than one UDP datagram"
    with pytest.raises(Error, match=too_big), peer.serve():  # noqa: PT012
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"hi", peer.address)
        peer.wait_until_done(timeout=TIMEOUT)
    assert " sent " not in str(peer.transcript), peer.transcript


def test_an_http_reply_without_the_blank_line_ending_its_head_is_a_script_error() -> None:
    peer = FakePeer(framing=http1.framing())
    rule = peer.expect(http1.request("GET", "/"))
    with pytest.raises(ScriptError) as caught:
        rule.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n")
    assert caught.value.diagnosis.endswith(
        "http1.framing(): the reply 'HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\n' has a status "
        "line, but no blank line ('\\r\\n\\r\\n') ends its head, so the client waits for more "
        "headers; build it with http1.response(200, b'body', headers={...}) (to send other "
        "bytes on purpose, pass FakePeer(framing=http1.framing(), reply_framing=Raw()))"
    ), caught.value.diagnosis
    rule.reply(b"HTTP/1.1 204 No Content\r\n\r\n")  # a whole head: fine
