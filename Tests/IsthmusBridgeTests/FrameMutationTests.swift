import Foundation
import IsthmusArrow
import IsthmusZMQ
import Testing
@testable import IsthmusBridge

/// A deterministic mutation loop over everything the host decodes from a worker: envelopes,
/// JSON control documents and RESULT payloads. Every input must give a value or a clean
/// error — never a crash, a hang or an unbounded allocation.
@Suite("Host frame decoding under mutation")
struct FrameMutationTests {
    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
    }

    static func mutate(_ input: [UInt8], _ rng: inout Rng) -> [UInt8] {
        var b = input
        switch rng.below(5) {
        case 0 where !b.isEmpty:  // flip bits
            for _ in 0..<(1 + rng.below(4)) { b[rng.below(b.count)] ^= UInt8(1 << rng.below(8)) }
        case 1 where !b.isEmpty:  // truncate
            b = Array(b.prefix(rng.below(b.count)))
        case 2 where !b.isEmpty:  // overwrite with an extreme value
            let at = rng.below(b.count)
            let v: [UInt8] = [0xFF, 0xFF, 0xFF, 0x7F]
            for k in 0..<min(4, b.count - at) { b[at + k] = v[k] }
        case 3:  // splice a copy of a region
            if b.count > 8 {
                let s = rng.below(b.count - 4)
                let len = 1 + rng.below(min(64, b.count - s))
                b.insert(contentsOf: b[s..<s + len], at: rng.below(b.count))
            }
        default:  // random bytes
            b += (0..<rng.below(16)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        }
        return b
    }

    @Test("25,000 mutated RESULT streams, envelopes and documents decode or fail cleanly")
    func mutate() throws {
        let batch = try RecordBatch(["id": ArrayData.int64((0..<64).map { Int64($0) }),
                                     "name": ArrayData.utf8((0..<64).map { $0 % 5 == 0 ? nil : "row \($0)" }),
                                     "x": ArrayData.float64((0..<64).map { Double($0) / 3 })])
        let stream = try BatchCodec.encode(batch, schemaMessage: BatchCodec.schemaMessage(batch.schema))
            .flatMap { Array($0.bytes) }
        let envelope = Envelope(kind: .result, stage: 0, attempt: 0, sequence: 7).encoded
        let error = Array(#"{"kind":"user","exc_type":"ValueError","message":"m","traceback":"t","stage":"s","row_start":1,"row_end":2,"retryable":false}"#.utf8)
        var rng = Rng(state: 42)
        var decoded = 0
        for i in 0..<25_000 {
            switch i % 3 {
            case 0:
                let bytes = Self.mutate(stream, &rng)
                let frame = bytes.withUnsafeBytes { Message(copying: $0) }
                if let batches = try? BatchCodec.decodeResult([frame]) {
                    for b in batches { _ = (0..<b.length).map { b.row($0) } }  // reading values must be safe
                    decoded += 1
                }
            case 1:
                let bytes = Self.mutate(envelope, &rng)
                _ = try? bytes.withUnsafeBytes { try Envelope.decode($0) }
            default:
                let bytes = Self.mutate(error, &rng)
                _ = try? bytes.withUnsafeBytes { try ControlDocuments.decode(ControlDocuments.ErrorReport.self, $0, what: "ERROR") }
            }
        }
        // Some mutations leave the stream valid (e.g. a flipped bit in a value): both paths ran.
        #expect(decoded > 0)
    }
}
