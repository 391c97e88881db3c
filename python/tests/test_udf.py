"""The @udf decorator and its registry."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

import isthmus
from isthmus import udf
from isthmus.errors import UDFDefinitionError
from isthmus.udf import get_spec, registered, spec_for


def test_bare_decorator_keeps_function_callable() -> None:
    @udf
    def double(batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    b = pa.RecordBatch.from_pydict({"x": [1]})
    assert double(b) is b  # still the plain function
    spec = spec_for(double)
    assert spec is not None
    assert (spec.name, spec.kind, spec.input, spec.schema) == ("double", "function", "arrow", None)
    assert get_spec(__name__, "double") is spec


def test_decorator_with_arguments() -> None:
    @udf(name="scored", schema={"y": pa.float64(), "label": "string"}, input="pandas")
    def predict(df):  # type: ignore[no-untyped-def]
        return df

    spec = spec_for(predict)
    assert spec is not None
    assert spec.name == "scored" and spec.input == "pandas"
    assert spec.schema == pa.schema([("y", pa.float64()), ("label", pa.string())])
    assert predict(5) == 5
    assert get_spec(__name__, "scored") is spec


def test_empty_parentheses_and_schema_object() -> None:
    schema = pa.schema([pa.field("y", pa.int64(), nullable=False)])

    @udf()
    def a(batch):  # type: ignore[no-untyped-def]
        return batch

    @udf(schema=schema)
    def b(batch):  # type: ignore[no-untyped-def]
        return batch

    assert spec_for(a).schema is None  # type: ignore[union-attr]
    assert spec_for(b).schema is schema  # type: ignore[union-attr]


def test_class_and_generator_kinds() -> None:
    @udf
    class Model:
        def setup(self) -> None:
            self.k = 2

        def __call__(self, batch):  # type: ignore[no-untyped-def]
            return batch

    @udf
    def running(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from batches

    @udf
    class Streamer:
        def __call__(self, batches):  # type: ignore[no-untyped-def]
            yield from batches

    assert spec_for(Model).kind == "class"  # type: ignore[union-attr]
    assert spec_for(running).kind == "generator"  # type: ignore[union-attr]
    assert spec_for(Streamer).kind == "generator"  # type: ignore[union-attr]
    assert isinstance(Model(), Model)


def test_duplicate_name_in_one_module_is_an_error() -> None:
    @udf(name="dup_name")
    def first(batch):  # type: ignore[no-untyped-def]
        return batch

    with pytest.raises(UDFDefinitionError) as info:
        @udf(name="dup_name")
        def second(batch):  # type: ignore[no-untyped-def]
            return batch

    msg = str(info.value)
    assert "duplicate UDF name 'dup_name'" in msg
    assert "first" in msg and "second" in msg


def test_same_definition_registered_again_replaces() -> None:
    def make():  # type: ignore[no-untyped-def]
        @udf(name="again")
        def f(batch):  # type: ignore[no-untyped-def]
            return batch
        return f

    f1, f2 = make(), make()  # same qualname, same source line: a re-run, not a duplicate
    assert f1 is not f2
    assert get_spec(__name__, "again").obj is f2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"input": "polars"}, "expected input to be one of 'arrow', 'pandas', 'numpy', found 'polars'"),
        ({"schema": 5}, "expected a pyarrow.Schema or a dict of column name to pyarrow type, found int"),
        ({"schema": {"y": 5}}, "expected a pyarrow.DataType for column 'y', found int"),
        ({"schema": {"y": "no_such_type"}}, "expected a pyarrow type name for column 'y', found 'no_such_type'"),
        ({"name": ""}, "expected name to be a non-empty str"),
    ],
)
def test_bad_arguments(kwargs: dict, fragment: str) -> None:
    with pytest.raises(UDFDefinitionError) as info:
        @udf(**kwargs)
        def f(batch):  # type: ignore[no-untyped-def]
            return batch
    assert fragment in str(info.value)


def test_rejects_non_udfs() -> None:
    with pytest.raises(UDFDefinitionError, match="found async function"):
        @udf
        async def f(batch):  # type: ignore[no-untyped-def]
            return batch
    with pytest.raises(UDFDefinitionError, match="without one"):
        @udf
        class NoCall:
            pass
    with pytest.raises(UDFDefinitionError, match=r"expected @udf\(name='x'\)"):
        udf("x")  # type: ignore[call-overload]


def test_registry_lists_in_definition_order() -> None:
    names = [s.name for s in registered(__name__)]
    assert names.index("double") < names.index("scored")
    assert isthmus.udf is udf
