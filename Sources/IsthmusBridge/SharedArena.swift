import IsthmusArrow
#if canImport(Glibc)
import Glibc
#endif

/// The shared-memory data plane's memory (PROTOCOL.md §17): one anonymous, sparse memory file
/// (`memfd_create`) mapped by the host and by every local worker of a pool. Batches are written
/// into regions of it and only their descriptors travel over ZeroMQ, which saves the two kernel
/// copies through the unix socket on each side.
///
/// Lifetimes are reference counts: a region belongs to every `ArenaLease` over it, and returns
/// to the allocator when the last lease goes away. The host holds a lease while a batch is
/// queued or in flight, the worker's hold is represented by a lease the I/O thread keeps until
/// the worker sends RELEASE (or exits), and Arrow buffers decoded from a region hold a lease for
/// as long as anyone references them. The mapping outlives every lease (they hold the arena).
///
/// Workers open the file as `/proc/<host pid>/fd/<fd>`: no name in a shared namespace, nothing
/// left behind when the host is killed, and the same access rule as the host's own files.
public final class SharedArena: @unchecked Sendable {
    // @unchecked: `allocator` is only touched under `lock`; the mapping itself is fixed.
    /// Path a worker on this machine opens to map the arena.
    public let path: String
    /// Size of the mapping in bytes.
    public let size: Int
    let base: UnsafeMutableRawPointer
    private let fd: Int32
    private let lock = Locked(ArenaAllocator(capacity: 0))

    /// Creates a sparse arena of `size` bytes, or explains why it cannot (no memfd on this
    /// system, out of address space): the caller then uses frames only.
    public init(size: Int) throws(ArenaUnavailable) {
        guard size >= 1 << 20 else { throw ArenaUnavailable("expected an arena of at least 1 MiB, found \(size) bytes") }
        guard let create = SharedArena.memfdCreate else { throw ArenaUnavailable("this system has no memfd_create") }
        let fd = create("isthmus-arena", 1 /* MFD_CLOEXEC */)
        guard fd >= 0 else { throw ArenaUnavailable("memfd_create failed: \(String(cString: strerror(errno)))") }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw ArenaUnavailable("cannot size the arena to \(size) bytes: \(why)")
        }
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw ArenaUnavailable("cannot map an arena of \(size) bytes: \(why)")
        }
        self.fd = fd
        self.size = size
        base = p
        path = "/proc/\(getpid())/fd/\(fd)"
        lock.withLock { $0 = ArenaAllocator(capacity: size) }
    }

    deinit {
        munmap(base, size)
        close(fd)
    }

    /// A new region of `count` bytes, or nil when the arena has no free extent that large.
    public func lease(_ count: Int) -> ArenaLease? {
        guard let offset = lock.withLock({ $0.allocate(count) }) else { return nil }
        return ArenaLease(arena: self, offset: offset, size: count)
    }

    /// Allocates the pages of the first `bytes` of the arena by writing to them. Only while
    /// no region is in use (before the first batch): it overwrites them with zeros.
    func prefault(_ bytes: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var at = 0
        while at < Swift.min(bytes, size) {
            base.storeBytes(of: 0, toByteOffset: at, as: UInt8.self)
            at += page
        }
    }

    /// A copy of the allocator's state (tests).
    public var allocator: ArenaAllocator { lock.value }

    /// The most bytes in use at once so far (stats).
    public var peakUsed: Int { lock.withLock { $0.peakUsed } }

    func release(offset: Int, size: Int) {
        lock.withLock { $0.release(offset: offset, size: size) }
    }

    /// glibc's memfd_create, looked up at run time: the Glibc module does not export it.
    private static let memfdCreate: (@convention(c) (UnsafePointer<CChar>, UInt32) -> Int32)? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "memfd_create") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafePointer<CChar>, UInt32) -> Int32).self)
    }()
}

/// Why a shared arena could not be made.
public struct ArenaUnavailable: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// One region of a `SharedArena`; the region is freed when the lease is deallocated.
public final class ArenaLease: Sendable {
    public let arena: SharedArena
    /// Offset of the region in the arena.
    public let offset: Int
    /// Size of the region in bytes.
    public let size: Int

    init(arena: SharedArena, offset: Int, size: Int) {
        self.arena = arena
        self.offset = offset
        self.size = size
    }

    deinit { arena.release(offset: offset, size: size) }

    /// Start of the region in this process.
    public var pointer: UnsafeMutableRawPointer { arena.base + offset }

    /// The first `count` bytes of the region as an Arrow buffer that keeps the lease alive.
    public func buffer(count: Int) -> Buffer {
        precondition(count >= 0 && count <= size, "view of \(count) bytes outside a region of \(size)")
        let storage = BufferStorage(base: UnsafeRawPointer(pointer), count: count) { _, _ in withExtendedLifetime(self) {} }
        return Buffer(storage: storage)
    }

    /// Copies `pieces` one after another into the region; returns the bytes written.
    /// The region must be large enough.
    func fill(with pieces: [Buffer]) -> Int {
        var at = 0
        for piece in pieces where piece.count > 0 {
            precondition(at + piece.count <= size, "pieces larger than the region")
            (pointer + at).copyMemory(from: piece.bytes.baseAddress!, byteCount: piece.count)
            at += piece.count
        }
        return at
    }
}
