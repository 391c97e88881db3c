import IsthmusBridge

/// Lets at most `permits` holders in at a time; the others wait suspended, holding no thread.
///
/// `OnlineStage.submit` (async) runs each request on a dispatch thread that blocks until the
/// answer comes. Without a gate, a thousand concurrent callers would block a thousand dispatch
/// threads (GCD caps its pool at 64 and the rest of the process starves); with it, at most the
/// pool's window of requests holds a thread, which is all the pool would let through anyway.
/// Waiters are admitted in arrival order. A cancelled task still waits for its turn.
final class AsyncGate: Sendable {
    private struct State {
        var available: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
        var head = 0
        var holders = 0
        var peak = 0
    }

    private let state: Locked<State>

    init(permits: Int) {
        precondition(permits > 0, "expected at least one permit")
        state = Locked(State(available: permits))
    }

    /// Waits for a permit.
    func acquire() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let admitted: Bool = state.withLock { s in
                guard s.available > 0 else {
                    s.waiters.append(c)
                    return false
                }
                s.available -= 1
                s.holders += 1
                s.peak = Swift.max(s.peak, s.holders)
                return true
            }
            if admitted { c.resume() }
        }
    }

    /// Gives a permit back: to the longest waiter, if any.
    func release() {
        let next: CheckedContinuation<Void, Never>? = state.withLock { s in
            if s.head < s.waiters.count {
                let c = s.waiters[s.head]
                s.head += 1
                if s.head > 64 && s.head * 2 > s.waiters.count {
                    s.waiters.removeFirst(s.head)
                    s.head = 0
                }
                return c  // the permit passes on: holders unchanged
            }
            s.available += 1
            s.holders -= 1
            return nil
        }
        next?.resume()
    }

    /// The most holders there have been at once (for tests).
    var peakHolders: Int { state.withLock { $0.peak } }
    /// Callers waiting for a permit (for tests).
    var waiting: Int { state.withLock { $0.waiters.count - $0.head } }
}
