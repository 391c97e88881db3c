import CZeroMQ

/// A ZeroMQ context. Thread-safe (libzmq contexts are), so it may be shared.
///
/// `@unchecked Sendable`: libzmq documents `zmq_ctx_*` as thread-safe; the pointer is
/// immutable and terminated once, in `deinit`, after every socket is closed.
public final class Context: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// A new context with `ioThreads` I/O threads.
    public init(ioThreads: Int32 = 1) throws {
        guard let h = zmq_ctx_new() else { throw ZMQError.current }
        handle = h
        zmq_ctx_set(h, ZMQ_IO_THREADS, ioThreads)
        // Let our own code, not libzmq, decide how many sockets exist.
        zmq_ctx_set(h, ZMQ_MAX_SOCKETS, 4096)
        zmq_ctx_set(h, ZMQ_BLOCKY, 0)
    }

    deinit { _ = zmq_ctx_term(handle) }

    /// A new socket of `type`. Use it only from the thread that will own it.
    public func socket(_ type: SocketType) throws -> Socket {
        try Socket(context: self, type: type)
    }

    /// libzmq's version as (major, minor, patch).
    public static var version: (Int32, Int32, Int32) {
        var a: Int32 = 0, b: Int32 = 0, c: Int32 = 0
        zmq_version(&a, &b, &c)
        return (a, b, c)
    }

    /// A fresh CurveZMQ key pair in Z85 text (40 characters each).
    public static func curveKeyPair() throws -> (publicKey: String, secretKey: String) {
        var pub = [CChar](repeating: 0, count: 41)
        var sec = [CChar](repeating: 0, count: 41)
        try zmqCall { zmq_curve_keypair(&pub, &sec) }
        return (String(cString: pub), String(cString: sec))
    }
}

/// ZeroMQ socket types.
public struct SocketType: RawRepresentable, Hashable, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let pair = SocketType(rawValue: ZMQ_PAIR)
    public static let router = SocketType(rawValue: ZMQ_ROUTER)
    public static let dealer = SocketType(rawValue: ZMQ_DEALER)
    public static let req = SocketType(rawValue: ZMQ_REQ)
    public static let rep = SocketType(rawValue: ZMQ_REP)
    public static let push = SocketType(rawValue: ZMQ_PUSH)
    public static let pull = SocketType(rawValue: ZMQ_PULL)
}
