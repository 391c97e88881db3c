/// Whether the thread submitting batches keeps the workers waiting, from whether its recent
/// submits found the pool's window full.
///
/// With `--share-input auto` on a machine with CPUs to spare, a batch that is a range of the
/// input file may go to a worker as that range (no copy, PROTOCOL.md §19) or as a copy in the
/// arena. The copy makes the worker faster (the batch arrives in the CPU cache, and the worker
/// maps no file), but it is made by the one submitting thread: measured on a 16-core machine
/// (W2, 40M rows), that thread copied about 4.6 GB/s, and with 8 or 12 workers copying capped
/// the run at 34–40 M rows/s where sharing reached 51–74. So the pool copies while the
/// submitter is ahead, and shares while it is behind: when it waits for the window the workers
/// are the bottleneck and its copies cost them nothing; when it does not, its copies are what
/// the workers wait for. The mix settles where the submitter just keeps up.
public struct SubmitPace: Sendable, Equatable {
    /// Bit i set: the i-th most recent submit waited for room in the window.
    private var history: UInt16 = 0

    public init() {}

    /// Records one submit: whether it had to wait for the window.
    public mutating func record(waited: Bool) {
        history = history << 1 | (waited ? 1 : 0)
    }

    /// Fewer than half of the last 16 submits waited: the workers drain the window as fast as
    /// it is filled. True at the start, when nothing has waited yet.
    public var submitterIsBehind: Bool { history.nonzeroBitCount < UInt16.bitWidth / 2 }
}
