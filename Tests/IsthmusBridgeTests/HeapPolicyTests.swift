#if canImport(Glibc)
import Glibc
import Testing
@testable import IsthmusBridge

/// The host's heap policy: per-batch buffers come from the heap, not fresh mappings, unless
/// the user configured the allocator.
@Suite("heap policy")
struct HeapPolicyTests {
    @Test("a user's allocator settings in the environment win", arguments: [
        ([:] as [String: String], false),
        (["GLIBC_TUNABLES": "glibc.pthread.rseq=0"], false),
        (["GLIBC_TUNABLES": "glibc.pthread.rseq=0:glibc.malloc.trim_threshold=1"], true),
        (["MALLOC_TRIM_THRESHOLD_": "0"], true),
        (["MALLOC_MMAP_THRESHOLD_": "131072"], true),
        (["MALLOC_TOP_PAD_": "0"], true),
        (["MALLOC_MMAP_MAX_": "0"], true),
        (["PATH": "/bin"], false),
    ])
    func userSettings(_ c: ([String: String], Bool)) {
        #expect(HeapPolicy.userSetsAllocator { c.0[$0] } == c.1)
    }

    static let environmentSetsAllocator = HeapPolicy.userSetsAllocator { getenv($0).map { String(cString: $0) } }

    /// Whether glibc gave `pointer` (from malloc) a mapping of its own: the IS_MMAPPED bit
    /// (0x2) of the chunk's size word, just before the pointer. A property of this one block,
    /// so tests allocating on other threads cannot disturb it.
    static func mappedOnItsOwn(_ pointer: UnsafeMutableRawPointer) -> Bool {
        (pointer - MemoryLayout<UInt>.size).load(as: UInt.self) & 0x2 != 0
    }

    @Test("once applied, a block of a few MiB comes from the heap, not from a mapping of its own",
          .enabled(if: !environmentSetsAllocator, "the environment configures the allocator itself"))
    func applied() throws {
        // A pool in another test may have applied it already; either way it is in force after.
        #expect(HeapPolicy.apply())
        #expect(HeapPolicy.apply())  // idempotent
        HeapPolicy.leaveAllocatorAlone()  // too late: no effect
        #expect(HeapPolicy.apply())
        // glibc's default threshold (128 KiB, raised only by freeing such a block) maps this one.
        let size = 8 << 20
        let block = try #require(malloc(size))
        defer { free(block) }
        memset(block, 1, size)
        #expect(!Self.mappedOnItsOwn(block), "an 8 MiB block was mapped on its own")
        // The bit is what the test thinks it is: a block above the policy's threshold is mapped.
        let huge = try #require(malloc(HeapPolicy.mmapThreshold + (1 << 20)))
        defer { free(huge) }
        #expect(Self.mappedOnItsOwn(huge))
    }
}
#endif
