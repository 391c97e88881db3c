"""The benchmark UDFs (one per workload); the in-process ceiling runs the same functions."""
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_rng = np.random.default_rng(42)
W = _rng.standard_normal(16)
B = float(_rng.standard_normal())


def w1(batch: pa.RecordBatch):
    """y = 2x + 1."""
    return {"y": pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)}


def w2(batch: pa.RecordBatch):
    """score = sigmoid(F·w + b) over 16 float64 features."""
    x = np.column_stack([batch.column(i).to_numpy() for i in range(16)])
    return {"score": 1.0 / (1.0 + np.exp(-(x @ W + B)))}


def w3(batch: pa.RecordBatch):
    """Token count and upper-cased text."""
    t = batch.column("text")
    return {"tokens": pc.list_value_length(pc.split_pattern(t, " ")).cast(pa.int64()), "upper": pc.utf8_upper(t)}


def l1(batch: pa.RecordBatch):
    """The one-row request of L1 (y = 2x + 1 over (id, x))."""
    return {"y": pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)}
