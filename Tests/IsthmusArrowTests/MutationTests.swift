import Foundation
@testable import IsthmusArrow
import IsthmusCompression
import Testing

/// Flips, truncates and splices bytes of valid streams and files thousands of times
/// (deterministically) and reads the results: every outcome must be a batch that passed
/// validation or a clean `ArrowError`; no crash, no hang, no unbounded allocation.
@Suite("IPC mutation")
struct MutationTests {
    /// Valid inputs: our own streams and files of random data (dictionaries, nested types,
    /// unions, compression) and a few reference files.
    static func seeds() throws -> [(name: String, bytes: [UInt8], isFile: Bool)] {
        var out: [(String, [UInt8], Bool)] = []
        for seed in 0..<6 {
            var random = RandomArrow(seed: UInt64(seed) &+ 500)
            let schema = random.schema(columns: 3)
            let big = random.batch(schema, length: 20)
            let batches = random.slices(of: big, count: 2)
            let codec: (any BodyCodec)? = [nil, BodyCodecs.lz4Frame, BodyCodecs.zstd][seed % 3]
            let options = IPCWriteOptions(compression: codec)
            out.append(("random\(seed).arrows", try IPCTestSupport.writeStream(schema, batches, options: options).array, false))
            if seed % 2 == 0 {
                out.append(("random\(seed).arrow", try IPCTestSupport.writeFile(schema, batches, options: options).array, true))
            }
        }
        for (folder, name) in [("1.0.0-littleendian", "generated_nested_dictionary"), ("1.0.0-littleendian", "generated_union"),
                               ("1.0.0-littleendian", "generated_map"), ("2.0.0-compression", "generated_zstd"),
                               ("0.14.1", "generated_primitive")] {
            let url = IPCTestSupport.fixture(folder, name + ".stream")
            out.append((name, try IPCTestSupport.readFile(url).array, false))
        }
        return out
    }

    static let options = IPCReadOptions(codecs: BodyCodecs.system, maxDecompressedBytes: 16 << 20)

    /// Reads `bytes`; touches the values of every batch that is small enough to print.
    static func read(_ bytes: [UInt8], isFile: Bool) -> Bool {
        let buffer = IPCTestSupport.buffer(bytes)
        do {
            var batches: [RecordBatch] = []
            if isFile {
                let r = try IPCFileReader(buffer: buffer, options: options)
                for i in 0..<r.recordBatchCount { batches.append(try r.recordBatch(at: i)) }
            } else {
                let r = try IPCStreamReader(buffer: buffer, options: options)
                while let b = try r.next() { batches.append(b) }
            }
            for b in batches {
                for c in b.columns where ArrayConcatenation.logicalSize(c, limit: 100_000) <= 100_000 { _ = c.allValues }
            }
            return true
        } catch is ArrowError {
            return false
        } catch {
            Issue.record("a non-Arrow error: \(error)")
            return false
        }
    }

    static func peakResidentBytes() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first
            return kb.map { $0 * 1024 }
        }
        return nil
    }

    @Test("thousands of mutated streams and files fail cleanly or read valid batches")
    func mutate() throws {
        let seeds = try Self.seeds()
        for s in seeds { #expect(Self.read(s.bytes, isFile: s.isFile), "seed input \(s.name) must read") }
        // Longer campaigns: ISTHMUS_MUTATION_ITERATIONS, ISTHMUS_MUTATION_SECONDS, ISTHMUS_MUTATION_SEED.
        let env = ProcessInfo.processInfo.environment
        let maxIterations = env["ISTHMUS_MUTATION_ITERATIONS"].flatMap { Int($0) } ?? 25_000
        let seconds = env["ISTHMUS_MUTATION_SECONDS"].flatMap { Int($0) } ?? 15
        var rng = SeededRandom(seed: env["ISTHMUS_MUTATION_SEED"].flatMap { UInt64($0) } ?? 0x15_7A_0C)
        func r(_ n: Int) -> Int { n <= 0 ? 0 : Int(rng.next() % UInt64(n)) }
        let interesting32: [UInt32] = [0, 1, 0xFFFF_FFFF, 0x7FFF_FFFF, 0x8000_0000, 8, 0xFFFF_FFF8, 0x0001_0000]
        let interesting8: [UInt8] = [0, 1, 0x7F, 0x80, 0xFF, 0x10]
        let deadline = ContinuousClock.now + .seconds(seconds)
        var iterations = 0, reads = 0, errors = 0
        while iterations < maxIterations && ContinuousClock.now < deadline {
            let (_, original, isFile) = seeds[r(seeds.count)]
            var b = original
            for _ in 0..<(1 + r(3)) {
                guard !b.isEmpty else { break }
                switch r(8) {
                case 0: b[r(b.count)] ^= UInt8(1) << UInt8(r(8))
                case 1: b[r(b.count)] = interesting8[r(interesting8.count)]
                case 2:
                    let at = r(b.count / 4) * 4
                    if at + 4 <= b.count {
                        let v = interesting32[r(interesting32.count)]
                        for k in 0..<4 { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
                    }
                case 3: b.removeSubrange(r(b.count)...)
                case 4:
                    let other = seeds[r(seeds.count)].bytes
                    let start = r(other.count), length = r(Swift.min(64, other.count - start))
                    let at = r(b.count)
                    b.replaceSubrange(at..<Swift.min(b.count, at + length), with: other[start..<(start + length)])
                case 5:
                    let start = r(b.count), length = r(Swift.min(48, b.count - start))
                    b.insert(contentsOf: b[start..<(start + length)], at: r(b.count))
                case 6:
                    let start = r(b.count)
                    b.removeSubrange(start..<Swift.min(b.count, start + 1 + r(32)))
                default:
                    let at = r(b.count)
                    b[at] = b[at] &+ UInt8(1 + r(3))
                }
            }
            if Self.read(b, isFile: isFile) { reads += 1 } else { errors += 1 }
            iterations += 1
        }
        print("mutation: \(iterations) inputs, \(reads) read, \(errors) rejected")
        #expect(iterations >= 1500, "only \(iterations) mutations ran in the time budget")
        #expect(errors > iterations / 4, "most mutations should be rejected")
        if let peak = Self.peakResidentBytes() {
            #expect(peak < 2 << 30, "peak resident memory \(peak >> 20) MiB")
        }
    }
}
