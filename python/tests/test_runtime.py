"""The worker loop run in-process (threads) through the real protocol."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import isthmus
from isthmus import RowError, UDFError, udf
from isthmus.runtime import StreamEncoder, _GeneratorFeeder, read_single_batch, read_stream
from isthmus.testing import HostStage, LocalHost, run_udf

DATA = pa.table({"x": pa.array(range(10), pa.int64())})


def test_function_in_process() -> None:
    def lin(batch: pa.RecordBatch) -> dict:
        return {"y": pc.add(pc.multiply(batch["x"], 2), 1)}

    out = run_udf(lin, DATA, batch_rows=3)
    assert out.column("y").to_pylist() == [2 * x + 1 for x in range(10)]


def test_generator_keeps_state_across_batches_and_runs_once() -> None:
    starts = []

    @udf
    def running_total(batches: Iterator[pa.RecordBatch]) -> Iterator[dict]:
        starts.append(1)
        total = 0
        for batch in batches:
            xs = batch.column(0).to_pylist()
            out = []
            for x in xs:
                total += x
                out.append(total)
            yield {"total": out}

    out = run_udf(running_total, DATA, batch_rows=4)
    assert out.column("total").to_pylist() == [sum(range(i + 1)) for i in range(10)]
    assert starts == [1]


def test_generator_outputs_belong_to_the_batch_they_follow() -> None:
    def explode(batches):  # type: ignore[no-untyped-def]
        for batch in batches:
            n = batch.num_rows
            yield {"n": [n]}      # two outputs for this batch
            yield {"n": [n * 10]}

    schema = DATA.schema
    with LocalHost([explode], schema) as host:
        results = list(host.run(DATA.to_batches(max_chunksize=4)))
    assert [r.column("n").to_pylist() for r in results] == [[4, 40], [4, 40], [2, 20]]


def test_generator_that_yields_nothing_for_a_batch() -> None:
    def every_other(batches):  # type: ignore[no-untyped-def]
        for i, batch in enumerate(batches):
            if i % 2 == 0:
                yield batch

    out = run_udf(every_other, DATA, batch_rows=2)
    assert out.column("x").to_pylist() == [0, 1, 4, 5, 8, 9]


def test_feeder_directly() -> None:
    def pairs(it):  # type: ignore[no-untyped-def]
        prev = None
        for item in it:
            if prev is not None:
                yield (prev, item)
            prev = item
        yield ("end", prev)

    feeder = _GeneratorFeeder(pairs, "pairs")
    assert feeder.feed(1) == []
    assert feeder.feed(2) == [(1, 2)]
    assert feeder.feed(3) == [(2, 3)]
    assert feeder.finish() == 1  # ("end", 3) came after the input ended: dropped


def test_generator_that_stops_early_is_an_error() -> None:
    def first_only(batches):  # type: ignore[no-untyped-def]
        for batch in batches:
            yield batch
            return

    with pytest.raises(UDFError) as info:
        run_udf(first_only, DATA, batch_rows=5)
    assert "must consume its whole input" in info.value.message


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise TypeError("no text for you")


def test_an_exception_whose_str_raises_is_reported_not_a_crash() -> None:
    """A user exception class with a broken __str__ is still a user error with its type and a
    traceback; before, formatting it raised inside the worker, which then died (exit 1) and
    was retried as a crash."""
    def raises(batch):  # type: ignore[no-untyped-def]
        raise _Unprintable()

    with pytest.raises(UDFError) as info:
        run_udf(raises, DATA)
    assert (info.value.kind, info.value.exc_type) == ("user", "_Unprintable")
    assert info.value.message == "<_Unprintable whose __str__ raised TypeError>"
    assert "raise _Unprintable()" in info.value.traceback

    class Model:
        def setup(self) -> None:
            raise _Unprintable()

        def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
            return batch

    with pytest.raises(UDFError) as info:
        run_udf(Model, DATA)
    assert "setup() failed: _Unprintable: <_Unprintable whose __str__ raised TypeError>" in info.value.message


def test_class_udf_setup_once_and_teardown() -> None:
    events = []

    class Model:
        def setup(self) -> None:
            events.append("setup")
            self.offset = 100

        def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
            events.append("call")
            return pa.RecordBatch.from_pydict({"y": pc.add(batch["x"], self.offset)})

        def teardown(self) -> None:
            events.append("teardown")

    out = run_udf(Model, DATA, batch_rows=5)
    assert out.column("y").to_pylist() == [x + 100 for x in range(10)]
    assert events == ["setup", "call", "call", "teardown"]


def test_pandas_input() -> None:
    @udf(input="pandas", schema={"y": pa.float64()})
    def halve(df: pd.DataFrame) -> pd.DataFrame:
        assert isinstance(df, pd.DataFrame)
        return pd.DataFrame({"y": df["x"] / 2})

    out = run_udf(halve, DATA, batch_rows=4)
    assert out.schema == pa.schema([("y", pa.float64())])
    assert out.column("y").to_pylist() == [x / 2 for x in range(10)]


def test_numpy_input() -> None:
    @udf(input="numpy")
    def square(cols: dict) -> dict:
        assert isinstance(cols["x"], np.ndarray)
        return {"y": cols["x"] ** 2}

    out = run_udf(square, DATA, batch_rows=4)
    assert out.column("y").to_pylist() == [x * x for x in range(10)]


def test_fused_stages_run_in_order() -> None:
    def add_one(batch):  # type: ignore[no-untyped-def]
        return {"x": pc.add(batch["x"], 1)}

    def times_ten(batch):  # type: ignore[no-untyped-def]
        return {"x": pc.multiply(batch["x"], 10)}

    out = run_udf([add_one, times_ten], DATA, batch_rows=3)
    assert out.column("x").to_pylist() == [(x + 1) * 10 for x in range(10)]
    out = run_udf(add_one, DATA, stages=[times_ten, add_one], batch_rows=3)
    assert out.column("x").to_pylist() == [(x + 1) * 10 + 1 for x in range(10)]


def test_error_reports_stage_batch_and_rows() -> None:
    def ok(batch):  # type: ignore[no-untyped-def]
        return batch

    def picky(batch):  # type: ignore[no-untyped-def]
        xs = batch.column(0).to_pylist()
        if 7 in xs:
            raise RowError("seven is not allowed", xs.index(7))
        return batch

    with pytest.raises(UDFError) as info:
        run_udf([ok, picky], DATA, batch_rows=3)
    err = info.value
    assert (err.kind, err.exc_type, err.stage, err.stage_index) == ("user", "RowError", "picky", 1)
    assert (err.sequence, err.row_start, err.row_end) == (3, 1, 2)  # batch 3 holds 6, 7, 8
    assert "seven is not allowed" in str(err)
    assert 'raise RowError("seven is not allowed"' in err.traceback
    assert "isthmus/runtime.py" not in err.traceback


def test_schema_error_kind() -> None:
    def bad(batch):  # type: ignore[no-untyped-def]
        return 42

    with pytest.raises(UDFError) as info:
        run_udf(HostStage("predict", bad), DATA)
    assert info.value.kind == "schema"
    assert info.value.message == (
        "stage predict: expected the function to return a pyarrow.RecordBatch, pyarrow.Table, "
        "pandas.DataFrame or dict of columns, found int"
    )


def test_declared_schema_enforced_every_batch() -> None:
    @udf(schema={"y": pa.int64()})
    def drifting(batch):  # type: ignore[no-untyped-def]
        if batch.column(0)[0].as_py() >= 5:
            return {"y": pa.array(["oops"] * batch.num_rows)}
        return {"y": batch.column(0)}

    with pytest.raises(UDFError) as info:
        run_udf(drifting, DATA, batch_rows=5)
    assert info.value.kind == "schema" and info.value.sequence == 2
    assert "column 'y': expected values convertible to int64" in info.value.message


def test_rows_same_option() -> None:
    def drop_one(batch):  # type: ignore[no-untyped-def]
        return batch.slice(1)

    assert run_udf(drop_one, DATA, batch_rows=5).num_rows == 8
    with pytest.raises(UDFError, match=r"expected 5 output rows \(option rows=same\), found 4"):
        run_udf(drop_one, DATA, batch_rows=5, options={"rows": "same"})


def test_memory_error_is_oom_and_retryable() -> None:
    def hungry(batch):  # type: ignore[no-untyped-def]
        raise MemoryError()

    with pytest.raises(UDFError) as info:
        run_udf(hungry, DATA)
    assert info.value.kind == "oom" and info.value.retryable is True


def test_multiple_workers_keep_order() -> None:
    def ident(batch):  # type: ignore[no-untyped-def]
        return batch

    big = pa.table({"x": pa.array(range(1000), pa.int64())})
    out = run_udf(ident, big, batch_rows=37, workers=3)
    assert out.column("x").to_pylist() == list(range(1000))


def test_empty_input_and_filters() -> None:
    @udf(schema={"x": pa.int64()})
    def none_left(batch):  # type: ignore[no-untyped-def]
        return batch.filter(pc.greater(batch["x"], 100))

    out = run_udf(none_left, DATA, batch_rows=4)
    assert out.num_rows == 0 and out.schema == pa.schema([("x", pa.int64())])
    out = run_udf(none_left, DATA.slice(0, 0))
    assert out.num_rows == 0 and out.schema == pa.schema([("x", pa.int64())])


def test_inputs_accepted_by_run_udf() -> None:
    def ident(batch):  # type: ignore[no-untyped-def]
        return batch

    assert run_udf(ident, {"x": [1, 2]}).to_pydict() == {"x": [1, 2]}
    assert run_udf(ident, pd.DataFrame({"x": [1, 2]})).to_pydict() == {"x": [1, 2]}
    assert run_udf(ident, DATA.to_batches(max_chunksize=3)).num_rows == 10


def test_heartbeats_answered() -> None:
    import time

    def ident(batch):  # type: ignore[no-untyped-def]
        return batch

    with LocalHost([ident], DATA.schema, heartbeat_ms=50) as host:
        host.call(DATA.to_batches()[0])
        deadline = time.monotonic() + 5
        while host.heartbeat_reports()[0] is None and time.monotonic() < deadline:
            host._poll_once(0.02)
            host._heartbeats()
        report = host.heartbeat_reports()[0]
    assert report is not None and report.batches == 1 and report.rss_bytes > 0


def test_stream_encoder_frames_decode() -> None:
    small = pa.RecordBatch.from_pydict({"x": pa.array(range(10))})
    frames = StreamEncoder().encode(small.schema, [small, small])
    assert len(frames) == 1
    assert read_stream(frames).num_rows == 20
    large = pa.RecordBatch.from_pydict({"x": pa.array(np.arange(100_000))})
    frames = StreamEncoder().encode(large.schema, [large])
    assert len(frames) == 3  # schema, batch, end-of-stream: no join for large payloads
    assert read_single_batch(frames).equals(large)
    dict_batch = pa.RecordBatch.from_pydict({"d": pa.array(["a", "b", "a"]).dictionary_encode()})
    frames = StreamEncoder().encode(dict_batch.schema, [dict_batch])
    assert read_single_batch(frames).equals(dict_batch)
    # An extension type stored as a dictionary needs its dictionary batch too.
    labels = pa.RecordBatch.from_arrays([pa.ExtensionArray.from_storage(_Label(), pa.array(["a", "b", "a"] * 10000).dictionary_encode())],
                                        names=["label"])
    frames = StreamEncoder().encode(labels.schema, [labels])
    got = read_single_batch(frames).column(0)  # the type is not registered here: its storage comes back
    assert got.type == pa.dictionary(pa.int32(), pa.string()) and got.to_pylist() == ["a", "b", "a"] * 10000


class _Label(pa.ExtensionType):
    def __init__(self) -> None:
        super().__init__(pa.dictionary(pa.int32(), pa.string()), "isthmus.test.label")

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):  # type: ignore[no-untyped-def]
        return cls()


def test_package_exports() -> None:
    assert isthmus.__version__ == "0.1.0"
    assert isthmus.PROTOCOL_VERSION == "1.1"
    assert issubclass(isthmus.UDFError, Exception)


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_compressed_batch_bodies_are_read(codec: str) -> None:
    if not pa.Codec.is_available(codec):
        pytest.skip(f"pyarrow built without {codec}")
    b = pa.RecordBatch.from_pydict({"x": pa.array(range(1000))})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, b.schema, options=pa.ipc.IpcWriteOptions(compression=codec)) as w:
        w.write_batch(b)
    assert read_single_batch([sink.getvalue()]).equals(b)


def test_misaligned_frames_are_realigned() -> None:
    b = pa.RecordBatch.from_pydict({"x": pa.array(range(10), pa.float64())})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, b.schema) as w:
        w.write_batch(b)
    data = b"\0" + sink.getvalue().to_pybytes()
    got = read_single_batch([memoryview(data)[1:]])
    assert got.equals(b)
    assert got.column(0).buffers()[1].address % 8 == 0
