import Testing
@testable import IsthmusArrow

@Suite struct PrettyTests {
    @Test func alignsNumbersRightAndTextLeft() throws {
        let batch = try RecordBatch([
            "id": .int64([1, 200, nil]),
            "name": .utf8(["ann", "b\nob", nil]),
            "score": .float64([0.5, -12.25, .nan]),
        ])
        #expect(Pretty.table(batch) == """
               id  name     score
            int64  string  double
            -----  ------  ------
                1  ann        0.5
              200  b\\nob   -12.25
             null  null       nan
            """)
    }

    @Test func formatsValuesPerType() throws {
        let schema = Schema([
            Field("ts", .timestamp(.millisecond, timezone: "UTC")), Field("d", .date32),
            Field("dec", .decimal128(precision: 6, scale: 3)), Field("bin", .binary),
            Field("l", .list(Field("item", .utf8))), Field("s", .struct([Field("a", .int64), Field("b", .utf8)])),
        ])
        let batch = try RecordBatch(schema: schema, columns: [
            try .build(.timestamp(.millisecond, timezone: "UTC"), [.int(1_704_164_645_500)]),
            try .build(.date32, [.int(0)]),
            try .build(.decimal128(precision: 6, scale: 3), [.decimal(withUnsafeBytes(of: Int128(-5).littleEndian) { Array($0) })]),
            try .build(.binary, [.bytes([0xde, 0xad])]),
            try .build(.list(Field("item", .utf8)), [.list([.string("x"), .null])]),
            try .build(.struct([Field("a", .int64), Field("b", .utf8)]), [.structure([.int(1), .string("y")])]),
        ])
        #expect(Pretty.cell(batch.columns[0], 0) == "2024-01-02T03:04:05.500Z")
        #expect(Pretty.cell(batch.columns[1], 0) == "1970-01-01")
        #expect(Pretty.cell(batch.columns[2], 0) == "-0.005")
        #expect(Pretty.cell(batch.columns[3], 0) == "0xdead")
        #expect(Pretty.cell(batch.columns[4], 0) == "[\"x\", null]")
        #expect(Pretty.cell(batch.columns[5], 0) == "{a: 1, b: \"y\"}")
    }

    @Test func cutsLongCellsAndCountsHiddenRows() throws {
        let batch = try RecordBatch(["s": .utf8([String(repeating: "é", count: 50), "short", "x"])])
        var o = Pretty.Options()
        o.maxRows = 2
        o.maxCellWidth = 10
        #expect(Pretty.table(batch, options: o) == """
            s
            string
            ----------
            ééééééééé…
            short
            … 1 more row (3 in all)
            """)
    }

    @Test func emptyTables() throws {
        let batch = try RecordBatch(["a": .int64([])])
        #expect(Pretty.table(batch) == "    a\nint64\n-----")
        #expect(Pretty.table(schema: Schema([]), batches: []) == "(no columns, 0 rows)")
    }

    @Test func dictionaryShowsValues() throws {
        let type = DataType.dictionary(index: .int32, value: .utf8, ordered: false)
        let batch = try RecordBatch(schema: Schema([Field("c", type)]), columns: [try .build(type, [.string("red"), .string("red"), .null])])
        #expect(Pretty.table(batch).split(separator: "\n").dropFirst(3).joined(separator: "|") == "red|red|null")
    }
}
