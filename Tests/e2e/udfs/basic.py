"""UDFs for the end-to-end tests."""
import pyarrow as pa
import pyarrow.compute as pc

import isthmus


def linear(batch: pa.RecordBatch) -> pa.RecordBatch:
    """y = 2x + 1, keeping id."""
    y = pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)
    return pa.RecordBatch.from_arrays([batch.column("id"), y], names=["id", "y"])


@isthmus.udf(schema={"score": pa.float64()})
def logistic(batch: pa.RecordBatch):
    import numpy as np
    w = np.linspace(-1.0, 1.0, 16)
    x = np.column_stack([batch.column(f"f{i}").to_numpy() for i in range(16)])
    return {"score": 1.0 / (1.0 + np.exp(-(x @ w + 0.25)))}


def text(batch: pa.RecordBatch):
    t = batch.column("text")
    return {"tokens": pc.list_value_length(pc.split_pattern(t, " ")).cast(pa.int64()), "upper": pc.utf8_upper(t)}


def double_y(batch: pa.RecordBatch):
    return {"z": pc.multiply(batch.column("y"), 2.0)}


def returns_int(batch):
    return 42


@isthmus.udf(schema={"y": pa.int64()})
def wrong_schema(batch):
    return {"y": pa.array([1.5] * batch.num_rows)}


def raises_on_row(batch: pa.RecordBatch):
    ids = batch.column("id").to_pylist()
    if 1234 in ids:
        raise ValueError(f"bad row id 1234 (position {ids.index(1234)})")
    return {"id": batch.column("id")}


def explode(batch: pa.RecordBatch):
    n = batch.num_rows * 1000
    return {"v": pa.array([0.0] * n)}


def same_rows_plus_one(batch: pa.RecordBatch):
    return {"y": pa.array(list(range(batch.num_rows + 1)))}


def echo_x(batch: pa.RecordBatch):
    return {"x": batch.column("x")}


def double_x(batch: pa.RecordBatch):
    return {"x2": pc.multiply(batch.column("x"), 2.0)}


def linear_off_by_one(batch: pa.RecordBatch):
    """y = 2x + 2: a wrong answer the latency benchmark must refuse."""
    return {"y": pc.add(pc.multiply(batch.column("x"), 2.0), 2.0)}
