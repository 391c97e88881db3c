import ArgumentParser
import Foundation
import Isthmus
import IsthmusArrow

/// `isthmus demo`: generates card transactions, derives features in Swift, scores them with a
/// Python model class (loaded once per worker in `setup()`), keeps the high scores in Swift and
/// writes an Arrow file — with the progress line and a summary.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo", abstract: "Run the demo pipeline on generated data.")

    @Option(name: .long, help: "Folder for the demo's files.")
    var dir: String = "isthmus-demo"
    @Option(name: .long, help: "Transactions to generate.")
    var rows: Int = 1_000_000
    @Option(name: .long, help: "Worker processes.")
    var workers: Int = Swift.max(1, ProcessInfo.processInfo.activeProcessorCount)
    @Option(name: .long, help: "Python interpreter with the isthmus helper installed (default: $ISTHMUS_PYTHON, else python3).")
    var python: String?
    @Option(name: .long, help: "Score above which a transaction is kept.")
    var threshold: Double = 0.9

    func run() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let udfPath = "\(dir)/fraud_model.py"
        try DemoFiles.model.write(toFile: "\(dir)/model.json", atomically: true, encoding: .utf8)
        try DemoFiles.udf.write(toFile: udfPath, atomically: true, encoding: .utf8)

        // 1. Data: a generated transactions file.
        let input = "\(dir)/transactions.arrows"
        let genStart = Date()
        let (writer, file) = try Formats.openWriter(path: input, format: nil, schema: Synthetic.transactions(rows: 0).schema,
                                                    options: try RunFormats.writeOptions(compression: "none"))
        let source = Synthetic.transactions(rows: rows)
        while let b = try source.next() { try writer.write(b) }
        try writer.finish()
        try file.commit()
        note("demo: generated \(rows) transactions in \(input) (\(String(format: "%.2f", Date().timeIntervalSince(genStart)))s)")

        // 2. The pipeline: Swift features → Python model → Swift filter → Arrow file.
        var options = PythonStageOptions()
        options.workers = workers
        options.keepInput = true
        if let python { options.python = python }
        let threshold = self.threshold
        var pipeline = Pipeline(reading: input, options: RunFormats.readOptions())
            .addColumn("log_amount") { b in
                let a = b.column("amount")!
                return ArrayData.float64((0..<b.length).map { a.double($0).map { log1p($0) } })
            }
            .addColumn("night") { b in
                let h = b.column("hour")!
                return ArrayData.float64((0..<b.length).map { h.int64($0).map { $0 < 6 || $0 >= 22 ? 1.0 : 0.0 } })
            }
            .python("\(udfPath):FraudModel", name: "fraud_model", options: options)
            .filter("high_scores") { b in
                let s = b.column("score")!
                return (0..<b.length).map { (s.double($0) ?? 0) > threshold }
            }
        pipeline.log = { note($0) }
        let output = "\(dir)/high_risk.arrow"
        let sink = FileSink(path: output, format: nil, options: try RunFormats.writeOptions(compression: "none"))
        let line = ProgressLine()
        note("demo: scoring with \(workers) Python worker\(workers == 1 ? "" : "s") (\(options.python))")
        let stats: RunStats
        do {
            stats = try pipeline.runBlocking(into: sink, progress: { line.show($0) })
            line.end()
        } catch {
            line.end()
            sink.abandon()
            throw RunFailure.map(error)
        }
        try sink.commit()

        // 3. Summary.
        let rate = stats.wallSeconds > 0 ? Double(stats.rowsIn) / stats.wallSeconds : 0
        note("demo: \(stats.rowsIn) transactions scored in \(String(format: "%.2f", stats.wallSeconds))s (\(ProgressLine.human(rate)) rows/s); \(stats.rowsOut) with score > \(threshold) written to \(output)")
        if let py = stats.stages.first(where: { $0.kind == "python" }), let l = py.latencyMs, let p50 = l["p50"], let p99 = l["p99"] {
            note("demo: python stage: \(py.batchesIn) batches, latency p50 \(String(format: "%.1f", p50)) ms, p99 \(String(format: "%.1f", p99)) ms, \(py.restarts?.count ?? 0) worker restarts")
        }
        let reader = try Formats.openReader(path: output, format: nil, options: RunFormats.readOptions())
        var top: [(Double, [ArrowValue])] = []
        while let b = try reader.next() {
            let s = b.column("score")!
            for i in 0..<b.length { top.append((s.double(i) ?? 0, b.row(i))) }
            top.sort { $0.0 > $1.0 }
            if top.count > 5 { top.removeLast(top.count - 5) }
        }
        if !top.isEmpty {
            let rowsBatch = try RecordBatch(schema: reader.schema,
                                            columns: reader.schema.fields.enumerated().map { c, f in try ArrayData.build(f.type, top.map { $0.1[c] }) })
            note("demo: top \(top.count) by score:")
            note(Pretty.table(rowsBatch, maxRows: 5))
        }
    }
}

/// The demo's Python model and its weights.
enum DemoFiles {
    static let model = """
        {"features": ["log_amount", "night", "card_age_days"], "weights": [0.9, 1.6, -0.0012], "bias": -4.2}

        """

    static let udf = #"""
        """A small fraud model: logistic regression over three features, loaded once per worker."""
        import json
        import os

        import numpy as np
        import pyarrow as pa

        import isthmus


        @isthmus.udf(schema={"score": pa.float64()})
        class FraudModel:
            def setup(self):
                path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.json")
                with open(path) as f:
                    model = json.load(f)
                self.features = model["features"]
                self.weights = np.asarray(model["weights"], dtype=np.float64)
                self.bias = float(model["bias"])

            def __call__(self, batch: pa.RecordBatch):
                x = np.column_stack([
                    batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
                    for name in self.features
                ])
                z = x @ self.weights + self.bias
                return {"score": 1.0 / (1.0 + np.exp(-z))}

        """#
}
