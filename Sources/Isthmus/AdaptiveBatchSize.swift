/// Chooses a stage's batch size from measured per-batch latency, additive increase and
/// multiplicative decrease (AIMD, as Clipper does): grow by `step` rows while a batch's
/// latency stays well under the target (`growBelow`), halve when it comes close to it
/// (`cutAbove`). Pure; the caller measures.
public struct AdaptiveBatchSize: Sendable, Equatable {
    /// The latency each batch should stay under, in seconds.
    public let target: Double
    /// Smallest and largest batch size.
    public let minRows: Int
    public let maxRows: Int
    /// Rows added after a batch within the target.
    public let step: Int
    /// The current choice.
    public private(set) var rows: Int

    /// A controller starting at `initial` rows (clamped to the bounds).
    public init(target: Double, initial: Int, minRows: Int = 1, maxRows: Int, step: Int? = nil) {
        self.target = target
        self.minRows = Swift.max(1, minRows)
        self.maxRows = Swift.max(self.minRows, maxRows)
        self.step = Swift.max(1, step ?? Swift.max(1, maxRows / 64))
        rows = Swift.min(self.maxRows, Swift.max(self.minRows, initial))
    }

    /// Feeds one batch's latency (seconds) and its size, and returns the next batch size.
    ///
    /// Several batches are in flight at once, so many answers describe batches cut before the
    /// last change. Those say nothing about the current size, and reacting to them makes the
    /// size overshoot (measured: from 2K to 64K rows in 30 ms, then back to 8K, with a 5 ms
    /// target): a batch smaller than the current size that met the target does not grow it,
    /// and a batch larger than the current size that missed the target does not cut it again.
    /// Without `rows`, every answer counts (the textbook AIMD step).
    ///
    /// The size grows only while a batch takes at most `growBelow` of the target and is halved
    /// when one takes more than `cutAbove` of it; in between it holds. Probing right up to the
    /// target put the 99th percentile just over it (5.0–5.4 ms with a 5 ms target, W2); the
    /// band keeps the probing under the target. With the band at 70–90 % of the target, the
    /// 99th percentile still went over 5 ms in 5 of 9 runs (W2, one worker, `bench/run.py
    /// --only ADAPT` three times): the peak of each sawtooth tooth sits at the cut line, and noise
    /// takes it over. At 60–80 % it stayed at 3.6–4.7 ms in 12 runs of `--only ADAPT`, at
    /// 0.82–0.92× the best fixed batch size's throughput (0.85–0.90× before), but two full
    /// `make bench` runs each had one of their three runs over (5.6 and 5.04 ms). At 50–70 % it
    /// stayed at 3.3–4.2 ms in all 9 runs of three `--only ADAPT` (0.83–0.94×).
    @discardableResult
    public mutating func observe(latency: Double, rows batchRows: Int? = nil) -> Int {
        if latency > target * cutAbove {
            if batchRows.map({ $0 <= rows }) ?? true { rows = Swift.max(minRows, rows / 2) }
        } else if latency <= target * growBelow, batchRows.map({ $0 >= rows }) ?? true {
            rows = Swift.min(maxRows, rows + step)
        }
        return rows
    }

    /// Fractions of the target: grow at or under the first, halve over the second.
    public var growBelow = 0.5
    public var cutAbove = 0.7
}
