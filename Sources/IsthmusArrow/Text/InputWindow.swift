#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A live `ByteSource` that can tell whether a read would return without waiting.
/// Text readers use it to gather what is already there into one batch (and into the
/// schema-inference sample) without ever blocking a live stream for more.
public protocol PollableByteSource: ByteSource {
    /// Whether bytes (or the end of input) can be read within `timeout` seconds (0 = now).
    func isReadable(within timeout: Double) -> Bool
}

extension InputFile: PollableByteSource {
    /// Polls the descriptor for input (or end of input) for up to `timeout` seconds.
    public func isReadable(within timeout: Double) -> Bool {
        var p = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
        let ms = Int32(Swift.max(0, Swift.min(timeout * 1000, 60_000)))
        while true {
            let r = poll(&p, 1, ms)
            if r < 0 && errno == EINTR { continue }
            return r > 0
        }
    }
}

/// A growable window of bytes read from a `ByteSource`: `[start, end)` is unconsumed.
/// Parsers look at `bytes` between fills; `fill()` may move the bytes, so positions kept
/// across a fill must be relative to `start`.
final class InputWindow {
    let source: ByteSource
    private(set) var storage: UnsafeMutableRawPointer
    private(set) var capacity: Int
    /// First unconsumed byte.
    var start = 0
    /// End of the valid bytes.
    private(set) var end = 0
    /// The source reported the end of input.
    private(set) var atEnd = false
    /// Absolute input offset of `storage[0]`.
    private(set) var base = 0
    /// Bytes to ask the source for in one read.
    let readSize: Int

    init(source: ByteSource, readSize: Int = 1 << 20) {
        self.source = source
        self.readSize = readSize
        capacity = readSize
        storage = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
    }

    deinit { storage.deallocate() }

    /// The valid bytes (`[0, end)`); index with positions between `start` and `end`.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: storage, count: end) }

    /// Bytes not yet consumed.
    var pending: Int { end - start }

    /// Whether the source is a live stream.
    var isLive: Bool { source.isLive }

    /// Whether a read would return at once (always true for non-live sources).
    func readableNow(within timeout: Double = 0) -> Bool {
        guard source.isLive else { return true }
        if let p = source as? PollableByteSource { return p.isReadable(within: timeout) }
        return false
    }

    /// Reads once from the source, compacting or growing as needed. Returns the byte count (0 at the end).
    @discardableResult
    func fill() throws -> Int {
        guard !atEnd else { return 0 }
        if start > 0 && (capacity - end < readSize / 2 || start == end) {
            let n = end - start
            if n > 0 { memmove(storage, storage + start, n) }
            base += start
            end = n
            start = 0
        }
        if capacity - end < readSize / 2 {
            let newCapacity = Swift.max(capacity * 2, end + readSize)
            let p = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 64)
            p.copyMemory(from: storage, byteCount: end)
            storage.deallocate()
            storage = p
            capacity = newCapacity
        }
        let n = try source.read(into: UnsafeMutableRawBufferPointer(start: storage + end, count: capacity - end))
        if n == 0 { atEnd = true }
        end += n
        return n
    }
}
