import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One local worker's doorbells (PROTOCOL.md §18): `slots` request and as many reply
/// mailboxes in the shared arena, and a FIFO for each direction that carries one byte per
/// message, naming the mailbox (slot + 1).
///
/// Why: over ZeroMQ every message wakes two more threads (the host's ZeroMQ I/O thread and the
/// worker's) on its way, and on a virtual machine a wake-up on another, idle CPU costs tens of
/// microseconds. Through the doorbell the host wakes the worker's main thread directly and the
/// worker wakes the host: a one-row request takes two wake-ups instead of six, and a pipelined
/// batch costs about a third less CPU (measured in `PROTOCOL.md` §18). Everything else
/// (handshake, heartbeats, RELEASE, CLOSE, answers that do not fit) stays on the socket.
///
/// Rules that make the mailboxes safe without locks: the host puts one BATCH in a request
/// mailbox and does not touch that mailbox again until the batch is answered (by either path)
/// or the worker is gone; the worker writes reply mailbox `j` only to answer the BATCH of
/// request mailbox `j`, and the host copies the reply out before it can ring `j` again. The
/// FIFO write and read are system calls, which order the mailboxes' bytes between the
/// processes.
final class Doorbell {
    /// Bytes of each mailbox: everything under the arena threshold fits (batches from 32 KiB
    /// up travel as region descriptors, which are small).
    static let mailboxBytes = 64 << 10
    /// At most this many mailboxes each way (a worker's credits beyond it use the socket):
    /// 2 × 8 × 64 KiB = 1 MiB of the arena per worker.
    static let maxSlots = 8

    let requestPath: String
    let replyPath: String
    /// Mailboxes each way.
    let slots: Int
    private let requestFD: Int32
    /// Read end of the reply FIFO, polled by whoever waits for an answer.
    let replyFD: Int32
    private let request: ArenaLease
    private let reply: ArenaLease

    /// Creates the FIFOs in the run directory and takes the mailboxes from the arena. The host
    /// opens each FIFO read-write, so neither open blocks and neither end sees end-of-file
    /// while workers come and go.
    init(directory: String, slot: Int, slots: Int = 1, arena: SharedArena) throws(ArenaUnavailable) {
        let slots = Swift.max(1, Swift.min(slots, Self.maxSlots))
        let bytes = slots * Self.mailboxBytes
        guard let request = arena.lease(bytes), let reply = arena.lease(bytes) else {
            throw ArenaUnavailable("expected room in the arena for \(2 * slots) mailboxes of \(Self.mailboxBytes) bytes, found none free")
        }
        self.slots = slots
        self.request = request
        self.reply = reply
        requestPath = "\(directory)/slot\(slot).request"
        replyPath = "\(directory)/slot\(slot).reply"
        var fds: [Int32] = []
        for path in [requestPath, replyPath] {
            unlink(path)
            guard mkfifo(path, 0o600) == 0 else {
                let why = String(cString: strerror(errno))
                fds.forEach { close($0) }
                throw ArenaUnavailable("cannot create the FIFO \(path): \(why)")
            }
            let fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else {
                let why = String(cString: strerror(errno))
                fds.forEach { close($0) }
                throw ArenaUnavailable("cannot open the FIFO \(path): \(why)")
            }
            fds.append(fd)
        }
        requestFD = fds[0]
        replyFD = fds[1]
    }

    deinit {
        close(requestFD)
        close(replyFD)
        unlink(requestPath)
        unlink(replyPath)
    }

    /// What OPEN tells the worker.
    var offer: ControlDocuments.DoorbellOffer {
        ControlDocuments.DoorbellOffer(requestFifo: requestPath, replyFifo: replyPath, requestOffset: request.offset,
                                       replyOffset: reply.offset, size: Self.mailboxBytes, slots: slots)
    }

    /// Puts `frames` in request mailbox `slot` and rings; false (nothing rung) when they do
    /// not fit.
    func send(_ frames: [UnsafeRawBufferPointer], slot: Int) -> Bool {
        precondition(slot >= 0 && slot < slots, "doorbell slot \(slot) of \(slots)")
        let box = UnsafeMutableRawBufferPointer(start: request.pointer + slot * Self.mailboxBytes, count: Self.mailboxBytes)
        guard MailboxMessage.encode(frames, into: box) else { return false }
        var b = UInt8(slot + 1)
        return write(requestFD, &b, 1) == 1
    }

    /// The reply mailboxes the worker rang since the last call, in the order it rang them, as
    /// the bytes it wrote (slot + 1; the caller checks them). Consumes the rings.
    func rings() -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(replyFD, $0.baseAddress, $0.count) }
            guard n > 0 else { return out }
            out += buffer[0..<n]
            if n < buffer.count { return out }
        }
    }

    /// The message in reply mailbox `slot`, copied out (the worker could write it again).
    func takeReply(slot: Int) throws(ProtocolViolation) -> [[UInt8]] {
        precondition(slot >= 0 && slot < slots, "doorbell slot \(slot) of \(slots)")
        return try MailboxMessage.decode(UnsafeRawBufferPointer(start: reply.pointer + slot * Self.mailboxBytes, count: Self.mailboxBytes))
    }

    /// Forgets every ring in both directions: after a worker is gone, before its successor
    /// starts, so no stale byte makes either side read an old mailbox.
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 256)
        for fd in [requestFD, replyFD] {
            while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
        }
    }
}

/// The layout of one message in a mailbox (PROTOCOL.md §18.2), little-endian: the frame count
/// (u32, 1 to 64) and a zero u32, then per frame its length (u64) and its bytes, padded with
/// zeros to a multiple of 8, so every frame starts 8-byte aligned as Arrow buffers need.
enum MailboxMessage {
    static let maxFrames = 64

    /// Writes `frames` into `mailbox`; false (nothing written) when they do not fit.
    static func encode(_ frames: [UnsafeRawBufferPointer], into mailbox: UnsafeMutableRawBufferPointer) -> Bool {
        guard !frames.isEmpty, frames.count <= maxFrames else { return false }
        let total = 8 + frames.reduce(0) { $0 + 8 + padded($1.count) }
        guard total <= mailbox.count, let base = mailbox.baseAddress else { return false }
        base.storeBytes(of: UInt32(frames.count).littleEndian, as: UInt32.self)
        base.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        var at = 8
        for f in frames {
            base.storeBytes(of: UInt64(f.count).littleEndian, toByteOffset: at, as: UInt64.self)
            at += 8
            if let src = f.baseAddress, f.count > 0 { (base + at).copyMemory(from: src, byteCount: f.count) }
            let end = at + padded(f.count)
            if end > at + f.count { (base + at + f.count).initializeMemory(as: UInt8.self, repeating: 0, count: end - at - f.count) }
            at = end
        }
        return true
    }

    /// The frames of the message in `mailbox`, copied out; every length is read once and
    /// checked against the mailbox before anything is copied.
    static func decode(_ mailbox: UnsafeRawBufferPointer) throws(ProtocolViolation) -> [[UInt8]] {
        guard mailbox.count >= 8 else { throw ProtocolViolation("expected a mailbox of at least 8 bytes, found \(mailbox.count)") }
        let count = Int(UInt32(littleEndian: mailbox.loadUnaligned(as: UInt32.self)))
        guard count >= 1 && count <= maxFrames else {
            throw ProtocolViolation("expected 1 to \(maxFrames) frames in the mailbox message, found \(count)")
        }
        var frames: [[UInt8]] = []
        frames.reserveCapacity(count)
        var at = 8
        for i in 0..<count {
            guard at + 8 <= mailbox.count else {
                throw ProtocolViolation("expected the length of frame \(i) inside the \(mailbox.count)-byte mailbox, found it past the end")
            }
            let raw = UInt64(littleEndian: mailbox.loadUnaligned(fromByteOffset: at, as: UInt64.self))
            at += 8
            guard raw <= UInt64(mailbox.count - at) else {
                throw ProtocolViolation("expected frame \(i) inside the \(mailbox.count)-byte mailbox, found \(raw) bytes at offset \(at)")
            }
            let n = Int(raw)
            frames.append(Array(UnsafeRawBufferPointer(rebasing: mailbox[at..<(at + n)])))
            at += padded(n)
        }
        return frames
    }

    private static func padded(_ n: Int) -> Int { (n + 7) & ~7 }
}
