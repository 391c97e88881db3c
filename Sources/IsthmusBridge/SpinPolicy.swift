import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How long a caller waiting for a doorbell answer (PROTOCOL.md §18) polls before it sleeps.
///
/// A one-row request through a doorbell wakes two threads: the worker, and then the caller.
/// When the caller sleeps, its wake-up lands on an idle CPU, which on a virtual machine costs
/// tens of microseconds; when it polls instead, it sees the answer at once (L1, 2-core
/// machine, p50: 191–193 µs sleeping, 125–126 µs polling for up to 300 µs). Polling takes a CPU,
/// so it is done only while a CPU is left over: the caller may run on more CPUs than there are
/// workers with a request in flight, plus itself. With every process on one CPU
/// (`taskset -c 0`), polling would keep the worker from running (p90 144 → 449 µs), and the
/// policy says no.
public enum SpinPolicy {
    /// The default budget when CPUs are left over.
    public static let defaultSeconds = 0.0003

    /// Seconds to poll before sleeping: `configured` (nil = `defaultSeconds`) when
    /// `busyWorkers + 1 < cpus + 1`, that is when the caller would not take a CPU a busy
    /// worker needs; else 0.
    public static func budget(configured: Double?, cpus: Int, busyWorkers: Int) -> Double {
        let wanted = configured ?? defaultSeconds
        guard wanted > 0, busyWorkers + 1 <= cpus else { return 0 }
        return wanted
    }

    /// CPUs this process may run on (its affinity mask, as `taskset` sets it), at least 1.
    public static func allowedCPUs() -> Int {
        var mask = [UInt8](repeating: 0, count: 128)  // 1024 CPUs
        guard let get = schedGetAffinity,
              mask.withUnsafeMutableBytes({ get(0, $0.count, $0.baseAddress!) }) == 0 else {
            return Swift.max(1, ProcessInfo.processInfo.activeProcessorCount)
        }
        return Swift.max(1, mask.reduce(0) { $0 + $1.nonzeroBitCount })
    }

    /// glibc's `sched_getaffinity`, which the Glibc module does not export (it is a GNU
    /// extension); looked up once.
    private static let schedGetAffinity: (@convention(c) (Int32, Int, UnsafeMutableRawPointer) -> Int32)? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "sched_getaffinity") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int, UnsafeMutableRawPointer) -> Int32).self)
    }()
}
