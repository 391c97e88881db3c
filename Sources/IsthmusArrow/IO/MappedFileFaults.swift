#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// A clear error instead of a crash when a mapped input file shrinks under the reader.
///
/// Inputs are read through `mmap` (zero-copy). When another program truncates the file while
/// the run reads it, touching a page past the new end raises SIGBUS, which would kill the host
/// with no word about why. Once `install(exitStatus:)` has run, a SIGBUS at an address inside a
/// registered input mapping writes one line to stderr:
///
///     error: input changed: 'in.arrows' shrank while it was read: expected 1600293176 bytes (its size when it was opened) but found 800000000
///
/// removes the files named by `removeOnFault(_:)` (temporary outputs, so that nothing
/// partial is left), and exits with status 1 (a run failure). Workers follow their host out
/// (they watch it). A SIGBUS anywhere else gets the action installed before (the Swift
/// runtime's crash report), as if this handler were not there.
///
/// The handler only reads a fixed table filled before each mapping is used, and calls
/// async-signal-safe functions (`stat`, `write`, `unlink`, `_exit`).
public enum MappedFileFaults {
    struct Region {
        var start: UInt = 0
        var end: UInt = 0
        /// `strdup`ed path; nil marks a free entry.
        var path: UnsafeMutablePointer<CChar>?
    }

    static var capacity: Int { 64 }  // computed: nothing for the handler to initialise
    nonisolated(unsafe) static let regions: UnsafeMutablePointer<Region> = {
        let p = UnsafeMutablePointer<Region>.allocate(capacity: capacity)
        p.initialize(repeating: Region(), count: capacity)
        return p
    }()
    nonisolated(unsafe) static let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()
    /// `strdup`ed paths of the files to delete on such a fault (temporary outputs).
    nonisolated(unsafe) static let removals: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = {
        let p = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: capacity)
        p.initialize(repeating: nil, count: capacity)
        return p
    }()
    nonisolated(unsafe) static var exitStatus: Int32 = 1
    /// The action before ours (the Swift runtime's crash reporter, or the default), for faults
    /// that are not ours.
    nonisolated(unsafe) static let previous: UnsafeMutablePointer<sigaction> = {
        let p = UnsafeMutablePointer<sigaction>.allocate(capacity: 1)
        p.initialize(to: sigaction())
        return p
    }()
    nonisolated(unsafe) static var installed = false
    /// Set by the first thread that reports a fault; others wait for it to end the process.
    static let reporting = Atomic<Bool>(false)

    /// Records that `[base, base + count)` maps the file at `path`; returns the entry to
    /// pass to `unregister`, or nil when the table is full (the mapping then works as before).
    static func register(base: UnsafeRawPointer, count: Int, path: String) -> Int? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        for i in 0..<capacity where regions[i].path == nil {
            let start = UInt(bitPattern: base)
            regions[i].start = start
            regions[i].end = start + UInt(count)
            regions[i].path = strdup(path)
            return i
        }
        return nil
    }

    static func unregister(_ entry: Int) {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        let path = regions[entry].path
        regions[entry] = Region()
        free(path)
    }

    /// Deletes `path` before exiting on such a fault (a temporary output); returns the entry to
    /// pass to `keepOnFault`, or nil when the table is full.
    public static func removeOnFault(_ path: String) -> Int? {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        for i in 0..<capacity where removals[i] == nil {
            removals[i] = strdup(path)
            return i
        }
        return nil
    }

    /// Forgets an entry of `removeOnFault` (the output was committed or abandoned).
    public static func keepOnFault(_ entry: Int) {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        let path = removals[entry]
        removals[entry] = nil
        free(path)
    }

    /// Installs the SIGBUS handler (once per process; later calls change nothing but the status).
    public static func install(exitStatus status: Int32 = 1) {
        exitStatus = status
        guard !installed else { return }
        installed = true
        // The handler must not be the first to touch a lazily initialised static (swift_once
        // may allocate): touch them all now.
        _ = (regions, removals, lock, previous)
        _ = reporting.load(ordering: .relaxed)
        var warm = SignalSafeText()  // and let the runtime meet the formatter's types now
        warm.append("x")
        warm.append(-1)
        "x".withCString { warm.append($0) }
        var action = sigaction()
        action.__sigaction_handler.sa_sigaction = { _, info, _ in
            MappedFileFaults.handle(info)
        }
        action.sa_flags = SA_SIGINFO
        sigemptyset(&action.sa_mask)
        sigaction(SIGBUS, &action, previous)
    }

    /// The region holding `address`, if any.
    static func region(containing address: UInt) -> Region? {
        for i in 0..<capacity {
            let r = regions[i]
            if r.path != nil && address >= r.start && address < r.end { return r }
        }
        return nil
    }

    /// Looks the faulting address up; not ours: the previous action takes the fault (a fault
    /// repeats when the handler returns; a SIGBUS sent with kill is raised again).
    private static func handle(_ info: UnsafeMutablePointer<siginfo_t>?) {
        guard let info else { return }
        let raw = UnsafeRawPointer(info)
        // si_code follows si_signo and si_errno; si_addr comes after padding, at offset 16
        // on 64-bit Linux.
        let code = raw.load(fromByteOffset: 8, as: Int32.self)
        let address = raw.load(fromByteOffset: 16, as: UInt.self)
        guard code > 0, let r = region(containing: address), let path = r.path else {
            sigaction(SIGBUS, previous, nil)
            if code <= 0 { raise(SIGBUS) }
            return
        }
        guard reporting.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else {
            while true { pause() }  // another thread is reporting and will end the process
        }
        for i in 0..<capacity {
            if let remove = removals[i] { unlink(remove) }
        }
        var st = stat()
        let expected = Int(r.end - r.start)
        let found: Int? = stat(path, &st) == 0 ? Int(st.st_size) : nil
        var line = SignalSafeText()
        if let found, found >= expected {
            // Not shorter: a page could not be read (an I/O error, or another file now there).
            line.append("error: cannot read '")
            line.append(path)
            line.append("': a page of its mapping could not be read (SIGBUS) although it is ")
            line.append(found)
            line.append(" bytes, as many as when it was opened or more")
        } else {
            line.append("error: input changed: '")
            line.append(path)
            line.append("' shrank while it was read: expected ")
            line.append(expected)
            line.append(" bytes (its size when it was opened) but found ")
            if let found { line.append(found) } else { line.append("no file there") }
        }
        line.write(to: 2)
        _exit(exitStatus)
    }

    /// Whether `address` lies in a registered input mapping (a file another program could cut
    /// short under it).
    public static func isInputMapping(_ address: UnsafeRawPointer?) -> Bool {
        guard let address else { return false }
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return region(containing: UInt(bitPattern: address)) != nil
    }

    /// The path and mapped size of the registered mapping holding `address` (not for the
    /// signal handler: it allocates).
    static func mapping(containing address: UnsafeRawPointer?) -> (path: String, size: Int)? {
        guard let address else { return nil }
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        guard let r = region(containing: UInt(bitPattern: address)), let path = r.path else { return nil }
        return (String(cString: path), Int(r.end - r.start))
    }
}

/// A fixed buffer that text is appended to without allocating (for the signal handler).
struct SignalSafeText {
    private var bytes: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                        UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                        UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                        UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                        UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                        UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                        UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                        UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
         0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private(set) var count = 0
    /// Room for text; one more byte is kept for the final newline `write(to:)` adds.
    static var capacity: Int { 511 }

    mutating func append(byte: UInt8) {
        guard count < Self.capacity else { return }
        withUnsafeMutableBytes(of: &bytes) { $0[count] = byte }
        count += 1
    }

    mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { for b in $0 { append(byte: b) } }
    }

    mutating func append(_ cString: UnsafePointer<CChar>) {
        var p = cString
        while p.pointee != 0 {
            append(byte: UInt8(bitPattern: p.pointee))
            p += 1
        }
    }

    mutating func append(_ value: Int) {
        if value < 0 { append(byte: UInt8(ascii: "-")) }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = value.magnitude, k = 0
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[k] = UInt8(ascii: "0") + UInt8(n % 10)
                n /= 10
                k += 1
            } while n > 0
        }
        withUnsafeBytes(of: &digits) { d in
            while k > 0 {
                k -= 1
                append(byte: d[k])
            }
        }
    }

    /// Writes the text and a newline.
    mutating func write(to fd: Int32) {
        withUnsafeMutableBytes(of: &bytes) { $0[count] = UInt8(ascii: "\n") }
        let n = count + 1
        #if canImport(Glibc)
        withUnsafeBytes(of: &bytes) { _ = Glibc.write(fd, $0.baseAddress, n) }
        #else
        withUnsafeBytes(of: &bytes) { _ = Darwin.write(fd, $0.baseAddress, n) }
        #endif
    }
}
