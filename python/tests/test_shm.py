"""The shared-memory data plane (PROTOCOL.md section 17) on the worker side: the
arena mapping, input regions released only when nothing references them, results
written into the offered region or sent as frames when they do not fit, and the
protocol errors for descriptors that point outside the arena."""

from __future__ import annotations

import gc
import mmap

import pyarrow as pa
import pytest

from conftest import ARENA, RawHost, ipc_stream
from isthmus import protocol as P
from isthmus.errors import ProtocolError
from isthmus.runtime import SharedArena, read_single_batch, read_stream


LIN = """
import pyarrow.compute as pc
from isthmus import udf

KEPT = []

@udf
def lin(batch):
    return {"y": pc.add(pc.multiply(batch["x"], 2), 1)}

@udf
def keep(batch):
    KEPT.append(batch)  # keeps every input batch alive
    return {"n": [sum(b.num_rows for b in KEPT)]}

@udf
def explode(batch):
    return {"y": pc.multiply(pc.cast(batch["x"], "int64"), 1).to_pylist() * 50}
"""


def _stream(batch: pa.RecordBatch) -> bytes:
    return ipc_stream(batch)


def test_input_region_is_released_only_when_nothing_references_it(arena_file) -> None:  # type: ignore[no-untyped-def]
    path, mm = arena_file
    arena = SharedArena.open(path, ARENA)
    batch = pa.record_batch({"x": pa.array([1.5, 2.5, 3.5])})
    data = _stream(batch)
    mm[4096 : 4096 + len(data)] = data
    got = read_single_batch([arena.input(4096, len(data))])
    assert got.to_pydict() == {"x": [1.5, 2.5, 3.5]}
    column = got.column(0)
    del got
    gc.collect()
    assert arena.take_released() == []  # the column still points into the region
    assert column.to_pylist() == [1.5, 2.5, 3.5]
    del column
    assert arena.take_released() == [4096]
    assert arena.take_released() == []


def test_results_go_into_the_region_when_they_fit(arena_file) -> None:  # type: ignore[no-untyped-def]
    path, mm = arena_file
    arena = SharedArena.open(path, ARENA)
    batch = pa.record_batch({"y": pa.array(range(1000), pa.int64())})
    n = arena.write_stream(65536, 65536, batch.schema, [batch])
    assert n is not None and 8000 < n <= 65536
    table = pa.ipc.open_stream(pa.py_buffer(bytes(mm[65536 : 65536 + n]))).read_all()  # another mapping sees it
    assert table.column("y").to_pylist() == list(range(1000))
    assert arena.write_stream(131072, 1024, batch.schema, [batch]) is None  # 8 KB of values: too big


def test_results_in_the_region_are_the_bytes_pyarrows_stream_writer_writes(arena_file) -> None:  # type: ignore[no-untyped-def]
    # Byte for byte pyarrow's stream, for several batches, schema metadata, a schema that changes
    # between results, nested types and dictionaries; one byte less room and it is refused.
    path, mm = arena_file
    arena = SharedArena.open(path, ARENA)
    plain = pa.record_batch({"y": pa.array([1.5, None, 3.5]), "s": pa.array(["a", None, "ccc"])})
    tagged = plain.replace_schema_metadata({"k": "v"})
    nested = pa.record_batch({"l": pa.array([[1, 2], None, []], pa.list_(pa.int32())), "st": pa.array([{"a": 1}, None, {"a": 3}])})
    dictionary = pa.record_batch({"d": pa.array(["x", "y", "x"]).dictionary_encode()})
    cases = [(plain.schema, [plain, plain.slice(1)]), (tagged.schema, [tagged]), (plain.schema, [plain]),
             (nested.schema, [nested, nested.slice(2)]), (dictionary.schema, [dictionary]), (plain.schema, [])]
    for schema, batches in cases:
        n = arena.write_stream(4096, 65536, schema, batches)
        assert n is not None
        assert bytes(mm[4096 : 4096 + n]) == ipc_stream(*batches, schema=schema), schema
        assert arena.write_stream(4096, n - 1, schema, batches) is None  # one byte short: frames instead


def test_open_refuses_a_file_smaller_than_announced(arena_file) -> None:  # type: ignore[no-untyped-def]
    path, _ = arena_file
    with pytest.raises(ValueError, match=f"expected an arena of {2 * ARENA} bytes, found a file of {ARENA} bytes"):
        SharedArena.open(path, 2 * ARENA)


@pytest.mark.parametrize(
    ("words", "fragment"),
    [
        ((ARENA - 8, 16, 0, 0), "expected the input region inside the"),
        ((0, 4, 0, 0), "expected the input region inside the"),
        ((0, 64, ARENA - 64, 128), "expected the result region inside the"),
        ((4, 64, 0, 0), "expected regions aligned to 8 bytes"),
    ],
)
def test_descriptors_outside_the_arena_are_rejected(words, fragment) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError, match=fragment):
        P.decode_batch_regions(P.BATCH_REGIONS.pack(*words), ARENA)
    with pytest.raises(ProtocolError, match="32-byte region descriptor"):
        P.decode_batch_regions(b"\0" * 24, ARENA)


def _shm_batch(host: RawHost, mm: mmap.mmap, seq: int, batch: pa.RecordBatch, at: int, result_at: int, capacity: int) -> None:
    data = _stream(batch)
    mm[at : at + len(data)] = data
    host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=seq, flags=P.FLAG_SHM),
              P.BATCH_REGIONS.pack(at, len(data), result_at, capacity))


def _answer(host: RawHost) -> tuple[P.Envelope, list[bytes], list[int]]:
    """The next RESULT or ERROR, and the regions released around it."""
    released: list[int] = []
    while True:
        env, rest = host.recv()
        if env.kind == P.Kind.RELEASE:
            released += list(memoryview(rest[0]).cast("Q"))
            continue
        if env.kind == P.Kind.RESULT and env.flags & P.FLAG_SHM:
            # A RESULT in the arena carries the input regions it releases after its descriptor.
            released += list(memoryview(rest[-1][16:]).cast("Q"))
            return env, rest, released
        if env.kind in (P.Kind.RESULT, P.Kind.ERROR):
            # The RELEASE for this batch follows its answer.
            if host.router.poll(2000):
                env2, rest2 = host.recv()
                assert env2.kind == P.Kind.RELEASE
                released += list(memoryview(rest2[0]).cast("Q"))
            return env, rest, released


def _ready_with_arena(host: RawHost, write_udf, module: str, name: str, path: str) -> P.Ready:  # type: ignore[no-untyped-def]
    """Starts a worker on ``module:name`` (from LIN), offers it the arena at ``path`` and returns its READY."""
    udf = write_udf(module, LIN)
    host.spawn()
    env, rest = host.handshake(f"{udf}:{name}", pa.schema([("x", pa.int64())]), shm=P.ShmOffer(path, ARENA))
    assert env.kind == P.Kind.READY
    return P.parse_ready(P.loads_json(rest[0], "READY"))


def test_worker_reads_and_writes_the_arena(raw_host: RawHost, write_udf, arena_file) -> None:  # type: ignore[no-untyped-def]
    path, mm = arena_file
    assert _ready_with_arena(raw_host, write_udf, "shm_lin.py", "lin", path).shm is True

    # In the arena both ways.
    batch = pa.record_batch({"x": pa.array(range(5000), pa.int64())})
    _shm_batch(raw_host, mm, 1, batch, at=0, result_at=1 << 20, capacity=1 << 20)
    env, rest, released = _answer(raw_host)
    assert env.kind == P.Kind.RESULT and env.flags & P.FLAG_SHM and env.sequence == 1
    offset, length = P.RESULT_REGION.unpack_from(rest[0])
    assert offset == 1 << 20 and 0 < length <= 1 << 20
    table = pa.ipc.open_stream(pa.py_buffer(bytes(mm[offset : offset + length]))).read_all()
    assert table.column("y").to_pylist() == [2 * x + 1 for x in range(5000)]
    assert released == [0]

    # A result region too small: the result comes back as frames.
    _shm_batch(raw_host, mm, 2, batch, at=65536, result_at=1 << 20, capacity=256)
    env, rest, released = _answer(raw_host)
    assert env.kind == P.Kind.RESULT and not env.flags & P.FLAG_SHM
    assert read_stream(rest).column("y").to_pylist() == [2 * x + 1 for x in range(5000)]
    assert released == [65536]

    # A descriptor outside the arena is a protocol error; the worker keeps serving.
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=3, flags=P.FLAG_SHM),
                  P.BATCH_REGIONS.pack(ARENA, 64, 0, 0))
    env, rest, _ = _answer(raw_host)
    assert env.kind == P.Kind.ERROR
    doc = P.parse_error(P.loads_json(rest[0], "ERROR"))
    assert doc.kind == "protocol" and "expected the input region inside the" in doc.message

    _shm_batch(raw_host, mm, 4, batch.slice(0, 10), at=0, result_at=1 << 20, capacity=1 << 20)
    env, rest, released = _answer(raw_host)
    assert env.kind == P.Kind.RESULT and env.sequence == 4 and released == [0]

    # A batch in the arena with another schema: a protocol error, and its region comes back
    # with a RELEASE right after the ERROR, not only with some later answer.
    wrong = pa.record_batch({"x": pa.array([1.5, 2.5])})
    _shm_batch(raw_host, mm, 5, wrong, at=131072, result_at=1 << 20, capacity=1 << 20)
    env, rest, released = _answer(raw_host)
    assert env.kind == P.Kind.ERROR and env.sequence == 5
    assert "expected the BATCH schema to be the OPEN input schema {x: int64}, found {x: double}" in P.parse_error(P.loads_json(rest[0], "ERROR")).message
    assert released == [131072]


def test_a_udf_that_keeps_its_inputs_holds_their_regions(raw_host: RawHost, write_udf, arena_file) -> None:  # type: ignore[no-untyped-def]
    path, mm = arena_file
    assert _ready_with_arena(raw_host, write_udf, "shm_keep.py", "keep", path).shm is True
    batch = pa.record_batch({"x": pa.array(range(100), pa.int64())})
    for seq, at in ((1, 0), (2, 65536)):
        _shm_batch(raw_host, mm, seq, batch, at=at, result_at=1 << 20, capacity=65536)
        env, rest, released = _answer(raw_host)
        assert env.kind == P.Kind.RESULT and env.flags & P.FLAG_SHM
        assert released == []  # the UDF still references both inputs


def test_an_arena_the_worker_cannot_open_falls_back_to_frames(raw_host: RawHost, write_udf) -> None:  # type: ignore[no-untyped-def]
    ready = _ready_with_arena(raw_host, write_udf, "shm_lin2.py", "lin", "/proc/self/fd/987654")
    assert ready.shm is False and ready.shm_error and "/proc/self/fd/987654" in ready.shm_error
    batch = pa.record_batch({"x": pa.array([1, 2], pa.int64())})
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=1), _stream(batch))
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.RESULT and read_stream(rest).column("y").to_pylist() == [3, 5]
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=2, flags=P.FLAG_SHM), P.BATCH_REGIONS.pack(0, 64, 0, 0))
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.ERROR
    assert "this worker mapped no arena" in P.parse_error(P.loads_json(rest[0], "ERROR")).message


def test_repeated_batches_are_read_with_the_cached_schema_message(arena_file) -> None:  # type: ignore[no-untyped-def]
    path, mm = arena_file
    arena = SharedArena.open(path, ARENA)
    schema = pa.schema([("x", pa.int64()), ("s", pa.string())])
    for k in range(3):
        batch = pa.record_batch([pa.array(range(k, k + 100)), pa.array([str(i) for i in range(100)])], schema=schema)
        data = _stream(batch)
        mm[8192 * k : 8192 * k + len(data)] = data
        got = arena.read_batch(8192 * k, len(data))
        assert got.equals(batch)
    assert arena._schema_message is not None  # the later reads took the short path
    # A stream whose schema differs is read by the general reader (the caller then rejects it).
    other = pa.record_batch({"y": pa.array([1.5])})
    data = _stream(other)
    mm[65536 : 65536 + len(data)] = data
    assert arena.read_batch(65536, len(data)).equals(other)
    # Bytes after the batch other than the end-of-stream marker are not taken on trust.
    batch = pa.record_batch([pa.array([7]), pa.array(["x"])], schema=schema)
    data = bytearray(_stream(batch))
    data[-8:] = b"\xff\xff\xff\xff\x10\x00\x00\x00"
    mm[131072 : 131072 + len(data)] = bytes(data)
    with pytest.raises(ProtocolError):
        arena.read_batch(131072, len(data))
