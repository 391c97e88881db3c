import IsthmusArrow

/// The fixed binary frames of the shared-memory data plane (PROTOCOL.md §17). All integers are
/// unsigned 64-bit little-endian; offsets are relative to the start of the arena.
public enum RegionDescriptors {
    /// Frame 1 of a BATCH with the SHM flag: 32 bytes.
    public struct Batch: Equatable, Sendable {
        /// Where the batch's Arrow IPC stream is, and how long it is.
        public var inputOffset: Int, inputLength: Int
        /// Where the worker may write its RESULT stream, and how much room there is (0 = none).
        public var resultOffset: Int, resultCapacity: Int
        public init(inputOffset: Int, inputLength: Int, resultOffset: Int, resultCapacity: Int) {
            self.inputOffset = inputOffset
            self.inputLength = inputLength
            self.resultOffset = resultOffset
            self.resultCapacity = resultCapacity
        }
        public static let size = 32
        public var encoded: [UInt8] { words([inputOffset, inputLength, resultOffset, resultCapacity]) }
    }

    /// Frame 1 of a BATCH with the SHM and FILE flags (§19): eleven words (the input file's
    /// device, inode and size, its schema message, the record batch message, the rows of that
    /// message the batch is, the result region), then the path the worker opens, in UTF-8.
    public struct FileBatch: Equatable, Sendable {
        public var path: String
        public var device: UInt64, inode: UInt64, fileSize: Int
        public var rows: MessageRows
        public var resultOffset: Int, resultCapacity: Int
        public init(path: String, device: UInt64, inode: UInt64, fileSize: Int, rows: MessageRows, resultOffset: Int, resultCapacity: Int) {
            self.path = path
            self.device = device
            self.inode = inode
            self.fileSize = fileSize
            self.rows = rows
            self.resultOffset = resultOffset
            self.resultCapacity = resultCapacity
        }
        public init(origin o: BatchOrigin, resultOffset: Int, resultCapacity: Int) {
            self.init(path: o.file.path, device: o.file.device, inode: o.file.inode, fileSize: o.file.size, rows: o.rows,
                      resultOffset: resultOffset, resultCapacity: resultCapacity)
        }
        /// Bytes before the path.
        public static let size = 88
        public var encoded: [UInt8] {
            let r = rows
            return words([Int(truncatingIfNeeded: device), Int(truncatingIfNeeded: inode), fileSize, r.schemaOffset, r.schemaLength, r.messageOffset, r.messageLength,
                          r.rowOffset, r.rowCount, resultOffset, resultCapacity]) + Array(path.utf8)
        }
    }

    /// The payload frame of a RESULT with the SHM flag: 16 bytes, then the offsets of input
    /// regions the worker releases with this answer (8 bytes each, as in RELEASE).
    public struct Result: Equatable, Sendable {
        public var offset: Int, length: Int
        public var released: [Int]
        public init(offset: Int, length: Int, released: [Int] = []) {
            self.offset = offset
            self.length = length
            self.released = released
        }
        public static let size = 16
        public var encoded: [UInt8] { words([offset, length] + released) }

        /// Decodes and checks the frame against the region the host offered.
        public static func decode(_ bytes: UnsafeRawBufferPointer, offered: Batch) throws(ProtocolViolation) -> Result {
            guard bytes.count >= size && bytes.count % 8 == 0 else {
                throw ProtocolViolation("expected a result region descriptor of 16 bytes plus 8 per released region but found \(bytes.count) bytes")
            }
            let offset = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian
            let length = bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian
            guard offered.resultCapacity > 0 else {
                throw ProtocolViolation("expected an Arrow IPC payload (the host offered no result region) but found a region descriptor")
            }
            guard offset == UInt64(offered.resultOffset) else {
                throw ProtocolViolation("expected the result at arena offset \(offered.resultOffset) but found offset \(offset)")
            }
            guard length >= 8 && length <= UInt64(offered.resultCapacity) else {
                throw ProtocolViolation("expected a result of 8 to \(offered.resultCapacity) bytes in the region but found \(length) bytes")
            }
            return Result(offset: Int(offset), length: Int(length), released: releasedTail(bytes))
        }
    }

    /// The input regions a SHM RESULT releases (the words after its first two), whatever the
    /// rest of the descriptor says; empty when the frame is malformed.
    public static func releasedTail(_ bytes: UnsafeRawBufferPointer) -> [Int] {
        guard bytes.count > Result.size && bytes.count % 8 == 0 else { return [] }
        return (2..<bytes.count / 8).map { Int(truncatingIfNeeded: bytes.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self).littleEndian) }
    }

    /// Frame 1 of RELEASE: one input region offset per 8 bytes, at least one.
    public static func decodeRelease(_ bytes: UnsafeRawBufferPointer) throws(ProtocolViolation) -> [Int] {
        guard bytes.count >= 8 && bytes.count % 8 == 0 else {
            throw ProtocolViolation("expected a RELEASE frame of 8 bytes per region (at least one) but found \(bytes.count) bytes")
        }
        return (0..<bytes.count / 8).map { Int(truncatingIfNeeded: bytes.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self).littleEndian) }
    }

    /// RELEASE frame 1 for `offsets` (tests and other hosts' workers).
    public static func encodeRelease(_ offsets: [Int]) -> [UInt8] { words(offsets) }

    static func words(_ values: [Int]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(values.count * 8)
        for v in values { out += withUnsafeBytes(of: UInt64(v).littleEndian, Array.init) }
        return out
    }
}
