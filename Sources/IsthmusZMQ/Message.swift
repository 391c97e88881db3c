import CZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// One frame: a `zmq_msg_t` that owns its memory. Frames built from a `ZMQBuffer` keep the
/// buffer's storage alive until libzmq has sent them (zero-copy via `zmq_msg_init_data`).
public final class Message {
    let pointer: UnsafeMutablePointer<zmq_msg_t>
    private var handedOff = false

    /// An empty message ready to receive into.
    public init() {
        pointer = .allocate(capacity: 1)
        zmq_msg_init(pointer)
    }

    /// A message over `buffer`'s bytes, without copying them: libzmq calls back to release
    /// the retained owner when it is done with the bytes.
    public init(buffer: ZMQBuffer) {
        pointer = .allocate(capacity: 1)
        if buffer.count == 0 {
            zmq_msg_init(pointer)
            return
        }
        let hint = Unmanaged.passRetained(buffer.owner).toOpaque()
        let rc = zmq_msg_init_data(pointer, UnsafeMutableRawPointer(mutating: buffer.base), buffer.count, { _, hint in
            if let hint { Unmanaged<AnyObject>.fromOpaque(hint).release() }
        }, hint)
        precondition(rc == 0, "zmq_msg_init_data failed: \(ZMQError.current)")
    }

    /// A message holding a copy of `bytes` (for small control frames).
    public init(copying bytes: UnsafeRawBufferPointer) {
        pointer = .allocate(capacity: 1)
        zmq_msg_init_size(pointer, bytes.count)
        if bytes.count > 0 { zmq_msg_data(pointer).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
    }

    /// A message holding a copy of `bytes`.
    public static func copy(_ bytes: [UInt8]) -> Message {
        bytes.withUnsafeBytes { Message(copying: $0) }
    }

    deinit {
        if !handedOff {
            zmq_msg_close(pointer)
            pointer.deallocate()
        }
    }

    /// Size in bytes.
    public var count: Int { zmq_msg_size(pointer) }

    /// The bytes (valid while the message is alive).
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: zmq_msg_data(pointer), count: zmq_msg_size(pointer))
    }

    /// Hands the frame's memory to a buffer-like owner without copying: the returned value
    /// owns the `zmq_msg_t` and closes it when released. The message must not be used afterwards.
    public func takeBuffer() -> ZMQBuffer {
        precondition(!handedOff)
        handedOff = true
        let owner = ReceivedFrame(pointer)
        return ZMQBuffer(base: UnsafeRawPointer(zmq_msg_data(pointer)), count: zmq_msg_size(pointer), owner: owner)
    }
}

/// Owner of a received `zmq_msg_t`; closing it frees libzmq's memory.
///
/// `@unchecked Sendable`: the message is never mutated after receipt and is closed once, in deinit.
final class ReceivedFrame: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<zmq_msg_t>
    init(_ pointer: UnsafeMutablePointer<zmq_msg_t>) { self.pointer = pointer }
    deinit {
        zmq_msg_close(pointer)
        pointer.deallocate()
    }
}

/// Bytes plus the object that keeps them alive. IsthmusZMQ does not depend on IsthmusArrow;
/// the bridge converts between this and Arrow's `Buffer` without copying.
public struct ZMQBuffer: @unchecked Sendable {
    // @unchecked: `base` points into memory `owner` keeps alive and nobody writes.
    /// Start of the bytes.
    public let base: UnsafeRawPointer
    /// Number of bytes.
    public let count: Int
    /// Keeps the bytes alive.
    public let owner: AnyObject

    /// Bytes owned by `owner`.
    public init(base: UnsafeRawPointer, count: Int, owner: AnyObject) {
        self.base = base
        self.count = count
        self.owner = owner
    }

    /// The bytes.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
}
