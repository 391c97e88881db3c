"""A worker that finds the host's input file cut short under the run (PROTOCOL.md section 19):
on the first FILE batch cut from the file's last message it truncates the file in the middle
of that message, as another program writing the file would, and refuses the batch. The host
must not copy the batch from its own mapping (the pages are gone) but fail the run saying the
file shrank.

Only the last message: the host has then parsed every message header it will read (the
test's file has no end-of-stream marker after it), so its reader cannot touch the cut pages.
Truncating on an earlier batch raced with the reader, which could still be parsing the
following messages and would die of SIGBUS."""
import os

import pyarrow as pa
import pyarrow.compute as pc

import isthmus.runtime as R
from isthmus.errors import ProtocolError


_read = R.InputFiles.read


def _shrink(self, d):
    if d.offset + d.length < d.size:
        return _read(self, d)
    os.truncate(d.path, d.offset + 16)
    raise ProtocolError(f"expected the input file {d.path} to be at least {d.offset + d.length} bytes long, found {d.offset + 16}", "payload")


R.InputFiles.read = _shrink


def linear(batch: pa.RecordBatch):
    return {"y": pc.add(pc.multiply(batch.column("x"), 2), 1)}
