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
    }

    @Test("many threads at once: one drives, the others get their answers as they arrive")
    func concurrentThreads() throws {
        let file = try PythonEnv.udfFile(PythonEnv.udfs)
        let stage = try OnlineStage(udf: "\(file):linear", inputSchema: Self.schema, options: PythonEnv.options(workers: 2))
        defer { stage.close() }
        let wrong = Locked(0)
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for k in 0..<40 {
                let i = t * 1000 + k
                let y = (try? stage.submitBlocking(Self.request(i)))?.column("y")?.double(0)
                if y != Double(i) * 2 + 1 { wrong.withLock { $0 += 1 } }
            }
        }
        #expect(wrong.value == 0)
        #expect(stage.stats.rowsOut == 320)
    }

    @Test("a worker killed in the middle of a request is replaced and the request answered")
    func workerKilledMidRequest() throws {
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("isthmus-kill-\(UUID().uuidString)").path
        let file = try PythonEnv.udfFile("""
            import os, signal
            import pyarrow.compute as pc

            def die_once(batch):
                if batch.column("id")[0].as_py() == 7 and not os.path.exists(\(String(reflecting: marker))):
                    open(\(String(reflecting: marker)), "w").close()
                    os.kill(os.getpid(), signal.SIGKILL)
                return {"y": pc.add(pc.multiply(batch.column("x"), 2.0), 1.0)}
            """)
        defer { try? FileManager.default.removeItem(atPath: marker) }
        let stage = try OnlineStage(udf: "\(file):die_once", inputSchema: Self.schema, options: PythonEnv.options(workers: 1))
        defer { stage.close() }
        for i in 0..<12 {
            let r = try stage.submitBlocking(Self.request(i))
            #expect(r.column("y")?.double(0) == Double(i) * 2 + 1, "request \(i)")
        }
        #expect(FileManager.default.fileExists(atPath: marker))
        #expect(stage.stats.retries == 1)
        #expect(stage.stats.restarts.count == 1)
    }

    @Test("a request that hangs past the timeout fails with the timeout, not a hang")
    func hungRequestTimesOut() throws {
        let file = try PythonEnv.udfFile("""
            import time

            def hang(batch):
                time.sleep(60)
                return {"y": batch.column("x")}
            """)
        var options = PythonEnv.options(workers: 1)
        options.timeout = 0.3
        options.maxRetries = 1
        let stage = try OnlineStage(udf: "\(file):hang", inputSchema: Self.schema, options: options)
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
        let file = try PythonEnv.udfFile("""
            import time

            def slow(batch):
                time.sleep(30)
                return {"y": batch.column("x")}
            """)
        let stage = try OnlineStage(udf: "\(file):slow", inputSchema: Self.schema, options: PythonEnv.options(workers: 1))
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
