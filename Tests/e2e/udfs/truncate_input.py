"""Cuts the host's input file (TRUNCATE_INPUT) to TRUNCATE_AT bytes on the first batch, as another
program rewriting the file would, then answers normally. The host, which has read only a
window of batches ahead (backpressure), later touches pages past the file's new end."""
import os

import pyarrow as pa
import pyarrow.compute as pc

from once import first_time


def linear(batch: pa.RecordBatch):
    path = os.environ["TRUNCATE_INPUT"]
    if batch.num_rows and first_time(path + ".cut"):
        os.truncate(path, int(os.environ["TRUNCATE_AT"]))
    return {"y": pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)}
