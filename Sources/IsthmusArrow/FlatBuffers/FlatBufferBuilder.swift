/// A table to serialize: its slots and their values. Built as a value tree, then laid out
/// front to back by `FBWriter` (parents before children, so every uoffset points forward).
public struct FBTableValue: Sendable {
    /// The slots that are present, in any order.
    public var fields: [(slot: Int, value: FBFieldValue)]

    /// An empty table.
    public init() { fields = [] }

    /// Adds a slot.
    public mutating func set(_ slot: Int, _ value: FBFieldValue) { fields.append((slot, value)) }
}

/// A value held by a table slot.
public indirect enum FBFieldValue: Sendable {
    /// A bool scalar (1 byte).
    case bool(Bool)
    /// A byte scalar.
    case int8(Int8)
    /// An unsigned byte scalar (also union tags).
    case uint8(UInt8)
    /// A short scalar.
    case int16(Int16)
    /// An int scalar.
    case int32(Int32)
    /// A long scalar.
    case int64(Int64)
    /// A string (UTF-8, NUL-terminated).
    case string(String)
    /// A sub-table (also a union value).
    case table(FBTableValue)
    /// A vector of tables.
    case tables([FBTableValue])
    /// A vector of strings.
    case strings([String])
    /// A vector of inline elements (scalars or structs): `count` elements of `elementSize`
    /// bytes whose little-endian bytes are `bytes`; `alignment` is the element alignment.
    case inlineVector(bytes: [UInt8], count: Int, alignment: Int)

    /// A vector of int32 scalars.
    public static func int32Vector(_ values: [Int32]) -> FBFieldValue {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 4)
        for v in values { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        return .inlineVector(bytes: bytes, count: values.count, alignment: 4)
    }

    /// A vector of int64 scalars.
    public static func int64Vector(_ values: [Int64]) -> FBFieldValue {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 8)
        for v in values { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        return .inlineVector(bytes: bytes, count: values.count, alignment: 8)
    }

    /// A vector of structs made of int64 fields (`fieldsPerElement` each; Arrow's FieldNode, Buffer).
    public static func int64Structs(_ values: [Int64], fieldsPerElement: Int) -> FBFieldValue {
        let v = int64Vector(values)
        guard case .inlineVector(let bytes, _, let a) = v else { return v }
        return .inlineVector(bytes: bytes, count: values.count / fieldsPerElement, alignment: a)
    }

    var inlineSize: Int {
        switch self {
        case .bool, .int8, .uint8: 1
        case .int16: 2
        case .int32: 4
        case .int64: 8
        default: 4
        }
    }
}

/// Lays out a `FBTableValue` tree as a FlatBuffer: root uoffset, then each table's vtable
/// followed by the table, then the objects it refers to. Scalars are aligned to their size
/// relative to the start of the buffer, so the buffer must itself start 8-byte aligned.
public struct FBWriter {
    private var out: [UInt8] = []

    /// Serializes `root`.
    public static func serialize(_ root: FBTableValue) -> [UInt8] {
        var w = FBWriter()
        w.out.reserveCapacity(256)
        w.out.append(contentsOf: [0, 0, 0, 0])
        let p = w.emitTable(root)
        w.patch(uoffsetAt: 0, to: p)
        return w.out
    }

    private mutating func align(_ a: Int) {
        while out.count % a != 0 { out.append(0) }
    }

    private mutating func put<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    private mutating func set<T: FixedWidthInteger>(_ v: T, at p: Int) {
        withUnsafeBytes(of: v.littleEndian) { b in for i in 0..<b.count { out[p + i] = b[i] } }
    }

    private mutating func patch(uoffsetAt p: Int, to target: Int) {
        set(UInt32(target - p), at: p)
    }

    private mutating func emitTable(_ table: FBTableValue) -> Int {
        let slots = (table.fields.map(\.slot).max() ?? -1) + 1
        // vtable first (2-byte aligned), then the table (aligned for its widest field).
        align(2)
        let vtablePosition = out.count
        put(UInt16(4 + 2 * slots))
        put(UInt16(0))   // table size, patched below
        for _ in 0..<slots { put(UInt16(0)) }
        let widest = table.fields.map { $0.value.inlineSize }.max() ?? 4
        align(Swift.max(4, widest))
        let tablePosition = out.count
        put(Int32(tablePosition - vtablePosition))
        // Widest fields first to keep padding small.
        let ordered = table.fields.sorted { $0.value.inlineSize > $1.value.inlineSize }
        var deferred: [(Int, FBFieldValue)] = []
        for (slot, value) in ordered {
            align(value.inlineSize)
            let p = out.count
            switch value {
            case .bool(let b): put(UInt8(b ? 1 : 0))
            case .int8(let v): put(v)
            case .uint8(let v): put(v)
            case .int16(let v): put(v)
            case .int32(let v): put(v)
            case .int64(let v): put(v)
            default:
                put(UInt32(0))
                deferred.append((p, value))
            }
            set(UInt16(p - tablePosition), at: vtablePosition + 4 + 2 * slot)
        }
        set(UInt16(out.count - tablePosition), at: vtablePosition + 2)
        for (p, value) in deferred {
            let target: Int
            switch value {
            case .string(let s): target = emitString(s)
            case .table(let t): target = emitTable(t)
            case .tables(let ts): target = emitTables(ts)
            case .strings(let ss): target = emitStrings(ss)
            case .inlineVector(let bytes, let count, let alignment):
                // The length sits right before the elements, which must be aligned.
                align(4)
                while (out.count + 4) % Swift.max(alignment, 4) != 0 { out.append(0) }
                target = out.count
                put(UInt32(count))
                out.append(contentsOf: bytes)
            default: fatalError("scalar values are stored inline")
            }
            patch(uoffsetAt: p, to: target)
        }
        return tablePosition
    }

    private mutating func emitString(_ s: String) -> Int {
        align(4)
        let p = out.count
        let utf8 = Array(s.utf8)
        put(UInt32(utf8.count))
        out.append(contentsOf: utf8)
        out.append(0)
        return p
    }

    private mutating func emitTables(_ tables: [FBTableValue]) -> Int {
        align(4)
        let p = out.count
        put(UInt32(tables.count))
        let first = out.count
        for _ in tables { put(UInt32(0)) }
        for (i, t) in tables.enumerated() {
            let target = emitTable(t)
            patch(uoffsetAt: first + 4 * i, to: target)
        }
        return p
    }

    private mutating func emitStrings(_ strings: [String]) -> Int {
        align(4)
        let p = out.count
        put(UInt32(strings.count))
        let first = out.count
        for _ in strings { put(UInt32(0)) }
        for (i, s) in strings.enumerated() {
            let target = emitString(s)
            patch(uoffsetAt: first + 4 * i, to: target)
        }
        return p
    }
}
