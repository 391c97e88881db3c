/// The magic at both ends of an Arrow IPC file.
let arrowFileMagic: [UInt8] = Array("ARROW1".utf8)

/// Position of one message in an IPC file (File.fbs `Block`).
public struct IPCFileBlock: Sendable, Hashable {
    /// Offset of the message (its prefix) from the start of the file.
    public var offset: Int
    /// Bytes of prefix, flatbuffer and padding.
    public var metadataLength: Int
    /// Bytes of the body.
    public var bodyLength: Int
}

/// Writes an Arrow IPC file (`.arrow`): magic `ARROW1\0\0`, the stream (schema,
/// dictionaries, record batches, end-of-stream marker), the Footer flatbuffer with the
/// schema and the blocks, its int32 length, and `ARROW1`. A dictionary may grow by deltas
/// but not be replaced (the file format allows one dictionary per id).
public final class IPCFileWriter: BatchWriter {
    /// The schema every batch must have.
    public var schema: Schema { encoder.schema }
    /// Custom metadata written into the footer.
    public var footerMetadata: [KeyValue]
    private var encoder: IPCEncoder
    private let sink: ByteSink
    private var position = 0
    private var dictionaryBlocks: [IPCFileBlock] = []
    private var recordBlocks: [IPCFileBlock] = []
    private var finished = false

    /// Writes the magic and the schema message to `sink`.
    public init(sink: ByteSink, schema: Schema, options: IPCWriteOptions = IPCWriteOptions(), footerMetadata: [KeyValue] = []) throws {
        self.sink = sink
        self.footerMetadata = footerMetadata
        encoder = try IPCEncoder(schema: schema, options: options)
        encoder.refusesReplacement = true
        try sink.write(arrowFileMagic + [0, 0])
        position = 8
        let schemaMessage = encoder.schemaMessage()
        try sink.write(schemaMessage)
        position += schemaMessage.count
    }

    public func write(_ batch: RecordBatch) throws {
        guard !finished else { throw ArrowError(.invalidArgument, "expected an open writer but found it finished") }
        for m in try encoder.encode(batch) {
            let block = IPCFileBlock(offset: position, metadataLength: m.metadata.count, bodyLength: m.bodyLength)
            try m.write(to: sink)
            position += m.byteCount
            if case .recordBatch = m.kind { recordBlocks.append(block) } else { dictionaryBlocks.append(block) }
        }
    }

    public func flush() throws { try sink.flush() }

    /// Writes the end-of-stream marker, the footer and the trailing magic, and flushes.
    public func finish() throws {
        guard !finished else { return }
        finished = true
        try sink.write(IPCEncoder.endOfStream)
        var footer = FBTableValue()
        footer.set(0, .int16(MetadataVersion.v5.rawValue))
        footer.set(1, .table(SchemaEncoding.schemaTable(encoder.schema, encoder.map)))
        footer.set(2, Self.blocks(dictionaryBlocks))
        footer.set(3, Self.blocks(recordBlocks))
        if !footerMetadata.isEmpty { footer.set(4, SchemaEncoding.keyValues(footerMetadata)) }
        let fb = FBWriter.serialize(footer)
        try sink.write(fb)
        try sink.write(withUnsafeBytes(of: Int32(fb.count).littleEndian) { Array($0) })
        try sink.write(arrowFileMagic)
        try sink.flush()
    }

    static func blocks(_ blocks: [IPCFileBlock]) -> FBFieldValue {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(blocks.count * 24)
        for b in blocks {
            withUnsafeBytes(of: Int64(b.offset).littleEndian) { bytes.append(contentsOf: $0) }
            withUnsafeBytes(of: Int32(b.metadataLength).littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: [0, 0, 0, 0])
            withUnsafeBytes(of: Int64(b.bodyLength).littleEndian) { bytes.append(contentsOf: $0) }
        }
        return .inlineVector(bytes: bytes, count: blocks.count, alignment: 8)
    }
}

/// Reads an Arrow IPC file from memory (a memory-mapped file): the footer gives the
/// schema and the blocks, so record batches can be read in any order. Zero-copy: the
/// batches' buffers are slices of the input. Dictionaries (and their deltas) are read
/// when the reader opens. Every batch is validated before it is returned.
public final class IPCFileReader: BatchReader {
    /// The file's schema (from the footer).
    public let schema: Schema
    /// Custom metadata of the footer.
    public let footerMetadata: [KeyValue]
    /// Metadata version of the footer.
    public let version: MetadataVersion
    /// Dictionary message blocks.
    public let dictionaryBlocks: [IPCFileBlock]
    /// Record batch message blocks.
    public let recordBatchBlocks: [IPCFileBlock]
    private let buffer: Buffer
    private let dataEnd: Int
    private var decoder: IPCDecoder
    private var cursor = 0

    /// Opens a file in memory. Throws when the magic, footer or dictionaries are malformed.
    public init(buffer: Buffer, options: IPCReadOptions = IPCReadOptions()) throws {
        self.buffer = buffer
        let n = buffer.count
        let magic = arrowFileMagic.count
        guard n >= 2 * magic + 2 + 4 else {
            throw ArrowError(.truncated, "expected an Arrow file of at least \(2 * magic + 6) bytes but found \(n)")
        }
        guard Array(buffer.slice(0, magic).bytes) == arrowFileMagic else {
            throw ArrowError.invalid("expected the magic ARROW1 at the start of the file but found \(Array(buffer.slice(0, magic).bytes))", offset: 0)
        }
        guard Array(buffer.slice(n - magic, magic).bytes) == arrowFileMagic else {
            throw ArrowError.invalid("expected the magic ARROW1 at the end of the file but found \(Array(buffer.slice(n - magic, magic).bytes))", offset: n - magic)
        }
        let footerLength = Int(buffer.load(Int32.self, at: n - magic - 4))
        let footerEnd = n - magic - 4
        guard footerLength > 0, footerLength <= footerEnd - 8 else {
            throw ArrowError.invalid("expected a footer length in 1...\(footerEnd - 8) but found \(footerLength)", offset: footerEnd)
        }
        let footerStart = footerEnd - footerLength
        dataEnd = footerStart
        let footer = try FlatBuffer.verify(buffer.slice(footerStart, footerLength), schema: ArrowFB.schema,
                                           root: ArrowFB.footer, limits: options.flatBufferLimits, baseOffset: footerStart)
        let rawVersion = footer.scalar(0, default: Int16(0))
        guard let version = MetadataVersion(rawValue: rawVersion), version >= .v4 else {
            throw ArrowError(.unsupported, "expected footer metadata version V4 or V5 but found value \(rawVersion)", offset: footerStart)
        }
        self.version = version
        guard let schemaTable = footer.table(1) else {
            throw ArrowError.invalid("expected a schema in the footer but found none", offset: footerStart)
        }
        let (schema, map) = try IPCDecoder.decodeSchema(schemaTable)
        self.schema = schema
        footerMetadata = SchemaDecoder.keyValues(footer.vector(4))
        func blocks(_ slot: Int) throws -> [IPCFileBlock] {
            guard let v = footer.vector(slot) else { return [] }
            return try (0..<v.count).map { i in
                let offset = v.structField(i, elementSize: 24, fieldOffset: 0, as: Int64.self)
                let meta = v.structField(i, elementSize: 24, fieldOffset: 8, as: Int32.self)
                let body = v.structField(i, elementSize: 24, fieldOffset: 16, as: Int64.self)
                guard offset >= 0, meta > 0, body >= 0, offset < Int64(footerStart), Int64(meta) <= Int64(footerStart) - offset,
                      body <= Int64(footerStart) - offset - Int64(meta) else {
                    throw ArrowError.invalid("expected block \(i) inside the \(footerStart) bytes before the footer but found offset \(offset) metadata \(meta) body \(body)", offset: footerStart)
                }
                return IPCFileBlock(offset: Int(offset), metadataLength: Int(meta), bodyLength: Int(body))
            }
        }
        dictionaryBlocks = try blocks(2)
        recordBatchBlocks = try blocks(3)
        decoder = IPCDecoder(options: options)
        decoder.setSchema(schema, nodes: map.fields, entries: map.entries, order: map.order)
        decoder.refusesReplacement = true
        for block in dictionaryBlocks {
            let m = try message(at: block)
            guard m.kind == .dictionaryBatch else {
                throw ArrowError.invalid("expected a dictionary batch at a dictionary block but found \(m.kind)", offset: block.offset)
            }
            _ = try decoder.decode(m)
        }
    }

    /// Opens a file by path (memory-mapped).
    public convenience init(path: String, options: IPCReadOptions = IPCReadOptions()) throws {
        try self.init(mapping: try InputFile(path: path), options: options)
    }

    /// A reader over the whole of a file, memory-mapped when possible; the pages `next()` has
    /// read past are handed back to the kernel (`MappedPages`).
    convenience init(mapping file: InputFile, options: IPCReadOptions) throws {
        let bytes = try file.readAll()
        try self.init(buffer: bytes, options: options)
        pages = file.mapping
        mapped = file.mappedInput(size: bytes.count)
    }

    /// The mapped file, checked after the last batch and where a batch fails to decode.
    private var mapped: MappedInput?

    /// Number of record batches.
    public var recordBatchCount: Int { recordBatchBlocks.count }

    private func message(at block: IPCFileBlock) throws -> IPCMessage {
        var framing = StreamDecoder(options: decoder.options, startOffset: block.offset)
        // The message's own lengths rule; the footer bounds them.
        framing.feed(buffer.slice(block.offset, dataEnd - block.offset))
        framing.finish()
        guard case .message(let m) = try framing.next() else {
            throw ArrowError.invalid("expected a message at the block but found the end-of-stream marker", offset: block.offset)
        }
        return m
    }

    /// Record batch `index` (random access).
    public func recordBatch(at index: Int) throws -> RecordBatch {
        if let mapped { return try mapped.reading { try decodeBatch(at: index) } }
        return try decodeBatch(at: index)
    }

    private func decodeBatch(at index: Int) throws -> RecordBatch {
        guard index >= 0, index < recordBatchBlocks.count else {
            throw ArrowError(.invalidArgument, "expected a record batch index in 0..<\(recordBatchBlocks.count) but found \(index)")
        }
        let block = recordBatchBlocks[index]
        let m = try message(at: block)
        guard m.kind == .recordBatch else {
            throw ArrowError.invalid("expected a record batch at block \(index) but found \(m.kind)", offset: block.offset)
        }
        guard case .recordBatch(let batch) = try decoder.decode(m) else {
            throw ArrowError.invalid("expected a record batch at block \(index) but found none", offset: block.offset)
        }
        return batch
    }

    /// The next batch in file order, or nil after the last.
    public func next() throws -> RecordBatch? {
        guard cursor < recordBatchBlocks.count else {
            try mapped?.ensureUnchanged()
            return nil
        }
        cursor += 1
        let batch = try recordBatch(at: cursor - 1)
        pages?.consumed(upTo: Int(recordBatchBlocks[cursor - 1].offset))
        return batch
    }

    /// The file mapping `next()` walks, whose pages it hands back behind itself.
    private var pages: MappedPages?

    /// All batches.
    public func readAll() throws -> [RecordBatch] {
        let all = try (0..<recordBatchCount).map { try recordBatch(at: $0) }
        try mapped?.ensureUnchanged()
        return all
    }
}
