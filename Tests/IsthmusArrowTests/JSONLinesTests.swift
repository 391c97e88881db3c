import Testing
@testable import IsthmusArrow

@Suite struct JSONLinesReaderTests {
    func read(_ text: String, options: JSONLinesReadOptions = JSONLinesReadOptions(), chunk: Int = 1 << 20) throws -> (Schema, [RecordBatch]) {
        let r = try JSONLinesReader(source: ChunkedSource(text, chunk: chunk), options: options)
        return (r.schema, try drainReader(r))
    }

    @Test func infersNestedSchema() throws {
        let text = """
            {"id": 1, "score": 2, "ok": true, "name": "a", "tags": ["x"], "pos": {"x": 1, "y": [1.5]}}
            {"id": 2, "score": 2.5, "ok": null, "tags": [], "pos": {"x": 2, "z": "q"}, "when": "2024-01-02T03:04:05Z"}

            {"id": 3, "name": null}
            """
        let (schema, batches) = try read(text)
        #expect(schema.fields.map(\.name) == ["id", "score", "ok", "name", "tags", "pos", "when"])
        #expect(schema.fields.map(\.type) == [
            .int64, .float64, .bool, .utf8, .list(Field("item", .utf8)),
            .struct([Field("x", .int64), Field("y", .list(Field("item", .float64))), Field("z", .utf8)]),
            .timestamp(.microsecond, timezone: "UTC"),
        ])
        #expect(columnValues(batches, 0) == [.int(1), .int(2), .int(3)])
        #expect(columnValues(batches, 1) == [.float(2), .float(2.5), .null])
        #expect(columnValues(batches, 2) == [.bool(true), .null, .null])
        #expect(columnValues(batches, 3) == [.string("a"), .null, .null])
        #expect(columnValues(batches, 4) == [.list([.string("x")]), .list([]), .null])
        #expect(columnValues(batches, 5) == [
            .structure([.int(1), .list([.float(1.5)]), .null]),
            .structure([.int(2), .null, .string("q")]),
            .null,
        ])
        #expect(columnValues(batches, 6) == [.null, .int(1_704_164_645_000_000), .null])
    }

    @Test func mixedKindsAreReadAsText() throws {
        let (schema, batches) = try read("{\"a\": 1}\n{\"a\": \"x\"}\n{\"a\": [1, {\"b\": true}]}\n")
        #expect(schema.fields.map(\.type) == [.utf8])
        #expect(columnValues(batches, 0) == [.string("1"), .string("x"), .string("[1, {\"b\": true}]")])
    }

    @Test func escapesAndUnicode() throws {
        let (_, batches) = try read(#"{"s": "q\"b\\s\/n\nt\tu\u00e9\ud83d\ude00é"}"# + "\n")
        #expect(columnValues(batches, 0) == [.string("q\"b\\s/n\nt\tué😀é")])
    }

    @Test func unknownKeyIsAnErrorUnlessIgnored() throws {
        var o = JSONLinesReadOptions()
        o.inferenceRows = 1
        let text = "{\"a\": 1}\n{\"a\": 2, \"b\": {\"c\": 1}}\n"
        #expect(arrowErrorMessage { _ = try read(text, options: o) } ==
                "JSON Lines line 2, byte 10: key 'b' is not in the schema (it was not seen during schema inference); declare it in the schema or ignore unknown keys")
        o.ignoreUnknownKeys = true
        let (schema, batches) = try read(text, options: o)
        #expect(schema.fields.map(\.name) == ["a"])
        #expect(columnValues(batches, 0) == [.int(1), .int(2)])
    }

    @Test func nestedUnknownKeyNamesItsPath() {
        var o = JSONLinesReadOptions()
        o.inferenceRows = 1
        #expect(arrowErrorMessage { _ = try read("{\"p\": {\"x\": 1}}\n{\"p\": {\"x\": 1, \"y\": 2}}\n", options: o) } ==
                "JSON Lines line 2, byte 16: key 'p.y' is not in the schema (it was not seen during schema inference); declare it in the schema or ignore unknown keys")
    }

    @Test func invalidJSONNamesLineAndByte() {
        #expect(arrowErrorMessage { _ = try read("{\"a\": 1}\n{\"a\": 1,}\n") } ==
                "JSON Lines line 2, byte 9: expected a key in double quotes but found '}'")
        #expect(arrowErrorMessage { _ = try read("{\"a\": tru}\n") } ==
                "JSON Lines line 1, byte 7: expected a JSON value but found 'tru}'")
        #expect(arrowErrorMessage { _ = try read("[1, 2]\n") } ==
                "JSON Lines line 1, byte 1: expected an object '{' but found '[1, 2]'")
        #expect(arrowErrorMessage { _ = try read("{\"a\": 1} x\n") } ==
                "JSON Lines line 1, byte 10: expected the end of the line after the object but found 'x'")
        #expect(arrowErrorMessage { _ = try read("{\"a\": \"open}\n") } ==
                "JSON Lines line 1, byte 13: expected a closing '\"' for the string opened at byte 7 but found the end of the line")
    }

    @Test func laterValueOfTheWrongTypeNamesKeyAndLine() {
        var o = JSONLinesReadOptions()
        o.inferenceRows = 1
        #expect(arrowErrorMessage { _ = try read("{\"a\": 1}\n{\"a\": 1.5}\n", options: o) } ==
                "JSON Lines line 2, byte 7: key 'a': expected a value of type int64 but found '1.5}'")
        #expect(arrowErrorMessage { _ = try read("{\"a\": {\"b\": [1]}}\n{\"a\": {\"b\": [\"x\"]}}\n", options: o) } ==
                "JSON Lines line 2, byte 14: key 'a.b[]': expected a value of type int64 but found '\"x\"]}}'")
    }

    @Test func duplicateKeysAreErrors() {
        #expect(arrowErrorMessage { _ = try read("{\"a\": 1, \"a\": 2}\n") } ==
                "JSON Lines line 1, byte 10: key 'a' appears twice in one object")
    }

    @Test func declaredTypes() throws {
        var o = JSONLinesReadOptions()
        o.columnTypes = [Field("t", .timestamp(.millisecond, timezone: nil)), Field("n", .int32), Field("extra", .utf8), Field("b", .binary)]
        let (schema, batches) = try read("{\"t\": \"2024-01-02T03:04:05.5\", \"n\": 7, \"b\": \"AP8=\"}\n{\"t\": 12, \"n\": null, \"extra\": \"e\"}\n", options: o)
        #expect(schema.fields.map(\.type) == [.timestamp(.millisecond, timezone: nil), .int32, .binary, .utf8])
        #expect(columnValues(batches, 0) == [.int(1_704_164_645_500), .int(12)])
        #expect(columnValues(batches, 1) == [.int(7), .null])
        #expect(columnValues(batches, 2) == [.bytes([0, 255]), .null])
        #expect(columnValues(batches, 3) == [.null, .string("e")])
    }

    @Test func sameResultWhateverTheReadSize() throws {
        let text = "{\"a\": [1, 2], \"s\": \"x\\ny\"}\r\n\n{\"a\": null, \"s\": \"é\"}\n{\"s\": \"last\"}"
        let (s1, whole) = try read(text)
        for chunk in [1, 3, 8] {
            let (s2, pieces) = try read(text, chunk: chunk)
            #expect(s1 == s2)
            #expect(columnValues(whole, 0) == columnValues(pieces, 0))
            #expect(columnValues(whole, 1) == columnValues(pieces, 1))
        }
        #expect(columnValues(whole, 1) == [.string("x\ny"), .string("é"), .string("last")])
    }

    @Test func liveSourceReturnsOneBatchPerLine() throws {
        let reader = try JSONLinesReader(source: LineAtATimeSource(["{\"a\": 1}", "{\"a\": 2}", "{\"a\": 3}"]))
        let batches = try drainReader(reader)
        #expect(batches.map(\.length) == [1, 1, 1])
        #expect(columnValues(batches, 0) == [.int(1), .int(2), .int(3)])
    }

    @Test func batchesAreBounded() throws {
        var o = JSONLinesReadOptions()
        o.batchRows = 4
        let text = (0..<10).map { "{\"i\": \($0)}" }.joined(separator: "\n")
        let (_, batches) = try read(text, options: o)
        #expect(batches.map(\.length) == [4, 4, 2])
    }
}

@Suite struct JSONLinesWriterTests {
    @Test func writesOneObjectPerRow() throws {
        let schema = Schema([
            Field("i", .int64), Field("f", .float64), Field("s", .utf8), Field("b", .binary),
            Field("t", .timestamp(.microsecond, timezone: "UTC")), Field("l", .list(Field("item", .int64))),
            Field("st", .struct([Field("x", .bool)])), Field("d", .decimal128(precision: 5, scale: 2)),
        ])
        let batch = try RecordBatch(schema: schema, columns: [
            .int64([1, nil]),
            .float64([0.1, .infinity]),
            .utf8(["a\"b\n", nil]),
            try .build(.binary, [.bytes([1, 2, 3]), .null]),
            try .build(.timestamp(.microsecond, timezone: "UTC"), [.int(1_704_164_645_000_001), .null]),
            try .build(.list(Field("item", .int64)), [.list([.int(1), .null]), .null]),
            try .build(.struct([Field("x", .bool)]), [.structure([.bool(true)]), .null]),
            try .build(.decimal128(precision: 5, scale: 2), [.decimal(withUnsafeBytes(of: Int128(-1234).littleEndian) { Array($0) }), .null]),
        ])
        let text = try written({ JSONLinesWriter(sink: $0, schema: schema) }, [batch])
        #expect(text == """
            {"i":1,"f":0.1,"s":"a\\"b\\n","b":"AQID","t":"2024-01-02T03:04:05.000001Z","l":[1,null],"st":{"x":true},"d":"-12.34"}
            {"i":null,"f":null,"s":null,"b":null,"t":null,"l":null,"st":null,"d":null}

            """)
    }

    @Test func roundTripsThroughTheReader() throws {
        let schema = Schema([
            Field("i", .int64), Field("f", .float64), Field("s", .utf8), Field("ok", .bool),
            Field("l", .list(Field("item", .float64))), Field("p", .struct([Field("x", .int64), Field("y", .utf8)])),
            Field("t", .timestamp(.microsecond, timezone: nil)), Field("b", .binary),
        ])
        let batch = try RecordBatch(schema: schema, columns: [
            .int64([Int64.max, Int64.min, nil]),
            .float64([1e-300, 0.1 + 0.2, -0.0]),
            .utf8(["\u{0}\u{1f}é😀", "", nil]),
            .bool([true, nil, false]),
            try .build(.list(Field("item", .float64)), [.list([.float(1.25)]), .list([]), .null]),
            try .build(.struct([Field("x", .int64), Field("y", .utf8)]), [.structure([.int(1), .null]), .null, .structure([.null, .string("y")])]),
            try .build(.timestamp(.microsecond, timezone: nil), [.int(0), .int(-1), .null]),
            try .build(.binary, [.bytes([]), .bytes(Array(0...255)), .null]),
        ])
        let text = try written({ JSONLinesWriter(sink: $0, schema: schema) }, [batch])
        var o = JSONLinesReadOptions()
        o.schema = schema
        let back = try drainReader(try JSONLinesReader(source: ChunkedSource(text, chunk: 7), options: o))
        #expect(back == [batch])
        let inferred = try JSONLinesReader(source: ChunkedSource(text))
        #expect(inferred.schema.fields.map(\.type).prefix(4) == [.int64, .float64, .utf8, .bool])
    }
}
