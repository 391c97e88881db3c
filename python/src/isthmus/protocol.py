"""The Isthmus bridge protocol, version 1.0: envelopes, message kinds, JSON documents.

This module is pure standard library so that it can be imported (and the
golden vectors checked) without pyarrow or pyzmq. The normative description is
``bridge-protocol/PROTOCOL.md``; this module follows it exactly.

Every message is a multipart ZeroMQ message whose frame 0 is a 24-byte
little-endian envelope::

    offset size field
    0      4    magic     "ISTH" (49 53 54 48)
    4      1    major     1
    5      1    minor     1
    6      1    kind      1..10
    7      1    flags     bit 0 LAST (reserved), bit 1 ROW_ERRORS (RESULT only),
                          bit 2 SHM (BATCH and RESULT, 1.1); unknown bits are ignored
    8      2    stage     u16, 0xFFFF = no stage
    10     2    reserved  must be 0
    12     4    attempt   u32
    16     8    sequence  u64
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass, field
from typing import Any, Final

from ._version import PROTOCOL_MAJOR, PROTOCOL_MINOR, PROTOCOL_VERSION
from .errors import ProtocolError, VersionMismatch

__all__ = [
    "MAGIC",
    "ENVELOPE_SIZE",
    "NO_STAGE",
    "FLAG_LAST",
    "FLAG_ROW_ERRORS",
    "FLAG_SHM",
    "FLAG_FILE",
    "BATCH_REGIONS",
    "FILE_BATCH",
    "FileBatch",
    "decode_file_batch",
    "RESULT_REGION",
    "ShmOffer",
    "DoorbellOffer",
    "MAILBOX_MAX_FRAMES",
    "encode_mailbox",
    "decode_mailbox",
    "decode_batch_regions",
    "encode_release",
    "ON_ERROR_VALUES",
    "MAX_ROW_FAILURES",
    "MAX_TRACEBACK_BYTES",
    "EOS_MARKER",
    "CONTINUATION",
    "PROTOCOL_MAJOR",
    "PROTOCOL_MINOR",
    "PROTOCOL_VERSION",
    "ERROR_KINDS",
    "INPUT_FORMATS",
    "STAGE_KINDS",
    "Kind",
    "HOST_KINDS",
    "WORKER_KINDS",
    "Envelope",
    "encode_envelope",
    "decode_envelope",
    "peek_version",
    "salvage_sequence",
    "check_frames",
    "dumps_json",
    "loads_json",
    "StageRef",
    "Hello",
    "Open",
    "StageInfo",
    "Ready",
    "ErrorReport",
    "RowFailure",
    "HeartbeatReport",
    "parse_hello",
    "parse_open",
    "parse_ready",
    "parse_error",
    "parse_row_failures",
    "result_payload_start",
    "truncate_utf8",
    "parse_heartbeat",
    "parse_close",
    "parse_token",
    "version_mismatch_message",
]

#: Envelope magic, the ASCII bytes "ISTH".
MAGIC: Final = b"ISTH"
#: Size of frame 0 of every message.
ENVELOPE_SIZE: Final = 24
#: ``stage`` value meaning "this message concerns no particular stage".
NO_STAGE: Final = 0xFFFF
#: Flag bit 0, reserved for future streaming (must be 0 in 1.0).
FLAG_LAST: Final = 0x01
#: Flag bit 1, RESULT only: frame 1 is the failed-rows JSON document and the
#: payload starts at frame 2 (stage option ``on_error: "skip"``).
FLAG_ROW_ERRORS: Final = 0x02
#: Flag bit 2 (1.1), BATCH and RESULT: the payload is a region of the shared
#: arena, described by a fixed binary frame, instead of Arrow IPC frames.
FLAG_SHM: Final = 0x04
#: Flag bit 3 (1.1), BATCH only, with FLAG_SHM: the input is a record batch message in one
#: of the host's input files, which the worker maps itself (section 19).
FLAG_FILE: Final = 0x08
#: BATCH descriptor (SHM flag): input offset, input length, result offset, result capacity.
BATCH_REGIONS: Final = struct.Struct("<QQQQ")
#: BATCH descriptor (SHM and FILE flags), before the path: device, inode, file size, schema
#: message offset and length, record batch message offset and length, row offset, row count,
#: result offset, result capacity.
FILE_BATCH: Final = struct.Struct("<QQQQQQQQQQQ")
#: The longest path a FILE descriptor may carry, in bytes.
MAX_FILE_PATH: Final = 4096
#: RESULT descriptor (SHM flag): result offset, result length.
RESULT_REGION: Final = struct.Struct("<QQ")
#: Values of the ``on_error`` stage option; the first is the default.
ON_ERROR_VALUES: Final = ("fail", "skip")
#: At most this many failed rows are reported for one batch; beyond it the
#: batch fails as a whole (ERROR kind "user").
MAX_ROW_FAILURES: Final = 10_000
#: Each failed row's ``traceback`` (and ``message``) is cut to this many bytes of UTF-8.
MAX_TRACEBACK_BYTES: Final = 8 * 1024
#: The Arrow IPC end-of-stream marker: continuation token and a zero length.
EOS_MARKER: Final = b"\xff\xff\xff\xff\x00\x00\x00\x00"
#: The Arrow IPC continuation token that starts every encapsulated message.
CONTINUATION: Final = b"\xff\xff\xff\xff"

#: Values of the ``kind`` field of an ERROR document.
ERROR_KINDS: Final = ("user", "schema", "setup", "oom", "protocol")
#: Input formats a stage may request.
INPUT_FORMATS: Final = ("arrow", "pandas", "numpy")
#: Calling conventions a loaded stage may have.
STAGE_KINDS: Final = ("function", "class", "generator")

_STRUCT: Final = struct.Struct("<4sBBBBHHIQ")
assert _STRUCT.size == ENVELOPE_SIZE


class Kind(enum.IntEnum):
    """Message kinds of protocol 1.0."""

    HELLO = 1  #: worker -> host: version, pid, token, capabilities
    OPEN = 2  #: host -> worker: stages, timers, input schema
    READY = 3  #: worker -> host: stages loaded, declared output schemas
    BATCH = 4  #: host -> worker: one record batch as an Arrow IPC stream
    RESULT = 5  #: worker -> host: the result of one batch as an Arrow IPC stream
    ERROR = 6  #: worker -> host: a structured failure
    HEARTBEAT = 7  #: both ways: liveness; the worker's carries rss and batch count
    CLOSE = 8  #: host -> worker: stop (or reject the HELLO)
    BYE = 9  #: worker -> host: acknowledges CLOSE, the worker exits
    RELEASE = 10  #: worker -> host (1.1): input regions of the arena it no longer uses


#: Kinds a host may send.
HOST_KINDS: Final = frozenset({Kind.OPEN, Kind.BATCH, Kind.HEARTBEAT, Kind.CLOSE})
#: Kinds a worker may send.
WORKER_KINDS: Final = frozenset(
    {Kind.HELLO, Kind.READY, Kind.RESULT, Kind.ERROR, Kind.HEARTBEAT, Kind.BYE, Kind.RELEASE}
)

# (minimum, maximum or None) number of frames including the envelope, by sender.
_HOST_FRAMES: Final = {
    Kind.OPEN: (3, 3),
    Kind.BATCH: (2, None),
    Kind.HEARTBEAT: (1, 1),
    Kind.CLOSE: (2, 2),
}
_WORKER_FRAMES: Final = {
    Kind.HELLO: (2, 2),
    Kind.READY: (2, None),
    Kind.RESULT: (2, None),
    Kind.ERROR: (2, 2),
    Kind.HEARTBEAT: (2, 2),
    Kind.BYE: (1, 1),
    Kind.RELEASE: (2, 2),
}


@dataclass(frozen=True, slots=True)
class Envelope:
    """Frame 0 of a message, decoded."""

    kind: Kind
    stage: int = NO_STAGE
    attempt: int = 0
    sequence: int = 0
    flags: int = 0
    major: int = PROTOCOL_MAJOR
    minor: int = PROTOCOL_MINOR

    def encode(self) -> bytes:
        """The 24 bytes of this envelope."""
        return _STRUCT.pack(
            MAGIC,
            self.major,
            self.minor,
            int(self.kind),
            self.flags,
            self.stage,
            0,
            self.attempt,
            self.sequence,
        )

    @staticmethod
    def decode(frame: bytes | bytearray | memoryview) -> "Envelope":
        """Decodes and validates frame 0; see :func:`decode_envelope`."""
        return decode_envelope(frame)


def encode_envelope(
    kind: int, *, stage: int = NO_STAGE, attempt: int = 0, sequence: int = 0, flags: int = 0
) -> bytes:
    """Encodes an envelope of this side's protocol version (the fast path)."""
    return _STRUCT.pack(
        MAGIC, PROTOCOL_MAJOR, PROTOCOL_MINOR, kind, flags, stage, 0, attempt, sequence
    )


def decode_envelope(frame: bytes | bytearray | memoryview) -> Envelope:
    """Decodes frame 0 and checks it, in this order: size, magic, major version,
    reserved bytes, kind. Raises :class:`ProtocolError` (``VersionMismatch`` for
    another major version) with an "expected X, found Y" message."""
    n = len(frame)
    if n != ENVELOPE_SIZE:
        raise ProtocolError(
            f"expected a {ENVELOPE_SIZE}-byte envelope in frame 0, found {n} bytes", "length"
        )
    magic, major, minor, kind, flags, stage, reserved, attempt, sequence = _STRUCT.unpack(frame)
    if magic != MAGIC:
        raise ProtocolError(
            f"expected envelope magic 49 53 54 48 (\"ISTH\"), found {bytes(magic).hex(' ')}",
            "magic",
        )
    if major != PROTOCOL_MAJOR:
        raise VersionMismatch(
            f"expected protocol major version {PROTOCOL_MAJOR} (this side speaks "
            f"{PROTOCOL_VERSION}), found {major}.{minor}",
            major,
            minor,
        )
    if reserved != 0:
        raise ProtocolError(
            f"expected reserved envelope bytes 10..11 to be 0, found 0x{reserved:04x}", "reserved"
        )
    if not 1 <= kind <= 10:
        raise ProtocolError(f"expected a message kind 1..10, found {kind}", "kind")
    return Envelope(Kind(kind), stage, attempt, sequence, flags, major, minor)


def peek_version(frame: bytes | bytearray | memoryview) -> tuple[int, int, int] | None:
    """``(major, minor, kind)`` of any envelope with the right magic and at least
    8 bytes, whatever its version; ``None`` otherwise. Bytes 0..7 are frozen for
    every protocol version so that a peer can always tell who it is talking to."""
    if len(frame) < 8 or bytes(frame[:4]) != MAGIC:
        return None
    b = bytes(frame[4:7])
    return b[0], b[1], b[2]


def salvage_sequence(frame: bytes | bytearray | memoryview) -> tuple[int, int]:
    """``(attempt, sequence)`` of an envelope that failed validation, when the
    envelope is readable (24 bytes, right magic, same major); else ``(0, 0)``."""
    if len(frame) != ENVELOPE_SIZE:
        return 0, 0
    magic, major, _minor, _kind, _flags, _stage, _res, attempt, sequence = _STRUCT.unpack(frame)
    if magic != MAGIC or major != PROTOCOL_MAJOR:
        return 0, 0
    return attempt, sequence


def check_frames(kind: Kind, count: int, sender: str) -> None:
    """Checks the number of frames (envelope included) of a message of ``kind``
    sent by ``sender`` ("host" or "worker")."""
    table = _HOST_FRAMES if sender == "host" else _WORKER_FRAMES
    bounds = table.get(kind)
    if bounds is None:
        allowed = ", ".join(k.name for k in sorted(table))
        raise ProtocolError(
            f"expected a {sender} message ({allowed}), found {kind.name}", "direction"
        )
    low, high = bounds
    if count < low or (high is not None and count > high):
        want = str(low) if low == high else (f"at least {low}" if high is None else f"{low}..{high}")
        raise ProtocolError(
            f"expected {want} frames in a {kind.name} message from the {sender}, found {count}",
            "frames",
        )


def dumps_json(doc: Any) -> bytes:
    """The canonical JSON encoding used on the wire and in the golden vectors:
    UTF-8, keys sorted, no whitespace, non-ASCII and "/" not escaped."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def loads_json(frame: bytes | bytearray | memoryview, where: str) -> dict[str, Any]:
    """Decodes a JSON object frame; ``where`` names it in errors ("frame 1 of OPEN")."""
    try:
        doc = json.loads(bytes(frame))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"expected a UTF-8 JSON object in {where}, found invalid JSON ({exc})", "json") from None
    if not isinstance(doc, dict):
        raise ProtocolError(
            f"expected a JSON object in {where}, found {type(doc).__name__}", "json"
        )
    return doc


# -- JSON documents -----------------------------------------------------------------------


def _field(doc: dict[str, Any], key: str, typ: type | tuple[type, ...], what: str, default: Any = ...) -> Any:
    if key not in doc:
        if default is ...:
            raise ProtocolError(f"expected field {key!r} in the {what} document, found none", "field")
        return default
    value = doc[key]
    bad_bool = isinstance(value, bool) and typ in (int, (int, type(None)))
    if bad_bool or not isinstance(value, typ):
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ProtocolError(
            f"expected field {key!r} of the {what} document to be {names}, found {json.dumps(value)[:80]}",
            "field",
        )
    return value


def _positive(value: int, key: str, what: str) -> int:
    if value <= 0:
        raise ProtocolError(f"expected field {key!r} of the {what} document to be > 0, found {value}", "field")
    return value


def parse_token(value: str) -> str:
    """Checks a per-run token: 32 lowercase or uppercase hex digits."""
    if len(value) != 32 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ProtocolError(f"expected a token of 32 hex digits, found {len(value)} characters", "field")
    return value.lower()


@dataclass(frozen=True, slots=True)
class Hello:
    """The HELLO document."""

    protocol: str
    helper: str
    pid: int
    slot: int
    token: str
    python: str
    pyarrow: str
    capabilities: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "helper": self.helper,
            "pid": self.pid,
            "slot": self.slot,
            "token": self.token,
            "python": self.python,
            "pyarrow": self.pyarrow,
            "capabilities": list(self.capabilities),
        }


def parse_hello(doc: dict[str, Any]) -> Hello:
    what = "HELLO"
    caps = _field(doc, "capabilities", list, what)
    if not all(isinstance(c, str) for c in caps):
        raise ProtocolError("expected HELLO capabilities to be strings, found another type", "field")
    return Hello(
        protocol=_field(doc, "protocol", str, what),
        helper=_field(doc, "helper", str, what),
        pid=_field(doc, "pid", int, what),
        slot=_field(doc, "slot", int, what),
        token=_field(doc, "token", str, what),
        python=_field(doc, "python", str, what),
        pyarrow=_field(doc, "pyarrow", str, what),
        capabilities=tuple(caps),
    )


@dataclass(frozen=True, slots=True)
class StageRef:
    """One entry of OPEN ``stages``: a name for messages and a UDF reference."""

    name: str
    udf: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "udf": self.udf, "options": dict(self.options)}


@dataclass(frozen=True, slots=True)
class Open:
    """The OPEN document (frame 1); the input schema travels in frame 2."""

    stages: tuple[StageRef, ...]
    heartbeat_ms: int = 1000
    missed_heartbeats: int = 5
    slot: int = 0
    workers: int = 1
    #: The shared arena offered to this worker (1.1): where it is and its size.
    shm: ShmOffer | None = None
    #: This worker's doorbells (section 18), only offered together with ``shm``.
    doorbell: DoorbellOffer | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "stages": [s.to_json() for s in self.stages],
            "heartbeat_ms": self.heartbeat_ms,
            "missed_heartbeats": self.missed_heartbeats,
            "slot": self.slot,
            "workers": self.workers,
        }
        if self.shm is not None:
            doc["shm"] = {"path": self.shm.path, "size": self.shm.size}
        if self.doorbell is not None:
            d = self.doorbell
            doc["doorbell"] = {
                "request_fifo": d.request_fifo,
                "reply_fifo": d.reply_fifo,
                "request_offset": d.request_offset,
                "reply_offset": d.reply_offset,
                "size": d.size,
                "slots": d.slots,
            }
        return doc


@dataclass(frozen=True, slots=True)
class ShmOffer:
    """OPEN ``shm``: a file the worker maps to exchange batches through shared memory."""

    path: str
    size: int


@dataclass(frozen=True, slots=True)
class DoorbellOffer:
    """OPEN ``doorbell`` (section 18): two FIFOs that carry one byte per message (the
    mailbox's slot + 1), and ``slots`` mailboxes of ``size`` bytes each in the arena from
    ``request_offset`` for requests, as many from ``reply_offset`` for their replies."""

    request_fifo: str
    reply_fifo: str
    request_offset: int
    reply_offset: int
    size: int
    slots: int = 1


def parse_open(doc: dict[str, Any]) -> Open:
    what = "OPEN"
    raw = _field(doc, "stages", list, what)
    if not raw:
        raise ProtocolError("expected at least one stage in OPEN, found 0", "field")
    if len(raw) >= NO_STAGE:
        raise ProtocolError(f"expected fewer than {NO_STAGE} stages in OPEN, found {len(raw)}", "field")
    stages = []
    for i, s in enumerate(raw):
        if not isinstance(s, dict):
            raise ProtocolError(f"expected OPEN stages[{i}] to be an object, found {type(s).__name__}", "field")
        w = f"OPEN stages[{i}]"
        stages.append(
            StageRef(
                name=_field(s, "name", str, w),
                udf=_field(s, "udf", str, w),
                options=_field(s, "options", dict, w, {}),
            )
        )
    return Open(
        stages=tuple(stages),
        heartbeat_ms=_positive(_field(doc, "heartbeat_ms", int, what, 1000), "heartbeat_ms", what),
        missed_heartbeats=_positive(
            _field(doc, "missed_heartbeats", int, what, 5), "missed_heartbeats", what
        ),
        slot=_field(doc, "slot", int, what, 0),
        workers=_field(doc, "workers", int, what, 1),
        shm=_parse_shm(doc.get("shm")),
        doorbell=_parse_doorbell(doc.get("doorbell")),
    )


#: A ring byte names a mailbox as slot + 1 in one byte.
MAX_DOORBELL_SLOTS = 255


def _parse_doorbell(raw: Any) -> DoorbellOffer | None:
    if raw is None:
        return None
    what = "OPEN doorbell"
    if not isinstance(raw, dict):
        raise ProtocolError(f"expected {what} to be an object, found {type(raw).__name__}", "field")
    offer = DoorbellOffer(
        request_fifo=_field(raw, "request_fifo", str, what),
        reply_fifo=_field(raw, "reply_fifo", str, what),
        request_offset=_field(raw, "request_offset", int, what),
        reply_offset=_field(raw, "reply_offset", int, what),
        size=_positive(_field(raw, "size", int, what), "size", what),
        slots=_field(raw, "slots", int, what, 1),
    )
    if not 1 <= offer.slots <= MAX_DOORBELL_SLOTS:
        raise ProtocolError(f"expected {what} slots from 1 to {MAX_DOORBELL_SLOTS}, found {offer.slots}", "field")
    if offer.size % 8:
        raise ProtocolError(f"expected {what} size to be a multiple of 8, found {offer.size}", "field")
    for key in ("request_offset", "reply_offset"):
        value = getattr(offer, key)
        if value < 0 or value % 8:
            raise ProtocolError(f"expected {what} {key} to be a non-negative multiple of 8, found {value}", "field")
    return offer


def _parse_shm(raw: Any) -> ShmOffer | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ProtocolError(f"expected OPEN shm to be an object, found {type(raw).__name__}", "field")
    path = _field(raw, "path", str, "OPEN shm")
    size = _positive(_field(raw, "size", int, "OPEN shm"), "size", "OPEN shm")
    return ShmOffer(path, size)


@dataclass(frozen=True, slots=True)
class StageInfo:
    """One entry of READY ``stages``."""

    name: str
    kind: str
    input: str
    has_schema: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "input": self.input, "has_schema": self.has_schema}


@dataclass(frozen=True, slots=True)
class Ready:
    """The READY document; declared schemas follow as frames 2.. in stage order."""

    stages: tuple[StageInfo, ...]
    #: Answer to an OPEN that offered an arena (1.1): mapped or not, and why not.
    shm: bool | None = None
    shm_error: str | None = None
    #: Answer to an OPEN that offered doorbells (section 18): opened or not, and why not.
    doorbell: bool | None = None
    doorbell_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"stages": [s.to_json() for s in self.stages]}
        if self.shm is not None:
            doc["shm"] = self.shm
        if self.shm_error:
            doc["shm_error"] = self.shm_error
        if self.doorbell is not None:
            doc["doorbell"] = self.doorbell
        if self.doorbell_error:
            doc["doorbell_error"] = self.doorbell_error
        return doc

    @property
    def schema_frames(self) -> int:
        """How many schema frames follow the document."""
        return sum(1 for s in self.stages if s.has_schema)


def parse_ready(doc: dict[str, Any]) -> Ready:
    raw = _field(doc, "stages", list, "READY")
    stages = []
    for i, s in enumerate(raw):
        if not isinstance(s, dict):
            raise ProtocolError(f"expected READY stages[{i}] to be an object, found {type(s).__name__}", "field")
        w = f"READY stages[{i}]"
        kind = _field(s, "kind", str, w)
        if kind not in STAGE_KINDS:
            raise ProtocolError(f"expected {w} kind to be one of {', '.join(STAGE_KINDS)}, found {kind!r}", "field")
        fmt = _field(s, "input", str, w)
        if fmt not in INPUT_FORMATS:
            raise ProtocolError(f"expected {w} input to be one of {', '.join(INPUT_FORMATS)}, found {fmt!r}", "field")
        stages.append(StageInfo(_field(s, "name", str, w), kind, fmt, _field(s, "has_schema", bool, w)))
    return Ready(
        tuple(stages),
        _field(doc, "shm", (bool, type(None)), "READY", None),
        _field(doc, "shm_error", (str, type(None)), "READY", None),
        _field(doc, "doorbell", (bool, type(None)), "READY", None),
        _field(doc, "doorbell_error", (str, type(None)), "READY", None),
    )


def decode_batch_regions(frame: Any, arena_size: int) -> tuple[int, int, int, int]:
    """Frame 1 of a BATCH with the SHM flag: ``(input offset, input length, result
    offset, result capacity)``, each region checked to lie inside the arena."""
    n = len(frame)
    if n != BATCH_REGIONS.size:
        raise ProtocolError(f"expected a {BATCH_REGIONS.size}-byte region descriptor in frame 1 of BATCH, found {n} bytes", "length")
    off, length, roff, cap = BATCH_REGIONS.unpack(frame)
    if length < 8 or off + length > arena_size:
        raise ProtocolError(
            f"expected the input region inside the {arena_size}-byte arena, found {length} bytes at offset {off}", "field"
        )
    if roff + cap > arena_size:
        raise ProtocolError(
            f"expected the result region inside the {arena_size}-byte arena, found {cap} bytes at offset {roff}", "field"
        )
    if off % 8 or roff % 8:
        raise ProtocolError(f"expected regions aligned to 8 bytes, found offsets {off} and {roff}", "field")
    return off, length, roff, cap


@dataclass(frozen=True)
class FileBatch:
    """Frame 1 of a BATCH with the SHM and FILE flags (section 19)."""

    path: str
    device: int
    inode: int
    size: int
    schema_offset: int
    schema_length: int
    offset: int
    length: int
    row_offset: int
    rows: int
    result_offset: int
    result_capacity: int


def decode_file_batch(frame: Any, arena_size: int) -> FileBatch:
    """Frame 1 of a BATCH with the FILE flag, checked: both messages inside the file's
    stated size, the result region inside the arena, a path of UTF-8 text."""
    data = bytes(frame)
    n = len(data)
    if not FILE_BATCH.size < n <= FILE_BATCH.size + MAX_FILE_PATH:
        raise ProtocolError(
            f"expected a {FILE_BATCH.size}-byte file descriptor and a path of 1 to {MAX_FILE_PATH} bytes in frame 1 of BATCH, found {n} bytes",
            "length",
        )
    dev, ino, size, s_off, s_len, off, length, row_off, rows, roff, cap = FILE_BATCH.unpack_from(data)
    try:
        path = data[FILE_BATCH.size :].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("expected the input file's path in UTF-8 after the file descriptor, found other bytes", "field") from None
    for what, o, ln in (("schema message", s_off, s_len), ("record batch message", off, length)):
        if ln < 8 or o % 8 or o + ln > size:
            raise ProtocolError(
                f"expected the {what} at an 8-byte aligned offset inside the {size}-byte input file, found {ln} bytes at offset {o}",
                "field",
            )
    if roff + cap > arena_size or roff % 8:
        raise ProtocolError(
            f"expected the result region 8-byte aligned inside the {arena_size}-byte arena, found {cap} bytes at offset {roff}", "field"
        )
    return FileBatch(path, dev, ino, size, s_off, s_len, off, length, row_off, rows, roff, cap)


#: A mailbox message (section 18.2) holds 1 to this many frames.
MAILBOX_MAX_FRAMES: Final = 64
_MAILBOX_HEAD: Final = struct.Struct("<II")
_MAILBOX_LENGTH: Final = struct.Struct("<Q")


def encode_mailbox(frames: list[Any], mailbox: memoryview) -> bool:
    """Writes one message into a mailbox (section 18.2): the frame count (u32) and a zero u32,
    then per frame its length (u64) and its bytes padded with zeros to a multiple of 8.
    False, with nothing written, when the frames do not fit."""
    views = [memoryview(f).cast("B") for f in frames]
    if not views or len(views) > MAILBOX_MAX_FRAMES:
        return False
    total = 8 + sum(8 + ((len(v) + 7) & ~7) for v in views)
    if total > len(mailbox):
        return False
    _MAILBOX_HEAD.pack_into(mailbox, 0, len(views), 0)
    at = 8
    for v in views:
        n = len(v)
        _MAILBOX_LENGTH.pack_into(mailbox, at, n)
        at += 8
        mailbox[at : at + n] = v
        pad = ((n + 7) & ~7) - n
        if pad:
            mailbox[at + n : at + n + pad] = b"\0" * pad
        at += n + pad
    return True


def decode_mailbox(mailbox: memoryview) -> list[bytes]:
    """The frames of the message in a mailbox, copied out; every length is read once and
    checked against the mailbox before anything is copied."""
    size = len(mailbox)
    if size < 8:
        raise ProtocolError(f"expected a mailbox of at least 8 bytes, found {size}", "length")
    count, _ = _MAILBOX_HEAD.unpack_from(mailbox, 0)
    if not 1 <= count <= MAILBOX_MAX_FRAMES:
        raise ProtocolError(f"expected 1 to {MAILBOX_MAX_FRAMES} frames in the mailbox message, found {count}", "frames")
    frames = []
    at = 8
    for i in range(count):
        if at + 8 > size:
            raise ProtocolError(f"expected the length of frame {i} inside the {size}-byte mailbox, found it past the end", "length")
        (n,) = _MAILBOX_LENGTH.unpack_from(mailbox, at)
        at += 8
        if n > size - at:
            raise ProtocolError(f"expected frame {i} inside the {size}-byte mailbox, found {n} bytes at offset {at}", "length")
        frames.append(bytes(mailbox[at : at + n]))
        at += (n + 7) & ~7
    return frames


def encode_release(offsets: list[int]) -> bytes:
    """Frame 1 of RELEASE: the offsets of the input regions given back."""
    return struct.pack(f"<{len(offsets)}Q", *offsets)


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """The ERROR document."""

    kind: str
    exc_type: str
    message: str
    traceback: str = ""
    stage: str | None = None
    row_start: int | None = None
    row_end: int | None = None
    retryable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "exc_type": self.exc_type,
            "message": self.message,
            "traceback": self.traceback,
            "stage": self.stage,
            "row_start": self.row_start,
            "row_end": self.row_end,
            "retryable": self.retryable,
        }


def parse_error(doc: dict[str, Any]) -> ErrorReport:
    what = "ERROR"
    kind = _field(doc, "kind", str, what)
    if kind not in ERROR_KINDS:
        raise ProtocolError(f"expected ERROR kind to be one of {', '.join(ERROR_KINDS)}, found {kind!r}", "field")
    return ErrorReport(
        kind=kind,
        exc_type=_field(doc, "exc_type", str, what),
        message=_field(doc, "message", str, what),
        traceback=_field(doc, "traceback", str, what, ""),
        stage=_field(doc, "stage", (str, type(None)), what, None),
        row_start=_field(doc, "row_start", (int, type(None)), what, None),
        row_end=_field(doc, "row_end", (int, type(None)), what, None),
        retryable=_field(doc, "retryable", bool, what, False),
    )


def truncate_utf8(text: str, limit: int = MAX_TRACEBACK_BYTES) -> str:
    """``text`` unchanged when its UTF-8 encoding fits in ``limit`` bytes; else its
    head and tail (the tail of a traceback names the raising line) joined by a
    marker line, together at most ``limit`` bytes, cut at character boundaries."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    marker = f"\n... ({len(data)} bytes, cut to {limit}) ...\n".encode()
    room = max(0, limit - len(marker))
    head = room // 4
    tail = room - head
    return (
        data[:head].decode("utf-8", "ignore")
        + marker.decode()
        + data[len(data) - tail :].decode("utf-8", "ignore")
    )


@dataclass(frozen=True, slots=True)
class RowFailure:
    """One entry of the ``failed`` list of a RESULT with the ROW_ERRORS flag:
    an input row (0-based index in the BATCH) whose presence made the chain raise."""

    row: int
    stage: str | None
    exc_type: str
    message: str
    traceback: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "stage": self.stage,
            "exc_type": self.exc_type,
            "message": self.message,
            "traceback": self.traceback,
        }


def parse_row_failures(doc: dict[str, Any], rows: int | None = None) -> list[RowFailure]:
    """The ``failed`` list of a ROW_ERRORS document: 1..MAX_ROW_FAILURES entries whose
    rows are distinct, ascending, and (when ``rows``, the BATCH row count, is given)
    below ``rows``."""
    what = "row failures"
    raw = _field(doc, "failed", list, what)
    if not raw:
        raise ProtocolError("expected at least one entry in the row failures document, found 0", "field")
    if len(raw) > MAX_ROW_FAILURES:
        raise ProtocolError(
            f"expected at most {MAX_ROW_FAILURES} entries in the row failures document, found {len(raw)}", "field"
        )
    out: list[RowFailure] = []
    previous = -1
    for i, f in enumerate(raw):
        if not isinstance(f, dict):
            raise ProtocolError(f"expected failed[{i}] to be an object, found {type(f).__name__}", "field")
        w = f"row failures failed[{i}]"
        row = _field(f, "row", int, w)
        if row <= previous:
            raise ProtocolError(
                f"expected the rows of the row failures document to be distinct and ascending, "
                f"found {row} after {previous}",
                "field",
            )
        if row < 0 or (rows is not None and row >= rows):
            bound = f"0..{rows - 1}" if rows is not None else ">= 0"
            raise ProtocolError(f"expected failed[{i}] row in {bound}, found {row}", "field")
        previous = row
        out.append(
            RowFailure(
                row=row,
                stage=_field(f, "stage", (str, type(None)), w, None),
                exc_type=_field(f, "exc_type", str, w),
                message=_field(f, "message", str, w),
                traceback=_field(f, "traceback", str, w, ""),
            )
        )
    return out


def result_payload_start(envelope: Envelope, count: int) -> int:
    """Index of the first payload frame of a RESULT of ``count`` frames (envelope
    included): 2 with the ROW_ERRORS flag (frame 1 is the failures document), else 1."""
    if envelope.flags & FLAG_ROW_ERRORS:
        if count < 3:
            raise ProtocolError(
                f"expected at least 3 frames in a RESULT with the ROW_ERRORS flag, found {count}", "frames"
            )
        return 2
    return 1


@dataclass(frozen=True, slots=True)
class HeartbeatReport:
    """The worker's HEARTBEAT document."""

    rss_bytes: int
    batches: int

    def to_json(self) -> dict[str, Any]:
        return {"rss_bytes": self.rss_bytes, "batches": self.batches}


def parse_heartbeat(doc: dict[str, Any]) -> HeartbeatReport:
    return HeartbeatReport(
        rss_bytes=_field(doc, "rss_bytes", int, "HEARTBEAT"),
        batches=_field(doc, "batches", int, "HEARTBEAT"),
    )


def parse_close(doc: dict[str, Any]) -> str:
    """The ``reason`` of a CLOSE document ("" when absent)."""
    reason = doc.get("reason", "")
    return reason if isinstance(reason, str) else json.dumps(reason)


def version_mismatch_message(
    host_version: str,
    worker_version: str,
    *,
    python: str = "python",
    helper: str | None = None,
    requirement: str | None = None,
) -> str:
    """The rejection text both sides use when major versions differ: it names both
    versions and the command that fixes it. ``requirement`` is the pip requirement
    of the helper that matches the host (e.g. ``"isthmus==0.1.0"``) when known;
    otherwise the fix is an upgrade when the worker is older, a matching
    install when it is newer."""
    try:
        host_major = int(host_version.split(".", 1)[0])
        worker_major = int(worker_version.split(".", 1)[0])
    except ValueError:
        host_major = worker_major = 0
    helper_part = f" (isthmus {helper})" if helper else ""
    if requirement:
        fix = f"{python} -m pip install '{requirement}'"
    elif worker_major < host_major:
        fix = f"{python} -m pip install --upgrade isthmus"
    else:
        fix = f"{python} -m pip install 'isthmus<{helper or '0'}' (a release that speaks {host_major}.x)"
    return (
        f"protocol version mismatch: expected a worker helper that speaks protocol "
        f"{host_major}.x (the host speaks {host_version}), found one that speaks "
        f"{worker_version}{helper_part}; fix: {fix}"
    )
