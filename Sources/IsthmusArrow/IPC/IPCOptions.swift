/// A body compression codec of Message.fbs `CompressionType`.
public struct CompressionType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The value stored in `BodyCompression.codec`.
    public let rawValue: Int8
    /// A codec by its Message.fbs value.
    public init(rawValue: Int8) { self.rawValue = rawValue }
    /// LZ4 frame format (`lz4frame.h`), one frame per buffer.
    public static let lz4Frame = CompressionType(rawValue: 0)
    /// Zstandard.
    public static let zstd = CompressionType(rawValue: 1)

    public var description: String {
        switch self {
        case .lz4Frame: "LZ4_FRAME"
        case .zstd: "ZSTD"
        default: "compression type \(rawValue)"
        }
    }
}

/// Compresses and decompresses IPC body buffers. IsthmusArrow calls no C, so the codecs
/// live elsewhere: `IsthmusCompression` provides LZ4_FRAME and ZSTD (`BodyCodecs.system`).
public protocol BodyCodec: Sendable {
    /// Which `CompressionType` this codec implements.
    var type: CompressionType { get }
    /// The largest output `compress` can produce for `count` input bytes.
    func maxCompressedLength(_ count: Int) -> Int
    /// Compresses `input` into `output` (at least `maxCompressedLength(input.count)` bytes);
    /// returns the number of bytes written.
    func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int
    /// Decompresses `input` into `output`, writing at most `output.count` bytes; returns the
    /// number of bytes written. Must throw (never write past `output`) when the input is
    /// corrupt or decompresses to more than `output.count` bytes.
    func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int
}

/// How IPC readers decode and check their input.
public struct IPCReadOptions: Sendable {
    /// Codecs for compressed bodies, looked up by `CompressionType`. Empty by default:
    /// a compressed stream then fails with an error naming the codec.
    public var codecs: [any BodyCodec]
    /// Whether every decoded batch and dictionary is checked with `ArrayData.validate()`
    /// before it is returned. Leave on for untrusted input.
    public var validate: Bool
    /// Largest metadata flatbuffer accepted, in bytes.
    public var maxMetadataBytes: Int
    /// Largest total of decompressed bytes accepted for one message body.
    public var maxDecompressedBytes: Int
    /// Bounds on the flatbuffer verifier.
    public var flatBufferLimits: FlatBuffer.Limits
    /// Whether a stream reader over a mapped regular file gives the batches it decodes without
    /// a copy their `origin` (PROTOCOL.md §19), so that local workers may read them in place.
    /// The file's descriptor then stays open for as long as any of those batches (or a slice of
    /// one) lives. Off by default.
    public var trackOrigins = false

    /// Options; by default no codecs, validation on, 64 MiB of metadata, 4 GiB of
    /// decompressed body per message.
    public init(codecs: [any BodyCodec] = [], validate: Bool = true,
                maxMetadataBytes: Int = 64 << 20, maxDecompressedBytes: Int = 4 << 30,
                flatBufferLimits: FlatBuffer.Limits = FlatBuffer.Limits()) {
        self.codecs = codecs
        self.validate = validate
        self.maxMetadataBytes = maxMetadataBytes
        self.maxDecompressedBytes = maxDecompressedBytes
        self.flatBufferLimits = flatBufferLimits
    }

    func codec(_ type: CompressionType) throws -> any BodyCodec {
        guard let c = codecs.first(where: { $0.type == type }) else {
            throw ArrowError(.unsupported, "expected a codec for \(type) body compression but found none in the read options (IsthmusCompression's BodyCodecs.system provides LZ4_FRAME and ZSTD)")
        }
        return c
    }
}

/// How IPC writers encode. Always metadata V5, little-endian, 8-byte alignment, the
/// continuation marker.
public struct IPCWriteOptions: Sendable {
    /// Compress body buffers with this codec (nil: uncompressed).
    public var compression: (any BodyCodec)?
    /// In streams, write a dictionary that extends the one sent before as a delta batch
    /// (only the new values) instead of a replacement.
    public var emitDictionaryDeltas: Bool
    /// Custom metadata put on every record batch message.
    public var messageMetadata: [KeyValue]

    /// Options; by default uncompressed, with dictionary deltas.
    public init(compression: (any BodyCodec)? = nil, emitDictionaryDeltas: Bool = true, messageMetadata: [KeyValue] = []) {
        self.compression = compression
        self.emitDictionaryDeltas = emitDictionaryDeltas
        self.messageMetadata = messageMetadata
    }
}
