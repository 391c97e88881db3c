"""Shared fixtures: UDF files in a temporary directory, and a scripted raw host."""

from __future__ import annotations

import mmap
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest
import zmq
from hypothesis import settings

from isthmus import protocol as P

# Property tests check values, never speed: no per-example deadline (a loaded machine can
# stall one example past hypothesis' default 200 ms and fail the run as "flaky").
settings.register_profile("isthmus", deadline=None)
settings.load_profile("isthmus")

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


@pytest.fixture
def write_udf(tmp_path: Any) -> Callable[[str, str], str]:
    """Writes ``source`` (dedented) to ``tmp_path/name`` and returns its path."""

    def write(name: str, source: str) -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        return str(path)

    return write


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


class RawHost:
    """A ROUTER on a private ipc endpoint that a test drives message by message."""

    def __init__(self, curve: bool = False, keypair: tuple[bytes, bytes] | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="isthmus-t-", dir="/tmp" if os.path.isdir("/tmp") else None)
        self.token = secrets.token_hex(16)
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.server_public: bytes | None = None
        if curve:
            self.server_public, secret = keypair or zmq.curve_keypair()
            self.router.curve_server = True
            self.router.curve_secretkey = secret
            port = self.router.bind_to_random_port("tcp://127.0.0.1")
            self.endpoint = f"tcp://127.0.0.1:{port}"
        else:
            self.endpoint = f"ipc://{self.dir}/isthmus.sock"
            self.router.bind(self.endpoint)
        self.identity: bytes | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, *, env: dict[str, str] | None = None, args: list[str] | None = None, cwd: str | None = None) -> subprocess.Popen[bytes]:
        e = worker_env(ISTHMUS_ENDPOINT=self.endpoint, ISTHMUS_TOKEN=self.token, ISTHMUS_SLOT="0")
        e.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "isthmus.worker", *(args or [])],
            env=e, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        return self.proc

    def recv(self, timeout: float = 20.0) -> tuple[P.Envelope, list[bytes]]:
        if not self.router.poll(int(timeout * 1000)):
            raise AssertionError(f"no message from the worker within {timeout} s")
        frames = self.router.recv_multipart()
        self.identity = frames[0]
        return P.decode_envelope(frames[1]), frames[2:]

    def send(self, *frames: bytes) -> None:
        assert self.identity is not None
        self.router.send_multipart([self.identity, *frames])

    def handshake(self, udf: str, schema: pa.Schema, *, heartbeat_ms: int = 1000, missed: int = 5,
                  options: dict[str, Any] | None = None, shm: P.ShmOffer | None = None,
                  doorbell: P.DoorbellOffer | None = None) -> tuple[P.Envelope, list[bytes]]:
        env, rest = self.recv()
        assert env.kind == P.Kind.HELLO
        doc = P.Open((P.StageRef("s", udf, dict(options or {})),), heartbeat_ms=heartbeat_ms, missed_heartbeats=missed,
                     shm=shm, doorbell=doorbell)
        self.send(P.encode_envelope(P.Kind.OPEN), P.dumps_json(doc.to_json()), schema.serialize().to_pybytes())
        return self.recv()

    def wait(self, timeout: float = 20.0) -> tuple[int, str]:
        assert self.proc is not None
        _out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err.decode()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        self.router.close(0)
        self.ctx.term()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def raw_host() -> Iterator[RawHost]:
    host = RawHost()
    try:
        yield host
    finally:
        host.close()


#: The size of the arena the ``arena_file`` fixture makes.
ARENA = 4 << 20


@pytest.fixture()
def arena_file() -> Iterator[tuple[str, mmap.mmap]]:
    """A 4 MiB memfd standing in for the host's arena: its /proc path and a mapping of it."""
    fd = os.memfd_create("isthmus-test-arena")
    os.ftruncate(fd, ARENA)
    mm = mmap.mmap(fd, ARENA)
    yield f"/proc/{os.getpid()}/fd/{fd}", mm
    mm.close()
    os.close(fd)


def ipc_stream(*batches: pa.RecordBatch, schema: pa.Schema | None = None) -> bytes:
    """pyarrow's stream writer over ``batches`` (of ``schema``, else the first batch's; none with a schema)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema or batches[0].schema) as w:
        for b in batches:
            w.write_batch(b)
    return sink.getvalue().to_pybytes()


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False
