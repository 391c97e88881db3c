import IsthmusArrow
import IsthmusCompression

/// Read and write options the CLI uses everywhere: the system body codecs, compression by name.
enum RunFormats {
    /// Options for reading any input (compressed Arrow bodies included).
    static func readOptions() -> ReadOptions {
        var o = ReadOptions()
        o.codecs = BodyCodecs.system
        return o
    }

    /// Options for writing with `--compression none|lz4|zstd`.
    static func writeOptions(compression: String) throws -> WriteOptions {
        var o = WriteOptions()
        switch compression.lowercased() {
        case "none", "": o.compression = nil
        case "lz4", "lz4_frame", "lz4-frame": o.compression = LZ4FrameCodec()
        case "zstd": o.compression = ZstdCodec()
        default: throw CLIFailure.usage("--compression: expected none, lz4 or zstd but found '\(compression)'")
        }
        return o
    }
}
