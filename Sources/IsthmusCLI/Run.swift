import ArgumentParser
import Foundation
import Isthmus
import IsthmusArrow
import IsthmusBridge

/// `isthmus run`: read, run Python stages, write.
struct RunCommand: ParsableCommand {
    /// The most workers a run starts: each is a Python process (tens of MiB at least), and a
    /// mistyped count must not fork the machine to a halt.
    static let maxWorkers = 1024

    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run Python functions as map stages over a file or stream.",
        discussion: """
            Example: isthmus run --input tx.arrows --output scored.arrow --udf score.py:predict --workers 2
            The output holds the columns the last function returned (plus the input's with --keep-input),
            in input order unless --unordered. Exit codes: 0 ok, 1 data/run failure, 2 usage/environment, 130/143 signals.
            """)

    @Option(name: .long, help: "Input file (.arrows, .arrow/.feather, .csv, .jsonl/.ndjson), a directory or glob of them (quote it), or - for stdin.")
    var input: String
    @Option(name: .long, help: "Output file or - for stdout.")
    var output: String
    @Option(name: .long, help: "Python function: FILE.py:NAME or module:NAME (repeat for fused consecutive stages).")
    var udf: [String] = []
    @Option(name: .long, help: "Input format when the extension does not say (arrows, arrow, csv, jsonl).")
    var from: String?
    @Option(name: .long, help: "Output format when the extension does not say (arrows, arrow, csv, jsonl; null discards the output).")
    var to: String?
    @Option(name: .long, help: "Worker processes.")
    var workers: Int = Swift.max(1, ProcessInfo.processInfo.activeProcessorCount)
    @Option(name: .long, help: "Batches each worker may hold in flight (default 4; 2 with --target-latency).")
    var credits: Int?
    @Option(name: .long, help: "Rows per batch sent to a worker.")
    var batchRows: Int = 65_536
    @Option(name: .long, help: "Bytes per batch sent to a worker (e.g. 2Mi, 512Ki).")
    var batchBytes: String = "2Mi"
    @Option(name: .long, help: "How long a partial batch waits for more rows (0, 500us, 5ms, 1s).")
    var linger: String = "5ms"
    @Option(name: .long, help: "Adapt the batch size (AIMD, up to --batch-rows) so each batch's latency stays under this (e.g. 5ms). Default: fixed size.")
    var targetLatency: String?
    @Option(name: .long, help: "Python interpreter (default: $ISTHMUS_PYTHON, else python3 on PATH).")
    var python: String?
    @Option(name: .long, help: "Per-batch deadline; a worker past it is killed, restarted and the batch retried (e.g. 30s). Default: none.")
    var timeout: String?
    @Option(name: .long, help: "Resends per batch after a worker crash or timeout.")
    var maxRetries: Int = 3
    @Option(name: .long, help: "Seconds a worker may take to start and load the functions.")
    var startupTimeout: String = "60s"
    @Option(name: .long, help: "Extra environment for workers, KEY=VALUE (repeatable).")
    var env: [String] = []
    @Option(name: .long, help: "Comma-separated input columns to keep before the first stage.")
    var select: String?
    @Flag(name: .long, help: "Append the function's columns to the input columns (one result row per input row).")
    var keepInput = false
    @Option(name: .long, help: "Hash-partition by this column: equal keys always reach the same worker slot.")
    var key: String?
    @Flag(name: .long, help: "Emit results as they complete instead of in input order.")
    var unordered = false
    @Option(name: .long, help: "Largest result per batch (e.g. 256Mi); a bigger result fails the run.")
    var maxResultBytes: String = "1Gi"
    @Option(name: .long, help: "Memory limit per worker (RLIMIT_AS), e.g. 2Gi. Default: none.")
    var workerMemoryLimit: String?
    @Flag(name: .long, inversion: .prefixedNo, help: "Show a live progress line on stderr (default: on when stderr is a terminal).")
    var progress: Bool?
    @Option(name: .long, help: "Write run statistics as JSON to this file.")
    var stats: String?
    @Option(name: .long, help: "When the function raises on some rows: fail (default), skip, or dead-letter=PATH (failed rows with their errors go to PATH, format by extension).")
    var onError: String = "fail"
    @Option(name: .long, help: "Let remote workers join on tcp://HOST:PORT (CurveZMQ) instead of starting local ones; waits --startup-timeout for --workers workers.")
    var listen: String?
    @Option(name: .long, help: "Secret key file written by `isthmus keys` for --listen (default: a fresh key pair for this run).")
    var curveKey: String?
    @Flag(name: .long, help: "Allow --listen without CurveZMQ: plaintext, anyone who can reach the port may join.")
    var insecure = false
    @Option(name: .long, help: "Size of the shared-memory arena local workers map to exchange batches without socket copies (sparse: only regions in use take memory); 0 sends every batch as frames over ZeroMQ.")
    var shmArena: String = "256Mi"
    @Option(name: .long, help: "Whether local workers read batches in place from an uncompressed Arrow IPC stream input file instead of a copy in the arena: auto (always when the workers leave the host no CPU of its own, else batch by batch while the host's copies are what the workers wait for), on, off.")
    var shareInput: String = "auto"
    @Option(name: .long, help: "Output compression for Arrow outputs: none, lz4, zstd.")
    var compression: String = "none"

    func validate() throws {
        if udf.isEmpty { throw ValidationError("expected at least one --udf FILE.py:NAME but found none") }
        if workers < 1 || workers > Self.maxWorkers {
            throw ValidationError("--workers: expected 1 to \(Self.maxWorkers) but found \(workers)")
        }
        if let credits, credits < 1 { throw ValidationError("--credits: expected at least 1 but found \(credits)") }
        if batchRows < 1 { throw ValidationError("--batch-rows: expected at least 1 but found \(batchRows)") }
        if maxRetries < 0 { throw ValidationError("--max-retries: expected 0 or more but found \(maxRetries)") }
    }

    func run() throws {
        var options = PythonStageOptions()
        options.workers = workers
        options.credits = credits
        options.batchRows = batchRows
        options.batchBytes = try parseSize(batchBytes, flag: "--batch-bytes", atLeast: 1)
        options.linger = try parseDuration(linger, flag: "--linger")
        if let python { options.python = python }
        if let targetLatency { options.targetLatency = try parseDuration(targetLatency, flag: "--target-latency") }
        if let timeout { options.timeout = try parseDuration(timeout, flag: "--timeout") }
        options.maxRetries = maxRetries
        options.startupTimeout = try parseDuration(startupTimeout, flag: "--startup-timeout")
        options.ordered = !unordered
        options.keepInput = keepInput
        options.maxResultBytes = try parseSize(maxResultBytes, flag: "--max-result-bytes", atLeast: 1)
        options.sharedMemoryBytes = try parseArenaSize(shmArena)
        guard let sharing = PoolConfiguration.InputSharing(rawValue: shareInput) else {
            throw CLIFailure.usage("--share-input: expected auto, on or off but found '\(shareInput)'")
        }
        options.shareInputFiles = sharing
        if let workerMemoryLimit { options.workerMemoryLimit = try parseSize(workerMemoryLimit, flag: "--worker-memory-limit") }
        if let key { options.partitioning = .hash(key: key) }
        for pair in env {
            guard let eq = pair.firstIndex(of: "="), eq != pair.startIndex else {
                throw CLIFailure.usage("--env: expected KEY=VALUE but found '\(pair)'")
            }
            options.environment[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
        }
        var deadLetterPath: String?
        switch onError {
        case "fail": options.onError = .fail
        case "skip": options.onError = .skip
        case let text where text.hasPrefix("dead-letter="):
            let path = String(text.dropFirst("dead-letter=".count))
            guard !path.isEmpty, path != "-", DataFormat.from(path: path) != nil else {
                throw CLIFailure.usage("--on-error dead-letter=PATH: expected a file path ending in .arrows, .arrow, .feather, .csv, .jsonl or .ndjson but found '\(path)'")
            }
            options.onError = .deadLetter
            deadLetterPath = path
        default:
            throw CLIFailure.usage("--on-error: expected fail, skip or dead-letter=PATH but found '\(onError)'")
        }
        if let listen {
            guard listen.hasPrefix("tcp://") else {
                throw CLIFailure.usage("--listen: expected tcp://HOST:PORT but found '\(listen)'")
            }
            options.listen = listen
            options.insecure = insecure
            if !insecure {
                let pair = try curveKey.map(KeyFiles.read) ?? KeyFiles.fresh()
                options.curveSecretKey = pair.secret
                note("isthmus: workers join with: isthmus-worker --connect \(listen) --server-key='\(pair.public)'")
            }
        } else {
            try checkUDFs()
        }
        let inputFormat = try formatOption(from, flag: "--from")
        let discard = to?.lowercased() == "null"
        let outputFormat = discard ? nil : try formatOption(to, flag: "--to")
        guard discard || outputFormat != nil || output == "-" || DataFormat.from(path: output) != nil else {
            throw CLIFailure.usage("cannot tell the format of '\(output)': expected an extension .arrows, .arrow, .feather, .csv, .jsonl or .ndjson, or --to")
        }
        if output == "-" && outputFormat == nil && !discard { throw CLIFailure.usage("--output -: expected --to FORMAT for stdout") }
        if input == "-" && inputFormat == nil { throw CLIFailure.usage("--input -: expected --from FORMAT for stdin") }

        let live = input == "-" || output == "-"
        var readOptions = RunFormats.readOptions()
        // Batches get their place in the input file only where a pool will share it (§19): a
        // batch with one holds the file's descriptor open.
        readOptions.trackOrigins = options.sharesInputFiles
        var pipeline = Pipeline(reading: input, format: inputFormat, options: readOptions)
        pipeline.log = { note($0) }
        if let select {
            let names = select.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingCharacters(in: .whitespaces) }
            guard !names.contains("") else {
                throw CLIFailure.usage("--select: expected comma-separated column names but found '\(select)'")
            }
            pipeline = pipeline.select(names)
        }
        for ref in udf { pipeline = pipeline.python(ref, options: options) }
        let deadLetterFile = FileHolder()
        if let deadLetterPath {
            let writeOptions = try RunFormats.writeOptions(compression: compression)
            pipeline.deadLetters = DeadLetterSink { schema in
                let (writer, file) = try Formats.openWriter(path: deadLetterPath, format: nil, schema: schema, options: writeOptions)
                deadLetterFile.file = file
                return writer
            }
        }

        let control = RunControl(flushEachBatch: live)
        let signals = SignalTrap(control: control)
        let sink = FileSink(path: output, format: outputFormat, options: try RunFormats.writeOptions(compression: compression))
        signals.onSecondSignal = { sink.abandonNow() }
        let showProgress = progress ?? (isatty(2) == 1)
        let progressLine = showProgress ? ProgressLine() : nil
        let result: RunStats
        do {
            var report: (@Sendable (ProgressSnapshot) -> Void)?
            if let progressLine { report = { progressLine.show($0) } }
            result = try pipeline.runBlocking(into: discard ? nil : sink, control: control, progress: report)
            progressLine?.end()
        } catch {
            progressLine?.end()
            sink.abandon()
            deadLetterFile.file?.abandon()
            throw RunFailure.map(error)
        }
        if !discard { try sink.commit() }
        if let deadLetters = pipeline.deadLetters, try deadLetters.finish() {
            try deadLetterFile.file?.commit()
            note("isthmus: \(deadLetters.count) failed row\(deadLetters.count == 1 ? "" : "s") written to \(deadLetterPath ?? "")")
        }
        let failed = result.stages.compactMap(\.rowsFailed).reduce(0, +)
        if failed > 0 && options.onError == .skip { note("isthmus: skipped \(failed) row\(failed == 1 ? "" : "s") the function failed on") }
        if let stats { try writeStats(result, to: stats) }
        if let signal = signals.received {
            note("interrupted: \(result.rowsOut) rows written")
            throw ExitCode(128 + signal)
        }
    }

    private func checkUDFs() throws {
        for ref in udf {
            guard let colon = ref.lastIndex(of: ":"), colon != ref.startIndex, ref.index(after: colon) != ref.endIndex else {
                throw CLIFailure.usage("--udf: expected FILE.py:NAME or module:NAME but found '\(ref)'")
            }
            let file = String(ref[..<colon])
            if file.hasSuffix(".py") && !FileManager.default.fileExists(atPath: file) {
                throw CLIFailure.usage("--udf \(ref): expected a Python file at '\(file)' but found none")
            }
        }
    }

    private func writeStats(_ stats: RunStats, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(stats)
        let out = try OutputFile(path: path)
        try data.withUnsafeBytes { try out.write($0) }
        try out.commit()
    }
}

func parseDuration(_ text: String, flag: String) throws -> Double {
    guard let v = Units.duration(text) else {
        throw CLIFailure.usage("\(flag): expected a duration like 0, 500us, 5ms, 2.5, 1s or 2m but found '\(text)'")
    }
    return v
}

func parseSize(_ text: String, flag: String, atLeast minimum: Int = 0) throws -> Int {
    guard let v = Units.size(text) else {
        throw CLIFailure.usage("\(flag): expected a size like 1048576, 64K, 8Mi or 1G but found '\(text)'")
    }
    guard v >= minimum else { throw CLIFailure.usage("\(flag): expected at least \(minimum) byte\(minimum == 1 ? "" : "s") but found '\(text)'") }
    return v
}

func formatOption(_ name: String?, flag: String) throws -> DataFormat? {
    guard let name else { return nil }
    guard let f = DataFormat(name: name) else {
        throw CLIFailure.usage("\(flag): expected arrows, arrow, csv or jsonl but found '\(name)'")
    }
    return f
}

/// Maps pipeline errors to CLI failures (exit codes per DESIGN.md).
enum RunFailure {
    static func map(_ error: Error) -> Error {
        switch error {
        case let e as BridgeError:
            return CLIFailure(code: e.isEnvironment ? 2 : 1, message: e.message, detail: e.detail)
        case let e as PipelineError:
            return CLIFailure(code: e.usage ? 2 : 1, message: e.message)
        default:
            return error
        }
    }
}

/// Holds the dead-letter output file for the run thread.
///
/// `@unchecked Sendable`: set once under the dead-letter sink's lock while the pipeline runs,
/// read by the run thread only after the pipeline has finished.
final class FileHolder: @unchecked Sendable {
    var file: OutputFile?
}

/// `--shm-arena SIZE`: 0 (off) or at least 1 MiB.
func parseArenaSize(_ text: String) throws -> Int {
    let bytes = text == "0" ? 0 : try parseSize(text, flag: "--shm-arena")
    if bytes > 0 && bytes < 1 << 20 {
        throw CLIFailure.usage("--shm-arena: expected 0 (off) or at least 1Mi but found '\(text)'")
    }
    return bytes
}
