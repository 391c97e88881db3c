"""Workers that misuse the shared arena on purpose (any UDF module can patch the helper
this way): the host must end such a worker or the run with a clear message, never crash."""
import os
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import isthmus.protocol as P
import isthmus.runtime as R
from once import first_time

_write_stream = R.SharedArena.write_stream
_send = R.Worker._send
_last_region = {}


def _recording_write(self, offset, capacity, schema, batches):
    _last_region["region"] = (offset, capacity)
    return _write_stream(self, offset, capacity, schema, batches)


def _shm_result(frames):
    env = P.decode_envelope(bytes(frames[0]))
    return env if env.kind == P.Kind.RESULT and env.flags & P.FLAG_SHM else None


def _double_result(self, frames):
    """Two SHM RESULTs for one batch: an undecodable 8-byte stream, then the whole region."""
    env = _shm_result(frames)
    if env is None:
        return _send(self, frames)
    offset, capacity = _last_region["region"]
    self._arena._view[offset:offset + 8] = b"garbage!"
    _send(self, [frames[0], P.RESULT_REGION.pack(offset, 8)])
    _send(self, [frames[0], P.RESULT_REGION.pack(offset, capacity)])


def _rewrite_later(self, frames):
    """A valid RESULT in the arena, then the region overwritten with 0xff 200 ms later, while
    the host still holds that result (batch 0 sleeps, so batch 1 waits in the reorder buffer)."""
    _send(self, frames)
    env = _shm_result(frames)
    if env is not None and env.sequence == 1:
        view, (offset, capacity) = self._arena._view, _last_region["region"]

        def scribble():
            time.sleep(0.2)
            np.frombuffer(view[offset:offset + capacity], dtype=np.uint8)[:] = 0xFF
            with open(os.environ["ARENA_EVIL_LOG"], "a") as f:
                print("scribbled", offset, capacity, file=f)

        threading.Thread(target=scribble, daemon=True).start()


def _bogus_release_once(self, frames):
    """Before its first answer, the first worker of the run gives back a region it was never
    lent (the flag file makes the restarted worker behave). RELEASE goes through the socket, as
    section 18.3 says, even while the answer is bound for a doorbell's reply mailbox."""
    flag = os.environ["ARENA_EVIL_FLAG"]
    if _shm_result(frames) is not None and first_time(flag):
        self.socket.send_multipart([P.encode_envelope(P.Kind.RELEASE), P.encode_release([64 * 12345])])
    _send(self, frames)


def _bad_descriptor_once(self, frames):
    """Once in the run: a RESULT whose arena descriptor does not match what the host offered
    ("wrong-offset": another offset; "unasked": for a batch sent as frames, with no region)."""
    flag = os.environ["ARENA_EVIL_FLAG"]
    env = P.decode_envelope(bytes(frames[0]))
    if env.kind == P.Kind.RESULT and not os.path.exists(flag):
        shm = _shm_result(frames) is not None
        mode = os.environ["ARENA_EVIL"]
        if ((mode == "wrong-offset" and shm) or (mode == "unasked" and not shm)) and first_time(flag):
            bad = P.encode_envelope(P.Kind.RESULT, stage=env.stage, attempt=env.attempt, sequence=env.sequence,
                                    flags=P.FLAG_SHM)
            offset = _last_region["region"][0] + 64 if shm else 0
            return _send(self, [bad, P.RESULT_REGION.pack(offset, 8)])
    _send(self, frames)


if os.environ.get("ARENA_EVIL") == "release":
    R.Worker._send = _bogus_release_once
elif os.environ.get("ARENA_EVIL") in ("wrong-offset", "unasked"):
    R.SharedArena.write_stream = _recording_write
    R.Worker._send = _bad_descriptor_once
elif os.environ.get("ARENA_EVIL") in ("double", "rewrite"):
    R.SharedArena.write_stream = _recording_write
    R.Worker._send = _double_result if os.environ["ARENA_EVIL"] == "double" else _rewrite_later


def strings(batch: pa.RecordBatch):
    if batch.column("id")[0].as_py() == 0:
        time.sleep(1.0)
    return {"id": batch.column("id"), "s": pc.cast(batch.column("id"), pa.string())}
