import Foundation
import IsthmusArrow
import IsthmusCompression

/// Paths and helpers shared by the IPC test suites.
enum IPCTestSupport {
    /// The repository root, found from this file's path.
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The Arrow reference files (`../shared/arrow-testing` from the root).
    static let arrowTesting: URL = root.appendingPathComponent("../shared/arrow-testing").standardizedFileURL

    /// Every fixture case: the folder, and the base name (without extension).
    static func integrationCases() throws -> [(folder: String, name: String)] {
        let base = arrowTesting.appendingPathComponent("integration")
        var out: [(String, String)] = []
        for folder in try FileManager.default.contentsOfDirectory(atPath: base.path).sorted() {
            let files = try FileManager.default.contentsOfDirectory(atPath: base.appendingPathComponent(folder).path)
            for f in files.sorted() where f.hasSuffix(".json.gz") {
                out.append((folder, String(f.dropLast(".json.gz".count))))
            }
        }
        return out
    }

    static func fixture(_ folder: String, _ file: String) -> URL {
        arrowTesting.appendingPathComponent("integration").appendingPathComponent(folder).appendingPathComponent(file)
    }

    static func readFile(_ url: URL) throws -> Buffer {
        try InputFile(path: url.path).readAll()
    }

    /// Runs a program; returns (status, stdout, stderr).
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], stdin: Data? = nil) throws -> (Int32, Data, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let input = Pipe()
        if stdin != nil { p.standardInput = input }
        try p.run()
        if let stdin {
            input.fileHandleForWriting.write(stdin)
            try input.fileHandleForWriting.close()
        }
        // Read both pipes concurrently so neither fills up.
        nonisolated(unsafe) var errData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return (p.terminationStatus, outData, String(decoding: errData, as: UTF8.self))
    }

    /// Decompresses a `.json.gz` fixture with gzip and parses it.
    static func json(_ url: URL) throws -> [String: Any] {
        let (status, data, err) = try run("/usr/bin/env", ["gzip", "-dc", url.path])
        guard status == 0 else { throw ArrowError(.io, "gzip failed on \(url.lastPathComponent): \(err)") }
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    /// The Python interpreter with pyarrow: `ISTHMUS_PYTHON`, else `<root>/.venv/bin/python`.
    static func python() throws -> String {
        if let p = ProcessInfo.processInfo.environment["ISTHMUS_PYTHON"], !p.isEmpty { return p }
        let venv = root.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: venv) else {
            throw ArrowError(.io, "expected a Python with pyarrow at \(venv) (or in ISTHMUS_PYTHON) but found none: create it with `python3 -m venv .venv && .venv/bin/pip install pyarrow`")
        }
        return venv
    }

    /// Runs a Python script with arguments; throws with its stderr when it fails.
    static func python(script: String, _ arguments: [String]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("isthmus-py-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("script.py")
        try script.write(to: path, atomically: true, encoding: .utf8)
        let (status, out, err) = try run(try python(), [path.path] + arguments)
        guard status == 0 else { throw ArrowError(.io, "python failed (\(status)): \(err)") }
        return String(decoding: out, as: UTF8.self)
    }

    static func temporaryDirectory(_ tag: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("isthmus-\(tag)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static let readOptions = IPCReadOptions(codecs: BodyCodecs.system)

    /// Reads every batch of an IPC stream in memory.
    static func readStream(_ buffer: Buffer, options: IPCReadOptions = readOptions) throws -> (Schema, [RecordBatch]) {
        let r = try IPCStreamReader(buffer: buffer, options: options)
        return (r.schema, try r.readAll())
    }

    /// Reads every batch of an IPC file in memory.
    static func readFile(_ buffer: Buffer, options: IPCReadOptions = readOptions) throws -> (Schema, [RecordBatch]) {
        let r = try IPCFileReader(buffer: buffer, options: options)
        return (r.schema, try r.readAll())
    }

    /// Writes batches as an IPC stream in memory.
    static func writeStream(_ schema: Schema, _ batches: [RecordBatch], options: IPCWriteOptions = IPCWriteOptions()) throws -> Buffer {
        let sink = MemorySink()
        let w = try IPCStreamWriter(sink: sink, schema: schema, options: options)
        for b in batches { try w.write(b) }
        try w.finish()
        return sink.finish()
    }

    /// Writes batches as an IPC file in memory.
    static func writeFile(_ schema: Schema, _ batches: [RecordBatch], options: IPCWriteOptions = IPCWriteOptions()) throws -> Buffer {
        let sink = MemorySink()
        let w = try IPCFileWriter(sink: sink, schema: schema, options: options)
        for b in batches { try w.write(b) }
        try w.finish()
        return sink.finish()
    }

    /// A buffer holding `bytes`, built without `Buffer(copying:)` so that it does not count
    /// as a copy in the zero-copy tests.
    static func buffer(_ bytes: [UInt8]) -> Buffer {
        let b = BufferBuilder(capacity: bytes.count)
        bytes.withUnsafeBytes { b.append($0) }
        return b.finish()
    }

    static func write(_ buffer: Buffer, to url: URL) throws {
        try Data(buffer.bytes).write(to: url)
    }
}

/// Deterministic random numbers (SplitMix64).
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
