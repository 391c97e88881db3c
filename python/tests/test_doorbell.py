"""Doorbells (PROTOCOL.md section 18) on the worker side: a BATCH put in request mailbox j
with the byte j + 1 on the request FIFO is answered in reply mailbox j with the same byte on
the reply FIFO; anything that does not fit, and everything that is not the answer to such a
BATCH, goes through the socket; the worker takes doorbell and socket in turns; a mailbox or a
ring that lies is a protocol error."""

from __future__ import annotations

import mmap
import os
import select
import struct
import threading
import time

import pyarrow as pa
import pytest
import zmq

from conftest import RawHost, ipc_stream
from isthmus import protocol as P
from isthmus.errors import ProtocolError
from isthmus.runtime import Worker, WorkerConfig, read_stream

ARENA = 1 << 20
BOX = 64 << 10

LIN = """
import os
import time
import pyarrow.compute as pc
from isthmus import udf

HERE = os.path.dirname(os.path.abspath(__file__))

@udf
def slow_lin(batch):
    # x = -1 says "started" and holds until the test says "go"; other negative x take 0.3 s.
    if batch["x"][0].as_py() == -1:
        open(os.path.join(HERE, "started"), "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(HERE, "go")) and time.monotonic() < deadline:
            time.sleep(0.005)
    elif batch["x"][0].as_py() < 0:
        time.sleep(0.3)
    return {"y": pc.add(pc.multiply(batch["x"], 2), 1)}

@udf
def lin(batch):
    return {"y": pc.add(pc.multiply(batch["x"], 2), 1)}

@udf
def explode(batch):
    return {"y": list(range(batch.num_rows * 50))}
"""


# -- the mailbox layout ------------------------------------------------------------------


def test_mailbox_round_trip_pads_every_frame_to_8_bytes() -> None:
    frames = [b"e" * 24, b"", b"abc", bytes(range(9)), b"x" * 16]
    box = bytearray(256)
    assert P.encode_mailbox(frames, memoryview(box))
    assert P.decode_mailbox(memoryview(box)) == frames
    assert struct.unpack_from("<II", box) == (5, 0)
    at = 8
    for f in frames:
        assert struct.unpack_from("<Q", box, at) == (len(f),)
        at += 8 + ((len(f) + 7) & ~7)
        assert at % 8 == 0
    assert box[8 + 8 + 24 + 8 + 8 + 3 : 8 + 8 + 24 + 8 + 8 + 8] == b"\0" * 5  # padding of b"abc"


def test_mailbox_that_does_not_fit_is_not_written() -> None:
    box = bytearray(b"\xee" * 119)
    assert not P.encode_mailbox([b"x" * 100], memoryview(box))
    assert box == bytearray(b"\xee" * 119)
    assert P.encode_mailbox([b"x" * 100], memoryview(bytearray(8 + 8 + 104)))
    assert not P.encode_mailbox([], memoryview(bytearray(64)))
    assert not P.encode_mailbox([b"a"] * (P.MAILBOX_MAX_FRAMES + 1), memoryview(bytearray(4096)))


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda b: struct.pack_into("<I", b, 0, 0), "expected 1 to 64 frames"),
        (lambda b: struct.pack_into("<I", b, 0, 1000), "expected 1 to 64 frames"),
        (lambda b: struct.pack_into("<Q", b, 8, 1 << 62), "expected frame 0 inside the 48-byte mailbox"),
        (lambda b: struct.pack_into("<I", b, 0, 3), "expected the length of frame 2 inside the 48-byte mailbox"),
    ],
)
def test_mailboxes_that_lie_are_refused(mutate, fragment) -> None:  # type: ignore[no-untyped-def]
    box = bytearray(48)
    assert P.encode_mailbox([b"abc", b"123456789"], memoryview(box))
    mutate(box)
    with pytest.raises(ProtocolError, match=fragment):
        P.decode_mailbox(memoryview(box))
    with pytest.raises(ProtocolError, match="at least 8 bytes"):
        P.decode_mailbox(memoryview(b"\x01\0\0"))


# -- a worker with doorbells, driven by a raw host ----------------------------------------


class Bells:
    """The host's side: an arena with ``slots`` mailboxes each way, two FIFOs opened read-write."""

    def __init__(self, tmp_path, size: int = BOX, request_offset: int = 0, reply_offset: int = BOX, slots: int = 1) -> None:  # type: ignore[no-untyped-def]
        self.fd = os.memfd_create("isthmus-test-arena")
        os.ftruncate(self.fd, ARENA)
        self.mm = mmap.mmap(self.fd, ARENA)
        self.arena = P.ShmOffer(f"/proc/{os.getpid()}/fd/{self.fd}", ARENA)
        paths = [str(tmp_path / "slot0.request"), str(tmp_path / "slot0.reply")]
        for p in paths:
            os.mkfifo(p, 0o600)
        self.request_fd, self.reply_fd = (os.open(p, os.O_RDWR | os.O_NONBLOCK) for p in paths)
        self.offer = P.DoorbellOffer(paths[0], paths[1], request_offset, reply_offset, size, slots)

    def put(self, slot: int, *frames: bytes) -> None:
        """Writes request mailbox ``slot`` without ringing."""
        at = self.offer.request_offset + slot * self.offer.size
        box = memoryview(self.mm)[at : at + self.offer.size]
        assert P.encode_mailbox(list(frames), box)
        del box

    def ring(self, *frames: bytes) -> None:
        self.put(0, *frames)
        os.write(self.request_fd, b"\x01")

    def reply(self, slot: int) -> tuple[P.Envelope, list[bytes]]:
        at = self.offer.reply_offset + slot * self.offer.size
        box = memoryview(self.mm)[at : at + self.offer.size]
        frames = P.decode_mailbox(box)
        del box
        return P.decode_envelope(frames[0]), frames[1:]

    def rings(self, count: int, timeout_ms: int = 20_000) -> bytes:
        """The next ``count`` bytes on the reply FIFO (fewer after the timeout)."""
        got = b""
        p = select.poll()
        p.register(self.reply_fd, select.POLLIN)
        deadline = time.monotonic() + timeout_ms / 1000
        while len(got) < count and p.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            got += os.read(self.reply_fd, count - len(got))
        return got

    def answer(self, timeout_ms: int = 20_000) -> tuple[P.Envelope, list[bytes]] | None:
        ring = self.rings(1, timeout_ms)
        if not ring:
            return None
        assert ring == b"\x01"
        return self.reply(0)

    def close(self) -> None:
        os.close(self.request_fd)
        os.close(self.reply_fd)
        self.mm.close()
        os.close(self.fd)


@pytest.fixture()
def bells(tmp_path):  # type: ignore[no-untyped-def]
    b = Bells(tmp_path)
    yield b
    b.close()


def _ready(host: RawHost, write_udf, bells: Bells, name: str = "lin", offer: P.DoorbellOffer | None = None) -> P.Ready:  # type: ignore[no-untyped-def]
    udf = write_udf(f"bell_{name}.py", LIN)
    host.spawn()
    env, rest = host.handshake(f"{udf}:{name}", pa.schema([("x", pa.int64())]), shm=bells.arena, doorbell=offer or bells.offer)
    assert env.kind == P.Kind.READY
    return P.parse_ready(P.loads_json(rest[0], "READY"))


def _batch(seq: int, values: list[int]) -> list[bytes]:
    return [P.encode_envelope(P.Kind.BATCH, stage=0, sequence=seq), ipc_stream(pa.record_batch({"x": pa.array(values, pa.int64())}))]


def test_hello_announces_the_capability(raw_host: RawHost) -> None:
    raw_host.spawn()
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.HELLO
    assert "doorbell" in P.parse_hello(P.loads_json(rest[0], "HELLO")).capabilities


def test_requests_and_answers_go_through_the_mailboxes(raw_host: RawHost, write_udf, bells: Bells) -> None:  # type: ignore[no-untyped-def]
    ready = _ready(raw_host, write_udf, bells)
    assert ready.shm is True and ready.doorbell is True and ready.doorbell_error is None
    for seq in range(1, 6):
        bells.ring(*_batch(seq, [seq, 10 * seq]))
        got = bells.answer()
        assert got is not None
        env, rest = got
        assert env.kind == P.Kind.RESULT and env.sequence == seq
        assert read_stream(rest).column("y").to_pylist() == [2 * seq + 1, 20 * seq + 1]
    # Nothing came through the socket meanwhile.
    assert not raw_host.router.poll(200)
    # The socket still works for BATCH too, and its answer comes back on the socket.
    raw_host.send(*_batch(9, [4]))
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.RESULT and env.sequence == 9 and read_stream(rest).column("y").to_pylist() == [9]


def test_a_malformed_request_mailbox_is_a_protocol_error_on_the_socket(raw_host: RawHost, write_udf, bells: Bells) -> None:  # type: ignore[no-untyped-def]
    assert _ready(raw_host, write_udf, bells).doorbell is True
    struct.pack_into("<II", bells.mm, bells.offer.request_offset, 1000, 0)
    os.write(bells.request_fd, b"\x01")
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.ERROR
    doc = P.parse_error(P.loads_json(rest[0], "ERROR"))
    assert doc.kind == "protocol" and "expected 1 to 64 frames in the mailbox message, found 1000" in doc.message
    bells.ring(*_batch(2, [5]))
    got = bells.answer()
    assert got is not None and read_stream(got[1]).column("y").to_pylist() == [11]


def test_an_undecodable_batch_in_the_mailbox_gets_its_error_in_the_reply_mailbox(raw_host: RawHost, write_udf, bells: Bells) -> None:  # type: ignore[no-untyped-def]
    assert _ready(raw_host, write_udf, bells).doorbell is True
    bells.ring(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=3), b"not arrow at all")
    got = bells.answer()
    assert got is not None
    env, rest = got
    assert env.kind == P.Kind.ERROR and env.sequence == 3
    assert P.parse_error(P.loads_json(rest[0], "ERROR")).kind == "protocol"


def test_an_answer_too_large_for_the_reply_mailbox_comes_through_the_socket(raw_host: RawHost, write_udf, tmp_path) -> None:  # type: ignore[no-untyped-def]
    small = Bells(tmp_path, size=4096, request_offset=0, reply_offset=4096)
    try:
        assert _ready(raw_host, write_udf, small, name="explode").doorbell is True
        small.ring(*_batch(1, [1]))  # 50 rows back: fits the 4 KiB reply mailbox
        got = small.answer(timeout_ms=5000)
        assert got is not None and read_stream(got[1]).column("y").to_pylist() == list(range(50))
        small.ring(*_batch(2, list(range(100))))  # 5,000 rows back: 40 KB, does not fit
        env, rest = raw_host.recv()
        assert env.kind == P.Kind.RESULT and env.sequence == 2
        assert read_stream(rest).column("y").to_pylist() == list(range(5000))
        assert small.answer(timeout_ms=200) is None  # no ring for it
        small.ring(*_batch(3, [7]))  # the mailbox is free again
        got = small.answer(timeout_ms=5000)
        assert got is not None and got[0].sequence == 3
    finally:
        small.close()


def test_doorbells_that_cannot_be_opened_leave_the_socket(raw_host: RawHost, write_udf, bells: Bells, tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = P.DoorbellOffer(str(tmp_path / "nope.request"), str(tmp_path / "nope.reply"), 0, BOX, BOX)
    ready = _ready(raw_host, write_udf, bells, offer=missing)
    assert ready.doorbell is False and ready.doorbell_error and "nope.request" in ready.doorbell_error
    raw_host.send(*_batch(1, [1]))
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.RESULT and read_stream(rest).column("y").to_pylist() == [3]


def test_mailboxes_outside_the_arena_are_refused(raw_host: RawHost, write_udf, bells: Bells) -> None:  # type: ignore[no-untyped-def]
    outside = P.DoorbellOffer(bells.offer.request_fifo, bells.offer.reply_fifo, 0, ARENA - 8, BOX)
    ready = _ready(raw_host, write_udf, bells, offer=outside)
    assert ready.doorbell is False and "expected the reply mailbox inside the" in (ready.doorbell_error or "")


def test_several_mailboxes_are_answered_in_the_mailboxes_they_were_rung_in(raw_host: RawHost, write_udf, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ring = Bells(tmp_path, request_offset=0, reply_offset=3 * BOX, slots=3)
    try:
        assert _ready(raw_host, write_udf, ring).doorbell is True
        # Three batches in mailboxes 2, 0 and 1, rung at once (one write: the worker reads
        # all three rings together and answers each in its own reply mailbox).
        for slot, seq in ((2, 10), (0, 11), (1, 12)):
            ring.put(slot, *_batch(seq, [seq]))
        os.write(ring.request_fd, bytes((3, 1, 2)))
        assert ring.rings(3) == bytes((3, 1, 2))
        for slot, seq in ((2, 10), (0, 11), (1, 12)):
            env, rest = ring.reply(slot)
            assert env.kind == P.Kind.RESULT and env.sequence == seq
            assert read_stream(rest).column("y").to_pylist() == [2 * seq + 1]
        assert not raw_host.router.poll(200)  # nothing on the socket
        # A ring that names no mailbox is a protocol error on the socket; the rest go on.
        ring.put(1, *_batch(13, [1]))
        os.write(ring.request_fd, bytes((9, 2)))
        env, rest = raw_host.recv()
        assert env.kind == P.Kind.ERROR
        doc = P.parse_error(P.loads_json(rest[0], "ERROR"))
        assert doc.kind == "protocol" and "expected a doorbell ring naming one of 3 mailboxes (1 to 3), found 9" in doc.message
        assert ring.rings(1) == b"\x02" and ring.reply(1)[0].sequence == 13
    finally:
        ring.close()


def test_a_socket_batch_waits_behind_at_most_one_doorbell_batch(raw_host: RawHost, write_udf, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # While the worker is busy with the batch in mailbox 0, two more are rung and one comes
    # through the socket: the worker takes the two paths in turns, so the socket's batch is
    # answered right after the first, not after all three (0.3 s each). The first batch holds
    # the worker until all three wait (files, not sleeps: a loaded machine may be slow).
    ring = Bells(tmp_path, request_offset=0, reply_offset=3 * BOX, slots=3)
    try:
        assert _ready(raw_host, write_udf, ring, name="slow_lin").doorbell is True
        ring.put(0, *_batch(1, [-1]))
        os.write(ring.request_fd, b"\x01")
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists():  # the worker is in the UDF now
            assert time.monotonic() < deadline, "the worker did not start the first batch"
            time.sleep(0.005)
        ring.put(1, *_batch(2, [-2]))
        ring.put(2, *_batch(3, [-3]))
        os.write(ring.request_fd, bytes((2, 3)))
        raw_host.send(*_batch(4, [4]))
        time.sleep(0.5)  # ZeroMQ delivers the socket's batch to the worker meanwhile
        (tmp_path / "go").touch()
        env, rest = raw_host.recv(10)
        assert env.kind == P.Kind.RESULT and env.sequence == 4 and read_stream(rest).column("y").to_pylist() == [9]
        assert ring.rings(3, timeout_ms=0) == b"\x01"  # only the first doorbell batch before it
        assert ring.rings(2) == bytes((2, 3))
        assert [ring.reply(j)[0].sequence for j in (0, 1, 2)] == [1, 2, 3]
    finally:
        ring.close()


@pytest.mark.parametrize(("slots", "size", "fragment"), [(0, 64, "slots from 1 to 255, found 0"), (256, 64, "slots from 1 to 255, found 256"), (2, 60, "size to be a multiple of 8, found 60")])
def test_a_doorbell_offer_with_bad_slots_or_size_is_refused(slots: int, size: int, fragment: str) -> None:
    doc = {"request_fifo": "a", "reply_fifo": "b", "request_offset": 0, "reply_offset": 4096, "size": size, "slots": slots}
    with pytest.raises(ProtocolError, match=fragment):
        P.parse_open({"stages": [{"name": "s", "udf": "m.py:f"}], "doorbell": doc})


def test_offsets_must_be_aligned() -> None:
    doc = {"request_fifo": "a", "reply_fifo": "b", "request_offset": 4, "reply_offset": 64, "size": 64}
    with pytest.raises(ProtocolError, match="request_offset to be a non-negative multiple of 8, found 4"):
        P.parse_open({"stages": [{"name": "s", "udf": "m.py:f"}], "doorbell": doc})


def test_a_request_fifo_without_writer_leaves_the_socket(raw_host: RawHost, write_udf, bells: Bells) -> None:  # type: ignore[no-untyped-def]
    assert _ready(raw_host, write_udf, bells).doorbell is True
    os.close(bells.request_fd)  # the host lets go of the request FIFO: the worker sees end of file
    bells.request_fd = os.open(os.devnull, os.O_RDONLY)  # for close()
    time.sleep(0.3)
    raw_host.send(*_batch(4, [1]))
    env, rest = raw_host.recv(10)
    assert env.kind == P.Kind.RESULT and env.sequence == 4 and read_stream(rest).column("y").to_pylist() == [3]
    assert raw_host.proc is not None and raw_host.proc.poll() is None  # alive, not busy-looping to death


def test_a_protocol_error_in_a_doorbell_batch_is_answered_in_the_reply_mailbox(raw_host: RawHost, write_udf, bells: Bells) -> None:  # type: ignore[no-untyped-def]
    assert _ready(raw_host, write_udf, bells).doorbell is True
    bells.ring(P.encode_envelope(P.Kind.BATCH, stage=1, sequence=5, attempt=2), _batch(5, [1])[1])
    got = bells.answer(5000)
    assert got is not None
    env, rest = got
    assert (env.kind, env.sequence, env.attempt) == (P.Kind.ERROR, 5, 2)
    assert "expected BATCH for stage 0, found stage 1" in P.parse_error(P.loads_json(rest[0], "ERROR")).message
    bells.ring(*_batch(6, [1]))
    got = bells.answer(5000)
    assert got is not None and got[0].sequence == 6


def test_a_full_reply_fifo_sends_the_answer_through_the_socket(raw_host: RawHost, write_udf, bells: Bells) -> None:  # type: ignore[no-untyped-def]
    assert _ready(raw_host, write_udf, bells).doorbell is True
    try:
        while True:
            os.write(bells.reply_fd, b"\0" * 4096)
    except BlockingIOError:
        pass
    bells.ring(*_batch(7, [2]))
    env, rest = raw_host.recv(10)
    assert env.kind == P.Kind.RESULT and env.sequence == 7 and read_stream(rest).column("y").to_pylist() == [5]


def test_an_in_process_worker_uses_the_doorbells_and_stops(tmp_path, write_udf, bells: Bells) -> None:  # type: ignore[no-untyped-def]
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    endpoint = f"ipc://{tmp_path}/s.sock"
    router.bind(endpoint)
    udf = write_udf("bell_inproc.py", LIN)
    worker = Worker(WorkerConfig(endpoint=endpoint, token="t", slot=0, in_process=True, warm=False), context=ctx)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run()))
    thread.start()
    try:
        assert router.poll(10_000)
        identity = router.recv_multipart()[0]
        doc = P.Open((P.StageRef("s", f"{udf}:lin", {}),), shm=bells.arena, doorbell=bells.offer)
        router.send_multipart([identity, P.encode_envelope(P.Kind.OPEN), P.dumps_json(doc.to_json()),
                               pa.schema([("x", pa.int64())]).serialize().to_pybytes()])
        assert router.poll(10_000)
        ready = router.recv_multipart()
        assert P.parse_ready(P.loads_json(ready[2], "READY")).doorbell is True
        bells.ring(*_batch(1, [3]))
        got = bells.answer(5000)
        assert got is not None and read_stream(got[1]).column("y").to_pylist() == [7]
    finally:
        worker.stop()
        thread.join(10)
        router.close(0)
        ctx.term()
    assert not thread.is_alive() and codes == [0]
