#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns IPC messages into a schema, dictionaries and record batches: the stateful half of
/// reading that `IPCStreamReader`, `IPCFileReader` and the ZeroMQ bridge share. It does no
/// I/O; feed it the messages of one stream in order.
///
/// Every record batch (and dictionary) it returns has been checked with
/// `ArrayData.validate()` unless `options.validate` is off.
public struct IPCDecoder: Sendable {
    /// What a message amounted to.
    public enum Output: Sendable {
        /// The stream's schema.
        case schema(Schema)
        /// A dictionary was set (or extended, for a delta).
        case dictionary(id: Int64, isDelta: Bool)
        /// A record batch.
        case recordBatch(RecordBatch)
        /// A message kind Isthmus does not use (tensors), skipped.
        case skipped
    }

    /// Read options (codecs, limits, validation).
    public var options: IPCReadOptions
    /// The schema, once the schema message was decoded.
    public private(set) var schema: Schema?
    /// Custom metadata of the last record batch message.
    public private(set) var lastMessageMetadata: [KeyValue] = []
    var map = DictionaryMap.empty
    var dictionaries: [Int64: ArrayData] = [:]
    /// Whether dictionary replacements are refused (the file format allows only one
    /// dictionary per id, plus deltas).
    var refusesReplacement = false

    /// A decoder that has seen nothing yet.
    public init(options: IPCReadOptions = IPCReadOptions()) {
        self.options = options
    }

    /// A decoder for a stream whose schema is already known (from a file footer, or a
    /// separate schema message); messages then start with dictionaries or batches.
    public init(schema: Schema, options: IPCReadOptions = IPCReadOptions()) throws {
        self.options = options
        guard schema.fields.allSatisfy({ $0.type.isIPCEncodable }) else {
            throw ArrowError(.unsupported, "expected a schema IPC can express but found a dictionary of dictionary-encoded values")
        }
        self.schema = schema
        self.map = DictionaryMap.assign(schema)
    }

    /// Current dictionary for `id`, if one was received.
    public func dictionary(id: Int64) -> ArrayData? { dictionaries[id] }

    mutating func setSchema(_ schema: Schema, nodes: [DictionaryNode], entries: [Int64: (type: DataType, node: DictionaryNode, field: String)], order: [Int64]) {
        self.schema = schema
        self.map = DictionaryMap(fields: nodes, entries: entries, order: order)
    }

    /// Decodes a Schema table.
    static func decodeSchema(_ table: FBTable) throws -> (Schema, DictionaryMap) {
        var decoder = SchemaDecoder()
        let (schema, nodes) = try decoder.schema(table)
        return (schema, DictionaryMap(fields: nodes, entries: decoder.entries, order: decoder.order))
    }

    /// Applies one message.
    public mutating func decode(_ message: IPCMessage) throws -> Output {
        do {
            return try decodeUnlocated(message)
        } catch var error as ArrowError {
            if error.offset == nil { error.offset = message.offset }
            throw error
        }
    }

    private mutating func decodeUnlocated(_ message: IPCMessage) throws -> Output {
        switch message.kind {
        case .schema:
            guard schema == nil else {
                throw ArrowError.invalid("expected a dictionary or record batch but found a second schema message")
            }
            guard let header = message.header else { throw ArrowError.invalid("expected a schema header but found none") }
            let (s, m) = try Self.decodeSchema(header)
            schema = s
            map = m
            return .schema(s)
        case .dictionaryBatch:
            guard schema != nil else {
                throw ArrowError.invalid("expected a schema message first but found a dictionary batch")
            }
            guard let header = message.header else { throw ArrowError.invalid("expected a dictionary batch header but found none") }
            return try decodeDictionary(header, message)
        case .recordBatch:
            guard let schema else {
                throw ArrowError.invalid("expected a schema message first but found a record batch")
            }
            guard let header = message.header else { throw ArrowError.invalid("expected a record batch header but found none") }
            var loader = try ArrayLoader(header, message, options: options, dictionaries: dictionaries)
            let length = try loader.batchLength()
            var columns: [ArrayData] = []
            columns.reserveCapacity(schema.fields.count)
            for (i, field) in schema.fields.enumerated() {
                let column = try loader.load(field.type, map.fields[i], name: field.name, depth: 0)
                guard column.length == length else {
                    throw ArrowError.invalid("column '\(field.name)': expected \(length) rows (the batch length) but found \(column.length)")
                }
                if options.validate { try column.validate(name: field.name, dictionariesValidated: true) }
                columns.append(column)
            }
            lastMessageMetadata = message.customMetadata
            return .recordBatch(try RecordBatch(schema: schema, columns: columns, length: length))
        case .other:
            return .skipped
        }
    }

    private mutating func decodeDictionary(_ header: FBTable, _ message: IPCMessage) throws -> Output {
        let id = header.scalar(0, default: Int64(0))
        guard let entry = map.entries[id] else {
            let known = map.entries.keys.sorted().map(String.init).joined(separator: ", ")
            throw ArrowError.invalid("expected a dictionary id the schema declares (\(known.isEmpty ? "none" : known)) but found \(id)")
        }
        guard let data = header.table(1) else {
            throw ArrowError.invalid("expected data in dictionary batch \(id) but found none")
        }
        let isDelta = header.bool(2)
        var loader = try ArrayLoader(data, message, options: options, dictionaries: dictionaries)
        let length = try loader.batchLength()
        let name = "dictionary \(id) of '\(entry.field)'"
        let values = try loader.load(entry.type, entry.node, name: name, depth: 0)
        guard values.length == length else {
            throw ArrowError.invalid("\(name): expected \(length) values (the batch length) but found \(values.length)")
        }
        if options.validate { try values.validate(name: name, dictionariesValidated: true) }
        if isDelta {
            guard let existing = dictionaries[id] else {
                throw ArrowError.invalid("\(name): expected a dictionary before a delta but found none")
            }
            dictionaries[id] = try ArrayConcatenation.concatenate([existing, values])
        } else {
            if refusesReplacement, dictionaries[id] != nil {
                throw ArrowError.invalid("\(name): expected one dictionary per id in an IPC file (plus deltas) but found a replacement")
            }
            dictionaries[id] = values
        }
        return .dictionary(id: id, isDelta: isDelta)
    }
}

/// Rebuilds arrays from a RecordBatch header and a body, following the schema's types in
/// pre-order (one field node per array, buffers per the layout of each type).
struct ArrayLoader {
    let body: Buffer
    let bodyOffset: Int
    let nodes: FBVector?
    let buffers: FBVector?
    let codec: (any BodyCodec)?
    let version: MetadataVersion
    let dictionaries: [Int64: ArrayData]
    let header: FBTable
    var nodeIndex = 0
    var bufferIndex = 0
    var budget: Int

    static let maxDepth = 64

    init(_ header: FBTable, _ message: IPCMessage, options: IPCReadOptions, dictionaries: [Int64: ArrayData]) throws {
        self.header = header
        self.body = message.body
        self.bodyOffset = message.bodyOffset
        self.nodes = header.vector(1)
        self.buffers = header.vector(2)
        self.version = message.version
        self.dictionaries = dictionaries
        self.budget = options.maxDecompressedBytes
        if let compression = header.table(3) {
            let method = compression.scalar(1, default: Int8(0))
            guard method == 0 else {
                throw ArrowError(.unsupported, "expected body compression method BUFFER (0) but found \(method)")
            }
            codec = try options.codec(CompressionType(rawValue: compression.scalar(0, default: Int8(0))))
        } else {
            codec = nil
        }
    }

    func batchLength() throws -> Int {
        let n = header.scalar(0, default: Int64(0))
        guard n >= 0, n <= Int64(Int32.max) * 64 else {
            throw ArrowError.invalid("expected a batch length >= 0 but found \(n)")
        }
        return Int(n)
    }

    mutating func node(_ name: String) throws -> (length: Int, nullCount: Int) {
        guard let nodes, nodeIndex < nodes.count else {
            throw ArrowError.invalid("'\(name)': expected a field node for it but found only \(nodes?.count ?? 0) nodes")
        }
        let length = nodes.structField(nodeIndex, elementSize: 16, fieldOffset: 0, as: Int64.self)
        let nulls = nodes.structField(nodeIndex, elementSize: 16, fieldOffset: 8, as: Int64.self)
        nodeIndex += 1
        guard length >= 0, length <= Int64(Int.max / 64) else {
            throw ArrowError.invalid("'\(name)': expected a length >= 0 but found \(length)")
        }
        guard nulls >= 0, nulls <= length else {
            throw ArrowError.invalid("'\(name)': expected a null count in 0...\(length) but found \(nulls)")
        }
        return (Int(length), Int(nulls))
    }

    mutating func buffer(_ name: String) throws -> Buffer {
        guard let buffers, bufferIndex < buffers.count else {
            throw ArrowError.invalid("'\(name)': expected a buffer for it but found only \(buffers?.count ?? 0) buffers")
        }
        let offset = buffers.structField(bufferIndex, elementSize: 16, fieldOffset: 0, as: Int64.self)
        let length = buffers.structField(bufferIndex, elementSize: 16, fieldOffset: 8, as: Int64.self)
        let index = bufferIndex
        bufferIndex += 1
        guard offset >= 0, length >= 0, offset <= Int64(body.count), length <= Int64(body.count) - offset else {
            throw ArrowError.invalid("'\(name)': expected buffer \(index) inside the \(body.count)-byte body but found offset \(offset) length \(length)", offset: bodyOffset)
        }
        let raw = body.slice(Int(offset), Int(length))
        if let codec, raw.count > 0 {
            return try decompress(raw, codec, name: name, at: bodyOffset + Int(offset))
        }
        return Self.aligned(raw)
    }

    /// Buffers whose address is not a multiple of 8 are copied (legacy writers did not pad).
    static func aligned(_ b: Buffer) -> Buffer {
        if b.count == 0 || Int(bitPattern: b.bytes.baseAddress!) & 7 == 0 { return b }
        return Buffer(copying: b.bytes)
    }

    mutating func decompress(_ raw: Buffer, _ codec: any BodyCodec, name: String, at offset: Int) throws -> Buffer {
        guard raw.count >= 8 else {
            throw ArrowError.invalid("'\(name)': expected a compressed buffer of at least 8 bytes (the uncompressed length) but found \(raw.count)", offset: offset)
        }
        let declared = raw.load(Int64.self, at: 0)
        let payload = raw.slice(8, raw.count - 8)
        if declared == -1 { return Self.aligned(payload) }
        guard declared >= 0, declared <= Int64(budget) else {
            throw ArrowError.invalid("'\(name)': expected an uncompressed length in 0...\(budget) (the remaining decompression budget) but found \(declared)", offset: offset)
        }
        let n = Int(declared)
        budget -= n
        if n == 0 { return Buffer.empty }
        // Uninitialized (lazily mapped) memory: only the bytes the codec writes get touched.
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, n) == 0, let pointer = raw else {
            throw ArrowError.invalid("'\(name)': cannot allocate \(n) bytes for a decompressed buffer", offset: offset)
        }
        let storage = BufferStorage(base: UnsafeRawPointer(pointer), count: n) { base, _ in
            free(UnsafeMutableRawPointer(mutating: base))
        }
        let written: Int
        do {
            written = try codec.decompress(payload.bytes, into: UnsafeMutableRawBufferPointer(start: pointer, count: n))
        } catch let e as ArrowError {
            throw ArrowError(e.code, "'\(name)': \(e.message)", offset: offset)
        } catch {
            throw ArrowError.invalid("'\(name)': \(codec.type) decompression failed: \(error)", offset: offset)
        }
        guard written == n else {
            throw ArrowError.invalid("'\(name)': expected \(n) bytes after \(codec.type) decompression but found \(written)", offset: offset)
        }
        return Buffer(storage: storage, offset: 0, count: n)
    }

    mutating func load(_ type: DataType, _ dictNode: DictionaryNode, name: String, depth: Int) throws -> ArrayData {
        guard depth <= Self.maxDepth else {
            throw ArrowError.invalid("'\(name)': expected nesting at most \(Self.maxDepth) deep but found deeper")
        }
        let (length, nulls) = try node(name)
        func validity() throws -> Buffer? {
            let b = try buffer(name)
            return nulls == 0 || b.count == 0 ? nil : b
        }
        let childNodes: [DictionaryNode]
        if case .plain(let c) = dictNode { childNodes = c } else { childNodes = [] }
        func children(_ fields: [Field]) throws -> [ArrayData] {
            try fields.enumerated().map { i, f in
                try load(f.type, i < childNodes.count ? childNodes[i] : .plain([]), name: name + "." + f.name, depth: depth + 1)
            }
        }
        switch type {
        case .null:
            return ArrayData(type: type, length: length, nullCount: length, buffers: [])
        case .union(let mode, let fields, _):
            if version < .v5 { _ = try buffer(name) }   // V4 unions had a validity bitmap
            let typeIds = try buffer(name)
            let offsets: Buffer? = mode == .dense ? try buffer(name) : nil
            let kids = try children(fields)
            return ArrayData(type: type, length: length, nullCount: 0,
                             buffers: mode == .dense ? [typeIds, offsets] : [typeIds], children: kids)
        case .dictionary:
            guard case .dictionary(let id, _) = dictNode else {
                throw ArrowError.invalid("'\(name)': expected a dictionary id for a dictionary type but found none")
            }
            let v = try validity()
            let indices = try buffer(name)
            guard let dictionary = dictionaries[id] else {
                throw ArrowError.invalid("'\(name)': expected dictionary \(id) to arrive before the batch that uses it but found none")
            }
            return ArrayData(type: type, length: length, nullCount: nulls, buffers: [v, indices], dictionary: dictionary)
        case .struct(let fields):
            let v = try validity()
            return ArrayData(type: type, length: length, nullCount: nulls, buffers: [v], children: try children(fields))
        case .fixedSizeList(let f, _):
            let v = try validity()
            return ArrayData(type: type, length: length, nullCount: nulls, buffers: [v], children: try children([f]))
        case .list(let f), .largeList(let f), .map(let f, _):
            let v = try validity()
            let offsets = try buffer(name)
            return ArrayData(type: type, length: length, nullCount: nulls, buffers: [v, offsets], children: try children([f]))
        case .utf8, .largeUtf8, .binary, .largeBinary:
            let v = try validity()
            let offsets = try buffer(name)
            let data = try buffer(name)
            return ArrayData(type: type, length: length, nullCount: nulls, buffers: [v, offsets, data])
        default:
            let v = try validity()
            let values = try buffer(name)
            return ArrayData(type: type, length: length, nullCount: nulls, buffers: [v, values])
        }
    }
}
