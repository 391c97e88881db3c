import IsthmusArrow

/// Random schemas and batches from a seed, for property-based round trips. Values stay
/// inside what Arrow validators accept (times within a day, decimals within precision,
/// non-null map keys).
struct RandomArrow {
    var rng: SeededRandom
    var nullProbability = 0.2

    init(seed: UInt64) { rng = SeededRandom(seed: seed) }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }

    static let leafTypes: [DataType] = [
        .null, .bool, .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64,
        .float16, .float32, .float64, .utf8, .largeUtf8, .binary, .largeBinary, .fixedSizeBinary(3),
        .date32, .date64, .time32(.second), .time32(.millisecond), .time64(.microsecond), .time64(.nanosecond),
        .timestamp(.second, timezone: nil), .timestamp(.millisecond, timezone: "UTC"),
        .timestamp(.microsecond, timezone: "Europe/Paris"), .timestamp(.nanosecond, timezone: "+07:30"),
        .duration(.second), .duration(.millisecond), .duration(.microsecond), .duration(.nanosecond),
        .interval(.yearMonth), .interval(.dayTime), .interval(.monthDayNano),
        .decimal128(precision: 10, scale: 2), .decimal128(precision: 38, scale: 0), .decimal256(precision: 40, scale: 5),
    ]

    static let indexTypes: [DataType] = [.int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64]

    mutating func field(_ name: String, depth: Int) -> Field {
        var f = Field(name, type(depth: depth), nullable: chance(0.8))
        if chance(0.15) { f.metadata = [KeyValue("k\(int(0...9))", "v\(int(0...99))")] }
        return f
    }

    mutating func type(depth: Int) -> DataType {
        if depth >= 3 || chance(0.55) { return Self.leafTypes[int(0...(Self.leafTypes.count - 1))] }
        switch int(0...8) {
        case 0: return .list(field("item", depth: depth + 1))
        case 1: return .largeList(field("item", depth: depth + 1))
        case 2: return .fixedSizeList(field("item", depth: depth + 1), int(1...3))
        case 3: return .struct((0..<int(1...3)).map { field("s\($0)", depth: depth + 1) })
        case 4:
            let key = Field("key", chance(0.5) ? .utf8 : .int32, nullable: false)
            return .map(entries: Field("entries", .struct([key, field("value", depth: depth + 1)]), nullable: false), keysSorted: false)
        case 5, 6:
            let n = int(1...3)
            var ids: [Int8] = []
            while ids.count < n { let id = Int8(int(0...20)); if !ids.contains(id) { ids.append(id) } }
            return .union(chance(0.5) ? .dense : .sparse, (0..<n).map { field("u\($0)", depth: depth + 1) }, typeIds: ids)
        default:
            let index = Self.indexTypes[int(0...(Self.indexTypes.count - 1))]
            let value: DataType
            switch int(0...4) {
            case 0: value = .int32
            case 1: value = .binary
            case 2: value = .list(Field("item", .utf8))
            case 3: value = .struct([Field("d", .dictionary(index: .int16, value: .utf8, ordered: false)), Field("n", .int64)])
            default: value = .utf8
            }
            return .dictionary(index: index, value: value, ordered: chance(0.2))
        }
    }

    mutating func string() -> String {
        let alphabet: [Character] = ["a", "b", "c", "x", "y", "z", "é", "€", "日", "🙂", " "]
        return String((0..<int(0...6)).map { _ in alphabet[int(0...(alphabet.count - 1))] })
    }

    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(int(0...255)) } }

    mutating func decimal(width: Int, precision: Int) -> [UInt8] {
        let digits = Swift.min(precision, 18)
        var limit: Int64 = 1
        for _ in 0..<digits { limit *= 10 }
        let v = Int64.random(in: (-limit + 1)...(limit - 1), using: &rng)
        var out: [UInt8] = []
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: Array(repeating: v < 0 ? 0xFF : 0, count: width - 8))
        return out
    }

    mutating func value(_ type: DataType, nullable: Bool = true) -> ArrowValue {
        if case .union(_, let fields, let ids) = type {
            let k = int(0...(fields.count - 1))
            return .union(typeId: ids[k], value(fields[k].type, nullable: fields[k].nullable))
        }
        if case .null = type { return .null }
        if nullable && chance(nullProbability) { return .null }
        switch type {
        case .bool: return .bool(chance(0.5))
        case .int8: return .int(Int64(int(-128...127)))
        case .int16: return .int(Int64(int(-32768...32767)))
        case .int32, .date32, .interval(.yearMonth): return .int(Int64(Int32.random(in: .min ... .max, using: &rng)))
        case .int64, .duration: return .int(Int64.random(in: .min ... .max, using: &rng))
        case .date64: return .int(Int64(int(-100_000...100_000)) * 86_400_000)
        case .time32(let u): return .int(Int64(int(0...(86_400 * Int(u.perSecond) - 1))))
        case .time64(let u): return .int(Int64.random(in: 0...(86_400 * u.perSecond - 1), using: &rng))
        case .timestamp: return .int(Int64(int(-2_000_000_000...2_000_000_000)))
        case .uint8: return .uint(UInt64(int(0...255)))
        case .uint16: return .uint(UInt64(int(0...65535)))
        case .uint32: return .uint(UInt64(UInt32.random(in: 0 ... .max, using: &rng)))
        case .uint64: return .uint(UInt64.random(in: 0 ... .max, using: &rng))
        case .float16: return .float(Double(int(-4000...4000)) / 4)
        case .float32: return .float(Double(Float(int(-1_000_000...1_000_000)) / 64))
        case .float64: return .float(Double.random(in: -1e6...1e6, using: &rng))
        case .utf8, .largeUtf8: return .string(string())
        case .binary, .largeBinary: return .bytes(bytes(int(0...6)))
        case .fixedSizeBinary(let w): return .bytes(bytes(w))
        case .decimal128(let p, _): return .decimal(decimal(width: 16, precision: p))
        case .decimal256(let p, _): return .decimal(decimal(width: 32, precision: p))
        case .interval(.dayTime): return .dayTime(days: Int32(int(-1000...1000)), milliseconds: Int32(int(-86_400_000...86_400_000)))
        case .interval(.monthDayNano):
            return .monthDayNano(months: Int32(int(-100...100)), days: Int32(int(-1000...1000)), nanoseconds: Int64.random(in: .min ... .max, using: &rng))
        case .list(let f), .largeList(let f):
            return .list((0..<int(0...3)).map { _ in value(f.type, nullable: f.nullable) })
        case .fixedSizeList(let f, let n):
            return .list((0..<n).map { _ in value(f.type, nullable: f.nullable) })
        case .struct(let fs):
            return .structure(fs.map { value($0.type, nullable: $0.nullable) })
        case .map(let entries, _):
            guard case .struct(let kv) = entries.type else { return .null }
            return .list((0..<int(0...3)).map { _ in .structure([value(kv[0].type, nullable: false), value(kv[1].type, nullable: kv[1].nullable)]) })
        case .dictionary(_, let valueType, _):
            // A small value pool so the dictionary is shared by many slots.
            let v = value(valueType, nullable: false)
            return v
        default:
            return .null
        }
    }

    mutating func array(_ type: DataType, nullable: Bool, length: Int) -> ArrayData {
        let b = ArrayBuilder(type)
        var pool: [ArrowValue] = []
        if case .dictionary(_, let valueType, _) = type {
            pool = (0..<int(1...5)).map { _ in value(valueType, nullable: false) }
        }
        for _ in 0..<length {
            if !pool.isEmpty {
                try! b.append(nullable && chance(nullProbability) ? .null : pool[int(0...(pool.count - 1))])
            } else {
                try! b.append(value(type, nullable: nullable))
            }
        }
        return b.finish()
    }

    mutating func schema(columns: Int) -> Schema {
        var s = Schema((0..<columns).map { field("c\($0)", depth: 0) })
        if chance(0.5) { s.metadata = [KeyValue("origin", "isthmus"), KeyValue("seed", "\(int(0...1000))")] }
        return s
    }

    mutating func batch(_ schema: Schema, length: Int) -> RecordBatch {
        try! RecordBatch(schema: schema, columns: schema.fields.map { array($0.type, nullable: $0.nullable, length: length) }, length: length)
    }

    /// Batches that share one set of dictionaries (slices of one big batch, an IPC file
    /// needs that), some empty, with non-zero offsets.
    mutating func slices(of big: RecordBatch, count: Int) -> [RecordBatch] {
        var out: [RecordBatch] = []
        for _ in 0..<count {
            let start = big.length == 0 ? 0 : int(0...(big.length - 1))
            let n = chance(0.15) ? 0 : int(0...(big.length - start))
            out.append(big.slice(start, n))
        }
        return out
    }
}
