import Foundation
import IsthmusArrow
import IsthmusBridge

/// A warm Python stage for request/response scoring: the workers start once and every
/// `submit` sends one batch and waits for its answer. Safe to call from many tasks at once;
/// requests are spread over the workers and bounded by their credits.
public final class OnlineStage: Sendable {
    private let pool: WorkerPool
    /// Rows submitted so far are numbered from here (for error messages).
    private let rowCounter = Locked(0)
    /// Async callers past the pool's window wait here, suspended, instead of blocking a thread.
    let gate: AsyncGate

    /// Starts the workers for `udf` over batches of `inputSchema` and waits until they are ready.
    public init(udf: String, name: String? = nil, inputSchema: Schema, options: PythonStageOptions = PythonStageOptions(),
                log: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws {
        var config = options.poolConfiguration(stages: [ControlDocuments.Stage(name: name ?? Pipeline.stageName(udf), udf: udf)],
                                               inputSchema: inputSchema, log: log)
        config.ordered = true
        config.callerDriven = true
        config.requireSameRowCount = false
        pool = try WorkerPool(config)
        gate = AsyncGate(permits: pool.window)
    }

    /// Sends `batch` and waits for its result (blocking the calling thread).
    public func submitBlocking(_ batch: RecordBatch) throws -> RecordBatch {
        let start = rowCounter.withLock { r -> Int in defer { r += batch.length }; return r }
        let result = try pool.request(batch, rowStart: start)
        if result.batches.count == 1 { return result.batches[0] }
        if result.batches.isEmpty {
            throw BridgeError(.schemaMismatch, "expected the function to return a result batch but found an empty stream")
        }
        return Kernels.concatenate(result.batches)
    }

    /// Sends `batch` and waits for its result. At most the pool's window of requests holds a
    /// dispatch thread at a time (blocked until its answer); further callers wait suspended.
    public func submit(_ batch: RecordBatch) async throws -> RecordBatch {
        await gate.acquire()
        defer { gate.release() }
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                do { continuation.resume(returning: try self.submitBlocking(batch)) } catch { continuation.resume(throwing: error) }
            }
        }
    }

    /// Stops the workers.
    public func close() { pool.shutdown() }

    /// Pool counters.
    public var stats: PoolStats { pool.stats }
}
