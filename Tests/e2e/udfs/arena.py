"""UDFs that exercise the shared-memory data plane from the user's side."""
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEPT = []


def keep_and_check(batch: pa.RecordBatch):
    """Keeps every input batch (zero-copy: their buffers point into the host's arena)
    and checks on every call that all the batches kept so far still hold their values:
    the host must not reuse a region the worker still references."""
    KEPT.append((batch, float(pc.sum(batch.column("x")).as_py()), batch.column("id")[0].as_py()))
    intact = all(abs(float(pc.sum(b.column("x")).as_py()) - s) < 1e-9 and b.column("id")[0].as_py() == first
                 for b, s, first in KEPT)
    return {"id": batch.column("id"), "intact": pa.array([intact] * batch.num_rows)}


def explode(batch: pa.RecordBatch):
    """40 output rows per input row: results far larger than their input."""
    ids = np.repeat(batch.column("id").to_numpy(), 40)
    return {"id": ids, "k": np.tile(np.arange(40, dtype=np.int64), batch.num_rows)}
