import Foundation
import Isthmus
import IsthmusArrow

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
                let name = sig == SIGINT ? "SIGINT" : "SIGTERM"
                if first && control.isStartingWorkers {
                    // Nothing in flight to finish, and the startup wait can last the whole
                    // startup timeout: stop at once (the workers die with the host).
                    FileHandle.standardError.write(Data("isthmus: \(name) received while the workers were starting; stopping\n".utf8))
                    self.onSecondSignal?()
                    _exit(128 + sig)
                } else if first {
                    FileHandle.standardError.write(Data("isthmus: \(name) received; finishing batches in flight (send it again to stop at once)\n".utf8))
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
