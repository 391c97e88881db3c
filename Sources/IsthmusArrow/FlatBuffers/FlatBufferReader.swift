/// A minimal FlatBuffers reader with a verifier, just enough for Arrow's Schema.fbs,
/// Message.fbs and File.fbs.
///
/// Untrusted bytes are verified before anything is read: `FlatBuffer.verify(_:root:limits:)`
/// walks every table reachable from the root following a `FBSchema` (which slots hold
/// scalars, strings, tables, vectors, unions) and checks every uoffset, soffset, vtable,
/// vector length, string and union tag against the bounds of the buffer with
/// overflow-checked arithmetic, bounding the nesting depth and the number of tables.
/// Only a verified buffer yields an `FBTable`, and the accessors of `FBTable` and
/// `FBVector` read only what the verifier checked.
///
/// Binary format (little-endian): the buffer starts with a uoffset (u32) to the root table.
/// A table starts with an soffset (i32); its vtable is at `table - soffset`. A vtable is
/// `u16 vtableSize, u16 tableSize, u16 fieldOffset[...]` (0 = field absent). References
/// (tables, strings, vectors) are stored as a u32 offset relative to where it is stored,
/// pointing forward. A vector is `u32 count` followed by its elements; a string is a
/// vector of bytes followed by a NUL.
public enum FlatBuffer {
    /// Bounds the work the verifier does on hostile input.
    public struct Limits: Sendable, Hashable {
        /// Deepest nesting of tables (a table inside a table inside ...).
        public var maxDepth: Int
        /// Most tables visited (counts a table each time it is reached, so shared subtables
        /// cannot blow up the walk).
        public var maxTables: Int
        /// Defaults: depth 64, one million tables (the FlatBuffers library defaults).
        public init(maxDepth: Int = 64, maxTables: Int = 1_000_000) {
            self.maxDepth = maxDepth
            self.maxTables = maxTables
        }
    }

    /// Verifies `buffer` as a FlatBuffer whose root table follows `schema.tables[root]`,
    /// and returns the root table. Throws `ArrowError` (`.invalidData`) saying what was
    /// expected, what was found and at which offset (relative to `buffer`, plus `baseOffset`).
    public static func verify(_ buffer: Buffer, schema: FBSchema, root: Int,
                              limits: Limits = Limits(), baseOffset: Int = 0) throws -> FBTable {
        var verifier = FBVerifier(buffer: buffer, schema: schema, limits: limits, baseOffset: baseOffset)
        return try verifier.verifyRoot(root)
    }
}

/// What a table slot holds, for the verifier.
public enum FBFieldSpec: Sendable {
    /// An inline scalar of `size` bytes.
    case scalar(slot: Int, size: Int)
    /// A string.
    case string(slot: Int)
    /// A sub-table following table layout `table`.
    case table(slot: Int, table: Int)
    /// A vector of inline elements (scalars or structs) of `elementSize` bytes each.
    case vector(slot: Int, elementSize: Int)
    /// A vector of strings.
    case vectorOfStrings(slot: Int)
    /// A vector of tables following layout `table`.
    case vectorOfTables(slot: Int, table: Int)
    /// A union: a u8 tag in `typeSlot` and a table in `valueSlot`; `tables[tag]` is the
    /// layout for each known tag (tag 0 is NONE). Unknown tags are rejected.
    case union(typeSlot: Int, valueSlot: Int, tables: [UInt8: Int])
}

/// The table layouts of a FlatBuffers schema, indexed by table number.
public struct FBSchema: Sendable {
    /// Layout of each table: the slots it may hold.
    public let tables: [[FBFieldSpec]]
    /// Names of the tables, for error messages.
    public let names: [String]
    /// A schema.
    public init(tables: [[FBFieldSpec]], names: [String]) {
        precondition(tables.count == names.count)
        self.tables = tables
        self.names = names
    }
}

/// Checked arithmetic for offsets computed from untrusted input.
@inline(__always)
func checkedAdd(_ a: Int, _ b: Int) -> Int? {
    let (r, o) = a.addingReportingOverflow(b)
    return o ? nil : r
}

@inline(__always)
func checkedMul(_ a: Int, _ b: Int) -> Int? {
    let (r, o) = a.multipliedReportingOverflow(by: b)
    return o ? nil : r
}

struct FBVerifier {
    let buffer: Buffer
    let bytes: UnsafeRawBufferPointer
    let schema: FBSchema
    let limits: FlatBuffer.Limits
    let baseOffset: Int
    var tables = 0

    init(buffer: Buffer, schema: FBSchema, limits: FlatBuffer.Limits, baseOffset: Int) {
        self.buffer = buffer
        self.bytes = buffer.bytes
        self.schema = schema
        self.limits = limits
        self.baseOffset = baseOffset
    }

    var size: Int { bytes.count }

    func fail(_ message: String, at position: Int) -> ArrowError {
        .invalid("flatbuffer: " + message, offset: baseOffset + position)
    }

    /// Checks that `[position, position + length)` lies inside the buffer.
    func need(_ position: Int, _ length: Int, _ what: @autoclosure () -> String) throws {
        guard position >= 0, length >= 0, let end = checkedAdd(position, length), end <= size else {
            throw fail("expected \(what()) of \(length) bytes inside the \(size)-byte buffer but found it at \(position)", at: max(0, position))
        }
    }

    func u16(_ p: Int) -> Int { Int(buffer.load(UInt16.self, at: p)) }
    func u32(_ p: Int) -> Int { Int(buffer.load(UInt32.self, at: p)) }
    func i32(_ p: Int) -> Int { Int(buffer.load(Int32.self, at: p)) }

    mutating func verifyRoot(_ root: Int) throws -> FBTable {
        try need(0, 4, "the root offset")
        let rootPosition = u32(0)
        try verifyTable(at: rootPosition, layout: root, depth: 1)
        return FBTable(buffer: buffer, position: rootPosition)
    }

    /// Follows the uoffset stored at `p`; returns the target position.
    func follow(_ p: Int, _ what: String) throws -> Int {
        try need(p, 4, "the offset to \(what)")
        guard let target = checkedAdd(p, u32(p)), target < size else {
            throw fail("expected an offset to \(what) inside the \(size)-byte buffer but found \(u32(p)) (target past the end)", at: p)
        }
        return target
    }

    mutating func verifyTable(at position: Int, layout: Int, depth: Int) throws {
        let name = schema.names[layout]
        guard depth <= limits.maxDepth else {
            throw fail("expected tables nested at most \(limits.maxDepth) deep but found a deeper \(name)", at: position)
        }
        tables += 1
        guard tables <= limits.maxTables else {
            throw fail("expected at most \(limits.maxTables) tables but found more", at: position)
        }
        try need(position, 4, "\(name) table")
        let soffset = i32(position)
        guard let vtable = checkedAdd(position, -soffset), vtable >= 0 else {
            throw fail("expected the vtable of \(name) inside the buffer but found soffset \(soffset)", at: position)
        }
        try need(vtable, 4, "the vtable of \(name)")
        let vtableSize = u16(vtable)
        guard vtableSize >= 4, vtableSize & 1 == 0 else {
            throw fail("expected a vtable size that is even and at least 4 but found \(vtableSize)", at: vtable)
        }
        try need(vtable, vtableSize, "the vtable of \(name)")
        let tableSize = u16(vtable + 2)
        guard tableSize >= 4 else {
            throw fail("expected a table size of at least 4 but found \(tableSize)", at: vtable + 2)
        }
        try need(position, tableSize, "\(name) table")
        let table = FBTable(buffer: buffer, position: position, vtable: vtable, vtableSize: vtableSize)

        func fieldPosition(_ slot: Int, _ width: Int) throws -> Int? {
            let fo = table.fieldOffset(slot)
            if fo == 0 { return nil }
            guard fo >= 4, fo + width <= tableSize else {
                throw fail("expected field \(slot) of \(name) (\(width) bytes) inside its \(tableSize)-byte table but found it at \(fo)", at: position)
            }
            return position + fo
        }

        for spec in schema.tables[layout] {
            switch spec {
            case .scalar(let slot, let width):
                _ = try fieldPosition(slot, width)
            case .string(let slot):
                if let p = try fieldPosition(slot, 4) { try verifyString(at: try follow(p, "a string in \(name)")) }
            case .table(let slot, let sub):
                if let p = try fieldPosition(slot, 4) {
                    try verifyTable(at: try follow(p, "a \(schema.names[sub]) table"), layout: sub, depth: depth + 1)
                }
            case .vector(let slot, let width):
                if let p = try fieldPosition(slot, 4) { _ = try verifyVector(at: try follow(p, "a vector in \(name)"), elementSize: width) }
            case .vectorOfStrings(let slot):
                if let p = try fieldPosition(slot, 4) {
                    let v = try follow(p, "a vector in \(name)")
                    let n = try verifyVector(at: v, elementSize: 4)
                    for i in 0..<n { try verifyString(at: try follow(v + 4 + 4 * i, "a string")) }
                }
            case .vectorOfTables(let slot, let sub):
                if let p = try fieldPosition(slot, 4) {
                    let v = try follow(p, "a vector in \(name)")
                    let n = try verifyVector(at: v, elementSize: 4)
                    for i in 0..<n {
                        try verifyTable(at: try follow(v + 4 + 4 * i, "a \(schema.names[sub]) table"), layout: sub, depth: depth + 1)
                    }
                }
            case .union(let typeSlot, let valueSlot, let known):
                let tag = try fieldPosition(typeSlot, 1).map { Int(bytes[$0]) } ?? 0
                let valuePosition = try fieldPosition(valueSlot, 4)
                if tag == 0 { continue }
                guard let sub = known[UInt8(tag)] else {
                    throw fail("expected a union tag of \(name) in \(known.keys.sorted().map(String.init).joined(separator: ", ")) but found \(tag)", at: position)
                }
                guard let vp = valuePosition else {
                    throw fail("expected a value for union tag \(tag) of \(name) but found none", at: position)
                }
                try verifyTable(at: try follow(vp, "a \(schema.names[sub]) table"), layout: sub, depth: depth + 1)
            }
        }
    }

    /// Verifies a vector header and its element bytes; returns the count.
    func verifyVector(at position: Int, elementSize: Int) throws -> Int {
        try need(position, 4, "a vector length")
        let count = u32(position)
        guard let total = checkedMul(count, elementSize) else {
            throw fail("expected a vector that fits the buffer but found \(count) elements", at: position)
        }
        try need(position + 4, total, "a vector of \(count) elements")
        return count
    }

    func verifyString(at position: Int) throws {
        let count = try verifyVector(at: position, elementSize: 1)
        try need(position + 4 + count, 1, "the NUL after a string")
        guard bytes[position + 4 + count] == 0 else {
            throw fail("expected a NUL after a \(count)-byte string but found \(bytes[position + 4 + count])", at: position + 4 + count)
        }
    }
}

/// A verified table. Obtained only from `FlatBuffer.verify`, so every access the schema
/// allows is in bounds.
public struct FBTable: Sendable {
    /// The whole flatbuffer.
    public let buffer: Buffer
    /// Position of the table in `buffer`.
    public let position: Int
    let vtable: Int
    let vtableSize: Int

    init(buffer: Buffer, position: Int, vtable: Int, vtableSize: Int) {
        self.buffer = buffer
        self.position = position
        self.vtable = vtable
        self.vtableSize = vtableSize
    }

    init(buffer: Buffer, position: Int) {
        let vt = position - Int(buffer.load(Int32.self, at: position))
        self.init(buffer: buffer, position: position, vtable: vt, vtableSize: Int(buffer.load(UInt16.self, at: vt)))
    }

    /// Offset of `slot` inside the table, 0 when absent.
    @inline(__always)
    func fieldOffset(_ slot: Int) -> Int {
        let entry = 4 + 2 * slot
        return entry + 2 <= vtableSize ? Int(buffer.load(UInt16.self, at: vtable + entry)) : 0
    }

    /// Whether `slot` is present.
    public func has(_ slot: Int) -> Bool { fieldOffset(slot) != 0 }

    /// A scalar slot, or `defaultValue` when absent.
    public func scalar<T: FixedWidthInteger>(_ slot: Int, default defaultValue: T) -> T {
        let fo = fieldOffset(slot)
        return fo == 0 ? defaultValue : buffer.load(T.self, at: position + fo)
    }

    /// A bool slot, or `defaultValue` when absent.
    public func bool(_ slot: Int, default defaultValue: Bool = false) -> Bool {
        scalar(slot, default: UInt8(defaultValue ? 1 : 0)) != 0
    }

    private func target(_ slot: Int) -> Int? {
        let fo = fieldOffset(slot)
        guard fo != 0 else { return nil }
        let p = position + fo
        return p + Int(buffer.load(UInt32.self, at: p))
    }

    /// A string slot (invalid UTF-8 is repaired), or nil when absent.
    public func string(_ slot: Int) -> String? {
        target(slot).map { FBTable.readString(buffer, $0) }
    }

    static func readString(_ buffer: Buffer, _ p: Int) -> String {
        let n = Int(buffer.load(UInt32.self, at: p))
        return String(decoding: UnsafeRawBufferPointer(rebasing: buffer.bytes[(p + 4)..<(p + 4 + n)]), as: UTF8.self)
    }

    /// A table slot, or nil when absent.
    public func table(_ slot: Int) -> FBTable? {
        target(slot).map { FBTable(buffer: buffer, position: $0) }
    }

    /// A vector slot, or nil when absent.
    public func vector(_ slot: Int) -> FBVector? {
        target(slot).map { FBVector(buffer: buffer, position: $0 + 4, count: Int(buffer.load(UInt32.self, at: $0))) }
    }
}

/// A verified vector.
public struct FBVector: Sendable {
    /// The whole flatbuffer.
    public let buffer: Buffer
    /// Position of element 0.
    public let position: Int
    /// Number of elements.
    public let count: Int

    /// Element `i` of a vector of tables.
    public func table(_ i: Int) -> FBTable {
        let p = position + 4 * i
        return FBTable(buffer: buffer, position: p + Int(buffer.load(UInt32.self, at: p)))
    }

    /// Element `i` of a vector of strings.
    public func string(_ i: Int) -> String {
        let p = position + 4 * i
        return FBTable.readString(buffer, p + Int(buffer.load(UInt32.self, at: p)))
    }

    /// Element `i` of a vector of scalars of type `T`.
    public func scalar<T: FixedWidthInteger>(_ i: Int, as: T.Type = T.self) -> T {
        buffer.load(T.self, at: position + MemoryLayout<T>.size * i)
    }

    /// Field at byte `fieldOffset` of struct element `i` (each `elementSize` bytes).
    public func structField<T: FixedWidthInteger>(_ i: Int, elementSize: Int, fieldOffset: Int, as: T.Type = T.self) -> T {
        buffer.load(T.self, at: position + elementSize * i + fieldOffset)
    }
}
