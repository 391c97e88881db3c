"""Reports which keys each worker slot saw, to check hash-partition affinity."""
import os

import pyarrow as pa


def slot_of(batch: pa.RecordBatch):
    slot = int(os.environ.get("ISTHMUS_SLOT", "-1"))
    return {"key": batch.column("key"), "slot": pa.array([slot] * batch.num_rows, pa.int64())}
