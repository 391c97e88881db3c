import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Threads with a name the kernel knows. On Linux, Foundation keeps `Thread.name` to itself, so
/// `top -H`, `perf` and /proc/PID/task/TID/comm showed every thread of the host as "isthmus"
/// and a profile could not tell the feeder from the pool's I/O thread. The name is set from
/// inside the thread when it starts; the kernel keeps at most 15 bytes, so longer names are cut
/// (every name given here is ASCII and fits).
public enum NamedThread {
    /// The kernel's limit on a thread name, without its terminating NUL.
    public static let maxNameBytes = 15

    /// A thread, not yet started, that names itself `name` and runs `body`.
    public static func make(_ name: String, stackSize: Int, _ body: @escaping @Sendable () -> Void) -> Thread {
        let thread = Thread {
            nameCurrentThread(name)
            body()
        }
        thread.name = name
        thread.stackSize = stackSize
        return thread
    }

    /// Starts a thread that names itself `name` and runs `body`.
    @discardableResult
    public static func start(_ name: String, stackSize: Int, _ body: @escaping @Sendable () -> Void) -> Thread {
        let thread = make(name, stackSize: stackSize, body)
        thread.start()
        return thread
    }

    /// Gives the calling thread `name` (cut to 15 bytes) in the kernel, through
    /// /proc/thread-self/comm (glibc's pthread_setname_np does the same write; Swift's Glibc
    /// module does not export it). Where /proc is not mounted the thread keeps its name.
    public static func nameCurrentThread(_ name: String) {
        #if os(Linux)
        let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array(name.utf8.prefix(maxNameBytes))
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        #endif
    }
}
