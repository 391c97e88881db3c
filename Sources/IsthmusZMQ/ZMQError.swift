import CZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// An error reported by libzmq: the `errno` value it set.
public struct ZMQError: Error, RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The errno value.
    public let rawValue: Int32
    /// Wraps an errno value.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The operation would block (`EAGAIN`).
    public static let wouldBlock = ZMQError(rawValue: EAGAIN)
    /// The context was terminated (`ETERM`).
    public static let terminated = ZMQError(rawValue: ETERM)
    /// A ROUTER could not route to an unknown peer (`EHOSTUNREACH`, with ROUTER_MANDATORY).
    public static let hostUnreachable = ZMQError(rawValue: EHOSTUNREACH)
    /// The endpoint is already in use.
    public static let addressInUse = ZMQError(rawValue: EADDRINUSE)

    /// libzmq's text for the error.
    public var description: String { String(cString: zmq_strerror(rawValue)) }

    /// The current `zmq_errno()`.
    static var current: ZMQError { ZMQError(rawValue: zmq_errno()) }
}

/// The one helper every `zmq_*` call goes through: retries on `EINTR`, turns `EAGAIN`
/// into `nil`, and throws `ZMQError` for anything else.
@discardableResult
func zmqCall(_ body: () -> Int32) throws -> Int32? {
    while true {
        let rc = body()
        if rc >= 0 { return rc }
        let err = zmq_errno()
        if err == EINTR { continue }
        if err == EAGAIN { return nil }
        throw ZMQError(rawValue: err)
    }
}
