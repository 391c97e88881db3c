"""A worker that breaks the protocol on purpose (mode from ISTHMUS_FAKE_MODE)."""
import json
import os
import struct
import sys
import time

import zmq


def envelope(kind, major=1, minor=0, stage=0xFFFF, attempt=0, seq=0, flags=0):
    return b"ISTH" + struct.pack("<BBBBHHIQ", major, minor, kind, flags, stage, 0, attempt, seq)


def main():
    mode = os.environ.get("ISTHMUS_FAKE_MODE", "version")
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(os.environ["ISTHMUS_ENDPOINT"])
    hello = {"protocol": "2.0" if mode == "version" else "1.0", "helper": "9.9.9", "pid": os.getpid(),
             "slot": int(os.environ["ISTHMUS_SLOT"]), "token": os.environ["ISTHMUS_TOKEN"], "python": "3", "pyarrow": "0",
             "capabilities": []}
    if mode == "version":
        s.send_multipart([envelope(1, major=2), json.dumps(hello).encode()])
    elif mode == "garbage-after-open":
        s.send_multipart([envelope(1), json.dumps(hello).encode()])
        s.recv_multipart()
        s.send_multipart([b"not an envelope", b"junk"])
    time.sleep(30)


if __name__ == "__main__":
    main()
