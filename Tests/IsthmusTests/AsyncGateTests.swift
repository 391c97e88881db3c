import IsthmusBridge
import Testing
@testable import Isthmus

@Suite("async gate")
struct AsyncGateTests {
    @Test("at most `permits` holders at once; every waiter gets in, in turn")
    func bounded() async {
        let gate = AsyncGate(permits: 3)
        let inside = Locked(0), most = Locked(0), done = Locked(0)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<40 {
                group.addTask {
                    await gate.acquire()
                    let now = inside.withLock { v -> Int in v += 1; return v }
                    most.withLock { $0 = Swift.max($0, now) }
                    try? await Task.sleep(nanoseconds: 1_000_000)
                    inside.withLock { $0 -= 1 }
                    done.withLock { $0 += 1 }
                    gate.release()
                }
            }
        }
        #expect(done.value == 40)
        #expect(most.value <= 3 && gate.peakHolders <= 3)
        #expect(most.value >= 1)
    }

    @Test("a released permit goes to the longest waiter")
    func fifo() async {
        let gate = AsyncGate(permits: 1)
        await gate.acquire()
        let order = Locked<[Int]>([])
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<5 {
                group.addTask {
                    await gate.acquire()
                    order.withLock { $0.append(i) }
                    gate.release()
                }
                // Let task i queue before task i + 1.
                while gate.waiting < i + 1 { await Task.yield() }
            }
            gate.release()
        }
        #expect(order.value == [0, 1, 2, 3, 4])
    }
}
