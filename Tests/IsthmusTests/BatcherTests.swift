import Testing
import IsthmusArrow
@testable import Isthmus

private func ints(_ range: Range<Int>) -> RecordBatch {
    try! RecordBatch(["x": ArrayData.int64(range.map { Int64($0) })])
}

private func values(_ batches: [RecordBatch]) -> [Int64] {
    batches.flatMap { b in (0..<b.length).map { b.columns[0].int64($0)! } }
}

@Suite("Batcher: cut by rows, bytes and linger")
struct BatcherTests {
    @Test("a large input is sliced into full batches without copying, the rest is held")
    func slicesLargeInput() {
        var b = Batcher(maxRows: 4, maxBytes: 1 << 20, linger: 1)
        let (out, copied) = Buffer.copiedBytes { b.push(ints(0..<10), now: 0) }
        #expect(out.map(\.length) == [4, 4])
        #expect(values(out) == Array(0..<8))
        #expect(copied == 0)
        #expect(b.pendingRows == 2)
        #expect(b.deadline == 1)
        #expect(values([b.flush()!]) == [8, 9])
    }

    @Test("a limit lowered below the held rows sends the held rows first, then cuts at the new limit")
    func limitDropsBelowHeld() {
        var b = Batcher(maxRows: 100, maxBytes: 1 << 20, linger: 10)
        #expect(b.push(ints(0..<60), now: 0).isEmpty)
        b.maxRows = 8  // the latency target halved the size twice
        let out = b.push(ints(60..<80), now: 1)
        #expect(out.map(\.length) == [60, 8, 8])
        #expect(values(out) == Array(0..<76))
        #expect(b.pendingRows == 4)
        #expect(values([b.flush()!]) == [76, 77, 78, 79])
    }

    @Test("small inputs are gathered until the row bound")
    func gathersSmallInputs() {
        var b = Batcher(maxRows: 5, maxBytes: 1 << 20, linger: 10)
        #expect(b.push(ints(0..<2), now: 0).isEmpty)
        #expect(b.push(ints(2..<4), now: 1).isEmpty)
        let out = b.push(ints(4..<7), now: 2)
        #expect(out.map(\.length) == [5])
        #expect(values(out) == [0, 1, 2, 3, 4])
        #expect(b.pendingRows == 2)
        #expect(b.deadline == 12)   // held since the row that started the new batch
    }

    @Test("linger expiry flushes only after the deadline")
    func lingerExpiry() {
        var b = Batcher(maxRows: 100, maxBytes: 1 << 20, linger: 0.005)
        _ = b.push(ints(0..<3), now: 10)
        #expect(b.expire(now: 10.004) == nil)
        let flushed = b.expire(now: 10.005)
        #expect(flushed?.length == 3)
        #expect(b.deadline == nil)
    }

    @Test("linger zero sends every input at once")
    func lingerZero() {
        var b = Batcher(maxRows: 1, maxBytes: 1 << 20, linger: 0)
        #expect(b.push(ints(0..<1), now: 0).map(\.length) == [1])
        var c = Batcher(maxRows: 100, maxBytes: 1 << 20, linger: 0)
        #expect(c.push(ints(0..<3), now: 0).map(\.length) == [3])
        #expect(c.pendingRows == 0)
    }

    @Test("the byte bound limits rows per batch", arguments: [(64, 8), (16, 2), (1, 1)])
    func byteBound(maxBytes: Int, rows: Int) {
        var b = Batcher(maxRows: 1000, maxBytes: maxBytes, linger: 1)
        let out = b.push(ints(0..<16), now: 0)
        #expect(out.allSatisfy { $0.length == rows })
        #expect(out.count == 16 / rows)
    }

    @Test("empty inputs are ignored")
    func empty() {
        var b = Batcher(maxRows: 10, maxBytes: 100, linger: 1)
        #expect(b.push(ints(0..<0), now: 0).isEmpty)
        #expect(b.flush() == nil)
    }
}

@Suite("Hash partitioning")
struct PartitionTests {
    @Test("equal keys land in the same slot, every row exactly once, order kept per slot")
    func affinity() {
        let keys = ArrayData.utf8((0..<200).map { "k\($0 % 17)" })
        let ids = ArrayData.int64((0..<200).map { Int64($0) })
        let batch = try! RecordBatch(["key": keys, "id": ids])
        let p = HashPartitioner(column: 0, slots: 3)
        let parts = p.split(batch)
        var slotOfKey: [String: Int] = [:]
        var seen: [Int64] = []
        for (slot, part) in parts {
            var last: Int64 = -1
            for i in 0..<part.length {
                let k = part.columns[0].string(i)!
                #expect(slotOfKey[k, default: slot] == slot)
                slotOfKey[k] = slot
                let id = part.columns[1].int64(i)!
                #expect(id > last)
                last = id
                seen.append(id)
            }
        }
        #expect(seen.sorted() == (0..<200).map { Int64($0) })
        #expect(Set(slotOfKey.values).count > 1)
    }

    @Test("the hash is stable across runs (FNV-1a reference values)")
    func stable() {
        let a = ArrayData.utf8(["", "a"])
        #expect(HashPartitioner.hash(a, 0) == 0xcbf2_9ce4_8422_2325)
        #expect(HashPartitioner.hash(a, 1) == 0xaf63_dc4c_8601_ec8c)
    }
}

@Suite("Bounded channel")
struct ChannelTests {
    @Test("items arrive in order, close ends the stream, a deadline times out")
    func order() throws {
        let c = Channel<Int>(capacity: 2)
        #expect(c.send(1))
        #expect(c.send(2))
        guard case .item(1) = try c.receive() else { Issue.record("expected 1"); return }
        guard case .item(2) = try c.receive() else { Issue.record("expected 2"); return }
        guard case .timedOut = try c.receive(until: Date(timeIntervalSinceNow: 0.01)) else { Issue.record("expected timeout"); return }
        c.close()
        guard case .closed = try c.receive() else { Issue.record("expected closed"); return }
        #expect(!c.send(3))
    }

    @Test("a failure reaches the receiver after the items before it")
    func failure() throws {
        struct Boom: Error {}
        let c = Channel<Int>(capacity: 4)
        c.send(7)
        c.fail(Boom())
        guard case .item(7) = try c.receive() else { Issue.record("expected 7"); return }
        #expect(throws: Boom.self) { _ = try c.receive() }
    }
}

import Foundation

@Suite("Adaptive batch size (AIMD)")
struct AdaptiveBatchSizeTests {
    @Test("grows additively well under the target, holds near it, halves close to it, stays in bounds")
    func aimd() {
        var c = AdaptiveBatchSize(target: 0.005, initial: 1000, minRows: 100, maxRows: 1200, step: 100)
        #expect(c.observe(latency: 0.002) == 1100)
        #expect(c.observe(latency: 0.0025) == 1200)         // at 50 % of the target: still grows
        #expect(c.observe(latency: 0.001) == 1200)          // capped
        #expect(c.observe(latency: 0.0026) == 1200)         // between 50 % and 70 %: holds
        #expect(c.observe(latency: 0.0034) == 1200)
        #expect(c.observe(latency: 0.0036) == 600)          // over 70 %: halved
        #expect(c.observe(latency: 0.9) == 300)
        #expect(c.observe(latency: 0.9) == 150)
        #expect(c.observe(latency: 0.9) == 100)             // floor
        #expect(c.observe(latency: 0.0) == 200)
    }

    @Test("answers about batches cut before the last change do not move the size again")
    func staleAnswers() {
        var c = AdaptiveBatchSize(target: 0.005, initial: 1000, minRows: 100, maxRows: 8000, step: 500)
        #expect(c.observe(latency: 0.001, rows: 1000) == 1500)   // at the current size: grow
        #expect(c.observe(latency: 0.001, rows: 1000) == 1500)   // cut before the growth: no news
        #expect(c.observe(latency: 0.001, rows: 1500) == 2000)
        #expect(c.observe(latency: 0.009, rows: 2000) == 1000)   // over: halve
        #expect(c.observe(latency: 0.009, rows: 2000) == 1000)   // cut before the halving: already handled
        #expect(c.observe(latency: 0.009, rows: 600) == 500)     // smaller and still over: halve again
        #expect(c.observe(latency: 0.001, rows: 7000) == 1000)   // bigger and within: grow
    }

    @Test("with pipelined answers it settles under the target instead of swinging")
    func pipelined() {
        // 4 batches in flight; a batch costs 1 µs per row plus 0.5 ms; its answer arrives four
        // decisions after it was cut. 4,500 rows meet a 5 ms target; the controller grows only
        // while a batch takes at most half of it (2,000 rows here), so it settles at or above
        // that and never near the 4,500 where noise would take the tail over the target.
        var c = AdaptiveBatchSize(target: 0.005, initial: 1024, maxRows: 65_536, step: 1024)
        var inFlight = [Int](repeating: 1024, count: 4)
        var sizes: [Int] = []
        for _ in 0..<600 {
            let done = inFlight.removeFirst()
            sizes.append(c.observe(latency: 0.0005 + Double(done) * 1e-6, rows: done))
            inFlight.append(c.rows)
        }
        let tail = sizes.suffix(300)
        #expect(tail.max()! <= 4_500 + 1024)
        #expect(Double(tail.reduce(0, +)) / Double(tail.count) >= 2_000)
    }

    @Test("converges near the size whose latency meets the target")
    func converges() {
        // A stage that costs 1 µs per row plus 0.5 ms per batch: 4,500 rows meet a 5 ms target.
        var c = AdaptiveBatchSize(target: 0.005, initial: 100, maxRows: 65_536, step: 256)
        var sizes: [Int] = []
        for _ in 0..<400 { sizes.append(c.observe(latency: 0.0005 + Double(c.rows) * 1e-6)) }
        let tail = sizes.suffix(100)
        #expect(tail.allSatisfy { $0 <= 4_500 + 256 })
        #expect(Double(tail.reduce(0, +)) / Double(tail.count) > 2_000)
    }
}
