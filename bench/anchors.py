"""The anchors behind `make bench-anchors` (see bench/README.md): PySpark and Ray Data running the
bench UDFs (bench/udfs.py) on the bench data (bench/workloads.py, seed 42), on 2 CPUs.

    .venv-anchors/bin/python bench/anchors.py            # full size, bench/results/anchors.json
    .venv-anchors/bin/python bench/anchors.py --quick    # 10x fewer rows
    .venv-anchors/bin/python bench/anchors.py --only W2 --systems ray

It runs in its own virtualenv (`.venv-anchors`: pyspark, ray[data], pyarrow, pandas, numpy), never
in `.venv`. Each case is timed in steady state: the input is loaded (Spark: read from Parquet,
repartitioned and cached; Ray: put into the object store) and the Python workers are started and
have run the function on a small slice before the clock starts. The timed action evaluates the
function on every row without bringing the rows to the driver (Spark: an aggregate over the
function's output; Ray: `materialize()`); the count and sums of the output are then compared with
the same functions applied in this process, and so is every value of the warm-up slice. A case that
fails or computes wrong values is reported with its error line instead of a speed; the driver goes on.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")
for _v in THREAD_VARIABLES:  # like the Isthmus workers: BLAS/OpenMP on one thread in every process
    os.environ.setdefault(_v, "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
# Spark's Python workers and Ray's workers are started from this process's environment: they find
# udfs.py (and so the very functions the bench runs) through PYTHONPATH.
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.ipc as ipc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import hostinfo  # noqa: E402
import udfs  # noqa: E402
import workloads  # noqa: E402

CPUS = 2
PARTITIONS = 2 * CPUS      # Spark partitions and Ray blocks: two per CPU, so both stay busy
BATCH_ROWS = 10_000        # Spark's default spark.sql.execution.arrow.maxRecordsPerBatch; Ray the same
SLICE_ROWS = 4_000         # the warm-up slice, every value of which is checked
RESULTS = HERE / "results" / "anchors.json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
ERROR_LINE = re.compile(r"^(Caused by: )?[\w.$]*(Error|Exception)\b[^:]*: ")
REL_TOL = 1e-9             # sums of float outputs: a different summation order, nothing more


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def one_line(e: BaseException) -> str:
    """An exception as one line, without this checkout's location. A Python error raised inside a
    Spark task or a Ray task arrives wrapped: its own line (the last `...Error: ...` line) is kept."""
    lines = [ANSI.sub("", l).strip() for l in f"{type(e).__name__}: {e}".splitlines() if l.strip()]
    inner = [l for l in lines[1:] if ERROR_LINE.match(l)]
    line = inner[-1] if inner else (lines[0] if lines else type(e).__name__)
    return line.replace(str(REPO) + "/", "").replace(str(REPO), ".")[:300]


# -- the functions, as each system calls them ------------------------------------------------------

def _arrow_of(series: pd.Series) -> pa.Array:
    a = pa.array(series.to_numpy()) if series.dtype.kind == "f" else pa.array(series)
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def _pandas_of(result: dict) -> pd.DataFrame:
    return pd.DataFrame({k: (v.to_pandas() if hasattr(v, "to_pandas") else v) for k, v in result.items()})


class Case:
    """One workload as the anchors run it: the input columns each method passes, the function from
    bench/udfs.py, the output schema and the checksums (count and sums) of its output."""

    def __init__(self, w: workloads.Workload, inputs: list[str], outputs: list[tuple[str, pa.DataType]]):
        self.w, self.inputs, self.outputs = w, inputs, outputs
        self.fn: Callable[[pa.RecordBatch], dict] = getattr(udfs, w.udf)

    @property
    def ddl(self) -> str:
        names = {pa.float64(): "double", pa.int64(): "long", pa.string(): "string"}
        return ", ".join(f"{n} {names[t]}" for n, t in self.outputs)

    def apply(self, batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch:
        out = self.fn(batch)
        cols = []
        for n, t in self.outputs:
            v = out[n]
            v = v.combine_chunks() if isinstance(v, pa.ChunkedArray) else pa.array(v)
            cols.append(v.cast(t))
        return pa.RecordBatch.from_arrays(cols, names=[n for n, _ in self.outputs])

    def apply_pandas(self, frame: pd.DataFrame) -> pd.DataFrame:
        b = pa.RecordBatch.from_arrays([_arrow_of(frame[c]) for c in frame.columns], names=list(frame.columns))
        return self.apply(b).to_pandas()

    @staticmethod
    def sums(batch: pa.RecordBatch | pa.Table) -> dict[str, float]:
        """count plus, per output column, the sum of its values (of its lengths for strings)."""
        s: dict[str, float] = {"count": float(batch.num_rows)}
        for name in batch.schema.names:
            col = batch.column(name)
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                col = pc.utf8_length(col)
            s[name] = float(pc.sum(col).as_py() or 0)
        return s


def add_sums(total: dict[str, float], part: dict[str, float]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v


def compare_sums(got: dict[str, float], expected: dict[str, float]) -> None:
    for k, want in expected.items():
        have = got.get(k)
        if have is None or abs(have - want) > REL_TOL * max(1.0, abs(want)):
            raise ValueError(f"checksum {k}: expected {want!r} but found {have!r}")


def compare_rows(got: pa.Table, expected: pa.Table) -> str:
    if got.num_rows != expected.num_rows:
        raise ValueError(f"warm-up slice: expected {expected.num_rows} rows, found {got.num_rows}")
    for name in expected.column_names:
        a, b = got.column(name).combine_chunks(), expected.column(name).combine_chunks()
        if pa.types.is_floating(b.type):
            x, y = a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False)
            worst = float(np.max(np.abs(x - y) / np.maximum(1.0, np.abs(y)))) if len(y) else 0.0
            if not worst <= 1e-12:
                raise ValueError(f"warm-up slice, column {name}: values differ (relative {worst:.1e})")
        elif not a.cast(b.type).equals(b):
            raise ValueError(f"warm-up slice, column {name}: values differ")
    return f"{expected.num_rows:,} warm-up rows equal; output count and sums match"


CASES = {
    "W1": lambda w: Case(w, ["x"], [("y", pa.float64())]),
    "W2": lambda w: Case(w, [f"f{i}" for i in range(16)], [("score", pa.float64())]),
    "W3": lambda w: Case(w, ["text"], [("tokens", pa.int64()), ("upper", pa.string())]),
}


# -- PySpark ---------------------------------------------------------------------------------------

class Spark:
    system = "pyspark"
    methods = ("pandas_udf", "mapInArrow")

    def __init__(self, heap: str):
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise RuntimeError("pyspark needs Java 17 or newer on PATH (apt-get install openjdk-17-jre-headless) "
                               "but found no java")
        from pyspark.sql import SparkSession
        self.session = (SparkSession.builder.master(f"local[{CPUS}]").appName("isthmus-anchors")
                        .config("spark.ui.enabled", "false")
                        .config("spark.ui.showConsoleProgress", "false")
                        .config("spark.driver.memory", heap)
                        .config("spark.sql.shuffle.partitions", str(PARTITIONS))
                        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
                        .config("spark.python.worker.reuse", "true")
                        .config("spark.sql.adaptive.enabled", "false")
                        .getOrCreate())
        self.session.sparkContext.setLogLevel("ERROR")
        import pyspark
        self.version = pyspark.__version__

    def close(self) -> None:
        self.session.stop()

    def parquet(self, case: Case, table: pa.Table, rows: int) -> Path:
        path = workloads.DATA / f"{case.w.name.lower()}-{rows}.parquet"
        if not path.exists():
            tmp = path.with_name(path.name + ".tmp")
            pq.write_table(table, str(tmp), row_group_size=max(1, rows // PARTITIONS))
            tmp.rename(path)
        return path

    def output(self, case: Case, df, method: str):
        """The function applied to df: its output columns only."""
        from pyspark.sql import functions as F
        from pyspark.sql.functions import pandas_udf
        if method == "mapInArrow":
            def run(batches):
                for b in batches:
                    yield case.apply(b)
            return df.mapInArrow(run, case.ddl)
        if len(case.outputs) == 1:
            (name, _), = case.outputs
            def scalar(*cols: pd.Series) -> pd.Series:
                return case.apply_pandas(pd.concat(cols, axis=1, keys=case.inputs))[name]
            f = pandas_udf(scalar, case.ddl.split(" ", 1)[1])
            return df.select(f(*[F.col(c) for c in case.inputs]).alias(name))
        def struct(*cols: pd.Series) -> pd.DataFrame:
            return case.apply_pandas(pd.concat(cols, axis=1, keys=case.inputs))
        f = pandas_udf(struct, case.ddl)
        return df.select(f(*[F.col(c) for c in case.inputs]).alias("r")).select("r.*")

    def checksum(self, case: Case, out) -> dict[str, float]:
        from pyspark.sql import functions as F
        aggs = [F.count(F.lit(1)).alias("count")]
        for name, t in case.outputs:
            value = F.length(F.col(name)) if t == pa.string() else F.col(name)
            aggs.append(F.sum(value).cast("double").alias(name))
        row = out.agg(*aggs).collect()[0]
        return {k: float(v) if v is not None else float("nan") for k, v in row.asDict().items()}

    def measure(self, case: Case, table: pa.Table, rows: int, expected: dict, slice_expected: pa.Table,
                repeats: int) -> dict[str, dict]:
        s = self.session
        sl = table.slice(0, SLICE_ROWS).select(case.inputs)
        slice_df = s.createDataFrame(sl.to_pandas()).coalesce(1)  # one partition, rows in input order
        full = s.read.parquet(str(self.parquet(case, table, rows))).repartition(PARTITIONS).cache()
        t = time.perf_counter()
        if full.count() != rows:
            raise ValueError(f"expected {rows} rows in the cached input")
        log(f"  pyspark {case.w.name}: input read and cached in {time.perf_counter() - t:.1f} s")
        res: dict[str, dict] = {}
        try:
            for method in self.methods:
                res[method] = guarded(lambda: self._one(case, method, full, slice_df, expected, slice_expected, repeats))
                log(f"  pyspark {case.w.name} {method}: {fmt(res[method])}")
        finally:
            full.unpersist()
        return res

    def _one(self, case, method, full, slice_df, expected, slice_expected, repeats) -> dict:
        # Warm-up: the slice in one partition, every value checked (and the workers started).
        got = self.output(case, slice_df, method).toArrow() if hasattr(slice_df, "toArrow") else \
            pa.Table.from_pandas(self.output(case, slice_df, method).toPandas(), preserve_index=False)
        check = compare_rows(got, slice_expected)
        # Both workers warm: the slice over the whole pool once more (not timed).
        self.checksum(case, self.output(case, slice_df.repartition(PARTITIONS), method))
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            sums = self.checksum(case, self.output(case, full, method))
            times.append(time.perf_counter() - t)
            compare_sums(sums, expected)
        rows = int(expected["count"])
        return {"rows_per_s": rows / min(times), "seconds": min(times), "all_seconds": times, "check": check}


# -- Ray Data --------------------------------------------------------------------------------------

class Ray:
    system = "ray"
    methods = ("map_batches_pyarrow", "map_batches_pandas")

    def __init__(self, object_store: int):
        import ray
        import ray.data
        ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False, object_store_memory=object_store,
                 logging_level="ERROR", configure_logging=True,
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"],
                                           **{v: "1" for v in THREAD_VARIABLES}}})
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        for attr in ("print_on_execution_start", "enable_operator_progress_bars"):
            if hasattr(ctx, attr):
                setattr(ctx, attr, False)
        self.ray, self.data, self.ctx = ray, ray.data, ctx
        self.version = ray.__version__

    def close(self) -> None:
        self.ray.shutdown()

    def dataset(self, table: pa.Table, blocks: int):
        n = -(-table.num_rows // blocks)
        return self.data.from_arrow([table.slice(i * n, n) for i in range(blocks) if i * n < table.num_rows])

    def output(self, case: Case, ds, method: str):
        if method == "map_batches_pyarrow":
            def run(b: pa.Table) -> pa.Table:
                return pa.Table.from_batches([case.apply(b)])
            return ds.map_batches(run, batch_format="pyarrow", batch_size=BATCH_ROWS)
        def run_pandas(df: pd.DataFrame) -> pd.DataFrame:
            return case.apply_pandas(df)
        return ds.map_batches(run_pandas, batch_format="pandas", batch_size=BATCH_ROWS)

    def collect(self, ds) -> pa.Table:
        return pa.concat_tables([pa.table(b) if not isinstance(b, pa.Table) else b
                                 for b in ds.iter_batches(batch_format="pyarrow", batch_size=None)])

    def measure(self, case: Case, table: pa.Table, rows: int, expected: dict, slice_expected: pa.Table,
                repeats: int) -> dict[str, dict]:
        full = self.dataset(table, PARTITIONS)  # from_arrow: already in the object store
        res: dict[str, dict] = {}
        for method in self.methods:
            res[method] = guarded(lambda: self._one(case, method, table, full, expected, slice_expected, repeats))
            log(f"  ray {case.w.name} {method}: {fmt(res[method])}")
        return res

    def _one(self, case, method, table, full, expected, slice_expected, repeats) -> dict:
        order = self.ctx.execution_options.preserve_order
        self.ctx.execution_options.preserve_order = True
        try:
            got = self.collect(self.output(case, self.dataset(table.slice(0, SLICE_ROWS), PARTITIONS), method))
        finally:
            self.ctx.execution_options.preserve_order = order
        check = compare_rows(got.select([n for n, _ in case.outputs]), slice_expected)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = self.output(case, full, method).materialize()
            times.append(time.perf_counter() - t)
            sums: dict[str, float] = {}
            for b in out.iter_batches(batch_format="pyarrow", batch_size=None):
                add_sums(sums, Case.sums(b))
            compare_sums(sums, expected)
            del out
        rows = int(expected["count"])
        return {"rows_per_s": rows / min(times), "seconds": min(times), "all_seconds": times, "check": check}


# -- driver ----------------------------------------------------------------------------------------

def guarded(f: Callable[[], dict]) -> dict:
    try:
        return f()
    except Exception as e:  # noqa: BLE001 - reported per case, the driver goes on
        if os.environ.get("ANCHORS_TRACEBACK"):
            traceback.print_exc()
        return {"error": one_line(e)}


def fmt(r: dict) -> str:
    if "error" in r:
        return f"FAILED {r['error']}"
    return f"{r['rows_per_s'] / 1e6:.3f} M rows/s ({r['seconds']:.2f} s; {r['check']})"


def machine(versions: dict[str, str]) -> dict:
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60).stderr.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        java = "not found"
    return {**hostinfo.host(), "python": platform.python_version(), "java": java,
            "pyarrow": pa.__version__, "pandas": pd.__version__, "numpy": np.__version__, **versions}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="PySpark and Ray Data anchors on the bench workloads (see bench/README.md).")
    ap.add_argument("--quick", action="store_true", help="10x fewer rows")
    ap.add_argument("--only", default="W1,W2,W3", help="comma-separated subset of W1,W2,W3")
    ap.add_argument("--systems", default="pyspark,ray", help="comma-separated subset of pyspark,ray")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per case after the warm-up, best kept (default 1)")
    ap.add_argument("--spark-memory", default="4g", help="Spark driver heap (local mode: the executor too)")
    ap.add_argument("--ray-object-store", default=2 << 30, type=int, help="Ray object store bytes (default 2 GiB)")
    ap.add_argument("--output", default=str(RESULTS), help="JSON results (default bench/results/anchors.json)")
    args = ap.parse_args(argv)
    only = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    systems = [s.strip().lower() for s in args.systems.split(",") if s.strip()]
    if not set(only) <= set(CASES):
        ap.error(f"--only: expected names among W1,W2,W3 but found {','.join(sorted(set(only) - set(CASES)))}")
    if not set(systems) <= {"pyspark", "ray"}:
        ap.error(f"--systems: expected pyspark and/or ray but found {','.join(sorted(set(systems) - {'pyspark', 'ray'}))}")
    scale = 10 if args.quick else 1
    started = time.perf_counter()

    runners: dict[str, Any] = {}
    status: dict[str, str] = {}
    versions: dict[str, str] = {}
    for name in systems:
        try:
            runners[name] = Spark(args.spark_memory) if name == "pyspark" else Ray(args.ray_object_store)
            versions[name] = runners[name].version
            status[name] = "ok"
        except Exception as e:  # noqa: BLE001
            if os.environ.get("ANCHORS_TRACEBACK"):
                traceback.print_exc()
            what = "import" if isinstance(e, ImportError) else "start"
            status[name] = f"cannot {what} {name}: {one_line(e)}"
            log(f"{name}: {status[name]}")
    res: dict[str, Any] = {
        "version": 1, "date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": args.quick,
        "machine": machine(versions), "repeats": args.repeats,
        "settings": {"cpus": CPUS, "spark_master": f"local[{CPUS}]", "partitions_or_blocks": PARTITIONS,
                     "batch_rows": BATCH_ROWS, "warmup_slice_rows": SLICE_ROWS},
        "status": status, "results": []}

    for wname in only:
        w = next(x for x in workloads.THROUGHPUT if x.name == wname)
        case = CASES[wname](w)
        rows = w.rows // scale
        t = time.perf_counter()
        table = ipc.open_stream(str(w.make(rows))).read_all()
        expected: dict[str, float] = {}
        for b in table.to_batches(65536):
            add_sums(expected, Case.sums(case.apply(b)))
        slice_expected = pa.Table.from_batches([case.apply(b) for b in table.slice(0, SLICE_ROWS).to_batches()])
        log(f"{wname}: {rows:,} rows ({time.perf_counter() - t:.1f} s to load and compute the expected checksums)")
        for name in systems:
            methods = Spark.methods if name == "pyspark" else Ray.methods
            if name not in runners:
                got = {m: {"error": status[name]} for m in methods}
            else:
                got = guarded(lambda: runners[name].measure(case, table, rows, expected, slice_expected, args.repeats))
                if "error" in got and not isinstance(got["error"], dict):
                    log(f"  {name} {wname}: FAILED {got['error']}")
                    got = {m: {"error": got["error"]} for m in methods}
            for method, r in got.items():
                res["results"].append({"workload": wname, "rows": rows, "system": name, "method": method, **r})
        del table

    for r in runners.values():
        try:
            r.close()
        except Exception:  # noqa: BLE001
            pass
    res["driver_seconds"] = time.perf_counter() - started
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    tmp.replace(out)
    for r in res["results"]:
        log(f"{r['workload']} {r['system']} {r['method']}: {fmt(r)}")
    log(f"anchors: {res['driver_seconds']:.0f} s; results in {os.path.relpath(out, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
