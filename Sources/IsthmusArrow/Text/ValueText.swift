/// Renders array slots as text: JSON (for JSON Lines and nested CSV cells) or a human
/// display form (for `Pretty`). Temporal values are ISO 8601, decimals keep their scale.
public enum ValueText {
    /// How values are written.
    public enum Style: Sendable {
        /// Strict JSON: strings quoted, NaN/Inf as null, binary as base64, decimals and
        /// temporal values as strings.
        case json
        /// For people: strings unquoted at the top level, binary as hex, NaN as `nan`.
        case display
    }

    /// Slot `i` of `array` as text.
    public static func string(_ array: ArrayData, _ i: Int, style: Style = .display) -> String {
        var out: [UInt8] = []
        append(array, i, style: style, topLevel: true, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends slot `i` of `array`. `topLevel` false quotes strings in display style (inside lists, structs).
    public static func append(_ a: ArrayData, _ i: Int, style: Style, topLevel: Bool = false, into out: inout [UInt8]) {
        if case .union = a.type {
            guard let (child, slot) = a.unionSlot(i) else { out.appendASCII("null"); return }
            append(a.children[child], slot, style: style, topLevel: topLevel, into: &out)
            return
        }
        guard a.isValid(i) else { out.appendASCII("null"); return }
        let quote = style == .json || !topLevel
        switch a.type {
        case .null: out.appendASCII("null")
        case .bool: out.appendASCII(a.bool(i)! ? "true" : "false")
        case .int8: out.appendInt(Int64(a.value(i, as: Int8.self)))
        case .int16: out.appendInt(Int64(a.value(i, as: Int16.self)))
        case .int32: out.appendInt(Int64(a.value(i, as: Int32.self)))
        case .int64: out.appendInt(a.value(i, as: Int64.self))
        case .uint8: out.appendInt(Int64(a.value(i, as: UInt8.self)))
        case .uint16: out.appendInt(Int64(a.value(i, as: UInt16.self)))
        case .uint32: out.appendInt(Int64(a.value(i, as: UInt32.self)))
        case .uint64: out.appendUInt(a.value(i, as: UInt64.self))
        case .float16: appendFloat(Double(HalfFloat.toFloat(a.value(i, as: UInt16.self))), text: HalfFloat.toFloat(a.value(i, as: UInt16.self)).description, style: style, into: &out)
        case .float32: let f = a.value(i, as: Float.self); appendFloat(Double(f), text: f.description, style: style, into: &out)
        case .float64: let d = a.value(i, as: Double.self); appendFloat(d, text: nil, style: style, into: &out)
        case .utf8, .largeUtf8:
            if quote { appendJSONString(a.bytes(i), into: &out) } else { appendDisplayString(a.bytes(i), into: &out) }
        case .binary, .largeBinary:
            appendBinary(a.bytes(i), style: style, into: &out)
        case .fixedSizeBinary(let w):
            let b = a.buffers[1]!.bytes
            appendBinary(UnsafeRawBufferPointer(rebasing: b[(a.offset + i) * w ..< (a.offset + i + 1) * w]), style: style, into: &out)
        case .date32, .date64, .time32, .time64, .timestamp:
            if quote { out.append(UInt8(ascii: "\"")) }
            appendTemporal(a, i, into: &out)
            if quote { out.append(UInt8(ascii: "\"")) }
        case .duration(let unit):
            out.appendInt(a.value(i, as: Int64.self))
            if style == .display { out.appendString(unit.symbol) }
        case .interval(let unit):
            appendInterval(a, i, unit: unit, style: style, into: &out)
        case .decimal128(_, let scale), .decimal256(_, let scale):
            let w = a.type.byteWidth!
            let raw = UnsafeRawBufferPointer(rebasing: a.buffers[1]!.bytes[(a.offset + i) * w ..< (a.offset + i + 1) * w])
            if style == .json { out.append(UInt8(ascii: "\"")) }
            appendDecimal(raw, scale: scale, into: &out)
            if style == .json { out.append(UInt8(ascii: "\"")) }
        case .list, .largeList:
            let r = a.valueRange(i)
            appendList(a.children[0], r, style: style, into: &out)
        case .fixedSizeList(_, let n):
            let start = (a.offset + i) * n
            appendList(a.children[0], start..<start + n, style: style, into: &out)
        case .struct(let fields):
            out.append(UInt8(ascii: "{"))
            for (k, f) in fields.enumerated() {
                if k > 0 { out.appendASCII(style == .json ? "," : ", ") }
                appendKey(f.name, style: style, into: &out)
                append(a.children[k], a.offset + i, style: style, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .map:
            appendMap(a, i, style: style, into: &out)
        case .dictionary(let indexType, _, _):
            append(a.dictionary!, a.dictionaryIndex(i, indexType: indexType), style: style, topLevel: topLevel, into: &out)
        case .union:
            break
        }
    }

    private static func appendFloat(_ d: Double, text: String?, style: Style, into out: inout [UInt8]) {
        if !d.isFinite {
            if style == .json { out.appendASCII("null"); return }
            out.appendASCII(d.isNaN ? "nan" : (d < 0 ? "-inf" : "inf"))
            return
        }
        out.appendString(text ?? d.description)
    }

    private static func appendKey(_ name: String, style: Style, into out: inout [UInt8]) {
        var name = name
        if style == .json {
            name.withUTF8 { appendJSONString(UnsafeRawBufferPointer($0), into: &out) }
            out.append(UInt8(ascii: ":"))
        } else {
            out.appendString(name)
            out.appendASCII(": ")
        }
    }

    private static func appendList(_ child: ArrayData, _ range: Range<Int>, style: Style, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        for j in range {
            if j != range.lowerBound { out.appendASCII(style == .json ? "," : ", ") }
            append(child, j, style: style, into: &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    private static func appendMap(_ a: ArrayData, _ i: Int, style: Style, into out: inout [UInt8]) {
        let r = a.valueRange(i)
        let entries = a.children[0]
        let keys = entries.children[0]
        let values = entries.children[1]
        let stringKeys: Bool
        switch keys.type {
        case .utf8, .largeUtf8: stringKeys = true
        default: stringKeys = false
        }
        if style == .json && !stringKeys {
            out.append(UInt8(ascii: "["))
            for j in r {
                if j != r.lowerBound { out.append(UInt8(ascii: ",")) }
                out.appendASCII("{\"key\":")
                append(keys, entries.offset + j, style: style, into: &out)
                out.appendASCII(",\"value\":")
                append(values, entries.offset + j, style: style, into: &out)
                out.append(UInt8(ascii: "}"))
            }
            out.append(UInt8(ascii: "]"))
            return
        }
        out.append(UInt8(ascii: "{"))
        for j in r {
            if j != r.lowerBound { out.appendASCII(style == .json ? "," : ", ") }
            append(keys, entries.offset + j, style: style, into: &out)
            out.appendASCII(style == .json ? ":" : ": ")
            append(values, entries.offset + j, style: style, into: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    private static func appendInterval(_ a: ArrayData, _ i: Int, unit: IntervalUnit, style: Style, into out: inout [UInt8]) {
        let q = style == .json ? "\"" : ""
        switch unit {
        case .yearMonth:
            let months = a.value(i, as: Int32.self)
            out.appendString("{\(q)months\(q): \(months)}")
        case .dayTime:
            let b = a.buffers[1]!
            let days = b.load(Int32.self, at: (a.offset + i) * 8)
            let ms = b.load(Int32.self, at: (a.offset + i) * 8 + 4)
            out.appendString("{\(q)days\(q): \(days), \(q)milliseconds\(q): \(ms)}")
        case .monthDayNano:
            let b = a.buffers[1]!
            let p = (a.offset + i) * 16
            out.appendString("{\(q)months\(q): \(b.load(Int32.self, at: p)), \(q)days\(q): \(b.load(Int32.self, at: p + 4)), \(q)nanoseconds\(q): \(b.load(Int64.self, at: p + 8))}")
        }
    }

    private static func appendBinary(_ bytes: UnsafeRawBufferPointer, style: Style, into out: inout [UInt8]) {
        if style == .json {
            out.append(UInt8(ascii: "\""))
            appendBase64(bytes, into: &out)
            out.append(UInt8(ascii: "\""))
        } else {
            out.appendASCII("0x")
            appendHex(bytes, into: &out)
        }
    }

    // MARK: Pieces

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Lower-case hex digits of `bytes`.
    public static func appendHex(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        for b in bytes {
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 15)])
        }
    }

    private static let base64Digits: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Standard base64 with padding.
    public static func appendBase64(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        var i = 0
        let n = bytes.count
        while i + 3 <= n {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(base64Digits[Int(v >> 18)])
            out.append(base64Digits[Int(v >> 12 & 63)])
            out.append(base64Digits[Int(v >> 6 & 63)])
            out.append(base64Digits[Int(v & 63)])
            i += 3
        }
        if n - i == 1 {
            let v = UInt32(bytes[i]) << 16
            out.append(base64Digits[Int(v >> 18)])
            out.append(base64Digits[Int(v >> 12 & 63)])
            out.appendASCII("==")
        } else if n - i == 2 {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(base64Digits[Int(v >> 18)])
            out.append(base64Digits[Int(v >> 12 & 63)])
            out.append(base64Digits[Int(v >> 6 & 63)])
            out.append(UInt8(ascii: "="))
        }
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped; other bytes as is.
    public static func appendJSONString(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var runStart = 0
        for (k, c) in bytes.enumerated() where c < 0x20 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") {
            if k > runStart { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<k])) }
            runStart = k + 1
            switch c {
            case UInt8(ascii: "\""): out.appendASCII("\\\"")
            case UInt8(ascii: "\\"): out.appendASCII("\\\\")
            case 0x0a: out.appendASCII("\\n")
            case 0x0d: out.appendASCII("\\r")
            case 0x09: out.appendASCII("\\t")
            case 0x08: out.appendASCII("\\b")
            case 0x0c: out.appendASCII("\\f")
            default:
                out.appendASCII("\\u00")
                out.append(hexDigits[Int(c >> 4)])
                out.append(hexDigits[Int(c & 15)])
            }
        }
        if bytes.count > runStart { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart...])) }
        out.append(UInt8(ascii: "\""))
    }

    /// Text for a table cell: control characters shown as escapes.
    static func appendDisplayString(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        for c in bytes {
            switch c {
            case 0x0a: out.appendASCII("\\n")
            case 0x0d: out.appendASCII("\\r")
            case 0x09: out.appendASCII("\\t")
            case 0..<0x20:
                out.appendASCII("\\x")
                out.append(hexDigits[Int(c >> 4)])
                out.append(hexDigits[Int(c & 15)])
            default: out.append(c)
            }
        }
    }

    /// A decimal's unscaled little-endian two's-complement integer as text with `scale` fraction digits.
    public static func appendDecimal(_ raw: UnsafeRawBufferPointer, scale: Int, into out: inout [UInt8]) {
        // Magnitude as little-endian 32-bit limbs.
        var limbs = [UInt32](repeating: 0, count: raw.count / 4)
        for k in limbs.indices { limbs[k] = raw.loadUnaligned(fromByteOffset: k * 4, as: UInt32.self) }
        let negative = (limbs.last ?? 0) & 0x8000_0000 != 0
        if negative {
            var carry: UInt64 = 1
            for k in limbs.indices {
                let v = UInt64(~limbs[k]) + carry
                limbs[k] = UInt32(truncatingIfNeeded: v)
                carry = v >> 32
            }
        }
        var digits: [UInt8] = []   // least significant first
        while limbs.contains(where: { $0 != 0 }) {
            var rem: UInt64 = 0
            for k in limbs.indices.reversed() {
                let cur = rem << 32 | UInt64(limbs[k])
                limbs[k] = UInt32(cur / 1_000_000_000)
                rem = cur % 1_000_000_000
            }
            for _ in 0..<9 { digits.append(UInt8(rem % 10)); rem /= 10 }
        }
        while digits.count > 1 && digits.last == 0 { digits.removeLast() }
        if digits.isEmpty { digits = [0] }
        if scale > 0 { while digits.count <= scale { digits.append(0) } }
        if negative { out.append(UInt8(ascii: "-")) }
        for k in digits.indices.reversed() {
            out.append(48 + digits[k])
            if k == scale && scale > 0 { out.append(UInt8(ascii: ".")) }
        }
        if scale < 0 { for _ in 0 ..< -scale { out.append(48) } }
    }

    /// A date, time or timestamp slot as ISO 8601 text (no quotes).
    public static func appendTemporal(_ a: ArrayData, _ i: Int, into out: inout [UInt8]) {
        switch a.type {
        case .date32: appendDate(Int64(a.value(i, as: Int32.self)), into: &out)
        case .date64:
            let ms = a.value(i, as: Int64.self)
            if ms % 86_400_000 == 0 { appendDate(ms / 86_400_000, into: &out) } else { appendTimestamp(ms, unit: .millisecond, utc: false, into: &out) }
        case .time32(let unit): appendTime(Int64(a.value(i, as: Int32.self)), unit: unit, into: &out)
        case .time64(let unit): appendTime(a.value(i, as: Int64.self), unit: unit, into: &out)
        case .timestamp(let unit, let tz): appendTimestamp(a.value(i, as: Int64.self), unit: unit, utc: tz != nil, into: &out)
        default: break
        }
    }

    /// `YYYY-MM-DD` for a day count since the epoch.
    public static func appendDate(_ days: Int64, into out: inout [UInt8]) {
        let (y, m, d) = TextScan.civilFromDays(days)
        if y < 0 { out.append(UInt8(ascii: "-")) }
        appendPadded(abs(y), width: 4, into: &out)
        out.append(UInt8(ascii: "-"))
        appendPadded(Int64(m), width: 2, into: &out)
        out.append(UInt8(ascii: "-"))
        appendPadded(Int64(d), width: 2, into: &out)
    }

    /// `YYYY-MM-DDThh:mm:ss[.fff]` plus `Z` when `utc`; the fraction has the unit's digits and is left out when zero.
    public static func appendTimestamp(_ v: Int64, unit: TimeUnit, utc: Bool, into out: inout [UInt8]) {
        let per = unit.perSecond
        var seconds = v / per
        var sub = v % per
        if sub < 0 { sub += per; seconds -= 1 }
        var days = seconds / 86400
        var secOfDay = seconds % 86400
        if secOfDay < 0 { secOfDay += 86400; days -= 1 }
        appendDate(days, into: &out)
        out.append(UInt8(ascii: "T"))
        appendClock(secOfDay, sub: sub, unit: unit, into: &out)
        if utc { out.append(UInt8(ascii: "Z")) }
    }

    /// `hh:mm:ss[.fff]` for a time of day in `unit`.
    public static func appendTime(_ v: Int64, unit: TimeUnit, into out: inout [UInt8]) {
        let per = unit.perSecond
        var seconds = v / per
        var sub = v % per
        if sub < 0 { sub += per; seconds -= 1 }
        appendClock(seconds, sub: sub, unit: unit, into: &out)
    }

    private static func appendClock(_ secOfDay: Int64, sub: Int64, unit: TimeUnit, into out: inout [UInt8]) {
        appendPadded(secOfDay / 3600, width: 2, into: &out)
        out.append(UInt8(ascii: ":"))
        appendPadded(secOfDay / 60 % 60, width: 2, into: &out)
        out.append(UInt8(ascii: ":"))
        appendPadded(secOfDay % 60, width: 2, into: &out)
        if sub != 0 {
            out.append(UInt8(ascii: "."))
            let width = unit == .millisecond ? 3 : (unit == .microsecond ? 6 : 9)
            appendPadded(sub, width: width, into: &out)
        }
    }

    private static func appendPadded(_ v: Int64, width: Int, into out: inout [UInt8]) {
        var digits = 1
        var t = v
        while t >= 10 { t /= 10; digits += 1 }
        for _ in digits..<Swift.max(digits, width) { out.append(48) }
        out.appendInt(v)
    }
}

extension Array where Element == UInt8 {
    /// Appends ASCII text.
    @inline(__always)
    mutating func appendASCII(_ s: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// Appends a string's UTF-8.
    @inline(__always)
    mutating func appendString(_ s: String) {
        var s = s
        s.withUTF8 { append(contentsOf: $0) }
    }

    /// Appends the decimal digits of `v`.
    mutating func appendInt(_ v: Int64) {
        if v < 0 {
            append(UInt8(ascii: "-"))
            appendUInt(v == .min ? UInt64(Int64.max) + 1 : UInt64(-v))
        } else {
            appendUInt(UInt64(v))
        }
    }

    /// Appends the decimal digits of `v`.
    mutating func appendUInt(_ v: UInt64) {
        if v < 10 { append(48 + UInt8(v)); return }
        var tmp: (UInt64, UInt64, UInt64) = (0, 0, 0)   // 24 bytes scratch, enough for 20 digits
        Swift.withUnsafeMutableBytes(of: &tmp) { scratch in
            var i = scratch.count
            var x = v
            while x > 0 {
                i -= 1
                scratch[i] = 48 + UInt8(x % 10)
                x /= 10
            }
            append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[i...]))
        }
    }
}
