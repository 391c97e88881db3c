/// Options for `CSVReader`.
public struct CSVReadOptions: Sendable {
    /// Field separator (one byte), `,` by default.
    public var delimiter: UInt8 = UInt8(ascii: ",")
    /// Quote character, `"` by default; a quote inside a quoted field is written twice.
    public var quote: UInt8 = UInt8(ascii: "\"")
    /// Whether the first record names the columns. Without one, columns are `f0`, `f1`, ...
    /// (or the names of `schema`).
    public var hasHeader = true
    /// Most rows per batch.
    public var batchRows = 65_536
    /// Rows looked at to infer column types (the first N).
    public var inferenceRows = 1000
    /// Declared types for some columns, by name; the other columns are inferred.
    public var columnTypes: [Field] = []
    /// The whole schema, one field per column in order; no inference. With `hasHeader` the
    /// header record is read and must have as many fields, but the schema's names are used.
    public var schema: Schema?
    /// On a live source, how long schema inference waits for more rows once it has one (seconds).
    public var liveInferenceWait: Double = 0.05

    /// Default options: comma, header, 64 Ki rows per batch, inference over 1000 rows.
    public init() {}
}

/// One field of a record: a byte range of the input window.
struct CSVFieldSpan {
    var start: Int
    var end: Int
    var quoted: Bool
    /// The quoted content holds doubled quotes that must be collapsed.
    var escaped: Bool
}

/// Splits CSV records out of a byte window. Pure: no I/O, no state across calls.
struct CSVScanner {
    let delimiter: UInt8
    let quote: UInt8

    enum Result {
        /// A complete record ending at `end` (terminator included), spanning `newlines` line ends.
        case record(end: Int, newlines: Int)
        /// An empty line.
        case blank(end: Int, newlines: Int)
        /// The record continues past `limit`: read more.
        case needMore
        /// No bytes left and the input has ended.
        case endOfInput
        /// The input ended inside a quoted field.
        case unterminatedQuote
        /// A byte other than the delimiter or a line end follows a closing quote, at `position`.
        case junkAfterQuote(position: Int, newlines: Int)
    }

    @inline(__always)
    private func lineEnd(_ b: UnsafeRawBufferPointer, _ q: Int, _ limit: Int, _ atEnd: Bool) -> Int? {
        // b[q] is \n or \r; returns the index after the terminator, nil when more input is needed.
        if b[q] == 0x0a { return q + 1 }
        if q + 1 < limit { return b[q + 1] == 0x0a ? q + 2 : q + 1 }
        return atEnd ? q + 1 : nil
    }

    func scan(_ b: UnsafeRawBufferPointer, from p0: Int, limit: Int, atEnd: Bool, spans: inout [CSVFieldSpan]) -> Result {
        spans.removeAll(keepingCapacity: true)
        var p = p0
        if p >= limit { return atEnd ? .endOfInput : .needMore }
        if b[p] == 0x0a || b[p] == 0x0d {
            guard let e = lineEnd(b, p, limit, atEnd) else { return .needMore }
            return .blank(end: e, newlines: 1)
        }
        var newlines = 0
        while true {
            if p < limit && b[p] == quote {
                var q = p + 1
                var escaped = false
                while true {
                    while q < limit && b[q] != quote {
                        if b[q] == 0x0a { newlines += 1 }
                        q += 1
                    }
                    if q >= limit { return atEnd ? .unterminatedQuote : .needMore }
                    // b[q] is a quote: doubled (escaped) or closing?
                    if q + 1 < limit && b[q + 1] == quote { escaped = true; q += 2; continue }
                    if q + 1 >= limit && !atEnd { return .needMore }
                    break
                }
                spans.append(CSVFieldSpan(start: p + 1, end: q, quoted: true, escaped: escaped))
                p = q + 1
                if p >= limit { return .record(end: p, newlines: newlines + 1) }  // atEnd here
                let c = b[p]
                if c == delimiter { p += 1; continue }
                if c == 0x0a || c == 0x0d {
                    guard let e = lineEnd(b, p, limit, atEnd) else { return .needMore }
                    return .record(end: e, newlines: newlines + 1)
                }
                return .junkAfterQuote(position: p, newlines: newlines)
            } else {
                var q = p
                while q < limit {
                    let c = b[q]
                    if c == delimiter || c == 0x0a || c == 0x0d { break }
                    q += 1
                }
                if q >= limit {
                    guard atEnd else { return .needMore }
                    spans.append(CSVFieldSpan(start: p, end: q, quoted: false, escaped: false))
                    return .record(end: q, newlines: newlines + 1)
                }
                spans.append(CSVFieldSpan(start: p, end: q, quoted: false, escaped: false))
                if b[q] == delimiter { p = q + 1; continue }
                guard let e = lineEnd(b, q, limit, atEnd) else { return .needMore }
                return .record(end: e, newlines: newlines + 1)
            }
        }
    }
}

/// What schema inference has learnt about one CSV column.
struct CSVColumnInference {
    static let int = 1, float = 2, bool = 4, date = 8, timestamp = 16, timestampTZ = 32
    static let all = 63
    var possible = all
    var sawValue = false

    mutating func observe(_ v: UnsafeRawBufferPointer) {
        sawValue = true
        guard possible != 0 else { return }
        if possible & (Self.int | Self.float) != 0 {
            if TextScan.int64(v) != nil { possible &= Self.int | Self.float; return }
            if TextScan.double(v) != nil { possible &= Self.float; return }
        }
        if possible & Self.bool != 0, TextScan.bool(v) != nil { possible &= Self.bool; return }
        if possible & (Self.date | Self.timestamp | Self.timestampTZ) != 0, let dt = TextScan.dateTime(v),
           TextScan.timestamp(dt, unit: .microsecond) != nil {
            if !dt.hasTime { possible &= Self.date | Self.timestamp }
            else if dt.hasOffset { possible &= Self.timestampTZ }
            else { possible &= Self.timestamp }
            return
        }
        possible = 0
    }

    var type: DataType {
        guard sawValue else { return .utf8 }
        if possible & Self.int != 0 { return .int64 }
        if possible & Self.float != 0 { return .float64 }
        if possible & Self.bool != 0 { return .bool }
        if possible & Self.date != 0 { return .date32 }
        if possible & Self.timestamp != 0 { return .timestamp(.microsecond, timezone: nil) }
        if possible & Self.timestampTZ != 0 { return .timestamp(.microsecond, timezone: "UTC") }
        return .utf8
    }
}

/// Turns field text into values of one declared type.
final class TextColumnDecoder {
    enum Kind {
        case int64, int32, int16, int8, uint64, uint32, uint16, uint8
        case float64, float32, float16, bool
        case utf8, binary
        case date32, date64
        case timestamp(TimeUnit)
        case time32(TimeUnit), time64(TimeUnit)
        case duration
        case decimal128(precision: Int, scale: Int)
        case null
    }

    let type: DataType
    let kind: Kind
    let builder: ArrayBuilder

    /// A decoder with its own builder, or nil when text cannot be turned into `type`.
    convenience init?(_ type: DataType) {
        self.init(type, builder: ArrayBuilder(type))
    }

    /// A decoder appending to `builder` (of `type`), or nil when text cannot be turned into `type`.
    init?(_ type: DataType, builder: ArrayBuilder) {
        self.type = type
        switch type {
        case .int64: kind = .int64
        case .int32: kind = .int32
        case .int16: kind = .int16
        case .int8: kind = .int8
        case .uint64: kind = .uint64
        case .uint32: kind = .uint32
        case .uint16: kind = .uint16
        case .uint8: kind = .uint8
        case .float64: kind = .float64
        case .float32: kind = .float32
        case .float16: kind = .float16
        case .bool: kind = .bool
        case .utf8, .largeUtf8: kind = .utf8
        case .binary, .largeBinary: kind = .binary
        case .date32: kind = .date32
        case .date64: kind = .date64
        case .timestamp(let u, _): kind = .timestamp(u)
        case .time32(let u): kind = .time32(u)
        case .time64(let u): kind = .time64(u)
        case .duration: kind = .duration
        case .decimal128(let p, let s): kind = .decimal128(precision: p, scale: s)
        case .null: kind = .null
        default: return nil
        }
        self.builder = builder
    }

    /// Whether an empty quoted field is a value (the empty string) rather than null.
    var takesEmpty: Bool {
        switch kind {
        case .utf8, .binary: true
        default: false
        }
    }

    /// Appends the value `v` spells; false when it is not a value of the type (nothing appended).
    func append(_ v: UnsafeRawBufferPointer) -> Bool {
        switch kind {
        case .int64:
            guard let x = TextScan.int64(v) else { return false }
            builder.appendInt64(x)
        case .int32: return appendInteger(v, Int32.self)
        case .int16: return appendInteger(v, Int16.self)
        case .int8: return appendInteger(v, Int8.self)
        case .uint64:
            guard let x = UInt64(String(decoding: v, as: UTF8.self)) else { return false }
            builder.appendInteger(x)
        case .uint32: return appendInteger(v, UInt32.self)
        case .uint16: return appendInteger(v, UInt16.self)
        case .uint8: return appendInteger(v, UInt8.self)
        case .float64:
            guard let d = TextScan.double(v) else { return false }
            builder.appendDouble(d)
        case .float32:
            guard let d = TextScan.double(v) else { return false }
            builder.appendFloat(Float(d))
        case .float16:
            guard let d = TextScan.double(v) else { return false }
            builder.appendInteger(HalfFloat.fromFloat(Float(d)))
        case .bool:
            guard let x = TextScan.bool(v) ?? (v.count == 1 && (v[0] == 48 || v[0] == 49) ? v[0] == 49 : nil) else { return false }
            builder.appendBool(x)
        case .utf8:
            guard TextScan.isValidUTF8(v) else { return false }
            builder.appendBytes(v)
        case .binary:
            builder.appendBytes(v)
        case .date32:
            guard let dt = TextScan.dateTime(v), !dt.hasTime else { return false }
            builder.appendInt32(Int32(truncatingIfNeeded: dt.seconds / 86400))
        case .date64:
            guard let dt = TextScan.dateTime(v), !dt.hasTime else { return false }
            builder.appendInt64(dt.seconds * 1000)
        case .timestamp(let unit):
            guard let dt = TextScan.dateTime(v), let x = TextScan.timestamp(dt, unit: unit) else { return false }
            builder.appendInt64(x)
        case .time32(let unit):
            guard let ns = TextScan.timeOfDay(v), ns % (1_000_000_000 / unit.perSecond) == 0 else { return false }
            builder.appendInt32(Int32(ns / (1_000_000_000 / unit.perSecond)))
        case .time64(let unit):
            guard let ns = TextScan.timeOfDay(v), ns % (1_000_000_000 / unit.perSecond) == 0 else { return false }
            builder.appendInt64(ns / (1_000_000_000 / unit.perSecond))
        case .duration:
            guard let x = TextScan.int64(v) else { return false }
            builder.appendInt64(x)
        case .decimal128(let p, let s):
            guard let x = TextScan.decimal(v, precision: p, scale: s) else { return false }
            withUnsafeBytes(of: x.littleEndian) { builder.appendBytes($0) }
        case .null:
            return false
        }
        return true
    }

    private func appendInteger<T: FixedWidthInteger>(_ v: UnsafeRawBufferPointer, _: T.Type) -> Bool {
        guard let x = TextScan.int64(v), let y = T(exactly: x) else { return false }
        builder.appendInteger(y)
        return true
    }

    func appendNull() { builder.appendNull() }
}

/// Quotes text for an error message, shortened to `limit` characters.
func quoted(_ b: UnsafeRawBufferPointer, limit: Int = 60) -> String {
    var s = String(decoding: b, as: UTF8.self)
    if s.count > limit { s = String(s.prefix(limit)) + "…" }
    return "'" + s + "'"
}

/// A streaming CSV reader: a batch at a time from a `ByteSource`, memory bounded by one
/// batch plus the inference sample.
///
/// - Quoting with `"`, quotes doubled inside quoted fields, line ends (LF, CRLF, CR) inside
///   quoted fields; an empty unquoted field is null, an empty quoted field is the empty string.
/// - Column types are inferred over the first `inferenceRows` rows (int64, float64, bool,
///   date32, timestamp[us] / timestamp[us, tz=UTC] for ISO 8601 text with an offset, else string),
///   unless declared through `columnTypes` or `schema`.
/// - A later value that does not fit, or a row with the wrong number of fields, throws an
///   `ArrowError(.invalidData)` naming the line, row and column; the reader is then finished.
/// - On a live source it hands out the complete rows it holds instead of waiting for a full batch.
public final class CSVReader: BatchReader {
    /// The schema of every batch.
    public private(set) var schema: Schema
    private let options: CSVReadOptions
    private let window: InputWindow
    private let scanner: CSVScanner
    private var decoders: [TextColumnDecoder]
    private var spans: [CSVFieldSpan] = []
    private let scratch = BufferBuilder(capacity: 256)
    private let live: Bool
    /// 1-based line number where the next record starts.
    private var line = 1
    /// Data rows read so far.
    private var row = 0
    private var finished = false

    /// Reads the header and the inference sample from `source`.
    public init(source: ByteSource, options: CSVReadOptions = CSVReadOptions()) throws {
        guard options.batchRows > 0 else { throw ArrowError(.invalidArgument, "expected a batch size of at least 1 row but found \(options.batchRows)") }
        self.options = options
        window = InputWindow(source: source)
        scanner = CSVScanner(delimiter: options.delimiter, quote: options.quote)
        live = source.isLive
        decoders = []
        schema = Schema([])

        // Byte order mark.
        try awaitBytes(3)
        if window.pending >= 3, window.bytes[window.start] == 0xef, window.bytes[window.start + 1] == 0xbb, window.bytes[window.start + 2] == 0xbf {
            window.start += 3
        }

        var names: [String] = []
        var headerCount: Int?
        if options.hasHeader {
            if try nextRecord(consume: true) {
                names = (0..<spans.count).map { String(decoding: fieldBytes(spans[$0]), as: UTF8.self) }
                headerCount = names.count
            }
        }
        let resolved: [Field]
        if let full = options.schema {
            if let headerCount, headerCount != full.fields.count {
                throw ArrowError(.invalidData, "CSV line 1: expected \(full.fields.count) header fields to match the declared schema but found \(headerCount)")
            }
            resolved = full.fields
            schema = full
        } else {
            let inferred = try inferTypes(names: &names)
            var fields = zip(names, inferred).map { Field($0.0, $0.1) }
            for declared in options.columnTypes {
                guard let k = fields.firstIndex(where: { $0.name == declared.name }) else {
                    throw ArrowError(.invalidArgument, "declared column '\(declared.name)' is not in the CSV (columns: \(names.joined(separator: ", ")))")
                }
                fields[k].type = declared.type
            }
            resolved = fields
            schema = Schema(fields)
        }
        decoders = try resolved.map { f in
            guard let d = TextColumnDecoder(f.type) else {
                throw ArrowError(.unsupported, "column '\(f.name)': CSV cannot be read as \(f.type)")
            }
            return d
        }
    }

    /// Reads until at least `n` bytes are pending or the input ends (live: one read).
    private func awaitBytes(_ n: Int) throws {
        while window.pending < n && !window.atEnd {
            if try window.fill() == 0 { break }
            if live { break }
        }
    }

    /// The content of a field, with doubled quotes collapsed (into `scratch`).
    private func fieldBytes(_ s: CSVFieldSpan) -> UnsafeRawBufferPointer {
        let b = window.bytes
        if !s.escaped { return UnsafeRawBufferPointer(rebasing: b[s.start..<s.end]) }
        scratch.removeAll()
        var k = s.start
        while k < s.end {
            scratch.append(b[k])
            k += b[k] == options.quote ? 2 : 1
        }
        return scratch.bytes
    }

    /// Scans the next record into `spans` (reading as needed); false at the end of input.
    /// With `consume` the window and line counter move past it.
    private func nextRecord(consume: Bool) throws -> Bool {
        while true {
            let r = scanner.scan(window.bytes, from: window.start, limit: window.end, atEnd: window.atEnd, spans: &spans)
            switch r {
            case .record(let end, let nl):
                if consume { window.start = end; line += nl }
                return true
            case .blank(let end, let nl):
                window.start = end
                line += nl
            case .needMore:
                try window.fill()
            case .endOfInput:
                return false
            case .unterminatedQuote:
                throw unterminated(at: line)
            case .junkAfterQuote(let pos, let nl):
                throw junk(at: line + nl, byte: window.bytes[pos], offset: window.base + pos)
            }
        }
    }

    private func unterminated(at line: Int) -> ArrowError {
        ArrowError(.invalidData, "CSV line \(line): expected a closing quote but found the end of the input")
    }

    private func junk(at line: Int, byte: UInt8, offset: Int) -> ArrowError {
        ArrowError(.invalidData, "CSV line \(line): expected a delimiter or a line end after a closing quote but found '\(String(decoding: [byte], as: UTF8.self))'", offset: offset)
    }

    /// Looks at up to `inferenceRows` records after the header without consuming them.
    private func inferTypes(names: inout [String]) throws -> [DataType] {
        var states: [CSVColumnInference] = []
        var count: Int? = names.isEmpty ? nil : names.count
        if let count { states = Array(repeating: CSVColumnInference(), count: count) }
        var rel = 0            // scan position relative to window.start
        var scanLine = line
        var records = 0
        scanning: while records < options.inferenceRows {
            let r = scanner.scan(window.bytes, from: window.start + rel, limit: window.end, atEnd: window.atEnd, spans: &spans)
            switch r {
            case .record(let end, let nl):
                if count == nil {
                    count = spans.count
                    states = Array(repeating: CSVColumnInference(), count: spans.count)
                    names = (0..<spans.count).map { "f\($0)" }
                }
                guard spans.count == count! else {
                    throw ArrowError(.invalidData, "CSV line \(scanLine) (row \(records + 1)): expected \(count!) fields but found \(spans.count)")
                }
                for (k, s) in spans.enumerated() where !(s.start == s.end) {
                    states[k].observe(fieldBytes(s))
                }
                rel = end - window.start
                scanLine += nl
                records += 1
            case .blank(let end, let nl):
                rel = end - window.start
                scanLine += nl
            case .needMore:
                if live && records > 0 && !window.readableNow(within: options.liveInferenceWait) { break scanning }
                try window.fill()
            case .endOfInput:
                break scanning
            case .unterminatedQuote:
                throw unterminated(at: scanLine)
            case .junkAfterQuote(let pos, let nl):
                throw junk(at: scanLine + nl, byte: window.bytes[pos], offset: window.base + pos)
            }
        }
        return states.map(\.type)
    }

    /// The next batch of up to `batchRows` rows, or nil at the end.
    public func next() throws -> RecordBatch? {
        guard !finished else { return nil }
        do {
            var rows = 0
            reading: while rows < options.batchRows {
                let r = scanner.scan(window.bytes, from: window.start, limit: window.end, atEnd: window.atEnd, spans: &spans)
                switch r {
                case .record(let end, let nl):
                    try appendRow()
                    window.start = end
                    line += nl
                    rows += 1
                case .blank(let end, let nl):
                    window.start = end
                    line += nl
                case .needMore:
                    if live && rows > 0 && !window.readableNow() { break reading }
                    try window.fill()
                case .endOfInput:
                    finished = true
                    break reading
                case .unterminatedQuote:
                    throw unterminated(at: line)
                case .junkAfterQuote(let pos, let nl):
                    throw junk(at: line + nl, byte: window.bytes[pos], offset: window.base + pos)
                }
            }
            if rows == 0 { finished = true; return nil }
            return try RecordBatch(schema: schema, columns: decoders.map { $0.builder.finish() }, length: rows)
        } catch {
            finished = true
            throw error
        }
    }

    private func appendRow() throws {
        row += 1
        guard spans.count == decoders.count else {
            throw ArrowError(.invalidData, "CSV line \(line) (row \(row)): expected \(decoders.count) fields but found \(spans.count)", offset: window.base + window.start)
        }
        for k in 0..<decoders.count {
            let s = spans[k]
            let d = decoders[k]
            if s.start == s.end && (!s.quoted || !d.takesEmpty) { d.appendNull(); continue }
            let v = fieldBytes(s)
            if !d.append(v) {
                throw ArrowError(.invalidData, "CSV line \(line) (row \(row)), column '\(schema.fields[k].name)': expected a value of type \(d.type) but found \(quoted(v))", offset: window.base + s.start)
            }
        }
    }
}

/// Options for `CSVWriter`.
public struct CSVWriteOptions: Sendable {
    /// Field separator, `,` by default.
    public var delimiter: UInt8 = UInt8(ascii: ",")
    /// Whether to write a header record with the column names.
    public var header = true
    /// Push bytes to the sink after every batch (for live outputs).
    public var flushEachBatch = false
    /// Default options.
    public init() {}
}

/// Writes batches as CSV: a header, `\n` line ends, fields quoted only when needed (delimiter,
/// quote, line end, or the empty string, which is written `""` so that it differs from null),
/// nulls as empty fields, temporal values as ISO 8601, binary as base64, nested values as JSON.
public final class CSVWriter: BatchWriter {
    private let sink: ByteSink
    private let schema: Schema
    private let options: CSVWriteOptions
    private var wroteHeader = false
    private var out: [UInt8] = []
    private var cell: [UInt8] = []

    /// A writer of `schema` batches to `sink`.
    public init(sink: ByteSink, schema: Schema, options: CSVWriteOptions = CSVWriteOptions()) {
        self.sink = sink
        self.schema = schema
        self.options = options
    }

    private func writeHeaderIfNeeded() {
        guard !wroteHeader else { return }
        wroteHeader = true
        guard options.header else { return }
        for (k, f) in schema.fields.enumerated() {
            if k > 0 { out.append(options.delimiter) }
            var name = f.name
            name.withUTF8 { appendText(UnsafeRawBufferPointer($0), forceQuote: $0.isEmpty && schema.fields.count == 1) }
        }
        out.append(0x0a)
    }

    /// Writes the rows of `batch` (its column types must match the writer's schema).
    public func write(_ batch: RecordBatch) throws {
        guard batch.schema.fields.map(\.type) == schema.fields.map(\.type) else {
            throw ArrowError(.invalidArgument, "CSV writer: expected batches of schema (\(schema.fields.map { "\($0.name): \($0.type)" }.joined(separator: ", "))) but found (\(batch.schema.fields.map { "\($0.name): \($0.type)" }.joined(separator: ", ")))")
        }
        writeHeaderIfNeeded()
        let columns = batch.columns
        for i in 0..<batch.length {
            for (k, c) in columns.enumerated() {
                if k > 0 { out.append(options.delimiter) }
                appendCell(c, i)
            }
            if columns.count == 1, columns[0].isNull(i), !columns[0].type.isBinaryLike {
                // A lone null would make an empty line, which readers skip: `""` reads back as null
                // for every type but strings.
                out.appendASCII("\"\"")
            }
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
        writeHeaderIfNeeded()
        try sink.drain(&out)
        try sink.flush()
    }

    /// Text, quoted when it holds the delimiter, a quote or a line end (or when `forceQuote`).
    private func appendText(_ b: UnsafeRawBufferPointer, forceQuote: Bool) {
        var needs = forceQuote
        if !needs {
            for c in b where c == options.delimiter || c == 0x22 || c == 0x0a || c == 0x0d { needs = true; break }
        }
        guard needs else { out.append(contentsOf: b); return }
        out.append(0x22)
        for c in b {
            if c == 0x22 { out.append(0x22) }
            out.append(c)
        }
        out.append(0x22)
    }

    private func appendCell(_ a: ArrayData, _ i: Int) {
        if case .union = a.type {
            guard let (child, slot) = a.unionSlot(i) else { return }
            appendCell(a.children[child], slot)
            return
        }
        guard a.isValid(i) else { return }
        switch a.type {
        case .int64, .int32, .int16, .int8, .uint8, .uint16, .uint32, .uint64, .bool, .duration,
             .date32, .date64, .time32, .time64, .timestamp, .decimal128, .decimal256:
            ValueText.append(a, i, style: .display, topLevel: true, into: &out)
            if case .duration(let u) = a.type { out.removeLast(u.symbol.utf8.count) }
        case .float64, .float32, .float16:
            let d: Double
            switch a.type {
            case .float64: d = a.value(i, as: Double.self)
            case .float32: d = Double(a.value(i, as: Float.self))
            default: d = Double(HalfFloat.toFloat(a.value(i, as: UInt16.self)))
            }
            if d.isNaN { out.appendASCII("NaN") } else {
                ValueText.append(a, i, style: .display, topLevel: true, into: &out)
            }
        case .utf8, .largeUtf8:
            let b = a.bytes(i)
            appendText(b, forceQuote: b.isEmpty)
        case .binary, .largeBinary, .fixedSizeBinary:
            cell.removeAll(keepingCapacity: true)
            switch a.type {
            case .fixedSizeBinary(let w):
                ValueText.appendBase64(UnsafeRawBufferPointer(rebasing: a.buffers[1]!.bytes[(a.offset + i) * w ..< (a.offset + i + 1) * w]), into: &cell)
            default:
                ValueText.appendBase64(a.bytes(i), into: &cell)
            }
            if cell.isEmpty { out.appendASCII("\"\"") } else { out.append(contentsOf: cell) }
        case .dictionary(let indexType, _, _):
            appendCell(a.dictionary!, a.dictionaryIndex(i, indexType: indexType))
        default:
            cell.removeAll(keepingCapacity: true)
            ValueText.append(a, i, style: .json, topLevel: true, into: &cell)
            cell.withUnsafeBytes { appendText($0, forceQuote: false) }
        }
    }
}
