// Module IsthmusCompression: the LZ4_FRAME and ZSTD body codecs of Arrow IPC, over the
// system liblz4 and libzstd. The only place that calls them.
import CLZ4
import CZstd
import IsthmusArrow

/// LZ4 frame format (`lz4frame.h`), one frame per buffer, as Arrow's LZ4_FRAME requires.
public struct LZ4FrameCodec: BodyCodec {
    public var type: CompressionType { .lz4Frame }

    /// A codec with liblz4's default preferences.
    public init() {}

    /// Frame preferences: defaults, plus the content size in the frame header.
    private func preferences(_ count: Int) -> LZ4F_preferences_t {
        var prefs = LZ4F_preferences_t()
        prefs.frameInfo.contentSize = UInt64(count)
        return prefs
    }

    public func maxCompressedLength(_ count: Int) -> Int {
        var prefs = preferences(count)
        return Int(LZ4F_compressFrameBound(count, &prefs))
    }

    public func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        var prefs = preferences(input.count)
        let n = LZ4F_compressFrame(output.baseAddress, output.count, input.baseAddress, input.count, &prefs)
        if LZ4F_isError(n) != 0 {
            throw ArrowError(.io, "LZ4 frame compression failed: \(String(cString: LZ4F_getErrorName(n)))")
        }
        return n
    }

    public func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        var context: OpaquePointer?
        let created = LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))
        guard LZ4F_isError(created) == 0, let context else {
            throw ArrowError(.io, "cannot create an LZ4 decompression context")
        }
        defer { LZ4F_freeDecompressionContext(context) }
        var consumed = 0
        var written = 0
        while consumed < input.count {
            var sourceSize = input.count - consumed
            var destinationSize = output.count - written
            let hint = LZ4F_decompress(context, output.baseAddress.map { $0 + written }, &destinationSize,
                                       input.baseAddress! + consumed, &sourceSize, nil)
            if LZ4F_isError(hint) != 0 {
                throw ArrowError.invalid("expected a valid LZ4 frame but found corrupt data: \(String(cString: LZ4F_getErrorName(hint)))")
            }
            consumed += sourceSize
            written += destinationSize
            if hint == 0 { continue }   // frame complete; another may follow
            if sourceSize == 0 && destinationSize == 0 {
                // No progress: the output is full but the frame wants to write more.
                throw ArrowError.invalid("expected at most \(output.count) bytes after LZ4 decompression but found more")
            }
            if consumed == input.count {
                throw ArrowError.invalid("expected a complete LZ4 frame but found it truncated after \(input.count) bytes")
            }
        }
        return written
    }
}

/// Zstandard.
public struct ZstdCodec: BodyCodec {
    public var type: CompressionType { .zstd }
    /// Compression level (1 fastest ... 19+; 1 by default, as pyarrow).
    public var level: Int32

    /// A codec compressing at `level`.
    public init(level: Int32 = 1) { self.level = level }

    public func maxCompressedLength(_ count: Int) -> Int { ZSTD_compressBound(count) }

    public func compress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = ZSTD_compress(output.baseAddress, output.count, input.baseAddress, input.count, level)
        if ZSTD_isError(n) != 0 {
            throw ArrowError(.io, "ZSTD compression failed: \(String(cString: ZSTD_getErrorName(n)))")
        }
        return n
    }

    public func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> Int {
        // ZSTD_decompress never writes past `output.count` (it fails with dstSize_tooSmall).
        let n = ZSTD_decompress(output.baseAddress, output.count, input.baseAddress, input.count)
        if ZSTD_isError(n) != 0 {
            throw ArrowError.invalid("expected valid ZSTD data of at most \(output.count) bytes but found: \(String(cString: ZSTD_getErrorName(n)))")
        }
        return n
    }
}

/// The standard codecs.
public enum BodyCodecs {
    /// LZ4_FRAME.
    public static let lz4Frame: any BodyCodec = LZ4FrameCodec()
    /// ZSTD at level 1.
    public static let zstd: any BodyCodec = ZstdCodec()
    /// Every codec this module provides, for `IPCReadOptions(codecs:)`.
    public static let system: [any BodyCodec] = [lz4Frame, zstd]

    /// The codec named `name` (`lz4`, `lz4_frame`, `zstd`), or nil for `none`/unknown names.
    public static func named(_ name: String) -> (any BodyCodec)? {
        switch name.lowercased() {
        case "lz4", "lz4_frame", "lz4frame": lz4Frame
        case "zstd", "zstandard": zstd
        default: nil
        }
    }
}

extension IPCReadOptions {
    /// Default read options with the system LZ4_FRAME and ZSTD codecs.
    public static var withSystemCodecs: IPCReadOptions { IPCReadOptions(codecs: BodyCodecs.system) }
}
