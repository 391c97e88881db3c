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
        let stop = try ReaderStop()
        WorkerProcess.pump(out.fileHandleForReading, stop: stop, done: nil) { line in onLine(slot, "stdout", line) }
        WorkerProcess.pump(err.fileHandleForReading, stop: stop, done: stderrDone) { [tail] line in
            tail.withLock { t in
                t.append(line)
                if t.count > 60 { t.removeFirst(t.count - 60) }
            }
            onLine(slot, "stderr", line)
        }
        process.terminationHandler = { [stderrDone, tail, killReason] p in
            // Give the stderr pump a moment to drain so a crash report includes the last traceback.
            _ = stderrDone.wait(timeout: .now() + 0.5)
            // A child of the worker may hold the pipes open long after: stop reading them.
            stop.signal()
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

    /// Reads `handle` line by line on a thread of its own until end of file, or until `stop`
    /// is signalled (the process has ended; what is readable then is still read).
    ///
    /// A polling read loop, not `FileHandle.readabilityHandler`: tearing a readability handler
    /// down while other threads set up new ones corrupts libdispatch's epoll bookkeeping on
    /// Linux (swift-corelibs-libdispatch issue 949), and the pool's test suite crashed that way
    /// in the dispatch manager thread once in four runs while workers were being replaced. A
    /// poll(2) loop never registers the descriptor with libdispatch. The thread owns `handle`,
    /// so the descriptor stays open until the loop ends.
    private static func pump(_ handle: FileHandle, stop: ReaderStop, done: DispatchSemaphore?, line: @escaping @Sendable (String) -> Void) {
        let owner = UncheckedHandle(handle)
        NamedThread.start("isthmus-wk-log", stackSize: 1 << 18) {
            let fd = owner.handle.fileDescriptor
            var pending: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            var stopping = false
            while true {
                var items = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stop.readFD, events: Int16(POLLIN), revents: 0)]
                let ready = items.withUnsafeMutableBufferPointer { poll($0.baseAddress, stopping ? 1 : 2, stopping ? 0 : -1) }
                if ready < 0 && errno == EINTR { continue }
                if ready <= 0 { break }  // stopping and nothing left to read
                if items[1].revents != 0 { stopping = true }
                guard items[0].revents != 0 else { continue }
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                pending.append(contentsOf: chunk[0..<n])
                while let nl = pending.firstIndex(of: 10) {
                    var end = nl
                    if end > 0 && pending[end - 1] == 13 { end -= 1 }
                    line(String(decoding: pending[..<end], as: UTF8.self))
                    pending.removeSubrange(...nl)
                }
                if pending.count > 1 << 20 {  // a line longer than 1 MiB is logged in pieces
                    line(String(decoding: pending, as: UTF8.self))
                    pending.removeAll()
                }
            }
            if !pending.isEmpty { line(String(decoding: pending, as: UTF8.self)) }
            done?.signal()
            // Closed here, not when the handle is deallocated: Foundation keeps an ended
            // `Process`, and with it its pipes, longer than this reader needs them.
            try? owner.handle.close()
            stop.readerDone()
        }
    }
}

/// Tells the output readers of an ended process to stop waiting for end of file: a child the
/// worker started may have inherited its stdout and stderr and keep them open for a long time
/// (each restart would otherwise leave two threads and two descriptors behind until then).
private final class ReaderStop: Sendable {
    let readFD: Int32
    private let writeFD: Int32
    /// Readers still running, and whether the pipe is closed; the last reader to end closes
    /// it (the process object may outlive the readers by far).
    private let state = Locked((readers: 2, signalled: false, closed: false))

    init() throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw BridgeError(.startup, "cannot create a pipe: \(String(cString: strerror(errno)))") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        readFD = fds[0]
        writeFD = fds[1]
    }

    /// Tells the readers to finish (once; nothing once they have ended).
    func signal() {
        state.withLock { s in
            guard !s.closed, !s.signalled else { return }
            s.signalled = true
            var b: UInt8 = 1
            _ = write(writeFD, &b, 1)
        }
    }

    /// Called by each reader as it ends.
    func readerDone() {
        state.withLock { s in
            s.readers -= 1
            if s.readers == 0 && !s.closed {
                s.closed = true
                close(readFD)
                close(writeFD)
            }
        }
    }
}

/// A `FileHandle` handed to the one thread that reads it.
private final class UncheckedHandle: @unchecked Sendable {
    let handle: FileHandle
    init(_ handle: FileHandle) { self.handle = handle }
}
