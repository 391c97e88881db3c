"""The worker side of the bridge protocol: stages, the generator feeder, the loop.

``isthmus.worker`` is the process entry point (arguments, environment, parent
death, dependency checks); this module is the loop itself, importable in a
process that already has pyarrow and pyzmq (the in-process test harness runs
it in a thread).
"""

from __future__ import annotations

import collections
import mmap
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import zmq

from . import protocol as P
from ._tb import exc_text, exc_type_name, format_user_traceback
from ._version import HELPER_VERSION, PROTOCOL_VERSION
from .adapters import OutputNormalizer, combine, format_schema, has_dictionary, input_converter
from .errors import LoaderError, ProtocolError, RowError, SchemaError
from .loader import LoadedUDF, resolve

__all__ = [
    "WorkerConfig",
    "Worker",
    "Stage",
    "StageFailure",
    "StreamEncoder",
    "SharedArena",
    "read_single_batch",
    "read_stream",
    "as_aligned_buffer",
    "capabilities",
    "rss_bytes",
    "warm_up",
    "EXIT_OK",
    "EXIT_INTERNAL",
    "EXIT_USAGE",
    "EXIT_SETUP",
    "EXIT_HOST_LOST",
    "EXIT_PARENT_DIED",
]

#: Exit codes of a worker process (see PROTOCOL.md, "Worker exit codes").
EXIT_OK = 0  #: CLOSE received, BYE sent
EXIT_INTERNAL = 1  #: a bug in the helper (traceback on stderr)
EXIT_USAGE = 2  #: bad arguments, rejected by the host, version mismatch
EXIT_SETUP = 3  #: missing package, UDF failed to load, setup() raised
EXIT_HOST_LOST = 4  #: no message from the host within the idle or handshake limit
EXIT_PARENT_DIED = 70  #: the process that started the worker went away

_EMPTY_SCHEMA = pa.schema([])


def log(message: str) -> None:
    """One line on stderr, prefixed like every line the helper itself writes."""
    try:
        sys.stderr.write(f"isthmus-worker: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# -- Arrow IPC helpers ----------------------------------------------------------------------


def as_aligned_buffer(frames: list[Any]) -> pa.Buffer:
    """The payload frames as one 8-byte-aligned pyarrow buffer.

    One frame is used in place (zero copy; the buffer keeps the ZeroMQ message
    alive) when it is aligned. libzmq hands out small received messages at
    arbitrary offsets inside its receive buffer, and Arrow buffers must be
    8-byte aligned, so a misaligned frame is copied once (it is small: large
    messages get their own allocation). Several frames are joined (one copy).
    """
    if len(frames) == 1:
        buf = _frame_buffer(frames[0])
        if buf.address & 7:
            buf = pa.py_buffer(buf.to_pybytes())
        return buf
    buf = pa.py_buffer(b"".join(getattr(f, "buffer", f) for f in frames))
    if buf.address & 7:  # not expected: CPython aligns bytes data to 16
        buf = pa.py_buffer(bytearray(buf))
    return buf


def _frame_buffer(f: Any) -> pa.Buffer:
    if isinstance(f, pa.Buffer):
        return f
    return pa.py_buffer(getattr(f, "buffer", f))


def _record_batch_message(buf: pa.Buffer, schema: pa.Schema) -> tuple[pa.RecordBatch, int] | None:
    """The record batch in the IPC message at the start of ``buf``, read in place, and the
    message's size in bytes; ``None`` when that message is not a record batch."""
    msg = pa.ipc.read_message(buf)
    if msg.type != "record batch":
        return None
    body = msg.body.size if msg.body is not None else 0
    return pa.ipc.read_record_batch(msg, schema), 8 + msg.metadata.size + body


def _read_aligned(frames: list[Any]) -> tuple[pa.Schema, list[pa.RecordBatch]] | None:
    """Reads a payload whose frames are aligned to IPC messages (schema, one frame
    per record batch message, end-of-stream), every batch in place; ``None`` when
    the frames are cut differently, hold dictionaries, or are not 8-byte aligned."""
    if len(frames) < 2:
        return None
    bufs = [_frame_buffer(f) for f in frames]
    last = bufs[-1]
    if last.size != 8 or last.to_pybytes() != P.EOS_MARKER:
        return None
    for b in bufs[:-1]:
        if b.address & 7 or b.size < 8 or b.size % 8:
            return None
    try:
        head = pa.ipc.read_message(bufs[0])
        if head.type != "schema" or 8 + head.metadata.size != bufs[0].size:
            return None
        schema = pa.ipc.read_schema(head)
        batches = []
        for b in bufs[1:-1]:
            got = _record_batch_message(b, schema)
            if got is None or got[1] != b.size:
                return None
            batches.append(got[0])
    except (pa.ArrowException, OSError, ValueError):
        return None  # let the general path report the error
    return schema, batches


def read_single_batch(frames: list[Any]) -> pa.RecordBatch:
    """Decodes a BATCH payload: one IPC stream holding exactly one record batch."""
    if len(frames) > 2:
        aligned = _read_aligned(frames)
        if aligned is not None and len(aligned[1]) == 1:
            return aligned[1][0]
    try:
        reader = pa.ipc.open_stream(as_aligned_buffer(frames))
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            raise ProtocolError("expected exactly one record batch in the BATCH stream, found 0") from None
        try:
            reader.read_next_batch()
        except StopIteration:
            return batch
        raise ProtocolError("expected exactly one record batch in the BATCH stream, found more")
    except ProtocolError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ProtocolError(f"expected an Arrow IPC stream in the BATCH payload, found undecodable bytes: {exc}") from None


def read_stream(frames: list[Any]) -> pa.Table:
    """Decodes a RESULT payload: one IPC stream with zero or more record batches."""
    if len(frames) > 2:
        aligned = _read_aligned(frames)
        if aligned is not None:
            table = pa.Table.from_batches(aligned[1], schema=aligned[0])
            table.validate()
            return table
    try:
        table = pa.ipc.open_stream(as_aligned_buffer(frames)).read_all()
        table.validate()
        return table
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ProtocolError(f"expected an Arrow IPC stream in the RESULT payload, found undecodable bytes: {exc}") from None


#: Explicit IPC write options: ``pyarrow.ipc.new_stream`` without them reads two environment
#: variables on every call (about 15 µs a batch, measured with cProfile).
_WRITE_OPTIONS = pa.ipc.IpcWriteOptions()

#: Payloads up to this size are joined into one frame (pyzmq copies frames this
#: small anyway, and every extra frame costs more than the copy).
_JOIN_LIMIT = 64 * 1024


class StreamEncoder:
    """Encodes record batches as the frames of one Arrow IPC stream.

    A payload up to 64 KiB is one frame. A larger one is sent without further
    copies, as frames aligned to IPC messages: the schema message, one
    encapsulated message per batch, the end-of-stream marker. The serialized
    schema is cached, so a steady stream of results pays only for its batches.
    Schemas with dictionary-encoded fields go through ``pyarrow.ipc.new_stream``
    (one frame) because they need dictionary batches.
    """

    __slots__ = ("_schema", "_schema_frame", "_dict")

    def __init__(self) -> None:
        self._schema: pa.Schema | None = None
        self._schema_frame: pa.Buffer | None = None
        self._dict = False

    def encode(self, schema: pa.Schema, batches: list[pa.RecordBatch]) -> list[Any]:
        if self._schema is None or not (schema is self._schema or schema.equals(self._schema, check_metadata=True)):
            self._schema = schema
            self._schema_frame = schema.serialize()
            self._dict = has_dictionary(schema)
        if self._dict:
            sink = pa.BufferOutputStream()
            with pa.ipc.RecordBatchStreamWriter(sink, schema, options=_WRITE_OPTIONS) as writer:
                for b in batches:
                    writer.write_batch(b)
            return [sink.getvalue()]
        frames: list[Any] = [self._schema_frame]
        size = len(self._schema_frame) + len(P.EOS_MARKER)  # type: ignore[arg-type]
        for b in batches:
            buf = b.serialize()
            size += buf.size
            frames.append(buf)
        frames.append(P.EOS_MARKER)
        if size <= _JOIN_LIMIT:
            # Each extra frame costs more than copying a small payload once.
            return [b"".join(frames)]
        return frames


# -- Stages ---------------------------------------------------------------------------------


class StageFailure(Exception):
    """A stage failed on a batch; carries the ERROR document fields."""

    def __init__(self, index: int, report: P.ErrorReport) -> None:
        super().__init__(report.message)
        self.index = index
        self.report = report


_OUT, _NEED, _DONE, _ERR = 0, 1, 2, 3
_END = object()


class _GeneratorFeeder:
    """Runs an iterator UDF once per worker in a helper thread.

    The UDF gets an iterator of inputs. After the worker hands it batch *k*,
    everything it yields until it asks for batch *k+1* (or returns) is the
    result of batch *k*. Two queues carry the hand-off; the worker thread
    blocks while the UDF runs, so at most one of them is busy at a time.
    """

    def __init__(self, target: Callable[[Iterator[Any]], Iterator[Any]], name: str) -> None:
        self._target = target
        self._name = name
        self._in: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._out: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._delivered = False
        self._finished = False

    def _inputs(self) -> Iterator[Any]:
        while True:
            if self._delivered:
                self._out.put((_NEED, None))
            item = self._in.get()
            if item is _END:
                return
            self._delivered = True
            yield item

    def _run(self) -> None:
        try:
            for value in self._target(self._inputs()):
                self._out.put((_OUT, value))
            self._out.put((_DONE, None))
        except BaseException as exc:  # handed to the worker thread
            self._out.put((_ERR, exc))

    def _start(self) -> None:
        self._in = queue.SimpleQueue()
        self._out = queue.SimpleQueue()
        self._delivered = False
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=f"isthmus-udf-{self._name}", daemon=True)
        self._thread.start()

    def feed(self, item: Any) -> list[Any]:
        """Gives the UDF one input and returns what it yielded for it."""
        if self._thread is None:
            self._start()
        elif self._finished:
            self._thread = None
            raise RuntimeError(
                f"expected the generator of stage {self._name} to take every input batch, "
                f"found that it returned before taking this one (an iterator UDF must "
                f"consume its whole input)"
            )
        self._in.put(item)
        outputs = []
        while True:
            tag, value = self._out.get()
            if tag == _OUT:
                outputs.append(value)
            elif tag == _NEED:
                return outputs
            elif tag == _DONE:
                self._finished = True
                return outputs
            else:
                self._thread = None  # the generator is dead; the next batch starts a new one
                raise value

    def finish(self, timeout: float = 5.0) -> int:
        """Ends the input; returns how many outputs yielded after it were dropped."""
        if self._thread is None or self._finished:
            return 0
        self._in.put(_END)
        dropped = 0
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                tag, _ = self._out.get(timeout=remaining)
            except queue.Empty:
                break
            if tag == _OUT:
                dropped += 1
            elif tag in (_DONE, _ERR):
                break
        self._thread = None
        return dropped


@dataclass
class Stage:
    """One loaded stage of the fused chain."""

    index: int
    name: str
    udf: LoadedUDF
    rows_same: bool = False
    convert: Callable[[pa.RecordBatch], Any] = field(init=False)
    normalize: OutputNormalizer = field(init=False)
    feeder: _GeneratorFeeder | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        spec = self.udf.spec
        self.convert = input_converter(spec.input)
        role = {"generator": "generator", "class": "__call__"}.get(spec.kind, "function")
        self.normalize = OutputNormalizer(self.name, spec.schema, role)
        if spec.kind == "generator":
            self.feeder = _GeneratorFeeder(self.udf.target, self.name)

    @property
    def info(self) -> P.StageInfo:
        spec = self.udf.spec
        return P.StageInfo(self.name, spec.kind, spec.input, spec.schema is not None)

    def run(self, batch: pa.RecordBatch) -> tuple[list[pa.RecordBatch], pa.Schema]:
        """Runs the UDF on one batch; raises StageFailure."""
        try:
            arg = self.convert(batch)
            if self.feeder is not None:
                values = self.feeder.feed(arg)
            else:
                values = [self.udf.target(arg)]
            out: list[pa.RecordBatch] = []
            schema: pa.Schema | None = None
            for v in values:
                part = self.normalize(v)
                s = self.normalize.schema
                if schema is None:
                    schema = s
                elif s is not None and not s.equals(schema):
                    raise self.normalize.fail(
                        f"expected every output for one batch to share a schema, found "
                        f"{format_schema(schema)} and then {format_schema(s)}"
                    )
                out.extend(part)
            if schema is None:
                schema = self.normalize.schema or _EMPTY_SCHEMA
            if self.rows_same:
                rows = sum(b.num_rows for b in out)
                if rows != batch.num_rows:
                    raise self.normalize.fail(
                        f"expected {batch.num_rows} output rows (option rows=same), found {rows}"
                    )
            return out, schema
        except SchemaError as exc:
            raise StageFailure(self.index, P.ErrorReport("schema", "SchemaError", str(exc), "", self.name)) from None
        except MemoryError as exc:
            raise StageFailure(self.index, self._report("oom", exc, retryable=True)) from None
        except (Exception, SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
            raise StageFailure(self.index, self._report("user", exc)) from None

    def _report(self, kind: str, exc: BaseException, retryable: bool = False) -> P.ErrorReport:
        message = exc_text(exc)
        if isinstance(exc, SystemExit):
            message = f"the UDF called sys.exit({exc.code!r})"
        elif kind == "oom" and not message:
            message = "out of memory" + (
                f" (ISTHMUS_MEMORY_LIMIT={os.environ['ISTHMUS_MEMORY_LIMIT']})"
                if os.environ.get("ISTHMUS_MEMORY_LIMIT")
                else ""
            )
        start = end = None
        if isinstance(exc, RowError):
            start, end = exc.row_start, exc.row_end
        return P.ErrorReport(
            kind, exc_type_name(exc), message, format_user_traceback(exc), self.name, start, end, retryable
        )

    def close(self) -> None:
        if self.feeder is not None:
            dropped = self.feeder.finish()
            if dropped:
                log(f"stage {self.name}: dropped {dropped} outputs the generator yielded after its input ended")
        try:
            self.udf.teardown()
        except Exception as exc:
            log(f"stage {self.name}: teardown() failed: {exc_type_name(exc)}: {exc_text(exc)}")


# -- Environment helpers --------------------------------------------------------------------


def capabilities() -> list[str]:
    """Capability strings of this helper: input formats (pandas/numpy only when
    importable), calling conventions, and the IPC body codecs it can read."""
    import importlib.util

    caps = ["arrow"]
    for optional in ("pandas", "numpy"):
        if optional in sys.modules or importlib.util.find_spec(optional) is not None:
            caps.append(optional)
    caps += ["generator", "class", "row_errors"]
    # The shared-memory data plane: the host's arena is opened as /proc/<pid>/fd/<fd>.
    if sys.platform.startswith("linux") and os.path.isdir("/proc/self/fd"):
        caps.append("shm")
        # BATCHes and their answers through two FIFOs and mailboxes in the arena (section 18).
        caps.append("doorbell")
        # BATCHes read in place from the host's input file, /proc/<pid>/fd/<fd> (section 19).
        caps.append("input_file")
    # Arrow IPC body codecs this worker can read in BATCH payloads.
    for codec, cap in (("lz4_frame", "lz4_frame"), ("zstd", "zstd")):
        try:
            if pa.Codec.is_available(codec):
                caps.append(cap)
        except (ValueError, pa.ArrowException):
            pass
    return caps


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process in bytes (peak RSS where /proc is absent)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        try:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return int(peak if sys.platform == "darwin" else peak * 1024)
        except Exception:
            return 0


def warm_up() -> None:
    """Imports and exercises numpy and pyarrow (compute, IPC) so the first batch
    does not pay for lazy initialisation. The user's function is not called."""
    try:
        import numpy as np

        a = np.arange(16, dtype=np.float64).reshape(4, 4)
        float((a @ a).sum())
    except ImportError:
        pass
    try:
        import pyarrow.compute as pc

        arr = pa.array([1, 2, 3], type=pa.int64())
        pc.sum(pc.add(arr, 1))
    except ImportError:
        pass
    batch = pa.RecordBatch.from_pydict({"x": pa.array([1.0, 2.0])})
    read_single_batch(StreamEncoder().encode(batch.schema, [batch]))


# -- The shared-memory data plane (PROTOCOL.md section 17) --------------------------------


class _Hold:
    """Stands for one input region: every Arrow buffer read from the region keeps it
    alive, and the region goes back to the host (RELEASE) when it is collected. It also
    keeps the arena, so the mapping outlives every array that points into it (a UDF may
    keep inputs in a global that an atexit handler reads after the worker loop ended)."""

    __slots__ = ("__weakref__", "arena")

    def __init__(self, arena: SharedArena) -> None:
        self.arena = arena


class _address_space_for:
    """Raises the address-space limit (``ISTHMUS_MEMORY_LIMIT``, RLIMIT_AS) by ``size``
    for the arena's mapping, so that the arena does not eat the UDF's memory budget;
    puts it back if the mapping fails. A hard limit with no room raises ValueError."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.saved: tuple[int, int] | None = None

    def __enter__(self) -> None:
        try:
            import resource
        except ImportError:
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return
        wanted = soft + self.size
        if hard != resource.RLIM_INFINITY and wanted > hard:
            raise ValueError(
                f"expected room for the {self.size}-byte arena above the address-space limit of "
                f"{soft} bytes, found a hard limit of {hard} bytes"
            )
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
        self.saved = (soft, hard)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and self.saved is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, self.saved)


class SharedArena:
    """The host's arena, mapped into this worker.

    Input regions are read in place: the batch's buffers point into the mapping,
    through a ``pyarrow.foreign_buffer`` whose base is a :class:`_Hold`. When the
    last reference goes (normally as the RESULT is sent; later if the UDF kept some
    of the input), the region's offset is queued and the worker tells the host with
    RELEASE. A UDF may therefore keep input arrays as long as it likes: the host does
    not reuse a region until it is released. Results are written into the region the
    host offered, one copy, or sent as frames when they do not fit.
    """

    def __init__(self, mm: Any, size: int) -> None:
        self._mm = mm
        self.size = size
        self._view = memoryview(mm)
        self._buffer = pa.py_buffer(self._view)
        self.address = self._buffer.address
        self._released: collections.deque[int] = collections.deque()
        self._schema_message: bytes | None = None
        self._schema: pa.Schema | None = None

    @classmethod
    def open(cls, path: str, size: int) -> SharedArena:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        try:
            actual = os.fstat(fd).st_size
            if actual < size:
                raise ValueError(f"expected an arena of {size} bytes, found a file of {actual} bytes")
            with _address_space_for(size):
                mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        return cls(mm, size)

    def input(self, offset: int, length: int) -> pa.Buffer:
        """The input region as a buffer whose lifetime decides when it is released."""
        hold = _Hold(self)
        weakref.finalize(hold, self._released.append, offset)
        return pa.foreign_buffer(self.address + offset, length, base=hold)

    def read_batch(self, offset: int, length: int) -> pa.RecordBatch:
        """The BATCH stream in the input region, read in place. The host writes the same
        schema message before every batch; once seen, it is recognised by its bytes and
        only the record batch message is parsed (the general reader costs ~20 µs a batch)."""
        buf = self.input(offset, length)
        head = self._schema_message
        if head is not None and length > len(head) + 8 and self._view[offset : offset + len(head)] == head:
            try:
                got = _record_batch_message(buf.slice(len(head)), self._schema)
                if got is not None:
                    end = len(head) + got[1]
                    if end + 8 == length and bytes(self._view[offset + end : offset + length]) == P.EOS_MARKER:
                        return got[0]
            except (pa.ArrowException, OSError, ValueError):
                pass  # the general path below reports what is wrong
        batch = read_single_batch([buf])
        try:
            first = pa.ipc.read_message(buf)
            size = 8 + first.metadata.size
            if first.type == "schema" and size < length:
                self._schema_message, self._schema = bytes(self._view[offset : offset + size]), batch.schema
        except (pa.ArrowException, OSError, ValueError):
            pass
        return batch

    def take_released(self) -> list[int]:
        """Offsets released since the last call (finalizers may run on any thread)."""
        out = []
        while self._released:
            out.append(self._released.popleft())
        return out

    def write_stream(self, offset: int, capacity: int, schema: pa.Schema, batches: list[pa.RecordBatch]) -> int | None:
        """Writes one Arrow IPC stream into the region; its length, or None when it
        does not fit (the caller sends frames instead)."""
        sink = pa.FixedSizeBufferWriter(pa.py_buffer(self._view[offset : offset + capacity]))
        try:
            with pa.ipc.RecordBatchStreamWriter(sink, schema, options=_WRITE_OPTIONS) as writer:
                for b in batches:
                    writer.write_batch(b)
            return int(sink.tell())
        except (pa.ArrowException, OSError, ValueError):
            return None


#: Input files are mapped in windows of this many bytes (a multiple of any page size), and the
#: last `_WINDOWS_KEPT` windows stay mapped for the messages that follow.
_WINDOW = 256 << 20
_WINDOWS_KEPT = 2


def _window_bytes() -> int:
    """`_WINDOW`, or 0 (map each message alone) under an address-space limit, which kept
    windows would eat into (``--worker-memory-limit``; `auto` then copies into the arena
    anyway, ``--share-input on`` does not)."""
    try:
        import resource
    except ImportError:
        return _WINDOW
    return _WINDOW if resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY else 0


class InputFiles:
    """Record batches read in place from the host's input files (section 19).

    The worker maps the file in windows of `_WINDOW` bytes around the messages the FILE
    descriptors name and keeps the last two mapped; it keeps the last message it decoded too,
    so the slices the host cut from one message cost one decode. A window leaves the cache when
    newer ones push it out and is unmapped when nothing refers to its arrays any more.

    Why windows: with one mapping per message (as before), every batch cost a worker an mmap
    and an munmap of the shared file, which take the file's mapping lock for writing; on a
    16-core machine with 4 to 12 workers a worker reading W2's 8K-row batches in place ran at
    7.2–7.4 M rows/s against 9.1–9.5 reading copies in the arena. Under an address-space
    limit each message is mapped alone (`_window_bytes`).

    The file is opened again for every new message and must be the device and inode the host
    saw, at least as long as the message's end: a descriptor number the host reused for another
    file cannot hand the worker the wrong bytes (windows and the cached message are keyed by
    device and inode too, and a mapped file's inode cannot be reused while the mapping lives),
    and a file that grew (a log still being written) is still read: a window mapped before the
    growth is mapped again when a message ends beyond it."""

    def __init__(self, window: int | None = None) -> None:
        self._schemas: dict[tuple[str, int, int, int, int], pa.Schema] = {}
        self._last: tuple[tuple[str, int, int, int, int], pa.RecordBatch] | None = None
        self._window = window
        #: (device, inode, window start) -> (mapping, end offset in the file), oldest first.
        self._windows: collections.OrderedDict[tuple[int, int, int], tuple[mmap.mmap, int]] = collections.OrderedDict()

    def read(self, d: P.FileBatch) -> pa.RecordBatch:
        key = (d.path, d.device, d.inode, d.size, d.offset)
        if self._last is not None and self._last[0] == key:
            whole = self._last[1]
        else:
            self._last = None  # let the previous message go before mapping the next
            whole = self._decode(d)
            self._last = (key, whole)
        if d.row_offset + d.rows > whole.num_rows:
            raise ProtocolError(
                f"expected rows {d.row_offset} to {d.row_offset + d.rows} of the {whole.num_rows}-row record batch "
                f"at offset {d.offset} of {d.path}, found rows beyond it",
                "field",
            )
        return whole.slice(d.row_offset, d.rows)

    def _decode(self, d: P.FileBatch) -> pa.RecordBatch:
        try:
            fd = os.open(d.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise ProtocolError(f"cannot open the input file {d.path}: {exc.strerror}", "payload") from None
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (d.device, d.inode) or st.st_size < d.offset + d.length:
                raise ProtocolError(
                    f"expected the input file {d.path} to be inode {d.inode} of device {d.device}, at least "
                    f"{d.offset + d.length} bytes long, found inode {st.st_ino} of device {st.st_dev}, {st.st_size} bytes",
                    "payload",
                )
            skey = (d.path, d.device, d.inode, d.size, d.schema_offset)
            schema = self._schemas.get(skey)
            if schema is None:
                schema = pa.ipc.read_schema(pa.py_buffer(os.pread(fd, d.schema_length, d.schema_offset)))
                self._schemas = {skey: schema}
            window, start = self._map(fd, st.st_size, d)
            buf = pa.py_buffer(window).slice(d.offset - start, d.length)
            return pa.ipc.read_record_batch(buf, schema)
        except (OSError, ValueError, MemoryError, pa.ArrowException) as exc:
            raise ProtocolError(f"cannot read the record batch at offset {d.offset} of the input file {d.path}: {exc!r}", "payload") from None
        finally:
            os.close(fd)

    def _map(self, fd: int, file_size: int, d: P.FileBatch) -> tuple[mmap.mmap, int]:
        """A read-only shared mapping that holds the message, and the file offset it starts at.
        Mapped lazily: MAP_POPULATE, which maps the whole range in one call, cost more than the
        page faults it saves (W2, 64K-row messages read as 8K-row slices, warm page cache: 4.5
        against 4.2 ms a message in one process; 2 workers, 8K rows, six alternating runs: 10.1
        against 11.3 M rows/s), and a worker reads only the batches it is sent."""
        if self._window is None:
            self._window = _window_bytes()
        end = d.offset + d.length
        if not self._window:
            start = d.offset - d.offset % _PAGE
            return mmap.mmap(fd, end - start, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=start), start
        start = d.offset - d.offset % self._window
        key = (d.device, d.inode, start)
        kept = self._windows.get(key)
        if kept is not None and kept[1] >= end:
            self._windows.move_to_end(key)
            return kept[0], start
        # To the window's end, or the message's when it crosses it; never past the file's end.
        stop = min(file_size, max(start + self._window, end))
        window = mmap.mmap(fd, stop - start, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=start)
        self._windows[key] = (window, stop)
        self._windows.move_to_end(key)
        while len(self._windows) > _WINDOWS_KEPT:
            self._windows.popitem(last=False)  # unmapped once no array refers to it
        return window, start


class _MailboxFrame:
    """One frame of a message read from a mailbox; like a ``zmq.Frame``, its bytes are
    ``.buffer``."""

    __slots__ = ("buffer",)

    def __init__(self, data: bytes) -> None:
        self.buffer = data


class Doorbell:
    """This worker's doorbells (section 18): a BATCH the host puts in request mailbox ``j``
    comes with the byte ``j + 1`` on the request FIFO, and its answer goes into reply
    mailbox ``j`` with the same byte on the reply FIFO. A message then wakes one thread on
    each side (the host's waiting thread, this worker's loop) instead of two more through
    both ZeroMQ I/O threads. Everything else, and any answer that does not fit, goes
    through the socket."""

    __slots__ = ("request_fd", "reply_fd", "request_boxes", "reply_boxes", "pending")

    def __init__(self, arena: SharedArena, offer: P.DoorbellOffer) -> None:
        import stat

        span = offer.size * offer.slots
        for key in ("request_offset", "reply_offset"):
            offset = getattr(offer, key)
            if offset + span > arena.size:
                which = key.split("_")[0]
                boxes = f"{which} mailbox" if offer.slots == 1 else f"{offer.slots} {which} mailboxes"
                raise ValueError(
                    f"expected the {boxes} inside the {arena.size}-byte arena, found {span} bytes at offset {offset}"
                )
        def boxes(start: int) -> list[memoryview]:
            return [arena._view[start + j * offer.size : start + (j + 1) * offer.size] for j in range(offer.slots)]

        self.request_boxes = boxes(offer.request_offset)
        self.reply_boxes = boxes(offer.reply_offset)
        #: Request mailboxes rung and not taken yet, in the order of their rings.
        self.pending: collections.deque[int] = collections.deque()
        cloexec = getattr(os, "O_CLOEXEC", 0)
        fds: list[int] = []
        try:
            for path, mode in ((offer.request_fifo, os.O_RDONLY), (offer.reply_fifo, os.O_WRONLY)):
                fd = os.open(path, mode | os.O_NONBLOCK | cloexec)
                fds.append(fd)
                if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                    raise ValueError(f"expected {path} to be a FIFO, found another kind of file")
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        self.request_fd, self.reply_fd = fds

    def rang(self) -> bool:
        """Whether a request mailbox is waiting (reads the rings the host wrote since the
        last call). Raises EOFError when the FIFO has no writer any more (the host holds it
        open while it lives)."""
        if self.pending:
            return True
        try:
            data = os.read(self.request_fd, 256)
        except BlockingIOError:
            return False
        if not data:
            raise EOFError("the host closed the request FIFO")
        self.pending.extend(b - 1 for b in data)
        return True

    def take_request(self) -> tuple[int, list[Any]]:
        """The next rung request mailbox and its message, copied out (the UDF may keep its
        arrays). Raises ProtocolError for a ring naming no mailbox or a malformed one."""
        j = self.pending.popleft()
        if not 0 <= j < len(self.request_boxes):
            raise ProtocolError(
                f"expected a doorbell ring naming one of {len(self.request_boxes)} mailboxes (1 to {len(self.request_boxes)}), found {j + 1}",
                "frames",
            )
        return j, [_MailboxFrame(f) for f in P.decode_mailbox(self.request_boxes[j])]

    def reply(self, frames: list[Any], slot: int) -> bool:
        """Puts an answer in reply mailbox ``slot`` and rings; False when it must go through
        the socket instead (too large, or the FIFO would block)."""
        try:
            # Nothing is written unless it all fits, and a mailbox is only read after a ring:
            # any failure here leaves the socket to carry the answer.
            if not P.encode_mailbox(frames, self.reply_boxes[slot]):
                return False
            return os.write(self.reply_fd, bytes((slot + 1,))) == 1
        except (OSError, TypeError, ValueError, BufferError):
            return False

    def close(self) -> None:
        for fd in (self.request_fd, self.reply_fd):
            try:
                os.close(fd)
            except OSError:
                pass


# -- The loop -------------------------------------------------------------------------------


@dataclass
class WorkerConfig:
    """How a worker connects and behaves.

    ``overrides`` maps UDF references to in-memory objects (test harness).
    ``in_process`` marks a worker running in a thread of a host process: it
    never writes to the process's signal state and returns instead of exiting.
    """

    endpoint: str
    token: str
    slot: int
    identity: bytes | None = None
    handshake_ms: int = 30_000
    warm: bool = True
    curve_server_key: bytes | None = None
    curve_public_key: bytes | None = None
    curve_secret_key: bytes | None = None
    overrides: Mapping[str, Any] | None = None
    in_process: bool = False


class _Exit(BaseException):  # not an Exception: nothing but Worker.run may catch it
    def __init__(self, code: int) -> None:
        self.code = code


class Worker:
    """One worker: connects a DEALER, handshakes, serves batches until CLOSE."""

    def __init__(self, config: WorkerConfig, context: zmq.Context[Any] | None = None) -> None:
        self.config = config
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.socket: zmq.Socket[Any] | None = None
        self.stages: list[Stage] = []
        self.input_schema: pa.Schema | None = None
        self.batches = 0
        self.heartbeat_ms = 1000
        self.missed_heartbeats = 5
        self._encoder = StreamEncoder()
        #: Stage option on_error=skip on any stage: isolate failing rows for the chain.
        self.skip_rows = False
        self._stop = threading.Event()
        self._rcvtimeo = -1
        self._linger_ms = 1000
        self._arena: SharedArena | None = None
        self._input_files = InputFiles()
        self._doorbell: Doorbell | None = None
        self._poller: zmq.Poller | None = None
        #: The request mailbox the message being handled came through (None: the socket).
        self._from_doorbell: int | None = None
        #: The reply mailbox the next message sent goes into: it answers a doorbell BATCH.
        self._reply_armed: int | None = None
        #: The last message came through the doorbell: the socket goes first next time.
        self._last_from_doorbell = False

    # -- sending --------------------------------------------------------------------------

    def _send(self, frames: list[Any]) -> None:
        assert self.socket is not None
        if self._reply_armed is not None:
            slot, self._reply_armed = self._reply_armed, None
            if self._doorbell is not None and self._doorbell.reply(frames, slot):
                return
        # Zero-copy frames cost a Frame object and a release callback each (measured: about
        # 19 µs a frame); small bytes frames are cheaper to copy into the message.
        small = all(type(f) is bytes for f in frames) and sum(len(f) for f in frames) <= _JOIN_LIMIT
        self.socket.send_multipart(frames, copy=small)

    def _send_error(self, report: P.ErrorReport, *, stage: int = P.NO_STAGE, attempt: int = 0, sequence: int = 0) -> None:
        env = P.encode_envelope(P.Kind.ERROR, stage=stage, attempt=attempt, sequence=sequence)
        self._send([env, P.dumps_json(report.to_json())])

    def _send_result(
        self,
        env: P.Envelope,
        schema: pa.Schema,
        batches: list[pa.RecordBatch],
        region: tuple[int, int] | None,
        failed: dict[str, Any] | None = None,
    ) -> None:
        """RESULT for ``env``: written into the result region the host offered when it
        fits (SHM flag, a descriptor frame), else as Arrow IPC frames.

        Once the result is in its region, ``batches`` is emptied: the outputs may be views of
        the input, and a caller that holds no other reference to the input lets its region go
        back with this RESULT (section 17.2) instead of in a RELEASE of its own."""
        last = len(self.stages) - 1
        flags = P.FLAG_ROW_ERRORS if failed is not None else 0
        head = [P.dumps_json(failed)] if failed is not None else []
        if region is not None and self._arena is not None:
            offset, capacity = region
            written = self._arena.write_stream(offset, capacity, schema, batches)
            if written is not None:
                batches.clear()
                released = self._arena.take_released()
                out = P.encode_envelope(P.Kind.RESULT, stage=last, attempt=env.attempt, sequence=env.sequence, flags=flags | P.FLAG_SHM)
                self._send([out, *head, P.RESULT_REGION.pack(offset, written) + P.encode_release(released)])
                return
        out = P.encode_envelope(P.Kind.RESULT, stage=last, attempt=env.attempt, sequence=env.sequence, flags=flags)
        self._send([out, *head, *self._encoder.encode(schema, batches)])

    def _flush_releases(self) -> None:
        """RELEASE for the input regions nothing references any more."""
        if self._arena is not None:
            offsets = self._arena.take_released()
            if offsets:
                self._send([P.encode_envelope(P.Kind.RELEASE), P.encode_release(offsets)])

    def _protocol_error(self, exc: ProtocolError, attempt: int = 0, sequence: int = 0) -> None:
        log(f"protocol error: {exc.message}")
        self._send_error(P.ErrorReport("protocol", type(exc).__name__, exc.message), attempt=attempt, sequence=sequence)

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Asks an in-process worker to return at its next wake-up (test harness)."""
        self._stop.set()

    def run(self) -> int:
        """Runs the worker to completion and returns its exit code."""
        cfg = self.config
        sock = self.context.socket(zmq.DEALER)
        self.socket = sock
        identity = cfg.identity or f"w{cfg.slot}-{os.getpid()}".encode()
        sock.setsockopt(zmq.ROUTING_ID, identity)
        sock.setsockopt(zmq.LINGER, 0)
        if cfg.curve_server_key:
            if not (cfg.curve_public_key and cfg.curve_secret_key):
                cfg.curve_public_key, cfg.curve_secret_key = zmq.curve_keypair()
            sock.curve_serverkey = cfg.curve_server_key
            sock.curve_publickey = cfg.curve_public_key
            sock.curve_secretkey = cfg.curve_secret_key
        try:
            try:
                sock.connect(cfg.endpoint)
            except zmq.ZMQError as exc:
                log(f"cannot connect to {cfg.endpoint}: {exc}")
                self._linger_ms = 0
                return EXIT_USAGE
            self._hello()
            if cfg.warm:
                warm_up()
            self._handshake()
            return self._serve()
        except _Exit as done:
            return done.code
        finally:
            self._close_stages()
            if self._doorbell is not None:
                self._doorbell.close()
                self._doorbell = None
            # Let a final ERROR or BYE reach the host; nothing to flush when it is gone.
            sock.close(linger=self._linger_ms)
            if self._own_context:
                self.context.term()

    def _hello(self) -> None:
        hello = P.Hello(
            protocol=PROTOCOL_VERSION,
            helper=HELPER_VERSION,
            pid=os.getpid(),
            slot=self.config.slot,
            token=self.config.token,
            python=".".join(str(v) for v in sys.version_info[:3]),
            pyarrow=pa.__version__,
            capabilities=tuple(capabilities()),
        )
        self._send([P.encode_envelope(P.Kind.HELLO), P.dumps_json(hello.to_json())])

    def _recv(self, timeout_ms: int) -> list[zmq.Frame] | None:
        """The next message, or None after ``timeout_ms`` without one."""
        sock = self.socket
        assert sock is not None
        self._from_doorbell = None
        if self._doorbell is not None:
            return self._recv_either(sock, self._doorbell, timeout_ms)
        if int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            # Fast path: a pipelined host usually has the next batch queued already.
            return sock.recv_multipart(copy=False)
        # In-process workers wake up regularly to notice stop().
        wait_ms = min(timeout_ms, 100) if self.config.in_process else timeout_ms
        if wait_ms != self._rcvtimeo:
            sock.setsockopt(zmq.RCVTIMEO, max(1, wait_ms))
            self._rcvtimeo = wait_ms
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            if self._stop.is_set():
                raise _Exit(EXIT_OK)
            try:
                return sock.recv_multipart(copy=False)
            except zmq.Again:
                if time.monotonic() >= deadline:
                    return None

    def _recv_either(self, sock: zmq.Socket[Any], bell: Doorbell, timeout_ms: int) -> list[Any] | None:
        """The next message from the doorbell or the socket. When both have one waiting they
        take turns (section 18.3): a BATCH the host had to send through the socket (no free
        mailbox, too large) waits behind at most one doorbell BATCH."""
        deadline = time.monotonic() + timeout_ms / 1000
        poller = self._poller
        if poller is None:
            poller = self._poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(bell.request_fd, zmq.POLLIN)

        def from_socket() -> list[Any] | None:
            if not int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                return None
            self._last_from_doorbell = False
            return sock.recv_multipart(copy=False)

        while True:
            if self._last_from_doorbell and (frames := from_socket()) is not None:
                return frames
            try:
                rang = bell.rang()
            except EOFError:
                # No host holds the FIFO: stop polling it (it would report POLLHUP forever);
                # the socket and its heartbeats decide whether the host is still there.
                poller.unregister(bell.request_fd)
                bell.close()
                self._doorbell = self._poller = None
                return self._recv(max(1, int((deadline - time.monotonic()) * 1000)))
            if rang:
                try:
                    slot, frames = bell.take_request()
                except ProtocolError as exc:
                    self._protocol_error(exc)
                    continue
                self._from_doorbell = slot
                self._last_from_doorbell = True
                return frames
            if (frames := from_socket()) is not None:
                return frames
            if self._stop.is_set():
                raise _Exit(EXIT_OK)
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                return None
            # In-process workers wake up regularly to notice stop().
            poller.poll(max(1, int(min(remaining_ms, 100) if self.config.in_process else remaining_ms)))

    def _check_major(self, env0: Any, frames: list[zmq.Frame]) -> None:
        """Before OPEN: a host with another major version ends the worker (exit 2)."""
        peek = P.peek_version(env0)
        if peek is None or peek[0] == P.PROTOCOL_MAJOR:
            return
        major, minor, kind = peek
        reason = ""
        if kind == P.Kind.CLOSE and len(frames) > 1:
            try:
                reason = P.parse_close(P.loads_json(frames[1].buffer, "frame 1 of CLOSE"))
            except ProtocolError:
                reason = ""
        log(reason or P.version_mismatch_message(f"{major}.{minor}", PROTOCOL_VERSION, python=sys.executable, helper=HELPER_VERSION))
        raise _Exit(EXIT_USAGE)

    def _handshake(self) -> None:
        cfg = self.config
        deadline = time.monotonic() + cfg.handshake_ms / 1000
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            frames = self._recv(remaining_ms) if remaining_ms > 0 else None
            if frames is None:
                log(f"no OPEN from the host within {cfg.handshake_ms} ms of HELLO (endpoint {cfg.endpoint}); exiting")
                self._linger_ms = 0
                raise _Exit(EXIT_HOST_LOST)
            env0 = frames[0].buffer
            self._check_major(env0, frames)
            try:
                env = P.decode_envelope(env0)
                P.check_frames(env.kind, len(frames), "host")
                if env.kind == P.Kind.CLOSE:
                    reason = P.parse_close(P.loads_json(frames[1].buffer, "frame 1 of CLOSE"))
                    log(f"the host rejected this worker: {reason or '(no reason given)'}")
                    raise _Exit(EXIT_USAGE)
                if env.kind == P.Kind.HEARTBEAT:
                    self._heartbeat()
                    continue
                if env.kind != P.Kind.OPEN:
                    raise ProtocolError(f"expected OPEN or CLOSE after HELLO, found {env.kind.name}", "direction")
                self._open(frames)
                return
            except ProtocolError as exc:
                attempt, seq = P.salvage_sequence(env0)
                self._protocol_error(exc, attempt, seq)

    def _open(self, frames: list[zmq.Frame]) -> None:
        doc = P.parse_open(P.loads_json(frames[1].buffer, "frame 1 of OPEN"))
        try:
            schema = pa.ipc.read_schema(as_aligned_buffer([frames[2]]))
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise ProtocolError(f"expected an Arrow IPC schema message in frame 2 of OPEN, found undecodable bytes: {exc}") from None
        self.input_schema = schema
        self.heartbeat_ms = doc.heartbeat_ms
        self.missed_heartbeats = doc.missed_heartbeats
        # on_error applies to the whole fused chain: one stage saying skip is enough.
        self.skip_rows = any(ref.options.get("on_error") == "skip" for ref in doc.stages)
        for index, ref in enumerate(doc.stages):
            try:
                rows = ref.options.get("rows", "any")
                if rows not in ("any", "same"):
                    raise LoaderError(f"stage {ref.name}: expected option rows to be 'any' or 'same', found {rows!r}")
                on_error = ref.options.get("on_error", "fail")
                if on_error not in P.ON_ERROR_VALUES:
                    raise LoaderError(f"stage {ref.name}: expected option on_error to be 'fail' or 'skip', found {on_error!r}")
                loaded = resolve(ref.udf, overrides=self.config.overrides)
                if self.skip_rows and loaded.spec.kind == "generator":
                    raise LoaderError(
                        f"stage {ref.name}: expected a function or class stage with on_error=skip, found a "
                        f"generator stage: a generator keeps state across batches and cannot be re-run on "
                        f"parts of a batch to isolate the failing rows; use on_error=fail for this chain, "
                        f"or write the stage as a function or a class"
                    )
                self.stages.append(Stage(index, ref.name, loaded, rows_same=rows == "same"))
            except LoaderError as exc:
                self._setup_failed(index, ref.name, exc.exc_type, exc.message, exc.traceback)
            except ImportError as exc:  # input format needs pandas/numpy
                missing = exc.name or "the input format's package"
                self._setup_failed(
                    index,
                    ref.name,
                    exc_type_name(exc),
                    f"stage {ref.name}: the input format needs {missing}, which is not installed in "
                    f"{sys.executable}; install it with: {sys.executable} -m pip install {missing}",
                    "",
                )
            except Exception as exc:  # anything else while loading is still a setup failure
                self._setup_failed(index, ref.name, exc_type_name(exc), f"stage {ref.name}: {exc_text(exc)}", format_user_traceback(exc))
        shm_ok: bool | None = None
        shm_error: str | None = None
        if doc.shm is not None:
            try:
                self._arena = SharedArena.open(doc.shm.path, doc.shm.size)
                shm_ok = True
            except (OSError, ValueError) as exc:
                shm_ok, shm_error = False, f"{doc.shm.path}: {exc}"
                log(f"cannot map the host's shared arena ({shm_error}); batches will travel as frames")
        bell_ok: bool | None = None
        bell_error: str | None = None
        if doc.doorbell is not None:
            try:
                if self._arena is None:
                    raise ValueError("the arena the mailboxes live in is not mapped")
                self._doorbell = Doorbell(self._arena, doc.doorbell)
                bell_ok = True
            except (OSError, ValueError) as exc:
                bell_ok, bell_error = False, str(exc)
                log(f"cannot open the doorbells ({bell_error}); requests will come through the socket")
        ready = P.Ready(tuple(s.info for s in self.stages), shm_ok, shm_error, bell_ok, bell_error)
        out: list[Any] = [P.encode_envelope(P.Kind.READY), P.dumps_json(ready.to_json())]
        for s in self.stages:
            if s.udf.spec.schema is not None:
                out.append(s.udf.spec.schema.serialize())
        self._send(out)

    def _setup_failed(self, index: int, name: str, exc_type: str, message: str, tb: str) -> None:
        log(f"stage {name}: setup failed: {message}")
        if tb:
            sys.stderr.write(tb)
        self._send_error(P.ErrorReport("setup", exc_type, message, tb, name), stage=index)
        raise _Exit(EXIT_SETUP)

    def _heartbeat(self) -> None:
        self._flush_releases()
        report = P.HeartbeatReport(rss_bytes(), self.batches)
        self._send([P.encode_envelope(P.Kind.HEARTBEAT), P.dumps_json(report.to_json())])

    def _serve(self) -> int:
        limit_ms = self.heartbeat_ms * self.missed_heartbeats
        while True:
            frames = self._recv(limit_ms)
            if frames is None:
                log(
                    f"no message from the host for {limit_ms} ms (heartbeat_ms={self.heartbeat_ms} x "
                    f"missed_heartbeats={self.missed_heartbeats}); the host is gone, exiting"
                )
                self._linger_ms = 0
                return EXIT_HOST_LOST
            env0 = frames[0].buffer
            try:
                env = P.decode_envelope(env0)
                P.check_frames(env.kind, len(frames), "host")
                kind = env.kind
                if kind == P.Kind.BATCH:
                    self._reply_armed = self._from_doorbell
                    self._batch(env, frames)
                    self._reply_armed = None
                    self._flush_releases()
                elif kind == P.Kind.HEARTBEAT:
                    self._heartbeat()
                elif kind == P.Kind.CLOSE:
                    P.loads_json(frames[1].buffer, "frame 1 of CLOSE")
                    self._close_stages()
                    self._send([P.encode_envelope(P.Kind.BYE)])
                    return EXIT_OK
                else:  # OPEN again
                    raise ProtocolError(f"expected BATCH, HEARTBEAT or CLOSE after READY, found {kind.name}", "direction")
            except ProtocolError as exc:
                attempt, seq = P.salvage_sequence(env0)
                self._protocol_error(exc, attempt, seq)  # through the mailbox, if the BATCH came through one
                self._reply_armed = None
            else:
                continue
            # Out of the except clause: until it ends, the traceback keeps the failed BATCH's
            # frames, and with them an input region the batch was read from, alive.
            self._flush_releases()

    def _batch(self, env: P.Envelope, frames: list[zmq.Frame]) -> None:
        if env.stage != 0:
            raise ProtocolError(f"expected BATCH for stage 0, found stage {env.stage}", "field")
        region: tuple[int, int] | None = None
        if env.flags & P.FLAG_FILE and not env.flags & P.FLAG_SHM:
            raise ProtocolError("expected the SHM flag with the FILE flag of a BATCH (its result region is in the arena), found FILE alone", "field")
        if env.flags & P.FLAG_SHM:
            if self._arena is None:
                raise ProtocolError("expected BATCH payload frames (this worker mapped no arena), found the SHM flag", "field")
            if len(frames) != 2:
                raise ProtocolError(f"expected 2 frames in a BATCH with the SHM flag, found {len(frames)}", "frames")
            if env.flags & P.FLAG_FILE:
                d = P.decode_file_batch(frames[1].buffer, self._arena.size)
                batch = self._input_files.read(d)
                result_offset, capacity = d.result_offset, d.result_capacity
            else:
                offset, length, result_offset, capacity = P.decode_batch_regions(frames[1].buffer, self._arena.size)
                batch = self._arena.read_batch(offset, length)
            if capacity:
                region = (result_offset, capacity)
        else:
            batch = read_single_batch(frames[1:])
        if self.input_schema is not None and not batch.schema.equals(self.input_schema):
            raise ProtocolError(
                f"expected the BATCH schema to be the OPEN input schema {format_schema(self.input_schema)}, "
                f"found {format_schema(batch.schema)}",
                "payload",
            )
        self.batches += 1
        try:
            batches = [batch]
            schema = batch.schema
            for stage in self.stages:
                current = combine(batches, schema)
                batches, schema = stage.run(current)
        except StageFailure as failure:
            if not (self.skip_rows and failure.report.kind == "user" and batch.num_rows):
                self._send_error(failure.report, stage=failure.index, attempt=env.attempt, sequence=env.sequence)
                return
            first = failure.index, failure.report
        else:
            del batch, current  # only the outputs may still refer to the input (see _send_result)
            self._send_result(env, schema, batches, region)
            return
        # Outside the except clause, so that the UDF's exceptions during isolation
        # are not chained to this one.
        self._batch_isolating(env, batch, region, *first)

    # -- on_error=skip: row isolation -----------------------------------------------------
    #
    # Only reached after the chain raised a user exception on a whole batch, so the
    # fail-fast path above pays nothing for it.

    def _run_chain(self, batch: pa.RecordBatch) -> tuple[list[pa.RecordBatch], pa.Schema]:
        """The fused chain on one batch (or slice); raises StageFailure."""
        batches = [batch]
        schema = batch.schema
        for stage in self.stages:
            batches, schema = stage.run(combine(batches, schema))
        return batches, schema

    def _batch_isolating(
        self, env: P.Envelope, batch: pa.RecordBatch, region: tuple[int, int] | None, index: int, report: P.ErrorReport
    ) -> None:
        """Answers a batch whose chain raised: RESULT with the good rows' outputs and
        the failed rows (flag ROW_ERRORS), or ERROR when isolation is impossible."""
        try:
            good, failed = self._isolate(batch, index, report)
            schema, batches = self._join_outputs(good)
        except StageFailure as fatal:
            self._send_error(fatal.report, stage=fatal.index, attempt=env.attempt, sequence=env.sequence)
            return
        if not failed:  # the failure depended on the batch's composition: no row to blame
            self._send_result(env, schema, batches, region)
            return
        doc = {"failed": [self._row_failure(row, r).to_json() for row, _, r in failed]}
        self._send_result(env, schema, batches, region, doc)

    def _isolate(
        self, batch: pa.RecordBatch, index: int, report: P.ErrorReport
    ) -> tuple[list[tuple[list[pa.RecordBatch], pa.Schema]], list[tuple[int, int, P.ErrorReport]]]:
        """Bisects ``batch``, on which stage ``index`` raised (``report``): re-runs the chain on
        both halves (zero-copy slices), recursively, down to single rows. Returns the
        outputs of the good slices in input order and (row, stage index, report) of
        every row that raises on its own, ascending. Raises StageFailure when a slice fails with
        another kind than "user" (schema, oom) or when too many rows fail."""
        limit = P.MAX_ROW_FAILURES
        good: list[tuple[list[pa.RecordBatch], pa.Schema]] = []
        failed: list[tuple[int, int, P.ErrorReport]] = []

        # Only the reports are kept, not the exceptions: their tracebacks would keep
        # every failing slice's frames (and converted inputs) alive.
        def bisect(offset: int, length: int, index: int, report: P.ErrorReport) -> None:
            if length == 1:
                failed.append((offset, index, report))
                if len(failed) > limit:
                    raise self._too_many(batch, failed[0])
                return
            half = length // 2
            for start, size in ((offset, half), (offset + half, length - half)):
                try:
                    good.append(self._run_chain(batch.slice(start, size)))
                    continue
                except StageFailure as sub:
                    if sub.report.kind != "user":
                        raise
                    sub_index, sub_report = sub.index, sub.report
                bisect(start, size, sub_index, sub_report)

        bisect(0, batch.num_rows, index, report)
        return good, failed

    def _too_many(self, batch: pa.RecordBatch, first: tuple[int, int, P.ErrorReport]) -> StageFailure:
        row, index, r = first
        head = r.message.splitlines()[0] if r.message else ""
        message = (
            f"expected at most {P.MAX_ROW_FAILURES} failed rows in one batch with on_error=skip, found more "
            f"in this batch of {batch.num_rows} rows, so the whole batch fails; the first failure is row "
            f"{row}, stage {r.stage}: {r.exc_type}: {head}"
        )
        report = P.ErrorReport(
            "user", r.exc_type, P.truncate_utf8(message), P.truncate_utf8(r.traceback), r.stage, row, row + 1, False
        )
        return StageFailure(index, report)

    @staticmethod
    def _row_failure(row: int, r: P.ErrorReport) -> P.RowFailure:
        return P.RowFailure(row, r.stage, r.exc_type, P.truncate_utf8(r.message), P.truncate_utf8(r.traceback))

    def _join_outputs(
        self, good: list[tuple[list[pa.RecordBatch], pa.Schema]]
    ) -> tuple[pa.Schema, list[pa.RecordBatch]]:
        """One schema and the batches of the good slices, in order. Without any good
        slice: the last stage's declared schema, else a schema with no fields. Slices
        of an undeclared schema may infer different types (a slice of nulls gives
        ``null``); they are unified (permissive promotion) or the batch fails."""
        if not good:
            declared = self.stages[-1].udf.spec.schema
            return (declared if declared is not None else _EMPTY_SCHEMA), []
        with_rows = [(bs, s) for bs, s in good if any(b.num_rows for b in bs)]
        if not with_rows:
            return good[0][1], []
        schema = with_rows[0][1]
        if all(s is schema or s.equals(schema) for _, s in with_rows):
            return schema, [b for bs, _ in with_rows for b in bs if b.num_rows]
        try:
            unified = pa.unify_schemas([s for _, s in with_rows], promote_options="permissive")
            out: list[pa.RecordBatch] = []
            for bs, s in with_rows:
                part = [b for b in bs if b.num_rows]
                if not s.equals(unified):
                    part = pa.Table.from_batches(part, schema=s).select(unified.names).cast(unified).to_batches()
                out.extend(part)
            return unified, out
        except (pa.ArrowException, KeyError, ValueError, TypeError) as exc:
            last = self.stages[-1]
            others = ", ".join(sorted({format_schema(s) for _, s in with_rows}))
            message = (
                f"stage {last.name}: expected the good slices of a batch (on_error=skip) to return one "
                f"output schema, found {others} ({exc})"
            )
            raise StageFailure(last.index, P.ErrorReport("schema", "SchemaError", message, "", last.name)) from None

    def _close_stages(self) -> None:
        stages, self.stages = self.stages, []
        for s in stages:
            s.close()
