import Testing
@testable import IsthmusArrow

@Suite struct CSVReaderTests {
    func read(_ text: String, options: CSVReadOptions = CSVReadOptions(), chunk: Int = 1 << 20) throws -> (Schema, [RecordBatch]) {
        let r = try CSVReader(source: ChunkedSource(text, chunk: chunk), options: options)
        return (r.schema, try drainReader(r))
    }

    @Test func infersTypes() throws {
        let text = """
            i,f,b,s,d,t,tz,n
            1,1.5,true,x,2024-01-02,2024-01-02T03:04:05,2024-01-02T03:04:05Z,
            -2,2,False,y z,2024-02-29,2024-01-02 03:04:05.25,2024-01-02T05:04:05+02:00,

            """
        let (schema, batches) = try read(text)
        #expect(schema.fields.map(\.type) == [.int64, .float64, .bool, .utf8, .date32,
                                              .timestamp(.microsecond, timezone: nil), .timestamp(.microsecond, timezone: "UTC"), .utf8])
        #expect(schema.fields.map(\.name) == ["i", "f", "b", "s", "d", "t", "tz", "n"])
        #expect(columnValues(batches, 0) == [.int(1), .int(-2)])
        #expect(columnValues(batches, 1) == [.float(1.5), .float(2)])
        #expect(columnValues(batches, 2) == [.bool(true), .bool(false)])
        #expect(columnValues(batches, 3) == [.string("x"), .string("y z")])
        #expect(columnValues(batches, 4) == [.int(19724), .int(19782)])
        #expect(columnValues(batches, 5) == [.int(1_704_164_645_000_000), .int(1_704_164_645_250_000)])
        // Both tz values are the same instant.
        #expect(columnValues(batches, 6) == [.int(1_704_164_645_000_000), .int(1_704_164_645_000_000)])
        #expect(columnValues(batches, 7) == [.null, .null])
    }

    @Test func intWidensToFloatAndBigIntsAreFloats() throws {
        let (schema, batches) = try read("a,b\n1,99999999999999999999\n2.5,1\n")
        #expect(schema.fields.map(\.type) == [.float64, .float64])
        #expect(columnValues(batches, 0) == [.float(1), .float(2.5)])
    }

    @Test func quotingEscapesAndEmbeddedNewlines() throws {
        let text = "name,note\r\n\"Smith, J\",\"said \"\"hi\"\"\"\r\nplain,\"two\nlines\"\r\n\"\",\"x\"\r\n"
        let (schema, batches) = try read(text)
        #expect(schema.fields.map(\.type) == [.utf8, .utf8])
        #expect(columnValues(batches, 0) == [.string("Smith, J"), .string("plain"), .string("")])
        #expect(columnValues(batches, 1) == [.string("said \"hi\""), .string("two\nlines"), .string("x")])
    }

    @Test func sameResultWhateverTheReadSize() throws {
        let text = "a,b,c\n1,\"x,\"\"y\"\"\nz\",2024-01-01\n\n3,,2024-01-02\r\n4,\"\",\n"
        let (s1, whole) = try read(text)
        for chunk in [1, 2, 3, 7] {
            let (s2, pieces) = try read(text, chunk: chunk)
            #expect(s1 == s2)
            for k in 0..<3 { #expect(columnValues(whole, k) == columnValues(pieces, k)) }
        }
        #expect(columnValues(whole, 1) == [.string("x,\"y\"\nz"), .null, .string("")])
    }

    @Test func delimiterAndNoHeader() throws {
        var o = CSVReadOptions()
        o.delimiter = UInt8(ascii: ";")
        o.hasHeader = false
        let (schema, batches) = try read("1;a,b\n2;c\n", options: o)
        #expect(schema.fields.map(\.name) == ["f0", "f1"])
        #expect(columnValues(batches, 1) == [.string("a,b"), .string("c")])
        o.delimiter = 9
        let (_, tabbed) = try read("1\tx y\n", options: o)
        #expect(columnValues(tabbed, 1) == [.string("x y")])
    }

    @Test func nullsAndEmptyStrings() throws {
        let (schema, batches) = try read("a,b\n,\"\"\n1,\n")
        #expect(schema.fields.map(\.type) == [.int64, .utf8])
        #expect(columnValues(batches, 0) == [.null, .int(1)])
        #expect(columnValues(batches, 1) == [.string(""), .null])
    }

    @Test func declaredTypesOverrideInference() throws {
        var o = CSVReadOptions()
        o.columnTypes = [Field("zip", .utf8), Field("amount", .decimal128(precision: 10, scale: 2)), Field("t", .timestamp(.millisecond, timezone: "UTC"))]
        let (schema, batches) = try read("zip,amount,t\n00123,12.5,2024-01-02T03:04:05.123Z\n", options: o)
        #expect(schema.fields.map(\.type) == [.utf8, .decimal128(precision: 10, scale: 2), .timestamp(.millisecond, timezone: "UTC")])
        #expect(columnValues(batches, 0) == [.string("00123")])
        #expect(ValueText.string(batches[0].columns[1], 0) == "12.50")
        #expect(columnValues(batches, 2) == [.int(1_704_164_645_123)])
    }

    @Test func fullSchemaNamesColumns() throws {
        var o = CSVReadOptions()
        o.hasHeader = false
        o.schema = Schema([Field("id", .int32), Field("ok", .bool)])
        let (schema, batches) = try read("1,true\n2,0\n", options: o)
        #expect(schema == o.schema)
        #expect(columnValues(batches, 0) == [.int(1), .int(2)])
        #expect(columnValues(batches, 1) == [.bool(true), .bool(false)])
    }

    @Test func unknownDeclaredColumnIsAnError() {
        var o = CSVReadOptions()
        o.columnTypes = [Field("nope", .utf8)]
        let message = arrowErrorMessage { _ = try read("a,b\n1,2\n", options: o) }
        #expect(message == "declared column 'nope' is not in the CSV (columns: a, b)")
    }

    @Test func valueThatDoesNotFitNamesRowColumnTypeAndText() {
        var o = CSVReadOptions()
        o.inferenceRows = 2
        let message = arrowErrorMessage { _ = try read("a,b\n1,x\n2,y\n3.5,z\n", options: o) }
        #expect(message == "CSV line 4 (row 3), column 'a': expected a value of type int64 but found '3.5'")
    }

    @Test func raggedRowNamesLineAndCounts() {
        var o = CSVReadOptions()
        o.inferenceRows = 1
        let message = arrowErrorMessage { _ = try read("a,b\nx,2\n\"multi\nline\",2\n3,4,5\n", options: o) }
        #expect(message == "CSV line 5 (row 3): expected 2 fields but found 3")
        let early = arrowErrorMessage { _ = try read("a,b\n1,2,3\n") }
        #expect(early == "CSV line 2 (row 1): expected 2 fields but found 3")
    }

    @Test func unterminatedQuoteAndJunkAfterQuote() {
        #expect(arrowErrorMessage { _ = try read("a\n\"open\n") } == "CSV line 2: expected a closing quote but found the end of the input")
        #expect(arrowErrorMessage { _ = try read("a,b\n\"x\"y,1\n") } == "CSV line 2: expected a delimiter or a line end after a closing quote but found 'y'")
    }

    @Test func batchesAreBounded() throws {
        var o = CSVReadOptions()
        o.batchRows = 3
        let text = "a\n" + (1...10).map(String.init).joined(separator: "\n") + "\n"
        let (_, batches) = try read(text, options: o)
        #expect(batches.map(\.length) == [3, 3, 3, 1])
        #expect(columnValues(batches, 0) == (1...10).map { .int(Int64($0)) })
    }

    @Test func liveSourceReturnsOneBatchPerLine() throws {
        let source = LineAtATimeSource(["a,b", "1,x", "2,y", "3,z"])
        let reader = try CSVReader(source: source)
        #expect(reader.schema.fields.map(\.type) == [.int64, .utf8])
        let batches = try drainReader(reader)
        #expect(batches.map(\.length) == [1, 1, 1])
        #expect(columnValues(batches, 0) == [.int(1), .int(2), .int(3)])
    }

    @Test func emptyInputs() throws {
        let (s1, b1) = try read("")
        #expect(s1.fields.isEmpty && b1.isEmpty)
        let (s2, b2) = try read("a,b\n")
        #expect(s2.fields.map(\.name) == ["a", "b"] && b2.isEmpty)
    }

    @Test func byteOrderMarkIsSkipped() throws {
        let (schema, _) = try read("\u{FEFF}a,b\n1,2\n")
        #expect(schema.fields.map(\.name) == ["a", "b"])
    }
}

@Suite struct CSVWriterTests {
    @Test func quotesOnlyWhenNeeded() throws {
        let batch = try RecordBatch([
            "id": .int64([1, 2, nil]),
            "text": .utf8(["plain", "a,\"b\"\nc", ""]),
            "x": .float64([1.5, .nan, nil]),
        ])
        let text = try written({ CSVWriter(sink: $0, schema: batch.schema) }, [batch])
        #expect(text == "id,text,x\n1,plain,1.5\n2,\"a,\"\"b\"\"\nc\",NaN\n,\"\",\n")
    }

    @Test func temporalNestedAndBinary() throws {
        let schema = Schema([
            Field("d", .date32), Field("t", .timestamp(.millisecond, timezone: "UTC")),
            Field("l", .list(Field("item", .int64))), Field("b", .binary),
            Field("s", .struct([Field("k", .utf8)])),
        ])
        let batch = try RecordBatch(schema: schema, columns: [
            try .build(.date32, [.int(19724)]),
            try .build(.timestamp(.millisecond, timezone: "UTC"), [.int(1_704_164_645_123)]),
            try .build(.list(Field("item", .int64)), [.list([.int(1), .null])]),
            try .build(.binary, [.bytes([0, 255])]),
            try .build(.struct([Field("k", .utf8)]), [.structure([.string("v")])]),
        ])
        let text = try written({ CSVWriter(sink: $0, schema: schema) }, [batch])
        #expect(text == "d,t,l,b,s\n2024-01-02,2024-01-02T03:04:05.123Z,\"[1,null]\",AP8=,\"{\"\"k\"\":\"\"v\"\"}\"\n")
    }

    @Test func roundTripsThroughTheReader() throws {
        let schema = Schema([
            Field("i", .int64), Field("f", .float64), Field("b", .bool), Field("s", .utf8),
            Field("d", .date32), Field("ts", .timestamp(.microsecond, timezone: nil)),
            Field("tz", .timestamp(.nanosecond, timezone: "UTC")), Field("u8", .uint8),
        ])
        let batch = try RecordBatch(schema: schema, columns: [
            .int64([Int64.min, 0, Int64.max, nil]),
            .float64([0.1, -1e300, 5e-324, nil]),
            .bool([true, false, nil, true]),
            .utf8(["", "q\"uo,te", "line\r\nend", nil]),
            try .build(.date32, [.int(-1), .int(0), .int(20000), .null]),
            try .build(.timestamp(.microsecond, timezone: nil), [.int(-1), .int(0), .int(1_704_164_645_000_001), .null]),
            try .build(.timestamp(.nanosecond, timezone: "UTC"), [.int(1), .int(0), .int(-999_999_999), .null]),
            try .build(.uint8, [.uint(0), .uint(255), .null, .uint(7)]),
        ])
        let text = try written({ CSVWriter(sink: $0, schema: schema) }, [batch])
        var o = CSVReadOptions()
        o.schema = schema
        let back = try drainReader(try CSVReader(source: ChunkedSource(text, chunk: 5), options: o))
        #expect(back.count == 1)
        #expect(back[0] == batch)
        // Inference gets the same types back for the inferable ones.
        let inferred = try CSVReader(source: ChunkedSource(text))
        #expect(inferred.schema.fields.map(\.type).prefix(4) == [.int64, .float64, .bool, .utf8])
    }
}

@Suite struct TextScanTests {
    func scan<T>(_ s: String, _ f: (UnsafeRawBufferPointer) -> T) -> T {
        var s = s
        return s.withUTF8 { f(UnsafeRawBufferPointer($0)) }
    }

    @Test func doublesAreCorrectlyRounded() {
        for text in ["0.1", "1e23", "2.2250738585072014e-308", "123456789012345678901234567890", "9007199254740993",
                     "-0.0", "1.7976931348623157e308", "4.9e-324", "0.30000000000000004", ".5", "5."] {
            #expect(scan(text) { TextScan.double($0) } == Double(text) ?? Double("0" + text), "\(text)")
        }
        #expect(scan("inf") { TextScan.double($0) } == .infinity)
        #expect(scan("1e") { TextScan.double($0) } == nil)
        #expect(scan("abc") { TextScan.double($0) } == nil)
    }

    @Test func integersAndOverflow() {
        #expect(scan("-9223372036854775808") { TextScan.int64($0) } == .min)
        #expect(scan("9223372036854775808") { TextScan.int64($0) } == nil)
        #expect(scan("+12") { TextScan.int64($0) } == 12)
        #expect(scan("1_0") { TextScan.int64($0) } == nil)
    }

    @Test func dates() {
        #expect(scan("2024-02-30") { TextScan.dateTime($0) } == nil)
        #expect(scan("1969-12-31T23:59:59.5Z") { TextScan.dateTime($0) } == TextScan.DateTime(seconds: -1, nanoseconds: 500_000_000, hasTime: true, hasOffset: true))
        let withOffset = scan("2024-01-02T03:04-0130") { TextScan.dateTime($0) }
        let seconds: Int64? = withOffset?.seconds
        #expect(seconds == Int64(1_704_164_640 + 5400))
    }

    @Test func typeSpecs() throws {
        #expect(try TypeSpec.parseSchema("a:int64, b : string,c:timestamp[ms, tz=UTC],d:decimal128(10, 2),e:list<item: double>,f:struct<x: bool>") == [
            Field("a", .int64), Field("b", .utf8), Field("c", .timestamp(.millisecond, timezone: "UTC")),
            Field("d", .decimal128(precision: 10, scale: 2)), Field("e", .list(Field("item", .float64))),
            Field("f", .struct([Field("x", .bool)])),
        ])
        #expect(arrowErrorMessage { _ = try TypeSpec.parseSchema("a:int65") } == "type spec 'a:int65': expected a type name (int64, double, string, bool, timestamp[us], date32, ...) but found 'int65' at character 3")
    }
}

@Suite struct FormatsTests {
    @Test func inputsWithoutANameAreRecognised() throws {
        let csv = try Formats.openReader(source: ChunkedSource("a,b\n1,2\n"), format: nil, options: ReadOptions())
        #expect(csv is CSVReader)
        let jsonl = try Formats.openReader(source: ChunkedSource("  {\"a\": 1}\n"), format: nil, options: ReadOptions())
        #expect(jsonl is JSONLinesReader)
        #expect(columnValues(try drainReader(jsonl), 0) == [.int(1)])
    }

    @Test func unknownExtensionsAreNamed() {
        #expect(arrowErrorMessage { _ = try Formats.resolve(path: "x.foo", format: nil, output: false) } ==
                "cannot tell the format of 'x.foo': expected an extension .arrows, .arrow, .feather, .csv, .jsonl or .ndjson, or --from/--to")
        #expect((try? Formats.resolve(path: "x.foo", format: .csv, output: false)) == .csv)
        #expect((try? Formats.resolve(path: "-", format: nil, output: true)) == .arrows)
    }

    @Test func batchRowsCutsBatches() throws {
        var o = ReadOptions()
        o.batchRows = 2
        let r = try Formats.openReader(source: ChunkedSource("a\n1\n2\n3\n"), format: .csv, options: o)
        #expect(try drainReader(r).map(\.length) == [2, 1])
    }
}
