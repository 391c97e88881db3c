import Foundation
import IsthmusArrow
import IsthmusBridge

/// Settings of a Python stage. Every default is finite; consecutive Python stages with equal
/// settings run fused in one worker round trip.
public struct PythonStageOptions: Sendable, Equatable {
    /// Worker processes (default: one per core).
    public var workers: Int = Swift.max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// Batches each worker may hold in flight; nil: `defaultCredits`, or `latencyCredits` with a
    /// `targetLatency` (see `resolvedCredits`).
    public var credits: Int?
    /// Interpreter (default: `ISTHMUS_PYTHON`, else `python3` on PATH).
    public var python: String = PythonStageOptions.defaultPython
    /// Extra environment for the workers.
    public var environment: [String: String] = [:]
    /// Per-batch deadline in seconds (nil = none).
    public var timeout: Double?
    /// Resends per batch after crashes or timeouts.
    public var maxRetries: Int = 3
    /// Rows per batch sent to a worker.
    public var batchRows: Int = 65_536
    /// Bytes per batch sent to a worker.
    public var batchBytes: Int = 2 << 20
    /// Seconds a partial batch waits for more rows.
    public var linger: Double = 0.005
    /// Results in input order (default) or as they complete.
    public var ordered: Bool = true
    /// How batches are spread over workers.
    public var partitioning: Partitioning = .roundRobin
    /// Append the function's columns to the input columns.
    public var keepInput: Bool = false
    /// Largest result accepted per batch, in bytes.
    public var maxResultBytes: Int = 1 << 30
    /// Seconds from launch to READY.
    public var startupTimeout: Double = 60
    /// Per-worker memory limit in bytes (nil = none).
    public var workerMemoryLimit: Int?
    /// BLAS/OpenMP threads per worker (nil = (cores − 1) ÷ workers, at least 1: one core stays with the host).
    public var threadsPerWorker: Int?
    /// What happens when the function raises on some rows.
    public var onError: RowErrorPolicy = .fail
    /// Per-batch latency target: the batch size adapts (AIMD) between 1 and `batchRows` (nil = fixed size).
    public var targetLatency: Double?

    /// Credits when none are set. Four batches a worker, not two: the next batch is in the
    /// worker's mailbox before it needs it even when the host is late by two. Measured in
    /// alternating runs of one binary, `--credits 4` against 2 (medians of six to twelve
    /// each): W1 8K rows 2 workers 1.29×, W1 64K 1 worker 1.10×, W2 8K 2 workers 1.03×,
    /// W2 8K 1 worker 1.09×, W2 64K 2 workers 1.05×, W3 8K 1.10× (1 worker) and 1.15× (2).
    /// 8 against 4 moved W2 8K 2 workers by 0.99× and W1 8K 2 workers by 1.19×: not the
    /// default, as it doubles the batches the host holds again for a transport-bound case only.
    public static let defaultCredits = 4
    /// Credits when none are set and the batch size adapts to a latency target: batches
    /// queued at a worker add to each batch's latency, and with 4 the adaptive runs' p99 came
    /// closer to the target (W2, 5 ms: 3.3–4.6 ms in five runs, one batch at 5.35 ms, against
    /// 3.0–3.5 ms with 2).
    public static let latencyCredits = 2
    /// The credits the pool gets.
    public var resolvedCredits: Int { credits ?? (targetLatency == nil ? Self.defaultCredits : Self.latencyCredits) }
    /// Accept remote workers on this `tcp://HOST:PORT` instead of launching local ones.
    public var listen: String?
    /// CurveZMQ secret key (Z85) of the host for `listen`.
    public var curveSecretKey: String?
    /// Allow plaintext `listen`.
    public var insecure = false
    /// Size of the shared-memory arena local workers map (0: batches travel as frames).
    public var sharedMemoryBytes: Int = 256 << 20
    /// Whether local workers may read batches in place from the input file (PROTOCOL.md §19).
    public var shareInputFiles: PoolConfiguration.InputSharing = .auto
    /// Online stages: how long a caller polls for its answer before it sleeps (seconds; nil =
    /// 300 µs while a CPU is left over, 0 = never; see `SpinPolicy`).
    public var spinWait: Double?

    /// Defaults.
    public init() {}

    /// `ISTHMUS_PYTHON`, else the first `python3` on PATH, else `python3`.
    public static var defaultPython: String {
        let env = ProcessInfo.processInfo.environment
        if let p = env["ISTHMUS_PYTHON"], !p.isEmpty { return p }
        for dir in (env["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/python3"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return "python3"
    }
}

extension PythonStageOptions {
    /// Whether the stage's pool will send batches as ranges of the input file (§19), so that a
    /// reader should give its batches their place in it (`ReadOptions.trackOrigins`): the
    /// pool's own rule, asked before the input schema is known.
    public var sharesInputFiles: Bool {
        poolConfiguration(stages: [], inputSchema: Schema([]), log: { _ in }).sharesInputFiles()
    }

    /// The worker-pool settings for `stages` under these options.
    func poolConfiguration(stages: [ControlDocuments.Stage], inputSchema: Schema,
                           log: @escaping @Sendable (String) -> Void) -> PoolConfiguration {
        var config = PoolConfiguration(stages: stages, inputSchema: inputSchema)
        config.workers = workers
        config.credits = resolvedCredits
        config.python = python
        config.environment = environment
        config.batchTimeout = timeout
        config.maxRetries = maxRetries
        config.startupTimeout = startupTimeout
        config.ordered = ordered
        config.maxResultBytes = maxResultBytes
        config.requireSameRowCount = keepInput
        config.workerMemoryLimit = workerMemoryLimit
        config.threadsPerWorker = threadsPerWorker
        config.listen = listen
        config.curveSecretKey = curveSecretKey
        config.insecure = insecure
        config.sharedMemoryBytes = sharedMemoryBytes
        config.shareInputFiles = shareInputFiles
        config.spinWait = spinWait
        // Fixed-width columns say exactly how big a batch of `batchRows` is; other columns are
        // guessed at 32 bytes a row; `batchBytes` caps it either way.
        let rowBytes = inputSchema.fields.reduce(0) { $0 + ($1.type.byteWidth ?? 32) }
        config.expectedBatchBytes = Swift.min(batchBytes, batchRows * Swift.max(1, rowBytes))
        config.log = log
        return config
    }
}
