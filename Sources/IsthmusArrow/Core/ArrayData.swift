/// An Arrow array: a typed view over buffers, with an offset and a length so that
/// slicing copies nothing. The layout of `buffers` per type:
///
/// | type | buffers | children |
/// | --- | --- | --- |
/// | null | none | none |
/// | bool, fixed-width | validity, values | none |
/// | utf8, binary (and large) | validity, offsets, data | none |
/// | list, large list, map | validity, offsets | values (map: entries struct) |
/// | fixed-size list, struct | validity | values / fields |
/// | sparse union | type ids | one per member |
/// | dense union | type ids, offsets (int32) | one per member |
/// | dictionary | validity, indices | none (`dictionary` holds the values) |
///
/// A `nil` validity buffer means no value is null. `offset` applies to this array's own
/// buffers; a struct, fixed-size list or sparse union reads its children at `offset + i`
/// (times the list size), as in the C++ implementation.
public struct ArrayData: Sendable {
    /// Logical type.
    public let type: DataType
    /// Number of slots.
    public let length: Int
    /// Slot offset into the buffers.
    public let offset: Int
    /// Number of null slots.
    public let nullCount: Int
    /// Buffers in the order of the table above.
    public let buffers: [Buffer?]
    /// Child arrays of nested types.
    public let children: [ArrayData]
    /// Values of a dictionary-encoded array.
    public var dictionary: ArrayData? { dictionaryStorage.first }
    private let dictionaryStorage: [ArrayData]   // an array, so the struct may contain itself

    /// An array over existing buffers. `nullCount` is computed from the validity bitmap when nil.
    /// Callers that got the buffers from untrusted input must call `validate()` before reading values.
    public init(type: DataType, length: Int, offset: Int = 0, nullCount: Int? = nil,
                buffers: [Buffer?], children: [ArrayData] = [], dictionary: ArrayData? = nil) {
        self.type = type
        self.length = length
        self.offset = offset
        self.buffers = buffers
        self.children = children
        self.dictionaryStorage = dictionary.map { [$0] } ?? []
        if let nullCount {
            self.nullCount = nullCount
        } else if case .null = type {
            self.nullCount = length
        } else if type.hasValidityBuffer, let validity = buffers.first ?? nil, validity.count * 8 >= offset + length {
            self.nullCount = length - Bitmap.countSet(validity, offset: offset, length: length)
        } else {
            self.nullCount = 0
        }
    }

    /// A view of `length` slots starting at `start`; copies nothing.
    public func slice(_ start: Int, _ length: Int) -> ArrayData {
        precondition(start >= 0 && length >= 0 && start + length <= self.length,
                     "slice \(start)..<\(start + length) outside array of length \(self.length)")
        return ArrayData(type: type, length: length, offset: offset + start, nullCount: nil,
                         buffers: buffers, children: children, dictionary: dictionary)
    }

    /// Whether slot `i` holds a value (unions and null arrays are decided by their layout).
    @inlinable
    public func isValid(_ i: Int) -> Bool {
        switch type {
        case .null: return false
        case .union: return true
        default:
            guard nullCount > 0, let validity = buffers[0] else { return true }
            return Bitmap.get(validity, offset + i)
        }
    }

    /// Whether slot `i` is null.
    @inlinable
    public func isNull(_ i: Int) -> Bool { !isValid(i) }

    /// The values buffer of a fixed-width array as a typed pointer, offset applied.
    /// `T` must match the type's width (e.g. `Int64` for int64/timestamp, `Double` for float64).
    public func values<T: BitwiseCopyable>(as: T.Type) -> UnsafeBufferPointer<T> {
        guard let buffer = buffers.count > 1 ? buffers[1] : nil else {
            return UnsafeBufferPointer(start: nil, count: 0)
        }
        let base = buffer.bytes.baseAddress!.assumingMemoryBound(to: T.self)
        return UnsafeBufferPointer(start: base + offset, count: length)
    }

    /// Reads fixed-width value `i` as `T` (little-endian, unaligned-safe).
    @inlinable
    public func value<T: BitwiseCopyable>(_ i: Int, as: T.Type) -> T {
        let buffer = buffers[1]!
        return buffer.bytes.loadUnaligned(fromByteOffset: (offset + i) * MemoryLayout<T>.stride, as: T.self)
    }

    /// Start and end offsets of slot `i` of a utf8/binary/list/map array.
    @inlinable
    public func valueRange(_ i: Int) -> Range<Int> {
        let offsets = buffers[1]!
        if type.hasLargeOffsets {
            let s = Int(offsets.load(Int64.self, at: (offset + i) * 8))
            let e = Int(offsets.load(Int64.self, at: (offset + i + 1) * 8))
            return s..<e
        }
        let s = Int(offsets.load(Int32.self, at: (offset + i) * 4))
        let e = Int(offsets.load(Int32.self, at: (offset + i + 1) * 4))
        return s..<e
    }

    /// The bytes of slot `i` of a utf8/binary array.
    @inlinable
    public func bytes(_ i: Int) -> UnsafeRawBufferPointer {
        let r = valueRange(i)
        let data = buffers[2]!
        return UnsafeRawBufferPointer(rebasing: data.bytes[r])
    }

    /// Slot `i` of a utf8 array as a string (nil when null).
    public func string(_ i: Int) -> String? {
        guard isValid(i) else { return nil }
        return String(decoding: bytes(i), as: UTF8.self)
    }

    /// Slot `i` of an int64-backed array (nil when null).
    public func int64(_ i: Int) -> Int64? { isValid(i) ? value(i, as: Int64.self) : nil }

    /// Slot `i` of a float64 array (nil when null).
    public func double(_ i: Int) -> Double? { isValid(i) ? value(i, as: Double.self) : nil }

    /// Slot `i` of a bool array (nil when null).
    public func bool(_ i: Int) -> Bool? { isValid(i) ? Bitmap.get(buffers[1]!, offset + i) : nil }

    /// Total bytes of the buffer views this array (and its children) spans; an estimate of its size.
    public var byteSize: Int {
        buffers.reduce(0) { $0 + ($1?.count ?? 0) } + children.reduce(0) { $0 + $1.byteSize } + (dictionary?.byteSize ?? 0)
    }
}

/// Bit-level helpers for validity bitmaps and bool values (LSB numbering).
public enum Bitmap {
    /// Bit `i` of `buffer`.
    @inlinable
    public static func get(_ buffer: Buffer, _ i: Int) -> Bool {
        (buffer.bytes[i >> 3] >> UInt8(i & 7)) & 1 == 1
    }

    /// Number of set bits in `[offset, offset + length)`.
    public static func countSet(_ buffer: Buffer, offset: Int, length: Int) -> Int {
        var n = 0
        var i = offset
        let end = offset + length
        let bytes = buffer.bytes
        while i < end && i & 7 != 0 { if (bytes[i >> 3] >> UInt8(i & 7)) & 1 == 1 { n += 1 }; i += 1 }
        while i + 64 <= end {
            n += bytes.loadUnaligned(fromByteOffset: i >> 3, as: UInt64.self).nonzeroBitCount
            i += 64
        }
        while i + 8 <= end { n += bytes[i >> 3].nonzeroBitCount; i += 8 }
        while i < end { if (bytes[i >> 3] >> UInt8(i & 7)) & 1 == 1 { n += 1 }; i += 1 }
        return n
    }

    /// A new bitmap holding bits `[offset, offset + length)` of `buffer` starting at bit 0.
    public static func copy(_ buffer: Buffer, offset: Int, length: Int) -> Buffer {
        if offset & 7 == 0 {
            return buffer.slice(offset >> 3, (length + 7) >> 3)
        }
        let out = BufferBuilder(capacity: (length + 7) >> 3)
        out.appendZeros((length + 7) >> 3)
        for i in 0..<length where get(buffer, offset + i) { out.setBit(i, true) }
        return out.finish()
    }
}
