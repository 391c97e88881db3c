import Foundation
import Synchronization

/// One Python worker subprocess: started with the chosen interpreter, its stdout and stderr
/// captured line by line (they never touch the protocol), its end classified.
///
/// `@unchecked Sendable`: `process` is only started and signalled (Foundation's `Process` is
/// thread-safe for those); the mutable stderr tail is guarded by a `Mutex`.
final class WorkerProcess: @unchecked Sendable {
    /// Slot index in the pool.
    let slot: Int
    /// How many processes this slot had before this one.
    let generation: Int
    private let process = Process()
    private let tail = Locked<[String]>([])
    private let stderrDone = DispatchSemaphore(value: 0)
    private let killReason = Locked<String?>(nil)

    /// Operating-system process id.
    var pid: Int32 { process.processIdentifier }

    /// Starts `python -m isthmus.worker`. `onLine` gets each output line (with the stream name);
    /// `onExit` gets the cause once the process has ended and its stderr is drained.
    init(python: String, arguments: [String], environment: [String: String], slot: Int, generation: Int,
         onLine: @escaping @Sendable (_ slot: Int, _ stream: String, _ line: String) -> Void,
         onExit: @escaping @Sendable (_ slot: Int, _ generation: Int, _ cause: ExitCause, _ stderrTail: [String]) -> Void) throws {
        self.slot = slot
        self.generation = generation
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = arguments
        process.environment = environment
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        WorkerProcess.pump(out.fileHandleForReading, done: nil) { line in onLine(slot, "stdout", line) }
        WorkerProcess.pump(err.fileHandleForReading, done: stderrDone) { [tail] line in
            tail.withLock { t in
                t.append(line)
                if t.count > 60 { t.removeFirst(t.count - 60) }
            }
            onLine(slot, "stderr", line)
        }
        process.terminationHandler = { [stderrDone, tail, killReason] p in
            // Give the stderr pump a moment to drain so a crash report includes the last traceback.
            _ = stderrDone.wait(timeout: .now() + 0.5)
            let cause: ExitCause
            if let reason = killReason.withLock({ $0 }) {
                cause = .killedByHost(reason)
            } else if p.terminationReason == .uncaughtSignal {
                cause = .signaled(p.terminationStatus)
            } else {
                cause = .exited(p.terminationStatus)
            }
            onExit(slot, generation, cause, tail.withLock { $0 })
        }
        try process.run()
        // The parent-side write ends must be closed so EOF arrives when the child exits.
        try? out.fileHandleForWriting.close()
        try? err.fileHandleForWriting.close()
    }

    /// Kills the process with SIGKILL; its exit is then reported as `.killedByHost(reason)`.
    func kill(reason: String) {
        killReason.withLock { if $0 == nil { $0 = reason } }
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
    }

    /// Whether the process is still running.
    var isRunning: Bool { process.isRunning }

    /// The last lines the worker wrote to stderr.
    var stderrTail: [String] { tail.withLock { $0 } }

    private static func pump(_ handle: FileHandle, done: DispatchSemaphore?, line: @escaping @Sendable (String) -> Void) {
        let pending = Locked<[UInt8]>([])
        handle.readabilityHandler = { h in
            let data = h.availableData
            if data.isEmpty {
                h.readabilityHandler = nil
                let rest = pending.withLock { p -> [UInt8] in defer { p = [] }; return p }
                if !rest.isEmpty { line(String(decoding: rest, as: UTF8.self)) }
                done?.signal()
                return
            }
            let lines = pending.withLock { p -> [String] in
                p.append(contentsOf: data)
                var out: [String] = []
                while let nl = p.firstIndex(of: 10) {
                    var end = nl
                    if end > 0 && p[end - 1] == 13 { end -= 1 }
                    out.append(String(decoding: p[..<end], as: UTF8.self))
                    p.removeSubrange(...nl)
                }
                if p.count > 1 << 20 {  // a line longer than 1 MiB is logged in pieces
                    out.append(String(decoding: p, as: UTF8.self))
                    p.removeAll()
                }
                return out
            }
            for l in lines { line(l) }
        }
    }
}
