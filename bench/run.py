"""The benchmark driver behind `make bench` and `isthmus bench` (see bench/README.md).

Every figure is measured in this run, and throughput is reported as a ratio to a baseline
measured in the same run on the same data: this machine is shared and noisy.

    python bench/run.py            # full sizes
    python bench/run.py --quick    # 10x fewer rows, about a minute
    python bench/run.py --only W2,L1
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import workloads  # noqa: E402

BIN = os.environ.get("ISTHMUS_BIN") or str(HERE.parent / ".build" / "release" / "isthmus")
PY = os.environ.get("ISTHMUS_PYTHON") or sys.executable
UDFS = str(HERE / "udfs.py")
PINNED = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}

CEILING = r"""
import importlib.util, json, sys, time
import pyarrow.ipc as ipc
spec = importlib.util.spec_from_file_location("udfs", sys.argv[1]); u = importlib.util.module_from_spec(spec); spec.loader.exec_module(u)
f = getattr(u, sys.argv[2])
batches = ipc.open_stream(sys.argv[3]).read_all().to_batches(int(sys.argv[4]))
f(batches[0])
t = time.perf_counter(); n = 0
for b in batches:
    f(b); n += b.num_rows
print(json.dumps({"rows": n, "seconds": time.perf_counter() - t}))
"""

RAW_ZMQ = r"""
import json, subprocess, sys, tempfile, time, zmq
n = int(sys.argv[1]); d = tempfile.mkdtemp(); ep = f"ipc://{d}/rr.sock"
peer = subprocess.Popen([sys.executable, "-c",
    f"import zmq\nc=zmq.Context()\ns=c.socket(zmq.REP)\ns.bind('{ep}')\nfor _ in range({n}+200): s.send(s.recv())"])
c = zmq.Context(); s = c.socket(zmq.REQ); s.connect(ep)
lat = []
for i in range(n + 200):
    t = time.perf_counter_ns(); s.send(b"x" * 16); s.recv(); e = time.perf_counter_ns()
    if i >= 200: lat.append((e - t) / 1000)
peer.wait(); lat.sort()
print(json.dumps({"p50_us": lat[len(lat) // 2], "p99_us": lat[int(len(lat) * 0.99)]}))
"""

PY_HOST = r"""
import json, sys, time
import pyarrow as pa
from isthmus.testing import LocalHost
n = int(sys.argv[2])
schema = pa.schema([("id", pa.int64()), ("x", pa.float64())])
lat = []
with LocalHost([sys.argv[1]], schema, workers=1, credits=1, echo_output=False) as host:
    for i in range(n + 200):
        b = pa.record_batch([pa.array([i], pa.int64()), pa.array([i * 0.5])], schema=schema)
        t = time.perf_counter_ns(); host.call(b); e = time.perf_counter_ns()
        if i >= 200: lat.append((e - t) / 1000)
lat.sort()
print(json.dumps({"p50_us": lat[len(lat) // 2], "p99_us": lat[int(len(lat) * 0.99)]}))
"""


def sh(args: list[str], env: dict | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=e)


def last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON in output: {text[-300:]}")


def ceiling(udf: str, data: Path, batch_rows: int) -> float:
    r = sh([PY, "-c", CEILING, UDFS, udf, str(data), str(batch_rows)], env=PINNED)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1])
    d = last_json(r.stdout)
    return d["rows"] / d["seconds"]


def peak_rss_kb(pid: int, stop: threading.Event, out: list[int]) -> None:
    """Peak anonymous RSS of the host: memory it allocated, not the pages of the input file it
    maps (a memory-mapped input is shared with the page cache and grows with the file)."""
    peak = 0
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            break
        time.sleep(0.02)
    out.append(peak)


def isthmus_run(udf: str, data: Path, workers: int, batch_rows: int, rows: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        stats = Path(d) / "stats.json"
        p = subprocess.Popen([BIN, "run", "--input", str(data), "--output", "-", "--to", "null", "--udf", f"{UDFS}:{udf}",
                              "--workers", str(workers), "--batch-rows", str(batch_rows), "--batch-bytes", "64Mi",
                              "--stats", str(stats), "--python", PY, "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stop = threading.Event()
        peak: list[int] = []
        t = threading.Thread(target=peak_rss_kb, args=(p.pid, stop, peak))
        t.start()
        _, err = p.communicate(timeout=1800)
        stop.set()
        t.join()
        if p.returncode != 0:
            raise RuntimeError([l for l in err.splitlines() if l.startswith("error:")][:1] or err[-300:])
        s = json.loads(stats.read_text())
    py = [x for x in s["stages"] if x["kind"] == "python"][0]
    if s["rows_out"] != rows:
        raise RuntimeError(f"expected {rows} rows out, found {s['rows_out']}")
    steady = s["wall_seconds"] - py["startup_seconds"]
    return {"rows_per_s": rows / steady, "wall_s": s["wall_seconds"], "startup_s": py["startup_seconds"],
            "latency_ms": py["latency_ms"], "peak_rss_kb": peak[0] if peak else None}


def check_values(udf: str, data: Path, rows: int) -> str:
    """One output with values, compared with the in-process function."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("udfs", UDFS)
    u = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(u)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out.arrows"
        r = sh([BIN, "run", "--input", str(data), "--output", str(out), "--udf", f"{UDFS}:{udf}", "--workers", "2",
                "--batch-rows", "8192", "--python", PY, "--no-progress"])
        if r.returncode != 0:
            return "FAILED: " + r.stderr.strip().splitlines()[-1]
        got = ipc.open_stream(str(out)).read_all()
    table = ipc.open_stream(str(data)).read_all().slice(0, min(rows, 200_000))
    expected = pa.Table.from_batches([pa.RecordBatch.from_pydict(u.__dict__[udf](b)) for b in table.to_batches(8192)])
    return "values equal" if got.slice(0, expected.num_rows).equals(expected) else "VALUES DIFFER"


def best_of(n: int, f) -> float:
    return min(f() for _ in range(n))


def timed(args: list[str]) -> float:
    t = time.perf_counter()
    r = sh(args)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-300:])
    return time.perf_counter() - t


def timed_py(code: str) -> float:
    """Seconds pyarrow takes for `code`, its imports done before the clock starts."""
    imports = "\n".join(l for l in code.splitlines() if l.startswith("import "))
    body = "\n".join(l for l in code.splitlines() if not l.startswith("import "))
    r = sh([PY, "-c", imports + "\nimport time as _time\n_t0 = _time.perf_counter()\n" + body + "\nprint(_time.perf_counter() - _t0)"])
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-300:])
    return float(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="W1,W2,W3,L1,IO,RSS")
    args = ap.parse_args(argv)
    only = set(args.only.upper().split(","))
    scale = 10 if args.quick else 1
    workloads.prepare()
    cores = os.cpu_count() or 1
    results: dict = {"version": 1, "date": datetime.datetime.now().isoformat(timespec="seconds"),
                     "machine": machine(), "quick": args.quick, "throughput": [], "latency": {}, "io": [], "rss": {}}
    lines: list[str] = []
    specs = [("W1", "w1", workloads.w1, 10_000_000), ("W2", "w2", workloads.w2, 2_000_000), ("W3", "w3", workloads.w3, 2_000_000)]
    for name, udf, make, rows in specs:
        if name not in only:
            continue
        rows //= scale
        data = make(rows)
        check = check_values(udf, data, rows)
        for batch_rows in (1024, 8192, 65536):
            try:
                ceil = ceiling(udf, data, batch_rows)
            except Exception as e:  # noqa: BLE001
                ceil = float("nan")
                print(f"{name} ceiling failed: {e}", file=sys.stderr)
            for workers in sorted({1, 2, cores}):
                row = {"workload": name, "rows": rows, "batch_rows": batch_rows, "workers": workers, "ceiling_rows_per_s": ceil,
                       "check": check}
                try:
                    row.update(isthmus_run(udf, data, workers, batch_rows, rows))
                    row["ratio"] = row["rows_per_s"] / ceil
                except Exception as e:  # noqa: BLE001
                    row["error"] = str(e)
                results["throughput"].append(row)
                print(fmt_row(row), flush=True)
    if "L1" in only:
        n = 10_000 // scale
        lat = {}
        r = sh([BIN, "bench", "latency", "--udf", f"{UDFS}:l1", "--requests", str(n), "--python", PY])
        lat["isthmus_submit"] = last_json(r.stdout) if r.returncode == 0 else {"error": r.stderr.strip()[-300:]}
        r = sh([PY, "-c", RAW_ZMQ, str(n)])
        lat["raw_pyzmq_round_trip"] = last_json(r.stdout) if r.returncode == 0 else {"error": r.stderr.strip()[-300:]}
        r = sh([PY, "-c", PY_HOST, f"{UDFS}:l1", str(n)])
        lat["pure_python_host"] = last_json(r.stdout) if r.returncode == 0 else {"error": r.stderr.strip()[-300:]}
        results["latency"] = {"requests": n, **lat}
        print(json.dumps(results["latency"]), flush=True)
    if "IO" in only:
        io_rows = 10_000_000 // scale
        data = workloads.w1(io_rows)
        csv = workloads.csv_file(1_000_000 // scale)
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "o.arrows"
            cases = [
                ("IPC stream read", [BIN, "inspect", "--rows", "0", str(data)],
                 f"import pyarrow.ipc as i\ni.open_stream('{data}').read_all()"),
                ("IPC stream read+write", [BIN, "convert", str(data), str(out)],
                 f"import pyarrow.ipc as i\nt=i.open_stream('{data}').read_all()\nw=i.new_stream('{out}',t.schema)\nw.write_table(t)\nw.close()"),
                ("CSV read (to IPC)", [BIN, "convert", str(csv), str(out)],
                 f"import pyarrow.csv as c, pyarrow.ipc as i\nt=c.read_csv('{csv}')\nw=i.new_stream('{out}',t.schema)\nw.write_table(t)\nw.close()"),
            ]
            # Both sides are timed without process start: ours minus a no-op run of the same
            # binary, pyarrow's from after its imports.
            start_cost = best_of(5, lambda: timed([BIN, "convert", "--help"]))
            results["io_process_start_s"] = start_cost
            for label, ours, theirs in cases:
                try:
                    a = max(1e-6, best_of(3, lambda: timed(ours)) - start_cost)
                    b = best_of(3, lambda: timed_py(theirs))
                    row = {"case": label, "isthmus_s": a, "pyarrow_s": b, "ratio": b / a}
                except Exception as e:  # noqa: BLE001
                    row = {"case": label, "error": str(e)}
                results["io"].append(row)
                print(json.dumps(row), flush=True)
    if "RSS" in only:
        small, big = 1_000_000 // scale, 10_000_000 // scale
        try:
            a = isthmus_run("w1", workloads.w1(small), 2, 65536, small)["peak_rss_kb"]
            b = isthmus_run("w1", workloads.w1(big), 2, 65536, big)["peak_rss_kb"]
            results["rss"] = {"rows_1x": small, "rows_10x": big, "peak_rss_kb_1x": a, "peak_rss_kb_10x": b, "ratio": b / a}
        except Exception as e:  # noqa: BLE001
            results["rss"] = {"error": str(e)}
        print(json.dumps(results["rss"]), flush=True)
    write(results)
    print((HERE / "results" / "latest.md").read_text())
    return 0


def fmt_row(r: dict) -> str:
    if "error" in r:
        return f"{r['workload']} batch {r['batch_rows']} workers {r['workers']}: FAILED {r['error']}"
    return (f"{r['workload']} batch {r['batch_rows']:>6} workers {r['workers']}: {r['rows_per_s'] / 1e6:8.2f} M rows/s "
            f"(ceiling {r['ceiling_rows_per_s'] / 1e6:8.2f}, ratio {r['ratio']:.2f}; startup {r['startup_s']:.2f}s)")


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "pyarrow": pa.__version__}


def write(results: dict) -> None:
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    m = results["machine"]
    md = [f"# Benchmark results ({results['date']}{', quick' if results['quick'] else ''})", "",
          f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, pyarrow {m['pyarrow']}.", "",
          "Throughput is the host's steady state (rows ÷ (wall − worker startup), from `--stats`); the ceiling is the "
          "same UDF over the same batches in one Python process with BLAS pinned to one thread, measured in the same run.", "",
          "| workload | rows | batch rows | workers | Isthmus M rows/s | ceiling M rows/s | ratio | startup s | p50 batch ms | values |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results["throughput"]:
        if "error" in r:
            md.append(f"| {r['workload']} | {r['rows']} | {r['batch_rows']} | {r['workers']} | failed: {r['error']} | | | | | |")
        else:
            md.append(f"| {r['workload']} | {r['rows']:,} | {r['batch_rows']} | {r['workers']} | {r['rows_per_s'] / 1e6:.2f} | "
                      f"{r['ceiling_rows_per_s'] / 1e6:.2f} | {r['ratio']:.2f} | {r['startup_s']:.2f} | "
                      f"{r['latency_ms'].get('p50', float('nan')):.2f} | {r['check']} |")
    if results["latency"]:
        lat = results["latency"]
        md += ["", f"L1: {lat['requests']:,} sequential one-row requests.", "",
               "| path | p50 µs | p99 µs |", "| --- | ---: | ---: |"]
        for key, label in (("isthmus_submit", "Isthmus online submit (Swift host)"),
                           ("pure_python_host", "pure-Python pyzmq host, same worker and UDF"),
                           ("raw_pyzmq_round_trip", "raw pyzmq REQ/REP round trip, 16 bytes")):
            v = lat.get(key, {})
            md.append(f"| {label} | {v.get('p50_us', float('nan')):.0f} | {v.get('p99_us', float('nan')):.0f} |" if "error" not in v
                      else f"| {label} | failed: {v['error']} | |")
    if results["io"]:
        md += ["", f"Arrow I/O, {results['io'][0].get('rows', '')} best of 3; Isthmus: process wall time minus a no-op run of the "
               f"binary ({results.get('io_process_start_s', 0) * 1000:.0f} ms); pyarrow: in-process after imports. "
               "Ratio = pyarrow time ÷ Isthmus time (≥ 1 means Isthmus is at least as fast):", "",
               "| case | Isthmus s | pyarrow s | ratio |", "| --- | ---: | ---: | ---: |"]
        for r in results["io"]:
            md.append(f"| {r['case']} | {r['isthmus_s']:.3f} | {r['pyarrow_s']:.3f} | {r['ratio']:.2f} |" if "error" not in r
                      else f"| {r['case']} | failed: {r['error']} | | |")
    if results["rss"]:
        r = results["rss"]
        md += ["", (f"Host peak anonymous RSS (sampled every 20 ms), W1 with 2 workers: {r['peak_rss_kb_1x'] / 1024:.0f} MiB at {r['rows_1x']:,} rows, "
                    f"{r['peak_rss_kb_10x'] / 1024:.0f} MiB at {r['rows_10x']:,} rows (ratio {r['ratio']:.2f})."
                    if "error" not in r else f"Host peak RSS: failed: {r['error']}")]
    (out / "latest.md").write_text("\n".join(md) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        rows = [r for r in results["throughput"] if "error" not in r]
        fig, ax = plt.subplots(figsize=(9, 4))
        labels = [f"{r['workload']}\n{r['batch_rows']}/{r['workers']}w" for r in rows]
        ax.bar(range(len(rows)), [r["ratio"] for r in rows])
        ax.axhline(1.0, color="gray", linestyle="--")
        ax.set_xticks(range(len(rows)), labels, fontsize=6)
        ax.set_ylabel("ratio to in-process ceiling")
        fig.tight_layout()
        fig.savefig(out / "latest.png", dpi=120)
    except ImportError:
        print("matplotlib not installed: no plot (make bench installs it)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
