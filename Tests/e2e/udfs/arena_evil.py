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

_send_result = R.Worker._send_result


def _double_result(self, env, schema, batches, region, failed=None):
    """Two SHM RESULTs for one batch: an undecodable 8-byte stream, then the whole region."""
    if region is None or self._arena is None:
        return _send_result(self, env, schema, batches, region, failed)
    offset, capacity = region
    self._arena._view[offset:offset + 8] = b"garbage!"
    out = P.encode_envelope(P.Kind.RESULT, stage=0, attempt=env.attempt, sequence=env.sequence, flags=P.FLAG_SHM)
    self._send([out, P.RESULT_REGION.pack(offset, 8)])
    self._send([out, P.RESULT_REGION.pack(offset, capacity)])


def _rewrite_later(self, env, schema, batches, region, failed=None):
    """A valid RESULT in the arena, then the region overwritten with 0xff 200 ms later, while
    the host still holds that result (batch 0 sleeps, so batch 1 waits in the reorder buffer)."""
    _send_result(self, env, schema, batches, region, failed)
    if region is not None and env.sequence == 1:
        view, (offset, capacity) = self._arena._view, region

        def scribble():
            time.sleep(0.2)
            np.frombuffer(view[offset:offset + capacity], dtype=np.uint8)[:] = 0xFF

        threading.Thread(target=scribble, daemon=True).start()


if os.environ.get("ARENA_EVIL") == "double":
    R.Worker._send_result = _double_result
elif os.environ.get("ARENA_EVIL") == "rewrite":
    R.Worker._send_result = _rewrite_later


def strings(batch: pa.RecordBatch):
    if batch.column("id")[0].as_py() == 0:
        time.sleep(1.0)
    return {"id": batch.column("id"), "s": pc.cast(batch.column("id"), pa.string())}
