"""Envelope encoding, validation and the JSON documents."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isthmus import protocol as P
from isthmus.errors import ProtocolError, VersionMismatch


def raw(magic: bytes = b"ISTH", major: int = 1, minor: int = 0, kind: int = 4, flags: int = 0,
        stage: int = 0, reserved: int = 0, attempt: int = 0, sequence: int = 0) -> bytes:
    return struct.pack("<4sBBBBHHIQ", magic, major, minor, kind, flags, stage, reserved, attempt, sequence)


def test_envelope_layout_is_literal() -> None:
    env = P.encode_envelope(P.Kind.BATCH, stage=2, attempt=3, sequence=0x0102030405060708)
    assert env == bytes.fromhex("49535448" "01" "01" "04" "00" "0200" "0000" "03000000" "0807060504030201")
    assert len(env) == P.ENVELOPE_SIZE == 24


@given(
    kind=st.sampled_from(list(P.Kind)),
    stage=st.integers(0, 0xFFFF),
    attempt=st.integers(0, 2**32 - 1),
    sequence=st.integers(0, 2**64 - 1),
    flags=st.integers(0, 255),
    minor=st.integers(0, 255),
)
def test_envelope_round_trip(kind: P.Kind, stage: int, attempt: int, sequence: int, flags: int, minor: int) -> None:
    env = P.Envelope(kind, stage, attempt, sequence, flags, 1, minor)
    data = env.encode()
    assert P.decode_envelope(data) == env
    assert P.decode_envelope(memoryview(data)) == env
    assert P.decode_envelope(data).encode() == data


def test_unknown_flag_bits_and_minor_are_accepted() -> None:
    env = P.decode_envelope(raw(flags=0xFE, minor=7))
    assert env.flags == 0xFE and env.minor == 7


@pytest.mark.parametrize(
    "frame, rejection, fragment",
    [
        (raw(magic=b"ISTX"), "magic", "found 49 53 54 58"),
        (raw()[:23], "length", "expected a 24-byte envelope in frame 0, found 23 bytes"),
        (raw() + b"\0", "length", "found 25 bytes"),
        (b"", "length", "found 0 bytes"),
        (raw(kind=0), "kind", "expected a message kind 1..10, found 0"),
        (raw(kind=11), "kind", "found 11"),
        (raw(reserved=1), "reserved", "found 0x0001"),
    ],
)
def test_envelope_rejections(frame: bytes, rejection: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        P.decode_envelope(frame)
    assert info.value.rejection == rejection
    assert fragment in str(info.value)
    assert str(info.value).startswith("expected ")


def test_unknown_major_is_a_version_mismatch_naming_both_versions() -> None:
    with pytest.raises(VersionMismatch) as info:
        P.decode_envelope(raw(major=2, minor=3))
    assert (info.value.major, info.value.minor) == (2, 3)
    assert "expected protocol major version 1" in str(info.value)
    assert "found 2.3" in str(info.value)


def test_version_mismatch_message_names_versions_and_fix() -> None:
    older = P.version_mismatch_message("2.0", "1.0", python="/venv/bin/python", helper="0.1.0")
    assert "2.0" in older and "1.0" in older
    assert "/venv/bin/python -m pip install --upgrade isthmus" in older
    pinned = P.version_mismatch_message("1.0", "2.1", requirement="isthmus==0.1.0")
    assert "pip install 'isthmus==0.1.0'" in pinned


def test_peek_and_salvage() -> None:
    assert P.peek_version(raw(major=9, minor=1, kind=8)) == (9, 1, 8)
    assert P.peek_version(b"ISTH") is None
    assert P.peek_version(raw(magic=b"XXXX")) is None
    assert P.salvage_sequence(raw(kind=77, attempt=2, sequence=99)) == (2, 99)
    assert P.salvage_sequence(raw(major=3, sequence=99)) == (0, 0)
    assert P.salvage_sequence(b"short") == (0, 0)


@pytest.mark.parametrize(
    "kind, count, sender, ok",
    [
        (P.Kind.OPEN, 3, "host", True),
        (P.Kind.OPEN, 2, "host", False),
        (P.Kind.BATCH, 2, "host", True),
        (P.Kind.BATCH, 9, "host", True),
        (P.Kind.BATCH, 1, "host", False),
        (P.Kind.HEARTBEAT, 1, "host", True),
        (P.Kind.HEARTBEAT, 2, "host", False),
        (P.Kind.HEARTBEAT, 2, "worker", True),
        (P.Kind.HEARTBEAT, 1, "worker", False),
        (P.Kind.READY, 2, "worker", True),
        (P.Kind.READY, 4, "worker", True),
        (P.Kind.BYE, 1, "worker", True),
        (P.Kind.BYE, 2, "worker", False),
        (P.Kind.HELLO, 2, "host", False),
        (P.Kind.BATCH, 2, "worker", False),
    ],
)
def test_frame_counts(kind: P.Kind, count: int, sender: str, ok: bool) -> None:
    if ok:
        P.check_frames(kind, count, sender)
    else:
        with pytest.raises(ProtocolError):
            P.check_frames(kind, count, sender)


def test_direction_error_message() -> None:
    with pytest.raises(ProtocolError) as info:
        P.check_frames(P.Kind.HELLO, 2, "host")
    assert info.value.rejection == "direction"
    assert "found HELLO" in str(info.value)


def test_canonical_json() -> None:
    assert P.dumps_json({"b": 1, "a": [1, "x/y", "é"]}) == '{"a":[1,"x/y","é"],"b":1}'.encode()
    assert P.loads_json(b'{"a": 1}', "frame 1 of X") == {"a": 1}
    with pytest.raises(ProtocolError, match="expected a JSON object in frame 1 of X, found list"):
        P.loads_json(b"[1]", "frame 1 of X")
    with pytest.raises(ProtocolError, match="found invalid JSON"):
        P.loads_json(b"\xff{", "frame 1 of X")


def test_parse_open_defaults_and_errors() -> None:
    doc = P.parse_open({"stages": [{"name": "s", "udf": "f.py:g"}]})
    assert doc.heartbeat_ms == 1000 and doc.missed_heartbeats == 5
    assert doc.stages[0].options == {}
    assert P.parse_open(doc.to_json()) == doc
    with pytest.raises(ProtocolError, match="expected at least one stage"):
        P.parse_open({"stages": []})
    with pytest.raises(ProtocolError, match="expected field 'heartbeat_ms' of the OPEN document to be > 0, found 0"):
        P.parse_open({"stages": [{"name": "s", "udf": "u"}], "heartbeat_ms": 0})
    with pytest.raises(ProtocolError, match="'udf'"):
        P.parse_open({"stages": [{"name": "s"}]})
    with pytest.raises(ProtocolError, match="to be int, found true"):
        P.parse_open({"stages": [{"name": "s", "udf": "u"}], "slot": True})


def test_parse_error_and_ready() -> None:
    report = P.ErrorReport("user", "ValueError", "m", "tb", "s", 1, 2, False)
    assert P.parse_error(report.to_json()) == report
    with pytest.raises(ProtocolError, match="kind"):
        P.parse_error({**report.to_json(), "kind": "weird"})
    ready = P.Ready((P.StageInfo("a", "class", "pandas", True), P.StageInfo("b", "generator", "arrow", False)))
    assert P.parse_ready(ready.to_json()) == ready
    assert ready.schema_frames == 1
    with pytest.raises(ProtocolError, match="input"):
        P.parse_ready({"stages": [{"name": "a", "kind": "class", "input": "polars", "has_schema": False}]})


def test_parse_token() -> None:
    assert P.parse_token("AB" * 16) == "ab" * 16
    with pytest.raises(ProtocolError, match="32 hex digits"):
        P.parse_token("xyz")
