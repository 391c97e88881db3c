"""Stage option on_error=skip: the worker isolates the rows the chain raises on
(bisection) and answers RESULT with the ROW_ERRORS flag (PROTOCOL.md 5.5, 9)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from conftest import RawHost, ipc_stream
from isthmus import UDFError, udf
from isthmus import protocol as P
from isthmus.errors import ProtocolError
from isthmus.runtime import read_stream
from isthmus.testing import FailedRow, HostStage, LocalHost, SkipResult, run_udf

N = 10_000
IDS = pa.table({"id": pa.array(range(N), pa.int64())})
BAD = [i for i in range(N) if i % 97 == 0]
GOOD = [i for i in range(N) if i % 97 != 0]


def no_multiples_of_97(batch: pa.RecordBatch) -> dict:
    for i in batch["id"].to_pylist():
        if i % 97 == 0:
            raise ValueError(f"id {i} is a multiple of 97")  # the raising line
    return {"id": batch["id"], "y": pc.multiply(batch["id"], 3)}


# -- the worker, in process ----------------------------------------------------------------


def test_rows_divisible_by_97_are_isolated_in_one_10000_row_batch() -> None:
    result = run_udf(no_multiples_of_97, IDS, on_error="skip")
    assert isinstance(result, SkipResult)
    out, failures = result
    assert IDS.num_rows == N and len(IDS.to_batches()) == 1  # one batch of 10,000 rows
    assert [f.row for f in failures] == BAD
    assert len(failures) == 104
    for f in failures:
        assert isinstance(f, FailedRow)
        assert (f.sequence, f.batch_row, f.stage, f.exc_type) == (1, f.row, "no_multiples_of_97", "ValueError")
        assert f.message == f"id {f.row} is a multiple of 97"
        assert 'raise ValueError(f"id {i} is a multiple of 97")  # the raising line' in f.traceback
        assert f.traceback.rstrip().endswith(f"ValueError: id {f.row} is a multiple of 97")
        assert "isthmus/runtime.py" not in f.traceback
        assert "During handling" not in f.traceback and "StageFailure" not in f.traceback
    # Every other row's output, exact and in input order.
    assert out.column("id").to_pylist() == GOOD
    assert out.column("y").to_pylist() == [3 * i for i in GOOD]
    assert out.schema == pa.schema([("id", pa.int64()), ("y", pa.int64())])


def test_row_indices_are_per_batch_on_the_wire_and_absolute_in_run_udf() -> None:
    out, failures = run_udf(no_multiples_of_97, IDS, batch_rows=1000, workers=2, on_error="skip")
    assert [f.row for f in failures] == BAD
    assert [(f.sequence, f.batch_row) for f in failures] == [(i // 1000 + 1, i % 1000) for i in BAD]
    assert out.column("id").to_pylist() == GOOD


def test_default_is_fail_fast() -> None:
    with pytest.raises(UDFError) as info:
        run_udf(no_multiples_of_97, IDS)
    assert (info.value.kind, info.value.exc_type) == ("user", "ValueError")
    assert not isinstance(run_udf(lambda b: b, IDS), SkipResult)


def test_fused_chain_reports_the_stage_that_raised_and_input_rows() -> None:
    def first(batch):  # type: ignore[no-untyped-def]
        xs = batch["x"].to_pylist()
        if 3 in xs:
            raise KeyError("three")
        return batch.filter(pc.equal(pc.bit_wise_and(batch["x"], 1), 0))  # keep even x

    def second(batch):  # type: ignore[no-untyped-def]
        for x in batch["x"].to_pylist():
            if x % 10 == 4:
                raise ZeroDivisionError(f"x={x}")
        return {"x": batch["x"], "z": pc.add(batch["x"], 1000)}

    data = pa.table({"x": pa.array(range(100), pa.int64())})
    out, failures = run_udf([first, second], data, on_error="skip")
    want_bad = sorted([3] + [x for x in range(100) if x % 10 == 4])
    assert [f.row for f in failures] == want_bad
    assert [(f.stage, f.exc_type) for f in failures][:2] == [("first", "KeyError"), ("second", "ZeroDivisionError")]
    assert all(f.stage == "second" and f.message == f"x={f.row}" for f in failures if f.row != 3)
    assert [f.message for f in failures if f.row == 3] == ["'three'"]
    want = [x for x in range(100) if x % 2 == 0 and x % 10 != 4]
    assert out.column("x").to_pylist() == want
    assert out.column("z").to_pylist() == [x + 1000 for x in want]


def test_skip_on_one_stage_applies_to_the_whole_chain() -> None:
    def ok(batch):  # type: ignore[no-untyped-def]
        return batch

    def picky(batch):  # type: ignore[no-untyped-def]
        if 7 in batch["x"].to_pylist():
            raise ValueError("seven")
        return batch

    data = pa.table({"x": pa.array(range(10), pa.int64())})
    with LocalHost([HostStage("ok", ok, {"on_error": "skip"}), HostStage("picky", picky)], data.schema) as host:
        (table, failed), = list(host.run_with_failures(data.to_batches()))
    assert [(f.row, f.stage) for f in failed] == [(7, "picky")]
    assert table.column("x").to_pylist() == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert host.failures == failed


def test_all_rows_failing_with_a_declared_schema() -> None:
    @udf(schema={"y": pa.float64()})
    def never(batch):  # type: ignore[no-untyped-def]
        raise RuntimeError("no")

    data = pa.table({"x": pa.array(range(50), pa.int64())})
    out, failures = run_udf(never, data, batch_rows=20, on_error="skip")
    assert [f.row for f in failures] == list(range(50))
    assert out.num_rows == 0 and out.schema == pa.schema([("y", pa.float64())])
    with LocalHost([never], data.schema, on_error="skip") as host:
        (table, failed), = list(host.run_with_failures(data.to_batches()))
    assert table.num_rows == 0 and table.schema == pa.schema([("y", pa.float64())])
    assert len(failed) == 50


def test_all_rows_failing_without_a_declared_schema() -> None:
    def never(batch):  # type: ignore[no-untyped-def]
        raise RuntimeError("no")

    data = pa.table({"x": pa.array(range(5), pa.int64())})
    with LocalHost([never], data.schema, on_error="skip") as host:
        (table, failed), = list(host.run_with_failures(data.to_batches()))
    assert table.num_rows == 0 and len(table.schema) == 0
    assert [f.row for f in failed] == [0, 1, 2, 3, 4]
    out, failures = run_udf(never, data, on_error="skip")
    assert out.num_rows == 0 and len(failures) == 5


def test_rows_same_keeps_one_output_row_per_good_input_row() -> None:
    @udf(input="pandas")
    def score(df: pd.DataFrame) -> pd.DataFrame:
        if (df["x"] % 13 == 5).any():
            raise ArithmeticError("bad x")
        return pd.DataFrame({"score": df["x"] * 0.5})

    data = pa.table({"x": pa.array(range(200), pa.int64())})
    out, failures = run_udf(score, data, batch_rows=64, options={"rows": "same"}, on_error="skip")
    bad = [x for x in range(200) if x % 13 == 5]
    assert [f.row for f in failures] == bad
    assert out.num_rows == 200 - len(bad)
    assert out.column("score").to_pylist() == [x * 0.5 for x in range(200) if x % 13 != 5]


def test_rows_same_violation_on_a_good_slice_is_a_schema_error() -> None:
    def drops_first(batch):  # type: ignore[no-untyped-def]
        if 5 in batch["x"].to_pylist():
            raise ValueError("five")
        return batch.slice(1)

    data = pa.table({"x": pa.array(range(10), pa.int64())})
    with pytest.raises(UDFError) as info:
        run_udf(drops_first, data, options={"rows": "same"}, on_error="skip")
    assert info.value.kind == "schema" and "option rows=same" in info.value.message


def test_schema_errors_and_memory_errors_are_not_isolated() -> None:
    def bad_type(batch):  # type: ignore[no-untyped-def]
        return 42

    def hungry(batch):  # type: ignore[no-untyped-def]
        raise MemoryError()

    def hungry_on_one_row(batch):  # type: ignore[no-untyped-def]
        if 3 in batch["x"].to_pylist():
            raise ValueError("three")
        if batch.num_rows < 10 and 8 in batch["x"].to_pylist():
            raise MemoryError()  # only met during bisection
        return batch

    data = pa.table({"x": pa.array(range(10), pa.int64())})
    with pytest.raises(UDFError) as info:
        run_udf(bad_type, data, on_error="skip")
    assert info.value.kind == "schema"
    with pytest.raises(UDFError) as info:
        run_udf(hungry, data, on_error="skip")
    assert info.value.kind == "oom" and info.value.retryable
    with pytest.raises(UDFError) as info:
        run_udf(hungry_on_one_row, data, on_error="skip")
    assert info.value.kind == "oom"


def test_class_stage_is_set_up_once_and_rerun_on_slices() -> None:
    events = []

    class Model:
        def setup(self) -> None:
            events.append("setup")

        def __call__(self, batch):  # type: ignore[no-untyped-def]
            events.append(batch.num_rows)
            if 2 in batch["x"].to_pylist():
                raise ValueError("two")
            return {"y": pc.negate(batch["x"])}

    data = pa.table({"x": pa.array(range(8), pa.int64())})
    out, failures = run_udf(Model, data, on_error="skip")
    assert [f.row for f in failures] == [2]
    assert out.column("y").to_pylist() == [0, -1, -3, -4, -5, -6, -7]
    # whole batch, then halves [0,4) (fails) and [4,8), then [0,2) and [2,4) (fails), then [2,3) and [3,4)
    assert events == ["setup", 8, 4, 2, 2, 1, 1, 4]


def test_failure_that_depends_on_batch_composition_reports_no_row() -> None:
    def too_big(batch):  # type: ignore[no-untyped-def]
        if batch.num_rows > 4:
            raise OverflowError("batch too big")
        return batch

    data = pa.table({"x": pa.array(range(16), pa.int64())})
    out, failures = run_udf(too_big, data, on_error="skip")
    assert failures == []
    assert out.column("x").to_pylist() == list(range(16))


def test_slices_inferring_different_types_are_unified() -> None:
    def maybe(batch):  # type: ignore[no-untyped-def]
        xs = batch["x"].to_pylist()
        if 0 in xs:
            raise ValueError("zero")
        return {"y": [x if x > 2 else None for x in xs]}  # a slice of rows 1..2 infers type null

    data = pa.table({"x": pa.array(range(8), pa.int64())})
    out, failures = run_udf(maybe, data, on_error="skip")
    assert [f.row for f in failures] == [0]
    assert out.schema == pa.schema([("y", pa.int64())])
    assert out.column("y").to_pylist() == [None, None, 3, 4, 5, 6, 7]


def test_generator_stage_is_rejected_at_setup() -> None:
    @udf
    def gen(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from batches

    with pytest.raises(UDFError) as info:
        run_udf(gen, IDS, on_error="skip")
    err = info.value
    assert (err.kind, err.stage, err.stage_index) == ("setup", "gen", 0)
    assert "generator" in err.message and "on_error=skip" in err.message

    class Streaming:
        def __call__(self, batches):  # type: ignore[no-untyped-def]
            yield from batches

    def ident(batch):  # type: ignore[no-untyped-def]
        return batch

    # skip on the first stage only still covers the generator in stage 1
    stages = [HostStage("ident", ident, {"on_error": "skip"}), HostStage("streaming", Streaming)]
    with pytest.raises(UDFError) as info:
        with LocalHost(stages, IDS.schema):
            pass
    assert (info.value.kind, info.value.stage_index) == ("setup", 1)


def test_unknown_on_error_value_is_a_setup_error() -> None:
    def ident(batch):  # type: ignore[no-untyped-def]
        return batch

    with pytest.raises(UDFError) as info:
        run_udf(HostStage("ident", ident, {"on_error": "dead-letter"}), IDS)
    assert info.value.kind == "setup"
    assert "expected option on_error to be 'fail' or 'skip', found 'dead-letter'" in info.value.message
    with pytest.raises(ValueError):
        run_udf(ident, IDS, on_error="ignore")  # type: ignore[call-overload]


def test_at_most_10000_failed_rows_per_batch() -> None:
    assert P.MAX_ROW_FAILURES == 10_000

    def never(batch):  # type: ignore[no-untyped-def]
        raise ValueError("nope")

    exactly = pa.table({"x": pa.array(range(10_000), pa.int64())})
    out, failures = run_udf(never, exactly, on_error="skip")
    assert len(failures) == 10_000 and out.num_rows == 0
    over = pa.table({"x": pa.array(range(10_001), pa.int64())})
    with pytest.raises(UDFError) as info:
        run_udf(never, over, on_error="skip")
    err = info.value
    assert (err.kind, err.exc_type, err.stage, err.row_start, err.row_end) == ("user", "ValueError", "never", 0, 1)
    assert err.message.startswith("expected at most 10000 failed rows in one batch with on_error=skip, found more")
    assert "batch of 10001 rows" in err.message and "ValueError: nope" in err.message
    # Smaller batches of the same rows are fine: the cap is per batch.
    out, failures = run_udf(never, over, batch_rows=5000, on_error="skip")
    assert len(failures) == 10_001


def test_tracebacks_and_messages_are_capped_at_8_kib() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("é" * 10_000)  # 20,000 bytes of UTF-8
        deep(n - 1)

    def fails(batch):  # type: ignore[no-untyped-def]
        if 1 in batch["x"].to_pylist():
            deep(300)
        return batch

    data = pa.table({"x": pa.array(range(4), pa.int64())})
    out, failures = run_udf(fails, data, on_error="skip")
    (f,) = failures
    assert f.row == 1 and out.num_rows == 3
    assert len(f.traceback.encode()) <= 8192 and len(f.message.encode()) <= 8192
    assert "cut to 8192" in f.traceback
    assert f.traceback.startswith("Traceback (most recent call last):")
    assert f.traceback.rstrip().endswith("ééé")  # the tail (the exception line) is kept


def test_truncate_utf8() -> None:
    assert P.truncate_utf8("short") == "short"
    text = "a" * 5000 + "€" * 3000 + "z"
    cut = P.truncate_utf8(text, 1000)
    assert len(cut.encode()) <= 1000 and cut.startswith("aaa") and cut.endswith("€z")
    assert "(14001 bytes, cut to 1000)" in cut


# -- documents and frames ------------------------------------------------------------------


def test_parse_row_failures_checks_rows() -> None:
    entry = {"row": 2, "stage": "s", "exc_type": "E", "message": "m", "traceback": ""}
    assert P.parse_row_failures({"failed": [entry]}, 3) == [P.RowFailure(2, "s", "E", "m", "")]
    with pytest.raises(ProtocolError, match="row in 0..1, found 2"):
        P.parse_row_failures({"failed": [entry]}, 2)
    with pytest.raises(ProtocolError, match="distinct and ascending"):
        P.parse_row_failures({"failed": [entry, entry]})
    with pytest.raises(ProtocolError, match="'failed'"):
        P.parse_row_failures({})
    with pytest.raises(ProtocolError, match="at least one entry"):
        P.parse_row_failures({"failed": []})
    env = P.Envelope(P.Kind.RESULT, 0, 0, 1, P.FLAG_ROW_ERRORS)
    assert P.result_payload_start(env, 3) == 2
    assert P.result_payload_start(P.Envelope(P.Kind.RESULT, 0, 0, 1), 2) == 1
    with pytest.raises(ProtocolError) as info:
        P.result_payload_start(env, 2)
    assert info.value.rejection == "frames"


SKIPPY = """
import pyarrow as pa
import pyarrow.compute as pc
from isthmus import udf

@udf(schema={"id": pa.int64(), "y": pa.float64()})
def score(batch):
    ids = batch["id"].to_pylist()
    for i in ids:
        if i % 3 == 2:
            raise ValueError(f"bad id {i}")  # the raising line
    return {"id": batch["id"], "y": pc.divide(pc.cast(batch["id"], pa.float64()), 2.0)}

@udf
def counting(batches):
    for b in batches:
        yield b
"""


def test_message_level_flags_and_frames(raw_host: RawHost, write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("skippy.py", SKIPPY)
    schema = pa.schema([pa.field("id", pa.int64())])
    raw_host.spawn()
    env, rest = raw_host.handshake(f"{path}:score", schema, options={"on_error": "skip"})
    assert env.kind == P.Kind.READY

    # Rows 2 and 5 raise (ids 2 and 5): flag ROW_ERRORS, JSON in frame 1, payload from frame 2.
    batch = pa.record_batch([pa.array([0, 1, 2, 3, 4, 5, 6], pa.int64())], schema=schema)
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, attempt=3, sequence=9), ipc_stream(batch))
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.RESULT
    assert (env.flags, env.stage, env.attempt, env.sequence) == (P.FLAG_ROW_ERRORS, 0, 3, 9)
    assert len(rest) == 2  # the envelope, the failures document, one payload frame (small)
    doc = json.loads(rest[0])
    assert P.dumps_json(doc) == rest[0]  # canonical JSON
    assert list(doc) == ["failed"]
    assert [sorted(f) for f in doc["failed"]] == [["exc_type", "message", "row", "stage", "traceback"]] * 2
    assert [(f["row"], f["stage"], f["exc_type"], f["message"]) for f in doc["failed"]] == [
        (2, "s", "ValueError", "bad id 2"), (5, "s", "ValueError", "bad id 5")]
    assert all('raise ValueError(f"bad id {i}")  # the raising line' in f["traceback"] for f in doc["failed"])
    table = read_stream(rest[1:])
    assert table.to_pydict() == {"id": [0, 1, 3, 4, 6], "y": [0.0, 0.5, 1.5, 2.0, 3.0]}

    # No failure: exactly today's RESULT (flag 0, payload in frame 1).
    batch = pa.record_batch([pa.array([0, 3, 4], pa.int64())], schema=schema)
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, attempt=0, sequence=10), ipc_stream(batch))
    env, rest = raw_host.recv()
    assert (env.kind, env.flags, env.sequence) == (P.Kind.RESULT, 0, 10)
    assert len(rest) == 1 and read_stream(rest).to_pydict() == {"id": [0, 3, 4], "y": [0.0, 1.5, 2.0]}

    # Every row fails: an empty payload with the declared schema.
    batch = pa.record_batch([pa.array([2, 5], pa.int64())], schema=schema)
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, attempt=0, sequence=11), ipc_stream(batch))
    env, rest = raw_host.recv()
    assert (env.kind, env.flags, env.sequence) == (P.Kind.RESULT, P.FLAG_ROW_ERRORS, 11)
    assert [f["row"] for f in json.loads(rest[0])["failed"]] == [0, 1]
    table = read_stream(rest[1:])
    assert table.num_rows == 0 and table.schema == pa.schema([("id", pa.int64()), ("y", pa.float64())])

    raw_host.send(P.encode_envelope(P.Kind.CLOSE), P.dumps_json({"reason": "done"}))
    env, _ = raw_host.recv()
    assert env.kind == P.Kind.BYE
    assert raw_host.wait()[0] == 0


def test_message_level_large_payload_follows_frame_1(raw_host: RawHost, write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("skippy.py", SKIPPY)
    schema = pa.schema([pa.field("id", pa.int64())])
    raw_host.spawn()
    raw_host.handshake(f"{path}:score", schema, options={"on_error": "skip", "rows": "same"})
    ids = [i for i in range(30_000) if i % 3 != 2] + [2]  # one bad row, at the end
    batch = pa.record_batch([pa.array(ids, pa.int64())], schema=schema)
    raw_host.send(P.encode_envelope(P.Kind.BATCH, stage=0, sequence=1), ipc_stream(batch))
    env, rest = raw_host.recv()
    assert env.flags == P.FLAG_ROW_ERRORS
    assert [f["row"] for f in json.loads(rest[0])["failed"]] == [len(ids) - 1]
    assert len(rest) > 2  # a large payload: one frame per IPC message, after the JSON frame
    table = read_stream(rest[1:])
    assert table.column("id").to_pylist() == ids[:-1]


def test_message_level_generator_rejected(raw_host: RawHost, write_udf) -> None:  # type: ignore[no-untyped-def]
    path = write_udf("skippy.py", SKIPPY)
    raw_host.spawn()
    env, rest = raw_host.handshake(f"{path}:counting", pa.schema([("id", pa.int64())]), options={"on_error": "skip"})
    assert (env.kind, env.stage, env.sequence) == (P.Kind.ERROR, 0, 0)
    report = P.parse_error(json.loads(rest[0]))
    assert report.kind == "setup" and "generator" in report.message
    code, err = raw_host.wait()
    assert code == 3 and "on_error=skip" in err


def test_hello_announces_row_errors(raw_host: RawHost) -> None:
    raw_host.spawn()
    env, rest = raw_host.recv()
    assert env.kind == P.Kind.HELLO
    assert "row_errors" in P.parse_hello(json.loads(rest[0])).capabilities


def test_random_failure_sets_are_isolated_exactly() -> None:
    import random

    rng = random.Random(20261123)

    def flagged(batch):  # type: ignore[no-untyped-def]
        if any(batch["bad"].to_pylist()):
            raise ValueError("flagged")
        return {"x": pc.multiply(batch["x"], 10)}

    schema = pa.schema([("x", pa.int64()), ("bad", pa.bool_())])
    batches, expected = [], []
    for _ in range(200):
        n = rng.choice([1, 2, 3, 7, 64, 100, 257, 1000])
        density = rng.choice([0.0, 0.001, 0.01, 0.2, 0.9, 1.0])
        bad = [rng.random() < density for _ in range(n)]
        xs = [rng.randrange(1_000_000) for _ in range(n)]
        batches.append(pa.record_batch([pa.array(xs, pa.int64()), pa.array(bad)], schema=schema))
        expected.append(([i for i in range(n) if bad[i]], [10 * x for x, b in zip(xs, bad) if not b]))
    with LocalHost([flagged], schema, on_error="skip", credits=4) as host:
        results = list(host.run_with_failures(batches))
    for (table, failed), (want_rows, want_x) in zip(results, expected):
        assert [f.batch_row for f in failed] == want_rows
        assert (table.column("x").to_pylist() if table.num_columns else []) == want_x
