"""Fault injection: every failure visible, nothing lost or duplicated."""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
import zmq

from harness import isthmus_bin, python_bin, udf

HERE = Path(__file__).resolve().parent


def write_w1(path, n, chunk=1000):
    rng = np.random.default_rng(42)
    t = pa.table({"id": pa.array(np.arange(n, dtype=np.int64)), "x": pa.array(rng.uniform(-1, 1, n))})
    with ipc.new_stream(str(path), t.schema) as w:
        for b in t.to_batches(max_chunksize=chunk):
            w.write_batch(b)
    return t


def start(args, tmp_path, env=None):
    e = dict(os.environ)
    e.setdefault("ISTHMUS_PYTHON", python_bin())
    e["TMPDIR"] = str(tmp_path)
    if env:
        e.update(env)
    return subprocess.Popen([isthmus_bin(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)


def children(pid: int) -> list[int]:
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(Path(stat).parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cmdline(pid: int) -> str:
    """The command line of `pid`; empty once it has been reaped."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def wait_for_progress(progress: Path, host: subprocess.Popen, timeout=60.0) -> list[int]:
    """The pids of the workers that started a batch (udfs/slow.py with ISTHMUS_TEST_PROGRESS),
    once there is one: workers may take seconds to become ready on a loaded machine."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if progress.exists():
            pids = [int(line) for line in progress.read_text().split()]
            if pids:
                return pids
        assert host.poll() is None, f"the host exited with {host.returncode} before any batch started"
        time.sleep(0.02)
    raise AssertionError(f"no worker started a batch within {timeout} s")


def wait_for_workers(host: subprocess.Popen, n: int, timeout=30.0) -> list[int]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        kids = [k for k in children(host.pid) if "isthmus.worker" in cmdline(k)]
        if len(kids) >= n:
            return kids
        time.sleep(0.05)
    raise AssertionError(f"expected {n} workers under pid {host.pid}")


def fake_python(tmp_path, mode):
    script = tmp_path / "fake-python"
    script.write_text(f"#!/bin/sh\nISTHMUS_FAKE_MODE={mode} exec {python_bin()} {HERE / 'fake_worker.py'} \"$@\"\n")
    script.chmod(0o755)
    return str(script)


def start_slow_run(tmp_path: Path, workers: int, batch_rows: int, delay: float, chunk: int = 1000) -> tuple[subprocess.Popen, Path]:
    """A run of udfs/slow.py over 200,000 W1 rows (input messages of `chunk` rows), once a
    worker has started a batch; returns the host and its output path."""
    src = tmp_path / "in.arrows"
    write_w1(src, 200_000, chunk=chunk)
    out = tmp_path / "out.arrow"
    p = start(["run", "--input", str(src), "--output", str(out), "--udf", f"{udf('slow.py')}:slow_linear",
               "--workers", str(workers), "--batch-rows", str(batch_rows)], tmp_path,
              env={"ISTHMUS_TEST_DELAY": str(delay), "ISTHMUS_TEST_PROGRESS": str(tmp_path / "progress")})
    wait_for_progress(tmp_path / "progress", p)
    return p, out


def interrupted_prefix(host: subprocess.Popen, out: Path, code: int, timeout: float) -> int:
    """After a first signal: the exit code, an output holding a prefix of the input's ids, and
    the 'interrupted' line with its row count, which is returned."""
    _, err = host.communicate(timeout=timeout)
    err = err.decode()
    assert host.returncode == code, err
    got = ipc.open_file(str(out)).read_all()
    n = got.num_rows
    assert got.column("id").to_pylist() == list(range(n))
    assert f"interrupted: {n} rows written" in err
    return n


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_first_signal_drains_and_leaves_a_valid_prefix(tmp_path, sig, code):
    p, out = start_slow_run(tmp_path, workers=2, batch_rows=1000, delay=0.05)  # a batch in flight: the drain must write it
    time.sleep(0.3)
    p.send_signal(sig)
    n = interrupted_prefix(p, out, code, timeout=60)
    assert 0 < n < 200_000


def test_first_signal_stops_between_the_pieces_of_one_large_input_batch(tmp_path):
    """An input message of 100,000 rows cut into 100-row batches: the stop comes between the
    pieces, not after all 1,000 of them (before, the run finished the whole message: at 50 ms
    a batch, 50 s after the signal)."""
    p, out = start_slow_run(tmp_path, workers=1, batch_rows=100, delay=0.05, chunk=100_000)
    p.send_signal(signal.SIGINT)
    n = interrupted_prefix(p, out, 130, timeout=40)
    assert 0 < n < 100_000 and n % 100 == 0, n  # whole batches, a prefix of the first message


def test_signal_while_the_workers_start_stops_at_once(tmp_path):
    """Workers still importing (here: a module that sleeps 60 s at import) have nothing in
    flight: SIGTERM stops the run at once instead of waiting out the startup."""
    slow_import = tmp_path / "slow_import.py"
    slow_import.write_text("import time\ntime.sleep(60)\n\ndef f(batch):\n    return batch\n")
    src = tmp_path / "in.arrows"
    write_w1(src, 1000)
    out = tmp_path / "out.arrow"
    p = start(["run", "--input", str(src), "--output", str(out), "--udf", f"{slow_import}:f", "--workers", "2"], tmp_path)
    workers = wait_for_workers(p, 2)
    time.sleep(0.5)  # into the import
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    err = err.decode()
    assert p.returncode == 143, err
    assert "isthmus: SIGTERM received while the workers were starting; stopping" in err
    assert not out.exists() and not list(tmp_path.glob(".out.arrow.tmp-*"))
    deadline = time.time() + 10
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(alive(w) for w in workers), "workers outlived the host"


def test_second_signal_stops_at_once_without_output(tmp_path):
    p, out = start_slow_run(tmp_path, workers=1, batch_rows=1000, delay=0.5)
    p.send_signal(signal.SIGINT)
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=30)
    assert p.returncode == 130
    assert not out.exists()
    assert not list(tmp_path.glob(".out.arrow.tmp-*"))


def test_host_sigkill_leaves_no_orphans_and_next_run_cleans_up(tmp_path):
    src = tmp_path / "in.arrows"
    write_w1(src, 100_000)
    p = start(["run", "--input", str(src), "--output", str(tmp_path / "o.arrows"), "--udf",
               f"{udf('slow.py')}:slow_linear", "--workers", "2", "--batch-rows", "1000"], tmp_path,
              env={"ISTHMUS_TEST_DELAY": "0.2"})
    workers = wait_for_workers(p, 2)
    assert list(tmp_path.glob("isthmus-*"))
    p.kill()
    p.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.05)
    assert not any(alive(w) for w in workers), "workers outlived their host"
    stale = list(tmp_path.glob("isthmus-*"))
    assert stale, "the killed host's run folder should still be there"
    # The next run removes it.
    small = tmp_path / "small.arrows"
    write_w1(small, 10)
    q = start(["run", "--input", str(small), "--output", str(tmp_path / "o2.arrows"), "--udf",
               f"{udf('basic.py')}:linear", "--workers", "1"], tmp_path)
    q.communicate(timeout=60)
    assert q.returncode == 0
    assert not any(d.exists() for d in stale)


def test_sigstop_worker_is_replaced_by_the_batch_deadline(tmp_path):
    src = tmp_path / "in.arrows"
    write_w1(src, 20_000)
    out = tmp_path / "out.arrows"
    p = start(["run", "--input", str(src), "--output", str(out), "--udf", f"{udf('slow.py')}:slow_linear",
               "--workers", "2", "--batch-rows", "1000", "--timeout", "2s"], tmp_path,
              env={"ISTHMUS_TEST_DELAY": "0.1", "ISTHMUS_TEST_PROGRESS": str(tmp_path / "progress")})
    # Stopped inside a batch (not before READY, where only the startup timeout would apply).
    victim = wait_for_progress(tmp_path / "progress", p)[0]
    os.kill(victim, signal.SIGSTOP)
    _, err = p.communicate(timeout=120)
    err = err.decode()
    assert p.returncode == 0, err
    assert "timed out after 2s" in err
    got = ipc.open_stream(str(out)).read_all()
    assert got.column("id").to_pylist() == list(range(20_000))


def run_with_memory_limit(tmp_path: Path, udf_ref: str, limit: str) -> tuple[int, str, str]:
    """One run with --worker-memory-limit: its exit code, stderr and its one error line."""
    src = tmp_path / "in.arrows"
    write_w1(src, 10)
    p = start(["run", "--input", str(src), "--output", str(tmp_path / "o.arrows"), "--udf", udf_ref,
               "--workers", "1", "--worker-memory-limit", limit], tmp_path)
    _, err = p.communicate(timeout=120)
    err = err.decode()
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and not (tmp_path / "o.arrows").exists(), err
    return p.returncode, err, lines[0]


def test_worker_memory_limit_is_reported_as_out_of_memory(tmp_path):
    code, err, line = run_with_memory_limit(tmp_path, f"{udf('slow.py')}:hog", "1Gi")
    assert code == 1 and "out of memory" in line, err


def test_a_worker_memory_limit_too_small_to_start_is_a_usage_error(tmp_path):
    """A limit below what the interpreter already holds after its imports fails every
    allocation (before: a 'SystemError: compile returned NULL' traceback naming nothing)."""
    code, err, line = run_with_memory_limit(tmp_path, f"{udf('basic.py')}:linear", "1")
    assert code == 2, err
    assert line.startswith("error: ISTHMUS_MEMORY_LIMIT=1 (--worker-memory-limit): expected at least "), err
    assert "MiB of address space after importing its libraries" in line and "Traceback" not in err


def test_version_mismatch_names_both_versions(tmp_path):
    src = tmp_path / "in.arrows"
    write_w1(src, 10)
    p = start(["run", "--input", str(src), "--output", str(tmp_path / "o.arrows"), "--udf", f"{udf('basic.py')}:linear",
               "--workers", "1", "--python", fake_python(tmp_path, "version")], tmp_path)
    _, err = p.communicate(timeout=60)
    err = err.decode()
    assert p.returncode == 2, err
    line = [l for l in err.splitlines() if l.startswith("error: ")][0]
    assert "protocol 2.0" in line and "1.1" in line and "pip install" in line


def test_garbage_from_a_worker_gets_it_replaced_then_fails_after_retries(tmp_path):
    src = tmp_path / "in.arrows"
    write_w1(src, 10)
    p = start(["run", "--input", str(src), "--output", str(tmp_path / "o.arrows"), "--udf", f"{udf('basic.py')}:linear",
               "--workers", "1", "--python", fake_python(tmp_path, "garbage-after-open"), "--startup-timeout", "5s"], tmp_path)
    _, err = p.communicate(timeout=60)
    err = err.decode()
    assert p.returncode in (1, 2), err
    assert "malformed" in err or "breaks the protocol" in err or "did not become ready" in err


def test_intruders_are_refused_and_the_run_is_unaffected(tmp_path):
    src = tmp_path / "in.arrows"
    write_w1(src, 30_000)
    out = tmp_path / "out.arrows"
    p = start(["run", "--input", str(src), "--output", str(out), "--udf", f"{udf('slow.py')}:slow_linear",
               "--workers", "2", "--batch-rows", "1000"], tmp_path, env={"ISTHMUS_TEST_DELAY": "0.05"})
    wait_for_workers(p, 2)
    sock = glob.glob(str(tmp_path / "isthmus-*" / "isthmus.sock"))
    assert sock
    mode = os.stat(os.path.dirname(sock[0])).st_mode & 0o777
    assert mode == 0o700
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect("ipc://" + sock[0])
    import json, struct
    env = lambda kind, major=1: b"ISTH" + struct.pack("<BBBBHHIQ", major, 0, kind, 0, 0xFFFF, 0, 0, 0)
    s.send_multipart([b"garbage"])                                                   # not an envelope
    s.send_multipart([env(1), json.dumps({"protocol": "1.0", "helper": "0", "pid": 1, "slot": 0,
                                          "token": "0" * 32}).encode()])             # wrong token
    s.send_multipart([env(1, major=7), b"{}"])                                        # unknown version
    s.send_multipart([env(5), b"x" * (8 << 20)])                                       # RESULT from nobody, oversized
    s.send_multipart([struct.pack("<Q", 5) + b"ISTH" * 4])                            # wrong length
    _, err = p.communicate(timeout=120)
    s.close()
    ctx.term()
    err = err.decode()
    assert p.returncode == 0, err
    assert "wrong run token" in err
    assert "unknown peer" in err
    got = ipc.open_stream(str(out)).read_all()
    assert got.column("id").to_pylist() == list(range(30_000))


def test_sigint_while_waiting_on_a_live_stdin_finishes_promptly(tmp_path):
    import json
    e = dict(os.environ, ISTHMUS_PYTHON=python_bin(), TMPDIR=str(tmp_path))
    p = subprocess.Popen([isthmus_bin(), "run", "--input", "-", "--from", "jsonl", "--output", "-", "--to", "jsonl", "--udf",
                          f"{udf('basic.py')}:linear", "--batch-rows", "1", "--linger", "0", "--workers", "1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
    for i in range(3):
        p.stdin.write((json.dumps({"id": i, "x": 1.0}) + "\n").encode())
        p.stdin.flush()
        assert json.loads(p.stdout.readline()) == {"id": i, "y": 3.0}
    p.send_signal(signal.SIGINT)  # stdin stays open: the source is blocked reading it
    try:
        code = p.wait(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
    assert code == 130, p.stderr.read().decode()
    assert "interrupted: 3 rows written" in p.stderr.read().decode()
