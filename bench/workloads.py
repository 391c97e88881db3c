"""Deterministic benchmark data (seed 42), written once into bench/data/ and reused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc

DATA = Path(__file__).resolve().parent / "data"
WORDS = ["stream", "arrow", "batch", "python", "swift", "model", "score", "queue", "worker", "frame",
         "bridge", "credit", "buffer", "column", "record", "latency", "throughput", "vector", "token", "shard"]


def _write(path: Path, table: pa.Table, chunk: int = 65536) -> Path:
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
        pacsv.write_csv(t, str(path))
    return path


def prepare() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
