/// How `Formats.openReader` reads text formats (IPC inputs carry their own schema).
public struct ReadOptions: Sendable {
    /// Most rows per batch: the batch size of CSV and JSON Lines; IPC batches larger than this
    /// are cut into slices (nil: text formats use 65 536, IPC batches are kept as they are).
    public var batchRows: Int?
    /// Rows looked at to infer column types of CSV and JSON Lines.
    public var inferenceRows = 1000
    /// CSV field separator.
    public var delimiter: UInt8 = UInt8(ascii: ",")
    /// Whether a CSV input starts with a header record.
    public var hasHeader = true
    /// Declared types for some columns (by name); the others are inferred.
    public var columnTypes: [Field] = []
    /// The whole schema of a CSV or JSON Lines input (no inference).
    public var schema: Schema?
    /// JSON Lines: skip keys not in the schema instead of failing.
    public var ignoreUnknownKeys = false
    /// Body codecs for compressed Arrow IPC inputs (LZ4 frame, ZSTD). IsthmusArrow has none of
    /// its own (it calls no C); pass `BodyCodecs.system` from IsthmusCompression.
    public var codecs: [any BodyCodec] = []
    /// Arrow IPC stream files: give batches their place in the file, for local workers that
    /// read them in place (`IPCReadOptions.trackOrigins`, PROTOCOL.md §19).
    public var trackOrigins = false

    /// Defaults: header on, comma, inference over 1000 rows.
    public init() {}

    /// The options as the CSV reader takes them.
    var csv: CSVReadOptions {
        var o = CSVReadOptions()
        o.delimiter = delimiter
        o.hasHeader = hasHeader
        o.inferenceRows = inferenceRows
        o.columnTypes = columnTypes
        o.schema = schema
        if let batchRows { o.batchRows = batchRows }
        return o
    }

    var jsonLines: JSONLinesReadOptions {
        var o = JSONLinesReadOptions()
        o.inferenceRows = inferenceRows
        o.columnTypes = columnTypes
        o.schema = schema
        o.ignoreUnknownKeys = ignoreUnknownKeys
        if let batchRows { o.batchRows = batchRows }
        return o
    }
}

/// How `Formats.openWriter` writes.
public struct WriteOptions: Sendable {
    /// Buffer compression of Arrow IPC outputs: a codec such as `BodyCodecs.zstd` from
    /// IsthmusCompression (nil: uncompressed).
    public var compression: (any BodyCodec)?
    /// CSV field separator.
    public var delimiter: UInt8 = UInt8(ascii: ",")
    /// Whether CSV outputs get a header record.
    public var header = true
    /// Push bytes out after every batch; nil: only when writing to stdout (`-`), so live
    /// streams flow.
    public var flushEachBatch: Bool?

    /// Defaults: uncompressed, comma, header.
    public init() {}
}

/// Opens readers and writers of every supported format by path.
public enum Formats {
    /// The formats' extensions, for messages.
    static let extensionList = "an extension .arrows, .arrow, .feather, .csv, .jsonl or .ndjson"

    /// The format of `path`: `format` when given, else by extension; `-` (stdin/stdout) is
    /// sniffed on input (`sniff`) and is an Arrow IPC stream on output.
    public static func resolve(path: String, format: DataFormat?, output: Bool) throws -> DataFormat? {
        if let format { return format }
        if let f = DataFormat.from(path: path) { return f }
        if path == "-" { return output ? .arrows : nil }
        throw ArrowError(.invalidArgument, "cannot tell the format of '\(path)': expected \(extensionList), or --from/--to")
    }

    /// A reader of `path` (`-` is stdin). The format is `format`, else the extension's; stdin
    /// without `format` is recognised by its first bytes.
    public static func openReader(path: String, format: DataFormat?, options: ReadOptions) throws -> BatchReader {
        let resolved = try resolve(path: path, format: format, output: false)
        let file = try InputFile(path: path)
        if let resolved { return try openReader(source: file, file: file, format: resolved, options: options) }
        let peek = PeekSource(file)
        return try openReader(source: peek, file: file, format: try peek.sniff(), options: options)
    }

    /// A reader of `format` over `source` (the whole input is read at once for the IPC file
    /// format); without `format` the first bytes decide.
    public static func openReader(source: ByteSource, format: DataFormat?, options: ReadOptions) throws -> BatchReader {
        if let format { return try openReader(source: source, file: nil, format: format, options: options) }
        let peek = PeekSource(source)
        return try openReader(source: peek, file: nil, format: try peek.sniff(), options: options)
    }

    private static func openReader(source: ByteSource, file: InputFile?, format: DataFormat, options: ReadOptions) throws -> BatchReader {
        if let n = options.batchRows, n < 1 {
            throw ArrowError(.invalidArgument, "expected a batch size of at least 1 row but found \(n)")
        }
        let reader: BatchReader
        switch format {
        case .csv:
            return try CSVReader(source: source, options: options.csv)
        case .jsonl:
            return try JSONLinesReader(source: source, options: options.jsonLines)
        case .arrows:
            reader = try IPCDispatch.streamReader(source: source, file: file, codecs: options.codecs, trackOrigins: options.trackOrigins)
        case .arrow:
            reader = try IPCDispatch.fileReader(source: source, file: file, codecs: options.codecs)
        }
        if let n = options.batchRows { return SlicingReader(reader, maxRows: n) }
        return reader
    }

    /// A writer of `schema` batches to `path` (`-` is stdout) and the output file it writes.
    /// Call `finish()` on the writer, then `commit()` on the file; on any error call `abandon()`
    /// so that no partial output remains and an existing file is kept.
    public static func openWriter(path: String, format: DataFormat?, schema: Schema, options: WriteOptions) throws -> (BatchWriter, OutputFile) {
        let resolved = try resolve(path: path, format: format, output: true) ?? .arrows
        if let codec = options.compression, !(resolved == .arrows || resolved == .arrow) {
            throw ArrowError(.invalidArgument, "compression \(codec.type) applies to Arrow outputs (.arrows, .arrow) but the output is \(resolved)")
        }
        let file = try OutputFile(path: path)
        do {
            let writer = try openWriter(sink: file, format: resolved, schema: schema, options: options, flushDefault: path == "-")
            return (writer, file)
        } catch {
            file.abandon()
            throw error
        }
    }

    /// A writer of `format` over `sink`.
    public static func openWriter(sink: ByteSink, format: DataFormat, schema: Schema, options: WriteOptions) throws -> BatchWriter {
        try openWriter(sink: sink, format: format, schema: schema, options: options, flushDefault: false)
    }

    private static func openWriter(sink: ByteSink, format: DataFormat, schema: Schema, options: WriteOptions, flushDefault: Bool) throws -> BatchWriter {
        let flush = options.flushEachBatch ?? flushDefault
        switch format {
        case .csv:
            var o = CSVWriteOptions()
            o.delimiter = options.delimiter
            o.header = options.header
            o.flushEachBatch = flush
            return CSVWriter(sink: sink, schema: schema, options: o)
        case .jsonl:
            var o = JSONLinesWriteOptions()
            o.flushEachBatch = flush
            return JSONLinesWriter(sink: sink, schema: schema, options: o)
        case .arrows:
            return try IPCDispatch.streamWriter(sink: sink, schema: schema, options: options, flush: flush)
        case .arrow:
            return try IPCDispatch.fileWriter(sink: sink, schema: schema, options: options)
        }
    }
}

/// Cuts batches larger than `maxRows` into slices (copies nothing).
final class SlicingReader: BatchReader {
    private let inner: BatchReader
    private let maxRows: Int
    private var pending: RecordBatch?
    private var offset = 0

    init(_ inner: BatchReader, maxRows: Int) {
        self.inner = inner
        self.maxRows = maxRows
    }

    var schema: Schema { inner.schema }

    func next() throws -> RecordBatch? {
        if pending == nil {
            guard let b = try inner.next() else { return nil }
            if b.length <= maxRows { return b }
            pending = b
            offset = 0
        }
        let b = pending!
        let n = Swift.min(maxRows, b.length - offset)
        let slice = b.slice(offset, n)
        offset += n
        if offset >= b.length { pending = nil }
        return slice
    }
}

/// A source that reads ahead a few bytes to recognise the format of an input without a name.
final class PeekSource: PollableByteSource {
    private let inner: ByteSource
    private var head: [UInt8] = []
    private var headOffset = 0

    init(_ inner: ByteSource) { self.inner = inner }

    var isLive: Bool { inner.isLive }

    func isReadable(within timeout: Double) -> Bool {
        if headOffset < head.count { return true }
        if let p = inner as? PollableByteSource { return p.isReadable(within: timeout) }
        return false
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if headOffset < head.count {
            let n = Swift.min(buffer.count, head.count - headOffset)
            head.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + headOffset, byteCount: n) }
            headOffset += n
            return n
        }
        return try inner.read(into: buffer)
    }

    /// The format the first bytes suggest: `ARROW1` → IPC file, `0xFFFFFFFF` → IPC stream,
    /// `{` (after whitespace) → JSON Lines, anything else → CSV.
    func sniff() throws -> DataFormat {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while head.count < 8 {
            let n = try chunk.withUnsafeMutableBytes { try inner.read(into: $0) }
            if n == 0 { break }
            head += chunk[0..<n]
        }
        if head.starts(with: Array("ARROW1".utf8)) { return .arrow }
        if head.starts(with: [0xff, 0xff, 0xff, 0xff]) { return .arrows }
        if let first = head.first(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0a && $0 != 0x0d }), first == UInt8(ascii: "{") { return .jsonl }
        if head.isEmpty { return .arrows }
        return .csv
    }
}
