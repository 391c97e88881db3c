#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A regular input file that local worker processes may map themselves, so that a batch read
/// from it without a copy can travel to them as a file range instead of as bytes
/// (PROTOCOL.md §19).
///
/// It holds a descriptor of its own, and `path` (`/proc/<pid>/fd/<fd>`) names that open file,
/// not the name it was opened by: a rename, or a new file written under the same name, does not
/// change what the path opens. The descriptor is closed when the last batch that refers to the
/// file is gone, so a batch resent after the reader finished still names an open file.
public final class SharedInputFile: @unchecked Sendable {
    // @unchecked: every stored property is immutable.
    /// What a worker opens: the host's descriptor under `/proc`.
    public let path: String
    /// The file's size, device and inode when it was opened; the worker checks them.
    public let size: Int, device: UInt64, inode: UInt64
    private let fd: Int32

    /// A share of the open file `fd` (a descriptor of its own, close-on-exec), or nil where
    /// there is no `/proc/<pid>/fd` or the descriptor is not a regular file.
    static func make(duplicating fd: Int32) -> SharedInputFile? {
        #if os(Linux)
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        guard copy >= 0 else { return nil }
        return SharedInputFile(path: "/proc/\(getpid())/fd/\(copy)", size: Int(st.st_size), device: UInt64(st.st_dev),
                               inode: UInt64(st.st_ino), fd: copy)
        #else
        return nil
        #endif
    }

    private init(path: String, size: Int, device: UInt64, inode: UInt64, fd: Int32) {
        self.path = path
        self.size = size
        self.device = device
        self.inode = inode
        self.fd = fd
    }

    deinit { close(fd) }

    /// What is missing when the file is now shorter than `rows`' messages need (it was
    /// truncated while it was read); nil when they are all there.
    public func shortfall(for rows: MessageRows) -> String? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        let need = Swift.max(rows.messageOffset + rows.messageLength, rows.schemaOffset + rows.schemaLength)
        guard Int(st.st_size) < need else { return nil }
        return "expected at least \(need) bytes (\(size) when the run opened it) but found \(st.st_size)"
    }
}

/// Rows of one record batch message of an Arrow IPC stream file, by byte ranges: the stream's
/// schema message, the record batch message, and which of its rows.
public struct MessageRows: Equatable, Sendable {
    /// The encapsulated schema message (continuation marker, length, flatbuffer).
    public var schemaOffset: Int, schemaLength: Int
    /// The encapsulated record batch message, body included.
    public var messageOffset: Int, messageLength: Int
    /// The rows within the message's.
    public var rowOffset: Int, rowCount: Int

    public init(schemaOffset: Int, schemaLength: Int, messageOffset: Int, messageLength: Int, rowOffset: Int, rowCount: Int) {
        self.schemaOffset = schemaOffset
        self.schemaLength = schemaLength
        self.messageOffset = messageOffset
        self.messageLength = messageLength
        self.rowOffset = rowOffset
        self.rowCount = rowCount
    }
}

/// Where a record batch's bytes are in a `SharedInputFile`: the message it was decoded from
/// without a copy, and which rows of it the batch is. Only the readers set it, and only
/// `RecordBatch.slice` keeps it: any batch built from other buffers has none.
public struct BatchOrigin: Sendable {
    public let file: SharedInputFile
    public let rows: MessageRows

    /// The origin of rows `[start, start + count)` of a batch with this origin.
    func slice(_ start: Int, _ count: Int) -> BatchOrigin {
        var r = rows
        r.rowOffset += start
        r.rowCount = count
        return BatchOrigin(file: file, rows: r)
    }
}

/// What a reader over a mapped file needs to give its batches an origin.
struct OriginTracker {
    let file: SharedInputFile
    let storage: BufferStorage
    let schemaOffset: Int, schemaLength: Int

    /// A tracker for a stream whose schema message is `schema`, or nil when no batch of it
    /// can be shared: the schema has a dictionary-encoded field (a record batch message alone
    /// does not hold its values) or its messages lack the continuation marker (pre-0.15 framing,
    /// which not every reader accepts) or lie at offsets that are not multiples of 8.
    init?(file: SharedInputFile?, storage: BufferStorage, schema: Schema, message: IPCMessage) {
        guard let file, !schema.fields.contains(where: { $0.type.containsDictionary }),
              Self.framed(storage, at: message.offset) else { return nil }
        self.file = file
        self.storage = storage
        schemaOffset = message.offset
        schemaLength = Self.length(of: message)
    }

    /// The origin of `batch`, decoded from `message`, when the message is not compressed (a
    /// compressed body may still store a buffer as it is, which a worker would need the codec to
    /// read), every buffer of the batch is a view of the mapping (so the worker decodes the same
    /// bytes to the same values) and the message has the continuation marker at an offset that
    /// is a multiple of 8.
    func origin(of batch: RecordBatch, message: IPCMessage) -> BatchOrigin? {
        guard message.header?.table(3) == nil,  // RecordBatch.compression
              Self.framed(storage, at: message.offset), batch.columns.allSatisfy(inMapping) else { return nil }
        return BatchOrigin(file: file, rows: MessageRows(schemaOffset: schemaOffset, schemaLength: schemaLength,
                                                         messageOffset: message.offset,
                                                         messageLength: Self.length(of: message),
                                                         rowOffset: 0, rowCount: batch.length))
    }

    private func inMapping(_ a: ArrayData) -> Bool {
        a.dictionary == nil && a.buffers.allSatisfy { $0 == nil || $0!.count == 0 || $0!.storage === storage }
            && a.children.allSatisfy(inMapping)
    }

    /// Bytes of the encapsulated message: prefix, metadata, padding and body.
    private static func length(of message: IPCMessage) -> Int { message.bodyOffset + message.body.count - message.offset }

    private static func framed(_ storage: BufferStorage, at offset: Int) -> Bool {
        offset >= 0 && offset % 8 == 0 && offset + 4 <= storage.count && storage.base.loadUnaligned(fromByteOffset: offset, as: UInt32.self) == 0xFFFF_FFFF
    }
}

extension DataType {
    /// Whether the type or any type nested in it is dictionary-encoded.
    public var containsDictionary: Bool {
        if case .dictionary = self { return true }
        return children.contains { $0.type.containsDictionary }
    }
}
