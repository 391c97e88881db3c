import Foundation
import IsthmusArrow

/// A file output opened when the first batch (and so the output schema) arrives, written
/// under a temporary name and moved into place by `commit()`: a failed run leaves no file
/// that looks complete, and an existing file is replaced only on success.
public final class FileSink: BatchWriter, @unchecked Sendable {
    // @unchecked: written by the run thread; `abandonNow()` may race with it only on a second
    // signal, when the process exits right after removing the temporary file.
    /// The final path.
    public let path: String
    let format: DataFormat?
    private var writer: BatchWriter?
    private var file: OutputFile?
    private var finished = false

    let options: WriteOptions

    /// An output at `path` (format from the extension unless given; `-` is stdout).
    public init(path: String, format: DataFormat? = nil, options: WriteOptions = WriteOptions()) {
        self.path = path
        self.format = format
        self.options = options
    }

    private func open(_ schema: Schema) throws {
        let (w, f) = try Formats.openWriter(path: path, format: format, schema: schema, options: options)
        writer = w
        file = f
    }

    public func write(_ batch: RecordBatch) throws {
        if writer == nil { try open(batch.schema) }
        try writer!.write(batch)
    }

    public func flush() throws { try writer?.flush() }

    public func finish() throws {
        if writer == nil { try open(Schema([])) }
        try writer!.finish()
        finished = true
    }

    /// Moves the finished output into place.
    public func commit() throws {
        if !finished { try finish() }
        try file?.commit()
    }

    /// Deletes the temporary output.
    public func abandon() { file?.abandon() }

    /// Deletes the temporary output from a signal handler path.
    public func abandonNow() {
        if let t = file?.temporaryPath { unlink(t) }
    }
}

