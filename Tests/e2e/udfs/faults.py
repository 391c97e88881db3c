"""UDFs that fail in controlled ways. A marker file (from ISTHMUS_TEST_MARKER) makes a fault
happen once: the first worker to see the trigger batch fails, the retry succeeds."""
import ctypes
import os
import signal
import time

import pyarrow as pa
import pyarrow.compute as pc

from once import first_time

TRIGGER = int(os.environ.get("ISTHMUS_TEST_TRIGGER", "5000"))


def _first_time() -> bool:
    return first_time(os.environ["ISTHMUS_TEST_MARKER"])


def _hit(batch) -> bool:
    ids = batch.column("id")
    return pc.any(pc.equal(ids, TRIGGER)).as_py() and _first_time()


def _linear(batch):
    return pa.RecordBatch.from_arrays([batch.column("id"), pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)],
                                      names=["id", "y"])


def kill_once(batch):
    if _hit(batch):
        os.kill(os.getpid(), signal.SIGKILL)
    return _linear(batch)


def segfault_once(batch):
    if _hit(batch):
        ctypes.string_at(0)
    return _linear(batch)


def exit_once(batch):
    if _hit(batch):
        os._exit(7)
    return _linear(batch)


def hang_once(batch):
    if _hit(batch):
        time.sleep(3600)
    return _linear(batch)


def always_segfault(batch):
    if pc.any(pc.equal(batch.column("id"), TRIGGER)).as_py():
        ctypes.string_at(0)
    return _linear(batch)
