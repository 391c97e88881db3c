"""What a UDF may return, and how a declared schema is enforced."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from isthmus.adapters import OutputNormalizer, combine, input_converter
from isthmus.errors import SchemaError

SCHEMA = pa.schema([pa.field("y", pa.float64()), pa.field("k", pa.string())])


def table_of(batches: list[pa.RecordBatch]) -> pa.Table:
    return pa.Table.from_batches(batches)


@pytest.mark.parametrize(
    "value",
    [
        pa.RecordBatch.from_pydict({"y": [1.0, 2.0], "k": ["a", "b"]}),
        pa.table({"y": [1.0, 2.0], "k": ["a", "b"]}),
        {"y": np.array([1.0, 2.0]), "k": ["a", "b"]},
        {"y": pa.array([1.0, 2.0]), "k": pa.chunked_array([["a"], ["b"]])},
        pd.DataFrame({"y": [1.0, 2.0], "k": ["a", "b"]}, index=[10, 20]),
    ],
    ids=["record_batch", "table", "dict_numpy_list", "dict_arrow", "dataframe"],
)
@pytest.mark.parametrize("declared", [None, SCHEMA], ids=["undeclared", "declared"])
def test_every_return_type(value: object, declared: pa.Schema | None) -> None:
    norm = OutputNormalizer("s", declared)
    out = table_of(norm(value))
    assert out.to_pydict() == {"y": [1.0, 2.0], "k": ["a", "b"]}
    if declared is None and isinstance(value, pd.DataFrame):
        # pandas 3 stores text as its string dtype, which pyarrow maps to large_string.
        assert out.schema.field("k").type in (pa.string(), pa.large_string())
    else:
        assert out.schema.equals(SCHEMA)
    assert out.schema.metadata is None  # no pandas metadata on the wire


def test_table_with_several_chunks_gives_several_batches() -> None:
    t = pa.concat_tables([pa.table({"y": [1.0]}), pa.table({"y": [2.0, 3.0]})])
    batches = OutputNormalizer("s", None)(t)
    assert [b.num_rows for b in batches] == [1, 2]


def test_zero_chunk_table_keeps_schema() -> None:
    norm = OutputNormalizer("s", None)
    assert norm(SCHEMA.empty_table()) == []
    assert norm.schema == SCHEMA


@pytest.mark.parametrize(
    "value, found",
    [(5, "found int"), (None, "found None (did the function forget to return?)"),
     ([1, 2], "found list"), (np.arange(3), "found numpy.ndarray")],
)
def test_bad_return_type(value: object, found: str) -> None:
    with pytest.raises(SchemaError) as info:
        OutputNormalizer("predict", None)(value)
    assert str(info.value) == (
        "stage predict: expected the function to return a pyarrow.RecordBatch, pyarrow.Table, "
        f"pandas.DataFrame or dict of columns, {found}"
    )


def test_generator_wording() -> None:
    with pytest.raises(SchemaError, match="expected the generator to yield"):
        OutputNormalizer("g", None, "generator")(3)


def test_declared_schema_mismatch_is_reported_field_by_field() -> None:
    declared = pa.schema([("y", pa.float64()), ("k", pa.string())])
    wrong = pa.RecordBatch.from_pydict({"y": pa.array([1], pa.int64()), "z": pa.array([True])})
    with pytest.raises(SchemaError) as info:
        OutputNormalizer("predict", declared)(wrong)
    msg = str(info.value)
    assert msg.startswith("stage predict: expected output schema {y: double, k: string}, found {y: int64, z: bool}")
    assert "y: expected double, found int64" in msg
    assert "k: expected string, found no such column" in msg
    assert "z: expected no such column, found bool" in msg


def test_column_order_matters_for_arrow_results() -> None:
    wrong = pa.RecordBatch.from_pydict({"k": ["a"], "y": [1.0]})
    with pytest.raises(SchemaError, match="column order: expected y, k, found k, y"):
        OutputNormalizer("s", SCHEMA)(wrong)


def test_dict_columns_are_reordered_and_cast_safely() -> None:
    out = OutputNormalizer("s", SCHEMA)({"k": ["a"], "y": np.array([3], dtype=np.int64)})
    assert out[0].schema.equals(SCHEMA) and out[0].column(0).to_pylist() == [3.0]
    with pytest.raises(SchemaError, match="column 'y': expected values convertible to double"):
        OutputNormalizer("s", SCHEMA)({"y": ["not a number"], "k": ["a"]})
    with pytest.raises(SchemaError, match=r"missing k"):
        OutputNormalizer("s", SCHEMA)({"y": [1.0]})
    with pytest.raises(SchemaError, match=r"not declared extra"):
        OutputNormalizer("s", SCHEMA)({"y": [1.0], "k": ["a"], "extra": [1]})


def test_not_null_is_enforced() -> None:
    declared = pa.schema([pa.field("y", pa.int64(), nullable=False)])
    norm = OutputNormalizer("s", declared)
    ok = norm(pa.RecordBatch.from_pydict({"y": pa.array([1, 2])}))  # nullable field, no nulls: relabelled
    assert ok[0].schema.field("y").nullable is False
    with pytest.raises(SchemaError, match="column 'y': expected no nulls \\(declared not null\\), found 1"):
        norm(pa.RecordBatch.from_pydict({"y": pa.array([1, None])}))
    with pytest.raises(SchemaError, match="found 1"):
        norm({"y": [1, None]})


def test_dict_problems() -> None:
    norm = OutputNormalizer("s", None)
    with pytest.raises(SchemaError, match="expected every returned column to have the same length, found a: 2, b: 1"):
        norm({"a": [1, 2], "b": [1]})
    with pytest.raises(SchemaError, match="column 'a': expected an array-like"):
        norm({"a": 5})
    with pytest.raises(SchemaError, match="expected str column names"):
        norm({1: [1]})


def test_input_converters() -> None:
    b = pa.RecordBatch.from_pydict({"x": pa.array([1, 2, 3]), "s": pa.array(["a", None, "c"])})
    assert input_converter("arrow")(b) is b
    df = input_converter("pandas")(b)
    assert isinstance(df, pd.DataFrame) and df["x"].tolist() == [1, 2, 3]
    cols = input_converter("numpy")(b)
    assert isinstance(cols["x"], np.ndarray) and cols["x"].tolist() == [1, 2, 3]
    assert cols["s"].tolist() == ["a", None, "c"]
    with pytest.raises(ValueError):
        input_converter("polars")


def test_combine() -> None:
    a = pa.RecordBatch.from_pydict({"x": [1]})
    b = pa.RecordBatch.from_pydict({"x": [2, 3]})
    assert combine([a], a.schema) is a
    assert combine([a, b], a.schema).to_pydict() == {"x": [1, 2, 3]}
    assert combine([], a.schema).num_rows == 0


@pytest.mark.parametrize(
    ("values", "declared"),
    [
        (np.array([1.5, -2.0, 0.0]), None),
        (np.array([1.5, np.nan, 3.0]), None),  # NaN is null, as pa.array(..., from_pandas=True) makes it
        (np.array([np.nan, np.nan]), None),
        (np.array([1.5, 2.5], dtype=np.float32), None),
        (np.arange(10.0)[::3], None),  # strided
        (np.array([1.5, 2.5]), pa.float32()),  # declared narrower: converted, not taken as is
        (np.array([1.5, np.nan]), pa.float64()),
        (np.array([], dtype=np.float64), None),
    ],
)
def test_numpy_float_results_are_what_from_pandas_makes(values, declared) -> None:  # type: ignore[no-untyped-def]
    schema = pa.schema([("y", declared)]) if declared is not None else None
    got = OutputNormalizer("s", schema)({"y": values})[0].column(0)
    want = pa.array(values, type=declared, from_pandas=True)
    assert got.type == want.type and got.null_count == want.null_count
    assert got.equals(want)
