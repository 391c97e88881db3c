"""End-to-end: the shared-memory data plane (PROTOCOL.md section 17) with the real CLI and
real workers. Every run checks its output values and, through --stats, which path the
batches took."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from harness import run_cli, udf
from test_run import w1, write_stream


def run(tmp_path, name: str, fn: str, rows: int, *extra: str, batch_rows: int = 8192, workers: int = 2):
    src = tmp_path / f"{name}-in.arrows"
    if not src.exists():
        write_stream(src, w1(rows))
    out, stats = tmp_path / f"{name}.arrows", tmp_path / f"{name}.json"
    r = run_cli("run", "--input", str(src), "--output", str(out), "--udf", fn, "--workers", str(workers),
                "--batch-rows", str(batch_rows), "--stats", str(stats), "--no-progress", *extra)
    assert r.returncode == 0, r.stderr.decode()
    stage = [s for s in json.loads(stats.read_text())["stages"] if s["kind"] == "python"][0]
    return ipc.open_stream(str(out)).read_all(), stage, r.stderr.decode()


def expected_linear(n: int) -> list[float]:
    x = w1(n).column("x").to_numpy()
    return list(2 * x + 1)


def test_batches_and_results_travel_through_the_arena(tmp_path):
    n = 100_000
    table, stage, _ = run(tmp_path, "on", f"{udf('basic.py')}:linear", n)
    assert table.column("y").to_pylist() == expected_linear(n)
    assert stage["batches_in"] == 13
    # The last batch (1,696 rows, 27 KB) is under the 32 KiB threshold: frames are cheaper.
    assert stage["shm_batches"] == 12 and stage["shm_results"] == 12
    assert stage["arena_bytes"] == 256 << 20
    assert 0 < stage["arena_peak_bytes"] < 8 << 20  # a few batches' worth, not the input


def test_switched_off_the_output_is_identical(tmp_path):
    n = 100_000
    on, _, _ = run(tmp_path, "on", f"{udf('basic.py')}:linear", n)
    off, stage, _ = run(tmp_path, "off", f"{udf('basic.py')}:linear", n, "--shm-arena", "0")
    assert stage["shm_batches"] == 0 and stage["shm_results"] == 0 and stage["arena_bytes"] == 0
    assert on.equals(off)


def test_inputs_a_udf_keeps_are_never_overwritten(tmp_path):
    # A 4 MiB arena and 128 KiB batches: the host would reuse regions quickly if it did
    # not wait for RELEASE. Regions the UDF keeps stay lent; the rest of the run falls
    # back to frames when the arena is full, and every kept batch stays intact.
    n = 400_000
    table, stage, _ = run(tmp_path, "keep", f"{udf('arena.py')}:keep_and_check", n, "--shm-arena", "4Mi",
                          batch_rows=8192, workers=1)
    assert table.column("id").to_pylist() == list(range(n))
    assert all(table.column("intact").to_pylist())
    assert 0 < stage["shm_batches"] < stage["batches_in"]  # the arena filled up with kept inputs


def test_results_too_big_for_their_region_come_back_as_frames(tmp_path):
    n = 32_768
    table, stage, _ = run(tmp_path, "explode", f"{udf('arena.py')}:explode", n, batch_rows=4096, workers=1)
    ids = np.repeat(np.arange(n, dtype=np.int64), 40)
    assert table.column("id").to_numpy().tolist() == ids.tolist()
    assert table.column("k").to_numpy().tolist() == np.tile(np.arange(40), n).tolist()
    assert stage["shm_batches"] == stage["batches_in"]
    # The first result is 20x its region's guess and comes back as frames; later regions are
    # sized from the results seen, so most of the rest fit.
    assert 0 < stage["shm_results"] < stage["batches_in"]


def test_a_worker_that_cannot_map_the_arena_uses_frames(tmp_path):
    # Under a 1 GiB address-space limit a worker cannot map a 2 GiB arena: it says so in
    # READY, the host logs one line and sends that worker frames.
    n = 50_000
    table, stage, err = run(tmp_path, "nomap", f"{udf('basic.py')}:linear", n, "--shm-arena", "2Gi",
                            "--worker-memory-limit", "1500Mi", workers=1)
    assert table.column("y").to_pylist() == expected_linear(n)
    assert stage["shm_batches"] == 0
    assert "worker 0 cannot map the shared arena" in err and "batches travel as frames" in err


def test_bad_arena_sizes_are_usage_errors(tmp_path):
    src = tmp_path / "in.arrows"
    write_stream(src, w1(10))
    for size, found in (("10K", "'10K'"), ("lots", "'lots'")):
        r = run_cli("run", "--input", str(src), "--output", str(tmp_path / "o.arrows"), "--udf",
                    f"{udf('basic.py')}:linear", "--shm-arena", size)
        assert r.returncode == 2
        assert "--shm-arena" in r.stderr.decode() and found in r.stderr.decode()
        assert not (tmp_path / "o.arrows").exists()
