import Foundation
import Testing
@testable import IsthmusZMQ

/// Owner object for zero-copy test buffers; counts releases.
final class Tracked: @unchecked Sendable {
    // @unchecked: the counter is only touched through `Locked`-free atomics-free paths in one test thread
    // and libzmq's release callback, which runs before `receive` returns on the peer (checked after close).
    nonisolated(unsafe) static var released = 0
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    deinit { Tracked.released += 1 }
}

@Suite("ZeroMQ wrapper")
struct SocketTests {
    @Test("ROUTER/DEALER multipart round trip over ipc, zero-copy send releases its owner")
    func roundTrip() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("isthmus-zmq-test-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ctx = try Context()
        let router = try ctx.socket(.router)
        let dealer = try ctx.socket(.dealer)
        try dealer.set(.routingID, "w0-1")
        let endpoint = "ipc://\(dir)/t.sock"
        try router.bind(endpoint)
        try dealer.connect(endpoint)

        let before = Tracked.released
        do {
            let payload = Tracked(Array(repeating: 7, count: 100_000))
            let frame = payload.bytes.withUnsafeBytes { ZMQBuffer(base: $0.baseAddress!, count: $0.count, owner: payload) }
            #expect(try dealer.send([Message.copy([1, 2, 3]), Message(buffer: frame)]))
        }
        var poller = Poller()
        poller.add(router)
        let ready = try poller.poll(timeoutMilliseconds: 5000)
        #expect(ready[0].contains(.readable))
        let frames = try #require(try router.receive())
        #expect(frames.count == 3)
        #expect(Array(frames[0].bytes) == Array("w0-1".utf8))
        #expect(Array(frames[1].bytes) == [1, 2, 3])
        #expect(frames[2].count == 100_000)
        #expect(frames[2].bytes.allSatisfy { $0 == 7 })
        // Taking the buffer keeps the bytes without copying them.
        let owned = frames[2].takeBuffer()
        #expect(owned.count == 100_000 && owned.bytes[99_999] == 7)
        dealer.close()
        router.close()
        // libzmq released our zero-copy frame's owner once it was sent.
        // (Up to 10 s: on a loaded machine other suites run Python workers in parallel.)
        for _ in 0..<1000 where Tracked.released == before { usleep(10_000) }
        #expect(Tracked.released == before + 1)
    }

    @Test("receive without waiting returns nil when nothing is queued; errors are typed")
    func nonBlocking() throws {
        let ctx = try Context()
        let s = try ctx.socket(.dealer)
        #expect(try s.receive(dontWait: true) == nil)
        #expect(throws: ZMQError.self) { try s.bind("bogus://nowhere") }
        let keys = try Context.curveKeyPair()
        #expect(keys.publicKey.count == 40 && keys.secretKey.count == 40)
    }
}
