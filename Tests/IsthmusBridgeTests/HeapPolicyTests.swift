#if canImport(Glibc)
import CMalloc
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

    @Test("once applied, a block of a few MiB comes from the heap, not from a mapping of its own")
    func applied() throws {
        let environmentSetsIt = HeapPolicy.userSetsAllocator { getenv($0).map { String(cString: $0) } }
        try #require(!environmentSetsIt, "the test's environment configures the allocator itself")
        #expect(HeapPolicy.apply())
        #expect(HeapPolicy.apply())  // idempotent
        let size = 8 << 20
        // hblkhd: bytes in blocks the allocator mapped on their own. glibc's default threshold
        // (128 KiB, raised only by freeing such a block) would map this one.
        let before = mallinfo2().hblkhd
        let block = try #require(malloc(size))
        memset(block, 1, size)
        let during = mallinfo2().hblkhd
        free(block)
        #expect(during < before + size, "an 8 MiB block was mapped on its own: \(before) -> \(during) bytes in mapped blocks")
    }
}
#endif
