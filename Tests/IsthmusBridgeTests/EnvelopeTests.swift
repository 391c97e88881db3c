import Foundation
import Testing
@testable import IsthmusBridge

@Suite("Envelope")
struct EnvelopeTests {
    @Test("encodes the documented 24 bytes and decodes them back")
    func roundTrip() throws {
        let e = Envelope(kind: .batch, stage: 2, attempt: 1, sequence: 0x0102_0304_0506_0708)
        let bytes = e.encoded
        #expect(bytes.count == 24)
        #expect(bytes == [0x49, 0x53, 0x54, 0x48, 1, 1, 4, 0, 2, 0, 0, 0, 1, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1])
        let d = try bytes.withUnsafeBytes { try Envelope.decode($0) }
        #expect(d == e)
    }

    @Test("rejects bad magic, short frames, other major versions, unknown kinds, nonzero reserved bytes")
    func rejects() {
        var good = Envelope(kind: .hello).encoded
        func check(_ bytes: [UInt8], _ fragment: String, version: Bool = false) {
            do {
                _ = try bytes.withUnsafeBytes { try Envelope.decode($0) }
                Issue.record("expected a rejection containing '\(fragment)'")
            } catch let error as ProtocolViolation {
                #expect(error.message.contains(fragment), "\(error.message)")
                #expect(error.versionMismatch == version)
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
        check(Array(good.prefix(10)), "expected a 24-byte envelope but found 10 bytes")
        var bad = good; bad[0] = 0x58
        check(bad, "expected magic ISTH")
        bad = good; bad[4] = 2
        check(bad, "expected protocol major version 1 but found 2.1", version: true)
        bad = good; bad[6] = 42
        check(bad, "expected a message kind 1-10 but found 42")
        good[10] = 1
        check(good, "expected reserved bytes 10-11 to be 0 but found 1")
    }
}
