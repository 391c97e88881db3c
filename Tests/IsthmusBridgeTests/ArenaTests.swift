import Foundation
import IsthmusArrow
import Testing
@testable import IsthmusBridge

@Suite("Arena allocator")
struct ArenaAllocatorTests {
    @Test("first fit from the lowest offset, sizes rounded to the alignment")
    func firstFit() {
        var a = ArenaAllocator(capacity: 1000, alignment: 64)
        #expect(a.capacity == 960)  // rounded down to the alignment
        #expect(a.allocate(1) == 0)
        #expect(a.allocate(64) == 64)
        #expect(a.allocate(65) == 128)
        #expect(a.used == 64 + 64 + 128)
        #expect(a.free == [.init(offset: 256, size: 704)])
        #expect(a.allocate(705) == nil)
        #expect(a.allocate(704) == 256)
        #expect(a.free.isEmpty && a.allocate(1) == nil)
        #expect(a.peakUsed == 960)
    }

    @Test("freed extents merge with both neighbours, and low offsets are reused first")
    func coalesce() {
        var a = ArenaAllocator(capacity: 640, alignment: 64)
        let offsets = (0..<10).map { _ in a.allocate(64)! }
        #expect(offsets == Array(stride(from: 0, to: 640, by: 64)))
        a.release(offset: 128, size: 64)
        a.release(offset: 256, size: 64)
        #expect(a.free == [.init(offset: 128, size: 64), .init(offset: 256, size: 64)])
        a.release(offset: 192, size: 64)  // joins both
        #expect(a.free == [.init(offset: 128, size: 192)])
        a.release(offset: 64, size: 1)  // joins the next one
        #expect(a.free == [.init(offset: 64, size: 256)])
        a.release(offset: 320, size: 64)  // joins the previous one
        #expect(a.free == [.init(offset: 64, size: 320)])
        #expect(a.allocate(100) == 64)
        for o in [0, 448, 512, 576, 384] { a.release(offset: o, size: 64) }
        a.release(offset: 64, size: 100)
        #expect(a.free == [.init(offset: 0, size: 640)] && a.used == 0)
    }

    @Test("random allocations and frees never overlap and always add up")
    func randomized() {
        var a = ArenaAllocator(capacity: 1 << 20, alignment: 64)
        var live: [(offset: Int, size: Int)] = []
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            if live.isEmpty || Int.random(in: 0..<3, using: &rng) > 0 {
                let size = Int.random(in: 1...40_000, using: &rng)
                if let o = a.allocate(size) { live.append((o, size)) }
            } else {
                let i = Int.random(in: 0..<live.count, using: &rng)
                a.release(offset: live[i].offset, size: live[i].size)
                live.remove(at: i)
            }
            let spans = (live.map { ($0.offset, a.rounded($0.size)) } + a.free.map { ($0.offset, $0.size) }).sorted { $0.0 < $1.0 }
            var end = 0
            for (o, n) in spans {
                #expect(o == end, "a gap or an overlap at \(o)")
                end = o + n
            }
            #expect(end == a.capacity)
            #expect(a.used == live.reduce(0) { $0 + a.rounded($1.size) })
        }
    }
}

@Suite("Shared arena")
struct SharedArenaTests {
    @Test("a region lives as long as a lease or a buffer over it")
    func leases() throws {
        let arena = try SharedArena(size: 1 << 20)
        #expect(arena.path.hasPrefix("/proc/\(getpid())/fd/"))
        var buffer: Buffer?
        do {
            let lease = try #require(arena.lease(1000))
            #expect(lease.fill(with: [Buffer([1, 2, 3]), Buffer([]), Buffer([4, 5])]) == 5)
            buffer = lease.buffer(count: 5)
            #expect(arena.allocator.used == 1024)
        }
        #expect(arena.allocator.used == 1024)  // the buffer keeps the region
        #expect(Array(buffer!.bytes) == [1, 2, 3, 4, 5])
        buffer = nil
        #expect(arena.allocator.used == 0)
        #expect(arena.allocator.peakUsed == 1024)
    }

    @Test("a full arena says no instead of waiting")
    func full() throws {
        let arena = try SharedArena(size: 1 << 20)
        do {
            let big = try #require(arena.lease(1 << 20))
            #expect(arena.lease(1) == nil)
            withExtendedLifetime(big) {}
        }
        let small = try #require(arena.lease(4096))  // the full-size lease is gone: its room is back
        #expect(small.offset == 0 && arena.allocator.used == 4096)
    }

    @Test("another process sees what the host wrote, through the path it is given")
    func visibleToAnotherProcess() throws {
        let arena = try SharedArena(size: 1 << 20)
        let lease = try #require(arena.lease(16))
        _ = lease.fill(with: [Buffer(Array("isthmus arena ok".utf8))])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "head -c \(lease.offset + 16) \(arena.path) | tail -c 16"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        p.waitUntilExit()
        #expect(String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) == "isthmus arena ok")
    }

    @Test("prefaulting touches only memory inside the arena and leaves it zero")
    func prefault() throws {
        let arena = try SharedArena(size: 1 << 20)
        arena.prefault(4 << 20)  // more than the arena: clamped
        let bytes = UnsafeRawBufferPointer(start: arena.base, count: arena.size)
        #expect(bytes.allSatisfy { $0 == 0 })
        #expect(arena.allocator.used == 0)
    }

    @Test("arenas smaller than 1 MiB are refused with the reason")
    func tooSmall() {
        #expect(throws: ArenaUnavailable.self) { try SharedArena(size: 4096) }
    }
}

@Suite("Region descriptors")
struct RegionDescriptorTests {
    let offered = RegionDescriptors.Batch(inputOffset: 0, inputLength: 64, resultOffset: 4096, resultCapacity: 1024)

    func decode(_ words: [Int], _ offered: RegionDescriptors.Batch? = nil) throws(ProtocolViolation) -> RegionDescriptors.Result {
        let bytes = RegionDescriptors.words(words)
        let result: Result<RegionDescriptors.Result, ProtocolViolation> = bytes.withUnsafeBytes { raw in
            Result { () throws(ProtocolViolation) in try RegionDescriptors.Result.decode(raw, offered: offered ?? self.offered) }
        }
        return try result.get()
    }

    @Test("a result descriptor must describe the offered region")
    func result() throws {
        #expect(try decode([4096, 1024]) == RegionDescriptors.Result(offset: 4096, length: 1024))
        #expect(try decode([4096, 64, 0, 8192]) == RegionDescriptors.Result(offset: 4096, length: 64, released: [0, 8192]))
        let cases: [([Int], RegionDescriptors.Batch?, String)] = [
            ([4096, 1025], nil, "expected a result of 8 to 1024 bytes in the region but found 1025 bytes"),
            ([4096, 0], nil, "expected a result of 8 to 1024 bytes"),
            ([0, 64], nil, "expected the result at arena offset 4096 but found offset 0"),
            ([4096], nil, "expected a result region descriptor of 16 bytes plus 8 per released region but found 8 bytes"),
            ([4096, 64], RegionDescriptors.Batch(inputOffset: 0, inputLength: 64, resultOffset: 0, resultCapacity: 0),
             "the host offered no result region"),
        ]
        for (words, offer, fragment) in cases {
            #expect(throws: ProtocolViolation.self) { try decode(words, offer) }
            do { _ = try decode(words, offer) } catch { #expect(error.message.contains(fragment), "\(error.message)") }
        }
    }

    @Test("RELEASE lists whole 8-byte offsets")
    func release() throws {
        #expect(try RegionDescriptors.encodeRelease([64, 1 << 33]).withUnsafeBytes { try RegionDescriptors.decodeRelease($0) } == [64, 1 << 33])
        for bad in [[UInt8](), [UInt8](repeating: 0, count: 12)] {
            #expect(throws: ProtocolViolation.self) { try bad.withUnsafeBytes { try RegionDescriptors.decodeRelease($0) } }
        }
    }
}
