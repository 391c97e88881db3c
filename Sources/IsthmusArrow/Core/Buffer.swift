#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Owner of a block of immutable bytes: heap memory we allocated, a ZeroMQ message,
/// a memory-mapped file, or any other region whose lifetime a release closure ends.
///
/// `@unchecked Sendable` is safe: the bytes are never written after the storage is
/// handed out (builders write before `finish()`), and `release` runs exactly once, in `deinit`.
public final class BufferStorage: @unchecked Sendable {
    /// Start of the region. Never written through after construction.
    public let base: UnsafeRawPointer
    /// Size of the region in bytes.
    public let count: Int
    private let release: (@Sendable (UnsafeRawPointer, Int) -> Void)?

    /// Wraps foreign memory; `release` is called once when the last `Buffer` over it goes away.
    public init(base: UnsafeRawPointer, count: Int, release: (@Sendable (UnsafeRawPointer, Int) -> Void)?) {
        self.base = base
        self.count = count
        self.release = release
    }

    /// Allocates `count` bytes aligned to 64 (the Arrow recommendation), zeroed when `zeroed`.
    /// A caller that overwrites every byte (a copy) passes false: zeroing first doubles the
    /// writes, and on fresh pages it is where the page faults are taken.
    static func allocate(count: Int, zeroed: Bool) -> (BufferStorage, UnsafeMutableRawPointer) {
        let size = Swift.max(count, 1)
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, size) == 0, let pointer = raw else {
            fatalError("out of memory allocating \(count) bytes")
        }
        if zeroed { memset(pointer, 0, size) }
        let storage = BufferStorage(base: UnsafeRawPointer(pointer), count: count) { base, _ in
            free(UnsafeMutableRawPointer(mutating: base))
        }
        return (storage, pointer)
    }

    deinit { release?(base, count) }
}

/// An immutable, reference-counted view of bytes: the unit every Arrow array is built from.
/// Slicing a buffer copies nothing.
public struct Buffer: Sendable {
    /// The owner of the memory.
    public let storage: BufferStorage
    /// Offset of this view inside `storage`.
    public let offset: Int
    /// Length of this view in bytes.
    public let count: Int

    /// A view of `count` bytes of `storage` starting at `offset`. The range must lie inside the storage.
    public init(storage: BufferStorage, offset: Int = 0, count: Int? = nil) {
        let n = count ?? (storage.count - offset)
        precondition(offset >= 0 && n >= 0 && offset <= storage.count && n <= storage.count - offset,
                     "buffer view \(offset)+\(n) outside storage of \(storage.count) bytes")
        self.storage = storage
        self.offset = offset
        self.count = n
    }

    /// Counts the bytes `body` copies into new buffers with `Buffer(copying:)`, in this task
    /// only (tests running in parallel do not disturb it). Tests use it to prove the data path
    /// does not copy column buffers.
    public static func copiedBytes<R>(during body: () throws -> R) rethrows -> (result: R, bytes: Int) {
        let counter = CopyCounter()
        let result = try $copyCounter.withValue(counter) { try body() }
        return (result, counter.bytes.load(ordering: .relaxed))
    }

    @TaskLocal static var copyCounter: CopyCounter?

    /// The bytes copied under one `copiedBytes(during:)`.
    final class CopyCounter: Sendable {
        let bytes = Atomic<Int>(0)
    }

    /// A new buffer holding a copy of `bytes`.
    public init(copying bytes: UnsafeRawBufferPointer) {
        let (storage, pointer) = BufferStorage.allocate(count: bytes.count, zeroed: false)
        if let src = bytes.baseAddress, bytes.count > 0 { pointer.copyMemory(from: src, byteCount: bytes.count) }
        if let counter = Buffer.copyCounter { counter.bytes.add(bytes.count, ordering: .relaxed) }
        self.init(storage: storage, offset: 0, count: bytes.count)
    }

    /// A new buffer holding a copy of `bytes`.
    public init(_ bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { Buffer(copying: $0) }
    }

    /// A buffer of `count` zero bytes.
    public static func zeroed(_ count: Int) -> Buffer {
        let (storage, _) = BufferStorage.allocate(count: count, zeroed: true)
        return Buffer(storage: storage, offset: 0, count: count)
    }

    /// The empty buffer.
    public static let empty = Buffer.zeroed(0)

    /// The bytes of this view. Valid while the buffer (or its storage) is alive.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage.base + offset, count: count)
    }

    /// A view of a sub-range; copies nothing.
    public func slice(_ start: Int, _ length: Int) -> Buffer {
        precondition(start >= 0 && length >= 0 && start <= count && length <= count - start,
                     "slice \(start)+\(length) outside buffer of \(count) bytes")
        return Buffer(storage: storage, offset: offset + start, count: length)
    }

    /// Reads a little-endian value of type `T` at byte offset `at` (unaligned reads allowed).
    @inlinable
    public func load<T: FixedWidthInteger>(_ type: T.Type = T.self, at position: Int) -> T {
        T(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
    }

    /// The bytes as an array (a copy; for tests and small values).
    public var array: [UInt8] { Array(bytes) }

    /// Whether two buffers hold the same bytes.
    public func contentEquals(_ other: Buffer) -> Bool {
        count == other.count && (count == 0 || memcmp(bytes.baseAddress!, other.bytes.baseAddress!, count) == 0)
    }
}

/// A growable byte buffer for builders and writers; `finish()` hands its memory to an
/// immutable `Buffer` without copying.
public final class BufferBuilder {
    private var pointer: UnsafeMutableRawPointer
    private var capacity: Int
    /// Bytes written so far.
    public private(set) var count: Int = 0

    /// An empty builder with room for `capacity` bytes.
    public init(capacity: Int = 64) {
        self.capacity = Swift.max(capacity, 64)
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, self.capacity) == 0, let p = raw else { fatalError("out of memory") }
        pointer = p
    }

    deinit { free(pointer) }

    /// Makes room for at least `extra` more bytes.
    public func reserve(_ extra: Int) {
        if count + extra > capacity { grow(to: count + extra) }
    }

    func grow(to needed: Int) {
        var newCapacity = capacity
        while newCapacity < needed { newCapacity = newCapacity &* 2 }
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, newCapacity) == 0, let p = raw else { fatalError("out of memory") }
        p.copyMemory(from: pointer, byteCount: count)
        free(pointer)
        pointer = p
        capacity = newCapacity
    }

    /// Appends a value's little-endian bytes.
    public func append<T: FixedWidthInteger>(_ value: T) {
        reserve(MemoryLayout<T>.size)
        (mutableBase + count).storeBytes(of: value.littleEndian, as: T.self)
        count += MemoryLayout<T>.size
    }

    /// Appends a floating-point value's bytes (IEEE 754, little-endian host).
    public func append(_ value: Double) { append(value.bitPattern) }
    /// Appends a floating-point value's bytes (IEEE 754, little-endian host).
    public func append(_ value: Float) { append(value.bitPattern) }

    /// Appends raw bytes.
    public func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(bytes.count)
        (pointer + count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count += bytes.count
    }

    /// Appends raw bytes.
    public func append(contentsOf bytes: some Collection<UInt8>) {
        reserve(bytes.count)
        var i = count
        for b in bytes { (pointer + i).storeBytes(of: b, as: UInt8.self); i += 1 }
        count = i
    }

    /// Appends `n` zero bytes.
    public func appendZeros(_ n: Int) {
        guard n > 0 else { return }
        reserve(n)
        memset(pointer + count, 0, n)
        count += n
    }

    /// Pads with zeros to a multiple of `alignment`.
    public func pad(to alignment: Int) {
        let rem = count % alignment
        if rem != 0 { appendZeros(alignment - rem) }
    }

    /// Overwrites a value at an earlier position.
    public func set<T: FixedWidthInteger>(_ value: T, at position: Int) {
        precondition(position + MemoryLayout<T>.size <= count)
        (pointer + position).storeBytes(of: value.littleEndian, as: T.self)
    }

    /// Reads back a value written earlier.
    public func get<T: FixedWidthInteger>(_ type: T.Type, at position: Int) -> T {
        T(littleEndian: UnsafeRawPointer(pointer).loadUnaligned(fromByteOffset: position, as: T.self))
    }

    /// Sets or clears bit `index` (LSB order), growing with zero bytes as needed.
    public func setBit(_ index: Int, _ value: Bool) {
        let byte = index >> 3
        if byte >= count { appendZeros(byte + 1 - count) }
        let p = (pointer + byte).assumingMemoryBound(to: UInt8.self)
        if value { p.pointee |= UInt8(1) << UInt8(index & 7) } else { p.pointee &= ~(UInt8(1) << UInt8(index & 7)) }
    }

    var mutableBase: UnsafeMutableRawPointer { pointer }

    /// Discards the contents but keeps the memory.
    public func removeAll() { count = 0 }

    /// The bytes written so far (valid until the next append).
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }

    /// Hands the memory to an immutable buffer without copying; the builder starts over empty.
    public func finish() -> Buffer {
        let p = pointer
        let storage = BufferStorage(base: UnsafeRawPointer(p), count: count) { base, _ in
            free(UnsafeMutableRawPointer(mutating: base))
        }
        let result = Buffer(storage: storage, offset: 0, count: count)
        capacity = 64
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, capacity) == 0, let fresh = raw else { fatalError("out of memory") }
        pointer = fresh
        count = 0
        return result
    }
}
