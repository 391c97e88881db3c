import Foundation

/// The one thread that starts a pool's worker processes.
///
/// A worker asks the kernel to kill it when its parent goes away (`PR_SET_PDEATHSIG`), and on
/// Linux the "parent" is the thread that forked it, not the process: a worker started from a
/// thread that later exits is killed with it (PROTOCOL.md §12.2). Workers are started at
/// `WorkerPool.init` (any thread of the caller's) and restarted by whoever turns the pool's
/// loop — the I/O thread, or a caller waiting for its answer on a thread that may be a
/// short-lived dispatch thread. So every start goes through this thread, which lives until the
/// pool has stopped its workers.
final class SpawnThread: @unchecked Sendable {
    // @unchecked: `job` and `stopped` are guarded by `condition`.
    private let condition = NSCondition()
    private var job: (@Sendable () -> Void)?
    private var stopped = false

    init() {
        NamedThread.start("isthmus-spawn", stackSize: 1 << 20) { [self] in loop() }
    }

    /// Runs `body` on the spawn thread and returns what it returned (or throws what it threw).
    func run<T>(_ body: @escaping () throws -> T) throws -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        let call = UnsafeSendable(body)
        condition.lock()
        while job != nil && !stopped { condition.wait() }
        if stopped {
            condition.unlock()
            throw BridgeError(.cancelled, "the pool is stopping: no worker can be started any more")
        }
        job = {
            box.result = Result { try call.value() }
            done.signal()
        }
        condition.broadcast()
        condition.unlock()
        done.wait()
        return try box.result!.get()
    }

    /// Ends the thread once it is idle; later `run` calls throw.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while job == nil && !stopped { condition.wait() }
            guard let next = job else {
                condition.unlock()
                return
            }
            job = nil
            condition.broadcast()
            condition.unlock()
            next()
        }
    }
}

/// Carries a value across the hand-off to the spawn thread, which runs it while the caller
/// waits for it (so it is never used from two threads at once).
private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error>?
}

private struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
