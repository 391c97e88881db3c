import Foundation
import IsthmusArrow
import IsthmusBridge

/// A stream pipeline: a source, any mix of Swift stages and Python stages, then a sink.
///
/// ```swift
/// let stats = try await Pipeline(reading: "tx.arrows")
///     .map("features") { batch in try addFeatures(batch) }
///     .python("score.py:Model", options: opts)
///     .filter("high") { batch in (0..<batch.length).map { batch.column("score")!.double($0)! > 0.9 } }
///     .run(writingTo: "high.arrow")
/// ```
///
/// Threading: the source is read on its own thread; each Python stage has a feeder thread
/// (batcher, partitioner, `WorkerPool.submit`) and its pool's I/O thread; Swift stages run on
/// the thread that pulls from them. Every hand-off is bounded, so a slow stage slows the
/// source and memory does not grow with the input.
public struct Pipeline: Sendable {
    /// One step of the pipeline.
    enum Step: Sendable {
        case swift(name: String, transform: @Sendable (RecordBatch) throws -> [RecordBatch])
        case python(stages: [ControlDocuments.Stage], options: PythonStageOptions)
    }

    let openSource: @Sendable () throws -> BatchReader
    var steps: [Step] = []
    /// Where stages with `onError: .deadLetter` put their failed rows.
    public var deadLetters: DeadLetterSink?
    /// Where supervisor notes and worker output go.
    public var log: @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }

    /// A pipeline over batches that `open` returns (called once per run).
    public init(source open: @escaping @Sendable () throws -> BatchReader) {
        openSource = open
    }

    /// A pipeline over a file (format from the extension, or `format`); `-` is stdin.
    /// A directory or a glob pattern reads every matching file in name order.
    public init(reading path: String, format: DataFormat? = nil, options: ReadOptions = ReadOptions()) {
        openSource = {
            if let files = try MultiFileReader.expand(path, format: format) {
                return try MultiFileReader(paths: files, format: format, options: options)
            }
            let name = path == "-" ? "stdin" : path
            return try FileNamingReader.open(name) { try Formats.openReader(path: path, format: format, options: options) }
        }
    }

    /// A pipeline over in-memory batches.
    public init(batches: [RecordBatch]) {
        openSource = { MemoryReader(batches) }
    }

    /// Adds a Swift stage that maps each batch to one batch.
    public func map(_ name: String = "map", _ transform: @escaping @Sendable (RecordBatch) throws -> RecordBatch) -> Pipeline {
        adding(.swift(name: name, transform: { [try transform($0)] }))
    }

    /// Adds a Swift stage that maps each batch to any number of batches.
    public func flatMap(_ name: String = "flatMap", _ transform: @escaping @Sendable (RecordBatch) throws -> [RecordBatch]) -> Pipeline {
        adding(.swift(name: name, transform: transform))
    }

    /// Adds a Swift stage that keeps the rows where `predicate` returns true.
    public func filter(_ name: String = "filter", _ predicate: @escaping @Sendable (RecordBatch) throws -> [Bool]) -> Pipeline {
        adding(.swift(name: name, transform: { batch in
            let mask = try predicate(batch)
            guard mask.count == batch.length else {
                throw PipelineError("stage \(name): expected \(batch.length) filter values but found \(mask.count)")
            }
            return [Kernels.filter(batch, mask)]
        }))
    }

    /// Adds a Swift stage that keeps only `columns` (unknown names are an error).
    public func select(_ columns: [String]) -> Pipeline {
        adding(.swift(name: "select", transform: { batch in
            let indices = try columns.map { name -> Int in
                guard let i = batch.schema.index(of: name) else {
                    throw PipelineError("select: expected a column named '\(name)' but found only \(batch.schema.fields.map(\.name).joined(separator: ", "))", usage: true)
                }
                return i
            }
            return [try RecordBatch(schema: Schema(indices.map { batch.schema.fields[$0] }, metadata: batch.schema.metadata),
                                    columns: indices.map { batch.columns[$0] }, length: batch.length)]
        }))
    }

    /// Adds a Swift stage that appends a computed column.
    public func addColumn(_ name: String, _ compute: @escaping @Sendable (RecordBatch) throws -> ArrayData) -> Pipeline {
        adding(.swift(name: "add \(name)", transform: { batch in
            let column = try compute(batch)
            guard column.length == batch.length else {
                throw PipelineError("add \(name): expected \(batch.length) values but found \(column.length)")
            }
            return [try RecordBatch(schema: Schema(batch.schema.fields + [Field(name, column.type)], metadata: batch.schema.metadata),
                                    columns: batch.columns + [column], length: batch.length)]
        }))
    }

    /// Adds a Python stage running `udf` (`file.py:NAME` or `module:NAME`). Consecutive Python
    /// stages with equal options are fused into one worker round trip.
    public func python(_ udf: String, name: String? = nil, options: PythonStageOptions = PythonStageOptions()) -> Pipeline {
        let stageName = name ?? Pipeline.stageName(udf)
        let stage = ControlDocuments.Stage(name: stageName, udf: udf)
        var copy = self
        if case .python(let stages, let previous)? = copy.steps.last, previous == options {
            copy.steps[copy.steps.count - 1] = .python(stages: stages + [stage], options: options)
        } else {
            copy.steps.append(.python(stages: [stage], options: options))
        }
        return copy
    }

    static func stageName(_ udf: String) -> String {
        if let colon = udf.lastIndex(of: ":") { return String(udf[udf.index(after: colon)...]) }
        return udf
    }

    private func adding(_ step: Step) -> Pipeline {
        var copy = self
        copy.steps.append(step)
        return copy
    }

    /// Runs the pipeline, writing every output batch to `sink` (nil = discard). Cancelling the
    /// task stops the source; batches already in flight are finished. Returns the run's stats.
    public func run(into sink: BatchWriter?, control: RunControl = RunControl(),
                    progress: (@Sendable (ProgressSnapshot) -> Void)? = nil) async throws -> RunStats {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<RunStats, Error>) in
                let box = SinkBox(sink)
                NamedThread.start("isthmus-run", stackSize: 1 << 23) {
                    do {
                        continuation.resume(returning: try self.runBlocking(into: box.sink, control: control, progress: progress))
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
            }
        } onCancel: {
            control.stop()
        }
    }

    /// Runs the pipeline into a file (format from the extension unless given), moved into place
    /// only when the run succeeds.
    public func run(writingTo path: String, format: DataFormat? = nil, options: WriteOptions = WriteOptions(),
                    control: RunControl = RunControl()) async throws -> RunStats {
        let sink = FileSink(path: path, format: format, options: options)
        do {
            let stats = try await run(into: sink, control: control)
            try sink.commit()
            return stats
        } catch {
            sink.abandon()
            throw error
        }
    }

    /// Output batches as an async sequence.
    public func results(control: RunControl = RunControl()) -> AsyncThrowingStream<RecordBatch, Error> {
        AsyncThrowingStream(bufferingPolicy: .unbounded) { continuation in
            let thread = NamedThread.make("isthmus-results", stackSize: 1 << 23) {
                do {
                    let chain = try self.build(control: control)
                    defer { chain.close() }
                    while let b = try chain.last.next() {
                        if case .terminated = continuation.yield(b) { control.stop(); break }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in control.stop() }
            thread.start()
        }
    }

    /// Runs on the calling thread (the CLI uses this directly).
    public func runBlocking(into sink: BatchWriter?, control: RunControl = RunControl(),
                            progress: (@Sendable (ProgressSnapshot) -> Void)? = nil) throws -> RunStats {
        let started = Date()
        let chain = try build(control: control)
        defer { chain.close() }
        var stats = RunStats()
        var ticker: ProgressTicker?
        if let progress {
            ticker = ProgressTicker(chain: chain, started: started, report: progress)
        }
        defer { ticker?.stop() }
        while let batch = try chain.last.next() {
            try sink?.write(batch)
            if control.flushEachBatch { try sink?.flush() }
            stats.rowsOut += batch.length
            stats.batchesOut += 1
            chain.rowsWritten.withLock { $0 += batch.length }
        }
        try sink?.finish()
        stats.wallSeconds = Date().timeIntervalSince(started)
        stats.rowsIn = chain.source.rows.value
        stats.stages = chain.stageStats()
        stats.interrupted = control.isStopped
        return stats
    }

    func build(control: RunControl) throws -> Chain {
        let reader = try openSource()
        let source = SourceNode(reader: reader, control: control)
        var nodes: [Node] = [source]
        for step in steps {
            switch step {
            case .swift(let name, let transform):
                nodes.append(SwiftNode(name: name, upstream: nodes.last!, transform: transform))
            case .python(let stages, let options):
                let withPolicy = options.onError == .fail ? stages : stages.map { stage -> ControlDocuments.Stage in
                    var s = stage
                    s.options["on_error"] = "skip"
                    return s
                }
                nodes.append(PythonNode(stages: withPolicy, options: options, upstream: nodes.last!, log: log, deadLetters: deadLetters, control: control))
            }
        }
        return Chain(source: source, nodes: nodes)
    }
}

/// Stops a running pipeline from outside (a signal handler, a cancelled task).
public final class RunControl: Sendable {
    private let stopped = Locked(false)
    /// Flush the sink after each batch (live streams).
    public let flushEachBatch: Bool
    public init(flushEachBatch: Bool = false) { self.flushEachBatch = flushEachBatch }
    /// Asks the source to stop; batches already read are finished and written.
    public func stop() { stopped.withLock { $0 = true } }
    /// Whether `stop()` was called.
    public var isStopped: Bool { stopped.value }

    private let starting = Locked(0)
    /// Whether a Python stage is starting its workers (waiting for READY, up to the startup
    /// timeout): nothing is in flight yet, so a stop request has nothing to finish.
    public var isStartingWorkers: Bool { starting.value > 0 }
    /// Runs `body` (a pool's start) with `isStartingWorkers` true.
    func startingWorkers<T>(_ body: () throws -> T) rethrows -> T {
        starting.withLock { $0 += 1 }
        defer { starting.withLock { $0 -= 1 } }
        return try body()
    }
}

/// A live view of a run for progress lines.
public struct ProgressSnapshot: Sendable {
    public var rowsRead: Int
    public var rowsWritten: Int
    public var seconds: Double
    public var inFlight: Int
    public var workersAlive: Int
    public var workers: Int
    public var restarts: Int
}

/// A pipeline error that is not a Python stage's (bad column name, wrong mask length).
public struct PipelineError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// Whether it is a usage error (exit code 2) rather than a data error (1).
    public var usage: Bool
    public init(_ message: String, usage: Bool = false) {
        self.message = message
        self.usage = usage
    }
    public var description: String { message }
}

/// Batches held in memory, as a reader.
final class MemoryReader: BatchReader {
    let batches: [RecordBatch]
    var index = 0
    let schema: Schema
    init(_ batches: [RecordBatch]) {
        self.batches = batches
        schema = batches.first?.schema ?? Schema([])
    }
    func next() throws -> RecordBatch? {
        guard index < batches.count else { return nil }
        defer { index += 1 }
        return batches[index]
    }
}

/// Moves a non-Sendable sink into the run thread, which is then its only user.
struct SinkBox: @unchecked Sendable {
    // @unchecked: the sink is handed over once and used only by the run thread afterwards.
    let sink: BatchWriter?
    init(_ sink: BatchWriter?) { self.sink = sink }
}
