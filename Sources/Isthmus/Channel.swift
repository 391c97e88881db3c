import Foundation

/// A bounded first-in first-out queue between threads: `send` blocks while it holds
/// `capacity` items (backpressure), `receive` blocks (optionally until a deadline) while it is
/// empty. Closing wakes everyone; a failure travels to the receiver.
///
/// `@unchecked Sendable`: all state is accessed only while `condition` is locked.
public final class Channel<Element: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [Element] = []
    private var head = 0
    private var closed = false
    private var failure: Error?
    /// Most items held at once.
    public let capacity: Int

    /// A channel holding at most `capacity` items.
    public init(capacity: Int) { self.capacity = Swift.max(1, capacity) }

    /// Adds an item, waiting while the channel is full. Returns false if it was closed.
    @discardableResult
    public func send(_ item: Element) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !closed && items.count - head >= capacity { condition.wait() }
        if closed { return false }
        items.append(item)
        condition.broadcast()
        return true
    }

    /// What `receive` returns.
    public enum Received {
        /// An item.
        case item(Element)
        /// The deadline passed with nothing to receive.
        case timedOut
        /// The channel is closed and empty.
        case closed
    }

    /// Takes the next item, waiting until one arrives, the channel closes, or `deadline`
    /// (seconds on the monotonic clock, `Date` based) passes. Throws the sender's failure.
    public func receive(until deadline: Date? = nil) throws -> Received {
        condition.lock()
        defer { condition.unlock() }
        while head == items.count {
            if let failure { throw failure }
            if closed { return .closed }
            if let deadline {
                if !condition.wait(until: deadline) && head == items.count {
                    if let failure { throw failure }
                    return closed ? .closed : .timedOut
                }
            } else {
                condition.wait()
            }
        }
        let item = items[head]
        head += 1
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        condition.broadcast()
        return .item(item)
    }

    /// Ends the stream: receivers drain what is left, then see `.closed`.
    public func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// Ends the stream with an error that the receiver gets once the items before it are drained.
    public func fail(_ error: Error) {
        condition.lock()
        if failure == nil { failure = error }
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}
