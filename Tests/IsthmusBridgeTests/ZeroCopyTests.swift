import IsthmusArrow
import Testing
@testable import IsthmusBridge

@Suite("Zero copy on the send path")
struct ZeroCopyTests {
    @Test("encoding a batch for BATCH copies no column buffer; the frames are views of the columns")
    func encodeCopiesNothing() throws {
        let n = 100_000
        let batch = try RecordBatch(["id": ArrayData.int64((0..<n).map { Int64($0) }),
                                     "x": ArrayData.float64((0..<n).map { Double($0) * 0.5 })])
        let schema = BatchCodec.schemaMessage(batch.schema)
        // Once first, outside the count: the first use of the encoder initializes its constants
        // (the 8-byte end-of-stream marker is built once per process), which is not a per-batch
        // copy. Which test gets there first depends on how the suites interleave.
        _ = try BatchCodec.encode(batch, schemaMessage: schema)
        let (frames, copied) = try Buffer.copiedBytes { try BatchCodec.encode(batch, schemaMessage: schema) }
        #expect(copied == 0)
        // The two 800 kB value buffers travel as frames that point into the columns' own memory.
        let columnBases = Set(batch.columns.map { $0.buffers[1]!.bytes.baseAddress! })
        let frameBases = Set(frames.map { $0.bytes.baseAddress! })
        #expect(columnBases.isSubset(of: frameBases))
        // And the frames, joined, are a valid Arrow IPC stream with the same values.
        let joined = Buffer(Array(frames.map { Array($0.bytes) }.joined()))
        let reader = try IPCStreamReader(buffer: joined)
        let back = try #require(try reader.next())
        #expect(back == batch)
        #expect(try reader.next() == nil)
    }

    @Test("a received single-frame result is decoded in place")
    func decodeInPlace() throws {
        let batch = try RecordBatch(["v": ArrayData.float64((0..<50_000).map { Double($0) })])
        let frames = try BatchCodec.encode(batch, schemaMessage: BatchCodec.schemaMessage(batch.schema))
        let stream = Buffer(Array(frames.map { Array($0.bytes) }.joined()))
        let (decoded, copied) = try Buffer.copiedBytes { () throws -> RecordBatch? in try IPCStreamReader(buffer: stream).next() }
        #expect(copied == 0)
        let back = try #require(decoded)
        let base = stream.bytes.baseAddress!
        let values = back.columns[0].buffers[1]!.bytes.baseAddress!
        #expect(values >= base && values < base + stream.count)
    }
}
