import Foundation
import Isthmus
import IsthmusArrow

/// The output of `run`: opened when the first batch (and so the output schema) arrives,
/// written under a temporary name, moved into place by `commit()`.
final class LazySink: BatchWriter, @unchecked Sendable {
    // @unchecked: written by the run thread; `abandonNow()` may race with it only on a second
    // signal, when the process exits right after removing the temporary file.
    let path: String
    let format: DataFormat?
    let compression: String
    private var writer: BatchWriter?
    private var file: OutputFile?
    private var finished = false

    init(path: String, format: DataFormat?, compression: String) {
        self.path = path
        self.format = format
        self.compression = compression
    }

    private func open(_ schema: Schema) throws {
        let (w, f) = try Formats.openWriter(path: path, format: format, schema: schema, options: try RunFormats.writeOptions(compression: compression))
        writer = w
        file = f
    }

    func write(_ batch: RecordBatch) throws {
        if writer == nil { try open(batch.schema) }
        try writer!.write(batch)
    }

    func flush() throws { try writer?.flush() }

    func finish() throws {
        if writer == nil { try open(Schema([])) }
        try writer!.finish()
        finished = true
    }

    /// Moves the finished output into place.
    func commit() throws {
        if !finished { try finish() }
        try file?.commit()
    }

    /// Deletes the temporary output.
    func abandon() { file?.abandon() }

    /// Deletes the temporary output from a signal handler path.
    func abandonNow() {
        if let t = file?.temporaryPath { unlink(t) }
    }
}

/// Handles SIGINT/SIGTERM: the first stops the source so in-flight batches finish and the
/// output is closed valid; the second exits at once and leaves no output.
final class SignalTrap: @unchecked Sendable {
    // @unchecked: `received` and `onSecondSignal` are guarded by `lock`.
    private let lock = NSLock()
    private var sources: [DispatchSourceSignal] = []
    private var _received: Int32?
    var onSecondSignal: (@Sendable () -> Void)? {
        get { lock.withLock { _onSecond } }
        set { lock.withLock { _onSecond = newValue } }
    }
    private var _onSecond: (@Sendable () -> Void)?

    init(control: RunControl) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                let first: Bool = self.lock.withLock {
                    if self._received == nil { self._received = sig; return true }
                    return false
                }
                if first {
                    FileHandle.standardError.write(Data("isthmus: \(sig == SIGINT ? "SIGINT" : "SIGTERM") received; finishing batches in flight (send it again to stop at once)\n".utf8))
                    control.stop()
                } else {
                    self.onSecondSignal?()
                    _exit(128 + sig)
                }
            }
            source.resume()
            sources.append(source)
        }
    }

    /// The first signal received, if any.
    var received: Int32? { lock.withLock { _received } }
}

/// The live progress line on stderr.
final class ProgressLine: @unchecked Sendable {
    // @unchecked: `shown` is guarded by `lock`.
    private let lock = NSLock()
    private var shown = false

    func show(_ s: ProgressSnapshot) {
        let rate = s.seconds > 0 ? Double(s.rowsRead) / s.seconds : 0
        let line = "\r\u{1B}[K" + "rows \(s.rowsWritten) out / \(s.rowsRead) in · \(Self.human(rate)) rows/s · in flight \(s.inFlight) · workers \(s.workersAlive)/\(s.workers) alive, \(s.restarts) restarted · \(String(format: "%.1f", s.seconds))s"
        lock.withLock {
            shown = true
            FileHandle.standardError.write(Data(line.utf8))
        }
    }

    func end() {
        lock.withLock {
            if shown { FileHandle.standardError.write(Data("\n".utf8)) }
            shown = false
        }
    }

    static func human(_ v: Double) -> String {
        if v >= 1e6 { return String(format: "%.2fM", v / 1e6) }
        if v >= 1e3 { return String(format: "%.1fK", v / 1e3) }
        return String(format: "%.0f", v)
    }
}
