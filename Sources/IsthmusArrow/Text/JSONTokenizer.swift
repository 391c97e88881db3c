#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A JSON syntax or shape problem at a byte position of one line.
struct JSONProblem: Error {
    /// Byte index in the line (0-based).
    var position: Int
    /// What was expected and what was found.
    var message: String
}

/// A small JSON tokenizer over the bytes of one line. It never allocates for numbers or
/// for strings without escapes; escaped strings are decoded into a reusable scratch buffer.
struct JSONCursor {
    let b: UnsafeRawBufferPointer
    var i = 0
    /// Holds the decoded text of the last escaped string.
    let scratch: BufferBuilder
    static let maxDepth = 256

    init(_ b: UnsafeRawBufferPointer, scratch: BufferBuilder) {
        self.b = b
        self.scratch = scratch
    }

    var atEnd: Bool { i >= b.count }

    @inline(__always)
    mutating func skipSpace() {
        while i < b.count {
            let c = b[i]
            guard c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d else { return }
            i += 1
        }
    }

    @inline(__always)
    mutating func peek() -> UInt8? {
        skipSpace()
        return i < b.count ? b[i] : nil
    }

    /// A short description of what is at `position` for messages.
    func found(at position: Int) -> String {
        guard position < b.count else { return "the end of the line" }
        let end = Swift.min(b.count, position + 20)
        var text = String(decoding: UnsafeRawBufferPointer(rebasing: b[position..<end]), as: UTF8.self)
        if end < b.count { text += "…" }
        return "'\(text)'"
    }

    func problem(_ expected: String, at position: Int? = nil) -> JSONProblem {
        let p = position ?? i
        return JSONProblem(position: p, message: "expected \(expected) but found \(found(at: p))")
    }

    /// Consumes `c` (after whitespace) or throws.
    @inline(__always)
    mutating func expect(_ c: UInt8, _ what: String) throws {
        guard peek() == c else { throw problem(what) }
        i += 1
    }

    /// Consumes the literal `true`, `false` or `null` starting at `i`.
    mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count, memcmp(b.baseAddress! + i, word.utf8Start, n) == 0 else {
            throw problem("a JSON value")
        }
        i += n
    }

    /// A number token starting at `i` (validated against the JSON grammar).
    /// Returns its bytes and whether it is an integer (no fraction or exponent).
    mutating func number() throws -> (UnsafeRawBufferPointer, isInteger: Bool) {
        let start = i
        if i < b.count && b[i] == UInt8(ascii: "-") { i += 1 }
        guard i < b.count, b[i] &- 48 < 10 else { throw problem("a JSON value", at: start) }
        if b[i] == 48 { i += 1 } else { while i < b.count, b[i] &- 48 < 10 { i += 1 } }
        var isInteger = true
        if i < b.count && b[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard i < b.count, b[i] &- 48 < 10 else { throw problem("a digit after the decimal point") }
            while i < b.count, b[i] &- 48 < 10 { i += 1 }
        }
        if i < b.count && b[i] | 0x20 == UInt8(ascii: "e") {
            isInteger = false
            i += 1
            if i < b.count && (b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-")) { i += 1 }
            guard i < b.count, b[i] &- 48 < 10 else { throw problem("a digit in the exponent") }
            while i < b.count, b[i] &- 48 < 10 { i += 1 }
        }
        return (UnsafeRawBufferPointer(rebasing: b[start..<i]), isInteger)
    }

    /// A string token starting at the opening quote at `i`; returns its decoded UTF-8 bytes
    /// (a view of the line, or of `scratch` when it had escapes, valid until the next string).
    mutating func string() throws -> UnsafeRawBufferPointer {
        let open = i
        i += 1
        let start = i
        while i < b.count {
            let c = b[i]
            if c == 0x22 {
                i += 1
                return UnsafeRawBufferPointer(rebasing: b[start..<i - 1])
            }
            if c == 0x5c { break }
            if c < 0x20 { throw problem("a closing '\"' or text without control characters") }
            i += 1
        }
        guard i < b.count else { throw problem("a closing '\"' for the string opened at byte \(open + 1)") }
        // Escapes: decode into scratch.
        scratch.removeAll()
        scratch.append(UnsafeRawBufferPointer(rebasing: b[start..<i]))
        while i < b.count {
            let c = b[i]
            if c == 0x22 { i += 1; return scratch.bytes }
            if c < 0x20 { throw problem("a closing '\"' or text without control characters") }
            if c != 0x5c { scratch.append(c); i += 1; continue }
            guard i + 1 < b.count else { break }
            let e = b[i + 1]
            i += 2
            switch e {
            case 0x22, 0x5c, 0x2f: scratch.append(e)
            case UInt8(ascii: "b"): scratch.append(UInt8(8))
            case UInt8(ascii: "f"): scratch.append(UInt8(12))
            case UInt8(ascii: "n"): scratch.append(UInt8(10))
            case UInt8(ascii: "r"): scratch.append(UInt8(13))
            case UInt8(ascii: "t"): scratch.append(UInt8(9))
            case UInt8(ascii: "u"):
                var cp = try hex4()
                if cp >= 0xd800 && cp < 0xdc00 {
                    guard i + 1 < b.count, b[i] == 0x5c, b[i + 1] == UInt8(ascii: "u") else {
                        throw problem("a low surrogate '\\uDC00'-'\\uDFFF' after a high surrogate")
                    }
                    i += 2
                    let lo = try hex4()
                    guard lo >= 0xdc00 && lo < 0xe000 else { throw problem("a low surrogate", at: i - 6) }
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00)
                } else if cp >= 0xdc00 && cp < 0xe000 {
                    throw problem("a high surrogate before a low one", at: i - 6)
                }
                appendUTF8(cp)
            default:
                throw problem("an escape (\\\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t, \\uXXXX)", at: i - 2)
            }
        }
        throw problem("a closing '\"' for the string opened at byte \(open + 1)")
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count else { throw problem("four hex digits after \\u") }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = b[i + k]
            let d: UInt32
            switch c {
            case 48...57: d = UInt32(c - 48)
            case 65...70: d = UInt32(c - 55)
            case 97...102: d = UInt32(c - 87)
            default: throw problem("four hex digits after \\u", at: i + k)
            }
            v = v << 4 | d
        }
        i += 4
        return v
    }

    private func appendUTF8(_ cp: UInt32) {
        switch cp {
        case 0..<0x80: scratch.append(UInt8(cp))
        case 0x80..<0x800:
            scratch.append(UInt8(0xc0 | cp >> 6)); scratch.append(UInt8(0x80 | cp & 0x3f))
        case 0x800..<0x10000:
            scratch.append(UInt8(0xe0 | cp >> 12)); scratch.append(UInt8(0x80 | cp >> 6 & 0x3f)); scratch.append(UInt8(0x80 | cp & 0x3f))
        default:
            scratch.append(UInt8(0xf0 | cp >> 18)); scratch.append(UInt8(0x80 | cp >> 12 & 0x3f))
            scratch.append(UInt8(0x80 | cp >> 6 & 0x3f)); scratch.append(UInt8(0x80 | cp & 0x3f))
        }
    }

    /// Skips one value of any kind (validating it); returns its raw bytes.
    mutating func skipValue(depth: Int = 0) throws -> UnsafeRawBufferPointer {
        guard depth < Self.maxDepth else { throw problem("nesting at most \(Self.maxDepth) deep") }
        guard let c = peek() else { throw problem("a JSON value") }
        let start = i
        switch c {
        case UInt8(ascii: "{"):
            i += 1
            if peek() == UInt8(ascii: "}") { i += 1; break }
            while true {
                guard peek() == 0x22 else { throw problem("a key in double quotes") }
                _ = try string()
                try expect(UInt8(ascii: ":"), "':' after the key")
                _ = try skipValue(depth: depth + 1)
                guard let d = peek() else { throw problem("',' or '}'") }
                i += 1
                if d == UInt8(ascii: "}") { break }
                guard d == UInt8(ascii: ",") else { throw problem("',' or '}'", at: i - 1) }
            }
        case UInt8(ascii: "["):
            i += 1
            if peek() == UInt8(ascii: "]") { i += 1; break }
            while true {
                _ = try skipValue(depth: depth + 1)
                guard let d = peek() else { throw problem("',' or ']'") }
                i += 1
                if d == UInt8(ascii: "]") { break }
                guard d == UInt8(ascii: ",") else { throw problem("',' or ']'", at: i - 1) }
            }
        case 0x22: _ = try string()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        default: _ = try number()
        }
        return UnsafeRawBufferPointer(rebasing: b[start..<i])
    }
}
