import CZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// A ZeroMQ socket. Not thread-safe: create and use it on one thread (the thread that owns it).
public final class Socket {
    let handle: UnsafeMutableRawPointer
    /// Keeps the context alive while the socket exists.
    public let context: Context
    private var closed = false

    init(context: Context, type: SocketType) throws {
        guard let h = zmq_socket(context.handle, type.rawValue) else { throw ZMQError.current }
        handle = h
        self.context = context
        try set(.linger, Int32(0))
    }

    deinit { close() }

    /// Closes the socket (idempotent).
    public func close() {
        guard !closed else { return }
        closed = true
        zmq_close(handle)
    }

    /// Binds to `endpoint` (e.g. `ipc:///path`, `tcp://127.0.0.1:0`).
    public func bind(_ endpoint: String) throws { try zmqCall { zmq_bind(handle, endpoint) } }
    /// Connects to `endpoint`.
    public func connect(_ endpoint: String) throws { try zmqCall { zmq_connect(handle, endpoint) } }
    /// Unbinds from `endpoint`.
    public func unbind(_ endpoint: String) throws { try zmqCall { zmq_unbind(handle, endpoint) } }

    /// The endpoint actually bound (resolves `tcp://...:0` ports).
    public var lastEndpoint: String {
        var buf = [CChar](repeating: 0, count: 1024)
        var size = buf.count
        _ = zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buf, &size)
        return String(cString: buf)
    }

    /// Sets an integer option.
    public func set(_ option: SocketOption, _ value: Int32) throws {
        var v = value
        try zmqCall { zmq_setsockopt(handle, option.rawValue, &v, MemoryLayout<Int32>.size) }
    }

    /// Sets a 64-bit integer option.
    public func set(_ option: SocketOption, _ value: Int64) throws {
        var v = value
        try zmqCall { zmq_setsockopt(handle, option.rawValue, &v, MemoryLayout<Int64>.size) }
    }

    /// Sets a bytes/string option (routing id, CURVE keys in Z85).
    public func set(_ option: SocketOption, _ value: String) throws {
        var bytes = Array(value.utf8)
        try zmqCall { zmq_setsockopt(handle, option.rawValue, &bytes, bytes.count) }
    }

    /// Reads an integer option.
    public func get(_ option: SocketOption) throws -> Int32 {
        var v: Int32 = 0
        var size = MemoryLayout<Int32>.size
        try zmqCall { zmq_getsockopt(handle, option.rawValue, &v, &size) }
        return v
    }

    /// Sends `frames` as one multipart message. Every frame is a `Message` built zero-copy
    /// from a `Buffer` where large enough. Returns false if it would block (with `dontWait`).
    @discardableResult
    public func send(_ frames: [Message], dontWait: Bool = false) throws -> Bool {
        for (i, frame) in frames.enumerated() {
            var flags: Int32 = dontWait ? ZMQ_DONTWAIT : 0
            if i < frames.count - 1 { flags |= ZMQ_SNDMORE }
            let sent = try zmqCall { zmq_msg_send(frame.pointer, handle, flags) }
            if sent == nil {
                // Only the first frame can report EAGAIN: later frames of a message are queued atomically.
                return false
            }
        }
        return true
    }

    /// Sends buffers as one multipart message, zero-copy.
    @discardableResult
    public func send(buffers: [ZMQBuffer], dontWait: Bool = false) throws -> Bool {
        try send(buffers.map { Message(buffer: $0) }, dontWait: dontWait)
    }

    /// Receives one multipart message; nil if none is waiting (with `dontWait`).
    /// Each frame's memory is owned by the returned `Message`/`Buffer`, no copy.
    public func receive(dontWait: Bool = false) throws -> [Message]? {
        var frames: [Message] = []
        while true {
            let msg = Message()
            let got = try zmqCall { zmq_msg_recv(msg.pointer, handle, dontWait ? ZMQ_DONTWAIT : 0) }
            if got == nil {
                if frames.isEmpty { return nil }
                continue  // rest of a multipart message is always available once the first frame is
            }
            frames.append(msg)
            if zmq_msg_more(msg.pointer) == 0 { return frames }
        }
    }

    /// Whether the socket has a message waiting or room to send (`ZMQ_EVENTS`).
    public var events: PollEvents { PollEvents(rawValue: Int16(truncatingIfNeeded: (try? get(.events)) ?? 0)) }

    /// The socket's own file descriptor (edge-triggered; see zmq_getsockopt(3)).
    public var fileDescriptor: Int32 { (try? get(.fd)) ?? -1 }
}

/// Socket options as typed names.
public struct SocketOption: RawRepresentable, Hashable, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let linger = SocketOption(rawValue: ZMQ_LINGER)
    public static let routingID = SocketOption(rawValue: ZMQ_ROUTING_ID)
    public static let sendHighWaterMark = SocketOption(rawValue: ZMQ_SNDHWM)
    public static let receiveHighWaterMark = SocketOption(rawValue: ZMQ_RCVHWM)
    public static let routerMandatory = SocketOption(rawValue: ZMQ_ROUTER_MANDATORY)
    public static let routerHandover = SocketOption(rawValue: ZMQ_ROUTER_HANDOVER)
    public static let immediate = SocketOption(rawValue: ZMQ_IMMEDIATE)
    public static let maxMessageSize = SocketOption(rawValue: ZMQ_MAXMSGSIZE)
    public static let curveServer = SocketOption(rawValue: ZMQ_CURVE_SERVER)
    public static let curvePublicKey = SocketOption(rawValue: ZMQ_CURVE_PUBLICKEY)
    public static let curveSecretKey = SocketOption(rawValue: ZMQ_CURVE_SECRETKEY)
    public static let curveServerKey = SocketOption(rawValue: ZMQ_CURVE_SERVERKEY)
    public static let zapDomain = SocketOption(rawValue: ZMQ_ZAP_DOMAIN)
    public static let handshakeInterval = SocketOption(rawValue: ZMQ_HANDSHAKE_IVL)
    public static let events = SocketOption(rawValue: ZMQ_EVENTS)
    public static let fd = SocketOption(rawValue: ZMQ_FD)
}
