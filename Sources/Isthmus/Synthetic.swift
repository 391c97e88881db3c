import Foundation
import IsthmusArrow

/// Deterministic data sets for demos, tests and benchmarks (SplitMix64, so every platform
/// generates the same rows for the same seed).
public enum Synthetic {
    /// A reproducible random number generator.
    public struct SplitMix64: RandomNumberGenerator, Sendable {
        var state: UInt64
        public init(seed: UInt64) { state = seed }
        public mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        /// A uniform double in [0, 1).
        public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
    }

    /// Card transactions: id, amount, merchant category, hour of day, country, card age in days.
    public static func transactions(rows: Int, batchRows: Int = 65_536, seed: UInt64 = 42) -> BatchReader {
        let categories = ["grocery", "fuel", "travel", "electronics", "restaurants", "gaming", "jewelry", "pharmacy"]
        let countries = ["DE", "FR", "US", "GB", "NL", "BR", "NG", "JP"]
        let schema = Schema([Field("id", .int64, nullable: false), Field("amount", .float64), Field("category", .utf8),
                             Field("hour", .int64), Field("country", .utf8), Field("card_age_days", .int64)])
        return GeneratedReader(schema: schema, rows: rows, batchRows: batchRows, seed: seed) { rng, start, n in
            var ids = [Int64?](), amounts = [Double?](), cats = [String?](), hours = [Int64?](), ctry = [String?](), ages = [Int64?]()
            for i in 0..<n {
                ids.append(Int64(start + i))
                let u = rng.unit()
                amounts.append((exp(u * 7.5) * 100).rounded() / 100)
                cats.append(categories[Int(rng.next() % UInt64(categories.count))])
                hours.append(Int64(rng.next() % 24))
                ctry.append(countries[Int(rng.next() % UInt64(countries.count))])
                ages.append(Int64(rng.next() % 3650))
            }
            return [.int64(ids), .float64(amounts), .utf8(cats), .int64(hours), .utf8(ctry), .int64(ages)]
        }
    }

    /// W1: (id int64, x float64).
    public static func w1(rows: Int, batchRows: Int = 65_536, seed: UInt64 = 42) -> BatchReader {
        let schema = Schema([Field("id", .int64), Field("x", .float64)])
        return GeneratedReader(schema: schema, rows: rows, batchRows: batchRows, seed: seed) { rng, start, n in
            [.int64((0..<n).map { Int64(start + $0) }), .float64((0..<n).map { _ in rng.unit() * 2 - 1 })]
        }
    }

    /// W2: 16 float64 features f0..f15.
    public static func w2(rows: Int, batchRows: Int = 65_536, seed: UInt64 = 42) -> BatchReader {
        let schema = Schema((0..<16).map { Field("f\($0)", .float64) })
        return GeneratedReader(schema: schema, rows: rows, batchRows: batchRows, seed: seed) { rng, _, n in
            (0..<16).map { _ in ArrayData.float64((0..<n).map { _ in rng.unit() * 2 - 1 }) }
        }
    }

    /// W3: UTF-8 text of 20–80 characters of lower-case words.
    public static func w3(rows: Int, batchRows: Int = 65_536, seed: UInt64 = 42) -> BatchReader {
        let words = ["stream", "arrow", "batch", "python", "swift", "model", "score", "queue", "worker", "frame",
                     "bridge", "credit", "buffer", "column", "record", "latency", "throughput", "vector", "token", "shard"]
        let schema = Schema([Field("text", .utf8)])
        return GeneratedReader(schema: schema, rows: rows, batchRows: batchRows, seed: seed) { rng, _, n in
            var out = [String?]()
            out.reserveCapacity(n)
            for _ in 0..<n {
                let target = 20 + Int(rng.next() % 61)
                var s = ""
                while s.count < target {
                    if !s.isEmpty { s += " " }
                    s += words[Int(rng.next() % UInt64(words.count))]
                }
                out.append(String(s.prefix(target)))
            }
            return [.utf8(out)]
        }
    }
}

/// A reader that generates its batches on demand.
final class GeneratedReader: BatchReader {
    let schema: Schema
    private let rows: Int
    private let batchRows: Int
    private var produced = 0
    private var rng: Synthetic.SplitMix64
    private let generate: (inout Synthetic.SplitMix64, Int, Int) -> [ArrayData]

    init(schema: Schema, rows: Int, batchRows: Int, seed: UInt64,
         generate: @escaping (inout Synthetic.SplitMix64, Int, Int) -> [ArrayData]) {
        self.schema = schema
        self.rows = rows
        self.batchRows = Swift.max(1, batchRows)
        self.rng = Synthetic.SplitMix64(seed: seed)
        self.generate = generate
    }

    func next() throws -> RecordBatch? {
        guard produced < rows else { return nil }
        let n = Swift.min(batchRows, rows - produced)
        let columns = generate(&rng, produced, n)
        produced += n
        return try RecordBatch(schema: schema, columns: columns, length: n)
    }
}
