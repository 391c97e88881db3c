import Foundation
import IsthmusArrow
import IsthmusBridge

/// What a Python stage does when its function raises on some rows.
public enum RowErrorPolicy: Sendable, Equatable {
    /// Stop the run with the traceback (the default).
    case fail
    /// Isolate the failing rows (the worker bisects the batch), drop them, go on; stats count them.
    case skip
    /// Like `skip`, and hand the failing rows to the pipeline's `deadLetters` sink.
    case deadLetter
}

/// Rows a stage's function failed on, with the original columns and the errors.
public struct FailedRows: Sendable {
    /// Stage (or fused stages) name.
    public var stage: String
    /// The failing input rows, original columns.
    public var rows: RecordBatch
    /// Row numbers of those rows in the whole input.
    public var rowNumbers: [Int]
    /// One error per row, in the same order.
    public var errors: [ControlDocuments.RowFailure]
}

/// Writes failed rows as records holding the row's columns plus `_stage`, `_row`,
/// `_error_type`, `_error_message` and `_traceback`, so they can be inspected and replayed.
/// Thread-safe; the writer is opened on the first failed row.
public final class DeadLetterSink: @unchecked Sendable {
    // @unchecked: every field is touched only while `lock` is held.
    private let lock = NSLock()
    private let open: (Schema) throws -> BatchWriter
    private var writer: BatchWriter?
    private var schema: Schema?
    /// Rows written so far.
    public private(set) var count = 0

    /// A sink that opens its writer with `open(schema)` when the first failed row arrives.
    public init(open: @escaping (Schema) throws -> BatchWriter) {
        self.open = open
    }

    /// Appends failed rows.
    public func write(_ failed: FailedRows) throws {
        let n = failed.rows.length
        let extra: [(String, ArrayData)] = [
            ("_stage", ArrayData.utf8(Array(repeating: failed.stage, count: n))),
            ("_row", ArrayData.int64(failed.rowNumbers.map { Int64($0) })),
            ("_error_type", ArrayData.utf8(failed.errors.map { $0.excType })),
            ("_error_message", ArrayData.utf8(failed.errors.map { $0.message })),
            ("_traceback", ArrayData.utf8(failed.errors.map { $0.traceback })),
        ]
        let fields = failed.rows.schema.fields + extra.map { Field($0.0, $0.1.type) }
        let batch = try RecordBatch(schema: Schema(fields), columns: failed.rows.columns + extra.map(\.1), length: n)
        lock.lock()
        defer { lock.unlock() }
        if writer == nil {
            writer = try open(batch.schema)
            schema = batch.schema
        }
        guard batch.schema == schema else {
            throw PipelineError("dead letters: expected failed rows with columns \(schema!.fields.map(\.name)) but found \(batch.schema.fields.map(\.name)) (stages with different inputs cannot share one dead-letter file)")
        }
        try writer!.write(batch)
        try writer!.flush()
        count += n
    }

    /// Finishes the writer if any row was written; returns whether one was.
    @discardableResult
    public func finish() throws -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let writer else { return false }
        try writer.finish()
        return true
    }
}
