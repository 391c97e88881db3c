import Foundation
import IsthmusArrow
import IsthmusCompression
import Testing

/// Every file in `../shared/arrow-testing/fuzz/` (inputs that once crashed the C++ reader)
/// gives a clean error or a clean read: never a crash or a hang.
@Suite("Fuzz reference files")
struct FuzzTests {
    static let files: [String] = {
        let dir = IPCTestSupport.arrowTesting.appendingPathComponent("fuzz")
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
    }()

    /// Reads `buffer` as a stream, then as a file; touches every value of what it reads.
    /// Returns a short description of the outcome.
    static func exercise(_ buffer: Buffer, options: IPCReadOptions) -> String {
        var outcome: [String] = []
        do {
            let reader = try IPCStreamReader(buffer: buffer, options: options)
            var rows = 0
            while let b = try reader.next() {
                rows += b.length
                for c in b.columns where c.length <= 10_000 { _ = c.allValues }
            }
            outcome.append("stream: \(rows) rows")
        } catch let e as ArrowError {
            outcome.append("stream error: \(e)")
        } catch {
            outcome.append("stream other error: \(error)")
        }
        do {
            let reader = try IPCFileReader(buffer: buffer, options: options)
            for i in 0..<reader.recordBatchCount { _ = try? reader.recordBatch(at: i) }
            outcome.append("file: \(reader.recordBatchCount) batches")
        } catch {
            outcome.append("file error")
        }
        return outcome.joined(separator: "; ")
    }

    @Test("the fuzz folder is present")
    func present() {
        #expect(Self.files.count >= 30, "expected the fuzz reference files under \(IPCTestSupport.arrowTesting.path)/fuzz")
    }

    @Test("each fuzz file reads cleanly or fails cleanly", arguments: files)
    func fuzzFile(_ name: String) throws {
        let url = IPCTestSupport.arrowTesting.appendingPathComponent("fuzz").appendingPathComponent(name)
        let buffer = try IPCTestSupport.readFile(url)
        let start = ContinuousClock.now
        let outcome = Self.exercise(buffer, options: IPCReadOptions(codecs: BodyCodecs.system, maxDecompressedBytes: 64 << 20))
        let elapsed = ContinuousClock.now - start
        #expect(elapsed < .seconds(5), "\(name) took \(elapsed)")
        #expect(!outcome.contains("other error"), "\(name): \(outcome)")
    }
}
