"""End-to-end: the real `isthmus run` against real Python worker processes."""
from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv  # noqa: F401
import pyarrow.ipc as ipc
import pytest

from harness import isthmus_bin, python_bin, run_cli, udf


def write_stream(path, table: pa.Table, max_chunksize: int | None = None):
    with ipc.new_stream(str(path), table.schema) as w:
        for b in table.to_batches(max_chunksize=max_chunksize):
            w.write_batch(b)


def read_any(path) -> pa.Table:
    path = str(path)
    if path.endswith(".arrow"):
        return ipc.open_file(path).read_all()
    return ipc.open_stream(path).read_all()


def w1(n: int) -> pa.Table:
    rng = np.random.default_rng(42)
    return pa.table({"id": pa.array(np.arange(n, dtype=np.int64)), "x": pa.array(rng.uniform(-1, 1, n))})


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error:` line (worker log lines may come before it)."""
    lines = [l for l in result.stderr.decode().splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, result.stderr.decode()
    return lines[0]


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\nstderr:\n{result.stderr.decode()}"


@pytest.mark.parametrize("workers,batch_rows", [(1, 1000), (2, 4096), (4, 777), (2, 65536)])
def test_linear_values_and_order(tmp_path, workers, batch_rows):
    table = w1(20_000)
    src = tmp_path / "in.arrows"
    write_stream(src, table, max_chunksize=3000)
    out = tmp_path / "out.arrow"
    r = run_cli("run", "--input", str(src), "--output", str(out), "--udf", f"{udf('basic.py')}:linear",
                "--workers", str(workers), "--batch-rows", str(batch_rows))
    ok(r)
    got = read_any(out)
    assert got.column_names == ["id", "y"]
    assert got.column("id").to_pylist() == list(range(20_000))
    expected = pc.add(pc.multiply(table.column("x"), 2.0), 1.0)
    assert got.column("y").combine_chunks().equals(expected.combine_chunks())


def test_logistic_score_matches_in_process(tmp_path):
    rng = np.random.default_rng(7)
    n = 10_000
    table = pa.table({f"f{i}": pa.array(rng.standard_normal(n)) for i in range(16)})
    src = tmp_path / "in.arrows"
    write_stream(src, table)
    out = tmp_path / "out.arrows"
    ok(run_cli("run", "--input", str(src), "--output", str(out), "--udf", f"{udf('basic.py')}:logistic",
               "--workers", "2", "--batch-rows", "1500"))
    got = read_any(out).column("score").to_numpy()
    w = np.linspace(-1.0, 1.0, 16)
    x = np.column_stack([table.column(f"f{i}").to_numpy() for i in range(16)])
    np.testing.assert_array_equal(got, 1.0 / (1.0 + np.exp(-(x @ w + 0.25))))


def test_strings_with_nulls(tmp_path):
    texts = ["hello world", None, "a b c", "", "stream of words here", None] * 500
    table = pa.table({"text": pa.array(texts, pa.string())})
    src = tmp_path / "in.arrows"
    write_stream(src, table)
    out = tmp_path / "out.arrows"
    ok(run_cli("run", "--input", str(src), "--output", str(out), "--udf", f"{udf('basic.py')}:text", "--workers", "2",
               "--batch-rows", "100"))
    got = read_any(out)
    assert got.column("upper").to_pylist() == [t.upper() if t is not None else None for t in texts]
    assert got.column("tokens").to_pylist() == [len(t.split(" ")) if t is not None else None for t in texts]


def test_fused_stages(tmp_path):
    table = w1(5000)
    src = tmp_path / "in.arrows"
    write_stream(src, table)
    out = tmp_path / "out.arrows"
    ok(run_cli("run", "--input", str(src), "--output", str(out), "--udf", f"{udf('basic.py')}:linear",
               "--udf", f"{udf('basic.py')}:double_y", "--workers", "2"))
    got = read_any(out)
    assert got.column_names == ["z"]
    expected = [(2 * x + 1) * 2 for x in table.column("x").to_pylist()]
    assert got.column("z").to_pylist() == expected


def test_keep_input_and_select(tmp_path):
    table = pa.table({"id": pa.array(range(100), pa.int64()), "x": pa.array([float(i) for i in range(100)]),
                      "junk": pa.array(["j"] * 100)})
    src = tmp_path / "in.arrows"
    write_stream(src, table)
    out = tmp_path / "out.arrows"
    ok(run_cli("run", "--input", str(src), "--output", str(out), "--udf", f"{udf('basic.py')}:double_x",
               "--select", "id,x", "--keep-input", "--workers", "1"))
    got = read_any(out)
    assert got.column_names == ["id", "x", "x2"]
    assert got.column("x2").to_pylist() == [2.0 * i for i in range(100)]


def test_select_unknown_column_is_usage_error(tmp_path):
    table = w1(10)
    src = tmp_path / "in.arrows"
    write_stream(src, table)
    r = run_cli("run", "--input", str(src), "--output", str(tmp_path / "o.arrows"), "--udf",
                f"{udf('basic.py')}:linear", "--select", "id,nope")
    assert r.returncode == 2
    assert "'nope'" in r.stderr.decode()


def test_keep_input_collision_is_an_error(tmp_path):
    table = w1(100)
    src = tmp_path / "in.arrows"
    write_stream(src, table)
    out = tmp_path / "out.arrows"
    r = run_cli("run", "--input", str(src), "--output", str(out), "--udf", f"{udf('basic.py')}:echo_x", "--keep-input")
    assert r.returncode != 0
    assert "'x'" in r.stderr.decode()
    assert not out.exists()


def test_csv_to_jsonl(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,x\n" + "".join(f"{i},{i / 10}\n" for i in range(50)))
    out = tmp_path / "out.jsonl"
    ok(run_cli("run", "--input", str(src), "--output", str(out), "--udf", f"{udf('basic.py')}:linear", "--workers", "1"))
    lines = out.read_text().splitlines()
    assert len(lines) == 50
    import json
    first = json.loads(lines[3])
    assert first["id"] == 3 and abs(first["y"] - (2 * 0.3 + 1)) < 1e-12


# --- failures -------------------------------------------------------------------------------

def run_w1(tmp_path, ref, *extra, n=10_000, env=None, timeout=120):
    src = tmp_path / "in.arrows"
    write_stream(src, w1(n))
    out = tmp_path / "out.arrows"
    r = run_cli("run", "--input", str(src), "--output", str(out), "--udf", ref, *extra, env=env, timeout=timeout)
    return r, out


def test_exception_shows_traceback_stage_batch_rows(tmp_path):
    r, out = run_w1(tmp_path, f"{udf('basic.py')}:raises_on_row", "--batch-rows", "1000", "--workers", "2")
    assert r.returncode == 1
    err = r.stderr.decode()
    first = error_line(r)
    assert first.startswith("error: stage raises_on_row batch 1 rows 1000–1999")
    assert "ValueError" in first and "bad row id 1234" in first
    assert "Traceback" in err and 'raise ValueError(f"bad row id 1234' in err
    assert not out.exists()


@pytest.mark.parametrize("fault,cause", [("kill_once", "killed by signal 9"),
                                         ("segfault_once", "killed by signal 11"),
                                         ("exit_once", "exited with code 7")])
def test_worker_death_is_retried_exactly_once_output(tmp_path, fault, cause):
    marker = tmp_path / "marker"
    r, out = run_w1(tmp_path, f"{udf('faults.py')}:{fault}", "--batch-rows", "1000", "--workers", "2",
                    env={"ISTHMUS_TEST_MARKER": str(marker)})
    assert r.returncode == 0, r.stderr.decode()
    assert marker.exists(), "the fault never fired"
    got = read_any(out)
    assert got.column("id").to_pylist() == list(range(10_000))
    err = r.stderr.decode()
    assert cause in err
    assert "restarting" in err


def test_segfault_reports_python_traceback(tmp_path):
    r, out = run_w1(tmp_path, f"{udf('faults.py')}:always_segfault", "--batch-rows", "1000", "--workers", "1",
                    "--max-retries", "1")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "worker failed 2 times (last: killed by signal 11 (segmentation fault))" in error_line(r)
    assert "batch 5 rows 5000–5999" in error_line(r)
    assert "always_segfault" in err  # faulthandler's traceback names the function


def test_hang_is_killed_by_timeout_and_retried(tmp_path):
    marker = tmp_path / "marker"
    r, out = run_w1(tmp_path, f"{udf('faults.py')}:hang_once", "--batch-rows", "1000", "--workers", "2",
                    "--timeout", "1s", env={"ISTHMUS_TEST_MARKER": str(marker)})
    assert r.returncode == 0, r.stderr.decode()
    assert "timed out after 1s" in r.stderr.decode()
    assert read_any(out).column("id").to_pylist() == list(range(10_000))


def test_wrong_declared_schema(tmp_path):
    r, out = run_w1(tmp_path, f"{udf('basic.py')}:wrong_schema", n=100)
    assert r.returncode == 1
    err = error_line(r)
    assert err.startswith("error: stage wrong_schema")
    assert "column 'y': expected values convertible to int64, found" in err
    assert err.count("stage wrong_schema") == 1


def test_wrong_return_type(tmp_path):
    r, out = run_w1(tmp_path, f"{udf('basic.py')}:returns_int", n=100)
    assert r.returncode == 1
    err = error_line(r)
    assert "returns_int" in err and "found int" in err


def test_missing_function(tmp_path):
    r, out = run_w1(tmp_path, f"{udf('basic.py')}:no_such_function", n=10)
    assert r.returncode == 2
    err = error_line(r)
    assert "no_such_function" in err and err.startswith("error: ")


def test_missing_udf_file(tmp_path):
    r, out = run_w1(tmp_path, str(tmp_path / "nope.py") + ":f", n=10)
    assert r.returncode == 2
    assert "nope.py" in r.stderr.decode()


def test_missing_input_file(tmp_path):
    r = run_cli("run", "--input", str(tmp_path / "missing.arrows"), "--output", str(tmp_path / "o.arrows"),
                "--udf", f"{udf('basic.py')}:linear")
    assert r.returncode == 2
    assert "missing.arrows" in r.stderr.decode()


def test_bad_flag(tmp_path):
    r = run_cli("run", "--input", "x.arrows", "--output", "y.arrows", "--udf", "a.py:f", "--linger", "soon")
    assert r.returncode == 2
    assert error_line(r).startswith("error: --linger: expected a duration")


def test_missing_package_names_the_fix(tmp_path):
    # A bare virtualenv without the helper.
    bare = tmp_path / "bare"
    subprocess.run([python_bin(), "-m", "venv", "--without-pip", str(bare)], check=True)
    r, out = run_w1(tmp_path, f"{udf('basic.py')}:linear", "--python", str(bare / "bin" / "python"), n=10)
    assert r.returncode == 2
    err = error_line(r)
    assert "pip install" in err, err


def test_missing_interpreter(tmp_path):
    r, out = run_w1(tmp_path, f"{udf('basic.py')}:linear", "--python", str(tmp_path / "no-python"), n=10)
    assert r.returncode == 2
    assert "no-python" in r.stderr.decode()


def test_max_result_bytes(tmp_path):
    r, out = run_w1(tmp_path, f"{udf('basic.py')}:explode", "--max-result-bytes", "64Ki", "--batch-rows", "1000", n=2000)
    assert r.returncode == 1
    assert "--max-result-bytes" in r.stderr.decode()


def test_hash_partition_affinity(tmp_path):
    keys = [f"k{i % 13}" for i in range(3000)]
    table = pa.table({"key": pa.array(keys)})
    src = tmp_path / "in.arrows"
    write_stream(src, table, max_chunksize=250)
    out = tmp_path / "out.arrows"
    ok(run_cli("run", "--input", str(src), "--output", str(out), "--udf", f"{udf('stateful.py')}:slot_of",
               "--key", "key", "--workers", "3", "--batch-rows", "100"))
    got = read_any(out)
    seen: dict[str, set[int]] = {}
    for k, s in zip(got.column("key").to_pylist(), got.column("slot").to_pylist()):
        seen.setdefault(k, set()).add(s)
    assert all(len(v) == 1 for v in seen.values()), seen
    assert len({next(iter(v)) for v in seen.values()}) > 1
    assert sorted(got.column("key").to_pylist()) == sorted(keys)


def test_stats_file(tmp_path):
    import json
    stats = tmp_path / "stats.json"
    r, out = run_w1(tmp_path, f"{udf('basic.py')}:linear", "--stats", str(stats), "--batch-rows", "1000", n=5000)
    ok(r)
    doc = json.loads(stats.read_text())
    assert doc["version"] == 1
    assert doc["rows_in"] == 5000 and doc["rows_out"] == 5000
    py = [s for s in doc["stages"] if s["kind"] == "python"][0]
    assert py["rows_in"] == 5000 and py["batches_in"] == 5
    assert set(py["latency_ms"]) == {"p50", "p90", "p99", "max"}


def test_stdin_stdout_line_by_line():
    """A driver writes one JSON line and waits for its answer before writing the next."""
    env = dict(os.environ)
    env.setdefault("ISTHMUS_PYTHON", python_bin())
    p = subprocess.Popen([isthmus_bin(), "run", "--input", "-", "--from", "jsonl", "--output", "-", "--to", "jsonl",
                          "--udf", f"{udf('basic.py')}:linear", "--batch-rows", "1", "--linger", "0", "--workers", "1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    import json
    try:
        for i in range(5):
            p.stdin.write((json.dumps({"id": i, "x": i * 0.5}) + "\n").encode())
            p.stdin.flush()
            line = p.stdout.readline()
            assert line, p.stderr.read().decode()
            doc = json.loads(line)
            assert doc == {"id": i, "y": i * 0.5 * 2 + 1}
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()


# --- row error policies, udfs, version ------------------------------------------------------

def test_on_error_skip_drops_failing_rows_and_counts_them(tmp_path):
    import json
    stats = tmp_path / "stats.json"
    r, out = run_w1(tmp_path, f"{udf('slow.py')}:raises_on_multiples_of_97", "--on-error", "skip",
                    "--batch-rows", "1000", "--stats", str(stats), n=5000, env={"ISTHMUS_TEST_DELAY": "0"})
    ok(r)
    ids = read_any(out).column("id").to_pylist()
    assert ids == [i for i in range(5000) if i % 97 != 0]
    doc = json.loads(stats.read_text())
    assert [s for s in doc["stages"] if s["kind"] == "python"][0]["rows_failed"] == len([i for i in range(5000) if i % 97 == 0])
    assert "skipped 52 rows" in r.stderr.decode()


def test_on_error_dead_letter_writes_rows_with_errors(tmp_path):
    import json
    dead = tmp_path / "dead.jsonl"
    r, out = run_w1(tmp_path, f"{udf('slow.py')}:raises_on_multiples_of_97", "--on-error", f"dead-letter={dead}",
                    "--batch-rows", "1000", n=3000, env={"ISTHMUS_TEST_DELAY": "0"})
    ok(r)
    records = [json.loads(l) for l in dead.read_text().splitlines()]
    assert [d["id"] for d in records] == [i for i in range(3000) if i % 97 == 0]
    first = records[1]
    assert first["_row"] == 97 and first["_stage"] == "raises_on_multiples_of_97"
    assert first["_error_type"] == "ValueError" and first["_error_message"] == "id 97 is a multiple of 97"
    assert "raise ValueError" in first["_traceback"]
    assert "x" in first  # the original columns travel with the error
    assert read_any(out).num_rows == 3000 - len(records)


def test_on_error_bad_value_is_usage_error(tmp_path):
    r, out = run_w1(tmp_path, f"{udf('basic.py')}:linear", "--on-error", "ignore", n=10)
    assert r.returncode == 2
    assert "expected fail, skip or dead-letter=PATH" in error_line(r)


def test_udfs_lists_declared_schemas():
    r = run_cli("udfs", udf("basic.py"))
    ok(r)
    text = r.stdout.decode()
    assert "logistic" in text and "score: double" in text
    assert "wrong_schema" in text and "y: int64" in text
    # A module that registers nothing lists its plain functions instead.
    r = run_cli("udfs", udf("stateful.py"))
    ok(r)
    assert "slot_of" in r.stdout.decode() and "schema not declared" in r.stdout.decode()


def test_udfs_missing_file():
    r = run_cli("udfs", "/nonexistent/file.py")
    assert r.returncode == 2
    assert "/nonexistent/file.py" in error_line(r)


def test_version_prints_host_protocol_and_helper():
    r = run_cli("--version")
    ok(r)
    out = r.stdout.decode()
    assert "isthmus 0.1.0 (protocol 1.1)" in out
    assert "helper 0.1.0 (protocol 1.1)" in out


def test_target_latency_adapts_batch_sizes(tmp_path):
    import json
    stats = tmp_path / "stats.json"
    r, out = run_w1(tmp_path, f"{udf('basic.py')}:linear", "--target-latency", "20ms",
                    "--batch-rows", "8192", "--stats", str(stats), "--workers", "1", n=100_000)
    ok(r)
    assert read_any(out).column("id").to_pylist() == list(range(100_000))
    py = [s for s in json.loads(stats.read_text())["stages"] if s["kind"] == "python"][0]
    sizes = [int(rows) for _, rows in py["batch_sizes"]]
    assert sizes and all(1 <= s <= 8192 for s in sizes)
    assert len(set(sizes)) > 1  # the size moved


def test_target_latency_with_large_input_chunks_and_a_tight_target(tmp_path):
    # Input chunks of 65,536 rows cut at a size the controller keeps lowering: the batcher
    # holds a remainder larger than the new limit (this crashed the host once).
    import json
    n = 400_000
    src = tmp_path / "in.arrows"
    write_stream(src, w1(n), max_chunksize=65_536)
    out, stats = tmp_path / "out.arrows", tmp_path / "stats.json"
    r = run_cli("run", "--input", str(src), "--output", str(out), "--udf", f"{udf('basic.py')}:linear",
                "--target-latency", "1ms", "--batch-rows", "65536", "--linger", "1s", "--workers", "1",
                "--stats", str(stats))
    ok(r)
    got = read_any(out)
    assert got.column("id").to_pylist() == list(range(n))
    assert got.column("y").to_pylist() == [2 * x + 1 for x in w1(n).column("x").to_pylist()]
    py = [s for s in json.loads(stats.read_text())["stages"] if s["kind"] == "python"][0]
    assert min(rows for _, rows in py["batch_sizes"]) < 65_536


def test_bad_target_latency_is_usage_error(tmp_path):
    r, out = run_w1(tmp_path, f"{udf('basic.py')}:linear", "--target-latency", "fast", n=10)
    assert r.returncode == 2
    assert error_line(r).startswith("error: --target-latency: expected a duration")


def test_directory_and_glob_inputs_read_every_file_in_name_order(tmp_path):
    d = tmp_path / "parts"
    d.mkdir()
    for k in range(3):
        t = pa.table({"id": pa.array(range(k * 100, (k + 1) * 100), pa.int64()), "x": pa.array([float(i) for i in range(100)])})
        write_stream(d / f"part-{k}.arrows", t)
    (d / "README.txt").write_text("not data")
    for src in (str(d), str(d / "part-*.arrows")):
        out = tmp_path / "out.arrows"
        ok(run_cli("run", "--input", src, "--output", str(out), "--udf", f"{udf('basic.py')}:linear", "--workers", "2"))
        assert read_any(out).column("id").to_pylist() == list(range(300))
    r = run_cli("run", "--input", str(tmp_path / "nothing-*.arrows"), "--output", str(tmp_path / "o.arrows"),
                "--udf", f"{udf('basic.py')}:linear")
    assert r.returncode == 2 and "nothing-*.arrows" in error_line(r)


def test_a_malformed_input_file_is_named_in_the_error(tmp_path):
    """Which file is bad: one truncated input, an empty file among a folder's files, and an
    Arrow file read as CSV each give one line that begins with the file's path, exit 1 and no
    output."""
    good = pa.table({"id": pa.array(range(100), pa.int64()), "x": pa.array([float(i) for i in range(100)])})
    write_stream(tmp_path / "good.arrows", good)
    data = (tmp_path / "good.arrows").read_bytes()
    (tmp_path / "cut.arrows").write_bytes(data[: len(data) // 2])
    folder = tmp_path / "parts"
    folder.mkdir()
    write_stream(folder / "a.arrows", good)
    (folder / "b.arrows").write_bytes(b"")
    out = tmp_path / "out.arrows"
    for args, name in ((["--input", str(tmp_path / "cut.arrows")], str(tmp_path / "cut.arrows")),
                       (["--input", str(folder)], str(folder / "b.arrows")),
                       (["--input", str(tmp_path / "good.arrows"), "--from", "csv"], str(tmp_path / "good.arrows"))):
        r = run_cli("run", *args, "--output", str(out), "--udf", f"{udf('basic.py')}:linear")
        assert r.returncode == 1, r.stderr.decode()
        assert error_line(r).startswith(f"error: {name}: "), (args, r.stderr.decode())
        assert not out.exists()


def test_unordered_output_has_every_row_once(tmp_path):
    r, out = run_w1(tmp_path, f"{udf('basic.py')}:linear", "--unordered", "--workers", "2", "--batch-rows", "500", n=10_000)
    ok(r)
    assert sorted(read_any(out).column("id").to_pylist()) == list(range(10_000))


@pytest.mark.parametrize("fmt,cut,arena", [("arrows", "mid-page", "64Mi"), ("arrows", "page", "64Mi"), ("arrows", "page", "0"),
                                           ("arrows", "last-body", "0"), ("csv", "mid-page", "64Mi")])
def test_an_input_truncated_under_the_run_is_an_error_not_a_crash(tmp_path, fmt, cut, arena):
    # Another program cuts the input in half while the run reads it (the UDF does, on the first
    # batch). One worker and one credit keep the host's reader behind the cut: a few 1,000-row
    # messages ahead for Arrow; for CSV, whose reader cuts 65,536-row batches whatever
    # --batch-rows says, up to about 6 of them and its 1 MiB window (under 450,000 rows of the
    # 2,000,000).
    # A mapped input reads zeros up to the end of the last page (a stream may then seem to end
    # early, at a message without its end-of-stream marker) and SIGBUS past it; a file read with
    # read() just ends early. Without the arena, batches go to ZeroMQ as frames. Each way, the
    # host says what changed, leaves no output (nor its temporary file) and exits 1, instead of
    # writing a short output or dying of the signal (or of libzmq's assertion on EFAULT).
    src = tmp_path / f"in.{fmt}"
    if cut == "last-body":
        # Five 128 KiB messages: the reader is through them (and past its end-of-stream check)
        # before the worker cuts the last one's body, which then goes to ZeroMQ from the cut
        # pages: without a copy, send() meets EFAULT and libzmq aborts the host.
        write_stream(src, w1(5 * 8192), max_chunksize=8192)
    elif fmt == "arrows":
        write_stream(src, w1(200_000), max_chunksize=1000)
    else:
        pa.csv.write_csv(w1(2_000_000), str(src))
    size = src.stat().st_size
    cut_at = {"page": size // 2 // 4096 * 4096, "last-body": (size - (64 << 10)) // 4096 * 4096}.get(cut, size // 2 + 3)
    out = tmp_path / "out.arrows"
    r = run_cli("run", "--input", str(src), "--output", str(out), "--udf", f"{udf('truncate_input.py')}:linear",
                "--workers", "1", "--credits", "1", "--batch-rows", "65536" if fmt == "csv" else "8192" if cut == "last-body" else "1000",
                "--share-input", "off", "--shm-arena", arena, "--no-progress",
                env={"TRUNCATE_INPUT": str(src), "TRUNCATE_AT": str(cut_at)})
    assert r.returncode == 1, r.stderr.decode()
    assert error_line(r).endswith(f"input changed: '{src}' shrank while it was read: expected {size} bytes "
                                  f"(its size when it was opened) but found {cut_at}"), r.stderr.decode()
    assert not out.exists()
    assert not list(tmp_path.glob(".out.arrows.tmp-*"))
