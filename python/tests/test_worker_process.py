"""The worker as a real subprocess: run_udf end to end, the command line, and
the ways a worker ends by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from conftest import RawHost, ipc_stream, wait_until, worker_env
from isthmus import UDFError, WorkerError
from isthmus import protocol as P
from isthmus.testing import run_udf

LIN = """
import os
import pyarrow as pa
import pyarrow.compute as pc
from isthmus import udf

@udf(schema={"y": pa.int64()})
def lin(batch):
    return {"y": pc.add(pc.multiply(batch["x"], 2), 1)}

@udf
def boom(batch):
    values = batch.column(0).to_pylist()
    raise ValueError(f"cannot score {values[0]}")  # the raising line

@udf
def threads(batch):
    return {"omp": [os.environ.get("OMP_NUM_THREADS")], "mkl": [os.environ.get("MKL_NUM_THREADS")]}

@udf
def hog(batch):
    return {"n": [len(bytearray(1 << 31))]}
"""


def python_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.worker", *args], env=worker_env(),
                          capture_output=True, text=True, timeout=60)


def test_run_udf_subprocess_exact(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("wp_lin.py", LIN)
    table = pa.table({"x": pa.array(range(-50, 1000), pa.int64())})
    out = run_udf(f"{path}:lin", table, batch_rows=100, workers=2)
    assert out.schema == pa.schema([("y", pa.int64())])
    assert out.column("y").to_pylist() == [2 * x + 1 for x in range(-50, 1000)]


def test_run_udf_subprocess_error_has_traceback(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("wp_boom.py", LIN)
    with pytest.raises(UDFError) as info:
        run_udf(f"{path}:boom", pa.table({"x": [41, 42]}))
    err = info.value
    assert (err.kind, err.exc_type, err.message, err.stage) == ("user", "ValueError", "cannot score 41", "boom")
    assert err.sequence == 1 and err.retryable is False
    assert 'raise ValueError(f"cannot score {values[0]}")  # the raising line' in err.traceback
    assert "wp_boom.py" in err.traceback
    assert "isthmus" + os.sep + "runtime.py" not in err.traceback


def test_thread_variables_are_pinned(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("wp_threads.py", LIN)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        out = run_udf(f"{path}:threads", pa.table({"x": [1]}), env={"ISTHMUS_THREADS": "3", "MKL_NUM_THREADS": "7"})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert out.to_pydict() == {"omp": ["3"], "mkl": ["7"]}  # a user setting wins


def test_memory_limit_gives_oom(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("wp_hog.py", LIN)
    with pytest.raises(UDFError) as info:
        run_udf(f"{path}:hog", pa.table({"x": [1]}), env={"ISTHMUS_MEMORY_LIMIT": "1Gi"})
    assert info.value.kind == "oom" and info.value.retryable


def test_setup_error_reported_and_worker_exits_3(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("wp_setup.py", LIN)
    with pytest.raises(UDFError) as info:
        run_udf(f"{path}:nope", pa.table({"x": [1]}))
    err = info.value
    assert err.kind == "setup" and err.stage_index == 0
    assert "no UDF named 'nope' in wp_setup.py" in err.message
    assert "UDFs lin, boom, threads, hog" in err.message


def test_setup_error_exit_code(raw_host: RawHost, write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("wp_setup2.py", "raise ImportError('broken')\n")
    raw_host.spawn()
    env, rest = raw_host.handshake(f"{path}:f", pa.schema([("x", pa.int64())]))
    assert env.kind == P.Kind.ERROR and env.stage == 0 and env.sequence == 0
    doc = P.parse_error(P.loads_json(rest[0], "ERROR"))
    assert doc.kind == "setup" and "importing wp_setup2.py failed: ImportError: broken" in doc.message
    code, err = raw_host.wait()
    assert code == 3


def test_worker_exits_when_host_goes_silent(raw_host: RawHost, write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("wp_silent.py", LIN)
    raw_host.spawn()
    env, _ = raw_host.handshake(f"{path}:lin", pa.schema([("x", pa.int64())]), heartbeat_ms=100, missed=10)
    assert env.kind == P.Kind.READY
    # (1 s of silence: the test's own HEARTBEAT below must come within it on a loaded machine.)
    # Answering heartbeats keeps it alive...
    raw_host.send(P.encode_envelope(P.Kind.HEARTBEAT))
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.HEARTBEAT and P.parse_heartbeat(P.loads_json(rest[0], "HB")).batches == 0
    # ...then the host stops talking: the worker leaves by itself within ~1 s.
    started = time.monotonic()
    code, err = raw_host.wait(timeout=10)
    assert code == 4
    assert time.monotonic() - started < 5
    assert "no message from the host for 1000 ms" in err


def test_worker_exits_when_parent_dies(write_udf, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host = RawHost()
    try:
        pidfile = tmp_path / "pid"
        # An intermediate process starts the worker and is then killed.
        launcher = (
            "import subprocess, sys, time\n"
            f"p = subprocess.Popen([sys.executable, '-m', 'isthmus.worker'])\n"
            f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
            "time.sleep(60)\n"
        )
        env = worker_env(ISTHMUS_ENDPOINT=host.endpoint, ISTHMUS_TOKEN=host.token, ISTHMUS_SLOT="0",
                         ISTHMUS_PDEATHSIG="0")  # exercise the getppid() watcher
        parent = subprocess.Popen([sys.executable, "-c", launcher], env=env)
        env_, _ = host.recv()
        assert env_.kind == P.Kind.HELLO
        assert wait_until(lambda: pidfile.exists() and pidfile.read_text() != "")
        worker_pid = int(pidfile.read_text())
        parent.kill()
        parent.wait()

        def gone() -> bool:
            try:
                os.kill(worker_pid, 0)
            except ProcessLookupError:
                return True
            # A zombie re-parented to init still answers kill(0); check its state.
            try:
                with open(f"/proc/{worker_pid}/stat") as f:
                    return f.read().split(")")[-1].split()[0] == "Z"
            except OSError:
                return True

        assert wait_until(gone, timeout=10), "worker outlived its parent"
    finally:
        host.close()


def test_protocol_errors_are_answered_and_worker_keeps_running(raw_host: RawHost, write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("wp_proto.py", LIN)
    raw_host.spawn()
    schema = pa.schema([("x", pa.int64())])
    env, _ = raw_host.handshake(f"{path}:lin", schema)
    assert env.kind == P.Kind.READY

    def expect_protocol_error(sequence: int) -> str:
        e, rest = raw_host.recv()
        assert e.kind == P.Kind.ERROR and e.sequence == sequence
        doc = P.parse_error(P.loads_json(rest[0], "ERROR"))
        assert doc.kind == "protocol"
        return doc.message

    raw_host.send(b"NOPE" + bytes(20))
    assert "magic" in expect_protocol_error(0)
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=9), b"not arrow")
    assert "expected an Arrow IPC stream" in expect_protocol_error(9)
    bad_env = bytearray(P.encode_envelope(P.Kind.BATCH, sequence=11))
    bad_env[6] = 42
    raw_host.send(bytes(bad_env), b"x")
    assert "expected a message kind 1..10, found 42" in expect_protocol_error(11)
    raw_host.send(P.encode_envelope(P.Kind.HELLO), b"{}")
    assert "found HELLO" in expect_protocol_error(0)
    wrong = pa.RecordBatch.from_pydict({"z": pa.array(["a"])})
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=12), ipc_stream(wrong))
    assert "expected the BATCH schema to be the OPEN input schema" in expect_protocol_error(12)

    # Still serving: a good batch split over several frames.
    stream = ipc_stream(pa.RecordBatch.from_pydict({"x": pa.array([1, 2, 3], pa.int64())}))
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, attempt=2, sequence=13), stream[:5], stream[5:100], stream[100:])
    e, rest = raw_host.recv()
    assert (e.kind, e.stage, e.attempt, e.sequence) == (P.Kind.RESULT, 0, 2, 13)
    assert pa.ipc.open_stream(b"".join(rest)).read_all().column("y").to_pylist() == [3, 5, 7]

    raw_host.send(P.encode_envelope(P.Kind.CLOSE), b"{}")
    e, _ = raw_host.recv()
    assert e.kind == P.Kind.BYE
    code, _err = raw_host.wait()
    assert code == 0


def test_host_rejection_exits_2(raw_host: RawHost) -> None:
    raw_host.spawn()
    env, _ = raw_host.recv()
    assert env.kind == P.Kind.HELLO
    raw_host.send(P.encode_envelope(P.Kind.CLOSE), P.dumps_json({"reason": "bad token"}))
    code, err = raw_host.wait()
    assert code == 2 and "the host rejected this worker: bad token" in err


def test_newer_host_major_exits_2_with_fix(raw_host: RawHost) -> None:
    raw_host.spawn()
    env, _ = raw_host.recv()
    newer = bytearray(P.encode_envelope(P.Kind.OPEN))
    newer[4], newer[5] = 2, 1
    raw_host.send(bytes(newer), b"{}", b"")
    code, err = raw_host.wait()
    assert code == 2
    assert "the host speaks 2.1" in err and "speaks 1.1" in err
    assert "-m pip install --upgrade isthmus" in err


def test_hello_document(raw_host: RawHost) -> None:
    raw_host.spawn()
    env, rest = raw_host.recv()
    hello = P.parse_hello(P.loads_json(rest[0], "HELLO"))
    assert (env.stage, env.sequence) == (P.NO_STAGE, 0)
    assert hello.protocol == "1.1" and hello.helper == "0.1.0" and hello.token == raw_host.token
    assert hello.pid == raw_host.proc.pid and hello.slot == 0  # type: ignore[union-attr]
    assert raw_host.identity == f"w0-{hello.pid}".encode()
    assert {"arrow", "pandas", "numpy", "generator", "class", "row_errors", "shm", "doorbell", "input_file"} <= set(hello.capabilities)
    assert set(hello.capabilities) <= {"arrow", "pandas", "numpy", "generator", "class", "row_errors", "lz4_frame", "zstd", "shm",
                                       "doorbell", "input_file"}


def test_crash_is_reported_with_signal(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("wp_crash.py", """
        import ctypes
        def crash(batch):
            ctypes.string_at(0)
    """)
    with pytest.raises(WorkerError) as info:
        run_udf(f"{path}:crash", pa.table({"x": [1]}))
    assert f"killed by signal {signal.SIGSEGV}" in str(info.value)
    assert "Fatal Python error" in info.value.stderr_tail  # faulthandler
    assert "in crash" in info.value.stderr_tail


def test_version_flag() -> None:
    r = python_cmd("--version")
    assert r.returncode == 0 and json.loads(r.stdout) == {"helper": "0.1.0", "protocol": "1.1"}


def test_list_flag(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("wp_list.py", """
        import pyarrow as pa
        from isthmus import udf
        print("noise at import")  # must not corrupt the JSON

        @udf(schema={"y": pa.float64()}, input="pandas")
        def predict(df):
            return df

        @udf
        class Model:
            def __call__(self, batch):
                return batch

        @udf
        def stream(batches):
            yield from batches
    """)
    r = python_cmd("--list", path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["version"] == 1
    udfs = {u["name"]: u for u in doc["udfs"]}
    assert udfs["predict"]["kind"] == "function" and udfs["predict"]["input"] == "pandas"
    assert udfs["predict"]["schema"] == [{"name": "y", "type": "double", "nullable": True}]
    assert udfs["Model"]["kind"] == "class" and udfs["Model"]["schema"] is None
    assert udfs["stream"]["kind"] == "generator"
    assert "noise at import" in r.stderr


def test_list_plain_module(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("wp_plain.py", """
        from os.path import join  # imported, not defined here
        def score(batch):
            return batch
        def _private(batch):
            return batch
        class Scorer:
            def __call__(self, batch):
                return batch
    """)
    r = python_cmd("--list", path)
    doc = json.loads(r.stdout)
    assert [(u["name"], u["kind"], u["registered"]) for u in doc["udfs"]] == [
        ("score", "function", False), ("Scorer", "class", False)]


def test_list_errors_are_one_line_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = python_cmd("--list", str(tmp_path / "missing.py"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "UDF file not found" in r.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("1/0\n")
    r = python_cmd("--list", str(broken))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "importing broken.py failed: ZeroDivisionError" in r.stderr


def test_missing_package_message() -> None:
    code = (
        "import sys, runpy; sys.modules['zmq'] = None; "
        "sys.argv = ['isthmus-worker', '--connect', 'ipc:///nonexistent', '--token', '0' * 32]; "
        "runpy.run_module('isthmus.worker', run_name='__main__')"
    )
    r = subprocess.run([sys.executable, "-c", code], env=worker_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    exe = sys.executable
    assert r.stderr == (
        f"isthmus-worker: missing Python package 'pyzmq' in {exe}; install it with: {exe} -m pip install pyzmq\n"
    )


def test_usage_errors_exit_2() -> None:
    r = subprocess.run([sys.executable, "-m", "isthmus.worker"], env={**worker_env(), "ISTHMUS_ENDPOINT": ""},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "expected --connect ENDPOINT or ISTHMUS_ENDPOINT" in r.stderr
    r = python_cmd("--connect", "tcp://127.0.0.1:5555", "--token", "a" * 32)
    assert r.returncode == 2 and "ISTHMUS_CURVE_SERVERKEY" in r.stderr
    r = python_cmd("--connect", "ipc:///x", "--token", "short")
    assert r.returncode == 2 and "32 hex digits" in r.stderr


@pytest.mark.skipif(not __import__("zmq").has("curve"), reason="libzmq without CurveZMQ")
def test_tcp_with_curve(write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("wp_curve.py", LIN)
    host = RawHost(curve=True)
    try:
        assert host.server_public is not None
        host.spawn(env={"ISTHMUS_CURVE_SERVERKEY": host.server_public.decode()})
        env, _ = host.handshake(f"{path}:lin", pa.schema([("x", pa.int64())]))
        assert env.kind == P.Kind.READY
        host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=1), ipc_stream(pa.RecordBatch.from_pydict({"x": pa.array([5], pa.int64())})))
        e, rest = host.recv()
        assert e.kind == P.Kind.RESULT
        assert pa.ipc.open_stream(b"".join(rest)).read_all().to_pydict() == {"y": [11]}
    finally:
        host.close()


@pytest.mark.skipif(not __import__("zmq").has("curve"), reason="libzmq without CurveZMQ")
def test_a_server_key_that_begins_with_a_dash(write_udf) -> None:  # type: ignore[no-untyped-def]
    # Z85 has "-" in its alphabet: about one key in 85 begins with it, and argparse used to
    # read "--server-key -Xy..." as a missing value (the worker exited 2, the host waited).
    import zmq

    while True:
        public, secret = zmq.curve_keypair()
        if public.startswith(b"-"):
            break
    path = write_udf("wp_dash.py", LIN)
    for form in (["--server-key", public.decode()], [f"--server-key={public.decode()}"]):
        host = RawHost(curve=True, keypair=(public, secret))
        try:
            host.spawn(env={"ISTHMUS_CURVE_SERVERKEY": ""}, args=["--connect", host.endpoint, "--token", host.token, *form])
            env, _ = host.handshake(f"{path}:lin", pa.schema([("x", pa.int64())]))
            assert env.kind == P.Kind.READY, form
        finally:
            host.close()
