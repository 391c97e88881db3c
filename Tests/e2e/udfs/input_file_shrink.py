"""A worker that finds the host's input file cut short under the run (PROTOCOL.md section 19):
on its first FILE batch it truncates the file in the middle of that batch's message, as
another program writing the file would, and refuses the batch. The host must not copy the
batch from its own mapping (the pages are gone) but fail the run saying the file shrank."""
import os

import pyarrow as pa
import pyarrow.compute as pc

import isthmus.runtime as R
from isthmus.errors import ProtocolError


def _shrink(self, d):
    os.truncate(d.path, d.offset + 16)
    raise ProtocolError(f"expected the input file {d.path} to be at least {d.offset + d.length} bytes long, found {d.offset + 16}", "payload")


R.InputFiles.read = _shrink


def linear(batch: pa.RecordBatch):
    return {"y": pc.add(pc.multiply(batch.column("x"), 2), 1)}
