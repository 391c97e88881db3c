import Foundation
import IsthmusArrow
import IsthmusZMQ
#if canImport(Glibc)
import Glibc
#endif

/// Runs Python stages on a pool of long-lived worker processes.
///
/// Threading model: the ROUTER socket and every worker's protocol state belong to `PoolIO`,
/// used by one thread at a time. `submit(_:)` (any thread) encodes the batch into zero-copy IPC
/// pieces, waits for room in the bounded window and hands it over through `PoolShared`, waking
/// the I/O thread through a pipe; `next()` (any thread) waits for the next result in input
/// order. Request/response callers (`result(for:)`, `request(_:rowStart:)`) instead turn the
/// I/O loop themselves while they wait, one at a time, which takes the I/O thread out of the
/// path of a one-row request. Memory is bounded by the window: at most
/// `workers × credits × 2` batches are submitted and not yet consumed.
public final class WorkerPool: @unchecked Sendable {
    // @unchecked: `shared` is guarded by its condition; `io` is used only by the holder of its
    // baton (and by `init` before the I/O thread starts); the remaining fields are immutable.
    let configuration: PoolConfiguration
    let shared = PoolShared()
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let io: PoolIO
    private let thread: Thread
    /// Batches submitted and not yet consumed, at most (submit blocks beyond it).
    public let window: Int
    private let schemaMessage: Buffer
    /// The shared arena local workers map, when the data plane is on and the system has one.
    private let arena: SharedArena?
    /// What submit does with a batch that is a range of the input file (§19).
    private let sharingPlan: PoolConfiguration.SharingPlan

    /// Output schema the last stage declared in READY, if any.
    public let declaredOutputSchema: Schema?

    /// Starts the workers and waits until every one is READY.
    /// Throws `BridgeError` (`.startup`, `.versionMismatch`) when they cannot start.
    public init(_ configuration: PoolConfiguration) throws {
        HeapPolicy.apply()  // a host embedding the pool gets the CLI's heap policy too
        var configuration = configuration
        sharingPlan = configuration.sharingPlan()
        // The I/O thread offers FILE batches to workers that can take them whenever the plan may share.
        configuration.shareInputFiles = sharingPlan == .copy ? .off : .on
        self.configuration = configuration
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw BridgeError(.startup, "cannot create a wake-up pipe: \(String(cString: strerror(errno)))") }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        _ = fcntl(wakeRead, F_SETFL, O_NONBLOCK)
        _ = fcntl(wakeWrite, F_SETFL, O_NONBLOCK)
        window = Swift.max(2, configuration.workers * configuration.credits * 2)
        schemaMessage = BatchCodec.schemaMessage(configuration.inputSchema)
        var arena: SharedArena?
        if configuration.sharedMemoryBytes > 0 && configuration.listen == nil {
            do {
                arena = try SharedArena(size: configuration.sharedMemoryBytes)
            } catch {
                configuration.log("isthmus: no shared-memory data plane (\(error)); batches travel as frames over ZeroMQ")
            }
        }
        self.arena = arena
        let io = try PoolIO(configuration: configuration, shared: shared, wakeFD: wakeRead, wakeWrite: wakeWrite,
                            schemaMessage: schemaMessage, arena: arena)
        self.io = io
        thread = NamedThread.make("isthmus-pool-io", stackSize: 1 << 22) { io.run() }
        do {
            try io.prepare()
        } catch {
            io.abortBeforeStart()
            let state = shared
            state.locked {
                state.ioFinished = true
                state.stopRequested = true
            }
            throw error
        }
        let ready = DispatchSemaphore(value: 0)
        io.onReady = { ready.signal() }
        thread.start()
        if let arena, configuration.expectedBatchBytes > 0 {
            // The workers take a few hundred milliseconds to start; meanwhile this thread pays
            // for the arena pages the window of batches will use, which the first batches would
            // otherwise fault in and zero one by one (W2, 2M rows, 2 workers, 8 alternating runs
            // each: 64K-row batches 10.6 → 12.2 M rows/s median, 8K-row batches 13.0 → 13.7).
            // Nothing is submitted before init returns, so the only regions in use are the
            // doorbells' mailboxes (lowest offsets, leased in prepare); batches come after them.
            // Writing a zero into a page of an unused mailbox changes nothing anyone reads.
            arena.prefault(Swift.min(arena.size / 2, arena.peakUsed + window * configuration.expectedBatchBytes * 5 / 4))
        }
        ready.wait()
        declaredOutputSchema = io.baton.withLock { io.declaredOutputSchema }
        let state = shared
        if let failure = state.locked({ state.failure }) {
            waitForIOThread()
            throw failure
        }
    }

    deinit {
        shutdown()
        close(wakeRead)
        close(wakeWrite)
    }

    private func wake() {
        var b: UInt8 = 1
        _ = write(wakeWrite, &b, 1)
    }

    /// Sends a batch to the workers (to `slot` when given); with `keepInput` the batch comes
    /// back with its result (`PoolResult.input`). Blocks while the window is full
    /// (backpressure). Throws the pool's failure if it has failed. Returns the sequence number.
    @discardableResult
    public func submit(_ batch: RecordBatch, rowStart: Int, slot: Int? = nil, keepInput: Bool = false) throws -> UInt64 {
        try submit(batch, rowStart: rowStart, slot: slot, keepInput: keepInput, willWait: false)
    }

    /// Sends one batch and waits for its result (request/response use): the calling thread
    /// turns the I/O loop itself while it waits (see the type's comment).
    public func request(_ batch: RecordBatch, rowStart: Int) throws -> PoolResult {
        try result(for: submit(batch, rowStart: rowStart, slot: nil, keepInput: false, willWait: true))
    }

    /// `willWait`: the caller goes on to `result(for:)`. Then, unless another caller is driving
    /// the I/O loop already, nobody needs waking: the caller will drive it and send the batch.
    private func submit(_ batch: RecordBatch, rowStart: Int, slot: Int?, keepInput: Bool, willWait: Bool) throws -> UInt64 {
        guard batch.schema == configuration.inputSchema else {
            throw BridgeError(.schemaMismatch, "expected batches with schema (\(configuration.inputSchema.fields.map { "\($0.name): \($0.type)" }.joined(separator: ", "))) but found (\(batch.schema.fields.map { "\($0.name): \($0.type)" }.joined(separator: ", ")))")
        }
        var payload = try BatchCodec.encode(batch, schemaMessage: schemaMessage)
        let bytes = payload.reduce(0) { $0 + $1.count }
        // Into the shared arena, when there is one and room in it: one copy here instead of two
        // kernel copies through the socket and one more in the worker. Before waiting for the
        // window, so the copy overlaps the workers; a submitter holds at most one region waiting.
        var region: ArenaLease?
        // A batch that is a range of a shared input file needs no copy at all: a worker that
        // maps the file reads it there (§19); for any other worker dispatch copies it then.
        // A message over an eighth of the arena (a file written as one huge message) is copied:
        // each worker would map all of it for every batch cut from it.
        let origin = bytes >= configuration.sharedMemoryThreshold
            && (batch.origin?.rows.messageLength ?? .max) <= (arena?.size ?? 0) / 8 && sharesNow() ? batch.origin : nil
        if origin == nil, let arena, bytes >= configuration.sharedMemoryThreshold, let lease = arena.lease(bytes) {
            _ = lease.fill(with: payload)
            payload = [lease.buffer(count: bytes)]
            region = lease
        }
        let (sequence, needsWake): (UInt64, Bool) = try shared.locked {
            var waited = false
            while shared.failure == nil && !shared.stopRequested && Int(shared.submitted - shared.consumed) >= window {
                waited = true
                shared.condition.wait()
            }
            shared.pace.record(waited: waited)
            if let failure = shared.failure { throw failure }
            if shared.stopRequested { throw BridgeError(.cancelled, "the pool was shut down") }
            let s = shared.submitted
            shared.submitted += 1
            shared.inbox.append(PendingBatch(sequence: s, rowStart: rowStart, rows: batch.length, payload: payload, payloadBytes: bytes, slot: slot,
                                              region: region, origin: origin, input: keepInput ? batch : nil))
            shared.stats.batches += 1
            shared.stats.rowsIn += batch.length
            shared.stats.bytesOut += bytes
            return (s, !willWait || shared.driving)
        }
        if needsWake { wake() }
        return sequence
    }

    /// Whether a batch with a place in the input file goes as that place now (§19, `SubmitPace`).
    private func sharesNow() -> Bool {
        switch sharingPlan {
        case .copy: false
        case .share: true
        case .whenSubmitterBehind: shared.locked { shared.pace.submitterIsBehind }
        }
    }

    /// Declares that no more batches will be submitted.
    public func finishInput() {
        shared.locked {
            shared.inputFinished = true
            shared.condition.broadcast()
        }
        wake()
    }

    /// The next result (in input order unless unordered); nil once input is finished and
    /// every result was delivered. Throws the pool's failure.
    public func next() throws -> PoolResult? {
        let result: PoolResult? = try shared.locked {
            while true {
                if let failure = shared.failure { throw failure }
                if configuration.ordered {
                    if let r = shared.completed.removeValue(forKey: shared.consumed) {
                        shared.consumed += 1
                        shared.condition.broadcast()
                        return r
                    }
                } else if !shared.completedFIFO.isEmpty {
                    let r = shared.completedFIFO.removeFirst()
                    shared.consumed += 1
                    shared.condition.broadcast()
                    return r
                }
                if shared.inputFinished && shared.consumed == shared.submitted { return nil }
                if shared.ioFinished { throw BridgeError(.cancelled, "the pool stopped before every batch was answered") }
                shared.condition.wait()
            }
        }
        return result
    }

    /// Waits for the result of batch `sequence` (request/response use; do not mix with `next()`).
    /// While it waits, the calling thread turns the I/O loop itself unless another caller is
    /// doing so already; then it waits until that caller has its answer or one for this batch
    /// has arrived, whichever comes first.
    public func result(for sequence: UInt64) throws -> PoolResult {
        enum Next { case done(PoolResult), drive }
        while true {
            let next: Next = try shared.locked {
                while true {
                    if let failure = shared.failure { throw failure }
                    if let r = shared.completed.removeValue(forKey: sequence) ?? takeUnordered(sequence) {
                        shared.consumed += 1
                        shared.condition.broadcast()
                        return .done(r)
                    }
                    if shared.ioFinished { throw BridgeError(.cancelled, "the pool stopped before batch \(sequence) was answered") }
                    // Once stopping, the I/O thread ends the run; wait for it instead.
                    if !shared.driving && !shared.stopRequested {
                        shared.driving = true
                        return .drive
                    }
                    shared.condition.wait()
                }
            }
            switch next {
            case .done(let r):
                return r
            case .drive:
                let state = shared
                io.drive { state.locked { state.isAnswered(sequence) } }
                state.locked {
                    state.driving = false
                    state.condition.broadcast()
                }
            }
        }
    }

    private func takeUnordered(_ sequence: UInt64) -> PoolResult? {
        guard let i = shared.completedFIFO.firstIndex(where: { $0.sequence == sequence }) else { return nil }
        return shared.completedFIFO.remove(at: i)
    }

    /// A snapshot of the pool's counters.
    public var stats: PoolStats { shared.locked { shared.stats } }

    /// Number of worker slots.
    public var workerCount: Int { configuration.workers }

    /// Stops the workers (CLOSE, then SIGKILL for stragglers) and the I/O thread. Idempotent.
    public func shutdown() {
        let already = shared.locked { () -> Bool in
            let was = shared.stopRequested
            shared.stopRequested = true
            shared.condition.broadcast()
            return was
        }
        wake()
        if !already { waitForIOThread() }
    }

    /// Fails the pool from outside (e.g. the input could not be read); wakes every waiter.
    public func fail(_ error: BridgeError) {
        shared.locked {
            if shared.failure == nil { shared.failure = error }
            shared.condition.broadcast()
        }
        wake()
    }

    private func waitForIOThread() {
        shared.locked {
            while !shared.ioFinished { shared.condition.wait() }
        }
    }
}
