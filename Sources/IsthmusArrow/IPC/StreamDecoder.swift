/// One encapsulated IPC message: verified metadata plus its body.
public struct IPCMessage: Sendable {
    /// What the message carries.
    public enum Kind: Sendable, Hashable {
        /// The schema (first message of a stream).
        case schema
        /// A dictionary batch.
        case dictionaryBatch
        /// A record batch.
        case recordBatch
        /// Tensor and sparse tensor messages, which Isthmus skips.
        case other(UInt8)
    }

    /// What the message carries.
    public let kind: Kind
    /// Metadata version the writer used.
    public let version: MetadataVersion
    /// The verified Message flatbuffer.
    let root: FBTable
    /// The body (its buffers are slices of this).
    public let body: Buffer
    /// Byte offset of the message (its length prefix) in the stream.
    public let offset: Int
    /// Byte offset of the body in the stream.
    public let bodyOffset: Int

    /// Custom metadata of the message.
    public var customMetadata: [KeyValue] { SchemaDecoder.keyValues(root.vector(4)) }

    /// The header table (Schema, DictionaryBatch or RecordBatch).
    var header: FBTable? { root.table(2) }

    /// Decodes a Message flatbuffer (already stripped of its prefix) and pairs it with `body`.
    static func decode(metadata: Buffer, offset: Int, metadataOffset: Int,
                       limits: FlatBuffer.Limits) throws -> (root: FBTable, kind: Kind, version: MetadataVersion, bodyLength: Int) {
        let root = try FlatBuffer.verify(metadata, schema: ArrowFB.schema, root: ArrowFB.message,
                                         limits: limits, baseOffset: metadataOffset)
        let rawVersion = root.scalar(0, default: Int16(0))
        guard let version = MetadataVersion(rawValue: rawVersion), version >= .v4 else {
            throw ArrowError(.unsupported, "expected metadata version V4 or V5 but found \(rawVersion < 0 || rawVersion > 4 ? "value \(rawVersion)" : "V\(rawVersion + 1)")", offset: offset)
        }
        let tag = root.scalar(1, default: UInt8(0))
        let kind: Kind
        switch ArrowFB.HeaderTag(rawValue: tag) {
        case .schema: kind = .schema
        case .dictionaryBatch: kind = .dictionaryBatch
        case .recordBatch: kind = .recordBatch
        case .tensor, .sparseTensor: kind = .other(tag)
        case nil: throw ArrowError.invalid("expected a message header (schema, dictionary or record batch) but found none", offset: offset)
        }
        let bodyLength = root.scalar(3, default: Int64(0))
        guard bodyLength >= 0, bodyLength <= Int64(Int.max / 2) else {
            throw ArrowError.invalid("expected a body length >= 0 but found \(bodyLength)", offset: offset)
        }
        return (root, kind, version, Int(bodyLength))
    }
}

/// The framing of an IPC stream as a pure state machine: feed it bytes, and it answers
/// `.needMore(n)` (at least `n` more bytes are needed to make progress), `.message(...)`
/// (one complete message, its body a zero-copy slice when the bytes arrived in one piece)
/// or `.endOfStream`. It does no I/O: a reader over a file, a pipe or a ZeroMQ socket feeds it.
///
/// Framing: the continuation marker `0xFFFFFFFF` then an int32 metadata length, or (before
/// Arrow 0.15) the int32 length alone; then the Message flatbuffer padded to 8 bytes; then
/// the body of `Message.bodyLength` bytes. End of stream is a zero length in either form,
/// or the plain end of input between messages.
public struct StreamDecoder: Sendable {
    /// What the decoder needs or produced.
    public enum Event: Sendable {
        /// At least this many more bytes are needed to make progress.
        case needMore(Int)
        /// A complete message.
        case message(IPCMessage)
        /// The end-of-stream marker, or the end of input between messages.
        case endOfStream
    }

    private enum State: Sendable {
        case prefix
        case metadata(length: Int, start: Int)
        case body(root: FBTable, kind: IPCMessage.Kind, version: MetadataVersion, length: Int, start: Int)
        case ended
    }

    private var pieces: [Buffer] = []
    private var head = 0             // index of the first unconsumed piece
    private var headOffset = 0       // bytes consumed of pieces[head]
    private var available = 0
    private var state = State.prefix
    private var inputEnded = false
    /// Bytes consumed so far: the stream offset of the next unread byte.
    public private(set) var position: Int
    /// Whether a legacy (pre-0.15, no continuation marker) prefix was seen.
    public private(set) var sawLegacyFraming = false
    /// Read limits (metadata size, flatbuffer verifier bounds).
    public var options: IPCReadOptions

    /// A decoder; `startOffset` is added to the offsets reported in errors.
    public init(options: IPCReadOptions = IPCReadOptions(), startOffset: Int = 0) {
        self.options = options
        self.position = startOffset
    }

    /// Appends input. The buffer is kept (not copied) until consumed.
    public mutating func feed(_ buffer: Buffer) {
        guard buffer.count > 0 else { return }
        pieces.append(buffer)
        available += buffer.count
    }

    /// Declares that no more input will come: then a partial message is an error and the
    /// end of input between messages is the end of the stream.
    public mutating func finish() { inputEnded = true }

    /// Bytes fed but not yet consumed.
    public var bufferedByteCount: Int { available }

    /// The number of bytes the current step still misses (0 when it can proceed).
    public var missingByteCount: Int {
        switch state {
        case .prefix: return Swift.max(0, 4 - available)
        case .metadata(let n, _): return Swift.max(0, n - available)
        case .body(_, _, _, let n, _): return Swift.max(0, n - available)
        case .ended: return 0
        }
    }

    private func peek<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        // Small reads may straddle pieces.
        var value: T = 0
        var shift = 0
        var piece = head
        var inPiece = headOffset + offset
        while inPiece >= pieces[piece].count { inPiece -= pieces[piece].count; piece += 1 }
        for _ in 0..<MemoryLayout<T>.size {
            let byte = pieces[piece].bytes[inPiece]
            value |= T(truncatingIfNeeded: byte) << shift
            shift += 8
            inPiece += 1
            if inPiece == pieces[piece].count { piece += 1; inPiece = 0 }
        }
        return value
    }

    /// Removes `n` bytes: a slice when they lie in one piece, else a copy.
    private mutating func take(_ n: Int) -> Buffer {
        defer {
            available -= n
            position += n
        }
        if n == 0 { return Buffer.empty }
        let first = pieces[head]
        if first.count - headOffset >= n {
            let slice = first.slice(headOffset, n)
            advance(n)
            return slice
        }
        let out = BufferBuilder(capacity: n)
        var remaining = n
        while remaining > 0 {
            let piece = pieces[head]
            let k = Swift.min(remaining, piece.count - headOffset)
            out.append(UnsafeRawBufferPointer(rebasing: piece.bytes[headOffset..<(headOffset + k)]))
            remaining -= k
            advance(k)
        }
        return out.finish()
    }

    private mutating func advance(_ n: Int) {
        headOffset += n
        while head < pieces.count && headOffset >= pieces[head].count {
            headOffset -= pieces[head].count
            head += 1
        }
        if head > 16 || head == pieces.count {
            pieces.removeFirst(head)
            head = 0
        }
    }

    private mutating func skip(_ n: Int) {
        available -= n
        position += n
        advance(n)
    }

    private func truncated(_ what: String, need: Int, at offset: Int) -> ArrowError {
        ArrowError(.truncated, "expected \(what) of \(need) bytes but the input ended after \(available)", offset: offset)
    }

    /// The next event.
    public mutating func next() throws -> Event {
        while true {
            switch state {
            case .ended:
                return .endOfStream
            case .prefix:
                if available < 4 {
                    if inputEnded {
                        if available == 0 { state = .ended; return .endOfStream }
                        throw truncated("a message length prefix", need: 4, at: position)
                    }
                    return .needMore(4 - available)
                }
                let start = position
                var length = Int(Int32(bitPattern: peek(UInt32.self, at: 0)))
                var prefix = 4
                if length == -1 {
                    if available < 8 {
                        if inputEnded { throw truncated("a message length after the continuation marker", need: 8, at: position) }
                        return .needMore(8 - available)
                    }
                    length = Int(Int32(bitPattern: peek(UInt32.self, at: 4)))
                    prefix = 8
                } else if length != 0 {
                    sawLegacyFraming = true
                }
                if length == 0 {
                    skip(prefix)
                    state = .ended
                    return .endOfStream
                }
                guard length > 0 else {
                    throw ArrowError.invalid("expected a metadata length > 0 but found \(length)", offset: start + prefix - 4)
                }
                guard length <= options.maxMetadataBytes else {
                    throw ArrowError.invalid("expected a metadata length of at most \(options.maxMetadataBytes) bytes but found \(length)", offset: start + prefix - 4)
                }
                skip(prefix)
                state = .metadata(length: length, start: start)
            case .metadata(let length, let start):
                if available < length {
                    if inputEnded { throw truncated("message metadata", need: length, at: position) }
                    return .needMore(length - available)
                }
                let metadataOffset = position
                let metadata = take(length)
                let (root, kind, version, bodyLength) = try IPCMessage.decode(
                    metadata: metadata, offset: start, metadataOffset: metadataOffset, limits: options.flatBufferLimits)
                state = .body(root: root, kind: kind, version: version, length: bodyLength, start: start)
            case .body(let root, let kind, let version, let length, let start):
                if available < length {
                    if inputEnded { throw truncated("a message body", need: length, at: position) }
                    return .needMore(length - available)
                }
                let bodyOffset = position
                let body = take(length)
                state = .prefix
                return .message(IPCMessage(kind: kind, version: version, root: root, body: body, offset: start, bodyOffset: bodyOffset))
            }
        }
    }
}
