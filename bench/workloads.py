"""The benchmark workloads, defined once: deterministic data (seed 42), generated with numpy and
pyarrow into bench/data/ (git-ignored) and cached by row count, plus the sizes run.py uses."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc

DATA = Path(__file__).resolve().parent / "data"
WORDS = ["stream", "arrow", "batch", "python", "swift", "model", "score", "queue", "worker", "frame",
         "bridge", "credit", "buffer", "column", "record", "latency", "throughput", "vector", "token", "shard"]


def _write(path: Path, table: pa.Table, chunk: int = 65536) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with ipc.new_stream(str(tmp), table.schema) as w:
        for b in table.to_batches(max_chunksize=chunk):
            w.write_batch(b)
    tmp.rename(path)
    return path


def w1(rows: int) -> Path:
    path = DATA / f"w1-{rows}.arrows"
    if not path.exists():
        rng = np.random.default_rng(42)
        _write(path, pa.table({"id": np.arange(rows, dtype=np.int64), "x": rng.uniform(-1, 1, rows)}))
    return path


def w2(rows: int) -> Path:
    path = DATA / f"w2-{rows}.arrows"
    if not path.exists():
        rng = np.random.default_rng(42)
        _write(path, pa.table({f"f{i}": rng.uniform(-1, 1, rows) for i in range(16)}))
    return path


def w3(rows: int) -> Path:
    path = DATA / f"w3-{rows}.arrows"
    if not path.exists():
        rng = np.random.default_rng(42)
        words = np.array(WORDS)
        lengths = rng.integers(20, 81, rows)
        picks = rng.integers(0, len(WORDS), (rows, 16))
        texts = [" ".join(words[p])[:n] for p, n in zip(picks, lengths)]
        _write(path, pa.table({"text": pa.array(texts, pa.string())}))
    return path


def csv_file(rows: int) -> Path:
    path = DATA / f"csv-{rows}.csv"
    if not path.exists():
        rng = np.random.default_rng(42)
        t = pa.table({"id": np.arange(rows, dtype=np.int64), "x": rng.uniform(-1, 1, rows),
                      "name": pa.array([WORDS[i % len(WORDS)] for i in range(rows)])})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        pacsv.write_csv(t, str(tmp))
        tmp.rename(path)
    return path


def prepare() -> None:
    DATA.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Workload:
    """One throughput workload: its full row count, the UDF in udfs.py and the data generator."""

    name: str
    udf: str
    rows: int
    make: Callable[[int], Path]
    what: str


#: The throughput workloads, full size (`--quick` divides the rows by 10).
THROUGHPUT = [
    Workload("W1", "w1", 10_000_000, w1, "(id int64, x float64) -> y = 2x + 1 (pyarrow.compute)"),
    Workload("W2", "w2", 2_000_000, w2, "16 float64 features -> sigmoid(F·w + b) (numpy)"),
    Workload("W3", "w3", 2_000_000, w3, "strings of 20-80 chars -> token count, upper-cased text (pyarrow.compute)"),
]

#: L1: sequential one-row requests (id int64, x float64) through the online submit path.
L1_REQUESTS = 10_000
L1_UDF = "l1"

#: Arrow I/O micro-benchmarks: a W1-shaped (int64, float64) IPC stream and a CSV file.
IO_STREAM_ROWS = 10_000_000
IO_CSV_ROWS = 1_000_000

#: Host memory: W1 at 1x and 10x its rows.
RSS_ROWS = (10_000_000, 100_000_000)
