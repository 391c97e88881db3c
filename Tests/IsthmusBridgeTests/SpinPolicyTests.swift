import Foundation
import IsthmusArrow
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

    @Test("input files are always shared by default when the workers leave the host no CPU of its own, else while the submitter is behind",
          arguments: [(1, 2, false), (2, 2, true), (3, 2, true), (1, 1, true), (2, 4, false), (3, 4, false), (4, 4, true), (8, 16, false)])
    func inputSharing(_ c: (Int, Int, Bool)) {
        typealias Sharing = PoolConfiguration.InputSharing
        #expect(Sharing.auto.plan(workers: c.0, cpus: c.1) == (c.2 ? .share : .whenSubmitterBehind))
        #expect(Sharing.on.plan(workers: c.0, cpus: c.1) == .share)
        #expect(Sharing.off.plan(workers: c.0, cpus: c.1) == .copy)
        // Under a worker memory limit the file's mapping would count against it: auto copies.
        #expect(Sharing.auto.plan(workers: c.0, cpus: c.1, memoryLimit: 1 << 30) == .copy)
        #expect(Sharing.on.plan(workers: c.0, cpus: c.1, memoryLimit: 1 << 30) == .share)
    }

    @Test("a pool with remote workers or no arena never shares the input file")
    func noArenaNoSharing() {
        var c = PoolConfiguration(stages: [], inputSchema: Schema([]))
        c.shareInputFiles = .on
        #expect(c.sharingPlan(cpus: 16) == .share)
        c.sharedMemoryBytes = 0
        #expect(c.sharingPlan(cpus: 16) == .copy)
        #expect(!c.sharesInputFiles(cpus: 16))
    }

    @Test("the submitter is behind until half of its last 16 submits waited for the window")
    func submitPace() {
        var pace = SubmitPace()
        #expect(pace.submitterIsBehind)  // nothing has waited yet: share the first batches
        for _ in 0..<7 { pace.record(waited: true) }
        #expect(pace.submitterIsBehind)
        pace.record(waited: true)
        #expect(!pace.submitterIsBehind)  // 8 of the last 16 waited: copy
        for _ in 0..<8 { pace.record(waited: false) }
        #expect(!pace.submitterIsBehind)  // still 8 of 16
        pace.record(waited: false)
        #expect(pace.submitterIsBehind)  // the oldest wait left the window of 16
        for _ in 0..<100 { pace.record(waited: true) }
        #expect(!pace.submitterIsBehind)
        for _ in 0..<9 { pace.record(waited: false) }
        #expect(pace.submitterIsBehind)
    }
}
