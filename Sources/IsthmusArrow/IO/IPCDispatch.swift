/// Connects `Formats` to the Arrow IPC readers and writers.
enum IPCDispatch {
    /// A stream reader: zero-copy over a memory-mapped regular file, incremental over a live
    /// source (stdin, a pipe) so that batches flow as they arrive.
    static func streamReader(source: ByteSource, file: InputFile?, codecs: [any BodyCodec], trackOrigins: Bool = false) throws -> BatchReader {
        var options = IPCReadOptions(codecs: codecs)
        options.trackOrigins = trackOrigins
        if let file, file === source as AnyObject, file.path != "-", !file.isLive {
            return try IPCStreamReader(mapping: file, options: options)
        }
        return try IPCStreamReader(source: source, options: options)
    }

    /// A file reader over the whole input (memory-mapped when it is a regular file).
    static func fileReader(source: ByteSource, file: InputFile?, codecs: [any BodyCodec]) throws -> BatchReader {
        let options = IPCReadOptions(codecs: codecs)
        if let file, file === source as AnyObject {
            return try IPCFileReader(mapping: file, options: options)
        }
        let out = BufferBuilder(capacity: 1 << 16)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try chunk.withUnsafeMutableBytes { try source.read(into: $0) }
            if n == 0 { break }
            chunk.withUnsafeBytes { out.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        return try IPCFileReader(buffer: out.finish(), options: options)
    }

    static func streamWriter(sink: ByteSink, schema: Schema, options: WriteOptions, flush: Bool) throws -> BatchWriter {
        let writer = try IPCStreamWriter(sink: sink, schema: schema, options: IPCWriteOptions(compression: options.compression))
        return flush ? FlushingWriter(writer) : writer
    }

    static func fileWriter(sink: ByteSink, schema: Schema, options: WriteOptions) throws -> BatchWriter {
        try IPCFileWriter(sink: sink, schema: schema, options: IPCWriteOptions(compression: options.compression))
    }
}

/// Flushes after every batch, so that a live consumer sees each batch as soon as it is written.
final class FlushingWriter: BatchWriter {
    private let inner: BatchWriter

    init(_ inner: BatchWriter) { self.inner = inner }

    func write(_ batch: RecordBatch) throws {
        try inner.write(batch)
        try inner.flush()
    }

    func flush() throws { try inner.flush() }

    func finish() throws { try inner.finish() }
}
