import Foundation
import IsthmusArrow

/// A reader for Arrow's integration-test JSON format (the ground truth of the reference
/// files): the schema becomes a `Schema`, each column a list of `ArrowValue`s.
struct IntegrationJSON {
    let schema: Schema
    /// The JSON fields (for dictionary ids).
    let jsonFields: [[String: Any]]
    /// Dictionary id → JSON column of its values.
    let dictionaries: [Int: [String: Any]]
    /// Batches: row count and JSON columns.
    let batches: [(count: Int, columns: [[String: Any]])]

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(_ json: [String: Any]) throws {
        let s = json["schema"] as! [String: Any]
        jsonFields = s["fields"] as! [[String: Any]]
        schema = Schema(try jsonFields.map(Self.field), metadata: Self.metadata(s["metadata"]))
        var dicts: [Int: [String: Any]] = [:]
        for d in (json["dictionaries"] as? [[String: Any]]) ?? [] {
            let data = d["data"] as! [String: Any]
            dicts[d["id"] as! Int] = (data["columns"] as! [[String: Any]])[0]
        }
        dictionaries = dicts
        batches = (json["batches"] as! [[String: Any]]).map { b in (b["count"] as! Int, b["columns"] as! [[String: Any]]) }
    }

    static func metadata(_ any: Any?) -> [KeyValue] {
        guard let list = any as? [[String: Any]] else { return [] }
        return list.map { KeyValue($0["key"] as! String, $0["value"] as! String) }
    }

    static func unit(_ s: String) -> TimeUnit {
        switch s {
        case "SECOND": .second
        case "MILLISECOND": .millisecond
        case "MICROSECOND": .microsecond
        default: .nanosecond
        }
    }

    static func intType(_ t: [String: Any]) -> DataType {
        let signed = t["isSigned"] as! Bool
        switch (t["bitWidth"] as! Int, signed) {
        case (8, true): return .int8
        case (16, true): return .int16
        case (32, true): return .int32
        case (64, true): return .int64
        case (8, false): return .uint8
        case (16, false): return .uint16
        case (32, false): return .uint32
        default: return .uint64
        }
    }

    static func field(_ f: [String: Any]) throws -> Field {
        let children = try ((f["children"] as? [[String: Any]]) ?? []).map(field)
        let t = f["type"] as! [String: Any]
        var type: DataType
        switch t["name"] as! String {
        case "null": type = .null
        case "bool": type = .bool
        case "int": type = intType(t)
        case "floatingpoint":
            switch t["precision"] as! String {
            case "HALF": type = .float16
            case "SINGLE": type = .float32
            default: type = .float64
            }
        case "utf8": type = .utf8
        case "largeutf8": type = .largeUtf8
        case "binary": type = .binary
        case "largebinary": type = .largeBinary
        case "fixedsizebinary": type = .fixedSizeBinary(t["byteWidth"] as! Int)
        case "decimal":
            let p = t["precision"] as! Int, s = t["scale"] as! Int
            type = (t["bitWidth"] as? Int) == 256 ? .decimal256(precision: p, scale: s) : .decimal128(precision: p, scale: s)
        case "date": type = (t["unit"] as! String) == "DAY" ? .date32 : .date64
        case "time":
            let u = unit(t["unit"] as! String)
            type = (t["bitWidth"] as! Int) == 32 ? .time32(u) : .time64(u)
        case "timestamp": type = .timestamp(unit(t["unit"] as! String), timezone: t["timezone"] as? String)
        case "duration": type = .duration(unit(t["unit"] as! String))
        case "interval":
            switch t["unit"] as! String {
            case "YEAR_MONTH": type = .interval(.yearMonth)
            case "DAY_TIME": type = .interval(.dayTime)
            default: type = .interval(.monthDayNano)
            }
        case "list": type = .list(children[0])
        case "largelist": type = .largeList(children[0])
        case "fixedsizelist": type = .fixedSizeList(children[0], t["listSize"] as! Int)
        case "struct": type = .struct(children)
        case "map": type = .map(entries: children[0], keysSorted: t["keysSorted"] as! Bool)
        case "union":
            let mode: UnionMode = (t["mode"] as! String) == "DENSE" ? .dense : .sparse
            let ids = (t["typeIds"] as? [Int]) ?? Array(0..<children.count)
            type = .union(mode, children, typeIds: ids.map { Int8($0) })
        case let other:
            throw Failure(description: "integration JSON type \(other) is not known to the test reader")
        }
        if let d = f["dictionary"] as? [String: Any] {
            let index = (d["indexType"] as? [String: Any]).map(intType) ?? .int32
            type = .dictionary(index: index, value: type, ordered: (d["isOrdered"] as? Bool) ?? false)
        }
        return Field(f["name"] as! String, type, nullable: f["nullable"] as! Bool, metadata: metadata(f["metadata"]))
    }

    // MARK: Values

    static func int64(_ any: Any) -> Int64 {
        if let s = any as? String { return Int64(s)! }
        if let n = any as? NSNumber { return n.int64Value }
        fatalError("not an integer: \(any)")
    }

    static func uint64(_ any: Any) -> UInt64 {
        if let s = any as? String { return UInt64(s)! }
        return (any as! NSNumber).uint64Value
    }

    static func hex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = s.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
        return out
    }

    /// A decimal string as `width` little-endian two's-complement bytes.
    static func decimal(_ s: String, width: Int) -> [UInt8] {
        var digits = Substring(s)
        let negative = digits.first == "-"
        if negative { digits = digits.dropFirst() }
        var limbs = [UInt32](repeating: 0, count: width / 4)
        for c in digits {
            var carry = UInt64(c.wholeNumberValue!)
            for i in limbs.indices {
                let v = UInt64(limbs[i]) * 10 + carry
                limbs[i] = UInt32(truncatingIfNeeded: v)
                carry = v >> 32
            }
        }
        if negative {
            var carry: UInt64 = 1
            for i in limbs.indices {
                let v = UInt64(~limbs[i]) + carry
                limbs[i] = UInt32(truncatingIfNeeded: v)
                carry = v >> 32
            }
        }
        var out: [UInt8] = []
        for l in limbs { withUnsafeBytes(of: l.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }

    /// The logical values of a JSON column of `field`'s type (`jsonField` carries dictionary ids).
    func values(_ col: [String: Any], _ field: Field, _ jsonField: [String: Any]) throws -> [ArrowValue] {
        let count = col["count"] as! Int
        let validity = (col["VALIDITY"] as? [Int]) ?? Array(repeating: 1, count: count)
        let data = col["DATA"] as? [Any]
        let children = (col["children"] as? [[String: Any]]) ?? []
        let jsonChildren = (jsonField["children"] as? [[String: Any]]) ?? []
        var out: [ArrowValue] = []
        out.reserveCapacity(count)

        if let d = jsonField["dictionary"] as? [String: Any], case .dictionary(_, let valueType, _) = field.type {
            let id = d["id"] as! Int
            guard let dictColumn = dictionaries[id] else { throw Failure(description: "no dictionary \(id) in JSON") }
            var valueJSONField = jsonField
            valueJSONField.removeValue(forKey: "dictionary")
            let dictValues = try values(dictColumn, Field(field.name, valueType), valueJSONField)
            for i in 0..<count {
                out.append(validity[i] == 0 ? .null : dictValues[Int(Self.int64(data![i]))])
            }
            return out
        }

        func offsets() -> [Int] { (col["OFFSET"] as! [Any]).map { Int(Self.int64($0)) } }

        switch field.type {
        case .null:
            return Array(repeating: .null, count: count)
        case .union(let mode, let fields, _):
            let typeIds = (col["TYPE_ID"] as! [Any]).map { Int8(Self.int64($0)) }
            let childValues = try zip(fields.indices, children).map { k, c in try values(c, fields[k], jsonChildren[k]) }
            guard case .union(_, _, let ids) = field.type else { fatalError() }
            let offs = mode == .dense ? offsets() : []
            for i in 0..<count {
                let k = ids.firstIndex(of: typeIds[i])!
                let slot = mode == .dense ? offs[i] : i
                out.append(.union(typeId: typeIds[i], childValues[k][slot]))
            }
            return out
        default: break
        }

        var all: [ArrowValue] = []
        switch field.type {
        case .bool: all = data!.map { .bool($0 as! Bool) }
        case .int8, .int16, .int32, .int64, .date32, .date64, .time32, .time64, .timestamp, .duration, .interval(.yearMonth):
            all = data!.map { .int(Self.int64($0)) }
        case .uint8, .uint16, .uint32, .uint64: all = data!.map { .uint(Self.uint64($0)) }
        case .float16: all = data!.map { .float(Double(HalfFloat.toFloat(HalfFloat.fromFloat(Float(($0 as! NSNumber).doubleValue))))) }
        case .float32: all = data!.map { .float(Double(Float(($0 as! NSNumber).doubleValue))) }
        case .float64: all = data!.map { .float(($0 as! NSNumber).doubleValue) }
        case .utf8, .largeUtf8: all = data!.map { .string($0 as! String) }
        case .binary, .largeBinary, .fixedSizeBinary: all = data!.map { .bytes(Self.hex($0 as! String)) }
        case .decimal128: all = data!.map { .decimal(Self.decimal($0 as! String, width: 16)) }
        case .decimal256: all = data!.map { .decimal(Self.decimal($0 as! String, width: 32)) }
        case .interval(.dayTime):
            all = data!.map { let d = $0 as! [String: Any]; return .dayTime(days: Int32(Self.int64(d["days"]!)), milliseconds: Int32(Self.int64(d["milliseconds"]!))) }
        case .interval(.monthDayNano):
            all = data!.map { let d = $0 as! [String: Any]; return .monthDayNano(months: Int32(Self.int64(d["months"]!)), days: Int32(Self.int64(d["days"]!)), nanoseconds: Self.int64(d["nanoseconds"]!)) }
        case .list(let f), .largeList(let f), .map(let f, _):
            let childValues = try values(children[0], f, jsonChildren[0])
            let o = offsets()
            all = (0..<count).map { .list(Array(childValues[o[$0]..<o[$0 + 1]])) }
        case .fixedSizeList(let f, let n):
            let childValues = try values(children[0], f, jsonChildren[0])
            all = (0..<count).map { .list(Array(childValues[($0 * n)..<(($0 + 1) * n)])) }
        case .struct(let fields):
            let childValues = try fields.indices.map { try values(children[$0], fields[$0], jsonChildren[$0]) }
            all = (0..<count).map { i in .structure(childValues.map { $0[i] }) }
        default:
            throw Failure(description: "JSON values of \(field.type) are not known to the test reader")
        }
        for i in 0..<count { out.append(validity[i] == 0 ? .null : all[i]) }
        return out
    }

    /// Expected values of batch `b`, one list per column.
    func expected(batch b: Int) throws -> [[ArrowValue]] {
        try schema.fields.indices.map { c in try values(batches[b].columns[c], schema.fields[c], jsonFields[c]) }
    }
}
