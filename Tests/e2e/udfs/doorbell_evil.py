"""A worker that misuses its doorbells once (PROTOCOL.md section 18), selected by
DOORBELL_EVIL; the flag file DOORBELL_EVIL_FLAG makes its successor behave. The host must
replace it and lose or double nothing.

- "ring": its first answer goes into the right reply mailbox but is rung as mailbox 199.
- "exit": it dies (exit code 3) in its third batch, once every mailbox is full (the other
  seven rung: it waits for their rings rather than guessing how long the host takes)."""
import os
import time

import pyarrow as pa
import pyarrow.compute as pc

import isthmus.protocol as P
import isthmus.runtime as R
from once import first_time

_reply = R.Doorbell.reply
_init = R.Doorbell.__init__
_seen = [0]
_bells: list = []


def _recording_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    _bells.append(self)


def _wait_for_rings(n: int) -> None:
    """Until n request mailboxes are rung and not taken (30 s at most)."""
    bell = _bells[-1]
    deadline = time.monotonic() + 30
    while len(bell.pending) < n and time.monotonic() < deadline:
        try:
            bell.pending.extend(b - 1 for b in os.read(bell.request_fd, 256))
        except BlockingIOError:
            time.sleep(0.005)


def _first_time() -> bool:
    return first_time(os.environ["DOORBELL_EVIL_FLAG"])


def _wrong_ring(self, frames, slot):
    if not _first_time():
        return _reply(self, frames, slot)
    P.encode_mailbox(frames, self.reply_boxes[slot])
    return os.write(self.reply_fd, bytes((200,))) == 1


if os.environ.get("DOORBELL_EVIL") == "ring":
    R.Doorbell.reply = _wrong_ring
elif os.environ.get("DOORBELL_EVIL") == "exit":
    R.Doorbell.__init__ = _recording_init


def linear(batch: pa.RecordBatch):
    _seen[0] += 1
    if os.environ.get("DOORBELL_EVIL") == "exit" and _seen[0] == 3 and _first_time():
        _wait_for_rings(7)  # the host fills the other seven mailboxes
        os._exit(3)
    return {"y": pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)}
