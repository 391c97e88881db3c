#if canImport(Glibc)
import Glibc
#endif

/// Why a worker process ended, as the supervisor saw it.
public enum ExitCause: Sendable, Equatable, CustomStringConvertible {
    /// It exited with this status.
    case exited(Int32)
    /// A signal it did not get from us ended it.
    case signaled(Int32)
    /// The host killed it, for this reason (a deadline, a memory limit, a protocol violation).
    case killedByHost(String)

    public var description: String {
        switch self {
        case .exited(let code): return "exited with code \(code)"
        case .signaled(let sig):
            if sig == SIGKILL { return "killed by signal 9 (possibly the out-of-memory killer)" }
            return "killed by signal \(sig) (\(ExitCause.signalName(sig)))"
        case .killedByHost(let reason): return reason
        }
    }

    static func signalName(_ sig: Int32) -> String {
        switch sig {
        case SIGSEGV: "segmentation fault"
        case SIGABRT: "aborted"
        case SIGBUS: "bus error"
        case SIGFPE: "floating-point exception"
        case SIGILL: "illegal instruction"
        case SIGTERM: "terminated"
        case SIGINT: "interrupted"
        case SIGKILL: "killed"
        case SIGPIPE: "broken pipe"
        default: String(cString: strsignal(sig))
        }
    }
}
