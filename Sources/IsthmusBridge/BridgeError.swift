/// A failure of a Python stage, classified so callers can decide what to do and the CLI can
/// pick the exit code (PROTOCOL.md §Errors; DESIGN.md failure model).
public struct BridgeError: Error, Sendable, CustomStringConvertible {
    /// The class of failure.
    public enum Kind: String, Sendable {
        /// The UDF raised; `traceback` holds the Python traceback.
        case userError = "user error"
        /// A worker kept dying (crash, signal, timeout) until retries ran out.
        case workerFailed = "worker failed"
        /// A worker returned a result that does not fit (schema, row count, size).
        case schemaMismatch = "schema mismatch"
        /// A worker sent bytes that do not follow the protocol or the Arrow format.
        case protocolViolation = "protocol violation"
        /// A worker did not start: interpreter, helper or UDF could not be loaded, or startup timed out.
        case startup = "startup"
        /// Host and helper speak different protocol major versions.
        case versionMismatch = "version mismatch"
        /// The run was cancelled (signal, caller).
        case cancelled = "cancelled"
        /// The input changed under the run (a mapped input file shrank).
        case inputChanged = "input changed"
    }

    /// The class of failure.
    public var kind: Kind
    /// One line: what was expected, what was found, where (stage, batch, rows).
    public var message: String
    /// The Python traceback or the worker's last stderr lines, if any.
    public var detail: String
    /// Whether retrying the same input could succeed.
    public var retryable: Bool

    /// An error.
    public init(_ kind: Kind, _ message: String, detail: String = "", retryable: Bool = false) {
        self.kind = kind
        self.message = message
        self.detail = detail
        self.retryable = retryable
    }

    /// Whether this is a usage/environment problem (CLI exit code 2) rather than a data or run failure (1).
    public var isEnvironment: Bool { kind == .startup || kind == .versionMismatch }

    public var description: String { message }
}
