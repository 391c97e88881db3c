"""Every golden vector in bridge-protocol/vectors decodes to its "decoded" value
and re-encodes to the same bytes; every invalid vector is rejected as described."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
from typing import Any

import pyarrow as pa
import pytest

from isthmus import protocol as P
from isthmus.errors import ProtocolError
from isthmus.runtime import read_single_batch, read_stream

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "bridge-protocol"))
VALID = sorted(glob.glob(os.path.join(ROOT, "vectors", "*.json")))
INVALID = sorted(glob.glob(os.path.join(ROOT, "vectors", "invalid", "*.json")))

# Kinds whose frame 1 is a JSON document.
JSON_KINDS = {"HELLO", "OPEN", "READY", "ERROR", "CLOSE"}


def load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def describe(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def test_vector_set_is_complete() -> None:
    names = {os.path.basename(p)[:-5] for p in VALID}
    required = {"hello", "open", "ready", "batch", "result", "result_row_errors", "error",
                "heartbeat_host", "heartbeat_worker", "close", "bye",
                "open_shm", "ready_shm", "batch_shm", "result_shm", "release",
                "open_doorbell", "ready_doorbell", "batch_doorbell", "batch_file"}
    assert required <= names
    bad = {os.path.basename(p)[:-5] for p in INVALID}
    assert {"bad_magic", "unknown_major", "short_envelope", "unknown_kind", "nonzero_reserved"} <= bad


@pytest.mark.parametrize("path", VALID, ids=lambda p: os.path.basename(p))
def test_valid_vector(path: str) -> None:
    vec = load(path)
    assert vec["name"] == os.path.basename(path)[:-5]
    frames = [bytes.fromhex(h) for h in vec["frames_hex"]]
    want = vec["decoded"]

    env = P.decode_envelope(frames[0])
    assert env.kind.name == want["kind"]
    assert [env.major, env.minor] == want["version"]
    assert (env.flags, env.stage, env.attempt, env.sequence) == (
        want["flags"], want["stage"], want["attempt"], want["sequence"])
    P.check_frames(env.kind, len(frames), vec["sender"])
    # Byte-exact re-encoding of the envelope.
    assert P.Envelope(env.kind, env.stage, env.attempt, env.sequence, env.flags).encode() == frames[0]
    assert P.encode_envelope(env.kind, stage=env.stage, attempt=env.attempt, sequence=env.sequence, flags=env.flags) == frames[0]

    row_errors = want["kind"] == "RESULT" and bool(env.flags & P.FLAG_ROW_ERRORS)
    if (want["kind"] in JSON_KINDS or (want["kind"] == "HEARTBEAT" and vec["sender"] == "worker")
            or row_errors):
        doc = P.loads_json(frames[1], "frame 1")
        assert doc == want["json"]
        # Canonical JSON: re-encoding gives the same bytes.
        assert P.dumps_json(doc) == frames[1]
        parser = {
            "HELLO": P.parse_hello, "OPEN": P.parse_open, "READY": P.parse_ready,
            "ERROR": P.parse_error, "HEARTBEAT": P.parse_heartbeat, "CLOSE": P.parse_close,
            "RESULT": P.parse_row_failures,
        }[want["kind"]]
        parsed = parser(doc)
        if hasattr(parsed, "to_json"):
            assert P.dumps_json(parsed.to_json()) == frames[1]
        if row_errors:
            assert P.dumps_json({"failed": [f.to_json() for f in parsed]}) == frames[1]
    else:
        assert "json" not in want

    schema_frames = frames[2:] if want["kind"] in {"OPEN", "READY"} else []
    assert len(schema_frames) == len(want.get("schemas", []))
    for frame, expected in zip(schema_frames, want.get("schemas", [])):
        assert frame[:4] == P.CONTINUATION
        assert len(frame) % 8 == 0
        schema = pa.ipc.read_schema(pa.py_buffer(frame))
        assert describe(schema) == expected

    if "regions" in want:
        regions = want["regions"]
        if want["kind"] == "BATCH":
            assert env.flags & P.FLAG_SHM and len(frames) == 2
            words = P.decode_batch_regions(frames[1], arena_size=1 << 40)
            assert words == (regions["input_offset"], regions["input_length"], regions["result_offset"], regions["result_capacity"])
            assert P.BATCH_REGIONS.pack(*words) == frames[1]
        elif want["kind"] == "RESULT":
            assert env.flags & P.FLAG_SHM and len(frames) == 2
            assert P.RESULT_REGION.unpack_from(frames[1]) == (regions["offset"], regions["length"])
            assert list(memoryview(frames[1][16:]).cast("Q")) == regions["released"]
            assert P.RESULT_REGION.pack(regions["offset"], regions["length"]) + P.encode_release(regions["released"]) == frames[1]
        else:
            assert want["kind"] == "RELEASE"
            assert P.encode_release(regions["offsets"]) == frames[1]
        assert "payload" not in want

    if "file" in want:
        assert want["kind"] == "BATCH" and env.flags & P.FLAG_SHM and env.flags & P.FLAG_FILE and len(frames) == 2
        d = P.decode_file_batch(frames[1], arena_size=1 << 40)
        assert d == P.FileBatch(**want["file"])
        words = (d.device, d.inode, d.size, d.schema_offset, d.schema_length, d.offset, d.length, d.row_offset, d.rows, d.result_offset,
                 d.result_capacity)
        assert P.FILE_BATCH.pack(*words) + d.path.encode() == frames[1]

    if "mailbox_hex" in want:
        box = bytes.fromhex(want["mailbox_hex"])
        assert P.decode_mailbox(memoryview(box)) == frames
        again = bytearray(len(box))
        assert P.encode_mailbox(frames, memoryview(again)) and bytes(again) == box
        assert not P.encode_mailbox(frames, memoryview(bytearray(len(box) - 1)))

    if want["kind"] == "OPEN" and "doorbell" in want.get("json", {}):
        offer = P.parse_open(want["json"]).doorbell
        assert offer is not None and offer.size == want["json"]["doorbell"]["size"]
        assert offer.request_fifo == want["json"]["doorbell"]["request_fifo"]

    if "payload" in want:
        payload = want["payload"]
        body = frames[P.result_payload_start(env, len(frames)):]
        assert len(body) == payload["frames"]
        joined = b"".join(body)
        assert joined.endswith(P.EOS_MARKER)
        table = read_stream(body)
        assert describe(table.schema) == payload["schema"]
        batches = table.to_batches()
        assert [{"num_rows": b.num_rows, "columns": b.to_pydict()} for b in batches] == payload["batches"]
        if want["kind"] == "BATCH":
            assert read_single_batch(body).to_pydict() == payload["batches"][0]["columns"]


@pytest.mark.parametrize("path", INVALID, ids=lambda p: os.path.basename(p))
def test_invalid_vector(path: str) -> None:
    vec = load(path)
    frames = [bytes.fromhex(h) for h in vec["frames_hex"]]
    with pytest.raises(ProtocolError) as info:
        env = P.decode_envelope(frames[0])
        P.check_frames(env.kind, len(frames), vec["sender"])
    assert info.value.rejection == vec["rejection"]
    assert str(info.value) == vec["error"]


def test_generator_output_matches_committed_vectors() -> None:
    spec = importlib.util.spec_from_file_location("gen_vectors", os.path.join(ROOT, "gen_vectors.py"))
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    built = gen.build()
    for name, doc in built.items():
        path = os.path.join(ROOT, "vectors", name + ".json")
        committed = load(path)
        # Envelope and JSON frames are ours and must match byte for byte; Arrow
        # IPC frames come from pyarrow (whose bytes may differ between its
        # versions) and are compared by meaning in test_valid_vector.
        assert doc["frames_hex"][0] == committed["frames_hex"][0], name
        assert len(doc["frames_hex"]) == len(committed["frames_hex"]), name
        if "rejection" in doc:
            assert (doc["rejection"], doc["error"]) == (committed["rejection"], committed["error"]), name
            continue
        assert doc["decoded"] == committed["decoded"], name
        if "json" in doc["decoded"]:
            assert doc["frames_hex"][1] == committed["frames_hex"][1], name
