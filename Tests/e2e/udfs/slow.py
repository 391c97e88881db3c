"""Slow and memory-hungry UDFs for the fault-injection tests."""
import os
import time

import pyarrow as pa
import pyarrow.compute as pc

DELAY = float(os.environ.get("ISTHMUS_TEST_DELAY", "0.05"))
#: When set, every worker appends its pid to this file as it starts a batch with rows: a test
#: that signals the host or a worker mid-run waits for it instead of guessing how long
#: startup takes on a loaded machine.
PROGRESS = os.environ.get("ISTHMUS_TEST_PROGRESS")


def slow_linear(batch: pa.RecordBatch):
    if PROGRESS and batch.num_rows:
        with open(PROGRESS, "a") as f:
            f.write(f"{os.getpid()}\n")
    time.sleep(DELAY)
    return pa.RecordBatch.from_arrays([batch.column("id"), pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)],
                                      names=["id", "y"])


def hog(batch: pa.RecordBatch):
    blocks = []
    for _ in range(64):
        blocks.append(bytearray(64 << 20))  # 4 GiB in total if nothing stops it
    return {"n": pa.array([len(blocks)] * batch.num_rows)}


def raises_on_multiples_of_97(batch: pa.RecordBatch):
    ids = batch.column("id").to_pylist()
    for i in ids:
        if i % 97 == 0:
            raise ValueError(f"id {i} is a multiple of 97")
    return {"id": batch.column("id"), "y": pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)}
