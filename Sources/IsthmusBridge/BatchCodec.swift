import IsthmusArrow
import IsthmusZMQ

/// Record batches to and from the payload frames of BATCH and RESULT messages: the frames of a
/// payload, concatenated, are one Arrow IPC stream (PROTOCOL.md §BATCH).
///
/// Sending copies no column buffer of `coalesceLimit` bytes or more: the frames are views of
/// the batch's own buffers. Smaller pieces next to each other (the IPC metadata, padding, the
/// end-of-stream marker, tiny columns) are gathered into one frame, since a frame costs more
/// than copying a few hundred bytes. Receiving a single-frame stream copies nothing: the
/// batch's buffers point into the ZeroMQ message.
public enum BatchCodec {
    /// Pieces smaller than this are gathered into shared frames.
    public static let coalesceLimit = 512

    /// The encapsulated IPC schema message for `schema`.
    public static func schemaMessage(_ schema: Schema) -> Buffer {
        IPCEncoder.schemaMessage(schema)
    }

    /// The payload pieces for `batch`: schema, dictionaries, record batch, end of stream.
    public static func encode(_ batch: RecordBatch, schemaMessage: Buffer) throws -> [Buffer] {
        var pieces = [schemaMessage]
        for message in try IPCEncoder.recordBatch(batch) {
            pieces.append(message.metadata)
            pieces.append(contentsOf: message.body)
        }
        pieces.append(IPCEncoder.endOfStream)
        return coalesce(pieces)
    }

    static func coalesce(_ pieces: [Buffer]) -> [Buffer] {
        var out: [Buffer] = []
        let small = BufferBuilder(capacity: 1024)
        for piece in pieces {
            if piece.count < coalesceLimit {
                small.append(piece.bytes)
            } else {
                if small.count > 0 { out.append(small.finish()) }
                out.append(piece)
            }
        }
        if small.count > 0 { out.append(small.finish()) }
        return out
    }

    /// Turns a received frame into a buffer that owns it, without copying (unless libzmq
    /// delivered it at an address not aligned to 8 bytes, which Arrow's layout needs).
    public static func buffer(from message: Message) -> Buffer {
        let frame = message.takeBuffer()
        if Int(bitPattern: frame.base) % 8 != 0 {
            return Buffer(copying: frame.bytes)
        }
        let owner = FrameOwner(frame.owner)
        let storage = BufferStorage(base: frame.base, count: frame.count) { _, _ in withExtendedLifetime(owner) {} }
        return Buffer(storage: storage)
    }

    /// Decodes a RESULT payload: one Arrow IPC stream with zero or more batches.
    public static func decodeResult(_ frames: [Message]) throws -> [RecordBatch] {
        if frames.count == 1 { return try decodeResult(buffer(from: frames[0])) }
        let all = BufferBuilder(capacity: frames.reduce(0) { $0 + $1.count })
        for f in frames { all.append(f.bytes) }
        return try decodeResult(all.finish())
    }

    /// Decodes one Arrow IPC stream in place (a joined payload, or a region of the arena).
    public static func decodeResult(_ stream: Buffer) throws -> [RecordBatch] {
        let reader = try IPCStreamReader(buffer: stream)
        var batches: [RecordBatch] = []
        while let b = try reader.next() { batches.append(b) }
        return batches
    }

    /// Decodes an encapsulated IPC schema message (READY's declared schemas).
    public static func decodeSchema(_ frame: Message) throws -> Schema {
        try IPCEncoder.decodeSchemaMessage(buffer(from: frame))
    }
}

/// Keeps a received ZeroMQ frame alive for as long as Arrow buffers point into it.
///
/// `@unchecked Sendable`: the frame is immutable after receipt and released once.
final class FrameOwner: @unchecked Sendable {
    let owner: AnyObject
    init(_ owner: AnyObject) { self.owner = owner }
}
