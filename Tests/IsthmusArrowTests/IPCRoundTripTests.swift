import Foundation
@testable import IsthmusArrow
import IsthmusCompression
import Testing

/// Swift-side round trips: random schemas and batches (slices included) written and read
/// back, zero-copy reading and encoding, framing variants, dictionaries, compression.
@Suite("IPC round trips")
struct IPCRoundTripTests {
    static let codecs: [(any BodyCodec)?] = [nil, BodyCodecs.lz4Frame, BodyCodecs.zstd]

    @Test("property: random schemas and sliced batches survive stream and file round trips", arguments: 0..<48)
    func property(_ seed: Int) throws {
        var random = RandomArrow(seed: UInt64(seed) &* 7919 &+ 17)
        let schema = random.schema(columns: random.int(1...4))
        let big = random.batch(schema, length: random.int(0...40))
        let batches = random.slices(of: big, count: random.int(1...4))
        let options = IPCWriteOptions(compression: Self.codecs[seed % 3], emitDictionaryDeltas: seed % 2 == 0)
        for b in batches { try b.validate() }

        let stream = try IPCTestSupport.writeStream(schema, batches, options: options)
        let (s1, b1) = try IPCTestSupport.readStream(stream)
        #expect(s1 == schema, "seed \(seed): stream schema \(s1) vs \(schema)")
        #expect(b1 == batches, "seed \(seed): stream batches")

        let file = try IPCTestSupport.writeFile(schema, batches, options: options)
        let (s2, b2) = try IPCTestSupport.readFile(file)
        #expect(s2 == schema, "seed \(seed): file schema")
        #expect(b2 == batches, "seed \(seed): file batches")

        // Independently built batches: every dictionary differs, so a stream replaces them.
        let independent = (0..<3).map { _ in random.batch(schema, length: random.int(0...10)) }
        let replaced = try IPCTestSupport.writeStream(schema, independent, options: options)
        #expect(try IPCTestSupport.readStream(replaced).1 == independent, "seed \(seed): replaced dictionaries")
    }

    static func sampleBatch() throws -> RecordBatch {
        let n = 64
        let ints = ArrayData.int64((0..<n).map { Int64($0 * 3) })
        let strings = ArrayData.utf8((0..<n).map { $0 % 5 == 0 ? nil : "value \($0)" })
        let lists = try ArrayData.build(.list(Field("item", .int32)), (0..<n).map { i in .list((0..<(i % 3)).map { .int(Int64($0)) }) })
        let doubles = ArrayData.float64((0..<n).map { Double($0) / 2 })
        return try RecordBatch(["i": ints, "s": strings, "l": lists, "d": doubles])
    }

    /// Every buffer (recursively) of the batch's columns.
    static func buffers(_ a: ArrayData) -> [Buffer] {
        a.buffers.compactMap { $0 } + a.children.flatMap(buffers) + (a.dictionary.map(buffers) ?? [])
    }

    /// Whether `body` copies no bytes into new buffers.
    static func copiesNothing(_ body: () throws -> Void) rethrows -> Bool {
        try Buffer.copiedBytes(during: body).bytes == 0
    }

    @Test("reading a stream from memory copies nothing: batch buffers are slices of the input")
    func zeroCopyRead() throws {
        let batch = try Self.sampleBatch()
        let stream = try IPCTestSupport.writeStream(batch.schema, [batch, batch])
        let reader = try IPCStreamReader(buffer: stream)
        for b in try reader.readAll() {
            #expect(b == batch)
            for column in b.columns {
                for buffer in Self.buffers(column) where buffer.count > 0 {
                    #expect(buffer.storage === stream.storage, "a column buffer is not a view of the input")
                }
            }
        }
        #expect(try Self.copiesNothing { _ = try IPCStreamReader(buffer: stream).readAll() }, "reading copied bytes")
        let file = try IPCTestSupport.writeFile(batch.schema, [batch])
        #expect(try Self.copiesNothing { _ = try IPCFileReader(buffer: file).readAll() }, "reading a file copied bytes")
    }

    @Test("encoding a batch gathers nothing: body pieces are the column buffers themselves")
    func zeroCopyEncode() throws {
        let batch = try Self.sampleBatch()
        let messages = try IPCEncoder.recordBatch(batch)
        #expect(messages.count == 1)
        let pieces = messages[0].body
        for column in batch.columns {
            for buffer in Self.buffers(column) where buffer.count > 0 {
                #expect(pieces.contains { $0.storage === buffer.storage }, "a column buffer was copied into the body")
            }
        }
        #expect(try Self.copiesNothing { _ = try IPCEncoder.recordBatch(batch) }, "encoding copied bytes")
        // metadata + body pieces is byte for byte the message the stream writer writes.
        let schemaMessage = IPCEncoder.schemaMessage(batch.schema)
        let stream = try IPCTestSupport.writeStream(batch.schema, [batch])
        var expected = schemaMessage.array
        expected += messages[0].joined().array
        expected += IPCEncoder.endOfStream.array
        #expect(stream.array == expected)
        #expect(messages[0].metadata.count % 8 == 0 && messages[0].bodyLength % 8 == 0)
        #expect(messages[0].bodyLength == pieces.reduce(0) { $0 + $1.count })
    }

    @Test("the bridge's self-contained encoding sends dictionaries first, inner before outer")
    func dictionariesFirst() throws {
        let inner = DataType.dictionary(index: .int8, value: .utf8, ordered: false)
        let outer = DataType.dictionary(index: .int16, value: .list(Field("item", inner)), ordered: false)
        let array = try ArrayData.build(outer, [.list([.string("a"), .string("b")]), .null, .list([.string("a")])])
        let batch = try RecordBatch(["x": array])
        let messages = try IPCEncoder.recordBatch(batch)
        #expect(messages.map(\.kind) == [.dictionary(id: 1, isDelta: false), .dictionary(id: 0, isDelta: false), .recordBatch])
        var bytes = IPCEncoder.schemaMessage(batch.schema).array
        for m in messages { bytes += m.joined().array }
        bytes += IPCEncoder.endOfStream.array
        let (schema, batches) = try IPCTestSupport.readStream(Buffer(bytes))
        #expect(schema == batch.schema)
        #expect(batches == [batch])
        #expect(try IPCEncoder.decodeSchemaMessage(IPCEncoder.schemaMessage(batch.schema)) == batch.schema)
    }

    @Test("dictionary deltas and replacements in streams; replacements refused in files")
    func dictionaryEvolution() throws {
        let type = DataType.dictionary(index: .int32, value: .utf8, ordered: false)
        let schema = Schema([Field("d", type)])
        let words = ["a", "b", "c", "d", "e"]
        func batch(_ dictionary: [String], _ indices: [Int32?]) throws -> RecordBatch {
            let dict = ArrayData.utf8(dictionary)
            let idx = ArrayData.int32(indices)
            let a = ArrayData(type: type, length: idx.length, nullCount: idx.nullCount, buffers: idx.buffers, dictionary: dict)
            return try RecordBatch(schema: schema, columns: [a])
        }
        let b1 = try batch(Array(words[0..<2]), [0, 1, nil])
        let b2 = try batch(Array(words[0..<4]), [3, 2, 0])        // extends: delta
        let b3 = try batch(["z", "y"], [1, 0])                     // differs: replacement
        let b4 = try batch(["z", "y"], [0, 0, 1])                  // same values: nothing sent
        var encoder = try IPCEncoder(schema: schema)
        let kinds = try [b1, b2, b3, b4].map { try encoder.encode($0).map(\.kind) }
        #expect(kinds == [[.dictionary(id: 0, isDelta: false), .recordBatch],
                          [.dictionary(id: 0, isDelta: true), .recordBatch],
                          [.dictionary(id: 0, isDelta: false), .recordBatch],
                          [.recordBatch]])
        let stream = try IPCTestSupport.writeStream(schema, [b1, b2, b3, b4])
        let read = try IPCTestSupport.readStream(stream).1
        #expect(read == [b1, b2, b3, b4])
        #expect(read[1].columns[0].dictionary?.length == 4, "the delta extended the dictionary")
        // Without deltas a grown dictionary is a replacement.
        var noDeltas = try IPCEncoder(schema: schema, options: IPCWriteOptions(emitDictionaryDeltas: false))
        _ = try noDeltas.encode(b1)
        #expect(try noDeltas.encode(b2).map(\.kind) == [.dictionary(id: 0, isDelta: false), .recordBatch])
        // Files: deltas fine, replacement refused with a clear error.
        let file = try IPCTestSupport.writeFile(schema, [b1, b2])
        let fromFile = try IPCTestSupport.readFile(file).1
        #expect(fromFile.map { $0.columns[0].allValues } == [b1, b2].map { $0.columns[0].allValues })
        #expect(throws: ArrowError.self) { try IPCTestSupport.writeFile(schema, [b1, b3]) }
    }

    @Test("sliced arrays are written with rebased offsets, shifted bitmaps and sliced values")
    func slices() throws {
        var random = RandomArrow(seed: 42)
        let types: [DataType] = [
            .utf8, .largeBinary, .bool, .int16, .list(Field("item", .utf8)), .largeList(Field("item", .int8)),
            .fixedSizeList(Field("item", .int32), 2), .struct([Field("a", .utf8), Field("b", .bool)]),
            .union(.dense, [Field("x", .int32), Field("y", .utf8)], typeIds: [4, 9]),
            .union(.sparse, [Field("x", .int32), Field("y", .utf8)], typeIds: [4, 9]),
            .map(entries: Field("entries", .struct([Field("key", .utf8, nullable: false), Field("value", .int64)]), nullable: false), keysSorted: false),
            .dictionary(index: .uint8, value: .utf8, ordered: false), .decimal256(precision: 40, scale: 2), .null,
        ]
        for type in types {
            let array = random.array(type, nullable: true, length: 37)
            for (start, count) in [(0, 37), (1, 30), (3, 5), (8, 16), (13, 0), (36, 1)] {
                let slice = array.slice(start, count)
                let batch = try RecordBatch(["c": slice])
                let stream = try IPCTestSupport.writeStream(batch.schema, [batch])
                let back = try IPCTestSupport.readStream(stream).1
                #expect(back == [batch], "\(type) slice \(start)+\(count)")
                #expect(back.first?.columns[0].offset == 0)
            }
        }
    }

    @Test("legacy framing (pre-0.15) and every end-of-stream form are read")
    func framing() throws {
        let batch = try Self.sampleBatch()
        let modern = try IPCTestSupport.writeStream(batch.schema, [batch, batch]).array
        // Rewrite as legacy: drop each continuation marker.
        var legacy: [UInt8] = []
        var i = 0
        while i < modern.count {
            precondition(Array(modern[i..<(i + 4)]) == [0xFF, 0xFF, 0xFF, 0xFF])
            let length = Int(Int32(littleEndian: modern[(i + 4)..<(i + 8)].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }))
            legacy += modern[(i + 4)..<(i + 8)]
            if length == 0 { break }
            var decoder = StreamDecoder()
            decoder.feed(Buffer(Array(modern[i...])))
            guard case .message(let m) = try decoder.next() else { Issue.record("no message"); return }
            legacy += modern[(i + 8)..<(i + 8 + length + m.body.count)]
            i += 8 + length + m.body.count
        }
        #expect(try IPCTestSupport.readStream(Buffer(legacy)).1 == [batch, batch], "legacy framing with the 4-byte EOS")
        #expect(try IPCTestSupport.readStream(Buffer(Array(legacy.dropLast(4)))).1 == [batch, batch], "legacy framing ending at end of input")
        #expect(try IPCTestSupport.readStream(Buffer(Array(modern.dropLast(8)))).1 == [batch, batch], "modern framing ending at end of input")
        #expect(try IPCTestSupport.readStream(Buffer(modern + [1, 2, 3])).1 == [batch, batch], "bytes after EOS are ignored")
        #expect(throws: ArrowError.self) { try IPCTestSupport.readStream(Buffer(Array(modern.dropLast(20)))) }
    }

    @Test("the stream decoder answers needMore until a message's last byte arrives")
    func decoderStateMachine() throws {
        let batch = try Self.sampleBatch()
        let stream = try IPCTestSupport.writeStream(batch.schema, [batch]).array
        var decoder = StreamDecoder()
        var messages: [IPCMessage] = []
        var ends = 0
        var bytesAtMessage: [Int] = []
        for (k, byte) in stream.enumerated() {
            decoder.feed(IPCTestSupport.buffer([byte]))
            loop: while true {
                switch try decoder.next() {
                case .needMore(let n):
                    #expect(n >= 1)
                    break loop
                case .message(let m):
                    messages.append(m)
                    bytesAtMessage.append(k + 1)
                case .endOfStream:
                    ends += 1
                    break loop
                }
            }
        }
        #expect(messages.map(\.kind) == [.schema, .recordBatch])
        #expect(ends == 1)
        #expect(bytesAtMessage.last == stream.count - 8, "the batch is produced as soon as its body is complete")
        var d = IPCDecoder()
        _ = try d.decode(messages[0])
        guard case .recordBatch(let b) = try d.decode(messages[1]) else { Issue.record("no batch"); return }
        #expect(b == batch)
    }

    @Test("compressed bodies: round trip, uncompressible buffers stored raw, bombs refused")
    func compression() throws {
        let batch = try Self.sampleBatch()
        for codec in [BodyCodecs.lz4Frame, BodyCodecs.zstd] {
            let stream = try IPCTestSupport.writeStream(batch.schema, [batch], options: IPCWriteOptions(compression: codec))
            #expect(try IPCTestSupport.readStream(stream).1 == [batch])
            // Without codecs: a clear error.
            #expect(throws: ArrowError.self) { try IPCTestSupport.readStream(stream, options: IPCReadOptions()) }
            // A small budget refuses the declared sizes.
            let tight = IPCReadOptions(codecs: BodyCodecs.system, maxDecompressedBytes: 100)
            do {
                _ = try IPCTestSupport.readStream(stream, options: tight)
                Issue.record("expected the decompression budget to be enforced")
            } catch let e as ArrowError {
                #expect(e.message.contains("decompression budget"), "\(e)")
            }
        }
        // A buffer that claims to decompress to more than it does, or to less.
        let payload = [UInt8](repeating: 7, count: 4096)
        for codec in [BodyCodecs.lz4Frame, BodyCodecs.zstd] {
            var out = [UInt8](repeating: 0, count: codec.maxCompressedLength(payload.count))
            let n = try payload.withUnsafeBytes { src in try out.withUnsafeMutableBytes { try codec.compress(src, into: $0) } }
            var small = [UInt8](repeating: 0, count: 100)
            #expect(throws: (any Error).self) {
                try out[0..<n].withUnsafeBytes { src in try small.withUnsafeMutableBytes { try codec.decompress(src, into: $0) } }
            }
            var exact = [UInt8](repeating: 0, count: 4096)
            let m = try out[0..<n].withUnsafeBytes { src in try exact.withUnsafeMutableBytes { try codec.decompress(src, into: $0) } }
            #expect(m == 4096 && exact == payload)
        }
    }

    @Test("schemas of every type, with metadata, survive the schema message")
    func schemaCoverage() throws {
        var fields: [Field] = RandomArrow.leafTypes.enumerated().map { Field("f\($0.offset)", $0.element, nullable: $0.offset % 2 == 0) }
        for index in RandomArrow.indexTypes {
            fields.append(Field("dict_\(index)", .dictionary(index: index, value: .utf8, ordered: index == .int32)))
        }
        fields += [
            Field("tz", .timestamp(.nanosecond, timezone: "America/New_York"), metadata: [KeyValue("a", "1"), KeyValue("b", "2")]),
            Field("nested_dict", .list(Field("item", .dictionary(index: .int8, value: .struct([Field("inner", .dictionary(index: .int16, value: .largeUtf8, ordered: false))]), ordered: false)))),
            Field("map", .map(entries: Field("entries", .struct([Field("key", .utf8, nullable: false), Field("value", .float64)]), nullable: false), keysSorted: true)),
            Field("dense", .union(.dense, [Field("a", .int8), Field("b", .utf8)], typeIds: [5, 127])),
            Field("sparse", .union(.sparse, [Field("a", .int8)], typeIds: [0])),
            Field("fsl", .fixedSizeList(Field("v", .float32, nullable: false), 4)),
            Field("ll", .largeList(Field("item", .largeBinary))),
        ]
        let schema = Schema(fields, metadata: [KeyValue("pandas", "{}"), KeyValue("", "empty key")])
        #expect(try IPCEncoder.decodeSchemaMessage(IPCEncoder.schemaMessage(schema)) == schema)
        let batch = RandomArrow(seed: 3).batchFor(schema)
        let (s, b) = try IPCTestSupport.readFile(try IPCTestSupport.writeFile(schema, [batch]))
        #expect(s == schema)
        #expect(b == [batch])
    }

    @Test("the file reader gives random access by block")
    func fileRandomAccess() throws {
        var random = RandomArrow(seed: 9)
        let schema = Schema([Field("a", .int32), Field("b", .utf8)])
        let batches = (0..<5).map { _ in random.batch(schema, length: random.int(0...9)) }
        let reader = try IPCFileReader(buffer: try IPCTestSupport.writeFile(schema, batches))
        #expect(reader.recordBatchCount == 5)
        for i in [4, 0, 2, 2, 1, 3] { #expect(try reader.recordBatch(at: i) == batches[i]) }
        #expect(throws: ArrowError.self) { try reader.recordBatch(at: 5) }
    }

    /// Reads a pipe with read(2): blocks until bytes arrive, as stdin does.
    final class PipeSource: ByteSource {
        let fd: Int32
        init(_ fd: Int32) { self.fd = fd }
        var isLive: Bool { true }
        func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n < 0 { throw ArrowError(.io, "read failed") }
            return n
        }
    }

    @Test("over a pipe, each batch is returned as soon as its bytes have arrived")
    func livePipe() throws {
        let batch = try Self.sampleBatch()
        let pipe = Pipe()
        let sink = MemorySink()
        let writer = try IPCStreamWriter(sink: sink, schema: batch.schema)
        try writer.write(batch)
        // Schema and the first batch only: the writer keeps the pipe open.
        let first = sink.finish()
        pipe.fileHandleForWriting.write(Data(first.array))
        let reader = try IPCStreamReader(source: PipeSource(pipe.fileHandleForReading.fileDescriptor))
        #expect(try reader.next() == batch, "the first batch arrives while the pipe stays open")
        try writer.write(batch.slice(10, 20))
        try writer.finish()
        let rest = sink.finish()
        pipe.fileHandleForWriting.write(Data(rest.array))
        #expect(try reader.next() == batch.slice(10, 20))
        #expect(try reader.next() == nil, "end-of-stream marker ends the stream before the pipe closes")
        try pipe.fileHandleForWriting.close()
    }

    @Test("stream writer and reader over files and pipes")
    func files() throws {
        let dir = try IPCTestSupport.temporaryDirectory("files")
        defer { try? FileManager.default.removeItem(at: dir) }
        let batch = try Self.sampleBatch()
        let path = dir.appendingPathComponent("out.arrows").path
        let out = try OutputFile(path: path)
        let writer = try IPCStreamWriter(sink: out, schema: batch.schema)
        try writer.write(batch)
        try writer.finish()
        try out.commit()
        let reader = try IPCStreamReader(path: path)
        #expect(try reader.readAll() == [batch])
        let filePath = dir.appendingPathComponent("out.arrow").path
        let out2 = try OutputFile(path: filePath)
        let fw = try IPCFileWriter(sink: out2, schema: batch.schema)
        try fw.write(batch)
        try fw.finish()
        try out2.commit()
        #expect(try IPCFileReader(path: filePath).readAll() == [batch])
    }

    @Test("pages handed back behind a reader of a mapped file fault back in with the same values")
    func droppedPagesReadBack() throws {
        let dir = try IPCTestSupport.temporaryDirectory("pages")
        defer { try? FileManager.default.removeItem(at: dir) }
        // 48 MB in 24 batches: the reader hands back everything more than 32 MiB behind it.
        let rows = 250_000
        let batches = try (0..<24).map { k in
            try RecordBatch(["v": ArrayData.int64((0..<rows).map { Int64(k * rows + $0) })])
        }
        for (name, fileFormat) in [("big.arrows", false), ("big.arrow", true)] {
            let path = dir.appendingPathComponent(name).path
            let out = try OutputFile(path: path)
            let writer: BatchWriter = fileFormat ? try IPCFileWriter(sink: out, schema: batches[0].schema)
                                                 : try IPCStreamWriter(sink: out, schema: batches[0].schema)
            for b in batches { try writer.write(b) }
            try writer.finish()
            try out.commit()
            let reader: BatchReader = fileFormat ? try IPCFileReader(path: path) : try IPCStreamReader(path: path)
            var kept: [RecordBatch] = []
            while let b = try reader.next() { kept.append(b) }
            // The first batches' pages were dropped long ago; reading them faults them back in.
            #expect(kept == batches, "\(name)")
            #expect(kept[0].columns[0].int64(rows - 1) == Int64(rows - 1))
        }
    }
}

extension RandomArrow {
    /// One batch of 12 rows for `schema`.
    func batchFor(_ schema: Schema) -> RecordBatch {
        var copy = self
        return copy.batch(schema, length: 12)
    }
}
