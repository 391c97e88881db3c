/// Renders rows as an aligned text table, as pandas and pyarrow print them:
///
/// ```
///    id  name    at
/// int64  string  timestamp[us, tz=UTC]
/// -----  ------  ---------------------
///     1  ann     2024-01-02T03:04:05Z
///     2  null    null
/// ```
///
/// One line of column names, one of types, a rule, then one line per row. Numbers are
/// right-aligned, everything else left-aligned; nulls print as `null`; timestamps as ISO 8601,
/// decimals with their scale, binary as hex, nested values JSON-like; long cells are cut
/// with `…`.
public enum Pretty {
    /// How a table is drawn.
    public struct Options: Sendable {
        /// Most rows shown.
        public var maxRows = 10
        /// Longest cell (and header) in characters; longer ones are cut with `…`.
        public var maxCellWidth = 40
        /// Whether to print the type line under the names.
        public var showTypes = true
        /// Spaces between columns.
        public var gap = 2
        /// Default options.
        public init() {}
    }

    /// The first `options.maxRows` rows of `batch` as a table.
    public static func table(_ batch: RecordBatch, options: Options = Options()) -> String {
        table(schema: batch.schema, batches: [batch], totalRows: batch.length, options: options)
    }

    /// The first `maxRows` rows of `batch` as a table.
    public static func table(_ batch: RecordBatch, maxRows: Int) -> String {
        var o = Options()
        o.maxRows = maxRows
        return table(batch, options: o)
    }

    /// The first `options.maxRows` rows across `batches` as a table. With `totalRows`, a footer
    /// says how many rows were left out.
    public static func table(schema: Schema, batches: [RecordBatch], totalRows: Int? = nil, options: Options = Options()) -> String {
        let fields = schema.fields
        guard !fields.isEmpty else {
            let n = totalRows ?? batches.reduce(0) { $0 + $1.length }
            return "(no columns, \(n) row\(n == 1 ? "" : "s"))"
        }
        var rows: [[String]] = []
        outer: for batch in batches {
            for i in 0..<batch.length {
                if rows.count >= options.maxRows { break outer }
                rows.append(batch.columns.map { cell($0, i, width: options.maxCellWidth) })
            }
        }
        let names = fields.map { cut(escapeControls($0.name), options.maxCellWidth) }
        let types = fields.map { cut($0.type.description, options.maxCellWidth) }
        var widths = fields.indices.map { k in
            max(names[k].count, options.showTypes ? types[k].count : 0, rows.map { $0[k].count }.max() ?? 0, 1)
        }
        for k in widths.indices where widths[k] < 1 { widths[k] = 1 }
        let rightAligned = fields.map { isNumeric($0.type) }
        var lines: [String] = []
        func line(_ cells: [String], rule: Bool = false) -> String {
            var s = ""
            for (k, c) in cells.enumerated() {
                let pad = String(repeating: rule ? "-" : " ", count: widths[k] - c.count)
                let last = k == cells.count - 1
                if rightAligned[k] && !rule { s += pad + c } else { s += c + (last && !rule ? "" : pad) }
                if !last { s += String(repeating: " ", count: options.gap) }
            }
            while s.hasSuffix(" ") { s.removeLast() }
            return s
        }
        lines.append(line(names))
        if options.showTypes { lines.append(line(types)) }
        lines.append(line(widths.map { _ in "" }, rule: true))
        for r in rows { lines.append(line(r)) }
        if let totalRows, totalRows > rows.count {
            lines.append("… \(totalRows - rows.count) more row\(totalRows - rows.count == 1 ? "" : "s") (\(totalRows) in all)")
        }
        return lines.joined(separator: "\n")
    }

    /// Slot `i` of `array` as a table cell, cut to `width` characters.
    public static func cell(_ array: ArrayData, _ i: Int, width: Int = 40) -> String {
        cut(ValueText.string(array, i, style: .display), width)
    }

    private static func cut(_ s: String, _ width: Int) -> String {
        guard s.count > width else { return s }
        return String(s.prefix(max(width - 1, 0))) + "…"
    }

    private static func escapeControls(_ s: String) -> String {
        var s = s
        return s.withUTF8 { b in
            var out: [UInt8] = []
            ValueText.appendDisplayString(UnsafeRawBufferPointer(b), into: &out)
            return String(decoding: out, as: UTF8.self)
        }
    }

    private static func isNumeric(_ t: DataType) -> Bool {
        switch t {
        case .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64,
             .float16, .float32, .float64, .decimal128, .decimal256, .duration: true
        case .dictionary(_, let v, _): isNumeric(v)
        default: false
        }
    }
}
