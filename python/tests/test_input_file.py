"""Batches read in place from the host's input file (PROTOCOL.md section 19) on the worker
side: the FILE descriptor's checks, the slices of one decoded message, a file that is not the
one the host saw, and a worker answering FILE batches with exact values."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import ARENA, RawHost
from isthmus import protocol as P
from isthmus.errors import ProtocolError
from isthmus.runtime import InputFiles, read_stream


LIN = """
import pyarrow.compute as pc
from isthmus import udf

@udf
def lin(batch):
    return {"y": pc.add(pc.multiply(batch["x"], 2), 1)}
"""


def write_stream(path: Path, batches: list[pa.RecordBatch]) -> list[tuple[int, int]]:
    """Writes an Arrow IPC stream with pyarrow; the (offset, length) of every message, the
    schema message first (the end-of-stream marker is not a message)."""
    with pa.ipc.new_stream(str(path), batches[0].schema) as w:
        for b in batches:
            w.write_batch(b)
    data = path.read_bytes()
    spans = []
    reader = pa.BufferReader(pa.py_buffer(data))
    while True:
        start = reader.tell()
        try:
            pa.ipc.read_message(reader)
        except EOFError:
            break
        spans.append((start, reader.tell() - start))
    assert data[start:] == P.EOS_MARKER
    return spans


def descriptor(path: Path, spans: list[tuple[int, int]], message: int, row_offset: int, rows: int, *,
               result: tuple[int, int] = (0, 0), inode: int | None = None, device: int | None = None) -> P.FileBatch:
    st = os.stat(path)
    return P.FileBatch(str(path), st.st_dev if device is None else device, st.st_ino if inode is None else inode, st.st_size,
                       *spans[0], *spans[message], row_offset, rows, *result)


def encode(d: P.FileBatch) -> bytes:
    return P.FILE_BATCH.pack(d.device, d.inode, d.size, d.schema_offset, d.schema_length, d.offset, d.length, d.row_offset, d.rows,
                             d.result_offset, d.result_capacity) + d.path.encode()


@pytest.fixture()
def two_batches(tmp_path: Path) -> tuple[Path, list[tuple[int, int]]]:
    batches = [
        pa.record_batch({"x": pa.array(range(k * 1000, k * 1000 + 1000), pa.int64()),
                         "s": pa.array([None if i % 7 == 0 else f"r{i}" for i in range(k * 1000, k * 1000 + 1000)])})
        for k in range(2)
    ]
    path = tmp_path / "in.arrows"
    return path, write_stream(path, batches)


def test_slices_of_one_message_are_read_in_place_with_one_decode(two_batches) -> None:  # type: ignore[no-untyped-def]
    path, spans = two_batches
    files = InputFiles()
    first = files.read(descriptor(path, spans, 1, 0, 300))
    assert first.column("x").to_pylist() == list(range(300))
    assert first.column("s").to_pylist()[:8] == [None, "r1", "r2", "r3", "r4", "r5", "r6", None]
    whole = files._last[1]  # type: ignore[index]
    # Bitmaps at row offsets that are not multiples of 8: a slice, not a re-encoding.
    second = files.read(descriptor(path, spans, 1, 301, 699))
    assert files._last[1] is whole  # type: ignore[index]
    assert second.column("x").to_pylist() == list(range(301, 1000))
    assert second.column("s").null_count == sum(1 for i in range(301, 1000) if i % 7 == 0)
    third = files.read(descriptor(path, spans, 2, 999, 1))
    assert third.to_pydict() == {"x": [1999], "s": ["r1999"]}
    assert files._last[1] is not whole  # type: ignore[index]
    # Slices keep their window mapped after the reader moved on.
    assert first.column("x")[299].as_py() == 299


def test_a_file_that_is_not_the_one_the_host_saw_is_refused(two_batches, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, spans = two_batches
    files = InputFiles()
    with pytest.raises(ProtocolError, match=r"expected the input file .* to be inode 12345 of device \d+, at least \d+ bytes long, found inode"):
        files.read(descriptor(path, spans, 1, 0, 10, inode=12345))
    st = os.stat(path)
    with pytest.raises(ProtocolError, match=f"to be inode {st.st_ino} of device {st.st_dev + 1},"):
        files.read(descriptor(path, spans, 1, 0, 10, device=st.st_dev + 1))
    with pytest.raises(ProtocolError, match="cannot open the input file .*missing.arrows: No such file"):
        files.read(P.FileBatch(str(tmp_path / "missing.arrows"), 1, 1, 4096, 0, 64, 64, 64, 0, 1, 0, 0))
    with pytest.raises(ProtocolError, match=r"expected rows 900 to 1100 of the 1000-row record batch"):
        files.read(descriptor(path, spans, 1, 900, 200))
    # A shorter file than the message's end (truncated after the host read it).
    d = descriptor(path, spans, 2, 0, 10)
    with open(path, "r+b") as f:
        f.truncate(spans[2][0] + 16)
    with pytest.raises(ProtocolError, match=r"at least \d+ bytes long, found inode \d+ of device \d+, \d+ bytes"):
        files.read(d)


def test_a_grown_file_is_still_read(two_batches) -> None:  # type: ignore[no-untyped-def]
    path, spans = two_batches
    d = descriptor(path, spans, 2, 10, 5)
    with open(path, "ab") as f:
        f.write(b"\0" * 4096)
    assert InputFiles().read(d).column("x").to_pylist() == [1010, 1011, 1012, 1013, 1014]


def many_batches(path: Path, count: int, rows: int = 100) -> list[tuple[int, int]]:
    return write_stream(path, [pa.record_batch({"x": pa.array(range(k * rows, (k + 1) * rows), pa.int64())})
                               for k in range(count)])


def test_messages_in_one_window_share_one_mapping(tmp_path: Path) -> None:
    path = tmp_path / "in.arrows"
    spans = many_batches(path, 6)
    files = InputFiles()
    got = [files.read(descriptor(path, spans, m, 0, 100)) for m in range(1, 7)]
    assert [b.column("x").to_pylist() for b in got] == [list(range(k * 100, (k + 1) * 100)) for k in range(6)]
    assert len(files._windows) == 1  # one mapping for the whole (small) file
    (window, end), = files._windows.values()
    assert end == path.stat().st_size  # never past the file's end


def test_only_the_last_two_windows_stay_mapped_and_older_slices_stay_valid(tmp_path: Path) -> None:
    import mmap

    path = tmp_path / "in.arrows"
    spans = many_batches(path, 40, rows=600)  # ~4.8 KB a message: messages cross page windows
    files = InputFiles(window=mmap.PAGESIZE)
    got = []
    for m in range(1, 41):
        got.append(files.read(descriptor(path, spans, m, 0, 600)))
        assert len(files._windows) <= 2
    # Slices read through windows that have left the cache still hold their bytes.
    assert [b.column("x").to_pylist() for b in got] == [list(range(k * 600, (k + 1) * 600)) for k in range(40)]


def test_under_an_address_space_limit_each_message_is_mapped_alone(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import resource

    from isthmus import runtime

    monkeypatch.setattr(resource, "getrlimit", lambda which: (1 << 34, resource.RLIM_INFINITY))
    assert runtime._window_bytes() == 0
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert runtime._window_bytes() == runtime._WINDOW
    path = tmp_path / "in.arrows"
    spans = many_batches(path, 3)
    files = InputFiles(window=0)
    assert files.read(descriptor(path, spans, 2, 5, 3)).column("x").to_pylist() == [105, 106, 107]
    assert not files._windows


def test_a_window_mapped_before_the_file_grew_is_mapped_again(tmp_path: Path) -> None:
    whole = tmp_path / "whole.arrows"
    spans = many_batches(whole, 3)
    data = whole.read_bytes()
    path = tmp_path / "growing.arrows"
    path.write_bytes(data[: spans[2][0] + spans[2][1]])  # the schema and the first two messages
    files = InputFiles()
    assert files.read(descriptor(path, spans, 1, 0, 2)).column("x").to_pylist() == [0, 1]
    (_, end), = files._windows.values()
    assert end == spans[2][0] + spans[2][1]
    with open(path, "ab") as f:
        f.write(data[spans[2][0] + spans[2][1]:])
    assert files.read(descriptor(path, spans, 3, 98, 2)).column("x").to_pylist() == [298, 299]
    (_, end), = files._windows.values()
    assert end == len(data)


def test_bytes_that_are_not_a_record_batch_are_a_protocol_error(two_batches) -> None:  # type: ignore[no-untyped-def]
    path, spans = two_batches
    # The schema message named as the record batch.
    d = descriptor(path, spans, 0, 0, 1)
    with pytest.raises(ProtocolError, match="cannot read the record batch at offset 0 of the input file"):
        InputFiles().read(d)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"offset": 12}, "expected the record batch message at an 8-byte aligned offset"),
        ({"length": 4}, "expected the record batch message at an 8-byte aligned offset"),
        ({"offset": 1 << 40}, "inside the"),
        ({"schema_offset": 1 << 40}, "expected the schema message at an 8-byte aligned offset"),
        ({"result_offset": ARENA - 8, "result_capacity": 64}, "expected the result region 8-byte aligned inside the"),
        ({"result_offset": 12, "result_capacity": 64}, "expected the result region 8-byte aligned inside the"),
    ],
)
def test_bad_descriptors_are_rejected(two_batches, change, fragment) -> None:  # type: ignore[no-untyped-def]
    path, spans = two_batches
    d = descriptor(path, spans, 1, 0, 10).__dict__ | change
    with pytest.raises(ProtocolError, match=fragment):
        P.decode_file_batch(encode(P.FileBatch(**d)), ARENA)


def test_descriptor_framing(two_batches) -> None:  # type: ignore[no-untyped-def]
    path, spans = two_batches
    good = encode(descriptor(path, spans, 1, 0, 10))
    assert P.decode_file_batch(good, ARENA) == descriptor(path, spans, 1, 0, 10)
    with pytest.raises(ProtocolError, match="88-byte file descriptor and a path of 1 to 4096 bytes"):
        P.decode_file_batch(good[: P.FILE_BATCH.size], ARENA)
    with pytest.raises(ProtocolError, match="88-byte file descriptor and a path of 1 to 4096 bytes"):
        P.decode_file_batch(good + b"x" * 4096, ARENA)
    with pytest.raises(ProtocolError, match="path in UTF-8"):
        P.decode_file_batch(good[: P.FILE_BATCH.size] + b"\xff\xfe", ARENA)


def test_worker_answers_file_batches(raw_host: RawHost, write_udf, arena_file, two_batches) -> None:  # type: ignore[no-untyped-def]
    arena, mm = arena_file
    path, spans = two_batches
    udf = write_udf("file_lin.py", LIN)
    raw_host.spawn()
    env, rest = raw_host.recv()
    assert "input_file" in P.parse_hello(P.loads_json(rest[0], "HELLO")).capabilities
    doc = P.Open((P.StageRef("s", f"{udf}:lin", {}),), heartbeat_ms=1000, missed_heartbeats=5, shm=P.ShmOffer(arena, ARENA))
    schema = pa.schema([("x", pa.int64()), ("s", pa.string())])
    raw_host.send(P.encode_envelope(P.Kind.OPEN), P.dumps_json(doc.to_json()), schema.serialize().to_pybytes())
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.READY and P.parse_ready(P.loads_json(rest[0], "READY")).shm is True
    file_flags = P.FLAG_SHM | P.FLAG_FILE

    # Into the result region, from rows 1200..1499 of the file (its second message).
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=1, flags=file_flags),
                  encode(descriptor(path, spans, 2, 200, 300, result=(65536, 65536))))
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.RESULT and env.flags & P.FLAG_SHM and env.sequence == 1
    offset, length = P.RESULT_REGION.unpack_from(rest[0])
    got = pa.ipc.open_stream(pa.py_buffer(bytes(mm[offset : offset + length]))).read_all()
    assert got.column("y").to_pylist() == [2 * x + 1 for x in range(1200, 1500)]
    assert len(rest[0]) == P.RESULT_REGION.size  # no input region to release

    # No result region: the answer comes as frames.
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=2, flags=file_flags),
                  encode(descriptor(path, spans, 1, 0, 7)))
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.RESULT and not env.flags & P.FLAG_SHM
    assert read_stream(rest).column("y").to_pylist() == [1, 3, 5, 7, 9, 11, 13]

    # FILE without SHM, and a file the worker cannot open: protocol errors, and it goes on.
    for seq, flags, frame, fragment in (
        (3, P.FLAG_FILE, encode(descriptor(path, spans, 1, 0, 7)), "expected the SHM flag with the FILE flag"),
        (4, file_flags, encode(P.FileBatch("/nonexistent/in.arrows", 1, 1, 4096, 0, 64, 64, 64, 0, 1, 0, 0)), "cannot open the input file"),
    ):
        raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=seq, flags=flags), frame)
        env, rest = raw_host.recv()
        assert env.kind == P.Kind.ERROR and env.sequence == seq
        report = P.parse_error(P.loads_json(rest[0], "ERROR"))
        assert report.kind == "protocol" and fragment in report.message
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=5, flags=file_flags),
                  encode(descriptor(path, spans, 1, 998, 2)))
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.RESULT and read_stream(rest).column("y").to_pylist() == [1997, 1999]

    # A file whose schema is not the OPEN input schema: refused on every batch cut from it,
    # while the file read before goes on being read.
    other = path.parent / "other.arrows"
    other_spans = write_stream(other, [pa.record_batch({"x": pa.array([1.5, 2.5], pa.float64())})])
    for seq in (6, 7):
        raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=seq, flags=file_flags),
                      encode(descriptor(other, other_spans, 1, 0, 2)))
        env, rest = raw_host.recv()
        assert env.kind == P.Kind.ERROR and env.sequence == seq
        report = P.parse_error(P.loads_json(rest[0], "ERROR"))
        assert report.kind == "protocol" and "expected the BATCH schema to be the OPEN input schema {x: int64, s: string}, found {x: double}" in report.message
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=8, flags=file_flags),
                  encode(descriptor(path, spans, 2, 0, 2)))
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.RESULT and env.sequence == 8 and read_stream(rest).column("y").to_pylist() == [2001, 2003]
