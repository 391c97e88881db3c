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
/// so it is done only while a CPU is left over for it: the caller may run on at least as many
/// CPUs as there are workers with a request in flight, plus itself. With every process on one CPU
/// (`taskset -c 0`), polling would keep the worker from running (p90 144 → 449 µs), and the
/// policy says no. While it polls, the caller also watches the wake-up pipe and the socket, so
/// other callers' requests, worker exits and stop requests are not held up.
public enum SpinPolicy {
    /// The default budget when CPUs are left over.
    public static let defaultSeconds = 0.0003
    /// The most a caller polls for one answer, whatever it asks for: longer waits are cheaper
    /// asleep, and while it polls the caller holds the pool's loop.
    public static let maxSeconds = 0.001

    /// Seconds to poll before sleeping: `configured` (nil = `defaultSeconds`, at most
    /// `maxSeconds`) when `busyWorkers + 1 <= cpus`, that is when the caller would not take a
    /// CPU a busy worker needs; else 0.
    public static func budget(configured: Double?, cpus: Int, busyWorkers: Int) -> Double {
        let wanted = Swift.min(configured ?? defaultSeconds, maxSeconds)
        guard wanted > 0, busyWorkers + 1 <= cpus else { return 0 }
        return wanted
    }

    /// CPUs this process may use: its affinity mask (as `taskset` sets it), lowered by a cgroup
    /// CPU quota (a container's `--cpus`), at least 1.
    public static func allowedCPUs() -> Int {
        var mask = [UInt8](repeating: 0, count: 128)  // 1024 CPUs
        var n = ProcessInfo.processInfo.activeProcessorCount
        if let get = schedGetAffinity, mask.withUnsafeMutableBytes({ get(0, $0.count, $0.baseAddress!) }) == 0 {
            n = mask.reduce(0) { $0 + $1.nonzeroBitCount }
        }
        if let text = try? String(contentsOfFile: "/sys/fs/cgroup/cpu.max", encoding: .utf8), let quota = quotaCPUs(cpuMax: text) {
            n = Swift.min(n, quota)
        }
        return Swift.max(1, n)
    }

    /// CPUs a cgroup v2 `cpu.max` line allows ("QUOTA PERIOD", or "max PERIOD" for none),
    /// rounded up; nil when unlimited or unreadable.
    public static func quotaCPUs(cpuMax: String) -> Int? {
        let parts = cpuMax.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard parts.count >= 2, let quota = Double(parts[0]), let period = Double(parts[1]), quota > 0, period > 0 else { return nil }
        return Swift.max(1, Int((quota / period).rounded(.up)))
    }

    /// glibc's `sched_getaffinity`, which the Glibc module does not export (it is a GNU
    /// extension); looked up once.
    private static let schedGetAffinity: (@convention(c) (Int32, Int, UnsafeMutableRawPointer) -> Int32)? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "sched_getaffinity") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int, UnsafeMutableRawPointer) -> Int32).self)
    }()
}
