#if os(Linux)
import Foundation
import Testing
@testable import IsthmusBridge

/// The host's threads carry their names into the kernel, where top, perf and /proc see them.
@Suite("named threads")
struct NamedThreadTests {
    /// The kernel's name of the thread that runs `name`'s body, read from inside it.
    static func kernelName(startingAs name: String) -> String? {
        let seen = Locked<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        NamedThread.start(name, stackSize: 1 << 18) {
            seen.withLock { $0 = try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8) }
            done.signal()
        }
        done.wait()
        return seen.value?.trimmingCharacters(in: .newlines)
    }

    @Test("a thread's name reaches the kernel")
    func nameReachesKernel() {
        #expect(Self.kernelName(startingAs: "isthmus-feeder") == "isthmus-feeder")
    }

    @Test("a name longer than the kernel keeps is cut to 15 bytes")
    func longNameIsCut() {
        #expect(Self.kernelName(startingAs: "isthmus-a-very-long-name") == "isthmus-a-very-")
    }

    @Test("the thread that names another keeps its own name")
    func callerKeepsName() throws {
        let before = try String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)
        _ = Self.kernelName(startingAs: "isthmus-other")
        #expect(try String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8) == before)
    }
}
#endif
