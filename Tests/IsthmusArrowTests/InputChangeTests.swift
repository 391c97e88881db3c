import Foundation
@testable import IsthmusArrow
import Testing

/// An input file that another program truncates while it is read is reported as "input
/// changed", whichever way it is read, instead of ending the stream early at a seemingly
/// valid point (a mapping reads zeros to the end of its last page; read() just ends).
@Suite("Inputs truncated under the reader")
struct InputChangeTests {
    static func stream(_ batches: Int, rows: Int, tag: String) throws -> (String, [Int]) {
        let parts = try (0..<batches).map { k in try RecordBatch(["x": .int64((0..<rows).map { Int64(k * rows + $0) })]) }
        let bytes = try IPCTestSupport.writeStream(parts[0].schema, parts)
        let url = try IPCTestSupport.temporaryDirectory(tag).appendingPathComponent("in.arrows")
        try IPCTestSupport.write(bytes, to: url)
        // Where each record batch message starts (the reader's origins say so).
        var options = IPCReadOptions()
        options.trackOrigins = true
        let reader = try IPCStreamReader(path: url.path, options: options)
        var starts: [Int] = []
        while let b = try reader.next() { starts.append(b.origin?.rows.messageOffset ?? -1) }
        return (url.path, starts)
    }

    /// Cut at a message's start: its zeros read as the legacy end-of-stream marker. Cut 12
    /// bytes in: marker and length stand, the flatbuffer is zeros and fails to decode.
    @Test("a mapped stream cut where a message starts, or inside its metadata, within a page: input changed, not a short stream or bad data",
          arguments: [0, 12])
    func mappedStream(into: Int) throws {
        let (path, starts) = try Self.stream(40, rows: 1000, tag: "cut-mapped-\(into)")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        // A message whose metadata lies well inside its page: the reader finds the zeros
        // without touching the pages past the new end (which would raise SIGBUS here).
        let start = try #require(starts.dropFirst(5).first { $0 > 0 && $0 % 4096 <= 3000 })
        let cut = start + into
        let reader = try IPCStreamReader(path: path)
        var rows = 0
        while rows < 3000, let b = try reader.next() { rows += b.length }
        #expect(truncate(path, off_t(cut)) == 0)
        let error = #expect(throws: ArrowError.self) { while try reader.next() != nil {} }
        #expect(error?.code == .inputChanged)
        #expect(error?.message == "input changed: '\(path)' shrank while it was read: expected \(size) bytes (its size when it was opened) but found \(cut)")
    }

    @Test("a file read with read() that ends before its size at opening")
    func readCall() throws {
        let url = try IPCTestSupport.temporaryDirectory("cut-read").appendingPathComponent("in.csv")
        try Data(repeating: 65, count: 100_000).write(to: url)
        let file = try InputFile(path: url.path)
        var chunk = [UInt8](repeating: 0, count: 10_000)
        #expect(try chunk.withUnsafeMutableBytes { try file.read(into: $0) } == 10_000)
        #expect(truncate(url.path, 50_000) == 0)
        var total = 10_000
        let error = #expect(throws: ArrowError.self) {
            while true {
                let n = try chunk.withUnsafeMutableBytes { try file.read(into: $0) }
                if n == 0 { break }
                total += n
            }
        }
        #expect(total == 50_000)
        #expect(error?.message == "input changed: '\(url.path)' shrank while it was read: expected 100000 bytes (its size when it was opened) but found 50000")
        // A file that grew while it was read (a log being written) ends quietly, with every byte.
        let grown = try InputFile(path: url.path)
        let appender = try FileHandle(forWritingTo: url)
        try appender.seekToEnd()
        try appender.write(contentsOf: Data(repeating: 66, count: 10))
        try appender.close()
        var n = 0, read = 0
        repeat {
            n = try chunk.withUnsafeMutableBytes { try grown.read(into: $0) }
            read += n
        } while n > 0
        #expect(read == 50_010)
    }

    @Test("writing out pages of a mapping whose file was cut short: input changed, not a write error")
    func writeFromCutMapping() throws {
        let dir = try IPCTestSupport.temporaryDirectory("cut-write")
        let url = dir.appendingPathComponent("in.bin")
        try Data(repeating: 7, count: 256 << 10).write(to: url)
        let file = try InputFile(path: url.path)
        let bytes = try file.readAll()
        try #require(file.mapping != nil)
        #expect(truncate(url.path, 64 << 10) == 0)
        let out = try OutputFile(path: dir.appendingPathComponent("out.bin").path)
        // 128 KiB from past the new end: written straight from the mapping, where the kernel
        // answers EFAULT (a load would raise SIGBUS).
        let error = #expect(throws: ArrowError.self) {
            try out.write(UnsafeRawBufferPointer(rebasing: bytes.bytes[(128 << 10)...]))
        }
        out.abandon()
        #expect(error?.code == .inputChanged)
        #expect(error?.message == "input changed: '\(url.path)' shrank while it was read: expected \(256 << 10) bytes (its size when it was opened) but found \(64 << 10)")
    }

    @Test("the fault handler's table finds the mapping an address is in, and forgets it")
    func regions() throws {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 8192, alignment: 4096)
        defer { buffer.deallocate() }
        let entry = try #require(MappedFileFaults.register(base: buffer, count: 8192, path: "in.arrows"))
        let base = UInt(bitPattern: buffer)
        #expect(MappedFileFaults.region(containing: base + 8191).map { String(cString: $0.path!) } == "in.arrows")
        #expect(MappedFileFaults.region(containing: base + 8192) == nil)
        #expect(MappedFileFaults.region(containing: base &- 1) == nil)
        MappedFileFaults.unregister(entry)
        #expect(MappedFileFaults.region(containing: base) == nil)
    }

    @Test("the fault handler's line is formatted without allocating")
    func signalSafeText() throws {
        var t = SignalSafeText()
        t.append("n=")
        t.append(0)
        t.append(" ")
        t.append(1_600_293_176)
        t.append(" ")
        t.append(-42)
        t.append(" '")
        "a/b.arrows".withCString { t.append($0) }
        t.append("'")
        let pipe = Pipe()
        t.write(to: pipe.fileHandleForWriting.fileDescriptor)
        try pipe.fileHandleForWriting.close()
        #expect(String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) == "n=0 1600293176 -42 'a/b.arrows'\n")
        // Longer text is cut at the buffer's end, never written past it, and still ends the line.
        var long = SignalSafeText()
        for _ in 0..<200 { long.append("abc") }
        #expect(long.count == SignalSafeText.capacity)
        let longPipe = Pipe()
        long.write(to: longPipe.fileHandleForWriting.fileDescriptor)
        try longPipe.fileHandleForWriting.close()
        let text = longPipe.fileHandleForReading.readDataToEndOfFile()
        #expect(text.count == SignalSafeText.capacity + 1 && text.last == UInt8(ascii: "\n"))
    }
}
