"""The benchmark driver behind `make bench` and `isthmus bench` (see bench/README.md).

    ISTHMUS_BIN=.build/release/isthmus ISTHMUS_PYTHON=.venv/bin/python .venv/bin/python bench/run.py
    ... bench/run.py --quick              # 10x fewer rows, about a minute
    ... bench/run.py --only W2,L1,IO,RSS  # a subset
    ... bench/run.py --only ADAPT         # adaptive batch size against the fixed sizes (W2, 1 worker)

Every figure is measured in this run, and throughput is reported as a ratio to a ceiling measured
in the same run on the same data, because the machines this runs on are shared and noisy.
A configuration that fails is reported in the tables with its error line; the driver goes on.
Results: bench/results/latest.md, latest.json ("version": 1) and latest.png (with matplotlib).
The PySpark and Ray Data anchors come from bench/results/anchors.json (`make bench-anchors`, its own
virtualenv) when that file is there; latest.md compares them with this run's best Isthmus figures.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import re
import signal
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")
PINNED = {v: "1" for v in THREAD_VARIABLES}
for _v in THREAD_VARIABLES:  # the value check's in-process run, like the workers (which pin themselves)
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.ipc as ipc  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import hostinfo  # noqa: E402
import workloads  # noqa: E402

BIN = os.path.abspath(os.environ.get("ISTHMUS_BIN") or REPO / ".build" / "release" / "isthmus")
PY = os.environ.get("ISTHMUS_PYTHON") or sys.executable
UDFS = "bench/udfs.py"  # subprocesses run in the repository root
BATCH_ROWS = (1024, 8192, 65536)
WARMUP = 500
TMP = Path(tempfile.gettempdir())
NOISE_S = 0.005
ANCHORS = HERE / "results" / "anchors.json"
#: Goals of the anchors comparison: Isthmus's best steady rows/s over the anchor's rows/s.
ANCHOR_GOALS = {("pyspark", "pandas_udf"): 20.0, ("ray", None): 5.0}
#: ADAPT: W2 on one worker with --target-latency, against the best fixed batch size.
ADAPT_WORKLOAD = "W2"
ADAPT_TARGET = "5ms"
ADAPT_TARGET_MS = 5.0
ADAPT_GOAL_RATIO = 0.8

CEILING = r"""
import importlib.util, json, sys, time
import pyarrow.ipc as ipc
spec = importlib.util.spec_from_file_location("udfs", sys.argv[1]); u = importlib.util.module_from_spec(spec); spec.loader.exec_module(u)
f = getattr(u, sys.argv[2])
batches = ipc.open_stream(sys.argv[3]).read_all().to_batches(int(sys.argv[4]))
for b in batches[:3]:
    f(b)
times = []
for _ in range(int(sys.argv[5])):
    t = time.perf_counter(); n = 0
    for b in batches:
        f(b); n += b.num_rows
    times.append(time.perf_counter() - t)
print(json.dumps({"rows": n, "seconds": min(times), "all_seconds": times}))
"""

RAW_ZMQ = r"""
import json, subprocess, sys, tempfile, time, zmq
n, warmup = int(sys.argv[1]), int(sys.argv[2]); d = tempfile.mkdtemp(); ep = f"ipc://{d}/rr.sock"
peer = subprocess.Popen([sys.executable, "-c",
    f"import zmq\nc=zmq.Context()\ns=c.socket(zmq.REP)\ns.bind('{ep}')\nfor _ in range({n + warmup}): s.send(s.recv())"])
c = zmq.Context(); s = c.socket(zmq.REQ); s.connect(ep)
lat = []
for i in range(n + warmup):
    t = time.perf_counter_ns(); s.send(b"x" * 16); s.recv(); e = time.perf_counter_ns()
    if i >= warmup: lat.append((e - t) / 1000)
peer.wait(); lat.sort()
print(json.dumps({"p50_us": lat[len(lat) // 2], "p90_us": lat[int(len(lat) * 0.9)], "p99_us": lat[int(len(lat) * 0.99)],
                  "mean_us": sum(lat) / len(lat)}))
"""

PY_HOST = r"""
import json, sys, time
import pyarrow as pa
from isthmus.testing import LocalHost
n, warmup = int(sys.argv[2]), int(sys.argv[3])
schema = pa.schema([("id", pa.int64()), ("x", pa.float64())])
lat = []
with LocalHost([sys.argv[1]], schema, workers=1, credits=1, echo_output=False) as host:
    for i in range(n + warmup):
        b = pa.record_batch([pa.array([i], pa.int64()), pa.array([i * 0.5])], schema=schema)
        t = time.perf_counter_ns(); out = host.call(b); e = time.perf_counter_ns()
        assert out.num_rows == 1
        if i >= warmup: lat.append((e - t) / 1000)
lat.sort()
print(json.dumps({"p50_us": lat[len(lat) // 2], "p90_us": lat[int(len(lat) * 0.9)], "p99_us": lat[int(len(lat) * 0.99)],
                  "mean_us": sum(lat) / len(lat)}))
"""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def clean(text: str) -> str:
    """A message without this checkout's or the temporary folder's location."""
    if os.sep in PY:
        text = text.replace(PY, "python")
    return text.replace(str(REPO) + "/", "").replace(str(REPO), ".").replace(str(TMP), "<tmp>")


def rel(path: Path) -> str:
    return os.path.relpath(path, REPO)


class Proc(NamedTuple):
    rc: int
    out: str
    err: str
    wall: float
    memory: dict[str, Any]

    def error_line(self) -> str:
        lines = [l for l in self.err.splitlines() if l.strip()]
        picked = next((l for l in lines if l.startswith("error:")), None) or crash_line(self.rc, lines)
        if picked is None:
            picked = lines[-1] if lines else f"exit status {self.rc}"
        return clean(picked.strip())[:300]


CRASH = re.compile(r"Fatal error|runtime failure|Program crashed")
FRAME = re.compile(r"0x[0-9a-f]+ (?:\[\w+\] )*(.+?)(?: \+ \d+)? in isthmus at ")


def crash_line(rc: int, lines: list[str]) -> str | None:
    """A Swift crash as one line: what failed and the innermost functions of the crashed thread
    (the backtrace itself, with this machine's paths, stays out of the results)."""
    what = next((l for l in lines if CRASH.search(l)), None)
    if what is None:
        return None
    frames: list[str] = []
    crashed = next((i for i, l in enumerate(lines) if l.rstrip().endswith("crashed:")), None)
    for l in lines[crashed + 1:] if crashed is not None else []:
        m = FRAME.search(l)
        if m is None:
            if frames and not l.lstrip()[:1].isdigit():
                break
            continue
        name = m.group(1).strip()
        if "runtime failure" not in name and not name.startswith("specialized ") and name not in frames:
            frames.append(name)
        if len(frames) == 3:
            break
    status = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
    return (f"crashed ({status}): {what.strip(' *')}" + (f" in {' <- '.join(frames)}" if frames else ""))


def _watch_memory(pid: int, stop: threading.Event, memory: dict[str, Any]) -> None:
    """Polls /proc/PID every 10 ms: the kernel's high-water mark of the process's own resident set
    (VmHWM, its Python workers not included), the peaks of its anonymous and file-backed parts (a
    memory-mapped input counts in RssFile), and the CPU seconds of each of its threads as last
    seen (`threads_cpu_s`, by thread name: which host thread a run keeps busy)."""
    status = Path(f"/proc/{pid}/status")
    tasks = Path(f"/proc/{pid}/task")
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    seen: dict[str, tuple[str, float]] = {}
    while not stop.is_set():
        try:
            text = status.read_text()
        except OSError:
            break
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key == "VmHWM":
                memory["vm_hwm_kb"] = max(memory.get("vm_hwm_kb", 0), int(value.split()[0]))
            elif key in ("RssAnon", "RssFile"):
                k = "rss_anon_peak_kb" if key == "RssAnon" else "rss_file_peak_kb"
                memory[k] = max(memory.get(k, 0), int(value.split()[0]))
        try:
            for t in tasks.iterdir():
                stat = (t / "stat").read_text()
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2:].split()
                seen[t.name] = (name, (int(fields[11]) + int(fields[12])) / tick)  # the last value of each thread
        except (OSError, ValueError, IndexError):
            pass
        threads: dict[str, float] = {}
        for name, cpu in seen.values():
            threads[name] = threads.get(name, 0.0) + cpu
        memory["threads_cpu_s"] = threads
        stop.wait(0.01)


def run_proc(args: list[str], env: dict[str, str] | None = None, timeout: float = 900,
             watch_memory: bool = False) -> Proc:
    """Runs a command in the repository root; wall seconds around the process. On a timeout
    the command's process group (its workers too) is killed and rc is -9."""
    e = dict(os.environ)
    e.update(env or {})
    memory: dict[str, Any] = {}
    stop = threading.Event()
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e, cwd=REPO,
                             start_new_session=True)
    except OSError as x:
        return Proc(127, "", f"error: cannot start {clean(args[0])}: {x.strerror}", 0.0, memory)
    watcher = threading.Thread(target=_watch_memory, args=(p.pid, stop, memory), daemon=True) if watch_memory else None
    if watcher:
        watcher.start()
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc = -9
        err += f"\nerror: timed out after {timeout:.0f} s"
    wall = time.perf_counter() - t0
    stop.set()
    if watcher:
        watcher.join()
    return Proc(rc, out, err, wall, memory)


def last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"expected a JSON line in the output but found: {clean(text[-200:])!r}")


class Failed(Exception):
    """A configuration that failed, with its one error line."""


# -- throughput --------------------------------------------------------------------------------

def ceiling(udf: str, data: Path, batch_rows: int, repeats: int = 3) -> dict:
    """The same UDF over the same batches in one Python process, BLAS/OpenMP pinned to one thread
    (set before numpy loads), no IPC: best of `repeats` passes after a warm-up."""
    r = run_proc([PY, "-c", CEILING, UDFS, udf, rel(data), str(batch_rows), str(repeats)], env=PINNED)
    if r.rc != 0:
        raise Failed(r.error_line())
    d = last_json(r.out)
    return {"rows_per_s": d["rows"] / d["seconds"], "seconds": d["seconds"]}


def isthmus_run(udf: str, data: Path, workers: int, batch_rows: int, rows: int, output: Path | None = None,
                timeout: float = 900, target_latency: str | None = None, flags: tuple[str, ...] = ()) -> dict:
    """One `isthmus run`; with target_latency the batch size adapts, batch_rows its upper bound;
    `flags` are added to the command line as they are."""
    with tempfile.TemporaryDirectory() as d:
        stats = Path(d) / "stats.json"
        out = ["--output", str(output)] if output else ["--output", "-", "--to", "null"]
        adapt = ["--target-latency", target_latency] if target_latency else []
        # --batch-bytes high enough that --batch-rows alone sets the batch size.
        r = run_proc([BIN, "run", "--input", rel(data), *out, "--udf", f"{UDFS}:{udf}", "--workers", str(workers),
                      "--batch-rows", str(batch_rows), "--batch-bytes", "256Mi", *adapt, "--stats", str(stats),
                      "--python", PY, "--no-progress", *flags], timeout=timeout, watch_memory=True)
        if r.rc != 0:
            raise Failed(r.error_line())
        s = json.loads(stats.read_text())
    if s.get("rows_out") != rows or s.get("rows_in") != rows:
        raise Failed(f"expected {rows} rows in and out, found {s.get('rows_in')} in and {s.get('rows_out')} out")
    py = next(x for x in s["stages"] if x["kind"] == "python")
    startup = py.get("startup_seconds") or 0.0
    steady = s["wall_seconds"] - startup
    return {"rows_per_s": rows / steady if steady > 0 else float("nan"), "rows_per_s_process": rows / r.wall,
            "process_wall_s": r.wall, "host_wall_s": s["wall_seconds"], "startup_s": startup,
            "batches": s.get("batches_out"), "latency_ms": py.get("latency_ms") or {},
            **({"batch_sizes": py.get("batch_sizes") or []} if target_latency else {}),
            "host_vm_hwm_kb": r.memory.get("vm_hwm_kb"), "host_rss_anon_peak_kb": r.memory.get("rss_anon_peak_kb"),
            "host_rss_file_peak_kb": r.memory.get("rss_file_peak_kb"),
            "host_threads_cpu_s": r.memory.get("threads_cpu_s") or {},
            **{k: py.get(k) for k in ("shm_batches", "doorbell_batches", "file_batches") if py.get(k) is not None}}


def best_run(udf: str, data: Path, workers: int, batch_rows: int, rows: int, repeats: int,
             target_latency: str | None = None, flags: tuple[str, ...] = ()) -> dict:
    runs = [isthmus_run(udf, data, workers, batch_rows, rows, target_latency=target_latency, flags=flags)
            for _ in range(repeats)]
    best = dict(max(runs, key=lambda x: x["rows_per_s"]))
    best["all_rows_per_s"] = [x["rows_per_s"] for x in runs]
    best["all_p99_ms"] = [x["latency_ms"].get("p99") for x in runs]
    return best


def check_values(w: workloads.Workload, data: Path, rows: int) -> dict:
    """One run with a real output (2 workers, 8192-row batches), every value compared with the
    same function applied in this process."""
    udfs = importlib.import_module("udfs")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "check.arrows"
        try:
            isthmus_run(w.udf, data, 2, 8192, rows, output=out)
        except Failed as e:
            return {"ok": False, "result": f"run failed: {e}"}
        got = ipc.open_stream(str(out)).read_all()
    table = ipc.open_stream(str(data)).read_all()
    expected = pa.Table.from_batches([pa.RecordBatch.from_pydict(getattr(udfs, w.udf)(b)) for b in table.to_batches(8192)])
    if got.num_rows != expected.num_rows:
        return {"ok": False, "result": f"expected {expected.num_rows} rows, found {got.num_rows}"}
    if got.schema.names != expected.schema.names or got.schema.types != expected.schema.types:
        return {"ok": False, "result": f"expected schema {expected.schema} but found {got.schema}".replace("\n", "; ")}
    worst = 0.0
    for name in expected.column_names:
        a, b = got.column(name), expected.column(name)
        if a.equals(b):
            continue
        if not pa.types.is_floating(b.type):
            return {"ok": False, "result": f"column {name}: values differ"}
        x, y = a.to_numpy(), b.to_numpy()
        worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(1.0, np.abs(y)))))
    if worst == 0.0:
        return {"ok": True, "result": f"all {rows:,} rows equal"}
    return {"ok": worst <= 1e-12, "result": f"all {rows:,} rows within relative {worst:.1e}"}


def worker_counts(cores: int) -> list[int]:
    counts = {1, 2, cores}
    n = 4
    while n < cores:
        counts.add(n)
        n *= 2
    return sorted(counts)


def throughput(selected: list[workloads.Workload], scale: int, repeats: int, cores: int, results: dict) -> None:
    for w in selected:
        rows = w.rows // scale
        t = time.perf_counter()
        data = w.make(rows)
        log(f"{w.name}: {rows:,} rows in {rel(data)} ({time.perf_counter() - t:.1f} s to load or generate)")
        try:
            check = check_values(w, data, rows)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            check = {"ok": False, "result": f"check failed: {clean(str(e))[:300]}"}
        results["checks"].append({"workload": w.name, "rows": rows, "config": "2 workers, 8192-row batches", **check})
        log(f"{w.name} values: {check['result']}")
        for batch_rows in BATCH_ROWS:
            try:
                ceil = ceiling(w.udf, data, batch_rows)
            except Exception as e:  # noqa: BLE001
                ceil = {"rows_per_s": float("nan"), "error": clean(str(e))[:300]}
                log(f"{w.name} ceiling at {batch_rows}: FAILED {ceil['error']}")
            for workers in worker_counts(cores):
                row: dict[str, Any] = {"workload": w.name, "rows": rows, "batch_rows": batch_rows, "workers": workers,
                                       "ceiling_rows_per_s": ceil["rows_per_s"], "repeats": repeats}
                try:
                    row.update(best_run(w.udf, data, workers, batch_rows, rows, repeats))
                    row["ratio"] = row["rows_per_s"] / ceil["rows_per_s"]
                    row["ratio_process"] = row["rows_per_s_process"] / ceil["rows_per_s"]
                except Exception as e:  # noqa: BLE001
                    row["error"] = clean(str(e))[:300]
                results["throughput"].append(row)
                log(fmt_row(row))


def fmt_row(r: dict) -> str:
    head = f"{r['workload']} batch {r['batch_rows']:>6} workers {r['workers']}"
    if "error" in r:
        return f"{head}: FAILED {r['error']}"
    return (f"{head}: {r['rows_per_s'] / 1e6:8.2f} M rows/s steady, {r['rows_per_s_process'] / 1e6:6.2f} process "
            f"(ceiling {r['ceiling_rows_per_s'] / 1e6:8.2f}; ratio {r['ratio']:.2f}, {r['ratio_process']:.2f}; "
            f"wall {r['process_wall_s']:.2f} s, startup {r['startup_s']:.2f} s)")


# -- adaptive batch size -----------------------------------------------------------------------

def adaptive(scale: int, repeats: int, results: dict) -> dict:
    """ADAPT: W2 on one worker with --target-latency (the batch size adapts, up to the largest fixed
    size), against the best fixed batch size on one worker: taken from this run's W2 rows, or
    measured here when W2 did not run."""
    w = next(x for x in workloads.THROUGHPUT if x.name == ADAPT_WORKLOAD)
    rows = w.rows // scale
    data = w.make(rows)
    res: dict[str, Any] = {"workload": w.name, "rows": rows, "workers": 1, "target_latency": ADAPT_TARGET,
                           "max_batch_rows": max(BATCH_ROWS), "repeats": repeats, "goal_ratio": ADAPT_GOAL_RATIO,
                           "goal_p99_ms": ADAPT_TARGET_MS}
    fixed = [{"batch_rows": r["batch_rows"], "rows_per_s": r["rows_per_s"], "latency_ms": r["latency_ms"],
              "all_rows_per_s": r.get("all_rows_per_s")}
             for r in results["throughput"] if r["workload"] == w.name and r["workers"] == 1 and "error" not in r]
    res["fixed_source"] = f"this run's {w.name} rows" if fixed else "measured for ADAPT"
    if not fixed:
        for batch_rows in BATCH_ROWS:
            try:
                r = best_run(w.udf, data, 1, batch_rows, rows, repeats)
                fixed.append({"batch_rows": batch_rows, "rows_per_s": r["rows_per_s"], "latency_ms": r["latency_ms"],
                              "all_rows_per_s": r["all_rows_per_s"]})
            except Exception as e:  # noqa: BLE001
                fixed.append({"batch_rows": batch_rows, "error": clean(str(e))[:300]})
            f = fixed[-1]
            log(f"ADAPT fixed {batch_rows}: "
                + (f"FAILED {f['error']}" if "error" in f else f"{f['rows_per_s'] / 1e6:.2f} M rows/s"))
    res["fixed"] = fixed
    try:
        a = best_run(w.udf, data, 1, max(BATCH_ROWS), rows, repeats, target_latency=ADAPT_TARGET)
    except Exception as e:  # noqa: BLE001
        res["error"] = clean(str(e))[:300]
        log(f"ADAPT: FAILED {res['error']}")
        return res
    sizes = [[float(t), int(n)] for t, n in a.get("batch_sizes") or []]
    res.update({"rows_per_s": a["rows_per_s"], "all_rows_per_s": a["all_rows_per_s"], "startup_s": a["startup_s"],
                "host_wall_s": a["host_wall_s"], "batches": a["batches"], "latency_ms": a["latency_ms"],
                "p99_ms": a["latency_ms"].get("p99"), "all_p99_ms": a["all_p99_ms"], "batch_sizes": sizes, "sizes_summary": size_summary(sizes)})
    ok = [f for f in fixed if "error" not in f]
    if ok:
        best = max(ok, key=lambda f: f["rows_per_s"])
        res["best_fixed_batch_rows"] = best["batch_rows"]
        res["best_fixed_rows_per_s"] = best["rows_per_s"]
        res["ratio"] = a["rows_per_s"] / best["rows_per_s"]
    log(f"ADAPT: {a['rows_per_s'] / 1e6:.2f} M rows/s adaptive, best fixed "
        f"{mrows(res.get('best_fixed_rows_per_s', float('nan')))} at {res.get('best_fixed_batch_rows')} rows; "
        f"ratio {res.get('ratio', float('nan')):.2f}; p99 {res['p99_ms']} ms; sizes {res['sizes_summary']}")
    return res


def size_summary(sizes: list[list[float]]) -> dict:
    """The batch sizes the controller chose, each [seconds since start, rows]: their range, the
    last one, and the median weighted by how long each size was in force."""
    if not sizes:
        return {}
    ns = [n for _, n in sizes]
    spans = [(sizes[i + 1][0] - sizes[i][0] if i + 1 < len(sizes) else 0.0, sizes[i][1]) for i in range(len(sizes))]
    total = sum(d for d, _ in spans)
    median = None
    if total > 0:
        acc = 0.0
        for d, n in sorted(spans, key=lambda x: x[1]):
            acc += d
            if acc >= total / 2:
                median = n
                break
    return {"changes": len(sizes), "min": min(ns), "max": max(ns), "first": ns[0], "last": ns[-1],
            "time_weighted_median": median}


def trajectory(sizes: list[list[float]], points: int = 12) -> str:
    """At most `points` of the chosen sizes, evenly spread, the first and the last included."""
    if not sizes:
        return "none recorded"
    if len(sizes) <= points:
        picked = sizes
    else:
        picked = [sizes[round(i * (len(sizes) - 1) / (points - 1))] for i in range(points)]
    return " → ".join(f"{n:,} ({t:.3f} s)" for t, n in picked)


# -- scaling -----------------------------------------------------------------------------------

#: SCALE: W2 on a machine with many cores, 1 to 12 workers; goal ≥ 0.7× linear up to 8 workers.
SCALE_WORKLOAD = "W2"
SCALE_WORKERS = (1, 2, 4, 8, 12)
SCALE_BATCH_ROWS = (8192, 65536)
SCALE_ROWS = {"W1": 200_000_000, "W2": 40_000_000, "W3": 20_000_000}
SCALE_GOAL = 0.7
SCALE_GOAL_UP_TO = 8


def scaling(name: str, rows: int, counts: list[int], batch_sizes: list[int], repeats: int, cores: int,
            flags: tuple[str, ...]) -> dict:
    """SCALE: a workload (W2 unless named) with 1, 2, 4, 8 and 12 workers (those that leave the
    host a core of its own), at each batch size. Linear is N × the rows/s of one worker in the
    same run; the single-core in-process ceiling of the same batches is measured too. W2's own
    2M rows last tens of milliseconds at 12 workers, so this runs on more rows (40M of W2 by
    default, 200M of W1)."""
    w = next(x for x in workloads.THROUGHPUT if x.name == name)
    t = time.perf_counter()
    data = w.make(rows)
    log(f"SCALE: {w.name} {rows:,} rows in {rel(data)} ({time.perf_counter() - t:.1f} s to load or generate)")
    usable = [n for n in counts if n < cores or n == 1]
    skipped = [n for n in counts if n not in usable]
    if skipped:
        log(f"SCALE: {cores} usable cores: skipping {', '.join(map(str, skipped))} workers (the host needs a core)")
    res: dict[str, Any] = {"workload": w.name, "rows": rows, "workers": usable, "skipped_workers": skipped,
                           "batch_rows": batch_sizes, "repeats": repeats, "flags": list(flags), "goal": SCALE_GOAL,
                           "goal_up_to_workers": SCALE_GOAL_UP_TO, "cores": cores, "runs": []}
    for batch_rows in batch_sizes:
        try:
            ceil = ceiling(w.udf, data, batch_rows)["rows_per_s"]
        except Exception as e:  # noqa: BLE001
            ceil = float("nan")
            log(f"SCALE ceiling at {batch_rows}: FAILED {clean(str(e))[:300]}")
        one: float | None = None
        for workers in usable:
            row: dict[str, Any] = {"batch_rows": batch_rows, "workers": workers, "ceiling_rows_per_s": ceil}
            try:
                r = best_run(w.udf, data, workers, batch_rows, rows, repeats, flags=flags)
                row.update({k: r.get(k) for k in ("rows_per_s", "all_rows_per_s", "rows_per_s_process", "startup_s",
                                                  "host_wall_s", "batches", "latency_ms", "host_threads_cpu_s",
                                                  "file_batches", "shm_batches")})
                if workers == 1:
                    one = r["rows_per_s"]
                if one:
                    row["speedup"] = r["rows_per_s"] / one
                    row["efficiency"] = row["speedup"] / workers
                row["ratio_to_ceiling"] = r["rows_per_s"] / ceil
                row["efficiency_to_ceiling"] = row["ratio_to_ceiling"] / workers
            except Exception as e:  # noqa: BLE001
                row["error"] = clean(str(e))[:300]
            res["runs"].append(row)
            if "error" in row:
                log(f"SCALE batch {batch_rows} workers {workers}: FAILED {row['error']}")
            else:
                busiest = max(row["host_threads_cpu_s"].items(), key=lambda kv: kv[1], default=("none", 0.0))
                log(f"SCALE batch {batch_rows:>6} workers {workers:>2}: {row['rows_per_s'] / 1e6:8.2f} M rows/s "
                    f"(speedup {row.get('speedup', float('nan')):.2f}, efficiency {row.get('efficiency', float('nan')):.2f}; "
                    f"{row['ratio_to_ceiling']:.2f}x the single-core ceiling {ceil / 1e6:.2f}); "
                    f"busiest host thread {busiest[0]} {busiest[1]:.2f} CPU s of {row['host_wall_s']:.2f} s")
    judged = [r for r in res["runs"] if "efficiency" in r and r["workers"] <= SCALE_GOAL_UP_TO]
    if judged:
        per_size = {}
        for b in batch_sizes:
            eff = [r["efficiency"] for r in judged if r["batch_rows"] == b]
            if eff:
                per_size[str(b)] = {"worst_efficiency": min(eff), "met": min(eff) >= SCALE_GOAL}
        res["goal_by_batch_rows"] = per_size
    return res


def scaling_markdown(res: dict) -> list[str]:
    sc = res["scaling"]
    flags = f" with `{' '.join(sc['flags'])}`" if sc["flags"] else ""
    md = ["", f"## SCALE: {sc['workload']} on {sc['cores']} cores, 1 to {max(sc['workers'])} workers", "",
          f"{sc['rows']:,} rows of {sc['workload']}; `isthmus run --to null`{flags}, best of {sc['repeats']} runs per "
          "configuration, steady rows/s as above. **Speedup** = rows/s ÷ rows/s with 1 worker at the same batch size; "
          "**efficiency** = speedup ÷ workers (1.0 is linear). **× ceiling** = rows/s ÷ the single-core in-process "
          f"ceiling of the same batches. Goal: efficiency ≥ {sc['goal']} up to {sc['goal_up_to_workers']} workers. "
          "**Batches read in place**: the share of batches the workers read from the input file rather than from "
          "a copy in the arena (PROTOCOL.md §19; `--share-input auto` decides batch by batch when cores are left "
          "over). **Busiest host thread**: the host thread with the most CPU seconds in the best run (from /proc), "
          "against the host's wall seconds.", "",
          *table_head("batch rows", "workers", "steady M rows/s", "speedup", "efficiency", "× ceiling", "ceiling M rows/s",
                      "p50 batch ms", "batches read in place", "busiest host thread (CPU s / wall s)", left=-1)]
    for r in sc["runs"]:
        head = f"| {r['batch_rows']} | {r['workers']} |"
        if "error" in r:
            md.append(f"{head} failed: {r['error']} | | | | | | | |")
            continue
        shared = (f"{r['file_batches'] / r['batches']:.0%}" if r.get("file_batches") is not None and r.get("batches")
                  else "n/a")
        busiest = max(r["host_threads_cpu_s"].items(), key=lambda kv: kv[1], default=None)
        p50 = r["latency_ms"].get("p50")
        md.append(f"{head} {mrows(r['rows_per_s'])} | {r.get('speedup', float('nan')):.2f} | "
                  f"{r.get('efficiency', float('nan')):.2f} | {r['ratio_to_ceiling']:.2f} | {mrows(r['ceiling_rows_per_s'])} | "
                  f"{'n/a' if p50 is None else f'{p50:.2f}'} | {shared} | "
                  + (f"{busiest[0]} {busiest[1]:.2f} / {r['host_wall_s']:.2f}" if busiest else "n/a") + " |")
    for b, g in (sc.get("goal_by_batch_rows") or {}).items():
        md.append("")
        md.append(f"{b}-row batches: lowest efficiency up to {sc['goal_up_to_workers']} workers "
                  f"{g['worst_efficiency']:.2f} (goal ≥ {sc['goal']}: {'met' if g['met'] else 'NOT met'}).")
    if sc["skipped_workers"]:
        md += ["", f"Not run: {', '.join(map(str, sc['skipped_workers']))} workers (no core left for the host on "
                   f"{sc['cores']} usable cores)."]
    return md


# -- latency -----------------------------------------------------------------------------------

L1_PATHS = ("isthmus_submit", "isthmus_submit_nospin", "isthmus_submit_socket", "pure_python_host", "raw_pyzmq_round_trip")


def latency(n: int, rounds: int = 3) -> dict:
    """The L1 paths, interleaved over `rounds` rounds; each path reports its median round
    (by p50), and every round's p50. Each path runs twice: as the scheduler places it, and with
    every process of the path pinned to one CPU (`taskset -c 0`, inherited by the workers). A
    one-row request is a chain of thread wake-ups in which only one thread works at a time; on
    a virtual machine a wake-up on another, idle virtual CPU costs tens of microseconds, so
    pinning measures the path's own cost and the unpinned run what the placement adds."""
    out: dict[str, Any] = {"requests": n, "warmup": WARMUP, "rounds": rounds}
    base = {
        "isthmus_submit": [BIN, "bench", "latency", "--udf", f"{UDFS}:{workloads.L1_UDF}", "--requests", str(n),
                           "--warmup", str(WARMUP), "--python", PY],
        # The same with a caller that sleeps at once instead of polling for its answer.
        "isthmus_submit_nospin": [BIN, "bench", "latency", "--udf", f"{UDFS}:{workloads.L1_UDF}", "--requests", str(n),
                                  "--warmup", str(WARMUP), "--python", PY, "--spin", "0"],
        # The same without the arena, so without doorbells: every request through the socket.
        "isthmus_submit_socket": [BIN, "bench", "latency", "--udf", f"{UDFS}:{workloads.L1_UDF}", "--requests", str(n),
                                  "--warmup", str(WARMUP), "--python", PY, "--shm-arena", "0"],
        "pure_python_host": [PY, "-c", PY_HOST, f"{UDFS}:{workloads.L1_UDF}", str(n), str(WARMUP)],
        "raw_pyzmq_round_trip": [PY, "-c", RAW_ZMQ, str(n), str(WARMUP)],
    }
    cases = dict(base)
    taskset = shutil.which("taskset")
    if taskset:
        cases.update({f"{k}_one_cpu": [taskset, "-c", "0", *v] for k, v in base.items()})
    else:
        out["one_cpu"] = "taskset not found: the pinned runs were skipped"
    got: dict[str, list[dict]] = {k: [] for k in cases}
    errors: dict[str, str] = {}
    for _ in range(rounds):
        for key, args in cases.items():
            r = run_proc(args, timeout=600)
            try:
                if r.rc != 0:
                    raise Failed(r.error_line())
                d = last_json(r.out)
                got[key].append({k: d[k] for k in ("p50_us", "p90_us", "p99_us", "mean_us") if k in d})
            except Exception as e:  # noqa: BLE001
                errors[key] = clean(str(e))[:300]
    for key, samples in got.items():
        if not samples:
            out[key] = {"error": errors.get(key, "no result")}
        else:
            samples.sort(key=lambda d: d.get("p50_us", float("inf")))
            out[key] = {**samples[len(samples) // 2], "p50_rounds_us": [d.get("p50_us") for d in samples]}
            if key in errors:
                out[key]["error_in_a_round"] = errors[key]
        log(f"L1 {key}: {out[key]}")
    return out


# -- Arrow I/O ---------------------------------------------------------------------------------

def best_wall(args: list[str], n: int = 3) -> float:
    walls = []
    for _ in range(n):
        r = run_proc(args, timeout=600)
        if r.rc != 0:
            raise Failed(r.error_line())
        walls.append(r.wall)
    return min(walls)


def best_pyarrow(code: str, n: int = 3) -> tuple[float, float]:
    """Best process wall time of `python -c code`, and best time of its non-import lines as timed
    inside that process (imports before the clock starts)."""
    lines = code.splitlines()
    imports = [l for l in lines if l.startswith("import ")]
    body = [l for l in lines if not l.startswith("import ")]
    timed = "\n".join(imports + ["import time as _time", "_t0 = _time.perf_counter()", *body,
                                  "print(_time.perf_counter() - _t0)"])
    walls, inner = [], []
    for _ in range(n):
        r = run_proc([PY, "-c", timed], timeout=600)
        if r.rc != 0:
            raise Failed(r.error_line())
        walls.append(r.wall)
        inner.append(float(r.out.strip().splitlines()[-1]))
    return min(walls), min(inner)


def arrow_io(scale: int) -> dict:
    rows, csv_rows = workloads.IO_STREAM_ROWS // scale, workloads.IO_CSV_ROWS // scale
    data, csv = rel(workloads.w1(rows)), rel(workloads.csv_file(csv_rows))
    res: dict[str, Any] = {"cases": []}
    try:
        res["isthmus_noop_s"] = best_wall([BIN, "convert", "--help"], 5)
    except Failed as e:
        res["error"] = str(e)
        return res
    with tempfile.TemporaryDirectory() as d:
        out = str(Path(d) / "out.arrows")
        write = f"w = ipc.new_stream({out!r}, t.schema); w.write_table(t); w.close()"
        cases = [
            ("IPC stream read", rows, [BIN, "inspect", "--rows", "0", data],
             f"import pyarrow.ipc as ipc\nt = ipc.open_stream({data!r}).read_all()", False),
            ("IPC stream read + write", rows, [BIN, "convert", data, out],
             f"import pyarrow.ipc as ipc\nt = ipc.open_stream({data!r}).read_all()\n{write}", True),
            ("CSV read, written as IPC stream", csv_rows, [BIN, "convert", csv, out],
             f"import pyarrow.csv as c, pyarrow.ipc as ipc\nt = c.read_csv({csv!r})\n{write}", True),
            ("same, pyarrow on one thread", csv_rows, [BIN, "convert", csv, out],
             "import pyarrow as pa, pyarrow.csv as c, pyarrow.ipc as ipc\npa.set_cpu_count(1); pa.set_io_thread_count(1)\n"
             f"t = c.read_csv({csv!r}, read_options=c.ReadOptions(use_threads=False))\n{write}", True),
        ]
        for label, n, ours, theirs, writes in cases:
            row: dict[str, Any] = {"case": label, "rows": n}
            try:
                row["isthmus_s"] = best_wall(ours)
                if writes:
                    got = ipc.open_stream(out).read_all().num_rows
                    if got != n:
                        raise Failed(f"expected {n} rows in the Isthmus output, found {got}")
                row["pyarrow_s"], row["pyarrow_net_s"] = best_pyarrow(theirs)
                row["ratio"] = row["pyarrow_s"] / row["isthmus_s"]
                row["isthmus_net_s"] = max(0.0, row["isthmus_s"] - res["isthmus_noop_s"])
                # A net time of a few milliseconds is process-start noise: no ratio.
                small = min(row["isthmus_net_s"], row["pyarrow_net_s"]) < NOISE_S
                row["ratio_net"] = None if small else row["pyarrow_net_s"] / row["isthmus_net_s"]
            except Exception as e:  # noqa: BLE001
                row["error"] = clean(str(e))[:300]
            res["cases"].append(row)
            log(f"IO {label}: {json.dumps(row)}")
    return res


# -- host memory -------------------------------------------------------------------------------

def host_memory(scale: int) -> dict:
    small, big = (n // scale for n in workloads.RSS_ROWS)
    res: dict[str, Any] = {"workers": 2, "batch_rows": 65536, "runs": []}
    for rows in (small, big):
        t = time.perf_counter()
        data = workloads.w1(rows)
        log(f"RSS: {rows:,} rows in {rel(data)} ({time.perf_counter() - t:.1f} s to load or generate)")
        try:
            r = isthmus_run("w1", data, 2, 65536, rows)
            res["runs"].append({"rows": rows, "vm_hwm_kb": r["host_vm_hwm_kb"], "rss_anon_peak_kb": r["host_rss_anon_peak_kb"],
                                "rss_file_peak_kb": r["host_rss_file_peak_kb"], "process_wall_s": r["process_wall_s"]})
        except Exception as e:  # noqa: BLE001
            res["runs"].append({"rows": rows, "error": clean(str(e))[:300]})
        log(f"RSS {rows:,} rows: {res['runs'][-1]}")
    a, b = res["runs"]
    if "error" not in a and "error" not in b:
        for k in ("vm_hwm_kb", "rss_anon_peak_kb"):
            if a.get(k) and b.get(k):
                res[f"ratio_{k[:-3]}"] = b[k] / a[k]
    return res


# -- machine and anchors -----------------------------------------------------------------------

def machine() -> dict:
    r = run_proc([BIN, "--version"], timeout=60)
    version = r.out.strip().splitlines()[0] if r.rc == 0 and r.out.strip() else "unknown"
    r = run_proc([PY, "-c", "import platform, pyarrow, numpy, zmq; "
                  "print(platform.python_version(), pyarrow.__version__, numpy.__version__, zmq.__version__)"], timeout=60)
    py, pyarrow, numpy, pyzmq = (r.out.split() + ["unknown"] * 4)[:4] if r.rc == 0 else ["unknown"] * 4
    return {**hostinfo.host(), "isthmus": version, "python": py, "pyarrow": pyarrow, "numpy": numpy, "pyzmq": pyzmq}


def load_anchors(this_machine: dict, date: str) -> dict:
    """bench/results/anchors.json (written by bench/anchors.py, `make bench-anchors`) when present,
    with whether it was measured on this machine (same CPU model and core count) and on this day."""
    if not ANCHORS.exists():
        return {"missing": f"{rel(ANCHORS)} not found: run make bench-anchors (PySpark and Ray Data in .venv-anchors)"}
    try:
        a = json.loads(ANCHORS.read_text())
        m = a.get("machine") or {}
        return {"file": rel(ANCHORS), "date": a["date"], "quick": bool(a.get("quick")), "machine": m,
                "settings": a.get("settings") or {}, "status": a.get("status") or {}, "results": a["results"],
                "same_machine": m.get("cpu") == this_machine["cpu"] and m.get("cores") == this_machine["cores"],
                "same_day": str(a["date"])[:10] == date[:10]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        return {"error": f"cannot read {rel(ANCHORS)}: {clean(str(e))[:200]}"}


def compare_anchors(res: dict) -> list[dict]:
    """Per throughput workload of this run: Isthmus's best steady rows/s against each anchor of that
    workload in anchors.json, and the goals."""
    a = res["anchors"]
    if "results" not in a:
        return []
    out = []
    for w in workloads.THROUGHPUT:
        ours = [r for r in res["throughput"] if r["workload"] == w.name and "error" not in r]
        theirs = [r for r in a["results"] if r.get("workload") == w.name]
        if not ours:
            continue
        best = max(ours, key=lambda r: r["rows_per_s"])
        row: dict[str, Any] = {"workload": w.name, "rows": best["rows"], "isthmus_rows_per_s": best["rows_per_s"],
                               "isthmus_config": f"{best['rows']:,} rows, {best['batch_rows']}-row batches, {best['workers']} "
                                                 f"worker{'s' if best['workers'] != 1 else ''}",
                               "anchors": []}
        for r in theirs:
            x = {k: r.get(k) for k in ("system", "method", "rows", "rows_per_s", "error") if r.get(k) is not None}
            if r.get("rows_per_s"):
                x["ratio"] = row["isthmus_rows_per_s"] / r["rows_per_s"]
            row["anchors"].append(x)
        goals = {}
        for (system, method), goal in ANCHOR_GOALS.items():
            # A system's goal with no method named holds against its fastest method.
            cands = [x for x in row["anchors"] if x.get("system") == system and (method is None or x.get("method") == method)
                     and "ratio" in x]
            key = f"{system}{'_' + method if method else ''}"
            if cands:
                worst = min(cands, key=lambda x: x["ratio"])
                goals[key] = {"goal": goal, "ratio": worst["ratio"], "against": worst["method"],
                              "met": worst["ratio"] >= goal}
            else:
                goals[key] = {"goal": goal, "ratio": None, "met": None}
        row["goals"] = goals
        out.append(row)
    return out


# -- report ------------------------------------------------------------------------------------

def mrows(v: float) -> str:
    return "n/a" if v != v else f"{v / 1e6:.2f}"


def mib(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.0f}"


def markdown(res: dict) -> str:
    m = res["machine"]
    md = [f"# Isthmus benchmark results{' (--quick)' if res['quick'] else ''}", "",
          f"Date: {res['date']}. Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), 1-minute load "
          f"{m['load_at_start']} at the start; {m['os']}. "
          f"{m['isthmus']}; Python {m['python']}, pyarrow {m['pyarrow']}, numpy {m['numpy']}, pyzmq {m['pyzmq']}.", ""]
    if res["throughput"]:
        md += ["## Throughput", "",
               f"Best of {res['repeats']} runs per configuration of `isthmus run --to null`. **Steady** rows/s = rows ÷ "
               "(host wall seconds − worker startup seconds), both from `--stats`; **process** rows/s = rows ÷ the wall "
               "time around the whole process (interpreter start and imports included). **Ceiling**: the same UDF over "
               "the same batches in one Python process, no IPC, BLAS/OpenMP on one thread (best of 3 passes). "
               "Ratio = Isthmus rows/s ÷ ceiling rows/s.", "",
               *table_head("workload", "rows", "batch rows", "workers", "steady M rows/s", "ceiling M rows/s", "ratio",
                           "process M rows/s", "process ratio", "process wall s", "host wall s", "startup s", "p50 batch ms",
                           "host VmHWM MiB", left=1)]
        for r in res["throughput"]:
            head = f"| {r['workload']} | {r['rows']:,} | {r['batch_rows']} | {r['workers']} |"
            if "error" in r:
                md.append(f"{head} failed: {r['error']} | {mrows(r['ceiling_rows_per_s'])} | | | | | | | | |")
                continue
            p50 = r["latency_ms"].get("p50")
            md.append(f"{head} {mrows(r['rows_per_s'])} | {mrows(r['ceiling_rows_per_s'])} | {r['ratio']:.2f} | "
                      f"{mrows(r['rows_per_s_process'])} | {r['ratio_process']:.3f} | {r['process_wall_s']:.2f} | "
                      f"{r['host_wall_s']:.2f} | {r['startup_s']:.2f} | {'n/a' if p50 is None else f'{p50:.2f}'} | "
                      f"{mib(r.get('host_vm_hwm_kb'))} |")
        md += ["", "Values (one run per workload with a real output, compared with the function applied in-process):", "",
               "| workload | rows | config | result |", "| --- | ---: | --- | --- |"]
        for c in res["checks"]:
            md.append(f"| {c['workload']} | {c['rows']:,} | {c['config']} | {c['result']}{'' if c['ok'] else ' (FAILED)'} |")
    if res["latency"]:
        lat = res["latency"]
        md += ["", "## L1: one-row request latency", "",
               f"{lat['requests']:,} sequential one-row requests (id int64, x float64) → y = 2x + 1, after "
               f"{lat['warmup']} untimed ones; the paths interleaved over {lat['rounds']} rounds, each row the "
               "path's median round (by p50). Each path also runs with all its processes pinned to one CPU "
               "(`taskset -c 0`): a request is a chain of thread wake-ups with one thread working at a time, "
               "and on a virtual machine a wake-up on another, idle virtual CPU is expensive.", "",
               "| path | p50 µs | p90 µs | p99 µs | mean µs | p50 of each round µs |",
               "| --- | ---: | ---: | ---: | ---: | --- |"]
        labels = {"isthmus_submit": "Isthmus online submit (`isthmus bench latency`, Swift host; doorbells, PROTOCOL.md §18; "
                                    "the caller polls up to 300 µs for its answer while a CPU is left over)",
                  "isthmus_submit_nospin": "Isthmus online submit, doorbells, the caller sleeps at once (`--spin 0`)",
                  "isthmus_submit_socket": "Isthmus online submit through the socket only (`--shm-arena 0`: no doorbells)",
                  "pure_python_host": "pure-Python pyzmq host (`isthmus.testing.LocalHost`), same worker and UDF",
                  "raw_pyzmq_round_trip": "raw pyzmq REQ/REP round trip of 16 bytes, two processes, ipc://"}
        rows = [(k, labels[k]) for k in L1_PATHS] + [(f"{k}_one_cpu", labels[k] + ", **all on one CPU**")
                                                     for k in L1_PATHS if f"{k}_one_cpu" in lat]
        for key, label in rows:
            v = lat.get(key, {})
            if "error" in v:
                md.append(f"| {label} | failed: {v['error']} | | | | |")
            else:
                md.append(f"| {label} | " + " | ".join(f"{v[k]:.0f}" if k in v else "n/a"
                                                       for k in ("p50_us", "p90_us", "p99_us", "mean_us"))
                          + " | " + ", ".join(f"{x:.0f}" for x in v.get("p50_rounds_us", []) if x is not None) + " |")
    if res["io"]:
        io = res["io"]
        md += ["", "## Arrow I/O", ""]
        if "error" in io:
            md.append(f"failed: {io['error']}")
        else:
            md += [f"Process wall time, best of 3: Isthmus (`isthmus inspect --rows 0`, `isthmus convert`) against a "
                   f"`python -c` running pyarrow (`ipc.open_stream(...).read_all()`, `ipc.new_stream` + `write_table`, "
                   f"`csv.read_csv`). Speed ratio = pyarrow s ÷ Isthmus s (> 1: Isthmus faster). **Net**: Isthmus's wall time "
                   f"minus a no-op run of the binary (`isthmus convert --help`, {io['isthmus_noop_s'] * 1000:.0f} ms); "
                   "pyarrow's work timed inside its process after the imports (best of 3 each); no net ratio where a "
                   "net time is under 5 ms (process-start noise). Both sides read the IPC stream without copying "
                   "its buffers, so the read-only case times opening and walking the batches.", "",
                   "| case | rows | Isthmus s | pyarrow s | speed ratio | Isthmus net s | pyarrow net s | net speed ratio |",
                   "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for r in io["cases"]:
                if "error" in r:
                    md.append(f"| {r['case']} | {r['rows']:,} | failed: {r['error']} | | | | | |")
                else:
                    net = "n/a (under 5 ms)" if r["ratio_net"] is None else f"{r['ratio_net']:.2f}"
                    md.append(f"| {r['case']} | {r['rows']:,} | {r['isthmus_s']:.3f} | {r['pyarrow_s']:.3f} | {r['ratio']:.2f} | "
                              f"{r['isthmus_net_s']:.3f} | {r['pyarrow_net_s']:.3f} | {net} |")
    if res["rss"]:
        rss = res["rss"]
        md += ["", "## Host memory", "",
               f"W1, {rss['workers']} workers, {rss['batch_rows']}-row batches; the host process only (its Python workers "
               "not included), from /proc every 10 ms: VmHWM is the kernel's peak resident set; RssAnon is memory the "
               "host allocated, RssFile the pages of files it maps (the input). Goal: 10× rows ≤ 1.1× memory.", "",
               "| rows | VmHWM MiB | peak RssAnon MiB | peak RssFile MiB | process wall s |", "| ---: | ---: | ---: | ---: | ---: |"]
        for r in rss["runs"]:
            if "error" in r:
                md.append(f"| {r['rows']:,} | failed: {r['error']} | | | |")
            else:
                md.append(f"| {r['rows']:,} | {mib(r['vm_hwm_kb'])} | {mib(r['rss_anon_peak_kb'])} | "
                          f"{mib(r['rss_file_peak_kb'])} | {r['process_wall_s']:.2f} |")
        if "ratio_vm_hwm" in rss or "ratio_rss_anon_peak" in rss:
            md += ["", f"10× rows ÷ 1× rows: VmHWM {rss.get('ratio_vm_hwm', float('nan')):.2f}, "
                       f"RssAnon {rss.get('ratio_rss_anon_peak', float('nan')):.2f}."]
    if res.get("adapt"):
        md += adapt_markdown(res["adapt"])
    if res.get("scaling"):
        md += scaling_markdown(res)
    md += anchors_markdown(res)
    return "\n".join(md) + "\n"


def adapt_markdown(a: dict) -> list[str]:
    md = ["", f"## ADAPT: adaptive batch size ({a['workload']}, {a['workers']} worker, "
              f"`--target-latency {a['target_latency']}`)", "",
          f"{a['rows']:,} rows; `isthmus run --target-latency {a['target_latency']} --batch-rows {a['max_batch_rows']}` "
          f"(AIMD sizing up to {a['max_batch_rows']:,} rows) against fixed batch sizes on one worker "
          f"({a['fixed_source']}); best of {a['repeats']} runs each, steady rows/s as above. Latencies are the "
          "per-batch latency percentiles of the Python stage from `--stats`. "
          f"Goals: adaptive ≥ {a['goal_ratio']}× the best fixed size, p99 batch latency under {a['goal_p99_ms']:g} ms.", "",
          "| config | steady M rows/s | p50 batch ms | p99 batch ms | max batch ms |", "| --- | ---: | ---: | ---: | ---: |"]

    def ms(d: dict, k: str) -> str:
        v = (d or {}).get(k)
        return "n/a" if v is None else f"{v:.2f}"

    if "error" in a:
        md.append(f"| adaptive | failed: {a['error']} | | | |")
    else:
        md.append(f"| adaptive, target {a['target_latency']} | {mrows(a['rows_per_s'])} | {ms(a['latency_ms'], 'p50')} | "
                  f"{ms(a['latency_ms'], 'p99')} | {ms(a['latency_ms'], 'max')} |")
    for f in a["fixed"]:
        best = " (best fixed)" if f.get("batch_rows") == a.get("best_fixed_batch_rows") else ""
        if "error" in f:
            md.append(f"| fixed {f['batch_rows']} rows | failed: {f['error']} | | | |")
        else:
            md.append(f"| fixed {f['batch_rows']} rows{best} | {mrows(f['rows_per_s'])} | {ms(f['latency_ms'], 'p50')} | "
                      f"{ms(f['latency_ms'], 'p99')} | {ms(f['latency_ms'], 'max')} |")
    if "error" not in a:
        def verdict(ok: bool | None) -> str:
            return "n/a" if ok is None else ("met" if ok else "NOT met")
        ratio = a.get("ratio")
        p99 = a.get("p99_ms")
        every = [x for x in a.get("all_p99_ms") or [] if x is not None]
        md += ["", f"Adaptive ÷ best fixed ({a.get('best_fixed_batch_rows', 'n/a')} rows): "
                   f"{'n/a' if ratio is None else f'{ratio:.2f}'} (goal ≥ {a['goal_ratio']}: "
                   f"{verdict(None if ratio is None else ratio >= a['goal_ratio'])}). "
                   f"p99 batch latency: {'n/a' if p99 is None else f'{p99:.2f} ms'} in the fastest adaptive run "
                   f"(every run: {', '.join(f'{x:.2f}' for x in every) or 'n/a'} ms; goal under {a['goal_p99_ms']:g} ms "
                   f"in every run: {verdict(max(every) < a['goal_p99_ms'] if every else None)})."]
        sm = a.get("sizes_summary") or {}
        if sm:
            med = sm["time_weighted_median"]
            md += ["", f"Sizes chosen (rows, seconds since the run started; {sm['changes']} recorded, from "
                       f"{sm['min']:,} to {sm['max']:,}, last {sm['last']:,}, time-weighted median "
                       f"{'n/a' if med is None else f'{med:,}'}): " + trajectory(a["batch_sizes"]) + "."]
        else:
            md += ["", "Sizes chosen: none recorded in `--stats` (`batch_sizes`)."]
    return md


def anchors_markdown(res: dict) -> list[str]:
    a = res["anchors"]
    md = ["", "## Anchors: PySpark and Ray Data", ""]
    if "missing" in a or "error" in a:
        return md + [f"Not compared: {a.get('missing') or a.get('error')}."]
    st = a.get("settings") or {}
    notes = []
    if not a["same_machine"]:
        notes.append(f"measured on another machine ({a['machine'].get('cpu')}, {a['machine'].get('cores')} cores)")
    if not a["same_day"]:
        notes.append("measured on another day")
    if a["quick"] != res["quick"]:
        notes.append("measured with --quick" if a["quick"] else "measured at full size while this run is --quick")
    m = a["machine"]
    md += [f"From `{a['file']}` (`make bench-anchors`), {a['date']}"
           + (f" — **{'; '.join(notes)}**" if notes else ", this machine, this day") + ". "
           f"PySpark {m.get('pyspark', 'n/a')} (`{st.get('spark_master', 'local[2]')}`, input cached, pandas_udf and "
           f"mapInArrow, {st.get('batch_rows', 'n/a')}-row Arrow batches) and Ray Data {m.get('ray', 'n/a')} "
           f"({st.get('cpus', 2)} CPUs, `map_batches` with pyarrow and pandas batches of {st.get('batch_rows', 'n/a')} rows), "
           "the same functions on the same data, warm-up excluded, values checked. "
           "Isthmus: the best steady rows/s of this run for the workload. Ratio = Isthmus ÷ anchor. "
           "Goals: ≥ 20× PySpark pandas_udf, ≥ 5× Ray Data (its fastest method).", ""]
    for system, line in (a.get("status") or {}).items():
        if line != "ok":
            md.append(f"{system}: {line}")
            md.append("")
    rows = res.get("anchor_comparison") or []
    if not rows:
        return md + ["No throughput workload (W1, W2, W3) ran without failing in this run: nothing to compare."]
    md += ["| workload | Isthmus M rows/s (config) | system | method | anchor rows | anchor M rows/s | ratio |",
           "| --- | --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        ours = f"{mrows(r['isthmus_rows_per_s'])} ({r['isthmus_config']})"
        if not r["anchors"]:
            md.append(f"| {r['workload']} | {ours} | | no anchor measured | | | |")
        for x in r["anchors"]:
            if "error" in x:
                md.append(f"| {r['workload']} | {ours} | {x.get('system')} | {x.get('method')} | {x.get('rows', 0):,} | "
                          f"failed: {x['error']} | |")
            else:
                ratio = "n/a" if "ratio" not in x else f"{x['ratio']:.1f}×"
                md.append(f"| {r['workload']} | {ours} | {x['system']} | {x['method']} | {x.get('rows', 0):,} | "
                          f"{mrows(x['rows_per_s'])} | {ratio} |")
    labels = {"pyspark_pandas_udf": "vs PySpark pandas_udf", "ray": "vs Ray Data (its fastest method)"}
    md += ["", "| workload | " + " | ".join(labels.get(k, f"vs {k}") for k in rows[0]["goals"]) + " |",
           "| --- |" + " --- |" * len(rows[0]["goals"])]
    for r in rows:
        cells = []
        for k, g in r["goals"].items():
            if g["ratio"] is None:
                cells.append(f"n/a (≥ {g['goal']:g}×)")
            else:
                cells.append(f"{g['ratio']:.1f}× (≥ {g['goal']:g}×: {'met' if g['met'] else 'NOT met'})")
        md.append(f"| {r['workload']} | " + " | ".join(cells) + " |")
    return md


def no_nan(value: Any) -> Any:
    """JSON has no NaN: a figure that could not be measured is null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_nan(v) for v in value]
    return value


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def pyplot() -> Any:
    """matplotlib.pyplot with the file-only backend, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_png(plt: Any, fig: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    tmp.replace(path)


def table_head(*columns: str, left: int = 0) -> list[str]:
    """A markdown table's header and rule: the first `left` columns left-aligned (and the last
    one when `left` is negative), the others right-aligned."""
    n = len(columns)
    lefts = set(range(left)) if left >= 0 else {n - 1}
    return ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" if i in lefts else "---:" for i in range(n)) + " |"]


def plot(res: dict, path: Path) -> str:
    plt = pyplot()
    if plt is None:
        return "matplotlib not installed: no plot (make bench installs it)"
    rows = [r for r in res["throughput"] if "error" not in r]
    lat = res.get("latency") or {}
    lat_keys = [k for k in (*L1_PATHS, *(f"{p}_one_cpu" for p in L1_PATHS)) if "p50_us" in lat.get(k, {})]
    if not rows and not lat_keys:
        return "nothing to plot"
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    ax = axes[0]
    colors = {1: "#4c72b0", 2: "#dd8452", 4: "#55a868", 8: "#c44e52"}
    ax.bar(range(len(rows)), [r["ratio"] for r in rows], color=[colors.get(r["workers"], "#8172b3") for r in rows])
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(rows)), [f"{r['workload']}\n{r['batch_rows']}\n{r['workers']}w" for r in rows], fontsize=7)
    ax.set_ylabel("steady rows/s ÷ in-process ceiling")
    ax.set_title("Throughput (workload, batch rows, workers)")
    ax = axes[1]
    x = np.arange(len(lat_keys))
    ax.bar(x - 0.2, [lat[k]["p50_us"] for k in lat_keys], 0.4, label="p50")
    ax.bar(x + 0.2, [lat[k]["p99_us"] for k in lat_keys], 0.4, label="p99")
    names = {"isthmus_submit": "Isthmus", "isthmus_submit_nospin": "Isthmus\nno spin", "isthmus_submit_socket": "Isthmus\nsocket", "pure_python_host": "Python\nhost", "raw_pyzmq_round_trip": "raw\nzmq"}
    ax.set_xticks(x, [names[k.removesuffix("_one_cpu")] + ("\n(1 CPU)" if k.endswith("_one_cpu") else "")
                      for k in lat_keys], fontsize=7)
    ax.set_ylabel("µs")
    ax.set_title("L1 one-row latency")
    ax.legend()
    fig.suptitle(f"Isthmus bench {res['date']}{' (quick)' if res['quick'] else ''}: {res['machine']['cpu']}, "
                 f"{res['machine']['cores']} cores", fontsize=9)
    fig.tight_layout()
    save_png(plt, fig, path)
    return f"plot: {rel(path)}"


def plot_scaling(res: dict, path: Path) -> str:
    plt = pyplot()
    if plt is None:
        return "matplotlib not installed: no scaling plot"
    sc = res["scaling"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for b in sc["batch_rows"]:
        runs = [r for r in sc["runs"] if r["batch_rows"] == b and "error" not in r]
        if not runs:
            continue
        line, = ax.plot([r["workers"] for r in runs], [r["rows_per_s"] / 1e6 for r in runs], marker="o",
                        label=f"{b}-row batches")
        one = next((r["rows_per_s"] for r in runs if r["workers"] == 1), None)
        if one:
            ax.plot(sc["workers"], [one * n / 1e6 for n in sc["workers"]], linestyle=":", color=line.get_color(),
                    label=f"linear ({b})")
    ax.set_xlabel("workers")
    ax.set_ylabel("steady M rows/s")
    ax.set_title(f"{sc['workload']} scaling, {res['machine']['cpu']}, {res['machine']['cores']} cores", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(plt, fig, path)
    return f"plot: {rel(path)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Isthmus benchmarks (see bench/README.md).")
    ap.add_argument("--quick", action="store_true", help="10x fewer rows (L1: 2,000 requests), best of 2 runs per configuration")
    ap.add_argument("--only", default="W1,W2,W3,ADAPT,L1,IO,RSS",
                    help="comma-separated subset of W1,W2,W3,ADAPT,L1,IO,RSS,SCALE (SCALE, for many-core machines, "
                         "runs only when named)")
    ap.add_argument("--scale-workers", default=",".join(map(str, SCALE_WORKERS)),
                    help="SCALE: worker counts (those that leave the host a core run)")
    ap.add_argument("--scale-workload", default=SCALE_WORKLOAD, choices=sorted(SCALE_ROWS), help="SCALE: the workload")
    ap.add_argument("--scale-rows", type=int, help="SCALE: rows (default W1 200M, W2 40M, W3 20M; --quick 10x fewer)")
    ap.add_argument("--scale-batch-rows", default=",".join(map(str, SCALE_BATCH_ROWS)), help="SCALE: batch sizes")
    ap.add_argument("--scale-flags", default="", help="SCALE: more `isthmus run` flags, e.g. '--share-input on'")
    ap.add_argument("--repeats", type=int, help="runs per throughput configuration, best kept (default 3, --quick 2)")
    args = ap.parse_args(argv)
    only = {s.strip().upper() for s in args.only.split(",") if s.strip()}
    known = {w.name for w in workloads.THROUGHPUT} | {"ADAPT", "L1", "IO", "RSS", "SCALE"}
    if not only <= known:
        ap.error(f"--only: expected names among {','.join(sorted(known))} but found {','.join(sorted(only - known))}")
    try:
        scale_workers = [int(x) for x in args.scale_workers.split(",") if x.strip()]
        scale_batches = [int(x) for x in args.scale_batch_rows.split(",") if x.strip()]
    except ValueError:
        ap.error("--scale-workers, --scale-batch-rows: expected comma-separated whole numbers")
    if not scale_workers or not scale_batches or min(scale_workers + scale_batches) < 1:
        ap.error("--scale-workers, --scale-batch-rows: expected numbers of 1 or more")
    if not os.access(BIN, os.X_OK):
        ap.error(f"expected the isthmus binary at {clean(BIN)} (set ISTHMUS_BIN; build with swift build -c release)")
    scale = 10 if args.quick else 1
    repeats = args.repeats or (2 if args.quick else 3)
    started = time.perf_counter()
    date = datetime.datetime.now().isoformat(timespec="seconds")
    this = machine()
    res: dict[str, Any] = {"version": 1, "date": date, "quick": args.quick,
                           "repeats": repeats, "machine": this, "throughput": [], "checks": [], "adapt": {},
                           "latency": {}, "io": {}, "rss": {}, "scaling": {}, "anchors": load_anchors(this, date)}
    cores = res["machine"]["usable_cores"] or 1
    throughput([w for w in workloads.THROUGHPUT if w.name in only], scale, repeats, cores, res)
    res["anchor_comparison"] = compare_anchors(res)
    if "ADAPT" in only:
        res["adapt"] = adaptive(scale, repeats, res)
    if "L1" in only:
        res["latency"] = latency(workloads.L1_REQUESTS // (5 if args.quick else 1))
    if "IO" in only:
        res["io"] = arrow_io(scale)
    if "RSS" in only:
        res["rss"] = host_memory(scale)
    if "SCALE" in only:
        res["scaling"] = scaling(args.scale_workload, args.scale_rows or SCALE_ROWS[args.scale_workload] // scale,
                                 scale_workers, scale_batches, repeats, cores, tuple(args.scale_flags.split()))
    res["driver_seconds"] = time.perf_counter() - started
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    md = markdown(res)
    atomic_write(out / "latest.json", (json.dumps(no_nan(res), indent=2, allow_nan=False) + "\n").encode())
    atomic_write(out / "latest.md", md.encode())
    log(plot(res, out / "latest.png"))
    if res["scaling"]:
        # Kept beside latest.*: a many-core machine runs SCALE alone, and its figures stay comparable
        # only with each other.
        # W2, the workload, is scaling.*; another is scaling-w1.* and so on.
        stem = "scaling" if res["scaling"]["workload"] == SCALE_WORKLOAD else f"scaling-{res['scaling']['workload'].lower()}"
        sc = {k: res[k] for k in ("version", "date", "quick", "repeats", "machine", "scaling")}
        atomic_write(out / f"{stem}.json", (json.dumps(no_nan(sc), indent=2, allow_nan=False) + "\n").encode())
        atomic_write(out / f"{stem}.md", "\n".join(["# Isthmus scaling results", "", md.split("\n", 4)[2],
                                                    *scaling_markdown(res)]).encode() + b"\n")
        log(plot_scaling(res, out / f"{stem}.png"))
    failed = (sum("error" in r for r in res["throughput"]) + sum(not c["ok"] for c in res["checks"])
              + ("error" in res["adapt"]) + sum("error" in r for r in (res["scaling"] or {}).get("runs", [])))
    if failed:
        log(f"{failed} configuration(s) or value check(s) failed: see the tables")
    log(f"bench: {res['driver_seconds']:.0f} s; results in bench/results/latest.md, latest.json")
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
