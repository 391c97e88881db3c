import Foundation
import IsthmusArrow
import IsthmusCompression
import Testing

/// pyarrow interoperability, both directions. Needs a Python with pyarrow: `ISTHMUS_PYTHON`
/// or `<root>/.venv/bin/python`; the tests fail with a clear message when it is missing.
@Suite("IPC interop with pyarrow", .serialized)
struct IPCInteropTests {
    /// Compares pairs of IPC files with pyarrow. Input: a JSON list of checks
    /// {expected, expected_format, actual, actual_format, mode, slice}; mode "exact" needs
    /// `Table.equals` and schemas equal with metadata; "values" compares schemas and Python
    /// values (for files with dictionary deltas, whose readers see the final dictionary).
    static let compareScript = #"""
    import json, sys
    import pyarrow as pa
    import pyarrow.ipc as ipc

    def read(path, fmt):
        if fmt == "file":
            with ipc.open_file(path) as r:
                return pa.Table.from_batches([r.get_batch(i) for i in range(r.num_record_batches)], schema=r.schema)
        with ipc.open_stream(path) as r:
            return r.read_all()

    def sliced(table):
        out = []
        for b in table.to_batches():
            out.append(b.slice(1, b.num_rows - 2) if b.num_rows >= 3 else b)
        return pa.Table.from_batches(out, schema=table.schema)

    results = []
    for check in json.load(open(sys.argv[1])):
        try:
            expected = read(check["expected"], check["expected_format"])
            actual = read(check["actual"], check["actual_format"])
            # Full validation of ours, unless the original itself fails it (some reference
            # files hold date64 values that are not whole days, or decimals past their precision).
            try:
                expected.validate(full=True)
                actual.validate(full=True)
            except pa.ArrowInvalid:
                actual.validate()
            if check.get("slice"):
                expected = sliced(expected)
            if not expected.schema.equals(actual.schema, check_metadata=True):
                raise AssertionError("schema differs:\n%s\nvs\n%s" % (expected.schema, actual.schema))
            if check["mode"] == "exact":
                ok = expected.equals(actual, check_metadata=True)
            else:
                ok = expected.to_pylist() == actual.to_pylist()
            if not ok:
                raise AssertionError("data differs")
            results.append({"name": check["name"], "ok": True})
        except Exception as e:
            results.append({"name": check["name"], "ok": False, "error": "%s: %s" % (type(e).__name__, e)})
    print(json.dumps(results))
    """#

    /// Writes random batches of every type pyarrow can build from Python (nulls, slices,
    /// empty batches, metadata), plus a stream with dictionary deltas and one with replacements.
    static let generateScript = #"""
    import decimal, random, sys
    import numpy as np
    import pyarrow as pa
    import pyarrow.ipc as ipc

    random.seed(20240611)
    out = sys.argv[1]

    def maybe(v, p=0.2):
        return None if random.random() < p else v

    def rstr(k=8):
        return "".join(random.choice("abcxyz é€日本🙂") for _ in range(random.randint(0, k)))

    def rbytes(k=8):
        return bytes(random.getrandbits(8) for _ in range(random.randint(0, k)))

    def ints(lo, hi, n):
        return [maybe(random.randint(lo, hi)) for _ in range(n)]

    DAY = 86400
    entry = pa.struct([pa.field("a", pa.int32()), pa.field("b", pa.string())])
    types = {
        "null": pa.null(), "bool": pa.bool_(),
        "i8": pa.int8(), "i16": pa.int16(), "i32": pa.int32(), "i64": pa.int64(),
        "u8": pa.uint8(), "u16": pa.uint16(), "u32": pa.uint32(), "u64": pa.uint64(),
        "f16": pa.float16(), "f32": pa.float32(), "f64": pa.float64(),
        "str": pa.string(), "lstr": pa.large_string(), "bin": pa.binary(), "lbin": pa.large_binary(),
        "fsb": pa.binary(5), "d32": pa.date32(), "d64": pa.date64(),
        "t32s": pa.time32("s"), "t32ms": pa.time32("ms"), "t64us": pa.time64("us"), "t64ns": pa.time64("ns"),
        "ts_s": pa.timestamp("s"), "ts_ms_utc": pa.timestamp("ms", tz="UTC"),
        "ts_us_paris": pa.timestamp("us", tz="Europe/Paris"), "ts_ns_off": pa.timestamp("ns", tz="+07:30"),
        "dur_s": pa.duration("s"), "dur_ms": pa.duration("ms"), "dur_us": pa.duration("us"), "dur_ns": pa.duration("ns"),
        "mdn": pa.month_day_nano_interval(),
        "dec128": pa.decimal128(10, 2), "dec256": pa.decimal256(40, 5),
        "list": pa.list_(pa.int32()), "llist": pa.large_list(pa.string()),
        "fsl": pa.list_(pa.float64(), 3), "struct": entry,
        "map": pa.map_(pa.string(), pa.int64()),
        "nested": pa.list_(pa.struct([pa.field("x", pa.list_(pa.int16())), pa.field("y", pa.bool_())])),
        "dict8": pa.dictionary(pa.int8(), pa.string()),
        "dictu32": pa.dictionary(pa.uint32(), pa.large_string(), ordered=True),
        "dict64": pa.dictionary(pa.int64(), pa.int32()),
        "listdict": pa.list_(pa.dictionary(pa.int16(), pa.string())),
        "sparse": pa.sparse_union([pa.field("i", pa.int32()), pa.field("s", pa.string())], type_codes=[3, 9]),
        "dense": pa.dense_union([pa.field("i", pa.int64()), pa.field("b", pa.binary()), pa.field("n", pa.null())], type_codes=[0, 5, 7]),
    }

    DICTS = {
        "dict8": pa.array(["alpha", "beta", None, "delta", "ε"]),
        "dictu32": pa.array(["x", "y", "z"], pa.large_string()),
        "dict64": pa.array([7, -1, 3, 1000000], pa.int32()),
        "listdict": pa.array(["p", "q", "r"]),
    }

    def dictionary_array(t, dictionary, n):
        idx = pa.array([maybe(random.randrange(len(dictionary))) for _ in range(n)], t.index_type)
        return pa.DictionaryArray.from_arrays(idx, dictionary, ordered=t.ordered)

    def gen(name, t, n):
        if name in DICTS and not pa.types.is_list(t):
            return dictionary_array(t, DICTS[name], n)
        if pa.types.is_null(t): return pa.nulls(n)
        if pa.types.is_boolean(t): return pa.array([maybe(random.random() < 0.5) for _ in range(n)], t)
        if pa.types.is_integer(t):
            bits = t.bit_width
            if pa.types.is_signed_integer(t):
                return pa.array(ints(-(1 << (bits - 1)), (1 << (bits - 1)) - 1, n), t)
            return pa.array(ints(0, (1 << bits) - 1, n), t)
        if t == pa.float16():
            vals = np.array([random.randint(-400, 400) / 4 for _ in range(n)], dtype=np.float16)
            return pa.array(vals, t, mask=np.array([random.random() < 0.2 for _ in range(n)], dtype=bool))
        if pa.types.is_floating(t): return pa.array([maybe(random.uniform(-1e6, 1e6)) for _ in range(n)], t)
        if pa.types.is_string(t) or pa.types.is_large_string(t): return pa.array([maybe(rstr()) for _ in range(n)], t)
        if pa.types.is_fixed_size_binary(t): return pa.array([maybe(bytes(random.getrandbits(8) for _ in range(5))) for _ in range(n)], t)
        if pa.types.is_binary(t) or pa.types.is_large_binary(t): return pa.array([maybe(rbytes()) for _ in range(n)], t)
        if t == pa.date32(): return pa.array(ints(-100000, 100000, n), pa.int32()).view(t)
        if t == pa.date64(): return pa.array([None if v is None else v * DAY * 1000 for v in ints(-100000, 100000, n)], pa.int64()).view(t)
        if pa.types.is_time32(t):
            scale = 1 if t.unit == "s" else 1000
            return pa.array(ints(0, DAY * scale - 1, n), pa.int32()).view(t)
        if pa.types.is_time64(t):
            scale = 10**6 if t.unit == "us" else 10**9
            return pa.array(ints(0, DAY * scale - 1, n), pa.int64()).view(t)
        if pa.types.is_timestamp(t) or pa.types.is_duration(t):
            return pa.array(ints(-(1 << 62), 1 << 62, n), pa.int64()).view(t)
        if t == pa.month_day_nano_interval():
            return pa.array([maybe(pa.MonthDayNano([random.randint(-100, 100), random.randint(-1000, 1000), random.randint(-(1 << 62), 1 << 62)])) for _ in range(n)], t)
        if pa.types.is_decimal(t):
            digits = min(t.precision, 30)
            return pa.array([maybe(decimal.Decimal(random.randint(-(10**digits) + 1, 10**digits - 1)).scaleb(-t.scale)) for _ in range(n)], t)
        if pa.types.is_map(t):
            return pa.array([maybe([(rstr(3), maybe(random.randint(-5, 5))) for _ in range(random.randint(0, 3))]) for _ in range(n)], t)
        if pa.types.is_fixed_size_list(t):
            return pa.array([maybe([maybe(random.random()) for _ in range(t.list_size)]) for _ in range(n)], t)
        if pa.types.is_list(t) and name == "listdict":
            lengths = [random.randint(0, 3) for _ in range(n)]
            values = dictionary_array(t.value_type, DICTS[name], sum(lengths))
            offsets = [0]
            for l in lengths: offsets.append(offsets[-1] + l)
            mask = pa.array([random.random() < 0.2 for _ in range(n)], pa.bool_())
            return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, mask=mask)
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return pa.array([maybe([sample(t.value_type) for _ in range(random.randint(0, 3))]) for _ in range(n)], t)
        if pa.types.is_struct(t):
            return pa.array([maybe({f.name: sample(f.type) for f in t}) for _ in range(n)], t)
        if pa.types.is_union(t):
            codes = t.type_codes
            kinds = [random.randrange(len(codes)) for _ in range(n)]
            tids = pa.array([codes[k] for k in kinds], pa.int8())
            if t.mode == "sparse":
                children = [gen("", t.field(i).type, n) for i in range(len(codes))]
                return pa.UnionArray.from_sparse(tids, children, [t.field(i).name for i in range(len(codes))], codes)
            counts = [kinds.count(i) for i in range(len(codes))]
            seen = [0] * len(codes)
            offsets = []
            for k in kinds:
                offsets.append(seen[k]); seen[k] += 1
            children = [gen("", t.field(i).type, counts[i]) for i in range(len(codes))]
            return pa.UnionArray.from_dense(tids, pa.array(offsets, pa.int32()), children, [t.field(i).name for i in range(len(codes))], codes)
        raise TypeError(t)

    def sample(t):
        return gen("", t, 1).to_pylist()[0]

    fields = []
    for i, (name, t) in enumerate(types.items()):
        md = {b"role": name.encode()} if i % 5 == 0 else None
        fields.append(pa.field(name, t, nullable=(name != "i32"), metadata=md))
    schema = pa.schema(fields, metadata={b"origin": b"pyarrow", b"note": "ünïcode".encode()})

    def batch(n):
        cols = []
        for f in schema:
            a = gen(f.name, f.type, n)
            if not f.nullable and a.null_count:
                a = pa.array(ints(0, 100, n), f.type) if pa.types.is_integer(f.type) else a
                a = a.fill_null(0)
            cols.append(a)
        return pa.RecordBatch.from_arrays(cols, schema=schema)

    big = batch(120)
    batches = [batch(17), batch(0), big.slice(5, 50), batch(1), big.slice(64, 0), batch(33), big.slice(99, 21)]
    with ipc.new_stream(out + "/random.arrows", schema) as w:
        for b in batches: w.write_batch(b)
    with ipc.new_file(out + "/random.arrow", schema) as w:
        for b in batches: w.write_batch(b)

    # Dictionary deltas: each batch's dictionary extends the previous one.
    words = [rstr(5) + str(i) for i in range(40)]
    dschema = pa.schema([pa.field("d", pa.dictionary(pa.int16(), pa.string())), pa.field("n", pa.int32())])
    opts = ipc.IpcWriteOptions(emit_dictionary_deltas=True)
    with ipc.new_stream(out + "/deltas.arrows", dschema, options=opts) as w:
        for size in (3, 3, 10, 25, 40):
            idx = pa.array([maybe(random.randrange(size)) for _ in range(12)], pa.int16())
            w.write_batch(pa.RecordBatch.from_arrays([pa.DictionaryArray.from_arrays(idx, pa.array(words[:size])), pa.array(range(12), pa.int32())], schema=dschema))
    # Replacements: unrelated dictionaries.
    with ipc.new_stream(out + "/replace.arrows", dschema) as w:
        for _ in range(4):
            d = pa.array(sorted(set(rstr(4) for _ in range(6))))
            idx = pa.array([maybe(random.randrange(len(d))) for _ in range(9)], pa.int16())
            w.write_batch(pa.RecordBatch.from_arrays([pa.DictionaryArray.from_arrays(idx, d), pa.array(range(9), pa.int32())], schema=dschema))
    print("ok")
    """#

    struct Check: Encodable {
        var name: String
        var expected: String
        var expected_format: String
        var actual: String
        var actual_format: String
        var mode: String
        var slice = false
    }

    /// Runs the comparison script; records an issue for every failed check.
    static func compare(_ checks: [Check], in dir: URL) throws {
        let list = dir.appendingPathComponent("checks.json")
        try JSONEncoder().encode(checks).write(to: list)
        let out = try IPCTestSupport.python(script: compareScript, [list.path])
        let results = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [[String: Any]]
        #expect(results.count == checks.count)
        for r in results where (r["ok"] as? Bool) != true {
            Issue.record("pyarrow: \(r["name"] ?? "?"): \(r["error"] ?? "?")")
        }
    }

    static func write(_ schema: Schema, _ batches: [RecordBatch], file: Bool, codec: (any BodyCodec)? = nil, to url: URL) throws {
        let options = IPCWriteOptions(compression: codec)
        let buffer = file ? try IPCTestSupport.writeFile(schema, batches, options: options)
                          : try IPCTestSupport.writeStream(schema, batches, options: options)
        try IPCTestSupport.write(buffer, to: url)
    }

    @Test("pyarrow reads our rewrite of every integration fixture as equal to the original")
    func fixturesRewritten() throws {
        let dir = try IPCTestSupport.temporaryDirectory("interop-fixtures")
        defer { try? FileManager.default.removeItem(at: dir) }
        var checks: [Check] = []
        for (folder, name) in try IPCTestSupport.integrationCases() where IntegrationTests.skipped["\(folder)/\(name)"] == nil {
            for (ext, format) in [("stream", "stream"), ("arrow_file", "file")] {
                let original = IPCTestSupport.fixture(folder, "\(name).\(ext)")
                guard FileManager.default.fileExists(atPath: original.path) else { continue }
                let buffer = try IPCTestSupport.readFile(original)
                let (schema, batches) = format == "file" ? try IPCTestSupport.readFile(buffer) : try IPCTestSupport.readStream(buffer)
                for (outFormat, isFile) in [("stream", false), ("file", true)] {
                    let out = dir.appendingPathComponent("\(folder)-\(name)-\(ext).\(outFormat)")
                    try Self.write(schema, batches, file: isFile, to: out)
                    // A file reader sees each id's final dictionary, so files with deltas compare by value.
                    let mode = name.contains("dictionary") || name.contains("shared_dict") ? "values" : "exact"
                    checks.append(Check(name: "\(folder)/\(name).\(ext) -> ours.\(outFormat)", expected: original.path, expected_format: format,
                                        actual: out.path, actual_format: outFormat, mode: mode))
                }
            }
        }
        #expect(checks.count >= 100)
        try Self.compare(checks, in: dir)
    }

    @Test("random pyarrow batches of every type: we read, rewrite (plain, sliced, LZ4, ZSTD), pyarrow compares equal")
    func pyarrowRandom() throws {
        let dir = try IPCTestSupport.temporaryDirectory("interop-random")
        defer { try? FileManager.default.removeItem(at: dir) }
        let generated = try IPCTestSupport.python(script: Self.generateScript, [dir.path])
        #expect(generated.contains("ok"))
        var checks: [Check] = []
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

        for (source, format) in [("random.arrows", "stream"), ("random.arrow", "file")] {
            let buffer = try IPCTestSupport.readFile(dir.appendingPathComponent(source))
            let (schema, batches) = format == "file" ? try IPCTestSupport.readFile(buffer) : try IPCTestSupport.readStream(buffer)
            #expect(batches.count == 7)
            let variants: [(String, Bool, (any BodyCodec)?)] = [
                ("plain.arrows", false, nil), ("plain.arrow", true, nil),
                ("lz4.arrows", false, BodyCodecs.lz4Frame), ("zstd.arrow", true, BodyCodecs.zstd),
                ("lz4.arrow", true, BodyCodecs.lz4Frame), ("zstd.arrows", false, BodyCodecs.zstd),
            ]
            for (name, isFile, codec) in variants {
                let out = "\(format)-\(name)"
                try Self.write(schema, batches, file: isFile, codec: codec, to: URL(fileURLWithPath: path(out)))
                checks.append(Check(name: "\(source) -> \(out)", expected: path(source), expected_format: format,
                                    actual: path(out), actual_format: isFile ? "file" : "stream", mode: "exact"))
            }
            let slicedBatches = batches.map { $0.length >= 3 ? $0.slice(1, $0.length - 2) : $0 }
            let out = "\(format)-sliced.arrows"
            try Self.write(schema, slicedBatches, file: false, to: URL(fileURLWithPath: path(out)))
            checks.append(Check(name: "\(source) sliced -> \(out)", expected: path(source), expected_format: format,
                                actual: path(out), actual_format: "stream", mode: "exact", slice: true))
        }
        // Deltas: our stream keeps them (exact); our file carries them too (compared by value).
        let (dschema, dbatches) = try IPCTestSupport.readStream(try IPCTestSupport.readFile(dir.appendingPathComponent("deltas.arrows")))
        #expect(dbatches.last?.columns[0].dictionary?.length == 40)
        try Self.write(dschema, dbatches, file: false, to: URL(fileURLWithPath: path("ours-deltas.arrows")))
        try Self.write(dschema, dbatches, file: true, codec: BodyCodecs.lz4Frame, to: URL(fileURLWithPath: path("ours-deltas.arrow")))
        checks.append(Check(name: "deltas stream", expected: path("deltas.arrows"), expected_format: "stream",
                            actual: path("ours-deltas.arrows"), actual_format: "stream", mode: "exact"))
        checks.append(Check(name: "deltas file", expected: path("deltas.arrows"), expected_format: "stream",
                            actual: path("ours-deltas.arrow"), actual_format: "file", mode: "values"))
        var encoder = try IPCEncoder(schema: dschema)
        let kinds = try dbatches.flatMap { try encoder.encode($0).map(\.kind) }
        #expect(kinds.filter { $0 == .dictionary(id: 0, isDelta: true) }.count == 3, "we re-emit pyarrow's deltas as deltas")

        let (rschema, rbatches) = try IPCTestSupport.readStream(try IPCTestSupport.readFile(dir.appendingPathComponent("replace.arrows")))
        try Self.write(rschema, rbatches, file: false, codec: BodyCodecs.zstd, to: URL(fileURLWithPath: path("ours-replace.arrows")))
        checks.append(Check(name: "replacements stream", expected: path("replace.arrows"), expected_format: "stream",
                            actual: path("ours-replace.arrows"), actual_format: "stream", mode: "exact"))
        try Self.compare(checks, in: dir)
    }

    /// Reads our files with pyarrow, validates them fully and writes them back with pyarrow.
    static let echoScript = #"""
    import sys
    import pyarrow as pa
    import pyarrow.ipc as ipc
    for src in sys.argv[1:]:
        if src.endswith(".arrow"):
            with ipc.open_file(src) as r:
                batches = [r.get_batch(i) for i in range(r.num_record_batches)]
                schema = r.schema
        else:
            with ipc.open_stream(src) as r:
                schema = r.schema
                batches = list(r)
        for b in batches:
            b.validate(full=True)
        with ipc.new_stream(src + ".echo", schema) as w:
            for b in batches:
                w.write_batch(b)
    print("ok")
    """#

    @Test("our random sliced batches: pyarrow validates them fully and writes back what we wrote")
    func swiftRandom() throws {
        let dir = try IPCTestSupport.temporaryDirectory("interop-swift")
        defer { try? FileManager.default.removeItem(at: dir) }
        var expected: [String: (Schema, [RecordBatch])] = [:]
        for seed in 0..<24 {
            var random = RandomArrow(seed: UInt64(seed) &+ 1000)
            let schema = random.schema(columns: random.int(1...5))
            let big = random.batch(schema, length: random.int(0...50))
            let batches = random.slices(of: big, count: random.int(1...3))
            let codec = IPCRoundTripTests.codecs[seed % 3]
            for (ext, isFile) in [("arrows", false), ("arrow", true)] {
                let name = "seed\(seed).\(ext)"
                try Self.write(schema, batches, file: isFile, codec: codec, to: dir.appendingPathComponent(name))
                expected[name] = (schema, batches)
            }
        }
        let names = expected.keys.sorted()
        let out = try IPCTestSupport.python(script: Self.echoScript, names.map { dir.appendingPathComponent($0).path })
        #expect(out.contains("ok"))
        for name in names {
            let (schema, batches) = expected[name]!
            let (s, b) = try IPCTestSupport.readStream(try IPCTestSupport.readFile(dir.appendingPathComponent(name + ".echo")))
            #expect(s == schema, "\(name): schema after pyarrow")
            #expect(b.map { $0.columns.map(\.allValues) } == batches.map { $0.columns.map(\.allValues) }, "\(name): values after pyarrow")
        }
    }
}
