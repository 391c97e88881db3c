"""End-to-end: `isthmus convert` and `isthmus inspect` against pyarrow.

CSV and JSON Lines files are read by us and by pyarrow (`pyarrow.csv.read_csv`,
`pyarrow.json.read_json`) and the values compared; Arrow files go round trip through every
format; every error path is checked for its exit code, its one `error:` line, and for
leaving no partial output behind.
"""
from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import os
import random
import select
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.json as pajson
import pytest

WORDS = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "日本", "with space", "a,b", 'say "hi"',
         "line\nbreak", "tab\there", "x" * 300, "'single'", "{json: 1}", "-5", "true?"]


# ---------------------------------------------------------------------------- helpers

def read_stream(data: bytes | Path) -> pa.Table:
    source = pa.BufferReader(data) if isinstance(data, bytes) else pa.OSFile(str(data))
    return ipc.open_stream(source).read_all()


def read_file(path: Path) -> pa.Table:
    return ipc.open_file(pa.OSFile(str(path))).read_all()


def normalize(column: pa.ChunkedArray) -> list:
    """Values for comparison: timestamps at microseconds (units differ, instants must not)."""
    t = column.type
    if pa.types.is_timestamp(t):
        column = column.cast(pa.timestamp("us", tz=t.tz))
    return column.to_pylist()


def assert_same_values(ours: pa.Table, theirs: pa.Table, columns: list[str] | None = None) -> None:
    names = columns or theirs.column_names
    assert ours.num_rows == theirs.num_rows
    for name in names:
        a, b = normalize(ours.column(name)), normalize(theirs.column(name))
        assert a == b, f"column {name}: first difference at row {next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)}"


def only_error_line(result) -> str:
    """The stderr of a failed run: exactly one `error:` line and no stack trace."""
    lines = result.error_lines
    assert len(lines) == 1, result.stderr
    assert "Fatal error" not in result.stderr and "Backtrace" not in result.stderr and "Stack dump" not in result.stderr
    return lines[0]


def temp_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------------------- data

def write_csv(path: Path, rows: int, seed: int = 7, line_end: str = "\n") -> None:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator=line_end)
        w.writerow(["id", "amount", "flag", "name", "day", "at", "note"])
        base = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
        for i in range(rows):
            amount = rng.choice([str(rng.randint(-1000, 1000)), repr(rng.uniform(-1e6, 1e6)),
                                 f"{rng.uniform(0, 1):.3e}", "0.1"])
            at = base + dt.timedelta(seconds=rng.randint(0, 10**8), microseconds=rng.randint(0, 999_999))
            at_text = at.strftime("%Y-%m-%dT%H:%M:%S.%f") + rng.choice(["Z", "+00:00"])
            if rng.random() < 0.3:
                local = at.astimezone(dt.timezone(dt.timedelta(hours=rng.randint(-11, 12))))
                at_text = local.isoformat()
            day = (dt.date(2000, 1, 1) + dt.timedelta(days=rng.randint(0, 20000))).isoformat()
            w.writerow([
                "" if rng.random() < 0.05 else str(i * 7919 - 10**6),
                amount,
                rng.choice(["true", "false", "True", "FALSE", ""]),
                rng.choice(WORDS),
                day,
                "" if rng.random() < 0.1 else at_text,
                "" if rng.random() < 0.9 else rng.choice(WORDS),
            ])


def write_jsonl(path: Path, rows: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            obj: dict = {"id": i, "score": rng.choice([rng.randint(-5, 5), rng.uniform(-1, 1)])}
            if i == 0:
                obj["score"] = 0.5
            if rng.random() < 0.8 or i == 0:
                obj["ok"] = rng.choice([True, False, None])
            obj["name"] = rng.choice(WORDS + ["emoji 😀", "nul\u0000byte", "back\\slash", "ctl\u0007"])
            obj["tags"] = [rng.choice(WORDS) for _ in range(rng.randint(0, 3))]
            pos = {"x": rng.randint(-100, 100)}
            if rng.random() < 0.7 or i == 0:
                pos["y"] = rng.uniform(-1e3, 1e3)
            obj["pos"] = pos if rng.random() < 0.95 or i == 0 else None
            if rng.random() < 0.8 or i == 0:
                obj["when"] = (dt.datetime(2020, 1, 1) + dt.timedelta(seconds=rng.randint(0, 10**8))).isoformat()
            keys = list(obj)
            if i > 0:
                rng.shuffle(keys)
            f.write(json.dumps({k: obj[k] for k in keys}, ensure_ascii=rng.random() < 0.5) + "\n")


def rich_table() -> pa.Table:
    n = 50
    rng = random.Random(3)
    dict_type = pa.dictionary(pa.int32(), pa.string())
    cols = {
        "i8": pa.array([rng.randint(-128, 127) if i % 7 else None for i in range(n)], pa.int8()),
        "i64": pa.array([rng.randint(-2**63, 2**63 - 1) if i % 5 else None for i in range(n)], pa.int64()),
        "u32": pa.array([rng.randint(0, 2**32 - 1) for _ in range(n)], pa.uint32()),
        "f32": pa.array([rng.uniform(-1, 1) for _ in range(n)], pa.float32()),
        "f64": pa.array([rng.uniform(-1e9, 1e9) if i % 6 else None for i in range(n)], pa.float64()),
        "flag": pa.array([rng.choice([True, False, None]) for _ in range(n)], pa.bool_()),
        "text": pa.array([rng.choice(WORDS + [""]) if i % 4 else None for i in range(n)], pa.string()),
        "blob": pa.array([bytes(rng.randrange(256) for _ in range(rng.randint(0, 6))) if i % 3 else None for i in range(n)], pa.binary()),
        "day": pa.array([dt.date(1990, 1, 1) + dt.timedelta(days=rng.randint(0, 20000)) for _ in range(n)], pa.date32()),
        "at": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=rng.randint(0, 10**10)) for _ in range(n)],
                       pa.timestamp("ms", tz="UTC")),
        "price": pa.array([decimal.Decimal(rng.randint(-10**9, 10**9)) / 100 for _ in range(n)], pa.decimal128(12, 2)),
        "nums": pa.array([[rng.randint(0, 9) for _ in range(rng.randint(0, 3))] if i % 8 else None for i in range(n)], pa.list_(pa.int64())),
        "pt": pa.array([{"x": rng.randint(0, 9), "label": rng.choice(WORDS)} for _ in range(n)],
                       pa.struct([("x", pa.int64()), ("label", pa.string())])),
        "color": pa.array([rng.choice(["red", "green", "blue", None]) for _ in range(n)]).dictionary_encode().cast(dict_type),
    }
    schema = pa.schema([pa.field(k, v.type, metadata={"unit": "m"} if k == "f64" else None) for k, v in cols.items()],
                       metadata={"source": "e2e", "version": "1"})
    return pa.Table.from_arrays(list(cols.values()), schema=schema)


def write_arrows(path: Path, table: pa.Table, max_chunksize: int = 20) -> None:
    with ipc.new_stream(str(path), table.schema) as w:
        for batch in table.to_batches(max_chunksize=max_chunksize):
            w.write_batch(batch)


# ---------------------------------------------------------------------------- CSV and JSON Lines against pyarrow

def test_csv_values_match_pyarrow(cli, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    write_csv(src, 3000)
    out = tmp_path / "out.arrows"
    r = cli("convert", src, out, "--batch-rows", "1000")
    assert r.code == 0, r.stderr
    assert r.stdout == b""
    ours = read_stream(out)
    assert [str(t) for t in ours.schema.types] == ["int64", "double", "bool", "string", "date32[day]", "timestamp[us, tz=UTC]", "string"]
    assert len(ipc.open_stream(pa.OSFile(str(out))).read_all().to_batches()) == 3
    theirs = pacsv.read_csv(src, convert_options=pacsv.ConvertOptions(
        null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False, true_values=["true", "True"],
        false_values=["false", "FALSE"]))
    assert_same_values(ours, theirs)


def test_csv_crlf_and_delimiter(cli, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    write_csv(src, 200, seed=3, line_end="\r\n")
    semi = tmp_path / "semi.csv"
    with open(src, newline="", encoding="utf-8") as f, open(semi, "w", newline="", encoding="utf-8") as g:
        csv.writer(g, delimiter=";", lineterminator="\r\n").writerows(csv.reader(f))
    out = tmp_path / "out.arrows"
    r = cli("convert", semi, out, "--delimiter", ";")
    assert r.code == 0, r.stderr
    theirs = pacsv.read_csv(semi, parse_options=pacsv.ParseOptions(delimiter=";"),
                            convert_options=pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True,
                                                                 quoted_strings_can_be_null=False, true_values=["true", "True"], false_values=["false", "FALSE"]))
    assert_same_values(read_stream(out), theirs)


def test_jsonl_values_match_pyarrow(cli, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    write_jsonl(src, 2000)
    out = tmp_path / "out.arrows"
    r = cli("convert", src, out)
    assert r.code == 0, r.stderr
    ours = read_stream(out)
    assert str(ours.schema.field("score").type) == "double"
    assert str(ours.schema.field("pos").type) == "struct<x: int64, y: double>"
    assert str(ours.schema.field("tags").type) == "list<item: string>"
    theirs = pajson.read_json(src)
    assert sorted(ours.column_names) == sorted(theirs.column_names)
    assert_same_values(ours, theirs)


def test_schema_override(cli, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("zip,n,at\n00123,1,2024-01-02T03:04:05Z\n99,2,2024-01-02T03:04:06Z\n")
    out = tmp_path / "out.arrows"
    r = cli("convert", src, out, "--schema", "zip:string,n:int8,at:timestamp[ms, tz=UTC]")
    assert r.code == 0, r.stderr
    t = read_stream(out)
    assert str(t.schema) == "zip: string\nn: int8\nat: timestamp[ms, tz=UTC]"
    assert t.column("zip").to_pylist() == ["00123", "99"]
    nohdr = tmp_path / "nohdr.csv"
    nohdr.write_text("1,x\n2,y\n")
    r = cli("convert", nohdr, out, "--no-header", "--schema", "id:int32,name:string")
    assert r.code == 0, r.stderr
    assert read_stream(out).to_pydict() == {"id": [1, 2], "name": ["x", "y"]}


# ---------------------------------------------------------------------------- round trips

def test_arrow_round_trip_keeps_everything(cli, tmp_path: Path) -> None:
    table = rich_table()
    a = tmp_path / "a.arrows"
    write_arrows(a, table)
    b = tmp_path / "b.arrow"
    r = cli("convert", a, b)
    assert r.code == 0, r.stderr
    fb = read_file(b)
    assert fb.schema.equals(table.schema, check_metadata=True)
    assert fb.equals(table)
    assert pa.types.is_dictionary(fb.schema.field("color").type)
    c = tmp_path / "c.arrows"
    r = cli("convert", b, c)
    assert r.code == 0, r.stderr
    fc = read_stream(c)
    assert fc.schema.equals(table.schema, check_metadata=True)
    assert fc.equals(table)
    for codec in ("zstd", "lz4"):
        z = tmp_path / f"z-{codec}.arrows"
        r = cli("convert", a, z, "--compression", codec)
        assert r.code == 0, r.stderr
        assert read_stream(z).equals(table)


def test_round_trip_through_csv_and_jsonl(cli, tmp_path: Path) -> None:
    table = rich_table()
    a = tmp_path / "a.arrows"
    write_arrows(a, table)
    b = tmp_path / "b.arrow"
    assert cli("convert", a, b).code == 0
    c = tmp_path / "c.csv"
    r = cli("convert", b, c)
    assert r.code == 0, r.stderr
    simple = ["i8", "i64", "u32", "f64", "flag", "text", "day", "at", "price", "color"]
    types = {name: table.schema.field(name).type for name in simple}
    types["color"] = pa.string()
    theirs = pacsv.read_csv(c, convert_options=pacsv.ConvertOptions(
        column_types=types, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False))
    expected = table.select(simple).set_column(simple.index("color"), "color", table.column("color").cast(pa.string()))
    assert_same_values(theirs, expected)
    # Nested values are JSON text, binary is base64.
    row0 = next(csv.DictReader(io.StringIO(c.read_text(encoding="utf-8"))))
    assert json.loads(row0["pt"]) == table.column("pt")[0].as_py()

    d = tmp_path / "d.jsonl"
    r = cli("convert", c, d)
    assert r.code == 0, r.stderr
    back = pajson.read_json(d)
    for name in ["i8", "i64", "u32", "flag", "day"]:
        assert normalize(back.column(name)) == normalize(table.column(name).cast(back.schema.field(name).type)), name
    # Timestamps are ISO 8601 text with a Z (pyarrow reads them back as strings).
    assert [None if v is None else dt.datetime.fromisoformat(v.replace("Z", "+00:00")) for v in back.column("at").to_pylist()] \
        == table.column("at").to_pylist()
    assert back.column("f64").to_pylist() == table.column("f64").to_pylist()
    # Through CSV, nested values travel as JSON text.
    for name in ("pt", "nums"):
        assert [None if v is None else json.loads(v) for v in back.column(name).to_pylist()] == table.column(name).to_pylist()


# ---------------------------------------------------------------------------- stdin / stdout

def test_stdin_to_stdout(cli, tmp_path: Path) -> None:
    data = b"a,b\n1,x\n2,\"y\n z\"\n"
    r = cli("convert", "-", "-", "--from", "csv", "--to", "jsonl", input=data)
    assert r.code == 0, r.stderr
    assert [json.loads(line) for line in r.stdout.decode().splitlines()] == [{"a": 1, "b": "x"}, {"a": 2, "b": "y\n z"}]
    # stdout defaults to an Arrow stream; stdin's format is recognised from its first bytes.
    r = cli("convert", "-", "-", input=data)
    assert r.code == 0, r.stderr
    stream = r.stdout
    assert read_stream(stream).to_pydict() == {"a": [1, 2], "b": ["x", "y\n z"]}
    out = tmp_path / "from-stdin.csv"
    r = cli("convert", "-", out, input=stream)
    assert r.code == 0, r.stderr
    assert out.read_text() == 'a,b\n1,x\n2,"y\n z"\n'


def test_live_stdin_flows_line_by_line(isthmus_binary: str) -> None:
    p = subprocess.Popen([isthmus_binary, "convert", "-", "-", "--from", "jsonl", "--to", "jsonl"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for i in range(3):
            p.stdin.write(json.dumps({"i": i, "s": f"row {i}"}).encode() + b"\n")
            p.stdin.flush()
            ready, _, _ = select.select([p.stdout], [], [], 10)
            assert ready, f"no output for row {i} within 10 s: the live input must flow without waiting for more"
            assert json.loads(p.stdout.readline()) == {"i": i, "s": f"row {i}"}
        p.stdin.close()
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# ---------------------------------------------------------------------------- inspect

def test_inspect(cli, tmp_path: Path) -> None:
    table = rich_table()
    a = tmp_path / "a.arrows"
    write_arrows(a, table)
    r = cli("inspect", a, "--rows", "3")
    assert r.code == 0, r.stderr
    text = r.stdout.decode()
    assert "format: Arrow IPC stream" in text
    assert f"size: " in text and str(a.stat().st_size) in text
    assert "  i8: int8" in text and "  color: dictionary<values=string, indices=int32, ordered=0>" in text
    assert "-- schema metadata --" in text and "source: 'e2e'" in text and "unit: 'm'" in text
    assert "batches: 3" in text and "rows: 50" in text and "in buffers" in text
    assert "first 3 rows:" in text and "… 47 more rows (50 in all)" in text
    lines = text.splitlines()
    header = lines.index("first 3 rows:") + 1
    assert lines[header].split()[:3] == ["i8", "i64", "u32"]
    assert str(table.column("u32")[0].as_py()) in lines[header + 3]
    assert r.stderr == ""

    csv_path = tmp_path / "x.csv"
    csv_path.write_text("a,b\n1,2024-01-02\n")
    r = cli("inspect", "-", "--from", "csv", input=csv_path.read_bytes())
    assert r.code == 0, r.stderr
    text = r.stdout.decode()
    assert "file: stdin" in text and "format: CSV" in text and "size: 17 bytes" in text
    assert "  b: date32[day]" in text and "2024-01-02" in text


# ---------------------------------------------------------------------------- errors

def test_missing_file(cli, tmp_path: Path) -> None:
    r = cli("convert", tmp_path / "nope.csv", tmp_path / "out.arrows")
    assert r.code == 2
    assert "cannot open" in only_error_line(r) and "nope.csv" in r.stderr
    assert not (tmp_path / "out.arrows").exists()
    r = cli("inspect", tmp_path / "nope.arrows")
    assert r.code == 2 and "nope.arrows" in only_error_line(r)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_that_cannot_be_written_is_an_error_not_a_crash(isthmus_binary: str, venv_python: str, tmp_path: Path) -> None:
    """A full disk (/dev/full), a closed stdout and a closed pipe with SIGPIPE ignored: one
    error line and exit 2 from every command that writes to stdout, never a trap, never a
    silent exit 0 with the output lost."""
    a = tmp_path / "a.arrows"
    write_arrows(a, rich_table())
    (tmp_path / "u.py").write_text("def f(batch):\n    return batch\n")
    runs = [(args, target) for target in ("full", "closed")
            for args in (["inspect", str(a), "--rows", "3"], ["udfs", str(tmp_path / "u.py"), "--python", venv_python],
                         ["--version"], ["keys", str(tmp_path / f"key-{target}")])]
    for args, target in runs:
        with open("/dev/full", "wb") as full:
            p = subprocess.run([isthmus_binary, *args], stdout=full if target == "full" else None, stderr=subprocess.PIPE,
                               timeout=60, preexec_fn=None if target == "full" else (lambda: os.close(1)))
        err = p.stderr.decode()
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        expected = "No space left on device" if target == "full" else "Bad file descriptor"
        assert p.returncode == 2 and lines == [f"error: cannot write '-': {expected}"], (args, target, p.returncode, err)
        assert "Fatal error" not in err and "crashed" not in err, (args, err)
    # A reader that goes away while SIGPIPE is ignored: EPIPE, not a trap.
    big = tmp_path / "big.arrows"
    write_arrows(big, pa.table({"s": ["x" * 40] * 20000}))
    p = subprocess.Popen([isthmus_binary, "inspect", str(big), "--rows", "20000"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, restore_signals=False)
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 2 and err == "error: cannot write '-': Broken pipe\n", err


def test_outputs_that_are_not_regular_files_are_written_not_replaced(cli, tmp_path: Path) -> None:
    """A FIFO (and a device, where the test may create one) is written to, not replaced by a
    regular file; a symbolic link keeps pointing where it did and its target gets the output; a
    folder is a one-line error."""
    import stat
    import threading

    src = tmp_path / "in.arrows"
    write_arrows(src, pa.table({"x": [1, 2, 3]}))
    expected = b'{"x":1}\n{"x":2}\n{"x":3}\n'

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = cli("convert", src, fifo, "--to", "jsonl")
    reader.join(timeout=30)
    assert r.code == 0, r.stderr
    assert got == [expected] and stat.S_ISFIFO(fifo.lstat().st_mode)

    if os.geteuid() == 0:  # a private copy of /dev/null: a regression cannot harm the real one
        node = tmp_path / "null"
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        r = cli("convert", src, node, "--to", "jsonl")
        assert r.code == 0, r.stderr
        assert stat.S_ISCHR(node.lstat().st_mode)

    target = tmp_path / "target.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to("target.jsonl")
    r = cli("convert", src, link)
    assert r.code == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == "target.jsonl" and target.read_bytes() == expected

    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to("created.jsonl")
    r = cli("convert", src, dangling)
    assert r.code == 0, r.stderr
    assert dangling.is_symlink() and (tmp_path / "created.jsonl").read_bytes() == expected

    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    r = cli("convert", src, folder)
    assert r.code == 2 and only_error_line(r) == f"error: cannot write output '{folder}': expected a file, found a folder"
    assert temp_leftovers(tmp_path) == []


def test_unknown_extension(cli, tmp_path: Path) -> None:
    src = tmp_path / "data.foo"
    src.write_text("a\n1\n")
    r = cli("convert", src, tmp_path / "out.arrows")
    assert r.code == 2
    assert only_error_line(r) == (f"error: cannot tell the format of '{src}': expected an extension .arrows, .arrow, "
                                  ".feather, .csv, .jsonl or .ndjson, or --from/--to")
    r = cli("convert", tmp_path / "x.csv", tmp_path / "out.bar")
    assert r.code == 2 and "out.bar" in only_error_line(r)


def test_bad_flags(cli, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("a\n1\n")
    for args in (["--bogus"], ["--from", "xml"], ["--compression", "snappy"], ["--delimiter", "ab"],
                 ["--batch-rows", "0"], ["--schema", "a:int65"]):
        r = cli("convert", src, tmp_path / "out.arrows", *args)
        assert r.code == 2, (args, r.stderr)
        only_error_line(r)
        assert not (tmp_path / "out.arrows").exists()


def test_usage_errors_are_one_line_and_say_what_was_found(cli, tmp_path: Path) -> None:
    """Argument-parser errors are one line (no usage synopsis after it), and a negative number
    given to an option is named as such, not as a missing value."""
    src = tmp_path / "in.csv"
    src.write_text("a\n1\n")
    udf_file = tmp_path / "u.py"
    udf_file.write_text("def f(batch):\n    return batch\n")
    cases = [
        (["run", "--input", src, "--output", tmp_path / "o.arrows", "--udf", "a.py:f", "--linger", "-1"],
         "error: --linger: expected a value of 0 or more, found '-1' (see 'isthmus run --help')"),
        (["run", "--input", src, "--output", tmp_path / "o.arrows", "--udf", "a.py:f", "--workers", "-2"],
         "error: --workers: expected a value of 0 or more, found '-2' (see 'isthmus run --help')"),
        (["run", "--input", src, "--output", tmp_path / "o.arrows", "--udf", "a.py:f", "--workers", "100000"],
         "error: --workers: expected 1 to 1024 but found 100000 (see 'isthmus run --help')"),
        (["run", "--input", src, "--output", tmp_path / "o.arrows", "--udf", "a.py:f", "--batch-bytes", "0"],
         "error: --batch-bytes: expected at least 1 byte but found '0'"),
        (["run", "--input", src, "--output", tmp_path / "o.arrows", "--udf", "a.py:f", "--max-result-bytes", "0"],
         "error: --max-result-bytes: expected at least 1 byte but found '0'"),
        (["run", "--input", src, "--output", tmp_path / "o.arrows", "--udf", f"{udf_file}:f", "--select", "a,,b"],
         "error: --select: expected comma-separated column names but found 'a,,b'"),
        (["convert", src, tmp_path / "o.arrows", "--infer-rows", "-1"],
         "error: --infer-rows: expected a value of 0 or more, found '-1' (see 'isthmus convert --help')"),
        (["convert", src], "error: Missing expected argument '<output>' (see 'isthmus convert --help')"),
        (["run", "--input", src, "--output", "-1.arrows", "--udf", "a.py:f"],
         "error: --output: expected a value but found '-1.arrows', which reads as an option; write --output=-1.arrows "
         "(see 'isthmus run --help')"),
        (["run", "--input", src, "--output", tmp_path / "o.arrows", "--udf", "a.py:f", "--linger", "-2s"],
         "error: --linger: expected a value of 0 or more, found '-2s' (see 'isthmus run --help')"),
        (["frobnicate"], "error: Unexpected argument 'frobnicate' (see 'isthmus --help')"),
    ]
    for args, line in cases:
        r = cli(*args)
        assert r.code == 2 and r.stderr == line + "\n", (args, r.stderr)
    assert not (tmp_path / "o.arrows").exists()


def test_malformed_csv(cli, tmp_path: Path) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("a,b\n1,x\n2,y\n3,z,extra\n")
    r = cli("convert", src, tmp_path / "out.arrows")
    assert r.code == 1
    assert only_error_line(r) == f"error: {src}: CSV line 4 (row 3): expected 2 fields but found 3"
    src.write_text("a,b\n" + "".join(f"{i},x\n" for i in range(2000)) + "oops,x\n")
    r = cli("convert", src, tmp_path / "out.arrows")
    assert r.code == 1
    line = only_error_line(r)
    assert "CSV line 2002 (row 2001), column 'a': expected a value of type int64 but found 'oops'" in line
    assert "byte offset" in line


def test_malformed_jsonl(cli, tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text('{"a": 1}\n{"a": 2,, }\n')
    r = cli("convert", src, tmp_path / "out.arrows")
    assert r.code == 1
    assert "JSON Lines line 2, byte 9" in only_error_line(r)


def test_truncated_ipc_stream(cli, tmp_path: Path) -> None:
    a = tmp_path / "a.arrows"
    write_arrows(a, rich_table())
    data = a.read_bytes()
    cut = tmp_path / "cut.arrows"
    cut.write_bytes(data[: len(data) * 2 // 3])
    for output in ("out.csv", "out.arrow"):
        r = cli("convert", cut, tmp_path / output)
        assert r.code == 1, r.stderr
        only_error_line(r)
        assert not (tmp_path / output).exists()
    r = cli("convert", "-", tmp_path / "out.jsonl", input=data[: len(data) // 2])
    assert r.code == 1, r.stderr
    only_error_line(r)
    assert not (tmp_path / "out.jsonl").exists()


def test_failed_convert_leaves_nothing_and_keeps_existing(cli, tmp_path: Path) -> None:
    src = tmp_path / "late-error.csv"
    src.write_text("a,b\n" + "".join(f"{i},x\n" for i in range(5000)) + "1,2,3\n")
    out = tmp_path / "existing.jsonl"
    out.write_text("keep me\n")
    r = cli("convert", src, out, "--batch-rows", "100")
    assert r.code == 1
    assert "line 5002" in only_error_line(r)
    assert out.read_text() == "keep me\n"
    fresh = tmp_path / "fresh.arrows"
    r = cli("convert", src, fresh, "--batch-rows", "100")
    assert r.code == 1
    assert not fresh.exists()
    assert temp_leftovers(tmp_path) == []
    # And a successful run replaces the existing file.
    good = tmp_path / "good.csv"
    good.write_text("a\n1\n")
    r = cli("convert", good, out)
    assert r.code == 0, r.stderr
    assert out.read_text() == '{"a":1}\n'
    assert temp_leftovers(tmp_path) == []
