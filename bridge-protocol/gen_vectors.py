#!/usr/bin/env python3
"""Generates the golden vectors in bridge-protocol/vectors/ (protocol 1.1).

Deterministic: every pid, token, version string and value is fixed, so running
it twice gives the same files. Arrow IPC frames are written by pyarrow.

    python bridge-protocol/gen_vectors.py          # (re)write vectors/
    python bridge-protocol/gen_vectors.py --check  # exit 1 if vectors/ differs

The file format is described in vectors/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "python", "src"))

import pyarrow as pa  # noqa: E402

from isthmus import protocol as P  # noqa: E402
from isthmus.errors import ProtocolError  # noqa: E402

VECTORS = os.path.join(HERE, "vectors")

TOKEN = "00112233445566778899aabbccddeeff"
PID = 4242


def env(kind: P.Kind, *, stage: int = P.NO_STAGE, attempt: int = 0, sequence: int = 0, flags: int = 0) -> bytes:
    return P.Envelope(kind, stage, attempt, sequence, flags).encode()


def raw_env(magic: bytes = b"ISTH", major: int = 1, minor: int = 1, kind: int = 7, flags: int = 0,
            stage: int = P.NO_STAGE, reserved: int = 0, attempt: int = 0, sequence: int = 0) -> bytes:
    return struct.pack("<4sBBBBHHIQ", magic, major, minor, kind, flags, stage, reserved, attempt, sequence)


def describe_schema(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def stream(schema: pa.Schema, batches: list[pa.RecordBatch]) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        for b in batches:
            writer.write_batch(b)
    return sink.getvalue().to_pybytes()


def payload_doc(schema: pa.Schema, batches: list[pa.RecordBatch], frames: int) -> dict[str, Any]:
    return {
        "frames": frames,
        "schema": describe_schema(schema),
        "batches": [{"num_rows": b.num_rows, "columns": b.to_pydict()} for b in batches],
    }


def decoded(frames: list[bytes], **extra: Any) -> dict[str, Any]:
    e = P.decode_envelope(frames[0])
    doc: dict[str, Any] = {
        "kind": e.kind.name,
        "version": [e.major, e.minor],
        "flags": e.flags,
        "stage": e.stage,
        "attempt": e.attempt,
        "sequence": e.sequence,
    }
    doc.update(extra)
    return doc


def vector(name: str, description: str, sender: str, frames: list[bytes], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "sender": sender,
        "frames_hex": [f.hex() for f in frames],
        "decoded": decoded(frames, **extra),
    }


def invalid(name: str, description: str, sender: str, frames: list[bytes], rejection: str) -> dict[str, Any]:
    try:
        e = P.decode_envelope(frames[0])
        P.check_frames(e.kind, len(frames), sender)
    except ProtocolError as exc:
        if exc.rejection != rejection:
            raise AssertionError(f"{name}: expected rejection {rejection}, found {exc.rejection}") from None
        error = exc.message
    else:
        raise AssertionError(f"{name}: expected a rejection, found none")
    return {
        "name": name,
        "description": description,
        "sender": sender,
        "frames_hex": [f.hex() for f in frames],
        "rejection": rejection,
        "error": error,
    }


def build() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    input_schema = pa.schema([
        pa.field("id", pa.int64(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("x", pa.float64()),
    ])
    output_schema = pa.schema([
        pa.field("id", pa.int64(), nullable=False),
        pa.field("score", pa.float64()),
    ])
    in_batch = pa.record_batch(
        [
            pa.array([1, 2, 3], pa.int64()),
            pa.array(["ada", None, "grace"], pa.string()),
            pa.array([0.5, 1.25, None], pa.float64()),
        ],
        schema=input_schema,
    )
    out_batches = [
        pa.record_batch([pa.array([1, 2], pa.int64()), pa.array([2.0, 3.5], pa.float64())], schema=output_schema),
        pa.record_batch([pa.array([3], pa.int64()), pa.array([None], pa.float64())], schema=output_schema),
    ]

    # HELLO
    hello = {
        "protocol": "1.1",
        "helper": "0.1.0",
        "pid": PID,
        "slot": 0,
        "token": TOKEN,
        "python": "3.11.7",
        "pyarrow": "15.0.2",
        "capabilities": ["arrow", "pandas", "numpy", "generator", "class", "shm"],
    }
    frames = [env(P.Kind.HELLO), P.dumps_json(hello)]
    out["hello"] = vector("hello", "Worker greeting right after connect: versions, pid, slot, per-run token, capabilities.", "worker", frames, json=hello)

    # OPEN
    open_doc = {
        "stages": [
            {"name": "clean", "udf": "prep.py:clean", "options": {}},
            {"name": "predict", "udf": "score.py:predict", "options": {"rows": "same"}},
        ],
        "heartbeat_ms": 1000,
        "missed_heartbeats": 5,
        "slot": 0,
        "workers": 2,
    }
    schema_frame = input_schema.serialize().to_pybytes()
    frames = [env(P.Kind.OPEN), P.dumps_json(open_doc), schema_frame]
    out["open"] = vector(
        "open",
        "Host answer to HELLO: two fused stages, timers, and the input schema as an encapsulated Arrow IPC schema message in frame 2.",
        "host", frames, json=open_doc, schemas=[describe_schema(input_schema)],
    )

    # READY
    ready = {
        "stages": [
            {"name": "clean", "kind": "function", "input": "pandas", "has_schema": False},
            {"name": "predict", "kind": "class", "input": "arrow", "has_schema": True},
        ]
    }
    frames = [env(P.Kind.READY), P.dumps_json(ready), output_schema.serialize().to_pybytes()]
    out["ready"] = vector(
        "ready",
        "Worker loaded both stages; one schema frame follows for the one stage that declares an output schema.",
        "worker", frames, json=ready, schemas=[describe_schema(output_schema)],
    )

    # BATCH (one frame)
    payload = stream(input_schema, [in_batch])
    frames = [env(P.Kind.BATCH, stage=0, attempt=0, sequence=1), payload]
    out["batch"] = vector(
        "batch",
        "Batch 1 (3 rows, with nulls) as one Arrow IPC stream in one frame: schema, one record batch, end-of-stream.",
        "host", frames, payload=payload_doc(input_schema, [in_batch], 1),
    )

    # BATCH split across frames at arbitrary byte boundaries, resent (attempt 1).
    cut1 = len(schema_frame) + 13
    cut2 = len(payload) - 8 - 5
    parts = [payload[:7], payload[7:cut1], payload[cut1:cut2], payload[cut2:]]
    frames = [env(P.Kind.BATCH, stage=0, attempt=1, sequence=2), *parts]
    out["batch_split"] = vector(
        "batch_split",
        "The same stream as batch sequence 2, resent (attempt 1), cut into 4 payload frames at arbitrary byte offsets; receivers concatenate the payload frames.",
        "host", frames, payload=payload_doc(input_schema, [in_batch], len(parts)),
    )

    # RESULT with two record batches, from the last of two stages.
    payload = stream(output_schema, out_batches)
    frames = [env(P.Kind.RESULT, stage=1, attempt=1, sequence=2), payload]
    out["result"] = vector(
        "result",
        "Result of batch 2 attempt 1 from stage 1 (the last stage): one IPC stream holding two record batches.",
        "worker", frames, payload=payload_doc(output_schema, out_batches, 1),
    )

    # RESULT with no rows and an empty schema (a generator stage that yielded nothing yet).
    empty = pa.schema([])
    payload = stream(empty, [])
    frames = [env(P.Kind.RESULT, stage=0, attempt=0, sequence=3), payload]
    out["result_empty"] = vector(
        "result_empty",
        "Result of batch 3 with zero record batches and a schema without fields: a stage with no declared schema that produced nothing yet.",
        "worker", frames, payload=payload_doc(empty, [], 1),
    )

    # RESULT with the ROW_ERRORS flag (stage option on_error=skip): 5 input rows,
    # rows 1 and 3 raised (in stages 0 and 1), the other rows' outputs follow.
    # Bisection ran the chain on rows [0,1), [2,3) and [4,5): one record batch each.
    row_failures = {
        "failed": [
            {
                "row": 1,
                "stage": "clean",
                "exc_type": "KeyError",
                "message": "'country'",
                "traceback": "Traceback (most recent call last):\n  File \"prep.py\", line 8, in clean\n    code = CODES[row[\"country\"]]\nKeyError: 'country'\n",
            },
            {
                "row": 3,
                "stage": "predict",
                "exc_type": "ValueError",
                "message": "negative balance",
                "traceback": 'Traceback (most recent call last):\n  File "score.py", line 12, in predict\n    raise ValueError("negative balance")\nValueError: negative balance\n',
            },
        ]
    }
    good_batches = [
        pa.record_batch([pa.array([ident], pa.int64()), pa.array([score], pa.float64())], schema=output_schema)
        for ident, score in ((1, 2.0), (3, 4.5), (5, None))
    ]
    payload = stream(output_schema, good_batches)
    frames = [env(P.Kind.RESULT, stage=1, attempt=0, sequence=4, flags=P.FLAG_ROW_ERRORS), P.dumps_json(row_failures), payload]
    out["result_row_errors"] = vector(
        "result_row_errors",
        "Result of batch 4 (5 rows) with on_error=skip: flag ROW_ERRORS (0x02); frame 1 lists the failed input rows 1 (stage 0) and 3 (stage 1); the payload from frame 2 holds the outputs of rows 0, 2 and 4, one record batch per good slice, in input order.",
        "worker", frames, json=row_failures, payload=payload_doc(output_schema, good_batches, 1),
    )

    # ERROR (user exception with a row range)
    error = {
        "kind": "user",
        "exc_type": "ValueError",
        "message": "negative balance",
        "traceback": 'Traceback (most recent call last):\n  File "score.py", line 12, in predict\n    raise ValueError("negative balance")\nValueError: negative balance\n',
        "stage": "predict",
        "row_start": 1,
        "row_end": 2,
        "retryable": False,
    }
    frames = [env(P.Kind.ERROR, stage=1, attempt=0, sequence=5), P.dumps_json(error)]
    out["error"] = vector(
        "error",
        "Stage 1 raised on batch 5; the user frames of the traceback and the offending row range are reported.",
        "worker", frames, json=error,
    )

    # ERROR during setup (instead of READY)
    setup = {
        "kind": "setup",
        "exc_type": "LoaderError",
        "message": "no UDF named 'predcit' in score.py: expected a @udf name or a function/class of that name, found UDFs predict (did you mean predict?)",
        "traceback": "",
        "stage": "predict",
        "row_start": None,
        "row_end": None,
        "retryable": False,
    }
    frames = [env(P.Kind.ERROR, stage=1), P.dumps_json(setup)]
    out["error_setup"] = vector(
        "error_setup",
        "Stage 1 could not be loaded; sent instead of READY (sequence 0), then the worker exits with code 3.",
        "worker", frames, json=setup,
    )

    # HEARTBEAT both ways
    frames = [env(P.Kind.HEARTBEAT)]
    out["heartbeat_host"] = vector("heartbeat_host", "Host heartbeat to an idle worker: the envelope alone.", "host", frames)
    beat = {"rss_bytes": 104857600, "batches": 42}
    frames = [env(P.Kind.HEARTBEAT), P.dumps_json(beat)]
    out["heartbeat_worker"] = vector(
        "heartbeat_worker", "Worker answer to a host heartbeat: resident memory and batches served so far.", "worker", frames, json=beat
    )

    # CLOSE, rejection CLOSE, BYE
    close = {"reason": "done"}
    frames = [env(P.Kind.CLOSE), P.dumps_json(close)]
    out["close"] = vector("close", "Host asks the worker to finish; the worker answers BYE and exits 0.", "host", frames, json=close)
    reject = {"reason": "expected the per-run token of this host, found another one"}
    frames = [env(P.Kind.CLOSE), P.dumps_json(reject)]
    out["close_reject"] = vector(
        "close_reject", "Host rejects a HELLO (wrong token) with CLOSE instead of OPEN; the worker prints the reason and exits 2.", "host", frames, json=reject
    )
    frames = [env(P.Kind.BYE)]
    out["bye"] = vector("bye", "Worker acknowledges CLOSE; the envelope alone.", "worker", frames)

    # -- the shared-memory data plane (1.1, PROTOCOL.md section 17) ------------------------
    arena = {"path": "/proc/4241/fd/7", "size": 268435456}
    open_shm = {**open_doc, "shm": arena}
    frames = [env(P.Kind.OPEN), P.dumps_json(open_shm), schema_frame]
    out["open_shm"] = vector(
        "open_shm",
        "OPEN to a local worker that announced the shm capability: the arena to map (the host's memfd, opened by path) and its size.",
        "host", frames, json=open_shm, schemas=[describe_schema(input_schema)],
    )
    ready_shm = {**ready, "shm": True}
    frames = [env(P.Kind.READY), P.dumps_json(ready_shm), output_schema.serialize().to_pybytes()]
    out["ready_shm"] = vector(
        "ready_shm", "READY from a worker that mapped the arena: batches may now travel as regions.",
        "worker", frames, json=ready_shm, schemas=[describe_schema(output_schema)],
    )
    regions = {"input_offset": 1048576, "input_length": 1208, "result_offset": 1114112, "result_capacity": 65536}
    frames = [env(P.Kind.BATCH, stage=0, attempt=0, sequence=6, flags=P.FLAG_SHM), P.BATCH_REGIONS.pack(*regions.values())]
    out["batch_shm"] = vector(
        "batch_shm",
        "Batch 6 through the arena (flag SHM, 0x04): its IPC stream is the 1208 bytes at offset 1 MiB; the worker may write its result into 64 KiB at offset 1088 KiB.",
        "host", frames, regions=regions,
    )
    file = {"path": "/proc/4242/fd/9", "device": 64769, "inode": 131074, "size": 33554944, "schema_offset": 0, "schema_length": 296,
            "offset": 296, "length": 1048936, "row_offset": 8192, "rows": 8192, "result_offset": 1114112,
            "result_capacity": 65536}
    words = [file[k] for k in ("device", "inode", "size", "schema_offset", "schema_length", "offset", "length", "row_offset", "rows",
                               "result_offset", "result_capacity")]
    frames = [env(P.Kind.BATCH, stage=0, attempt=0, sequence=7, flags=P.FLAG_SHM | P.FLAG_FILE),
              P.FILE_BATCH.pack(*words) + file["path"].encode()]
    out["batch_file"] = vector(
        "batch_file",
        "Batch 7 read in place from the host's input file (flags SHM and FILE, 0x0c): rows 8192 to 16383 of the record batch message of 1048936 bytes at offset 296 of the file the host holds open as descriptor 9, whose schema message is its first 296 bytes; the result goes into 64 KiB of the arena at offset 1088 KiB.",
        "host", frames, file=file,
    )
    result_region = {"offset": 1114112, "length": 1032, "released": []}
    frames = [env(P.Kind.RESULT, stage=1, attempt=0, sequence=6, flags=P.FLAG_SHM), P.RESULT_REGION.pack(1114112, 1032)]
    out["result_shm"] = vector(
        "result_shm", "Result of batch 6 written into the offered region: 1032 bytes of Arrow IPC stream at its start.",
        "worker", frames, regions=result_region,
    )
    result_release = {"offset": 1114112, "length": 1032, "released": [1048576]}
    frames = [env(P.Kind.RESULT, stage=1, attempt=0, sequence=6, flags=P.FLAG_SHM),
              P.RESULT_REGION.pack(1114112, 1032) + P.encode_release([1048576])]
    out["result_shm_release"] = vector(
        "result_shm_release",
        "The same result, and the worker no longer references batch 6's input region (offset 1 MiB): it releases it with the answer instead of in a RELEASE.",
        "worker", frames, regions=result_release,
    )
    frames = [env(P.Kind.RELEASE), P.encode_release([1048576, 2097152])]
    out["release"] = vector(
        "release", "The worker no longer references the input regions at 1 MiB and 2 MiB; the host may reuse them.",
        "worker", frames, regions={"offsets": [1048576, 2097152]},
    )

    # -- doorbells (PROTOCOL.md section 18) ------------------------------------------------
    bell = {"request_fifo": "/tmp/isthmus-Qm3x9A/slot0.request", "reply_fifo": "/tmp/isthmus-Qm3x9A/slot0.reply",
            "request_offset": 0, "reply_offset": 131072, "size": 65536, "slots": 2}
    open_bell = {**open_doc, "shm": arena, "doorbell": bell}
    frames = [env(P.Kind.OPEN), P.dumps_json(open_bell), schema_frame]
    out["open_doorbell"] = vector(
        "open_doorbell",
        "OPEN to a local worker that announced shm and doorbell, from a pool with 2 credits per worker: besides the "
        "arena, two FIFOs and 2 + 2 mailboxes of 64 KiB in the arena (requests at offsets 0 and 64 KiB, replies at "
        "128 KiB and 192 KiB). A ring byte names its mailbox as slot + 1.",
        "host", frames, json=open_bell, schemas=[describe_schema(input_schema)],
    )
    ready_bell = {**ready, "shm": True, "doorbell": True}
    frames = [env(P.Kind.READY), P.dumps_json(ready_bell), output_schema.serialize().to_pybytes()]
    out["ready_doorbell"] = vector(
        "ready_doorbell", "READY from a worker that mapped the arena and opened both FIFOs: one BATCH per request mailbox may now come through the doorbell.",
        "worker", frames, json=ready_bell, schemas=[describe_schema(output_schema)],
    )
    frames = [env(P.Kind.BATCH, stage=0, attempt=0, sequence=2), stream(input_schema, [in_batch])]
    box = bytearray(8 + sum(8 + ((len(f) + 7) & ~7) for f in frames))
    assert P.encode_mailbox(frames, memoryview(box))
    out["batch_doorbell"] = vector(
        "batch_doorbell",
        "Batch 2 as the host puts it in the request mailbox (mailbox_hex, section 18.2: frame count, then each frame's "
        "length and bytes padded to 8) before writing the byte 1 (mailbox 0 + 1) to the request FIFO. The frames are "
        "those of a BATCH over the socket; the answer comes back in reply mailbox 0 in the same layout, rung with 1.",
        "host", frames, payload=payload_doc(input_schema, [in_batch], 1), mailbox_hex=bytes(box).hex(),
    )

    # -- invalid --------------------------------------------------------------------------
    ok = raw_env(kind=7)
    out["invalid/bad_magic"] = invalid(
        "bad_magic", "Envelope magic is ISTX instead of ISTH.", "host", [raw_env(magic=b"ISTX")], "magic"
    )
    out["invalid/unknown_major"] = invalid(
        "unknown_major", "Envelope from a peer speaking protocol 2.0; rejected as a version mismatch naming both versions.",
        "worker", [raw_env(major=2, kind=1), P.dumps_json(hello)], "version",
    )
    out["invalid/short_envelope"] = invalid(
        "short_envelope", "Frame 0 is 23 bytes (the last sequence byte is missing).", "host", [ok[:23]], "length"
    )
    out["invalid/long_envelope"] = invalid(
        "long_envelope", "Frame 0 is 25 bytes (one trailing byte).", "host", [ok + b"\x00"], "length"
    )
    out["invalid/unknown_kind"] = invalid(
        "unknown_kind", "Kind 11 is not defined in 1.1.", "host", [raw_env(kind=11)], "kind"
    )
    out["invalid/kind_zero"] = invalid(
        "kind_zero", "Kind 0 is not defined.", "host", [raw_env(kind=0)], "kind"
    )
    out["invalid/nonzero_reserved"] = invalid(
        "nonzero_reserved", "Reserved bytes 10..11 hold 0x0001.", "host", [raw_env(reserved=1)], "reserved"
    )
    out["invalid/missing_frame"] = invalid(
        "missing_frame", "A CLOSE without its JSON frame.", "host", [env(P.Kind.CLOSE)], "frames"
    )
    out["invalid/release_from_host"] = invalid(
        "release_from_host", "A RELEASE sent by a host (only workers give regions back).", "host",
        [env(P.Kind.RELEASE), P.encode_release([64])], "direction",
    )
    out["invalid/wrong_direction"] = invalid(
        "wrong_direction", "A BATCH sent by a worker (only hosts send BATCH).", "worker",
        [env(P.Kind.BATCH, stage=0, sequence=1), stream(input_schema, [in_batch])], "direction",
    )
    return out


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = parser.parse_args()
    vectors = build()
    stale = []
    for name, doc in vectors.items():
        path = os.path.join(VECTORS, name + ".json")
        text = render(doc)
        if args.check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        stale.append(name)
            except FileNotFoundError:
                stale.append(name)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    if args.check:
        if stale:
            print(f"vectors differ from gen_vectors.py output: {', '.join(stale)}", file=sys.stderr)
            return 1
        print(f"{len(vectors)} vectors up to date")
        return 0
    print(f"wrote {len(vectors)} vectors to {os.path.relpath(VECTORS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
