/// An error from reading, validating or writing Arrow data.
///
/// Messages follow one shape: what was expected, what was found, and where
/// (byte offset, column, row) when known.
public struct ArrowError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The class of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// Raw name.
        public let rawValue: String
        /// A code by name.
        public init(_ rawValue: String) { self.rawValue = rawValue }
        /// Bytes that do not follow the format (corrupt or hostile input).
        public static let invalidData = Code("invalid data")
        /// Input that is valid Arrow but uses a feature this implementation does not support.
        public static let unsupported = Code("unsupported")
        /// A caller passed values that do not fit together (wrong type, length, schema).
        public static let invalidArgument = Code("invalid argument")
        /// The input ended before a complete message.
        public static let truncated = Code("truncated")
        /// Reading or writing a file failed.
        public static let io = Code("i/o")
        /// The input file changed under the reader (it shrank): what was read may be wrong.
        public static let inputChanged = Code("input changed")
        public var description: String { rawValue }
    }

    /// The class of failure.
    public var code: Code
    /// What was expected and what was found.
    public var message: String
    /// Byte offset in the input where the problem was found, when known.
    public var offset: Int?

    /// An error.
    public init(_ code: Code, _ message: String, offset: Int? = nil) {
        self.code = code
        self.message = message
        self.offset = offset
    }

    /// Malformed input.
    public static func invalid(_ message: String, offset: Int? = nil) -> ArrowError {
        ArrowError(.invalidData, message, offset: offset)
    }

    public var description: String {
        if let offset { return "\(message) (at byte offset \(offset))" }
        return message
    }

    /// This error as one from reading the file `name`: its message begins with the name, so
    /// a run over many inputs says which one is malformed. I/O and input-changed errors
    /// already name their file and stay as they are.
    public func reading(_ name: String) -> ArrowError {
        guard code != .io, code != .inputChanged, !message.hasPrefix("\(name): ") else { return self }
        return ArrowError(code, "\(name): \(message)", offset: offset)
    }
}

/// A reader whose data errors name the file it reads (`ArrowError.reading(_:)`).
public final class FileNamingReader: BatchReader {
    private let base: BatchReader
    /// The name errors begin with.
    public let name: String

    /// Wraps `base`, which reads `name`.
    public init(_ base: BatchReader, name: String) {
        self.base = base
        self.name = name
    }

    /// Opens a reader with `open`, naming `name` in the errors of opening it and of reading it.
    public static func open(_ name: String, _ open: () throws -> BatchReader) throws -> FileNamingReader {
        do { return FileNamingReader(try open(), name: name) } catch let e as ArrowError { throw e.reading(name) }
    }

    public var schema: Schema { base.schema }

    public func next() throws -> RecordBatch? {
        do { return try base.next() } catch let e as ArrowError { throw e.reading(name) }
    }
}
