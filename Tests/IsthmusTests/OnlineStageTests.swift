import Foundation
import Testing
import IsthmusArrow
import IsthmusBridge
@testable import Isthmus

/// The request/response path: callers turn the pool's I/O loop themselves while they wait
/// (`WorkerPool.request`), so everything the I/O thread does for streams (restarts, deadlines,
/// failures) must also happen while a caller drives.
@Suite("online stage", .serialized)
struct OnlineStageTests {
    static let schema = Schema([Field("id", .int64), Field("x", .float64)])

    static func request(_ i: Int) throws -> RecordBatch {
        try RecordBatch(schema: schema, columns: [.int64([Int64(i)]), .float64([Double(i)])])
    }

    /// A file that does not exist yet: a UDF misbehaves once, when it creates it.
    static func marker() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("isthmus-once-\(UUID().uuidString)").path
    }

    /// `die_once`: y = 2x + 1, except that the worker kills itself (SIGKILL) on request `id`
    /// the first time, that is while `marker` does not exist.
    static func dieOnce(id: Int, marker: String) throws -> String {
        try PythonEnv.udfFile("""
            import os, signal
            import pyarrow.compute as pc

            def die_once(batch):
                if batch.column("id")[0].as_py() == \(id) and not os.path.exists(\(String(reflecting: marker))):
                    open(\(String(reflecting: marker)), "w").close()
                    os.kill(os.getpid(), signal.SIGKILL)
                return {"y": pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)}
            """) + ":die_once"
    }

    /// `linear`, in a worker whose first reply mailbox is written by `evil` (Python statements
    /// with `frames` and `box` in scope, returning what `encode_mailbox` returns) instead of
    /// the real encoder.
    static func lyingMailbox(_ evil: String, marker: String) throws -> String {
        try PythonEnv.udfFile("""
            import os, struct
            import pyarrow.compute as pc
            import isthmus.protocol as P

            _real = P.encode_mailbox

            def _once(frames, box):
                if not os.path.exists(\(String(reflecting: marker))):
                    open(\(String(reflecting: marker)), "w").close()
                    \(evil)
                return _real(frames, box)

            P.encode_mailbox = _once

            def linear(batch):
                return {"y": pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)}
            """) + ":linear"
    }

    @Test("sequential one-row requests come back with their own values")
    func sequential() throws {
        let file = try PythonEnv.udfFile(PythonEnv.udfs)
        let stage = try OnlineStage(udf: "\(file):linear", inputSchema: Self.schema, options: PythonEnv.options(workers: 1))
        defer { stage.close() }
        for i in 0..<300 {
            let r = try stage.submitBlocking(Self.request(i))
            #expect(r.column("y")?.double(0) == Double(i) * 2 + 1)
        }
        #expect(stage.stats.rowsOut == 300)
        // One request at a time: every one went through the worker's doorbell.
        #expect(stage.stats.doorbellBatches == 300)
    }

    @Test("without the arena there is no doorbell, and requests go through the socket")
    func withoutArena() throws {
        let file = try PythonEnv.udfFile(PythonEnv.udfs)
        var options = PythonEnv.options(workers: 1)
        options.sharedMemoryBytes = 0
        let stage = try OnlineStage(udf: "\(file):linear", inputSchema: Self.schema, options: options)
        defer { stage.close() }
        for i in 0..<50 {
            #expect(try stage.submitBlocking(Self.request(i)).column("y")?.double(0) == Double(i) * 2 + 1)
        }
        #expect(stage.stats.doorbellBatches == 0)
    }

    @Test("requests larger than the arena threshold ride the doorbell as region descriptors")
    func largeRequests() throws {
        let file = try PythonEnv.udfFile(PythonEnv.udfs)
        let stage = try OnlineStage(udf: "\(file):linear", inputSchema: Self.schema, options: PythonEnv.options(workers: 1))
        defer { stage.close() }
        for round in 0..<5 {
            let n = 20_000 + round
            let batch = try RecordBatch(schema: Self.schema, columns: [.int64((0..<n).map { Int64($0) }), .float64((0..<n).map { Double($0 + round) })])
            let r = try stage.submitBlocking(batch)
            #expect(r.length == n)
            #expect(r.column("y")?.double(n - 1) == Double(n - 1 + round) * 2 + 1)
        }
        #expect(stage.stats.doorbellBatches == 5)
        #expect(stage.stats.shmBatches == 5)
    }

    /// Reply mailboxes a worker lies with once (Python written over the real encoder, see
    /// `lyingMailbox`), and the note the host must log before it replaces that worker.
    static let lyingReplies: [(String, String)] = [
        // A HEARTBEAT where the RESULT should be.
        ("return _real([P.encode_envelope(P.Kind.HEARTBEAT), b'{\"rss_bytes\": 1}'], box)",
         "rang its doorbell with HEARTBEAT for batch 0 attempt 0, expected the RESULT or ERROR"),
        // 1000 frames claimed.
        ("struct.pack_into('<II', box, 0, 1000, 0); return True",
         "malformed reply mailbox: expected 1 to 64 frames in the mailbox message, found 1000"),
    ]

    @Test("a worker that lies in its reply mailbox is replaced and the request answered", arguments: lyingReplies)
    func lyingReply(_ lie: (evil: String, note: String)) throws {
        let marker = Self.marker()
        defer { try? FileManager.default.removeItem(atPath: marker) }
        try Self.expectReplacedOnce(udf: Self.lyingMailbox(lie.evil, marker: marker), logging: [lie.note])
    }

    /// Five requests to `udf`, whose worker misbehaves once: every answer is right, the
    /// worker was replaced once, and the host logged a line with every one of `logging`.
    static func expectReplacedOnce(udf: String, logging: [String]) throws {
        let notes = Locked<[String]>([])
        let stage = try OnlineStage(udf: udf, inputSchema: schema, options: PythonEnv.options(workers: 1),
                                    log: { line in notes.withLock { $0.append(line) } })
        defer { stage.close() }
        for i in 0..<5 {
            #expect(try stage.submitBlocking(request(i)).column("y")?.double(0) == Double(i) * 2 + 1, "request \(i)")
        }
        #expect(stage.stats.restarts.count == 1)
        #expect(notes.value.contains { line in logging.allSatisfy { line.contains($0) } }, "\(notes.value)")
    }

    /// `linear`, in a worker whose first answer is rung with the byte `ring` instead of its
    /// mailbox's slot + 1 (the answer itself is in the right reply mailbox).
    static func lyingRing(_ ring: Int, marker: String) throws -> String {
        try PythonEnv.udfFile("""
            import os
            import pyarrow.compute as pc
            import isthmus.protocol as P
            import isthmus.runtime as R

            _real = R.Doorbell.reply

            def _once(self, frames, slot):
                if os.path.exists(\(String(reflecting: marker))):
                    return _real(self, frames, slot)
                open(\(String(reflecting: marker)), "w").close()
                P.encode_mailbox(frames, self.reply_boxes[slot])
                return os.write(self.reply_fd, bytes((\(ring),))) == 1

            R.Doorbell.reply = _once

            def linear(batch):
                return {"y": pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)}
            """) + ":linear"
    }

    @Test("a worker that rings a mailbox holding no batch of its own is replaced and the request answered",
          arguments: [(2, "rang its doorbell for mailbox 1 of 4"), (9, "rang its doorbell for mailbox 8 of 4")])
    func lyingRing(_ lie: (ring: Int, note: String)) throws {
        // The default 4 credits give the worker 4 mailboxes ("of 4"); one request holds mailbox 0.
        #expect(PythonEnv.options(workers: 1).resolvedCredits == 4)
        let marker = Self.marker()
        defer { try? FileManager.default.removeItem(atPath: marker) }
        try Self.expectReplacedOnce(udf: Self.lyingRing(lie.ring, marker: marker),
                                    logging: [lie.note, "expected one of the mailboxes it was rung for"])
    }

    @Test("many threads at once: one drives, the others get their answers as they arrive")
    func concurrentThreads() throws {
        let file = try PythonEnv.udfFile(PythonEnv.udfs)
        let stage = try OnlineStage(udf: "\(file):linear", inputSchema: Self.schema, options: PythonEnv.options(workers: 2))
        defer { stage.close() }
        let wrong = Locked(0)
        let group = DispatchGroup()
        for t in 0..<8 {
            group.enter()
            Thread.detachNewThread {
                for k in 0..<40 {
                    let i = t * 1000 + k
                    let y = (try? stage.submitBlocking(Self.request(i)))?.column("y")?.double(0)
                    if y != Double(i) * 2 + 1 { wrong.withLock { $0 += 1 } }
                }
                group.leave()
            }
        }
        // A waiter nobody wakes must fail the test, not hang the suite.
        #expect(group.wait(timeout: .now() + 120) == .success)
        #expect(wrong.value == 0)
        #expect(stage.stats.rowsOut == 320)
    }

    @Test("many async callers at once: each gets its own answer, and no more of them hold a thread than the pool's window")
    func concurrentTasks() async throws {
        let file = try PythonEnv.udfFile(PythonEnv.udfs)
        var options = PythonEnv.options(workers: 1)
        options.credits = 1
        let stage = try OnlineStage(udf: "\(file):linear", inputSchema: Self.schema, options: options)
        defer { stage.close() }
        let n = 300
        let wrong = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<n {
                group.addTask { try await stage.submit(Self.request(i)).column("y")?.double(0) != Double(i) * 2 + 1 }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(wrong == 0)
        #expect(stage.stats.rowsOut == n)
        // 1 worker × 1 credit: a window of 2. The other 298 callers waited suspended.
        #expect(stage.gate.peakHolders >= 1 && stage.gate.peakHolders <= 2)
    }

    @Test("a worker killed in the middle of a request is replaced and the request answered")
    func workerKilledMidRequest() throws {
        let marker = Self.marker()
        let udf = try Self.dieOnce(id: 7, marker: marker)
        defer { try? FileManager.default.removeItem(atPath: marker) }
        let stage = try OnlineStage(udf: udf, inputSchema: Self.schema, options: PythonEnv.options(workers: 1))
        defer { stage.close() }
        for i in 0..<12 {
            let r = try stage.submitBlocking(Self.request(i))
            #expect(r.column("y")?.double(0) == Double(i) * 2 + 1, "request \(i)")
        }
        #expect(FileManager.default.fileExists(atPath: marker))
        #expect(stage.stats.retries == 1)
        #expect(stage.stats.restarts.count == 1)
    }

    @Test("a worker restarted while a short-lived thread waits outlives that thread")
    func restartFromShortLivedThread() throws {
        // Workers die with the thread that started them (PR_SET_PDEATHSIG); restarts happen on
        // whichever thread turns the loop, so they must still be started from a thread that
        // lives as long as the pool.
        let marker = Self.marker()
        let udf = try Self.dieOnce(id: 3, marker: marker)
        defer { try? FileManager.default.removeItem(atPath: marker) }
        let stage = try OnlineStage(udf: udf, inputSchema: Self.schema, options: PythonEnv.options(workers: 1))
        defer { stage.close() }
        let wrong = Locked(0)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            for i in 0..<6 where (try? stage.submitBlocking(Self.request(i)))?.column("y")?.double(0) != Double(i) * 2 + 1 {
                wrong.withLock { $0 += 1 }
            }
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 60) == .success)
        Thread.sleep(forTimeInterval: 0.5)  // that thread returns right after signalling
        for i in 6..<12 {
            #expect(try stage.submitBlocking(Self.request(i)).column("y")?.double(0) == Double(i) * 2 + 1, "request \(i)")
        }
        #expect(wrong.value == 0)
        #expect(stage.stats.restarts.count == 1, "\(stage.stats.restarts)")
    }

    @Test("workers whose children keep their output pipes open leave no reader threads or descriptors behind")
    func childrenHoldingPipes() throws {
        // Each worker starts a child that inherits its stdout and stderr and outlives it; three
        // workers are killed in turn. The host must stop reading the old pipes once each worker
        // has ended instead of waiting for end of file, which only comes when the children end.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("isthmus-kids-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let file = try PythonEnv.udfFile("""
            import os, signal, subprocess
            import pyarrow.compute as pc

            _child = subprocess.Popen(["sleep", "60"])
            open(os.path.join(\(String(reflecting: dir)), f"child-{_child.pid}"), "w").close()

            def die_at_odd(batch):
                i = batch.column("id")[0].as_py()
                mark = os.path.join(\(String(reflecting: dir)), f"died-{i}")
                if i % 2 == 1 and not os.path.exists(mark):
                    open(mark, "w").close()
                    os.kill(os.getpid(), signal.SIGKILL)
                return {"y": pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)}
            """)
        defer {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where name.hasPrefix("child-") {
                if let pid = Int32(name.dropFirst(6)) { kill(pid, SIGKILL) }
            }
            try? FileManager.default.removeItem(atPath: dir)
        }
        /// The pipes a child holds as its stdout and stderr ("pipe:[inode]").
        func pipes(of pid: String) -> Set<String> {
            Set(["1", "2"].compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") })
        }
        let stage = try OnlineStage(udf: "\(file):die_at_odd", inputSchema: Self.schema, options: PythonEnv.options(workers: 1),
                                    log: { _ in })
        defer { stage.close() }
        for i in 0...6 {
            #expect(try stage.submitBlocking(Self.request(i)).column("y")?.double(0) == Double(i) * 2 + 1, "request \(i)")
        }
        #expect(stage.stats.restarts.count == 3)
        // The readers of a killed worker stop half a second after it ended; give them time.
        Thread.sleep(forTimeInterval: 1.5)
        let children = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("child-") }
        #expect(children.count == 4)
        let held = Set(((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [])
            .compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)") })
        // Only the live worker's child shares pipes with this process; the three killed
        // workers' children still hold theirs, and this process must no longer.
        let stillRead = children.filter { !pipes(of: String($0.dropFirst(6))).isDisjoint(with: held) }
        #expect(stillRead.count <= 1, "pipes still open here for \(stillRead.count) of \(children.count) children")
    }

    /// A UDF that sleeps `seconds` before it answers with its input.
    static func sleeper(seconds: Int) throws -> String {
        try PythonEnv.udfFile("""
            import time

            def sleeper(batch):
                time.sleep(\(seconds))
                return {"y": batch.column("x")}
            """) + ":sleeper"
    }

    @Test("a request that hangs past the timeout fails with the timeout, not a hang")
    func hungRequestTimesOut() throws {
        var options = PythonEnv.options(workers: 1)
        options.timeout = 0.3
        options.maxRetries = 1
        let stage = try OnlineStage(udf: Self.sleeper(seconds: 60), inputSchema: Self.schema, options: options)
        defer { stage.close() }
        do {
            _ = try stage.submitBlocking(Self.request(1))
            Issue.record("expected the request to fail")
        } catch let error as BridgeError {
            #expect(error.kind == .workerFailed, "\(error.kind): \(error.message)")
            #expect(error.message.contains("timed out after"), "\(error.message)")
        }
    }

    @Test("close() while a caller waits ends its wait with an error")
    func closeWhileWaiting() throws {
        let stage = try OnlineStage(udf: Self.sleeper(seconds: 30), inputSchema: Self.schema, options: PythonEnv.options(workers: 1))
        let outcome = Locked<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            do {
                _ = try stage.submitBlocking(Self.request(1))
                outcome.withLock { $0 = "answered" }
            } catch let error as BridgeError {
                outcome.withLock { $0 = "\(error.kind)" }
            } catch {
                outcome.withLock { $0 = "\(error)" }
            }
            done.signal()
        }
        Thread.sleep(forTimeInterval: 0.5)
        stage.close()
        #expect(done.wait(timeout: .now() + 20) == .success)
        #expect(outcome.value == "cancelled")
    }
}
