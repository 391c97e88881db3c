#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Byte-level parsers shared by the CSV and JSON Lines readers: integers, floats, booleans,
/// ISO 8601 dates and timestamps, decimals, base64. They work on raw UTF-8 bytes, allocate
/// nothing on the common path, and return nil when the text is not a value of the kind.
public enum TextScan {
    // MARK: Integers

    /// `[+-]?[0-9]+` as an Int64, nil on other text or overflow.
    @inlinable
    public static func int64(_ b: UnsafeRawBufferPointer) -> Int64? {
        var i = 0
        let n = b.count
        guard n > 0 else { return nil }
        var negative = false
        if b[0] == UInt8(ascii: "-") { negative = true; i = 1 } else if b[0] == UInt8(ascii: "+") { i = 1 }
        guard i < n else { return nil }
        // Accumulate as a negative number so Int64.min parses.
        var acc: Int64 = 0
        while i < n {
            let d = b[i] &- 48
            guard d < 10 else { return nil }
            let (m, o1) = acc.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.subtractingReportingOverflow(Int64(d))
            if o1 || o2 { return nil }
            acc = s
            i += 1
        }
        if negative { return acc }
        return acc == .min ? nil : -acc
    }

    // MARK: Floats

    @usableFromInline
    static let exactPowers: [Double] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22]

    /// A decimal floating-point number (`1`, `-2.5`, `.5`, `1e-3`, `inf`, `-Infinity`, `nan`),
    /// correctly rounded; nil on other text.
    public static func double(_ b: UnsafeRawBufferPointer) -> Double? {
        let n = b.count
        guard n > 0 else { return nil }
        var i = 0
        var negative = false
        if b[0] == UInt8(ascii: "-") { negative = true; i = 1 } else if b[0] == UInt8(ascii: "+") { i = 1 }
        guard i < n else { return nil }
        let c0 = b[i] | 0x20
        if c0 == UInt8(ascii: "i") || c0 == UInt8(ascii: "n") { return special(b, from: i, negative: negative) }
        var mantissa: UInt64 = 0
        var digits = 0          // significant digits accumulated in mantissa
        var dropped = false     // nonzero digits beyond what mantissa holds
        var exponent = 0
        var sawDigit = false
        while i < n, b[i] &- 48 < 10 {
            sawDigit = true
            if digits < 19 {
                mantissa = mantissa &* 10 &+ UInt64(b[i] &- 48)
                if mantissa != 0 { digits += 1 }
            } else {
                exponent += 1
                if b[i] != 48 { dropped = true }
            }
            i += 1
        }
        if i < n, b[i] == UInt8(ascii: ".") {
            i += 1
            while i < n, b[i] &- 48 < 10 {
                sawDigit = true
                if digits < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(b[i] &- 48)
                    if mantissa != 0 { digits += 1 }
                    exponent -= 1
                } else if b[i] != 48 { dropped = true }
                i += 1
            }
        }
        guard sawDigit else { return nil }
        if i < n, b[i] | 0x20 == UInt8(ascii: "e") {
            i += 1
            var expNegative = false
            if i < n, b[i] == UInt8(ascii: "-") { expNegative = true; i += 1 } else if i < n, b[i] == UInt8(ascii: "+") { i += 1 }
            guard i < n else { return nil }
            var e = 0
            while i < n, b[i] &- 48 < 10 {
                if e < 100_000 { e = e * 10 + Int(b[i] &- 48) }
                i += 1
            }
            exponent += expNegative ? -e : e
        }
        guard i == n else { return nil }
        // Clinger's fast path: exact mantissa and power of ten give a correctly rounded result.
        if !dropped, mantissa < (1 << 53), exponent >= -22, exponent <= 22 {
            var d = Double(mantissa)
            if exponent < 0 { d /= exactPowers[-exponent] } else { d *= exactPowers[exponent] }
            return negative ? -d : d
        }
        if mantissa == 0 && !dropped { return negative ? -0.0 : 0.0 }
        return slowDouble(b)
    }

    private static func special(_ b: UnsafeRawBufferPointer, from i: Int, negative: Bool) -> Double? {
        let rest = b.count - i
        func matches(_ word: StaticString) -> Bool {
            guard rest == word.utf8CodeUnitCount else { return false }
            let w = word.utf8Start
            for k in 0..<rest where b[i + k] | 0x20 != w[k] | 0x20 { return false }
            return true
        }
        if matches("inf") || matches("infinity") { return negative ? -.infinity : .infinity }
        if matches("nan") { return .nan }
        return nil
    }

    private static func slowDouble(_ b: UnsafeRawBufferPointer) -> Double? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: b.count + 1) { tmp in
            for k in 0..<b.count { tmp[k] = CChar(bitPattern: b[k]) }
            tmp[b.count] = 0
            var end: UnsafeMutablePointer<CChar>?
            let d = strtod(tmp.baseAddress!, &end)
            return end == tmp.baseAddress! + b.count ? d : nil
        }
    }

    // MARK: Booleans

    /// `true`/`false` in lower, Title or UPPER case.
    public static func bool(_ b: UnsafeRawBufferPointer) -> Bool? {
        switch b.count {
        case 4:
            if equalsFolded(b, "true") { return caseConsistent(b) ? true : nil }
        case 5:
            if equalsFolded(b, "false") { return caseConsistent(b) ? false : nil }
        default: break
        }
        return nil
    }

    private static func equalsFolded(_ b: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        let w = word.utf8Start
        for k in 0..<b.count where b[k] | 0x20 != w[k] { return false }
        return true
    }

    /// lower, Title or UPPER (not mIxEd).
    private static func caseConsistent(_ b: UnsafeRawBufferPointer) -> Bool {
        var upperTail = 0
        for k in 1..<b.count where b[k] & 0x20 == 0 { upperTail += 1 }
        return upperTail == 0 || upperTail == b.count - 1 && b[0] & 0x20 == 0
    }

    // MARK: Dates and timestamps

    /// A parsed ISO 8601 date or date-time.
    public struct DateTime: Sendable, Equatable {
        /// Seconds since 1970-01-01T00:00:00 UTC (offset applied when there was one).
        public var seconds: Int64
        /// Nanoseconds within the second, 0..<1e9.
        public var nanoseconds: Int64
        /// Whether the text had a time part.
        public var hasTime: Bool
        /// Whether the text had `Z` or a `±hh:mm` offset.
        public var hasOffset: Bool
    }

    @inline(__always)
    private static func digits(_ b: UnsafeRawBufferPointer, _ at: Int, _ count: Int) -> Int? {
        guard at + count <= b.count else { return nil }
        var v = 0
        for k in at..<at + count {
            let d = b[k] &- 48
            guard d < 10 else { return nil }
            v = v * 10 + Int(d)
        }
        return v
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    public static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return Int64(era * 146097 + doe - 719468)
    }

    /// Year, month, day of a day count since 1970-01-01.
    public static func civilFromDays(_ z0: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = Int(doy - (153 * mp + 2) / 5 + 1)
        let m = Int(mp < 10 ? mp + 3 : mp - 9)
        return (m <= 2 ? y + 1 : y, m, d)
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// `YYYY-MM-DD` or `YYYY-MM-DD[T ]hh:mm[:ss[.f{1,9}]][Z|±hh[:mm]|±hhmm]`.
    public static func dateTime(_ b: UnsafeRawBufferPointer) -> DateTime? {
        let n = b.count
        guard n >= 10, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
              let y = digits(b, 0, 4), let mo = digits(b, 5, 2), let d = digits(b, 8, 2),
              mo >= 1, mo <= 12, d >= 1, d <= daysIn(month: mo, year: y) else { return nil }
        let days = daysFromCivil(y, mo, d)
        if n == 10 { return DateTime(seconds: days * 86400, nanoseconds: 0, hasTime: false, hasOffset: false) }
        guard b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: " ") || b[10] == UInt8(ascii: "t"),
              n >= 16, let hh = digits(b, 11, 2), b[13] == UInt8(ascii: ":"), let mm = digits(b, 14, 2),
              hh < 24, mm < 60 else { return nil }
        var i = 16
        var ss = 0
        var nanos: Int64 = 0
        if i < n, b[i] == UInt8(ascii: ":") {
            guard let s = digits(b, i + 1, 2), s < 60 else { return nil }
            ss = s
            i += 3
            if i < n, b[i] == UInt8(ascii: ".") || b[i] == UInt8(ascii: ",") {
                i += 1
                var count = 0
                while i < n, b[i] &- 48 < 10 {
                    if count < 9 { nanos = nanos * 10 + Int64(b[i] &- 48) } else if b[i] != 48 { return nil }
                    count += 1
                    i += 1
                }
                guard count > 0 else { return nil }
                var c = count
                while c < 9 { nanos *= 10; c += 1 }
            }
        }
        var offsetSeconds = 0
        var hasOffset = false
        if i < n {
            if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
                hasOffset = true
                i += 1
            } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
                let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
                guard let oh = digits(b, i + 1, 2), oh < 24 else { return nil }
                i += 3
                var om = 0
                if i < n, b[i] == UInt8(ascii: ":") {
                    guard let m2 = digits(b, i + 1, 2), m2 < 60 else { return nil }
                    om = m2
                    i += 3
                } else if i < n {
                    guard let m2 = digits(b, i, 2), m2 < 60 else { return nil }
                    om = m2
                    i += 2
                }
                offsetSeconds = sign * (oh * 3600 + om * 60)
                hasOffset = true
            }
        }
        guard i == n else { return nil }
        let seconds = days * 86400 + Int64(hh * 3600 + mm * 60 + ss) - Int64(offsetSeconds)
        return DateTime(seconds: seconds, nanoseconds: nanos, hasTime: true, hasOffset: hasOffset)
    }

    /// A parsed date-time in `unit` since the epoch; nil when it does not fit the unit exactly.
    public static func timestamp(_ dt: DateTime, unit: TimeUnit) -> Int64? {
        let per = unit.perSecond
        let nanosPerUnit = 1_000_000_000 / per
        guard dt.nanoseconds % nanosPerUnit == 0 else { return nil }
        let (m, o1) = dt.seconds.multipliedReportingOverflow(by: per)
        let (s, o2) = m.addingReportingOverflow(dt.nanoseconds / nanosPerUnit)
        return o1 || o2 ? nil : s
    }

    /// `hh:mm[:ss[.f]]` as nanoseconds since midnight.
    public static func timeOfDay(_ b: UnsafeRawBufferPointer) -> Int64? {
        guard b.count >= 5, let hh = digits(b, 0, 2), b[2] == UInt8(ascii: ":"), let mm = digits(b, 3, 2),
              hh < 24, mm < 60 else { return nil }
        var i = 5
        var ss = 0
        var nanos: Int64 = 0
        if i < b.count, b[i] == UInt8(ascii: ":") {
            guard let s = digits(b, i + 1, 2), s < 60 else { return nil }
            ss = s
            i += 3
            if i < b.count, b[i] == UInt8(ascii: ".") {
                i += 1
                var count = 0
                while i < b.count, b[i] &- 48 < 10 {
                    if count < 9 { nanos = nanos * 10 + Int64(b[i] &- 48) } else if b[i] != 48 { return nil }
                    count += 1
                    i += 1
                }
                guard count > 0 else { return nil }
                while count < 9 { nanos *= 10; count += 1 }
            }
        }
        guard i == b.count else { return nil }
        return Int64(hh * 3600 + mm * 60 + ss) * 1_000_000_000 + nanos
    }

    // MARK: Decimals

    /// Decimal text (`-12.345`, `1e3`) as an unscaled integer with `scale` fraction digits;
    /// nil when the text is not a number, loses digits, or has more than `precision` digits.
    public static func decimal(_ b: UnsafeRawBufferPointer, precision: Int, scale: Int) -> Int128? {
        var i = 0
        let n = b.count
        guard n > 0 else { return nil }
        var negative = false
        if b[0] == UInt8(ascii: "-") { negative = true; i = 1 } else if b[0] == UInt8(ascii: "+") { i = 1 }
        var digitsText: [UInt8] = []
        var fraction = 0
        var seenPoint = false
        while i < n {
            let c = b[i]
            if c &- 48 < 10 {
                digitsText.append(c &- 48)
                if seenPoint { fraction += 1 }
            } else if c == UInt8(ascii: "."), !seenPoint {
                seenPoint = true
            } else { break }
            i += 1
        }
        guard !digitsText.isEmpty else { return nil }
        var exponent = 0
        if i < n, b[i] | 0x20 == UInt8(ascii: "e") {
            i += 1
            guard let e = int64(UnsafeRawBufferPointer(rebasing: b[i...])), abs(e) < 1000 else { return nil }
            exponent = Int(e)
            i = n
        }
        guard i == n else { return nil }
        // value = digits × 10^(exponent − fraction); we need digits × 10^(scale + exponent − fraction).
        var shift = scale + exponent - fraction
        while shift < 0 {
            guard let last = digitsText.last, last == 0 else { return nil }
            digitsText.removeLast()
            shift += 1
            if digitsText.isEmpty { digitsText = [0] }
        }
        digitsText += Array(repeating: 0, count: shift)
        while digitsText.count > 1 && digitsText[0] == 0 { digitsText.removeFirst() }
        guard digitsText.count <= precision || (digitsText == [0]) else { return nil }
        var value: Int128 = 0
        for d in digitsText {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int128(d))
            if o1 || o2 { return nil }
            value = s
        }
        return negative ? -value : value
    }

    // MARK: Base64

    private static let base64Decode: [UInt8] = {
        var t = [UInt8](repeating: 0xff, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { t[Int(c)] = UInt8(i) }
        t[Int(UInt8(ascii: "-"))] = 62
        t[Int(UInt8(ascii: "_"))] = 63
        return t
    }()

    /// Standard or URL-safe base64 (padding optional) decoded into `out`; false on bad text.
    public static func base64(_ b: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Bool {
        var n = b.count
        while n > 0 && b[n - 1] == UInt8(ascii: "=") { n -= 1 }
        guard n % 4 != 1 else { return false }
        var acc: UInt32 = 0
        var bits = 0
        for k in 0..<n {
            let v = base64Decode[Int(b[k])]
            guard v != 0xff else { return false }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        return true
    }

    // MARK: UTF-8

    /// Whether `b` is well-formed UTF-8 (ASCII fast path).
    public static func isValidUTF8(_ b: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = b.count
        while i + 8 <= n {
            if b.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 != 0 { break }
            i += 8
        }
        while i < n {
            let c = b[i]
            if c < 0x80 { i += 1; continue }
            var need = 0
            var minimum: UInt32 = 0
            var cp: UInt32
            if c & 0xe0 == 0xc0 { need = 1; cp = UInt32(c & 0x1f); minimum = 0x80 }
            else if c & 0xf0 == 0xe0 { need = 2; cp = UInt32(c & 0x0f); minimum = 0x800 }
            else if c & 0xf8 == 0xf0 { need = 3; cp = UInt32(c & 0x07); minimum = 0x10000 }
            else { return false }
            guard i + need < n else { return false }
            for k in 1...need {
                let cc = b[i + k]
                guard cc & 0xc0 == 0x80 else { return false }
                cp = cp << 6 | UInt32(cc & 0x3f)
            }
            guard cp >= minimum, cp <= 0x10ffff, !(0xd800...0xdfff).contains(cp) else { return false }
            i += need + 1
        }
        return true
    }
}
