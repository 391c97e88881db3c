#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Options for `JSONLinesReader`.
public struct JSONLinesReadOptions: Sendable {
    /// Most rows per batch.
    public var batchRows = 65_536
    /// Lines looked at to infer the schema (the first N).
    public var inferenceRows = 1000
    /// Declared types for some top-level keys; they replace the inferred type, or add a column
    /// for a key not seen during inference.
    public var columnTypes: [Field] = []
    /// The whole schema (no inference): one field per top-level key.
    public var schema: Schema?
    /// Skip keys that are not in the schema instead of failing.
    public var ignoreUnknownKeys = false
    /// On a live source, how long schema inference waits for more lines once it has one (seconds).
    public var liveInferenceWait: Double = 0.05

    /// Default options: 64 Ki rows per batch, inference over 1000 lines, unknown keys are errors.
    public init() {}
}

/// The JSON shape of values seen during inference.
indirect enum JSONShape: Equatable {
    enum StringKind: Equatable { case plain, date, timestamp, timestampTZ }
    case null, bool, int, float
    case string(StringKind)
    case list(JSONShape)
    case object(keys: [String], shapes: [JSONShape])
    /// Values of different kinds: read as text (strings as is, other values as their JSON).
    case mixed

    static func merge(_ a: JSONShape, _ b: JSONShape) -> JSONShape {
        switch (a, b) {
        case (.null, _): return b
        case (_, .null): return a
        case (.int, .float), (.float, .int): return .float
        case (.string(let x), .string(let y)):
            if x == y { return a }
            if (x == .date && y == .timestamp) || (x == .timestamp && y == .date) { return .string(.timestamp) }
            return .string(.plain)
        case (.list(let x), .list(let y)): return .list(merge(x, y))
        case (.object(let k1, let s1), .object(let k2, let s2)):
            var keys = k1
            var shapes = s1
            var index: [String: Int] = [:]
            for (n, k) in k1.enumerated() { index[k] = n }
            for (k, s) in zip(k2, s2) {
                if let n = index[k] { shapes[n] = merge(shapes[n], s) } else {
                    index[k] = keys.count
                    keys.append(k)
                    shapes.append(s)
                }
            }
            return .object(keys: keys, shapes: shapes)
        default:
            return a == b ? a : .mixed
        }
    }

    var type: DataType {
        switch self {
        case .null, .mixed: .utf8
        case .bool: .bool
        case .int: .int64
        case .float: .float64
        case .string(.plain): .utf8
        case .string(.date): .date32
        case .string(.timestamp): .timestamp(.microsecond, timezone: nil)
        case .string(.timestampTZ): .timestamp(.microsecond, timezone: "UTC")
        case .list(let item): .list(Field("item", item.type))
        case .object(let keys, let shapes): .struct(zip(keys, shapes).map { Field($0.0, $0.1.type) })
        }
    }

    /// The shape of the value at the cursor.
    static func read(_ c: inout JSONCursor, depth: Int = 0) throws -> JSONShape {
        guard depth < JSONCursor.maxDepth else { throw c.problem("nesting at most \(JSONCursor.maxDepth) deep") }
        guard let ch = c.peek() else { throw c.problem("a JSON value") }
        switch ch {
        case UInt8(ascii: "{"):
            c.i += 1
            var keys: [String] = []
            var shapes: [JSONShape] = []
            var keySet = Set<String>()
            if c.peek() == UInt8(ascii: "}") { c.i += 1; return .object(keys: [], shapes: []) }
            while true {
                guard c.peek() == 0x22 else { throw c.problem("a key in double quotes") }
                let keyAt = c.i
                let key = String(decoding: try c.string(), as: UTF8.self)
                try c.expect(UInt8(ascii: ":"), "':' after the key")
                let s = try read(&c, depth: depth + 1)
                if !keySet.insert(key).inserted { throw JSONProblem(position: keyAt, message: "key '\(key)' appears twice in one object") }
                keys.append(key)
                shapes.append(s)
                guard let d = c.peek() else { throw c.problem("',' or '}'") }
                c.i += 1
                if d == UInt8(ascii: "}") { break }
                guard d == UInt8(ascii: ",") else { throw c.problem("',' or '}'", at: c.i - 1) }
            }
            return .object(keys: keys, shapes: shapes)
        case UInt8(ascii: "["):
            c.i += 1
            var item = JSONShape.null
            if c.peek() == UInt8(ascii: "]") { c.i += 1; return .list(.null) }
            while true {
                item = merge(item, try read(&c, depth: depth + 1))
                guard let d = c.peek() else { throw c.problem("',' or ']'") }
                c.i += 1
                if d == UInt8(ascii: "]") { break }
                guard d == UInt8(ascii: ",") else { throw c.problem("',' or ']'", at: c.i - 1) }
            }
            return .list(item)
        case 0x22:
            let s = try c.string()
            if let dt = TextScan.dateTime(s), TextScan.timestamp(dt, unit: .microsecond) != nil {
                return .string(!dt.hasTime ? .date : (dt.hasOffset ? .timestampTZ : .timestamp))
            }
            return .string(.plain)
        case UInt8(ascii: "t"): try c.literal("true"); return .bool
        case UInt8(ascii: "f"): try c.literal("false"); return .bool
        case UInt8(ascii: "n"): try c.literal("null"); return .null
        default:
            let (n, isInteger) = try c.number()
            return isInteger && TextScan.int64(n) != nil ? .int : .float
        }
    }
}

/// Decodes JSON values of one declared type into a builder.
final class JSONNode {
    enum Leaf { case integer, float, bool, utf8, binary, temporal32, temporal64, decimal, null, list, structure }
    let type: DataType
    let path: String
    let builder: ArrayBuilder
    let leaf: Leaf
    private let text: TextColumnDecoder?
    private(set) var children: [JSONNode] = []
    // Struct lookup.
    private var keys: [[UInt8]] = []
    private var keyIndex: [String: Int] = [:]
    private var seen: [Bool] = []
    private var predicted = 0
    private var base64: [UInt8] = []

    init(_ type: DataType, path: String, builder: ArrayBuilder) throws {
        self.type = type
        self.path = path
        self.builder = builder
        switch type {
        case .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64, .duration: leaf = .integer
        case .float16, .float32, .float64: leaf = .float
        case .bool: leaf = .bool
        case .utf8, .largeUtf8: leaf = .utf8
        case .binary, .largeBinary: leaf = .binary
        case .date32, .time32: leaf = .temporal32
        case .date64, .time64, .timestamp: leaf = .temporal64
        case .decimal128: leaf = .decimal
        case .null: leaf = .null
        case .list(let f), .largeList(let f):
            leaf = .list
            children = [try JSONNode(f.type, path: path + "[]", builder: builder.child(0))]
        case .struct(let fields):
            leaf = .structure
            for (k, f) in fields.enumerated() {
                children.append(try JSONNode(f.type, path: path.isEmpty ? f.name : path + "." + f.name, builder: builder.child(k)))
                keys.append(Array(f.name.utf8))
                keyIndex[f.name] = k
            }
            seen = Array(repeating: false, count: fields.count)
        default:
            throw ArrowError(.unsupported, "key '\(path)': JSON Lines cannot be read as \(type)")
        }
        switch leaf {
        case .integer, .float, .temporal32, .temporal64, .decimal: text = TextColumnDecoder(type, builder: builder)
        default: text = nil
        }
    }

    private func mismatch(_ c: JSONCursor, at start: Int) -> JSONProblem {
        JSONProblem(position: start, message: "key '\(path)': expected a value of type \(type) but found \(c.found(at: start))")
    }

    /// Decodes the value at the cursor and appends it.
    func decode(_ c: inout JSONCursor, ignoreUnknown: Bool, depth: Int = 0) throws {
        guard let ch = c.peek() else { throw c.problem("a JSON value") }
        let start = c.i
        if ch == UInt8(ascii: "n") {
            try c.literal("null")
            builder.appendNull()
            return
        }
        switch ch {
        case UInt8(ascii: "{"):
            switch leaf {
            case .structure: try decodeObject(&c, ignoreUnknown: ignoreUnknown, depth: depth)
            case .utf8: builder.appendBytes(try c.skipValue(depth: depth))
            default: throw mismatch(c, at: start)
            }
        case UInt8(ascii: "["):
            switch leaf {
            case .list:
                guard depth < JSONCursor.maxDepth else { throw c.problem("nesting at most \(JSONCursor.maxDepth) deep") }
                c.i += 1
                let item = children[0]
                if c.peek() == UInt8(ascii: "]") { c.i += 1 } else {
                    while true {
                        try item.decode(&c, ignoreUnknown: ignoreUnknown, depth: depth + 1)
                        guard let d = c.peek() else { throw c.problem("',' or ']'") }
                        c.i += 1
                        if d == UInt8(ascii: "]") { break }
                        guard d == UInt8(ascii: ",") else { throw c.problem("',' or ']'", at: c.i - 1) }
                    }
                }
                builder.appendListSlot()
            case .utf8: builder.appendBytes(try c.skipValue(depth: depth))
            default: throw mismatch(c, at: start)
            }
        case 0x22:
            let s = try c.string()
            switch leaf {
            case .utf8:
                guard TextScan.isValidUTF8(s) else { throw JSONProblem(position: start, message: "key '\(path)': expected UTF-8 text but found invalid bytes") }
                builder.appendBytes(s)
            case .binary:
                base64.removeAll(keepingCapacity: true)
                guard TextScan.base64(s, into: &base64) else { throw mismatch(c, at: start) }
                base64.withUnsafeBytes { builder.appendBytes($0) }
            case .temporal32, .temporal64, .decimal:
                guard text!.append(s) else { throw mismatch(c, at: start) }
            default: throw mismatch(c, at: start)
            }
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            let value = ch == UInt8(ascii: "t")
            try c.literal(value ? "true" : "false")
            switch leaf {
            case .bool: builder.appendBool(value)
            case .utf8: builder.appendBytes(UnsafeRawBufferPointer(rebasing: c.b[start..<c.i]))
            default: throw mismatch(c, at: start)
            }
        default:
            let (n, isInteger) = try c.number()
            switch leaf {
            case .integer:
                guard isInteger, text!.append(n) else { throw mismatch(c, at: start) }
            case .float, .decimal:
                guard text!.append(n) else { throw mismatch(c, at: start) }
            case .temporal32:
                guard isInteger, let v = TextScan.int64(n), let w = Int32(exactly: v) else { throw mismatch(c, at: start) }
                builder.appendInt32(w)
            case .temporal64:
                guard isInteger, let v = TextScan.int64(n) else { throw mismatch(c, at: start) }
                builder.appendInt64(v)
            case .utf8: builder.appendBytes(n)
            default: throw mismatch(c, at: start)
            }
        }
    }

    @inline(__always)
    private func lookup(_ key: UnsafeRawBufferPointer) -> Int? {
        let n = keys.count
        if predicted < n, keys[predicted].count == key.count,
           keys[predicted].withUnsafeBytes({ memcmp($0.baseAddress!, key.baseAddress!, key.count) == 0 }) || key.count == 0 {
            return predicted
        }
        if n <= 16 {
            for k in 0..<n where keys[k].count == key.count {
                if key.count == 0 || keys[k].withUnsafeBytes({ memcmp($0.baseAddress!, key.baseAddress!, key.count) == 0 }) { return k }
            }
            return nil
        }
        return keyIndex[String(decoding: key, as: UTF8.self)]
    }

    /// Decodes an object into the struct's children (a missing key is null).
    func decodeObject(_ c: inout JSONCursor, ignoreUnknown: Bool, depth: Int) throws {
        guard depth < JSONCursor.maxDepth else { throw c.problem("nesting at most \(JSONCursor.maxDepth) deep") }
        try c.expect(UInt8(ascii: "{"), "an object")
        for k in seen.indices { seen[k] = false }
        predicted = 0
        if c.peek() == UInt8(ascii: "}") { c.i += 1 } else {
            while true {
                guard c.peek() == 0x22 else { throw c.problem("a key in double quotes") }
                let keyAt = c.i
                let key = try c.string()
                if let k = lookup(key) {
                    guard !seen[k] else {
                        throw JSONProblem(position: keyAt, message: "key '\(path.isEmpty ? "" : path + ".")\(String(decoding: key, as: UTF8.self))' appears twice in one object")
                    }
                    try c.expect(UInt8(ascii: ":"), "':' after the key")
                    try children[k].decode(&c, ignoreUnknown: ignoreUnknown, depth: depth + 1)
                    seen[k] = true
                    predicted = k + 1
                } else {
                    guard ignoreUnknown else {
                        let name = (path.isEmpty ? "" : path + ".") + String(decoding: key, as: UTF8.self)
                        throw JSONProblem(position: keyAt, message: "key '\(name)' is not in the schema (it was not seen during schema inference); declare it in the schema or ignore unknown keys")
                    }
                    try c.expect(UInt8(ascii: ":"), "':' after the key")
                    _ = try c.skipValue(depth: depth + 1)
                }
                guard let d = c.peek() else { throw c.problem("',' or '}'") }
                c.i += 1
                if d == UInt8(ascii: "}") { break }
                guard d == UInt8(ascii: ",") else { throw c.problem("',' or '}'", at: c.i - 1) }
            }
        }
        for k in seen.indices where !seen[k] { children[k].builder.appendNull() }
        builder.appendStructSlot()
    }
}

/// A streaming JSON Lines reader: one JSON object per line, a batch at a time from a `ByteSource`.
///
/// - The schema is inferred over the first `inferenceRows` lines: objects become structs,
///   arrays lists, numbers int64 (float64 when any is fractional or too big), true/false bool,
///   ISO 8601 strings date32 / timestamp[us] (tz=UTC when they carry an offset), other strings
///   string; keys missing from a line are null. Values of different kinds under one key are
///   read as text (strings as is, other values as their JSON).
/// - A key not seen during inference is an error naming the key and line, unless
///   `ignoreUnknownKeys`. Invalid JSON is an error with the line number and byte column.
/// - On a live source it hands out the complete lines it holds instead of waiting for a full batch.
public final class JSONLinesReader: BatchReader {
    /// The schema of every batch.
    public private(set) var schema: Schema
    private let options: JSONLinesReadOptions
    private let window: InputWindow
    private let live: Bool
    private let scratch = BufferBuilder(capacity: 256)
    private var root: JSONNode!
    private var line = 1
    private var finished = false

    /// Reads the inference sample from `source`.
    public init(source: ByteSource, options: JSONLinesReadOptions = JSONLinesReadOptions()) throws {
        guard options.batchRows > 0 else { throw ArrowError(.invalidArgument, "expected a batch size of at least 1 row but found \(options.batchRows)") }
        self.options = options
        window = InputWindow(source: source)
        live = source.isLive
        schema = Schema([])
        if let full = options.schema {
            schema = full
        } else {
            var fields: [Field] = []
            if case .object(let keys, let shapes) = try infer() {
                fields = zip(keys, shapes).map { Field($0.0, $0.1.type) }
            }
            for declared in options.columnTypes {
                if let k = fields.firstIndex(where: { $0.name == declared.name }) { fields[k].type = declared.type } else { fields.append(declared) }
            }
            schema = Schema(fields)
        }
        let rootType = DataType.struct(schema.fields)
        root = try JSONNode(rootType, path: "", builder: ArrayBuilder(rootType))
    }

    private enum LineScan { case line(start: Int, end: Int, next: Int), needMore, endOfInput }

    private func scanLine(from p: Int) -> LineScan {
        let b = window.bytes
        let end = window.end
        if p >= end { return window.atEnd ? .endOfInput : .needMore }
        if let hit = memchr(b.baseAddress! + p, 0x0a, end - p) {
            let q = b.baseAddress!.distance(to: UnsafeRawPointer(hit))
            let e = q > p && b[q - 1] == 0x0d ? q - 1 : q
            return .line(start: p, end: e, next: q + 1)
        }
        return window.atEnd ? .line(start: p, end: end, next: end) : .needMore
    }

    private func isBlank(_ start: Int, _ end: Int) -> Bool {
        let b = window.bytes
        for k in start..<end where !(b[k] == 0x20 || b[k] == 0x09 || b[k] == 0x0d) { return false }
        return true
    }

    private func error(_ p: JSONProblem, line: Int, lineStart: Int) -> ArrowError {
        ArrowError(.invalidData, "JSON Lines line \(line), byte \(p.position + 1): \(p.message)", offset: window.base + lineStart + p.position)
    }

    /// The merged shape of up to `inferenceRows` lines, without consuming them.
    private func infer() throws -> JSONShape {
        var shape = JSONShape.object(keys: [], shapes: [])
        var rel = 0
        var scanLineNo = line
        var records = 0
        scanning: while records < options.inferenceRows {
            switch scanLine(from: window.start + rel) {
            case .line(let s, let e, let next):
                defer { rel = next - window.start; scanLineNo += 1 }
                if isBlank(s, e) { continue }
                var c = JSONCursor(UnsafeRawBufferPointer(rebasing: window.bytes[s..<e]), scratch: scratch)
                do {
                    guard c.peek() == UInt8(ascii: "{") else { throw c.problem("an object '{'") }
                    let lineShape = try JSONShape.read(&c)
                    if !c.atEnd, c.peek() != nil { throw c.problem("the end of the line after the object") }
                    shape = JSONShape.merge(shape, lineShape)
                } catch let p as JSONProblem {
                    throw error(p, line: scanLineNo, lineStart: s)
                }
                records += 1
            case .needMore:
                if live && records > 0 && !window.readableNow(within: options.liveInferenceWait) { break scanning }
                try window.fill()
            case .endOfInput:
                break scanning
            }
        }
        return shape
    }

    /// The next batch of up to `batchRows` rows, or nil at the end.
    public func next() throws -> RecordBatch? {
        guard !finished else { return nil }
        do {
            var rows = 0
            reading: while rows < options.batchRows {
                switch scanLine(from: window.start) {
                case .line(let s, let e, let next):
                    if !isBlank(s, e) {
                        var c = JSONCursor(UnsafeRawBufferPointer(rebasing: window.bytes[s..<e]), scratch: scratch)
                        do {
                            try root.decodeObject(&c, ignoreUnknown: options.ignoreUnknownKeys, depth: 0)
                            if c.peek() != nil { throw c.problem("the end of the line after the object") }
                        } catch let p as JSONProblem {
                            throw error(p, line: line, lineStart: s)
                        }
                        rows += 1
                    }
                    window.start = next
                    line += 1
                case .needMore:
                    if live && rows > 0 && !window.readableNow() { break reading }
                    try window.fill()
                case .endOfInput:
                    finished = true
                    break reading
                }
            }
            if rows == 0 { finished = true; return nil }
            let all = root.builder.finish()
            return try RecordBatch(schema: schema, columns: all.children, length: rows)
        } catch {
            finished = true
            throw error
        }
    }
}

/// Options for `JSONLinesWriter`.
public struct JSONLinesWriteOptions: Sendable {
    /// Push bytes to the sink after every batch (for live outputs).
    public var flushEachBatch = false
    /// Default options.
    public init() {}
}

/// Writes one JSON object per row: nulls as `null`, floats in their shortest round-trip form,
/// NaN and infinities as `null`, binary as base64 strings, temporal values as ISO 8601
/// strings, decimals as strings, lists as arrays, structs as objects.
public final class JSONLinesWriter: BatchWriter {
    private let sink: ByteSink
    private let schema: Schema
    private let options: JSONLinesWriteOptions
    private let keyPrefixes: [[UInt8]]
    private var out: [UInt8] = []

    /// A writer of `schema` batches to `sink`.
    public init(sink: ByteSink, schema: Schema, options: JSONLinesWriteOptions = JSONLinesWriteOptions()) {
        self.sink = sink
        self.schema = schema
        self.options = options
        keyPrefixes = schema.fields.enumerated().map { k, f in
            var b: [UInt8] = k == 0 ? [UInt8(ascii: "{")] : [UInt8(ascii: ",")]
            var name = f.name
            name.withUTF8 { ValueText.appendJSONString(UnsafeRawBufferPointer($0), into: &b) }
            b.append(UInt8(ascii: ":"))
            return b
        }
    }

    /// Writes the rows of `batch` (its column types must match the writer's schema).
    public func write(_ batch: RecordBatch) throws {
        guard batch.schema.fields.map(\.type) == schema.fields.map(\.type) else {
            throw ArrowError(.invalidArgument, "JSON Lines writer: expected batches of schema (\(schema.fields.map { "\($0.name): \($0.type)" }.joined(separator: ", "))) but found (\(batch.schema.fields.map { "\($0.name): \($0.type)" }.joined(separator: ", ")))")
        }
        let columns = batch.columns
        for i in 0..<batch.length {
            if columns.isEmpty { out.append(UInt8(ascii: "{")) }
            for (k, c) in columns.enumerated() {
                out.append(contentsOf: keyPrefixes[k])
                ValueText.append(c, i, style: .json, topLevel: true, into: &out)
            }
            out.append(UInt8(ascii: "}"))
            out.append(0x0a)
            if out.count >= 1 << 20 { try sink.drain(&out) }
        }
        try sink.drain(&out)
        if options.flushEachBatch { try sink.flush() }
    }

    /// Pushes the bytes written so far to the sink and flushes it.
    public func flush() throws {
        try sink.drain(&out)
        try sink.flush()
    }

    /// Writes what is buffered (and the header of an empty CSV) and flushes. Call once.
    public func finish() throws {
        try sink.drain(&out)
        try sink.flush()
    }
}
