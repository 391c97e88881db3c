/// Equal-length columns under a schema: the unit that flows through Isthmus.
/// Immutable; slicing copies nothing.
public struct RecordBatch: Sendable, Equatable {
    /// Column names and types.
    public let schema: Schema
    /// One array per schema field.
    public let columns: [ArrayData]
    /// Number of rows.
    public let length: Int
    /// Where the batch's bytes are in a shared input file, when a reader decoded it from one
    /// without a copy (PROTOCOL.md §19); kept by `slice`, not part of equality.
    public internal(set) var origin: BatchOrigin?

    /// A batch; columns must match the schema's fields in number, type and length.
    public init(schema: Schema, columns: [ArrayData], length: Int? = nil) throws {
        guard schema.fields.count == columns.count else {
            throw ArrowError(.invalidArgument, "expected \(schema.fields.count) columns for the schema but found \(columns.count)")
        }
        let n = length ?? columns.first?.length ?? 0
        for (f, c) in zip(schema.fields, columns) {
            guard c.type == f.type else {
                throw ArrowError(.invalidArgument, "column '\(f.name)': expected type \(f.type) but found \(c.type)")
            }
            guard c.length == n else {
                throw ArrowError(.invalidArgument, "column '\(f.name)': expected \(n) rows but found \(c.length)")
            }
        }
        self.schema = schema
        self.columns = columns
        self.length = n
    }

    /// A batch from named columns; every field is nullable.
    public init(_ columns: KeyValuePairs<String, ArrayData>) throws {
        try self.init(schema: Schema(columns.map { Field($0.key, $0.value.type) }), columns: columns.map(\.value))
    }

    /// The column called `name`.
    public func column(_ name: String) -> ArrayData? { schema.index(of: name).map { columns[$0] } }

    /// Rows `[start, start + count)`; copies nothing.
    public func slice(_ start: Int, _ count: Int) -> RecordBatch {
        // swiftlint:disable:next force_try
        var part = try! RecordBatch(schema: schema, columns: columns.map { $0.slice(start, count) }, length: count)
        part.origin = origin?.slice(start, count)
        return part
    }

    /// Total bytes of the buffers the batch spans.
    public var byteSize: Int { columns.reduce(0) { $0 + $1.byteSize } }

    /// Row `i` as logical values.
    public func row(_ i: Int) -> [ArrowValue] { columns.map { $0.value(at: i) } }

    /// Same schema, columns and length; where the bytes came from does not matter.
    public static func == (a: RecordBatch, b: RecordBatch) -> Bool {
        a.schema == b.schema && a.length == b.length && a.columns == b.columns
    }
}
