"""A worker that misuses its doorbells once (PROTOCOL.md section 18), selected by
DOORBELL_EVIL; the flag file DOORBELL_EVIL_FLAG makes its successor behave. The host must
replace it and lose or double nothing.

- "ring": its first answer goes into the right reply mailbox but is rung as mailbox 199.
- "exit": it dies (exit code 3) in its third batch, with every mailbox full."""
import os
import time

import pyarrow as pa
import pyarrow.compute as pc

import isthmus.protocol as P
import isthmus.runtime as R
from once import first_time

_reply = R.Doorbell.reply
_seen = [0]


def _first_time() -> bool:
    return first_time(os.environ["DOORBELL_EVIL_FLAG"])


def _wrong_ring(self, frames, slot):
    if not _first_time():
        return _reply(self, frames, slot)
    P.encode_mailbox(frames, self.reply_boxes[slot])
    return os.write(self.reply_fd, bytes((200,))) == 1


if os.environ.get("DOORBELL_EVIL") == "ring":
    R.Doorbell.reply = _wrong_ring


def linear(batch: pa.RecordBatch):
    _seen[0] += 1
    if os.environ.get("DOORBELL_EVIL") == "exit" and _seen[0] == 3 and _first_time():
        time.sleep(0.3)  # meanwhile the host fills every mailbox
        os._exit(3)
    return {"y": pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)}
