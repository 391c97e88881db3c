import Foundation
import Histogram

/// Counters of one stage.
public struct StageStats: Sendable, Codable {
    /// Stage name.
    public var name: String
    /// `swift` or `python`.
    public var kind: String
    public var rowsIn = 0
    public var rowsOut = 0
    public var batchesIn = 0
    public var batchesOut = 0
    public var bytesIn = 0
    public var bytesOut = 0
    /// Per-batch latency percentiles in milliseconds (Python stages).
    public var latencyMs: [String: Double]?
    /// Worker restarts and their causes (Python stages).
    public var restarts: [String]?
    /// Batches resent after worker failures.
    public var retries: Int?
    /// Workers of the stage.
    public var workers: Int?
    /// Seconds from the stage's start until every worker was READY (Python stages).
    public var startupSeconds: Double?
    /// Input rows the function failed on and that were skipped or dead-lettered.
    public var rowsFailed: Int?
    /// With a latency target: the batch sizes chosen over time, as [seconds since start, rows].
    public var batchSizes: [[Double]]?
    /// Batches that went to the workers through the shared arena (the rest went as frames).
    public var shmBatches: Int?
    /// Results the workers wrote into the shared arena (the rest came back as frames).
    public var shmResults: Int?
    /// Batches that went to the workers through their doorbells, not the socket (§18).
    public var doorbellBatches: Int?
    /// Batches the workers read in place from the input file, not from the arena (§19).
    public var fileBatches: Int?
    /// Size of the shared arena, and the most of it in use at once, in bytes (0: no arena).
    public var arenaBytes: Int?
    public var arenaPeakBytes: Int?
}

/// What a pipeline run did (`--stats FILE` writes it as JSON with `"version": 1`).
public struct RunStats: Sendable, Codable {
    public var version = 1
    public var rowsIn = 0
    public var rowsOut = 0
    public var batchesOut = 0
    public var wallSeconds = 0.0
    public var stages: [StageStats] = []
    /// Whether the run stopped early on a signal.
    public var interrupted = false
}

/// Per-batch latencies of a stage, recorded into an HDR histogram (microsecond resolution).
final class LatencyRecorder: @unchecked Sendable {
    // @unchecked: the histogram is only touched while `lock` is held.
    private let lock = NSLock()
    private var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)

    func record(seconds: Double) {
        let us = UInt64(Swift.max(1, Swift.min(seconds * 1e6, 3_600_000_000)))
        lock.lock(); defer { lock.unlock() }
        _ = histogram.record(us)
    }

    func percentilesMs() -> [String: Double] {
        lock.lock(); defer { lock.unlock() }
        guard histogram.totalCount > 0 else { return [:] }
        return ["p50": Double(histogram.valueAtPercentile(50)) / 1000,
                "p90": Double(histogram.valueAtPercentile(90)) / 1000,
                "p99": Double(histogram.valueAtPercentile(99)) / 1000,
                "max": Double(histogram.max) / 1000]
    }
}
