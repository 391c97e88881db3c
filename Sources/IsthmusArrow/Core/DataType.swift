/// Resolution of time, timestamp and duration values (values match Schema.fbs `TimeUnit`).
public enum TimeUnit: Int16, Sendable, Hashable, CaseIterable {
    case second = 0, millisecond = 1, microsecond = 2, nanosecond = 3

    /// Short name as pyarrow prints it: `s`, `ms`, `us`, `ns`.
    public var symbol: String {
        switch self {
        case .second: "s"
        case .millisecond: "ms"
        case .microsecond: "us"
        case .nanosecond: "ns"
        }
    }

    /// Units per second.
    public var perSecond: Int64 {
        switch self {
        case .second: 1
        case .millisecond: 1_000
        case .microsecond: 1_000_000
        case .nanosecond: 1_000_000_000
        }
    }
}

/// Kind of calendar interval (values match Schema.fbs `IntervalUnit`).
public enum IntervalUnit: Int16, Sendable, Hashable, CaseIterable {
    case yearMonth = 0, dayTime = 1, monthDayNano = 2
}

/// Union layout (values match Schema.fbs `UnionMode`).
public enum UnionMode: Int16, Sendable, Hashable {
    case sparse = 0, dense = 1
}

/// One key/value pair of custom metadata; order is kept as written.
public struct KeyValue: Hashable, Sendable {
    public var key: String
    public var value: String
    public init(_ key: String, _ value: String) { self.key = key; self.value = value }
}

/// An Arrow logical type.
///
/// Dictionary encoding is a type (`.dictionary`) rather than a field attribute, so a
/// dictionary-encoded column is self-describing; the IPC layer maps it to and from the
/// `Field.dictionary` of Schema.fbs and assigns dictionary ids itself.
public indirect enum DataType: Hashable, Sendable {
    case null
    case bool
    case int8, int16, int32, int64
    case uint8, uint16, uint32, uint64
    case float16, float32, float64
    case utf8, largeUtf8
    case binary, largeBinary
    case fixedSizeBinary(Int)
    case date32, date64
    case time32(TimeUnit), time64(TimeUnit)
    case timestamp(TimeUnit, timezone: String?)
    case duration(TimeUnit)
    case interval(IntervalUnit)
    case decimal128(precision: Int, scale: Int)
    case decimal256(precision: Int, scale: Int)
    case list(Field)
    case largeList(Field)
    case fixedSizeList(Field, Int)
    case `struct`([Field])
    /// `entries` is a non-nullable struct field with two children, key and value.
    case map(entries: Field, keysSorted: Bool)
    case union(UnionMode, [Field], typeIds: [Int8])
    case dictionary(index: DataType, value: DataType, ordered: Bool)

    /// Width in bytes of one value of a fixed-width type (bit-packed bool counts as 0), else nil.
    public var byteWidth: Int? {
        switch self {
        case .int8, .uint8: 1
        case .int16, .uint16, .float16: 2
        case .int32, .uint32, .float32, .date32, .time32: 4
        case .int64, .uint64, .float64, .date64, .time64, .timestamp, .duration: 8
        case .interval(let u): u == .yearMonth ? 4 : (u == .dayTime ? 8 : 16)
        case .decimal128: 16
        case .decimal256: 32
        case .fixedSizeBinary(let w): w
        default: nil
        }
    }

    /// Whether values are stored in one fixed-width values buffer (plus validity).
    public var isFixedWidth: Bool { byteWidth != nil }

    /// Whether this is utf8/binary (32-bit offsets) or their large variants.
    public var isBinaryLike: Bool {
        switch self {
        case .utf8, .largeUtf8, .binary, .largeBinary: true
        default: false
        }
    }

    /// Whether the type uses 64-bit offsets.
    public var hasLargeOffsets: Bool {
        switch self {
        case .largeUtf8, .largeBinary, .largeList: true
        default: false
        }
    }

    /// Whether the type is a signed or unsigned integer.
    public var isInteger: Bool {
        switch self {
        case .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64: true
        default: false
        }
    }

    /// Child fields of nested types, in order.
    public var children: [Field] {
        switch self {
        case .list(let f), .largeList(let f), .fixedSizeList(let f, _): [f]
        case .struct(let fs): fs
        case .map(let entries, _): [entries]
        case .union(_, let fs, _): fs
        default: []
        }
    }

    /// Number of buffers an array of this type has in memory (validity included where the layout has one).
    public var bufferCount: Int {
        switch self {
        case .null: 0
        case .bool: 2
        case .utf8, .largeUtf8, .binary, .largeBinary: 3
        case .list, .largeList, .map: 2
        case .fixedSizeList, .struct: 1
        case .union(let mode, _, _): mode == .dense ? 2 : 1
        case .dictionary: 2
        default: 2
        }
    }

    /// Whether buffer 0 is a validity bitmap (false for null and union, which have none).
    public var hasValidityBuffer: Bool {
        switch self {
        case .null, .union: false
        default: true
        }
    }
}

extension DataType: CustomStringConvertible {
    /// The type as pyarrow prints it, e.g. `timestamp[ms, tz=UTC]`, `list<item: int64>`.
    public var description: String {
        switch self {
        case .null: "null"
        case .bool: "bool"
        case .int8: "int8"
        case .int16: "int16"
        case .int32: "int32"
        case .int64: "int64"
        case .uint8: "uint8"
        case .uint16: "uint16"
        case .uint32: "uint32"
        case .uint64: "uint64"
        case .float16: "halffloat"
        case .float32: "float"
        case .float64: "double"
        case .utf8: "string"
        case .largeUtf8: "large_string"
        case .binary: "binary"
        case .largeBinary: "large_binary"
        case .fixedSizeBinary(let w): "fixed_size_binary[\(w)]"
        case .date32: "date32[day]"
        case .date64: "date64[ms]"
        case .time32(let u): "time32[\(u.symbol)]"
        case .time64(let u): "time64[\(u.symbol)]"
        case .timestamp(let u, let tz): tz.map { "timestamp[\(u.symbol), tz=\($0)]" } ?? "timestamp[\(u.symbol)]"
        case .duration(let u): "duration[\(u.symbol)]"
        case .interval(let u):
            switch u {
            case .yearMonth: "month_interval"
            case .dayTime: "day_time_interval"
            case .monthDayNano: "month_day_nano_interval"
            }
        case .decimal128(let p, let s): "decimal128(\(p), \(s))"
        case .decimal256(let p, let s): "decimal256(\(p), \(s))"
        case .list(let f): "list<\(f.name): \(f.type)>"
        case .largeList(let f): "large_list<\(f.name): \(f.type)>"
        case .fixedSizeList(let f, let n): "fixed_size_list<\(f.name): \(f.type)>[\(n)]"
        case .struct(let fs): "struct<" + fs.map { "\($0.name): \($0.type)" }.joined(separator: ", ") + ">"
        case .map(let e, let sorted):
            "map<\(e.type.children.first?.type.description ?? "?"), \(e.type.children.dropFirst().first?.type.description ?? "?")\(sorted ? ", keys_sorted" : "")>"
        case .union(let mode, let fs, _):
            (mode == .dense ? "dense_union<" : "sparse_union<") + fs.map { "\($0.name): \($0.type)" }.joined(separator: ", ") + ">"
        case .dictionary(let i, let v, let o): "dictionary<values=\(v), indices=\(i), ordered=\(o ? 1 : 0)>"
        }
    }
}

/// A named, typed column slot of a schema or a nested type.
public struct Field: Hashable, Sendable {
    /// Column name (may be empty or repeated; Arrow allows both).
    public var name: String
    /// Logical type.
    public var type: DataType
    /// Whether values may be null.
    public var nullable: Bool
    /// Custom metadata, in order.
    public var metadata: [KeyValue]

    /// A field; nullable by default, as in pyarrow.
    public init(_ name: String, _ type: DataType, nullable: Bool = true, metadata: [KeyValue] = []) {
        self.name = name
        self.type = type
        self.nullable = nullable
        self.metadata = metadata
    }
}

/// The columns of a record batch or stream, plus custom metadata.
public struct Schema: Hashable, Sendable {
    /// Columns in order.
    public var fields: [Field]
    /// Custom metadata, in order.
    public var metadata: [KeyValue]

    /// A schema.
    public init(_ fields: [Field], metadata: [KeyValue] = []) {
        self.fields = fields
        self.metadata = metadata
    }

    /// Index of the first field called `name`.
    public func index(of name: String) -> Int? { fields.firstIndex { $0.name == name } }
}

extension Schema: CustomStringConvertible {
    /// One `name: type` line per field, with `not null` and metadata as pyarrow prints them.
    public var description: String {
        var lines: [String] = fields.map { f in
            var line = "\(f.name): \(f.type)\(f.nullable ? "" : " not null")"
            if !f.metadata.isEmpty {
                line += "\n  -- field metadata --\n" + f.metadata.map { "  \($0.key): '\($0.value)'" }.joined(separator: "\n")
            }
            return line
        }
        if !metadata.isEmpty {
            lines.append("-- schema metadata --")
            lines += metadata.map { "\($0.key): '\($0.value)'" }
        }
        return lines.joined(separator: "\n")
    }
}
