#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private func errnoText() -> String { String(cString: strerror(errno)) }

/// A file descriptor opened for reading (a file, or stdin for `-`), usable as a `ByteSource`.
public final class InputFile: ByteSource {
    /// The path as given (`-` for stdin).
    public let path: String
    private let fd: Int32
    private let owned: Bool
    /// A regular file's size when it was opened (nil for stdin, pipes and the like).
    private let openedSize: Int?
    /// Bytes `read(into:)` has returned.
    private var position = 0
    /// The mapping `readAll()` made, for readers that walk it once from the front.
    public private(set) var mapping: MappedPages?

    /// Opens `path` for reading; `-` is stdin. Throws `.io` naming the path and the system's reason.
    public init(path: String) throws {
        self.path = path
        if path == "-" {
            fd = 0
            owned = false
            openedSize = nil
        } else {
            let f = open(path, O_RDONLY | O_CLOEXEC)
            guard f >= 0 else { throw ArrowError(.io, "cannot open '\(path)' for reading: \(errnoText())") }
            var st = stat()
            if fstat(f, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
                close(f)
                throw ArrowError(.io, "cannot read '\(path)': expected a file but found a directory")
            }
            fd = f
            owned = true
            openedSize = (st.st_mode & S_IFMT) == S_IFREG ? Int(st.st_size) : nil
        }
    }

    /// Throws "input changed" when this regular file is now shorter than `expected` bytes (its
    /// size when it was opened or mapped): another program truncated it while it was read, so
    /// its end was not the stream's (a mapping reads zeros in the last page, and a stream may
    /// end at any message without its end-of-stream marker).
    public func ensureNotShrunk(below expected: Int) throws {
        var st = stat()
        guard owned, fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, Int(st.st_size) < expected else { return }
        throw ArrowError.inputShrank(path, expected: expected, found: "\(st.st_size)")
    }

    /// The mapped input behind a `readAll()` buffer of `size` bytes, or nil when the file was
    /// read, not mapped.
    func mappedInput(size: Int) -> MappedInput? { mapping == nil ? nil : MappedInput(file: self, size: size) }

    deinit { if owned { close(fd) } }

    /// A share of this regular file for local workers (PROTOCOL.md §19); nil for stdin, a
    /// pipe, or where the system has no `/proc/<pid>/fd`.
    public func share() -> SharedInputFile? { owned ? SharedInputFile.make(duplicating: fd) : nil }

    /// The underlying descriptor (for polling a live input).
    public var fileDescriptor: Int32 { fd }

    /// True for pipes, terminals and sockets (see `ByteSource.isLive`).
    public var isLive: Bool {
        var st = stat()
        return fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) != S_IFREG
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n > 0 { position += n }
            if n == 0, buffer.count > 0, let openedSize, position < openedSize { try ensureNotShrunk(below: openedSize) }
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw ArrowError(.io, "cannot read '\(path)': \(errnoText())")
        }
    }

    /// The whole input: memory-mapped for regular files (zero-copy), read to the end otherwise.
    public func readAll() throws -> Buffer {
        var st = stat()
        if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0, owned {
            let size = Int(st.st_size)
            if let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED {
                // A file truncated under the reader: an error line, not a crash (SIGBUS).
                let entry = MappedFileFaults.register(base: UnsafeRawPointer(p), count: size, path: path)
                let storage = BufferStorage(base: UnsafeRawPointer(p), count: size) { base, count in
                    if let entry { MappedFileFaults.unregister(entry) }
                    munmap(UnsafeMutableRawPointer(mutating: base), count)
                }
                mapping = MappedPages(storage: storage)
                return Buffer(storage: storage)
            }
        }
        let out = BufferBuilder(capacity: 1 << 16)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try read(into: $0) }
            if n == 0 { break }
            chunk.withUnsafeBytes { out.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return out.finish()
    }
}

/// A file a reader maps, with its size then. Where the input seems to end, or fails to decode,
/// the reader asks whether the file shrank under it: a mapping reads zeros to the end of the
/// last page of a file cut short, which decode as the legacy end-of-stream marker or as anything.
struct MappedInput {
    let file: InputFile
    let size: Int

    /// Throws "input changed" when the file is now shorter than it was mapped.
    func ensureUnchanged() throws { try file.ensureNotShrunk(below: size) }

    /// `body`'s result; when it throws and the file shrank, "input changed" instead.
    func reading<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            try ensureUnchanged()
            throw error
        }
    }
}

extension ArrowError {
    /// The input file at `path` is shorter than the `expected` bytes it had when it was opened.
    static func inputShrank(_ path: String, expected: Int, found: String) -> ArrowError {
        ArrowError(.inputChanged, "input changed: '\(path)' shrank while it was read: expected \(expected) bytes (its size when it was opened) but found \(found)")
    }
}

/// The pages of a read-only file mapping, handed back to the kernel behind a reader that
/// walks the file once from the front, so that the reader's resident memory does not grow
/// with the file (measured before: a host streaming a 1.6 GB input held 1.5 GiB of it).
///
/// Dropping pages of an unmodified file mapping loses nothing: a later access (a batch still
/// referenced downstream) faults the page back in from the page cache or the file.
public final class MappedPages: @unchecked Sendable {
    // @unchecked: used by the one reader that owns it.
    /// The mapping itself: held, so that it is never unmapped under a pending `madvise`.
    private let storage: BufferStorage
    private var dropped = 0
    /// Pages this far behind the reader stay mapped (batches in flight use them).
    static let lag = 32 << 20
    /// Pages are handed back this many bytes at a time.
    static let step = 8 << 20

    init(storage: BufferStorage) {
        self.storage = storage
    }

    /// The host will read little of the mapping itself (the messages' metadata; workers map the
    /// bodies, PROTOCOL.md §19): no readahead on its page faults, which would map whole
    /// readahead windows into the host. `willNeed` then reads each message in, without mapping it.
    public func readsLittle() {
        _ = madvise(UnsafeMutableRawPointer(mutating: storage.base), storage.count, Int32(MADV_RANDOM))
    }

    /// Bytes `[offset, offset + count)` will be read soon, by this process or another that maps
    /// the file: the kernel starts reading them in (a worker that maps a message of the file
    /// then finds it in the page cache instead of waiting for the disk).
    public func willNeed(_ offset: Int, _ count: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Swift.max(0, offset) / page * page
        let end = Swift.min(storage.count, offset + count)
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: storage.base) + start, end - start, Int32(MADV_WILLNEED))
    }

    /// The reader has moved past `offset`.
    public func consumed(upTo offset: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let end = Swift.min(storage.count, offset - MappedPages.lag) / page * page
        guard end - dropped >= MappedPages.step else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: storage.base) + dropped, end - dropped, Int32(MADV_DONTNEED))
        dropped = end
    }
}

/// An output file written under a temporary name in the same folder and renamed over
/// `path` by `commit()`, so a failed run leaves no file that looks complete and an
/// existing file is replaced only on success. `-` writes to stdout directly, and so does a
/// path that names something other than a regular file (a device such as /dev/null, a FIFO,
/// a socket): renaming over it would replace it with a file. A symbolic link is followed: the
/// file it points to is replaced, the link stays. Writes are buffered; `flush()` pushes them
/// to the descriptor.
public final class OutputFile: ByteSink {
    /// The final path (`-` for stdout).
    public let path: String
    /// The temporary path written until `commit()` (nil for stdout).
    public let temporaryPath: String?
    private var fd: Int32
    /// Whether `commit()` closes `fd`: a device or FIFO opened by path (no temporary file), not stdout.
    private var closesDescriptor: Bool { temporaryPath == nil && path != "-" }
    private let buffer = BufferBuilder(capacity: 1 << 16)
    private var done = false
    /// The temporary file's entry in `MappedFileFaults` (deleted if an input fault ends the process).
    private var faultEntry: Int?

    /// Creates the temporary file next to `path`. Throws `.io` when the folder is not writable.
    public init(path: String) throws {
        self.path = path
        if path == "-" {
            fd = 1
            temporaryPath = nil
            return
        }
        var st = stat()
        if stat(path, &st) == 0 && st.st_mode & S_IFMT != S_IFREG {
            if st.st_mode & S_IFMT == S_IFDIR {
                throw ArrowError(.io, "cannot write output '\(path)': expected a file, found a folder")
            }
            let f = open(path, O_WRONLY | O_CLOEXEC)
            guard f >= 0 else { throw ArrowError(.io, "cannot open output '\(path)': \(errnoText())") }
            fd = f
            temporaryPath = nil
            return
        }
        let target = Self.followingLinks(path)
        let slash = target.lastIndex(of: "/")
        let dir = slash.map { String(target[..<$0]) } ?? "."
        let base = slash.map { String(target[target.index(after: $0)...]) } ?? target
        var template = Array("\(dir.isEmpty ? "/" : dir)/.\(base).tmp-XXXXXX".utf8CString)
        let f = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard f >= 0 else { throw ArrowError(.io, "cannot create output '\(path)': \(errnoText())") }
        fchmod(f, 0o644)
        fd = f
        let temporary = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        temporaryPath = temporary
        renameTarget = target
        faultEntry = MappedFileFaults.removeOnFault(temporary)
    }

    /// Where the temporary file is renamed to: `path`, or the file a symbolic link at `path`
    /// points to (through every link; a dangling link's target is created).
    private var renameTarget: String?

    static func followingLinks(_ path: String) -> String {
        var current = path
        for _ in 0..<40 {  // the kernel's own limit on nested links
            var st = stat()
            guard lstat(current, &st) == 0, st.st_mode & S_IFMT == S_IFLNK else { return current }
            var link = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(current, &link, Int(PATH_MAX))
            guard n > 0 else { return current }
            let destination = String(decoding: link.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if destination.hasPrefix("/") {
                current = destination
            } else {
                let folder = current.lastIndex(of: "/").map { String(current[...$0]) } ?? ""
                current = folder + destination
            }
        }
        return current
    }

    deinit { if !done { abandon() } }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if buffer.count + bytes.count > (1 << 16) { try drain() }
        if bytes.count >= (1 << 16) { try writeFully(bytes) } else { buffer.append(bytes) }
    }

    public func flush() throws { try drain() }

    private func drain() throws {
        guard buffer.count > 0 else { return }
        try writeFully(buffer.bytes)
        buffer.removeAll()
    }

    private func writeFully(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                // Written straight from an input mapping whose file shrank: the kernel says
                // EFAULT where a load would have raised SIGBUS.
                if errno == EFAULT, let (input, size) = MappedFileFaults.mapping(containing: bytes.baseAddress! + offset) {
                    var st = stat()
                    throw ArrowError.inputShrank(input, expected: size, found: stat(input, &st) == 0 ? "\(st.st_size)" : "no file there")
                }
                throw ArrowError(.io, "cannot write '\(path)': \(errnoText())")
            }
            offset += n
        }
    }

    /// Flushes, closes and renames the temporary file over `path`.
    public func commit() throws {
        guard !done else { return }
        try drain()
        done = true
        guard let temporaryPath, let renameTarget else {
            if closesDescriptor, close(fd) != 0 { throw ArrowError(.io, "cannot write '\(path)': \(errnoText())") }
            return
        }
        close(fd)
        // Renamed (or removed) before the fault handler forgets it: no moment without either.
        defer { if let faultEntry { MappedFileFaults.keepOnFault(faultEntry) } }
        guard rename(temporaryPath, renameTarget) == 0 else {
            let reason = errnoText()
            unlink(temporaryPath)
            throw ArrowError(.io, "cannot move output into place at '\(path)': \(reason)")
        }
    }

    /// Closes and deletes the temporary file; `path` is left untouched.
    public func abandon() {
        guard !done else { return }
        done = true
        if closesDescriptor { close(fd) }
        if let temporaryPath {
            close(fd)
            unlink(temporaryPath)
            if let faultEntry { MappedFileFaults.keepOnFault(faultEntry) }
        }
    }
}
