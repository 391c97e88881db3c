import Foundation
import Testing
@testable import IsthmusBridge

/// When a waiting caller may poll for its doorbell answer instead of sleeping, and when input
/// files are shared: both depend on whether the workers leave the host a CPU.
@Suite("doorbell spin policy")
struct SpinPolicyTests {
    @Test("polls only while a CPU is left over for it", arguments: [
        // (configured, cpus, busy workers, expected seconds)
        (nil as Double?, 2, 1, SpinPolicy.defaultSeconds),
        (nil, 1, 1, 0),                 // everything on one CPU: the worker needs it
        (nil, 2, 2, 0),                 // two busy workers on two CPUs
        (nil, 16, 8, SpinPolicy.defaultSeconds),
        (0.001, 4, 3, 0.001),
        (0.001, 4, 4, 0),
        (0, 16, 1, 0),                  // turned off
        (5.0, 16, 1, SpinPolicy.maxSeconds),  // clamped
    ])
    func budget(_ c: (Double?, Int, Int, Double)) {
        #expect(SpinPolicy.budget(configured: c.0, cpus: c.1, busyWorkers: c.2) == c.3)
    }

    @Test("the affinity mask and the cgroup quota are read")
    func allowed() {
        let n = SpinPolicy.allowedCPUs()
        #expect(n >= 1 && n <= 1024)
        #expect(SpinPolicy.quotaCPUs(cpuMax: "max 100000\n") == nil)
        #expect(SpinPolicy.quotaCPUs(cpuMax: "200000 100000\n") == 2)
        #expect(SpinPolicy.quotaCPUs(cpuMax: "150000 100000") == 2)
        #expect(SpinPolicy.quotaCPUs(cpuMax: "50000 100000") == 1)
        #expect(SpinPolicy.quotaCPUs(cpuMax: "garbage") == nil)
    }

    @Test("input files are shared by default only when the workers leave the host no CPU of its own",
          arguments: [(1, 2, false), (2, 2, true), (3, 2, true), (1, 1, true), (2, 4, false), (3, 4, false), (4, 4, true), (8, 16, false)])
    func inputSharing(_ c: (Int, Int, Bool)) {
        #expect(PoolConfiguration.InputSharing.auto.resolved(workers: c.0, cpus: c.1) == (c.2 ? .on : .off))
        #expect(PoolConfiguration.InputSharing.on.resolved(workers: c.0, cpus: c.1) == .on)
        #expect(PoolConfiguration.InputSharing.off.resolved(workers: c.0, cpus: c.1) == .off)
        // Under a worker memory limit the file's mapping would count against it: auto copies.
        #expect(PoolConfiguration.InputSharing.auto.resolved(workers: c.0, cpus: c.1, memoryLimit: 1 << 30) == .off)
        #expect(PoolConfiguration.InputSharing.on.resolved(workers: c.0, cpus: c.1, memoryLimit: 1 << 30) == .on)
    }
}
