import ArgumentParser
import Foundation
import Isthmus
import IsthmusArrow
import IsthmusBridge

/// `isthmus bench`: measurements that need the Swift host itself (the driver is bench/run.py).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Host-side benchmarks (make bench runs the whole set).",
        subcommands: [SuiteBench.self, LatencyBench.self], defaultSubcommand: SuiteBench.self)
}

/// `isthmus bench suite`: runs the benchmark driver (bench/run.py) from a source checkout.
struct SuiteBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "suite", abstract: "Run bench/run.py (W1–W3, L1, Arrow I/O, memory) against this binary.")

    @Flag(name: .long, help: "10x fewer rows.")
    var quick = false
    @Option(name: .long, help: "Comma-separated subset: W1,W2,W3,L1,IO,RSS.")
    var only: String?
    @Option(name: .long, help: "Python interpreter with pyarrow, pyzmq and the isthmus helper.")
    var python: String?

    func run() throws {
        let driver = "bench/run.py"
        guard FileManager.default.fileExists(atPath: driver) else {
            throw CLIFailure.usage("expected \(driver) in the current folder (run this from an Isthmus checkout) but found none")
        }
        let py = python ?? PythonStageOptions.defaultPython
        var arguments = [driver]
        if quick { arguments.append("--quick") }
        if let only { arguments += ["--only", only] }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: py.contains("/") ? py : "/usr/bin/env")
        p.arguments = py.contains("/") ? arguments : [py] + arguments
        var env = ProcessInfo.processInfo.environment
        env["ISTHMUS_BIN"] = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        env["ISTHMUS_PYTHON"] = py
        p.environment = env
        try p.run()
        p.waitUntilExit()
        if p.terminationStatus != 0 { throw ExitCode(p.terminationStatus) }
    }
}

/// `isthmus bench latency`: one-row requests through the online `submit` path.
struct LatencyBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "latency", abstract: "Round-trip latency of one-row requests (L1).")

    @Option(name: .long, help: "Python function FILE.py:NAME taking (id int64, x float64).")
    var udf: String
    @Option(name: .long, help: "Requests to time.")
    var requests: Int = 10_000
    @Option(name: .long, help: "Untimed requests first.")
    var warmup: Int = 500
    @Option(name: .long, help: "Python interpreter.")
    var python: String?
    @Option(name: .long, help: "Shared-memory arena size; 0 sends requests through the socket (no arena, no doorbell).")
    var shmArena: String = "256Mi"
    @Option(name: .long, help: "How long the caller polls for an answer before it sleeps, at most 1ms (default 300us while a CPU is left over; 0 = never).")
    var spin: String?

    func run() throws {
        var options = PythonStageOptions()
        options.workers = 1
        options.credits = 1
        options.sharedMemoryBytes = try parseArenaSize(shmArena)
        if let spin {
            let seconds = try parseDuration(spin, flag: "--spin")
            guard seconds <= SpinPolicy.maxSeconds else {
                throw CLIFailure.usage("--spin: expected at most 1ms (longer waits are cheaper asleep) but found '\(spin)'")
            }
            options.spinWait = seconds
        }
        if let python { options.python = python }
        let schema = Schema([Field("id", .int64), Field("x", .float64)])
        let stage = try OnlineStage(udf: udf, inputSchema: schema, options: options, log: { note($0) })
        defer { stage.close() }
        var samples: [Double] = []
        samples.reserveCapacity(requests)
        for i in 0..<(warmup + requests) {
            let batch = try RecordBatch(schema: schema, columns: [ArrayData.int64([Int64(i)]), ArrayData.float64([Double(i) * 0.5])])
            let t0 = DispatchTime.now().uptimeNanoseconds
            let out = try stage.submitBlocking(batch)
            let t1 = DispatchTime.now().uptimeNanoseconds
            guard out.length == 1 else { throw CLIFailure.data("expected 1 result row but found \(out.length)") }
            // Every answer, outside the timed span: a fast wrong answer is no result.
            guard let y = out.column("y")?.double(0) else {
                throw CLIFailure.data("expected a float64 column y in the answer to request \(i) but found columns (\(out.schema.fields.map(\.name).joined(separator: ", ")))")
            }
            guard y == Double(i) + 1 else {
                throw CLIFailure.data("expected y = 2x + 1 = \(Double(i) + 1) for request \(i) but found \(y)")
            }
            if i >= warmup { samples.append(Double(t1 - t0) / 1000) }
        }
        samples.sort()
        func pct(_ p: Double) -> Double { samples[Swift.min(samples.count - 1, Int(Double(samples.count) * p))] }
        let doc: [String: Any] = ["version": 1, "requests": requests, "p50_us": pct(0.5), "p90_us": pct(0.9), "p99_us": pct(0.99),
                                  "max_us": samples.last ?? 0, "mean_us": samples.reduce(0, +) / Double(Swift.max(1, samples.count)),
                                  "doorbell_requests": stage.stats.doorbellBatches]
        let data = try JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys])
        try writeStandardOutput(String(decoding: data, as: UTF8.self) + "\n")
    }
}
