import Foundation
import IsthmusArrow

/// A batch waiting to be sent, or being resent.
struct PendingBatch: Sendable {
    var sequence: UInt64
    var attempt: UInt32 = 0
    /// Row number of the batch's first row in the whole input.
    var rowStart: Int
    var rows: Int
    /// The encoded IPC stream pieces (zero-copy views of the batch's buffers).
    var payload: [Buffer]
    var payloadBytes: Int
    /// Slot the batch must go to (hash partitioning, broadcast), or nil for any.
    var slot: Int?
    /// The arena region holding `payload` (one IPC stream), when the batch was copied there.
    var region: ArenaLease?
    /// Where the batch is in a shared input file, when it goes to workers that map the file
    /// instead of being copied into the arena (§19).
    var origin: BatchOrigin?
    /// The region offered to the worker for its result, while the batch is in flight.
    var resultRegion: ArenaLease?
    /// What the BATCH told the worker about both regions (nil: sent as frames).
    var offered: RegionDescriptors.Batch?
    /// The request mailbox the current attempt went through (§18); nil: the socket.
    var doorbellSlot: Int?
    /// The batch itself, when the caller wants it back with the result.
    var input: RecordBatch?
    var failures = 0
    var lastCause = ""
    /// When the batch was first sent (latency counts from here).
    var sentAt = 0.0
    /// When the current attempt was sent (the deadline counts from here).
    var dispatchedAt = 0.0
}

/// A finished batch as the consumer receives it, in input order unless the pool is unordered.
public struct PoolResult: Sendable {
    /// Sequence number of the input batch.
    public var sequence: UInt64
    /// Row number of the input batch's first row.
    public var rowStart: Int
    /// Rows of the input batch.
    public var inputRows: Int
    /// What the last stage returned (zero or more batches).
    public var batches: [RecordBatch]
    /// Seconds from first send to result.
    public var latency: Double
    /// The input batch, when it was submitted with `keepInput`.
    public var input: RecordBatch?
    /// Input rows the worker isolated as failing (stage option `on_error: skip`), by row index.
    public var failures: [ControlDocuments.RowFailure] = []
    /// Total result rows.
    public var rows: Int { batches.reduce(0) { $0 + $1.length } }
}

/// Events other threads post to the pool's I/O thread.
enum PoolEvent: Sendable {
    case exited(slot: Int, generation: Int, cause: ExitCause, stderrTail: [String])
}

/// State shared between the submitting thread, the consuming thread and the I/O thread.
///
/// `@unchecked Sendable`: every field is read and written only while `condition` is locked.
final class PoolShared: @unchecked Sendable {
    let condition = NSCondition()
    var inbox: [PendingBatch] = []
    var events: [PoolEvent] = []
    var completed: [UInt64: PoolResult] = [:]
    var completedFIFO: [PoolResult] = []
    var submitted: UInt64 = 0
    var consumed: UInt64 = 0
    var inputFinished = false
    var stopRequested = false
    var ioFinished = false
    /// Whether a caller is turning the I/O loop for its own request (`WorkerPool.result(for:)`).
    var driving = false
    var failure: BridgeError?
    var stats = PoolStats()
    /// Whether recent submits waited for the window (`WorkerPool.submit`).
    var pace = SubmitPace()

    /// Whether the answer to batch `sequence` is waiting to be taken (call under the lock).
    func isAnswered(_ sequence: UInt64) -> Bool {
        completed[sequence] != nil || completedFIFO.contains { $0.sequence == sequence }
    }

    func locked<R>(_ body: () throws -> R) rethrows -> R {
        condition.lock()
        defer { condition.unlock() }
        return try body()
    }
}
