"""End-to-end: the shared-memory data plane (PROTOCOL.md section 17) with the real CLI and
real workers. Every run checks its output values and, through --stats, which path the
batches took.

The inputs here are Arrow IPC stream files, which workers would read in place (section 19);
the tests of the arena's input regions run with --share-input off, so that their batches are
copied into the arena, and the tests of section 19 at the end of the file say share="on"
(--share-input on: the default, auto, shares every batch only when the workers leave the host no CPU)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import pyarrow as pa
import pyarrow.csv  # noqa: F401
import pyarrow.ipc as ipc

from harness import python_bin, run_cli, udf
from test_run import w1, write_stream


def run(tmp_path, name: str, fn: str, rows: int, *extra: str, batch_rows: int = 8192, workers: int = 2,
        env: dict[str, str] | None = None, share: str | None = "off", src=None):
    if src is None:
        src = tmp_path / f"{name}-in.arrows"
        if not src.exists():
            write_stream(src, w1(rows))
    out, stats = tmp_path / f"{name}.arrows", tmp_path / f"{name}.json"
    share_flag = ["--share-input", share] if share else []
    r = run_cli("run", "--input", str(src), "--output", str(out), "--udf", fn, "--workers", str(workers),
                "--batch-rows", str(batch_rows), "--stats", str(stats), "--no-progress", *share_flag, *extra, env=env or {})
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
    # Every BATCH went through a doorbell (section 18), descriptors and frames alike.
    assert stage["doorbell_batches"] == 13
    assert stage["arena_bytes"] == 256 << 20
    assert 0 < stage["arena_peak_bytes"] < 8 << 20  # a few batches' worth, not the input


def test_switched_off_the_output_is_identical(tmp_path):
    n = 100_000
    on, _, _ = run(tmp_path, "on", f"{udf('basic.py')}:linear", n)
    off, stage, _ = run(tmp_path, "off", f"{udf('basic.py')}:linear", n, "--shm-arena", "0")
    assert stage["shm_batches"] == 0 and stage["shm_results"] == 0 and stage["arena_bytes"] == 0
    assert stage["doorbell_batches"] == 0
    assert on.equals(off)


@pytest.mark.parametrize("credits", ["1", "3", "12"])
def test_every_credit_has_a_doorbell_mailbox_up_to_eight(tmp_path, credits):
    # Small batches (frames inside the mailboxes), two workers; with 12 credits the four
    # beyond the eight mailboxes go through the socket. The output is the same either way.
    n = 60_000
    table, stage, _ = run(tmp_path, f"c{credits}", f"{udf('basic.py')}:linear", n, "--credits", credits, batch_rows=1000)
    assert table.column("y").to_pylist() == expected_linear(n)
    assert stage["batches_in"] == 60
    if credits == "12":
        assert 0 < stage["doorbell_batches"] <= 60
    else:
        assert stage["doorbell_batches"] == 60


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
    # A hard address-space limit of 1.5 GiB (set by a wrapper, so the worker cannot raise it)
    # leaves no room for a 2 GiB arena: the worker says so in READY, the host logs one line
    # and sends that worker frames.
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/bash\nulimit -v {1536 * 1024}\nexec {python_bin()} \"$@\"\n")
    wrapper.chmod(0o755)
    n = 50_000
    table, stage, err = run(tmp_path, "nomap", f"{udf('basic.py')}:linear", n, "--shm-arena", "2Gi",
                            "--python", str(wrapper), workers=1)
    assert table.column("y").to_pylist() == expected_linear(n)
    assert stage["shm_batches"] == 0
    assert "worker 0 cannot map the shared arena" in err and "batches travel as frames" in err
    assert "found a hard limit of" in err


def test_the_arena_does_not_eat_the_worker_memory_limit(tmp_path):
    # A 400 MiB working buffer per batch under a 1200 MiB limit: fits with the frames path,
    # and must still fit with the 256 MiB arena mapped (the worker raises its limit by the
    # arena's size for the mapping).
    n = 20_000
    table, stage, _ = run(tmp_path, "hog", f"{udf('arena_keep.py')}:hog", n, "--worker-memory-limit", "1200Mi",
                          workers=1)
    assert table.column("n").to_pylist() == [1] * n
    assert stage["shm_batches"] > 0


def test_inputs_kept_until_exit_stay_readable(tmp_path):
    # Every input batch is kept in a global and summed again by an atexit handler, after
    # the worker loop ended: the mapping must outlive the arrays that point into it.
    summary = tmp_path / "summary.txt"
    n = 100_000
    table, stage, err = run(tmp_path, "atexit", f"{udf('arena_keep.py')}:keep", n, "--env", f"ARENA_SUMMARY={summary}",
                            workers=1)
    assert stage["shm_batches"] > 0
    assert "Segmentation fault" not in err
    rows, total = summary.read_text().split()
    assert int(rows) == n
    assert abs(float(total) - float(w1(n).column("x").to_numpy().sum())) < 1e-6


EVIL_ROWS = 50_000


def evil_run(tmp_path, output: str, *extra: str, **env: str):
    """`isthmus run` of EVIL_ROWS rows through arena_evil.py:strings, whose worker misbehaves as
    `env` selects (ARENA_EVIL=...)."""
    src = tmp_path / "in.arrows"
    write_stream(src, w1(EVIL_ROWS))
    out = tmp_path / output
    r = run_cli("run", "--input", str(src), "--output", str(out), "--udf", f"{udf('arena_evil.py')}:strings",
                "--no-progress", "--share-input", "off", *extra, env=env)
    return r, out


def test_a_worker_answering_twice_from_the_arena_is_replaced_not_fatal(tmp_path):
    r, _ = evil_run(tmp_path, "o.arrows", "--workers", "1", "--max-retries", "1", ARENA_EVIL="double")
    err = r.stderr.decode()
    assert r.returncode == 1, err  # a run failure, not a crash (132/134/139)
    assert "not a valid Arrow IPC stream" in err
    assert "error: worker 0 failed" in err or "error: stage" in err
    assert not (tmp_path / "o.arrows").exists()


def test_a_worker_rewriting_its_result_later_cannot_touch_the_host(tmp_path):
    """Batch 1's result waits in the host's reorder buffer (batch 0 sleeps) while its worker
    overwrites the region it was written in: the host's copy is unaffected. Two batches only:
    both inputs are in the arena before any answer, so no later batch can be placed in the
    freed region. With more batches one can be, and the scribble then changes another
    worker's input, which PROTOCOL.md section 14 (known weaknesses: the arena is shared
    writable memory) accepts; the worker then rejects it and the run fails cleanly (seen on a loaded machine
    with 8,192-row batches)."""
    n = EVIL_ROWS
    log = tmp_path / "evil.log"
    r, out = evil_run(tmp_path, "o.csv", "--workers", "2", "--batch-rows", str(EVIL_ROWS // 2),
                      ARENA_EVIL="rewrite", ARENA_EVIL_LOG=str(log))
    assert r.returncode == 0, r.stderr.decode()
    assert log.read_text().startswith("scribbled")  # the worker did overwrite its result region
    got = pa.csv.read_csv(str(out))
    assert got.column("id").to_pylist() == list(range(n))
    assert got.column("s").cast(pa.int64()).to_pylist() == list(range(n))


def test_bad_arena_sizes_are_usage_errors(tmp_path):
    src = tmp_path / "in.arrows"
    write_stream(src, w1(10))
    for size, found in (("10K", "'10K'"), ("lots", "'lots'")):
        r = run_cli("run", "--input", str(src), "--output", str(tmp_path / "o.arrows"), "--udf",
                    f"{udf('basic.py')}:linear", "--shm-arena", size)
        assert r.returncode == 2
        assert "--shm-arena" in r.stderr.decode() and found in r.stderr.decode()
        assert not (tmp_path / "o.arrows").exists()


def test_a_worker_releasing_a_region_it_was_not_lent_is_replaced(tmp_path):
    n = EVIL_ROWS
    r, out = evil_run(tmp_path, "o.arrows", "--workers", "1", "--batch-rows", "8192",
                      ARENA_EVIL="release", ARENA_EVIL_FLAG=str(tmp_path / "misbehaved"))
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "released arena region 790080, which it was not lent; replacing it" in err
    got = ipc.open_stream(str(out)).read_all()
    assert got.column("id").to_pylist() == list(range(n))  # its batches were resent, none lost or doubled
    assert got.column("s").to_pylist() == [str(i) for i in range(n)]


@pytest.mark.parametrize(("mode", "batch_rows", "said"), [
    ("wrong-offset", "8192", "with a bad region descriptor: expected the result at arena offset"),
    ("unasked", "1000", "sent a RESULT for batch 0 with the SHM flag: expected an Arrow IPC payload (the batch had no result region) but found 1 descriptor frame"),
])
def test_a_result_descriptor_the_host_did_not_offer_gets_the_worker_replaced(tmp_path, mode, batch_rows, said):
    r, out = evil_run(tmp_path, "o.arrows", "--workers", "1", "--batch-rows", batch_rows,
                      ARENA_EVIL=mode, ARENA_EVIL_FLAG=str(tmp_path / "misbehaved"))
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert said in err and "replacing it" in err
    got = ipc.open_stream(str(out)).read_all()
    assert got.column("id").to_pylist() == list(range(EVIL_ROWS))
    assert got.column("s").to_pylist() == [str(i) for i in range(EVIL_ROWS)]


def test_a_small_arena_keeps_its_room_for_batches(tmp_path):
    # Mailboxes may take an eighth of the arena: with 1 MiB there is no room for 2 workers x
    # 8 credits x 128 KiB, so there are no doorbells and the arena carries the batches.
    n = 100_000
    table, stage, err = run(tmp_path, "small", f"{udf('basic.py')}:linear", n, "--shm-arena", "1Mi", "--credits", "8")
    assert table.column("y").to_pylist() == expected_linear(n)
    assert "no doorbells: the 1048576-byte arena has no room for them" in err
    assert stage["doorbell_batches"] == 0 and stage["shm_batches"] > 0
    # 16 MiB leave room for 8 mailboxes per worker.
    table, stage, err = run(tmp_path, "room", f"{udf('basic.py')}:linear", n, "--shm-arena", "16Mi", "--credits", "8")
    assert table.column("y").to_pylist() == expected_linear(n)
    assert "no doorbell" not in err
    assert stage["doorbell_batches"] == stage["batches_in"] == stage["shm_batches"] + 1


def test_a_worker_ringing_a_mailbox_it_was_not_rung_for_is_replaced(tmp_path):
    n = 60_000
    table, stage, err = run(tmp_path, "ring", f"{udf('doorbell_evil.py')}:linear", n, "--credits", "4",
                            batch_rows=1000, workers=2, env={"DOORBELL_EVIL": "ring", "DOORBELL_EVIL_FLAG": str(tmp_path / "flag")})
    assert "rang its doorbell for mailbox 199 of 4, expected one of the mailboxes it was rung for; replacing it" in err
    assert len(stage["restarts"]) == 1
    assert table.column("y").to_pylist() == expected_linear(n)  # its batches were resent, none lost or doubled


def test_a_worker_dying_with_every_mailbox_full_loses_nothing(tmp_path):
    n = 60_000
    table, stage, err = run(tmp_path, "exit", f"{udf('doorbell_evil.py')}:linear", n, "--credits", "8",
                            batch_rows=1000, workers=1, env={"DOORBELL_EVIL": "exit", "DOORBELL_EVIL_FLAG": str(tmp_path / "flag")})
    assert len(stage["restarts"]) == 1 and "exited with code 3" in stage["restarts"][0]
    assert "restarting it and resending 8 batches" in err
    assert table.column("y").to_pylist() == expected_linear(n)
    assert stage["doorbell_batches"] > stage["batches_in"]  # the resent ones went through the doorbell again



# -- Section 19: batches read in place from the input file ---------------------------------


def test_batches_are_read_in_place_from_the_input_file(tmp_path):
    # 16,384-row messages cut into 8,192-row batches: every batch but the last (1,696 rows,
    # under the 32 KiB threshold) is a range of the file; only results use the arena.
    n = 100_000
    src = tmp_path / "messages.arrows"
    write_stream(src, w1(n), max_chunksize=16384)
    table, stage, _ = run(tmp_path, "file", f"{udf('basic.py')}:linear", n, src=src, share="on")
    assert table.column("y").to_pylist() == expected_linear(n)
    assert stage["batches_in"] == 13
    assert stage["file_batches"] == stage["shm_batches"] == stage["shm_results"] == 12
    assert stage["doorbell_batches"] == 13
    # Results and mailboxes only: no input region was leased for them.
    copied, cstage, _ = run(tmp_path, "copied", f"{udf('basic.py')}:linear", n, src=src)
    assert cstage["file_batches"] == 0 and cstage["shm_batches"] == 12
    assert stage["arena_peak_bytes"] < cstage["arena_peak_bytes"]
    assert table.equals(copied)


def test_batches_cut_across_messages_are_copied_into_the_arena(tmp_path):
    # 3,000-row batches over 4,096-row messages: a batch inside one message is a slice of it
    # (a range of the file); one that spans two is concatenated, new bytes that go to the arena.
    n = 60_000
    src = tmp_path / "odd.arrows"
    write_stream(src, w1(n), max_chunksize=4096)
    table, stage, _ = run(tmp_path, "odd", f"{udf('basic.py')}:linear", n, src=src, share="on", batch_rows=3000)
    assert table.column("y").to_pylist() == expected_linear(n)
    assert 0 < stage["file_batches"] < stage["shm_batches"] == stage["batches_in"] == 20


def test_compressed_inputs_are_copied_not_shared(tmp_path):
    n = 50_000
    src = tmp_path / "lz4.arrows"
    t = w1(n)
    with ipc.new_stream(str(src), t.schema, options=ipc.IpcWriteOptions(compression="lz4")) as w:
        w.write_table(t, max_chunksize=8192)
    table, stage, _ = run(tmp_path, "lz4", f"{udf('basic.py')}:linear", n, src=src, share="on")
    assert table.column("y").to_pylist() == expected_linear(n)
    assert stage["file_batches"] == 0 and stage["shm_batches"] == stage["batches_in"] - 1


def test_a_worker_dying_with_file_batches_in_flight_loses_nothing(tmp_path):
    n = 100_000
    table, stage, err = run(tmp_path, "fexit", f"{udf('doorbell_evil.py')}:linear", n, "--credits", "8", share="on",
                            batch_rows=4096, workers=1, env={"DOORBELL_EVIL": "exit", "DOORBELL_EVIL_FLAG": str(tmp_path / "flag")})
    assert len(stage["restarts"]) == 1 and "exited with code 3" in stage["restarts"][0]
    assert "restarting it and resending 8 batches" in err
    assert table.column("y").to_pylist() == expected_linear(n)
    assert stage["file_batches"] > stage["batches_in"] - 1  # the resent ones were ranges of the file again


def test_a_worker_that_cannot_read_the_input_file_gets_copies_instead(tmp_path):
    # Its first FILE batches are refused (ERROR kind protocol, as a worker in another mount
    # namespace would answer): the host says so once, resends them, and copies from then on.
    n = 50_000
    table, stage, err = run(tmp_path, "refuse", f"{udf('input_file_evil.py')}:linear", n, share="on", workers=1)
    assert table.column("y").to_pylist() == expected_linear(n)
    said = [l for l in err.splitlines() if "cannot read the input file" in l]
    assert len(said) == 1, err
    assert "worker 0 cannot read the input file (cannot open the input file /proc/" in said[0]
    assert "Permission denied); its batches are copied into the arena from now on" in said[0]
    assert stage["retries"] >= 1 and not stage["restarts"]
    assert stage["shm_batches"] >= stage["batches_in"] - 1


def test_a_worker_without_the_capability_gets_copies_in_the_arena(tmp_path):
    # An older helper that speaks shm but not input_file: the host copies the batches it
    # would have shared into the arena when it sends them, not as frames.
    n = 50_000
    site = str(Path(udf("basic.py")).parent / "no_input_file")
    table, stage, _ = run(tmp_path, "old", f"{udf('basic.py')}:linear", n, "--env", f"PYTHONPATH={site}", share="on")
    assert table.column("y").to_pylist() == expected_linear(n)
    assert stage["file_batches"] == 0
    assert stage["shm_batches"] == stage["doorbell_batches"] - 1 == stage["batches_in"] - 1


def test_share_input_auto_follows_the_cpus_and_the_submitters_pace_and_bad_values_are_usage_errors(tmp_path):
    # auto always shares when the workers leave the host no CPU of its own: with as many
    # workers as CPUs, every batch. With a CPU left over it decides batch by batch (PROTOCOL.md
    # section 19): it shares while fewer than half of the last 16 submits waited for the
    # window, and copies otherwise. One worker that takes 20 ms a batch, a window of 8: the
    # first 8 submits find room and are shared, every later one waits, and from the 17th on
    # (8 of the last 16 waited) the batches are copied.
    cpus = len(os.sched_getaffinity(0))
    try:  # a cgroup CPU quota lowers it, as the host counts
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    n = 50_000
    table, stage, _ = run(tmp_path, "auto-many", f"{udf('basic.py')}:linear", n, "--share-input", "auto", workers=cpus, share=None)
    assert table.column("y").to_pylist() == expected_linear(n)
    assert stage["file_batches"] == stage["shm_batches"] == stage["batches_in"] - 1  # the last is under 32 KiB
    if cpus >= 2:
        rows = 30 * 4096
        table, stage, _ = run(tmp_path, "auto-one", f"{udf('slow.py')}:slow_linear", rows, "--share-input", "auto",
                              "--credits", "4", workers=1, batch_rows=4096, share=None, env={"ISTHMUS_TEST_DELAY": "0.02"})
        assert table.column("y").to_pylist() == expected_linear(rows)
        assert stage["batches_in"] == stage["shm_batches"] == 30
        assert 8 <= stage["file_batches"] <= 20, stage
        # Under a worker memory limit the file's mapping would count against it: auto copies.
        table, stage, _ = run(tmp_path, "auto-limit", f"{udf('basic.py')}:linear", n, "--share-input", "auto",
                              "--worker-memory-limit", "4Gi", workers=1, share=None)
        assert table.column("y").to_pylist() == expected_linear(n)
        assert stage["file_batches"] == 0 and stage["shm_batches"] == stage["batches_in"] - 1
    src = tmp_path / "in.arrows"
    write_stream(src, w1(10))
    r = run_cli("run", "--input", str(src), "--output", str(tmp_path / "o.arrows"), "--udf", f"{udf('basic.py')}:linear",
                "--share-input", "sometimes")
    assert r.returncode == 2
    assert "--share-input: expected auto, on or off but found 'sometimes'" in r.stderr.decode()
    assert not (tmp_path / "o.arrows").exists()


def test_an_input_file_that_shrinks_under_the_run_fails_it_without_copying_missing_pages(tmp_path):
    # The worker cuts the file short when it gets a batch of the last message (so the host's
    # reader is past every header), and refuses it; the host must not copy the batch from
    # pages the file no longer has (that would kill it with SIGBUS) but fail the run, saying so.
    # No end-of-stream marker: the reader ends at the end of the file it opened, without
    # reading the cut bytes.
    src = tmp_path / "shrinks.arrows"
    write_stream(src, w1(57_344), max_chunksize=16384)  # the last message: 8,192 rows, 128 KiB
    data = src.read_bytes()
    assert data.endswith(b"\xff\xff\xff\xff\x00\x00\x00\x00")
    src.write_bytes(data[:-8])
    out = tmp_path / "o.arrows"
    r = run_cli("run", "--input", str(src), "--output", str(out), "--udf", f"{udf('input_file_shrink.py')}:linear",
                "--workers", "1", "--credits", "4", "--batch-rows", "8192", "--no-progress", "--share-input", "on")
    err = r.stderr.decode()
    assert r.returncode == 1, err  # a run failure, not a crash of the host (-7, SIGBUS)
    lines = [l for l in err.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, err
    assert "the input file shrank while it was read: expected at least" in lines[0]
    assert " when the run opened it) but found " in lines[0]
    assert not out.exists()
