"""The JSON Schema of script files, the examples of the docs, and the loader, kept in step.

Every example file (docs/examples/*.toml) and every ```toml block of docs/file-format.md is
valid against the schema AND loads with ``FakePeer.from_file``; the example files are served
and talked to by a real client. Wrong files are rejected by both. The schema's keys are the
loader's keys, walked one by one.
"""

from __future__ import annotations

import http.client
import inspect
import json
import re
import smtplib
import socket
import ssl
import tomllib
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

import jsonschema
import pytest
import redis

from fakepeer import FakePeer, ScriptError
from fakepeer._scriptfile import (
    CONNECTION_KEYS,
    KIT_PRESETS,
    PEER_KEYS,
    SCHEDULE_KEYS,
    TOP_KEYS,
    load_text,
)
from fakepeer._scriptrules import RULE_KEYS, RULE_TABLES, STEP_KEYS
from fakepeer._scriptvalues import (
    BYTES_KEYS,
    FAULT_KINDS,
    FRAMINGS,
    KIT_MATCHERS,
    MATCHER_KEYS,
    fault_keywords,
)
from fakepeer.faults import Fault

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "src" / "fakepeer" / "script.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.toml"))
REFERENCE = ROOT / "docs" / "file-format.md"
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _schema_errors(document: object) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(document)]


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"]


def test_the_schema_is_in_the_package() -> None:
    """``fakepeer schema`` and editors read it from the installed package."""
    text = files("fakepeer").joinpath("script.schema.json").read_text(encoding="utf-8")
    assert json.loads(text) == SCHEMA


# -- the examples --------------------------------------------------------------------------------


def _smtp(peer: FakePeer) -> None:
    host, port = peer.address
    with smtplib.SMTP(host, port, timeout=5) as client:
        client.sendmail("a@example.org", ["b@example.org"], "Subject: hi\r\n\r\nHello.\r\n")
    # (leaving the with block sent QUIT)


def _redis(peer: FakePeer) -> None:
    host, port = peer.address
    client = redis.Redis(host=host, port=port, protocol=3, socket_timeout=5)
    try:
        assert client.set("greeting", "hello") is True
        assert client.get("greeting") == b"hello"
        assert client.ping() is True
    finally:
        client.close()


def _http(peer: FakePeer) -> None:
    host, port = peer.address
    client = http.client.HTTPConnection(host, port, timeout=5)
    try:
        client.request("GET", "/status", headers={"Accept": "application/json"})
        response = client.getresponse()
        assert (response.status, response.read()) == (200, b'{"status":"up"}')
        client.request("GET", "/other")
        response = client.getresponse()
        assert (response.status, response.read()) == (404, b"")
    finally:
        client.close()


def _binary(peer: FakePeer) -> None:
    with socket.create_connection(peer.address, timeout=5) as client:
        client.sendall(b"\x00\x04PING")
        assert _read(client, 6) == b"\x00\x04PONG"
        client.sendall(b"\x00\x03abc")
        assert _read(client, 9) == b"\x00\x02OK\x00\x03END"
    with socket.create_connection(peer.address, timeout=5) as second:
        assert _until_reset(second)


def _until_reset(client: socket.socket) -> bool:
    try:
        while client.recv(1024):
            pass
    except ConnectionResetError:
        return True
    return False


def _chat(peer: FakePeer) -> None:
    with socket.create_connection(peer.address, timeout=5) as client:
        stream = client.makefile("rwb")
        assert stream.readline() == b"WELCOME\n"
        lines = [b"LOGIN ann", b"PING", b'{"op": "say", "text": "hi"}', b"PING", b"HELP", b"BYE"]
        stream.write(b"".join(line + b"\n" for line in lines))
        stream.flush()
        answers = [stream.readline() for _ in range(6)]
        assert answers == [
            b"OK\n",
            b"PONG 1\n",
            b'{"op": "say", "text": "hi"}\n',
            b"PONG 2\n",
            b"ERR unknown\n",
            b"BYE\n",
        ]
        assert stream.read() == b""
        stream.close()


def _read(client: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = client.recv(size - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


#: The client of each example file: every example has one.
CLIENTS: dict[str, Callable[[FakePeer], None]] = {
    "smtp.toml": _smtp,
    "redis.toml": _redis,
    "http.toml": _http,
    "binary.toml": _binary,
    "chat.toml": _chat,
}


def test_every_example_has_a_client() -> None:
    assert sorted(path.name for path in EXAMPLES) == sorted(CLIENTS)


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_an_example_is_valid_loads_and_serves_its_client(path: Path) -> None:
    assert _schema_errors(tomllib.loads(path.read_text(encoding="utf-8"))) == []
    peer = FakePeer.from_file(path)
    with peer.serve():
        CLIENTS[path.name](peer)
        peer.wait_until_done()


def _reference_blocks() -> list[str]:
    return TOML_BLOCK.findall(REFERENCE.read_text(encoding="utf-8"))


def test_the_reference_has_toml_blocks() -> None:
    assert len(_reference_blocks()) >= 5


@pytest.mark.parametrize("index", range(len(_reference_blocks())))
def test_a_toml_block_of_the_reference_is_valid_and_loads(index: int) -> None:
    text = _reference_blocks()[index]
    assert _schema_errors(tomllib.loads(text)) == []
    load_text(text, f"file-format.md block {index + 1}")


# -- wrong files ---------------------------------------------------------------------------------

WRONG = [
    ("[peer]\n", "'version' is missing"),
    ("version = 1\nrules = []\n", "unknown key 'rules'"),
    ("version = 1\n[peer]\nprot = 1\n", "did you mean 'port'?"),
    ("version = 1\n[peer]\ntransport = 'sctp'\n", "unknown transport 'sctp'"),
    ("version = 1\n[framing]\nkind = 'line'\n", "did you mean 'lines'?"),
    ("version = 1\n[[expect]]\nreply = 'x'\n", "'match' is missing"),
    ("version = 1\n[[expect]]\nmatch = 'a'\nreply = 3\n", "takes bytes"),
    ("version = 1\n[[expect]]\nmatch = { hex = 'zz' }\n", "is not hex"),
    ("version = 1\n[[expect]]\nmatch = 'a'\ntimes = 0\n", "a whole number >= 1"),
    ("version = 1\n[[greeting]]\nmatch = 'a'\n", "unknown key of a greeting rule 'match'"),
    ("version = 1\n[[faults]]\nkind = 'latncy'\nseconds = 1\n", "did you mean 'latency'?"),
    ("version = 1\n[[faults]]\nkind = 'latency'\n", "needs 'seconds'"),
    ("version = 1\n[[connection]]\ninherit = true\n", "'number' is missing"),
    ("version = 1\n[[kit]]\npreset = 'resp.handshak'\n", "did you mean 'resp.handshake'?"),
    ("version = 1\n[[expect]]\nmatch = { any = false }\n", "takes true"),
    ("version = 1\n[[expect]]\nmatch = 'a'\nsteps = [{ reply = 'a', after = 1 }]\n", "one step"),
]


@pytest.mark.parametrize(("text", "words"), WRONG)
def test_a_wrong_file_is_rejected_by_the_schema_and_the_loader(text: str, words: str) -> None:
    assert _schema_errors(tomllib.loads(text)) != []
    with pytest.raises(ScriptError, match=re.escape(words)):
        load_text(text, "wrong.toml")


# -- the schema and the loader in step -----------------------------------------------------------


def _variants(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return list(schema.get("anyOf", [schema]))


def _by_const(schema: dict[str, Any], key: str) -> dict[str, set[str]]:
    """The properties of each variant of ``schema``, by the const of its ``key``."""
    return {
        variant["properties"][key]["const"]: set(variant["properties"])
        for variant in _variants(schema)
    }


def test_the_schema_has_the_loaders_top_peer_and_connection_keys() -> None:
    properties = SCHEMA["properties"]
    assert set(properties) == set(TOP_KEYS)
    assert set(properties["peer"]["properties"]) == set(PEER_KEYS)
    assert set(properties["connection"]["items"]["properties"]) == set(CONNECTION_KEYS)
    assert set(PEER_KEYS) <= set(inspect.signature(FakePeer).parameters)


def test_the_schema_has_the_loaders_rule_and_step_keys() -> None:
    for kind in RULE_TABLES:
        rule = SCHEMA["$defs"][f"{kind}_rule"]
        expected = set(RULE_KEYS) - ({"match"} if kind in ("greeting", "otherwise") else set())
        assert set(rule["properties"]) == expected, kind
        assert set(rule["properties"]["steps"]["items"]["properties"]) == set(STEP_KEYS)


def test_the_schema_has_the_loaders_values() -> None:
    defs = SCHEMA["$defs"]
    assert {key for v in defs["bytes"]["anyOf"][1:] for key in v["properties"]} == set(BYTES_KEYS)
    keys = {
        key
        for variant in defs["matcher"]["anyOf"][1:]
        for inner in _variants(variant)
        for key in inner["required"]
    }
    assert keys == set(MATCHER_KEYS) - set(BYTES_KEYS)
    for kit, functions in KIT_MATCHERS.items():
        variant = next(v for v in defs["matcher"]["anyOf"] if "anyOf" in v and kit in str(v))
        expected = {
            name: {kit, *inspect.signature(function).parameters}
            for name, function in functions.items()
        }
        assert _by_const(variant, kit) == expected


def test_the_schema_has_the_loaders_faults_framings_and_presets() -> None:
    defs = SCHEMA["$defs"]
    faults = {kind: _fault(kind) for kind in FAULT_KINDS}
    rule_faults = {
        kind: {"kind", *fault_keywords(kind)} for kind in FAULT_KINDS if faults[kind].per_rule
    }
    assert _by_const(defs["fault"], "kind") == rule_faults
    counting = {  # first= and per= count connections or requests: not these faults'
        kind: set(SCHEDULE_KEYS) - ({"first", "per"} if _counts_nothing(fault) else set())
        for kind, fault in faults.items()
    }
    scheduled = {
        kind: {"kind", *counting[kind]}
        | {("fault_after" if k == "after" else k) for k in fault_keywords(kind)}
        for kind in FAULT_KINDS
    }
    assert _by_const(SCHEMA["properties"]["faults"]["items"], "kind") == scheduled
    framings = {
        kind: {"kind", *inspect.signature(make).parameters} for kind, (make, _) in FRAMINGS.items()
    }
    assert _by_const(defs["framing"], "kind") == framings
    assert _by_const(defs["reply_framing"], "kind") == framings | {"none": {"kind"}}
    presets = {
        name: {"preset", *list(inspect.signature(function).parameters)[1:]}
        for name, function in KIT_PRESETS.items()
    }
    assert _by_const(defs["kit"], "preset") == presets


def _fault(kind: str) -> Fault:
    """A fault of ``kind``, with 1 for each keyword it requires."""
    return FAULT_KINDS[kind](**{k: 1 for k, required in fault_keywords(kind).items() if required})


def _counts_nothing(fault: Fault) -> bool:
    return fault.server_fault or bool(getattr(fault, "tls_handshake", False))


def test_every_key_of_the_schema_has_a_description() -> None:
    missing: list[str] = []

    def walk(schema: object, where: str) -> None:
        if isinstance(schema, dict):
            for key, value in schema.get("properties", {}).items():
                if "description" not in value and "const" not in value:
                    missing.append(f"{where}.{key}")
            for key, value in schema.items():
                walk(value, f"{where}/{key}")
        elif isinstance(schema, list):
            for index, value in enumerate(schema):
                walk(value, f"{where}[{index}]")

    walk(SCHEMA, "#")
    assert missing == []


def test_tls_versions_are_the_ssl_modules_a_peer_serves() -> None:
    names = SCHEMA["properties"]["peer"]["properties"]["tls_min_version"]["enum"]
    assert set(names) <= {version.name for version in ssl.TLSVersion}
    assert names == ["TLSv1_2", "TLSv1_3"]


# -- the schema refuses what the loader refuses, value by value ----------------------------------

#: Values tried for each key: each type, and either side of each limit the loader sets. Not
#: tried: a TOML float with no fraction (1e9), an integer to JSON Schema (JSON has one kind
#: of number) but not to the loader; inf and nan (not JSON); host names (resolved by the
#: loader).
PROBES: Final = (
    "-1", "0", "1", "0.5", "1.5", "2", "1023", "1024", "65535", "65536",
    '"abc"', '""', "true", "false", "[]", '["x"]', "{}",
    '"TLSv1"', '"TLSv1_2"', '"downstream"', '"up"', '"connection"', '"request"',
)  # fmt: skip

#: The peer a fault needs (its transport, TLS) and the keywords it requires, valid.
_CONTEXT: Final = {
    **dict.fromkeys(("drop", "duplicate", "reorder"), '[peer]\ntransport = "udp"\n'),
    "client_certificate_refused": "[peer]\ntls = true\ntls_client_cert = true\n",
    **dict.fromkeys(
        ("expired_certificate", "handshake_reset", "handshake_stall"), "[peer]\ntls = true\n"
    ),
    **dict.fromkeys(("untrusted_certificate", "wrong_hostname"), "[peer]\ntls = true\n"),
}
_REQUIRED: Final = {
    "seconds": "1",
    "size": "1",
    "bytes_per_second": "1",
    "n": "1",
    "probability": "1",
}

#: Where the schema is stricter, on purpose: max_clients is for a UDP peer (the loader lets
#: a TCP peer give its default, 1024).
_STRICTER: Final = {"version = 1\n[peer]\nmax_clients = 1024\n"}


def _fault_probes() -> list[str]:
    texts = []
    for variant in SCHEMA["properties"]["faults"]["items"]["anyOf"]:
        kind = variant["properties"]["kind"]["const"]
        required = [key for key in variant.get("required", ()) if key != "kind"]
        for key in variant["properties"]:
            if key == "kind":
                continue
            given = "".join(f"{name} = {_REQUIRED[name]}\n" for name in required if name != key)
            for value in PROBES:
                table = f'[[faults]]\nkind = "{kind}"\n{given}{key} = {value}\n'
                texts.append(f"version = 1\n{_CONTEXT.get(kind, '')}{table}")
    return texts


def _rule_fault_probes() -> list[str]:
    texts = []
    for kind in FAULT_KINDS:
        required = [key for key, needed in fault_keywords(kind).items() if needed]
        for key in fault_keywords(kind):
            given = "".join(f", {name} = {_REQUIRED[name]}" for name in required if name != key)
            for value in PROBES:
                fault = f'{{ kind = "{kind}"{given}, {key} = {value} }}'
                rule = f'[[expect]]\nmatch = "A"\nfault = {fault}\n'
                texts.append(f"version = 1\n{_CONTEXT.get(kind, '')}{rule}")
    return texts


def _peer_probes() -> list[str]:
    texts = []
    for key in PEER_KEYS:
        if key == "host":
            continue
        tls = "tls = true\n" if key.startswith("tls_") else ""
        texts += [f"version = 1\n[peer]\n{tls}{key} = {value}\n" for value in PROBES]
    return texts


_PROBES: Final = {"faults": _fault_probes, "rule-fault": _rule_fault_probes, "peer": _peer_probes}


@pytest.mark.parametrize("group", list(_PROBES))
def test_the_schema_and_the_loader_agree_on_each_value(group: str) -> None:
    """The schema refuses a value exactly when the loader does (an editor shows a file as
    valid that then fails to load: transcript_budget = 10, tls_min_version = "TLSv1",
    a fault's seconds = "abc" were such)."""
    disagree = []
    for text in _PROBES[group]():
        try:
            load_text(text, "f.toml")
            loads = True
        except ScriptError:
            loads = False
        valid = not _schema_errors(tomllib.loads(text))
        if loads != valid and text not in _STRICTER:
            disagree.append(f"{'loads' if loads else 'refused'}, schema {valid}: {text!r}")
    assert disagree == []


def test_a_rules_fault_has_the_same_keywords_as_a_faults_table() -> None:
    """The schema has two copies of each fault: a rule's (``fault = {...}``) and a
    ``[[faults]]`` table's (with the schedule keys): their keywords agree."""
    tables = {
        variant["properties"]["kind"]["const"]: variant["properties"]
        for variant in SCHEMA["properties"]["faults"]["items"]["anyOf"]
    }
    for variant in SCHEMA["$defs"]["fault"]["anyOf"]:
        kind = variant["properties"]["kind"]["const"]
        for key, value in variant["properties"].items():
            if key == "kind":
                continue
            table = tables[kind].get(key) or tables[kind][f"fault_{key}"]
            strip = {name: item for name, item in value.items() if name != "description"}
            if (kind, key) != ("reset_peer", "after"):  # on a rule: 0 only
                assert strip == {n: i for n, i in table.items() if n != "description"}, (kind, key)
