import IsthmusArrow

/// Bytes in memory served `chunk` bytes per read.
final class ChunkedSource: ByteSource {
    private let bytes: [UInt8]
    private let chunk: Int
    private var position = 0

    init(_ text: String, chunk: Int = 1 << 20) {
        bytes = Array(text.utf8)
        self.chunk = chunk
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(chunk, buffer.count, bytes.count - position)
        guard n > 0 else { return 0 }
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + position, byteCount: n) }
        position += n
        return n
    }
}

/// A live source (a pipe, say) that delivers exactly one line per read.
final class LineAtATimeSource: ByteSource {
    private var lines: [String]
    private(set) var reads = 0

    init(_ lines: [String]) { self.lines = lines }

    var isLive: Bool { true }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        reads += 1
        guard !lines.isEmpty else { return 0 }
        let line = Array((lines.removeFirst() + "\n").utf8)
        precondition(line.count <= buffer.count)
        line.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: line.count) }
        return line.count
    }
}

/// Every batch of a reader.
func drainReader(_ reader: BatchReader) throws -> [RecordBatch] {
    var out: [RecordBatch] = []
    while let b = try reader.next() { out.append(b) }
    return out
}

/// All values of column `k` across batches.
func columnValues(_ batches: [RecordBatch], _ k: Int) -> [ArrowValue] {
    batches.flatMap { $0.columns[k].allValues }
}

/// The text a writer produced for `batches`.
func written(_ make: (ByteSink) -> BatchWriter, _ batches: [RecordBatch]) throws -> String {
    let sink = MemorySink()
    let w = make(sink)
    for b in batches { try w.write(b) }
    try w.finish()
    let buffer = sink.finish()
    return withExtendedLifetime(buffer) { String(decoding: buffer.bytes, as: UTF8.self) }
}

/// The message of the ArrowError `body` throws, or nil.
func arrowErrorMessage(_ body: () throws -> Void) -> String? {
    do { try body() } catch let e as ArrowError { return e.message } catch { return "\(error)" }
    return nil
}
