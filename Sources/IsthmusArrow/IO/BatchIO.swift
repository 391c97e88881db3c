/// File formats Isthmus reads and writes, chosen by extension or named with `--from` / `--to`.
public enum DataFormat: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Arrow IPC stream (`.arrows`).
    case arrows
    /// Arrow IPC file (`.arrow`, `.feather`).
    case arrow
    /// Comma-separated values (`.csv`).
    case csv
    /// JSON Lines (`.jsonl`, `.ndjson`).
    case jsonl

    /// The format a path's extension names, or nil.
    public static func from(path: String) -> DataFormat? {
        guard let dot = path.lastIndex(of: "."), !path[dot...].contains("/") else { return nil }
        switch path[path.index(after: dot)...].lowercased() {
        case "arrows": return .arrows
        case "arrow", "feather", "ipc": return .arrow
        case "csv": return .csv
        case "jsonl", "ndjson": return .jsonl
        default: return nil
        }
    }

    /// A format by name (`arrows`, `arrow`, `csv`, `jsonl`; also `stream`, `file`, `feather`, `ndjson`).
    public init?(name: String) {
        switch name.lowercased() {
        case "arrows", "stream", "ipc-stream": self = .arrows
        case "arrow", "file", "feather", "ipc-file": self = .arrow
        case "csv": self = .csv
        case "jsonl", "ndjson", "json": self = .jsonl
        default: return nil
        }
    }

    public var description: String { rawValue }
}

/// A source of record batches sharing one schema: an IPC stream or file, CSV, JSON Lines.
public protocol BatchReader: AnyObject {
    /// The schema of every batch.
    var schema: Schema { get }
    /// The next batch, or nil at the end. Throws `ArrowError` on malformed input, with the offset.
    func next() throws -> RecordBatch?
}

/// A sink of record batches sharing one schema.
public protocol BatchWriter: AnyObject {
    /// Writes one batch (its schema must equal the writer's).
    func write(_ batch: RecordBatch) throws
    /// Pushes buffered bytes to the underlying sink (for live streams, after each batch).
    func flush() throws
    /// Writes any trailer (end-of-stream marker, file footer) and flushes. Call once.
    func finish() throws
}

/// Where writers put bytes.
public protocol ByteSink: AnyObject {
    /// Writes all of `bytes`.
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Pushes buffered bytes on.
    func flush() throws
}

extension ByteSink {
    /// Writes the text a writer has gathered (if any) and empties it, keeping its capacity:
    /// the CSV and JSON Lines writers gather about 1 MiB before each write.
    func drain(_ gathered: inout [UInt8]) throws {
        guard !gathered.isEmpty else { return }
        try gathered.withUnsafeBytes { try write($0) }
        gathered.removeAll(keepingCapacity: true)
    }

    /// Writes all of `bytes`.
    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }
    /// Writes a buffer's bytes.
    public func write(_ buffer: Buffer) throws { try write(buffer.bytes) }
    /// Writes a string as UTF-8.
    public func write(_ string: String) throws {
        var s = string
        try s.withUTF8 { try write(UnsafeRawBufferPointer($0)) }
    }
}

/// A byte sink in memory.
public final class MemorySink: ByteSink {
    /// The bytes written so far.
    public let builder = BufferBuilder(capacity: 4096)
    /// An empty sink.
    public init() {}
    public func write(_ bytes: UnsafeRawBufferPointer) throws { builder.append(bytes) }
    public func flush() throws {}
    /// Hands the bytes written so far to a buffer, without copying; the sink starts over empty.
    public func finish() -> Buffer { builder.finish() }
}

/// Where streaming readers get bytes: a file, a pipe, stdin.
public protocol ByteSource: AnyObject {
    /// Reads up to `into.count` bytes; returns 0 at the end of input.
    func read(into: UnsafeMutableRawBufferPointer) throws -> Int
    /// Whether the input is a live stream (pipe, terminal, socket) rather than a file: readers
    /// of a live source hand out the complete rows they hold instead of blocking for more.
    var isLive: Bool { get }
}

extension ByteSource {
    public var isLive: Bool { false }
}
