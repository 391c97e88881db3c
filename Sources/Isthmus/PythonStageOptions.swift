import Foundation
import IsthmusArrow
import IsthmusBridge

/// Settings of a Python stage. Every default is finite; consecutive Python stages with equal
/// settings run fused in one worker round trip.
public struct PythonStageOptions: Sendable, Equatable {
    /// Worker processes (default: one per core).
    public var workers: Int = Swift.max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// Batches each worker may hold in flight.
    public var credits: Int = 2
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
        config.credits = credits
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
