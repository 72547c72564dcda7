"""Real conversations exported with ``to_pcapng()`` and read by Wireshark's ``tshark``: the
dissectors named (HTTP, RESP, syslog, over TCP, TLS's inner plain text and UDP), no
malformed packet, no expert warning or error, no TCP analysis flag (lost segment,
retransmission...), FIN and RST where the conversation ended so.

``tshark`` is Debian's package; ``.ci/run`` installs it (tests/test_ci.py checks that).
The ports are random, so each run tells tshark which dissector a port is for (``-d``).
"""

from __future__ import annotations

import http.client
import logging
import logging.handlers
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fakepeer import ANY, FakePeer, Lines, Proxy, prefix
from fakepeer.protocols import http1, resp

TSHARK = shutil.which("tshark")
#: CI installs tshark (.ci/run): there, its absence fails the tests instead of skipping them.
pytestmark = pytest.mark.skipif(
    TSHARK is None and os.environ.get("CI") != "true",
    reason="tshark is not installed (Debian: apt-get install tshark; .ci/run installs it)",
)

#: Wireshark's expert severities (epan/proto.h): PI_WARN and PI_ERROR.
_WARN = 0x00600000
_FIELDS = (
    "frame.protocols",
    "tcp.srcport",
    "tcp.flags.fin",
    "tcp.flags.reset",
    "tcp.analysis.flags",
    "_ws.malformed",
    "_ws.expert.severity",
    "frame.comment",
)


def tshark(data: bytes, tmp_path: Path, *decode_as: str) -> list[dict[str, str]]:
    """The fields of each packet of the capture ``data``, as tshark reads it."""
    assert TSHARK is not None, "CI=true and no tshark: .ci/run should have installed it"
    path = tmp_path / "capture.pcapng"
    path.write_bytes(data)
    command = [TSHARK, "-r", str(path), "-n", "-T", "fields", "-E", "separator=|"]
    for rule in decode_as:
        command += ["-d", rule]
    for name in _FIELDS:
        command += ["-e", name]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [dict(zip(_FIELDS, line.split("|"), strict=True)) for line in done.stdout.splitlines()]


def assert_clean(packets: list[dict[str, str]]) -> None:
    """No malformed packet, no expert warning or error (but the warning Wireshark gives
    every RST: "Connection reset"), no TCP analysis flag."""
    assert packets
    for packet in packets:
        assert not packet["_ws.malformed"], packet
        assert not packet["tcp.analysis.flags"], packet
        severities = [int(s) for s in packet["_ws.expert.severity"].split(",") if s]
        limit = _WARN + 1 if packet["tcp.flags.reset"] == "1" else _WARN
        assert all(s < limit for s in severities), packet


def protocols(packets: list[dict[str, str]]) -> set[str]:
    return {packet["frame.protocols"] for packet in packets}


def test_an_http_exchange_decodes_as_http(tmp_path: Path) -> None:
    peer = FakePeer(framing=http1.framing(), name="web")
    peer.expect(http1.request("GET", "/a")).reply(http1.response(200, "first"))
    peer.expect(http1.request("POST", "/b")).reply(
        http1.response(201, "second", {"Connection": "close"})
    ).close()
    with peer.serve():
        client = http.client.HTTPConnection(peer.host, peer.port, timeout=5)
        client.request("GET", "/a")
        assert client.getresponse().read() == b"first"
        client.request("POST", "/b", body=b'{"x": 1}')
        assert client.getresponse().read() == b"second"
        client.close()
    packets = tshark(peer.to_pcapng(), tmp_path, f"tcp.port=={peer.port},http")
    assert_clean(packets)
    assert "raw:ip:tcp:http" in protocols(packets)
    assert sum(":http" in p["frame.protocols"] for p in packets) == 4  # 2 requests, 2 answers
    # the peer closed (FIN) after its answer
    assert [p["tcp.srcport"] for p in packets if p["tcp.flags.fin"] == "1"] == [str(peer.port)]
    assert not [p for p in packets if p["tcp.flags.reset"] == "1"]
    comments = [p["frame.comment"] for p in packets if p["frame.comment"]]
    assert any("-> expect #1 request('GET', '/a')" in c for c in comments)


def redis_talk(peer: FakePeer, **options: Any) -> None:
    client = redis.Redis(
        peer.host, peer.port, protocol=2, socket_timeout=5, retry=Retry(NoBackoff(), 0), **options
    )
    assert client.set("greeting", "hello") is True
    assert client.get("greeting") == b"hello"
    client.close()


def redis_peer(**options: object) -> FakePeer:
    peer = FakePeer(framing=resp.framing(), name="redis", **options)  # type: ignore[arg-type]
    resp.handshake(peer)
    peer.expect(resp.command("SET", "greeting", ANY)).reply(resp.simple_string("OK"))
    peer.expect(resp.command("GET", "greeting")).reply(resp.bulk_string("hello"))
    return peer


def test_redis_py_decodes_as_resp(tmp_path: Path) -> None:
    peer = redis_peer()
    with peer.serve():
        redis_talk(peer)
    packets = tshark(peer.to_pcapng(), tmp_path, f"tcp.port=={peer.port},resp")
    assert_clean(packets)
    assert "raw:ip:tcp:resp" in protocols(packets)
    # the client closed (FIN), the peer answered with its own
    assert [p["tcp.srcport"] == str(peer.port) for p in packets if p["tcp.flags.fin"] == "1"] == [
        False,
        True,
    ]


def test_tls_exports_the_inner_plain_text(tmp_path: Path) -> None:
    pytest.importorskip("trustme")
    peer = redis_peer(tls=True)
    with peer.serve():
        redis_talk(peer, ssl=True, ssl_ca_certs=peer.ca_path)
    data = peer.to_pcapng()
    assert b"TLS: the segments hold the inner plain text, as if decrypted" in data
    packets = tshark(data, tmp_path, f"tcp.port=={peer.port},resp")
    assert_clean(packets)
    assert "raw:ip:tcp:resp" in protocols(packets)
    assert not any("tls" in p["frame.protocols"] for p in packets)


def test_udp_datagrams_decode_as_syslog(tmp_path: Path) -> None:
    peer = FakePeer(transport="udp", name="syslog")
    peer.expect(prefix(b"<11>")).times(2)
    logger = logging.getLogger("test_pcapng_tshark.udp")
    with peer.serve():
        handler = logging.handlers.SysLogHandler(address=peer.address)  # UDP by default
        logger.addHandler(handler)
        try:
            logger.error("the disk is full")
            logger.error("still full")
            peer.wait_until_done()
        finally:
            logger.removeHandler(handler)
            handler.close()
    packets = tshark(peer.to_pcapng(), tmp_path, f"udp.port=={peer.port},syslog")
    assert_clean(packets)
    assert protocols(packets) == {"raw:ip:udp:syslog"}
    assert len(packets) == 2


def test_a_reset_is_an_rst_from_the_peer(tmp_path: Path) -> None:
    peer = FakePeer(framing=Lines(), name="kv")
    peer.expect(b"PING").reply(b"PONG").reset()
    with peer.serve(), socket.create_connection(peer.address, timeout=5) as sock:
        sock.sendall(b"PING\n")
        assert sock.recv(100) == b"PONG\n"
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
    packets = tshark(peer.to_pcapng(), tmp_path)
    assert_clean(packets)
    resets = [p["tcp.srcport"] for p in packets if p["tcp.flags.reset"] == "1"]
    assert resets == [str(peer.port)]
    assert packets[-1]["tcp.flags.reset"] == "1"


def test_a_proxys_transcript_decodes_too(tmp_path: Path) -> None:
    upstream = FakePeer(framing=http1.framing(), name="web")
    upstream.expect(http1.request("GET", "/")).reply(
        http1.response(200, "hi", {"Connection": "close"})
    ).close()
    with upstream.serve(), Proxy(upstream.address).serve() as proxy:
        client = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
        client.request("GET", "/")
        assert client.getresponse().read() == b"hi"
        client.close()
        proxy.wait_for_closes(1)
    packets = tshark(proxy.to_pcapng(), tmp_path, f"tcp.port=={proxy.port},http")
    assert_clean(packets)
    assert sum(":http" in p["frame.protocols"] for p in packets) == 2
    # the upstream closed: the proxy half-closed (FIN), then the client closed (FIN)
    fins = [p["tcp.srcport"] == str(proxy.port) for p in packets if p["tcp.flags.fin"] == "1"]
    assert fins == [True, False]


def test_ipv6_decodes_as_ipv6(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    peer = FakePeer(framing=Lines(), name="kv", host="::1")
    peer.expect(b"PING").reply(b"PONG").close()
    with peer.serve(), socket.create_connection(peer.address, timeout=5) as sock:
        sock.sendall(b"PING\n")
        assert sock.recv(100) == b"PONG\n"
    packets = tshark(peer.to_pcapng(), tmp_path)
    assert_clean(packets)
    assert protocols(packets) == {"raw:ipv6:tcp", "raw:ipv6:tcp:data"}
