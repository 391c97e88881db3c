import Foundation
import IsthmusArrow
import Testing
@testable import IsthmusBridge

/// The mailbox layout of the doorbells (PROTOCOL.md §18.2): written by one process, read by
/// another that must not trust it.
@Suite("doorbell mailboxes")
struct MailboxTests {
    static func encode(_ frames: [[UInt8]], capacity: Int) -> [UInt8]? {
        let pieces = frames.map { f in f.withUnsafeBytes { Buffer(copying: $0) } }
        var box = [UInt8](repeating: 0xEE, count: capacity)
        let ok = box.withUnsafeMutableBytes { MailboxMessage.encode(pieces.map(\.bytes), into: $0) }
        return ok ? box : nil
    }

    static func decode(_ box: [UInt8]) throws -> [[UInt8]] {
        try box.withUnsafeBytes { try MailboxMessage.decode($0) }
    }

    @Test("frames of every length come back as written, each starting 8-byte aligned")
    func roundTrip() throws {
        for lengths in [[24], [24, 0], [24, 1, 7, 8, 9], [24, 300, 65], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]] {
            let frames = lengths.enumerated().map { i, n in (0..<n).map { UInt8(truncatingIfNeeded: $0 * 31 + i) } }
            let box = try #require(Self.encode(frames, capacity: 4096))
            #expect(try Self.decode(box) == frames, "\(lengths)")
            var at = 8
            for n in lengths {
                #expect(box[at..<at + 8].elementsEqual(withUnsafeBytes(of: UInt64(n).littleEndian) { Array($0) }))
                at += 8
                #expect(at % 8 == 0)
                #expect(box[(at + n)..<(at + (n + 7) / 8 * 8)].allSatisfy { $0 == 0 }, "padding is zeroed")
                at += (n + 7) / 8 * 8
            }
        }
    }

    @Test("a message that does not fit, or has no frame or too many, is not written")
    func doesNotFit() {
        #expect(Self.encode([[UInt8](repeating: 1, count: 100)], capacity: 8 + 8 + 104) != nil)
        #expect(Self.encode([[UInt8](repeating: 1, count: 100)], capacity: 8 + 8 + 103) == nil)
        #expect(Self.encode([], capacity: 64) == nil)
        #expect(Self.encode(Array(repeating: [1], count: MailboxMessage.maxFrames + 1), capacity: 8192) == nil)
    }

    @Test("mailboxes that lie are refused with what was expected and found")
    func hostile() throws {
        let good = try #require(Self.encode([[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12]], capacity: 64))
        func refused(_ box: [UInt8], _ words: String) {
            do {
                _ = try Self.decode(box)
                Issue.record("expected a refusal containing '\(words)'")
            } catch let error as ProtocolViolation {
                #expect(error.message.contains(words), "\(error.message)")
            } catch {
                Issue.record("expected a ProtocolViolation, found \(error)")
            }
        }
        var zero = good
        zero[0] = 0
        refused(zero, "expected 1 to 64 frames")
        var many = good
        many[0] = 200
        refused(many, "expected 1 to 64 frames")
        var long = good
        long.replaceSubrange(8..<16, with: withUnsafeBytes(of: UInt64.max.littleEndian) { Array($0) })
        refused(long, "expected frame 0 inside the 64-byte mailbox")
        var past = Array(good.prefix(8 + 16 + 24))  // exactly the two frames written
        past[0] = 9  // nine frames claimed: the third length would lie past the end
        refused(past, "past the end")
        refused([1, 0, 0], "at least 8 bytes")
        // Random bytes never crash the reader.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var box = (0..<Int.random(in: 0..<80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if box.count >= 4 && Bool.random(using: &rng) { box[0] = UInt8.random(in: 1...3, using: &rng); box[1] = 0; box[2] = 0; box[3] = 0 }
            _ = try? Self.decode(box)
        }
    }
}

/// A slot's doorbells on the host's side: two FIFOs in the run folder, `slots` mailboxes each way in the arena.
@Suite("doorbells")
struct DoorbellTests {
    static func folder() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("isthmus-bell-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("the FIFOs are private, a message goes into the request mailbox, and both go away with the doorbell")
    func lifecycle() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let arena = try SharedArena(size: 1 << 20)
        var bell: Doorbell? = try Doorbell(directory: dir, slot: 3, arena: arena)
        let offer = try #require(bell?.offer)
        #expect(offer.requestFifo == "\(dir)/slot3.request" && offer.replyFifo == "\(dir)/slot3.reply")
        #expect(offer.size == Doorbell.mailboxBytes && offer.requestOffset != offer.replyOffset && offer.slots == 1)
        let mode = try FileManager.default.attributesOfItem(atPath: offer.requestFifo)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let frame = Buffer([1, 2, 3])
        #expect(bell?.send([frame.bytes], slot: 0) == true)
        let box = UnsafeRawBufferPointer(start: arena.base + offer.requestOffset, count: offer.size)
        #expect(try MailboxMessage.decode(box) == [[1, 2, 3]])
        #expect(bell?.rings() == [])  // nothing on the reply FIFO
        bell = nil
        #expect(!FileManager.default.fileExists(atPath: offer.requestFifo))
        #expect(!FileManager.default.fileExists(atPath: offer.replyFifo))
    }

    @Test("with several mailboxes each ring names its mailbox, and replies are taken from the mailbox rung")
    func slots() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let arena = try SharedArena(size: 4 << 20)
        let bell = try Doorbell(directory: dir, slot: 0, slots: 3, arena: arena)
        let offer = bell.offer
        #expect(offer.slots == 3 && bell.slots == 3)
        // The request FIFO carries slot + 1 per message; the message is in that mailbox.
        let worker = open(offer.requestFifo, O_RDONLY | O_NONBLOCK)
        #expect(worker >= 0)
        defer { close(worker) }
        let frame = Buffer([7, 8])
        #expect(bell.send([frame.bytes], slot: 2))
        var ring = [UInt8](repeating: 0, count: 8)
        #expect(read(worker, &ring, 8) == 1 && ring[0] == 3)
        let third = UnsafeRawBufferPointer(start: arena.base + offer.requestOffset + 2 * offer.size, count: offer.size)
        #expect(try MailboxMessage.decode(third) == [[7, 8]])
        // Replies: the worker writes mailbox j and rings j + 1, in any order.
        for (j, bytes) in [(1, [UInt8]([1])), (0, [2, 2])] {
            let box = UnsafeMutableRawBufferPointer(start: arena.base + offer.replyOffset + j * offer.size, count: offer.size)
            let f = Buffer(bytes)
            #expect(MailboxMessage.encode([f.bytes], into: box))
        }
        let replier = open(offer.replyFifo, O_WRONLY | O_NONBLOCK)
        #expect(replier >= 0)
        defer { close(replier) }
        var rings: [UInt8] = [2, 1]
        #expect(write(replier, &rings, 2) == 2)
        #expect(bell.rings() == [2, 1])
        #expect(try bell.takeReply(slot: 1) == [[1]])
        #expect(try bell.takeReply(slot: 0) == [[2, 2]])
        #expect(bell.rings() == [])
        // More mailboxes than the cap are not taken: credits beyond it use the socket.
        #expect(try Doorbell(directory: dir, slot: 1, slots: 100, arena: arena).slots == Doorbell.maxSlots)
    }

    @Test("a full arena gives no doorbell, with what was expected and found")
    func fullArena() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let arena = try SharedArena(size: 1 << 20)
        let all = try #require(arena.lease(1 << 20))
        do {
            _ = try Doorbell(directory: dir, slot: 0, arena: arena)
            Issue.record("expected no doorbell from a full arena")
        } catch {
            #expect(error.description == "expected room in the arena for 2 mailboxes of 65536 bytes, found none free")
        }
        withExtendedLifetime(all) {}
    }
}
