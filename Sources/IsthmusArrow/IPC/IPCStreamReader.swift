#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads an Arrow IPC stream (`.arrows`): a schema message, then dictionary and record
/// batch messages, then end of stream (the marker in either framing, or the end of input).
///
/// Over a `Buffer` (a memory-mapped file, a received frame) it copies nothing: the
/// batches' buffers are slices of the input. Over a `ByteSource` (stdin, a pipe) it reads
/// only the bytes the current message still needs, so a batch is returned as soon as its
/// bytes have arrived. Every batch is validated before it is returned.
public final class IPCStreamReader: BatchReader {
    /// The stream's schema.
    public let schema: Schema
    private var framing: StreamDecoder
    private var decoder: IPCDecoder
    private let source: ByteSource?
    private var ended = false
    /// The file mapping this reader walks, whose pages it hands back behind itself.
    private var pages: MappedPages?
    /// The mapped file, checked where the stream seems to end or fails to decode.
    private var mapped: MappedInput?
    /// Gives batches decoded from a shared input file their origin (nil: none is shared).
    private var origins: OriginTracker?
    /// The schema message, for the origin tracker.
    private let schemaMessage: IPCMessage?

    /// A reader over a complete stream in memory (zero-copy). Reads the schema message.
    public init(buffer: Buffer, options: IPCReadOptions = IPCReadOptions()) throws {
        framing = StreamDecoder(options: options)
        framing.feed(buffer)
        framing.finish()
        decoder = IPCDecoder(options: options)
        source = nil
        (schema, schemaMessage) = try Self.readSchema(&framing, &decoder, nil)
    }

    /// A reader that pulls bytes from `source` as it needs them. Blocks until the schema
    /// message has arrived.
    public init(source: ByteSource, options: IPCReadOptions = IPCReadOptions()) throws {
        framing = StreamDecoder(options: options)
        decoder = IPCDecoder(options: options)
        self.source = source
        (schema, schemaMessage) = try Self.readSchema(&framing, &decoder, source)
    }

    /// A reader over a file (memory-mapped when possible) or `-` for stdin (incremental).
    public convenience init(path: String, options: IPCReadOptions = IPCReadOptions()) throws {
        let file = try InputFile(path: path)
        if path == "-" || file.isLive {
            try self.init(source: file, options: options)
        } else {
            try self.init(mapping: file, options: options)
        }
    }

    /// A reader over the whole of a regular file, memory-mapped when possible; the pages it
    /// has read past are handed back to the kernel (`MappedPages`).
    /// With `options.trackOrigins`, batches decoded without a copy carry their `origin`.
    convenience init(mapping file: InputFile, options: IPCReadOptions) throws {
        let bytes = try file.readAll()
        try self.init(buffer: bytes, options: options)
        pages = file.mapping
        mapped = file.mappedInput(size: bytes.count)
        if options.trackOrigins, pages != nil, let schemaMessage {
            origins = OriginTracker(file: file.share(), storage: bytes.storage, schema: schema, message: schemaMessage)
            if origins != nil { pages?.readsLittle() }
        }
    }

    /// Custom metadata of the last record batch message read.
    public var lastMessageMetadata: [KeyValue] { decoder.lastMessageMetadata }

    /// The dictionary currently bound to `id`.
    public func dictionary(id: Int64) -> ArrayData? { decoder.dictionary(id: id) }

    private static func readSchema(_ framing: inout StreamDecoder, _ decoder: inout IPCDecoder, _ source: ByteSource?) throws -> (Schema, IPCMessage) {
        while true {
            switch try framing.next() {
            case .needMore(let n):
                try pull(&framing, source, n)
            case .endOfStream:
                throw ArrowError(.truncated, "expected a schema message but found the end of the stream", offset: framing.position)
            case .message(let m):
                guard m.kind == .schema else {
                    throw ArrowError.invalid("expected a schema message first but found \(m.kind)", offset: m.offset)
                }
                guard case .schema(let s) = try decoder.decode(m) else { continue }
                return (s, m)
            }
        }
    }

    /// Reads exactly the `n` bytes the framing needs (fewer at the end of input), growing
    /// its buffer only as bytes actually arrive, so a lying length prefix cannot make it
    /// allocate more than twice the input.
    private static func pull(_ framing: inout StreamDecoder, _ source: ByteSource?, _ n: Int) throws {
        guard let source else { framing.finish(); return }
        var capacity = Swift.min(n, 1 << 16)
        var raw = malloc(Swift.max(capacity, 1))!
        var filled = 0
        while filled < n {
            if filled == capacity {
                capacity = Swift.min(n, capacity * 2)
                guard let grown = realloc(raw, capacity) else { free(raw); throw ArrowError(.io, "out of memory reading \(capacity) bytes") }
                raw = grown
            }
            let k: Int
            do {
                k = try source.read(into: UnsafeMutableRawBufferPointer(start: raw + filled, count: capacity - filled))
            } catch {
                free(raw)
                throw error
            }
            if k == 0 { break }
            filled += k
        }
        if filled == 0 {
            free(raw)
            framing.finish()
            return
        }
        let storage = BufferStorage(base: UnsafeRawPointer(raw), count: filled) { base, _ in free(UnsafeMutableRawPointer(mutating: base)) }
        framing.feed(Buffer(storage: storage))
        if filled < n { framing.finish() }
    }

    /// The next batch, or nil at the end of the stream.
    public func next() throws -> RecordBatch? {
        guard !ended else { return nil }
        if let mapped { return try mapped.reading(nextBatch) }
        return try nextBatch()
    }

    private func nextBatch() throws -> RecordBatch? {
        while true {
            switch try framing.next() {
            case .needMore(let n):
                try Self.pull(&framing, source, n)
            case .endOfStream:
                try mapped?.ensureUnchanged()
                ended = true
                return nil
            case .message(let m):
                if case .recordBatch(var b) = try decoder.decode(m) {
                    pages?.consumed(upTo: framing.position)
                    b.origin = origins?.origin(of: b, message: m)
                    if let o = b.origin?.rows { pages?.willNeed(o.messageOffset, o.messageLength) }
                    return b
                }
            }
        }
    }

    /// All remaining batches.
    public func readAll() throws -> [RecordBatch] {
        var out: [RecordBatch] = []
        while let b = try next() { out.append(b) }
        return out
    }
}

/// Writes an Arrow IPC stream: schema, then for each batch the dictionaries it needs and
/// the batch, then the end-of-stream marker. Metadata V5, continuation marker, 8-byte
/// alignment. Uses `IPCEncoder`, the encoder the ZeroMQ bridge uses.
public final class IPCStreamWriter: BatchWriter {
    /// The schema every batch must have.
    public var schema: Schema { encoder.schema }
    private var encoder: IPCEncoder
    private let sink: ByteSink
    private var finished = false

    /// Writes the schema message to `sink`.
    public init(sink: ByteSink, schema: Schema, options: IPCWriteOptions = IPCWriteOptions()) throws {
        self.sink = sink
        encoder = try IPCEncoder(schema: schema, options: options)
        try sink.write(encoder.schemaMessage())
    }

    public func write(_ batch: RecordBatch) throws {
        guard !finished else { throw ArrowError(.invalidArgument, "expected an open writer but found it finished") }
        for m in try encoder.encode(batch) { try m.write(to: sink) }
    }

    public func flush() throws { try sink.flush() }

    /// Writes the end-of-stream marker and flushes.
    public func finish() throws {
        guard !finished else { return }
        finished = true
        try sink.write(IPCEncoder.endOfStream)
        try sink.flush()
    }
}
