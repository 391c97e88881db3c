#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One encoded IPC message, not gathered: `metadata` followed by the `body` pieces, in
/// order, is byte for byte the encapsulated message. The body pieces are views of the
/// arrays' own buffers (plus small zero-padding pieces), so they can be handed to
/// `zmq_msg_init_data` or `writev` without copying column bytes.
public struct EncodedMessage: Sendable {
    /// What the message carries.
    public enum Kind: Sendable, Hashable {
        /// A schema message (no body).
        case schema
        /// A dictionary batch: a full dictionary (replacing any earlier one) or a delta.
        case dictionary(id: Int64, isDelta: Bool)
        /// A record batch.
        case recordBatch
    }

    /// What the message carries.
    public let kind: Kind
    /// Continuation marker, int32 length, Message flatbuffer, zero padding to 8 bytes.
    public let metadata: Buffer
    /// The body pieces in order (empty for a schema message).
    public let body: [Buffer]
    /// Total bytes of `body` (a multiple of 8).
    public let bodyLength: Int

    /// Bytes of the whole message.
    public var byteCount: Int { metadata.count + bodyLength }

    /// The message as one contiguous buffer (copies; for tests and small messages).
    public func joined() -> Buffer {
        let out = BufferBuilder(capacity: byteCount)
        out.append(metadata.bytes)
        for piece in body { out.append(piece.bytes) }
        return out.finish()
    }

    /// Writes the message to `sink`.
    public func write(to sink: ByteSink) throws {
        try sink.write(metadata)
        for piece in body { try sink.write(piece) }
    }
}

/// Encodes schemas and record batches as encapsulated IPC messages (metadata V5,
/// continuation marker, 8-byte alignment, little-endian) without gathering bodies.
///
/// An encoder instance tracks the dictionaries it sent, so that a stream sends each
/// dictionary before the first batch that needs it, and a changed dictionary as a delta
/// (when it extends the previous one) or a replacement. The static functions encode one
/// self-contained batch (all its dictionaries in full), as the ZeroMQ bridge sends them.
/// `IPCStreamWriter` and `IPCFileWriter` write what this encoder produces.
public struct IPCEncoder: Sendable {
    /// The schema every batch must have.
    public let schema: Schema
    /// Write options (compression, deltas).
    public var options: IPCWriteOptions
    let map: DictionaryMap
    private var sent: [Int64: ArrayData] = [:]
    /// Whether replacements are refused (IPC files allow one dictionary per id plus deltas).
    var refusesReplacement = false

    /// An encoder for batches of `schema`. Throws when the schema has a dictionary whose
    /// values are themselves directly dictionary-encoded, which Schema.fbs cannot express.
    public init(schema: Schema, options: IPCWriteOptions = IPCWriteOptions()) throws {
        for f in schema.fields where !f.type.isIPCEncodable {
            throw ArrowError(.unsupported, "field '\(f.name)': expected a type Arrow IPC can express but found \(f.type) (a dictionary whose values are directly dictionary-encoded)")
        }
        self.schema = schema
        self.options = options
        self.map = DictionaryMap.assign(schema)
    }

    /// The dictionary id assigned to each dictionary-encoded field, in pre-order (as written
    /// in the schema message).
    public var dictionaryIDs: [Int64] { map.order.sorted() }

    // MARK: Static, self-contained encoding

    /// The 8-byte end-of-stream marker: continuation marker and a zero length.
    public static let endOfStream: Buffer = Buffer([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])

    /// The encapsulated schema message for `schema` (continuation, int32 length,
    /// flatbuffer, padding to 8). A dictionary whose values are directly
    /// dictionary-encoded cannot be expressed; such a field is written with the
    /// outer dictionary only (and `IPCEncoder.init` rejects the schema).
    public static func schemaMessage(_ schema: Schema) -> Buffer {
        let map = DictionaryMap.assign(schema)
        return SchemaEncoding.encapsulate(SchemaEncoding.message(.schema, SchemaEncoding.schemaTable(schema, map), bodyLength: 0))
    }

    /// The messages for one self-contained batch: a dictionary message for each dictionary
    /// the batch uses (inner dictionaries first), then the record batch message.
    public static func recordBatch(_ batch: RecordBatch, options: IPCWriteOptions = IPCWriteOptions()) throws -> [EncodedMessage] {
        var encoder = try IPCEncoder(schema: batch.schema, options: options)
        return try encoder.encode(batch)
    }

    /// Decodes an encapsulated schema message (as made by `schemaMessage`).
    public static func decodeSchemaMessage(_ buffer: Buffer, options: IPCReadOptions = IPCReadOptions()) throws -> Schema {
        var decoder = StreamDecoder(options: options)
        decoder.feed(buffer)
        decoder.finish()
        switch try decoder.next() {
        case .message(let m) where m.kind == .schema:
            var d = IPCDecoder(options: options)
            guard case .schema(let s) = try d.decode(m) else {
                throw ArrowError.invalid("expected a schema message but found none", offset: m.offset)
            }
            return s
        case .message(let m):
            throw ArrowError.invalid("expected a schema message but found \(m.kind)", offset: m.offset)
        default:
            throw ArrowError.invalid("expected a schema message but found the end of the stream")
        }
    }

    // MARK: Stateful encoding

    /// The encapsulated schema message.
    public func schemaMessage() -> Buffer {
        SchemaEncoding.encapsulate(SchemaEncoding.message(.schema, SchemaEncoding.schemaTable(schema, map), bodyLength: 0))
    }

    /// The messages for `batch`: dictionaries it needs that were not sent yet (or changed:
    /// a delta when the new dictionary extends the sent one and deltas are on, else a
    /// replacement), then the record batch.
    public mutating func encode(_ batch: RecordBatch) throws -> [EncodedMessage] {
        guard batch.schema.fields == schema.fields else {
            throw ArrowError(.invalidArgument, "expected batches with the writer's schema (\(schema.fields.map { "\($0.name): \($0.type)" }.joined(separator: ", "))) but found (\(batch.schema.fields.map { "\($0.name): \($0.type)" }.joined(separator: ", ")))")
        }
        var messages: [EncodedMessage] = []
        if !map.order.isEmpty {
            var found: [Int64: ArrayData] = [:]
            for (column, node) in zip(batch.columns, map.fields) { Self.collect(column, node, into: &found) }
            for id in map.order {
                guard let entry = map.entries[id] else { continue }
                guard let dictionary = found[id] else {
                    if sent[id] != nil { continue }
                    throw ArrowError(.invalidArgument, "field '\(entry.field)': expected a dictionary-encoded array with its dictionary but found none")
                }
                var delta: ArrayData?
                if let previous = sent[id] {
                    if ArrayConcatenation.sameBuffers(previous, dictionary) { continue }
                    if ArrayConcatenation.isPrefix(previous, of: dictionary) {
                        if previous.length == dictionary.length { sent[id] = dictionary; continue }
                        if options.emitDictionaryDeltas {
                            delta = dictionary.slice(previous.length, dictionary.length - previous.length)
                        }
                    }
                    if delta == nil && refusesReplacement {
                        throw ArrowError(.invalidArgument, "dictionary of '\(entry.field)': expected a dictionary equal to (or extending) the one written before, as an IPC file allows no replacement, but found a different one")
                    }
                }
                messages.append(try dictionaryMessage(id: id, values: delta ?? dictionary, node: entry.node, isDelta: delta != nil))
                sent[id] = dictionary
            }
        }
        var body = BodyBuilder(codec: options.compression)
        for (column, node) in zip(batch.columns, map.fields) { try body.append(column, node) }
        let header = body.recordBatchTable(length: batch.length)
        let fb = SchemaEncoding.message(.recordBatch, header, bodyLength: body.offset, metadata: options.messageMetadata)
        messages.append(EncodedMessage(kind: .recordBatch, metadata: SchemaEncoding.encapsulate(fb), body: body.pieces, bodyLength: body.offset))
        return messages
    }

    private func dictionaryMessage(id: Int64, values: ArrayData, node: DictionaryNode, isDelta: Bool) throws -> EncodedMessage {
        var body = BodyBuilder(codec: options.compression)
        try body.append(values, node)
        var header = FBTableValue()
        header.set(0, .int64(id))
        header.set(1, .table(body.recordBatchTable(length: values.length)))
        header.set(2, .bool(isDelta))
        let fb = SchemaEncoding.message(.dictionaryBatch, header, bodyLength: body.offset)
        return EncodedMessage(kind: .dictionary(id: id, isDelta: isDelta), metadata: SchemaEncoding.encapsulate(fb), body: body.pieces, bodyLength: body.offset)
    }

    /// The dictionaries in `array` by id (nested ones found through their outer dictionary).
    static func collect(_ array: ArrayData, _ node: DictionaryNode, into found: inout [Int64: ArrayData]) {
        switch node {
        case .dictionary(let id, let valueNode):
            guard let d = array.dictionary else { return }
            if found[id] == nil { found[id] = d }
            if valueNode.containsDictionary { collect(d, valueNode, into: &found) }
        case .plain(let children):
            for (k, child) in array.children.enumerated() where k < children.count && children[k].containsDictionary {
                collect(child, children[k], into: &found)
            }
        }
    }
}

/// Lays out the buffers of arrays as an IPC body: field nodes, buffer descriptors and
/// the pieces (views of the arrays' buffers, sliced and rebased where the arrays are
/// slices, and zero padding to 8 bytes).
struct BodyBuilder {
    let codec: (any BodyCodec)?
    var nodes: [Int64] = []
    var buffers: [Int64] = []
    var pieces: [Buffer] = []
    var offset = 0

    /// Zero bytes that padding pieces and empty offsets are sliced from.
    static let zeros = Buffer.zeroed(64)
    /// The int64 -1 that marks a buffer stored uncompressed in a compressed body.
    static let uncompressedMarker = Buffer([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])

    init(codec: (any BodyCodec)?) { self.codec = codec }

    func recordBatchTable(length: Int) -> FBTableValue {
        var t = FBTableValue()
        t.set(0, .int64(Int64(length)))
        t.set(1, .int64Structs(nodes, fieldsPerElement: 2))
        t.set(2, .int64Structs(buffers, fieldsPerElement: 2))
        if let codec {
            var c = FBTableValue()
            c.set(0, .int8(codec.type.rawValue))
            c.set(1, .int8(0))
            t.set(3, .table(c))
        }
        return t
    }

    private mutating func place(_ piece: Buffer) {
        pieces.append(piece)
        offset += piece.count
    }

    private mutating func pad() {
        let rem = offset & 7
        if rem != 0 { place(Self.zeros.slice(0, 8 - rem)) }
    }

    mutating func add(_ buffer: Buffer?) throws {
        let b = buffer ?? Buffer.empty
        let start = offset
        if b.count == 0 {
            buffers += [Int64(start), 0]
            return
        }
        if let codec {
            let bound = codec.maxCompressedLength(b.count)
            var raw: UnsafeMutableRawPointer?
            guard posix_memalign(&raw, 64, 8 + bound) == 0, let p = raw else {
                throw ArrowError(.io, "cannot allocate \(8 + bound) bytes for compression")
            }
            let storage = BufferStorage(base: UnsafeRawPointer(p), count: 8 + bound) { base, _ in
                free(UnsafeMutableRawPointer(mutating: base))
            }
            let n = try codec.compress(b.bytes, into: UnsafeMutableRawBufferPointer(start: p + 8, count: bound))
            if n < b.count {
                p.storeBytes(of: Int64(b.count).littleEndian, as: Int64.self)
                place(Buffer(storage: storage, offset: 0, count: 8 + n))
            } else {
                // Not worth it: length -1 and the raw bytes (a view, not a copy).
                place(Self.uncompressedMarker)
                place(b)
            }
        } else {
            place(b)
        }
        buffers += [Int64(start), Int64(offset - start)]
        pad()
    }

    private func validity(_ a: ArrayData) -> Buffer? {
        guard a.nullCount > 0, let v = a.buffers[0] else { return nil }
        return Bitmap.copy(v, offset: a.offset, length: a.length)
    }

    /// Offsets of `a` starting at 0, and the range of data/child values they cover.
    private func offsets(_ a: ArrayData) -> (Buffer, Range<Int>) {
        let width = a.type.hasLargeOffsets ? 8 : 4
        guard a.length > 0, let buffer = a.buffers[1] else {
            return (Self.zeros.slice(0, width), 0..<0)
        }
        let first = a.valueRange(0).lowerBound
        let last = a.valueRange(a.length - 1).upperBound
        if first == 0 {
            return (buffer.slice(a.offset * width, (a.length + 1) * width), 0..<last)
        }
        let out = BufferBuilder(capacity: (a.length + 1) * width)
        for i in 0...a.length {
            let o = width == 8 ? Int(buffer.load(Int64.self, at: (a.offset + i) * 8)) : Int(buffer.load(Int32.self, at: (a.offset + i) * 4))
            if width == 8 { out.append(Int64(o - first)) } else { out.append(Int32(o - first)) }
        }
        return (out.finish(), first..<last)
    }

    private func fixed(_ buffer: Buffer?, _ a: ArrayData, width: Int) -> Buffer? {
        guard let buffer, a.length > 0 else { return nil }
        return buffer.slice(a.offset * width, a.length * width)
    }

    mutating func append(_ a: ArrayData, _ node: DictionaryNode) throws {
        let nullCount: Int
        switch a.type {
        case .null: nullCount = a.length
        case .union: nullCount = 0
        default: nullCount = a.nullCount
        }
        nodes += [Int64(a.length), Int64(nullCount)]
        let childNodes: [DictionaryNode]
        if case .plain(let c) = node { childNodes = c } else { childNodes = [] }
        func childNode(_ k: Int) -> DictionaryNode { k < childNodes.count ? childNodes[k] : .plain([]) }

        switch a.type {
        case .null:
            break
        case .bool:
            try add(validity(a))
            try add(a.length > 0 ? a.buffers[1].map { Bitmap.copy($0, offset: a.offset, length: a.length) } : nil)
        case .utf8, .largeUtf8, .binary, .largeBinary:
            try add(validity(a))
            let (o, range) = offsets(a)
            try add(o)
            try add(range.isEmpty ? nil : a.buffers[2]?.slice(range.lowerBound, range.count))
        case .list, .largeList, .map:
            try add(validity(a))
            let (o, range) = offsets(a)
            try add(o)
            try append(a.children[0].slice(range.lowerBound, range.count), childNode(0))
        case .fixedSizeList(_, let size):
            try add(validity(a))
            try append(a.children[0].slice(a.offset * size, a.length * size), childNode(0))
        case .struct:
            try add(validity(a))
            for (k, child) in a.children.enumerated() { try append(child.slice(a.offset, a.length), childNode(k)) }
        case .union(let mode, let fields, let typeIds):
            try add(fixed(a.buffers[0], a, width: 1))
            if mode == .sparse {
                for (k, child) in a.children.enumerated() { try append(child.slice(a.offset, a.length), childNode(k)) }
                return
            }
            // Dense: each child is cut to the range its slots use, offsets rebased if needed.
            var low = [Int](repeating: Int.max, count: fields.count)
            var high = [Int](repeating: -1, count: fields.count)
            var kinds = [Int](repeating: 0, count: a.length)
            var childIndex = [Int](repeating: 0, count: 256)
            for (k, id) in typeIds.enumerated() { childIndex[Int(UInt8(bitPattern: id))] = k }
            for i in 0..<a.length {
                let id = a.buffers[0]!.bytes.load(fromByteOffset: a.offset + i, as: Int8.self)
                let k = childIndex[Int(UInt8(bitPattern: id))]
                let o = Int(a.buffers[1]!.load(Int32.self, at: (a.offset + i) * 4))
                kinds[i] = k
                low[k] = Swift.min(low[k], o)
                high[k] = Swift.max(high[k], o)
            }
            let rebase = low.contains { $0 != Int.max && $0 != 0 }
            if !rebase {
                try add(fixed(a.buffers[1], a, width: 4))
            } else {
                let out = BufferBuilder(capacity: a.length * 4)
                for i in 0..<a.length {
                    let o = Int(a.buffers[1]!.load(Int32.self, at: (a.offset + i) * 4))
                    out.append(Int32(o - low[kinds[i]]))
                }
                try add(out.finish())
            }
            for (k, child) in a.children.enumerated() {
                let part = high[k] < 0 ? child.slice(0, 0) : child.slice(low[k], high[k] - low[k] + 1)
                try append(part, childNode(k))
            }
        case .dictionary(let index, _, _):
            try add(validity(a))
            try add(fixed(a.buffers[1], a, width: index.byteWidth ?? 4))
        default:
            try add(validity(a))
            try add(fixed(a.buffers[1], a, width: a.type.byteWidth ?? 0))
        }
    }
}
