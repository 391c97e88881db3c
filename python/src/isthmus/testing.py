"""Run UDFs through the real worker loop and protocol, from Python.

:func:`run_udf` is the one-call form for tests and notebooks::

    from isthmus.testing import run_udf
    out = run_udf("score.py:predict", table, batch_rows=1000, workers=2)

    # Skip the rows the UDF raises on (stage option on_error="skip"): the worker
    # isolates them and every other row's output is kept, in order.
    out, failures = run_udf("score.py:predict", table, on_error="skip")
    for f in failures:          # FailedRow: row (index in table), stage, exc_type, message, traceback
        print(f.row, f.exc_type, f.message)

:class:`LocalHost` is a small, pure-Python implementation of the host side of
the protocol (a ZeroMQ ROUTER on a private ``ipc://`` endpoint). It spawns
``python -m isthmus.worker`` subprocesses — or, for callables, runs the worker
loop in threads of this process — performs HELLO/OPEN/READY, sends BATCH
messages with bounded credits, and returns RESULTs in input order. It is also
the reference host for latency benchmarks, so its per-batch path sends and
receives frames without copying.

Workers started here receive the Linux parent-death signal when the thread
that started them exits: start a LocalHost from a thread that outlives it.
"""

from __future__ import annotations

import collections
import hmac
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Literal, NamedTuple, overload

import pyarrow as pa
import zmq

from . import protocol as P
from .errors import ProtocolError, SchemaError, UDFError, WorkerError
from .runtime import StreamEncoder, Worker, WorkerConfig, as_aligned_buffer, read_stream

__all__ = ["HostStage", "LocalHost", "FailedRow", "SkipResult", "run_udf"]

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class HostStage:
    """A stage as the host names it: a display name, a UDF (reference string or
    callable) and options (``{"rows": "same"}``)."""

    name: str
    udf: str | Callable[..., Any]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FailedRow:
    """An input row the worker isolated because the chain raised on it
    (``on_error="skip"``; the RESULT's failed-rows document, one entry).

    ``row`` is the 0-based index of the row in everything sent through this
    host (for :func:`run_udf`: the index in ``data``); ``sequence`` is the
    batch and ``batch_row`` the index within it. ``stage`` names the stage
    that raised; ``traceback`` holds the user frames (at most 8 KiB).
    """

    row: int
    sequence: int
    batch_row: int
    stage: str | None
    exc_type: str
    message: str
    traceback: str


class SkipResult(NamedTuple):
    """What ``run_udf(..., on_error="skip")`` returns: the output of every row
    that did not fail (in input order) and the failed rows, ascending.
    Unpacks as ``table, failures = run_udf(...)``."""

    table: pa.Table
    failures: list[FailedRow]


def _as_stage(item: Any, index: int) -> HostStage:
    if isinstance(item, HostStage):
        return item
    if isinstance(item, str):
        tail = item.rpartition(":")[2]
        name = tail if tail and tail.isidentifier() else os.path.splitext(os.path.basename(item))[0]
        return HostStage(name or f"stage{index}", item)
    if callable(item):
        spec = getattr(item, "__isthmus_udf__", None)
        name = getattr(spec, "name", None) or getattr(item, "__name__", None) or type(item).__name__
        return HostStage(str(name), item)
    raise TypeError(f"expected a UDF reference, a callable or a HostStage, found {type(item).__name__}")


class _OutputPump:
    """Forwards a worker's stdout/stderr lines to our stderr and keeps the tail."""

    def __init__(self, stream: IO[bytes], prefix: str, echo: bool, tail: collections.deque[str]) -> None:
        self._stream = stream
        self._prefix = prefix
        self._echo = echo
        self._tail = tail
        self.thread = threading.Thread(target=self._run, name=f"isthmus-pump{prefix}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for raw in iter(self._stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._tail.append(line)
            if self._echo:
                try:
                    sys.stderr.write(f"{self._prefix}{line}\n")
                except (OSError, ValueError):
                    pass
        self._stream.close()


@dataclass
class _Pending:
    seq: int
    attempt: int
    sent: float
    rows: int = 0
    row_start: int = 0


@dataclass
class _Handle:
    slot: int
    proc: subprocess.Popen[bytes] | None = None
    thread: threading.Thread | None = None
    worker: Worker | None = None
    thread_code: list[int] = field(default_factory=list)
    identity: bytes | None = None
    hello: P.Hello | None = None
    ready: bool = False
    closed: bool = False
    inflight: dict[int, _Pending] = field(default_factory=dict)
    last_sent: float = 0.0
    heartbeat: P.HeartbeatReport | None = None
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40))
    pumps: list[_OutputPump] = field(default_factory=list)

    def exit_code(self) -> int | None:
        if self.proc is not None:
            return self.proc.poll()
        if self.thread is not None and not self.thread.is_alive():
            return self.thread_code[0] if self.thread_code else 1
        return None

    def stderr_tail(self) -> str:
        return "\n".join(self.tail)


def _private_dir() -> str:
    path = tempfile.mkdtemp(prefix="isthmus-")  # mode 0700
    if len(path) > 80 and os.path.isdir("/tmp"):  # ipc paths are limited to ~107 bytes
        shutil.rmtree(path, ignore_errors=True)
        path = tempfile.mkdtemp(prefix="isthmus-", dir="/tmp")
    os.chmod(path, 0o700)
    return path


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


class LocalHost:
    """A pure-Python host for the bridge protocol (ROUTER side).

    ``stages`` are fused into one round trip, in order. ``input_schema`` is the
    schema of every batch that will be sent. Callables (and any stage when
    ``in_process=True``) run in worker threads of this process; reference
    strings run in ``python -m isthmus.worker`` subprocesses (``python``
    selects the interpreter). ``credits`` bounds the batches in flight per
    worker.

    ``on_error="skip"`` sends the stage option ``on_error: "skip"`` on every
    stage: a batch on which the chain raises comes back with the outputs of
    its good rows, and the rows that raised are collected as
    :class:`FailedRow` in :attr:`failures` (:meth:`run_with_failures` yields
    them per batch). The default ``"fail"`` raises :class:`UDFError`.
    """

    def __init__(
        self,
        stages: Sequence[str | Callable[..., Any] | HostStage],
        input_schema: pa.Schema,
        *,
        workers: int = 1,
        credits: int = 2,
        heartbeat_ms: int = 1000,
        missed_heartbeats: int = 5,
        startup_timeout: float = 60.0,
        batch_timeout: float | None = None,
        in_process: bool | None = None,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        echo_output: bool = True,
        on_error: str = "fail",
    ) -> None:
        if on_error not in P.ON_ERROR_VALUES:
            raise ValueError(f"expected on_error to be 'fail' or 'skip', found {on_error!r}")
        if workers < 1:
            raise ValueError(f"expected workers >= 1, found {workers}")
        if credits < 1:
            raise ValueError(f"expected credits >= 1, found {credits}")
        self.stages = [_as_stage(s, i) for i, s in enumerate(stages)]
        if not self.stages:
            raise ValueError("expected at least one stage, found none")
        self.on_error = on_error
        if on_error != "fail":  # the option applies to the chain: same value on every stage
            self.stages = [HostStage(s.name, s.udf, {**s.options, "on_error": on_error}) for s in self.stages]
        # A stage option on_error=skip on any stage (HostStage options) covers the chain too.
        self._skip = any(s.options.get("on_error") == "skip" for s in self.stages)
        self.input_schema = input_schema
        self.workers = workers
        self.credits = credits
        self.heartbeat_ms = heartbeat_ms
        self.missed_heartbeats = missed_heartbeats
        self.startup_timeout = startup_timeout
        self.batch_timeout = batch_timeout
        has_callable = any(not isinstance(s.udf, str) for s in self.stages)
        self.in_process = has_callable if in_process is None else in_process
        if has_callable and not self.in_process:
            raise ValueError("expected in_process=True (or None) for callable stages, found in_process=False")
        self.python = python or sys.executable
        self.extra_env = dict(env or {})
        self.cwd = cwd
        self.echo_output = echo_output

        self.token = secrets.token_hex(16)
        self._dir: str | None = None
        self.endpoint = ""
        self._ctx: zmq.Context[Any] | None = None
        self._router: zmq.Socket[Any] | None = None
        self._poller: zmq.Poller | None = None
        self._handles: list[_Handle] = []
        self._by_identity: dict[bytes, _Handle] = {}
        self._overrides: dict[str, Any] = {}
        self._refs: list[str] = []
        self._encoder = StreamEncoder()
        self._env_cache: dict[int, bytes] = {}
        self._next_seq = 1  # 0 is reserved for control messages
        self._results: dict[int, pa.Table] = {}
        self._failures: dict[int, list[FailedRow]] = {}
        self._rows_sent = 0
        #: Every row isolated as failing so far (on_error="skip"), in the order
        #: results were returned.
        self.failures: list[FailedRow] = []
        self._rr = 0
        self._last_heartbeat = 0.0
        self.ready: P.Ready | None = None
        #: Declared output schema per stage (None where undeclared), from READY.
        self.output_schemas: list[pa.Schema | None] = []
        self.started = False

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> "LocalHost":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> "LocalHost":
        """Binds, starts the workers and waits until every one is READY."""
        if self.started:
            return self
        self.started = True
        try:
            self._bind()
            self._spawn()
            self._handshake()
        except BaseException:
            self.close(timeout=1.0)
            raise
        return self

    def _bind(self) -> None:
        self._dir = _private_dir()
        self.endpoint = f"ipc://{self._dir}/isthmus.sock"
        self._ctx = zmq.Context()
        r = self._ctx.socket(zmq.ROUTER)
        r.setsockopt(zmq.LINGER, 0)
        r.setsockopt(zmq.ROUTER_MANDATORY, 1)
        r.bind(self.endpoint)
        self._router = r
        self._poller = zmq.Poller()
        self._poller.register(r, zmq.POLLIN)

    def _spawn(self) -> None:
        for i, stage in enumerate(self.stages):
            if isinstance(stage.udf, str):
                ref = stage.udf  # resolved by the worker's loader
            else:
                ref = f"<callable {i}>:{stage.name}"
                self._overrides[ref] = stage.udf
            self._refs.append(ref)
        for slot in range(self.workers):
            handle = _Handle(slot)
            if self.in_process:
                self._start_thread(handle)
            else:
                self._start_process(handle)
            self._handles.append(handle)

    def _start_process(self, handle: _Handle) -> None:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["ISTHMUS_ENDPOINT"] = self.endpoint
        env["ISTHMUS_TOKEN"] = self.token
        env["ISTHMUS_SLOT"] = str(handle.slot)
        env["ISTHMUS_HOST_PID"] = str(os.getpid())
        env["PYTHONPATH"] = _PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.Popen(
            [self.python, "-m", "isthmus.worker"],
            env=env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        handle.proc = proc
        prefix = f"[worker {handle.slot}] "
        assert proc.stdout is not None and proc.stderr is not None
        handle.pumps = [
            _OutputPump(proc.stdout, prefix, self.echo_output, handle.tail),
            _OutputPump(proc.stderr, prefix, self.echo_output, handle.tail),
        ]

    def _start_thread(self, handle: _Handle) -> None:
        config = WorkerConfig(
            endpoint=self.endpoint,
            token=self.token,
            slot=handle.slot,
            identity=f"w{handle.slot}-{os.getpid()}".encode(),
            warm=False,
            overrides=self._overrides,
            in_process=True,
        )
        worker = Worker(config)
        handle.worker = worker

        def target() -> None:
            try:
                handle.thread_code.append(worker.run())
            except BaseException as exc:  # surfaces as "exited with code 1" plus the log line
                sys.stderr.write(f"isthmus-worker (thread {handle.slot}): internal error: {exc!r}\n")
                handle.thread_code.append(1)

        handle.thread = threading.Thread(target=target, name=f"isthmus-worker-{handle.slot}", daemon=True)
        handle.thread.start()

    def _open_frames(self, slot: int) -> list[Any]:
        doc = P.Open(
            stages=tuple(P.StageRef(s.name, ref, s.options) for s, ref in zip(self.stages, self._refs)),
            heartbeat_ms=self.heartbeat_ms,
            missed_heartbeats=self.missed_heartbeats,
            slot=slot,
            workers=self.workers,
        )
        return [P.encode_envelope(P.Kind.OPEN), P.dumps_json(doc.to_json()), self.input_schema.serialize()]

    def _handshake(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not all(h.ready for h in self._handles):
            if time.monotonic() > deadline:
                waiting = [h.slot for h in self._handles if not h.ready]
                raise WorkerError(
                    f"expected every worker to be READY within {self.startup_timeout:g} s, "
                    f"found workers {waiting} not ready",
                    stderr_tail=self._handles[waiting[0]].stderr_tail(),
                )
            self._poll_once(0.05)
            self._check_alive()

    def close(self, timeout: float = 5.0) -> dict[int, int | None]:
        """Sends CLOSE to every worker, waits for them (killing stragglers after
        ``timeout`` seconds) and releases the endpoint. Returns exit codes by slot."""
        router = self._router
        if router is not None:
            for h in self._handles:
                if h.identity is not None and not h.closed and h.exit_code() is None:
                    try:
                        self._send(h, [P.encode_envelope(P.Kind.CLOSE), P.dumps_json({"reason": "done"})])
                    except zmq.ZMQError:
                        pass
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(
                h.identity is not None and not h.closed and h.exit_code() is None for h in self._handles
            ):
                try:
                    self._poll_once(0.02, quiet=True)
                except Exception:
                    pass
        codes: dict[int, int | None] = {}
        for h in self._handles:
            remaining = max(0.1, timeout / 2)
            if h.proc is not None:
                try:
                    h.proc.wait(timeout=remaining)
                except subprocess.TimeoutExpired:
                    h.proc.kill()
                    h.proc.wait()
                for pump in h.pumps:
                    pump.thread.join(timeout=1.0)
            if h.thread is not None:
                if h.thread.is_alive() and h.worker is not None:
                    h.thread.join(timeout=remaining)
                    if h.thread.is_alive():
                        h.worker.stop()
                        h.thread.join(timeout=1.0)
            codes[h.slot] = h.exit_code()
        if router is not None:
            router.close(linger=0)
            self._router = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        return codes

    # -- messaging ------------------------------------------------------------------------

    def _send(self, h: _Handle, frames: list[Any]) -> None:
        assert self._router is not None and h.identity is not None
        self._router.send_multipart([h.identity, *frames], copy=False)

    def _check_alive(self) -> None:
        for h in self._handles:
            if h.closed:
                continue
            code = h.exit_code()
            if code is not None:
                if h.pumps:
                    for pump in h.pumps:
                        pump.thread.join(timeout=1.0)
                when = "before READY" if not h.ready else f"with {len(h.inflight)} batches in flight"
                raise WorkerError(
                    f"worker {h.slot} {_describe_exit(code)} {when}", exit_code=code, stderr_tail=h.stderr_tail()
                )

    def _poll_once(self, timeout: float, quiet: bool = False) -> bool:
        """Handles at most one incoming message; False when none came in time."""
        router = self._router
        assert router is not None and self._poller is not None
        if not self._poller.poll(int(timeout * 1000)):
            return False
        frames = router.recv_multipart(copy=False)
        self._handle(frames, quiet)
        return True

    def _handle(self, frames: list[zmq.Frame], quiet: bool = False) -> None:
        identity = frames[0].bytes
        body = frames[1:]
        if not body:
            raise WorkerError(f"worker {identity!r} sent an empty message")
        env0 = body[0].buffer
        peek = P.peek_version(env0)
        h = self._by_identity.get(identity)
        if peek is not None and peek[0] != P.PROTOCOL_MAJOR:
            reason = P.version_mismatch_message(
                P.PROTOCOL_VERSION, f"{peek[0]}.{peek[1]}", python=self.python
            )
            self._router.send_multipart([identity, P.encode_envelope(P.Kind.CLOSE), P.dumps_json({"reason": reason})])  # type: ignore[union-attr]
            raise WorkerError(reason)
        try:
            env = P.decode_envelope(env0)
            P.check_frames(env.kind, len(body), "worker")
        except ProtocolError as exc:
            slot = h.slot if h else "?"
            raise WorkerError(f"worker {slot} sent an invalid message: {exc.message}") from None
        kind = env.kind
        if kind == P.Kind.HELLO:
            self._on_hello(identity, body)
            return
        if h is None:
            raise WorkerError(f"expected HELLO from an unknown peer {identity!r}, found {kind.name}")
        if kind == P.Kind.RESULT:
            self._on_result(h, env, body)
        elif kind == P.Kind.ERROR:
            doc = P.loads_json(body[1].buffer, "frame 1 of ERROR")
            report = P.parse_error(doc)
            stage_index = None if env.stage == P.NO_STAGE else env.stage
            h.inflight.pop(env.sequence, None)
            if quiet:
                return
            raise UDFError.from_document(report.to_json(), stage_index=stage_index, sequence=env.sequence, attempt=env.attempt)
        elif kind == P.Kind.READY:
            self._on_ready(h, body)
        elif kind == P.Kind.HEARTBEAT:
            h.heartbeat = P.parse_heartbeat(P.loads_json(body[1].buffer, "frame 1 of HEARTBEAT"))
        elif kind == P.Kind.BYE:
            h.closed = True

    def _on_hello(self, identity: bytes, body: list[zmq.Frame]) -> None:
        hello = P.parse_hello(P.loads_json(body[1].buffer, "frame 1 of HELLO"))
        reason = None
        if not hmac.compare_digest(hello.token.lower().encode(), self.token.encode()):
            reason = "expected the per-run token of this host, found another one"
        elif not 0 <= hello.slot < len(self._handles):
            reason = f"expected a slot in 0..{len(self._handles) - 1}, found {hello.slot}"
        elif self._handles[hello.slot].identity is not None:
            reason = f"expected one worker for slot {hello.slot}, found a second one"
        if reason is not None:
            assert self._router is not None
            self._router.send_multipart([identity, P.encode_envelope(P.Kind.CLOSE), P.dumps_json({"reason": reason})])
            return
        h = self._handles[hello.slot]
        h.identity = identity
        h.hello = hello
        self._by_identity[identity] = h
        self._send(h, self._open_frames(h.slot))

    def _on_ready(self, h: _Handle, body: list[zmq.Frame]) -> None:
        ready = P.parse_ready(P.loads_json(body[1].buffer, "frame 1 of READY"))
        if len(ready.stages) != len(self.stages):
            raise WorkerError(f"expected READY for {len(self.stages)} stages, found {len(ready.stages)}")
        if len(body) != 2 + ready.schema_frames:
            raise WorkerError(f"expected {2 + ready.schema_frames} frames in READY, found {len(body)}")
        schemas: list[pa.Schema | None] = []
        frame = 2
        for info in ready.stages:
            if info.has_schema:
                schemas.append(pa.ipc.read_schema(as_aligned_buffer([body[frame]])))
                frame += 1
            else:
                schemas.append(None)
        self.ready = ready
        self.output_schemas = schemas
        h.ready = True

    def _on_result(self, h: _Handle, env: P.Envelope, body: list[zmq.Frame]) -> None:
        pending = h.inflight.pop(env.sequence, None)
        if pending is None:
            raise WorkerError(f"worker {h.slot} sent a RESULT for batch {env.sequence}, which it was not given")
        if env.attempt != pending.attempt:
            raise WorkerError(f"expected attempt {pending.attempt} for batch {env.sequence}, found {env.attempt}")
        if env.stage != len(self.stages) - 1:
            raise WorkerError(f"expected a RESULT from stage {len(self.stages) - 1}, found stage {env.stage}")
        try:
            start = P.result_payload_start(env, len(body))
            if start == 2:
                if not self._skip:
                    raise ProtocolError("expected no ROW_ERRORS flag on a RESULT without on_error=skip, found it", "field")
                doc = P.loads_json(body[1].buffer, "frame 1 of RESULT (ROW_ERRORS)")
                self._failures[env.sequence] = [
                    FailedRow(pending.row_start + f.row, env.sequence, f.row, f.stage, f.exc_type, f.message, f.traceback)
                    for f in P.parse_row_failures(doc, pending.rows)
                ]
            self._results[env.sequence] = read_stream(body[start:])
        except ProtocolError as exc:
            raise WorkerError(f"worker {h.slot}, batch {env.sequence}: {exc.message}") from None

    def _heartbeats(self) -> None:
        now = time.monotonic()
        if (now - self._last_heartbeat) * 1000 < self.heartbeat_ms:
            return
        self._last_heartbeat = now
        for h in self._handles:
            if h.ready and not h.inflight and (now - h.last_sent) * 1000 >= self.heartbeat_ms:
                self._send(h, [P.encode_envelope(P.Kind.HEARTBEAT)])
                h.last_sent = now

    def _check_deadlines(self) -> None:
        if self.batch_timeout is None:
            return
        now = time.monotonic()
        for h in self._handles:
            for p in h.inflight.values():
                if now - p.sent > self.batch_timeout:
                    raise WorkerError(
                        f"expected worker {h.slot} to answer batch {p.seq} within {self.batch_timeout:g} s, "
                        f"found no answer after {now - p.sent:.1f} s",
                        stderr_tail=h.stderr_tail(),
                    )

    def _pick(self) -> _Handle | None:
        best: _Handle | None = None
        n = len(self._handles)
        for k in range(n):
            h = self._handles[(self._rr + k) % n]
            if h.ready and len(h.inflight) < self.credits and (best is None or len(h.inflight) < len(best.inflight)):
                best = h
        if best is not None:
            self._rr = (best.slot + 1) % n
        return best

    def _send_batch(self, h: _Handle, batch: pa.RecordBatch) -> int:
        seq = self._next_seq
        self._next_seq += 1
        env = P.encode_envelope(P.Kind.BATCH, stage=0, attempt=0, sequence=seq)
        self._send(h, [env, *self._encoder.encode(batch.schema, [batch])])
        now = time.monotonic()
        h.inflight[seq] = _Pending(seq, 0, now, batch.num_rows, self._rows_sent)
        self._rows_sent += batch.num_rows
        h.last_sent = now
        return seq

    # -- running batches ------------------------------------------------------------------

    def run(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
        """Sends every batch and yields one result table per batch, in input order.
        With ``on_error="skip"``, failed rows are appended to :attr:`failures`."""
        for table, _ in self.run_with_failures(batches):
            yield table

    def _take(self, seq: int) -> tuple[pa.Table, list[FailedRow]]:
        table = self._results.pop(seq)
        failed = self._failures.pop(seq, None)
        if failed is None:
            return table, []
        self.failures.extend(failed)
        return table, failed

    def run_with_failures(self, batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[pa.Table, list[FailedRow]]]:
        """Like :meth:`run`, but yields ``(table, failed rows of that batch)``."""
        if not self.started:
            self.start()
        source = iter(batches)
        exhausted = False
        order: collections.deque[int] = collections.deque()
        while True:
            while not exhausted:
                h = self._pick()
                if h is None:
                    break
                try:
                    batch = next(source)
                except StopIteration:
                    exhausted = True
                    break
                order.append(self._send_batch(h, batch))
            while order and order[0] in self._results:
                yield self._take(order.popleft())
            if exhausted and not order:
                return
            if not self._poll_once(0.05):
                self._check_alive()
                self._check_deadlines()
                self._heartbeats()
            else:
                router = self._router
                assert router is not None
                # Drain whatever else is already queued before sending more.
                while True:
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle(frames)

    def call(self, batch: pa.RecordBatch, timeout: float | None = None) -> pa.Table:
        """One round trip: sends ``batch`` and waits for its result (latency path).
        With ``on_error="skip"``, its failed rows are appended to :attr:`failures`."""
        if not self.started:
            self.start()
        h = self._pick()
        if h is None:
            raise WorkerError("expected a worker with a free credit, found none (call() waits for each result)")
        seq = self._send_batch(h, batch)
        router = self._router
        assert router is not None
        limit = timeout if timeout is not None else self.batch_timeout
        deadline = None if limit is None else time.monotonic() + limit
        poller = self._poller
        assert poller is not None
        while seq not in self._results:
            if poller.poll(50):
                self._handle(router.recv_multipart(copy=False))
            else:
                self._check_alive()
                if deadline is not None and time.monotonic() > deadline:
                    raise WorkerError(f"expected the result of batch {seq} within {limit:g} s, found none")
        return self._take(seq)[0]

    def heartbeat_reports(self) -> dict[int, P.HeartbeatReport | None]:
        """The latest HEARTBEAT document of every worker (None before the first)."""
        return {h.slot: h.heartbeat for h in self._handles}


# -- run_udf --------------------------------------------------------------------------------


def _to_table(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    if isinstance(data, Mapping):
        return pa.table(dict(data))
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False).replace_schema_metadata(None)
    if isinstance(data, Iterable):
        batches = list(data)
        if batches and all(isinstance(b, pa.RecordBatch) for b in batches):
            return pa.Table.from_batches(batches)
    raise TypeError(
        "expected a pyarrow.Table, RecordBatch, list of RecordBatches, dict of columns or "
        f"pandas.DataFrame, found {type(data).__name__}"
    )


def _batches(table: pa.Table, batch_rows: int | None) -> list[pa.RecordBatch]:
    if batch_rows is None:
        return [b for b in table.to_batches() if b.num_rows] or []
    if batch_rows < 1:
        raise ValueError(f"expected batch_rows >= 1, found {batch_rows}")
    combined = table.combine_chunks()
    parts = combined.to_batches()
    if not parts:
        return []
    whole = parts[0] if len(parts) == 1 else pa.Table.from_batches(parts).combine_chunks().to_batches()[0]
    return [whole.slice(i, batch_rows) for i in range(0, whole.num_rows, batch_rows)]


def _assemble(results: list[pa.Table], declared: pa.Schema | None) -> pa.Table:
    schema: pa.Schema | None = None
    parts: list[pa.RecordBatch] = []
    for seq, t in enumerate(results, start=1):
        if t.num_columns == 0 and t.num_rows == 0:
            continue  # a stage that has produced nothing yet
        if schema is None:
            schema = t.schema
        elif not t.schema.equals(schema):
            raise SchemaError(
                f"expected every result to have the schema of the first one ({schema}), "
                f"found {t.schema} for batch {seq}"
            )
        parts.extend(t.to_batches())
    if schema is None:
        schema = declared if declared is not None else (results[0].schema if results else pa.schema([]))
    return pa.Table.from_batches(parts, schema=schema)


_UDFArg = str | Callable[..., Any] | HostStage | Sequence[str | Callable[..., Any] | HostStage]


@overload
def run_udf(
    udf: _UDFArg,
    data: Any,
    *,
    batch_rows: int | None = ...,
    workers: int = ...,
    stages: Sequence[str | Callable[..., Any] | HostStage] = ...,
    options: Mapping[str, Any] | None = ...,
    in_process: bool | None = ...,
    credits: int = ...,
    heartbeat_ms: int = ...,
    timeout: float = ...,
    env: Mapping[str, str] | None = ...,
    python: str | None = ...,
    on_error: Literal["fail"] = ...,
) -> pa.Table: ...


@overload
def run_udf(
    udf: _UDFArg,
    data: Any,
    *,
    batch_rows: int | None = ...,
    workers: int = ...,
    stages: Sequence[str | Callable[..., Any] | HostStage] = ...,
    options: Mapping[str, Any] | None = ...,
    in_process: bool | None = ...,
    credits: int = ...,
    heartbeat_ms: int = ...,
    timeout: float = ...,
    env: Mapping[str, str] | None = ...,
    python: str | None = ...,
    on_error: Literal["skip"],
) -> SkipResult: ...


def run_udf(
    udf: _UDFArg,
    data: Any,
    *,
    batch_rows: int | None = None,
    workers: int = 1,
    stages: Sequence[str | Callable[..., Any] | HostStage] = (),
    options: Mapping[str, Any] | None = None,
    in_process: bool | None = None,
    credits: int = 2,
    heartbeat_ms: int = 1000,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    python: str | None = None,
    on_error: str = "fail",
) -> pa.Table | SkipResult:
    """Runs a UDF (and optionally more fused ``stages`` after it) over ``data``
    through real workers and the real protocol, and returns the results in
    input order as one table.

    ``udf`` is a reference (``"score.py:predict"``), a callable, or a list of
    them. ``data`` is a Table, RecordBatch, list of RecordBatches, dict of
    columns or DataFrame. ``batch_rows`` re-cuts the input into batches of at
    most that many rows (``None`` keeps its chunks). ``options`` applies to
    every stage (``{"rows": "same"}``). References run in worker
    subprocesses, callables in worker threads. A failing UDF raises
    :class:`isthmus.UDFError`; a crashing or silent worker
    :class:`isthmus.WorkerError`.

    ``on_error="skip"`` isolates the rows the chain raises on instead (inside
    the worker, by re-running the chain on halves of the failing batch) and
    returns a :class:`SkipResult` ``(table, failures)``: the outputs of every
    other row, in input order, and one :class:`FailedRow` per failed row
    (``row`` is its index in ``data``). Schema errors, ``MemoryError`` and more
    than 10,000 failed rows in one batch still raise :class:`UDFError`.
    Generator stages cannot be re-run on parts of a batch: with
    ``on_error="skip"`` they fail at setup.
    """
    first: list[Any] = list(udf) if isinstance(udf, (list, tuple)) else [udf]
    chain = [_as_stage(s, i) for i, s in enumerate([*first, *stages])]
    if options:
        for s in chain:
            s.options = {**dict(options), **s.options}
    table = _to_table(data)
    batches = _batches(table, batch_rows)
    host = LocalHost(
        chain,
        table.schema,
        workers=workers,
        credits=credits,
        heartbeat_ms=heartbeat_ms,
        startup_timeout=timeout,
        batch_timeout=timeout,
        in_process=in_process,
        env=env,
        python=python,
        on_error=on_error,
    )
    with host:
        results = list(host.run(batches))
        declared = host.output_schemas[-1] if host.output_schemas else None
    table = _assemble(results, declared)
    if on_error == "fail":
        return table
    return SkipResult(table, list(host.failures))
