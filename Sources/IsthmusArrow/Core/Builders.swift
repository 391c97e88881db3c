/// Builds an array of any type one value at a time.
///
/// `append(_:)` checks that the value fits the type and throws an `ArrowError` naming
/// the expected and found kinds otherwise. Nested types build their children recursively;
/// dictionary types deduplicate values into the dictionary.
public final class ArrayBuilder {
    /// The type being built.
    public let type: DataType
    /// Slots appended so far.
    public private(set) var length = 0
    /// Null slots appended so far.
    public private(set) var nullCount = 0

    private let validity = BufferBuilder()
    private let values = BufferBuilder()      // fixed-width values, bools, utf8 data, type ids
    private let offsets = BufferBuilder()     // utf8/binary/list/map/dense-union offsets
    private var children: [ArrayBuilder]
    private var dictionaryMemo: [ArrowValue: Int] = [:]
    private var dictionaryBuilder: ArrayBuilder?
    private var denseCounts: [Int] = []

    /// A builder for `type`.
    public init(_ type: DataType) {
        self.type = type
        switch type {
        case .dictionary(_, let valueType, _):
            children = []
            dictionaryBuilder = ArrayBuilder(valueType)
        default:
            children = type.children.map { ArrayBuilder($0.type) }
        }
        if case .union(_, let fields, _) = type { denseCounts = Array(repeating: 0, count: fields.count) }
        switch type {
        case .utf8, .binary, .list, .map: offsets.append(Int32(0))
        case .largeUtf8, .largeBinary, .largeList: offsets.append(Int64(0))
        default: break
        }
    }

    /// Appends a null slot.
    public func appendNull() {
        switch type {
        case .union(let mode, _, let typeIds):
            // A union has no validity of its own: a null goes to the first member.
            values.append(typeIds.first ?? 0)
            if mode == .dense { offsets.append(Int32(denseCounts[0])); denseCounts[0] += 1; children[0].appendNull() }
            else { for (k, c) in children.enumerated() { _ = k; c.appendNull() } }
            length += 1
            nullCount += 1
            return
        default: break
        }
        validity.setBit(length, false)
        nullCount += 1
        appendEmptySlot()
        length += 1
    }

    private func appendEmptySlot() {
        switch type {
        case .null: break
        case .bool: values.setBit(length, false)
        case .utf8, .binary, .list, .map: offsets.append(Int32(truncatingIfNeeded: currentChildOrDataCount))
        case .largeUtf8, .largeBinary, .largeList: offsets.append(Int64(currentChildOrDataCount))
        case .fixedSizeList(_, let n): for _ in 0..<n { children[0].appendNull() }
        case .struct: for c in children { c.appendNull() }
        case .dictionary(let index, _, _): appendIndex(0, index)
        default: values.appendZeros(type.byteWidth ?? 0)
        }
    }

    private var currentChildOrDataCount: Int {
        switch type {
        case .list, .largeList, .map: children[0].length
        default: values.count
        }
    }

    private func mismatch(_ value: ArrowValue) -> ArrowError {
        ArrowError(.invalidArgument, "expected a value of type \(type) but found \(value)")
    }

    /// Appends a value (or a null for `.null`).
    public func append(_ value: ArrowValue) throws {
        if case .union = type { try appendUnion(value); return }
        if case .null = value { appendNull(); return }
        switch (type, value) {
        case (.bool, .bool(let b)): values.setBit(length, b)
        case (.int8, .int(let v)): values.append(try narrow(v, Int8.self))
        case (.int16, .int(let v)): values.append(try narrow(v, Int16.self))
        case (.int32, .int(let v)), (.date32, .int(let v)), (.time32, .int(let v)), (.interval(.yearMonth), .int(let v)):
            values.append(try narrow(v, Int32.self))
        case (.int64, .int(let v)), (.date64, .int(let v)), (.time64, .int(let v)), (.timestamp, .int(let v)), (.duration, .int(let v)):
            values.append(v)
        case (.uint8, .uint(let v)): values.append(try narrow(v, UInt8.self))
        case (.uint16, .uint(let v)): values.append(try narrow(v, UInt16.self))
        case (.uint32, .uint(let v)): values.append(try narrow(v, UInt32.self))
        case (.uint64, .uint(let v)): values.append(v)
        case (.uint8, .int(let v)) where v >= 0: values.append(try narrow(v, UInt8.self))
        case (.uint16, .int(let v)) where v >= 0: values.append(try narrow(v, UInt16.self))
        case (.uint32, .int(let v)) where v >= 0: values.append(try narrow(v, UInt32.self))
        case (.uint64, .int(let v)) where v >= 0: values.append(UInt64(v))
        case (.float16, .float(let d)): values.append(HalfFloat.fromFloat(Float(d)))
        case (.float32, .float(let d)): values.append(Float(d))
        case (.float64, .float(let d)): values.append(d)
        case (.float64, .int(let v)): values.append(Double(v))
        case (.utf8, .string(let s)), (.largeUtf8, .string(let s)):
            var s = s
            s.withUTF8 { values.append(UnsafeRawBufferPointer($0)) }
            appendOffset(values.count)
        case (.binary, .bytes(let b)), (.largeBinary, .bytes(let b)):
            b.withUnsafeBytes { values.append($0) }
            appendOffset(values.count)
        case (.fixedSizeBinary(let w), .bytes(let b)):
            guard b.count == w else { throw ArrowError(.invalidArgument, "expected \(w) bytes for \(type) but found \(b.count)") }
            b.withUnsafeBytes { values.append($0) }
        case (.decimal128, .decimal(let b)), (.decimal256, .decimal(let b)):
            guard b.count == type.byteWidth! else { throw ArrowError(.invalidArgument, "expected \(type.byteWidth!) bytes for \(type) but found \(b.count)") }
            b.withUnsafeBytes { values.append($0) }
        case (.interval(.dayTime), .dayTime(let d, let ms)): values.append(d); values.append(ms)
        case (.interval(.monthDayNano), .monthDayNano(let m, let d, let ns)): values.append(m); values.append(d); values.append(ns)
        case (.list, .list(let items)), (.largeList, .list(let items)), (.map, .list(let items)):
            for item in items { try children[0].append(item) }
            appendOffset(children[0].length)
        case (.fixedSizeList(_, let n), .list(let items)):
            guard items.count == n else { throw ArrowError(.invalidArgument, "expected \(n) items for \(type) but found \(items.count)") }
            for item in items { try children[0].append(item) }
        case (.struct(let fields), .structure(let items)):
            guard items.count == fields.count else { throw ArrowError(.invalidArgument, "expected \(fields.count) fields for \(type) but found \(items.count)") }
            for (c, item) in zip(children, items) { try c.append(item) }
        case (.dictionary(let index, _, _), _):
            let key: Int
            if let existing = dictionaryMemo[value] { key = existing } else {
                key = dictionaryBuilder!.length
                try dictionaryBuilder!.append(value)
                dictionaryMemo[value] = key
            }
            appendIndex(key, index)
        default:
            throw mismatch(value)
        }
        validity.setBit(length, true)
        length += 1
    }

    private func appendUnion(_ value: ArrowValue) throws {
        guard case .union(let mode, _, let typeIds) = type else { return }
        guard case .union(let typeId, let inner) = value else {
            if case .null = value { appendNull(); return }
            throw mismatch(value)
        }
        guard let child = typeIds.firstIndex(of: typeId) else {
            throw ArrowError(.invalidArgument, "expected a union type id in \(typeIds) but found \(typeId)")
        }
        values.append(typeId)
        if mode == .dense {
            offsets.append(Int32(denseCounts[child]))
            denseCounts[child] += 1
            try children[child].append(inner)
        } else {
            for (k, c) in children.enumerated() {
                if k == child { try c.append(inner) } else { c.appendNull() }
            }
        }
        if inner.isNull { nullCount += 1 }
        length += 1
    }

    private func narrow<T: FixedWidthInteger, S: BinaryInteger>(_ v: S, _: T.Type) throws -> T {
        guard let r = T(exactly: v) else { throw ArrowError(.invalidArgument, "expected a value that fits \(type) but found \(v)") }
        return r
    }

    private func appendOffset(_ end: Int) {
        if type.hasLargeOffsets { offsets.append(Int64(end)) } else { offsets.append(Int32(truncatingIfNeeded: end)) }
    }

    private func appendIndex(_ key: Int, _ index: DataType) {
        switch index {
        case .int8: values.append(Int8(truncatingIfNeeded: key))
        case .int16: values.append(Int16(truncatingIfNeeded: key))
        case .int32: values.append(Int32(truncatingIfNeeded: key))
        case .uint8: values.append(UInt8(truncatingIfNeeded: key))
        case .uint16: values.append(UInt16(truncatingIfNeeded: key))
        case .uint32: values.append(UInt32(truncatingIfNeeded: key))
        case .uint64: values.append(UInt64(key))
        default: values.append(Int64(key))
        }
    }

    // MARK: Typed fast paths (no `ArrowValue` boxing). The caller guarantees the type matches;
    // the generic `append(_:)` stays the checked path.

    /// Appends a value to an array stored as 64-bit integers (int64, date64, time64, timestamp, duration).
    @inline(__always)
    public func appendInt64(_ v: Int64) {
        values.append(v)
        validity.setBit(length, true)
        length += 1
    }

    /// Appends a value to an array stored as 32-bit integers (int32, date32, time32).
    @inline(__always)
    public func appendInt32(_ v: Int32) {
        values.append(v)
        validity.setBit(length, true)
        length += 1
    }

    /// Appends a fixed-width integer value of the builder's own width (int8 ... uint64).
    @inline(__always)
    public func appendInteger<T: FixedWidthInteger>(_ v: T) {
        values.append(v)
        validity.setBit(length, true)
        length += 1
    }

    /// Appends a float64 value.
    @inline(__always)
    public func appendDouble(_ v: Double) {
        values.append(v)
        validity.setBit(length, true)
        length += 1
    }

    /// Appends a float32 value.
    @inline(__always)
    public func appendFloat(_ v: Float) {
        values.append(v)
        validity.setBit(length, true)
        length += 1
    }

    /// Appends a bool value.
    @inline(__always)
    public func appendBool(_ v: Bool) {
        values.setBit(length, v)
        validity.setBit(length, true)
        length += 1
    }

    /// Appends raw bytes as one slot of a utf8/binary (or large) array, or as one value of a
    /// fixed-width array whose width equals `bytes.count` (fixed-size binary, decimals).
    @inline(__always)
    public func appendBytes(_ bytes: UnsafeRawBufferPointer) {
        values.append(bytes)
        switch type {
        case .utf8, .binary, .largeUtf8, .largeBinary: appendOffset(values.count)
        default: break
        }
        validity.setBit(length, true)
        length += 1
    }

    /// Appends a string to a utf8 (or large utf8) array.
    public func appendString(_ s: String) {
        var s = s
        s.withUTF8 { appendBytes(UnsafeRawBufferPointer($0)) }
    }

    /// The builder of child `i` of a list (0), fixed-size list (0) or struct (field `i`) type.
    /// Append the child values there, then close the slot with `appendListSlot()` / `appendStructSlot()`.
    public func child(_ i: Int) -> ArrayBuilder { children[i] }

    /// Closes one valid list (or large list, map) slot holding the child values appended since the last slot.
    public func appendListSlot() {
        appendOffset(children[0].length)
        validity.setBit(length, true)
        length += 1
    }

    /// Closes one valid struct (or fixed-size list) slot whose child values were appended to `child(_:)`.
    public func appendStructSlot() {
        validity.setBit(length, true)
        length += 1
    }

    /// Bytes the builder holds so far (an estimate for batching by size).
    public var byteCount: Int {
        validity.count + values.count + offsets.count + children.reduce(0) { $0 + $1.byteCount }
    }

    /// Appends every value in order.
    public func append(contentsOf values: some Sequence<ArrowValue>) throws {
        for v in values { try append(v) }
    }

    /// The finished array; the builder is left empty and reusable.
    public func finish() -> ArrayData {
        let n = length
        let nulls = nullCount
        // Every slot set its validity bit, so the bitmap already covers `n` bits.
        let validityBuffer: Buffer? = nulls > 0 ? validity.finish() : nil
        validity.removeAll()
        let result: ArrayData
        switch type {
        case .null:
            result = ArrayData(type: type, length: n, nullCount: n, buffers: [])
        case .bool:
            values.appendZeros(Swift.max(0, (n + 7) / 8 - values.count))
            result = ArrayData(type: type, length: n, nullCount: nulls, buffers: [validityBuffer, values.finish()])
        case .utf8, .largeUtf8, .binary, .largeBinary:
            result = ArrayData(type: type, length: n, nullCount: nulls, buffers: [validityBuffer, offsets.finish(), values.finish()])
        case .list, .largeList, .map:
            result = ArrayData(type: type, length: n, nullCount: nulls, buffers: [validityBuffer, offsets.finish()], children: [children[0].finish()])
        case .fixedSizeList, .struct:
            result = ArrayData(type: type, length: n, nullCount: nulls, buffers: [validityBuffer], children: children.map { $0.finish() })
        case .union(let mode, _, _):
            let buffers: [Buffer?] = mode == .dense ? [values.finish(), offsets.finish()] : [values.finish()]
            result = ArrayData(type: type, length: n, nullCount: 0, buffers: buffers, children: children.map { $0.finish() })
            for k in denseCounts.indices { denseCounts[k] = 0 }
        case .dictionary:
            result = ArrayData(type: type, length: n, nullCount: nulls, buffers: [validityBuffer, values.finish()], dictionary: dictionaryBuilder!.finish())
            dictionaryMemo.removeAll()
        default:
            result = ArrayData(type: type, length: n, nullCount: nulls, buffers: [validityBuffer, values.finish()])
        }
        length = 0
        nullCount = 0
        switch type {
        case .utf8, .binary, .list, .map: offsets.append(Int32(0))
        case .largeUtf8, .largeBinary, .largeList: offsets.append(Int64(0))
        default: break
        }
        return result
    }
}

extension ArrayData {
    /// An array of `type` holding `values`.
    public static func build(_ type: DataType, _ values: [ArrowValue]) throws -> ArrayData {
        let b = ArrayBuilder(type)
        try b.append(contentsOf: values)
        return b.finish()
    }

    /// An int64 array.
    public static func int64(_ values: [Int64?]) -> ArrayData { fixed(.int64, values) }
    /// An int32 array.
    public static func int32(_ values: [Int32?]) -> ArrayData { fixed(.int32, values) }
    /// A float64 array.
    public static func float64(_ values: [Double?]) -> ArrayData { fixed(.float64, values) }
    /// A float32 array.
    public static func float32(_ values: [Float?]) -> ArrayData { fixed(.float32, values) }

    /// A fixed-width array of `type` whose values are stored as `T`.
    public static func fixed<T: BitwiseCopyable>(_ type: DataType, _ values: [T?]) -> ArrayData {
        precondition(type.byteWidth == MemoryLayout<T>.size, "\(T.self) does not match \(type)")
        let data = BufferBuilder(capacity: values.count * MemoryLayout<T>.size)
        let validity = BufferBuilder(capacity: (values.count + 7) / 8)
        validity.appendZeros((values.count + 7) / 8)
        var nulls = 0
        data.reserve(values.count * MemoryLayout<T>.size)
        for (i, v) in values.enumerated() {
            if let v {
                withUnsafeBytes(of: v) { data.append($0) }
                validity.setBit(i, true)
            } else {
                data.appendZeros(MemoryLayout<T>.size)
                nulls += 1
            }
        }
        return ArrayData(type: type, length: values.count, nullCount: nulls,
                         buffers: [nulls > 0 ? validity.finish() : nil, data.finish()])
    }

    /// A bool array.
    public static func bool(_ values: [Bool?]) -> ArrayData {
        try! build(.bool, values.map { $0.map(ArrowValue.bool) ?? .null })
    }

    /// A utf8 array.
    public static func utf8(_ values: [String?]) -> ArrayData {
        try! build(.utf8, values.map { $0.map(ArrowValue.string) ?? .null })
    }
}
