import Foundation
@testable import IsthmusArrow
import Testing

/// `ArrayData.validate()` on hand-made invalid arrays, and readers rejecting invalid batches.
@Suite("Array validation")
struct IPCValidationTests {
    static func rejects(_ array: ArrayData, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            try array.validate(name: "col")
            Issue.record("expected a rejection containing '\(fragment)'", sourceLocation: sourceLocation)
        } catch let e as ArrowError {
            #expect(e.code == .invalidData, sourceLocation: sourceLocation)
            #expect(e.message.contains("column 'col"), "\(e)", sourceLocation: sourceLocation)
            #expect(e.message.contains("expected") && e.message.contains("found"), "\(e)", sourceLocation: sourceLocation)
            #expect(e.message.contains(fragment), "\(e)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    static func i32(_ values: [Int32]) -> Buffer { Buffer(values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }) }
    static func i64(_ values: [Int64]) -> Buffer { Buffer(values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }) }

    @Test("valid arrays of every kind pass")
    func validPasses() throws {
        var random = RandomArrow(seed: 77)
        for _ in 0..<40 {
            let schema = random.schema(columns: 3)
            let batch = random.batch(schema, length: random.int(0...30))
            try batch.validate()
            if batch.length > 2 { try batch.slice(1, batch.length - 2).validate() }
        }
    }

    @Test("sizes, counts and offsets")
    func layout() {
        Self.rejects(ArrayData(type: .int32, length: 4, nullCount: 0, buffers: [nil, Self.i32([1, 2, 3])]), "values buffer of at least 16 bytes")
        Self.rejects(ArrayData(type: .int32, length: 2, offset: 2, nullCount: 0, buffers: [nil, Self.i32([1, 2, 3])]), "at least 16 bytes")
        Self.rejects(ArrayData(type: .int32, length: 1, nullCount: 0, buffers: [nil]), "expected 2 buffers")
        Self.rejects(ArrayData(type: .int32, length: 3, nullCount: 2, buffers: [Buffer([0b101]), Self.i32([1, 2, 3])]), "nulls")
        Self.rejects(ArrayData(type: .int32, length: 3, nullCount: 1, buffers: [nil, Self.i32([1, 2, 3])]), "validity bitmap for 1 nulls")
        Self.rejects(ArrayData(type: .int64, length: Int.max / 4, nullCount: 0, buffers: [nil, Self.i64([1])]), "fits in memory")
        Self.rejects(ArrayData(type: .int8, length: 5, offset: Int.max - 2, nullCount: 0, buffers: [nil, Buffer([1])]), "offset + length")
        Self.rejects(ArrayData(type: .bool, length: 9, nullCount: 0, buffers: [nil, Buffer([0xFF])]), "at least 2 bytes")
    }

    @Test("variable-size offsets and UTF-8")
    func binaryLike() {
        Self.rejects(ArrayData(type: .utf8, length: 2, nullCount: 0, buffers: [nil, Self.i32([0, 3, 2]), Buffer(Array("abc".utf8))]), "non-decreasing")
        Self.rejects(ArrayData(type: .utf8, length: 2, nullCount: 0, buffers: [nil, Self.i32([0, 3, 9]), Buffer(Array("abc".utf8))]), "within the 3-byte data")
        Self.rejects(ArrayData(type: .binary, length: 1, nullCount: 0, buffers: [nil, Self.i32([-1, 2]), Buffer([1, 2])]), "offsets >= 0")
        Self.rejects(ArrayData(type: .largeUtf8, length: 2, nullCount: 0, buffers: [nil, Self.i64([0, 1]), Buffer([0x41])]), "offsets buffer of at least 24")
        Self.rejects(ArrayData(type: .utf8, length: 2, nullCount: 0, buffers: [nil, Self.i32([0, 1, 3]), Buffer([0x41, 0xC3, 0x28])]), "UTF-8")
        Self.rejects(ArrayData(type: .utf8, length: 1, nullCount: 0, buffers: [nil, Self.i32([0, 3]), Buffer([0xED, 0xA0, 0x80])]), "UTF-8")  // surrogate
        Self.rejects(ArrayData(type: .utf8, length: 1, nullCount: 0, buffers: [nil, Self.i32([0, 2]), Buffer([0xC0, 0x80])]), "UTF-8")  // overlong
        // Invalid bytes behind a null slot are never read as text.
        let ok = ArrayData(type: .utf8, length: 2, nullCount: 1, buffers: [Buffer([0b01]), Self.i32([0, 1, 2]), Buffer([0x41, 0xFF])])
        #expect(throws: Never.self) { try ok.validate() }
        // Multi-byte characters split across values are invalid in each value.
        Self.rejects(ArrayData(type: .utf8, length: 2, nullCount: 0, buffers: [nil, Self.i32([0, 1, 2]), Buffer([0xC3, 0xA9])]), "UTF-8")
    }

    @Test("nested layouts")
    func nested() throws {
        let child = ArrayData.int32([1, 2, 3])
        Self.rejects(ArrayData(type: .list(Field("item", .int32)), length: 2, nullCount: 0, buffers: [nil, Self.i32([0, 2, 5])], children: [child]),
                     "within the child's 3 values")
        Self.rejects(ArrayData(type: .list(Field("item", .int64)), length: 1, nullCount: 0, buffers: [nil, Self.i32([0, 1])], children: [child]),
                     "child of type int64")
        Self.rejects(ArrayData(type: .fixedSizeList(Field("item", .int32), 2), length: 2, nullCount: 0, buffers: [nil], children: [child]),
                     "at least 4 values")
        Self.rejects(ArrayData(type: .struct([Field("a", .int32), Field("b", .int32)]), length: 3, nullCount: 0, buffers: [nil], children: [child]),
                     "2 child arrays")
        Self.rejects(ArrayData(type: .struct([Field("a", .int32)]), length: 2, offset: 2, nullCount: 0, buffers: [nil], children: [child]),
                     "at least 4 values")
        // The error names the nested path.
        let badChild = ArrayData(type: .utf8, length: 1, nullCount: 0, buffers: [nil, Self.i32([0, 1]), Buffer([0xFF])])
        Self.rejects(ArrayData(type: .struct([Field("s", .utf8)]), length: 1, nullCount: 0, buffers: [nil], children: [badChild]), "col.s")
    }

    @Test("unions and dictionaries")
    func unionsAndDictionaries() throws {
        let kids = [ArrayData.int32([1, 2]), ArrayData.utf8(["a", "b"])]
        let sparse = DataType.union(.sparse, [Field("i", .int32), Field("s", .utf8)], typeIds: [3, 7])
        Self.rejects(ArrayData(type: sparse, length: 2, nullCount: 0, buffers: [Buffer([3, 5])], children: kids), "type id in [3, 7] but found 5")
        let dense = DataType.union(.dense, [Field("i", .int32), Field("s", .utf8)], typeIds: [3, 7])
        Self.rejects(ArrayData(type: dense, length: 2, nullCount: 0, buffers: [Buffer([3, 7]), Self.i32([0, 2])], children: kids), "dense union offset in 0..<2")
        Self.rejects(ArrayData(type: dense, length: 2, nullCount: 0, buffers: [Buffer([3, 7]), Self.i32([0])], children: kids), "offsets buffer")
        #expect(throws: Never.self) {
            try ArrayData(type: dense, length: 2, nullCount: 0, buffers: [Buffer([3, 7]), Self.i32([1, 0])], children: kids).validate()
        }

        let dictType = DataType.dictionary(index: .int8, value: .utf8, ordered: false)
        let dict = ArrayData.utf8(["x", "y"])
        Self.rejects(ArrayData(type: dictType, length: 2, nullCount: 0, buffers: [nil, Buffer([1, 2])], dictionary: dict), "dictionary index in 0..<2 but found 2")
        Self.rejects(ArrayData(type: dictType, length: 1, nullCount: 0, buffers: [nil, Buffer([0xFF])], dictionary: dict), "found -1")
        Self.rejects(ArrayData(type: dictType, length: 1, nullCount: 0, buffers: [nil, Buffer([0])]), "expected a dictionary but found none")
        Self.rejects(ArrayData(type: dictType, length: 1, nullCount: 0, buffers: [nil, Buffer([0])], dictionary: ArrayData.int32([1])), "dictionary of string")
        // A null slot may hold any index.
        #expect(throws: Never.self) {
            try ArrayData(type: dictType, length: 2, nullCount: 1, buffers: [Buffer([0b10]), Buffer([99, 1])], dictionary: dict).validate()
        }
    }

    @Test("the UTF-8 check agrees with the standard library on random bytes")
    func utf8Agreement() {
        var rng = SeededRandom(seed: 8)
        let pieces: [[UInt8]] = [[0x41], [0xC3, 0xA9], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x99, 0x82], [0xED, 0x9F, 0xBF],
                                 [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0x80], [0xFF], [0xF8]]
        for _ in 0..<5000 {
            var bytes: [UInt8] = []
            for _ in 0..<Int(rng.next() % 12) {
                if rng.next() % 4 == 0 { bytes.append(UInt8(truncatingIfNeeded: rng.next())) }
                else { bytes += pieces[Int(rng.next() % UInt64(pieces.count))] }
            }
            if rng.next() % 5 == 0, !bytes.isEmpty { bytes.removeLast() }
            let ours = bytes.withUnsafeBytes { UTF8Validation.isValid($0) }
            let standard = String(validating: bytes, as: UTF8.self) != nil
            #expect(ours == standard, "\(bytes)")
        }
    }

    @Test("the UTF-8 check of string arrays agrees slot by slot with the standard library (one pass over the bytes, offsets on character boundaries)")
    func utf8Arrays() {
        var rng = SeededRandom(seed: 9)
        let pieces: [[UInt8]] = [Array("plain ascii words".utf8), [0xC3, 0xA9], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x99, 0x82],
                                 [0xED, 0xA0, 0x80], [0xFF], Array(String(repeating: "x", count: 40).utf8)]
        var outcomes: Set<String> = []
        for round in 0..<3000 {
            // Data: pieces, mostly well-formed; offsets: anywhere in it, so a slot may split a character.
            var data: [UInt8] = []
            for _ in 0..<(1 + Int(rng.next() % 8)) {
                let k = Int(rng.next() % UInt64(pieces.count))
                data += (k == 4 || k == 5) && rng.next() % 3 != 0 ? pieces[0] : pieces[k]
            }
            let n = 1 + Int(rng.next() % 6)
            var cuts = (0..<(n - 1)).map { _ in Int32(rng.next() % UInt64(data.count + 1)) }.sorted()
            cuts = [0] + cuts + [Int32(data.count)]
            let nulls = (0..<n).map { _ in rng.next() % 4 == 0 }
            var validity = [UInt8](repeating: 0, count: (n + 7) / 8)
            for i in 0..<n where !nulls[i] { validity[i / 8] |= 1 << (i % 8) }
            let nullCount = nulls.filter { $0 }.count
            let large = rng.next() % 2 == 0
            let whole = ArrayData(type: large ? .largeUtf8 : .utf8, length: n, nullCount: nullCount,
                                  buffers: [nullCount > 0 ? Buffer(validity) : nil, large ? Self.i64(cuts.map(Int64.init)) : Self.i32(cuts), Buffer(data)])
            // Half the rounds check a slice, whose slots and offsets start past the buffers' first.
            let start = rng.next() % 2 == 0 ? Int(rng.next() % UInt64(n)) : 0
            let length = n - start - (start > 0 ? Int(rng.next() % UInt64(n - start)) : 0)
            let array = start == 0 && length == n ? whole : whole.slice(start, length)
            let firstBad = (0..<length).first { j in
                let i = start + j
                return !nulls[i] && String(validating: data[Int(cuts[i])..<Int(cuts[i + 1])], as: UTF8.self) == nil
            }
            do {
                try array.validate(name: "col")
                #expect(firstBad == nil, "round \(round): accepted, but slot \(firstBad ?? -1) of \(cuts) from \(start) over \(data) is not UTF-8")
                outcomes.insert("accepted")
            } catch {
                #expect(firstBad != nil && "\(error)".contains("invalid bytes in slot \(firstBad!) "), "round \(round): \(error); expected slot \(firstBad ?? -1)")
                outcomes.insert("rejected")
            }
        }
        #expect(outcomes == ["accepted", "rejected"])
        // The scan tells ASCII from other valid text, also past the 32-byte fast path.
        let long = String(repeating: "abcdefgh", count: 9)
        #expect(Array(long.utf8).withUnsafeBytes { UTF8Validation.scan($0) } == .ascii)
        #expect(Array((long + "é" + long).utf8).withUnsafeBytes { UTF8Validation.scan($0) } == .valid)
        #expect((Array(long.utf8) + [0xC3]).withUnsafeBytes { UTF8Validation.scan($0) } == .invalid)
        #expect(([0xE2, 0x82] + Array(long.utf8)).withUnsafeBytes { UTF8Validation.scan($0) } == .invalid)
    }

    @Test("nesting depth is bounded")
    func depth() {
        var type = DataType.int32
        var array = ArrayData.int32([1])
        for _ in 0..<70 {
            type = .struct([Field("x", type)])
            array = ArrayData(type: type, length: 1, nullCount: 0, buffers: [nil], children: [array])
        }
        Self.rejects(array, "nesting at most 64 deep")
    }

    @Test("readers validate every batch: invalid data in a well-formed stream is rejected")
    func readersValidate() throws {
        let bad = ArrayData(type: .utf8, length: 2, nullCount: 0, buffers: [nil, Self.i32([0, 1, 2]), Buffer([0x41, 0xFF])])
        let schema = Schema([Field("text", .utf8)])
        let batch = try RecordBatch(schema: schema, columns: [bad])
        let stream = try IPCTestSupport.writeStream(schema, [batch])
        do {
            _ = try IPCTestSupport.readStream(stream)
            Issue.record("expected the reader to reject invalid UTF-8")
        } catch let e as ArrowError {
            #expect(e.message.contains("column 'text'") && e.message.contains("UTF-8"), "\(e)")
            #expect(e.offset != nil)
        }
        let file = try IPCTestSupport.writeFile(schema, [batch])
        #expect(throws: ArrowError.self) { try IPCTestSupport.readFile(file) }
        // With validation off, the batch comes through (the caller takes responsibility).
        #expect(try IPCTestSupport.readStream(stream, options: IPCReadOptions(validate: false)).1.count == 1)
    }
}
