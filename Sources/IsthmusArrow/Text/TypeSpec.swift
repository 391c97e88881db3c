/// Parses type names as pyarrow prints them (`int64`, `double`, `string`,
/// `timestamp[ms, tz=UTC]`, `decimal128(10, 2)`, `list<item: int64>`, `struct<a: int64, b: string>`)
/// and schema specs such as `a:int64,b:string,c:timestamp[us]`.
public enum TypeSpec {
    /// The type named by `text`; throws `.invalidArgument` naming what was not understood.
    public static func parseType(_ text: String) throws -> DataType {
        var p = Parser(Array(text.utf8))
        let t = try p.type()
        p.skipSpace()
        guard p.atEnd else { throw p.failure("the end of the type") }
        return t
    }

    /// `name:type` pairs separated by commas (commas inside `[]`, `()` and `<>` belong to the type).
    public static func parseSchema(_ text: String) throws -> [Field] {
        var p = Parser(Array(text.utf8))
        var fields: [Field] = []
        p.skipSpace()
        if p.atEnd { return [] }
        while true {
            let name = try p.name()
            p.skipSpace()
            guard p.eat(":") else { throw p.failure("':' after the column name '\(name)'") }
            let t = try p.type()
            fields.append(Field(name, t))
            p.skipSpace()
            if p.atEnd { break }
            guard p.eat(",") else { throw p.failure("',' between columns") }
        }
        var seen = Set<String>()
        for f in fields where !seen.insert(f.name).inserted {
            throw ArrowError(.invalidArgument, "schema '\(text)': column '\(f.name)' is named twice")
        }
        return fields
    }

    private struct Parser {
        let s: [UInt8]
        var i = 0
        init(_ s: [UInt8]) { self.s = s }

        var atEnd: Bool { i >= s.count }

        mutating func skipSpace() { while i < s.count, s[i] == 32 || s[i] == 9 { i += 1 } }

        mutating func eat(_ c: Character) -> Bool {
            skipSpace()
            if i < s.count, s[i] == c.asciiValue! { i += 1; return true }
            return false
        }

        func failure(_ expected: String) -> ArrowError {
            let text = String(decoding: s, as: UTF8.self)
            let found = i < s.count ? "'\(String(decoding: s[i...].prefix(20), as: UTF8.self))'" : "the end"
            return ArrowError(.invalidArgument, "type spec '\(text)': expected \(expected) but found \(found) at character \(i + 1)")
        }

        /// A column name: quoted with `"`, or everything up to `:` (trimmed).
        mutating func name() throws -> String {
            skipSpace()
            if i < s.count, s[i] == UInt8(ascii: "\"") {
                i += 1
                let st = i
                while i < s.count, s[i] != UInt8(ascii: "\"") { i += 1 }
                guard i < s.count else { throw failure("a closing '\"'") }
                let n = String(decoding: s[st..<i], as: UTF8.self)
                i += 1
                return n
            }
            let st = i
            while i < s.count, s[i] != UInt8(ascii: ":"), s[i] != UInt8(ascii: ",") { i += 1 }
            var e = i
            while e > st, s[e - 1] == 32 { e -= 1 }
            guard e > st else { throw failure("a column name") }
            return String(decoding: s[st..<e], as: UTF8.self)
        }

        mutating func word() -> String {
            skipSpace()
            let st = i
            while i < s.count, s[i] == UInt8(ascii: "_") || (s[i] | 0x20 >= 97 && s[i] | 0x20 <= 122) || (s[i] >= 48 && s[i] <= 57) { i += 1 }
            return String(decoding: s[st..<i], as: UTF8.self).lowercased()
        }

        mutating func integer() throws -> Int {
            skipSpace()
            let st = i
            while i < s.count, s[i] >= 48, s[i] <= 57 { i += 1 }
            guard i > st, let v = Int(String(decoding: s[st..<i], as: UTF8.self)) else { throw failure("a number") }
            return v
        }

        mutating func unit() throws -> TimeUnit {
            let w = word()
            switch w {
            case "s": return .second
            case "ms": return .millisecond
            case "us": return .microsecond
            case "ns": return .nanosecond
            default: throw failure("a time unit (s, ms, us, ns)")
            }
        }

        mutating func itemField() throws -> Field {
            // `T` or `name: T`
            let save = i
            let w = word()
            skipSpace()
            if !w.isEmpty, i < s.count, s[i] == UInt8(ascii: ":") {
                i += 1
                return Field(w, try type())
            }
            i = save
            return Field("item", try type())
        }

        mutating func type() throws -> DataType {
            let w = word()
            switch w {
            case "null", "na": return .null
            case "bool", "boolean": return .bool
            case "int8": return .int8
            case "int16": return .int16
            case "int32", "int": return .int32
            case "int64", "long": return .int64
            case "uint8": return .uint8
            case "uint16": return .uint16
            case "uint32": return .uint32
            case "uint64": return .uint64
            case "float16", "halffloat": return .float16
            case "float32", "float": return .float32
            case "float64", "double": return .float64
            case "string", "utf8", "str": return .utf8
            case "large_string", "large_utf8": return .largeUtf8
            case "binary", "bytes": return .binary
            case "large_binary": return .largeBinary
            case "fixed_size_binary":
                guard eat("[") else { throw failure("'[' after fixed_size_binary") }
                let n = try integer()
                guard eat("]") else { throw failure("']'") }
                return .fixedSizeBinary(n)
            case "date32", "date":
                if eat("[") { _ = word(); guard eat("]") else { throw failure("']'") } }
                return .date32
            case "date64":
                if eat("[") { _ = word(); guard eat("]") else { throw failure("']'") } }
                return .date64
            case "time32", "time64":
                guard eat("[") else { throw failure("'[' and a unit after \(w)") }
                let u = try unit()
                guard eat("]") else { throw failure("']'") }
                if w == "time32" {
                    guard u == .second || u == .millisecond else { throw failure("s or ms for time32") }
                    return .time32(u)
                }
                guard u == .microsecond || u == .nanosecond else { throw failure("us or ns for time64") }
                return .time64(u)
            case "timestamp":
                guard eat("[") else { return .timestamp(.microsecond, timezone: nil) }
                let u = try unit()
                var tz: String?
                if eat(",") {
                    skipSpace()
                    let w2 = word()
                    guard w2 == "tz", eat("=") else { throw failure("tz=ZONE") }
                    skipSpace()
                    let st = i
                    while i < s.count, s[i] != UInt8(ascii: "]") { i += 1 }
                    var e = i
                    while e > st, s[e - 1] == 32 { e -= 1 }
                    tz = String(decoding: s[st..<e], as: UTF8.self)
                }
                guard eat("]") else { throw failure("']'") }
                return .timestamp(u, timezone: tz)
            case "duration":
                guard eat("[") else { throw failure("'[' and a unit after duration") }
                let u = try unit()
                guard eat("]") else { throw failure("']'") }
                return .duration(u)
            case "decimal128", "decimal", "decimal256":
                guard eat("(") else { throw failure("'(precision, scale)' after \(w)") }
                let p = try integer()
                guard eat(",") else { throw failure("',' between precision and scale") }
                let sc = try integer()
                guard eat(")") else { throw failure("')'") }
                if w == "decimal256" { return .decimal256(precision: p, scale: sc) }
                guard p >= 1, p <= 38 else { throw failure("a decimal128 precision of 1 to 38") }
                return .decimal128(precision: p, scale: sc)
            case "list", "large_list":
                guard eat("<") else { throw failure("'<' after \(w)") }
                let f = try itemField()
                guard eat(">") else { throw failure("'>'") }
                return w == "list" ? .list(f) : .largeList(f)
            case "struct":
                guard eat("<") else { throw failure("'<' after struct") }
                var fields: [Field] = []
                if !eat(">") {
                    while true {
                        let n = try name()
                        guard eat(":") else { throw failure("':' after the field name '\(n)'") }
                        fields.append(Field(n, try type()))
                        if eat(">") { break }
                        guard eat(",") else { throw failure("',' or '>' in struct") }
                    }
                }
                return .struct(fields)
            case "":
                throw failure("a type name")
            default:
                i -= w.utf8.count
                throw failure("a type name (int64, double, string, bool, timestamp[us], date32, ...)")
            }
        }
    }
}
