import IsthmusArrow

/// Cuts a stream of record batches into batches bounded by rows and bytes, flushing a partial
/// batch when it has waited `linger` seconds. A pure state machine: the caller passes the
/// time and performs the actions; nothing here sleeps or reads a clock.
///
/// Large inputs are sliced (no copy); small inputs are gathered and concatenated (a copy of
/// the gathered rows only).
public struct Batcher: Sendable {
    /// Most rows per output batch (adaptive batching changes it between pushes).
    public var maxRows: Int { didSet { maxRows = Swift.max(1, maxRows) } }
    /// Most bytes per output batch (estimated from buffer sizes).
    public let maxBytes: Int
    /// Seconds a partial batch may wait for more rows; 0 = send each input at once.
    public let linger: Double

    private var held: [RecordBatch] = []
    private var heldRows = 0
    private var heldBytes = 0
    private var heldSince: Double?

    /// A batcher with the given bounds (each at least 1 row / 1 byte).
    public init(maxRows: Int, maxBytes: Int, linger: Double) {
        self.maxRows = Swift.max(1, maxRows)
        self.maxBytes = Swift.max(1, maxBytes)
        self.linger = Swift.max(0, linger)
    }

    /// Adds an input batch at time `now`; returns the batches that are ready to send.
    public mutating func push(_ batch: RecordBatch, now: Double) -> [RecordBatch] {
        var out: [RecordBatch] = []
        guard batch.length > 0 else { return out }
        let bytesPerRow = Swift.max(1, batch.byteSize / Swift.max(1, batch.length))
        let rowsByBytes = Swift.max(1, maxBytes / bytesPerRow)
        let limit = Swift.min(maxRows, rowsByBytes)
        var start = 0
        while start < batch.length {
            // The limit may have dropped below what is held (adaptive batching lowers
            // `maxRows` between pushes): send what is held first, at its size.
            if heldRows >= limit { out.append(takeHeld()) }
            let room = limit - heldRows
            let take = Swift.min(room, batch.length - start)
            let piece = (start == 0 && take == batch.length) ? batch : batch.slice(start, take)
            if heldRows == 0 && take == limit {
                out.append(piece)        // a full batch straight from the input: no copy
            } else {
                if held.isEmpty { heldSince = now }
                held.append(piece)
                heldRows += take
                heldBytes += piece.byteSize
                if heldRows >= limit { out.append(takeHeld()) }
            }
            start += take
        }
        if linger == 0, !held.isEmpty { out.append(takeHeld()) }
        return out
    }

    /// When the held rows must be flushed, or nil when nothing is held.
    public var deadline: Double? { heldSince.map { $0 + linger } }

    /// Returns the held rows if their linger time has passed at `now`.
    public mutating func expire(now: Double) -> RecordBatch? {
        guard let d = deadline, now >= d, !held.isEmpty else { return nil }
        return takeHeld()
    }

    /// Returns whatever is held (end of input).
    public mutating func flush() -> RecordBatch? {
        held.isEmpty ? nil : takeHeld()
    }

    /// Rows currently held.
    public var pendingRows: Int { heldRows }

    private mutating func takeHeld() -> RecordBatch {
        let result = Kernels.concatenate(held)
        held.removeAll()
        heldRows = 0
        heldBytes = 0
        heldSince = nil
        return result
    }
}
