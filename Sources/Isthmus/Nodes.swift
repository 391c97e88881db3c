import Foundation
#if canImport(Glibc)
import Glibc
#endif
import IsthmusArrow
import IsthmusBridge

/// A pull-based step of a running pipeline.
class Node: @unchecked Sendable {
    // @unchecked: a node is pulled by exactly one thread (its downstream); counters shared
    // with the progress ticker are `Locked`.
    let rows = Locked(0)
    let batches = Locked(0)
    /// The next batch, or nil at the end.
    func next() throws -> RecordBatch? { nil }
    /// The schema of what `next()` returns, found by passing an empty batch through.
    func outputSchema() throws -> Schema { Schema([]) }
    /// Releases threads and processes.
    func close() {}
    /// Stats of this node.
    func stats() -> StageStats? { nil }

    func count(_ b: RecordBatch) {
        rows.withLock { $0 += b.length }
        batches.withLock { $0 += 1 }
    }
}

/// Reads the source; stops early when the run is asked to stop.
final class SourceNode: Node, @unchecked Sendable {
    let reader: BatchReader
    let control: RunControl
    init(reader: BatchReader, control: RunControl) {
        self.reader = reader
        self.control = control
    }
    override func next() throws -> RecordBatch? {
        if control.isStopped { return nil }
        guard let b = try reader.next() else { return nil }
        count(b)
        return b
    }
    override func outputSchema() throws -> Schema { reader.schema }
}

/// Applies a Swift transform.
final class SwiftNode: Node, @unchecked Sendable {
    let name: String
    let upstream: Node
    let transform: @Sendable (RecordBatch) throws -> [RecordBatch]
    private var pending: [RecordBatch] = []
    private var rowsIn = 0

    init(name: String, upstream: Node, transform: @escaping @Sendable (RecordBatch) throws -> [RecordBatch]) {
        self.name = name
        self.upstream = upstream
        self.transform = transform
    }

    override func next() throws -> RecordBatch? {
        while pending.isEmpty {
            guard let b = try upstream.next() else { return nil }
            rowsIn += b.length
            pending = try transform(b)
        }
        let b = pending.removeFirst()
        count(b)
        return b
    }

    override func outputSchema() throws -> Schema {
        let input = try upstream.outputSchema()
        let empty = try RecordBatch(schema: input, columns: input.fields.map { try ArrayData.build($0.type, []) }, length: 0)
        return try transform(empty).first?.schema ?? input
    }

    override func close() { upstream.close() }

    override func stats() -> StageStats? {
        var s = StageStats(name: name, kind: "swift")
        s.rowsIn = rowsIn
        s.rowsOut = rows.value
        s.batchesOut = batches.value
        return s
    }
}

/// Sends batches through a pool of Python workers.
final class PythonNode: Node, @unchecked Sendable {
    let stages: [ControlDocuments.Stage]
    let options: PythonStageOptions
    let upstream: Node
    let log: @Sendable (String) -> Void
    private var pool: WorkerPool?
    private var feeder: Thread?
    private var started = false
    private var pending: [RecordBatch] = []
    private let latency = LatencyRecorder()
    private let feederDone = DispatchSemaphore(value: 0)
    private var emptyProbe = false

    let deadLetters: DeadLetterSink?
    private let failedRows = Locked(0)
    /// The adaptive batch size controller and the sizes it chose over time (seconds, rows).
    private let adaptive: Locked<AdaptiveBatchSize?>
    private let chosenSizes = Locked<[[Double]]>([])
    private let startedAt = MonotonicClock.seconds()
    private let readySeconds = Locked(0.0)
    /// Input batches are kept until their result arrives when results need them.
    private var keepsInputs: Bool { options.keepInput || options.onError != .fail }

    /// Stops the feeder even while the source is blocked.
    let control: RunControl?

    init(stages: [ControlDocuments.Stage], options: PythonStageOptions, upstream: Node, log: @escaping @Sendable (String) -> Void,
         deadLetters: DeadLetterSink? = nil, control: RunControl? = nil) {
        self.control = control
        self.stages = stages
        self.options = options
        self.upstream = upstream
        self.log = log
        self.deadLetters = deadLetters
        adaptive = Locked(options.targetLatency.map {
            AdaptiveBatchSize(target: $0, initial: Swift.min(options.batchRows, 1024), maxRows: options.batchRows)
        })
    }

    var name: String { stages.map(\.name).joined(separator: "+") }

    private func start() throws {
        started = true
        let schema = try upstream.outputSchema()
        if case .hash(let key) = options.partitioning, schema.index(of: key) == nil {
            throw PipelineError("--key: expected a column named '\(key)' but found only \(schema.fields.map(\.name).joined(separator: ", "))", usage: true)
        }
        let config = options.poolConfiguration(stages: stages, inputSchema: schema, log: log)
        let pool = try control.map { try $0.startingWorkers { try WorkerPool(config) } } ?? WorkerPool(config)
        readySeconds.withLock { $0 = MonotonicClock.seconds() - startedAt }
        self.pool = pool
        if options.keepInput, let declared = pool.declaredOutputSchema {
            try checkCollisions(schema, declared)
        }
        let thread = NamedThread.make("isthmus-feeder", stackSize: 1 << 22) { [self] in
            self.feed(pool: pool, schema: schema)
            self.feederDone.signal()
        }
        feeder = thread
        thread.start()
    }

    private func checkCollisions(_ input: Schema, _ output: Schema) throws {
        let names = Set(input.fields.map(\.name))
        if let clash = output.fields.first(where: { names.contains($0.name) }) {
            throw PipelineError("stage \(name): --keep-input expected the function's columns to have new names but found '\(clash.name)' in both the input and the result", usage: true)
        }
    }

    /// The feeder thread: pulls upstream (through a bounded channel so linger can fire while
    /// the source blocks), cuts batches, partitions and submits.
    private func feed(pool: WorkerPool, schema: Schema) {
        let channel = Channel<RecordBatch>(capacity: 4)
        let upstream = self.upstream
        let reader = NamedThread.make("isthmus-source", stackSize: 1 << 22) {
            do {
                while let b = try upstream.next() {
                    if !channel.send(b) { return }
                }
                channel.close()
            } catch {
                channel.fail(error)
            }
        }
        reader.start()
        var batcher = Batcher(maxRows: options.batchRows, maxBytes: options.batchBytes, linger: options.linger)
        var rowStart = 0
        var sentAny = false
        let partitioner: HashPartitioner? = {
            if case .hash(let key) = options.partitioning { return HashPartitioner(column: schema.index(of: key)!, slots: options.workers) }
            return nil
        }()
        // Set when a stop request drops pieces of a batch already read: the rows kept must stay
        // a prefix of the input, so the batcher's remainder (rows after them) is dropped too.
        var stopping = false
        func submitInOrder(_ pieces: [RecordBatch]) throws {
            for piece in pieces {
                // A large input batch cut into many small ones: stop between them, not after all.
                if control?.isStopped == true { stopping = true; return }
                try submit(piece)
            }
        }
        func submit(_ b: RecordBatch) throws {
            sentAny = true
            switch options.partitioning {
            case .roundRobin:
                try pool.submit(b, rowStart: rowStart, keepInput: keepsInputs)
            case .hash:
                for (slot, part) in partitioner!.split(b) {
                    try pool.submit(part, rowStart: rowStart, slot: slot, keepInput: keepsInputs)
                }
            case .broadcast:
                for slot in 0..<options.workers {
                    try pool.submit(b, rowStart: rowStart, slot: slot, keepInput: keepsInputs)
                }
            }
            rowStart += b.length
        }
        do {
            loop: while true {
                // Wake at least every 100 ms: a stop request must not wait for a source that is
                // blocked reading a live stream (stdin with nothing to say).
                let wait = Swift.min(0.1, batcher.deadline.map { Swift.max(0, $0 - monotonic()) } ?? 0.1)
                if control?.isStopped == true { break loop }
                switch try channel.receive(until: Date(timeIntervalSinceNow: wait)) {
                case .item(let b):
                    guard adaptive.value != nil else {
                        try submitInOrder(batcher.push(b, now: monotonic()))
                        if stopping { break loop }
                        continue
                    }
                    // With a latency target, a large input is cut one batch at a time, each at
                    // the size chosen from the answers so far (submit blocks while the window is
                    // full, so the answers arrive between cuts).
                    var offset = 0
                    while offset < b.length && !stopping {
                        if let rows = adaptive.value?.rows { batcher.maxRows = rows }
                        let take = Swift.min(batcher.maxRows, b.length - offset)
                        let piece = offset == 0 && take == b.length ? b : b.slice(offset, take)
                        try submitInOrder(batcher.push(piece, now: monotonic()))
                        offset += take
                    }
                    if stopping { break loop }
                case .timedOut:
                    if let ready = batcher.expire(now: monotonic()) { try submit(ready) }
                case .closed:
                    break loop
                }
            }
            if !stopping, let rest = batcher.flush() { try submit(rest) }
            if !sentAny {
                // No rows at all: send one empty batch so the output schema is still known.
                emptyProbe = true
                let empty = try RecordBatch(schema: schema, columns: schema.fields.map { try ArrayData.build($0.type, []) }, length: 0)
                try pool.submit(empty, rowStart: 0, slot: options.partitioning == .roundRobin ? nil : 0, keepInput: keepsInputs)
            }
            pool.finishInput()
        } catch let error as BridgeError {
            channel.close()
            pool.fail(error)
        } catch {
            // The reason first: failing the pool wakes next(), which reports it.
            feedError.withLock { $0 = FeedFailure(error) }
            channel.close()
            pool.fail(BridgeError(.cancelled, "input failed", detail: ""))
        }
    }

    private let feedError = Locked<FeedFailure?>(nil)

    override func next() throws -> RecordBatch? {
        if !started { try start() }
        while pending.isEmpty {
            guard let pool else { return nil }
            let result: PoolResult?
            do {
                result = try pool.next()
            } catch {
                if let f = feedError.value { throw f.error }
                throw error
            }
            guard let result else { return nil }
            latency.record(seconds: result.latency)
            if let rows = adaptive.withLock({ c -> Int? in c?.observe(latency: result.latency, rows: result.inputRows) }) {
                chosenSizes.withLock { sizes in
                    if sizes.last.map({ Int($0[1]) }) != rows && sizes.count < 1000 {
                        sizes.append([((MonotonicClock.seconds() - startedAt) * 1000).rounded() / 1000, Double(rows)])
                    }
                }
            }
            var out = result.batches
            let input = result.input
            if !result.failures.isEmpty, let input {
                try handleFailures(result, input)
            }
            if options.keepInput, var input {
                if !result.failures.isEmpty {
                    let failed = Set(result.failures.map(\.row))
                    input = Kernels.take(input, (0..<input.length).filter { !failed.contains($0) })
                }
                out = try appendInput(input, out)
            }
            pending = out.filter { $0.length > 0 || emptyProbe }
            if emptyProbe && !pending.isEmpty {
                // Only the schema matters; emit one empty batch so the sink can write it.
                pending = [pending[0].slice(0, 0)]
            }
        }
        let b = pending.removeFirst()
        count(b)
        return b
    }

    private func handleFailures(_ result: PoolResult, _ input: RecordBatch) throws {
        failedRows.withLock { $0 += result.failures.count }
        switch options.onError {
        case .fail, .skip:
            return
        case .deadLetter:
            guard let deadLetters else { return }
            let rows = result.failures.map(\.row)
            try deadLetters.write(FailedRows(stage: name, rows: Kernels.take(input, rows),
                                             rowNumbers: rows.map { result.rowStart + $0 }, errors: result.failures))
        }
    }

    private func appendInput(_ input: RecordBatch, _ results: [RecordBatch]) throws -> [RecordBatch] {
        let result = results.isEmpty ? nil : Kernels.concatenate(results)
        guard let result else { return [] }
        try checkCollisions(input.schema, result.schema)
        return [try RecordBatch(schema: Schema(input.schema.fields + result.schema.fields, metadata: input.schema.metadata),
                                columns: input.columns + result.columns, length: input.length)]
    }

    override func outputSchema() throws -> Schema {
        if !started { try start() }
        if let declared = pool?.declaredOutputSchema {
            if options.keepInput { return Schema(try upstream.outputSchema().fields + declared.fields) }
            return declared
        }
        // Unknown until the first result: pull it and keep it for next().
        if pending.isEmpty, let b = try next() {
            pending.insert(b, at: 0)
            rows.withLock { $0 -= b.length }
            batches.withLock { $0 -= 1 }
        }
        return pending.first?.schema ?? Schema([])
    }

    override func close() {
        pool?.shutdown()
        upstream.close()
    }

    var poolStats: PoolStats? { pool?.stats }

    override func stats() -> StageStats? {
        var s = StageStats(name: name, kind: "python")
        let p = pool?.stats ?? PoolStats()
        s.rowsIn = p.rowsIn
        s.rowsOut = rows.value
        s.batchesIn = p.batches
        s.batchesOut = batches.value
        s.bytesIn = p.bytesOut
        s.bytesOut = p.bytesIn
        s.latencyMs = latency.percentilesMs()
        s.restarts = p.restarts
        s.retries = p.retries
        s.workers = options.workers
        s.rowsFailed = failedRows.value
        s.startupSeconds = readySeconds.value
        s.shmBatches = p.shmBatches
        s.shmResults = p.shmResults
        s.doorbellBatches = p.doorbellBatches
        s.fileBatches = p.fileBatches
        s.arenaBytes = p.arenaBytes
        s.arenaPeakBytes = p.arenaPeakBytes
        if options.targetLatency != nil { s.batchSizes = chosenSizes.value }
        return s
    }
}

struct FeedFailure: @unchecked Sendable {
    // @unchecked: the error is created once by the feeder and only read afterwards.
    let error: Error
    init(_ error: Error) { self.error = error }
}

/// The nodes of a running pipeline, source first.
final class Chain: @unchecked Sendable {
    // @unchecked: the node list is immutable; counters are `Locked`.
    let source: SourceNode
    let nodes: [Node]
    let rowsWritten = Locked(0)
    init(source: SourceNode, nodes: [Node]) {
        self.source = source
        self.nodes = nodes
    }
    var last: Node { nodes.last! }
    func close() { last.close() }
    func stageStats() -> [StageStats] { nodes.compactMap { $0.stats() } }

    func snapshot(started: Date) -> ProgressSnapshot {
        var alive = 0, workers = 0, restarts = 0, inFlight = 0
        for case let p as PythonNode in nodes {
            if let s = p.poolStats {
                alive += s.workersAlive
                restarts += s.restarts.count
                inFlight += s.inFlight
            }
            workers += p.options.workers
        }
        return ProgressSnapshot(rowsRead: source.rows.value, rowsWritten: rowsWritten.value,
                                seconds: Date().timeIntervalSince(started), inFlight: inFlight,
                                workersAlive: alive, workers: workers, restarts: restarts)
    }
}

/// Calls `report` twice a second with a snapshot, on its own thread.
final class ProgressTicker: @unchecked Sendable {
    // @unchecked: `stopped` is Locked; the rest is immutable.
    private let stopped = Locked(false)
    private let done = DispatchSemaphore(value: 0)
    init(chain: Chain, started: Date, report: @escaping @Sendable (ProgressSnapshot) -> Void) {
        let stopped = self.stopped
        let done = self.done
        NamedThread.start("isthmus-ticker", stackSize: 1 << 18) {
            while !stopped.value {
                report(chain.snapshot(started: started))
                for _ in 0..<5 where !stopped.value { usleep(100_000) }
            }
            report(chain.snapshot(started: started))
            done.signal()
        }
    }
    func stop() {
        stopped.withLock { $0 = true }
        done.wait()
    }
}

func monotonic() -> Double { MonotonicClock.seconds() }
