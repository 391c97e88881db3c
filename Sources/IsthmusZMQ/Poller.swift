import CZeroMQ

/// Readiness bits for polling.
public struct PollEvents: OptionSet, Sendable {
    public let rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }
    /// A message can be received (or the descriptor is readable).
    public static let readable = PollEvents(rawValue: Int16(ZMQ_POLLIN))
    /// A message can be sent.
    public static let writable = PollEvents(rawValue: Int16(ZMQ_POLLOUT))
}

/// Waits on several sockets and plain file descriptors at once (`zmq_poll`).
public struct Poller {
    private var items: [zmq_pollitem_t] = []

    /// An empty poller.
    public init() {}

    /// Adds a socket; returns its index.
    @discardableResult
    public mutating func add(_ socket: Socket, _ events: PollEvents = .readable) -> Int {
        items.append(zmq_pollitem_t(socket: socket.handle, fd: -1, events: events.rawValue, revents: 0))
        return items.count - 1
    }

    /// Adds a file descriptor (a pipe, an eventfd); returns its index.
    @discardableResult
    public mutating func add(fd: Int32, _ events: PollEvents = .readable) -> Int {
        items.append(zmq_pollitem_t(socket: nil, fd: fd, events: events.rawValue, revents: 0))
        return items.count - 1
    }

    /// Waits up to `timeoutMilliseconds` (-1 = forever); returns the ready events per item.
    public mutating func poll(timeoutMilliseconds: Int) throws -> [PollEvents] {
        let n = items.count
        _ = try items.withUnsafeMutableBufferPointer { p in
            try zmqCall { zmq_poll(p.baseAddress, Int32(n), timeoutMilliseconds) }
        }
        return items.map { PollEvents(rawValue: $0.revents) }
    }
}
