import Foundation
import IsthmusArrow
import IsthmusCompression
import Testing

/// Batches read without a copy from a mapped Arrow IPC stream file know where their bytes are
/// (PROTOCOL.md §19): the message they were decoded from and their rows in it, so that local
/// workers can map the file themselves. Any batch built from other bytes has no origin.
@Suite("Batch origins in shared input files")
struct BatchOriginTests {
    static func stream(_ batches: [RecordBatch], options: IPCWriteOptions = IPCWriteOptions(), tag: String) throws -> (String, [UInt8]) {
        let bytes = try IPCTestSupport.writeStream(batches[0].schema, batches, options: options)
        let url = try IPCTestSupport.temporaryDirectory(tag).appendingPathComponent("in.arrows")
        try IPCTestSupport.write(bytes, to: url)
        return (url.path, Array(bytes.bytes))
    }

    static func batch(_ start: Int, _ n: Int) throws -> RecordBatch {
        try RecordBatch(["x": .int64((start..<start + n).map { Int64($0) }),
                         "s": try .build(.utf8, (start..<start + n).map { $0 % 5 == 0 ? .null : .string("r\($0)") })])
    }

    static let tracking: IPCReadOptions = {
        var o = IPCReadOptions(codecs: BodyCodecs.system)
        o.trackOrigins = true
        return o
    }()

    @Test("a mapped stream's batches name their message, slices their rows, and the file stays open while they live")
    func origins() throws {
        let (path, bytes) = try Self.stream([try Self.batch(0, 100), try Self.batch(100, 50)], tag: "origin")
        var batches: [RecordBatch] = []
        do {
            let reader = try IPCStreamReader(path: path, options: Self.tracking)
            while let b = try reader.next() { batches.append(b) }
        }
        let origins = batches.compactMap { $0.origin?.rows }
        try #require(origins.count == 2)
        let st = try FileManager.default.attributesOfItem(atPath: path)
        let file = try #require(batches[0].origin?.file)
        #expect(file.size == (st[.size] as? Int) && file.inode == (st[.systemFileNumber] as? UInt64))
        for (o, b) in zip(origins, batches) {
            #expect(o.rowOffset == 0 && o.rowCount == b.length)
            #expect(Array(bytes[o.messageOffset..<o.messageOffset + 4]) == [0xFF, 0xFF, 0xFF, 0xFF])
            #expect(o.messageOffset % 8 == 0 && o.messageOffset + o.messageLength <= bytes.count)
            #expect(Array(bytes[o.schemaOffset..<o.schemaOffset + 4]) == [0xFF, 0xFF, 0xFF, 0xFF] && o.schemaOffset == 0)
        }
        // The messages follow each other: the second starts where the first ends.
        #expect(origins[1].messageOffset == origins[0].messageOffset + origins[0].messageLength)
        #expect(origins[0].schemaLength == origins[0].messageOffset)
        // The reader is gone; its share of the file is still open under /proc for the batches.
        let shared = try Data(contentsOf: URL(fileURLWithPath: file.path))
        #expect(Array(shared) == bytes)

        let part = batches[0].slice(37, 20)
        #expect(part.origin?.rows.rowOffset == 37 && part.origin?.rows.rowCount == 20 && part.origin?.rows.messageOffset == origins[0].messageOffset)
        #expect(part.slice(3, 5).origin?.rows.rowOffset == 40)
        #expect(part == (try Self.batch(37, 20)))  // the origin is not part of equality
        // A concatenation is new bytes: no origin.
        let joined = Kernels.concatenate([batches[0].slice(90, 10), batches[1].slice(0, 10)])
        #expect(joined.origin == nil)
    }

    @Test("compressed bodies, dictionaries and non-file inputs give no origin")
    func noOrigin() throws {
        let (compressed, _) = try Self.stream([try Self.batch(0, 10)], options: IPCWriteOptions(compression: LZ4FrameCodec()), tag: "origin-lz4")
        let lz4 = try IPCStreamReader(path: compressed, options: Self.tracking)
        #expect(try lz4.next()?.origin == nil)
        // Incompressible values are stored as they are (length -1) in a compressed body: views
        // of the file, but a worker would still need the codec. No origin either.
        var g = SystemRandomNumberGenerator()
        let noise = try RecordBatch(["f": .float64((0..<4096).map { _ in Double.random(in: -1...1, using: &g) })])
        let (raw, _) = try Self.stream([noise], options: IPCWriteOptions(compression: LZ4FrameCodec()), tag: "origin-raw")
        let stored = try #require(try IPCStreamReader(path: raw, options: Self.tracking).next())
        #expect(stored.origin == nil && stored == noise)

        let dict = try RecordBatch(["d": try .build(.dictionary(index: .int8, value: .utf8, ordered: false), [.string("a"), .string("b")])])
        let (dictPath, _) = try Self.stream([dict], tag: "origin-dict")
        #expect(try IPCStreamReader(path: dictPath, options: Self.tracking).next()?.origin == nil)

        let (plain, bytes) = try Self.stream([try Self.batch(0, 10)], tag: "origin-buffer")
        #expect(try IPCStreamReader(path: plain, options: Self.tracking).next()?.origin != nil)
        // Not asked for (the default): no origin, no descriptor held.
        #expect(try IPCStreamReader(path: plain).next()?.origin == nil)
        let inMemory = try IPCStreamReader(buffer: IPCTestSupport.buffer(bytes), options: Self.tracking)
        #expect(try inMemory.next()?.origin == nil)
        #expect(try Self.batch(0, 3).origin == nil)
    }

    @Test("a file that shrank under the run says what is missing")
    func shortfall() throws {
        let (path, bytes) = try Self.stream([try Self.batch(0, 100), try Self.batch(100, 50)], tag: "origin-shrink")
        let reader = try IPCStreamReader(path: path, options: Self.tracking)
        _ = try reader.next()
        let second = try #require(try reader.next()?.origin)
        #expect(second.file.shortfall(for: second.rows) == nil)
        #expect(truncate(path, off_t(second.rows.messageOffset + 16)) == 0)
        let need = second.rows.messageOffset + second.rows.messageLength
        #expect(second.file.shortfall(for: second.rows)
                == "expected at least \(need) bytes (\(bytes.count) when the run opened it) but found \(second.rows.messageOffset + 16)")
    }
}
