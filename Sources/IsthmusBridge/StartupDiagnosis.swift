/// Turns a worker that died before READY into one clear sentence: which interpreter, which
/// phase, and the command that fixes a missing package.
enum StartupDiagnosis {
    static func failure(slot: Int, phase: PoolIO.Slot.Phase, cause: ExitCause, stderrTail: [String],
                        python: String, stages: [ControlDocuments.Stage]) -> BridgeError {
        let detail = stderrTail.suffix(15).joined(separator: "\n")
        // The helper prints its own one-line diagnosis for missing pyzmq/pyarrow.
        if let line = stderrTail.last(where: { $0.hasPrefix("isthmus-worker: ") }) {
            return BridgeError(.startup, String(line.dropFirst("isthmus-worker: ".count)), detail: "")
        }
        if let line = stderrTail.last(where: { $0.contains("No module named") }) {
            let module = line.split(separator: "'").dropFirst().first.map(String.init) ?? "?"
            let top = module.split(separator: ".").first.map(String.init) ?? module
            if top == "isthmus" {
                return BridgeError(.startup, "the Python at '\(python)' cannot import the isthmus helper (expected the package 'isthmus' but found no module named '\(module)'); install it with: \(python) -m pip install ./python", detail: "")
            }
            let package = ["zmq": "pyzmq", "pyarrow": "pyarrow", "numpy": "numpy", "pandas": "pandas"][top] ?? top
            return BridgeError(.startup, "the Python at '\(python)' has no module named '\(module)'; install it with: \(python) -m pip install \(package)", detail: detail)
        }
        let doing = phase == .starting ? "before HELLO (starting the interpreter and importing the helper)"
                                       : "before READY (loading \(stages.map(\.udf).joined(separator: ", ")))"
        return BridgeError(.startup, "worker \(slot) \(cause) \(doing)", detail: detail)
    }

    /// The last Python traceback (or faulthandler dump) in a worker's stderr lines.
    static func lastTraceback(_ lines: [String]) -> String {
        if let start = lines.lastIndex(where: { $0.hasPrefix("Traceback (most recent call last)") || $0.hasPrefix("Fatal Python error") }) {
            return lines[start...].joined(separator: "\n")
        }
        return ""
    }
}
