import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The private folder that holds a run's ipc:// socket: created with mode 0700, holding a
/// `host.pid` file, removed at exit. Folders left by a host that was killed are removed by
/// the next run (their `host.pid` names a process that no longer exists).
enum RunDirectory {
    static let prefix = "isthmus-"

    static var base: String {
        let tmp = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        return tmp.hasSuffix("/") ? String(tmp.dropLast()) : tmp
    }

    /// Creates a fresh private folder and returns its path.
    static func create() throws -> String {
        removeStale()
        var template = Array("\(base)/\(prefix)XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw BridgeError(.startup, "cannot create a private folder for the worker socket under \(base): \(String(cString: strerror(errno)))")
        }
        let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        chmod(path, 0o700)
        try? "\(getpid())\n".write(toFile: "\(path)/host.pid", atomically: false, encoding: .utf8)
        return path
    }

    /// Removes a run folder and what it holds.
    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Removes folders of earlier runs whose host process is gone.
    static func removeStale() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: base) else { return }
        for name in names where name.hasPrefix(prefix) {
            let dir = "\(base)/\(name)"
            guard let text = try? String(contentsOfFile: "\(dir)/host.pid", encoding: .utf8),
                  let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { continue }
            var st = stat()
            guard stat(dir, &st) == 0, st.st_uid == getuid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { remove(dir) }
        }
    }

    /// Compares tokens without an early exit, so timing does not reveal a matching prefix.
    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in x.indices { diff |= x[i] ^ y[i] }
        return diff == 0
    }

    /// 32 hex characters from the system's random source.
    static func randomToken() -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        var g = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &g) }
        return bytes.map { hex($0) }.joined()
    }
}
