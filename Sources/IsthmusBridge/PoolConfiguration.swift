import Foundation
import IsthmusArrow

/// How a `WorkerPool` runs its Python stages. Every default is finite.
public struct PoolConfiguration: Sendable {
    /// Python stages run in order inside one worker round trip (stage fusion).
    public var stages: [ControlDocuments.Stage]
    /// Schema of the batches that will be submitted.
    public var inputSchema: Schema
    /// Number of worker processes.
    public var workers: Int = Swift.max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// Batches a worker may hold in flight (`PythonStageOptions.resolvedCredits` sets it: 4, or
    /// 2 with a latency target; see `PythonStageOptions.defaultCredits` for the measurements).
    public var credits: Int = 4
    /// Python interpreter to run workers with.
    public var python: String = "python3"
    /// Extra environment variables for workers (on top of the host's).
    public var environment: [String: String] = [:]
    /// Per-batch deadline in seconds; nil = none.
    public var batchTimeout: Double?
    /// Attempts per batch beyond the first (crashes and timeouts alike).
    public var maxRetries: Int = 3
    /// Seconds a worker may take from launch to READY.
    public var startupTimeout: Double = 60
    /// Seconds between heartbeats to idle workers.
    public var heartbeatInterval: Double = 1
    /// Missed heartbeats after which an idle worker is considered hung.
    public var missedHeartbeats: Int = 5
    /// BLAS/OpenMP threads per worker; nil = (cores − 1) ÷ workers, at least 1 (one core stays with the host).
    public var threadsPerWorker: Int?
    /// Deliver results in input order (true) or as they complete.
    public var ordered: Bool = true
    /// Every batch is sent with `WorkerPool.request` (or `submit` + `result(for:)`), so a waiting
    /// caller always turns the I/O loop: once the workers are ready, the I/O thread stops
    /// watching the socket and only wakes for process exits, stop requests and every
    /// `nextTimeout` for heartbeats and deadlines. It would otherwise wake up with every answer
    /// and take a CPU the caller or the worker needs (one-row requests, p50, unpinned on two
    /// cores: see bench/README.md).
    public var callerDriven: Bool = false
    /// How long a caller waiting for a doorbell answer polls before it sleeps, in seconds; nil =
    /// `SpinPolicy.defaultSeconds` (300 µs), at most `SpinPolicy.maxSeconds` (1 ms), 0 = never.
    /// Polling happens only while the process may use at least as many CPUs as there are busy
    /// workers plus the caller (see `SpinPolicy`).
    public var spinWait: Double?
    /// Largest result (bytes of one RESULT) accepted; larger results fail the run.
    public var maxResultBytes: Int = 1 << 30
    /// Results must have exactly as many rows as the batch (needed to append input columns).
    public var requireSameRowCount: Bool = false
    /// Memory limit per worker in bytes (enforced with RLIMIT_AS in the worker); nil = none.
    public var workerMemoryLimit: Int?
    /// Accept remote workers on this `tcp://HOST:PORT` endpoint instead of launching local ones.
    public var listen: String?
    /// The host's CurveZMQ secret key (Z85) for `listen`; required unless `insecure`.
    public var curveSecretKey: String?
    /// Allow `listen` without CurveZMQ (plaintext, any peer may join).
    public var insecure = false
    /// Size of the shared arena local workers map (PROTOCOL.md §17); 0 sends every batch as
    /// frames over ZeroMQ. The arena is sparse: memory is used only for regions in use.
    public var sharedMemoryBytes: Int = 256 << 20
    /// Batches whose IPC stream is smaller than this travel as frames even with an arena: for
    /// small batches the copy through the socket costs less than the region bookkeeping.
    public var sharedMemoryThreshold: Int = 32 << 10
    /// Expected bytes of one submitted batch (0: unknown). With it, the part of the arena the
    /// run will use is touched while the workers start, not while batches flow.
    public var expectedBatchBytes: Int = 0
    /// Whether a batch decoded without a copy from a regular Arrow IPC input file goes to a
    /// local worker as a range of that file, which the worker maps, instead of being copied into
    /// the arena (PROTOCOL.md §19). Needs the arena (for results) and workers that can.
    public var shareInputFiles: InputSharing = .auto
    /// Where worker output lines and supervisor notes go.
    public var log: @Sendable (String) -> Void = { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }

    /// When batches that are ranges of the input file go to workers as such (PROTOCOL.md §19).
    ///
    /// The host's copy into the arena costs CPU, and it also brings the batch into the CPU's
    /// cache, where the worker then reads it. Measured on the 2-core development machine
    /// (alternating runs, medians of five or six): with 2 workers, whose CPU the host's copy
    /// takes, sharing the file was faster (W2 8K rows 15.5 vs 14.2 M rows/s, W2 64K 14.9 vs 12.7,
    /// W1 64K 151 vs 137); with one worker, where the host has a CPU of its own and the copy
    /// costs the worker nothing, copying was (W2 8K 11.4 vs 10.8, W1 64K 147 vs 143). On a
    /// 16-core machine the one submitting thread's copies became the limit from 4 to 8 workers
    /// on (see `SubmitPace`), so with CPUs to spare `auto` decides batch by batch.
    public enum InputSharing: String, Sendable, CaseIterable {
        /// Share when the workers leave the host no CPU of its own (workers + 1 > usable CPUs);
        /// otherwise share a batch only while the submitting thread is behind the workers
        /// (`SubmitPace`). Never under a worker memory limit (the arena's mapping is exempt
        /// from it, a worker's mapping of the input file would not be).
        case auto
        /// Always share (when the worker can).
        case on
        /// Always copy.
        case off

        /// What a pool of `workers` workers on `cpus` usable CPUs does with file-range batches.
        public func plan(workers: Int, cpus: Int, memoryLimit: Int? = nil) -> SharingPlan {
            switch self {
            case .auto: memoryLimit != nil ? .copy : workers + 1 > cpus ? .share : .whenSubmitterBehind
            case .on: .share
            case .off: .copy
            }
        }
    }

    /// What a pool does with a batch that is a range of a shared input file (§19).
    public enum SharingPlan: Sendable, Equatable {
        /// Copy it into the arena.
        case copy
        /// Send the range.
        case share
        /// Send the range while the submitting thread is behind the workers, else copy it.
        case whenSubmitterBehind
    }

    /// What this pool does with batches that are ranges of the input file (§19): never share
    /// without an arena or with remote workers; otherwise `shareInputFiles`'s plan for its
    /// workers on `cpus` usable CPUs.
    public func sharingPlan(cpus: Int = SpinPolicy.allowedCPUs()) -> SharingPlan {
        guard sharedMemoryBytes > 0 && listen == nil else { return .copy }
        return shareInputFiles.plan(workers: workers, cpus: cpus, memoryLimit: workerMemoryLimit)
    }

    /// Whether this pool may send batches as ranges of the input file (§19).
    public func sharesInputFiles(cpus: Int = SpinPolicy.allowedCPUs()) -> Bool {
        sharingPlan(cpus: cpus) != .copy
    }

    /// A configuration for `stages` over batches of `inputSchema`.
    public init(stages: [ControlDocuments.Stage], inputSchema: Schema) {
        self.stages = stages
        self.inputSchema = inputSchema
    }

    /// The name of the last stage (used in messages).
    var stageNames: String { stages.map(\.name).joined(separator: "+") }
}

/// Counters a pool keeps while it runs.
public struct PoolStats: Sendable, Codable {
    /// Batches sent (first attempts).
    public var batches = 0
    /// Batches resent after a worker failure.
    public var retries = 0
    /// Input rows submitted.
    public var rowsIn = 0
    /// Result rows received.
    public var rowsOut = 0
    /// Input rows isolated as failing (`on_error: skip`).
    public var rowsFailed = 0
    /// Bytes of input payload handed to ZeroMQ.
    public var bytesOut = 0
    /// Bytes of result payload received.
    public var bytesIn = 0
    /// Worker restarts, with their causes.
    public var restarts: [String] = []
    /// Workers currently ready.
    public var workersAlive = 0
    /// Batches sent but not yet answered.
    public var inFlight = 0
    /// Batches sent through the shared arena (the rest went as frames).
    public var shmBatches = 0
    /// Results the workers wrote into the shared arena (the rest came as frames).
    public var shmResults = 0
    /// Batches that went through a worker's doorbell instead of the socket (§18).
    public var doorbellBatches = 0
    /// Batches a worker read in place from the input file instead of from the arena (§19).
    public var fileBatches = 0
    /// Size of the shared arena in bytes (0: none).
    public var arenaBytes = 0
    /// Most bytes of the arena in use at once.
    public var arenaPeakBytes = 0
    /// All zero.
    public init() {}
}
