@testable import IsthmusArrow
import Testing

/// The FlatBuffers builder, verifier and reader on a small schema of their own.
@Suite("FlatBuffers")
struct FlatBuffersTests {
    // Table 0: root { a: int32 (0), name: string (1), child: Node (2), kids: [Node] (3),
    //                 nums: [int64] (4), kind/value: union { 1: Node } (5, 6), tags: [string] (7) }
    // Table 1: Node { v: int16 (0), next: Node (1) }
    static let schema = FBSchema(
        tables: [
            [.scalar(slot: 0, size: 4), .string(slot: 1), .table(slot: 2, table: 1), .vectorOfTables(slot: 3, table: 1),
             .vector(slot: 4, elementSize: 8), .union(typeSlot: 5, valueSlot: 6, tables: [1: 1]), .vectorOfStrings(slot: 7)],
            [.scalar(slot: 0, size: 2), .table(slot: 1, table: 1)],
        ],
        names: ["Root", "Node"])

    static func node(_ v: Int16, next: FBTableValue? = nil) -> FBTableValue {
        var t = FBTableValue()
        t.set(0, .int16(v))
        if let next { t.set(1, .table(next)) }
        return t
    }

    static func sample() -> [UInt8] {
        var root = FBTableValue()
        root.set(0, .int32(-42))
        root.set(1, .string("héllo"))
        root.set(2, .table(node(7, next: node(8))))
        root.set(3, .tables([node(1), node(2), node(3)]))
        root.set(4, .int64Vector([1, -2, Int64.max]))
        root.set(5, .uint8(1))
        root.set(6, .table(node(99)))
        root.set(7, .strings(["x", "", "yz"]))
        return FBWriter.serialize(root)
    }

    @Test("what the builder writes, the verifier accepts and the reader reads back")
    func roundTrip() throws {
        let t = try FlatBuffer.verify(Buffer(Self.sample()), schema: Self.schema, root: 0)
        #expect(t.scalar(0, default: Int32(0)) == -42)
        #expect(t.string(1) == "héllo")
        #expect(t.table(2)?.scalar(0, default: Int16(0)) == 7)
        #expect(t.table(2)?.table(1)?.scalar(0, default: Int16(0)) == 8)
        #expect(t.table(2)?.table(1)?.table(1) == nil)
        let kids = try #require(t.vector(3))
        #expect((0..<kids.count).map { kids.table($0).scalar(0, default: Int16(0)) } == [1, 2, 3])
        let nums = try #require(t.vector(4))
        #expect((0..<nums.count).map { nums.scalar($0, as: Int64.self) } == [1, -2, Int64.max])
        #expect(nums.position % 8 == 0, "int64 vector elements are 8-byte aligned")
        #expect(t.scalar(5, default: UInt8(0)) == 1)
        #expect(t.table(6)?.scalar(0, default: Int16(0)) == 99)
        let tags = try #require(t.vector(7))
        #expect((0..<tags.count).map { tags.string($0) } == ["x", "", "yz"])
        #expect(!t.has(8))
        #expect(t.scalar(9, default: Int32(5)) == 5, "absent slots give the default")
    }

    static func rejects(_ bytes: [UInt8], _ fragment: String, limits: FlatBuffer.Limits = FlatBuffer.Limits()) {
        do {
            _ = try FlatBuffer.verify(Buffer(bytes), schema: schema, root: 0, limits: limits)
            Issue.record("expected a rejection containing '\(fragment)'")
        } catch let e as ArrowError {
            #expect(e.message.contains(fragment), "\(e)")
            #expect(e.message.contains("expected"), "\(e)")
            #expect(e.offset != nil, "\(e)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("the verifier rejects every out-of-bounds reference with what it expected and where")
    func rejections() throws {
        let good = Self.sample()
        func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        Self.rejects([], "root offset")
        Self.rejects([1, 0], "root offset")
        Self.rejects(le32(1000) + [0, 0, 0, 0], "Root table")
        // A root whose soffset points the vtable before the buffer.
        Self.rejects(le32(4) + le32(UInt32(bitPattern: 1000)), "vtable")
        // vtable size odd / too small.
        Self.rejects(le32(8) + [3, 0, 4, 0] + le32(4), "vtable size")
        // table size past the end.
        Self.rejects(le32(8) + [4, 0, 200, 0] + le32(4), "Root table")
        // Truncations of a good buffer all fail cleanly.
        for n in stride(from: 0, to: good.count - 1, by: 3) {
            #expect(throws: ArrowError.self) { try FlatBuffer.verify(Buffer(Array(good[0..<n])), schema: Self.schema, root: 0) }
        }
    }

    @Test("strings must end in NUL, vectors must fit, union tags must be known")
    func structural() throws {
        // Root with a string field whose NUL is replaced.
        var root = FBTableValue()
        root.set(1, .string("abc"))
        var bytes = FBWriter.serialize(root)
        let nul = bytes.lastIndex(of: 0x63)! + 1   // after "c"
        bytes[nul] = 0x41
        Self.rejects(bytes, "NUL")

        var vec = FBTableValue()
        vec.set(4, .int64Vector([1, 2]))
        var vbytes = FBWriter.serialize(vec)
        // The vector length sits 4 bytes before the first element (value 1).
        let first = vbytes.count - 16
        vbytes[first - 4] = 0xFF
        vbytes[first - 3] = 0xFF
        vbytes[first - 2] = 0xFF
        vbytes[first - 1] = 0x7F
        Self.rejects(vbytes, "vector")

        var u = FBTableValue()
        u.set(5, .uint8(9))
        u.set(6, .table(Self.node(1)))
        Self.rejects(FBWriter.serialize(u), "union tag")

        var missing = FBTableValue()
        missing.set(5, .uint8(1))
        Self.rejects(FBWriter.serialize(missing), "expected a value for union tag")
    }

    @Test("depth and table count are bounded")
    func limits() throws {
        var chain = Self.node(0)
        for i in 1..<100 { chain = Self.node(Int16(i), next: chain) }
        var root = FBTableValue()
        root.set(2, .table(chain))
        let bytes = FBWriter.serialize(root)
        Self.rejects(bytes, "deep")
        _ = try FlatBuffer.verify(Buffer(bytes), schema: Self.schema, root: 0, limits: FlatBuffer.Limits(maxDepth: 200))
        Self.rejects(bytes, "tables", limits: FlatBuffer.Limits(maxDepth: 200, maxTables: 50))

        // Shared subtables are counted each time they are reached (no exponential walk).
        var wide = FBTableValue()
        wide.set(3, .tables(Array(repeating: Self.node(1), count: 300)))
        Self.rejects(FBWriter.serialize(wide), "tables", limits: FlatBuffer.Limits(maxTables: 100))
    }

    @Test("Arrow messages verify against the Arrow schema, and a footer is not a message")
    func arrowTables() throws {
        let schema = Schema([Field("a", .int32), Field("b", .dictionary(index: .int8, value: .utf8, ordered: false))])
        let message = IPCEncoder.schemaMessage(schema)
        let fb = message.slice(8, message.count - 8)
        let root = try FlatBuffer.verify(fb, schema: ArrowFB.schema, root: ArrowFB.message)
        #expect(root.scalar(0, default: Int16(0)) == MetadataVersion.v5.rawValue)
        #expect(root.scalar(1, default: UInt8(0)) == ArrowFB.HeaderTag.schema.rawValue)
    }
}
