"""A worker that cannot read the host's input file (PROTOCOL.md section 19), as a worker in
another mount namespace or under another user would find it: every FILE batch is refused
with the worker's own error. The host must say why once, resend the refused batches and copy
every later batch into the arena; the run succeeds."""
import pyarrow as pa
import pyarrow.compute as pc

import isthmus.runtime as R
from isthmus.errors import ProtocolError


def _refuse(self, d):
    raise ProtocolError(f"cannot open the input file {d.path}: Permission denied", "payload")


R.InputFiles.read = _refuse


def linear(batch: pa.RecordBatch):
    return {"y": pc.add(pc.multiply(batch.column("x"), 2), 1)}
