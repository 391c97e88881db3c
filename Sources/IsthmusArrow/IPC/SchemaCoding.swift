/// Where the dictionary-encoded nodes of a type tree are, and their dictionary ids.
/// Mirrors `DataType`: `.dictionary` for a dictionary type (its `value` mirrors the value
/// type), `.plain` for everything else (one node per child field).
indirect enum DictionaryNode: Sendable {
    case plain([DictionaryNode])
    case dictionary(id: Int64, value: DictionaryNode)

    /// Whether any dictionary lies in this subtree.
    var containsDictionary: Bool {
        switch self {
        case .dictionary: true
        case .plain(let children): children.contains { $0.containsDictionary }
        }
    }
}

/// The dictionary ids of a schema and what each id holds.
struct DictionaryMap: Sendable {
    /// One node per schema field.
    var fields: [DictionaryNode]
    /// Value type, value node and the name of the (first) field that uses each id.
    var entries: [Int64: (type: DataType, node: DictionaryNode, field: String)]
    /// Ids in the order their dictionaries must be sent: every dictionary after the ones
    /// its values refer to.
    var order: [Int64]

    static let empty = DictionaryMap(fields: [], entries: [:], order: [])

    /// Ids assigned in pre-order across the schema, starting at 0 (as Arrow C++ does).
    static func assign(_ schema: Schema) -> DictionaryMap {
        var next: Int64 = 0
        var map = DictionaryMap.empty
        func walk(_ type: DataType, _ name: String) -> DictionaryNode {
            if case .dictionary(_, let value, _) = type {
                let id = next
                next += 1
                let valueNode = walk(value, name)
                map.entries[id] = (value, valueNode, name)
                map.order.append(id)
                return .dictionary(id: id, value: valueNode)
            }
            return .plain(type.children.map { walk($0.type, $0.name) })
        }
        map.fields = schema.fields.map { walk($0.type, $0.name) }
        return map
    }
}

extension DataType {
    /// Whether the type can be written in Schema.fbs: a dictionary's values may not
    /// themselves be dictionary-encoded directly (they may contain dictionary-encoded children).
    var isIPCEncodable: Bool {
        switch self {
        case .dictionary(let index, let value, _):
            if case .dictionary = value { return false }
            return index.isInteger && value.isIPCEncodable
        default:
            return children.allSatisfy { $0.type.isIPCEncodable }
        }
    }
}

// MARK: Encoding

enum SchemaEncoding {
    static func keyValues(_ kvs: [KeyValue]) -> FBFieldValue {
        .tables(kvs.map { kv in
            var t = FBTableValue()
            t.set(0, .string(kv.key))
            t.set(1, .string(kv.value))
            return t
        })
    }

    static func intTable(_ type: DataType) -> FBTableValue {
        var t = FBTableValue()
        let (bits, signed): (Int32, Bool) = switch type {
        case .int8: (8, true)
        case .int16: (16, true)
        case .int32: (32, true)
        case .int64: (64, true)
        case .uint8: (8, false)
        case .uint16: (16, false)
        case .uint32: (32, false)
        default: (64, false)
        }
        t.set(0, .int32(bits))
        t.set(1, .bool(signed))
        return t
    }

    /// The `Type` union tag and table of a (non-dictionary) type.
    static func typeTable(_ type: DataType) -> (ArrowFB.TypeTag, FBTableValue) {
        var t = FBTableValue()
        switch type {
        case .null: return (.null, t)
        case .bool: return (.bool, t)
        case .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64: return (.int, intTable(type))
        case .float16: t.set(0, .int16(0)); return (.floatingPoint, t)
        case .float32: t.set(0, .int16(1)); return (.floatingPoint, t)
        case .float64: t.set(0, .int16(2)); return (.floatingPoint, t)
        case .utf8: return (.utf8, t)
        case .largeUtf8: return (.largeUtf8, t)
        case .binary: return (.binary, t)
        case .largeBinary: return (.largeBinary, t)
        case .fixedSizeBinary(let w): t.set(0, .int32(Int32(truncatingIfNeeded: w))); return (.fixedSizeBinary, t)
        case .date32: t.set(0, .int16(0)); return (.date, t)
        case .date64: t.set(0, .int16(1)); return (.date, t)
        case .time32(let u): t.set(0, .int16(u.rawValue)); t.set(1, .int32(32)); return (.time, t)
        case .time64(let u): t.set(0, .int16(u.rawValue)); t.set(1, .int32(64)); return (.time, t)
        case .timestamp(let u, let tz):
            t.set(0, .int16(u.rawValue))
            if let tz { t.set(1, .string(tz)) }
            return (.timestamp, t)
        case .duration(let u): t.set(0, .int16(u.rawValue)); return (.duration, t)
        case .interval(let u): t.set(0, .int16(u.rawValue)); return (.interval, t)
        case .decimal128(let p, let s), .decimal256(let p, let s):
            t.set(0, .int32(Int32(truncatingIfNeeded: p)))
            t.set(1, .int32(Int32(truncatingIfNeeded: s)))
            if case .decimal256 = type { t.set(2, .int32(256)) } else { t.set(2, .int32(128)) }
            return (.decimal, t)
        case .list: return (.list, t)
        case .largeList: return (.largeList, t)
        case .fixedSizeList(_, let n): t.set(0, .int32(Int32(truncatingIfNeeded: n))); return (.fixedSizeList, t)
        case .struct: return (.structType, t)
        case .map(_, let sorted): t.set(0, .bool(sorted)); return (.map, t)
        case .union(let mode, _, let ids):
            t.set(0, .int16(mode.rawValue))
            t.set(1, .int32Vector(ids.map { Int32($0) }))
            return (.union, t)
        case .dictionary(_, let value, _):
            return typeTable(value)
        }
    }

    static func field(_ f: Field, _ node: DictionaryNode) -> FBTableValue {
        var t = FBTableValue()
        t.set(0, .string(f.name))
        t.set(1, .bool(f.nullable))
        var valueType = f.type
        var childNodes: [DictionaryNode] = []
        if case .dictionary(let index, let value, let ordered) = f.type, case .dictionary(let id, let valueNode) = node {
            var d = FBTableValue()
            d.set(0, .int64(id))
            d.set(1, .table(intTable(index)))
            d.set(2, .bool(ordered))
            t.set(4, .table(d))
            valueType = value
            if case .plain(let c) = valueNode { childNodes = c }
        } else if case .plain(let c) = node {
            childNodes = c
        }
        let (tag, table) = typeTable(valueType)
        t.set(2, .uint8(tag.rawValue))
        t.set(3, .table(table))
        let children = valueType.children
        t.set(5, .tables(children.enumerated().map { i, c in
            field(c, i < childNodes.count ? childNodes[i] : .plain([]))
        }))
        if !f.metadata.isEmpty { t.set(6, keyValues(f.metadata)) }
        return t
    }

    static func schemaTable(_ schema: Schema, _ map: DictionaryMap) -> FBTableValue {
        var t = FBTableValue()
        t.set(0, .int16(0))   // little-endian
        t.set(1, .tables(schema.fields.enumerated().map { i, f in field(f, map.fields[i]) }))
        if !schema.metadata.isEmpty { t.set(2, keyValues(schema.metadata)) }
        return t
    }

    /// A Message flatbuffer.
    static func message(_ tag: ArrowFB.HeaderTag, _ header: FBTableValue, bodyLength: Int, metadata: [KeyValue] = []) -> [UInt8] {
        var m = FBTableValue()
        m.set(0, .int16(MetadataVersion.v5.rawValue))
        m.set(1, .uint8(tag.rawValue))
        m.set(2, .table(header))
        m.set(3, .int64(Int64(bodyLength)))
        if !metadata.isEmpty { m.set(4, keyValues(metadata)) }
        return FBWriter.serialize(m)
    }

    /// Continuation marker, int32 length, flatbuffer, zero padding to a multiple of 8.
    static func encapsulate(_ flatbuffer: [UInt8]) -> Buffer {
        let padded = (flatbuffer.count + 7) & ~7
        let out = BufferBuilder(capacity: 8 + padded)
        out.append(UInt32(0xFFFF_FFFF))
        out.append(Int32(padded))
        flatbuffer.withUnsafeBytes { out.append($0) }
        out.appendZeros(padded - flatbuffer.count)
        return out.finish()
    }
}

// MARK: Decoding

struct SchemaDecoder {
    var entries: [Int64: (type: DataType, node: DictionaryNode, field: String)] = [:]
    var order: [Int64] = []

    static func keyValues(_ v: FBVector?) -> [KeyValue] {
        guard let v else { return [] }
        return (0..<v.count).map { i in
            let t = v.table(i)
            return KeyValue(t.string(0) ?? "", t.string(1) ?? "")
        }
    }

    static func fail(_ message: String) -> ArrowError { .invalid(message) }

    static func intType(bits: Int32, signed: Bool, context: String) throws -> DataType {
        switch (bits, signed) {
        case (8, true): return .int8
        case (16, true): return .int16
        case (32, true): return .int32
        case (64, true): return .int64
        case (8, false): return .uint8
        case (16, false): return .uint16
        case (32, false): return .uint32
        case (64, false): return .uint64
        default: throw fail("\(context): expected an integer bit width of 8, 16, 32 or 64 but found \(bits)")
        }
    }

    static func timeUnit(_ raw: Int16, _ context: String) throws -> TimeUnit {
        guard let u = TimeUnit(rawValue: raw) else {
            throw fail("\(context): expected a time unit 0...3 but found \(raw)")
        }
        return u
    }

    mutating func schema(_ t: FBTable) throws -> (Schema, [DictionaryNode]) {
        let endianness = t.scalar(0, default: Int16(0))
        guard endianness == 0 else {
            throw ArrowError(.unsupported, "expected little-endian data but found a big-endian schema")
        }
        var fields: [Field] = []
        var nodes: [DictionaryNode] = []
        if let v = t.vector(1) {
            for i in 0..<v.count {
                let (f, n) = try field(v.table(i), path: "")
                fields.append(f)
                nodes.append(n)
            }
        }
        return (Schema(fields, metadata: Self.keyValues(t.vector(2))), nodes)
    }

    mutating func field(_ t: FBTable, path: String) throws -> (Field, DictionaryNode) {
        let name = t.string(0) ?? ""
        let context = "field '\(path.isEmpty ? name : path + "." + name)'"
        let nullable = t.bool(1)
        let tag = t.scalar(2, default: UInt8(0))
        guard tag != 0, let typeTable = t.table(3) else {
            throw Self.fail("\(context): expected a type but found none")
        }
        var children: [Field] = []
        var childNodes: [DictionaryNode] = []
        if let v = t.vector(5) {
            for i in 0..<v.count {
                let (c, n) = try field(v.table(i), path: path.isEmpty ? name : path + "." + name)
                children.append(c)
                childNodes.append(n)
            }
        }
        let valueType = try Self.type(tag, typeTable, children, context)
        let metadata = Self.keyValues(t.vector(6))
        let valueNode = DictionaryNode.plain(childNodes)
        guard let d = t.table(4) else {
            return (Field(name, valueType, nullable: nullable, metadata: metadata), valueNode)
        }
        let id = d.scalar(0, default: Int64(0))
        var index = DataType.int32
        if let it = d.table(1) {
            index = try Self.intType(bits: it.scalar(0, default: Int32(0)), signed: it.bool(1), context: "\(context) dictionary index")
        }
        let ordered = d.bool(2)
        if let existing = entries[id] {
            guard existing.type == valueType else {
                throw Self.fail("\(context): dictionary id \(id) is shared with field '\(existing.field)': expected values of type \(existing.type) but found \(valueType)")
            }
        } else {
            entries[id] = (valueType, valueNode, name)
            order.append(id)
        }
        return (Field(name, .dictionary(index: index, value: valueType, ordered: ordered), nullable: nullable, metadata: metadata),
                .dictionary(id: id, value: valueNode))
    }

    static func type(_ tag: UInt8, _ t: FBTable, _ children: [Field], _ context: String) throws -> DataType {
        guard let kind = ArrowFB.TypeTag(rawValue: tag) else {
            throw fail("\(context): expected a type tag 1...26 but found \(tag)")
        }
        func noChildren(_ type: DataType) throws -> DataType {
            guard children.isEmpty else { throw fail("\(context): expected no children for \(type) but found \(children.count)") }
            return type
        }
        func oneChild(_ what: String) throws -> Field {
            guard children.count == 1 else { throw fail("\(context): expected 1 child for \(what) but found \(children.count)") }
            return children[0]
        }
        switch kind {
        case .null: return try noChildren(.null)
        case .bool: return try noChildren(.bool)
        case .int:
            return try noChildren(try intType(bits: t.scalar(0, default: Int32(0)), signed: t.bool(1), context: context))
        case .floatingPoint:
            switch t.scalar(0, default: Int16(0)) {
            case 0: return try noChildren(.float16)
            case 1: return try noChildren(.float32)
            case 2: return try noChildren(.float64)
            case let p: throw fail("\(context): expected a float precision 0...2 but found \(p)")
            }
        case .binary: return try noChildren(.binary)
        case .utf8: return try noChildren(.utf8)
        case .largeBinary: return try noChildren(.largeBinary)
        case .largeUtf8: return try noChildren(.largeUtf8)
        case .fixedSizeBinary:
            let w = t.scalar(0, default: Int32(0))
            guard w >= 0 else { throw fail("\(context): expected a byte width >= 0 but found \(w)") }
            return try noChildren(.fixedSizeBinary(Int(w)))
        case .decimal:
            let p = Int(t.scalar(0, default: Int32(0)))
            let s = Int(t.scalar(1, default: Int32(0)))
            switch t.scalar(2, default: Int32(128)) {
            case 128: return try noChildren(.decimal128(precision: p, scale: s))
            case 256: return try noChildren(.decimal256(precision: p, scale: s))
            case let w: throw ArrowError(.unsupported, "\(context): expected a decimal bit width of 128 or 256 but found \(w)")
            }
        case .date:
            switch t.scalar(0, default: Int16(1)) {
            case 0: return try noChildren(.date32)
            case 1: return try noChildren(.date64)
            case let u: throw fail("\(context): expected a date unit 0 or 1 but found \(u)")
            }
        case .time:
            let unit = try timeUnit(t.scalar(0, default: Int16(1)), context)
            let bits = t.scalar(1, default: Int32(32))
            switch (unit, bits) {
            case (.second, 32), (.millisecond, 32): return try noChildren(.time32(unit))
            case (.microsecond, 64), (.nanosecond, 64): return try noChildren(.time64(unit))
            default: throw fail("\(context): expected time of 32 bits for s/ms or 64 bits for us/ns but found \(bits) bits in \(unit.symbol)")
            }
        case .timestamp:
            return try noChildren(.timestamp(try timeUnit(t.scalar(0, default: Int16(0)), context), timezone: t.string(1)))
        case .duration:
            return try noChildren(.duration(try timeUnit(t.scalar(0, default: Int16(1)), context)))
        case .interval:
            let raw = t.scalar(0, default: Int16(0))
            guard let u = IntervalUnit(rawValue: raw) else { throw fail("\(context): expected an interval unit 0...2 but found \(raw)") }
            return try noChildren(.interval(u))
        case .list: return .list(try oneChild("list"))
        case .largeList: return .largeList(try oneChild("large list"))
        case .fixedSizeList:
            let n = t.scalar(0, default: Int32(0))
            guard n >= 0 else { throw fail("\(context): expected a list size >= 0 but found \(n)") }
            return .fixedSizeList(try oneChild("fixed-size list"), Int(n))
        case .structType: return .struct(children)
        case .map:
            let entries = try oneChild("map")
            guard case .struct(let kv) = entries.type, kv.count == 2 else {
                throw fail("\(context): expected map entries to be a struct of key and value but found \(entries.type)")
            }
            return .map(entries: entries, keysSorted: t.bool(0))
        case .union:
            let rawMode = t.scalar(0, default: Int16(0))
            guard let mode = UnionMode(rawValue: rawMode) else { throw fail("\(context): expected a union mode 0 or 1 but found \(rawMode)") }
            var ids: [Int8] = []
            if let v = t.vector(1) {
                guard v.count == children.count else {
                    throw fail("\(context): expected \(children.count) union type ids (one per child) but found \(v.count)")
                }
                for i in 0..<v.count {
                    let id = v.scalar(i, as: Int32.self)
                    guard (0...127).contains(id) else { throw fail("\(context): expected union type ids in 0...127 but found \(id)") }
                    ids.append(Int8(id))
                }
            } else {
                guard children.count <= 128 else { throw fail("\(context): expected at most 128 union members but found \(children.count)") }
                ids = (0..<children.count).map { Int8($0) }
            }
            guard Set(ids).count == ids.count else { throw fail("\(context): expected distinct union type ids but found \(ids)") }
            return .union(mode, children, typeIds: ids)
        case .runEndEncoded, .binaryView, .utf8View, .listView, .largeListView:
            throw ArrowError(.unsupported, "\(context): expected a type Isthmus supports but found \(kind) (Arrow format 1.3+ view/run-end types are not supported)")
        }
    }
}
