"""Remote workers over tcp:// with CurveZMQ, on the loopback address."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pyarrow.ipc as ipc

from harness import isthmus_bin, python_bin, run_cli, udf
from test_faults import write_w1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_cmd(endpoint: str, *extra: str) -> list[str]:
    return [python_bin(), "-m", "isthmus.worker", "--connect", endpoint, *extra]


def test_keys_writes_a_private_secret_and_a_public_key(tmp_path):
    r = run_cli("keys", str(tmp_path / "host"))
    assert r.returncode == 0, r.stderr.decode()
    key = tmp_path / "host.key"
    pub = tmp_path / "host.pub"
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert len(key.read_text().strip()) == 40 and len(pub.read_text().strip()) == 40
    assert r.stdout.decode().strip() == pub.read_text().strip()


def test_remote_workers_join_with_the_server_key_and_results_are_exact(tmp_path):
    assert run_cli("keys", str(tmp_path / "host")).returncode == 0
    src = tmp_path / "in.arrows"
    table = write_w1(src, 20_000)
    out = tmp_path / "out.arrows"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = dict(os.environ, ISTHMUS_PYTHON=python_bin())
    host = subprocess.Popen([isthmus_bin(), "run", "--input", str(src), "--output", str(out), "--udf",
                             f"{udf('basic.py')}:linear", "--workers", "2", "--listen", endpoint,
                             "--curve-key", str(tmp_path / "host.key"), "--startup-timeout", "30s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    # Workers start once the host listens (it says so on stderr), not after a guessed delay.
    lines: list[str] = []
    assert host.stderr is not None
    for raw in host.stderr:
        lines.append(raw.decode())
        if "waiting up to" in lines[-1]:
            break
    pub = (tmp_path / "host.pub").read_text().strip()
    # A worker with the wrong server key cannot complete the CURVE handshake.
    impostor = subprocess.Popen(worker_cmd(endpoint, "--server-key", "0" * 40), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(env, ISTHMUS_HANDSHAKE_MS="3000"))
    workers = [subprocess.Popen(worker_cmd(endpoint, "--server-key", pub), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env) for _ in range(2)]
    _, rest = host.communicate(timeout=120)
    err = "".join(lines) + rest.decode()
    if host.returncode != 0:
        for w in workers:
            w.kill()
        told = [w.communicate(timeout=30)[1].decode() for w in workers]
        raise AssertionError(f"host exited {host.returncode}:\n{err}\nworkers said:\n" + "\n---\n".join(told))
    assert err.count("joined from pid") == 2
    got = ipc.open_stream(str(out)).read_all()
    assert got.column("id").to_pylist() == list(range(20_000))
    assert got.column("y").to_pylist() == [2 * x + 1 for x in table.column("x").to_pylist()]
    for w in workers:
        assert w.wait(timeout=30) == 0  # CLOSE, then BYE
    impostor.wait(timeout=30)
    assert impostor.returncode != 0


def test_plaintext_listen_needs_insecure_on_the_worker(tmp_path):
    p = subprocess.run(worker_cmd("tcp://127.0.0.1:9"), capture_output=True, timeout=30)
    assert p.returncode == 2
    assert "ISTHMUS_CURVE_SERVERKEY" in p.stderr.decode()


def test_listen_times_out_clearly_when_no_worker_joins(tmp_path):
    src = tmp_path / "in.arrows"
    write_w1(src, 10)
    r = run_cli("run", "--input", str(src), "--output", str(tmp_path / "o.arrows"), "--udf", "m:f",
                "--workers", "1", "--listen", f"tcp://127.0.0.1:{free_port()}", "--startup-timeout", "1s")
    assert r.returncode == 2
    line = [l for l in r.stderr.decode().splitlines() if l.startswith("error: ")][0]
    assert "did not become ready within 1s" in line and "no worker joined" in line
