/// First-fit allocation of regions inside a fixed-size arena (PROTOCOL.md §17, the shared-memory
/// data plane). A pure state machine: offsets and sizes only, no memory, no locking.
///
/// Regions start at multiples of `alignment` (64, as Arrow recommends for buffers) and their
/// sizes are rounded up to it. First fit from the lowest offset keeps the touched part of the
/// arena as small as the peak working set: pages at high offsets are never written unless the
/// low ones are all in use, so a sparse arena costs memory only for what the run needs.
public struct ArenaAllocator: Sendable, Equatable {
    /// A free extent.
    public struct Extent: Sendable, Equatable {
        public var offset: Int
        public var size: Int
        public init(offset: Int, size: Int) {
            self.offset = offset
            self.size = size
        }
    }

    /// Bytes the arena manages.
    public let capacity: Int
    /// Alignment of every region (a power of two).
    public let alignment: Int
    /// Free extents, sorted by offset, never adjacent (they are merged).
    public private(set) var free: [Extent]
    /// Bytes currently handed out (sizes rounded to `alignment`).
    public private(set) var used = 0
    /// The highest `used` seen.
    public private(set) var peakUsed = 0

    /// An arena of `capacity` bytes (rounded down to `alignment`), all free.
    public init(capacity: Int, alignment: Int = 64) {
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "alignment must be a power of two")
        let usable = Swift.max(0, capacity) / alignment * alignment
        self.capacity = usable
        self.alignment = alignment
        free = usable > 0 ? [Extent(offset: 0, size: usable)] : []
    }

    /// `size` rounded up to the alignment (at least one unit).
    public func rounded(_ size: Int) -> Int {
        (Swift.max(size, 1) + alignment - 1) / alignment * alignment
    }

    /// The size of the largest region that `allocate` could return now.
    public var largestFree: Int { free.map(\.size).max() ?? 0 }

    /// Reserves `size` bytes; returns the region's offset, or nil when no free extent is big
    /// enough (the caller falls back to another path; it never waits).
    public mutating func allocate(_ size: Int) -> Int? {
        guard size >= 0 else { return nil }
        let n = rounded(size)
        guard let i = free.firstIndex(where: { $0.size >= n }) else { return nil }
        let offset = free[i].offset
        if free[i].size == n {
            free.remove(at: i)
        } else {
            free[i].offset += n
            free[i].size -= n
        }
        used += n
        peakUsed = Swift.max(peakUsed, used)
        return offset
    }

    /// Returns a region of `size` bytes (as passed to `allocate`) at `offset`.
    /// Freeing a region twice, or one that was never allocated, is a programming error.
    public mutating func release(offset: Int, size: Int) {
        let n = rounded(size)
        precondition(offset >= 0 && offset % alignment == 0 && offset + n <= capacity, "region \(offset)+\(n) outside the arena")
        let i = free.firstIndex { $0.offset > offset } ?? free.endIndex
        if i > free.startIndex { precondition(free[i - 1].offset + free[i - 1].size <= offset, "region \(offset) freed twice") }
        if i < free.endIndex { precondition(offset + n <= free[i].offset, "region \(offset) freed twice") }
        used -= n
        let joinsPrevious = i > free.startIndex && free[i - 1].offset + free[i - 1].size == offset
        let joinsNext = i < free.endIndex && offset + n == free[i].offset
        switch (joinsPrevious, joinsNext) {
        case (true, true):
            free[i - 1].size += n + free[i].size
            free.remove(at: i)
        case (true, false):
            free[i - 1].size += n
        case (false, true):
            free[i].offset = offset
            free[i].size += n
        case (false, false):
            free.insert(Extent(offset: offset, size: n), at: i)
        }
    }
}
