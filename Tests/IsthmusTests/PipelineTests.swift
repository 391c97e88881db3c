import Foundation
import IsthmusArrow
import IsthmusBridge
import Testing
@testable import Isthmus

/// Pipelines with real Python workers (the interpreter from ISTHMUS_PYTHON or the repo's .venv).
enum PythonEnv {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var python: String {
        if let p = ProcessInfo.processInfo.environment["ISTHMUS_PYTHON"], !p.isEmpty { return p }
        return root.appendingPathComponent(".venv/bin/python").path
    }

    /// Writes `source` to a fresh .py file and returns its path.
    static func udfFile(_ source: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("isthmus-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("udfs.py").path
        try source.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func options(workers: Int = 2) -> PythonStageOptions {
        var o = PythonStageOptions()
        o.python = python
        o.workers = workers
        return o
    }

    static let udfs = """
        import time
        import pyarrow as pa
        import pyarrow.compute as pc

        def linear(batch):
            return {"y": pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)}

        def plus_one(batch):
            return {"z": pc.add(batch.column("y"), 1.0)}

        def slow(batch):
            time.sleep(0.02)
            return {"y": batch.column("x")}
        """
}

private func batches(_ n: Int, per: Int) -> [RecordBatch] {
    stride(from: 0, to: n, by: per).map { start in
        let count = min(per, n - start)
        return try! RecordBatch(["id": ArrayData.int64((start..<start + count).map { Int64($0) }),
                                 "x": ArrayData.float64((start..<start + count).map { Double($0) })])
    }
}

private func collect(_ p: Pipeline) async throws -> [RecordBatch] {
    var out: [RecordBatch] = []
    for try await b in p.results() { out.append(b) }
    return out
}

@Suite("Pipelines with Python workers", .serialized)
struct PipelineTests {
    @Test("Swift feature stage → Python stage (keep input) → Swift filter: values and order")
    func mixed() async throws {
        let file = try PythonEnv.udfFile(PythonEnv.udfs)
        var options = PythonEnv.options()
        options.keepInput = true
        options.batchRows = 700
        let pipeline = Pipeline(batches: batches(10_000, per: 1000))
            .addColumn("x2") { b in .float64((0..<b.length).map { b.column("x")!.double($0).map { $0 * 2 } }) }
            .python("\(file):linear", options: options)
            .filter("even ids") { b in (0..<b.length).map { b.column("id")!.int64($0)! % 2 == 0 } }
        let out = try await collect(pipeline)
        let rows = out.flatMap { b in (0..<b.length).map { (b.column("id")!.int64($0)!, b.column("x2")!.double($0)!, b.column("y")!.double($0)!) } }
        #expect(out.first?.schema.fields.map(\.name) == ["id", "x", "x2", "y"])
        #expect(rows.count == 5000)
        #expect(rows.map(\.0) == stride(from: 0, to: 10_000, by: 2).map { Int64($0) })
        #expect(rows.allSatisfy { $0.1 == Double($0.0) * 2 && $0.2 == Double($0.0) * 2 + 1 })
    }

    @Test("consecutive Python stages with equal options are fused into one round trip")
    func fusion() async throws {
        let file = try PythonEnv.udfFile(PythonEnv.udfs)
        let options = PythonEnv.options(workers: 1)
        let pipeline = Pipeline(batches: batches(3000, per: 1000))
            .python("\(file):linear", options: options)
            .python("\(file):plus_one", options: options)
        #expect(pipeline.steps.count == 1)
        let out = try await collect(pipeline)
        let z = out.flatMap { b in (0..<b.length).map { b.column("z")!.double($0)! } }
        #expect(z == (0..<3000).map { Double($0) * 2 + 2 })
    }

    @Test("a slow Python stage paces the source: rows read ahead of the sink stay bounded")
    func backpressure() throws {
        let file = try PythonEnv.udfFile(PythonEnv.udfs)
        var options = PythonEnv.options(workers: 1)
        options.credits = 1
        options.batchRows = 100
        options.linger = 0
        let read = Locked(0)
        let pipeline = Pipeline(source: { CountingReader(batches(20_000, per: 100), read: read) })
            .python("\(file):slow", options: options)
        let sink = CountingSink()
        sink.onWrite = { written in sink.maxAhead = max(sink.maxAhead, read.value - written) }
        let stats = try pipeline.runBlocking(into: sink)
        #expect(stats.rowsOut == 20_000)
        #expect(sink.rows == 20_000)
        // window (1 worker × 1 credit × 2) + channel (4) + batcher and threads in hand: far below the input.
        #expect(sink.maxAhead <= 12 * 100, "the source ran \(sink.maxAhead) rows ahead")
        #expect(sink.maxAhead >= 100)
    }

    @Test("online scoring: submit one batch, get its answer, from many tasks at once")
    func online() async throws {
        let file = try PythonEnv.udfFile(PythonEnv.udfs)
        let schema = Schema([Field("id", .int64), Field("x", .float64)])
        let stage = try OnlineStage(udf: "\(file):linear", inputSchema: schema, options: PythonEnv.options(workers: 2))
        defer { stage.close() }
        try await withThrowingTaskGroup(of: (Int, Double).self) { group in
            for i in 0..<50 {
                group.addTask {
                    let b = try RecordBatch(schema: schema, columns: [.int64([Int64(i)]), .float64([Double(i)])])
                    let r = try await stage.submit(b)
                    return (i, r.column("y")!.double(0)!)
                }
            }
            for try await (i, y) in group { #expect(y == Double(i) * 2 + 1) }
        }
    }

    @Test("a UDF that raises stops the run with the traceback, stage, batch and rows")
    func exception() async throws {
        let file = try PythonEnv.udfFile("def boom(batch):\n    raise KeyError('no such feature')\n")
        var options = PythonEnv.options(workers: 1)
        options.batchRows = 500
        do {
            _ = try await collect(Pipeline(batches: batches(1000, per: 1000)).python("\(file):boom", options: options))
            Issue.record("expected the run to fail")
        } catch let error as BridgeError {
            #expect(error.kind == .userError)
            #expect(error.message.contains("stage boom batch 0 rows 0–499"), "\(error.message)")
            #expect(error.message.contains("KeyError"), "\(error.message)")
            #expect(error.detail.contains("raise KeyError('no such feature')"), "\(error.detail)")
        }
    }
}

/// A sink that counts rows and reports each write.
final class CountingSink: BatchWriter, @unchecked Sendable {
    var rows = 0
    var maxAhead = 0
    var onWrite: ((Int) -> Void)?
    func write(_ batch: RecordBatch) throws {
        rows += batch.length
        onWrite?(rows)
    }
    func flush() throws {}
    func finish() throws {}
}

/// A reader over batches that counts the rows handed out.
final class CountingReader: BatchReader {
    let batches: [RecordBatch]
    let read: Locked<Int>
    var index = 0
    var schema: Schema { batches[0].schema }
    init(_ batches: [RecordBatch], read: Locked<Int>) {
        self.batches = batches
        self.read = read
    }
    func next() throws -> RecordBatch? {
        guard index < batches.count else { return nil }
        defer { index += 1 }
        read.withLock { $0 += batches[index].length }
        return batches[index]
    }
}

@Suite("Broadcast partitioning", .serialized)
struct BroadcastTests {
    @Test("a broadcast batch reaches every worker slot once")
    func broadcast() async throws {
        let file = try PythonEnv.udfFile("""
            import os
            import pyarrow as pa
            def slot(batch):
                return {"id": batch.column("id"), "slot": pa.array([int(os.environ["ISTHMUS_SLOT"])] * batch.num_rows, pa.int64())}
            """)
        var options = PythonEnv.options(workers: 3)
        options.partitioning = .broadcast
        let batch = try RecordBatch(["id": ArrayData.int64([1, 2]), "x": ArrayData.float64([0.5, 1.5])])
        var seen: [Int64: [Int64]] = [:]
        for try await b in Pipeline(batches: [batch]).python("\(file):slot", options: options).results() {
            for i in 0..<b.length { seen[b.column("slot")!.int64(i)!, default: []].append(b.column("id")!.int64(i)!) }
        }
        #expect(seen == [0: [1, 2], 1: [1, 2], 2: [1, 2]])
    }
}
