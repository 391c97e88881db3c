import Synchronization

/// A value behind a mutex, in a class so closures can share it (a `Mutex` cannot be copied or captured).
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    /// A lock around `value`.
    public init(_ value: Value) { mutex = Mutex(value) }
    /// Runs `body` with exclusive access.
    public func withLock<R>(_ body: (inout sending Value) throws -> sending R) rethrows -> sending R {
        try mutex.withLock(body)
    }
    /// The current value (a copy).
    public var value: Value { mutex.withLock { $0 } }
}
