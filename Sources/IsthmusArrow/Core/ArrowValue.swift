/// One logical value of any Arrow type, for generic access, building, printing and equality.
/// Fast paths use the typed accessors of `ArrayData` instead.
public indirect enum ArrowValue: Hashable, Sendable {
    case null
    case bool(Bool)
    /// Signed integers and everything stored as one: dates, times, timestamps, durations, year-month intervals.
    case int(Int64)
    /// Unsigned integers.
    case uint(UInt64)
    /// float16/32/64.
    case float(Double)
    /// utf8 and large utf8.
    case string(String)
    /// binary, large binary, fixed-size binary.
    case bytes([UInt8])
    /// decimal128/256 as the unscaled two's-complement integer, little-endian (16 or 32 bytes).
    case decimal([UInt8])
    /// A day-time interval.
    case dayTime(days: Int32, milliseconds: Int32)
    /// A month-day-nanosecond interval.
    case monthDayNano(months: Int32, days: Int32, nanoseconds: Int64)
    /// list, large list, fixed-size list; a map is a list of two-field structs (key, value).
    case list([ArrowValue])
    /// struct: one value per field.
    case structure([ArrowValue])
    /// union: the type id of the chosen member and its value.
    case union(typeId: Int8, ArrowValue)

    /// Whether this is `.null`.
    public var isNull: Bool { if case .null = self { return true } else { return false } }
}

extension ArrayData {
    /// Slot `i` as a logical value; dictionary arrays yield the referenced dictionary value.
    /// The array must be valid (built here, or `validate()`d).
    public func value(at i: Int) -> ArrowValue {
        if case .union = type { return unionValue(i) }
        guard isValid(i) else { return .null }
        switch type {
        case .null: return .null
        case .bool: return .bool(Bitmap.get(buffers[1]!, offset + i))
        case .int8: return .int(Int64(value(i, as: Int8.self)))
        case .int16: return .int(Int64(value(i, as: Int16.self)))
        case .int32, .date32, .time32, .interval(.yearMonth): return .int(Int64(value(i, as: Int32.self)))
        case .int64, .date64, .time64, .timestamp, .duration: return .int(value(i, as: Int64.self))
        case .uint8: return .uint(UInt64(value(i, as: UInt8.self)))
        case .uint16: return .uint(UInt64(value(i, as: UInt16.self)))
        case .uint32: return .uint(UInt64(value(i, as: UInt32.self)))
        case .uint64: return .uint(value(i, as: UInt64.self))
        case .float16: return .float(Double(HalfFloat.toFloat(value(i, as: UInt16.self))))
        case .float32: return .float(Double(value(i, as: Float.self)))
        case .float64: return .float(value(i, as: Double.self))
        case .utf8, .largeUtf8: return .string(String(decoding: bytes(i), as: UTF8.self))
        case .binary, .largeBinary: return .bytes(Array(bytes(i)))
        case .fixedSizeBinary(let w):
            return .bytes(Array(UnsafeRawBufferPointer(rebasing: buffers[1]!.bytes[(offset + i) * w ..< (offset + i + 1) * w])))
        case .decimal128, .decimal256:
            let w = type.byteWidth!
            return .decimal(Array(UnsafeRawBufferPointer(rebasing: buffers[1]!.bytes[(offset + i) * w ..< (offset + i + 1) * w])))
        case .interval(.dayTime):
            let b = buffers[1]!
            return .dayTime(days: b.load(Int32.self, at: (offset + i) * 8), milliseconds: b.load(Int32.self, at: (offset + i) * 8 + 4))
        case .interval(.monthDayNano):
            let b = buffers[1]!
            let p = (offset + i) * 16
            return .monthDayNano(months: b.load(Int32.self, at: p), days: b.load(Int32.self, at: p + 4), nanoseconds: b.load(Int64.self, at: p + 8))
        case .list, .largeList, .map:
            let r = valueRange(i)
            return .list(r.map { children[0].value(at: $0) })
        case .fixedSizeList(_, let n):
            let start = (offset + i) * n
            return .list((start..<start + n).map { children[0].value(at: $0) })
        case .struct:
            return .structure(children.map { $0.value(at: offset + i) })
        case .dictionary(let indexType, _, _):
            let key = dictionaryIndex(i, indexType: indexType)
            return dictionary!.value(at: key)
        case .union:
            return unionValue(i)
        }
    }

    /// The dictionary index stored in slot `i` of a dictionary array.
    public func dictionaryIndex(_ i: Int, indexType: DataType) -> Int {
        switch indexType {
        case .int8: Int(value(i, as: Int8.self))
        case .int16: Int(value(i, as: Int16.self))
        case .int32: Int(value(i, as: Int32.self))
        case .int64: Int(value(i, as: Int64.self))
        case .uint8: Int(value(i, as: UInt8.self))
        case .uint16: Int(value(i, as: UInt16.self))
        case .uint32: Int(value(i, as: UInt32.self))
        default: Int(truncatingIfNeeded: value(i, as: UInt64.self))
        }
    }

    /// The member index (into `children`) and child slot of union slot `i`.
    public func unionSlot(_ i: Int) -> (child: Int, slot: Int)? {
        guard case .union(let mode, _, let typeIds) = type else { return nil }
        let typeId = buffers[0]!.bytes.load(fromByteOffset: offset + i, as: Int8.self)
        guard let child = typeIds.firstIndex(of: typeId) else { return nil }
        if mode == .dense {
            return (child, Int(buffers[1]!.load(Int32.self, at: (offset + i) * 4)))
        }
        return (child, offset + i)
    }

    private func unionValue(_ i: Int) -> ArrowValue {
        guard case .union(_, _, let typeIds) = type, let (child, slot) = unionSlot(i) else { return .null }
        return .union(typeId: typeIds[child], children[child].value(at: slot))
    }

    /// Every slot as a logical value.
    public var allValues: [ArrowValue] { (0..<length).map { value(at: $0) } }
}

extension ArrayData: Equatable {
    /// Arrow equality: same type, length and values; null slots compare equal regardless of
    /// the bytes behind them; slices compare by their visible slots; dictionary arrays compare
    /// by the values they reference.
    public static func == (lhs: ArrayData, rhs: ArrayData) -> Bool {
        guard lhs.type == rhs.type, lhs.length == rhs.length else { return false }
        guard lhs.nullCount == rhs.nullCount || { if case .union = lhs.type { true } else { false } }() else { return false }
        for i in 0..<lhs.length where lhs.value(at: i) != rhs.value(at: i) { return false }
        return true
    }
}

/// IEEE 754 half-precision conversions (Float16 is not available on every platform we build for).
public enum HalfFloat {
    /// The value of half-precision bits as a Float.
    public static func toFloat(_ bits: UInt16) -> Float {
        let sign = UInt32(bits >> 15) << 31
        let exponent = Int((bits >> 10) & 0x1f)
        let mantissa = UInt32(bits & 0x3ff)
        if exponent == 0 {
            if mantissa == 0 { return Float(bitPattern: sign) }
            let value = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign != 0 ? -value : value
        }
        if exponent == 31 { return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13)) }
        return Float(bitPattern: sign | (UInt32(exponent + 112) << 23) | (mantissa << 13))
    }

    /// Half-precision bits for a Float (round to nearest even).
    public static func fromFloat(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exponent = Int((bits >> 23) & 0xff)
        var mantissa = bits & 0x7f_ffff
        if exponent == 0xff { return sign | 0x7c00 | (mantissa != 0 ? 0x200 : 0) }
        let e = exponent - 127 + 15
        if e >= 31 { return sign | 0x7c00 }
        if e <= 0 {
            if e < -10 { return sign }
            mantissa |= 0x80_0000
            let shift = UInt32(14 - e)
            var half = mantissa >> shift
            let rem = mantissa & ((1 << shift) - 1)
            let halfway = UInt32(1) << (shift - 1)
            if rem > halfway || (rem == halfway && half & 1 == 1) { half += 1 }
            return sign | UInt16(half)
        }
        var half = UInt32(e) << 10 | (mantissa >> 13)
        let rem = mantissa & 0x1fff
        if rem > 0x1000 || (rem == 0x1000 && half & 1 == 1) { half += 1 }
        return sign | UInt16(half)
    }
}
